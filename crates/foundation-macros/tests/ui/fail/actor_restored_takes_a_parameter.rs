use foundation_actors::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

#[actor(handoff)]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[restored]
    fn back(&mut self, n: u64) {
        self.total = n;
    }
}

fn main() {
    let _ = Counter::handoff_actor;
}
