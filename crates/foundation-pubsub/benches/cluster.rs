//! Pubsub on a 3-node loopback cluster: this process is node `a`, and it re-runs itself
//! twice as nodes `b` and `c` (`FOUNDATION_BENCH_CHILD=1`); `a` publishes.
//!
//! - Throughput: `a` broadcasts 2,000 messages as fast as it can; each node notes the
//!   wall-clock time its 1,000 subscribers have all read all of them. Deliveries per
//!   second: 3 × 1,000 × 2,000 over the time from the first broadcast to the last node's
//!   end. Once with 1,000 `Stream` subscribers per node, once with 1,000 actors.
//! - Latency: `a` broadcasts 500 messages 1 ms apart, each carrying its send time; one
//!   subscriber on `b` and one on `c` note each one's arrival. p50 and p99 over both (all
//!   three processes share one machine clock).
//! - A call under a broadcast flood: the p99 of 1,000 small calls from `a` to a process on
//!   `b` (on the node's `default` channel), idle, then while `a` floods broadcasts of 1 KiB
//!   to 100 subscribers on `b` (on the `pubsub` channel, declared with
//!   `foundation_pubsub::channel_config`, as fast as it takes them: a send it refuses for a
//!   full outbox waits a millisecond). The publisher runs with `spawn_low_priority`, as the
//!   docs advise for a flood (the judged row), then again as a plain task on `a`'s runtime
//!   (a row reported beside it), each with its own idle p99 just before. Five runs of
//!   each; the table takes the run of the median ratio. `FOUNDATION_BENCH_FLOOD_ONLY=1`:
//!   this figure alone (printed, not written); `FOUNDATION_BENCH_FLOOD_RUNS=n`: n runs;
//!   `FOUNDATION_BENCH_PUBSUB=normal`: the channel at normal priority with the default
//!   outbox, to compare.
//!
//! The figures go to `target/bench-pubsub.json` for `cargo xtask bench`, which then runs
//! the BEAM's side (Phoenix.PubSub's design in Erlang, `bench/beam/`, on three BEAM nodes)
//! and sets it beside them; `cargo xtask beam` runs that side alone.
//!
//! Run with: `cargo bench -p foundation-pubsub --bench cluster`.

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, ReplyPort, spawn};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ChannelConfig, ClusterEvent, Node, NodeConfig};
use foundation_pubsub::{BufferConfig, Overflow, PubSub, Topic};
use foundation_testkit::{Child, commands, say};

const SUBSCRIBERS: usize = 1_000;
const MESSAGES: usize = 2_000;
const PINGS: usize = 500;
/// Calls per p99 of the call-under-flood figure.
const CALLS: usize = 1_000;
/// Subscribers of the flood on `b`, and the size of each broadcast.
const FLOOD_SUBSCRIBERS: usize = 100;
const FLOOD_BYTES: usize = 1024;
/// Runs of the call-under-flood figure (`FOUNDATION_BENCH_FLOOD_RUNS`).
const FLOOD_RUNS: usize = 5;

/// What `b`'s `echo` process answers: the small call of the flood figure.
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
        let Echo::Echo(v, port) = msg;
        let _ = port.send(v);
        Ok(())
    }
}

