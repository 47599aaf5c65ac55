//! Supervisors with OTP semantics, on ractor (which has none built in).
//!
//! # Strategies and restart types
//!
//! A [`Supervisor`] starts its children in order and restarts them by its [`Strategy`]
//! (`OneForOne`, `OneForAll`, `RestForOne`) and each child's [`Restart`] type:
//! `Permanent` children always come back, `Transient` ones only after an abnormal exit (an
//! error, a panic or a kill — not a normal stop), `Temporary` ones never.
//!
//! # Restart intensity
//!
//! At most `max_restarts` restarts within `period` ([`Intensity`], OTP's meaning; the
//! default is OTP's 1 in 5 s). One more and the supervisor shuts every child down and
//! exits with [`SupervisorExit`], which its own supervisor sees as the child's
//! [`ExitReason::Escalated`]. Like OTP's `shutdown` exit, that counts as normal for the
//! restart type: a `Permanent` child supervisor is restarted (so failures climb the tree,
//! through each parent's intensity), a `Transient` one stays down.
//!
//! # Failed restarts
//!
//! A restart whose start fails counts as another restart against the intensity, and is
//! tried again as a message the supervisor sends itself (after the backoff delay, if any):
//! between attempts it serves requests and a shutdown, as OTP's supervisor does. Under
//! `OneForAll` the next attempt first shuts down the children the failed attempt started
//! and restarts the whole group; under `RestForOne` it resumes with the child that failed.
//!
//! # Ignore
//!
//! An `init` may answer [`Ignore`](crate::Ignore) (OTP's `ignore`): the child is not
//! started and that is not a failure. A static supervisor keeps a `Permanent` or
//! `Transient` child's spec ([`ChildStatus::Ignored`]; `restart_child` starts it) and
//! forgets a `Temporary` one; a dynamic supervisor forgets it.
//!
//! # Start and shutdown order
//!
//! Children start in the order given; if one fails, those already started are shut down
//! and the supervisor's start fails with [`SpawnError::Child`] naming it. Shutdown goes in
//! reverse order, each child by its [`Shutdown`] policy: asked to stop and given a timeout
//! to finish the message in hand and run `terminate` (then killed), waited for without
//! limit, or killed at once. A dynamic supervisor shuts all its children down at once
//! (OTP's `simple_one_for_one` does too): shutdown takes the slowest child's time, not
//! the sum. Each child it stops is reported ([`Supervisor::subscribe`]) with reason
//! `Normal(Some("shutdown"))`, or `Killed` if it was killed.
//!
//! # Requests
//!
//! `which_children`, `terminate_child` and the other requests wait at most
//! [`DEFAULT_SUPERVISOR_CALL_TIMEOUT`] (5 s, `gen_server:call`'s default) for the answer;
//! [`Supervisor::with_timeout`] waits longer.
//!
//! # Stable addresses
//!
//! Each child is reached through the [`Addr`] of its [`ChildSpec`] (or the name it was
//! given), which stays valid across restarts; messages sent while the child restarts are
//! held and delivered to the new incarnation first. See [`crate::addr`].
//!
//! # Examples
//!
//! ```
//! use foundation_actors::{Actor, ActorError, Addr, ChildSpec, ReplyPort, Strategy, Supervisor, SupervisorSpec};
//!
//! #[derive(Clone)]
//! struct Greeter;
//! impl Actor for Greeter {
//!     type Msg = ReplyPort<&'static str>;
//!     type State = ();
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Self::Msg>, _: ()) -> Result<(), ActorError> { Ok(()) }
//!     async fn handle(&self, _: &Addr<Self::Msg>, reply: Self::Msg, _: &mut ()) -> Result<(), ActorError> {
//!         let _ = reply.send("hello");
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let greeter = ChildSpec::new("greeter", Greeter, ());
//! let addr = greeter.addr();
//! let sup = Supervisor::start(SupervisorSpec::new("app", Strategy::OneForOne).child(greeter)).await?;
//! assert_eq!(addr.call(|reply| reply).await?, "hello");
//! println!("{}", sup.tree().await?);
//! sup.shutdown().await;
//! # Ok(()) }
//! ```

