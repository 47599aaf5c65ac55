//! Pubsub across real node processes over real sockets: patterns and counts on three
//! nodes, the publisher's context, interest (a node without subscribers receives
//! nothing), types that differ between nodes, per-publisher order, a node killed
//! mid-stream, a subscriber restarted by its supervisor, a slow subscriber's drops.

pub mod harness;

use harness::{Child, start, start_with, three};

/// Waits for `line` exactly.
fn see(node: &mut Child, line: &str) {
    node.expect(|l| l == line);
}

#[test]
fn three_nodes_patterns_counts_context_interest_and_wrong_types() {
    let [mut a, mut b, mut c] = three();
    a.tell("sub s1 orders.created");
    b.tell("sub s2 orders.*");
    c.tell("sub s3 orders.#");
    c.tell("sub s5 orders.created");
    c.tell("sub s4 users.*");
    for n in [&mut a, &mut b, &mut c] {
        n.tell("count orders.created 4");
        n.tell("count users.new 1");
        n.expect_all(&["count orders.created 4", "count users.new 1"]);
    }

    // One broadcast reaches every matching subscriber, with the publisher's context.
    a.tell("pub orders.created hello");
    see(&mut a, "got s1 hello a");
    see(&mut b, "got s2 hello a");
    c.expect_all(&["got s3 hello a", "got s5 hello a"]);
    // `orders.*` is one segment: only `orders.#` takes a deeper topic.
    b.tell("pub orders.eu.created deep");
    see(&mut c, "got s3 deep b");
    a.tell("pub users.new u1");
    see(&mut c, "got s4 u1 a");

    // Another type on the same name: refused and counted where it lands (once per
    // subscriber, a's own included), the streams go on. Its bytes would decode as a
    // note: its wire identity (the hash of its wire name) is what tells them apart.
    a.tell("pubwrong orders.created");
    see(&mut a, "pubwrong");
    a.tell("pub orders.created after");
    see(&mut b, "got s2 after a");
    c.expect_all(&["got s3 after a", "got s5 after a"]);

    // A type of another Rust path with the same wire name is the same type to peers: a
    // node built with the topic's type moved to another module still reads it.
    a.tell("pubmoved users.new moved");
    see(&mut c, "got s4 moved a");

    // A direct broadcast reaches one node only; a local one, this node only.
    a.tell("direct c orders.created d1");
    see(&mut a, "direct ok");
    see(&mut c, "got s3 d1 -"); // sent outside a context
    a.tell("local orders.created lb");
    see(&mut a, "got s1 lb a");
    a.tell("pub orders.created last");
    for (n, id) in [(&mut b, "s2"), (&mut c, "s3")] {
        let want = format!("got {id} last a");
        n.expect(|l| {
            let stray = l.ends_with(" lb a") || (id == "s2" && l.contains(" d1 "));
            assert!(!stray, "a broadcast reached a node it was not for: {l}");
            l == want
        });
    }

    // a sent each broadcast once per node with a matching subscriber, never once per
    // subscriber: hello 2, u1 1, the wrong type 2, after 2, moved 1, d1 1, last 2 (c
    // has two subscribers of `orders.created`, and got each once).
    stats_become(&mut a, "stats received=0 wrong_type=1 sent=11");
    // b has no subscriber for `users.*`: it received hello, the wrong type, after and
    // last — nothing else — and sent `deep` to c alone (a has no `orders.#` subscriber).
    stats_become(&mut b, "stats received=4 wrong_type=1 sent=1");
    stats_become(&mut c, "stats received=8 wrong_type=2 sent=0");
}

