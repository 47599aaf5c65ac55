//! One very large message on a channel of its own: it arrives whole, and the traffic of
//! the other channels between the same two nodes (calls, heartbeats) goes on meanwhile.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use foundation_cluster::node::{ChannelConfig, ClusterEvent};

use super::harness::{self, Big, IN_PROCESS, Probe, local_node, wait_event};

/// The message: 100 MiB.
const BIG: usize = 100 << 20;

/// Both nodes' frame limit: the message and its item's header fit.
const MAX_FRAME: usize = 128 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_message_on_one_channel_delays_no_call_and_no_heartbeat_on_another() {
    let _one = IN_PROCESS.lock().await;
    let a = local_node("a", |c| {
        c.max_frame(MAX_FRAME)
            .channel("bulk", ChannelConfig::default())
    })
    .await;
    let mut events = a.subscribe();
    let max_frame = MAX_FRAME.to_string();
    let mut b = harness::start(
        "b",
        &[
            ("SEEDS", a.advertised()),
            ("CHANNELS", "bulk:normal:1"),
            ("MAX_FRAME", &max_frame),
        ],
    );
    wait_event(
        &mut events,
        |e| matches!(e, ClusterEvent::NodeUp(m) if m.id == "b"),
    )
    .await;
    // Both channels' lanes open before the test proper: a call on each.
    for channel in ["bulk", foundation_cluster::node::DEFAULT] {
        let r: String = a
            .call_on(
                channel,
                "b",
                "probe",
                |p| Probe::Ask(format!("open-{channel}"), p),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(r.starts_with("open-"), "{r}");
    }

    // The big message is queued on `bulk` (encoded into its outbox: a 100 MiB copy, off
    // the runtime) before the first call below is made.
    let queueing = std::time::Instant::now();
    let queued = {
        let a = a.clone();
        tokio::task::spawn_blocking(move || a.send_on("bulk", "b", "big", &Big::pattern(BIG)))
    };
    queued.await.unwrap().unwrap();
    let queued_at = std::time::Instant::now();

    // Calls on `default`, one after another, until b has the big message. On one
    // connection each would wait behind it (the first one or two might at most race its
    // handler's line); on their own channel they are answered while it is in flight. b's lines
    // come in the order its processes handled them: the calls it answered before it got
    // the big message are counted there.
    let (before_big, downs) = (Cell::new(0u32), RefCell::new(Vec::new()));
    let seen = |l: &str| {
        if l.starts_with("asked while-") {
            before_big.set(before_big.get() + 1);
        } else if l.starts_with("event down") {
            downs.borrow_mut().push(l.to_owned());
        }
        l.starts_with("big ")
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut answered = 0u32;
    let got = loop {
        let note = format!("while-{answered}");
        let r: String = a
            .call(
                "b",
                "probe",
                |p| Probe::Ask(note.clone(), p),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert!(r.starts_with(&format!("{note} ")), "{r}");
        answered += 1;
        if let Some(line) = b.try_expect(Duration::from_millis(1), seen) {
            break line;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the big message did not arrive in 180 s ({answered} calls answered meanwhile)"
        );
    };
    eprintln!(
        "{answered} calls answered while the big message was in flight, {} of them handled before it; queued in {:?}, in flight {:?}",
        before_big.get(),
        queued_at - queueing,
        queued_at.elapsed()
    );
    assert_eq!(
        got,
        format!("big {BIG} ok"),
        "the big message arrived broken"
    );
    assert!(
        before_big.get() >= 3,
        "only {} calls were handled while the big message was in flight",
        before_big.get()
    );

    // Heartbeats went on: neither side took the other for down, and both are members.
    let r: String = a
        .call(
            "b",
            "probe",
            |p| Probe::Ask("after".into(), p),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(r.starts_with("after "), "{r}");
    b.tell("members");
    let members = b.expect(|l| {
        seen(l);
        l.starts_with("members ")
    });
    assert_eq!(members, "members a");
    // And b keeps no copy of it once delivered: its lane's read buffer shrank back.
    let mut rss_kib = u64::MAX;
    for _ in 0..50 {
        b.tell("stats");
        let stats = b.expect(|l| {
            seen(l);
            l.starts_with("stats ")
        });
        eprintln!("b once it has the big message: {stats}");
        rss_kib = stats
            .split(' ')
            .find_map(|f| f.strip_prefix("rss="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        if rss_kib < (BIG as u64 >> 10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        rss_kib < (BIG as u64 >> 10),
        "b holds {rss_kib} KiB after the 100 MiB message was delivered"
    );
    assert!(downs.borrow().is_empty(), "b saw {:?}", downs.borrow());
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, ClusterEvent::NodeDown { .. }),
            "a node went down while the big message was in flight: {e:?}"
        );
    }
    assert!(a.members().iter().any(|m| m.id == "b"));
    a.shutdown().await;
}
