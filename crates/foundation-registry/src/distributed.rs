//! The distributed supervisor: Horde's DynamicSupervisor on Foundation nodes, driven by
//! the [placement core](crate::placement), with state handed over on planned moves and
//! checkpoints for the unplanned ones.
//!
//! Start a [`DistributedSupervisor`] of the same name on every node: together they are
//! one logical supervisor. [`DistributedSupervisor::start_child`] on any node adds a child
//! with a [`ChildPlacement`] (singleton, replicated, all, pinned, local) and waits until it
//! answers; [`place_child`](DistributedSupervisor::place_child) adds it and returns once it
//! is recorded, and [`wait_child`](DistributedSupervisor::wait_child) waits for it. Every
//! node runs the same [`Planner`](crate::placement::Planner) over the same records and
//! membership, and each starts, keeps or stops its own part. There is no leader. A plan
//! looks at the children whose records changed, and at every child when membership, the
//! quorum or a timer says so (see `PROTOCOL.md`).
//!
//! # Children are kinds plus arguments
//!
//! A child must be startable on any node, and a closure cannot cross the wire; so the
//! [`DistributedSpec`] every node starts with registers **kinds** (a factory per name,
//! returning the local [`ChildSpec`](foundation_actors::ChildSpec)), and a child is a
//! kind, serializable arguments and a placement. All children of one supervisor take the
//! same message type `M` (use an enum, or one supervisor per type).
//!
//! # What runs where
//!
//! - Each instance runs under its own ordinary local [`Supervisor`](foundation_actors::Supervisor)
//!   (one-for-one, [`DistributedSpec::local_intensity`]) on the node that owns it, so OTP
//!   restart semantics hold there: a crash is restarted locally, behind the same address.
//!   When the local supervisor gives up (or a `Transient`/`Temporary` child ends), the
//!   instance has *ended*, and the planner decides: restart (possibly elsewhere, counted
//!   against the child's [`MoveIntensity`](crate::placement::MoveIntensity)) or forget.
//! - Each instance's name is registered in the [`ClusterRegistry`] given at start, under a
//!   [`ChildName`]: `unique(id)` for one-instance placements, `on(id, node)` for
//!   `Replicated` and `All`. Which of two instances stays is the planner's decision, by
//!   the records, never the registry's conflict rule: a registration of the supervisor's
//!   that loses a conflict only loses the name (whatever the registry's
//!   [`OnConflict`](crate::OnConflict)), and is made again once the name is free if its
//!   instance is the one kept. [`DistributedSupervisor::whereis`], [`call`](DistributedSupervisor::call)
//!   and [`cast`](DistributedSupervisor::cast) reach a child by id from any node, the
//!   local instance first.
//! - A node dies: its `Permanent` children (and `Transient` ones that had not ended
//!   normally) start on their next owners, after the quorum policy's
//!   [`Decision::start_after`](crate::placement::Decision::start_after); `Temporary`
//!   ones are forgotten. A side of a partition that loses the [`Quorum`](crate::placement::Quorum)
//!   stops its instances at once ([`DistributedEvent::QuorumLost`]).
//!
//! # The records
//!
//! Every node holds every child's record (its placement, kind and arguments; per node:
//! instance, last start, last end, counted failures, local restarts), replicated as a
//! state-based CRDT: per-node slots with Lamport stamps, a record-level tombstone, and a
//! newer start of the same id replacing a removed one. Changes go to every peer at once
//! over the node's `control` channel; every [`DistributedSpec::sync_every`] each node
//! says how many of each peer's changes it has, and the peer sends the changes after
//! those (in windows of at most 1,024 records), so a joining node gets everything, a lost
//! message is made up for, and a quiet cluster exchanges no records at all, whatever the
//! size of its tables. A removed child's tombstone is
//! kept for [`DistributedSpec::tombstone_ttl`], then dropped; tombstones are held apart
//! from the live records, so however many there are, a plan and a start do not pass over
//! them. The protocol is described
//! in `PROTOCOL.md` beside this module; the guide is `docs/placement.md`.
//!
//! # Strict mode
//!
//! The quorum timing keeps two instances of a singleton from running at once as long as
//! every node's code runs; a node paused past the margin breaks it (see
//! [`placement`](crate::placement#the-timing-argument)). With
//! [`DistributedSpec::strict`], each `Singleton` instance runs only while its node holds
//! the child's lease in a [`ConsistentRegistry`](crate::consistent::ConsistentRegistry),
//! and its [`Fence`] (given to kinds registered with [`DistributedSpec::kind_fenced`])
//! carries the lease's fencing token: a store that refuses tokens smaller than the largest
//! it has seen refuses the paused holder's writes.
//!
//! # Handoff
//!
//! A child whose actor implements [`Handoff`], registered with
//! [`DistributedSpec::handoff_kind`], keeps its state on a **planned move** of a
//! singleton: [`DistributedSupervisor::migrate`], a rebalance that moves it (`Eager`, or
//! `Manual` on [`rebalance`](DistributedSupervisor::rebalance)), and a graceful
//! [`shutdown`](DistributedSupervisor::shutdown) of its node, which [`Node::leave`] runs
//! first (a [leave hook](Node::on_leave)). The old node (A) carries it out (`PROTOCOL.md`
//! has the messages):
//!
//! 1. A holds its own [`cast`](DistributedSupervisor::cast)s and
//!    [`call`](DistributedSupervisor::call)s to the child, and asks every peer to do the
//!    same; each peer answers on the channel its messages to the child take, so that
//!    every message it sent before the hold is ahead of its answer.
//! 2. With every answer in (or the peer gone, or after the start timeout), A takes the
//!    child's name back and drains the instance: it handles everything in its mailbox,
//!    then [`Handoff::export`] gives its state. The state goes to the new node (B).
//! 3. B starts the instance with [`Handoff::restore`], registers its name, records the
//!    move (in one record: B runs it, A does not), and tells every node; each sends what
//!    it held, in order, to B, and from then on sends there.
//!
//! So a move runs **one incarnation at a time** (B starts after A has stopped), and the
//! messages sent **by id through the supervisor** during it arrive **once, in order** per
//! sender, after every message sent before it. If B cannot start it, or goes, or does not
//! answer within the start timeout, A starts it again from the state it took, and the
//! held messages go there; the caller of `migrate` gets [`MigrateError::Failed`].
//!
//! Per-node children (`Replicated`, `All`) and children of ordinary kinds are not handed
//! off: a planned move of one stops it and starts it afresh on the new node. The
//! mechanism works per child id, whatever its placement decided: partitioned placement
//! moves its shards with it.
//!
//! # Checkpoints
//!
//! A running handoff child may call [`checkpoint`] with a snapshot of its state. The
//! snapshot is kept on its node and copied, in memory, to
//! [`DistributedSpec::checkpoint_replicas`] other nodes (the next in the child's
//! distribution order, where a failover goes while views agree). A restart by its local
//! supervisor after a crash starts from the last checkpoint, so does a failover on
//! another node after its node died; with no checkpoint, from `init`. A handed-over
//! state counts as a checkpoint on the node that took the child over.
//!
//! # What is lost
//!
//! - **Planned move** (migrate, rebalance, graceful shutdown): nothing sent by id through
//!   [`cast`](DistributedSupervisor::cast) / [`call`](DistributedSupervisor::call) of a
//!   node running this supervisor. Lost: messages sent to a [`Location`] taken before the
//!   move (or through the registry directly) that reach the old node after its instance
//!   drained; messages held by a node beyond 65,536 per child (the cast fails); and, if
//!   the move times out, whatever a node that never answered the hold sent meanwhile. A
//!   call that the old instance was handling when the move began is answered by it.
//! - **Crash** (the local supervisor restarts it): the state since the last checkpoint,
//!   and the message being handled; the messages queued behind it are kept (as for any
//!   supervised actor).
//! - **Node death** (kill -9, power loss, partition lost): the state since the last
//!   checkpoint that reached the new owner (a checkpoint is sent, not confirmed: the
//!   newest may die with the node), and every message the dead node had accepted and not
//!   handled. The new owner holds the checkpoint if it was among the `k` copies; if views
//!   disagreed and it was not, the child starts from `init`.
//! - Checkpoints live in memory: when every node holding one goes, so does the state.
//!
//! # Examples
//!
//! One node here (a node is an OS process); on several, the same code runs on each and
//! the child runs on one of them, reachable from all.
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::prelude::*;
//! use foundation_cluster::node::{Node, NodeConfig};
//! use foundation_registry::ClusterRegistry;
//! use foundation_registry::distributed::{ChildName, DistributedSpec, DistributedSupervisor};
//! use foundation_registry::placement::{ChildPlacement, Placement};
//!
//! #[derive(Debug, RemoteMessage)]
//! enum Count {
//!     #[remote(tag = 1)]
//!     Add(u64),
//!     #[remote(tag = 2)]
//!     Get(ReplyPort<u64>),
//! }
//!
//! #[derive(Clone)]
//! struct Counter;
//! impl Actor for Counter {
//!     type Msg = Count;
//!     type State = u64;
//!     type Args = u64;
//!     async fn init(&self, _: &Addr<Count>, start: u64) -> Result<u64, ActorError> { Ok(start) }
//!     async fn handle(&self, _: &Addr<Count>, msg: Count, n: &mut u64) -> Result<(), ActorError> {
//!         match msg {
//!             Count::Add(k) => *n += k,
//!             Count::Get(port) => { let _ = port.send(*n); }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
//! let names: ClusterRegistry<ChildName, Count> = ClusterRegistry::start(&node, "counters").await?;
//! let spec = DistributedSpec::new("counters")
//!     .kind("counter", |start: u64| ChildSpec::new("counter", Counter, start));
//! let sup = DistributedSupervisor::start(&node, &names, spec).await?;
//!
//! // One instance in the cluster, reachable by id from every node.
//! let at = sup.start_child("counter", &10_u64, ChildPlacement::new("hits", Placement::Singleton)).await?;
//! assert_eq!(at.node(), "a");
//! sup.cast("hits", Count::Add(5))?;
//! assert_eq!(sup.call("hits", Count::Get, Duration::from_secs(5)).await?, 15);
//! assert!(sup.start_child("counter", &0_u64, ChildPlacement::new("hits", Placement::Singleton)).await.is_err());
//!
//! let children = sup.which_children();
//! assert_eq!((children[0].id.as_str(), children[0].instances[0].node.as_str()), ("hits", "a"));
//! assert_eq!(sup.count_children().active, 1);
//!
//! sup.terminate_child("hits").await?;
//! assert!(sup.whereis("hits").is_none());
//! sup.shutdown().await;
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod core;
mod error;
/// The supervisor's decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
mod handoff;
mod moves;
mod spec;
mod strict;
mod table;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::{RemoteMessage, ReplyPort};
use foundation_cluster::node::Node;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

