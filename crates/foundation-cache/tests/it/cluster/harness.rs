//! Node processes running a partitioned cache: this test binary re-runs itself as a node
//! (see `foundation-testkit`).
//!
//! A child starts node `FOUNDATION_TEST_NODE_NAME` with the partitioned cache `kv`
//! (`Partitioned<u64, String>`, `REPLICAS` backups), prints members coming and going
//! (`@up <node>`, `@down <node>`), and obeys:
//!
//! - `put <from> <to>`: puts `v<i>` under each key `i` in `from..to` (`@put <to>`);
//! - `count <n>`: `@count <found> <errors>` for the keys `0..n` (found: a value `v<i>`);
//! - `held`: `@held <n>`, the entries this node holds (owned and backed up);
//! - `compute <key> <ms>`: `get_or_compute` whose function says `@computing <key>`,
//!   sleeps `ms` and gives this node's name: `@computed <key> <value>` or
//!   `@computeerr <key> <error>`;
//! - `computefail <key> <ms>`: the same with a function that fails after `ms` with
//!   `no value for <key> on <node>`;
//! - `runs`: `@runs <n>`, how many times a compute function ran on this node;
//! - `get <key>`: `@get <key> <value>|none|err <error>`; `set <key> <value>`:
//!   `@set <key> ok|err <error>`;
//! - `near <key>` / `nearset <key> <value>`: the same through the near cache `near`
//!   (`Multilevel`, started with `NEAR=1`): `@near <key> <value>|none|err`,
//!   `@nearset <key> ok|err`;
//! - `l1 <key>`: `@l1 <key> <value>|none`, what the near cache's L1 holds here;
//! - `ps`: `@ps sent=<n> received=<n> delivered=<n> dropped=<n> invalidated=<n>`, the
//!   pubsub's counters and the near cache's invalidations;
//! - `subscribers <n>`: `@subscribers <n>` once the near cache's invalidation topic has
//!   `n` subscribers in the cluster, as this node knows it;
//! - `owner <key>`: `@owner <key> <node>`, the key's owner as this node sees it;
//! - `ring <n>`: `@ring <n>` once the cache spreads keys over `n` nodes here.
//!
//! - `flood <owner> <n> <len>`: puts `n` distinct keys that `owner` owns, values of
//!   `len` bytes, 128 calls at a time: `@flooded <ok> <errors>`;
//! - `copyflood <node> <n> <len> <per>`: sends `<node>`'s shard forged copies of `n`
//!   distinct keys (values of `len` bytes) in casts of `per`, as a hostile peer could:
//!   `@copyflooded <sent> <errors>`;
//! - `weight`: `@weight <held_weight> <held> <evictions> <rss_kib> <hwm_kib>`, this
//!   node's share of the cache and its process's resident memory (now, and its peak);
//! - `waiting`: `@waiting <n>`; `refused`: `@refused <n>`;
//! - `forge <node> <kind>`: sends `<node>`'s shard a hostile message (`garbage`: a
//!   request whose bytes are no operation; `tag`: an unknown tag; `longput`, `longget`,
//!   `longcopy`, `longclaim`: a key over the limit): `@forged <kind> <outcome>`.
//!
//! Settings: `REPLICAS`, `MAX_BYTES` (the weight bound), `MAX_QUEUED`, `TIMEOUT_MS`,
//! `COMPUTE_TIMEOUT_MS`.
//!
//! With `GARBAGE=1` the node runs no cache: it exports a forged shard process under the
//! cache's name, of the shard's wire name, that answers every request with bytes that are
//! not what the caller expects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cache::{Cache, Multilevel, Partitioned, Ttl, TtlLeft};
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{ChannelConfig, NodeConfig};
pub use foundation_testkit::Child;
use foundation_testkit::{commands, say};
use serde::{Deserialize, Serialize};

const ENTRY: &str = "cluster::harness::node_process";

/// Starts node process `name`, seeded with `seed`'s address if given.
pub fn start(name: &str, seed: Option<&Child>, more: &[(&str, &str)]) -> Child {
    let addr = seed.map(|s| s.addr.clone()).unwrap_or_default();
    let mut settings = vec![("SILENCE_MS", "1000")];
    if seed.is_some() {
        settings.push(("SEEDS", addr.as_str()));
    }
    settings.extend_from_slice(more);
    Child::start(ENTRY, name, &settings)
}

