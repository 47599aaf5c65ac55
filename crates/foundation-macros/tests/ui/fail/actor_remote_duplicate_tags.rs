use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor(remote = "demo.Counter")]
impl Counter {
    #[cast(tag = 1)]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[call(tag = 1)]
    fn total(&self) -> u64 {
        self.total
    }
}

fn main() {}
