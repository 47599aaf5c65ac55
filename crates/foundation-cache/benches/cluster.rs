//! The partitioned cache and the near cache on a 3-node loopback cluster: this process is
//! node `a`, and it re-runs itself twice as nodes `b` and `c` (`FOUNDATION_BENCH_CHILD=1`).
//!
//! - **Remote get round trip**: `a` gets a key owned by `b`, one get at a time, beside a
//!   plain `Node::call` to an echo process on `b` (the landed remote call), alternated in
//!   rounds in the same run; the medians of the rounds' means. Each is timed from a task
//!   on the runtime (as a request handler or an actor calls, and as the landed remote
//!   call's ~40 us was measured: the budget row), and from the bench's own thread through
//!   `block_on` (a reported row: each reply then also wakes that thread).
//! - **64 concurrent getters**: 64 tasks on `a` get keys owned by `b` and `c` for 2 s;
//!   gets per second, beside 64 tasks making the echo call for as long.
//! - **Near-cache invalidation on all nodes**: `b` and `c` hold a key in their L1s, `a`
//!   writes it; the time until both L1s dropped it (each polls its L1 every 20 µs from a
//!   thread of its own and notes the machine clock, which the three processes share).
//!   p99 of 200.
//! - **Hit ratio under Zipf(1.0)**: 10,000 keys, each node reads 20,000 keys drawn by
//!   Zipf(1.0) at once (cache-aside: a miss puts the value); the share of reads answered
//!   on the reading node: by the near cache (an L1 of 1,000 entries, then a key the node
//!   owns) beside the partitioned cache alone (a key the node owns).
//!
//! The figures go to `target/bench-cache.json` for `cargo xtask bench`.
//!
//! Run with: `cargo bench -p foundation-cache --bench cluster`.

#![allow(clippy::unwrap_used, missing_docs)] // a bench: a failure should stop it loudly

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, ReplyPort, spawn};
use foundation_cache::{Cache, Multilevel, Partitioned, Ttl};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ChannelConfig, ClusterEvent, Node, NodeConfig};
use foundation_pubsub::PubSub;
use foundation_testkit::{Child, commands, say};
use futures::FutureExt;

const KEYS: u64 = 10_000;
const ZIPF_READS: usize = 20_000;
const L1_ENTRIES: u64 = 1_000;
const ROUNDS: usize = 7;
const PER_ROUND: usize = 2_000;
const GETTERS: usize = 64;
const INVALIDATIONS: usize = 200;

#[derive(Debug, RemoteMessage)]
#[remote(name = "bench.Echo")]
enum Echo {
    #[remote(tag = 1)]
    Echo(u64, ReplyPort<u64>),
}

struct EchoActor;

impl Actor for EchoActor {
    type Msg = Echo;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<Echo>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<Echo>, msg: Echo, (): &mut ()) -> Result<(), ActorError> {
        let Echo::Echo(n, port) = msg;
        let _ = port.send(n);
        Ok(())
    }
}

struct Setup {
    node: Node,
    kv: Partitioned<u64, u64>,
    near: Multilevel<u64, u64>,
}

