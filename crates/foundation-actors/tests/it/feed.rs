//! Feeds (`Addr::cast_feed`): one doorbell for what gathers, the handler once per message
//! in order under each one's context, the budget, a crash in the middle, a kill, a refusal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{Context, FEED_BUDGET, Feed};

use crate::support::{Log, Msg, Probe};

/// The messages queued, each with its context, and the `rung` flag.
type Queued = (VecDeque<(Option<Context>, Msg)>, bool);

/// A feed as the trait's docs describe it, counting its rings and `unrung` calls.
#[derive(Default)]
struct Queue {
    state: Mutex<Queued>,
    rings: AtomicUsize,
    unrung: AtomicUsize,
}

impl Feed<Msg> for Queue {
    fn next(&self) -> Option<(Option<Context>, Msg)> {
        let mut st = self.state.lock().unwrap();
        let next = st.0.pop_front();
        if next.is_none() {
            st.1 = false;
        }
        next
    }

    fn unrung(&self) {
        self.unrung.fetch_add(1, Ordering::SeqCst);
        self.state.lock().unwrap().1 = false;
    }
}

impl Queue {
    /// Queues `msg`, ringing `to` if the feed is not rung.
    fn queue(self: &Arc<Self>, to: &Addr<Msg>, ctx: Option<Context>, msg: Msg) {
        let ring = {
            let mut st = self.state.lock().unwrap();
            st.0.push_back((ctx, msg));
            !std::mem::replace(&mut st.1, true)
        };
        if ring {
            self.rings.fetch_add(1, Ordering::SeqCst);
            if to.cast_feed(self.clone()).is_err() {
                self.state.lock().unwrap().1 = false;
            }
        }
    }

