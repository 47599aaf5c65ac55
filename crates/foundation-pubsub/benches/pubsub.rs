//! Local fan-out, each beside its competitor in one run:
//!
//! - `pubsub_fanout_actors`: one broadcast to 10,000 actor subscribers
//!   (`foundation`) beside the same message cast by hand to 10,000 raw ractor actors
//!   (`ractor`), and to the same Foundation actors (`foundation_cast`: what the pubsub
//!   adds over a Foundation cast);
//! - `pubsub_fanout_streams`: one broadcast to 1,000 `Stream` subscribers (`foundation`)
//!   beside `tokio::sync::broadcast` to 1,000 receivers (`tokio_broadcast`).
//!
//! Criterion's figure is per delivery (a broadcast's time over its subscribers). Every
//! loop runs as a task on a current-thread runtime, as the headline benches of
//! `foundation-actors` do. Cross-node figures and the BEAM's Phoenix.PubSub are not here
//! yet.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-pubsub --bench pubsub`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_actors::{Actor, ActorError, Addr, spawn};
use foundation_pubsub::{BufferConfig, Overflow, PubSub, Topic};
use ractor::{ActorProcessingErr, ActorRef};
use tokio::runtime::Runtime;

const ACTORS: usize = 10_000;
const STREAMS: usize = 1_000;
/// Broadcasts in flight before the stream benches wait for their readers (both sides).
const BATCH: u64 = 16;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Counts what it handles.
struct Sub(Arc<AtomicU64>);

impl Actor for Sub {
    type Msg = u64;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<u64>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<u64>, _: u64, (): &mut ()) -> Result<(), ActorError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct RawMsg(#[allow(dead_code)] u64);
impl ractor::Message for RawMsg {}

struct RawSub;

impl ractor::Actor for RawSub {
    type Msg = RawMsg;
    type State = Arc<AtomicU64>;
    type Arguments = Arc<AtomicU64>;
    async fn pre_start(
        &self,
        _: ActorRef<RawMsg>,
        n: Arc<AtomicU64>,
    ) -> Result<Arc<AtomicU64>, ActorProcessingErr> {
        Ok(n)
    }
    async fn handle(
        &self,
        _: ActorRef<RawMsg>,
        _: RawMsg,
        n: &mut Arc<AtomicU64>,
    ) -> Result<(), ActorProcessingErr> {
        n.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Yields until `counter` reaches `target`.
async fn until(counter: &AtomicU64, target: u64) {
    while counter.load(Ordering::Relaxed) < target {
        tokio::task::yield_now().await;
    }
}

fn per_delivery(elapsed: Duration, fan: usize) -> Duration {
    elapsed / u32::try_from(fan).unwrap()
}

fn actors(c: &mut Criterion) {
    let rt = runtime();
    let (ps, topic, ours, ours_addrs, raw, raw_count) = rt.block_on(async {
        let ps = PubSub::local("bench");
        let topic: Topic<u64> = Topic::new("bench.fanout").unwrap();
        let ours = Arc::new(AtomicU64::new(0));
        let mut addrs = Vec::with_capacity(ACTORS);
        for _ in 0..ACTORS {
            let a = spawn(Sub(ours.clone()), ()).await.unwrap();
            ps.subscribe_with(&topic, &a, BufferConfig::new(1 << 20, Overflow::DropNewest))
                .unwrap();
            addrs.push(a);
        }
        let raw_count = Arc::new(AtomicU64::new(0));
        let mut raw = Vec::with_capacity(ACTORS);
        for _ in 0..ACTORS {
            let (r, _) = ractor::Actor::spawn(None, RawSub, raw_count.clone())
                .await
                .unwrap();
            raw.push(r);
        }
        (ps, topic, ours, addrs, raw, raw_count)
    });
    let raw = Arc::new(raw);
    let mut g = c.benchmark_group("pubsub_fanout_actors");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("foundation", |b| {
        b.iter_custom(|n| {
            let (ps, topic, ours) = (ps.clone(), topic.clone(), ours.clone());
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = ours.load(Ordering::Relaxed);
                    let t = Instant::now();
                    for i in 0..n {
                        ps.broadcast(&topic, i).unwrap();
                    }
                    until(&ours, start + n * ACTORS as u64).await;
                    per_delivery(t.elapsed(), ACTORS)
                })
                .await
                .unwrap()
            })
        })
    });
    // The same actors cast to by hand: what the pubsub adds over Foundation's own cast.
    let addrs = Arc::new(ours_addrs);
    g.bench_function("foundation_cast", |b| {
        b.iter_custom(|n| {
            let (addrs, ours) = (addrs.clone(), ours.clone());
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = ours.load(Ordering::Relaxed);
                    let t = Instant::now();
                    for i in 0..n {
                        for a in addrs.iter() {
                            a.cast(i).unwrap();
                        }
                    }
                    until(&ours, start + n * ACTORS as u64).await;
                    per_delivery(t.elapsed(), ACTORS)
                })
                .await
                .unwrap()
            })
        })
    });
    g.bench_function("ractor", |b| {
        b.iter_custom(|n| {
            let (raw, count) = (raw.clone(), raw_count.clone());
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = count.load(Ordering::Relaxed);
                    let t = Instant::now();
                    for i in 0..n {
                        for r in raw.iter() {
                            r.cast(RawMsg(i)).unwrap();
                        }
                    }
                    until(&count, start + n * ACTORS as u64).await;
                    per_delivery(t.elapsed(), ACTORS)
                })
                .await
                .unwrap()
            })
        })
    });
    g.finish();
    assert_eq!(ps.stats().dropped, 0, "a bench delivery was dropped");
    for a in addrs.iter() {
        a.stop(None);
    }
    for r in raw.iter() {
        r.stop(None);
    }
}

