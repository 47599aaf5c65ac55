use foundation_actors::prelude::*;

struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
    }
}

fn main() {}
