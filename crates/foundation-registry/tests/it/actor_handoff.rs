//! `#[actor(handoff)]` (issue 15): an `#[actor]` type is its own snapshot, and its state
//! survives a passivation, a shard move between two node processes, and a distributed
//! child's `migrate`; its `#[restored]` hook runs on the new incarnation with a working
//! context (a timer it starts there fires there).
//!
//! A node process (`node_process`) starts node `FOUNDATION_TEST_NODE_NAME`, dials `SEEDS`,
//! runs a `Sharded` `tallies` of [`Tally`] entities (`String` keys, `.handoff()`) and a
//! distributed supervisor `tallies` with the handoff kind `tally`, and obeys:
//!
//! - `settled <n>`: `@settled <n>` once the `Sharded` sees `n` members owning shards and
//!   no shard in a move (twice, 600 ms apart), and the supervisor sees `n` members;
//! - `cast <n> <k>`: casts `Add(k)` to entities `user-0` … `user-<n-1>`, then `@cast`;
//! - `read <n>`: `@read <key>=<reading>;…` for those entities;
//! - `start <id>`: starts singleton child `<id>`: `@started <id> <node>`;
//! - `add <id> <k>`: casts `Add(k)` to the child: `@added <id>`;
//! - `get <id>`: `@got <id> <reading>`;
//! - `migrate <id> <node>`: `@migrated <id> <node>` or `@migrated <id> err`.
//!
//! A `<reading>` is `<node>/<total>/<restores>/<pings>`: where the entity runs, its
//! total, how many times it was restored from a snapshot, and how many timer pings its
//! incarnations had (a restore arms a 10 ms timer).

use std::sync::OnceLock;
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::ClusterRegistry;
use foundation_registry::distributed::{
    ChildName, DistributedSpec, DistributedSupervisor, checkpoint,
};
use foundation_registry::placement::{ChildPlacement, Placement};
use foundation_registry::sharded::{Sharded, ShardedSpec};
use foundation_testkit::{Child, commands, say};
use serde::{Deserialize, Serialize};

/// This process's node name, for the entities to say where they run.
static NODE: OnceLock<String> = OnceLock::new();

fn here() -> String {
    NODE.get().cloned().unwrap_or_else(|| "local".to_owned())
}

/// A counter written with `#[actor]`, handed over whole.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    total: u64,
    restores: u32,
    pings: u32,
    /// Where this incarnation runs: not part of the snapshot.
    #[serde(skip)]
    node: String,
}

/// The timer a restored tally arms.
pub struct Ping;

#[actor(remote = "test.Tally", handoff)]
impl Tally {
    #[init]
    fn start() -> Self {
        Self {
            node: here(),
            ..Self::default()
        }
    }

    #[cast(tag = 1)]
    fn add(&mut self, k: u64) {
        self.total += k;
    }

    /// `<node>/<total>/<restores>/<pings>`.
    #[call(tag = 2)]
    fn reading(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.node, self.total, self.restores, self.pings
        )
    }

    /// Checkpoints the tally (its type is its snapshot).
    #[call(tag = 3)]
    fn save(&self) -> Result<u64, String> {
        checkpoint(self).map_err(|e| e.to_string())
    }

    #[info]
    fn ping(&mut self, _: Ping) {
        self.pings += 1;
    }

    /// Runs on the new incarnation, instead of `start`: the context is its own.
    #[restored]
    fn back(&mut self, ctx: &Ctx<Self>) {
        self.restores += 1;
        self.node = here();
        ctx.send_after(Duration::from_millis(10), Ping);
    }
}

/// Parses a reading: node, total, restores, pings.
fn parse(reading: &str) -> (String, u64, u32, u32) {
    let w: Vec<&str> = reading.split('/').collect();
    let [node, total, restores, pings] = w[..] else {
        panic!("bad reading {reading:?}");
    };
    (
        node.to_owned(),
        total.parse().unwrap(),
        restores.parse().unwrap(),
        pings.parse().unwrap(),
    )
}

const PATIENCE: Duration = Duration::from_secs(30);