mod core;
mod spec;

use std::fmt;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

pub use spec::{Backoff, ChildKind, ChildSpec, Intensity, Restart, Shutdown, Strategy};

/// Children restarted by every supervisor of this process since it started (restarts that
/// succeeded; a child that `ignore`s its restart or fails it is not counted). The runtime's
/// metrics and `cluster_info` show it as a rate.
pub fn restarts_total() -> u64 {
    core::RESTARTS.load(std::sync::atomic::Ordering::Relaxed)
}

use crate::addr::{Addr, AddrKey, DEFAULT_RESTART_BACKLOG};
use crate::error::{CallError, ExitReason, SpawnError, SupervisorError, SupervisorExit};
use core::{Adoption, ChildKey, Config, Core, Members, Request};
use spec::{AddrControl, BoxFuture, ChildEntry, ErasedChild};

/// A supervisor's messages. Opaque: use the [`Supervisor`] methods.
pub struct SupervisorMsg(core::Request);

impl fmt::Debug for SupervisorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SupervisorMsg")
    }
}

/// What a supervisor is started with.
///
/// Cloning it shares the children (and so their addresses): a supervisor restarted by its
/// own supervisor brings its children back behind the same addresses.
#[derive(Clone)]
pub struct SupervisorSpec {
    cfg: Config,
    addr: Addr<SupervisorMsg>,
}

impl fmt::Debug for SupervisorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorSpec")
            .field("id", &self.cfg.id)
            .field("strategy", &self.cfg.strategy)
            .field("intensity", &self.cfg.intensity)
            .field(
                "children",
                &self.cfg.children.iter().map(|c| &c.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SupervisorSpec {
    /// A supervisor with id `id` and the given strategy, OTP's default intensity, no
    /// backoff and no children yet.
    pub fn new(id: impl Into<String>, strategy: Strategy) -> Self {
        let id = id.into();
        let (tx, _) = watch::channel(None);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            addr: Addr::new(id.as_str(), true, DEFAULT_RESTART_BACKLOG),
            cfg: Config {
                id,
                strategy,
                intensity: Intensity::default(),
                backoff: None,
                dynamic: false,
                members: Arc::new(Members::new(None, false)),
                children: Vec::new(),
                exit: Arc::new(tx),
                events,
            },
        }
    }

    /// Adds a child, started after those added before it.
    pub fn child<M: Send + 'static>(mut self, spec: ChildSpec<M>) -> Self {
        self.cfg.children.push(spec.erase());
        self
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, max_restarts: u32, period: std::time::Duration) -> Self {
        self.cfg.intensity = Intensity {
            max_restarts,
            period,
        };
        self
    }

    /// Delays restarts by an exponential backoff.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.cfg.backoff = Some(backoff);
        self
    }

    /// This supervisor as a child of another (shutdown `Infinity`, as OTP's default for
    /// supervisors).
    pub fn into_child(self) -> ChildSpec<SupervisorMsg> {
        let id: Arc<str> = self.cfg.id.as_str().into();
        let addr = self.addr.clone();
        spec::supervisor_child(id, addr, Arc::new(SupervisorChild(self)))
    }

    /// The handle the supervisor will be reached by, before and after it starts.
    pub fn handle(&self) -> Supervisor {
        Supervisor {
            addr: self.addr.clone(),
            exit: self.cfg.exit.clone(),
            members: self.cfg.members.clone(),
            events: self.cfg.events.clone(),
            timeout: DEFAULT_SUPERVISOR_CALL_TIMEOUT,
        }
    }
}

struct SupervisorChild(SupervisorSpec);

