use foundation_actors::prelude::*;

#[derive(Clone)]
struct Ticker {
    ticks: u64,
}

struct Tick;

#[actor]
impl Ticker {
    #[info]
    fn tick(&mut self, _tick: Tick) {
        self.ticks += 1;
    }

    #[info]
    fn count(&mut self, _tick: Tick) {
        self.ticks += 1;
    }
}

fn main() {}