async fn setup(name: &str) -> Setup {
    let config = NodeConfig::new(name, "bench-cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .channel(foundation_pubsub::CHANNEL, ChannelConfig::default());
    let node = Node::start(config).await.unwrap();
    let echo = spawn(EchoActor, ()).await.unwrap();
    node.export("echo", echo).unwrap();
    let ps = PubSub::start(&node, "bench").await.unwrap();
    let kv = Partitioned::builder("kv").start(&node).await.unwrap();
    let l2 = Partitioned::builder("near-l2").start(&node).await.unwrap();
    let near = Multilevel::builder("near")
        .l1_max_entries(L1_ENTRIES)
        .start(&ps, l2)
        .await
        .unwrap();
    Setup { node, kv, near }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Zipf(1.0) over `0..n`: the cumulative weights, for sampling by binary search.
fn zipf_cdf(n: u64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / k as f64;
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

/// Reads `ZIPF_READS` Zipf keys cache-aside; how many were answered on this node.
async fn zipf(s: &Setup, near: bool, seed: u64) -> u64 {
    let cdf = zipf_cdf(KEYS);
    let mut rng = fastrand::Rng::with_seed(seed);
    let me = s.node.name().to_owned();
    let mut local = 0;
    for _ in 0..ZIPF_READS {
        let x = rng.f64();
        let key = cdf.partition_point(|c| *c < x) as u64;
        let owned = s.kv.owner_of(&key).unwrap() == me;
        if near {
            let in_l1 = s.near.l1().contains(&key).await.unwrap();
            if in_l1 || owned {
                local += 1;
            }
            if s.near.get(&key).await.unwrap().is_none() {
                s.near.put(key, key, Ttl::Default).await.unwrap();
            }
        } else {
            if owned {
                local += 1;
            }
            if s.kv.get(&key).await.unwrap().is_none() {
                s.kv.put(key, key, Ttl::Default).await.unwrap();
            }
        }
    }
    local
}

async fn child() {
    let name = std::env::var("FOUNDATION_TEST_NODE_NAME").unwrap();
    let seed = std::env::var("FOUNDATION_TEST_NODE_SEEDS").unwrap();
    let s = setup(&name).await;
    let mut cluster = s.node.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            if let ClusterEvent::NodeUp(m) = e {
                say(&format!("up {}", m.id));
            }
        }
    });
    say(&format!("ready {name} {}", s.node.advertised()));
    s.node.connect(&seed.parse::<Peer>().unwrap());
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ring"] => {
                while s.kv.nodes().len() != 3 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                say("ring");
            }
            ["watch", key] => {
                let key: u64 = key.parse().unwrap();
                // Into the L1 (a read crossed by an invalidation does not fill it: again).
                while !s.near.l1().contains(&key).await.unwrap() {
                    s.near.get(&key).await.unwrap();
                }
                say(&format!("watching {key}"));
                // Polled every 20 us from a thread of its own: a busy poll (a task
                // yielding in a loop) took a core from each of `b` and `c`, on a machine
                // whose three node processes share two cores, and made the figure the
                // scheduler's.
                let near = s.near.clone();
                std::thread::spawn(move || {
                    while near.l1().contains(&key).now_or_never().unwrap().unwrap() {
                        std::thread::sleep(Duration::from_micros(20));
                    }
                    say(&format!("gone {key} {}", unix_nanos()));
                });
            }
            ["zipf", mode, seed] => {
                let local = zipf(&s, *mode == "near", seed.parse().unwrap()).await;
                say(&format!("zipf {local}"));
            }
            ["exit"] => break,
            _ => {}
        }
    }
    s.node.shutdown().await;
}

fn start_child(name: &str, seed: &str) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("FOUNDATION_BENCH_CHILD", "1");
    Child::run(cmd, name, &[("SEEDS", seed)])
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `PER_ROUND` gets of `key` (kind 0) or echo calls to `b` (kind 1), one at a time; the
/// mean in microseconds.
async fn remote_chunk(kind: usize, s: &Setup, key: u64) -> f64 {
    let t = Instant::now();
    for i in 0..PER_ROUND as u64 {
        remote_one(kind, s, key, i).await;
    }
    t.elapsed().as_secs_f64() * 1e6 / PER_ROUND as f64
}

async fn remote_one(kind: usize, s: &Setup, key: u64, i: u64) {
    if kind == 0 {
        assert_eq!(s.kv.get(&key).await.unwrap(), Some(7));
    } else {
        let r: u64 = s
            .node
            .call("b", "echo", |p| Echo::Echo(i, p), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r, i);
    }
}

/// `n` of one kind (see [`remote_chunk`]) after a warm-up, between the marker functions
/// [`cg_begin`] and [`cg_end`] (callgrind: `--zero-before=*cg_begin*
/// --dump-before=*cg_end*` counts every thread of this process in between).
async fn paired_one(kind: usize, s: Arc<Setup>, key: u64, n: usize) {
    for i in 0..100 {
        remote_one(kind, &s, key, i).await;
    }
    cg_begin(n);
    for i in 0..n as u64 {
        remote_one(kind, &s, key, i).await;
    }
    cg_end(n);
}

