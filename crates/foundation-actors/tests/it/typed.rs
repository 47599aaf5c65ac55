//! Actors derived with `#[actor]`: generated handles under supervisors, with names,
//! timeouts, deadlines, context and the hooks.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{ExitReason, SupervisorEvent};
use tokio::sync::mpsc;

use crate::support::Events;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Overflow(u64);

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "would overflow past {}", self.0)
    }
}
impl std::error::Error for Overflow {}

#[derive(Default)]
pub(crate) struct Counter {
    total: u64,
    /// Callers of `wait_for`, answered once the total reaches their mark.
    waiting: Vec<(u64, ReplyPort<u64>)>,
}

// Restarts rebuild the state from a clone of the args: pending waiters are not cloned.
impl Clone for Counter {
    fn clone(&self) -> Self {
        Self {
            total: self.total,
            waiting: Vec::new(),
        }
    }
}

#[actor]
impl Counter {
    /// Adds `n`.
    #[cast]
    fn add(&mut self, n: u64) {
        self.total += n;
        let total = self.total;
        let (due, later) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(mark, _)| *mark <= total);
        self.waiting = later;
        for (_, reply) in due {
            let _ = reply.send(total);
        }
    }

    /// Replies once the total reaches `mark` (a deferred reply, as `{:noreply, state}`
    /// and a later `GenServer.reply`).
    #[call]
    fn wait_for(&mut self, mark: u64, reply: ReplyPort<u64>) {
        if self.total >= mark {
            let _ = reply.send(self.total);
        } else {
            self.waiting.push((mark, reply));
        }
    }

    /// Adds `n`, crashing the process on overflow.
    #[cast]
    fn checked_add(&mut self, n: u64) -> Result<(), Overflow> {
        self.total = self.total.checked_add(n).ok_or(Overflow(self.total))?;
        Ok(())
    }

    #[call]
    fn total(&self) -> u64 {
        self.total
    }

    /// Resets to zero, replying the old total; refuses (without crashing) when empty.
    #[call]
    async fn reset(&mut self) -> Result<u64, Overflow> {
        tokio::task::yield_now().await;
        if self.total == 0 {
            return Err(Overflow(0));
        }
        Ok(std::mem::take(&mut self.total))
    }

    /// Sleeps, then replies: for timeouts.
    #[call]
    async fn slow(&self, nap: Duration) -> u64 {
        tokio::time::sleep(nap).await;
        self.total
    }

    /// The request id of the caller's context, as seen by the handler.
    #[call]
    fn request_id(&self, _: ()) -> Option<String> {
        Context::current().and_then(|c| c.request_id().map(str::to_owned))
    }

    /// Several arguments, and a name the reply port must not take.
    #[call]
    fn weighted(&self, weight: u64, reply: u64) -> u64 {
        self.total * weight + reply
    }

    /// A plain helper: not a message.
    fn doubled(&self) -> u64 {
        self.total * 2
    }

    #[call]
    fn doubled_total(&self) -> u64 {
        self.doubled()
    }
}

