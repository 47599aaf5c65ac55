use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
    }

    #[restored]
    fn back(&mut self) {}
}

fn main() {
    let _ = Counter::spawn;
}
