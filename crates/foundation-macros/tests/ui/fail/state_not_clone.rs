use foundation_actors::prelude::*;

// Not `Clone`: fine until it is supervised, since restarts clone the state.
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

fn main() {
    let _spec = Counter::child_spec(Counter { total: 0 });
}
