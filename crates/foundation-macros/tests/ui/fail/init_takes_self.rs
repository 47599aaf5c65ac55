use foundation_actors::prelude::*;

#[derive(Clone)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[init]
    fn init(&mut self, total: u64) -> Self {
        Self { total }
    }
}

fn main() {}