pub use error::{Closed, MigrateError, StartChildError, StartError, TerminateError};
pub use handoff::{CheckpointError, Handoff, checkpoint};
pub(crate) use handoff::{EntityCheckpoint, entity_scope};
pub use spec::DistributedSpec;
pub use strict::Fence;

use self::core::{Cmd, Inner};
use self::table::{Removal, SpecWire, Stamp};
use crate::ClusterRegistry;
use crate::cluster::{CallError, CastError, Location, lock};
use crate::placement::{
    ChildPlacement, Exit, PendingReason, Placement, QuorumError, QuorumLoss, StartCause, Timing,
};

/// The name a distributed child's instance is registered under in the supervisor's
/// [`ClusterRegistry`]: `unique(id)` for one-instance placements (singleton, pinned,
/// local), `on(id, node)` for each instance of `Replicated` and `All`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChildName {
    /// The child's id.
    pub id: String,
    /// The node of this instance, for per-node placements.
    pub node: Option<String>,
}

impl ChildName {
    /// The name of a one-instance child.
    pub fn unique(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            node: None,
        }
    }

    /// The name of a per-node child's instance on `node`.
    pub fn on(id: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            node: Some(node.into()),
        }
    }
}

/// What a distributed supervisor did on this node ([`DistributedSupervisor::subscribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DistributedEvent {
    /// An instance started here and its name is registered.
    Started {
        /// The child.
        child: String,
        /// Why it was started.
        cause: StartCause,
    },
    /// An instance failed to start here (its `init` failed, its kind is unknown here, or
    /// its arguments do not decode). Recorded as a failure of the child.
    StartFailed {
        /// The child.
        child: String,
        /// Why.
        error: String,
    },
    /// The instance here was stopped by the supervisor (terminated, moved, a duplicate,
    /// given up, quorum lost, …).
    Stopped {
        /// The child.
        child: String,
        /// Why.
        reason: String,
    },
    /// The instance here ended on its own: its local supervisor does not restart it.
    Ended {
        /// The child.
        child: String,
        /// How.
        exit: Exit,
    },
    /// The child failed more often than its move intensity allows: it is removed.
    GaveUp {
        /// The child.
        child: String,
        /// Failures counted.
        failures: u64,
        /// The most allowed.
        max: u32,
    },
    /// This node's side of a partition lost the quorum: every instance here is stopped,
    /// with this reason, and none starts until the quorum is back.
    QuorumLost(QuorumLoss),
    /// The quorum is back.
    QuorumRegained,
    /// The split-brain policy cannot keep its promise in the membership as it settled
    /// here (a [`StaticQuorum`](crate::placement::Quorum::StaticQuorum) of at most half
    /// the members, a referee that is not a member): reported once per change, and
    /// [`start_child`](DistributedSupervisor::start_child) refuses children meanwhile.
    QuorumInvalid(QuorumError),
}

