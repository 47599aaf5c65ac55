//! A node back in the cluster must not start a singleton another node still runs: a node
//! healed from the losing side of a partition (its records are stale: the majority failed
//! its singletons over meanwhile), and a node killed and started again under its name (a
//! new incarnation with an empty table), with and without declaring its singletons again
//! at boot. Twenty singletons, so that rendezvous gives the returning node some of them.
//! The test process is the observer: each instance records its own start (`init`) and stop
//! (`terminate`) on the wall clock all node processes share (a killed node's instances end
//! when the test saw it die), and no two lives of one singleton may overlap. Under
//! `Passive` the singletons the returning node owns by rendezvous stay where they failed
//! over; under `Eager` they come back to it, each started there after the old one stopped.
//! Last, a node whose two lives both declare a singleton in their join grace (two records
//! with one stamp) keeps the instance it started and records it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use foundation_registry::placement::Rendezvous;

use super::harness::{Child, NAMES, Net, start, three_in};
use super::split::{Life, overlaps};
use super::{ask, call, converge, moved, start_child, started_on};

/// Singletons per test: about a third are owned by each of three nodes.
const SINGLETONS: usize = 20;

fn ids(prefix: &str) -> Vec<String> {
    (0..SINGLETONS).map(|i| format!("{prefix}{i}")).collect()
}

/// The rendezvous owner of `id` among `a`, `b`, `c`.
fn owner(id: &str) -> &'static str {
    owner_among(id, &NAMES[..3])
}

/// Where `id` fails over to while `c` is away: its owner among `a` and `b`.
fn heir(id: &str) -> &'static str {
    owner_among(id, &NAMES[..2])
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Every `up|down` line a node's `echo` children printed so far.
fn lives_line(node: &mut Child) -> String {
    node.tell("lives");
    let line = node.expect(|l| l.starts_with("lives"));
    line["lives".len()..].trim().to_owned()
}

/// Adds the lives of a node's `lives` line to `all`, by child id. `killed_at`: the node
/// was killed then, and what still ran there ended then (later than it did: safe).
fn add_lives(line: &str, all: &mut BTreeMap<String, Vec<Life>>, killed_at: Option<u128>) {
    let mut open: BTreeMap<String, Life> = BTreeMap::new();
    for entry in line.split(';').filter(|e| !e.is_empty()) {
        let words: Vec<&str> = entry.split(' ').collect();
        let [what, id, node, at] = words[..] else {
            panic!("bad life line {entry:?}");
        };
        let at: u128 = at.parse().unwrap();
        match what {
            "up" => {
                let life = Life {
                    node: node.to_owned(),
                    up: at,
                    down: None,
                };
                let before = open.insert(id.to_owned(), life);
                assert!(before.is_none(), "{node}: two ups of {id} without a down");
            }
            "down" => {
                let mut life = open
                    .remove(id)
                    .unwrap_or_else(|| panic!("{node}: a down of {id} without an up"));
                life.down = Some(at);
                all.entry(id.to_owned()).or_default().push(life);
            }
            w => panic!("bad life line {w}"),
        }
    }
    for (id, mut life) in open {
        if killed_at.is_some() {
            life.down = killed_at;
        }
        all.entry(id).or_default().push(life);
    }
}

/// No two lives of one singleton overlap, and exactly one of each runs now.
fn one_at_a_time(all: &mut BTreeMap<String, Vec<Life>>, ids: &[String]) {
    let mut found = Vec::new();
    for id in ids {
        let lives = all.entry(id.clone()).or_default();
        lives.sort_by_key(|l| l.up);
        for (one, two) in overlaps(lives) {
            found.push(format!("{id}: {one:?} and {two:?}"));
        }
        let running = lives.iter().filter(|l| l.down.is_none()).count();
        assert_eq!(running, 1, "{id}: {lives:?}");
    }
    assert!(
        found.is_empty(),
        "two instances of one singleton at once:\n{}",
        found.join("\n")
    );
}

