use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

struct Tick;

#[actor]
impl Counter {
    #[cast(tag = 1)]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[call(tag = 2)]
    fn total(&self) -> u64 {
        self.total
    }

    #[info(tag = 3)]
    fn tick(&mut self, _: Tick) {}
}

fn main() {}