impl ErasedChild for SupervisorChild {
    fn start(
        &self,
        id: &Arc<str>,
        sup: ractor::ActorCell,
    ) -> BoxFuture<Result<ractor::ActorCell, SpawnError>> {
        let spec = self.0.clone();
        let id = id.clone();
        Box::pin(async move { spec::spawn_into(&id, &spec.addr, Core, spec.cfg, sup).await })
    }
    fn addr(&self) -> &dyn AddrControl {
        &self.0.addr
    }
    fn as_supervisor(&self) -> Option<Supervisor> {
        Some(self.0.handle())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A running supervisor's handle: stable across its own restarts. Cheap to clone.
///
/// Its requests (`terminate_child`, `which_children`, …) wait at most
/// [`DEFAULT_SUPERVISOR_CALL_TIMEOUT`] for the answer, as `gen_server:call`'s default;
/// [`Supervisor::with_timeout`] gives a handle that waits longer (a `terminate_child` of a
/// child with a long shutdown timeout needs it).
#[derive(Clone)]
pub struct Supervisor {
    pub(crate) addr: Addr<SupervisorMsg>,
    exit: Arc<watch::Sender<Option<ExitReason>>>,
    members: Arc<Members>,
    events: broadcast::Sender<SupervisorEvent>,
    timeout: std::time::Duration,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("id", &self.addr.label())
            .finish()
    }
}

impl Supervisor {
    /// Starts a top-level supervisor and its children, in order.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Child`] naming the first child that failed to start (those started
    /// before it are shut down again).
    pub async fn start(spec: SupervisorSpec) -> Result<Self, SpawnError> {
        let handle = spec.handle();
        // No supervisor above: once it exits, its address refuses messages.
        handle.addr.set_supervised(false);
        let id = spec.cfg.id.clone();
        let (actor, _join) = ractor::Actor::spawn(None, Core, spec.cfg)
            .await
            .map_err(|e| SpawnError::from_ractor(&id, e))?;
        // A supervisor sends to itself around its address: it keeps no mailbox counts.
        handle.addr.install(actor, false);
        Ok(handle)
    }

    /// Subscribes to what the supervisor does: exits (including the children it stops
    /// itself), restarts, failed restarts, ignored starts, giving up. Events from before the call are not seen; a subscriber that falls more than
    /// 1,024 events behind loses the oldest (`RecvError::Lagged`). Subscriptions survive
    /// the supervisor's own restarts.
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// Whether this is a dynamic supervisor (started by [`DynamicSupervisor`]).
    pub fn is_dynamic(&self) -> bool {
        self.members.is_dynamic()
    }

    /// The supervisor's id.
    pub fn id(&self) -> &str {
        self.addr.label()
    }

    async fn request<R: Send + 'static>(
        &self,
        f: impl FnOnce(crate::ReplyPort<R>) -> Request,
    ) -> Result<R, CallError> {
        self.addr
            .call_timeout(|port| SupervisorMsg(f(port)), self.timeout)
            .await
    }

    /// The same handle, with requests that wait at most `timeout` for the supervisor's
    /// answer. A request that times out may still be carried out.
    #[must_use]
    pub fn with_timeout(&self, timeout: std::time::Duration) -> Self {
        Self {
            timeout,
            ..self.clone()
        }
    }

