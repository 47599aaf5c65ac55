use foundation_actors::prelude::*;

#[derive(Clone)]
struct Counter {
    total: u64,
}

#[actor]
impl Counter {
    #[call]
    fn reset(&mut self) {
        self.total = 0;
    }

    #[call]
    fn total(&self, _ctx: &Ctx<Self>) -> u64 {
        self.total
    }
}

// The rest of the actor is still generated: no errors here.
async fn total(c: CounterRef) -> Result<u64, CallError> {
    c.total().await
}

fn main() {
    let _ = total;
}
