//! What the benches share: the same actor written for Foundation and for raw ractor, and
//! each workload as a fixture with `ours(n)` and `raw(n)`, timing `n` operations. The
//! criterion bench (`actors.rs`) and the paired-ratio bench (`paired.rs`) run exactly
//! these.

#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundation_actors::prelude::*;
use ractor::{ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::{Mutex, mpsc};

pub enum Msg {
    Add(u64),
    Get(ReplyPort<u64>),
    Crash,
}

#[derive(Clone)]
pub struct Counter;

impl Actor for Counter {
    type Msg = Msg;
    type State = u64;
    type Args = ();
    async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<u64, ActorError> {
        Ok(0)
    }
    async fn handle(&self, _: &Addr<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorError> {
        match msg {
            Msg::Add(k) => *n += k,
            Msg::Get(r) => {
                let _ = r.send(*n);
            }
            Msg::Crash => return Err("crash".into()),
        }
        Ok(())
    }
}

/// The same counter derived with `#[actor]`: its handle is what users call.
#[derive(Clone, Default)]
pub struct GenCounter {
    n: u64,
}

#[actor(vis = pub)]
impl GenCounter {
    #[cast]
    fn add(&mut self, k: u64) {
        self.n += k;
    }

    #[call]
    fn get(&self) -> u64 {
        self.n
    }
}

pub enum RawMsg {
    Add(u64),
    Get(RpcReplyPort<u64>),
    Crash,
}
// ractor's `cluster` feature is on in this workspace: raw ractor needs this impl.
impl ractor::Message for RawMsg {}

pub struct RawCounter;

impl ractor::Actor for RawCounter {
    type Msg = RawMsg;
    type State = u64;
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<RawMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }
    async fn handle(
        &self,
        _: ActorRef<RawMsg>,
        msg: RawMsg,
        n: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RawMsg::Add(k) => *n += k,
            RawMsg::Get(r) => {
                let _ = r.send(*n);
            }
            RawMsg::Crash => return Err("crash".into()),
        }
        Ok(())
    }
}

/// A hand-written ractor supervisor: respawns a failed child and hands the new ref over.
pub struct RawSupervisor;

pub enum RawSupMsg {}
impl ractor::Message for RawSupMsg {}

impl ractor::Actor for RawSupervisor {
    type Msg = RawSupMsg;
    type State = mpsc::UnboundedSender<ActorRef<RawMsg>>;
    type Arguments = mpsc::UnboundedSender<ActorRef<RawMsg>>;
    async fn pre_start(
        &self,
        me: ActorRef<RawSupMsg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let (child, _) = ractor::Actor::spawn_linked(None, RawCounter, (), me.get_cell()).await?;
        let _ = tx.send(child);
        Ok(tx)
    }
    async fn handle(
        &self,
        _: ActorRef<RawSupMsg>,
        msg: RawSupMsg,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {}
    }
    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<RawSupMsg>,
        evt: SupervisionEvent,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(..) = evt {
            let (child, _) =
                ractor::Actor::spawn_linked(None, RawCounter, (), me.get_cell()).await?;
            let _ = tx.send(child);
        }
        Ok(())
    }
}

/// An empty supervisor for raw spawns to link to.
pub struct RawParent;
impl ractor::Actor for RawParent {
    type Msg = RawSupMsg;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<RawSupMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<RawSupMsg>,
        msg: RawSupMsg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match msg {}
    }
    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<RawSupMsg>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// A workload run the same way for Foundation and for raw ractor.
pub trait Workload: Send + Sync + 'static {
    /// Foundation doing `n` operations; the time they took.
    fn ours(&self, n: u64) -> impl Future<Output = Duration> + Send;
    /// Raw ractor doing the same.
    fn raw(&self, n: u64) -> impl Future<Output = Duration> + Send;
    /// Stops what the workload started.
    fn teardown(&self) -> impl Future<Output = ()> + Send;
}

/// Tell: `n` casts, then one call so every cast has been handled.
pub struct Tell {
    sup: Supervisor,
    ours: Addr<Msg>,
    raw: ActorRef<RawMsg>,
}

impl Tell {
    pub async fn setup() -> Arc<Self> {
        let spec = ChildSpec::new("tell", Counter, ());
        let ours = spec.addr();
        let sup =
            Supervisor::start(SupervisorSpec::new("bench-tell", Strategy::OneForOne).child(spec))
                .await
                .unwrap();
        let (raw, _) = ractor::Actor::spawn(None, RawCounter, ()).await.unwrap();
        Arc::new(Self { sup, ours, raw })
    }
}

impl Tell {
    /// `ours(n)` with a context current: every message carries it, and each is handled
    /// under a child context and its own `tracing` span.
    pub async fn ours_in_context(&self, n: u64) -> Duration {
        Context::new().scope(self.ours(n)).await
    }
}

/// Tell with a context current on our side (raw ractor has no context to carry).
pub struct TellInContext(pub Arc<Tell>);

impl Workload for TellInContext {
    async fn ours(&self, n: u64) -> Duration {
        self.0.ours_in_context(n).await
    }

    async fn raw(&self, n: u64) -> Duration {
        self.0.raw(n).await
    }

