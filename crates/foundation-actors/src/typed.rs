//! Actors written as a state type with one method per message: the runtime side of
//! [`#[actor]`](macro@crate::actor).
//!
//! `#[actor]` turns an `impl` block into a [`TypedActor`]: it generates the message enum,
//! a typed handle (`CounterRef` for `Counter`) whose methods send the messages, and an
//! ordinary [`Actor`] whose one `async` handler is the dispatch `match` (so supervisors,
//! stable addresses and the context apply unchanged, at the cost of a hand-written actor).
//! This module holds the generic rest, written once: the spawn functions, [`Running`]
//! (the state of a running process), and [`Ctx`], what a handler gets to reach its own
//! process: its handle, timers, supervision events, a stop.
//!
//! # Examples
//!
//! ```
//! use foundation_actors::prelude::*;
//! use std::time::Duration;
//!
//! #[derive(Clone, Default)]
//! struct Counter { total: u64, ticks: u32 }
//!
//! struct Tick;
//!
//! #[actor]
//! impl Counter {
//!     /// Adds `n`.
//!     #[cast]
//!     fn add(&mut self, n: u64) { self.total += n }
//!
//!     /// The total so far.
//!     #[call]
//!     fn total(&self) -> u64 { self.total }
//!
//!     /// Starts a timer that ticks once.
//!     #[cast]
//!     fn arm(&mut self, ctx: &Ctx<Self>) { ctx.send_after(Duration::from_millis(1), Tick); }
//!
//!     #[info]
//!     fn tick(&mut self, _: Tick) { self.ticks += 1 }
//!
//!     #[call]
//!     fn ticks(&self) -> u32 { self.ticks }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sup = DynamicSupervisor::start("counters", None).await?;
//! let c: CounterRef = Counter::spawn_supervised(&sup, Counter::default()).await?;
//! c.add(5).await?;
//! assert_eq!(c.total().await?, 5);
//! assert_eq!(c.with_timeout(Duration::from_secs(1)).total().await?, 5);
//! sup.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::AbortHandle;

use crate::actor::Actor;
use crate::addr::Addr;
use crate::error::{ActorError, SpawnError, SupervisorError};
use crate::supervisor::{ChildSpec, DynamicSupervisor, Supervisor, SupervisorEvent};

/// An actor written as its state plus handlers; implemented by `#[actor]`.
///
/// It names what `#[actor]` generates for the state type: the message enum, the handle,
/// and the [`Actor`] that runs it (one `async` dispatch per message, as a hand-written
/// actor has, with the state in a [`Running`]). The spawn functions of this module start
/// any `TypedActor`.
pub trait TypedActor: Sized + Send + 'static {
    /// The generated message enum.
    type Msg: Send + 'static;
    /// What the actor starts from: `Self` unless the impl has an `#[init]` hook, whose
    /// argument it is then.
    type Args: Send + 'static;
    /// The generated typed handle.
    type Ref: From<Addr<Self::Msg>> + Clone + Send + Sync + 'static;
    /// The type's name: the default child id under a static supervisor.
    const NAME: &'static str;

    /// The generated actor that runs it (a private type, hence `impl Actor`).
    fn actor() -> impl Actor<Msg = Self::Msg, Args = Self::Args> + Clone;
}

/// The state of a running `#[actor]` process: the user's state and its [`Ctx`].
#[derive(Debug)]
pub struct Running<T: TypedActor> {
    state: T,
    ctx: Ctx<T>,
}

