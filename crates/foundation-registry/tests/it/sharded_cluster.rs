//! Sharded entities across node processes: every node computes the same owner for each
//! shard, and a message to an entity reaches it on its shard's owner, from any node.
//!
//! A node process (`node_process`) starts node `FOUNDATION_TEST_NODE_NAME` (`SEEDS`,
//! `SILENCE_MS`) and the `Sharded` `ledger` of [`Ledger`] entities (u64 keys, 1,024
//! shards; `ROLE`: a role it offers, `ON_ROLE`: shards only on nodes offering it). It
//! obeys:
//!
//! - `members <n>`: `@members <n>` once `n` nodes run `ledger` and this node's owner
//!   table counts `n` owners (or every eligible member, with `ON_ROLE`);
//! - `owners <keys>`: `@owners <digest> <node>=<count>,…` over keys `0..keys`, the
//!   digest a hash of the owner of each key in order;
//! - `whoami <keys>`: calls every entity `0..keys` from here (500 at a time) and prints
//!   `@whoami <answered> <elsewhere> <failed> <node>=<count>,…`, `elsewhere` counting
//!   answers from a node other than the owner this node computes;
//! - `push <keys> <n>`: casts `push(1)`, …, `push(n)` to every entity `0..keys`, then
//!   `@pushed`;
//! - `logs <keys> <n>`: calls `log` of every entity and prints `@logs <ok> <bad>`, `ok`
//!   counting the logs that are exactly `1..=n`;
//! - `ctx`: calls entity 7 under a context with a trace id and baggage, and prints
//!   `@ctx same|differs <node>`;
//! - `entities`: `@entities <n>`, the entities active on this node.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::sharded::{Sharded, ShardedSpec};
use foundation_testkit::{Child, commands, say};

/// An entity: knows its key and node, logs the numbers pushed to it.
#[derive(Clone)]
pub struct Ledger {
    node: String,
    log: Vec<u64>,
}

#[actor(remote = "test.Ledger")]
impl Ledger {
    #[cast(tag = 1)]
    fn push(&mut self, n: u64) {
        self.log.push(n);
    }

    #[call(tag = 2)]
    fn log(&self) -> Vec<u64> {
        self.log.clone()
    }

    #[call(tag = 3)]
    fn whoami(&self) -> String {
        self.node.clone()
    }

    /// The node, and the trace id and `user` baggage of the context current here.
    #[call(tag = 4)]
    fn context(&self) -> (String, Option<(String, Option<String>)>) {
        let ctx = Context::current().map(|c| {
            (
                c.trace_id().to_string(),
                c.baggage("user").map(str::to_owned),
            )
        });
        (self.node.clone(), ctx)
    }
}

const ENTRY: &str = "sharded_cluster::node_process";

/// Node process `name`, seeded with `seed` if given, with `extra` settings.
fn start(name: &str, seed: Option<&str>, extra: &[(&str, &str)]) -> Child {
    let mut settings = vec![("SILENCE_MS", "1000")];
    if let Some(s) = seed {
        settings.push(("SEEDS", s));
    }
    settings.extend_from_slice(extra);
    Child::start(ENTRY, name, &settings)
}

/// Nodes `names`, each seeded with the first; returns once each sees them all.
fn nodes(names: &[&str], extra: &[(&str, &str)]) -> Vec<Child> {
    let first = start(names[0], None, extra);
    let seed = first.addr.clone();
    let mut all = vec![first];
    for n in &names[1..] {
        all.push(start(n, Some(&seed), extra));
    }
    let members = format!("members {}", names.len());
    for n in &mut all {
        n.tell(&members);
        n.expect(|l| l == members);
    }
    all
}

fn ask(node: &mut Child, line: &str, prefix: &str) -> String {
    node.tell(line);
    let got = node.expect(|l| l.starts_with(prefix));
    got[prefix.len()..].trim().to_owned()
}