    async fn teardown(&self) {
        self.0.teardown().await;
    }
}

impl Workload for Tell {
    async fn ours(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.ours.cast(Msg::Add(1)).unwrap();
        }
        self.ours.call(Msg::Get).await.unwrap();
        t.elapsed()
    }

    async fn raw(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.raw.cast(RawMsg::Add(1)).unwrap();
        }
        self.raw.call(RawMsg::Get, None).await.unwrap();
        t.elapsed()
    }

    async fn teardown(&self) {
        self.sup.shutdown().await;
        self.raw.stop(None);
    }
}

/// Call: `n` sequential calls.
pub struct Call(Tell);

impl Call {
    pub async fn setup() -> Arc<Self> {
        let tell = Tell::setup().await;
        Arc::new(Self(Arc::try_unwrap(tell).ok().unwrap()))
    }
}

impl Workload for Call {
    async fn ours(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.0.ours.call(Msg::Get).await.unwrap();
        }
        t.elapsed()
    }

    async fn raw(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.0
                .raw
                .call(RawMsg::Get, Some(Duration::from_secs(5)))
                .await
                .unwrap();
        }
        t.elapsed()
    }

    async fn teardown(&self) {
        self.0.teardown().await;
    }
}

/// Children started into one supervisor before it is replaced (untimed). Keeps the
/// working set steady: growing one supervisor to thousands of children measures page
/// faults and heap growth more than the start itself.
pub const START_CHUNK: u64 = 100;

/// Supervised child start: `n` starts, in chunks of [`START_CHUNK`] into a fresh
/// supervisor (teardown untimed and fully awaited on both sides).
pub struct Start;

impl Start {
    /// Anonymous children, as OTP's dynamic children (and as a raw spawn: no id).
    pub async fn ours(n: u64) -> Duration {
        Self::foundation(n, |_| ChildSpec::anonymous(Counter, ())).await
    }

    /// Children with a unique id each (formatted, then reserved).
    pub async fn ours_named(n: u64) -> Duration {
        Self::foundation(n, |i| ChildSpec::new(format!("c{i}"), Counter, ())).await
    }

    /// Anonymous children started by `start_child_typed`: the start is not boxed.
    pub async fn ours_typed(n: u64) -> Duration {
        Self::run(n, |_| ChildSpec::anonymous(Counter, ()), true).await
    }

    async fn foundation(n: u64, spec: impl Fn(u64) -> ChildSpec<Msg>) -> Duration {
        Self::run(n, spec, false).await
    }

    /// `n` starts of `spec(i)` (by `start_child_typed` if `typed`), in chunks into fresh
    /// dynamic supervisors.
    async fn run(n: u64, spec: impl Fn(u64) -> ChildSpec<Msg>, typed: bool) -> Duration {
        let mut timed = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let chunk = left.min(START_CHUNK);
            left -= chunk;
            let sup = DynamicSupervisor::start("bench-start", None).await.unwrap();
            let t = Instant::now();
            for i in 0..chunk {
                if typed {
                    sup.start_child_typed::<Counter>(spec(i)).await.unwrap();
                } else {
                    sup.start_child(spec(i)).await.unwrap();
                }
            }
            timed += t.elapsed();
            // Every child has stopped when this returns.
            sup.shutdown().await;
        }
        timed
    }

    pub async fn raw(n: u64) -> Duration {
        let mut timed = Duration::ZERO;
        let mut left = n;
        while left > 0 {
            let chunk = left.min(START_CHUNK);
            left -= chunk;
            let (parent, _) = ractor::Actor::spawn(None, RawParent, ()).await.unwrap();
            let mut children = Vec::with_capacity(chunk as usize);
            let t = Instant::now();
            for _ in 0..chunk {
                let (child, _) =
                    ractor::Actor::spawn_linked(None, RawCounter, (), parent.get_cell())
                        .await
                        .unwrap();
                children.push(child);
            }
            timed += t.elapsed();
            // ractor kills linked children asynchronously: wait for each, so the
            // teardown does not run into the next timed chunk.
            parent.stop_and_wait(None, None).await.unwrap();
            for child in children {
                child.get_cell().wait(None).await.unwrap();
            }
        }
        timed
    }
}

/// Where raw ractor's supervisor hands over new incarnations, and the live one.
type RawIncarnations = (
    mpsc::UnboundedReceiver<ActorRef<RawMsg>>,
    Option<ActorRef<RawMsg>>,
);

/// Restart latency: `n` times, crash the child and wait for the new incarnation to answer
/// a call. Raw ractor restarts by hand: its supervisor respawns and hands the new ref over.
pub struct Restart {
    sup: Supervisor,
    ours: Addr<Msg>,
    raw_sup: ActorRef<RawSupMsg>,
    /// The receiver of new raw incarnations, and the live one between runs.
    raw: Mutex<RawIncarnations>,
}

