//! Sharded entities on one node: activation by the first message, order, parallelism,
//! passivation (idle, least recently used, asked) and restart from a snapshot, crash
//! isolation, the context, and the region's supervision.

use std::sync::Arc;
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_registry::distributed::{CheckpointError, Handoff, checkpoint};
use foundation_registry::sharded::{Sharded, ShardedSpec};
use tokio::sync::{Barrier, mpsc};
use tokio::time::timeout;

use crate::support::PATIENCE;

/// What an entity reports: its key and what happened.
type Events = mpsc::UnboundedSender<(u64, &'static str)>;

/// An entity that remembers what it was told and reports its start and stop.
struct Tally {
    key: u64,
    seen: Vec<u64>,
    events: Events,
}

#[actor]
impl Tally {
    #[init]
    fn start(args: (u64, Events)) -> Result<Self, ActorError> {
        let (key, events) = args;
        // Key 666's init always fails.
        if key == 666 {
            return Err("refuses to start".into());
        }
        let _ = events.send((key, "started"));
        Ok(Self {
            key,
            seen: Vec::new(),
            events,
        })
    }

    #[cast]
    fn add(&mut self, n: u64) {
        self.seen.push(n);
    }

    #[call]
    fn seen(&self) -> Vec<u64> {
        self.seen.clone()
    }

    #[cast]
    fn boom(&mut self) {
        panic!("entity {} asked to panic", self.key);
    }

    #[call]
    fn boom_call(&mut self) -> u64 {
        panic!("entity {} asked to panic", self.key);
    }

    /// The trace id and a baggage item of the context current in the handler.
    #[call]
    fn context(&self) -> Option<(TraceIdText, Option<String>)> {
        Context::current().map(|c| {
            (
                c.trace_id().to_string(),
                c.baggage("user").map(str::to_owned),
            )
        })
    }

    /// Waits at `barrier` with the others: returns only if they all run at once.
    #[call]
    async fn meet(&self, barrier: Arc<Barrier>) -> u64 {
        barrier.wait().await;
        self.key
    }

    #[cast]
    fn rest(&mut self, ctx: &Ctx<Self>) {
        ctx.stop();
    }

    /// Sends itself `add(n)` through its context's address now, and `add(n + 1)` by a
    /// timer.
    #[cast]
    fn echo_later(&mut self, n: u64, ctx: &Ctx<Self>) {
        let _ = ctx.addr().cast(TallyMsg::Add(n));
        ctx.send_after(Duration::from_millis(20), TallyMsg::Add(n + 1));
    }

    #[terminate]
    fn end(&mut self) {
        let _ = self.events.send((self.key, "stopped"));
    }
}

type TraceIdText = String;

/// How a test's `Sharded` is tuned.
#[derive(Clone, Copy)]
struct Tune {
    shards: usize,
    max_entities: usize,
    idle: Option<Duration>,
    restart: Restart,
}

impl Default for Tune {
    fn default() -> Self {
        Self {
            shards: 16,
            max_entities: 1_000_000,
            idle: None,
            restart: Restart::Transient,
        }
    }
}

/// What a `tracing` subscriber writes, kept to be read.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// A `Sharded` of `Tally`, and the events of its entities.
fn tallies(
    name: &str,
    tune: Tune,
) -> (
    Sharded<u64, TallyMsg>,
    mpsc::UnboundedReceiver<(u64, &'static str)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut spec = ShardedSpec::new(name.to_owned(), Tally::actor(), move |k: &u64| {
        (*k, tx.clone())
    })
    .shards(tune.shards)
    .max_entities(tune.max_entities)
    .restart(tune.restart);
    if let Some(t) = tune.idle {
        spec = spec.idle_timeout(t);
    }
    (Sharded::new(spec), rx)
}

