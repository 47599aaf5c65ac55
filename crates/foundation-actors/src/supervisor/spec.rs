//! What a supervisor is told: strategies, restart types, shutdown policies, child specs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorCell;

use crate::actor::{Actor, Adapter};
use crate::addr::{Addr, DEFAULT_RESTART_BACKLOG};
use crate::error::SpawnError;

/// Which children a supervisor restarts when one exits and must be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only the child that exited.
    #[default]
    OneForOne,
    /// All children: the others are shut down (in reverse start order), then all are
    /// started again in order.
    OneForAll,
    /// The child that exited and every child started after it.
    RestForOne,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OneForOne => "one_for_one",
            Self::OneForAll => "one_for_all",
            Self::RestForOne => "rest_for_one",
        })
    }
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only after an abnormal exit (an error, a panic, a kill); not after a normal stop.
    Transient,
    /// Never; the child is forgotten when it exits.
    Temporary,
}

/// How a child is shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Killed at once; its `terminate` does not run.
    Brutal,
    /// Asked to stop (it finishes the message in hand and runs `terminate`), and killed if
    /// it has not stopped within the duration.
    Timeout(Duration),
    /// Asked to stop, and waited for however long it takes (the default for supervisors).
    Infinity,
}

impl Default for Shutdown {
    /// OTP's default for workers: 5 seconds.
    fn default() -> Self {
        Self::Timeout(Duration::from_secs(5))
    }
}

/// Whether a child is a worker or a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// Any actor that is not a supervisor.
    Worker,
    /// A supervisor.
    Supervisor,
}

/// Restart intensity: at most `max_restarts` restarts within `period`. One more and the
/// supervisor shuts its children down and exits, so its own supervisor sees the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within `period`.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// OTP's default: 1 restart in 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 1,
            period: Duration::from_secs(5),
        }
    }
}

/// Delay before a restart: exponential from `min` to `max`, each delay varied by up to
/// `jitter` (a fraction) either way. Restarts of a child that has run for longer than
/// `max` since its last restart start again from `min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The largest delay.
    pub max: Duration,
    /// How much each delay may vary, as a fraction of it (0.0 to 1.0).
    pub jitter: f64,
}

