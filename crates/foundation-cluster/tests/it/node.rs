//! Nodes in separate processes on loopback: mesh, messages with context, failure
//! detection, graceful leave and bad input.

mod big;
mod flap;
pub mod harness;
mod hostile;

use std::time::Duration;

use foundation_actors::Context;
use foundation_cluster::membership::DownReason;
use foundation_cluster::node::ClusterEvent;
use harness::{Child, IN_PROCESS, Other, Probe, ProbeAskNumber, ProbeV2, local_node, wait_event};

fn is_up(name: &'static str) -> impl Fn(&ClusterEvent) -> bool {
    move |e| matches!(e, ClusterEvent::NodeUp(m) if m.id == name)
}

fn is_down(name: &'static str) -> impl Fn(&ClusterEvent) -> bool {
    move |e| matches!(e, ClusterEvent::NodeDown { member, .. } if member.id == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_a_named_process_on_another_node_with_its_context() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    b.expect(|l| l == "event up a");

    let ctx = Context::new().with_request_id("req-42");
    let trace = ctx.trace_id().to_string();
    ctx.scope(async { a.send("b", "probe", &Probe::Note("hello".into())) })
        .await
        .unwrap();
    let got = b.expect(|l| l.starts_with("got hello"));
    assert_eq!(got, format!("got hello trace={trace} req=req-42"));

    // Without a context, none travels.
    a.send("b", "probe", &Probe::Note("plain".into())).unwrap();
    assert_eq!(
        b.expect(|l| l.starts_with("got plain")),
        "got plain trace=none req=none"
    );

    // The other way: b sends to a name a does not export; a drops it, and stays up.
    b.tell("send a nothing-here x");
    b.expect(|l| l.starts_with("sent"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_an_unknown_variant_is_refused_and_the_next_one_arrives() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    a.send("b", "probe", &ProbeV2::Newer(7)).unwrap();
    a.send("b", "probe", &ProbeV2::Note("after".into()))
        .unwrap();
    b.expect(|l| l.starts_with("got after"));
    assert!(a.members().iter().any(|m| m.id == "b"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_or_call_of_another_type_is_refused_before_any_handler_runs() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    let second = Duration::from_secs(10);

    // `Other::Note` has `Probe::Note`'s tag and fields: without its type on the wire it
    // would run `Probe`'s handler. It is refused and counted; the next message arrives.
    a.send("b", "probe", &Other::Note("wrong".into())).unwrap();
    a.send("b", "probe", &Probe::Note("right".into())).unwrap();
    let got = b.expect(|l| l.starts_with("got "));
    assert!(got.starts_with("got right "), "{got}");
    b.tell("wrong-types");
    assert_eq!(b.expect(|l| l.starts_with("wrong-types")), "wrong-types 1");

    // A call of another type: refused before decoding, the error names both types.
    let r = a
        .call("b", "probe", |p| Other::Ask("wrong".into(), p), second)
        .await;
    assert!(
        matches!(&r, Err(RemoteError::WrongType { node, name, expected, got })
            if node == "b" && name == "probe" && expected == "test.Probe" && got == "test.Other"),
        "{r:?}"
    );
    // The same type and tag, another reply type: refused before the handler runs.
    let r = a
        .call(
            "b",
            "probe",
            |p| ProbeAskNumber::Ask("wrong reply".into(), p),
            second,
        )
        .await;
    assert!(
        matches!(&r, Err(RemoteError::WrongReplyType { node, name, expected, got })
            if node == "b" && name == "probe" && expected == "u64" && got == "String"),
        "{r:?}"
    );
    // Neither reached the handler: the first call it sees is the next one.
    let answer: String = a
        .call("b", "probe", |p| Probe::Ask("right".into(), p), second)
        .await
        .unwrap();
    assert!(answer.starts_with("right "), "{answer}");
    assert_eq!(b.expect(|l| l.starts_with("asked ")), "asked right");
    b.tell("wrong-types");
    assert_eq!(b.expect(|l| l.starts_with("wrong-types")), "wrong-types 3");

    // A node's sends to itself are checked the same way.
    a.export("probe-self", harness::probe().await).unwrap();
    let r = a.send("a", "probe-self", &Other::Note("wrong".into()));
    assert!(
        matches!(&r, Err(RemoteError::WrongType { expected, got, .. })
            if expected == "test.Probe" && got == "test.Other"),
        "{r:?}"
    );
    let r: Result<u64, _> = a
        .call(
            "a",
            "probe-self",
            |p| ProbeAskNumber::Ask("x".into(), p),
            second,
        )
        .await;
    assert!(
        matches!(&r, Err(RemoteError::WrongReplyType { expected, got, .. })
            if expected == "u64" && got == "String"),
        "{r:?}"
    );
    assert_eq!(a.stats().wrong_type, 2);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_mesh_through_one_seed() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    // c knows only b, from FOUNDATION_PEERS; a and c find each other through b.
    let mut c = harness::start("c", &[("ENV_PEERS", &b.addr.clone())]);
    wait_event(&mut events, is_up("c")).await;
    // Every event the members lines below depend on: c may learn of a through b's gossip
    // before b's own introduction of c reaches it, and b may hear of c after a does.
    c.expect_all(&["event up a", "event up b"]);
    b.expect(|l| l == "event up c");
    c.tell("members");
    assert_eq!(c.expect(|l| l.starts_with("members")), "members a,b");
    b.tell("members");
    assert_eq!(b.expect(|l| l.starts_with("members")), "members a,c");
    // The same view gives the same owners on every node.
    let keys: Vec<String> = (0..64).map(|i| format!("key-{i}")).collect();
    let keys = keys.join(",");
    let ring = a.ring();
    let here: Vec<&str> = keys
        .split(',')
        .map(|k| ring.owner(k.as_bytes()).unwrap().as_str())
        .collect();
    let here = format!("owners {}", here.join(","));
    for child in [&mut b, &mut c] {
        child.tell(&format!("owners {keys}"));
        assert_eq!(child.expect(|l| l.starts_with("owners")), here);
    }
    assert!(
        here.contains('a') && here.contains('b') && here.contains('c'),
        "{here}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_join_through_one_seed_at_the_same_moment_find_each_other() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let seed = a.advertised().to_owned();
    // Several at once: the seed's hello to each may predate the others' arrival; its
    // gossip when each joins must still introduce them to one another.
    let names = ["b", "c", "d", "e"];
    let mut kids: Vec<Child> = std::thread::scope(|s| {
        let started: Vec<_> = names
            .iter()
            .map(|n| s.spawn(|| harness::start(n, &[("SEEDS", seed.as_str())])))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for kid in &mut kids {
        let me = kid.name.clone();
        let others: Vec<String> = std::iter::once("a")
            .chain(names.iter().copied())
            .filter(|n| *n != me)
            .map(|n| format!("event up {n}"))
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        kid.expect_all(&others);
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_down_when_its_connection_closes_not_after_the_silence() {
    let _one = IN_PROCESS.lock().await;
    // A silence limit far longer than the test: only a closed connection can explain
    // a `Disconnected`.
    let a = local_node("a", |c| c.silence(Duration::from_secs(600))).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    b.kill();
    let down = wait_event(&mut events, is_down("b")).await;
    assert!(
        matches!(
            down,
            ClusterEvent::NodeDown {
                reason: DownReason::Disconnected,
                ..
            }
        ),
        "{down:?}"
    );
    assert!(a.members().is_empty());
    assert!(matches!(
        a.send("b", "probe", &Probe::Note("x".into())),
        Err(foundation_cluster::node::RemoteError::UnknownNode(_))
    ));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_declared_down_for_silence_and_comes_back_when_resumed() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c.silence(Duration::from_millis(600))).await;
    let mut events = a.subscribe();
    let b = harness::start("b", &[("SEEDS", a.advertised()), ("SILENCE_MS", "600")]);
    let up = wait_event(&mut events, is_up("b")).await;
    b.pause(true);
    let down = wait_event(&mut events, is_down("b")).await;
    assert!(
        matches!(
            down,
            ClusterEvent::NodeDown {
                reason: DownReason::Silent,
                ..
            }
        ),
        "{down:?}"
    );
    b.pause(false);
    // It reconnects: the same incarnation is up again.
    let again = wait_event(&mut events, is_up("b")).await;
    let (ClusterEvent::NodeUp(m1), ClusterEvent::NodeUp(m2)) = (up, again) else {
        unreachable!()
    };
    assert_eq!(m1.incarnation, m2.incarnation);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_is_not_declared_down() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c.silence(Duration::from_secs(1))).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised()), ("SILENCE_MS", "1000")]);
    wait_event(&mut events, is_up("b")).await;
    // b saturates every core for three silence limits.
    b.tell("burn 3000");
    b.expect(|l| l == "burning");
    let quiet = tokio::time::timeout(
        Duration::from_millis(3500),
        wait_event(&mut events, is_down("b")),
    )
    .await;
    assert!(quiet.is_err(), "a busy node was declared down: {quiet:?}");
    a.send("b", "probe", &Probe::Note("still-here".into()))
        .unwrap();
    b.expect(|l| l.starts_with("got still-here"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_seen_leaving_then_down_as_left() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c.silence(Duration::from_secs(600))).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    b.expect(|l| l == "event up a");
    b.tell("leave");
    wait_event(
        &mut events,
        |e| matches!(e, ClusterEvent::NodeLeaving(m) if m.id == "b"),
    )
    .await;
    let down = wait_event(&mut events, is_down("b")).await;
    assert!(
        matches!(
            down,
            ClusterEvent::NodeDown {
                reason: DownReason::Left,
                ..
            }
        ),
        "{down:?}"
    );
    a.shutdown().await;
}

fn is_rejected(part: &'static str) -> impl Fn(&ClusterEvent) -> bool {
    move |e| matches!(e, ClusterEvent::Rejected { why, .. } if why.contains(part))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_cookie_is_rejected_and_the_others_still_join() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let _intruder = harness::start("x", &[("SEEDS", a.advertised()), ("COOKIE", "wrong")]);
    wait_event(&mut events, is_rejected("before authenticating")).await;
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    a.send("b", "probe", &Probe::Note("fine".into())).unwrap();
    b.expect(|l| l.starts_with("got fine"));
    assert!(a.members().iter().all(|m| m.id != "x"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_silence_forged_lanes_and_oversized_frames_are_rejected() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c.handshake_timeout(Duration::from_millis(300))).await;
    let mut events = a.subscribe();
    let addr = a.addr();

    // Another protocol.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    wait_event(&mut events, is_rejected("sent 0x47 first")).await;

    // A peer that connects and says nothing.
    let _silent = TcpStream::connect(addr).await.unwrap();
    wait_event(&mut events, is_rejected("sent nothing")).await;

    // A lane with a token this node never issued.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = b"FND3".to_vec();
    let mut item = vec![6u8]; // hello
    item.extend_from_slice(&[7u8; 16]);
    item.extend_from_slice(&[1, b'z', 1]);
    item.push(7);
    item.extend_from_slice(b"default");
    item.push(0); // lane 0
    hello.extend_from_slice(&u32::try_from(item.len()).unwrap().to_le_bytes());
    hello.extend_from_slice(&item);
    s.write_all(&hello).await.unwrap();
    wait_event(&mut events, is_rejected("unknown or expired token")).await;

    // A lane for a channel this node does not have is refused, saying so.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = b"FND3".to_vec();
    let mut item = vec![6u8]; // hello
    item.extend_from_slice(&[7u8; 16]);
    item.extend_from_slice(&[1, b'z', 1]);
    item.push(4);
    item.extend_from_slice(b"bulk");
    item.push(0); // lane 0
    hello.extend_from_slice(&u32::try_from(item.len()).unwrap().to_le_bytes());
    hello.extend_from_slice(&item);
    s.write_all(&hello).await.unwrap();
    wait_event(
        &mut events,
        is_rejected("channel `bulk`, which this node does not have"),
    )
    .await;

    // A lane of another wire version (a node of an older Foundation) is told so.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"FND1\0\0\0\0").await.unwrap();
    wait_event(
        &mut events,
        is_rejected("a lane of wire version 1, this node speaks 3"),
    )
    .await;

    // A lane announcing a frame over the limit.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut huge = b"FND3".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&huge).await.unwrap();
    wait_event(&mut events, is_rejected("over the")).await;

    // A session that starts like ractor_cluster's and then is garbage.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[
        0, 0, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ])
    .await
    .unwrap();
    wait_event(&mut events, is_rejected("before authenticating")).await;

    // Through all that, a real node joins and is served.
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    a.send("b", "probe", &Probe::Note("served".into())).unwrap();
    b.expect(|l| l.starts_with("got served"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_every_connection_is_encrypted_and_plain_peers_are_refused() {
    let _one = IN_PROCESS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    harness::write_tls(dir.path());
    let tls_dir = dir.path().to_str().unwrap().to_owned();
    // With a low-priority channel of two lanes: over TLS, its lanes move to the
    // low-priority thread as whole TLS streams.
    let bulk = foundation_cluster::node::ChannelConfig::default()
        .priority(foundation_cluster::node::Priority::Low)
        .parallelism(2);
    let a = local_node("a", |c| {
        c.tls(harness::tls_from(dir.path())).channel("bulk", bulk)
    })
    .await;
    let mut events = a.subscribe();
    let mut b = harness::start(
        "b",
        &[
            ("SEEDS", a.advertised()),
            ("TLS_DIR", &tls_dir),
            ("CHANNELS", "bulk:low:2"),
        ],
    );
    wait_event(&mut events, is_up("b")).await;
    a.send("b", "probe", &Probe::Note("sealed".into())).unwrap();
    b.expect(|l| l.starts_with("got sealed"));
    let answer: String = a
        .call_on(
            "bulk",
            "b",
            "probe",
            |p| Probe::Ask("sealed-bulk".into(), p),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(answer.starts_with("sealed-bulk "), "{answer}");
    // c is dialed by a through b's gossip: that connection is TLS too.
    let mut c = harness::start("c", &[("SEEDS", &b.addr.clone()), ("TLS_DIR", &tls_dir)]);
    wait_event(&mut events, is_up("c")).await;
    a.send("c", "probe", &Probe::Note("sealed-too".into()))
        .unwrap();
    c.expect(|l| l.starts_with("got sealed-too"));
    // A node without TLS gets nowhere.
    let _plain = harness::start("p", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_rejected("TLS handshake failed")).await;
    assert!(a.members().iter().all(|m| m.id != "p"));
    // A TLS peer killed ends its lanes without TLS's close: a crash, seen as one (the node
    // goes down), not reported as a refused connection.
    let mut after = a.subscribe();
    c.kill();
    let mut seen = Vec::new();
    let down = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match after.recv().await {
                Ok(e) if is_down("c")(&e) => return e,
                Ok(e) => seen.push(e),
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("c not down in 30 s; seen {seen:?}"));
    assert!(
        matches!(
            down,
            ClusterEvent::NodeDown {
                reason: DownReason::Disconnected,
                ..
            }
        ),
        "{down:?}"
    );
    // Its lanes may close just after: a moment for a late report.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(e) = after.try_recv() {
        seen.push(e);
    }
    assert!(
        !seen.iter().any(
            |e| matches!(e, ClusterEvent::Rejected { why, .. } if why.starts_with("lane closed"))
        ),
        "{seen:?}"
    );
    drop(b);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_call_returns_the_answer_and_its_context_reached_the_other_node() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let _b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    let second = Duration::from_secs(10);

    let ctx = Context::new().with_request_id("call-7");
    let trace = ctx.trace_id().to_string();
    let answer: String = ctx
        .scope(a.call("b", "probe", |p| Probe::Ask("hi".into(), p), second))
        .await
        .unwrap();
    assert_eq!(answer, format!("hi trace={trace} req=call-7"));

    // Many in flight at once, each answered to its own caller.
    let calls = (0..200).map(|i| {
        let a = a.clone();
        async move {
            a.call("b", "probe", |p| Probe::Ask(i.to_string(), p), second)
                .await
        }
    });
    let answers = futures::future::join_all(calls).await;
    for (i, r) in answers.into_iter().enumerate() {
        assert!(r.unwrap().starts_with(&format!("{i} ")));
    }

    // What can go wrong is told apart.
    let r = a
        .call("b", "nobody", |p| Probe::Ask("x".into(), p), second)
        .await;
    assert!(
        matches!(r, Err(RemoteError::NoSuchName { ref name, .. }) if name == "nobody"),
        "{r:?}"
    );
    let r = a.call("b", "probe", Probe::Ignore, second).await;
    assert!(matches!(r, Err(RemoteError::NoReply { .. })), "{r:?}");
    let r = a
        .call("b", "probe", Probe::Hold, Duration::from_millis(200))
        .await;
    assert!(matches!(r, Err(RemoteError::Timeout)), "{r:?}");
    let short = Context::new().with_timeout(Duration::from_millis(200));
    let r = short.scope(a.call("b", "probe", Probe::Hold, second)).await;
    assert!(matches!(r, Err(RemoteError::DeadlineExceeded)), "{r:?}");
    let r: Result<String, _> = a.call("nowhere", "probe", Probe::Hold, second).await;
    assert!(matches!(r, Err(RemoteError::UnknownNode(_))), "{r:?}");
    // A call to itself goes through the same path.
    let r = a
        .call("a", "probe", |p| Probe::Ask("x".into(), p), second)
        .await;
    assert!(matches!(r, Err(RemoteError::NoSuchName { .. })), "{r:?}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_node_that_dies_fails_with_node_down_not_a_timeout() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c.silence(Duration::from_secs(600))).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    let pending = {
        let a = a.clone();
        tokio::spawn(async move {
            a.call("b", "probe", Probe::Hold, Duration::from_secs(600))
                .await
        })
    };
    // Once the call is held there (a second call behind it answers), kill b.
    let _: String = a
        .call(
            "b",
            "probe",
            |p| Probe::Ask("behind".into(), p),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    b.kill();
    let r = pending.await.unwrap();
    assert!(
        matches!(r, Err(RemoteError::NodeDown(ref n)) if n == "b"),
        "{r:?}"
    );
    a.shutdown().await;
}

/// Each child's members, sorted, as it reports them.
fn members_of(child: &mut Child) -> String {
    child.tell("members");
    child.expect(|l| l.starts_with("members"))["members ".len()..].to_owned()
}

/// Asks `child` for its members until they are `want`, for up to 30 s (a bound for a hung
/// test, not a timing check); returns the last answer. With a short silence limit on a
/// loaded machine a node may be taken for down and come back: convergence is what counts.
fn members_converge(child: &mut Child, want: &str) -> String {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = members_of(child);
        if got == want || std::time::Instant::now() >= until {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_declared_down_on_both_sides_and_all_converge_after_the_heal() {
    let net = harness::Net::new(3);
    let silence = [("SILENCE_MS", "1000")];
    let listen = |i: usize| format!("{}:4370", net.addr(i));
    let seed = listen(0);
    let (la, lb, lc) = (listen(0), listen(1), listen(2));
    let mut a = harness::start_in(&net.ns(0), "a", &[silence[0], ("LISTEN", &la)]);
    let mut b = harness::start_in(
        &net.ns(1),
        "b",
        &[silence[0], ("LISTEN", &lb), ("SEEDS", &seed)],
    );
    let mut c = harness::start_in(
        &net.ns(2),
        "c",
        &[silence[0], ("LISTEN", &lc), ("SEEDS", &seed)],
    );
    a.expect_all(&["event up b", "event up c"]);
    b.expect_all(&["event up a", "event up c"]);
    c.expect_all(&["event up a", "event up b"]);

    net.cut(2);
    // Silent on both sides of the cut: declared down for silence, not disconnection.
    a.expect(|l| l == "event down c Silent");
    b.expect(|l| l == "event down c Silent");
    c.expect_all(&["event down a Silent", "event down b Silent"]);
    assert_eq!(members_of(&mut a), "b");
    assert_eq!(members_of(&mut b), "a");
    assert_eq!(members_of(&mut c), "");

    net.heal(2);
    // Every survivor converges on the full view again, through reconnection alone.
    a.expect(|l| l == "event up c");
    b.expect(|l| l == "event up c");
    c.expect_all(&["event up a", "event up b"]);
    assert_eq!(members_converge(&mut a, "b,c"), "b,c");
    assert_eq!(members_converge(&mut b, "a,c"), "a,c");
    assert_eq!(members_converge(&mut c, "a,b"), "a,b");
    a.tell("send c probe healed");
    c.expect(|l| l.starts_with("got healed"));
}

/// Sends `note` to `peer`'s probe on `default` until the outbox refuses one (true), or
/// 200,000 were accepted (false).
fn fill_until_refused(a: &foundation_cluster::node::Node, peer: &str, note: &str) -> bool {
    use foundation_cluster::node::RemoteError;
    for _ in 0..200_000 {
        match a.send(peer, "probe", &Probe::Note(note.to_owned())) {
            Ok(()) => {}
            Err(RemoteError::Overloaded(n)) if n == peer => return true,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    false
}

/// Node `a` here, with a 256 KiB limit on what waits for a peer, joined by node `b` in a
/// child process; both with a 30 s silence limit, so a paused `b` stays a member.
async fn small_outbox_to_b() -> (foundation_cluster::node::Node, Child) {
    let a = local_node("a", |c| {
        c.silence(Duration::from_secs(30)).max_pending(256 * 1024)
    })
    .await;
    let mut events = a.subscribe();
    let b = harness::start("b", &[("SEEDS", a.advertised()), ("SILENCE_MS", "30000")]);
    wait_event(&mut events, is_up("b")).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_message_goes_through_while_the_default_channel_is_full() {
    use foundation_cluster::node::CONTROL;
    let _one = IN_PROCESS.lock().await;
    let (a, mut b) = small_outbox_to_b().await;
    // b stops reading: the default lane's socket buffers fill, then its outbox.
    b.pause(true);
    let note = "x".repeat(4096);
    // Sends on default until refused (the writer, stuck on the full socket, may take one
    // more batch off the outbox before it blocks: hence "until").
    let fill = || fill_until_refused(&a, "b", &note);
    assert!(fill(), "the default outbox never filled");
    // The control channel has its own lane and outbox: it is not refused...
    a.send_on(CONTROL, "b", "probe", &Probe::Note("control-note".into()))
        .unwrap();
    // ...while default stays full.
    assert!(
        fill(),
        "the default outbox drained while its peer was paused"
    );
    b.pause(false);
    b.expect(|l| l.starts_with("got control-note"));
    assert!(a.members().iter().any(|m| m.id == "b"));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_holds_the_sender_until_the_channel_has_room_and_gives_up_at_the_deadline() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let (a, mut b) = small_outbox_to_b().await;
    b.pause(true);
    let note = "x".repeat(4096);
    let fill = || fill_until_refused(&a, "b", &note);
    // Full, and still full once the writer is stuck on the paused peer's socket.
    assert!(fill(), "the default outbox never filled");
    assert!(
        fill(),
        "the default outbox drained while its peer was paused"
    );

    // With a deadline in the context, the wait ends there, and nothing is queued. (Until
    // the paused peer's socket buffers are full, the writer may still take a batch and
    // make room: then the send goes through; try again until it has to wait.)
    let until_a_send_waits = async |tag: &str| {
        for k in 0..1_000 {
            let ctx = Context::new().with_timeout(Duration::from_millis(300));
            let text = format!("{tag}-{k}");
            match ctx
                .scope(a.send_wait("b", "probe", &Probe::Note(text.clone())))
                .await
            {
                Ok(()) => assert!(fill(), "the default outbox did not fill again"),
                Err(RemoteError::DeadlineExceeded) => return text,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        panic!("a send to a paused peer never had to wait")
    };
    let gave_up = until_a_send_waits("deadline").await;

    // Without one, the sender waits for room: once the peer reads again, the message is
    // queued and arrives.
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move {
            a.send_wait("b", "probe", &Probe::Note("after-the-wait".into()))
                .await
        })
    };
    b.pause(false);
    let sent = waiting.await.unwrap();
    assert!(sent.is_ok(), "{sent:?}");
    // In lane order, so a send that gave up would have arrived before it.
    let gave_up = format!("got {gave_up}");
    b.expect(|l| {
        assert!(
            !l.starts_with(&gave_up),
            "a send that gave up at its deadline was delivered"
        );
        l.starts_with("got after-the-wait")
    });

    // A sender waiting on a node that goes down is told so.
    b.pause(true);
    assert!(fill(), "the default outbox never filled again");
    until_a_send_waits("stuck").await;
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move {
            a.send_wait("b", "probe", &Probe::Note("never".into()))
                .await
        })
    };
    b.kill();
    let r = waiting.await.unwrap();
    assert!(
        matches!(&r, Err(RemoteError::NodeDown(n) | RemoteError::UnknownNode(n)) if n == "b"),
        "{r:?}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_resolves_when_the_peer_is_up_and_names_the_missing_ones() {
    use foundation_cluster::node::WaitError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let long = Duration::from_secs(60);
    // Waiting from before the peer exists: resolved by its NodeUp.
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for("b", long).await })
    };
    let _b = harness::start("b", &[("SEEDS", a.advertised())]);
    let b = waiting.await.unwrap().unwrap();
    assert_eq!(b.id, "b");
    // Up already: resolved from the members, without an event.
    assert_eq!(a.wait_for("b", long).await.unwrap().id, "b");
    // One missing: the error names it (and only it).
    let r = a
        .wait_for_members(&["b", "nobody"], Duration::from_millis(300))
        .await;
    let Err(WaitError::Timeout { missing, .. }) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(missing, &["nobody"]);
    let text = r.unwrap_err().to_string();
    assert!(text.starts_with("`nobody` is not up after"), "{text}");
    // A node that shuts down ends the waits on it.
    let waiting = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for("nobody", long).await })
    };
    tokio::task::yield_now().await;
    a.shutdown().await;
    assert_eq!(waiting.await.unwrap(), Err(WaitError::Shutdown));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_for_a_node_with_the_wrong_cookie_is_told_why() {
    use foundation_cluster::node::WaitError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let _x = harness::start("x", &[("SEEDS", a.advertised()), ("COOKIE", "wrong")]);
    wait_event(&mut events, is_rejected("before authenticating")).await;
    let r = a.wait_for("x", Duration::from_millis(300)).await;
    let Err(WaitError::Timeout { refused, .. }) = &r else {
        panic!("{r:?}")
    };
    // x redials every few seconds: its refusals are listed once.
    assert_eq!(refused.len(), 1, "{refused:?}");
    let text = r.unwrap_err().to_string();
    assert!(text.contains("`x` is not up"), "{text}");
    assert!(text.contains("wrong cookie"), "{text}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_whose_process_stopped_can_be_exported_again() {
    use foundation_actors::{SpawnError, spawn};
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let first = spawn(harness::ProbeActor, ()).await.unwrap();
    a.export("again", &first).unwrap();
    let second = spawn(harness::ProbeActor, ()).await.unwrap();
    // Taken while the first runs.
    assert!(matches!(
        a.export("again", &second),
        Err(SpawnError::NameTaken(_))
    ));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _hook = first.on_stop(move || {
        let _ = tx.send(());
    });
    first.stop(None);
    tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .unwrap()
        .unwrap();
    a.export("again", second).unwrap();
    let r: String = a
        .call(
            "a",
            "again",
            |p| Probe::Ask("x".into(), p),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(r.starts_with("x "), "{r}");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_its_own_limit_drops_and_refuses_past_it_and_counts_both() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let mut events = a.subscribe();
    let mut b = harness::start("b", &[("SEEDS", a.advertised())]);
    wait_event(&mut events, is_up("b")).await;
    // b's `gate` may hold 4 (its own limit, under the node's 10,000) and holds each note
    // until told: n0 in its handler, n1-n3 in its mailbox, the 16 others dropped.
    assert_eq!(harness::GATE_LIMIT, 4);
    for i in 0..20 {
        a.send("b", "gate", &Probe::Note(format!("n{i}"))).unwrap();
    }
    b.tell("export-stats gate 4 16 0");
    assert_eq!(
        b.expect(|l| l.starts_with("export-stats ")),
        "export-stats gate queued=4 max_queued=4 dropped=16 refused=0"
    );
    // The node's mailboxes at once: the gate is the deepest, the only one that holds any:
    // three waiting (n0 is in its handler), four from peers (n0 included), its limit 4.
    b.tell("mailboxes 4");
    assert_eq!(
        b.expect(|l| l.starts_with("mailboxes ")),
        "mailboxes queued=3 max=3 from_peers=4 deepest=gate:3/4/4"
    );
    // A call past the limit is refused at once, and counted apart.
    let refused = a
        .call(
            "b",
            "gate",
            |p| Probe::Ask("c".into(), p),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(refused, Err(RemoteError::Overloaded(ref n)) if n == "b"),
        "{refused:?}"
    );
    b.tell("export-stats gate 4 16 1");
    b.expect(|l| l == "export-stats gate queued=4 max_queued=4 dropped=16 refused=1");
    // The node's totals include them; another export keeps the node's limit and its own
    // (empty) counts.
    b.tell("stats");
    let stats = b.expect(|l| l.starts_with("stats "));
    assert!(
        stats.contains(" remote_dropped=16 remote_refused=1 "),
        "{stats}"
    );
    b.tell("export-stats probe 0 0 0");
    b.expect(|l| l == "export-stats probe queued=0 max_queued=10000 dropped=0 refused=0");
    // Let the four through: the room comes back, and a call is answered.
    b.tell("open 4");
    for i in 0..4 {
        let want = format!("gate n{i}");
        b.expect(|l| l == want);
    }
    b.tell("export-stats gate 0 16 1");
    b.expect(|l| l == "export-stats gate queued=0 max_queued=4 dropped=16 refused=1");
    b.tell("mailboxes 0");
    b.expect(|l| l == "mailboxes queued=0 max=0 from_peers=0 deepest=");
    let answer: String = a
        .call(
            "b",
            "gate",
            |p| Probe::Ask("c".into(), p),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(answer, "c");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_has_shut_down_says_so() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    let probe = foundation_actors::spawn(harness::ProbeActor, ())
        .await
        .unwrap();
    a.export("probe-x", probe).unwrap();
    a.shutdown().await;
    let r: Result<String, _> = a
        .call(
            "a",
            "probe-x",
            |p| Probe::Ask("x".into(), p),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(r, Err(RemoteError::Shutdown(ref n)) if n == "a"),
        "{r:?}"
    );
    let r = a.send("b", "probe-x", &Probe::Note("x".into()));
    assert!(matches!(r, Err(RemoteError::Shutdown(_))), "{r:?}");
    assert!(r.unwrap_err().to_string().contains("has shut down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_right_after_stop_gets_stopped() {
    use foundation_cluster::node::RemoteError;
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| c).await;
    for i in 0..20 {
        let name = format!("stopping-{i}");
        let probe = foundation_actors::spawn(harness::ProbeActor, ())
            .await
            .unwrap();
        a.export(&name, &probe).unwrap();
        probe.stop(None);
        let r: Result<String, _> = a
            .call(
                "a",
                &name,
                |p| Probe::Ask("x".into(), p),
                Duration::from_secs(30),
            )
            .await;
        assert!(
            matches!(r, Err(RemoteError::Stopped { ref name, .. }) if name.starts_with("stopping-")),
            "call {i}: {r:?}"
        );
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_default_is_answered_while_a_low_priority_channel_floods() {
    use foundation_cluster::node::{ChannelConfig, Priority};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let _one = IN_PROCESS.lock().await;
    let bulk = ChannelConfig::default().priority(Priority::Low);
    let a = local_node("a", |c| c.channel("bulk", bulk)).await;
    let mut events = a.subscribe();
    // b keeps at most 1,000 unhandled remote messages per process: the flood's surplus is
    // dropped there, not held.
    let mut b = harness::start(
        "b",
        &[
            ("SEEDS", a.advertised()),
            ("CHANNELS", "bulk:low:1"),
            ("MAX_REMOTE_QUEUED", "1000"),
        ],
    );
    wait_event(&mut events, is_up("b")).await;

    // A continuous flood on `bulk`, as fast as the channel takes it, at b's 1 ms process.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let sent = std::sync::Arc::new(AtomicU64::new(0));
    let (going_tx, going) = tokio::sync::oneshot::channel();
    let flood = {
        let (a, stop, sent) = (a.clone(), stop.clone(), sent.clone());
        tokio::spawn(async move {
            let note = "f".repeat(4096);
            let mut going_tx = Some(going_tx);
            while !stop.load(Ordering::Relaxed) {
                let msg = Probe::Note(note.clone());
                a.send_on_wait("bulk", "b", "slow", &msg).await.unwrap();
                if sent.fetch_add(1, Ordering::Relaxed) == 1_000 {
                    let _ = going_tx.take().map(|t| t.send(()));
                }
            }
        })
    };
    going.await.unwrap();
    // Calls on `default` are answered meanwhile, each in turn, while the flood goes on.
    for i in 0..50 {
        let note = format!("c{i}");
        let answer: String = a
            .call(
                "b",
                "probe",
                |p| Probe::Ask(note.clone(), p),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(answer.starts_with(&format!("{note} ")), "{answer}");
    }
    assert!(!flood.is_finished(), "the flood stopped");
    let before = sent.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    flood.await.unwrap();
    assert!(before > 1_000);
    // `bulk`'s lanes run on a thread the OS ranks lowest, in both processes; `default`'s
    // do not (the calls above ran on the test's runtime).
    b.tell("stats");
    let stats = b.expect(|l| l.starts_with("stats "));
    assert!(stats.contains(" low_nice=19 "), "{stats}");
    assert_eq!(harness::low_lanes_nice(), Some(19));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_parallelism_opens_that_many_lanes_and_keeps_each_process_in_order() {
    use foundation_cluster::node::{ChannelConfig, RemoteError};
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| {
        c.channel("wide", ChannelConfig::default().parallelism(4))
    })
    .await;
    let mut events = a.subscribe();
    let mut b = harness::start(
        "b",
        &[("SEEDS", a.advertised()), ("CHANNELS", "wide:normal:4")],
    );
    wait_event(&mut events, is_up("b")).await;

    // Calls to 64 names spread over the four lanes of `wide` (a name picks its lane); each
    // is answered (no such name), so each lane is open both ways once they all are.
    for i in 0..64 {
        let r: Result<String, _> = a
            .call_on(
                "wide",
                "b",
                &format!("nobody-{i}"),
                |p| Probe::Ask(String::new(), p),
                Duration::from_secs(30),
            )
            .await;
        assert!(matches!(r, Err(RemoteError::NoSuchName { .. })), "{r:?}");
    }
    // A call on `control` and one on `default`: their lanes are open both ways too.
    for channel in [
        foundation_cluster::node::CONTROL,
        foundation_cluster::node::DEFAULT,
    ] {
        let r: String = a
            .call_on(
                channel,
                "b",
                "probe",
                |p| Probe::Ask(channel.into(), p),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(r.starts_with(channel), "{r}");
    }
    // control, default and wide's four, each way.
    assert_eq!(a.stats().lanes_out, 6);
    assert_eq!(a.stats().lanes_in, 6);
    b.tell("stats");
    let stats = b.expect(|l| l.starts_with("stats "));
    assert!(stats.contains(" lanes_in=6 lanes_out=6"), "{stats}");

    // Messages to one process arrive in the order sent, whatever goes to others between.
    for i in 0..300 {
        a.send_on("wide", "b", "probe", &Probe::Note(format!("w{i}")))
            .unwrap();
        a.send_on("wide", "b", "slow", &Probe::Note(format!("s{i}")))
            .unwrap();
        a.send_on(
            "wide",
            "b",
            &format!("nobody-{}", i % 64),
            &Probe::Note(String::new()),
        )
        .unwrap();
    }
    for i in 0..300 {
        let got = b.expect(|l| l.starts_with("got w"));
        assert!(
            got.starts_with(&format!("got w{i} ")),
            "{got} instead of w{i}"
        );
    }
    a.shutdown().await;
}
