//! Unit tests of the fan-out of broadcasts from peers.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::sync::Arc;
use std::time::Duration;

use foundation_actors::{
    Actor, ActorError, Addr, ChildSpec, Context, Strategy, Supervisor, SupervisorSpec, spawn,
};
use tokio::sync::{Semaphore, mpsc};

use crate::pubsub::Incoming;
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
    // DropOldest keeps the last two, DropNewest the first two: each broadcast is
    // counted once, where it stops, delivered or dropped.
    let stats = ps.stats();
    assert_eq!(
        (stats.delivered, stats.dropped),
        (2 + 2, 3 + 3),
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

/// A flood into a small buffer, one local broadcast at a time: whatever the policy,
/// each broadcast is counted once, delivered (kept, and read) or dropped, never both.
#[tokio::test]
async fn a_flood_into_a_small_buffer_counts_each_broadcast_once_delivered_or_dropped() {
    for overflow in [Overflow::DropOldest, Overflow::DropNewest] {
        let ps = PubSub::local("flood-count");
        let topic: Topic<u64> = Topic::new("flood.count").unwrap();
        let mut sub = ps
            .subscribe_stream_with(&topic, BufferConfig::new(8, overflow))
            .unwrap();
        for n in 0..20_000u64 {
            ps.broadcast(&topic, n).unwrap();
        }
        let stats = ps.stats();
        assert_eq!(
            (stats.delivered, stats.dropped, sub.dropped()),
            (8, 19_992, 19_992),
            "{overflow:?}: {stats:?}"
        );
        let mut read = Vec::new();
        while let Some(m) = sub.try_recv() {
            read.push(*m);
        }
        let kept: Vec<u64> = match overflow {
            Overflow::DropOldest => (19_992..20_000).collect(),
            _ => (0..8).collect(),
        };
        assert_eq!(read, kept, "{overflow:?}");
        assert_eq!(read.len() as u64, stats.delivered);
    }
}

/// Local broadcasts in a row reach an actor as they were published, each under its own
/// publisher's context (or none), though they ride one doorbell.
#[tokio::test]
async fn broadcasts_in_a_row_reach_an_actor_each_under_its_own_context() {
    let ps = PubSub::local("row");
    let topic: Topic<u64> = Topic::new("row.n").unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = spawn(Reporter(tx), ()).await.unwrap();
    ps.subscribe(&topic, &addr).unwrap();
    // A current-thread runtime: the actor runs only once this task waits, so the three
    // are queued before it takes the first.
    for (n, who) in [(1, Some("ada")), (2, None), (3, Some("bob"))] {
        match who {
            Some(who) => Context::new()
                .with_baggage("who", who)
                .sync_scope(|| ps.broadcast(&topic, n))
                .unwrap(),
            None => ps.broadcast(&topic, n).unwrap(),
        }
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(rx.recv().await.unwrap());
    }
    assert_eq!(
        got,
        [
            (1, Some("ada".to_owned())),
            (2, None),
            (3, Some("bob".to_owned()))
        ]
    );
}

/// Reports each number it handles; waits for a permit of its gate first; fails on 0. With
/// `restart_gate`, an incarnation after the first waits for a permit of it in `init`.
#[derive(Clone)]
struct Gated {
    tx: mpsc::UnboundedSender<u64>,
    gate: Arc<Semaphore>,
    restart_gate: Option<Arc<Semaphore>>,
    started: Arc<std::sync::atomic::AtomicBool>,
}

impl Actor for Gated {
    type Msg = u64;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<u64>, (): ()) -> Result<(), ActorError> {
        let again = self.started.swap(true, std::sync::atomic::Ordering::SeqCst);
        if let (true, Some(gate)) = (again, &self.restart_gate) {
            gate.acquire().await.map_err(|e| e.to_string())?.forget();
        }
        Ok(())
    }

    async fn handle(&self, _: &Addr<u64>, n: u64, (): &mut ()) -> Result<(), ActorError> {
        self.gate
            .acquire()
            .await
            .map_err(|e| e.to_string())?
            .forget();
        if n == 0 {
            return Err("zero".into());
        }
        let _ = self.tx.send(n);
        Ok(())
    }
}

fn gated() -> (Gated, Arc<Semaphore>, mpsc::UnboundedReceiver<u64>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    (
        Gated {
            tx,
            gate: gate.clone(),
            restart_gate: None,
            started: Arc::default(),
        },
        gate,
        rx,
    )
}