impl Backoff {
    /// An exponential backoff from `min` to `max` with 10 % jitter.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            jitter: 0.1,
        }
    }

    /// The delay before the restart that follows `consecutive` earlier quick restarts.
    pub fn delay(&self, consecutive: u32) -> Duration {
        let base = self
            .min
            .saturating_mul(2u32.saturating_pow(consecutive.min(31)))
            .min(self.max);
        // Bad input (NaN, a negative or huge jitter, durations near the maximum) must not
        // panic inside the supervisor: clamp, and fall back to `max` on overflow.
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
        Duration::try_from_secs_f64(base.as_secs_f64() * factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A child with its type erased, as the supervisor holds it. Shared (not copied) when the
/// spec is cloned, so a restarted supervisor restarts its children behind the same
/// addresses.
pub(crate) trait ErasedChild: Send + Sync {
    /// Spawns a new incarnation linked to `sup` and publishes it in the child's address.
    fn start(&self, id: &Arc<str>, sup: ActorCell) -> BoxFuture<Result<ActorCell, SpawnError>>;
    /// The child's address, as the supervisor drives it.
    fn addr(&self) -> &dyn AddrControl;
    /// The child's handle, if it is a supervisor (for walking the tree).
    fn as_supervisor(&self) -> Option<super::Supervisor>;
    /// The child as `Any`, for a start that knows its actor type
    /// ([`Supervisor::start_child_typed`](super::Supervisor::start_child_typed)).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// What a supervisor does to a child's address, whatever its message type.
pub(crate) trait AddrControl: Send + Sync {
    fn mark_restarting(&self);
    fn mark_stopped(&self);
    fn incarnation(&self) -> u64;
    /// Identifies the address (the address of its slot).
    fn slot_key(&self) -> usize;
    /// The address's public key.
    fn key(&self) -> crate::addr::AddrKey;
    fn register(&self, name: &str) -> Result<(), SpawnError>;
    fn unregister(&self, name: &str);
}

impl<M: Send + 'static> AddrControl for Addr<M> {
    fn mark_restarting(&self) {
        Addr::mark_restarting(self);
    }
    fn mark_stopped(&self) {
        Addr::mark_stopped(self);
    }
    fn incarnation(&self) -> u64 {
        Addr::incarnation(self)
    }
    fn slot_key(&self) -> usize {
        Addr::slot_key(self)
    }
    fn key(&self) -> crate::addr::AddrKey {
        Addr::key(self)
    }
    fn register(&self, name: &str) -> Result<(), SpawnError> {
        Addr::register(self, name)
    }
    fn unregister(&self, name: &str) {
        Addr::unregister(self, name);
    }
}

/// Spawns `actor` linked to `sup` and publishes it in `addr`: the one way a child starts.
pub(crate) async fn spawn_into<T, M>(
    id: &str,
    addr: &Addr<M>,
    actor: T,
    args: T::Arguments,
    sup: ActorCell,
) -> Result<ActorCell, SpawnError>
where
    T: ractor::Actor<Msg = crate::addr::Envelope<M>>,
    M: Send + 'static,
{
    publish(
        id,
        addr,
        ractor::Actor::spawn_linked(None, actor, args, sup).await,
        false,
    )
}

/// What ractor's spawn of an incarnation gives.
pub(crate) type Spawned<M> = Result<
    (
        ractor::ActorRef<crate::addr::Envelope<M>>,
        ractor::concurrency::JoinHandle<()>,
    ),
    ractor::SpawnErr,
>;

/// Publishes a spawned incarnation in `addr`, `counted` if it keeps its mailbox's counts
/// (an [`Adapter`]; or maps the spawn's failure).
#[inline]
pub(crate) fn publish<M: Send + 'static>(
    id: &str,
    addr: &Addr<M>,
    spawned: Result<
        (
            ractor::ActorRef<crate::addr::Envelope<M>>,
            ractor::concurrency::JoinHandle<()>,
        ),
        ractor::SpawnErr,
    >,
    counted: bool,
) -> Result<ActorCell, SpawnError> {
    let (actor_ref, _join) = spawned.map_err(|e| SpawnError::from_ractor(id, e))?;
    let cell = actor_ref.get_cell();
    addr.install(actor_ref, counted);
    Ok(cell)
}

/// The start of a new incarnation of `actor`: ractor's spawn, linked to `sup`, then the
/// incarnation published in `addr`.
fn start_actor<A: Actor>(
    id: &Arc<str>,
    addr: &Addr<A::Msg>,
    actor: A,
    args: A::Args,
    sup: ActorCell,
) -> impl Future<Output = Result<ActorCell, SpawnError>> + Send + use<A> {
    let addr = addr.clone();
    let id = id.clone();
    let adapter = Adapter::new(actor, addr.clone());
    let spawn = ractor::Actor::spawn_linked(None, adapter, args, sup);
    futures::FutureExt::map(spawn, move |spawned| publish(&id, &addr, spawned, true))
}

/// A child built afresh by a function for each start ([`ChildSpec::from_fn`]).
struct ActorChild<A: Actor, F> {
    addr: Addr<A::Msg>,
    make: F,
}

impl<A, F> ErasedChild for ActorChild<A, F>
where
    A: Actor,
    F: Fn() -> (A, A::Args) + Send + Sync + 'static,
{
    fn start(&self, id: &Arc<str>, sup: ActorCell) -> BoxFuture<Result<ActorCell, SpawnError>> {
        let (actor, args) = (self.make)();
        // ractor's start future is built outside the boxed one, so the box holds it and
        // little else: under 1 KiB, the allocator serves it from its per-thread cache.
        Box::pin(start_actor(id, &self.addr, actor, args, sup))
    }
    fn addr(&self) -> &dyn AddrControl {
        &self.addr
    }
    fn as_supervisor(&self) -> Option<super::Supervisor> {
        None
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A child started as clones of one actor and its arguments ([`ChildSpec::new`],
/// [`ChildSpec::anonymous`]): a type that can be named, so that a start that knows `A`
/// finds it ([`cloned`]) and runs it without boxing the start.
pub(crate) struct ClonedChild<A: Actor> {
    addr: Addr<A::Msg>,
    actor: A,
    args: A::Args,
}

impl<A> ClonedChild<A>
where
    A: Actor + Clone,
    A::Args: Clone + Sync,
{
    /// ractor's spawn of a new incarnation linked to `sup` (to be published in the
    /// address, counted, once it has started).
    pub(crate) fn spawn(
        &self,
        sup: ActorCell,
    ) -> impl Future<Output = Spawned<A::Msg>> + Send + use<A> {
        ractor::Actor::spawn_linked(
            None,
            Adapter::new(self.actor.clone(), self.addr.clone()),
            self.args.clone(),
            sup,
        )
    }
}

impl<A> ErasedChild for ClonedChild<A>
where
    A: Actor + Clone,
    A::Args: Clone + Sync,
{
    fn start(&self, id: &Arc<str>, sup: ActorCell) -> BoxFuture<Result<ActorCell, SpawnError>> {
        Box::pin(start_actor(
            id,
            &self.addr,
            self.actor.clone(),
            self.args.clone(),
            sup,
        ))
    }
    fn addr(&self) -> &dyn AddrControl {
        &self.addr
    }
    fn as_supervisor(&self) -> Option<super::Supervisor> {
        None
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `entry`'s child, if [`ChildSpec::new`] or [`ChildSpec::anonymous`] made it with an
/// actor of type `A` (for [`Supervisor::start_child_typed`](super::Supervisor::start_child_typed)).
pub(crate) fn cloned<A>(entry: &ChildEntry) -> Option<&ClonedChild<A>>
where
    A: Actor + Clone,
    A::Args: Clone + Sync,
{
    entry.child.as_any().downcast_ref::<ClonedChild<A>>()
}

/// How to start, restart and stop one child, and the stable address it will be reached by.
///
/// # Examples
///
/// ```
/// # use foundation_actors::{Actor, ActorError, Addr, ChildSpec, Restart, Shutdown};
/// # use std::time::Duration;
/// # #[derive(Clone)] struct Worker;
/// # impl Actor for Worker { type Msg = (); type State = (); type Args = ();
/// #   async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> { Ok(()) }
/// #   async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> { Ok(()) } }
/// let spec = ChildSpec::new("worker", Worker, ())
///     .restart(Restart::Transient)
///     .shutdown(Shutdown::Timeout(Duration::from_secs(1)))
///     .name("the-worker");
/// let addr = spec.addr(); // valid before the start and after every restart
/// ```
pub struct ChildSpec<M> {
    pub(crate) entry: ChildEntry,
    pub(crate) addr: Addr<M>,
}

impl<M: Send + 'static> fmt::Debug for ChildSpec<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.entry.id)
            .field("name", &self.entry.name)
            .field("restart", &self.entry.restart)
            .field("shutdown", &self.entry.shutdown)
            .field("kind", &self.entry.kind)
            .finish()
    }
}

impl<M: Send + 'static> ChildSpec<M> {
    /// A permanent worker started as `actor` with `args`, both cloned for each restart.
    pub fn new<A>(id: impl Into<String>, actor: A, args: A::Args) -> Self
    where
        A: Actor<Msg = M> + Clone,
        A::Args: Clone + Sync,
    {
        let id: String = id.into();
        Self::with_child(id.into(), false, |addr| ClonedChild { addr, actor, args })
    }

    /// A permanent worker built afresh by `make` for each start.
    pub fn from_fn<A>(
        id: impl Into<String>,
        make: impl Fn() -> (A, A::Args) + Send + Sync + 'static,
    ) -> Self
    where
        A: Actor<Msg = M>,
    {
        let id: String = id.into();
        Self::with_child(id.into(), false, |addr| ActorChild { addr, make })
    }

    /// A permanent worker without an id, for dynamic supervisors, as OTP's
    /// `DynamicSupervisor` children: starting it skips building and reserving a unique
    /// id. It is terminated by address ([`Supervisor::terminate_child_by_addr`]), never
    /// found by id, listed as `<anonymous>` by `which_children`, and its events carry its
    /// [`Addr::key`]. A static supervisor refuses it.
    ///
    /// [`Supervisor::terminate_child_by_addr`]: crate::Supervisor::terminate_child_by_addr
    pub fn anonymous<A>(actor: A, args: A::Args) -> Self
    where
        A: Actor<Msg = M> + Clone,
        A::Args: Clone + Sync,
    {
        static ANONYMOUS: std::sync::LazyLock<Arc<str>> =
            std::sync::LazyLock::new(|| Arc::from("<anonymous>"));
        Self::with_child(ANONYMOUS.clone(), true, |addr| ClonedChild {
            addr,
            actor,
            args,
        })
    }

    /// A worker spec whose erased child `child` builds around the spec's new address.
    fn with_child<C: ErasedChild + 'static>(
        id: Arc<str>,
        anonymous: bool,
        child: impl FnOnce(Addr<M>) -> C,
    ) -> Self {
        let addr = Addr::new(id.clone(), true, DEFAULT_RESTART_BACKLOG);
        let child = Arc::new(child(addr.clone()));
        Self {
            entry: ChildEntry {
                id,
                generation: 0,
                anonymous,
                name: None,
                restart: Restart::Permanent,
                shutdown: Shutdown::default(),
                kind: ChildKind::Worker,
                child,
            },
            addr,
        }
    }

    /// Sets the restart type (default `Permanent`).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.entry.restart = restart;
        self
    }

    /// Sets the shutdown policy (default `Timeout(5 s)` for workers, `Infinity` for
    /// supervisors).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.entry.shutdown = shutdown;
        self
    }

    /// Registers the child under `name` while it lives, for [`Addr::whereis`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.entry.name = Some(name.into());
        self
    }

    /// How many messages the child's address holds while it restarts (default 65,536);
    /// past that, sends fail with [`SendError::Backlog`](crate::SendError::Backlog).
    pub fn restart_backlog(self, n: usize) -> Self {
        self.addr.set_backlog(n);
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// The stable address the child will be reached by.
    pub fn addr(&self) -> Addr<M> {
        self.addr.clone()
    }

    pub(crate) fn erase(self) -> ChildEntry {
        self.entry
    }
}

