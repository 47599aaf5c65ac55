//! A node joins a running cluster and casts to entities right after its own
//! `Sharded::start_on` (issue 15, seen by an outside-in trial: the first cast read 0 from
//! the other node afterwards). The entities report every life event and every message
//! they handle to the test process, so a message never handled (lost) is told apart from
//! a message handled and then its state dropped by a move (an entity without `Handoff`).
//!
//! A node process (`node_process`) starts node `FOUNDATION_TEST_NODE_NAME` with the
//! default silence (or `SILENCE_MS`), dials `SEEDS` (before its `start_on`, as a new
//! user's program does, or, with `DIAL=serving`, only once it serves every shard alone:
//! a node that finds the cluster after its join window), starts two `Sharded` of
//! [`Visits`] entities with `String` keys and the default 1,024 shards: `plain` (no
//! `Handoff`) and `kept` (`.handoff()`), their regions under a supervisor, and, with
//! `CAST_KEYS=n`, at once casts `Add(1)` to `user-0` … `user-<n-1>` of both. It obeys:
//!
//! - `settled <n>`: `@settled <n>` once both see `n` members owning shards and no shard
//!   is in a move here (twice, 600 ms apart);
//! - `cast <n> <seq>`: casts `Add(seq)` to the `n` keys of both, then `@cast`;
//! - `read <n>`: calls `Get` of the `n` keys of both, and prints
//!   `@read <sharded>:<key>=<node>/<numbers>;…` (`<numbers>` comma-separated; the node
//!   `error` for a call that failed);
//! - `events`: `@events <event>;…`, every event of this process's entities in order, each
//!   `<what> <sharded> <key> <node> <numbers>` with `what` one of `init`, `restore`,
//!   `handle`, `export`, `terminate` (`handle` carries the number handled, the others the
//!   numbers the state holds);
//! - `stats`: `@stats <plain dropped> <kept dropped>`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::discovery::Peer;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_registry::distributed::Handoff;
use foundation_registry::sharded::{Sharded, ShardedSpec};
use foundation_testkit::{Child, commands, say};

/// What a [`Visits`] entity takes.
#[derive(Debug, RemoteMessage)]
#[remote(name = "test.Visits")]
pub enum VisitMsg {
    /// Record number `n`.
    #[remote(tag = 1)]
    Add(u64),
    /// The node it runs on and the numbers it holds.
    #[remote(tag = 2)]
    Get(ReplyPort<(String, Vec<u64>)>),
}

/// An entity that counts the numbers cast to it and reports every event of its life to
/// [`EVENTS`].
#[derive(Clone)]
pub struct Visits {
    node: String,
    sharded: &'static str,
}

/// Every event of this process's entities, in order.
static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Visits {
    fn event(&self, what: &str, key: &str, numbers: &[u64]) {
        let numbers: Vec<String> = numbers.iter().map(u64::to_string).collect();
        let line = format!(
            "{what} {} {key} {} {}",
            self.sharded,
            self.node,
            numbers.join(",")
        );
        EVENTS.lock().unwrap().push(line);
    }
}

impl Actor for Visits {
    type Msg = VisitMsg;
    /// The key, and the numbers handled.
    type State = (String, Vec<u64>);
    type Args = String;

    async fn init(&self, _: &Addr<VisitMsg>, key: String) -> Result<Self::State, ActorError> {
        self.event("init", &key, &[]);
        Ok((key, Vec::new()))
    }

    async fn handle(
        &self,
        _: &Addr<VisitMsg>,
        msg: VisitMsg,
        (key, numbers): &mut Self::State,
    ) -> Result<(), ActorError> {
        match msg {
            VisitMsg::Add(n) => {
                numbers.push(n);
                self.event("handle", key, &[n]);
            }
            VisitMsg::Get(port) => {
                let _ = port.send((self.node.clone(), numbers.clone()));
            }
        }
        Ok(())
    }

    async fn terminate(
        &self,
        _: &Addr<VisitMsg>,
        (key, numbers): &mut Self::State,
    ) -> Result<(), ActorError> {
        self.event("terminate", key, numbers);
        Ok(())
    }
}

impl Handoff for Visits {
    type Snapshot = (String, Vec<u64>);

    fn export(&self, state: Self::State) -> Self::Snapshot {
        self.event("export", &state.0, &state.1);
        state
    }

    async fn restore(
        &self,
        _: &Addr<VisitMsg>,
        state: Self::Snapshot,
        _: String,
    ) -> Result<Self::State, ActorError> {
        self.event("restore", &state.0, &state.1);
        Ok(state)
    }
}

const ENTRY: &str = "sharded_join::node_process";

/// The two `Sharded` each node runs: without and with `Handoff`.
const SHARDED: [&str; 2] = ["plain", "kept"];