/// Passivation in one process: the idle entity is exported, and its next message
/// restores it (the hook runs, its timer fires on the restored incarnation).
#[tokio::test]
async fn an_actor_handoff_entity_keeps_its_state_across_passivation() {
    let spec = ShardedSpec::new("ah-passivate", Tally::handoff_actor(), |_: &u64| ())
        .idle_timeout(Duration::from_millis(200))
        .handoff();
    let s = Sharded::new(spec);
    let sup = Supervisor::start(
        SupervisorSpec::new("ah-passivate-sup", Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let e: TallyRef = s.entity(7);
    e.add(5).await.unwrap();
    e.add(2).await.unwrap();
    assert_eq!(parse(&e.reading().await.unwrap()).1, 7);
    // A checkpoint from a handler is accepted: the type is the snapshot type.
    assert_eq!(e.save().await.unwrap(), Ok(1));
    tokio::time::timeout(PATIENCE, async {
        while s.is_active(&7) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the idle entity was passivated");
    assert_eq!(s.stats().snapshots, 1);
    e.add(1).await.unwrap();
    let got = tokio::time::timeout(PATIENCE, async {
        loop {
            let got = parse(&e.reading().await.unwrap());
            if got.3 > 0 {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the restored entity's timer fired");
    assert_eq!(got, ("local".to_owned(), 8, 1, 1));
    sup.shutdown().await;
}

const ENTRY: &str = "actor_handoff::node_process";

fn ask(node: &mut Child, line: &str, prefix: &str) -> String {
    node.tell(line);
    let got = node.expect(|l| l.starts_with(prefix));
    got[prefix.len()..].trim().to_owned()
}

fn settle(nodes: &mut [&mut Child], n: usize) {
    let line = format!("settled {n}");
    for node in nodes.iter_mut() {
        node.tell(&line);
    }
    for node in nodes.iter_mut() {
        node.try_expect(Duration::from_secs(90), |l| l == line)
            .unwrap_or_else(|| panic!("node {} did not settle", node.name));
    }
}

/// Two nodes: `a` serves every shard and its entities count to 5; `b` joins and takes
/// about half the shards. Every entity reads 5 + 1 from either node: those that moved
/// were restored on `b` (their hook ran there and its timer fired), the others never
/// were.
#[test]
fn an_actor_handoff_entity_keeps_its_state_when_a_join_moves_its_shard() {
    let keys = 40;
    let mut a = Child::start(ENTRY, "a", &[]);
    settle(&mut [&mut a], 1);
    assert_eq!(ask(&mut a, &format!("cast {keys} 5"), "cast"), "");
    // Handled before the join: each reads 5 on a.
    for r in ask(&mut a, &format!("read {keys}"), "read ").split(';') {
        let (_, reading) = r.split_once('=').unwrap();
        assert_eq!(parse(reading), ("a".to_owned(), 5, 0, 0), "{r}");
    }
    let seed = a.addr.clone();
    let mut b = Child::start(ENTRY, "b", &[("SEEDS", seed.as_str())]);
    settle(&mut [&mut a, &mut b], 2);
    assert_eq!(ask(&mut b, &format!("cast {keys} 1"), "cast"), "");
    // Read from b first: its calls come after its casts.
    let _ = ask(&mut b, &format!("read {keys}"), "read ");
    // A restored entity's timer fires 10 ms after its restore: read until each has.
    let mut from_a = String::new();
    for _ in 0..120 {
        from_a = ask(&mut a, &format!("read {keys}"), "read ");
        let waiting = from_a.split(';').any(|r| {
            let (_, _, restores, pings) = parse(r.split_once('=').unwrap().1);
            restores > 0 && pings == 0
        });
        if !waiting {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut moved = 0;
    for r in from_a.split(';') {
        let (key, reading) = r.split_once('=').unwrap();
        let (at, total, restores, pings) = parse(reading);
        assert_eq!(total, 6, "{key} lost its state: {reading}");
        match at.as_str() {
            "a" => assert_eq!((restores, pings), (0, 0), "{key}: {reading}"),
            "b" => {
                assert_eq!(restores, 1, "{key}: {reading}");
                assert!(pings >= 1, "{key}'s restored timer never fired: {reading}");
                moved += 1;
            }
            other => panic!("{key} runs on {other}"),
        }
    }
    assert!(moved > 0 && moved < keys, "{moved} of {keys} moved");
}

/// A distributed supervisor's `#[actor(handoff)]` child keeps its state when `migrate`
/// moves it to the other node, and is restored there (its hook ran).
#[test]
fn an_actor_handoff_child_keeps_its_state_when_migrated() {
    let mut a = Child::start(ENTRY, "a", &[]);
    let seed = a.addr.clone();
    let mut b = Child::start(ENTRY, "b", &[("SEEDS", seed.as_str())]);
    settle(&mut [&mut a, &mut b], 2);
    let owner = ask(&mut a, "start t1", "started t1 ");
    assert_eq!(ask(&mut a, "add t1 7", "added t1"), "");
    assert_eq!(ask(&mut a, "add t1 3", "added t1"), "");
    let (at, total, restores, _) = parse(&ask(&mut a, "get t1", "got t1 "));
    assert_eq!((at.as_str(), total, restores), (owner.as_str(), 10, 0));
    let target = if owner == "a" { "b" } else { "a" };
    assert_eq!(
        ask(&mut a, &format!("migrate t1 {target}"), "migrated t1 "),
        target
    );
    assert_eq!(ask(&mut b, "add t1 1", "added t1"), "");
    // b first: its call comes after its cast.
    for node in [&mut b, &mut a] {
        let (at, total, restores, _) = parse(&ask(node, "get t1", "got t1 "));
        assert_eq!(
            (at.as_str(), total, restores),
            (target, 11, 1),
            "{}",
            node.name
        );
    }
}

/// The node side: runs only in a child started by the tests above.
#[test]
#[ignore = "runs as a child process of the actor handoff tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

fn key(i: usize) -> String {
    format!("user-{i}")
}

async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let _ = NODE.set(name.clone());
    let config = NodeConfig::new(&name, "cookie").listen("127.0.0.1:0".parse().unwrap());
    let node = Node::start(config).await.unwrap();
    say(&format!("ready {} {}", node.name(), node.advertised()));
    for seed in var("SEEDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        node.connect(&seed.parse::<Peer>().unwrap());
    }
    let spec = ShardedSpec::new("tallies", Tally::handoff_actor(), |_: &String| ()).handoff();
    let sharded: Sharded<String, TallyMsg> = Sharded::start_on(&node, spec).await.unwrap();
    let local = Supervisor::start(
        SupervisorSpec::new("entities", Strategy::OneForOne).child(sharded.child_spec()),
    )
    .await
    .unwrap();
    let names: ClusterRegistry<ChildName, TallyMsg> =
        ClusterRegistry::start(&node, "tallies").await.unwrap();
    let spec = DistributedSpec::new("tallies")
        .handoff_kind("tally", |(): ()| (Tally::handoff_actor(), ()));
    let sup = DistributedSupervisor::start(&node, &names, spec)
        .await
        .unwrap();
    let owners = |s: &Sharded<String, TallyMsg>| {
        (0..s.stats().shards)
            .filter_map(|i| s.shard_owner(i))
            .collect::<std::collections::BTreeSet<String>>()
            .len()
    };
    let mut lines = commands();
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["settled", n] => {
                let n: usize = n.parse().unwrap();
                for _ in 0..2 {
                    until(|| {
                        let st = sharded.stats();
                        sharded.members().len() == n
                            && owners(&sharded) == n
                            && st.in_transit == 0
                            && st.served > 0
                            && sup.members().len() == n
                    })
                    .await;
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                say(&format!("settled {n}"));
            }
            ["cast", n, k] => {
                let (n, k): (usize, u64) = (n.parse().unwrap(), k.parse().unwrap());
                for i in 0..n {
                    sharded.addr(key(i)).cast(TallyMsg::Add(k)).unwrap();
                }
                say("cast");
            }
            ["read", n] => {
                let n: usize = n.parse().unwrap();
                let mut out = Vec::new();
                for i in 0..n {
                    let e: TallyRef = sharded.entity(key(i));
                    let reading = e
                        .with_timeout(Duration::from_secs(20))
                        .reading()
                        .await
                        .unwrap();
                    out.push(format!("{}={reading}", key(i)));
                }
                say(&format!("read {}", out.join(";")));
            }
            ["start", id] => {
                let p = ChildPlacement::new(*id, Placement::Singleton);
                let at = sup.start_child("tally", &(), p).await.unwrap();
                say(&format!("started {id} {}", at.node()));
            }
            ["add", id, k] => {
                sup.cast(id, TallyMsg::Add(k.parse().unwrap())).unwrap();
                say(&format!("added {id}"));
            }
            ["get", id] => {
                let got = sup
                    .call(id, TallyMsg::Reading, Duration::from_secs(20))
                    .await
                    .unwrap();
                say(&format!("got {id} {got}"));
            }
            ["migrate", id, to] => match sup.migrate(id, to).await {
                Ok(at) => say(&format!("migrated {id} {}", at.node())),
                Err(e) => {
                    eprintln!("migrate: {e}");
                    say(&format!("migrated {id} err"));
                }
            },
            _ => say(&format!("unknown {line}")),
        }
    }
    sharded.leave().await;
    local.shutdown().await;
    sup.shutdown().await;
    node.shutdown().await;
}