    /// Adds and starts a child; returns once its `init` has run.
    ///
    /// The child is spawned from the caller's task, linked to the supervisor, which takes
    /// it in before it next reads its children: starts cost the supervisor no message and
    /// do not queue behind one another in it (the bottleneck of OTP's single-process
    /// `DynamicSupervisor`).
    ///
    /// # Errors
    ///
    /// [`SpawnError::DuplicateId`], [`SpawnError::NameTaken`], [`SpawnError::MaxChildren`],
    /// [`SpawnError::Config`] for an anonymous child of a static supervisor, the child's
    /// own start failure, or [`SpawnError::SupervisorStopped`] (also while a child
    /// supervisor is between two incarnations). On any error the spec's address is
    /// stopped. [`SpawnError::Ignored`] if its `init` answered [`Ignore`](crate::Ignore):
    /// not a failure; a static supervisor then keeps the spec of a `Permanent` or
    /// `Transient` child ([`ChildStatus::Ignored`], startable with `restart_child`), as
    /// OTP, and forgets any other.
    pub async fn start_child<M: Send + 'static>(
        &self,
        spec: ChildSpec<M>,
    ) -> Result<Addr<M>, SupervisorError> {
        let (entry, addr, sup) = self.admit_child(spec)?;
        let started = entry.child.start(&entry.id, sup.clone()).await;
        self.adopt_started(entry, addr, sup, started)
    }

    /// As [`Supervisor::start_child`], for a spec made by [`ChildSpec::new`] or
    /// [`ChildSpec::anonymous`] with an actor of type `A`: knowing the type, the start is
    /// awaited in place, where `start_child` boxes it (an allocation fewer, and its
    /// ~1 KiB future is not moved into the box). A spec made otherwise
    /// ([`ChildSpec::from_fn`], or of another actor type with the same messages) starts as
    /// `start_child` starts it. Restarts are the same either way.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start_child`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use foundation_actors::{Actor, ActorError, Addr, ChildSpec, DynamicSupervisor};
    /// #[derive(Clone)]
    /// struct Job;
    /// impl Actor for Job {
    ///     type Msg = ();
    ///     type State = ();
    ///     type Args = ();
    ///     async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> { Ok(()) }
    ///     async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> { Ok(()) }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let jobs = DynamicSupervisor::start("jobs", None).await?;
    /// let job = jobs.start_child_typed::<Job>(ChildSpec::anonymous(Job, ())).await?;
    /// job.cast(())?;
    /// assert_eq!(jobs.count_children().await?.active, 1);
    /// # Ok(()) }
    /// ```
    pub async fn start_child_typed<A>(
        &self,
        spec: ChildSpec<A::Msg>,
    ) -> Result<Addr<A::Msg>, SupervisorError>
    where
        A: crate::Actor + Clone,
        A::Args: Clone + Sync,
    {
        let (entry, addr, sup) = self.admit_child(spec)?;
        // ractor's start future is awaited here, as a raw `spawn_linked` is: not built
        // elsewhere and moved, not boxed.
        let started = match spec::cloned::<A>(&entry) {
            Some(child) => spec::publish(&entry.id, &addr, child.spawn(sup.clone()).await, true),
            None => entry.child.start(&entry.id, sup.clone()).await,
        };
        self.adopt_started(entry, addr, sup, started)
    }

    /// What a start does before the child's first incarnation is spawned: takes the spec
    /// apart, finds the supervisor's cell (to link to) and admits the child.
    // Always inlined: out of line, moving the spec's parts in and out cost ~90
    // instructions per start (callgrind).
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    fn admit_child<M: Send + 'static>(
        &self,
        spec: ChildSpec<M>,
    ) -> Result<(ChildEntry, Addr<M>, ractor::ActorCell), SupervisorError> {
        // Taken apart, not cloned: four reference counts fewer on every start.
        let ChildSpec { entry, addr } = spec;
        let mut entry: ChildEntry = entry;
        let sup = self
            .addr
            .actor_cell()
            .ok_or(SpawnError::SupervisorStopped)?;
        self.members.admit(&mut entry)?;
        Ok((entry, addr, sup))
    }

    /// What a start does once the child's first incarnation is spawned (or failed to):
    /// hands it to the supervisor for adoption, or undoes the admission.
    #[inline(always)]
    fn adopt_started<M: Send + 'static>(
        &self,
        entry: ChildEntry,
        addr: Addr<M>,
        sup: ractor::ActorCell,
        started: Result<ractor::ActorCell, SpawnError>,
    ) -> Result<Addr<M>, SupervisorError> {
        let cell = match started {
            Ok(cell) => cell,
            Err(SpawnError::Ignored(id))
                if !self.members.is_dynamic() && entry.restart != Restart::Temporary =>
            {
                // A static supervisor keeps the spec of a child that answered ignore,
                // not running, as OTP does; its address stays stopped until a
                // `restart_child` starts it.
                entry.child.addr().mark_stopped();
                if let Err(a) = self.members.push_adoption(Adoption {
                    entry,
                    cell: None,
                    linked_to: sup.get_id(),
                }) {
                    self.members.discard(&a.entry);
                    return Err(SpawnError::SupervisorStopped.into());
                }
                return Err(SpawnError::Ignored(id).into());
            }
            Err(e) => {
                self.members.discard(&entry);
                // ractor refuses to link to a supervisor that is shutting down.
                if sup.get_status() >= ractor::ActorStatus::Draining {
                    return Err(SpawnError::SupervisorStopped.into());
                }
                return Err(e.into());
            }
        };
        if let Err(a) = self.members.push_adoption(Adoption {
            entry,
            cell: Some(cell.clone()),
            linked_to: sup.get_id(),
        }) {
            // The supervisor is shutting down and will not take the child in.
            cell.kill();
            self.members.discard(&a.entry);
            return Err(SpawnError::SupervisorStopped.into());
        }
        if cell.get_status() >= ractor::ActorStatus::Draining {
            // It is dying already, perhaps before the push: its exit may have reached the
            // supervisor as an orphan, so make the supervisor take it in now. (A child seen
            // alive here reports its exit after the push, and so after this point.)
            let _ = self.addr.cast(SupervisorMsg(Request::Wake));
        }
        if sup.get_status() >= ractor::ActorStatus::Stopping {
            // The supervisor is going away: if it has not taken the child in, undo the
            // start (its exit kills linked children, but the address would not know).
            if let Some(a) = self.members.withdraw_adoption(cell.get_id()) {
                cell.kill();
                self.members.discard(&a.entry);
                return Err(SpawnError::SupervisorStopped.into());
            }
        }
        Ok(addr)
    }

    /// Shuts a child down by its shutdown policy. A static supervisor keeps its spec (see
    /// [`Supervisor::restart_child`], [`Supervisor::delete_child`]); a dynamic one, and any
    /// `Temporary` child, forgets it.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownChild`] or the supervisor not running.
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let key = ChildKey::Id(id.to_owned());
        self.request(|p| Request::TerminateChild(key, p)).await?
    }

    /// As [`Supervisor::terminate_child`], naming the child by its address: the way to
    /// terminate an anonymous child.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownChild`] if no child of this supervisor has that address.
    pub async fn terminate_child_by_addr<M: Send + 'static>(
        &self,
        addr: &Addr<M>,
    ) -> Result<(), SupervisorError> {
        let key = ChildKey::Addr(addr.slot_key());
        self.request(|p| Request::TerminateChild(key, p)).await?
    }

    /// Starts again a child that was terminated, exited without restart, or answered
    /// ignore. If it answers ignore again, it stays down and the result is `Ok`.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownChild`], [`SupervisorError::Running`] if it is running
    /// (OTP's `{error, running}`), [`SupervisorError::Restarting`] if a restart of it is
    /// under way, its start failure, or the supervisor not running.
    pub async fn restart_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_owned();
        self.request(|p| Request::RestartChild(id, p)).await?
    }

    /// Forgets a child that is not running.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownChild`], [`SupervisorError::Running`], or the supervisor
    /// not running.
    pub async fn delete_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_owned();
        self.request(|p| Request::DeleteChild(id, p)).await?
    }

    /// The spec of the child with this id, as OTP's `get_childspec`.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::UnknownChild`] (anonymous children have no id to find them by),
    /// or the supervisor not running.
    pub async fn get_childspec(&self, id: &str) -> Result<ChildSpecInfo, SupervisorError> {
        let id = id.to_owned();
        self.request(|p| Request::GetChildSpec(id, p)).await?
    }

    /// The children, in start order.
    ///
    /// # Errors
    ///
    /// The supervisor not running.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, CallError> {
        self.request(Request::WhichChildren).await
    }

    /// Counts of the children, as OTP's `count_children`.
    ///
    /// # Errors
    ///
    /// The supervisor not running.
    pub async fn count_children(&self) -> Result<ChildCounts, CallError> {
        self.request(Request::CountChildren).await
    }

    /// The live supervision tree below this supervisor, as a value that prints as a tree.
    ///
    /// # Errors
    ///
    /// This supervisor not running. A child supervisor that does not answer appears with
    /// no children.
    pub fn tree(&self) -> BoxFuture<Result<TreeNode, CallError>> {
        let this = self.clone();
        Box::pin(async move {
            let (strategy, kids) = this.request(Request::Subtree).await?;
            let mut children = Vec::with_capacity(kids.len());
            for (info, sup) in kids {
                let (strategy, grandchildren) = match sup {
                    Some(sup) if info.status == ChildStatus::Running => match sup.tree().await {
                        Ok(t) => (t.strategy, t.children),
                        Err(_) => (None, Vec::new()),
                    },
                    _ => (None, Vec::new()),
                };
                children.push(TreeNode {
                    info,
                    strategy,
                    children: grandchildren,
                });
            }
            Ok(TreeNode {
                info: ChildInfo {
                    id: this.id().to_owned(),
                    name: None,
                    kind: ChildKind::Supervisor,
                    restart: Restart::Permanent,
                    status: ChildStatus::Running,
                    restarts: this.addr.incarnation().saturating_sub(1),
                    incarnation: this.addr.incarnation(),
                    actor_id: this.addr.actor_id().map(|id| id.to_string()),
                },
                strategy: Some(strategy),
                children,
            })
        })
    }

    /// Shuts the supervisor down: its children in reverse start order, then itself.
    pub async fn shutdown(&self) {
        if let Some(cell) = self.addr.actor_cell() {
            let _ = cell.stop_and_wait(Some("shutdown".into()), None).await;
        }
    }

    /// Waits for the supervisor to exit and returns why: [`ExitReason::Escalated`] when
    /// its restart intensity was exceeded, normal after [`Supervisor::shutdown`] (also
    /// one issued while a restart kept failing).
    /// A supervisor killed outright reports [`ExitReason::Killed`]. Meant for top-level
    /// supervisors: for a child supervisor between two incarnations (or not started
    /// yet) it returns at once, with the previous incarnation's reason.
    pub async fn wait(&self) -> ExitReason {
        if let Some(cell) = self.addr.actor_cell() {
            let _ = cell.wait(None).await;
        }
        self.exit.borrow().clone().unwrap_or(ExitReason::Killed)
    }

    /// Whether the supervisor is running.
    pub fn is_running(&self) -> bool {
        // A (re)started supervisor is `Starting` in ractor's terms until its task first
        // runs, though its children are up: anything short of stopping counts.
        self.addr
            .actor_cell()
            .is_some_and(|c| c.get_status() < ractor::ActorStatus::Draining)
    }
}

