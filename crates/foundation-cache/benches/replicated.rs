//! The replicated cache on a 3-node loopback cluster: this process is node `a`, and it
//! re-runs itself twice as nodes `b` and `c` (`FOUNDATION_BENCH_CHILD=1`).
//!
//! - Criterion group `replicated_put`: `foundation` is [`Replicated::put`] on `a` with two
//!   peers (the key and value encoded, the store's write and the local cache's, the delta
//!   joined into the pending batch); `local` is [`Local::put`] of the same entries in the
//!   same run: what replication adds to a write on the writing node.
//! - Visibility: `a` puts 1,000 keys, 2 ms apart; `b` and `c` note the wall-clock time
//!   each one becomes readable there ([`ReplicatedOptions::on_peer_write`]). Per key, the
//!   time from just before `put` on `a` to the later of the two; p50 and p99 go to
//!   `target/bench-cache-replicated.json` (all three processes share one machine clock). Budget
//!   (issue 17): p99 at most 5 ms.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-cache --bench replicated`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use foundation_cache::{Cache, Local, Replicated, ReplicatedOptions, Ttl};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ClusterEvent, Node, NodeConfig};
use foundation_testkit::{Child, commands, say};

const VISIBILITY_KEYS: usize = 1_000;
/// Distinct keys the criterion rows write, round and round.
const KEYS: usize = 10_000;

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn options() -> ReplicatedOptions<String, u64> {
    ReplicatedOptions::new("bench").local(Local::builder().max_entries(100_000))
}

async fn child() {
    let name = std::env::var("FOUNDATION_TEST_NODE_NAME").unwrap();
    let seed = std::env::var("FOUNDATION_TEST_NODE_SEEDS").unwrap();
    let node = Node::start(NodeConfig::new(&name, "bench").listen("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let opts = options().on_peer_write(|key: &String| {
        if key.starts_with("vis-") {
            say(&format!("seen {key} {}", unix_nanos()));
        }
    });
    let cache: Replicated<String, u64> = Replicated::start(&node, opts).await.unwrap();
    let mut cluster = node.subscribe();
    say(&format!("ready {name} {}", node.advertised()));
    node.connect(&seed.parse::<Peer>().unwrap());
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            if let ClusterEvent::NodeUp(m) = e {
                say(&format!("up {}", m.id));
            }
        }
    });
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        if line == "exit" {
            break;
        }
    }
    cache.shutdown();
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
    let (node, cache) = rt.block_on(async {
        let node =
            Node::start(NodeConfig::new("a", "bench").listen("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let cache: Replicated<String, u64> = Replicated::start(&node, options()).await.unwrap();
        (node, cache)
    });
    let seed = node.advertised().to_owned();
    let mut b = start_child("b", &seed);
    let mut c = start_child("c", &seed);
    rt.block_on(node.wait_for_members(&["b", "c"], Duration::from_secs(30)))
        .unwrap();
    for child in [&mut b, &mut c] {
        child.expect_all(&["up a"]);
    }

    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    let local: Local<String, u64> = Local::builder().max_entries(100_000).build().unwrap();
    let mut criterion = Criterion::default().configure_from_args();
    {
        let mut g = criterion.benchmark_group("replicated_put");
        let mut i = 0usize;
        g.bench_function("foundation", |bch| {
            bch.iter(|| {
                i = (i + 1) % KEYS;
                let put = cache.put(keys[i].clone(), i as u64, Ttl::Default);
                futures::FutureExt::now_or_never(put).unwrap().unwrap();
            });
        });
        let mut i = 0usize;
        g.bench_function("local", |bch| {
            bch.iter(|| {
                i = (i + 1) % KEYS;
                let put = local.put(keys[i].clone(), i as u64, Ttl::Default);
                futures::FutureExt::now_or_never(put).unwrap().unwrap();
            });
        });
        g.finish();
    }
    // Let the criterion phase's deltas drain before timing visibility.
    std::thread::sleep(Duration::from_secs(1));

    let mut started = HashMap::new();
    rt.block_on(async {
        for i in 0..VISIBILITY_KEYS {
            let key = format!("vis-{i}");
            started.insert(key.clone(), unix_nanos());
            cache.put(key, i as u64, Ttl::Default).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut last: HashMap<String, u128> = HashMap::new();
    for child in [&mut b, &mut c] {
        for _ in 0..VISIBILITY_KEYS {
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
        "replicated put visible on all 3 nodes: p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms \
         over {} keys",
        ms.len()
    );
    let json = serde_json::json!({
        "figures": [
            { "name": "replicated put visible on all 3 nodes, p50", "value": p50, "unit": "ms" },
            { "name": "replicated put visible on all 3 nodes, p99", "value": p99, "unit": "ms" },
        ]
    });
    // The target directory the bench binary runs from (`<target>/release/deps/<bench>`).
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(std::path::Path::to_path_buf))
        .unwrap();
    std::fs::write(
        target.join("bench-cache-replicated.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    )
    .unwrap();
    b.tell("exit");
    c.tell("exit");
    cache.shutdown();
    rt.block_on(node.shutdown());
}
