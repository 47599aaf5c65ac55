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
//! `foundation-actors` do. Cross-node figures are in the bench `cluster`; the BEAM's local
//! fan-out (Phoenix.PubSub's design in Erlang, `bench/beam/`) is run by `cargo xtask bench`
//! after this bench and set beside it in its table.
//!
//! With `PUBSUB_PAIRED=<rounds>` set it runs no criterion group: it alternates one chunk of
//! broadcasts to the 10,000 actors with the same chunk cast by hand (Foundation's cast and
//! raw ractor), the order turned every round, and prints each round's ratios and their
//! medians: on a shared machine a slow spell moves criterion's separate windows by tens
//! of percent, a ratio taken within one round much less.
//!
//! With `PUBSUB_PROFILE=<chunks>` it runs that many chunks of each of the three sides, each
//! through a function of its own (`profile_pubsub`, `profile_cast`, `profile_ractor`), for
//! instruction counts that load does not move:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*profile_*' <bench>`,
//! then `callgrind_annotate --inclusive=yes` gives each side's count; over
//! `chunks × 16 × 10,000` deliveries, its count per delivery. Both modes take
//! `PUBSUB_CHUNK=<broadcasts>` (default 16) for the size of a chunk.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-pubsub --bench pubsub`;
//! `PUBSUB_PAIRED=21 cargo bench -p foundation-pubsub --bench pubsub` for the paired ratios).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
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

/// Times `n` broadcasts made by `send(i)` on the runtime, as a task, until `counter` has
/// grown by `n * fan` deliveries; every `batch` broadcasts (if any) it first waits for the
/// readers to catch up. Returns the time per delivery.
fn fan_out(
    rt: &Runtime,
    n: u64,
    counter: &Arc<AtomicU64>,
    fan: usize,
    batch: Option<u64>,
    send: impl Fn(u64) + Send + 'static,
) -> Duration {
    let counter = counter.clone();
    let fan64 = fan as u64;
    let elapsed = rt.block_on(async move {
        tokio::spawn(async move {
            let start = counter.load(Ordering::Relaxed);
            let t = Instant::now();
            for i in 0..n {
                send(i);
                if batch.is_some_and(|b| (i + 1) % b == 0) {
                    until(&counter, start + (i + 1) * fan64).await;
                }
            }
            until(&counter, start + n * fan64).await;
            t.elapsed()
        })
        .await
        .unwrap()
    });
    elapsed / u32::try_from(fan).unwrap()
}

/// The local fan-out's subscribers: 10,000 Foundation actors subscribed to `topic`, and
/// 10,000 raw ractor actors.
struct Actors {
    ps: PubSub,
    topic: Topic<u64>,
    ours: Arc<AtomicU64>,
    addrs: Arc<Vec<Addr<u64>>>,
    raw: Arc<Vec<ActorRef<RawMsg>>>,
    raw_count: Arc<AtomicU64>,
}

impl Actors {
    fn start(rt: &Runtime) -> Self {
        rt.block_on(async {
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
            Self {
                ps,
                topic,
                ours,
                addrs: Arc::new(addrs),
                raw: Arc::new(raw),
                raw_count,
            }
        })
    }

    /// `n` broadcasts through the pubsub: the time per delivery.
    fn pubsub(&self, rt: &Runtime, n: u64) -> Duration {
        let (ps, topic) = (self.ps.clone(), self.topic.clone());
        fan_out(rt, n, &self.ours, ACTORS, None, move |i| {
            ps.broadcast(&topic, i).unwrap();
        })
    }

    /// The same to the same actors, cast by hand: what the pubsub adds over Foundation's
    /// own cast.
    fn cast(&self, rt: &Runtime, n: u64) -> Duration {
        let addrs = self.addrs.clone();
        fan_out(rt, n, &self.ours, ACTORS, None, move |i| {
            for a in addrs.iter() {
                a.cast(i).unwrap();
            }
        })
    }

    /// The same cast by hand to raw ractor actors.
    fn ractor(&self, rt: &Runtime, n: u64) -> Duration {
        let raw = self.raw.clone();
        fan_out(rt, n, &self.raw_count, ACTORS, None, move |i| {
            for r in raw.iter() {
                r.cast(RawMsg(i)).unwrap();
            }
        })
    }

    fn stop(self) {
        assert_eq!(self.ps.stats().dropped, 0, "a bench delivery was dropped");
        for a in self.addrs.iter() {
            a.stop(None);
        }
        for r in self.raw.iter() {
            r.stop(None);
        }
    }
}

fn actors(c: &mut Criterion) {
    let rt = runtime();
    let actors = Actors::start(&rt);
    let mut g = c.benchmark_group("pubsub_fanout_actors");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("foundation", |b| b.iter_custom(|n| actors.pubsub(&rt, n)));
    g.bench_function("foundation_cast", |b| {
        b.iter_custom(|n| actors.cast(&rt, n))
    });
    g.bench_function("ractor", |b| b.iter_custom(|n| actors.ractor(&rt, n)));
    g.finish();
    actors.stop();
}

