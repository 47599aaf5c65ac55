//! The cluster-wide registry on a 3-node loopback cluster: this process is node `a`, and
//! it re-runs itself twice as nodes `b` and `c` (`FOUNDATION_BENCH_CHILD=1`).
//!
//! - Criterion group `cluster_register`: `foundation` is [`ClusterRegistry::register`] on
//!   `a` with two peers (the entry, its export, its stop hook, and the delta queued for
//!   both peers); `local_registry` is the local [`Registry::register`] of the same names,
//!   in the same run, to show what the cluster adds. Only registrations are timed; the
//!   names are unregistered between batches.
//! - Criterion group `consistent_register`: `foundation` is
//!   [`ConsistentRegistry::register`] on `a`, a linearizable write through the 3-voter Raft
//!   group (names released between batches, untimed), beside `cluster_register`'s figure.
//! - Visibility: `a` registers 1,000 names, 2 ms apart; `b` and `c` note the wall-clock
//!   time each name's `Registered` event reaches them. Per name, the time from just before
//!   `register` on `a` to the later of the two; p50 and p99 go to
//!   `target/bench-registry.json` (all three processes share one machine clock).
//!
//! - Criterion group `distributed_start`: `singleton_placed` is
//!   [`DistributedSupervisor::place_child`] of a singleton on `a`, returning once the child
//!   is recorded here (its record queued for the peers, the loop woken), the counterpart of
//!   a registration (the wait for it to answer, and its termination, untimed), one call
//!   at a time; `singleton_placed_batched` is the same timed as `cluster_register` is:
//!   back-to-back calls in batches of 64, only the calls timed (the waits for the
//!   children to answer and their termination between batches, untimed);
//!   `registration_one_at_a_time` is [`ClusterRegistry::register`] timed as
//!   `singleton_placed` is (one call per async iteration, the name unregistered and a
//!   300 µs pause between calls, untimed: each call meets a system gone idle); `singleton`
//!   is [`DistributedSupervisor::start_child`] of a singleton on `a`, returning once the child
//!   answers by name and is recorded, wherever rendezvous placed it (two of three times on
//!   another node: a round trip, a spawn there, the name and the record back);
//!   `singleton_here` and `singleton_remote` are the same for ids whose owner is `a`, and
//!   another node (the round trip by design: the owner starts it);
//!   `pinned_here_among_1000_live` is `pinned_here` with 1,000 other singletons running
//!   (a plan looks at the children that changed only, so it should cost what
//!   `pinned_here` costs);
//!   `pinned_here` is the same for a child pinned to `a` (a spawn under a local
//!   supervisor, a registration, a record sent to both peers); `local_supervisor_only` is
//!   that local supervisor and its child alone (spawned, shut down untimed). Children are
//!   terminated between iterations, untimed. Beside `cluster_register/foundation`.
//! - Failover: a singleton on `b` or `c`, that node killed (SIGKILL); *detection* is from
//!   the kill to `a` declaring the node down, *restart* from there to the singleton
//!   answering on another node (the killed node's address refuses connections, which
//!   proves it gone: no wait for the quorum's `start_after`). One run; to
//!   `target/bench-registry.json`.
//! - Migration: a singleton holding 1 MB of state ([`Handoff`]), moved 20 times between
//!   the nodes with [`DistributedSupervisor::migrate`]; each from the call to the new
//!   incarnation answering a call (hold, drain, state sent, restored, name registered,
//!   held messages released). p50 and max to `target/bench-registry.json`.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-registry --bench cluster`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use foundation_actors::ChildSpec;
use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, spawn};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ClusterEvent, Node, NodeConfig};
use foundation_registry::cluster::Options;
use foundation_registry::consistent::{ConsistentOptions, ConsistentRegistry};
use foundation_registry::distributed::{
    ChildName, DistributedSpec, DistributedSupervisor, Handoff,
};
use foundation_registry::placement::{ChildPlacement, Placement, Rendezvous};
use foundation_registry::{ClusterRegistry, Registry, RegistryEvent};
use foundation_testkit::{Child, commands, say};

#[derive(Debug, RemoteMessage)]
#[remote(name = "bench.Named")]
enum Named {
    #[remote(tag = 1)]
    Hello,
    #[remote(tag = 2)]
    Ping(foundation_actors::ReplyPort<()>),
}

#[derive(Clone)]
struct Idle;

impl Actor for Idle {
    type Msg = Named;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<Named>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<Named>, msg: Named, (): &mut ()) -> Result<(), ActorError> {
        if let Named::Ping(port) = msg {
            let _ = port.send(());
        }
        Ok(())
    }
}