/// A dynamic supervisor: children are added while it runs, all alike, restarted one for
/// one, optionally at most `max_children` of them (OTP's `DynamicSupervisor`).
///
/// # Examples
///
/// ```
/// # use foundation_actors::{Actor, ActorError, Addr, ChildSpec, DynamicSupervisor};
/// # #[derive(Clone)] struct Job;
/// # impl Actor for Job { type Msg = (); type State = (); type Args = ();
/// #   async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> { Ok(()) }
/// #   async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let jobs = DynamicSupervisor::start("jobs", Some(100)).await?;
/// let job = jobs.start_child(ChildSpec::new("job-1", Job, ())).await?;
/// job.cast(())?;
/// assert_eq!(jobs.count_children().await?.active, 1);
/// jobs.terminate_child("job-1").await?;
/// assert_eq!(jobs.count_children().await?.specs, 0);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DynamicSupervisor(Supervisor);

impl DynamicSupervisor {
    /// The spec of a dynamic supervisor: one-for-one, OTP's default intensity.
    pub fn spec(id: impl Into<String>, max_children: Option<usize>) -> SupervisorSpec {
        let mut spec = SupervisorSpec::new(id, Strategy::OneForOne);
        spec.cfg.dynamic = true;
        spec.cfg.members = Arc::new(Members::new(max_children, true));
        spec
    }