/// `n` small calls to `b`'s `echo`, one after another: each one's latency in microseconds.
async fn call_latencies(node: &Node, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let start = std::time::Instant::now();
        let v: u64 = node
            .call("b", "echo", |p| Echo::Echo(i, p), Duration::from_secs(30))
            .await
            .unwrap();
        out.push(start.elapsed().as_secs_f64() * 1e6);
        assert_eq!(v, i);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// CPU time this process's threads have used so far, in ms, summed by thread name (Linux:
/// `/proc/self/task`; empty elsewhere): which threads a flood's work ran on.
fn thread_cpu() -> String {
    let mut by_name: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return String::new();
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // The fields after the name (which ends at the last `)`), from the state on:
        // utime and stime are the 12th and 13th, in clock ticks (100 a second).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let f: Vec<&str> = after.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let ticks = field(11) + field(12);
        *by_name.entry(name.trim().to_owned()).or_default() += ticks * 10;
    }
    by_name
        .iter()
        .filter(|(_, ms)| **ms > 0)
        .map(|(n, ms)| format!("{n} {ms} ms"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unix_nanos() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// An actor subscriber: counts what it handles; the last of a node's to handle all
/// `MESSAGES` calls `done` with the time.
struct Counter {
    left: Arc<AtomicUsize>,
    done: Arc<dyn Fn(u64) + Send + Sync>,
}

impl Actor for Counter {
    type Msg = u64;
    type State = usize;
    type Args = ();
    async fn init(&self, _: &Addr<u64>, (): ()) -> Result<usize, ActorError> {
        Ok(0)
    }
    async fn handle(&self, _: &Addr<u64>, _: u64, n: &mut usize) -> Result<(), ActorError> {
        *n += 1;
        if *n == MESSAGES && self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            (self.done)(unix_nanos());
        }
        Ok(())
    }
}

/// 1,000 actor subscribers of `bench.actors`.
async fn actor_subscribers(ps: &PubSub, done: Arc<dyn Fn(u64) + Send + Sync>) {
    let topic: Topic<u64> = Topic::new("bench.actors").unwrap();
    let left = Arc::new(AtomicUsize::new(SUBSCRIBERS));
    for _ in 0..SUBSCRIBERS {
        let counter = Counter {
            left: left.clone(),
            done: done.clone(),
        };
        let addr = spawn(counter, ()).await.unwrap();
        let room = BufferConfig::new(MESSAGES * 2, Overflow::DropNewest);
        ps.subscribe_with(&topic, &addr, room).unwrap();
    }
}

/// A node's settings: the `pubsub` channel declared as `foundation_pubsub::channel_config`
/// says (`FOUNDATION_BENCH_PUBSUB=normal`: at normal priority, with the default outbox, to
/// compare; `FOUNDATION_BENCH_PUBSUB_PENDING=<bytes>`: another outbox limit).
fn config(name: &str) -> NodeConfig {
    let mut channel = match std::env::var("FOUNDATION_BENCH_PUBSUB").as_deref() {
        Ok("normal") => ChannelConfig::default(),
        _ => foundation_pubsub::channel_config(),
    };
    if let Some(bytes) = std::env::var("FOUNDATION_BENCH_PUBSUB_PENDING")
        .ok()
        .and_then(|b| b.parse().ok())
    {
        channel = channel.max_pending(bytes);
    }
    NodeConfig::new(name, "bench")
        .listen("127.0.0.1:0".parse().unwrap())
        .channel(foundation_pubsub::CHANNEL, channel)
}

/// 1,000 subscribers of `load`; `done` is said with the time the last of them has read
/// `MESSAGES` messages.
fn load_subscribers(ps: &PubSub) {
    let topic: Topic<u64> = Topic::new("bench.load").unwrap();
    let left = Arc::new(AtomicUsize::new(SUBSCRIBERS));
    for _ in 0..SUBSCRIBERS {
        let room = BufferConfig::new(MESSAGES * 2, Overflow::DropNewest);
        let mut sub = ps.subscribe_stream_with(&topic, room).unwrap();
        let left = left.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while sub.recv().await.is_some() {
                n += 1;
                if n == MESSAGES && left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    say(&format!("done {}", unix_nanos()));
                }
            }
        });
    }
}

