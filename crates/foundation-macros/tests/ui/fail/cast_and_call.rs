use foundation_actors::prelude::*;

#[derive(Clone)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[cast]
    #[call]
    fn add(&mut self, n: u64) -> u64 {
        self.total += n;
        self.total
    }
}

fn main() {}