/// The rendezvous owner of `id` among `nodes`.
fn owner_among(id: &str, nodes: &[&'static str]) -> &'static str {
    nodes
        .iter()
        .copied()
        .max_by_key(|n| Rendezvous::score(n, id.as_bytes()))
        .unwrap()
}

/// Waits (in each node, generously) until every node's `which_children` reads each of
/// `ids` running on exactly the node `at` gives, and nothing else.
fn settle(nodes: &mut [Child], ids: &[String], at: impl Fn(&str) -> &'static str) {
    let table: BTreeMap<&str, &str> = ids.iter().map(|id| (id.as_str(), at(id))).collect();
    let line: String = table
        .iter()
        .map(|(id, node)| format!("{id}={node}/running;"))
        .collect();
    for node in nodes {
        converge(node, ids.len(), &line);
    }
}

/// Starts the singletons from `node` (each on its rendezvous owner), `eager` or passive.
fn start_all(nodes: &mut [Child], ids: &[String], eager: bool) {
    let mode = if eager { " eager" } else { "" };
    for id in ids {
        let at = started_on(&start_child(
            &mut nodes[0],
            &format!("echo {id} singleton{mode}"),
        ));
        assert_eq!(at, owner(id), "{id}");
    }
    settle(nodes, ids, owner);
}

/// Where each singleton must run once `c` is back: on its owner, but for those `c` owns,
/// which stay where they failed over unless `eager`.
fn back(eager: bool) -> impl Fn(&str) -> &'static str {
    move |id| if eager { owner(id) } else { heir(id) }
}

/// Where each singleton lived, in order: one life on its owner for each the cluster never
/// moved; for each `c` owned, on `c`, then where it failed over, and under `Eager` on `c`
/// again. (A node may show two lives in a row: a start held back while the name of the
/// instance it replaced had not yet gone everywhere.)
fn lives_per_singleton(all: &BTreeMap<String, Vec<Life>>, ids: &[String], eager: bool) {
    for id in ids {
        let lives = &all[id];
        let mut nodes: Vec<&str> = lives.iter().map(|l| l.node.as_str()).collect();
        nodes.dedup();
        let want = match owner(id) {
            "c" if eager => vec!["c", heir(id), "c"],
            "c" => vec!["c", heir(id)],
            o => {
                // Never moved, never replaced: one life.
                assert_eq!(lives.len(), 1, "{id}: {lives:?}");
                vec![o]
            }
        };
        assert_eq!(nodes, want, "{id}: {lives:?}");
    }
}

/// Three nodes in namespaces; `c` is cut off, the majority fails its singletons over, the
/// cut heals.
fn healed(prefix: &str, eager: bool) {
    let net = Net::new(3);
    // A 2 s margin: above heartbeat + latency + detection tick + stop time on a loaded
    // machine.
    let mut nodes = three_in(&net, &[("MARGIN_MS", "2000")]);
    let ids = ids(prefix);
    let ours: Vec<String> = ids.iter().filter(|id| owner(id) == "c").cloned().collect();
    assert!(!ours.is_empty(), "no singleton of {prefix}* is c's");
    start_all(&mut nodes, &ids, eager);

    net.cut(2);
    nodes[2].expect(|l| l == "ev quorumlost");
    for id in &ours {
        moved(&mut nodes[0], id, "c", "ev started");
    }
    settle(&mut nodes[..2], &ids, heir);

    net.heal(2);
    nodes[2].expect(|l| l == "ev quorumback");
    settle(&mut nodes, &ids, back(eager));

    let mut all = BTreeMap::new();
    for node in &mut nodes {
        add_lives(&lives_line(node), &mut all, None);
    }
    one_at_a_time(&mut all, &ids);
    lives_per_singleton(&all, &ids, eager);
}

#[test]
fn a_healed_minority_node_starts_none_of_its_passive_singletons_the_majority_took_over() {
    healed("hp", false);
}

#[test]
fn a_healed_minority_node_takes_its_eager_singletons_back_only_after_they_stopped() {
    healed("he", true);
}

/// Three nodes on loopback; `c` is killed with its singletons, they fail over, and `c`
/// starts again under its name (a new incarnation), declaring them again at boot if
/// `declare`.
fn restarted(prefix: &str, eager: bool, declare: bool) {
    // The probe off: the failover waits silence + margin after the kill, so that the
    // killed node's lives (ended when the test saw it die) cannot seem to overlap it.
    let settings = [
        ("SILENCE_MS", "1000"),
        ("MARGIN_MS", "1000"),
        ("PROBE", "off"),
    ];
    let a = start("a", &settings);
    let seed = a.addr.clone();
    let mut seeded = settings.to_vec();
    seeded.push(("SEEDS", seed.as_str()));
    let b = start("b", &seeded);
    let c = start("c", &seeded);
    let mut nodes = [a, b, c];
    for node in &mut nodes {
        node.tell("members 3");
        node.expect(|l| l == "members 3");
    }
    let ids = ids(prefix);
    let ours: Vec<String> = ids.iter().filter(|id| owner(id) == "c").cloned().collect();
    assert!(!ours.is_empty(), "no singleton of {prefix}* is c's");
    start_all(&mut nodes, &ids, eager);

    let mut all = BTreeMap::new();
    let line = lives_line(&mut nodes[2]);
    nodes[2].kill();
    add_lives(&line, &mut all, Some(unix_nanos()));
    for id in &ours {
        moved(&mut nodes[0], id, "c", "ev started");
    }
    settle(&mut nodes[..2], &ids, heir);

    nodes[2] = start("c", &seeded);
    if declare {
        let mode = if eager { " eager" } else { "" };
        nodes[2].tell(&format!("declare {SINGLETONS} {prefix}{mode}"));
        let line = nodes[2].expect(|l| l.starts_with(&format!("declared {prefix} ")));
        // Every declaration is recorded, or refused as already started (its record, or
        // its instance's name, is here already); none fails otherwise.
        assert!(line.ends_with(" 0"), "{line}");
    }
    for node in &mut nodes {
        node.tell("members 3");
        node.expect(|l| l == "members 3");
    }
    settle(&mut nodes, &ids, back(eager));

    for node in &mut nodes {
        add_lives(&lives_line(node), &mut all, None);
    }
    one_at_a_time(&mut all, &ids);
    lives_per_singleton(&all, &ids, eager);
}

#[test]
fn a_node_started_again_leaves_its_passive_singletons_where_they_failed_over() {
    restarted("rp", false, false);
}

#[test]
fn a_node_started_again_takes_its_eager_singletons_back_only_after_they_stopped() {
    restarted("re", true, false);
}

#[test]
fn a_node_started_again_declaring_its_passive_singletons_at_boot_starts_none_of_them() {
    restarted("dp", false, true);
}

#[test]
fn a_node_started_again_declaring_its_eager_singletons_at_boot_takes_them_back_one_at_a_time() {
    restarted("de", true, true);
}

/// Two lives of one node declaring one singleton at boot, each in its join grace, stamp
/// their records alike (clock 0, the node's name); only `born` orders them. `a` declares
/// the singleton at a cold start, and `b` joins and gets its record; `a` is killed and
/// starts again under its name, declaring it again before it meets anyone: a cluster of
/// one, it starts an instance at once. When the records meet, the first life's (born
/// first) wins, and the second's, with the slot of the instance running, goes; the plan
/// starts the singleton on `a` (the only node with its role, so `b` never runs it), where
/// an instance runs under that stamp already. That instance must be recorded, not left
/// running unrecorded: every node's records would show no instance of it.
#[test]
fn a_node_started_again_declaring_a_singleton_its_last_life_declared_records_the_instance() {
    // A long margin, so both lives of `a` surely declare in their join grace (silence +
    // margin after the supervisor started): at clock 0.
    let a_settings = [
        ("SILENCE_MS", "1000"),
        ("MARGIN_MS", "5000"),
        ("ROLE", "solo"),
    ];
    let declare = "echo twice singleton role:solo";
    let mut a = start("a", &a_settings);
    assert_eq!(start_child(&mut a, declare), "ok a");
    let mut b = start("b", &[("SILENCE_MS", "1000"), ("SEEDS", &a.addr)]);
    let table = "twice=a/running;";
    for node in [&mut a, &mut b] {
        ask(node, "members 2", "members 2");
        converge(node, 1, table);
    }

    a.kill();
    // Once `b` sees the first life gone, its records cannot show that life's instance as
    // running any more.
    ask(&mut b, "members 1", "members 1");
    a = start("a", &a_settings);
    assert_eq!(start_child(&mut a, declare), "ok a");
    let seed = b.addr.clone();
    ask(
        &mut a,
        &format!("connect {seed}"),
        &format!("connecting {seed}"),
    );

    // One instance, on `a`, recorded there, the same on both nodes, and reached by name
    // from both. `b` first: `a` may read its own record before the merge.
    for node in [&mut b, &mut a] {
        ask(node, "members 2", "members 2");
        converge(node, 1, table);
        assert_eq!(call(node, "twice"), "twice@a", "called from {}", node.name);
    }
    // The instance recorded is the one `a`'s second life started: it never stopped, and
    // `b` ran none.
    let lives = lives_line(&mut a);
    let entries: Vec<&str> = lives.split(';').filter(|e| !e.is_empty()).collect();
    assert!(
        entries.len() == 1 && entries[0].starts_with("up twice a "),
        "a's lives: {lives}"
    );
    assert_eq!(lives_line(&mut b), "", "b ran an instance");
}
