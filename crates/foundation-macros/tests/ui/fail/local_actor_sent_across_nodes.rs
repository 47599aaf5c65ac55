// A non-remote actor's messages used where a wire form is needed (as `Node::export`
// and `Node::call` need one): the error says how to give it one.
use foundation_actors::prelude::*;

#[derive(Clone, Default)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n
    }
}

fn export<M: RemoteMessage>(_addr: &Addr<M>) {}

fn main() {
    let counter: Option<CounterRef> = None;
    if let Some(c) = counter {
        export(c.addr());
    }
}
