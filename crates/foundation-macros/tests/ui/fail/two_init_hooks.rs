use foundation_actors::prelude::*;

struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[init]
    fn start(total: u64) -> Self {
        Self { total }
    }

    #[init]
    fn restart(total: u64) -> Self {
        Self { total }
    }
}

fn main() {}