/// Nodes `a`, `b` and `c` with the settings `more`, each having seen the two others up.
pub fn three(more: &[(&str, &str)]) -> [Child; 3] {
    let a = start("a", None, more);
    let b = start("b", Some(&a), more);
    let c = start("c", Some(&a), more);
    let mut nodes = [a, b, c];
    for (i, n) in nodes.iter_mut().enumerate() {
        let others: Vec<String> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| format!("up {o}"))
            .collect();
        let want: Vec<&str> = others.iter().map(String::as_str).collect();
        n.expect_all(&want);
        // The caches follow the node's membership a moment later.
        n.tell("ring 3");
        n.expect(|l| l == "ring 3");
    }
    nodes
}

/// A message of the shard's wire name whose replies are garbage to the caller.
#[derive(Debug, RemoteMessage)]
#[remote(name = "foundation.cache.Shard.v2")]
enum Forged {
    #[remote(tag = 1, reply = "foundation.cache.Value")]
    Get(Vec<u8>, ReplyPort<Option<Vec<u8>>>),
    #[remote(tag = 2, reply = "foundation.cache.Answer")]
    Op(Vec<u8>, ReplyPort<Vec<u8>>),
}

/// An operation as the shard's wire has it (only `Put`, its first variant).
#[derive(Debug, Serialize, Deserialize)]
enum HostileOp {
    Put(Vec<u8>, Vec<u8>, Ttl),
}

/// The shard's answer as its wire has it.
#[derive(Debug, Serialize, Deserialize)]
enum HostileAnswer {
    Done,
    Bool(bool),
    Value(Option<Vec<u8>>),
    Left(Option<TtlLeft>),
    Count(u64),
    Page(Vec<(Vec<u8>, Vec<u8>)>),
    Refused(String),
}

/// A copied entry as the shard's wire has it.
#[derive(Debug, Serialize, Deserialize)]
struct HostileCopy {
    key: Vec<u8>,
    value: Option<(Raw, Ttl)>,
    if_absent: bool,
}

/// Bytes encoded as postcard encodes a `Vec<u8>` (a length, then the bytes), written in
/// one go instead of byte by byte: the flood's sender spends its time sending, not
/// encoding (a debug build's serde walks a `Vec<u8>` one element at a time).
#[derive(Debug, Clone, Deserialize)]
struct Raw(Vec<u8>);

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// What a hostile peer sends a shard: well-formed messages of its wire name with what it
/// should not get, bytes that are no message, and a tag it does not have.
#[derive(Debug, RemoteMessage)]
#[remote(name = "foundation.cache.Shard.v2")]
enum Hostile {
    #[remote(tag = 1, reply = "foundation.cache.Value")]
    Get(Vec<u8>, ReplyPort<Option<Vec<u8>>>),
    #[remote(tag = 2, reply = "foundation.cache.Answer")]
    Op(HostileOp, ReplyPort<HostileAnswer>),
    #[remote(tag = 3)]
    Copy(Vec<HostileCopy>),
    #[remote(tag = 4, reply = "foundation.cache.Claimed")]
    Claim(Vec<u8>, String, ReplyPort<u8>),
    #[remote(tag = 9)]
    Unknown(Vec<u8>),
}

/// This process's resident memory now and at its peak, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Sends `target`'s shard the hostile message `kind`; what came of it.
async fn forge(node: &foundation_cluster::node::Node, target: &str, kind: &str) -> String {
    const SHARD: &str = "$cache/kv";
    let wait = Duration::from_secs(10);
    let long = vec![7u8; 64 * 1024];
    match kind {
        // 64 as a length, then 64 zero bytes: an operation of variant 64, which none is.
        "garbage" => {
            let got: Result<Vec<u8>, _> = node
                .call(target, SHARD, |p| Forged::Op(vec![0; 64], p), wait)
                .await;
            format!("{got:?}")
        }
        "tag" => format!(
            "{:?}",
            node.send_wait(target, SHARD, &Hostile::Unknown(vec![1, 2, 3]))
                .await
        ),
        "longput" => {
            let op = HostileOp::Put(long, b"x".to_vec(), Ttl::Never);
            let got = node.call(target, SHARD, |p| Hostile::Op(op, p), wait).await;
            format!("{got:?}")
        }
        "longget" => {
            let got = node
                .call(target, SHARD, |p| Hostile::Get(long, p), wait)
                .await;
            format!("{got:?}")
        }
        "longcopy" => {
            let copy = vec![HostileCopy {
                key: long,
                value: Some((Raw(b"x".to_vec()), Ttl::Never)),
                if_absent: false,
            }];
            format!(
                "{:?}",
                node.send_wait(target, SHARD, &Hostile::Copy(copy)).await
            )
        }
        "longclaim" => {
            let got = node
                .call(target, SHARD, |p| Hostile::Claim(long, "h".into(), p), wait)
                .await;
            format!("{got:?}")
        }
        other => format!("unknown kind {other}"),
    }
}