/// Asks `node` for its stats until they read `want` (20 s at most; then fails with what
/// they read): a broadcast is counted in `received` once it has been fanned out, which
/// may be just after its subscriber printed it.
fn stats_become(node: &mut Child, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        node.tell("stats");
        let got = node.expect(|l| l.starts_with("stats "));
        if got == want || std::time::Instant::now() > deadline {
            assert_eq!(got, want);
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_node_without_the_pubsub_channel_still_sends_and_gets_broadcasts_on_default() {
    // b did not declare the broadcasts' channel, a did: each way, broadcasts fall back to
    // the `default` channel instead of failing (they failed, counted, before).
    let mut a = start("a", None);
    let mut b = start_with("b", Some(&a), &[("NO_CHANNEL", "1")]);
    see(&mut a, "up b");
    see(&mut b, "up a");
    a.tell("sub s1 news");
    b.tell("sub s2 news");
    for n in [&mut a, &mut b] {
        n.tell("count news 2");
        see(n, "count news 2");
    }
    a.tell("pub news from-a");
    see(&mut b, "got s2 from-a a");
    b.tell("pub news from-b");
    see(&mut a, "got s1 from-b b");
    for n in [&mut a, &mut b] {
        n.tell("stats");
        let got = n.expect(|l| l.starts_with("stats "));
        assert!(got.ends_with(" sent=1"), "{}: {got}", n.name);
    }
}

#[test]
fn each_publishers_numbered_stream_arrives_in_order_once_on_every_node() {
    let [mut a, mut b, mut c] = three();
    a.tell("sub s0 nums.#");
    b.tell("sub s1 nums.x");
    c.tell("sub s2 nums.*");
    for n in [&mut a, &mut b] {
        n.tell("count nums.x 3");
        see(n, "count nums.x 3");
    }
    a.tell("seq nums.x 3000");
    b.tell("seq nums.x 3000");
    for (n, id) in [(&mut a, "s0"), (&mut b, "s1"), (&mut c, "s2")] {
        let want = [format!("done {id} a"), format!("done {id} b")];
        let mut left: Vec<&str> = want.iter().map(String::as_str).collect();
        while !left.is_empty() {
            let got = n.expect(|l| l.starts_with("done ") || l.starts_with("gap "));
            assert!(!got.starts_with("gap "), "node {}: {got}", n.name);
            left.retain(|w| *w != got);
        }
    }
}

#[test]
fn a_node_killed_mid_stream_leaves_the_others_going_and_its_subscribers_uncounted() {
    let [mut a, mut b, mut c] = three();
    b.tell("sub s1 load");
    c.tell("sub s2 load");
    a.tell("count load 2");
    see(&mut a, "count load 2");
    a.tell("seq load 20000");
    c.kill();
    b.expect(|l| {
        assert!(!l.starts_with("gap "), "b: {l}");
        l == "done s1 a"
    });
    a.expect_all(&["seqsent 20000", "down c"]);
    a.tell("count load 1");
    see(&mut a, "count load 1");
    // The survivors still talk.
    a.tell("pub load more");
    see(&mut b, "got s1 more a");
}

#[test]
fn a_subscriber_restarted_by_its_supervisor_keeps_its_subscription() {
    let mut a = start("a", None);
    let mut b = start("b", Some(&a));
    see(&mut a, "up b");
    b.tell("asub w jobs.*");
    see(&mut b, "subscribed w");
    a.tell("count jobs.x 1");
    see(&mut a, "count jobs.x 1");
    a.tell("pub jobs.x one");
    see(&mut b, "agot w one 1");
    a.tell("pub jobs.x crash");
    a.tell("pub jobs.x two");
    see(&mut b, "agot w two 2");
    a.tell("count jobs.x 1");
    see(&mut a, "count jobs.x 1");
}

#[test]
fn a_slow_subscriber_on_another_node_drops_what_overflows_and_counts_it() {
    let mut a = start("a", None);
    let mut b = start("b", Some(&a));
    see(&mut a, "up b");
    b.tell("slow s9 flood 10");
    see(&mut b, "subscribed s9");
    a.tell("count flood 1");
    see(&mut a, "count flood 1");
    a.tell("seq flood 1000");
    see(&mut a, "seqsent 1000");
    // Its buffer holds 10; the other 990 are dropped, each counted.
    b.tell("drops 990");
    see(&mut b, "drops 990 queued 10");
}

/// The `flow` line's `key=value` words.
fn flow(line: &str) -> std::collections::HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

#[test]
fn a_flood_past_the_pubsub_process_limit_is_dropped_by_the_node_and_counted_in_stats() {
    // a gossips once an hour: no interest of a's travels during the flood, so every message
    // a sends b's process is a broadcast.
    let mut a = start_with("a", None, &[("GOSSIP_MS", "3600000")]);
    // b's pubsub process may hold 2 messages from peers; 200 subscribers make each
    // broadcast take a while there, so a flood outruns it.
    let mut b = start_with("b", Some(&a), &[("MAX_QUEUED", "2")]);
    see(&mut a, "up b");
    b.tell("many flood 200");
    see(&mut b, "subscribed 200");
    a.tell("count flood 200");
    see(&mut a, "count flood 200");
    a.tell("seq flood 5000");
    see(&mut a, "seqsent 5000");
    a.tell("flow 0");
    let sent = flow(&a.expect(|l| l.starts_with("flow ")));
    assert_eq!((sent["sent"], sent["send_failed"]), (5000, 0), "{sent:?}");
    // Every broadcast b was sent is received or dropped at its process, and counted.
    b.tell("flow 5000");
    let got = flow(&b.expect(|l| l.starts_with("flow ")));
    eprintln!("b: {got:?}");
    assert_eq!(got["received"] + got["remote_dropped"], 5000, "{got:?}");
    assert!(got["remote_dropped"] > 0, "nothing dropped: {got:?}");
    assert_eq!(got["remote_dropped"], got["by_node"], "{got:?}");
    // What reached the process reached each subscriber (their buffers hold it all).
    assert_eq!(got["delivered"], got["received"] * 200, "{got:?}");
    assert_eq!(got["dropped"], 0, "{got:?}");
}

#[test]
fn a_flood_past_the_channels_outbox_is_refused_at_the_publisher_and_every_broadcast_counted() {
    // a's `pubsub` outbox to b may hold 512 bytes (about ten broadcasts): a publisher
    // that sends 64 at a time between yields outruns the writer, which takes them on the
    // low-priority thread.
    let mut a = start_with("a", None, &[("GOSSIP_MS", "3600000"), ("PENDING", "512")]);
    let mut b = start("b", Some(&a));
    see(&mut a, "up b");
    b.tell("many flood 20");
    see(&mut b, "subscribed 20");
    a.tell("count flood 20");
    see(&mut a, "count flood 20");
    a.tell("seq flood 5000");
    see(&mut a, "seqsent 5000");
    a.tell("flow 0");
    let out = flow(&a.expect(|l| l.starts_with("flow ")));
    eprintln!("a: {out:?}");
    // Every broadcast is sent or refused at a, and counted.
    assert_eq!(out["sent"] + out["send_failed"], 5000, "{out:?}");
    assert!(out["send_failed"] > 0, "the outbox never filled: {out:?}");
    // Every one sent is received at b (or dropped at its process, counted), and what is
    // received reaches each subscriber.
    b.tell(&format!("flow {}", out["sent"]));
    let got = flow(&b.expect(|l| l.starts_with("flow ")));
    eprintln!("b: {got:?}");
    assert_eq!(
        got["received"] + got["remote_dropped"],
        out["sent"],
        "{got:?}"
    );
    assert_eq!(
        got["delivered"] + got["dropped"],
        got["received"] * 20,
        "{got:?}"
    );
}

#[test]
fn interest_travels_as_deltas_so_a_change_costs_its_own_size_whatever_the_topics() {
    let mut a = start("a", None);
    let mut b = start("b", Some(&a));
    see(&mut a, "up b");
    see(&mut b, "up a");
    // b has heard from a (a whole set or a delta) once it counts a's subscriber.
    a.tell("sub s0 warm");
    b.tell("count warm 1");
    see(&mut b, "count warm 1");
    let interest = |n: &mut Child| {
        n.tell("interest");
        flow(&n.expect(|l| l.starts_with("interest ")))
    };
    let before = interest(&mut a);

    // 20,000 topics come, then 10,000 go: b's view follows.
    a.tell("topics t 0 20000");
    see(&mut a, "topics 20000");
    b.tell("peertopics t 20000 20000");
    see(&mut b, "peertopics 20000");
    a.tell("untopics t 0 10000");
    see(&mut a, "untopics 10000");
    b.tell("peertopics t 20000 10000");
    see(&mut b, "peertopics 10000");
    let mid = interest(&mut a);

    // 30,000 changes of topics of up to 7 bytes: each change is one (topic, count) entry
    // of a delta, about 10 bytes; the messages (deltas, and a digest per period) add a few
    // bytes each. Sending the whole set on each change, or each period, would cost
    // hundreds of kilobytes per send.
    let (sent, bytes) = (mid["sent"] - before["sent"], mid["bytes"] - before["bytes"]);
    eprintln!("30,000 changes: {sent} messages, {bytes} bytes; before {before:?}, after {mid:?}");
    assert!(
        bytes <= 30_000 * 12 + sent * 40,
        "{bytes} bytes in {sent} messages"
    );
    assert_eq!(mid["full"], before["full"], "no whole set was needed");

    // With 10,000 topics held, ten more changes cost ten entries, not the set.
    a.tell("topics u 0 10");
    see(&mut a, "topics 10");
    b.tell("peertopics u 10 10");
    see(&mut b, "peertopics 10");
    let after = interest(&mut a);
    let (sent, bytes) = (after["sent"] - mid["sent"], after["bytes"] - mid["bytes"]);
    assert!(
        bytes <= 10 * 12 + sent * 40,
        "{bytes} bytes in {sent} messages"
    );
    assert_eq!(after["full"], before["full"]);
}

#[test]
fn a_node_that_joins_late_gets_the_whole_interest_and_then_the_deltas() {
    let mut a = start("a", None);
    a.tell("topics t 0 3000");
    see(&mut a, "topics 3000");
    let mut b = start("b", Some(&a));
    see(&mut a, "up b");
    b.tell("peertopics t 3000 3000");
    see(&mut b, "peertopics 3000");
    a.tell("untopics t 0 1000");
    see(&mut a, "untopics 1000");
    b.tell("peertopics t 3000 2000");
    see(&mut b, "peertopics 2000");
    a.tell("interest");
    let got = flow(&a.expect(|l| l.starts_with("interest ")));
    assert!(got["full"] >= 1, "{got:?}");
}

/// The usual order: the nodes connect, then each starts its pubsub. Each pubsub asks the
/// peers up already for their interest as it starts, so it does not wait for gossip
/// (here an hour a period: without the request, `a` would not hear of `b`'s subscriber
/// before the test gives up). Then the node shuts down under its pubsub: the pubsub
/// stops with it.
#[test]
fn pubsubs_started_after_the_nodes_connect_hear_each_other_at_once_and_stop_with_their_node() {
    let late = [("LATE", "1"), ("GOSSIP_MS", "3600000")];
    let mut a = start_with("a", None, &late);
    let mut b = start_with("b", Some(&a), &late);
    see(&mut a, "up b");
    see(&mut b, "up a");
    b.tell("startps");
    see(&mut b, "startedps");
    b.tell("sub s1 late.t");
    see(&mut b, "subscribed s1");
    a.tell("startps");
    see(&mut a, "startedps");
    a.tell("wait late.t 1");
    see(&mut a, "waited late.t 1 peers b");
    a.tell("pub late.t hello");
    see(&mut b, "got s1 hello a");
    // And `b` heard of `a`'s subscriptions, made after it started, as they were made.
    a.tell("sub s2 late.t");
    see(&mut a, "subscribed s2");
    b.tell("wait late.t 2");
    see(&mut b, "waited late.t 2 peers a");

    a.tell("shutdown late.t");
    see(
        &mut a,
        "shutdown broadcast=Closed ended=true subscribe=Err(\"Closed\") count=0 start=NodeShutDown(\"a\")",
    );
    see(&mut b, "down a");
    b.tell("wait late.t 1");
    see(&mut b, "waited late.t 1 peers ");
}