    /// Starts a top-level dynamic supervisor.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start`].
    pub async fn start(
        id: impl Into<String>,
        max_children: Option<usize>,
    ) -> Result<Self, SpawnError> {
        Self::start_spec(Self::spec(id, max_children)).await
    }

    /// Starts a top-level dynamic supervisor from a spec made by [`DynamicSupervisor::spec`]
    /// (and adjusted, e.g. with [`SupervisorSpec::intensity`]).
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start`].
    pub async fn start_spec(spec: SupervisorSpec) -> Result<Self, SpawnError> {
        Supervisor::start(spec).await.map(Self)
    }

    /// Wraps the handle of a dynamic supervisor started as a child.
    pub fn from_handle(sup: Supervisor) -> Self {
        Self(sup)
    }

    /// The underlying supervisor handle.
    pub fn handle(&self) -> &Supervisor {
        &self.0
    }

    /// The same handle, with requests that wait at most `timeout` (see
    /// [`Supervisor::with_timeout`]).
    #[must_use]
    pub fn with_timeout(&self, timeout: std::time::Duration) -> Self {
        Self(self.0.with_timeout(timeout))
    }

    /// Adds and starts a child.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start_child`].
    pub async fn start_child<M: Send + 'static>(
        &self,
        spec: ChildSpec<M>,
    ) -> Result<Addr<M>, SupervisorError> {
        self.0.start_child(spec).await
    }

    /// Adds and starts a child whose actor type is known: see
    /// [`Supervisor::start_child_typed`].
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start_child`].
    pub async fn start_child_typed<A>(
        &self,
        spec: ChildSpec<A::Msg>,
    ) -> Result<Addr<A::Msg>, SupervisorError>
    where
        A: crate::Actor + Clone,
        A::Args: Clone + Sync,
    {
        self.0.start_child_typed::<A>(spec).await
    }

    /// Shuts a child down and forgets it.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::terminate_child`].
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        self.0.terminate_child(id).await
    }

    /// Shuts a child down by its address and forgets it (for anonymous children).
    ///
    /// # Errors
    ///
    /// As [`Supervisor::terminate_child_by_addr`].
    pub async fn terminate_child_by_addr<M: Send + 'static>(
        &self,
        addr: &Addr<M>,
    ) -> Result<(), SupervisorError> {
        self.0.terminate_child_by_addr(addr).await
    }

    /// The children, in start order.
    ///
    /// # Errors
    ///
    /// The supervisor not running.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, CallError> {
        self.0.which_children().await
    }

    /// Counts of the children.
    ///
    /// # Errors
    ///
    /// The supervisor not running.
    pub async fn count_children(&self) -> Result<ChildCounts, CallError> {
        self.0.count_children().await
    }

    /// Shuts it down, children last-started first.
    pub async fn shutdown(&self) {
        self.0.shutdown().await;
    }
}

