//! Split brain across real partitions (network namespaces, [`Net::split`]): a 3|2 split
//! under `KeepMajority`, `KeepOldest`, `StaticQuorum(3)`, `KeepReferee` and `DownAll`
//! (every side stops until the heal). The test process is the
//! observer outside every partition: each child records its own start (`init`) and stop
//! (`terminate`) on the machine clock all node processes share, and the test checks that
//! no two instances of the singleton ever ran at once, and that after the heal every node
//! agrees where it runs.

use super::harness::{Child, NAMES, Net, nodes_in};
use super::{converge, moved, start_child, started_on};

/// An instance's life as its node recorded it: `[up, down)`, `down` `None` while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Life {
    pub(super) node: String,
    pub(super) up: u128,
    pub(super) down: Option<u128>,
}

/// Every life of child `id` on every node, from each node's `lives` record (each node
/// keeps the lines its children printed, with wall-clock times).
pub(super) fn lives(nodes: &mut [Child], id: &str) -> Vec<Life> {
    let mut all = Vec::new();
    for node in nodes {
        node.tell("lives");
        let line = node.expect(|l| l.starts_with("lives"));
        let mut open: Option<Life> = None;
        for entry in line["lives".len()..]
            .trim()
            .split(';')
            .filter(|e| !e.is_empty())
        {
            let words: Vec<&str> = entry.split(' ').collect();
            let [what, child, at_node, at] = words[..] else {
                panic!("bad life line {entry:?}");
            };
            if child != id {
                continue;
            }
            let at: u128 = at.parse().unwrap();
            match what {
                "up" => {
                    assert!(open.is_none(), "{at_node}: two ups of {id} without a down");
                    open = Some(Life {
                        node: at_node.to_owned(),
                        up: at,
                        down: None,
                    });
                }
                "down" => {
                    let mut life = open
                        .take()
                        .unwrap_or_else(|| panic!("{at_node}: a down of {id} without an up"));
                    life.down = Some(at);
                    all.push(life);
                }
                w => panic!("bad life line {w}"),
            }
        }
        all.extend(open);
    }
    all.sort_by_key(|l| l.up);
    all
}

/// Asks `node` which single node runs `id` once one does (`single`), and returns it.
pub(super) fn single(node: &mut Child, id: &str) -> String {
    node.tell(&format!("single {id}"));
    let line = node.expect(|l| l.starts_with(&format!("single {id} ")));
    line.rsplit(' ').next().unwrap().to_owned()
}

/// Every life of `id` on every node: no two overlap, and one runs still. Returns them.
pub(super) fn one_at_a_time(nodes: &mut [Child], id: &str) -> Vec<Life> {
    let lives = lives(nodes, id);
    let both = overlaps(&lives);
    assert_eq!(both, Vec::new(), "two instances at once: {lives:?}");
    let running = lives.iter().filter(|l| l.down.is_none()).count();
    assert_eq!(running, 1, "{lives:?}");
    lives
}

/// The pairs of lives that overlap: two instances running at once.
pub(super) fn overlaps(lives: &[Life]) -> Vec<(Life, Life)> {
    let mut found = Vec::new();
    for (i, one) in lives.iter().enumerate() {
        for two in &lives[i + 1..] {
            let ends = |l: &Life| l.down.unwrap_or(u128::MAX);
            if one.up < ends(two) && two.up < ends(one) {
                found.push((one.clone(), two.clone()));
            }
        }
    }
    found
}

/// An id whose rendezvous owner among the first `n` nodes is `owner`.
pub(super) fn id_owned_by(prefix: &str, owner: &str, n: usize) -> String {
    use foundation_registry::placement::Rendezvous;
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|id| {
            let score = |node: &str| Rendezvous::score(node, id.as_bytes());
            NAMES[..n]
                .iter()
                .all(|other| *other == owner || score(owner) > score(other))
        })
        .unwrap()
}

