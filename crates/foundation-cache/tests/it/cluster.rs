//! The partitioned cache and the near cache across real node processes over real
//! sockets: a killed node loses only the keys it had no backup of; a joining node takes
//! over its keys; the single flight holds across nodes, and a node dying mid-computation
//! leaves no waiter hanging, and so does an owner stopped (SIGSTOP) mid-computation; a
//! node answering garbage gives typed errors, and a peer sending the shard garbage or keys
//! over the limit is refused; a peer flooding an owner with 200 MiB of distinct keys
//! leaves it within its weight bound; a write on one node invalidates the near cache of
//! the others.

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
fn a_failed_computation_gives_every_waiter_on_every_node_the_same_error() {
    let [mut a, mut b, mut c] = three(&[]);
    // A key owned by c: b computes, a waits through c, and c's own caller waits too.
    let key = (0..).find(|k| owner(&["a", "b", "c"], *k) == "c").unwrap();
    b.tell(&format!("computefail {key} 4000"));
    b.expect(|l| l == format!("computing {key}"));
    a.tell(&format!("computefail {key} 10"));
    c.tell(&format!("computefail {key} 10"));
    // c holds b's claim and the two waiting on it.
    assert_eq!(poll(&mut c, "waiting", 3), 3);
    let want = format!(
        "computeerr {key} the compute function failed on node `b`: no value for {key} on b"
    );
    for n in [&mut a, &mut b, &mut c] {
        let got = n.expect(|l| {
            l.starts_with(&format!("computed {key} "))
                || l.starts_with(&format!("computeerr {key} "))
        });
        assert_eq!(got, want, "node {}", n.name);
    }
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

/// Asks `node` for a counter line (`<word> <n>`) until it reads `want`; returns the last.
fn poll(node: &mut Child, word: &str, want: u64) -> u64 {
    let mut last = u64::MAX;
    for _ in 0..600 {
        node.tell(word);
        last = node
            .expect(|l| l.starts_with(&format!("{word} ")))
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        if last == want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    last
}

#[test]
fn an_owner_stopped_mid_computation_leaves_no_waiter_hanging_and_serves_again_when_resumed() {
    // A silence limit longer than the test: the stopped owner stays a member, so only the
    // timeouts (2 s for calls and for computations) free the callers.
    let [mut a, mut b, mut c] = three(&[
        ("SILENCE_MS", "120000"),
        ("TIMEOUT_MS", "2000"),
        ("COMPUTE_TIMEOUT_MS", "2000"),
    ]);
    let key = (0..).find(|k| owner(&["a", "b", "c"], *k) == "a").unwrap();
    let done = |k: u64| {
        move |l: &str| {
            l.starts_with(&format!("computed {k} ")) || l.starts_with(&format!("computeerr {k} "))
        }
    };
    b.tell(&format!("compute {key} 4000"));
    b.expect(|l| l == format!("computing {key}"));
    c.tell(&format!("compute {key} 10"));
    // a holds b's claim and c waiting on it.
    assert_eq!(poll(&mut a, "waiting", 2), 2);
    a.pause(true);
    // c's wait ends with a typed error at its compute timeout, not a hang.
    let got = c.expect(done(key));
    assert_eq!(
        got,
        format!(
            "computeerr {key} cache `kv` is unavailable: node `a` gave no reply within 2s (the \
             cache's `compute_timeout`)"
        )
    );
    // A read of a's key meanwhile: the same, at the call timeout.
    c.tell(&format!("get {key}"));
    let got = c.expect(|l| l.starts_with(&format!("get {key} ")));
    assert_eq!(
        got,
        format!(
            "get {key} err cache `kv` is unavailable: node `a` gave no reply within 2s (the \
             cache's `timeout`)"
        )
    );
    // b's computation ends: b has its value; its report waits for a.
    assert_eq!(b.expect(done(key)), format!("computed {key} b"));
    a.pause(false);
    // a takes b's report: the value is stored, the claim and its waiter are gone.
    assert_eq!(poll(&mut a, "waiting", 0), 0);
    for n in [&mut a, &mut c] {
        n.tell(&format!("get {key}"));
        assert_eq!(
            n.expect(|l| l.starts_with(&format!("get {key} "))),
            format!("get {key} b"),
            "node {}",
            n.name
        );
    }
    c.tell(&format!("compute {key} 10"));
    assert_eq!(c.expect(done(key)), format!("computed {key} b"));
    assert_eq!(runs(&mut a) + runs(&mut b) + runs(&mut c), 1);
    // And every node's own keys are served as before.
    a.tell(&format!("put 0 {KEYS}"));
    a.expect(|l| l == format!("put {KEYS}"));
    assert_eq!(count_until(&mut c, KEYS, KEYS), (KEYS, 0));
}

#[test]
fn a_hostile_peers_messages_to_the_shard_are_refused_and_the_cache_goes_on() {
    let mut a = start("a", None, &[]);
    let mut h = start("h", Some(&a), &[]);
    a.expect(|l| l == "up h");
    h.expect(|l| l == "up a");
    for n in [&mut a, &mut h] {
        n.tell("ring 2");
        n.expect(|l| l == "ring 2");
    }
    let mut forge = |kind: &str| {
        h.tell(&format!("forge a {kind}"));
        h.expect(|l| l.starts_with(&format!("forged {kind} ")))
    };
    // Bytes that are no operation: refused at a's door, as a message it cannot read.
    let got = forge("garbage");
    assert!(got.contains("BadMessage"), "{got}");
    // A tag the shard does not have: dropped there (a cast: nothing comes back).
    assert_eq!(forge("tag"), "forged tag Ok(())");
    // Keys over the shard's limit (1 KiB; these are 64 KiB): refused, not stored, not
    // waited on.
    let got = forge("longput");
    assert!(
        got.contains("Refused") && got.contains("over this node's limit of 1024 bytes"),
        "{got}"
    );
    assert_eq!(forge("longget"), "forged longget Ok(None)");
    assert_eq!(forge("longcopy"), "forged longcopy Ok(())");
    let got = forge("longclaim");
    assert!(got.contains("NoReply"), "{got}");
    assert_eq!(poll(&mut a, "refused", 4), 4);
    assert_eq!(poll(&mut a, "waiting", 0), 0);
    assert_eq!(held_until(&mut a, 0), 0);
    // The shard serves both nodes as before.
    let ours = (0..).find(|k| owner(&["a", "h"], *k) == "a").unwrap();
    h.tell(&format!("set {ours} fine"));
    h.expect(|l| l == format!("set {ours} ok"));
    for n in [&mut a, &mut h] {
        n.tell(&format!("get {ours}"));
        n.expect(|l| l == format!("get {ours} fine"));
    }
}

/// `node`'s `weight` line: held weight, entries, evictions, RSS and peak RSS (KiB).
fn weight(node: &mut Child) -> [u64; 5] {
    node.tell("weight");
    let line = node.expect(|l| l.starts_with("weight "));
    let w: Vec<u64> = line
        .split(' ')
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    [w[0], w[1], w[2], w[3], w[4]]
}

#[test]
fn a_peer_flooding_distinct_keys_leaves_the_owner_within_its_weight_bound_and_serving() {
    const MAX_BYTES: u64 = 4 << 20;
    const PUTS: u64 = 20_000;
    // The copies: 262,144 distinct keys of 800-byte values, 64 to a cast (about 52 KB a
    // message): 200 MiB of values in about 4,100 messages, as a million keys of 200 bytes
    // in casts of 256 were, with a quarter of the entries (in a debug build the owner's
    // cost is mostly per entry: moka's insert and eviction, hashing, decoding the key).
    const COPIES: u64 = 262_144;
    const VALUE_LEN: usize = 800;
    const PER_CAST: usize = 64;
    // What the owner may grow by: its bound, moka's own per-entry memory, at most 256
    // queued messages of 64 entries (about 13 MiB), allocator slack. Holding the flood
    // (over 200 MiB of values alone) would be far past it.
    const GROWTH_BOUND_KIB: u64 = 160 * 1024;
    const _: () = assert!(COPIES * VALUE_LEN as u64 >= 200 << 20);
    let bytes = MAX_BYTES.to_string();
    let settings = [("MAX_BYTES", bytes.as_str()), ("MAX_QUEUED", "256")];
    let mut a = start("a", None, &settings);
    let mut b = start("b", Some(&a), &settings);
    a.expect(|l| l == "up b");
    b.expect(|l| l == "up a");
    for n in [&mut a, &mut b] {
        n.tell("ring 2");
        n.expect(|l| l == "ring 2");
    }
    let before = weight(&mut a);
    let started = std::time::Instant::now();
    let long = std::time::Duration::from_secs(900);
    // Puts from b of keys a owns, 128 calls at a time.
    b.tell(&format!("flood a {PUTS} 200"));
    let flooded = b
        .try_expect(long, |l| l.starts_with("flooded "))
        .expect("the flood of puts never ended");
    let ok: u64 = flooded.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(ok > PUTS / 2, "{flooded}");
    // Then what a hostile peer can do faster: copies of distinct keys.
    b.tell(&format!("copyflood a {COPIES} {VALUE_LEN} {PER_CAST}"));
    eprintln!("flood: puts took {:?}", started.elapsed());
    let copied = b
        .try_expect(long, |l| l.starts_with("copyflooded "))
        .expect("the flood of copies never ended");
    eprintln!("flood: puts and copies took {:?}", started.elapsed());
    // a works through what waits at its shard (at most 256 messages), then answers again:
    // meanwhile b's reads of a's keys may time out (typed errors, never a hang). A read
    // answered after every copy b sent (one peer's messages to a process arrive in order).
    let ours = (0..).find(|k| owner(&["a", "b"], *k) == "a").unwrap();
    let mut read = String::new();
    for _ in 0..60 {
        b.tell(&format!("get {ours}"));
        read = b.expect(|l| l.starts_with(&format!("get {ours} ")));
        if read == format!("get {ours} none") {
            break;
        }
        assert!(
            read.contains("cache `kv` is unavailable"),
            "a typed error while a is busy: {read}"
        );
    }
    assert_eq!(read, format!("get {ours} none"));
    eprintln!("flood: took {:?}", started.elapsed());
    let after = weight(&mut a);
    let grew = after[4].saturating_sub(before[3]);
    eprintln!(
        "flood: {flooded}, {copied}; a before {before:?}, after {after:?} (held weight, entries, evictions, rss KiB, peak KiB): peak grew {grew} KiB"
    );
    assert!(after[0] <= MAX_BYTES, "held {} bytes", after[0]);
    assert!(
        after[2] > 0,
        "nothing was evicted: the flood never reached the bound"
    );
    assert!(
        grew < GROWTH_BOUND_KIB,
        "a's peak RSS grew by {grew} KiB (before {before:?}, after {after:?})"
    );
    // a still serves, both ways.
    b.tell(&format!("set {ours} still"));
    let set = b.expect(|l| l.starts_with(&format!("set {ours} ")));
    assert_eq!(set, format!("set {ours} ok"));
    a.tell(&format!("get {ours}"));
    let got = a.expect(|l| l.starts_with(&format!("get {ours} ")));
    assert_eq!(got, format!("get {ours} still"));
}