fn streams(c: &mut Criterion) {
    let rt = runtime();
    let ps = PubSub::local("bench-streams");
    let topic: Topic<u64> = Topic::new("bench.streams").unwrap();
    let ours = Arc::new(AtomicU64::new(0));
    let theirs = Arc::new(AtomicU64::new(0));
    let (tx, _) = tokio::sync::broadcast::channel::<u64>(1024);
    rt.block_on(async {
        for _ in 0..STREAMS {
            let mut sub = ps
                .subscribe_stream_with(&topic, BufferConfig::new(1024, Overflow::DropNewest))
                .unwrap();
            let n = ours.clone();
            tokio::spawn(async move {
                while sub.recv().await.is_some() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            });
            let mut rx = tx.subscribe();
            let n = theirs.clone();
            tokio::spawn(async move {
                while rx.recv().await.is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let mut g = c.benchmark_group("pubsub_fanout_streams");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("foundation", |b| {
        b.iter_custom(|n| {
            let (ps, topic, ours) = (ps.clone(), topic.clone(), ours.clone());
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = ours.load(Ordering::Relaxed);
                    let t = Instant::now();
                    for i in 0..n {
                        ps.broadcast(&topic, i).unwrap();
                        if (i + 1) % BATCH == 0 {
                            until(&ours, start + (i + 1) * STREAMS as u64).await;
                        }
                    }
                    until(&ours, start + n * STREAMS as u64).await;
                    per_delivery(t.elapsed(), STREAMS)
                })
                .await
                .unwrap()
            })
        })
    });
    g.bench_function("tokio_broadcast", |b| {
        b.iter_custom(|n| {
            let (tx, theirs) = (tx.clone(), theirs.clone());
            rt.block_on(async move {
                tokio::spawn(async move {
                    let start = theirs.load(Ordering::Relaxed);
                    let t = Instant::now();
                    for i in 0..n {
                        tx.send(i).unwrap();
                        if (i + 1) % BATCH == 0 {
                            until(&theirs, start + (i + 1) * STREAMS as u64).await;
                        }
                    }
                    until(&theirs, start + n * STREAMS as u64).await;
                    per_delivery(t.elapsed(), STREAMS)
                })
                .await
                .unwrap()
            })
        })
    });
    g.finish();
    assert_eq!(ps.stats().dropped, 0, "a bench delivery was dropped");
}

criterion_group!(benches, actors, streams);
criterion_main!(benches);