#[test]
fn three_nodes_agree_on_every_shards_owner_and_each_of_10_000_keys_answers_from_its_owner_only() {
    let mut nodes = nodes(&["a", "b", "c"], &[]);
    let keys = 10_000;
    let owners: Vec<String> = nodes
        .iter_mut()
        .map(|n| ask(n, &format!("owners {keys}"), "owners "))
        .collect();
    assert_eq!(owners[0], owners[1], "a and b computed different owners");
    assert_eq!(owners[0], owners[2], "a and c computed different owners");
    // Every node owns a share (1,024 shards over 3 nodes).
    let counts = owners[0].split_whitespace().nth(1).unwrap().to_owned();
    assert_eq!(counts.split(',').count(), 3, "owners: {counts}");
    for n in &mut nodes {
        let got = ask(n, &format!("whoami {keys}"), "whoami ");
        // Every key answered, each from the owner this node computed, and the answers
        // by node are the owners' counts.
        assert_eq!(got, format!("{keys} 0 0 {counts}"), "node {}", n.name);
    }
    // Each key's entity is active on exactly one node: asked from three nodes, started once.
    let active: usize = nodes
        .iter_mut()
        .map(|n| ask(n, "entities", "entities ").parse::<usize>().unwrap())
        .sum();
    assert_eq!(active, keys);
}

#[test]
fn casts_from_every_node_arrive_in_order_and_the_context_travels_to_the_owner() {
    let mut nodes = nodes(&["a", "b", "c"], &[]);
    // Node b streams numbered casts to 300 keys (two thirds of them on other nodes).
    assert_eq!(ask(&mut nodes[1], "push 300 50", "pushed"), "");
    for n in &mut nodes {
        assert_eq!(ask(n, "logs 300 50", "logs "), "300 0", "node {}", n.name);
    }
    for n in &mut nodes {
        let got = ask(n, "ctx", "ctx ");
        assert!(got.starts_with("same "), "node {}: {got}", n.name);
    }
}

#[test]
fn shards_restricted_to_a_role_go_only_to_nodes_offering_it() {
    let a = start("a", None, &[("ROLE", "gpu"), ("ON_ROLE", "gpu")]);
    let seed = a.addr.clone();
    let b = start("b", Some(&seed), &[("ON_ROLE", "gpu")]);
    let c = start("c", Some(&seed), &[("ROLE", "gpu"), ("ON_ROLE", "gpu")]);
    let mut nodes = [a, b, c];
    for n in &mut nodes {
        n.tell("members 3");
        n.expect(|l| l == "members 3");
    }
    for n in &mut nodes {
        let got = ask(n, "whoami 2000", "whoami ");
        let mut words = got.split_whitespace();
        assert_eq!(words.next(), Some("2000"), "node {}: {got}", n.name);
        assert_eq!(words.next(), Some("0"), "node {}: {got}", n.name);
        assert_eq!(words.next(), Some("0"), "node {}: {got}", n.name);
        let by_node = words.next().unwrap();
        assert!(
            !by_node.contains("b="),
            "node {}: b owns shards: {by_node}",
            n.name
        );
    }
}

