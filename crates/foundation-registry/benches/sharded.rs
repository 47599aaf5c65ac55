//! Sharded entities: memory per idle entity, beside a raw ractor actor per entity, and
//! casts to many active entities per second, beside raw ractor actors.
//!
//! Memory is counted by a counting allocator: live bytes after activating `N` entities
//! (one message each) and letting them go idle, divided by `N`, with the process-wide
//! tables grown beforehand. The entity is an `#[actor]` counter whose state is one `u64`
//! (8 bytes); a hand-written actor with the same state is measured too. Writes
//! `target/bench-sharded.json` for `cargo xtask bench`.
//!
//! Run with: `cargo bench -p foundation-registry --bench sharded` (`SHARDED_N=1000000`
//! for a million entities; 100,000 by default).

#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::time::{Duration, Instant};

use foundation_actors::prelude::*;
use foundation_registry::sharded::{Sharded, ShardedSpec};
use ractor::RpcReplyPort;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Raw ractor actors measured (each costs ~9.5 KB: fewer of them).
const RAW_N: usize = 10_000;
/// Entities that receive the throughput run's messages.
const HOT: u64 = 10_000;
/// Messages of the throughput run.
const MESSAGES: u64 = 1_000_000;

/// Bytes allocated and not yet freed since the region began.
fn live(region: &Region<'_, System>) -> isize {
    let c = region.change();
    c.bytes_allocated as isize - c.bytes_deallocated as isize + c.bytes_reallocated
}

/// A counter entity written with `#[actor]`: its state is one `u64`.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    n: u64,
}

#[actor(vis = pub)]
impl Tally {
    #[cast]
    fn add(&mut self, k: u64) {
        self.n += k;
    }

    #[call]
    fn get(&self) -> u64 {
        self.n
    }
}

/// The same counter written by hand (its state does not keep its address).
#[derive(Clone)]
struct Plain;

enum PlainMsg {
    Add(u64),
}

impl Actor for Plain {
    type Msg = PlainMsg;
    type State = u64;
    type Args = ();
    async fn init(&self, _: &Addr<PlainMsg>, (): ()) -> Result<u64, ActorError> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: &Addr<PlainMsg>,
        msg: PlainMsg,
        n: &mut u64,
    ) -> Result<(), ActorError> {
        match msg {
            PlainMsg::Add(k) => *n += k,
        }
        Ok(())
    }
}