impl Restart {
    pub async fn setup() -> Arc<Self> {
        let spec = ChildSpec::new("restart", Counter, ());
        let ours = spec.addr();
        let sup = Supervisor::start(
            SupervisorSpec::new("bench-restart", Strategy::OneForOne)
                .intensity(u32::MAX, Duration::from_millis(1))
                .child(spec),
        )
        .await
        .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let (raw_sup, _) = ractor::Actor::spawn(None, RawSupervisor, tx).await.unwrap();
        Arc::new(Self {
            sup,
            ours,
            raw_sup,
            raw: Mutex::new((rx, None)),
        })
    }
}

impl Workload for Restart {
    async fn ours(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.ours.cast(Msg::Crash).unwrap();
            // Held by the address until the new incarnation answers.
            self.ours.call(Msg::Get).await.unwrap();
        }
        t.elapsed()
    }

    async fn raw(&self, n: u64) -> Duration {
        let mut guard = self.raw.lock().await;
        let (rx, live) = &mut *guard;
        let mut child = match live.take() {
            Some(c) => c,
            None => rx.recv().await.unwrap(),
        };
        let t = Instant::now();
        for _ in 0..n {
            child.cast(RawMsg::Crash).unwrap();
            child = rx.recv().await.unwrap();
            child.call(RawMsg::Get, None).await.unwrap();
        }
        let elapsed = t.elapsed();
        *live = Some(child);
        elapsed
    }

    async fn teardown(&self) {
        self.sup.shutdown().await;
        self.raw_sup.stop(None);
    }
}

/// A generated handle (`#[actor]`) against raw ractor: `n` casts then one call (`tell`),
/// or `n` calls (`call`). `hand` runs the hand-written Foundation actor instead of raw
/// ractor, to isolate what the macro adds.
pub struct Handle {
    /// The hand-written Foundation actor and raw ractor, as the `Call` workload has them.
    hand_and_raw: Call,
    gen_sup: Supervisor,
    generated: GenCounterRef,
}

impl Handle {
    pub async fn setup() -> Arc<Self> {
        let hand_and_raw = Arc::try_unwrap(Call::setup().await).ok().unwrap();
        let spec = GenCounter::child_spec(GenCounter::default());
        let generated = GenCounterRef::from(spec.addr());
        let gen_sup =
            Supervisor::start(SupervisorSpec::new("bench-handle", Strategy::OneForOne).child(spec))
                .await
                .unwrap();
        Arc::new(Self {
            hand_and_raw,
            gen_sup,
            generated,
        })
    }

    pub async fn generated_tell(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.generated.add(1).await.unwrap();
        }
        self.generated.get().await.unwrap();
        t.elapsed()
    }

    pub async fn generated_call(&self, n: u64) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            self.generated.get().await.unwrap();
        }
        t.elapsed()
    }

    pub async fn hand_tell(&self, n: u64) -> Duration {
        self.hand_and_raw.0.ours(n).await
    }

    pub async fn hand_call(&self, n: u64) -> Duration {
        self.hand_and_raw.ours(n).await
    }

    pub async fn hand_ctx(&self, n: u64) -> Duration {
        self.hand_and_raw.0.ours_in_context(n).await
    }

    pub async fn raw_tell(&self, n: u64) -> Duration {
        self.hand_and_raw.0.raw(n).await
    }

    pub async fn raw_call(&self, n: u64) -> Duration {
        self.hand_and_raw.raw(n).await
    }

    pub async fn teardown(&self) {
        self.gen_sup.shutdown().await;
        self.hand_and_raw.teardown().await;
    }
}

/// Terminating one child of a dynamic supervisor that holds `children` of them, by its
/// address (as OTP's `terminate_child(Sup, Pid)` of a `simple_one_for_one` child): `n`
/// times, a new child is started (untimed) and the oldest terminated (timed), so the
/// supervisor keeps holding `children`. Beside the same at another count, it shows whether
/// a termination costs more the more children there are: terminating 10,000 one by one
/// was quadratic before the supervisor found children through indexes (commit 0076a60: a
/// scan per lookup, another per exit event, a shift per removal).
pub struct Terminate {
    sup: DynamicSupervisor,
    /// The children, oldest first.
    children: Mutex<std::collections::VecDeque<Addr<Msg>>>,
}

impl Terminate {
    pub async fn setup(children: usize) -> Arc<Self> {
        let sup = DynamicSupervisor::start("bench-terminate", None)
            .await
            .unwrap();
        let mut held = std::collections::VecDeque::with_capacity(children + 1);
        for _ in 0..children {
            held.push_back(
                sup.start_child(ChildSpec::anonymous(Counter, ()))
                    .await
                    .unwrap(),
            );
        }
        Arc::new(Self {
            sup,
            children: Mutex::new(held),
        })
    }

    pub async fn ours(&self, n: u64) -> Duration {
        let mut held = self.children.lock().await;
        let mut timed = Duration::ZERO;
        for _ in 0..n {
            let new = self
                .sup
                .start_child(ChildSpec::anonymous(Counter, ()))
                .await
                .unwrap();
            held.push_back(new);
            let oldest = held.pop_front().unwrap();
            let t = Instant::now();
            self.sup.terminate_child_by_addr(&oldest).await.unwrap();
            timed += t.elapsed();
        }
        timed
    }

    pub async fn teardown(&self) {
        self.sup.shutdown().await;
    }
}