/// Support for the code `#[actor]` generates; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::{Addr, Ctx, Running, TypedActor};

    /// The context of a new incarnation.
    pub fn ctx<T: TypedActor>(me: &Addr<T::Msg>) -> Ctx<T> {
        Ctx::new(me.clone())
    }

    /// The running state of an incarnation.
    pub fn running<T: TypedActor>(state: T, ctx: Ctx<T>) -> Running<T> {
        Running { state, ctx }
    }

    /// The state and the context, for a handler; `me`, the process's address, given back
    /// to a context that hibernated.
    #[inline]
    pub fn parts<'r, T: TypedActor>(
        r: &'r mut Running<T>,
        me: &Addr<T::Msg>,
    ) -> (&'r mut T, &'r Ctx<T>) {
        if r.ctx.addr.is_none() {
            r.ctx.addr = Some(me.clone());
        }
        (&mut r.state, &r.ctx)
    }

    /// [`Actor::hibernate`](crate::Actor::hibernate) of an `#[actor]`: drops the
    /// context's own address (its timers keep theirs).
    #[inline]
    pub fn hibernate<T: TypedActor>(r: &mut Running<T>) {
        r.ctx.addr = None;
    }

    /// The user's state, out of an incarnation that ends (its state handed over by
    /// `#[actor(handoff)]`); its context is dropped, which cancels its timers.
    pub fn into_state<T: TypedActor>(r: Running<T>) -> T {
        r.state
    }

    /// A type `#[actor(handoff)]` can hand over: it is its own snapshot.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be handed over: `#[actor(handoff)]` makes the actor's type its own snapshot, so it must implement serde's `Serialize` and `Deserialize`",
        label = "this actor's state is not serializable",
        note = "derive them on the type: `#[derive(serde::Serialize, serde::Deserialize)]`, or drop `handoff` (its state then starts from `#[init]` after a move)"
    )]
    pub trait HandoffState: serde::Serialize + serde::de::DeserializeOwned {}

    impl<T: serde::Serialize + serde::de::DeserializeOwned> HandoffState for T {}

    /// Compile-time check that an `#[actor(handoff)]` type is its own snapshot.
    pub const fn assert_handoff_state<T: HandoffState>() {}
}

/// What a handler may return: nothing, or a `Result` whose error crashes the actor (its
/// supervisor sees [`ExitReason::Failed`](crate::ExitReason::Failed)). Replies of
/// `#[call]` handlers are values, never crashes: a `Result` there is sent back as is.
pub trait HandlerResult {
    /// `Ok(())`, or the error that crashes the actor.
    fn into_result(self) -> Result<(), ActorError>;
}

impl HandlerResult for () {
    #[inline]
    fn into_result(self) -> Result<(), ActorError> {
        Ok(())
    }
}

impl<E: Into<ActorError>> HandlerResult for Result<(), E> {
    #[inline]
    fn into_result(self) -> Result<(), ActorError> {
        self.map_err(Into::into)
    }
}

/// What an `#[init]` hook may return: the state, or a `Result` of it whose error fails the
/// start ([`SpawnError::Init`]).
pub trait InitResult<T> {
    /// The state, or why it could not be built.
    fn into_result(self) -> Result<T, ActorError>;
}

impl<T> InitResult<T> for T {
    #[inline]
    fn into_result(self) -> Result<T, ActorError> {
        Ok(self)
    }
}

impl<T, E: Into<ActorError>> InitResult<T> for Result<T, E> {
    #[inline]
    fn into_result(self) -> Result<T, ActorError> {
        self.map_err(Into::into)
    }
}

/// What a handler gets to reach its own process: its handle, timers, supervision events
/// and a stop. Write it as the last parameter of any handler or hook: `ctx: &Ctx<Self>`.
///
/// Timers and forwarders started through a `Ctx` belong to the current incarnation: they
/// are cancelled when it ends (a stop, a crash or a kill), as Erlang's timers die with the
/// process they were sent to. The next incarnation starts its own from its `#[init]`.
pub struct Ctx<T: TypedActor> {
    /// `None` only while the process hibernates ([`Actor::hibernate`]): no handler runs
    /// then, and the next one is given the address again ([`__private::parts`]).
    addr: Option<Addr<T::Msg>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl<T: TypedActor> fmt::Debug for Ctx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl<T: TypedActor> Drop for Ctx<T> {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|e| e.into_inner());
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}

/// A timer or forwarder started by a [`Ctx`]; [`Timer::cancel`] stops it. Dropping the
/// value does not.
#[derive(Debug, Clone)]
pub struct Timer(AbortHandle);

impl Timer {
    /// Stops the timer; a message it already sent stays sent.
    pub fn cancel(&self) {
        self.0.abort();
    }