/// A child spec with its message type erased.
#[derive(Clone)]
pub(crate) struct ChildEntry {
    pub(crate) id: Arc<str>,
    /// The supervisor incarnation whose reservation this entry holds.
    pub(crate) generation: u64,
    /// Started with [`ChildSpec::anonymous`]: no id to keep unique.
    pub(crate) anonymous: bool,
    pub(crate) name: Option<String>,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
    pub(crate) kind: ChildKind,
    pub(crate) child: Arc<dyn ErasedChild>,
}

/// Wraps a supervisor's pieces as a child of another supervisor.
pub(crate) fn supervisor_child(
    id: Arc<str>,
    addr: Addr<super::SupervisorMsg>,
    child: Arc<dyn ErasedChild>,
) -> ChildSpec<super::SupervisorMsg> {
    ChildSpec {
        entry: ChildEntry {
            id,
            generation: 0,
            anonymous: false,
            name: None,
            restart: Restart::Permanent,
            shutdown: Shutdown::Infinity,
            kind: ChildKind::Supervisor,
            child,
        },
        addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ActorError;

    #[derive(Clone)]
    struct One;
    #[derive(Clone)]
    struct Other;

    impl Actor for One {
        type Msg = ();
        type State = ();
        type Args = ();
        async fn init(&self, _: &Addr<()>, (): ()) -> Result<(), ActorError> {
            Ok(())
        }
        async fn handle(&self, _: &Addr<()>, (): (), (): &mut ()) -> Result<(), ActorError> {
            Ok(())
        }
    }

    impl Actor for Other {
        type Msg = ();
        type State = ();
        type Args = ();
        async fn init(&self, _: &Addr<()>, (): ()) -> Result<(), ActorError> {
            Ok(())
        }
        async fn handle(&self, _: &Addr<()>, (): (), (): &mut ()) -> Result<(), ActorError> {
            Ok(())
        }
    }

    #[test]
    fn a_typed_start_finds_the_specs_made_of_clones_of_its_actor_type() {
        assert!(cloned::<One>(&ChildSpec::new("a", One, ()).entry).is_some());
        assert!(cloned::<One>(&ChildSpec::anonymous(One, ()).entry).is_some());
        // Made otherwise, or of another type with the same messages: started boxed.
        assert!(cloned::<One>(&ChildSpec::from_fn("b", || (One, ())).entry).is_none());
        assert!(cloned::<One>(&ChildSpec::new("c", Other, ()).entry).is_none());
    }
}
