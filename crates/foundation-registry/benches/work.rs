//! Map-reduce throughput on 3 node processes against the same work on one node.
//!
//! This process is node `a`; it starts `b` and `c` (this binary again) seeded with it.
//! Two cluster-wide ecosystems run with the same kinds: `solo`, started on `a` alone (its
//! table holds one node), and `trio`, started on all three. Rounds alternate between them
//! in the same processes (paired), each a map-reduce of the same items from `a`; the
//! figures are the median items per second of each, and their ratio. Two workloads: a
//! map that computes (~15 µs an item: where spreading pays) and a trivial one (what the
//! chunks' messages cost). Writes `target/bench-work.json` for `cargo xtask bench`.
//!
//! On a machine with fewer cores than the three processes' workers, `trio` shares the
//! cores `solo` has alone: the figure then says what the messaging costs, not what more
//! machines would give.
//!
//! Run with: `cargo bench -p foundation-registry --bench work`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::work::{ClusterEcosystem, WorkSpec};
use foundation_testkit::{Child, commands, say};

/// Items of one round.
const ITEMS: u64 = 20_000;
/// Rounds of each side, alternated.
const ROUNDS: usize = 5;

/// About 15 µs of arithmetic (in a release build).
fn burn(i: u64) -> u64 {
    let mut x = i;
    for _ in 0..10_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x ^= x >> 33;
    }
    x
}

fn spec(name: &str) -> WorkSpec {
    WorkSpec::new(name)
        .job("burn", burn)
        .job("light", |i: u64| i.wrapping_mul(31))
        .reduce("xor", |a: u64, b: u64| a ^ b)
        .workers(2)
}

async fn child() {
    let name = std::env::var("FOUNDATION_TEST_NODE_NAME").unwrap();
    let seed = std::env::var("FOUNDATION_TEST_NODE_SEEDS").unwrap();
    let node = Node::start(NodeConfig::new(&name, "bench").listen("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let eco = ClusterEcosystem::start(&node, spec("trio")).await.unwrap();
    say(&format!("ready {name} {}", node.advertised()));
    node.connect(&seed.parse::<Peer>().unwrap());
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        if line == "exit" {
            break;
        }
    }
    eco.shutdown().await;
    node.shutdown().await;
}

fn start_child(name: &str, seed: &str) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("FOUNDATION_BENCH_CHILD", "1");
    Child::run(cmd, name, &[("SEEDS", seed)])
}

/// Items per second of one map-reduce of `map` over `ITEMS` items.
async fn round(eco: &ClusterEcosystem, map: &str) -> f64 {
    let t = Instant::now();
    let r: Option<u64> = eco.map_reduce(map, 0..ITEMS, "xor").await.unwrap();
    assert!(r.is_some());
    ITEMS as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let (node, solo, trio) = rt.block_on(async {
        let node =
            Node::start(NodeConfig::new("a", "bench").listen("127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let solo = ClusterEcosystem::start(&node, spec("solo")).await.unwrap();
        let trio = ClusterEcosystem::start(&node, spec("trio")).await.unwrap();
        (node, solo, trio)
    });
    let seed = node.advertised().to_owned();
    let mut b = start_child("b", &seed);
    let mut c = start_child("c", &seed);
    let mut rows = Vec::new();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while trio.stats().nodes.iter().filter(|l| l.workers > 0).count() < 3 {
            assert!(Instant::now() < deadline, "the three nodes never formed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for map in ["burn", "light"] {
            // Warm-up, then alternated rounds.
            round(&solo, map).await;
            round(&trio, map).await;
            let (mut one, mut three) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                one.push(round(&solo, map).await);
                three.push(round(&trio, map).await);
            }
            let (one, three) = (median(one), median(three));
            println!(
                "map_reduce {map} ({ITEMS} items): 3 node processes {:.1} k items/s, one node {:.1} k items/s, ratio {:.2}",
                three / 1e3,
                one / 1e3,
                three / one
            );
            rows.push((map, three, one));
        }
    });
    b.tell("exit");
    c.tell("exit");
    rt.block_on(async {
        solo.shutdown().await;
        trio.shutdown().await;
        node.shutdown().await;
    });
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.display().to_string()))
        .unwrap();
    let figures: Vec<String> = rows
        .iter()
        .map(|(map, three, one)| {
            let what = if *map == "burn" { "~15 us map" } else { "trivial map" };
            format!(
                "{{\"name\":\"map_reduce throughput, {what}, 3 node processes\",\"value\":{:.1},\"unit\":\"k items/s\",\"competitor\":\"same work on one node\",\"competitor_value\":{:.1}}}",
                three / 1e3,
                one / 1e3
            )
        })
        .collect();
    let json = format!("{{\"figures\":[{}]}}", figures.join(","));
    std::fs::write(format!("{target}/bench-work.json"), json).unwrap();
}