fn key(i: usize) -> String {
    format!("user-{i}")
}

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
        // Settling waits for the joining node's window (twice its silence) and a move.
        node.try_expect(Duration::from_secs(90), |l| l == line)
            .unwrap_or_else(|| panic!("node {} did not settle", node.name));
    }
}

/// One entity event, as a node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    what: String,
    node: String,
    numbers: Vec<u64>,
}

/// Per `(sharded, key)`, the events every node reported, each node's in order.
type Events = BTreeMap<(String, String), Vec<Event>>;

fn numbers(s: &str) -> Vec<u64> {
    s.split(',')
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().unwrap())
        .collect()
}

fn events(nodes: &mut [&mut Child]) -> Events {
    let mut all = Events::new();
    for node in nodes.iter_mut() {
        let line = ask(node, "events", "events");
        for e in line.split(';').filter(|e| !e.is_empty()) {
            let w: Vec<&str> = e.split(' ').collect();
            let [what, sharded, key, at, nums] = w[..] else {
                panic!("bad event {e:?}");
            };
            all.entry((sharded.to_owned(), key.to_owned()))
                .or_default()
                .push(Event {
                    what: what.to_owned(),
                    node: at.to_owned(),
                    numbers: numbers(nums),
                });
        }
    }
    all
}

/// Per `(sharded, key)`, the node that answered and the numbers it held.
fn read(node: &mut Child, n: usize) -> BTreeMap<(String, String), (String, Vec<u64>)> {
    let line = ask(node, &format!("read {n}"), "read ");
    line.split(';')
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (sk, rest) = e.split_once('=').unwrap();
            let (sharded, key) = sk.split_once(':').unwrap();
            let (at, nums) = rest.split_once('/').unwrap();
            (
                (sharded.to_owned(), key.to_owned()),
                (at.to_owned(), numbers(nums)),
            )
        })
        .collect()
}

/// Each number handled by a key's entity, by the nodes that handled it.
fn handled(events: &[Event]) -> BTreeMap<u64, Vec<String>> {
    let mut by: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.what == "handle") {
        for n in &e.numbers {
            by.entry(*n).or_default().push(e.node.clone());
        }
    }
    by
}

/// How node `b` finds node `a`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dial {
    /// Before its `start_on`, as a new user's program does.
    Before,
    /// Once it serves every shard itself: it ran alone past its join window (twice the
    /// silence), as a node whose discovery finds the others late does.
    WhenServingAlone,
}

/// What the tests read: per `(sharded, key)`, the node that answered and its numbers.
type Readings = BTreeMap<(String, String), (String, Vec<u64>)>;

/// Node `a` runs alone (settled, serving every shard, unless `together`: then `b` starts
/// right after it), and with `a_first` casts `Add(100)` to the keys first; node `b`
/// finds `a` as `dial` says and casts `Add(1)` to the keys of both `Sharded` right after
/// its `start_on`. Once both settled, `b` casts `Add(2)` and `a` reads every entity.
fn join_and_cast(keys: usize, together: bool, a_first: bool, dial: Dial) -> (Readings, Events) {
    let mut a = Child::start(ENTRY, "a", &[]);
    if !together {
        settle(&mut [&mut a], 1);
    }
    if a_first {
        assert_eq!(ask(&mut a, &format!("cast {keys} 100"), "cast"), "");
    }
    let seed = a.addr.clone();
    let keys_s = keys.to_string();
    let mut settings = vec![("SEEDS", seed.as_str()), ("CAST_KEYS", keys_s.as_str())];
    if dial == Dial::WhenServingAlone {
        settings.push(("DIAL", "serving"));
    }
    let mut b = Child::start(ENTRY, "b", &settings);
    // b casts right after its start_on (and, alone first, dials once it serves alone).
    b.try_expect(Duration::from_secs(90), |l| l == "casted")
        .expect("b cast to its keys");
    settle(&mut [&mut a, &mut b], 2);
    assert_eq!(ask(&mut b, &format!("cast {keys} 2"), "cast"), "");
    let got = read(&mut a, keys);
    // Nothing was dropped for lack of an owner, a backlog or an encoding, on either node.
    for node in [&mut a, &mut b] {
        assert_eq!(ask(node, "stats", "stats "), "0 0", "node {}", node.name);
    }
    let events = events(&mut [&mut a, &mut b]);
    (got, events)
}