#[inline(never)]
fn cg_begin(n: usize) {
    std::hint::black_box(n);
}

#[inline(never)]
fn cg_end(n: usize) {
    std::hint::black_box(n);
}

/// Runs `op` from `GETTERS` tasks for 2 s; operations per second.
async fn throughput<F, Fut>(op: F) -> f64
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..GETTERS {
        let (stop, done, op) = (stop.clone(), done.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = t as u64;
            while !stop.load(Ordering::Relaxed) {
                op(i).await;
                done.fetch_add(1, Ordering::Relaxed);
                i += GETTERS as u64;
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / secs
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
    let s = rt.block_on(setup("a"));
    let seed = s.node.advertised().to_owned();
    let mut b = start_child("b", &seed);
    let mut c = start_child("c", &seed);
    b.expect_all(&["up a", "up c"]);
    c.expect_all(&["up a", "up b"]);
    for n in [&mut b, &mut c] {
        n.tell("ring");
        n.expect(|l| l == "ring");
    }
    let s = Arc::new(s);

    // Remote get round trip beside the echo call, alternated, from a runtime task and
    // from this thread.
    let [get_us, call_us, get_thread_us, call_thread_us] = rt.block_on(async {
        while s.kv.nodes().len() != 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let key = (0..).find(|k| s.kv.owner_of(k).unwrap() == "b").unwrap();
        s.kv.put(key, 7, Ttl::Default).await.unwrap();
        if let Ok(spec) = std::env::var("FOUNDATION_PAIRED_ONE") {
            // For callgrind: only `n` gets or echo calls from a task, between two marker
            // functions (see `paired_one`).
            let (kind, n) = spec.split_once(':').unwrap();
            let kind = usize::from(kind == "echo");
            let n: usize = n.parse().unwrap();
            let s = s.clone();
            tokio::spawn(async move { paired_one(kind, s, key, n).await })
                .await
                .unwrap();
            std::process::exit(0);
        }
        // [caller][kind]: the rounds' means; caller 0 a task, 1 this thread.
        let mut us = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        for round in 0..=ROUNDS {
            for k in 0..2 {
                let kind = (k + round) % 2;
                for (caller, us) in us.iter_mut().enumerate() {
                    let t = if caller == 0 {
                        let s = s.clone();
                        tokio::spawn(async move { remote_chunk(kind, &s, key).await })
                            .await
                            .unwrap()
                    } else {
                        remote_chunk(kind, &s, key).await
                    };
                    // Round 0 warms up.
                    if round > 0 {
                        us[kind].push(t);
                    }
                }
            }
        }
        for (caller, us) in us.iter().enumerate() {
            let ratios: Vec<f64> = us[0].iter().zip(&us[1]).map(|(g, c)| g / c).collect();
            println!(
                "{:<12} partitioned get {:.1} us, echo call {:.1} us, median ratio x{:.3}",
                ["runtime task", "bench thread"][caller],
                median(us[0].clone()),
                median(us[1].clone()),
                median(ratios)
            );
        }
        [
            median(us[0][0].clone()),
            median(us[0][1].clone()),
            median(us[1][0].clone()),
            median(us[1][1].clone()),
        ]
    });

    // 64 concurrent getters, beside 64 concurrent echo callers.
    let (gets_per_s, calls_per_s) = rt.block_on(async {
        let me = s.node.name().to_owned();
        let remote: Arc<Vec<u64>> = Arc::new(
            (0..KEYS)
                .filter(|k| s.kv.owner_of(k).unwrap() != me)
                .collect(),
        );
        s.kv.put_many(remote.iter().map(|k| (*k, *k)), Ttl::Default)
            .await
            .unwrap();
        let (s1, keys) = (s.clone(), remote.clone());
        let gets = throughput(move |i| {
            let (s, keys) = (s1.clone(), keys.clone());
            async move {
                let k = keys[(i as usize) % keys.len()];
                assert_eq!(s.kv.get(&k).await.unwrap(), Some(k));
            }
        })
        .await;
        let s2 = s.clone();
        let calls = throughput(move |i| {
            let s = s2.clone();
            async move {
                let to = if i % 2 == 0 { "b" } else { "c" };
                let r: u64 = s
                    .node
                    .call(to, "echo", |p| Echo::Echo(i, p), Duration::from_secs(5))
                    .await
                    .unwrap();
                assert_eq!(r, i);
            }
        })
        .await;
        (gets, calls)
    });
    println!(
        "64 concurrent getters: {gets_per_s:.0} gets/s; echo callers: {calls_per_s:.0} calls/s"
    );

    // Near-cache invalidation on all nodes.
    let mut lat = Vec::new();
    // The first writes' invalidations must have landed before the watched ones.
    for i in 0..INVALIDATIONS as u64 {
        rt.block_on(s.near.put(1_000_000 + i, 1, Ttl::Default))
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..INVALIDATIONS as u64 {
        let key = 1_000_000 + i;
        for n in [&mut b, &mut c] {
            n.tell(&format!("watch {key}"));
            n.expect(|l| l == format!("watching {key}"));
        }
        let t0 = unix_nanos();
        rt.block_on(s.near.put(key, 2, Ttl::Default)).unwrap();
        let mut last = 0;
        for n in [&mut b, &mut c] {
            let gone = n.expect(|l| l.starts_with(&format!("gone {key} ")));
            last = last.max(gone.rsplit(' ').next().unwrap().parse::<u64>().unwrap());
        }
        lat.push(last.saturating_sub(t0) as f64 / 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let (inv_p50, inv_p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!("near-cache invalidation on all nodes: p50 {inv_p50:.3} ms, p99 {inv_p99:.3} ms");

    // Zipf(1.0): near cache, then the partitioned cache alone (each on all three nodes at
    // once).
    let mut ratio = |mode: &str| {
        rt.block_on(s.kv.clear()).unwrap();
        rt.block_on(s.near.clear()).unwrap();
        b.tell(&format!("zipf {mode} 2"));
        c.tell(&format!("zipf {mode} 3"));
        let ours = rt.block_on(zipf(&s, mode == "near", 1));
        let mut local = ours;
        for n in [&mut b, &mut c] {
            let got = n.expect(|l| l.starts_with("zipf "));
            local += got.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
        }
        local as f64 * 100.0 / (3 * ZIPF_READS) as f64
    };
    let near_pct = ratio("near");
    let l2_pct = ratio("l2");
    println!(
        "reads answered on the node, Zipf(1.0): near cache {near_pct:.1}%, partitioned alone {l2_pct:.1}%"
    );

    let json = format!(
        "{{\"figures\":[\
         {{\"name\":\"partitioned cache get of a remote key, round trip\",\"value\":{get_us:.1},\"unit\":\"us\",\"competitor\":\"remote call (echo) in the same run, both from a runtime task\",\"competitor_value\":{call_us:.1}}},\
         {{\"name\":\"partitioned cache get of a remote key, round trip, from the bench thread\",\"value\":{get_thread_us:.1},\"unit\":\"us\",\"competitor\":\"remote call (echo) in the same run, from the bench thread\",\"competitor_value\":{call_thread_us:.1}}},\
         {{\"name\":\"partitioned cache get, 64 concurrent getters\",\"value\":{gets_per_s:.0},\"unit\":\"gets/s\",\"competitor\":\"64 concurrent remote calls (echo)\",\"competitor_value\":{calls_per_s:.0}}},\
         {{\"name\":\"near-cache invalidation on all nodes, p99\",\"value\":{inv_p99:.3},\"unit\":\"ms\"}},\
         {{\"name\":\"near-cache reads answered on the node, Zipf(1.0), 3 nodes\",\"value\":{near_pct:.1},\"unit\":\"%\",\"competitor\":\"partitioned cache alone\",\"competitor_value\":{l2_pct:.1}}}]}}"
    );
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(std::path::Path::to_path_buf))
        .unwrap();
    std::fs::write(target.join("bench-cache.json"), json).unwrap();
    b.tell("exit");
    c.tell("exit");
    rt.block_on(s.node.shutdown());
}
