//! The partitioned cache and the near cache across real node processes over real
//! sockets: a killed node loses only the keys it had no backup of; a joining node takes
//! over its keys; the single flight holds across nodes, and a node dying mid-computation
//! leaves no waiter hanging; a node answering garbage gives typed errors; a write on one
//! node invalidates the near cache of the others.

pub mod harness;

use foundation_cluster::ring::HashRing;
use harness::{Child, start, three};

/// The owner of `key` among `nodes`, as the nodes' rings compute it.
fn owner(nodes: &[&str], key: u64) -> String {
    let ring = HashRing::new(nodes.iter().map(|n| (*n).to_owned()));
    let bytes = postcard::to_stdvec(&key).unwrap();
    ring.owner(&bytes).unwrap().clone()
}

/// Asks `node` to count the keys `0..n` until it finds `want` of them without errors
/// (ownership and copies settle after a membership change); returns the last count.
fn count_until(node: &mut Child, n: u64, want: u64) -> (u64, u64) {
    let mut last = (0, 0);
    for _ in 0..60 {
        node.tell(&format!("count {n}"));
        let got = node.expect(|l| l.starts_with("count "));
        let mut w = got.split(' ').skip(1).map(|x| x.parse::<u64>().unwrap());
        last = (w.next().unwrap(), w.next().unwrap());
        if last == (want, 0) {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    last
}

/// Asks `node` how many entries it holds until it is `want`; returns the last answer.
fn held_until(node: &mut Child, want: u64) -> u64 {
    let mut last = 0;
    for _ in 0..60 {
        node.tell("held");
        last = node
            .expect(|l| l.starts_with("held "))
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        if last == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    last
}

const KEYS: u64 = 600;

#[test]
fn a_killed_node_loses_no_key_that_had_a_backup() {
    let [mut a, mut b, mut c] = three(&[("REPLICAS", "1")]);
    a.tell(&format!("put 0 {KEYS}"));
    a.expect(|l| l == format!("put {KEYS}"));
    for n in [&mut a, &mut b, &mut c] {
        assert_eq!(count_until(n, KEYS, KEYS), (KEYS, 0), "node {}", n.name);
    }
    // Every key is held twice: the three nodes hold 2 × KEYS entries between them.
    let mut held = 0;
    for n in [&mut a, &mut b, &mut c] {
        n.tell("held");
        held += n
            .expect(|l| l.starts_with("held "))
            .split(' ')
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap();
    }
    assert_eq!(held, 2 * KEYS);
    c.kill();
    a.expect(|l| l == "down c");
    b.expect(|l| l == "down c");
    // Lost: none (each of c's keys had its backup on the node that owns it now).
    assert_eq!(count_until(&mut a, KEYS, KEYS), (KEYS, 0));
    assert_eq!(count_until(&mut b, KEYS, KEYS), (KEYS, 0));
}

#[test]
fn without_backups_a_killed_node_loses_exactly_its_own_keys() {
    let [mut a, mut b, mut c] = three(&[]);
    a.tell(&format!("put 0 {KEYS}"));
    a.expect(|l| l == format!("put {KEYS}"));
    assert_eq!(count_until(&mut b, KEYS, KEYS), (KEYS, 0));
    let owned_by_c = (0..KEYS)
        .filter(|k| owner(&["a", "b", "c"], *k) == "c")
        .count() as u64;
    assert!(owned_by_c > KEYS / 6, "c owns {owned_by_c} of {KEYS}");
    c.kill();
    a.expect(|l| l == "down c");
    b.expect(|l| l == "down c");
    // Lost: c's keys, counted against replicas = 0; the rest are all there.
    let left = KEYS - owned_by_c;
    assert_eq!(count_until(&mut a, KEYS, left), (left, 0));
    assert_eq!(count_until(&mut b, KEYS, left), (left, 0));
}

#[test]
fn a_joining_node_is_handed_the_keys_it_now_owns() {
    let mut a = start("a", None, &[]);
    let mut b = start("b", Some(&a), &[]);
    a.expect(|l| l == "up b");
    b.expect(|l| l == "up a");
    a.tell(&format!("put 0 {KEYS}"));
    a.expect(|l| l == format!("put {KEYS}"));
    assert_eq!(count_until(&mut b, KEYS, KEYS), (KEYS, 0));
    let mut c = start("c", Some(&a), &[]);
    c.expect_all(&["up a", "up b"]);
    a.expect(|l| l == "up c");
    b.expect(|l| l == "up c");
    // Moved, not dropped: every key is readable from every node once the moves land,
    // and c holds exactly the keys it owns (a and b no longer hold them).
    assert_eq!(count_until(&mut c, KEYS, KEYS), (KEYS, 0));
    assert_eq!(count_until(&mut a, KEYS, KEYS), (KEYS, 0));
    for n in [&mut a, &mut b, &mut c] {
        let owns = (0..KEYS)
            .filter(|k| owner(&["a", "b", "c"], *k) == n.name)
            .count() as u64;
        assert_eq!(held_until(n, owns), owns, "node {}", n.name);
    }
}

fn runs(n: &mut Child) -> u64 {
    n.tell("runs");
    n.expect(|l| l.starts_with("runs "))
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn concurrent_misses_on_three_nodes_compute_once_on_one() {
    let [mut a, mut b, mut c] = three(&[]);
    for n in [&mut a, &mut b, &mut c] {
        n.tell("compute 42 1500");
    }
    let mut values = Vec::new();
    for n in [&mut a, &mut b, &mut c] {
        let got = n.expect(|l| l.starts_with("computed 42 ") || l.starts_with("computeerr 42"));
        values.push(got);
    }
    assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
    assert!(values[0].starts_with("computed 42 "), "{values:?}");
    assert_eq!(runs(&mut a) + runs(&mut b) + runs(&mut c), 1);
}

#[test]
fn a_node_dying_mid_computation_leaves_no_waiter_hanging() {
    let [mut a, mut b, mut c] = three(&[]);
    // A key owned by a: the claims survive b's death.
    let key = (0..).find(|k| owner(&["a", "b", "c"], *k) == "a").unwrap();
    b.tell(&format!("compute {key} 600000"));
    b.expect(|l| l == format!("computing {key}"));
    a.tell(&format!("compute {key} 10"));
    c.tell(&format!("compute {key} 10"));
    b.kill();
    // The waiters claim again; one computes, the other gets its value.
    let got_a = a.expect(|l| {
        l.starts_with(&format!("computed {key} ")) || l.starts_with(&format!("computeerr {key}"))
    });
    let got_c = c.expect(|l| {
        l.starts_with(&format!("computed {key} ")) || l.starts_with(&format!("computeerr {key}"))
    });
    assert_eq!(got_a, got_c);
    assert!(
        got_a == format!("computed {key} a") || got_a == format!("computed {key} c"),
        "{got_a}"
    );
    assert_eq!(runs(&mut a) + runs(&mut c), 1);
}

#[test]
fn a_node_answering_garbage_gives_typed_errors_and_the_cache_goes_on() {
    let mut a = start("a", None, &[]);
    let mut g = start("g", Some(&a), &[("GARBAGE", "1")]);
    a.expect(|l| l == "up g");
    g.expect(|l| l == "up a");
    let theirs = (0..).find(|k| owner(&["a", "g"], *k) == "g").unwrap();
    let ours = (0..).find(|k| owner(&["a", "g"], *k) == "a").unwrap();
    // The cache follows membership a moment after the node's event.
    for _ in 0..300 {
        a.tell(&format!("owner {theirs}"));
        if a.expect(|l| l.starts_with(&format!("owner {theirs} "))) == format!("owner {theirs} g") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    a.tell(&format!("get {theirs}"));
    let got = a.expect(|l| l.starts_with(&format!("get {theirs} ")));
    assert!(
        got.contains("err") && got.contains("failed to deserialize"),
        "{got}"
    );
    a.tell(&format!("set {theirs} x"));
    // Its shard cannot read a real request: refused as another version's message.
    let got = a.expect(|l| l.starts_with(&format!("set {theirs} ")));
    assert!(
        got.contains(" err ") && got.contains("could not read the request"),
        "{got}"
    );
    a.tell(&format!("set {ours} mine"));
    a.expect(|l| l == format!("set {ours} ok"));
    a.tell(&format!("get {ours}"));
    a.expect(|l| l == format!("get {ours} mine"));
}

#[test]
fn a_write_on_one_node_invalidates_the_near_cache_of_the_others() {
    let [mut a, mut b, mut c] = three(&[("NEAR", "1")]);
    // Invalidations reach the nodes whose subscription a node knows of: wait until each
    // knows the three (at once, or within a pubsub gossip period).
    for n in [&mut a, &mut b, &mut c] {
        n.tell("subscribers 3");
        n.expect(|l| l == "subscribers 3");
    }
    a.tell("nearset 5 old");
    a.expect(|l| l == "nearset 5 ok");
    // b and c read it: now in their L1s (a read that an invalidation crossed, here the
    // one of the first write, does not fill the L1: read again then).
    for n in [&mut b, &mut c] {
        let mut kept = false;
        for _ in 0..300 {
            n.tell("near 5");
            assert_eq!(
                n.expect(|l| l.starts_with("near 5 ")),
                "near 5 old",
                "node {}",
                n.name
            );
            n.tell("l1 5");
            if n.expect(|l| l.starts_with("l1 5 ")) == "l1 5 old" {
                kept = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(kept, "node {}: the L1 never kept the value", n.name);
    }
    a.tell("nearset 5 new");
    a.expect(|l| l == "nearset 5 ok");
    // Within the bound (one broadcast's delivery; polled, up to 30 s on a loaded machine)
    // their L1s no longer hold the old value, and they read the new one.
    for n in [&mut b, &mut c] {
        let a = &mut a;
        let mut gone = false;
        for _ in 0..300 {
            n.tell("l1 5");
            if n.expect(|l| l.starts_with("l1 5 ")) == "l1 5 none" {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !gone {
            n.tell("ps");
            let theirs = n.expect(|l| l.starts_with("ps "));
            a.tell("ps");
            let ours = a.expect(|l| l.starts_with("ps "));
            panic!(
                "node {}: the L1 entry was not invalidated ({theirs}; a: {ours})",
                n.name
            );
        }
        n.tell("near 5");
        assert_eq!(
            n.expect(|l| l.starts_with("near 5 ")),
            "near 5 new",
            "node {}",
            n.name
        );
    }
}