/// A `Sharded` of `Tally` started under a supervisor of its own.
async fn started(
    name: &str,
    tune: Tune,
) -> (
    Sharded<u64, TallyMsg>,
    mpsc::UnboundedReceiver<(u64, &'static str)>,
    Supervisor,
) {
    let (sharded, events) = tallies(name, tune);
    let sup = Supervisor::start(
        SupervisorSpec::new(format!("{name}-sup"), Strategy::OneForOne).child(sharded.child_spec()),
    )
    .await
    .unwrap();
    (sharded, events, sup)
}

/// The next event, waited for.
async fn next_event(
    events: &mut mpsc::UnboundedReceiver<(u64, &'static str)>,
) -> (u64, &'static str) {
    timeout(PATIENCE, events.recv())
        .await
        .expect("an event in time")
        .expect("the entities' events stay open")
}

#[tokio::test]
async fn the_first_message_starts_the_entity() {
    let (s, mut events, sup) = started("sh-first", Tune::default()).await;
    assert!(!s.is_active(&7));
    assert_eq!(s.stats().started, 0);
    let seven: TallyRef = s.entity(7);
    seven.add(1).await.unwrap();
    assert_eq!(next_event(&mut events).await, (7, "started"));
    assert_eq!(seven.seen().await.unwrap(), [1]);
    assert!(s.is_active(&7));
    let stats = s.stats();
    assert_eq!((stats.started, stats.entities), (1, 1));
    // Another handle to the same key reaches the same entity; no second start.
    let again: TallyRef = s.entity(7);
    assert_eq!(again.seen().await.unwrap(), [1]);
    assert_eq!(s.stats().started, 1);
    sup.shutdown().await;
}

/// An idle `#[actor]` entity hibernates: its context drops its own address while the
/// entity is parked (the bulk of an idle entity's memory: see the bench `sharded`), and
/// its next handler has it back; a timer it started keeps its own.
#[tokio::test]
async fn a_parked_entity_sheds_its_address_and_has_it_back_with_its_next_message() {
    let (s, _events, sup) = started("sh-hibernate", Tune::default()).await;
    let five: TallyRef = s.entity(5);
    for round in 0..3u64 {
        five.echo_later(10 * round).await.unwrap();
        let want: Vec<u64> = (0..=round).flat_map(|r| [10 * r, 10 * r + 1]).collect();
        timeout(PATIENCE, async {
            while five.seen().await.unwrap() != want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // Parked in between: nothing runs it until the next message.
        timeout(PATIENCE, async {
            while s.stats().running > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
    }
    assert_eq!(s.stats().started, 1);
    sup.shutdown().await;
}

#[tokio::test]
async fn messages_sent_before_the_region_starts_are_held_then_delivered_in_order() {
    let (s, _events) = tallies("sh-held", Tune::default());
    let e: TallyRef = s.entity(1);
    // A region left out of every supervisor would show only as calls timing out: the
    // first message held for it says so, once.
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..10 {
            e.addr().cast(TallyMsg::Add(i)).unwrap();
        }
    });
    let said = log.text();
    assert_eq!(
        said.matches(
            "held until the region starts: put `Sharded::child_spec()` under a supervisor"
        )
        .count(),
        1,
        "{said}"
    );
    assert_eq!(s.stats().started, 0);
    let sup = Supervisor::start(
        SupervisorSpec::new("sh-held-sup", Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    assert_eq!(e.seen().await.unwrap(), (0..10).collect::<Vec<_>>());
    sup.shutdown().await;
}

#[tokio::test]
async fn one_entity_handles_its_messages_one_at_a_time_in_order() {
    let (s, _events, sup) = started("sh-order", Tune::default()).await;
    // Several senders, each with its own numbered stream, to one entity.
    let mut senders = Vec::new();
    for sender in 0..4u64 {
        let e: TallyRef = s.entity(3);
        senders.push(tokio::spawn(async move {
            for i in 0..500 {
                e.add(sender * 1_000 + i).await.unwrap();
            }
        }));
    }
    for t in senders {
        t.await.unwrap();
    }
    let seen = s.entity::<TallyRef>(3).seen().await.unwrap();
    assert_eq!(seen.len(), 2_000);
    for sender in 0..4u64 {
        let mine: Vec<u64> = seen
            .iter()
            .copied()
            .filter(|n| n / 1_000 == sender)
            .collect();
        assert_eq!(
            mine,
            (0..500).map(|i| sender * 1_000 + i).collect::<Vec<_>>()
        );
    }
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_entities_run_at_once() {
    let (s, _events, sup) = started(
        "sh-parallel",
        Tune {
            shards: 4,
            ..Tune::default()
        },
    )
    .await;
    // Each call waits at the barrier until all 32 entities are in their handlers: it
    // returns only if they all run at once (several per shard).
    let barrier = Arc::new(Barrier::new(32));
    let calls: Vec<_> = (0..32u64)
        .map(|k| {
            let e: TallyRef = s.entity(k);
            let b = barrier.clone();
            tokio::spawn(async move { e.with_timeout(PATIENCE).meet(b).await })
        })
        .collect();
    for (k, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap().unwrap(), k as u64);
    }
    assert_eq!(s.stats().entities, 32);
    sup.shutdown().await;
}

/// On one worker (the runner pool keeps one free task): an entity whose handler waits
/// hands the others to another task, so eight can wait together.
#[tokio::test]
async fn entities_whose_handlers_wait_do_not_hold_up_the_others_on_one_worker() {
    let (s, _events, sup) = started("sh-one-worker", Tune::default()).await;
    let barrier = Arc::new(Barrier::new(8));
    let calls: Vec<_> = (0..8u64)
        .map(|k| {
            let e: TallyRef = s.entity(k);
            let b = barrier.clone();
            tokio::spawn(async move { e.with_timeout(PATIENCE).meet(b).await })
        })
        .collect();
    for (k, c) in calls.into_iter().enumerate() {
        assert_eq!(c.await.unwrap().unwrap(), k as u64);
    }
    // And messages to other entities are handled meanwhile and after.
    let other: TallyRef = s.entity(100);
    other.add(1).await.unwrap();
    assert_eq!(other.with_timeout(PATIENCE).seen().await.unwrap(), vec![1]);
    sup.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_entity_is_passivated_and_its_next_message_starts_it_again() {
    let tune = Tune {
        idle: Some(Duration::from_secs(1)),
        ..Tune::default()
    };
    let (s, mut events, sup) = started("sh-idle", tune).await;
    let e: TallyRef = s.entity(5);
    e.add(1).await.unwrap();
    assert_eq!(next_event(&mut events).await, (5, "started"));
    // No message for a while: stopped (its terminate ran), no longer active.
    assert_eq!(next_event(&mut events).await, (5, "stopped"));
    assert_eq!(s.stats().passivated, 1);
    // The same handle starts it again; without a snapshot it starts afresh.
    assert_eq!(e.seen().await.unwrap(), Vec::<u64>::new());
    assert_eq!(next_event(&mut events).await, (5, "started"));
    assert_eq!(s.stats().started, 2);
    sup.shutdown().await;
}

#[tokio::test]
async fn an_entity_may_passivate_itself_or_be_passivated() {
    let (s, mut events, sup) = started("sh-rest", Tune::default()).await;
    let e: TallyRef = s.entity(2);
    e.add(1).await.unwrap();
    assert_eq!(next_event(&mut events).await, (2, "started"));
    e.rest().await.unwrap();
    assert_eq!(next_event(&mut events).await, (2, "stopped"));
    e.add(2).await.unwrap();
    assert_eq!(next_event(&mut events).await, (2, "started"));
    assert_eq!(e.seen().await.unwrap(), [2]);
    s.passivate(&2);
    assert_eq!(next_event(&mut events).await, (2, "stopped"));
    // A key never seen, and one passivated: both just answer.
    assert_eq!(
        s.entity::<TallyRef>(99).seen().await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(e.seen().await.unwrap(), Vec::<u64>::new());
    sup.shutdown().await;
}

#[tokio::test]
async fn over_the_limit_the_least_recently_used_idle_entity_is_passivated() {
    let tune = Tune {
        shards: 1,
        max_entities: 2,
        ..Tune::default()
    };
    let (s, mut events, sup) = started("sh-lru", tune).await;
    let (one, two, three): (TallyRef, TallyRef, TallyRef) = (s.entity(1), s.entity(2), s.entity(3));
    one.add(1).await.unwrap();
    assert_eq!(one.seen().await.unwrap(), [1]);
    two.add(2).await.unwrap();
    assert_eq!(two.seen().await.unwrap(), [2]);
    // 1 is used again: 2 is the least recently used.
    assert_eq!(one.seen().await.unwrap(), [1]);
    three.add(3).await.unwrap();
    assert_eq!(three.seen().await.unwrap(), [3]);
    let mut stopped = Vec::new();
    while stopped.is_empty() {
        let (k, what) = next_event(&mut events).await;
        if what == "stopped" {
            stopped.push(k);
        }
    }
    assert_eq!(stopped, [2]);
    // 1 kept its state; 2 starts afresh (and passivates 3, now the least recently used).
    assert_eq!(one.seen().await.unwrap(), [1]);
    assert_eq!(two.seen().await.unwrap(), Vec::<u64>::new());
    sup.shutdown().await;
}

/// A flood of new keys, faster than their entities run: when each new entity came, the
/// others were busy too (none idle to passivate), yet once they go idle the shards come
/// back down to the limit instead of staying over it (a hostile caller's distinct keys
/// cost bounded memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_new_keys_over_the_limit_comes_back_down_to_it_as_entities_go_idle() {
    let tune = Tune {
        shards: 4,
        max_entities: 40,
        ..Tune::default()
    };
    let (s, _events, sup) = started("sh-flood", tune).await;
    for k in 0..5_000u64 {
        s.addr(k).cast(TallyMsg::Add(k)).unwrap();
    }
    timeout(PATIENCE, async {
        loop {
            let st = s.stats();
            if st.running == 0 && st.entities <= 40 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still over the limit: {:?}", s.stats()));
    let st = s.stats();
    // Key 666's `init` fails (`Tally`): it is gone without a passivation.
    assert!(st.passivated + st.crashed >= 5_000 - 40, "{st:?}");
    // The keys still answer: a passivated entity starts again.
    let first: TallyRef = s.entity(0);
    assert_eq!(first.seen().await.unwrap(), Vec::<u64>::new());
    sup.shutdown().await;
}

#[tokio::test]
async fn a_panicking_entity_restarts_and_its_shard_mates_do_not_notice() {
    let tune = Tune {
        shards: 1,
        ..Tune::default()
    };
    let (s, _events, sup) = started("sh-panic", tune).await;
    let (a, b): (TallyRef, TallyRef) = (s.entity(1), s.entity(2));
    a.add(1).await.unwrap();
    b.add(1).await.unwrap();
    a.boom().await.unwrap();
    // Queued behind the panic: the entity starts again with fresh state and handles it.
    a.add(2).await.unwrap();
    assert_eq!(a.seen().await.unwrap(), [2]);
    assert_eq!(b.seen().await.unwrap(), [1]);
    // A call whose handler panics gets no reply, as from any crashed process.
    assert!(matches!(a.boom_call().await, Err(CallError::NoReply)));
    assert_eq!(a.seen().await.unwrap(), Vec::<u64>::new());
    assert_eq!(s.stats().crashed, 2);
    sup.shutdown().await;
}

#[tokio::test]
async fn a_temporary_entity_drops_what_was_queued_when_it_crashes() {
    let tune = Tune {
        restart: Restart::Temporary,
        ..Tune::default()
    };
    let (s, _events, sup) = started("sh-temp", tune).await;
    let a: TallyRef = s.entity(1);
    a.add(1).await.unwrap();
    assert_eq!(a.seen().await.unwrap(), [1]);
    // On this single-threaded runtime the three are queued before the entity runs: the
    // two behind the panic are dropped with it (the call gets no reply).
    a.boom().await.unwrap();
    a.add(2).await.unwrap();
    assert!(matches!(a.seen().await, Err(CallError::NoReply)));
    // A later message starts it again, afresh.
    assert_eq!(a.seen().await.unwrap(), Vec::<u64>::new());
    assert_eq!(s.stats().crashed, 1);
    sup.shutdown().await;
}

#[tokio::test]
async fn an_entity_whose_init_fails_gives_no_reply_and_its_shard_stays_up() {
    let tune = Tune {
        shards: 1,
        ..Tune::default()
    };
    let (s, _events, sup) = started("sh-init", tune).await;
    let bad: TallyRef = s.entity(666);
    assert_eq!(s.last_crash(), None);
    assert!(matches!(bad.seen().await, Err(CallError::NoReply)));
    assert!(matches!(bad.seen().await, Err(CallError::NoReply)));
    assert!(!s.is_active(&666));
    // Why, for the caller who got `NoReply`: counted, and the last crash kept.
    let crash = s.last_crash().expect("the crash is kept");
    assert_eq!(
        (crash.key.as_str(), crash.during, crash.reason.as_str()),
        ("666", "init", "failed: refuses to start")
    );
    let good: TallyRef = s.entity(1);
    good.add(1).await.unwrap();
    assert_eq!(good.seen().await.unwrap(), [1]);
    let stats = s.stats();
    assert_eq!((stats.crashed, stats.init_failed), (2, 2));
    sup.shutdown().await;
}

#[tokio::test]
async fn the_senders_context_is_current_in_the_handler() {
    let (s, _events, sup) = started("sh-ctx", Tune::default()).await;
    let e: TallyRef = s.entity(4);
    assert_eq!(e.context().await.unwrap(), None);
    let ctx = Context::new().with_baggage("user", "alice");
    let trace = ctx.trace_id().to_string();
    let got = ctx.scope(async { e.context().await.unwrap() }).await;
    assert_eq!(got, Some((trace, Some("alice".to_owned()))));
    sup.shutdown().await;
}

#[tokio::test]
async fn stopping_the_region_stops_every_entity_and_refuses_later_messages() {
    let (s, mut events, sup) = started("sh-stop", Tune::default()).await;
    let (a, b): (TallyRef, TallyRef) = (s.entity(1), s.entity(2));
    a.add(1).await.unwrap();
    b.add(1).await.unwrap();
    assert_eq!(a.seen().await.unwrap(), [1]);
    assert_eq!(b.seen().await.unwrap(), [1]);
    sup.shutdown().await;
    // Every entity was stopped before the shutdown returned.
    let mut stopped = Vec::new();
    while let Ok((k, what)) = events.try_recv() {
        if what == "stopped" {
            stopped.push(k);
        }
    }
    stopped.sort_unstable();
    assert_eq!(stopped, [1, 2]);
    assert_eq!(s.stats().entities, 0);
    // Refused while the region is down; the handles are not ended by it (the region may
    // be started again: see the next test).
    assert!(matches!(a.add(2).await, Err(SendError::Unavailable(_))));
    assert!(matches!(
        s.entity::<TallyRef>(3).add(1).await,
        Err(SendError::Unavailable(_))
    ));
    assert!(matches!(a.seen().await, Err(CallError::Unavailable)));
}

/// A handle taken before its region stopped, and used while it was down, works again once
/// the region is back: the refusals meanwhile (`Unavailable`) did not end its address.
#[tokio::test]
async fn a_handle_refused_while_its_region_is_down_works_again_once_it_is_back() {
    let (s, _events, sup) = started("sh-back", Tune::default()).await;
    let early: TallyRef = s.entity(5);
    let used: TallyRef = s.entity(1);
    used.add(1).await.unwrap();
    assert_eq!(used.seen().await.unwrap(), [1]);
    sup.terminate_child("sh-back").await.unwrap();
    assert!(matches!(used.add(2).await, Err(SendError::Unavailable(_))));
    assert!(matches!(used.seen().await, Err(CallError::Unavailable)));
    sup.restart_child("sh-back").await.unwrap();
    // The entity started afresh (no `Handoff`), and every handle reaches it.
    used.add(3).await.unwrap();
    assert_eq!(used.seen().await.unwrap(), [3]);
    early.add(4).await.unwrap();
    assert_eq!(early.seen().await.unwrap(), [4]);
    assert_eq!(s.entity::<TallyRef>(1).seen().await.unwrap(), [3]);
    sup.shutdown().await;
    // Gone for good once the runtime itself is: the `Sharded` and its child spec dropped.
    drop((s, sup));
    assert!(matches!(used.add(5).await, Err(SendError::Stopped(_))));
}

/// A counter whose passivation keeps a snapshot (`Handoff`), reporting each export.
#[derive(Clone)]
struct Saver(mpsc::UnboundedSender<u64>);

enum SaverMsg {
    Add(u64),
    Get(ReplyPort<u64>),
}

impl Actor for Saver {
    type Msg = SaverMsg;
    type State = u64;
    type Args = ();
    async fn init(&self, _: &Addr<SaverMsg>, (): ()) -> Result<u64, ActorError> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: &Addr<SaverMsg>,
        msg: SaverMsg,
        n: &mut u64,
    ) -> Result<(), ActorError> {
        match msg {
            SaverMsg::Add(k) => *n += k,
            SaverMsg::Get(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

impl Handoff for Saver {
    type Snapshot = u64;
    fn export(&self, n: u64) -> u64 {
        let _ = self.0.send(n);
        n
    }
    async fn restore(&self, _: &Addr<SaverMsg>, n: u64, (): ()) -> Result<u64, ActorError> {
        Ok(n)
    }
}

#[tokio::test(start_paused = true)]
async fn a_passivated_handoff_entity_starts_again_from_its_snapshot() {
    let (tx, mut exports) = mpsc::unbounded_channel();
    let spec = ShardedSpec::new("sh-snap", Saver(tx), |_: &u64| ())
        .idle_timeout(Duration::from_secs(1))
        .handoff();
    let s = Sharded::new(spec);
    let sup = Supervisor::start(
        SupervisorSpec::new("sh-snap-sup", Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let e = s.addr(9);
    e.cast(SaverMsg::Add(5)).unwrap();
    assert_eq!(e.call(SaverMsg::Get).await.unwrap(), 5);
    // Idle: exported, not active, its snapshot kept.
    let exported = timeout(PATIENCE, exports.recv()).await.unwrap().unwrap();
    assert_eq!(exported, 5);
    assert!(!s.is_active(&9));
    assert_eq!(s.stats().snapshots, 1);
    // The next message restores it.
    e.cast(SaverMsg::Add(1)).unwrap();
    assert_eq!(e.call(SaverMsg::Get).await.unwrap(), 6);
    assert_eq!(s.stats().snapshots, 0);
    sup.shutdown().await;
    // The shutdown passivated it again: its snapshot is kept.
    assert_eq!(timeout(PATIENCE, exports.recv()).await.unwrap().unwrap(), 6);
    assert_eq!(s.stats().snapshots, 1);
}

/// A counter that checkpoints when asked, and crashes when asked.
#[derive(Clone)]
struct Checkpointer;

enum CkptMsg {
    Add(u64),
    Save(ReplyPort<Result<u64, CheckpointError>>),
    Crash,
    Get(ReplyPort<u64>),
}

impl Actor for Checkpointer {
    type Msg = CkptMsg;
    type State = u64;
    type Args = ();
    async fn init(&self, _: &Addr<CkptMsg>, (): ()) -> Result<u64, ActorError> {
        Ok(0)
    }
    async fn handle(&self, _: &Addr<CkptMsg>, msg: CkptMsg, n: &mut u64) -> Result<(), ActorError> {
        match msg {
            CkptMsg::Add(k) => *n += k,
            CkptMsg::Save(reply) => {
                let _ = reply.send(checkpoint(&*n));
            }
            CkptMsg::Crash => return Err("asked to crash".into()),
            CkptMsg::Get(reply) => {
                let _ = reply.send(*n);
            }
        }
        Ok(())
    }
}

impl Handoff for Checkpointer {
    type Snapshot = u64;
    fn export(&self, n: u64) -> u64 {
        n
    }
    async fn restore(&self, _: &Addr<CkptMsg>, n: u64, (): ()) -> Result<u64, ActorError> {
        Ok(n)
    }
}

#[tokio::test]
async fn an_entity_restarts_from_its_checkpoint_after_a_crash_and_one_over_the_limit_is_a_typed_error()
 {
    // 2 bytes: a u64 below 16,384 (postcard's varint); 100,005 takes 3.
    let spec = ShardedSpec::new("sh-ckpt", Checkpointer, |_: &u64| ())
        .handoff()
        .checkpoint_limit(2);
    let s = Sharded::new(spec);
    let sup = Supervisor::start(
        SupervisorSpec::new("sh-ckpt-sup", Strategy::OneForOne).child(s.child_spec()),
    )
    .await
    .unwrap();
    let e = s.addr(1);
    e.cast(CkptMsg::Add(5)).unwrap();
    assert_eq!(e.call(CkptMsg::Save).await.unwrap().unwrap(), 1);
    e.cast(CkptMsg::Add(2)).unwrap();
    assert_eq!(e.call(CkptMsg::Get).await.unwrap(), 7);
    // The crash drops the state: the next message starts it from its checkpoint.
    e.cast(CkptMsg::Crash).unwrap();
    assert_eq!(e.call(CkptMsg::Get).await.unwrap(), 5);
    assert_eq!(s.stats().crashed, 1);
    e.cast(CkptMsg::Add(100_000)).unwrap();
    let too_large = e.call(CkptMsg::Save).await.unwrap();
    assert!(
        matches!(
            too_large,
            Err(CheckpointError::TooLarge { size: 3, limit: 2 })
        ),
        "{too_large:?}"
    );
    // The refused one did not replace the last.
    assert_eq!(s.stats().checkpoints, 1);
    e.cast(CkptMsg::Crash).unwrap();
    assert_eq!(e.call(CkptMsg::Get).await.unwrap(), 5);
    // Outside an entity's handler there is nothing to checkpoint.
    assert!(matches!(checkpoint(&5u64), Err(CheckpointError::NotAChild)));
    sup.shutdown().await;
}