/// Nodes `b` and `c`.
async fn child() {
    let name = std::env::var("FOUNDATION_TEST_NODE_NAME").unwrap();
    let seed = std::env::var("FOUNDATION_TEST_NODE_SEEDS").unwrap();
    let node = Node::start(config(&name)).await.unwrap();
    let ps = PubSub::start(&node, "bench").await.unwrap();
    load_subscribers(&ps);
    actor_subscribers(&ps, Arc::new(|at| say(&format!("adone {at}")))).await;
    if name == "b" {
        let echo = spawn(EchoActor, ()).await.unwrap();
        node.export("echo", echo).unwrap();
        let flood: Topic<Vec<u8>> = Topic::new("bench.flood").unwrap();
        for _ in 0..FLOOD_SUBSCRIBERS {
            let mut sub = ps.subscribe_stream(&flood).unwrap();
            tokio::spawn(async move { while sub.recv().await.is_some() {} });
        }
    }
    let mut pings = ps
        .subscribe_stream(&Topic::<u64>::new("bench.ping").unwrap())
        .unwrap();
    tokio::spawn(async move {
        while let Some(sent) = pings.recv().await {
            say(&format!("lat {}", unix_nanos().saturating_sub(*sent)));
        }
    });
    let mut cluster = node.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            if let ClusterEvent::NodeUp(m) = e {
                say(&format!("up {}", m.id));
            }
        }
    });
    say(&format!("ready {name} {}", node.advertised()));
    node.connect(&seed.parse::<Peer>().unwrap());
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        if line == "exit" {
            break;
        }
        if line == "stats" {
            let s = ps.stats();
            say(&format!(
                "stats received {} remote_dropped {} dropped {} delivered {}; cpu {}",
                s.received,
                s.remote_dropped,
                s.dropped,
                s.delivered,
                thread_cpu()
            ));
        }
    }
    node.shutdown().await;
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