/// Checks every key of both `Sharded` after [`join_and_cast`]: each number cast (`100`
/// by `a` with `a_first`, then `1` and `2` by `b`) handled exactly once, by one entity
/// life (none lost, none twice); an entity with `Handoff` reads every number from `a`.
/// One without reads every number, or, where its shard moved after it handled some (a
/// `terminate` event holding them on the node it left), only those handled since: its
/// state is documented to go with a move. Returns how many such keys there were.
fn check(keys: usize, a_first: bool, got: &Readings, events: &Events) -> usize {
    let cast: Vec<u64> = if a_first { vec![100, 1, 2] } else { vec![1, 2] };
    let mut dropped_state = 0;
    for sharded in SHARDED {
        for i in 0..keys {
            let k = (sharded.to_owned(), key(i));
            let evs = events.get(&k).cloned().unwrap_or_default();
            let by = handled(&evs);
            let reading = got.get(&k);
            let line = format!("{sharded}:{} read {reading:?}, events {evs:?}", key(i));
            for n in &cast {
                assert_eq!(
                    by.get(n).map(Vec::len),
                    Some(1),
                    "number {n} not handled exactly once: {line}"
                );
            }
            assert_eq!(by.len(), cast.len(), "{line}");
            let (_, nums) = reading.unwrap();
            if sharded == "kept" || nums == &cast {
                assert_eq!(nums, &cast, "{line}");
                continue;
            }
            // Without Handoff: the numbers before the move were handled, then the entity
            // stopped (terminate, holding them) and started again from init.
            let (before, after) = cast.split_at(cast.len() - nums.len());
            assert_eq!(nums, after, "{line}");
            let last = before[before.len() - 1];
            let moved_from = &by[&last][0];
            assert!(
                evs.iter()
                    .any(|e| e.what == "terminate" && &e.node == moved_from && e.numbers == before),
                "{line}"
            );
            dropped_state += 1;
        }
    }
    dropped_state
}

/// The scenario, as the trial ran it: `a` serves every shard (its entities hold
/// `100`), `b` dials `a`, starts its `Sharded` and casts at once. Nothing is lost: every
/// cast is handled exactly once. The join moves about half the shards to `b`: entities
/// with `Handoff` arrive there with their state; those without start there from `init`
/// (documented), and only those.
#[test]
fn a_node_casting_right_after_its_start_on_as_it_joins_loses_no_cast_and_handoff_keeps_state() {
    let keys = 40;
    let (got, events) = join_and_cast(keys, false, true, Dial::Before);
    let dropped = check(keys, true, &got, &events);
    // The keys whose shards moved to b; b's first casts were held until they arrived.
    eprintln!("plain entities started from init on b after the join: {dropped} of {keys}");
    assert!(dropped > 0 && dropped < keys, "{dropped} of {keys} moved");
}

/// Both nodes start together (`a` still in its join window when `b` comes): `b`'s first
/// casts are held until the shards' owners are agreed, and handled once, by their owner.
#[test]
fn two_nodes_started_together_lose_none_of_the_first_casts() {
    let keys = 40;
    let (got, events) = join_and_cast(keys, true, false, Dial::Before);
    assert_eq!(check(keys, false, &got, &events), 0);
}

/// The trial's outcome: `b` does not find `a` within its join window (twice the silence),
/// so it serves every shard itself and its first casts are handled there; when it meets
/// `a`, the shards `a` owns are handed over to `a`. Every cast was handled exactly once;
/// an entity with `Handoff` reads both numbers from `a`, one without lost the first with
/// its state (handled on `b`, `terminate`d there by the move): a later call on `a` reads
/// only what came after.
#[test]
fn a_node_that_served_alone_before_it_met_the_cluster_hands_its_entities_over() {
    let keys = 40;
    let (got, events) = join_and_cast(keys, false, false, Dial::WhenServingAlone);
    let dropped = check(keys, false, &got, &events);
    // About half of the keys are a's: their plain entities lost the first number.
    eprintln!("plain entities whose state the move to a dropped: {dropped} of {keys}");
    assert!(dropped > 0 && dropped < keys, "{dropped} of {keys} moved");
}

/// As above, with `a`'s entities holding `100` before `b` comes: both nodes served every
/// key meanwhile, so each shard's owner keeps its own state and the other node's is
/// dropped, `Handoff` or not (a handed-over snapshot of an entity active on its owner is
/// dropped). Still, every cast was handled exactly once.
#[test]
fn a_node_that_served_alone_keeps_the_owners_state_of_an_entity_both_nodes_ran() {
    let keys = 40;
    let (got, events) = join_and_cast(keys, false, true, Dial::WhenServingAlone);
    let mut owned_by_a = 0;
    for sharded in SHARDED {
        for i in 0..keys {
            let k = (sharded.to_owned(), key(i));
            let evs = events.get(&k).cloned().unwrap_or_default();
            let by = handled(&evs);
            let (at, nums) = got.get(&k).unwrap();
            let line = format!("{sharded}:{} read {at} {nums:?}, events {evs:?}", key(i));
            // a handled 100, b handled 1 while alone, the owner 2: each exactly once.
            assert_eq!(by.get(&100), Some(&vec!["a".to_owned()]), "{line}");
            assert_eq!(by.get(&1), Some(&vec!["b".to_owned()]), "{line}");
            assert_eq!(by.get(&2), Some(&vec![at.clone()]), "{line}");
            assert_eq!(by.len(), 3, "{line}");
            // The owner's state, and the other node's stopped with the move.
            let (mine, theirs, other) = if at == "a" {
                owned_by_a += 1;
                (100, 1, "b")
            } else {
                (1, 100, "a")
            };
            assert_eq!(nums, &vec![mine, 2], "{line}");
            let stop = if sharded == "kept" {
                "export"
            } else {
                "terminate"
            };
            assert!(
                evs.iter()
                    .any(|e| e.what == stop && e.node == other && e.numbers == [theirs]),
                "{line}"
            );
        }
    }
    assert!(owned_by_a > 0 && owned_by_a < 2 * keys, "{owned_by_a}");
}

