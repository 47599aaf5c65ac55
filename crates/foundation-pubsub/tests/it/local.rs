//! One process: actor and stream subscribers, patterns, context, slow subscribers (each
//! policy), bad input, a subscriber that panics, one restarted by its supervisor.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_cluster::node::{Node, NodeConfig};
use foundation_pubsub::{
    BroadcastError, BufferConfig, Overflow, PubSub, StartError, SubscribeError, Topic, TopicError,
};
use tokio::sync::{Semaphore, mpsc};

/// A bound for a hung test, not a timing check.
const PATIENCE: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

#[derive(Debug, Clone, PartialEq, Eq, RemoteMessage)]
struct Order {
    id: u64,
    note: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        note: String::new(),
    }
}

/// What the test actors take.
enum Msg {
    Order(Order),
}

impl From<Order> for Msg {
    fn from(o: Order) -> Self {
        Msg::Order(o)
    }
}

/// Reports each order it handles, with the `who` baggage of the context it runs under;
/// panics on an order noted `panic` if fragile; waits for a permit first if it has a gate.
#[derive(Clone)]
struct Reporter {
    tx: mpsc::UnboundedSender<(u64, Option<String>)>,
    gate: Option<std::sync::Arc<Semaphore>>,
    fragile: bool,
}

impl Actor for Reporter {
    type Msg = Msg;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<Msg>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<Msg>, msg: Msg, (): &mut ()) -> Result<(), ActorError> {
        let Msg::Order(o) = msg;
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate closed").forget();
        }
        if self.fragile && o.note == "panic" {
            panic!("a subscriber that panics in its handler");
        }
        let who = Context::current().and_then(|c| c.baggage("who").map(str::to_owned));
        let _ = self.tx.send((o.id, who));
        Ok(())
    }
}

fn reporter() -> (Reporter, mpsc::UnboundedReceiver<(u64, Option<String>)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Reporter {
            tx,
            gate: None,
            fragile: false,
        },
        rx,
    )
}

async fn ids(rx: &mut mpsc::UnboundedReceiver<(u64, Option<String>)>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(
            within("an actor's delivery", rx.recv())
                .await
                .expect("reporter gone")
                .0,
        );
    }
    got
}

#[tokio::test]
async fn actors_and_streams_get_every_broadcast_in_order_with_the_publishers_context() {
    let ps = PubSub::local("t1");
    let topic: Topic<Order> = Topic::new("orders.created").unwrap();
    let (rep, mut rx) = reporter();
    let actor = spawn(rep, ()).await.unwrap();
    ps.subscribe(&topic, &actor).unwrap();
    let mut stream = ps.subscribe_stream(&topic).unwrap();
    assert_eq!(ps.subscribers_count(&topic), 2);

    let ctx = Context::new().with_baggage("who", "publisher-1");
    let trace = ctx.trace_id();
    ctx.scope(async {
        for i in 1..=100 {
            ps.broadcast(&topic, order(i)).unwrap();
        }
    })
    .await;

    let mut seen = Vec::new();
    for _ in 0..100 {
        let (id, who) = within("actor", rx.recv()).await.unwrap();
        assert_eq!(who.as_deref(), Some("publisher-1"));
        seen.push(id);
    }
    assert_eq!(seen, (1..=100).collect::<Vec<_>>());
    for i in 1..=100 {
        let got = within("stream", stream.recv()).await.unwrap();
        assert_eq!(got.id, i);
        assert_eq!(got.context().map(|c| c.trace_id()), Some(trace));
    }
    assert!(stream.is_empty());
    assert_eq!(ps.stats().delivered, 200);
    assert_eq!(ps.stats().dropped, 0);
}

