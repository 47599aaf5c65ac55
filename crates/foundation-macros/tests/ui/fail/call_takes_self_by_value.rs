use foundation_actors::prelude::*;

#[derive(Clone)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[call]
    fn total(self) -> u64 {
        self.total
    }
}

fn main() {}