type Names = ClusterRegistry<String, Named, ()>;

/// A distributed child whose state (`size` bytes) moves with it ([`Handoff`]).
#[derive(Clone)]
struct Heavy;

impl Actor for Heavy {
    type Msg = Named;
    type State = Vec<u8>;
    type Args = usize;
    async fn init(&self, _: &Addr<Named>, size: usize) -> Result<Vec<u8>, ActorError> {
        Ok(vec![7; size])
    }
    async fn handle(&self, _: &Addr<Named>, msg: Named, _: &mut Vec<u8>) -> Result<(), ActorError> {
        if let Named::Ping(port) = msg {
            let _ = port.send(());
        }
        Ok(())
    }
}

impl Handoff for Heavy {
    type Snapshot = Vec<u8>;
    fn export(&self, state: Vec<u8>) -> Vec<u8> {
        state
    }
    async fn restore(
        &self,
        _: &Addr<Named>,
        state: Vec<u8>,
        _: usize,
    ) -> Result<Vec<u8>, ActorError> {
        Ok(state)
    }
}

/// The distributed supervisor every node runs, and its registry.
async fn supervisor(node: &Node) -> DistributedSupervisor<Named> {
    let names: ClusterRegistry<ChildName, Named> =
        ClusterRegistry::start(node, "bench-dsup").await.unwrap();
    let spec = DistributedSpec::new("bench")
        .kind("idle", |(): ()| ChildSpec::new("idle", Idle, ()))
        .handoff_kind("heavy", |size: usize| (Heavy, size));
    DistributedSupervisor::start(node, &names, spec)
        .await
        .unwrap()
}

const VISIBILITY_NAMES: usize = 1_000;

/// How many planned migrations of the 1 MB child are timed.
const MIGRATIONS: usize = 20;

/// Which singletons a `distributed_start` case starts: any, or only those whose
/// rendezvous owner among `a`, `b`, `c` is this node (`a`), or another node.
#[derive(Clone, Copy)]
enum Owner {
    Any,
    Here,
    Remote,
}

impl Owner {
    fn fits(self, id: &str) -> bool {
        let top = ["a", "b", "c"]
            .into_iter()
            .max_by_key(|node| Rendezvous::score(node, id.as_bytes()))
            .unwrap();
        match self {
            Self::Any => true,
            Self::Here => top == "a",
            Self::Remote => top != "a",
        }
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Nodes `b` and `c`: report when each `vis-` name becomes visible here.
async fn child() {
    let name = std::env::var("FOUNDATION_TEST_NODE_NAME").unwrap();
    let seed = std::env::var("FOUNDATION_TEST_NODE_SEEDS").unwrap();
    let node = Node::start(NodeConfig::new(&name, "bench").listen("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    // Room for the criterion phase's flood of events, so the `vis-` ones are never missed.
    let options = Options::new("bench").events(1 << 16);
    let names: Names = ClusterRegistry::start_with(&node, options).await.unwrap();
    let mut events = names.subscribe();
    let _locks = locks(&node).await;
    let _sup = supervisor(&node).await;
    let mut cluster = node.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            if let ClusterEvent::NodeUp(m) = e {
                say(&format!("up {}", m.id));
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(RegistryEvent::Registered { key, .. }) if key.starts_with("vis-") => {
                    say(&format!("seen {key} {}", unix_nanos()));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    say(&format!("lagged {n}"));
                }
                Err(_) => return,
            }
        }
    });
    // Ready before dialing: a line printed before `ready` would be skipped by the parent's
    // wait for it.
    say(&format!("ready {name} {}", node.advertised()));
    node.connect(&seed.parse::<Peer>().unwrap());
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        if line == "exit" {
            break;
        }
    }
    node.shutdown().await;
}

type Locks = ConsistentRegistry<String, Named, ()>;

async fn locks(node: &Node) -> Locks {
    ConsistentRegistry::start(node, ConsistentOptions::new("bench-locks"))
        .await
        .unwrap()
}

fn start_child(name: &str, seed: &str) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("FOUNDATION_BENCH_CHILD", "1");
    Child::run(cmd, name, &[("SEEDS", seed)])
}