#[tokio::test]
async fn patterns_match_one_segment_or_any_depth() {
    let ps = PubSub::local("t2");
    let t = |name: &str| Topic::<Order>::new(name).unwrap();
    let mut exact = ps.subscribe_stream(&t("orders.created")).unwrap();
    let mut star = ps.subscribe_stream(&t("orders.*")).unwrap();
    let mut hash = ps.subscribe_stream(&t("orders.#")).unwrap();
    let mut other = ps.subscribe_stream(&t("users.*")).unwrap();

    ps.broadcast(&t("orders.created"), order(1)).unwrap();
    ps.broadcast(&t("orders.eu.created"), order(2)).unwrap();
    ps.broadcast(&t("orders"), order(3)).unwrap();
    ps.broadcast(&t("users.new"), order(4)).unwrap();

    let drain = |s: &mut foundation_pubsub::Subscription<Order>| {
        let mut v = Vec::new();
        while let Some(r) = futures::FutureExt::now_or_never(s.recv()).flatten() {
            v.push(r.id);
        }
        v
    };
    assert_eq!(drain(&mut exact), [1]);
    assert_eq!(drain(&mut star), [1]);
    assert_eq!(drain(&mut hash), [1, 2, 3]);
    assert_eq!(drain(&mut other), [4]);
    assert_eq!(ps.subscribers_count(&t("orders.created")), 3);
    assert_eq!(ps.subscribers_count(&t("orders.eu.created")), 1);
    assert_eq!(ps.subscribers_count(&t("orders.*")), 1);
    drop(star);
    assert_eq!(ps.subscribers_count(&t("orders.created")), 2);
}

#[tokio::test]
async fn broadcast_from_skips_the_sender_and_unsubscribe_stops_delivery() {
    let ps = PubSub::local("t3");
    let topic: Topic<Order> = Topic::new("room.1").unwrap();
    let (rep_a, mut rx_a) = reporter();
    let (rep_b, mut rx_b) = reporter();
    let a = spawn(rep_a, ()).await.unwrap();
    let b = spawn(rep_b, ()).await.unwrap();
    ps.subscribe(&topic, &a).unwrap();
    ps.subscribe(&topic, &b).unwrap();

    ps.broadcast_from(&a, &topic, order(1)).unwrap();
    ps.broadcast(&topic, order(2)).unwrap();
    assert_eq!(ids(&mut rx_a, 1).await, [2]);
    assert_eq!(ids(&mut rx_b, 2).await, [1, 2]);

    assert_eq!(ps.unsubscribe(&topic, &b), 1);
    assert_eq!(ps.unsubscribe(&topic, &b), 0);
    ps.broadcast(&topic, order(3)).unwrap();
    assert_eq!(ids(&mut rx_a, 1).await, [3]);
    assert_eq!(ps.subscribers_count(&topic), 1);
    // b got nothing after it left: a's later message came, b's channel is empty.
    assert!(rx_b.try_recv().is_err());
}

#[tokio::test]
async fn a_subscriber_that_stops_for_good_is_removed() {
    let ps = PubSub::local("t4");
    let topic: Topic<Order> = Topic::new("jobs").unwrap();
    let (rep, _rx) = reporter();
    let actor = spawn(rep, ()).await.unwrap();
    ps.subscribe(&topic, &actor).unwrap();
    assert_eq!(ps.subscribers_count(&topic), 1);
    // Stop callbacks run in the order added: the pubsub's, then this one.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _hook = actor.on_stop(move || {
        let _ = tx.send(());
    });
    actor.stop(None);
    within("stop", rx).await.unwrap();
    assert_eq!(ps.subscribers_count(&topic), 0);
    assert!(matches!(
        ps.subscribe(&topic, &actor),
        Err(SubscribeError::Stopped { .. })
    ));
}