/// The p99 of `CALLS` small calls from `a` to `b`'s `echo`, idle, then while `a` floods
/// `flood` (1 KiB broadcasts to `FLOOD_SUBSCRIBERS` stream subscribers on `b`) as fast as
/// the `pubsub` channel takes them, from a publisher on `spawn_low_priority` (`low`) or on
/// the runtime: printed with the p50 and p90, returned (idle, during the flood), in
/// microseconds.
async fn flood_figure(node: &Node, ps: &PubSub, flood: &Topic<Vec<u8>>, low: bool) -> (f64, f64) {
    while ps.subscribers_count(flood) < FLOOD_SUBSCRIBERS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _warm = call_latencies(node, 200).await;
    let idle = call_latencies(node, CALLS).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = {
        let (ps, stop, flood) = (ps.clone(), stop.clone(), flood.clone());
        let producer = async move {
            let blob = vec![7u8; FLOOD_BYTES];
            let (mut sent, mut refused) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let failed = ps.stats().send_failed;
                ps.broadcast(&flood, blob.clone()).unwrap();
                if ps.stats().send_failed > failed {
                    // The `pubsub` outbox to `b` is full: wait for its writer.
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    sent += 1;
                    if sent % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }
            (sent, refused)
        };
        if low {
            foundation_cluster::node::spawn_low_priority(producer)
        } else {
            tokio::spawn(producer)
        }
    };
    // Let the flood fill the channel before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = call_latencies(node, CALLS).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, refused) = flooding.await.unwrap();
    println!(
        "small call while broadcasts flood (publisher {}; {sent} x {FLOOD_BYTES} B to \
         {FLOOD_SUBSCRIBERS} subscribers on b, {refused} refused for a full outbox): p50 \
         {:.1} us, p90 {:.1} us, p99 {:.1} us; idle p50 {:.1} us, p99 {:.1} us",
        if low {
            "low priority"
        } else {
            "on the runtime"
        },
        percentile(&during, 0.5),
        percentile(&during, 0.9),
        percentile(&during, 0.99),
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
    );
    // Let `b` drain what the flood left before the next run's idle calls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (percentile(&idle, 0.99), percentile(&during, 0.99))
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
    let (node, ps) = rt.block_on(async {
        let node = Node::start(config("a")).await.unwrap();
        let ps = PubSub::start(&node, "bench").await.unwrap();
        (node, ps)
    });
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let _rt = rt.enter();
        let topic: Topic<u64> = Topic::new("bench.load").unwrap();
        let left = Arc::new(AtomicUsize::new(SUBSCRIBERS));
        for _ in 0..SUBSCRIBERS {
            let room = BufferConfig::new(MESSAGES * 2, Overflow::DropNewest);
            let mut sub = ps.subscribe_stream_with(&topic, room).unwrap();
            let (left, done) = (left.clone(), done_tx.clone());
            rt.spawn(async move {
                let mut n = 0;
                while sub.recv().await.is_some() {
                    n += 1;
                    if n == MESSAGES && left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        let _ = done.send(unix_nanos());
                    }
                }
            });
        }
    }
    let (adone_tx, mut adone_rx) = tokio::sync::mpsc::unbounded_channel();
    rt.block_on(actor_subscribers(
        &ps,
        Arc::new(move |at| {
            let _ = adone_tx.send(at);
        }),
    ));
    let seed = node.advertised().to_owned();
    let mut b = start_child("b", &seed);
    let mut c = start_child("c", &seed);
    b.expect_all(&["up a", "up c"]);
    c.expect_all(&["up a", "up b"]);
    let load: Topic<u64> = Topic::new("bench.load").unwrap();
    let ping: Topic<u64> = Topic::new("bench.ping").unwrap();
    let actors: Topic<u64> = Topic::new("bench.actors").unwrap();
    rt.block_on(async {
        while ps.subscribers_count(&load) < 3 * SUBSCRIBERS
            || ps.subscribers_count(&actors) < 3 * SUBSCRIBERS
            || ps.subscribers_count(&ping) < 2
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });

    // `FOUNDATION_BENCH_FLOOD_ONLY=1`: the call-under-flood figure alone (printed, not
    // written for the table).
    let flood_only = std::env::var("FOUNDATION_BENCH_FLOOD_ONLY").is_ok();
    let (per_sec, actor_per_sec, p50, p99) = if flood_only {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    } else {
        // Throughput.
        let start = unix_nanos();
        rt.block_on(async {
            for i in 0..MESSAGES as u64 {
                ps.broadcast(&load, i).unwrap();
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut end = rt.block_on(done_rx.recv()).unwrap();
        for child in [&mut b, &mut c] {
            let line = child.expect(|l| l.starts_with("done "));
            end = end.max(line[5..].parse().unwrap());
        }
        let secs = end.saturating_sub(start) as f64 / 1e9;
        let per_sec = (3 * SUBSCRIBERS * MESSAGES) as f64 / secs;
        println!(
            "pubsub cluster broadcast, 3 nodes x {SUBSCRIBERS} subscribers: {per_sec:.0} deliveries/s \
             ({MESSAGES} broadcasts in {secs:.3} s)"
        );

        // The same with actor subscribers (Phoenix's subscribers are processes).
        let start = unix_nanos();
        rt.block_on(async {
            for i in 0..MESSAGES as u64 {
                ps.broadcast(&actors, i).unwrap();
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut end = rt.block_on(adone_rx.recv()).unwrap();
        // Each node's end, after the first broadcast: which one the row waits for.
        let mut ends = vec![end.saturating_sub(start) as f64 / 1e9];
        for child in [&mut b, &mut c] {
            let line = child.expect(|l| l.starts_with("adone "));
            let at: u64 = line[6..].parse().unwrap();
            ends.push(at.saturating_sub(start) as f64 / 1e9);
            end = end.max(at);
        }
        let asecs = end.saturating_sub(start) as f64 / 1e9;
        let actor_per_sec = (3 * SUBSCRIBERS * MESSAGES) as f64 / asecs;
        println!(
            "pubsub cluster broadcast, 3 nodes x {SUBSCRIBERS} actor subscribers: {actor_per_sec:.0} \
             deliveries/s ({MESSAGES} broadcasts in {asecs:.3} s; done on a (publisher) {:.3} s, \
             b {:.3} s, c {:.3} s)",
            ends[0], ends[1], ends[2]
        );

        // Latency.
        rt.block_on(async {
            for _ in 0..PINGS {
                ps.broadcast(&ping, unix_nanos()).unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut us: Vec<f64> = Vec::new();
        for child in [&mut b, &mut c] {
            for _ in 0..PINGS {
                let line = child.expect(|l| l.starts_with("lat "));
                us.push(line[4..].parse::<f64>().unwrap() / 1e3);
            }
        }
        us.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&us, 0.5), percentile(&us, 0.99));
        println!("pubsub publish-to-delivery across nodes: p50 {p50:.1} us, p99 {p99:.1} us");
        let stats = ps.stats();
        assert_eq!(stats.send_failed, 0, "a broadcast was not sent");
        (per_sec, actor_per_sec, p50, p99)
    };

    // A small call while broadcasts flood the same two nodes, beside the same call idle:
    // `FLOOD_RUNS` times, the table takes the run of the median ratio.
    let flood: Topic<Vec<u8>> = Topic::new("bench.flood").unwrap();
    let runs: usize = std::env::var("FOUNDATION_BENCH_FLOOD_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(FLOOD_RUNS)
        .max(1);
    let mut low_figures = Vec::with_capacity(runs);
    let mut normal_figures = Vec::with_capacity(runs);
    for _ in 0..runs {
        for (low, figures) in [(true, &mut low_figures), (false, &mut normal_figures)] {
            figures.push(rt.block_on(flood_figure(&node, &ps, &flood, low)));
            b.tell("stats");
            let line = b.expect(|l| l.starts_with("stats "));
            println!("  b after the flood: {}", &line[6..]);
            println!("  a after the flood: cpu {}", thread_cpu());
        }
    }
    // The run of the median ratio, of each publisher.
    let median = |figures: &mut Vec<(f64, f64)>| {
        figures.sort_by(|x, y| (x.1 / x.0).total_cmp(&(y.1 / y.0)));
        figures[figures.len() / 2]
    };
    let (idle_p99, flood_p99) = median(&mut low_figures);
    let (normal_idle_p99, normal_flood_p99) = median(&mut normal_figures);
    println!(
        "small call p99 while pubsub broadcasts flood (runs of the median ratio): publisher \
         low priority {flood_p99:.1} us (idle {idle_p99:.1}), on the runtime \
         {normal_flood_p99:.1} us (idle {normal_idle_p99:.1})"
    );
    let json = format!(
        "{{\"figures\":[\
         {{\"name\":\"pubsub cluster broadcast, 3 nodes x 1k stream subscribers\",\"value\":{per_sec:.0},\"unit\":\"deliveries/s\"}},\
         {{\"name\":\"pubsub cluster broadcast, 3 nodes x 1k actor subscribers\",\"value\":{actor_per_sec:.0},\"unit\":\"deliveries/s\"}},\
         {{\"name\":\"pubsub publish-to-delivery across nodes, p50\",\"value\":{p50:.1},\"unit\":\"us\"}},\
         {{\"name\":\"pubsub publish-to-delivery across nodes, p99\",\"value\":{p99:.1},\"unit\":\"us\"}},\
         {{\"name\":\"small call p99 while pubsub broadcasts flood\",\"value\":{flood_p99:.1},\"unit\":\"us\",\"competitor\":\"the same call idle\",\"competitor_value\":{idle_p99:.1}}},\
         {{\"name\":\"small call p99 while pubsub broadcasts flood, publisher on the runtime\",\"value\":{normal_flood_p99:.1},\"unit\":\"us\",\"competitor\":\"the same call idle\",\"competitor_value\":{normal_idle_p99:.1}}}]}}"
    );
    // The target directory the bench binary runs from (`<target>/release/deps/<bench>`).
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(std::path::Path::to_path_buf))
        .unwrap();
    if !flood_only {
        std::fs::write(target.join("bench-pubsub.json"), json).unwrap();
    }
    b.tell("exit");
    c.tell("exit");
    rt.block_on(node.shutdown());
}