    /// Whether its task has ended: a one-shot timer fired, an interval or a forwarder
    /// found the process stopped for good, or the timer was cancelled *and* the runtime
    /// has since dropped its task. Right after [`Timer::cancel`] it may still be `false`:
    /// the task is torn down the next time the runtime gets to it.
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl<T: TypedActor> Ctx<T> {
    fn new(addr: Addr<T::Msg>) -> Self {
        Self {
            addr: Some(addr),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// A typed handle to this process (stable across its restarts).
    pub fn me(&self) -> T::Ref {
        T::Ref::from(self.addr().clone())
    }

    /// This process's address.
    pub fn addr(&self) -> &Addr<T::Msg> {
        match &self.addr {
            Some(addr) => addr,
            // A `Ctx` is reached only through a handler, hook or `#[init]`, and each is
            // given its address first (`__private::parts`, `Ctx::new`).
            None => unreachable!("a hibernating process's context was used"),
        }
    }

    /// Asks this process to stop once the current message is handled: a graceful stop, so
    /// `#[terminate]` runs; a supervisor treats it as a normal exit.
    pub fn stop(&self) {
        self.addr().stop(None);
    }

    /// Sends `msg` to this process after `delay` (Erlang's `Process.send_after`). Usually
    /// an `#[info]` message: the generated enum converts from each `#[info]` type. A
    /// `delay` too long to be a deadline (`Duration::MAX`) never fires.
    pub fn send_after(&self, delay: Duration, msg: impl Into<T::Msg>) -> Timer {
        let addr = self.addr().clone();
        let msg = msg.into();
        self.track(tokio::spawn(async move {
            // tokio's `sleep` does not panic here either, but caps the delay at about 30
            // years and then fires (at once under paused test time); as in
            // `send_interval`, a delay no `Instant` can hold means never.
            match tokio::time::Instant::now().checked_add(delay) {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
            // A process that stopped for good has nobody left to tell.
            let _ = addr.cast(msg);
        }))
    }

    /// Sends `make()` to this process every `period`, the first after one period (`:timer.send_interval`).
    /// A tick is skipped, not queued, while the process restarts with a full backlog.
    ///
    /// A zero `period` (say, read from a configuration) is taken as 1 ms, tokio's timer
    /// resolution: a timer cannot tick more often. A `period` too long to be a deadline
    /// (`Duration::MAX`) never fires; the timer waits until it is cancelled.
    pub fn send_interval<M>(&self, period: Duration, make: impl Fn() -> M + Send + 'static) -> Timer
    where
        M: Into<T::Msg>,
    {
        let addr = self.addr().clone();
        // tokio's `interval_at` panics on a zero period, inside this detached task.
        let period = period.max(Duration::from_millis(1));
        self.track(tokio::spawn(async move {
            let Some(first) = tokio::time::Instant::now().checked_add(period) else {
                return std::future::pending().await;
            };
            let mut every = tokio::time::interval_at(first, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(crate::SendError::Stopped(_)) = addr.cast(make().into()) {
                    return;
                }
            }
        }))
    }

    /// Forwards `sup`'s events ([`Supervisor::subscribe`]) to this process, where an
    /// `#[info]` handler taking a [`SupervisorEvent`] gets them (as a process linked to
    /// children gets their exits in Erlang). Events from before the call are not seen; if
    /// this process falls more than 1,024 events behind, the oldest are skipped with a
    /// warning.
    pub fn watch(&self, sup: &(impl AsRef<Supervisor> + ?Sized)) -> Timer
    where
        SupervisorEvent: Into<T::Msg>,
    {
        let mut events = sup.as_ref().subscribe();
        let addr = self.addr().clone();
        self.track(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if let Err(crate::SendError::Stopped(_)) = addr.cast(ev.into()) {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            skipped = n,
                            "a watcher fell behind its supervisor's events"
                        );
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }))
    }

    fn track(&self, task: tokio::task::JoinHandle<()>) -> Timer {
        let handle = task.abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.clone());
        Timer(handle)
    }
}

/// Starts `T` with no supervisor (`GenServer.start`).
///
/// # Errors
///
/// [`SpawnError::Init`] if its `init` fails or panics.
pub async fn spawn<T: TypedActor>(args: T::Args) -> Result<T::Ref, SpawnError> {
    crate::actor::spawn(T::actor(), args)
        .await
        .map(T::Ref::from)
}

/// A child spec for `T` with id `id`; `args` is cloned for each restart.
pub fn child_spec<T>(id: impl Into<String>, args: T::Args) -> ChildSpec<T::Msg>
where
    T: TypedActor,
    T::Args: Clone + Sync,
{
    ChildSpec::new(id, T::actor(), args)
}

/// A child spec for `T` without an id, for dynamic supervisors (many alike, terminated
/// by address); `args` is cloned for each restart. Adjust it as any spec, e.g.
/// `.restart(Restart::Temporary)`.
pub fn anonymous_child_spec<T>(args: T::Args) -> ChildSpec<T::Msg>
where
    T: TypedActor,
    T::Args: Clone + Sync,
{
    ChildSpec::anonymous(T::actor(), args)
}

/// Starts `T` under `sup`: anonymous under a dynamic supervisor (start as many as you
/// like), with id [`TypedActor::NAME`] under a static one (a second start fails with
/// [`SpawnError::DuplicateId`]; use [`child_spec`] with another id).
///
/// # Errors
///
/// As [`Supervisor::start_child`].
pub async fn spawn_supervised<T>(
    sup: &(impl AsRef<Supervisor> + ?Sized),
    args: T::Args,
) -> Result<T::Ref, SupervisorError>
where
    T: TypedActor,
    T::Args: Clone + Sync,
{
    let sup = sup.as_ref();
    let spec = if sup.is_dynamic() {
        anonymous_child_spec::<T>(args)
    } else {
        child_spec::<T>(T::NAME, args)
    };
    sup.start_child(spec).await.map(T::Ref::from)
}

impl AsRef<Supervisor> for Supervisor {
    fn as_ref(&self) -> &Supervisor {
        self
    }
}

impl AsRef<Supervisor> for DynamicSupervisor {
    fn as_ref(&self) -> &Supervisor {
        self.handle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio::time::{Instant, timeout};

    /// What a [`Probe`] reports.
    enum Event {
        /// The timer its `init` started.
        Started(Timer),
        /// A tick arrived, at this time.
        Tick(Instant),
    }

    /// The timer a [`Probe`] starts.
    enum Start {
        Interval(Duration),
        After(Duration),
    }

    struct Tick;

    /// Starts one timer and reports it and its ticks.
    struct Probe(mpsc::UnboundedSender<Event>);

    #[crate::actor]
    impl Probe {
        #[init]
        fn start(args: (Start, mpsc::UnboundedSender<Event>), ctx: &Ctx<Self>) -> Self {
            let (start, events) = args;
            let timer = match start {
                Start::Interval(period) => ctx.send_interval(period, || Tick),
                Start::After(delay) => ctx.send_after(delay, Tick),
            };
            events
                .send(Event::Started(timer))
                .expect("the test listens");
            Self(events)
        }

        #[info]
        fn tick(&mut self, _: Tick) {
            let _ = self.0.send(Event::Tick(Instant::now()));
        }
    }

    /// Starts a probe; returns its timer and its events.
    async fn probe(start: Start) -> (Timer, mpsc::UnboundedReceiver<Event>) {
        let (tx, mut events) = mpsc::unbounded_channel();
        spawn::<Probe>((start, tx)).await.expect("the probe starts");
        match events.recv().await {
            Some(Event::Started(timer)) => (timer, events),
            _ => panic!("the probe reports its timer first"),
        }
    }

    /// The next tick's time, or `None` if none comes within `within`.
    async fn next_tick(
        events: &mut mpsc::UnboundedReceiver<Event>,
        within: Duration,
    ) -> Option<Instant> {
        match timeout(within, events.recv()).await {
            Ok(Some(Event::Tick(at))) => Some(at),
            Ok(_) => panic!("the probe stopped or started a second timer"),
            Err(_) => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_period_ticks_every_millisecond() {
        let started = Instant::now();
        let (timer, mut events) = probe(Start::Interval(Duration::ZERO)).await;
        let mut ticks = Vec::new();
        for _ in 0..3 {
            let at = next_tick(&mut events, Duration::from_secs(1))
                .await
                .expect("a zero-period interval ticks");
            ticks.push(at);
        }
        assert_eq!(ticks[0] - started, Duration::from_millis(1));
        assert!(
            ticks
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::from_millis(1)),
            "{ticks:?}"
        );
        assert!(!timer.is_finished());
        timer.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_period_or_delay_past_the_end_of_time_never_fires() {
        let year = Duration::from_secs(365 * 24 * 3600);
        for start in [Start::Interval(Duration::MAX), Start::After(Duration::MAX)] {
            let (timer, mut events) = probe(start).await;
            assert_eq!(next_tick(&mut events, year).await, None);
            // The task did not panic on the overflow: it waits to be cancelled.
            assert!(!timer.is_finished());
            timer.cancel();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_timer_is_finished_once_the_runtime_drops_its_task() {
        let (timer, mut events) = probe(Start::After(Duration::from_secs(60))).await;
        timer.cancel();
        // `is_finished` may still be `false` here; the runtime drops the task the next
        // time it gets to it.
        tokio::task::yield_now().await;
        assert!(timer.is_finished());
        assert_eq!(next_tick(&mut events, Duration::from_secs(120)).await, None);
    }
}