/// A child's status, cluster-wide, as this node's records say.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildStatus {
    /// At least one instance runs on a live node.
    Running,
    /// No instance runs yet: being started, or failing over (waiting for the quorum's
    /// start time).
    Starting,
    /// No node can run it now.
    Pending(PendingReason),
}

/// One instance of a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Its node.
    pub node: String,
    /// The node's incarnation when it started.
    pub incarnation: u64,
    /// Whether that node (that incarnation) is live in this node's view.
    pub live: bool,
    /// Restarts by that node's local supervisor.
    pub restarts: u64,
}

/// One child, as [`DistributedSupervisor::which_children`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// What it asked for.
    pub placement: ChildPlacement,
    /// Its recorded instances, by node.
    pub instances: Vec<InstanceInfo>,
    /// Its status.
    pub status: ChildStatus,
    /// Failures counted against its move intensity (failovers and restarts after its
    /// local supervisor gave up), within the intensity's period.
    pub failures: usize,
}

/// Counts of a distributed supervisor's children, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildCounts {
    /// Children known (live records).
    pub specs: usize,
    /// Children with at least one instance running on a live node.
    pub active: usize,
    /// Instances running on live nodes, in all.
    pub instances: usize,
    /// Instances running on this node.
    pub local: usize,
}

/// A child added by [`DistributedSupervisor::place_child`]: recorded, not necessarily
/// running yet. Give it to [`DistributedSupervisor::wait_child`] to wait for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    id: String,
    owners: Vec<String>,
    /// Its record's creation: a later start of the same id is another child.
    created: Stamp,
}

