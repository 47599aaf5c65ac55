//! Links declared down and made again: a node back after a down stays up, and what a
//! lane of its earlier link reports later does not take the new link down.

use std::time::{Duration, Instant};

use foundation_cluster::membership::DownReason;
use foundation_cluster::node::{ClusterEvent, RemoteError};

use super::harness::{self, IN_PROCESS, Probe, local_node, wait_event};

fn is_up(name: &'static str) -> impl Fn(&ClusterEvent) -> bool {
    move |e| matches!(e, ClusterEvent::NodeUp(m) if m.id == name)
}

fn is_down(name: &'static str) -> impl Fn(&ClusterEvent) -> bool {
    move |e| matches!(e, ClusterEvent::NodeDown { member, .. } if member.id == name)
}

/// A node paused past the silence limit is declared down on both sides, and its
/// connections are closed; resumed, it dials again and is up within about the grace a
/// closed outbound lane gets (1 s). Before links were numbered, the close of this node's
/// own lanes of the old link, reported after the cleanup, put the peer in that grace, and
/// the peer, up again by then, was declared down once more a second later (and again, each
/// time it came back within the second: `Disconnected` about every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_a_down_stays_up_and_answers() {
    let _one = IN_PROCESS.lock().await;
    let silence = Duration::from_secs(2);
    let a = local_node("a", |c| c.silence(silence)).await;
    let mut events = a.subscribe();
    let b = harness::start("b", &[("SEEDS", a.advertised()), ("SILENCE_MS", "2000")]);
    wait_event(&mut events, is_up("b")).await;
    b.pause(true);
    wait_event(&mut events, is_down("b")).await;
    b.pause(false);
    wait_event(&mut events, is_up("b")).await;
    // Several times the grace: every call is answered, and b is not declared down.
    let until = Instant::now() + Duration::from_secs(4);
    let mut answered = 0;
    while Instant::now() < until {
        let r: Result<String, RemoteError> = a
            .call(
                "b",
                "probe",
                |p| Probe::Ask("still".into(), p),
                Duration::from_secs(30),
            )
            .await;
        assert!(r.is_ok(), "call {answered} after b came back: {r:?}");
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(format!("{e:?}"));
        assert!(
            !matches!(
                e,
                ClusterEvent::NodeDown {
                    reason: DownReason::Disconnected,
                    ..
                }
            ),
            "b came back and was taken down again: {seen:#?}"
        );
    }
    a.shutdown().await;
}