/// Broadcasts per chunk of the paired rounds (each a delivery to every actor), unless
/// `PUBSUB_CHUNK` says otherwise (`PUBSUB_CHUNK=1`: one broadcast at a time, each waited
/// for, so that no two reach an actor before it runs).
const PAIRED_CHUNK: u64 = 16;

fn paired_chunk() -> u64 {
    std::env::var("PUBSUB_CHUNK")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(PAIRED_CHUNK)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The paired rounds (see the module docs).
fn paired(rounds: usize) {
    let rt = runtime();
    let actors = Actors::start(&rt);
    let chunk = paired_chunk();
    // Warm every path once.
    actors.pubsub(&rt, chunk);
    actors.cast(&rt, chunk);
    actors.ractor(&rt, chunk);
    let (mut ps_raw, mut cast_raw, mut ps_cast) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ps_ns, mut cast_ns, mut raw_ns) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // `fan_out` gives a chunk's time over the subscribers: per delivery, over the chunk.
        let ns = |d: Duration| d.as_secs_f64() * 1e9 / chunk as f64;
        let (p, c, r) = if round % 2 == 0 {
            let p = ns(actors.pubsub(&rt, chunk));
            let c = ns(actors.cast(&rt, chunk));
            let r = ns(actors.ractor(&rt, chunk));
            (p, c, r)
        } else {
            let r = ns(actors.ractor(&rt, chunk));
            let c = ns(actors.cast(&rt, chunk));
            let p = ns(actors.pubsub(&rt, chunk));
            (p, c, r)
        };
        println!(
            "round {round}: pubsub {p:.0} ns, cast {c:.0} ns, ractor {r:.0} ns per delivery; \
             pubsub/ractor {:.3}, cast/ractor {:.3}, pubsub/cast {:.3}",
            p / r,
            c / r,
            p / c
        );
        ps_raw.push(p / r);
        cast_raw.push(c / r);
        ps_cast.push(p / c);
        ps_ns.push(p);
        cast_ns.push(c);
        raw_ns.push(r);
    }
    println!(
        "paired medians over {rounds} rounds of {chunk} broadcasts: pubsub {:.0} ns, cast {:.0} ns, ractor {:.0} ns per \
         delivery; pubsub/ractor {:.3}, cast/ractor {:.3}, pubsub/cast {:.3}",
        median(ps_ns),
        median(cast_ns),
        median(raw_ns),
        median(ps_raw),
        median(cast_raw),
        median(ps_cast)
    );
    actors.stop();
}

/// One chunk through the pubsub, out of line so that callgrind can count it alone
/// (`--toggle-collect=*profile_pubsub*`); the runtime's tasks (the actors handling what is
/// sent) run inside it too, on this thread.
#[inline(never)]
fn profile_pubsub(actors: &Actors, rt: &Runtime, chunk: u64) -> Duration {
    actors.pubsub(rt, chunk)
}

/// As [`profile_pubsub`], cast by hand to the same actors.
#[inline(never)]
fn profile_cast(actors: &Actors, rt: &Runtime, chunk: u64) -> Duration {
    actors.cast(rt, chunk)
}

/// As [`profile_pubsub`], cast by hand to raw ractor actors.
#[inline(never)]
fn profile_ractor(actors: &Actors, rt: &Runtime, chunk: u64) -> Duration {
    actors.ractor(rt, chunk)
}

/// `PUBSUB_PROFILE=<chunks>`: each side runs `chunks` chunks (an even number: see below),
/// for an instruction count per delivery under callgrind (see the module docs).
fn profile(chunks: usize) {
    let rt = runtime();
    let actors = Actors::start(&rt);
    let chunk = paired_chunk();
    // Warm every path once, outside the counted functions.
    actors.pubsub(&rt, chunk);
    actors.cast(&rt, chunk);
    actors.ractor(&rt, chunk);
    // The order turned every chunk, as in the paired rounds: a mailbox takes a new block
    // of its queue every other chunk, and each side must take its share of those.
    for i in 0..chunks {
        if i % 2 == 0 {
            profile_pubsub(&actors, &rt, chunk);
            profile_cast(&actors, &rt, chunk);
            profile_ractor(&actors, &rt, chunk);
        } else {
            profile_ractor(&actors, &rt, chunk);
            profile_cast(&actors, &rt, chunk);
            profile_pubsub(&actors, &rt, chunk);
        }
    }
    actors.stop();
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
            let (ps, topic) = (ps.clone(), topic.clone());
            fan_out(&rt, n, &ours, STREAMS, Some(BATCH), move |i| {
                ps.broadcast(&topic, i).unwrap();
            })
        })
    });
    g.bench_function("tokio_broadcast", |b| {
        b.iter_custom(|n| {
            let tx = tx.clone();
            fan_out(&rt, n, &theirs, STREAMS, Some(BATCH), move |i| {
                tx.send(i).unwrap();
            })
        })
    });
    g.finish();
    assert_eq!(ps.stats().dropped, 0, "a bench delivery was dropped");
}

criterion_group!(benches, actors, streams);

fn main() {
    if let Some(rounds) = std::env::var("PUBSUB_PAIRED")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        paired(rounds);
        return;
    }
    if let Some(chunks) = std::env::var("PUBSUB_PROFILE")
        .ok()
        .and_then(|r| r.parse().ok())
    {
        profile(chunks);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