#[tokio::test]
async fn casts_and_calls_through_a_generated_handle() {
    let sup = DynamicSupervisor::start("counters", None).await.unwrap();
    let c: CounterRef = Counter::spawn_supervised(&sup, Counter::default())
        .await
        .unwrap();
    c.add(5).await.unwrap();
    c.checked_add(2).await.unwrap();
    assert_eq!(c.total().await.unwrap(), 7);
    assert_eq!(c.doubled_total().await.unwrap(), 14);
    assert_eq!(c.weighted(3, 1).await.unwrap(), 22);
    assert_eq!(c.reset().await.unwrap(), Ok(7));
    assert_eq!(
        c.reset().await.unwrap(),
        Err(Overflow(0)),
        "a refusal is a reply"
    );
    assert!(c.is_running(), "an `Err` reply does not crash the process");

    // Many of the same actor under one dynamic supervisor: anonymous children.
    let d = Counter::spawn_supervised(
        &sup,
        Counter {
            total: 40,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    d.add(2).await.unwrap();
    assert_eq!(d.total().await.unwrap(), 42);
    assert_eq!(sup.count_children().await.unwrap().active, 2);
    sup.shutdown().await;
    assert!(matches!(
        c.add(1).await,
        Err(SendError::Stopped(CounterMsg::Add(1)))
    ));
    assert_eq!(c.total().await, Err(CallError::Stopped));
}

#[tokio::test]
async fn a_crashed_actor_restarts_behind_the_same_handle_and_name() {
    let sup = Supervisor::start(
        SupervisorSpec::new("app", Strategy::OneForOne).child(
            Counter::child_spec(Counter {
                total: 10,
                ..Default::default()
            })
            .name("the-counter"),
        ),
    )
    .await
    .unwrap();
    let mut events = Events::of(&sup);
    let c = CounterRef::whereis("the-counter").expect("registered by the child spec");
    c.add(1).await.unwrap();
    c.checked_add(u64::MAX).await.unwrap(); // overflows: the handler's `Err` crashes it
    let (reason, restarting) = events.exited("Counter").await;
    assert!(restarting);
    match reason {
        ExitReason::Failed(e) => assert!(e.to_string().contains("would overflow past 11"), "{e}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    events.restarted("Counter").await;
    assert_eq!(c.total().await.unwrap(), 10, "restarted from its args");
    let again = CounterRef::whereis("the-counter").unwrap();
    again.add(1).await.unwrap();
    assert_eq!(
        c.total().await.unwrap(),
        11,
        "the name reaches the same process"
    );

    assert!(CounterRef::whereis("no-such-name").is_none());
    assert!(
        TickerRef::whereis("the-counter").is_none(),
        "a name registered by another actor type is not found as this one"
    );

    // A second start with the default id is refused by a static supervisor.
    let dup = Counter::spawn_supervised(&sup, Counter::default()).await;
    assert!(
        matches!(dup, Err(SupervisorError::Spawn(SpawnError::DuplicateId(ref id))) if id == "Counter"),
        "{dup:?}"
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn calls_honour_the_handle_timeout_and_the_context_deadline() {
    let c = Counter::spawn(Counter {
        total: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let hasty = c.with_timeout(Duration::from_millis(20));
    assert_eq!(
        hasty.slow(Duration::from_secs(30)).await,
        Err(CallError::Timeout(Duration::from_millis(20)))
    );
    let ctx = Context::new().with_timeout(Duration::from_millis(20));
    assert_eq!(
        ctx.scope(c.slow(Duration::from_secs(30))).await,
        Err(CallError::DeadlineExceeded)
    );
    // The original handle keeps the default timeout (a fresh process: `c` is still asleep).
    let fresh = Counter::spawn(Counter {
        total: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(fresh.slow(Duration::from_millis(1)).await, Ok(3));
    c.stop();
    fresh.stop();
}

#[tokio::test]
async fn the_callers_context_reaches_the_handler() {
    let c = Counter::spawn(Counter::default()).await.unwrap();
    let ctx = Context::new().with_request_id("req-42");
    let seen = ctx.scope(c.request_id(())).await.unwrap();
    assert_eq!(seen.as_deref(), Some("req-42"));
    assert_eq!(c.request_id(()).await.unwrap(), None);
    c.stop();
}

/// Hooks: `#[init]` with arguments and the context, `#[info]` from timers and a
/// supervisor's events, `#[terminate]`.
pub(crate) struct Ticker {
    ticks: u32,
    incarnation: u64,
    log: mpsc::UnboundedSender<String>,
}

#[derive(Clone)]
pub(crate) struct TickerArgs {
    log: mpsc::UnboundedSender<String>,
    every: Option<Duration>,
}

pub(crate) struct Tick(u64);

#[actor]
impl Ticker {
    #[init]
    async fn start(args: TickerArgs, ctx: &Ctx<Self>) -> Result<Self, std::io::Error> {
        // Incarnations before this one: 0 on the first start.
        let incarnation = ctx.addr().incarnation();
        if let Some(every) = args.every {
            ctx.send_interval(every, move || Tick(incarnation));
        }
        let _ = args.log.send(format!("init:{incarnation}"));
        Ok(Self {
            ticks: 0,
            incarnation,
            log: args.log,
        })
    }

    #[info]
    fn tick(&mut self, tick: Tick) {
        if tick.0 == self.incarnation {
            self.ticks += 1;
            let _ = self.log.send(format!("tick:{}", tick.0));
        } else {
            let _ = self.log.send(format!("stale-tick:{}", tick.0));
        }
    }

    #[info]
    fn child_event(&mut self, ev: SupervisorEvent) {
        if let SupervisorEvent::ChildExited { child, .. } = ev {
            let _ = self.log.send(format!("saw-exit:{child}"));
        }
    }

    #[cast]
    fn watch(&mut self, sup: Supervisor, ctx: &Ctx<Self>) {
        ctx.watch(&sup);
    }

    #[cast]
    fn once_after(&mut self, delay: Duration, ctx: &Ctx<Self>) {
        ctx.send_after(delay, Tick(self.incarnation));
    }

    #[cast]
    fn crash(&mut self) {
        panic!("asked to crash");
    }

    #[cast]
    fn quit(&mut self, ctx: &Ctx<Self>) {
        ctx.stop();
    }

    #[call]
    fn ticks(&self) -> u32 {
        self.ticks
    }

    #[terminate]
    async fn done(&mut self) {
        let _ = self.log.send(format!("terminate:{}", self.ticks));
    }
}

/// An unsupervised ticker without an interval, once its `init` has run.
async fn ticker() -> (TickerRef, mpsc::UnboundedReceiver<String>) {
    let (tx, mut log) = mpsc::unbounded_channel();
    let t = Ticker::spawn(TickerArgs {
        log: tx,
        every: None,
    })
    .await
    .unwrap();
    assert_eq!(next(&mut log).await, "init:0");
    (t, log)
}

/// The next line of a log, with a generous deadline.
async fn next(log: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(20), log.recv())
        .await
        .expect("timed out waiting for the actor's log")
        .expect("the log ended")
}

#[tokio::test]
async fn init_info_and_terminate_hooks_run() {
    let (t, mut log) = ticker().await;
    t.once_after(Duration::from_millis(1)).await.unwrap();
    assert_eq!(next(&mut log).await, "tick:0");
    assert_eq!(t.ticks().await.unwrap(), 1);
    t.quit().await.unwrap();
    assert_eq!(next(&mut log).await, "terminate:1");
}

#[tokio::test(start_paused = true)]
async fn timers_die_with_the_incarnation_that_set_them() {
    let (tx, mut log) = mpsc::unbounded_channel();
    let sup = DynamicSupervisor::start("tickers", None).await.unwrap();
    let mut events = Events::of(sup.handle());
    let args = TickerArgs {
        log: tx,
        every: Some(Duration::from_secs(1)),
    };
    let t = Ticker::spawn_supervised(&sup, args).await.unwrap();
    assert_eq!(next(&mut log).await, "init:0");
    assert_eq!(next(&mut log).await, "tick:0");
    t.crash().await.unwrap();
    events.restarted("<anonymous>").await;
    assert_eq!(next(&mut log).await, "init:1");
    // Had the first incarnation's interval survived, its ticks would arrive here too.
    for _ in 0..5 {
        assert_eq!(next(&mut log).await, "tick:1");
    }
    assert_eq!(t.ticks().await.unwrap(), 5);
    sup.shutdown().await;
}

#[tokio::test]
async fn an_info_handler_gets_a_watched_supervisors_events() {
    let spec = Counter::child_spec(Counter::default());
    let c = CounterRef::from(spec.addr());
    let sup = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    let (t, mut log) = ticker().await;
    t.watch(sup.clone()).await.unwrap();
    // The watch is set once the cast is handled: a call behind it proves that.
    t.ticks().await.unwrap();
    c.checked_add(u64::MAX).await.unwrap();
    c.checked_add(u64::MAX).await.unwrap();
    assert_eq!(next(&mut log).await, "saw-exit:Counter");
    sup.shutdown().await;
    t.stop();
}

#[tokio::test]
async fn a_call_can_be_answered_later_through_its_reply_port() {
    let c = Counter::spawn(Counter::default()).await.unwrap();
    let waiter = c.wait_for(10);
    tokio::pin!(waiter);
    // The first poll sends the call; it is parked, not answered.
    assert!(futures::poll!(waiter.as_mut()).is_pending());
    c.add(4).await.unwrap();
    assert_eq!(c.total().await.unwrap(), 4);
    assert!(
        futures::poll!(waiter.as_mut()).is_pending(),
        "still below the mark"
    );
    c.add(6).await.unwrap();
    assert_eq!(waiter.await, Ok(10));
    assert_eq!(
        c.wait_for(3).await,
        Ok(10),
        "a mark already passed is answered at once"
    );

    // A parked caller whose process stops gets `NoReply`, not a hang.
    let orphan = c.wait_for(100);
    tokio::pin!(orphan);
    assert!(futures::poll!(orphan.as_mut()).is_pending());
    c.stop();
    assert_eq!(orphan.await, Err(CallError::NoReply));
}

/// An `#[init]` that answers ignore when told to.
pub(crate) struct Choosy;

#[actor]
impl Choosy {
    #[init]
    fn choose(ignore: bool) -> Result<Self, Ignore> {
        if ignore { Err(Ignore) } else { Ok(Self) }
    }

    #[call]
    fn ping(&self) -> u8 {
        1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_hook_may_answer_ignore_and_a_handle_can_kill() {
    assert!(matches!(
        Choosy::spawn(true).await,
        Err(SpawnError::Ignored(_))
    ));
    let sup = DynamicSupervisor::start("choosy", None).await.unwrap();
    assert!(matches!(
        Choosy::spawn_supervised(&sup, true).await,
        Err(SupervisorError::Spawn(SpawnError::Ignored(_)))
    ));
    let c = Choosy::spawn_supervised(&sup, false).await.unwrap();
    assert_eq!(c.ping().await, Ok(1));
    let mut ev = Events::of(sup.handle());
    c.kill();
    let (reason, restarting) = ev.exited("<anonymous>").await;
    assert!(
        matches!(reason, ExitReason::Killed) && restarting,
        "{reason}"
    );
    assert_eq!(c.ping().await, Ok(1));
    sup.shutdown().await;
}
