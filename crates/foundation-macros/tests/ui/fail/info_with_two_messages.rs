use foundation_actors::prelude::*;

#[derive(Clone)]
struct Ticker {
    ticks: u64,
}

struct Tick;

#[actor]
impl Ticker {
    #[info]
    fn tick(&mut self, _tick: Tick, by: u64) {
        self.ticks += by;
    }
}

fn main() {}