#[tokio::test]
async fn a_restarted_subscriber_keeps_its_subscription_and_a_panic_stops_no_broadcast() {
    let ps = PubSub::local("t5");
    let topic: Topic<Order> = Topic::new("work").unwrap();
    let (mut rep, mut rx) = reporter();
    rep.fragile = true;
    let (other, mut rx_other) = reporter();
    let spec = ChildSpec::new("panicky", rep, ());
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("t5-sup", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    let bystander = spawn(other, ()).await.unwrap();
    ps.subscribe(&topic, &addr).unwrap();
    ps.subscribe(&topic, &bystander).unwrap();

    ps.broadcast(&topic, order(1)).unwrap();
    ps.broadcast(
        &topic,
        Order {
            id: 2,
            note: "panic".into(),
        },
    )
    .unwrap();
    ps.broadcast(&topic, order(3)).unwrap();

    assert_eq!(ids(&mut rx_other, 3).await, [1, 2, 3]);
    // 1 before the panic; 3 reaches the restarted incarnation through the same address.
    assert_eq!(ids(&mut rx, 2).await, [1, 3]);
    assert!(addr.incarnation() >= 2);
    assert_eq!(ps.subscribers_count(&topic), 2);
    ps.broadcast(&topic, order(4)).unwrap();
    assert_eq!(ids(&mut rx, 1).await, [4]);
    sup.shutdown().await;
}

#[tokio::test]
async fn stream_overflow_policies_drop_what_they_say_and_count_it() {
    let ps = PubSub::local("t6");
    let topic: Topic<Order> = Topic::new("ticks").unwrap();
    let mut newest = ps
        .subscribe_stream_with(&topic, BufferConfig::new(2, Overflow::DropNewest))
        .unwrap();
    let mut oldest = ps
        .subscribe_stream_with(&topic, BufferConfig::new(2, Overflow::DropOldest))
        .unwrap();
    let mut disc = ps
        .subscribe_stream_with(&topic, BufferConfig::new(2, Overflow::Disconnect))
        .unwrap();
    for i in 1..=5 {
        ps.broadcast(&topic, order(i)).unwrap();
    }
    let read = |s: &mut foundation_pubsub::Subscription<Order>| {
        let mut v = Vec::new();
        while let Some(r) = futures::FutureExt::now_or_never(s.recv()).flatten() {
            v.push(r.id);
        }
        v
    };
    assert_eq!(read(&mut newest), [1, 2]);
    assert_eq!(newest.dropped(), 3);
    assert_eq!(read(&mut oldest), [4, 5]);
    assert_eq!(oldest.dropped(), 3);
    // Disconnected at the third: what it had queued, then the end.
    assert!(disc.is_ended());
    assert_eq!(read(&mut disc), [1, 2]);
    assert!(within("end", disc.recv()).await.is_none());
    assert_eq!(disc.dropped(), 1);

    let stats = ps.stats();
    assert_eq!(stats.dropped, 7);
    assert_eq!(stats.disconnected, 1);
    assert_eq!(ps.subscribers_count(&topic), 2);
    // The two live subscriptions' drops, then the disconnected one's, kept after its end.
    let mut drops: Vec<(u64, bool)> = ps.drops().iter().map(|d| (d.dropped, d.ended)).collect();
    drops.sort_unstable();
    assert_eq!(drops, [(1, true), (3, false), (3, false)]);

    // A buffer with room again takes the next one.
    ps.broadcast(&topic, order(6)).unwrap();
    assert_eq!(read(&mut newest), [6]);
}

#[tokio::test]
async fn an_actor_is_bounded_by_the_messages_it_has_not_handled() {
    let ps = PubSub::local("t7");
    let topic: Topic<Order> = Topic::new("slow").unwrap();
    let gate = std::sync::Arc::new(Semaphore::new(0));
    let (mut rep, mut rx) = reporter();
    rep.gate = Some(gate.clone());
    let slow = spawn(rep, ()).await.unwrap();
    ps.subscribe_with(&topic, &slow, BufferConfig::new(2, Overflow::DropNewest))
        .unwrap();
    for i in 1..=5 {
        ps.broadcast(&topic, order(i)).unwrap();
    }
    // Two were waiting for it: 3, 4 and 5 were dropped.
    let drops = ps.drops();
    assert_eq!(drops.len(), 1);
    assert_eq!(drops[0].dropped, 3);
    assert_eq!(drops[0].process, Some(slow.key()));
    gate.add_permits(2);
    assert_eq!(ids(&mut rx, 2).await, [1, 2]);
    // Taken: room again. (A direct cast handled after 1 and 2 shows its queue is empty.)
    slow.cast(Msg::Order(order(0))).unwrap();
    gate.add_permits(1);
    assert_eq!(ids(&mut rx, 1).await, [0]);
    ps.broadcast(&topic, order(6)).unwrap();
    gate.add_permits(1);
    assert_eq!(ids(&mut rx, 1).await, [6]);
    assert_eq!(ps.drops()[0].dropped, 3);

    // DropOldest: the latest two wait, the others are dropped and counted.
    let gate3 = std::sync::Arc::new(Semaphore::new(0));
    let (mut rep3, mut rx3) = reporter();
    rep3.gate = Some(gate3.clone());
    let latest = spawn(rep3, ()).await.unwrap();
    let t3: Topic<Order> = Topic::new("slow.oldest").unwrap();
    ps.subscribe_with(&t3, &latest, BufferConfig::new(2, Overflow::DropOldest))
        .unwrap();
    for i in 1..=5 {
        ps.broadcast(&t3, order(i)).unwrap();
    }
    gate3.add_permits(2);
    assert_eq!(ids(&mut rx3, 2).await, [4, 5]);
    let lost: u64 = ps
        .drops()
        .iter()
        .filter(|d| d.process == Some(latest.key()))
        .map(|d| d.dropped)
        .sum();
    assert_eq!(lost, 3);

    // Disconnect: unsubscribed at the first overflow.
    let gate2 = std::sync::Arc::new(Semaphore::new(0));
    let (mut rep2, _rx2) = reporter();
    rep2.gate = Some(gate2.clone());
    let stuck = spawn(rep2, ()).await.unwrap();
    let t2: Topic<Order> = Topic::new("slow.disc").unwrap();
    ps.subscribe_with(&t2, &stuck, BufferConfig::new(1, Overflow::Disconnect))
        .unwrap();
    ps.broadcast(&t2, order(1)).unwrap();
    ps.broadcast(&t2, order(2)).unwrap();
    assert_eq!(ps.subscribers_count(&t2), 0);
    assert_eq!(ps.stats().disconnected, 1);
    // Its loss stays readable after the disconnect ended its subscription.
    let gone: Vec<_> = ps
        .drops()
        .into_iter()
        .filter(|d| d.process == Some(stuck.key()))
        .map(|d| (d.topic, d.dropped, d.ended))
        .collect();
    assert_eq!(gone, [("slow.disc".to_owned(), 1, true)]);
    gate2.add_permits(10);
}

#[tokio::test]
async fn bad_topics_and_wrong_types_get_typed_errors_and_counts() {
    assert_eq!(Topic::<u64>::new("").unwrap_err(), TopicError::Empty);
    assert!(matches!(
        Topic::<u64>::new(&"x".repeat(foundation_pubsub::MAX_TOPIC_LEN + 1)),
        Err(TopicError::TooLong { .. })
    ));
    assert!(matches!(
        Topic::<u64>::new("a..b"),
        Err(TopicError::EmptySegment { index: 1, .. })
    ));
    assert!(matches!(
        Topic::<u64>::new("a.#.b"),
        Err(TopicError::HashNotLast { .. })
    ));

    let ps = PubSub::local("t8");
    let pattern: Topic<u64> = Topic::new("a.*").unwrap();
    assert!(matches!(
        ps.broadcast(&pattern, 1),
        Err(BroadcastError::Topic(TopicError::Wildcard { .. }))
    ));

    // One name declared with two types: the mismatch is refused and counted; the stream
    // goes on.
    let as_u64: Topic<u64> = Topic::new("metrics").unwrap();
    let as_string: Topic<String> = Topic::new("metrics").unwrap();
    let mut sub = ps.subscribe_stream(&as_u64).unwrap();
    ps.broadcast(&as_string, "not a number".to_owned()).unwrap();
    ps.broadcast(&as_u64, 7).unwrap();
    assert_eq!(*within("good one", sub.recv()).await.unwrap(), 7);
    assert!(sub.is_empty());
    assert_eq!(ps.stats().wrong_type, 1);

    ps.shutdown();
    assert!(matches!(
        ps.broadcast(&as_u64, 1),
        Err(BroadcastError::Closed)
    ));
    assert!(matches!(
        ps.subscribe_stream(&as_u64),
        Err(SubscribeError::Closed)
    ));
    assert!(within("end", sub.recv()).await.is_none());
}

/// One node per test process may hold a name: this test alone starts one.
#[tokio::test]
async fn on_a_node_several_pubsubs_run_by_name() {
    let config = NodeConfig::new("pubsub-local", "cookie")
        .listen("127.0.0.1:0".parse().unwrap())
        .channel(foundation_pubsub::CHANNEL, Default::default());
    let node = Node::start(config).await.unwrap();
    let one = PubSub::start(&node, "one").await.unwrap();
    let two = PubSub::start(&node, "two").await.unwrap();
    assert!(matches!(
        PubSub::start(&node, "one").await,
        Err(StartError::NameTaken(n)) if n == "one"
    ));
    let topic: Topic<u64> = Topic::new("x").unwrap();
    let mut s1 = one.subscribe_stream(&topic).unwrap();
    let mut s2 = two.subscribe_stream(&topic).unwrap();
    one.broadcast(&topic, 1).unwrap();
    two.broadcast(&topic, 2).unwrap();
    assert_eq!(*within("one", s1.recv()).await.unwrap(), 1);
    assert_eq!(*within("two", s2.recv()).await.unwrap(), 2);
    assert!(s1.is_empty() && s2.is_empty());
    assert!(matches!(
        one.direct_broadcast("nobody", &topic, 3),
        Err(BroadcastError::UnknownNode(_))
    ));
    one.direct_broadcast("pubsub-local", &topic, 4).unwrap();
    assert_eq!(*within("direct", s1.recv()).await.unwrap(), 4);
    node.shutdown().await;
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<PubSub>();
    send_sync_clone::<Topic<Order>>();
    send::<foundation_pubsub::Subscription<Order>>();
    send::<foundation_pubsub::Received<Order>>();
    send::<BroadcastError>();
    send::<SubscribeError>();
}

/// Each metric's name and sorted labels, with its value (a snapshot takes the counts).
fn metric_values(
    snapshotter: &metrics_util::debugging::Snapshotter,
) -> std::collections::HashMap<(String, Vec<(String, String)>), metrics_util::debugging::DebugValue>
{
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

#[test]
fn counters_are_in_the_metrics_facade_with_drops_per_topic() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let ps = PubSub::local("metered");
        let fast: Topic<u64> = Topic::new("ticks.fast").unwrap();
        let slow: Topic<u64> = Topic::new("ticks.slow").unwrap();
        let full = ps
            .subscribe_stream_with(&fast, BufferConfig::new(1, Overflow::DropNewest))
            .unwrap();
        let _roomy = ps.subscribe_stream(&slow).unwrap();
        for i in 0..3 {
            ps.broadcast(&fast, i).unwrap();
        }
        ps.broadcast(&slow, 9).unwrap();
        assert_eq!(full.dropped(), 2);

        let values = metric_values(&snapshotter);
        let at = |name: &str, topic: Option<&str>| {
            let mut labels = vec![("pubsub".to_owned(), "metered".to_owned())];
            if let Some(t) = topic {
                labels.push(("topic".to_owned(), t.to_owned()));
            }
            values.get(&(name.to_owned(), labels))
        };
        // Each drop counted under its topic; a topic that never dropped has no series.
        assert_eq!(
            at("foundation_pubsub_dropped_total", Some("ticks.fast")),
            Some(&DebugValue::Counter(2)),
            "{values:?}"
        );
        assert_eq!(
            at("foundation_pubsub_dropped_total", Some("ticks.slow")),
            None
        );
        assert_eq!(
            at("foundation_pubsub_delivered_total", None),
            Some(&DebugValue::Counter(2))
        );
        assert_eq!(
            at("foundation_pubsub_wrong_type_total", None),
            Some(&DebugValue::Counter(0))
        );
        assert_eq!(
            at("foundation_pubsub_subscriptions", None),
            Some(&DebugValue::Gauge(2.0.into()))
        );
        assert_eq!(
            at("foundation_pubsub_topics", None),
            Some(&DebugValue::Gauge(2.0.into()))
        );
        // Stats reads the same counts.
        let stats = ps.stats();
        assert_eq!((stats.delivered, stats.dropped), (2, 2));
    });
}
