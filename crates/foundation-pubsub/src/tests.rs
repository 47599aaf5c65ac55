//! Unit tests of the fan-out of broadcasts from peers.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::time::Duration;

use foundation_actors::{Actor, ActorError, Addr, Context, spawn};
use tokio::sync::mpsc;

use crate::pubsub::Incoming;
use crate::subscriber::every;
use crate::{BufferConfig, Overflow, PubSub, Topic};

/// Reports each number it handles, with the `who` baggage of the context it runs under.
struct Reporter(mpsc::UnboundedSender<(u64, Option<String>)>);

impl Actor for Reporter {
    type Msg = u64;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<u64>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<u64>, n: u64, (): &mut ()) -> Result<(), ActorError> {
        let who = Context::current().and_then(|c| c.baggage("who").map(str::to_owned));
        let _ = self.0.send((n, who));
        Ok(())
    }
}

fn incoming(topic: &str, n: u64, ctx: Option<&Context>) -> Incoming {
    Incoming {
        topic: topic.to_owned(),
        type_id: <u64 as foundation_actors::RemoteMessage>::WIRE_TYPE.id(),
        payload: postcard::to_stdvec(&n).unwrap(),
        ctx: ctx.cloned(),
    }
}

#[tokio::test]
async fn a_batch_from_peers_reaches_each_subscriber_in_order_each_with_its_own_context() {
    let ps = PubSub::local("batch");
    let topic: Topic<u64> = Topic::new("batch.n").unwrap();
    let mut reports = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::unbounded_channel();
        let addr = spawn(Reporter(tx), ()).await.unwrap();
        ps.subscribe(&topic, &addr).unwrap();
        reports.push(rx);
    }
    let mut stream = ps.subscribe_stream(&topic).unwrap();
    let ada = Context::new().with_baggage("who", "ada");
    let batch = [
        incoming("batch.n", 1, None),
        incoming("batch.n", 2, Some(&ada)),
        // Another topic between them: nobody here subscribes to it.
        incoming("batch.other", 100, None),
        incoming("batch.n", 3, None),
        incoming("batch.n", 4, None),
    ];
    // As the pubsub's process does while it handles a message that came with a context:
    // that one is current, and must not leak onto the broadcasts that came without one.
    Context::new()
        .with_baggage("who", "server")
        .sync_scope(|| ps.core().receive_batch(&batch));

    let want = [(1, None), (2, Some("ada".to_owned())), (3, None), (4, None)];
    for rx in &mut reports {
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let r = tokio::time::timeout(Duration::from_secs(30), rx.recv());
            got.push(r.await.unwrap().unwrap());
        }
        assert_eq!(got, want);
    }
    for (n, who) in want {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.recv());
        let m = r.await.unwrap().unwrap();
        assert_eq!(*m, n);
        assert_eq!(
            m.context()
                .and_then(|c| c.baggage("who"))
                .map(str::to_owned),
            who
        );
    }
    let stats = ps.stats();
    assert_eq!((stats.received, stats.delivered), (5, 12), "{stats:?}");
}

#[tokio::test]
async fn a_batch_disconnects_a_full_subscriber_as_one_broadcast_at_a_time_would() {
    let ps = PubSub::local("batch-full");
    let topic: Topic<u64> = Topic::new("batch.full").unwrap();
    let mut stream = ps
        .subscribe_stream_with(&topic, BufferConfig::new(1, Overflow::Disconnect))
        .unwrap();
    let batch: Vec<Incoming> = (1..=3).map(|n| incoming("batch.full", n, None)).collect();
    ps.core().receive_batch(&batch);
    // The first is queued, the second overflows and disconnects, the third finds no
    // subscription: one drop, counted once.
    let stats = ps.stats();
    assert_eq!(
        (stats.delivered, stats.dropped, stats.disconnected),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stream.dropped(), 1);
    assert_eq!(stream.recv().await.map(|m| *m), Some(1));
    assert!(stream.recv().await.is_none());
    assert_eq!(ps.local_subscribers_count(&topic), 0);
}

#[tokio::test]
async fn a_batch_reaches_a_stream_under_one_lock_with_its_policy_applied_to_each_message() {
    let ps = PubSub::local("batch-policies");
    let topic: Topic<u64> = Topic::new("batch.policies").unwrap();
    let mut oldest = ps
        .subscribe_stream_with(&topic, BufferConfig::new(2, Overflow::DropOldest))
        .unwrap();
    let mut newest = ps
        .subscribe_stream_with(&topic, BufferConfig::new(2, Overflow::DropNewest))
        .unwrap();
    let batch: Vec<Incoming> = (1..=5)
        .map(|n| incoming("batch.policies", n, None))
        .collect();
    ps.core().receive_batch(&batch);
    // DropOldest takes all five and keeps the last two; DropNewest keeps the first two.
    let stats = ps.stats();
    assert_eq!(
        (stats.delivered, stats.dropped),
        (5 + 2, 3 + 3),
        "{stats:?}"
    );
    assert_eq!((oldest.dropped(), newest.dropped()), (3, 3));
    let mut got = (Vec::new(), Vec::new());
    for _ in 0..2 {
        got.0.push(*oldest.recv().await.unwrap());
        got.1.push(*newest.recv().await.unwrap());
    }
    assert_eq!(got, (vec![4, 5], vec![1, 2]));
    assert!(oldest.is_empty() && newest.is_empty());
    // Both go on.
    ps.core()
        .receive_batch(&[incoming("batch.policies", 6, None)]);
    assert_eq!(oldest.recv().await.map(|m| *m), Some(6));
    assert_eq!(newest.recv().await.map(|m| *m), Some(6));
}

#[test]
fn actor_subscribers_mark_every_power_of_two_up_to_a_32nd_of_the_buffer_and_1024() {
    assert_eq!(every(1), 1);
    assert_eq!(every(63), 1);
    assert_eq!(every(64), 2);
    assert_eq!(every(100), 2);
    assert_eq!(every(1024), 32);
    assert_eq!(every(4000), 64);
    assert_eq!(every(32_768), 1024);
    assert_eq!(every(1 << 20), 1024);
    // The slack (a message dropped up to `every - 1` early) stays under a 32nd.
    for capacity in [1, 31, 32, 100, 1024, 4000, 50_000, 1 << 20] {
        assert!((every(capacity) - 1) * 32 <= capacity as u64, "{capacity}");
    }
}