struct Liar;

impl Actor for Liar {
    type Msg = Forged;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<Forged>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<Forged>, msg: Forged, (): &mut ()) -> Result<(), ActorError> {
        match msg {
            // A string's length far past the bytes that follow.
            Forged::Get(_, port) => {
                let _ = port.send(Some(vec![0xff, 0xff, 0x03, b'x']));
            }
            // Not an answer at all.
            Forged::Op(_, port) => {
                let _ = port.send(vec![0xee; 7]);
            }
        }
        Ok(())
    }
}

/// The node side: runs only in a child started by [`start`].
#[test]
#[ignore = "runs as a child process of the multi-node tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let config = NodeConfig::new(&name, "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .channel(foundation_pubsub::CHANNEL, ChannelConfig::default());
    let node = crate::support::start_node(config).await;
    let garbage = var("GARBAGE").is_some();
    let cache: Option<Partitioned<u64, String>> = if garbage {
        let liar = spawn(Liar, ()).await.unwrap();
        node.export("$cache/kv", liar).unwrap();
        None
    } else {
        let replicas: usize = var("REPLICAS").map_or(0, |r| r.parse().unwrap());
        let ms = |key: &str, default: u64| {
            Duration::from_millis(var(key).map_or(default, |v| v.parse().unwrap()))
        };
        let mut builder = Partitioned::builder("kv")
            .replicas(replicas)
            .timeout(ms("TIMEOUT_MS", 5_000))
            .compute_timeout(ms("COMPUTE_TIMEOUT_MS", 60_000));
        if let Some(bytes) = var("MAX_BYTES") {
            builder = builder.max_bytes(bytes.parse().unwrap());
        }
        if let Some(n) = var("MAX_QUEUED") {
            builder = builder.max_queued(n.parse().unwrap());
        }
        Some(builder.start(&node).await.unwrap())
    };
    let pubsub = foundation_pubsub::PubSub::start(&node, "cache")
        .await
        .unwrap();
    let near: Option<Multilevel<u64, String>> = if var("NEAR").is_some() {
        let l2 = Partitioned::builder("near-l2").start(&node).await.unwrap();
        Some(
            Multilevel::builder("near")
                .l1_max_entries(10_000)
                .start(&pubsub, l2)
                .await
                .unwrap(),
        )
    } else {
        None
    };
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let runs = Arc::new(AtomicU64::new(0));
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(cache) = cache.clone() else {
            continue;
        };
        match words.as_slice() {
            ["put", from, to] => {
                let (from, to): (u64, u64) = (from.parse().unwrap(), to.parse().unwrap());
                for i in from..to {
                    cache.put(i, format!("v{i}"), Ttl::Default).await.unwrap();
                }
                say(&format!("put {to}"));
            }
            ["count", n] => {
                let n: u64 = n.parse().unwrap();
                let (mut found, mut errors) = (0, 0);
                for i in 0..n {
                    match cache.get(&i).await {
                        Ok(Some(v)) if v == format!("v{i}") => found += 1,
                        Ok(_) => {}
                        Err(_) => errors += 1,
                    }
                }
                say(&format!("count {found} {errors}"));
            }
            ["held"] => say(&format!("held {}", cache.held())),
            [word @ ("compute" | "computefail"), key, ms] => {
                let fail = *word == "computefail";
                let key: u64 = key.parse().unwrap();
                let ms: u64 = ms.parse().unwrap();
                let me = name.clone();
                let runs = Arc::clone(&runs);
                let cache = cache.clone();
                tokio::spawn(async move {
                    let got = cache
                        .get_or_compute(key, Ttl::Default, move || async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            say(&format!("computing {key}"));
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            if fail {
                                let why = format!("no value for {key} on {me}");
                                return Err(std::io::Error::other(why));
                            }
                            Ok::<_, std::io::Error>(me)
                        })
                        .await;
                    match got {
                        Ok(v) => say(&format!("computed {key} {v}")),
                        Err(e) => say(&format!("computeerr {key} {e}")),
                    }
                });
            }
            ["runs"] => say(&format!("runs {}", runs.load(Ordering::SeqCst))),
            ["get", key] => {
                let key: u64 = key.parse().unwrap();
                match cache.get(&key).await {
                    Ok(Some(v)) => say(&format!("get {key} {v}")),
                    Ok(None) => say(&format!("get {key} none")),
                    Err(e) => say(&format!("get {key} err {e}")),
                }
            }
            ["set", key, value] => {
                let key: u64 = key.parse().unwrap();
                match cache.put(key, (*value).to_owned(), Ttl::Default).await {
                    Ok(()) => say(&format!("set {key} ok")),
                    Err(e) => say(&format!("set {key} err {e}")),
                }
            }
            ["near", key] => {
                let key: u64 = key.parse().unwrap();
                let Some(near) = &near else { continue };
                match near.get(&key).await {
                    Ok(Some(v)) => say(&format!("near {key} {v}")),
                    Ok(None) => say(&format!("near {key} none")),
                    Err(e) => say(&format!("near {key} err {e}")),
                }
            }
            ["nearset", key, value] => {
                let key: u64 = key.parse().unwrap();
                let Some(near) = &near else { continue };
                match near.put(key, (*value).to_owned(), Ttl::Default).await {
                    Ok(()) => say(&format!("nearset {key} ok")),
                    Err(e) => say(&format!("nearset {key} err {e}")),
                }
            }
            ["l1", key] => {
                let key: u64 = key.parse().unwrap();
                let Some(near) = &near else { continue };
                match near.l1().get(&key).await {
                    Ok(Some(v)) => say(&format!("l1 {key} {v}")),
                    _ => say(&format!("l1 {key} none")),
                }
            }
            ["ps"] => {
                let s = pubsub.stats();
                let invalidated = near.as_ref().map_or(0, Multilevel::invalidated);
                say(&format!(
                    "ps sent={} received={} delivered={} dropped={} invalidated={invalidated}",
                    s.sent, s.received, s.delivered, s.dropped
                ));
            }
            ["subscribers", n] => {
                // The near cache's invalidation topic, by name.
                let topic = foundation_pubsub::Topic::<u64>::new("foundation.cache.near").unwrap();
                let n: usize = n.parse().unwrap();
                while pubsub.subscribers_count(&topic) != n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                say(&format!("subscribers {n}"));
            }
            ["ring", n] => {
                let n: usize = n.parse().unwrap();
                while cache.nodes().len() != n {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                say(&format!("ring {n}"));
            }
            ["flood", owner, n, len] => {
                let (n, len): (usize, usize) = (n.parse().unwrap(), len.parse().unwrap());
                let value = "x".repeat(len);
                let mut keys = (1_000_000_000u64..)
                    .filter(|k| cache.owner_of(k).is_ok_and(|o| o == *owner))
                    .take(n);
                let (mut ok, mut errors) = (0u64, 0u64);
                loop {
                    let batch: Vec<u64> = keys.by_ref().take(128).collect();
                    if batch.is_empty() {
                        break;
                    }
                    let puts = batch
                        .into_iter()
                        .map(|k| cache.put(k, value.clone(), Ttl::Default));
                    for done in futures::future::join_all(puts).await {
                        match done {
                            Ok(()) => ok += 1,
                            Err(_) => errors += 1,
                        }
                    }
                }
                say(&format!("flooded {ok} {errors}"));
            }
            ["copyflood", target, n, len, per] => {
                let (n, len): (u64, usize) = (n.parse().unwrap(), len.parse().unwrap());
                let per: usize = per.parse().unwrap();
                let value = Raw(vec![b'x'; len]);
                let (mut sent, mut errors) = (0u64, 0u64);
                let mut batch = Vec::with_capacity(per);
                for i in 0..n {
                    batch.push(HostileCopy {
                        key: postcard::to_stdvec(&(2_000_000_000u64 + i)).unwrap(),
                        value: Some((value.clone(), Ttl::Never)),
                        if_absent: false,
                    });
                    if batch.len() == per || i + 1 == n {
                        let copy = Hostile::Copy(std::mem::take(&mut batch));
                        match node.send_wait(target, "$cache/kv", &copy).await {
                            Ok(()) => sent += 1,
                            Err(_) => errors += 1,
                        }
                    }
                }
                say(&format!("copyflooded {sent} {errors}"));
            }
            ["weight"] => {
                let (rss, hwm) = rss_kib();
                say(&format!(
                    "weight {} {} {} {rss} {hwm}",
                    cache.held_weight(),
                    cache.held(),
                    cache.stats().evictions
                ));
            }
            ["waiting"] => say(&format!("waiting {}", cache.waiting())),
            ["refused"] => say(&format!("refused {}", cache.refused())),
            ["forge", target, kind] => {
                let outcome = forge(&node, target, kind).await;
                say(&format!("forged {kind} {outcome}"));
            }
            ["owner", key] => {
                let key: u64 = key.parse().unwrap();
                say(&format!("owner {key} {}", cache.owner_of(&key).unwrap()));
            }
            _ => say(&format!("unknown {line}")),
        }
    }
}