/// How long a request to a supervisor waits for its answer by default, as
/// `gen_server:call`'s default. A supervisor answers after the shutdowns or starts a
/// request involves: use [`Supervisor::with_timeout`] where a child's shutdown may take
/// longer.
pub const DEFAULT_SUPERVISOR_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many events a slow subscriber may fall behind before it loses the oldest.
const EVENT_BUFFER: usize = 1024;

/// Something a supervisor did, as [`Supervisor::subscribe`] reports it.
#[derive(Debug, Clone)]
pub enum SupervisorEvent {
    /// A child exited; `restarting` says whether the supervisor will start it again.
    ChildExited {
        /// The child's id.
        child: String,
        /// Its address's key.
        key: AddrKey,
        /// Why it exited.
        reason: ExitReason,
        /// Whether a restart follows (after the backoff delay, if any).
        restarting: bool,
    },
    /// A child was started again and answers at its address from now on.
    ChildRestarted {
        /// The child's id.
        child: String,
        /// Its address's key.
        key: AddrKey,
        /// Its address's incarnation count now.
        incarnation: u64,
    },
    /// Starting a child again failed; the supervisor retries while its intensity allows.
    RestartFailed {
        /// The child's id.
        child: String,
        /// Its address's key.
        key: AddrKey,
        /// Why the start failed.
        reason: ExitReason,
    },
    /// A child's `init` answered [`Ignore`](crate::Ignore) to a restart: it stays down
    /// (status [`ChildStatus::Ignored`]) until `restart_child`.
    ChildIgnored {
        /// The child's id.
        child: String,
        /// Its address's key.
        key: AddrKey,
    },
    /// The restart intensity was exceeded: the supervisor shut its children down and
    /// exits with this reason.
    GaveUp(SupervisorExit),
}

