//! Node processes running a replicated cache and two shared states: this test binary
//! re-runs itself as a node (see `foundation-testkit`).
//!
//! A child starts node `FOUNDATION_TEST_NODE_NAME` (listening on `LISTEN`, seeded with
//! `SEEDS`, silence limit `SILENCE_MS`, replication forgetting peers unheard for
//! `FORGET_MS`, 10 minutes if unset) with the replicated cache `rc` (`String` keys and
//! values), the shared `PnCounter` `hits` and the shared `OrSet<String>` `tags`, prints
//! members coming and going (`@up <node>`, `@down <node>`), and obeys:
//!
//! - `put <k> <v>`, `del <k>`: writes to the cache (`@put <k>`, `@del <k>`);
//! - `await <k> <v>`: `@at <k> <v>` once `get(k)` is `v` (`-`: no value);
//! - `awaitlen <n>`: `@len <n>` once the cache holds `n` entries;
//! - `dump`: `@dump <k=v,...>`, the entries in key order;
//! - `add <n>`: adds `n` to the counter; `awaitcount <n>`: `@count <n>` once it reads `n`;
//! - `tag <x>`, `untag <x>`: the set; `awaittags <a,b,...>`: `@tags <a,b,...>` once the
//!   set is exactly those (in order; `-` for empty);
//! - `stats`: `@stats malformed=<n> codec=<n>`;
//! - `tombs`: `@tombs <n>`, the tombstones the cache's store keeps;
//!   `awaittombs <n>`: `@tombs <n>` once it keeps `n`;
//! - `exit`.

use std::time::Duration;

use foundation_cache::crdt::{OrSet, PnCounter};
use foundation_cache::{Cache, Replicated, ReplicatedOptions, Shared, SharedOptions, Ttl};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::NodeConfig;
pub use foundation_testkit::{Child, Net};
use foundation_testkit::{commands, say};
use futures::StreamExt;

const ENTRY: &str = "cluster_shared::harness::node_process";

/// Starts node process `name` on loopback, seeded with `seed`'s address if given.
pub fn start(name: &str, seed: Option<&Child>) -> Child {
    let addr = seed.map(|s| s.addr.clone()).unwrap_or_default();
    let mut settings = vec![("SILENCE_MS", "1000")];
    if seed.is_some() {
        settings.push(("SEEDS", addr.as_str()));
    }
    Child::start(ENTRY, name, &settings)
}

/// Nodes `a`, `b` and `c` in the three namespaces of `net`, `b` and `c` seeded with `a`,
/// with the settings `more`, each having seen the two others up.
pub fn three_in(net: &Net, more: &[(&str, &str)]) -> [Child; 3] {
    let listen = |i: usize| format!("{}:4370", net.addr(i));
    let seed = listen(0);
    let mut nodes: [Child; 3] = std::array::from_fn(|i| {
        let own = listen(i);
        let mut settings = vec![("SILENCE_MS", "1000"), ("LISTEN", own.as_str())];
        if i > 0 {
            settings.push(("SEEDS", seed.as_str()));
        }
        settings.extend_from_slice(more);
        Child::start_in(Some(&net.ns(i)), ENTRY, ["a", "b", "c"][i], &settings)
    });
    for (i, n) in nodes.iter_mut().enumerate() {
        let want: Vec<String> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("up {o}"))
            .collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        n.expect_all(&want);
    }
    nodes
}

/// Sends `command` and returns the first line starting with `answer`.
pub fn ask(node: &mut Child, command: &str, answer: &str) -> String {
    node.tell(command);
    node.expect(|l| l.starts_with(answer))
}

/// The node side: runs only in a child started by [`start`] or [`three_in`].
#[test]
#[ignore = "runs as a child process of the multi-node tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

/// Polls `f` every 5 ms until it is true. The parent's bound on the answer is what fails
/// a test.
async fn until(mut f: impl AsyncFnMut() -> bool) {
    while !f().await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let listen = var("LISTEN").unwrap_or_else(|| "127.0.0.1:0".into());
    let config = NodeConfig::new(&name, "cookie").listen(listen.parse().unwrap());
    let node = crate::support::start_node(config).await;
    // Digests every 200 ms: a lost last delta is repaired sooner than with the default.
    let forget = var("FORGET_MS").map_or(Duration::from_secs(600), |ms| {
        Duration::from_millis(ms.parse().unwrap())
    });
    let fast = |name: &str| {
        SharedOptions::new(name)
            .digest_every(Duration::from_millis(200))
            .forget_after(forget)
    };
    let rc: Replicated<String, String> =
        Replicated::start(&node, ReplicatedOptions::new("rc").replication(fast("rc")))
            .await
            .unwrap();
    let hits: Shared<PnCounter> = Shared::start_with(&node, fast("hits")).await.unwrap();
    let tags: Shared<OrSet<String>> = Shared::start_with(&node, fast("tags")).await.unwrap();
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["put", k, v] => {
                rc.put((*k).to_owned(), (*v).to_owned(), Ttl::Default)
                    .await
                    .unwrap();
                say(&format!("put {k}"));
            }
            ["del", k] => {
                rc.delete(&(*k).to_owned()).await.unwrap();
                say(&format!("del {k}"));
            }
            ["await", k, v] => {
                let key = (*k).to_owned();
                let want = (*v != "-").then(|| (*v).to_owned());
                until(async || rc.get(&key).await.unwrap() == want).await;
                say(&format!("at {k} {v}"));
            }
            ["awaitlen", n] => {
                let n: u64 = n.parse().unwrap();
                until(async || rc.len().await.unwrap() == n).await;
                say(&format!("len {n}"));
            }
            ["dump"] => {
                let mut all: Vec<(String, String)> =
                    rc.stream().map(|e| e.unwrap()).collect().await;
                all.sort();
                let all: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
                say(&format!("dump {}", all.join(",")));
            }
            ["add", n] => {
                let n: i64 = n.parse().unwrap();
                hits.update(|c, me| c.add(me, n));
                say(&format!("added {n}"));
            }
            ["awaitcount", n] => {
                let n: i128 = n.parse().unwrap();
                until(async || hits.read(|c| c.value()) == n).await;
                say(&format!("count {n}"));
            }
            ["tag", x] => {
                let x = (*x).to_owned();
                tags.update(|s, me| s.insert(me, x));
                say("tagged");
            }
            ["untag", x] => {
                let x = (*x).to_owned();
                tags.update(|s, _| s.remove(&x));
                say("untagged");
            }
            ["awaittags", want] => {
                let want = (*want).to_owned();
                until(async || {
                    let now: Vec<String> = tags.read(|s| s.iter().cloned().collect());
                    let now = if now.is_empty() {
                        "-".to_owned()
                    } else {
                        now.join(",")
                    };
                    now == want
                })
                .await;
                say(&format!("tags {want}"));
            }
            ["stats"] => {
                let s = rc.sync_stats();
                say(&format!(
                    "stats malformed={} codec={}",
                    s.malformed, s.codec_errors
                ));
            }
            ["tombs"] => say(&format!("tombs {}", rc.sync_stats().tombstones)),
            ["awaittombs", n] => {
                let n: u64 = n.parse().unwrap();
                until(async || rc.sync_stats().tombstones == n).await;
                say(&format!("tombs {n}"));
            }
            ["exit"] => break,
            _ => say(&format!("unknown {line}")),
        }
    }
    rc.shutdown();
    hits.shutdown();
    tags.shutdown();
    node.shutdown().await;
}
