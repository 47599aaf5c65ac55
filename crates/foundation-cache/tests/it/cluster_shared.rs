//! The replicated cache and shared states across real node processes over real sockets:
//! a partition of three nodes (network namespaces) healed to one value per key
//! everywhere, a counter and a set converging after it, a joining node bulk-loaded; a
//! removal's tombstone kept while a partitioned node may still hold the older value,
//! dropped once every node holds it, and the horizon past which a silent node is no
//! longer waited for (and what that costs).

pub mod harness;

use harness::{Child, Net, ask, start, three_in};

fn dump(node: &mut Child) -> String {
    ask(node, "dump", "dump")
}

#[test]
fn replicated_writes_on_both_sides_of_a_partition_heal_to_one_value_per_key_everywhere() {
    let net = Net::new(3);
    let [mut a, mut b, mut c] = three_in(&net, &[]);

    // Before: a write anywhere reaches every node.
    ask(&mut a, "put k before", "put k");
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "await k before", "at k before");
    }
    ask(&mut b, "add 1", "added");
    ask(&mut a, "tag shared", "tagged");
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "awaitcount 1", "count 1");
        ask(n, "awaittags shared", "tags shared");
    }

    net.cut(2);
    a.expect(|l| l == "down c");
    c.expect(|l| l == "down a");

    // Both sides write the same keys, each its own values, and keys of their own. The
    // pause only puts c's writes in a later wall-clock millisecond than a's, so that the
    // test knows which are last (within one millisecond the replica ids would decide).
    for (n, side) in [(&mut a, "ab"), (&mut c, "c")] {
        for key in ["k", "x", "y"] {
            ask(n, &format!("put {key} {side}-{key}"), &format!("put {key}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    ask(&mut b, "put only-b b", "put only-b");
    ask(&mut c, "put only-c c", "put only-c");
    // a removes what b wrote on its side, having seen it: its removal is later by the
    // hybrid clock whatever the wall clocks say.
    ask(&mut a, "await only-b b", "at only-b");
    ask(&mut a, "del only-b", "del only-b");
    ask(&mut c, "del k", "del k"); // c's last word on k: removed
    // The shared states: counts on both sides, a concurrent add and remove of one tag.
    ask(&mut a, "add 5", "added");
    ask(&mut b, "add -2", "added");
    ask(&mut c, "add 7", "added");
    ask(&mut c, "untag shared", "untagged");
    ask(&mut a, "tag shared", "tagged"); // a re-adds it meanwhile: the addition wins
    ask(&mut c, "tag c-only", "tagged");
    ask(&mut b, "await only-b -", "at only-b");

    net.heal(2);
    for n in [&mut a, &mut b] {
        n.expect(|l| l == "up c");
    }
    // Every node ends with the same entries, nothing of either side lost: one value per
    // key (whichever write was last by the hybrid clock), the counter's every update and
    // the set's union with the concurrent addition kept.
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "awaitcount 11", "count 11");
        ask(n, "awaittags c-only,shared", "tags c-only,shared");
        ask(n, "await only-c c", "at only-c c");
        ask(n, "await only-b -", "at only-b -");
    }
    // The writes converge: wait until the three dumps agree (each node's view settles
    // once the full states crossed), then check what they agree on.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let settled = loop {
        let (da, db, dc) = (dump(&mut a), dump(&mut b), dump(&mut c));
        if da == db && db == dc {
            break da;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the nodes never agreed:\n a: {da}\n b: {db}\n c: {dc}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // c wrote x and y after a did (its puts were made later, by the same wall clock), and
    // removed k last: those are the winners.
    assert_eq!(settled, "dump only-c=c,x=c-x,y=c-y", "{settled}");
    for n in [&mut a, &mut b, &mut c] {
        assert_eq!(ask(n, "stats", "stats"), "stats malformed=0 codec=0");
    }
}

#[test]
fn a_joining_node_is_bulk_loaded_then_follows_deltas() {
    let mut a = start("a", None);
    let mut b = start("b", Some(&a));
    a.expect(|l| l == "up b");
    b.expect(|l| l == "up a");
    for i in 0..200 {
        let (n, side) = if i % 2 == 0 {
            (&mut a, "a")
        } else {
            (&mut b, "b")
        };
        n.tell(&format!("put key{i:03} {side}{i}"));
    }
    ask(&mut a, "add 3", "added");
    ask(&mut b, "tag early", "tagged");
    for n in [&mut a, &mut b] {
        ask(n, "awaitlen 200", "len 200");
    }

    // c joins late, seeded with a only: it gets both nodes' entries, counts and tags.
    let mut c = start("c", Some(&a));
    c.expect_all(&["up a", "up b"]);
    ask(&mut c, "awaitlen 200", "len 200");
    ask(&mut c, "await key007 b7", "at key007");
    ask(&mut c, "await key100 a100", "at key100");
    ask(&mut c, "awaitcount 3", "count 3");
    ask(&mut c, "awaittags early", "tags early");
    let want = dump(&mut a);
    assert_eq!(dump(&mut c), want);

    // Then deltas, both ways.
    ask(&mut c, "put from-c c", "put from-c");
    ask(&mut a, "await from-c c", "at from-c");
    ask(&mut b, "put key007 b-again", "put key007");
    ask(&mut c, "await key007 b-again", "at key007");
}

/// Asks `node` how many tombstones it keeps.
fn tombs(node: &mut Child) -> String {
    ask(node, "tombs", "tombs ")
}

#[test]
fn a_removal_is_kept_while_a_partitioned_node_holds_the_old_value_then_collected_without_coming_back()
 {
    let net = Net::new(3);
    let [mut a, mut b, mut c] = three_in(&net, &[]);
    ask(&mut a, "put k old", "put k");
    ask(&mut a, "put j kept", "put j");
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "await k old", "at k old");
        ask(n, "await j kept", "at j kept");
    }
    net.cut(2);
    a.expect(|l| l == "down c");
    b.expect(|l| l == "down c");
    c.expect(|l| l == "down a");
    ask(&mut a, "del k", "del k");
    ask(&mut b, "await k -", "at k -");
    // a and b hold the tombstone and tell each other so at every digest (200 ms), but c
    // may still hold "old": over twenty digest periods, neither drops it.
    for _ in 0..20 {
        assert_eq!(tombs(&mut a), "tombs 1");
        assert_eq!(tombs(&mut b), "tombs 1");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    net.heal(2);
    a.expect(|l| l == "up c");
    b.expect(|l| l == "up c");
    // c's full state, with k's older value, reaches a and b before c's digests say it
    // holds the removal (one peer's messages arrive in order): the tombstone wins, c
    // takes it, and once every node holds it, every node drops it.
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "awaittombs 0", "tombs 0");
    }
    for n in [&mut a, &mut b, &mut c] {
        assert_eq!(ask(n, "dump", "dump"), "dump j=kept", "node {}", n.name);
    }
    // The key is writable again, everywhere.
    ask(&mut c, "put k new", "put k");
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "await k new", "at k new");
    }
}

#[test]
fn a_node_away_past_forget_after_is_no_longer_waited_for_and_may_bring_a_removed_key_back() {
    let net = Net::new(3);
    let [mut a, mut b, mut c] = three_in(&net, &[("FORGET_MS", "1500")]);
    ask(&mut a, "put k old", "put k");
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "await k old", "at k old");
    }
    net.cut(2);
    a.expect(|l| l == "down c");
    b.expect(|l| l == "down c");
    c.expect(|l| l == "down a");
    ask(&mut a, "del k", "del k");
    ask(&mut b, "await k -", "at k -");
    // c is unheard for longer than the horizon: a and b forget it and drop the tombstone.
    for n in [&mut a, &mut b] {
        ask(n, "awaittombs 0", "tombs 0");
    }
    // The documented risk: c comes back with "old", which no tombstone stops any more.
    net.heal(2);
    a.expect(|l| l == "up c");
    for n in [&mut a, &mut b, &mut c] {
        ask(n, "await k old", "at k old");
    }
}