/// A child's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildStatus {
    /// Live.
    Running,
    /// Between incarnations (during a restart or its backoff delay).
    Restarting,
    /// Exited and not restarted (a `Transient` child's normal exit), with the reason.
    Exited(Arc<str>),
    /// Shut down by its supervisor.
    Terminated,
    /// Its `init` answered [`Ignore`](crate::Ignore): not running, its spec kept.
    Ignored,
}

impl fmt::Display for ChildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Restarting => f.write_str("restarting"),
            Self::Exited(r) => write!(f, "exited: {r}"),
            Self::Terminated => f.write_str("terminated"),
            Self::Ignored => f.write_str("ignored"),
        }
    }
}

/// One child, as `which_children` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its id in the supervisor.
    pub id: String,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: Restart,
    /// Its status.
    pub status: ChildStatus,
    /// How many times this supervisor has restarted it.
    pub restarts: u64,
    /// How many incarnations its address has had.
    pub incarnation: u64,
    /// The current incarnation's ractor actor id.
    pub actor_id: Option<String>,
}

/// A child's spec, as [`Supervisor::get_childspec`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSpecInfo {
    /// Its id in the supervisor.
    pub id: String,
    /// The name it is registered under while it lives, if any.
    pub name: Option<String>,
    /// Its restart type.
    pub restart: Restart,
    /// Its shutdown policy.
    pub shutdown: Shutdown,
    /// Worker or supervisor.
    pub kind: ChildKind,
}

/// Child counts, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildCounts {
    /// Children known, running or not.
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

/// A node of a live supervision tree; `Display` prints the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    /// This node.
    pub info: ChildInfo,
    /// Its strategy, if it is a supervisor that answered.
    pub strategy: Option<Strategy>,
    /// Its children, if it is a supervisor.
    pub children: Vec<TreeNode>,
}

impl TreeNode {
    /// Finds a node by id, depth first.
    pub fn find(&self, id: &str) -> Option<&TreeNode> {
        if self.info.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(id))
    }

    fn line(&self) -> String {
        let mut s = self.info.id.clone();
        if let Some(name) = &self.info.name {
            s.push_str(&format!(" \"{name}\""));
        }
        if let Some(strategy) = self.strategy {
            s.push_str(&format!(" ({strategy})"));
        }
        s.push_str(&format!(" [{}", self.info.status));
        if self.info.restarts > 0 {
            s.push_str(&format!(", restarts {}", self.info.restarts));
        }
        s.push(']');
        s
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, prefix: &str) -> fmt::Result {
        for (i, c) in self.children.iter().enumerate() {
            let last = i + 1 == self.children.len();
            writeln!(
                f,
                "{prefix}{}{}",
                if last { "└── " } else { "├── " },
                c.line()
            )?;
            c.write(
                f,
                &format!("{prefix}{}", if last { "    " } else { "│   " }),
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for TreeNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.line())?;
        self.write(f, "")
    }
}
