//! `#[actor(handoff)]`: the type is its own snapshot, `handoff_actor()` implements
//! `Handoff`, `restore` rebuilds the context and runs `#[restored]`.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_registry::distributed::{Handoff, checkpoint};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
    #[serde(skip)]
    restored: u32,
}

struct Tick;

#[actor(handoff)]
impl Counter {
    #[init]
    fn start(total: u64) -> Self {
        Self { total, restored: 0 }
    }

    #[cast]
    fn add(&mut self, n: u64) -> Result<(), ActorError> {
        self.total += n;
        checkpoint(&*self)?;
        Ok(())
    }

    #[call]
    fn total(&self) -> (u64, u32) {
        (self.total, self.restored)
    }

    #[info]
    fn tick(&mut self, _: Tick) {}

    #[restored]
    async fn back(&mut self, ctx: &Ctx<Self>) -> Result<(), ActorError> {
        self.restored += 1;
        ctx.send_after(Duration::from_secs(3600), Tick);
        Ok(())
    }
}

/// No hook, no `#[init]`: `Args` is the type itself.
#[derive(Clone, Serialize, Deserialize)]
struct Plain(u8);

#[actor(handoff)]
impl Plain {
    #[call]
    fn get(&self) -> u8 {
        self.0
    }
}

fn wants<H>(h: H) -> H
where
    H: Handoff + Clone,
{
    h
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let h = wants(Counter::handoff_actor());
    let me = foundation_actors::spawn(h.clone(), 5).await.unwrap();
    let counter = CounterRef::from(me);
    assert_eq!(counter.total().await.unwrap(), (5, 0));
    let _: fn() -> _ = Plain::handoff_actor;
    let _: Counter = Counter::default();
}