/// The node side: runs only in a child started by the tests above.
#[test]
#[ignore = "runs as a child process of the sharded join tests"]
fn node_process() {
    foundation_testkit::run_node(run);
}

async fn start(node: &Node, sharded: &'static str, handoff: bool) -> Sharded<String, VisitMsg> {
    let me = Visits {
        node: node.name().to_owned(),
        sharded,
    };
    let spec = ShardedSpec::new(sharded, me, |k: &String| k.clone());
    let spec = if handoff { spec.handoff() } else { spec };
    Sharded::start_on(node, spec).await.unwrap()
}

async fn run(name: String) {
    let var = foundation_testkit::setting;
    let mut config = NodeConfig::new(&name, "cookie").listen("127.0.0.1:0".parse().unwrap());
    if let Some(ms) = var("SILENCE_MS") {
        config = config.silence(Duration::from_millis(ms.parse().unwrap()));
    }
    let node = Node::start(config).await.unwrap();
    say(&format!("ready {} {}", node.name(), node.advertised()));
    let dial = || {
        for seed in var("SEEDS")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
        {
            node.connect(&seed.parse::<Peer>().unwrap());
        }
    };
    let alone_first = var("DIAL").is_some_and(|d| d == "serving");
    if !alone_first {
        dial();
    }
    let plain = start(&node, "plain", false).await;
    let kept = start(&node, "kept", true).await;
    let sup = Supervisor::start(
        SupervisorSpec::new("entities", Strategy::OneForOne)
            .child(plain.child_spec())
            .child(kept.child_spec()),
    )
    .await
    .unwrap();
    let both = [plain.clone(), kept.clone()];
    if let Some(n) = var("CAST_KEYS") {
        let n: usize = n.parse().unwrap();
        for s in &both {
            for i in 0..n {
                s.addr(key(i)).cast(VisitMsg::Add(1)).unwrap();
            }
        }
        if alone_first {
            while both.iter().any(|s| s.stats().served < s.stats().shards) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            dial();
        }
        say("casted");
    }
    let owners = |s: &Sharded<String, VisitMsg>| {
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
                    while both.iter().any(|s| {
                        let st = s.stats();
                        s.members().len() != n
                            || owners(s) != n
                            || st.in_transit > 0
                            || st.served == 0
                    }) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(600)).await;
                }
                say(&format!("settled {n}"));
            }
            ["cast", n, seq] => {
                let (n, seq): (usize, u64) = (n.parse().unwrap(), seq.parse().unwrap());
                for s in &both {
                    for i in 0..n {
                        s.addr(key(i)).cast(VisitMsg::Add(seq)).unwrap();
                    }
                }
                say("cast");
            }
            ["read", n] => {
                let n: usize = n.parse().unwrap();
                let mut out = Vec::new();
                for (s, sharded) in both.iter().zip(SHARDED) {
                    for i in 0..n {
                        let addr = s.addr(key(i));
                        let (at, nums) = match addr
                            .call_timeout(VisitMsg::Get, Duration::from_secs(20))
                            .await
                        {
                            Ok(got) => got,
                            Err(e) => {
                                eprintln!("read {}: {e}", key(i));
                                ("error".to_owned(), Vec::new())
                            }
                        };
                        let nums: Vec<String> = nums.iter().map(u64::to_string).collect();
                        out.push(format!("{sharded}:{}={at}/{}", key(i), nums.join(",")));
                    }
                }
                say(&format!("read {}", out.join(";")));
            }
            ["events"] => say(&format!("events {}", EVENTS.lock().unwrap().join(";"))),
            ["stats"] => say(&format!(
                "stats {} {}",
                plain.stats().dropped,
                kept.stats().dropped
            )),
            _ => say(&format!("unknown {line}")),
        }
    }
    plain.leave().await;
    kept.leave().await;
    sup.shutdown().await;
    node.shutdown().await;
}
