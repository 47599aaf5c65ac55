use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor(handoff)]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
    }
}

fn main() {}