async fn next_n(rx: &mut mpsc::UnboundedReceiver<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..n {
        let r = tokio::time::timeout(Duration::from_secs(30), rx.recv());
        got.push(r.await.unwrap().unwrap());
    }
    got
}

fn run_of(topic: &str, ns: impl IntoIterator<Item = u64>) -> Vec<Incoming> {
    ns.into_iter().map(|n| incoming(topic, n, None)).collect()
}

/// A run from a peer is one mailbox message for an actor subscriber: held as one while it
/// restarts, then handled message by message, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_from_peers_is_one_mailbox_message_for_an_actor_handled_in_order() {
    let ps = PubSub::local("run-one");
    let topic: Topic<u64> = Topic::new("run.one").unwrap();
    let (mut actor, gate, mut rx) = gated();
    let restart_gate = Arc::new(Semaphore::new(0));
    actor.restart_gate = Some(restart_gate.clone());
    let spec = ChildSpec::new("gated", actor, ());
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("run-one", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    ps.subscribe(&topic, &addr).unwrap();
    gate.add_permits(1);
    ps.core().receive_batch(&run_of("run.one", [0]));
    // Crashed on 0: its next incarnation waits in `init`, its messages held meanwhile.
    tokio::time::timeout(Duration::from_secs(30), async {
        while addr.is_running() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    ps.core().receive_batch(&run_of("run.one", 1..=5));
    assert_eq!(addr.held_messages(), 1, "the run of five is one message");
    restart_gate.add_permits(1);
    gate.add_permits(5);
    assert_eq!(next_n(&mut rx, 5).await, [1, 2, 3, 4, 5]);
    assert_eq!(ps.stats().delivered, 6);
    sup.shutdown().await;
}

/// Local broadcasts to an actor that is restarting wait behind one doorbell, held for
/// its next incarnation; `DropOldest` keeps the latest of them, counting the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_to_a_restarting_actor_wait_behind_one_doorbell_and_drop_the_oldest() {
    let ps = PubSub::local("restarting");
    let topic: Topic<u64> = Topic::new("restarting.n").unwrap();
    let (mut actor, gate, mut rx) = gated();
    let restart_gate = Arc::new(Semaphore::new(0));
    actor.restart_gate = Some(restart_gate.clone());
    let spec = ChildSpec::new("gated", actor, ());
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("restarting", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    ps.subscribe_with(&topic, &addr, BufferConfig::new(4, Overflow::DropOldest))
        .unwrap();
    gate.add_permits(1);
    // Crashes on 0: its next incarnation waits in `init`.
    ps.broadcast(&topic, 0).unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while addr.is_running() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    for n in 1..=6 {
        ps.broadcast(&topic, n).unwrap();
    }
    assert_eq!(addr.held_messages(), 1, "six broadcasts, one doorbell");
    assert_eq!(ps.drops()[0].dropped, 2, "1 and 2 made room for 5 and 6");
    restart_gate.add_permits(1);
    gate.add_permits(4);
    assert_eq!(next_n(&mut rx, 4).await, [3, 4, 5, 6]);
    let stats = ps.stats();
    // Seven broadcasts, each counted once: 0 and 3..=6 delivered, 1 and 2 dropped.
    assert_eq!((stats.delivered, stats.dropped), (5, 2), "{stats:?}");
    sup.shutdown().await;
}

/// A subscriber that crashes in the middle of a run: only that message is lost; the rest
/// of the run reaches its next incarnation first, in order (its doorbell is salvaged with
/// the mailbox), and its buffer has room for a whole buffer's worth again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_run_loses_only_that_message() {
    let ps = PubSub::local("run-crash");
    let topic: Topic<u64> = Topic::new("run.crash").unwrap();
    let (actor, gate, mut rx) = gated();
    let spec = ChildSpec::new("crashy", actor, ());
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("run-crash", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    ps.subscribe_with(&topic, &addr, BufferConfig::new(8, Overflow::DropNewest))
        .unwrap();
    gate.add_permits(1_000);
    ps.core()
        .receive_batch(&run_of("run.crash", [1, 2, 0, 3, 4, 5]));
    assert_eq!(next_n(&mut rx, 5).await, [1, 2, 3, 4, 5]);
    assert_eq!(addr.incarnation(), 2);
    assert_eq!(
        ps.local_subscribers_count(&topic),
        1,
        "kept across the restart"
    );
    // All taken (or lost with the crash; a direct cast handled after them shows the queue
    // is empty): a whole buffer's worth is taken again.
    addr.cast(100).unwrap();
    assert_eq!(next_n(&mut rx, 1).await, [100]);
    ps.core().receive_batch(&run_of("run.crash", 11..=18));
    assert_eq!(next_n(&mut rx, 8).await, (11..=18).collect::<Vec<_>>());
    let stats = ps.stats();
    assert_eq!((stats.delivered, stats.dropped), (14, 0), "{stats:?}");
    sup.shutdown().await;
}

/// An actor's bound and policy apply to each message of a run: past the bound,
/// `DropNewest` drops each one (counted), `Disconnect` drops one and unsubscribes; the
/// messages before are delivered in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actors_overflow_policy_counts_each_message_of_a_run() {
    let ps = PubSub::local("run-full");
    let newest: Topic<u64> = Topic::new("run.newest").unwrap();
    let disc: Topic<u64> = Topic::new("run.disc").unwrap();
    let (actor, gate, mut rx) = gated();
    let slow = spawn(actor, ()).await.unwrap();
    ps.subscribe_with(&newest, &slow, BufferConfig::new(4, Overflow::DropNewest))
        .unwrap();
    ps.core().receive_batch(&run_of("run.newest", 1..=10));
    let stats = ps.stats();
    assert_eq!((stats.delivered, stats.dropped), (4, 6), "{stats:?}");
    assert_eq!(ps.drops()[0].dropped, 6);
    gate.add_permits(4);
    assert_eq!(next_n(&mut rx, 4).await, [1, 2, 3, 4]);
    // Taken: room for a whole buffer again (a direct cast handled after them shows the
    // queue is empty).
    slow.cast(100).unwrap();
    gate.add_permits(1);
    assert_eq!(next_n(&mut rx, 1).await, [100]);
    ps.core().receive_batch(&run_of("run.newest", 11..=16));
    assert_eq!(ps.drops()[0].dropped, 6 + 2);
    gate.add_permits(4);
    assert_eq!(next_n(&mut rx, 4).await, [11, 12, 13, 14]);

    let (actor, gate2, mut rx2) = gated();
    let stuck = spawn(actor, ()).await.unwrap();
    ps.subscribe_with(&disc, &stuck, BufferConfig::new(3, Overflow::Disconnect))
        .unwrap();
    let before = ps.stats();
    ps.core().receive_batch(&run_of("run.disc", 1..=10));
    let after = ps.stats();
    assert_eq!(
        (
            after.delivered - before.delivered,
            after.dropped - before.dropped,
            after.disconnected
        ),
        (3, 1, 1),
        "{after:?}"
    );
    assert_eq!(ps.local_subscribers_count(&disc), 0);
    gate2.add_permits(3);
    assert_eq!(next_n(&mut rx2, 3).await, [1, 2, 3]);
}

/// A stream subscriber reading a full queue spends tokio's cooperative budget as it goes:
/// it gives its thread up every so often instead of draining the whole queue in one poll,
/// so a task woken meanwhile on the same thread (a call's reply, an actor) runs before the
/// queue is empty. One thread, so the order is the scheduler's and not a race.
#[tokio::test(flavor = "current_thread")]
async fn a_subscriber_draining_a_full_queue_lets_the_other_tasks_of_its_thread_run() {
    const QUEUED: u64 = 1_000;
    let ps = PubSub::local("coop");
    let topic: Topic<u64> = Topic::new("coop.drain").unwrap();
    let mut sub = ps
        .subscribe_stream_with(&topic, BufferConfig::new(2_000, Overflow::DropNewest))
        .unwrap();
    for n in 0..QUEUED {
        ps.local_broadcast(&topic, n).unwrap();
    }
    assert_eq!(sub.len(), 1_000);
    let other_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let other_ran = other_ran.clone();
        tokio::spawn(async move {
            // How many messages were read when the other task was first seen to have run.
            let mut read_before_other = None;
            for n in 0..QUEUED {
                assert_eq!(sub.recv().await.map(|m| *m), Some(n));
                if read_before_other.is_none()
                    && other_ran.load(std::sync::atomic::Ordering::Relaxed)
                {
                    read_before_other = Some(n);
                }
            }
            read_before_other
        })
    };
    tokio::spawn(async move { other_ran.store(true, std::sync::atomic::Ordering::Relaxed) });
    let read_before_other = reader.await.unwrap();
    // Tokio's budget is 128 units a poll; the reader yields once it is spent.
    assert!(
        read_before_other.is_some_and(|n| n <= 200),
        "the other task ran after {read_before_other:?} of {QUEUED} messages"
    );
}