    fn rings(&self) -> usize {
        self.rings.load(Ordering::SeqCst)
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits (generously) until `log` has `n` lines starting with `got:`; returns them.
async fn got(log: &Log, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    within("the log", async {
        loop {
            seen.extend(log.take().into_iter().filter(|l| l.starts_with("got:")));
            if seen.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    seen
}

fn notes(id: &str, ns: impl IntoIterator<Item = u64>) -> Vec<String> {
    ns.into_iter().map(|n| format!("got:{id}:{n}")).collect()
}

/// Messages queued while the process is busy ride one doorbell, and are handled in order,
/// each under the context it was queued with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_gathers_rides_one_doorbell_in_order_each_under_its_own_context() {
    let log = Log::default();
    let addr = spawn(Probe::new("f", &log), ()).await.unwrap();
    let feed = Arc::new(Queue::default());
    addr.cast(Msg::Sleep(Duration::from_millis(50))).unwrap();
    let ctx = Context::new();
    let (tx, traced) = tokio::sync::oneshot::channel();
    feed.queue(&addr, None, Msg::Note(1));
    feed.queue(&addr, Some(ctx.clone()), Msg::Trace(tx.into()));
    feed.queue(&addr, None, Msg::Note(2));
    assert_eq!(feed.rings(), 1, "one doorbell for the three");
    assert_eq!(got(&log, 2).await, notes("f", [1, 2]));
    let seen = within("the trace", traced).await.unwrap();
    assert_eq!(seen.map(|(trace, _)| trace), Some(ctx.trace_id()));
    // Emptied: the next message rings again.
    within("the sum", addr.call(Msg::Get)).await.unwrap();
    feed.queue(&addr, None, Msg::Note(3));
    assert_eq!(got(&log, 1).await, notes("f", [3]));
    assert_eq!(feed.rings(), 2);
    assert_eq!(feed.unrung.load(Ordering::SeqCst), 0);
}

/// After `FEED_BUDGET` messages the doorbell goes to the end of the mailbox: a message
/// cast meanwhile is handled before the rest of the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_hands_over_after_its_budget() {
    let log = Log::default();
    let addr = spawn(Probe::new("b", &log), ()).await.unwrap();
    let feed = Arc::new(Queue::default());
    addr.cast(Msg::Sleep(Duration::from_millis(50))).unwrap();
    let n = FEED_BUDGET as u64 + 2;
    for i in 1..=n {
        feed.queue(&addr, None, Msg::Note(i));
    }
    addr.cast(Msg::Note(0)).unwrap();
    let mut want = notes("b", 1..=FEED_BUDGET as u64);
    want.extend(notes("b", [0, n - 1, n]));
    assert_eq!(got(&log, want.len()).await, want);
    assert_eq!(feed.rings(), 1);
}

/// A crash (an error, then a panic) in the middle of a feed loses only that message: its
/// doorbell reaches the next incarnation first, and the rest of the feed with it, ahead of
/// what was cast behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_feed_hands_the_rest_to_the_next_incarnation_first() {
    for crash in [Msg::Crash, Msg::Panic] {
        let log = Log::default();
        let spec = Probe::spec("w", &log);
        let addr = spec.addr();
        let sup = Supervisor::start(
            SupervisorSpec::new("sup", Strategy::OneForOne).intensity(10, Duration::from_secs(10)),
        )
        .await
        .unwrap();
        sup.start_child(spec).await.unwrap();
        let feed = Arc::new(Queue::default());
        addr.cast(Msg::Sleep(Duration::from_millis(50))).unwrap();
        for msg in [
            Msg::Add(100),
            Msg::Note(1),
            crash,
            Msg::Note(2),
            Msg::Add(5),
        ] {
            feed.queue(&addr, None, msg);
        }
        addr.cast(Msg::Note(3)).unwrap();
        addr.cast(Msg::Add(7)).unwrap();
        // The first incarnation's 100 is gone with it; the new one got 5 and 7.
        assert_eq!(within("the sum", addr.call(Msg::Get)).await, Ok(12));
        assert_eq!(got(&log, 3).await, notes("w", [1, 2, 3]));
        assert_eq!(addr.incarnation(), 2);
        assert_eq!((feed.rings(), feed.unrung.load(Ordering::SeqCst)), (1, 0));
        sup.shutdown().await;
    }
}

/// A kill drops the mailbox and the doorbell in it: the feed is told, keeps its messages,
/// and the next message queued rings the next incarnation for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_drops_the_doorbell_and_the_feed_keeps_its_messages() {
    let log = Log::default();
    let spec = Probe::spec("k", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne).intensity(10, Duration::from_secs(10)),
    )
    .await
    .unwrap();
    sup.start_child(spec).await.unwrap();
    let feed = Arc::new(Queue::default());
    let (started_tx, started) = tokio::sync::oneshot::channel();
    addr.cast(Msg::Nap(Duration::from_secs(30), started_tx))
        .unwrap();
    within("the nap", started).await.unwrap();
    feed.queue(&addr, None, Msg::Note(1));
    feed.queue(&addr, None, Msg::Note(2));
    addr.kill();
    within("the doorbell's drop", async {
        while feed.unrung.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    feed.queue(&addr, None, Msg::Note(3));
    assert_eq!(got(&log, 3).await, notes("k", [1, 2, 3]));
    assert_eq!(feed.rings(), 2);
    assert!(addr.incarnation() >= 2);
    sup.shutdown().await;
}

/// A ring to a process that has stopped for good is refused, the feed handed back
/// without being told it is unrung.
#[tokio::test]
async fn a_ring_to_a_stopped_process_hands_the_feed_back() {
    let log = Log::default();
    let addr = spawn(Probe::new("s", &log), ()).await.unwrap();
    let (tx, stopped) = tokio::sync::oneshot::channel();
    let _hook = addr.on_stop(move || {
        let _ = tx.send(());
    });
    addr.stop(None);
    within("the stop", stopped).await.unwrap();
    let feed = Arc::new(Queue::default());
    match addr.cast_feed(feed.clone()) {
        Err(SendError::Stopped(back)) => {
            let back: Arc<dyn Feed<Msg>> = back;
            assert!(back.next().is_none());
        }
        other => panic!("a ring to a stopped process: {:?}", other.is_ok()),
    }
    assert_eq!(feed.unrung.load(Ordering::SeqCst), 0);
}

/// A host that records the notes it is handed.
struct Host(Arc<Mutex<Vec<u64>>>);

impl foundation_actors::Mailbox<Msg> for Host {
    fn deliver(
        &self,
        env: foundation_actors::addr::Envelope<Msg>,
    ) -> Result<(), foundation_actors::addr::Envelope<Msg>> {
        if let (_, Msg::Note(n)) = foundation_actors::hosted::into_parts(env) {
            self.0.lock().unwrap().push(n);
        }
        Ok(())
    }
}

/// A process hosted by another is handed a feed's messages one at a time, in order, when
/// its doorbell reaches the address.
#[test]
fn a_hosted_process_is_handed_a_feeds_messages_one_at_a_time() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = Addr::hosted("hosted", Box::new(Host(seen.clone())));
    let feed = Arc::new(Queue::default());
    feed.queue(&addr, None, Msg::Note(1));
    assert_eq!(*seen.lock().unwrap(), [1]);
    // Emptied at once: the next message rings again.
    feed.queue(&addr, None, Msg::Note(2));
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert_eq!(feed.rings(), 2);
    assert_eq!(feed.unrung.load(Ordering::SeqCst), 0);
}

/// Each note a [`SelfAware`] host was handed, with the key of its own address if it
/// could have it again.
type Seen = Arc<Mutex<Vec<(u64, Option<foundation_actors::AddrKey>)>>>;

/// A host that records, for each note, whether the mailbox's own address (a `WeakAddr`
/// given by `Addr::hosted_with`) could be had again, and is the same process.
struct SelfAware {
    me: foundation_actors::WeakAddr<Msg>,
    seen: Seen,
}

impl foundation_actors::Mailbox<Msg> for SelfAware {
    fn deliver(
        &self,
        env: foundation_actors::addr::Envelope<Msg>,
    ) -> Result<(), foundation_actors::addr::Envelope<Msg>> {
        if let (_, Msg::Note(n)) = foundation_actors::hosted::into_parts(env) {
            let me = self.me.upgrade().map(|a| a.key());
            self.seen.lock().unwrap().push((n, me));
        }
        Ok(())
    }
}

/// A hosted process's mailbox built with `Addr::hosted_with` reaches the very address it
/// serves (same process key, same label) while that address lives, and does not keep it
/// alive.
#[test]
fn a_hosted_mailbox_reaches_its_own_address_without_keeping_it_alive() {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let addr = Addr::hosted_with("self-aware", |me| {
        Box::new(SelfAware {
            me,
            seen: seen.clone(),
        })
    });
    addr.cast(Msg::Note(1)).unwrap();
    assert_eq!(*seen.lock().unwrap(), [(1, Some(addr.key()))]);
    let weak = addr.downgrade();
    let again = weak.upgrade().unwrap();
    assert_eq!(again.key(), addr.key());
    assert_eq!(again.label(), "self-aware");
    drop((addr, again));
    assert!(
        weak.upgrade().is_none(),
        "the weak address kept its process alive"
    );
}