/// Five nodes under `quorum`; a singleton owned by `e`; the hosts in `side` split from the
/// rest; the side `winners` keeps running and takes the singleton over, every other node
/// reports the quorum lost. Healed, every node agrees on one instance, and no two
/// instances ever ran at once.
fn three_two(quorum: &str, prefix: &str, side: &[usize], winners: &[usize]) {
    let net = Net::new(5);
    // A 2 s margin: above heartbeat + latency + detection tick + stop time on a loaded
    // machine with five node processes on two cores.
    let mut nodes = nodes_in(&net, 5, &[("MARGIN_MS", "2000"), ("QUORUM", quorum)]);
    let id = id_owned_by(prefix, "e", 5);
    let owner = started_on(&start_child(&mut nodes[0], &format!("echo {id} singleton")));
    assert_eq!(owner, "e");
    for node in nodes.iter_mut() {
        converge(node, 1, &format!("{id}=e/running;"));
    }
    assert!(
        !winners.contains(&4),
        "the owner must be on the losing side"
    );

    net.split(side);
    for (i, node) in nodes.iter_mut().enumerate() {
        if !winners.contains(&i) {
            node.expect(|l| l == "ev quorumlost");
        }
    }
    nodes[4].expect(|l| l == format!("ev stopped {id}"));
    // The winners start it once their wait is over, and agree where.
    let mut heir = None;
    for &i in winners {
        let (at, _) = moved(&mut nodes[i], &id, "e", "ev started");
        assert_eq!(*heir.get_or_insert_with(|| at.clone()), at);
    }
    let heir = heir.unwrap();
    assert!(winners.iter().any(|&i| NAMES[i] == heir), "{heir}");

    net.rejoin(side);
    for (i, node) in nodes.iter_mut().enumerate() {
        if !winners.contains(&i) {
            node.expect(|l| l == "ev quorumback");
        }
    }
    let table = format!("{id}={heir}/running;");
    for node in nodes.iter_mut() {
        converge(node, 1, &table);
    }

    let lives = one_at_a_time(&mut nodes, &id);
    // It ran on e, then (at least once) elsewhere; the one still running is the heir's.
    assert_eq!(lives[0].node, "e", "{lives:?}");
    let running: Vec<&Life> = lives.iter().filter(|l| l.down.is_none()).collect();
    assert_eq!(running[0].node, heir, "{lives:?}");
}

#[test]
fn keep_majority_a_3_2_split_never_runs_two_instances_and_heals_to_one() {
    // d and e apart: a, b, c keep the majority.
    three_two("majority", "km", &[3, 4], &[0, 1, 2]);
}

#[test]
fn keep_oldest_a_3_2_split_keeps_the_side_of_the_oldest_even_as_the_smaller() {
    // a (started first: the oldest) and b apart: they keep running, c, d, e stop.
    three_two("oldest", "ko", &[0, 1], &[0, 1]);
}

#[test]
fn static_quorum_a_3_2_split_keeps_the_side_of_three() {
    three_two("static:3", "sq", &[3, 4], &[0, 1, 2]);
}

#[test]
fn keep_referee_a_3_2_split_keeps_the_side_of_the_referee() {
    // a (the referee) and b apart: the smaller side keeps running, as it holds the referee.
    three_two("referee:a", "kr", &[0, 1], &[0, 1]);
}

#[test]
fn down_all_a_3_2_split_stops_both_sides_and_the_heal_brings_one_instance_back() {
    let net = Net::new(5);
    let mut nodes = nodes_in(&net, 5, &[("MARGIN_MS", "2000"), ("QUORUM", "downall")]);
    let id = id_owned_by("da", "e", 5);
    assert_eq!(
        started_on(&start_child(&mut nodes[0], &format!("echo {id} singleton"))),
        "e"
    );
    for node in nodes.iter_mut() {
        converge(node, 1, &format!("{id}=e/running;"));
    }
    net.split(&[3, 4]);
    // Every node loses the quorum: the larger side stops too, and starts nothing.
    for node in nodes.iter_mut() {
        node.expect(|l| l == "ev quorumlost");
    }
    nodes[4].expect(|l| l == format!("ev stopped {id}"));
    for node in nodes.iter_mut().take(3) {
        converge(node, 0, &format!("{id}=/starting;"));
    }
    net.rejoin(&[3, 4]);
    for node in nodes.iter_mut() {
        node.expect(|l| l == "ev quorumback");
    }
    let table = format!("{id}={}/running;", single(&mut nodes[4], &id));
    for node in nodes.iter_mut() {
        converge(node, 1, &table);
    }
    one_at_a_time(&mut nodes, &id);
}