/// Runs `iters` registrations in batches of up to `keys.len()`, timing only `register`;
/// `unregister` frees each batch's keys, untimed, then it pauses for `pause`.
fn in_batches(
    iters: u64,
    keys: &[String],
    mut register: impl FnMut(&String),
    mut unregister: impl FnMut(&String),
    pause: Duration,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = usize::try_from(iters - done)
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let t = Instant::now();
        keys[..n].iter().for_each(&mut register);
        total += t.elapsed();
        keys[..n].iter().for_each(&mut unregister);
        done += n as u64;
        std::thread::sleep(pause);
    }
    total
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("FOUNDATION_BENCH_CHILD").is_ok() {
        rt.block_on(child());
        return;
    }

    let (node, names, addr, locks, sup) = rt.block_on(async {
        let node =
            Node::start(NodeConfig::new("a", "bench").listen("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let names: Names = ClusterRegistry::start(&node, "bench").await.unwrap();
        let addr = spawn(Idle, ()).await.unwrap();
        let locks = locks(&node).await;
        let sup = supervisor(&node).await;
        (node, names, addr, locks, sup)
    });
    let seed = node.advertised().to_owned();
    let mut b = start_child("b", &seed);
    let mut c = start_child("c", &seed);
    b.expect_all(&["up a", "up c"]);
    c.expect_all(&["up a", "up b"]);
    rt.block_on(async {
        while node.members().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    let mut crit = Criterion::default().configure_from_args();
    {
        let keys: Vec<String> = (0..4096).map(|i| format!("bench-{i:05}")).collect();
        let local: Registry<String, Named, ()> = Registry::unique();
        let mut g = crit.benchmark_group("cluster_register");
        g.bench_function("foundation", |bch| {
            let _rt = rt.enter();
            bch.iter_custom(|iters| {
                in_batches(
                    iters,
                    &keys,
                    |k| names.register(k.clone(), &addr, ()).unwrap(),
                    |k| {
                        names.unregister(k);
                    },
                    // Let the peers keep up, as a real registration rate would.
                    Duration::from_millis(1),
                )
            });
        });
        g.bench_function("local_registry", |bch| {
            bch.iter_custom(|iters| {
                in_batches(
                    iters,
                    &keys,
                    |k| local.register(k.clone(), &addr, ()).unwrap(),
                    |k| {
                        local.unregister(k, &addr);
                    },
                    Duration::ZERO,
                )
            });
        });
        g.finish();
    }

    rt.block_on(locks.wait_ready(Duration::from_secs(30)))
        .unwrap();
    {
        let mut g = crit.benchmark_group("consistent_register");
        g.sample_size(20);
        g.bench_function("foundation", |bch| {
            bch.to_async(&rt).iter_custom(|iters| {
                let (locks, addr) = (locks.clone(), addr.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let key = format!("lock-{i}");
                        let t = Instant::now();
                        locks.register(key.clone(), &addr, ()).await.unwrap();
                        total += t.elapsed();
                        locks.unregister(&key).await.unwrap();
                    }
                    total
                }
            });
        });
        g.finish();
    }

    rt.block_on(async {
        while sup.members().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    {
        let mut g = crit.benchmark_group("distributed_start");
        g.sample_size(20);
        // Ids never repeat across samples: a start never waits for an earlier child's
        // name to go.
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        // `placed`: only `place_child` is timed (the child recorded here, its record
        // queued for the peers, the loop woken); the wait for it to answer is not.
        for (label, pinned, owner, placed) in [
            ("singleton_placed", false, Owner::Any, true),
            ("singleton", false, Owner::Any, false),
            ("singleton_here", false, Owner::Here, false),
            ("singleton_remote", false, Owner::Remote, false),
            ("pinned_here", true, Owner::Any, false),
        ] {
            g.bench_function(label, |bch| {
                bch.to_async(&rt).iter_custom(|iters| {
                    let (sup, next) = (sup.clone(), next.clone());
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let id = loop {
                                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let id = format!("{label}-{n}");
                                if owner.fits(&id) {
                                    break id;
                                }
                            };
                            let placement = if pinned {
                                Placement::Pinned("a".into())
                            } else {
                                Placement::Singleton
                            };
                            let spec = ChildPlacement::new(id.clone(), placement);
                            if placed {
                                let t = Instant::now();
                                let placed = sup.place_child("idle", &(), spec).unwrap();
                                total += t.elapsed();
                                sup.wait_child(&placed).await.unwrap();
                            } else {
                                let t = Instant::now();
                                sup.start_child("idle", &(), spec).await.unwrap();
                                total += t.elapsed();
                            }
                            sup.terminate_child(&id).await.unwrap();
                        }
                        total
                    }
                });
            });
        }
        // `singleton_placed` timed as `cluster_register/foundation` is: back-to-back calls
        // in batches (here of `PLACED_BATCH`), only the calls timed; the waits for the
        // children to answer and their termination between batches, untimed.
        const PLACED_BATCH: usize = 64;
        g.bench_function("singleton_placed_batched", |bch| {
            bch.to_async(&rt).iter_custom(|iters| {
                let (sup, next) = (sup.clone(), next.clone());
                async move {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = usize::try_from(iters - done)
                            .unwrap_or(usize::MAX)
                            .min(PLACED_BATCH);
                        let specs: Vec<ChildPlacement> = (0..n)
                            .map(|_| {
                                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                ChildPlacement::new(format!("batched-{n}"), Placement::Singleton)
                            })
                            .collect();
                        let mut placed = Vec::with_capacity(n);
                        let t = Instant::now();
                        for spec in specs {
                            placed.push(sup.place_child("idle", &(), spec).unwrap());
                        }
                        total += t.elapsed();
                        for p in &placed {
                            sup.wait_child(p).await.unwrap();
                        }
                        for p in &placed {
                            sup.terminate_child(p.id()).await.unwrap();
                        }
                        done += n as u64;
                    }
                    total
                }
            });
        });
        // A registration timed as `singleton_placed` is: one call at a time from an async
        // iteration, the name unregistered and a pause between calls untimed, so that each
        // call meets a system gone idle as each `place_child` does (its untimed part, the
        // wait for the child and its termination, takes a few hundred microseconds).
        g.bench_function("registration_one_at_a_time", |bch| {
            bch.to_async(&rt).iter_custom(|iters| {
                let (names, addr, next) = (names.clone(), addr.clone(), next.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let key = format!("one-{n}");
                        let t = Instant::now();
                        names.register(key.clone(), &addr, ()).unwrap();
                        total += t.elapsed();
                        names.unregister(&key);
                        tokio::time::sleep(Duration::from_micros(300)).await;
                    }
                    total
                }
            });
        });
        // The same pinned start with 1,000 other children live (spread over the three
        // nodes): a plan looks only at the children that changed, so about `pinned_here`.
        const LIVE: usize = 1_000;
        rt.block_on(async {
            for i in 0..LIVE {
                let spec = ChildPlacement::new(format!("live-{i}"), Placement::Singleton);
                sup.start_child("idle", &(), spec).await.unwrap();
            }
        });
        g.bench_function("pinned_here_among_1000_live", |bch| {
            bch.to_async(&rt).iter_custom(|iters| {
                let (sup, next) = (sup.clone(), next.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let id = format!("among-{n}");
                        let spec = ChildPlacement::new(id.clone(), Placement::Pinned("a".into()));
                        let t = Instant::now();
                        sup.start_child("idle", &(), spec).await.unwrap();
                        total += t.elapsed();
                        sup.terminate_child(&id).await.unwrap();
                    }
                    total
                }
            });
        });
        rt.block_on(async {
            for i in 0..LIVE {
                sup.terminate_child(&format!("live-{i}")).await.unwrap();
            }
        });
        // What a pinned start spends in the local supervisor alone: one supervisor and
        // its one child spawned (the rest is the loop, the name and the record).
        g.bench_function("local_supervisor_only", |bch| {
            bch.to_async(&rt).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let spec = foundation_actors::SupervisorSpec::new(
                        "bench-local",
                        foundation_actors::Strategy::OneForOne,
                    )
                    .child(ChildSpec::new("idle", Idle, ()));
                    let t = Instant::now();
                    let sup = foundation_actors::Supervisor::start(spec).await.unwrap();
                    total += t.elapsed();
                    sup.shutdown().await;
                }
                total
            });
        });
        g.finish();
    }

    // Visibility on every node.
    let mut started = HashMap::new();
    for i in 0..VISIBILITY_NAMES {
        let key = format!("vis-{i}");
        started.insert(key.clone(), unix_nanos());
        names.register(key, &addr, ()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut last: HashMap<String, u128> = HashMap::new();
    for child in [&mut b, &mut c] {
        for _ in 0..VISIBILITY_NAMES {
            let line = child.expect(|l| l.starts_with("seen "));
            let mut parts = line.split(' ').skip(1);
            let key = parts.next().unwrap().to_owned();
            let at: u128 = parts.next().unwrap().parse().unwrap();
            let e = last.entry(key).or_insert(0);
            *e = (*e).max(at);
        }
    }
    let mut ms: Vec<f64> = last
        .iter()
        .map(|(k, at)| at.saturating_sub(started[k]) as f64 / 1e6)
        .collect();
    ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
    );
    println!(
        "cluster name visible on all 3 nodes: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms \
         over {} names",
        ms.len()
    );

    // Planned migration of a child holding 1 MB of state: from `migrate` to the new
    // incarnation answering a call, back and forth between nodes.
    let mut migrations: Vec<f64> = rt.block_on(async {
        let id = "heavy-0";
        let at = sup
            .start_child(
                "heavy",
                &(1_usize << 20),
                ChildPlacement::new(id, Placement::Singleton),
            )
            .await
            .unwrap();
        let mut here = at.node().to_owned();
        let mut ms = Vec::new();
        for i in 0..MIGRATIONS {
            let to = ["a", "b", "c"]
                .into_iter()
                .filter(|n| *n != here)
                .nth(i % 2)
                .unwrap();
            let t = Instant::now();
            let at = sup.migrate(id, to).await.unwrap();
            assert_eq!(at.node(), to);
            let moved = t.elapsed();
            sup.call(id, Named::Ping, Duration::from_secs(5))
                .await
                .unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            if std::env::var("FOUNDATION_BENCH_VERBOSE").is_ok() {
                println!(
                    "migration {i} {here}->{to}: migrate {:.2} ms, then answering {:.2} ms",
                    moved.as_secs_f64() * 1e3,
                    (t.elapsed() - moved).as_secs_f64() * 1e3
                );
            }
            here = to.to_owned();
        }
        sup.terminate_child(id).await.unwrap();
        ms
    });
    migrations.sort_by(f64::total_cmp);
    let (migrate_p50, migrate_max) = (
        percentile(&migrations, 0.5),
        migrations[migrations.len() - 1],
    );
    println!(
        "planned migration of a child with 1 MB of state, migrate to answering: p50 \
         {migrate_p50:.1} ms, max {migrate_max:.1} ms over {MIGRATIONS} moves"
    );

    // Failover of a singleton after kill -9 of its node: detection, then restart.
    let (detection, restart, victim) = rt.block_on(async {
        let mut i = 0;
        let owner = loop {
            let id = format!("failover-{i}");
            let at = sup
                .start_child(
                    "idle",
                    &(),
                    ChildPlacement::new(id.clone(), Placement::Singleton),
                )
                .await
                .unwrap();
            if at.node() != "a" {
                break (id, at.node().to_owned());
            }
            sup.terminate_child(&id).await.unwrap();
            i += 1;
        };
        let (id, victim) = owner;
        let mut events = node.subscribe();
        let killed = Instant::now();
        if victim == "b" {
            b.kill()
        } else {
            c.kill()
        }
        let detected = loop {
            match events.recv().await {
                Ok(ClusterEvent::NodeDown { member, .. }) if member.id == victim => {
                    break Instant::now();
                }
                Ok(_) => {}
                Err(e) => panic!("membership events ended: {e}"),
            }
        };
        loop {
            let moved = sup.whereis(&id).is_some_and(|at| at.node() != victim);
            if moved
                && sup
                    .call(&id, Named::Ping, Duration::from_secs(1))
                    .await
                    .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (detected - killed, detected.elapsed(), victim)
    });
    let (detection_ms, restart_ms) = (detection.as_secs_f64() * 1e3, restart.as_secs_f64() * 1e3);
    println!(
        "singleton failover after kill -9: detection {detection_ms:.1} ms, restart {restart_ms:.1} ms \
         (the node proved gone by its refused address: no quorum wait)"
    );
    let json = serde_json::json!({
        "figures": [
            { "name": "cluster name visible on all nodes, p50", "value": p50, "unit": "ms" },
            { "name": "cluster name visible on all nodes, p99", "value": p99, "unit": "ms" },
            { "name": "singleton failover after kill -9, detection", "value": detection_ms, "unit": "ms" },
            { "name": "singleton failover after kill -9, restart", "value": restart_ms, "unit": "ms" },
            { "name": "planned migration of a 1 MB child, migrate to answering, p50", "value": migrate_p50, "unit": "ms" },
            { "name": "planned migration of a 1 MB child, migrate to answering, max", "value": migrate_max, "unit": "ms" },
        ]
    });
    // The target directory the bench binary runs from (`<target>/release/deps/<bench>`):
    // right wherever the checkout was when it was built.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(std::path::Path::to_path_buf))
        .unwrap();
    std::fs::write(
        target.join("bench-registry.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    // The killed one is gone; tell the other.
    if victim == "b" {
        c.tell("exit");
    } else {
        b.tell("exit");
    }
    rt.block_on(node.shutdown());
}
