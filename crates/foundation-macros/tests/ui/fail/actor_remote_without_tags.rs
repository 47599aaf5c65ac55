use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor(remote)]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[call(tag = 2)]
    fn total(&self) -> u64 {
        self.total
    }
}

fn main() {}