/// Waits until no entity of `s` has a runner and `n` have started.
async fn settled<M: Send + 'static>(s: &Sharded<u64, M>, n: u64) {
    loop {
        let st = s.stats();
        if st.running == 0 && st.started >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bytes per idle `#[actor]` entity, `n` of them.
async fn typed_entities(round: usize, n: u64) -> f64 {
    let s: Sharded<u64, TallyMsg> = Sharded::new(ShardedSpec::new(
        format!("tally-{round}"),
        Tally::actor(),
        |_: &u64| Tally::default(),
    ));
    let sup = Supervisor::start(
        SupervisorSpec::new(format!("mem-{round}"), Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let region = Region::new(GLOBAL);
    for k in 0..n {
        s.entity::<TallyRef>(k).add(1).await.unwrap();
    }
    settled(&s, n).await;
    let bytes = live(&region) as f64 / n as f64;
    assert_eq!(s.stats().entities as u64, n);
    sup.shutdown().await;
    bytes
}

/// Bytes per idle hand-written entity, `n` of them.
async fn plain_entities(round: usize, n: u64) -> f64 {
    let s: Sharded<u64, PlainMsg> = Sharded::new(ShardedSpec::new(
        format!("plain-{round}"),
        Plain,
        |_: &u64| (),
    ));
    let sup = Supervisor::start(
        SupervisorSpec::new(format!("pmem-{round}"), Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let region = Region::new(GLOBAL);
    for k in 0..n {
        s.addr(k).cast(PlainMsg::Add(1)).unwrap();
    }
    settled(&s, n).await;
    let bytes = live(&region) as f64 / n as f64;
    sup.shutdown().await;
    bytes
}

enum RawMsg {
    Add(u64),
    Get(RpcReplyPort<u64>),
}
impl ractor::Message for RawMsg {}

struct RawCounter;

impl ractor::Actor for RawCounter {
    type Msg = RawMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(
        &self,
        _: ractor::ActorRef<RawMsg>,
        (): (),
    ) -> Result<u64, ractor::ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: ractor::ActorRef<RawMsg>,
        msg: RawMsg,
        n: &mut u64,
    ) -> Result<(), ractor::ActorProcessingErr> {
        match msg {
            RawMsg::Add(k) => *n += k,
            RawMsg::Get(r) => {
                let _ = r.send(*n);
            }
        }
        Ok(())
    }
}

async fn raw_actors(n: usize) -> (f64, Vec<ractor::ActorRef<RawMsg>>) {
    let region = Region::new(GLOBAL);
    let mut refs = Vec::with_capacity(n);
    for _ in 0..n {
        let (a, _) = ractor::Actor::spawn(None, RawCounter, ()).await.unwrap();
        a.send_message(RawMsg::Add(1)).unwrap();
        refs.push(a);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (live(&region) as f64 / n as f64, refs)
}

/// Casts per second to `HOT` active entities (round robin), until all are handled.
async fn entity_throughput() -> f64 {
    let s: Sharded<u64, TallyMsg> =
        Sharded::new(ShardedSpec::new("tally-hot", Tally::actor(), |_: &u64| {
            Tally::default()
        }));
    let sup =
        Supervisor::start(SupervisorSpec::new("hot", Strategy::OneForOne).child(s.child_spec()))
            .await
            .unwrap();
    let handles: Vec<TallyRef> = (0..HOT).map(|k| s.entity(k)).collect();
    for h in &handles {
        h.add(0).await.unwrap();
    }
    settled(&s, HOT).await;
    let start = Instant::now();
    for i in 0..MESSAGES {
        handles[(i % HOT) as usize].add(1).await.unwrap();
    }
    for h in &handles {
        h.get().await.unwrap();
    }
    let rate = MESSAGES as f64 / start.elapsed().as_secs_f64();
    sup.shutdown().await;
    rate
}

/// The same with raw ractor actors.
async fn raw_throughput(refs: &[ractor::ActorRef<RawMsg>]) -> f64 {
    let n = refs.len() as u64;
    let start = Instant::now();
    for i in 0..MESSAGES {
        refs[(i % n) as usize].send_message(RawMsg::Add(1)).unwrap();
    }
    for r in refs {
        r.call(RawMsg::Get, None).await.unwrap();
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("SHARDED_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (typed, plain, raw, ours_rate, raw_rate) = rt.block_on(async {
        // Grow the process-wide tables once.
        typed_entities(0, n).await;
        let typed = typed_entities(1, n).await;
        let plain = plain_entities(1, n).await;
        let (raw, refs) = raw_actors(RAW_N).await;
        let ours_rate = entity_throughput().await;
        let raw_rate = raw_throughput(&refs).await;
        for r in refs {
            r.stop(None);
        }
        (typed, plain, raw, ours_rate, raw_rate)
    });
    let state = std::mem::size_of::<Tally>() as f64;
    println!(
        "{n} idle sharded entities: #[actor] {typed:.0} B each (state {state:.0} B), hand-written {plain:.0} B; raw ractor actor: {raw:.0} B"
    );
    println!(
        "casts to {HOT} active entities: {:.0} k msg/s; to {HOT} raw ractor actors: {:.0} k msg/s",
        ours_rate / 1e3,
        raw_rate / 1e3
    );
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.display().to_string()))
        .unwrap();
    let json = format!(
        "{{\"figures\":[\
{{\"name\":\"idle sharded entity\",\"value\":{typed:.1},\"unit\":\"B\",\"competitor\":\"its state (one u64)\",\"competitor_value\":{state:.1}}},\
{{\"name\":\"idle sharded entity, hand-written actor\",\"value\":{plain:.1},\"unit\":\"B\",\"competitor\":\"raw ractor actor\",\"competitor_value\":{raw:.1}}},\
{{\"name\":\"casts to 10k active sharded entities\",\"value\":{:.1},\"unit\":\"k msg/s\",\"competitor\":\"raw ractor actors\",\"competitor_value\":{:.1}}}]}}",
        ours_rate / 1e3,
        raw_rate / 1e3
    );
    std::fs::write(format!("{target}/bench-sharded.json"), json).unwrap();
}