impl Placed {
    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The nodes the plan places its instances on, as this node saw the cluster when it
    /// was placed (the node of a singleton, a pinned or a local child; a per-node
    /// child's nodes), sorted. Empty when no node could run it then. Where it runs in
    /// the end may differ if membership changes before it starts.
    pub fn owners(&self) -> &[String] {
        &self.owners
    }
}

/// The next event of `names`, if subscribed; never when not (or once the registry is gone).
async fn next_name(names: &mut Option<broadcast::Receiver<crate::RegistryEvent<ChildName>>>) {
    match names {
        Some(events) => match events.recv().await {
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// One node's part of a distributed supervisor. Cheap to clone; every clone is the same.
/// See the [module docs](self).
pub struct DistributedSupervisor<M: RemoteMessage> {
    inner: Arc<Inner<M>>,
}

impl<M: RemoteMessage> Clone for DistributedSupervisor<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<M: RemoteMessage> fmt::Debug for DistributedSupervisor<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistributedSupervisor")
            .field("name", &self.inner.spec.name)
            .field("node", &self.inner.me)
            .finish_non_exhaustive()
    }
}

impl<M: RemoteMessage> DistributedSupervisor<M> {
    /// Starts this node's part of the supervisor `spec` names, registering its children's
    /// names in `registry` (give each supervisor a registry scope of its own). Start it
    /// with the same name and kinds on every node.
    ///
    /// # Errors
    ///
    /// [`StartError::NameTaken`] if a supervisor of that name runs here already,
    /// [`StartError::Spawn`] if its process cannot start.
    pub async fn start(
        node: &Node,
        registry: &ClusterRegistry<ChildName, M>,
        spec: DistributedSpec<M>,
    ) -> Result<Self, StartError> {
        let mut spec = spec;
        let silence = node.silence();
        if !spec.timing_set {
            spec.timing.silence = silence;
        } else if spec.timing.silence < silence {
            tracing::warn!(supervisor = %spec.name, set = ?spec.timing.silence, node = ?silence, "the supervisor's silence is shorter than the node's: raised to the node's");
            spec.timing.silence = silence;
        }
        let (tx, rx) = mpsc::channel(1024);
        let sync_every = spec.sync_every;
        let inner = Arc::new(Inner::new(node, registry, spec, tx.clone()));
        let receiver = foundation_actors::spawn(wire::Receiver { tx }, ()).await?;
        if node.export(&inner.service, receiver.clone()).is_err() {
            receiver.stop(None);
            return Err(StartError::NameTaken(inner.spec.name.clone()));
        }
        *lock(&inner.receiver) = Some(receiver);
        // Subscribe before greeting the members, so no one joining in between is missed.
        let events = node.subscribe();
        let names = registry.subscribe();
        let task = tokio::spawn(self::core::run(
            Arc::downgrade(&inner),
            inner.kick.clone(),
            rx,
            events,
            names,
            sync_every,
        ));
        lock(&inner.tasks).push(task);
        if let Some(strict) = &inner.spec.strict {
            let lost = strict.leases.subscribe();
            let forward = tokio::spawn(self::core::forward_lost_leases(lost, inner.cmds.clone()));
            lock(&inner.tasks).push(forward);
        }
        let replicate = tokio::spawn(self::moves::replicate(
            Arc::downgrade(&inner),
            inner.ckpt_out.clone(),
        ));
        lock(&inner.tasks).push(replicate);
        // A graceful `Node::leave` shuts this part down gracefully first: its children
        // are handed off before the node goes.
        let weak = Arc::downgrade(&inner);
        let hook = node.on_leave(Arc::new(move || {
            let weak = weak.clone();
            Box::pin(async move {
                if let Some(inner) = weak.upgrade() {
                    DistributedSupervisor { inner }.shutdown().await;
                }
            })
        }));
        *lock(&inner.leave_hook) = Some(hook);
        // The members up already: no start here before their records have arrived.
        inner.await_members(&mut lock(&inner.state));
        inner.hello_all();
        Ok(Self { inner })
    }

    /// The fencing token of the lease this node's instance of `id` runs under, in
    /// [strict mode](DistributedSpec::strict); `None` when no instance of `id` runs here
    /// under a lease. The child itself reads it from its [`Fence`]
    /// ([`DistributedSpec::kind_fenced`]).
    pub fn fencing_token(&self, id: &str) -> Option<u64> {
        lock(&self.inner.local)
            .get(id)
            .and_then(|l| l.fence.token())
    }

    /// The placement view this node plans with now: itself and its peers running the
    /// supervisor, their incarnations, roles and leaving flags (what sharded entities
    /// place their shards over).
    pub(crate) fn placement_view(&self) -> crate::placement::View {
        let st = lock(&self.inner.state);
        self.inner.view(&st)
    }

    /// Unhooks this supervisor from [`Node::leave`]: its owner (a `Sharded`) leaves in
    /// its own way there, and shuts the supervisor down itself.
    pub(crate) fn unhook_leave(&self) {
        if let Some(hook) = lock(&self.inner.leave_hook).take() {
            self.inner.node.remove_on_leave(hook);
        }
    }

    /// Ticks at the end of each pass of the supervisor's loop (after membership events,
    /// peers' hellos and records).
    pub(crate) fn passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The timing its split-brain decisions follow: [`DistributedSpec::timing`], with the
    /// silence taken from the node when it was not set, or raised to the node's when it
    /// was shorter.
    pub fn timing(&self) -> Timing {
        self.inner.spec.timing
    }

    /// The nodes running this supervisor as this node sees them (itself included), sorted:
    /// the nodes children are placed on.
    pub fn members(&self) -> Vec<String> {
        let st = lock(&self.inner.state);
        self.inner.view(&st).names().map(str::to_owned).collect()
    }

    /// Adds a child of `kind` with `args`, placed by `placement` (its id is
    /// `placement.id`), and waits until an instance answers by name (or the spec's start
    /// timeout passes): [`place_child`](Self::place_child), then
    /// [`wait_child`](Self::wait_child). Returns where that instance is. A `Local` child
    /// without a home gets this node.
    ///
    /// A `Replicated { n }` larger than the cluster is not an error: it runs on every
    /// eligible node and gains instances as nodes join.
    ///
    /// An answering start placed on another node includes a round trip to it (the
    /// record there, the instance's name and record back); use `place_child` alone to
    /// return once the child is recorded here.
    ///
    /// # Errors
    ///
    /// [`StartChildError::UnknownKind`], [`StartChildError::Args`],
    /// [`StartChildError::WrongArgs`] (not of the kind's argument type),
    /// [`StartChildError::Placement`] (`Pinned` to a node not running this supervisor,
    /// zero replicas), [`StartChildError::Quorum`] (the split-brain policy cannot keep
    /// its promise among the members running this supervisor now: see
    /// [`Quorum::validate`](crate::placement::Quorum::validate)),
    /// [`StartChildError::AlreadyStarted`], [`StartChildError::NameTaken`];
    /// once added: [`StartChildError::GaveUp`] (it failed on every node it was tried on),
    /// [`StartChildError::Pending`] (no node can run it; it stays),
    /// [`StartChildError::Removed`], [`StartChildError::Timeout`] (it stays), or
    /// [`StartChildError::Closed`].
    pub async fn start_child<A: Serialize + ?Sized>(
        &self,
        kind: &str,
        args: &A,
        placement: ChildPlacement,
    ) -> Result<Location<M>, StartChildError> {
        let placed = self.place_child(kind, args, placement)?;
        self.wait_child(&placed).await
    }

    /// Adds a child of `kind` with `args`, placed by `placement` (its id is
    /// `placement.id`), and returns once it is **recorded** here: the counterpart of a
    /// [`ClusterRegistry::register`], which returns after its local insert. It does not
    /// wait for an instance: its record is queued for every peer, and this node's loop
    /// is woken to plan it (a wakeup is never lost, and never waited for). A `Local`
    /// child without a home gets this node.
    ///
    /// What is checked here is exactly what [`start_child`](Self::start_child) checks
    /// before it waits. Once it returns, the child is part of the supervisor (as after
    /// a `start_child` that timed out): [`which_children`](Self::which_children) lists
    /// it (`Starting` until an instance runs, `Pending` when no node can run it), a
    /// second `place_child` of its id is `AlreadyStarted`, and
    /// [`terminate_child`](Self::terminate_child) removes it. What may still fail after
    /// it returns — its `init` failing on every node (it is given up and removed), no
    /// node able to run it, a concurrent start of the same id on another node winning,
    /// a removal — is reported by [`wait_child`](Self::wait_child) (as `start_child`'s
    /// errors), and by the [events](Self::subscribe) of the nodes that try it
    /// ([`DistributedEvent::StartFailed`], [`DistributedEvent::GaveUp`]).
    ///
    /// [`Placed::owners`] says where the plan places it now, as this node sees the
    /// cluster.
    ///
    /// # Errors
    ///
    /// [`StartChildError::UnknownKind`], [`StartChildError::Args`],
    /// [`StartChildError::Placement`], [`StartChildError::Quorum`],
    /// [`StartChildError::AlreadyStarted`], [`StartChildError::NameTaken`] (as
    /// [`start_child`](Self::start_child)), [`StartChildError::Closed`].
    pub fn place_child<A: Serialize + ?Sized>(
        &self,
        kind: &str,
        args: &A,
        placement: ChildPlacement,
    ) -> Result<Placed, StartChildError> {
        let inner = &self.inner;
        let id = placement.id.clone();
        if !inner.spec.kinds.contains_key(kind) {
            return Err(StartChildError::UnknownKind {
                kind: kind.to_owned(),
            });
        }
        let bytes = postcard::to_allocvec(args).map_err(|source| StartChildError::Args {
            child: id.clone(),
            source,
        })?;
        if let Some(expected) = inner.spec.args.get(kind) {
            if (expected.check)(&bytes).is_err() {
                return Err(StartChildError::WrongArgs {
                    child: id,
                    kind: kind.to_owned(),
                    expected: expected.name,
                });
            }
        }
        let mut placement = placement;
        if placement.placement == Placement::Local && placement.home.is_none() {
            placement.home = Some(inner.me.clone());
        }
        let placed = {
            let mut st = lock(&inner.state);
            if st.closed {
                return Err(StartChildError::Closed);
            }
            let view = inner.view(&st);
            placement.validate(&view)?;
            inner.spec.quorum.validate(&view)?;
            if let Some(record) = st.table.live(&id) {
                let node = record
                    .slots
                    .iter()
                    .find(|(_, s)| s.instance.is_some())
                    .map(|(n, _)| n.clone());
                return Err(StartChildError::AlreadyStarted { child: id, node });
            }
            let tombstone = st.table.is_removed(&id);
            if !tombstone {
                if let Some(at) = inner.registry.whereis(&ChildName::unique(id.clone())) {
                    return Err(StartChildError::NameTaken {
                        child: id,
                        holder: at.node().to_owned(),
                    });
                }
            }
            let owners = inner.owners_now(&st, &view, &placement);
            // A node catching up with its peers (young, or back from a partition) has not
            // got their records yet: a record of this id may exist there, and must win.
            // So must one declared anywhere in this node's join grace, even while it knows
            // no member yet (its boot code declaring before it met the cluster: it starts
            // its instance at once, as a cluster of one, and stops it when the records
            // meet). At a cold start every node is young, and those records are ordered
            // by `born`.
            let catching_up = inner.await_members(&mut st);
            let oldest = catching_up || inner.young();
            let created = st.table.add(
                SpecWire::from_placement(kind, bytes, placement),
                tombstone,
                oldest,
            );
            // Sent by the loop at the end of its pass (with the instance's record, if it
            // starts here in that pass).
            st.outbox.insert(id.clone());
            Placed {
                id,
                owners,
                created,
            }
        };
        inner.kick();
        Ok(placed)
    }

    /// Waits until an instance of the child [`place_child`](Self::place_child) placed
    /// answers by name and is recorded (so that a failure of its node is a failover),
    /// or the spec's start timeout passes; returns where that instance is (this node's,
    /// if one runs here). Started here, the loop that starts it tells this call at once;
    /// started on another node, it is the record and the name coming back from there.
    ///
    /// # Errors
    ///
    /// [`StartChildError::GaveUp`] (it failed on every node it was tried on: removed),
    /// [`StartChildError::Pending`] (no node can run it now; it stays),
    /// [`StartChildError::Removed`] (terminated meanwhile, or it ended and its restart
    /// type does not bring it back), [`StartChildError::AlreadyStarted`] (a concurrent
    /// start of the same id on another node won), [`StartChildError::Timeout`] (it
    /// stays, and may still start), [`StartChildError::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future leaves the child as it is.
    pub async fn wait_child(&self, placed: &Placed) -> Result<Location<M>, StartChildError> {
        let inner = &self.inner;
        let id = placed.id.as_str();
        let child = || id.to_owned();
        let mut changed = inner.changed.subscribe();
        let waiting = inner.waiting(id);
        // The registry's events, once an instance is recorded somewhere but its name has
        // not reached this node: a start carried out here answers through `waiting`.
        let mut names: Option<broadcast::Receiver<crate::RegistryEvent<ChildName>>> = None;
        let timeout = inner.spec.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let recorded = {
                let st = lock(&inner.state);
                if st.closed {
                    return Err(StartChildError::Closed);
                }
                match st.table.get(id) {
                    Some(r) if r.created != placed.created => {
                        // A concurrent start of the same id on another node won.
                        return Err(StartChildError::AlreadyStarted {
                            child: child(),
                            node: None,
                        });
                    }
                    Some(r) => match &r.removed {
                        Some((_, Removal::GaveUp { failures, max })) => {
                            return Err(StartChildError::GaveUp {
                                child: child(),
                                failures: *failures,
                                max: *max,
                            });
                        }
                        Some(_) => return Err(StartChildError::Removed { child: child() }),
                        None => r.slots.values().any(|s| s.instance.is_some()),
                    },
                    None => return Err(StartChildError::Removed { child: child() }),
                }
            };
            if let Some(reason) = lock(&inner.state).pending.get(id) {
                return Err(StartChildError::Pending {
                    child: child(),
                    reason: reason.clone(),
                });
            }
            // Started means named and recorded: then a failure of its node is a failover.
            if recorded {
                if let Some(at) = self.whereis(id) {
                    let named_there = lock(&inner.state)
                        .table
                        .live(id)
                        .and_then(|r| r.slots.get(at.node()))
                        .is_some_and(|s| s.instance.is_some());
                    if named_there {
                        return Ok(at);
                    }
                }
                if names.is_none() {
                    // Subscribed, then checked again: a name arriving in between is seen.
                    names = Some(inner.registry.subscribe());
                    continue;
                }
            }
            tokio::select! {
                () = waiting.notified() => {}
                r = changed.changed() => if r.is_err() { return Err(StartChildError::Closed) },
                () = next_name(&mut names) => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(StartChildError::Timeout { child: child(), waited: timeout });
                }
            }
        }
    }

    /// Removes the child `id` everywhere: every instance is stopped by its node and its
    /// names go. Waits (up to the spec's start timeout) until no instance answers by
    /// name on this node.
    ///
    /// # Errors
    ///
    /// [`TerminateError::NotFound`], [`TerminateError::Timeout`] (removed, but an
    /// instance still answered), [`TerminateError::Closed`].
    pub async fn terminate_child(&self, id: &str) -> Result<(), TerminateError> {
        let inner = &self.inner;
        let mut changed = inner.changed.subscribe();
        let mut names = inner.registry.subscribe();
        {
            let mut st = lock(&inner.state);
            if st.closed {
                return Err(TerminateError::Closed);
            }
            let Some(record) = st.table.remove(id, Removal::Terminated) else {
                return Err(TerminateError::NotFound {
                    child: id.to_owned(),
                });
            };
            inner.broadcast(&st, vec![record]);
        }
        inner.kick();
        let timeout = inner.spec.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        while self.resolve(id, true).is_some() {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return Err(TerminateError::Closed) },
                _ = names.recv() => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(TerminateError::Timeout { child: id.to_owned(), waited: timeout });
                }
            }
        }
        Ok(())
    }

    /// Where an instance of child `id` is: the one on this node if there is one, else
    /// another (the first by node name). `None` if none answers by name now.
    ///
    /// Just after a [handoff](self#handoff), the new place, until the registry here has
    /// caught up.
    pub fn whereis(&self, id: &str) -> Option<Location<M>> {
        self.inner.locate(id)
    }

    fn resolve(&self, id: &str, removed_too: bool) -> Option<Location<M>> {
        self.inner.resolve(id, removed_too)
    }

    /// Sends `msg` to an instance of child `id` ([`whereis`](Self::whereis)). While the
    /// child moves ([handoff](self#handoff)), the message is held here and sent, in order
    /// with the others held, to the new incarnation once it answers.
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::cast`]: [`CastError::NoSuchName`] if none answers by name;
    /// [`CastError::NotDelivered`] if 65,536 messages are held for the moving child here
    /// already.
    pub fn cast(&self, id: &str, msg: M) -> Result<(), CastError<M>> {
        self.inner.route_cast(id, msg)
    }

    /// Calls an instance of child `id` ([`whereis`](Self::whereis)) with the request
    /// `build` makes around a reply port, waiting at most `timeout`. While the child
    /// moves ([handoff](self#handoff)), the call waits (within `timeout`) for the new
    /// incarnation, and goes after the casts held meanwhile.
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::call`]: [`CallError::NoSuchName`] if none answers by name.
    pub async fn call<R, F>(&self, id: &str, build: F, timeout: Duration) -> Result<R, CallError>
    where
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.inner.changed.subscribe();
        while self.inner.holding(id) {
            tokio::select! {
                r = changed.changed() => if r.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        match self.whereis(id) {
            Some(at) => crate::cluster::call_at(&self.inner.node, &at, build, timeout).await,
            None => Err(CallError::NoSuchName(id.to_owned())),
        }
    }

    /// Every child, cluster-wide, as this node's records say (the same on every node
    /// once the records have converged): where each instance runs, its status, its local
    /// restarts and its counted failures. Sorted by id.
    pub fn which_children(&self) -> Vec<ChildInfo> {
        let inner = &self.inner;
        let st = lock(&inner.state);
        let view = inner.view(&st);
        let now = self::core::now_ms();
        st.table
            .all_live()
            .map(|r| {
                let placement = r.spec.placement();
                let instances: Vec<InstanceInfo> = r
                    .slots
                    .iter()
                    .filter_map(|(node, s)| {
                        s.instance.map(|incarnation| InstanceInfo {
                            node: node.clone(),
                            incarnation,
                            live: view.is_live(node, incarnation),
                            restarts: s.restarts,
                        })
                    })
                    .collect();
                let status = if instances.iter().any(|i| i.live) {
                    ChildStatus::Running
                } else if let Some(reason) = st.pending.get(&r.spec.id) {
                    ChildStatus::Pending(reason.clone())
                } else {
                    ChildStatus::Starting
                };
                ChildInfo {
                    id: r.spec.id.clone(),
                    kind: r.spec.kind.clone(),
                    failures: r.state().recent_failures(now, placement.intensity.period),
                    placement,
                    instances,
                    status,
                }
            })
            .collect()
    }

    /// Counts of the children, cluster-wide, as this node's records say.
    pub fn count_children(&self) -> ChildCounts {
        let children = self.which_children();
        let local = lock(&self.inner.local).len();
        ChildCounts {
            specs: children.len(),
            active: children
                .iter()
                .filter(|c| c.status == ChildStatus::Running)
                .count(),
            instances: children
                .iter()
                .map(|c| c.instances.iter().filter(|i| i.live).count())
                .sum(),
            local,
        }
    }

    /// Asks every node of the supervisor to rebalance once: children with
    /// [`Rebalance::Manual`](crate::placement::Rebalance::Manual) move to where the
    /// distribution places them now, as `Eager` ones do on their own (a singleton of a
    /// [`handoff_kind`](DistributedSpec::handoff_kind) is handed off, see
    /// [handoff](self#handoff); others stop on the old node and start afresh on the new
    /// one). `Passive` children stay.
    ///
    /// # Errors
    ///
    /// [`Closed`] if the supervisor was shut down.
    pub async fn rebalance(&self) -> Result<(), Closed> {
        self.inner.rebalance_all();
        self.inner
            .cmds
            .send(Cmd::Rebalance)
            .await
            .map_err(|_| Closed)
    }

    /// What this node's part does from now on: starts, stops, ends, give-ups, quorum
    /// changes. A subscriber more than 1024 events behind misses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<DistributedEvent> {
        self.inner.events.subscribe()
    }

    /// Moves child `id` (a singleton of a [`handoff_kind`](DistributedSpec::handoff_kind))
    /// to node `to` with its state, holding the messages sent to it by id meanwhile (see
    /// [handoff](self#handoff)), and returns once the new incarnation answers there (or
    /// the spec's start timeout passes). A `Passive` or `Manual` child stays there; an
    /// `Eager` one returns to its distribution's choice at the next plan.
    ///
    /// # Errors
    ///
    /// [`MigrateError::NotFound`], [`MigrateError::NotMovable`] (not a singleton),
    /// [`MigrateError::NoHandoff`] (its kind is not a handoff kind),
    /// [`MigrateError::UnknownNode`] (`to` does not run this supervisor, or is leaving),
    /// [`MigrateError::MissingRole`], [`MigrateError::NotRunning`]; once asked:
    /// [`MigrateError::Failed`] (it runs on again where it was),
    /// [`MigrateError::Timeout`], [`MigrateError::Closed`].
    pub async fn migrate(&self, id: &str, to: &str) -> Result<Location<M>, MigrateError> {
        let inner = &self.inner;
        let child = || id.to_owned();
        let owner = {
            let st = lock(&inner.state);
            if st.closed {
                return Err(MigrateError::Closed);
            }
            let Some(record) = st.table.live(id) else {
                return Err(MigrateError::NotFound { child: child() });
            };
            let placement = record.spec.placement();
            if placement.placement != Placement::Singleton {
                return Err(MigrateError::NotMovable {
                    child: child(),
                    placement: placement.placement,
                });
            }
            if !inner.spec.handoff.contains(&record.spec.kind) {
                return Err(MigrateError::NoHandoff {
                    child: child(),
                    kind: record.spec.kind.clone(),
                });
            }
            let view = inner.view(&st);
            let Some(node) = view.get(to).filter(|n| !n.leaving) else {
                return Err(MigrateError::UnknownNode {
                    child: child(),
                    node: to.to_owned(),
                });
            };
            if !node.has_role(placement.role.as_deref()) {
                return Err(MigrateError::MissingRole {
                    child: child(),
                    node: to.to_owned(),
                    role: placement.role.unwrap_or_default(),
                });
            }
            let owner = record
                .slots
                .iter()
                .find(|(n, s)| s.instance.is_some_and(|i| view.is_live(n, i)))
                .map(|(n, _)| n.clone());
            let Some(owner) = owner else {
                return Err(MigrateError::NotRunning { child: child() });
            };
            owner
        };
        if owner == to {
            if let Some(at) = self.whereis(id) {
                return Ok(at);
            }
        }
        let req = inner.next_req();
        let mut changed = inner.changed.subscribe();
        let asked = if owner == inner.me {
            inner
                .cmds
                .send(Cmd::Migrate {
                    id: id.to_owned(),
                    to: to.to_owned(),
                    req,
                })
                .await
                .is_ok()
        } else {
            inner
                .node
                .send_on(
                    foundation_cluster::node::CONTROL,
                    &owner,
                    &inner.service,
                    &wire::DsupMsg(wire::Wire::Migrate {
                        id: id.to_owned(),
                        to: to.to_owned(),
                        from: inner.me.clone(),
                        req,
                    }),
                )
                .is_ok()
        };
        if !asked {
            return Err(MigrateError::Failed {
                child: child(),
                why: format!("node {owner} could not be asked"),
            });
        }
        let timeout = inner.spec.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(why) = lock(&inner.failed_moves).remove(&req) {
                return Err(MigrateError::Failed {
                    child: child(),
                    why,
                });
            }
            if !inner.holding(id) {
                if let Some(at) = self.whereis(id).filter(|at| at.node() == to) {
                    return Ok(at);
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return Err(MigrateError::Closed) },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(MigrateError::Timeout { child: child(), waited: timeout });
                }
            }
        }
    }

    /// The sequence number of the newest checkpoint of child `id` this node keeps (its
    /// own instance's, or a copy), if any.
    pub fn checkpoint_seq(&self, id: &str) -> Option<u64> {
        let st = lock(&self.inner.state);
        let created = st.table.live(id)?.created.clone();
        drop(st);
        self.inner.checkpoint_for(id, &created).map(|s| s.seq)
    }

    /// Stops this node's part, gracefully: each singleton of a
    /// [`handoff_kind`](DistributedSpec::handoff_kind) running here is first handed off
    /// to the node its distribution picks next (state and held messages, see
    /// [handoff](self#handoff)), waiting at most the spec's start timeout; then the other
    /// instances stop (and start on other nodes, as after a failure that is not counted),
    /// and its peers are told it left. [`Node::leave`] calls it first (a leave hook).
    pub async fn shutdown(&self) {
        // Through the loop, so that no plan runs while the instances stop; directly if
        // the loop is gone.
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.inner.cmds.send(Cmd::Close(done)).await.is_err() || closed.await.is_err() {
            self.inner.close().await;
        }
        self.inner.abort();
    }
}