/// The node side: runs only in a child started by [`start`].
#[test]
#[ignore = "runs as a child process of the sharded cluster tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let silence = Duration::from_millis(var("SILENCE_MS").map_or(3000, |ms| ms.parse().unwrap()));
    let config = NodeConfig::new(&name, "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .silence(silence);
    let node = Node::start(config).await.unwrap();
    let me = name.clone();
    let mut spec = ShardedSpec::new("ledger", Ledger::actor(), move |_: &u64| Ledger {
        node: me.clone(),
        log: Vec::new(),
    });
    if let Some(role) = var("ROLE") {
        spec = spec.role(role);
    }
    let on_role = var("ON_ROLE");
    if let Some(role) = &on_role {
        spec = spec.on_role(role.clone());
    }
    let ledger: Sharded<u64, LedgerMsg> = Sharded::start_on(&node, spec).await.unwrap();
    let sup = Supervisor::start(
        SupervisorSpec::new("entities", Strategy::OneForOne).child(ledger.child_spec()),
    )
    .await
    .unwrap();
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
            ["members", n] => {
                let n: usize = n.parse().unwrap();
                loop {
                    let owners = by_owner(&ledger, 20_000);
                    let eligible = if on_role.is_some() { owners.len() } else { n };
                    if ledger.members().len() == n && owners.len() == eligible {
                        if on_role.is_some() {
                            // The table is computed again within its refresh period.
                            tokio::time::sleep(Duration::from_millis(600)).await;
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                say(&format!("members {n}"));
            }
            ["owners", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for k in 0..keys {
                    ledger.owner_of(&k).hash(&mut h);
                }
                let counts = counts(&by_owner(&ledger, keys));
                say(&format!("owners {:x} {counts}", h.finish()));
            }
            ["whoami", keys] => {
                let keys: u64 = keys.parse().unwrap();
                let (mut answered, mut elsewhere, mut failed) = (0, 0, 0);
                let mut from: BTreeMap<String, usize> = BTreeMap::new();
                for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
                    let mut calls = tokio::task::JoinSet::new();
                    for &k in chunk {
                        let e: LedgerRef = ledger.entity(k);
                        let owner = ledger.owner_of(&k);
                        calls.spawn(async move { (e.whoami().await, owner) });
                    }
                    while let Some(r) = calls.join_next().await {
                        match r.unwrap() {
                            (Ok(at), owner) => {
                                answered += 1;
                                if owner.as_deref() != Some(at.as_str()) {
                                    elsewhere += 1;
                                }
                                *from.entry(at).or_default() += 1;
                            }
                            (Err(e), _) => {
                                failed += 1;
                                eprintln!("whoami failed: {e}");
                            }
                        }
                    }
                }
                say(&format!(
                    "whoami {answered} {elsewhere} {failed} {}",
                    counts(&from)
                ));
            }
            ["push", keys, n] => {
                let keys: u64 = keys.parse().unwrap();
                let n: u64 = n.parse().unwrap();
                for i in 1..=n {
                    for k in 0..keys {
                        let e: LedgerRef = ledger.entity(k);
                        e.push(i).await.unwrap();
                    }
                }
                say("pushed");
            }
            ["logs", keys, n] => {
                let keys: u64 = keys.parse().unwrap();
                let n: u64 = n.parse().unwrap();
                let want: Vec<u64> = (1..=n).collect();
                let (mut ok, mut bad) = (0, 0);
                for k in 0..keys {
                    let e: LedgerRef = ledger.entity(k);
                    match e.log().await {
                        Ok(log) if log == want => ok += 1,
                        Ok(log) => {
                            bad += 1;
                            eprintln!("key {k}: log {log:?}");
                        }
                        Err(e) => {
                            bad += 1;
                            eprintln!("key {k}: {e}");
                        }
                    }
                }
                say(&format!("logs {ok} {bad}"));
            }
            ["ctx"] => {
                let ctx = Context::new().with_baggage("user", "ada");
                let trace = ctx.trace_id().to_string();
                let e: LedgerRef = ledger.entity(7);
                let (at, seen) = ctx.scope(e.context()).await.unwrap();
                let same = seen == Some((trace, Some("ada".to_owned())));
                say(&format!(
                    "ctx {} {at}",
                    if same { "same" } else { "differs" }
                ));
            }
            ["entities"] => say(&format!("entities {}", ledger.stats().entities)),
            _ => say(&format!("unknown {line}")),
        }
    }
    ledger.leave().await;
    sup.shutdown().await;
    node.shutdown().await;
}

/// How many of keys `0..keys` each node owns, by node.
fn by_owner(ledger: &Sharded<u64, LedgerMsg>, keys: u64) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in 0..keys {
        if let Some(o) = ledger.owner_of(&k) {
            *m.entry(o).or_default() += 1;
        }
    }
    m
}

fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(n, c)| format!("{n}={c}"))
        .collect::<Vec<_>>()
        .join(",")
}
