//! Batches (`Addr::cast_batch`): one mailbox message, the handler once per message in
//! order, each under its own context; a crash in the middle and what becomes of the rest.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{Backoff, Batch, Context};
use tokio::sync::mpsc;

use crate::support::{Events, Log, Msg, Probe};

/// Logs `released:<n>` when dropped: what a message holds until it has been handled.
struct Release(Log, u64);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.push(format!("released:{}", self.1));
    }
}

/// Reports each number it handles with the `who` baggage of the context it runs under,
/// and logs it; fails on 0.
struct Reporter {
    log: Log,
    tx: mpsc::UnboundedSender<(u64, Option<String>)>,
}

impl Actor for Reporter {
    type Msg = u64;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<u64>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<u64>, n: u64, (): &mut ()) -> Result<(), ActorError> {
        if n == 0 {
            return Err("zero".into());
        }
        self.log.push(format!("handled:{n}"));
        let who = Context::current().and_then(|c| c.baggage("who").map(str::to_owned));
        let _ = self.tx.send((n, who));
        Ok(())
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits (generously) until `log` holds `want`, in order, among its lines.
async fn until_logged(log: &Log, want: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    within("the log", async {
        loop {
            seen.extend(log.take());
            let got: Vec<&str> = seen
                .iter()
                .map(String::as_str)
                .filter(|l| want.contains(l))
                .collect();
            if got.len() >= want.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_handled_message_by_message_in_order_each_under_its_own_context() {
    let log = Log::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = spawn(
        Reporter {
            log: log.clone(),
            tx,
        },
        (),
    )
    .await
    .unwrap();
    let ada = Context::new().with_baggage("who", "ada");
    let cy = Context::new().with_baggage("who", "cy");
    let mut batch = Batch::with_capacity(5);
    // Built under cy's context: `push` takes it, `push_with`/`push_holding` never do.
    cy.sync_scope(|| {
        batch.push_with(None, 1);
        batch.push_with(Some(ada.clone()), 2);
        batch.push_holding(None, 3, Release(log.clone(), 3));
        batch.push(4);
        batch.push_holding(Some(ada.clone()), 5, Release(log.clone(), 5));
    });
    assert_eq!(batch.len(), 5);
    addr.cast_batch(batch).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(within("a report", rx.recv()).await.unwrap());
    }
    let who = |s: &str| Some(s.to_owned());
    assert_eq!(
        got,
        [
            (1, None),
            (2, who("ada")),
            (3, None),
            (4, who("cy")),
            (5, who("ada"))
        ]
    );
    // What a message holds is released once it is handled, before the next is.
    let lines = until_logged(&log, &["released:5"]).await;
    assert_eq!(
        lines,
        [
            "handled:1",
            "handled:2",
            "handled:3",
            "released:3",
            "handled:4",
            "handled:5",
            "released:5"
        ]
    );
    // A batch of one is a plain cast; an empty one sends nothing.
    let mut one = Batch::new();
    one.push_with(None, 6);
    addr.cast_batch(one).unwrap();
    addr.cast_batch(Batch::new()).unwrap();
    assert_eq!(within("a report", rx.recv()).await.unwrap(), (6, None));
    addr.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_its_place_among_the_processs_other_messages() {
    let log = Log::default();
    let addr = spawn(Probe::new("p", &log), ()).await.unwrap();
    addr.cast(Msg::Note(1)).unwrap();
    let mut batch = Batch::new();
    for k in 2..=4 {
        batch.push(Msg::Note(k));
    }
    addr.cast_batch(batch).unwrap();
    addr.cast(Msg::Note(5)).unwrap();
    addr.call(Msg::Get).await.unwrap();
    let notes: Vec<String> = log
        .take()
        .into_iter()
        .filter(|l| l.starts_with("got:"))
        .collect();
    assert_eq!(
        notes,
        ["got:p:1", "got:p:2", "got:p:3", "got:p:4", "got:p:5"]
    );
    addr.stop(None);
}

/// A supervised process crashes (an error, then a panic) in the middle of a batch: the
/// rest of the run reaches the next incarnation first, in order, ahead of what was queued
/// behind the batch; only the failing message is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_batch_hands_the_rest_of_its_run_to_the_next_incarnation_first() {
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
        // The batch waits behind a slow message, and more work waits behind the batch.
        addr.cast(Msg::Sleep(Duration::from_millis(50))).unwrap();
        let mut batch = Batch::new();
        batch.push(Msg::Add(100));
        batch.push(Msg::Note(1));
        batch.push(crash);
        batch.push(Msg::Note(2));
        batch.push(Msg::Add(5));
        batch.push_holding(None, Msg::Note(3), Release(log.clone(), 3));
        addr.cast_batch(batch).unwrap();
        addr.cast(Msg::Note(4)).unwrap();
        addr.cast(Msg::Add(7)).unwrap();
        // The first incarnation's 100 is gone with it; the new one got 5 and 7.
        assert_eq!(within("the sum", addr.call(Msg::Get)).await, Ok(12));
        let lines: Vec<String> = log
            .take()
            .into_iter()
            .filter(|l| l.starts_with("got:") || l.starts_with("released:"))
            .collect();
        assert_eq!(
            lines,
            ["got:w:1", "got:w:2", "got:w:3", "released:3", "got:w:4"]
        );
        assert_eq!(addr.incarnation(), 2);
        sup.shutdown().await;
    }
}

/// An unsupervised process that crashes in the middle of a batch stops for good: the rest
/// of the run goes with its mailbox (what it holds is released, not leaked), and sends are
/// refused from then on, a batch handed back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_a_batch_of_an_unsupervised_process_drops_the_rest_with_its_mailbox() {
    let log = Log::default();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = spawn(
        Reporter {
            log: log.clone(),
            tx,
        },
        (),
    )
    .await
    .unwrap();
    let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
    let _hook = addr.on_stop(move || {
        let _ = stopped_tx.send(());
    });
    let mut batch = Batch::new();
    batch.push_with(None, 1);
    batch.push_with(None, 0);
    batch.push_holding(None, 2, Release(log.clone(), 2));
    addr.cast_batch(batch).unwrap();
    within("the stop", stopped).await.unwrap();
    assert_eq!(within("a report", rx.recv()).await, Some((1, None)));
    assert_eq!(
        log.take(),
        ["handled:1", "released:2"],
        "2 was dropped unhandled"
    );

    let mut late = Batch::new();
    late.push_with(None, 3);
    late.push_with(None, 4);
    match addr.cast_batch(late) {
        Err(SendError::Stopped(back)) => assert_eq!(back.into_messages(), [3, 4]),
        other => panic!("a batch to a stopped process: {other:?}"),
    }
}

/// While a supervised process restarts, a batch is held for the next incarnation, in its
/// place among the other held messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_during_a_restart_reaches_the_next_incarnation_in_order() {
    let log = Log::default();
    let spec = Probe::spec("r", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .backoff(Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_millis(200),
                jitter: 0.0,
            })
            .child(spec),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert!(
        ev.exited("r").await.1,
        "a restart is under way (in its backoff delay)"
    );
    log.take();
    addr.cast(Msg::Note(1)).unwrap();
    let mut batch = Batch::new();
    batch.push(Msg::Note(2));
    batch.push(Msg::Note(3));
    addr.cast_batch(batch).unwrap();
    addr.cast(Msg::Note(4)).unwrap();
    within("the restart", addr.call(Msg::Get)).await.unwrap();
    assert_eq!(
        log.take(),
        ["start:r", "got:r:1", "got:r:2", "got:r:3", "got:r:4"]
    );
    sup.shutdown().await;
}