/// Ended subscriptions' drops stay readable, the most recent `ENDED_DROPS_KEPT` of them:
/// subscriptions that come and go never grow what is kept.
#[tokio::test]
async fn the_drops_of_ended_subscriptions_are_kept_with_a_bound() {
    let ps = PubSub::local("ended-drops");
    let topic: Topic<u64> = Topic::new("ended.drops").unwrap();
    let n = crate::ENDED_DROPS_KEPT + 44;
    for i in 0..n as u64 {
        let sub = ps
            .subscribe_stream_with(&topic, BufferConfig::new(1, Overflow::DropNewest))
            .unwrap();
        ps.broadcast(&topic, i).unwrap();
        ps.broadcast(&topic, i).unwrap();
        assert_eq!(sub.dropped(), 1);
        drop(sub);
    }
    // One that never lost anything is not listed when it ends.
    drop(ps.subscribe_stream(&topic).unwrap());
    let drops = ps.drops();
    assert_eq!(drops.len(), crate::ENDED_DROPS_KEPT);
    assert!(
        drops
            .iter()
            .all(|d| d.ended && d.dropped == 1 && d.topic == "ended.drops")
    );
    assert_eq!(ps.stats().dropped, n as u64);
}

/// Any character but the separator and the wildcards may be in a segment, compared byte
/// for byte; an actor subscribed twice gets each broadcast twice, counts twice, and one
/// `unsubscribe` ends both (as in Phoenix.PubSub).
#[tokio::test]
async fn names_are_any_utf8_and_a_subscriber_twice_counts_twice_until_one_unsubscribe() {
    let ps = PubSub::local("names");
    let spaced: Topic<u64> = Topic::new("room 42").unwrap();
    let accented: Topic<u64> = Topic::new("commandes.r\u{e9}gl\u{e9}es").unwrap();
    let decomposed: Topic<u64> = Topic::new("commandes.re\u{301}gle\u{301}es").unwrap();
    let mut a = ps.subscribe_stream(&spaced).unwrap();
    let mut b = ps.subscribe_stream(&accented).unwrap();
    ps.broadcast(&spaced, 1).unwrap();
    ps.broadcast(&decomposed, 2).unwrap();
    ps.broadcast(&accented, 3).unwrap();
    assert_eq!(a.try_recv().map(|m| *m), Some(1));
    assert_eq!(
        b.try_recv().map(|m| *m),
        Some(3),
        "another spelling, another topic"
    );
    assert!(a.is_empty() && b.is_empty());

    let (tx, mut rx) = mpsc::unbounded_channel();
    let actor = spawn(Reporter(tx), ()).await.unwrap();
    ps.subscribe(&spaced, &actor).unwrap();
    ps.subscribe(&spaced, &actor).unwrap();
    assert_eq!(ps.subscribers_count(&spaced), 3);
    ps.broadcast(&spaced, 4).unwrap();
    for _ in 0..2 {
        assert_eq!(rx.recv().await.map(|(n, _)| n), Some(4));
    }
    assert_eq!(ps.unsubscribe(&spaced, &actor), 2);
    assert_eq!(ps.subscribers_count(&spaced), 1);
    actor.stop(None);
}

/// A wait's bound may be anything, `Duration::MAX` included: past what an `Instant` holds,
/// it waits as long as it takes (here, not at all: the subscriber is there).
#[tokio::test]
async fn a_wait_for_subscribers_takes_any_bound() {
    let ps = PubSub::local("wait-bound");
    let topic: Topic<u64> = Topic::new("wait.bound").unwrap();
    let _sub = ps.subscribe_stream(&topic).unwrap();
    assert_eq!(
        ps.wait_for_subscribers(&topic, 1, Duration::MAX).await,
        Ok(1)
    );
    assert_eq!(
        ps.wait_for_subscribers(&topic, 2, Duration::ZERO).await,
        Err(crate::WaitError::Timeout {
            topic: "wait.bound".to_owned(),
            wanted: 2,
            seen: 1
        })
    );
}
