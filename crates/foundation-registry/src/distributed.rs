//! The distributed supervisor: Horde's DynamicSupervisor on Foundation nodes, driven by
//! the [placement core](crate::placement).
//!
//! Start a [`DistributedSupervisor`] of the same name on every node: together they are
//! one logical supervisor. [`DistributedSupervisor::start_child`] on any node adds a child
//! with a [`ChildPlacement`] (singleton, replicated, all, pinned, local); every node runs
//! the same [`Planner`](crate::placement::Planner) over the same records and membership,
//! and each starts, keeps or stops its own part. There is no leader.
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
//!   [`ChildName`]: `unique(id)` for one-instance placements (so the registry's conflict
//!   resolution is a second guard against duplicates), `on(id, node)` for `Replicated`
//!   and `All`. [`DistributedSupervisor::whereis`], [`call`](DistributedSupervisor::call)
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
//! # Not built yet
//!
//! - **Handoff.** A planned move ([`Action::HandOff`](crate::placement::Action::HandOff))
//!   is carried out as a stop on the old node followed by a fresh start on the new one:
//!   the state is not handed over and messages sent during the move to the old instance
//!   are lost. Handoff with held messages and checkpoints is the next step.
//! - **Strict mode** (a singleton guarded by a lease with a fencing token).
//! - `migrate()`, and `Node::leave` handing children off first.
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
mod spec;
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

pub use error::{Closed, StartChildError, StartError, TerminateError};
pub use spec::DistributedSpec;

use self::core::{Cmd, Inner};
use self::table::{Removal, SpecWire};
use crate::ClusterRegistry;
use crate::cluster::{CallError, CastError, Location, lock};
use crate::placement::{ChildPlacement, Exit, PendingReason, Placement, QuorumLoss, StartCause};

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
            rx,
            events,
            names,
            sync_every,
        ));
        lock(&inner.tasks).push(task);
        inner.hello_all();
        Ok(Self { inner })
    }

    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The nodes running this supervisor as this node sees them (itself included), sorted:
    /// the nodes children are placed on.
    pub fn members(&self) -> Vec<String> {
        let st = lock(&self.inner.state);
        self.inner.view(&st).names().map(str::to_owned).collect()
    }

    /// Adds a child of `kind` with `args`, placed by `placement` (its id is
    /// `placement.id`), and waits until an instance answers by name (or the spec's start
    /// timeout passes). Returns where that instance is. A `Local` child without a home
    /// gets this node.
    ///
    /// A `Replicated { n }` larger than the cluster is not an error: it runs on every
    /// eligible node and gains instances as nodes join.
    ///
    /// # Errors
    ///
    /// [`StartChildError::UnknownKind`], [`StartChildError::Args`],
    /// [`StartChildError::Placement`] (`Pinned` to a node not running this supervisor,
    /// zero replicas), [`StartChildError::AlreadyStarted`], [`StartChildError::NameTaken`];
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
        let mut placement = placement;
        if placement.placement == Placement::Local && placement.home.is_none() {
            placement.home = Some(inner.me.clone());
        }
        let mut changed = inner.changed.subscribe();
        let mut names = inner.registry.subscribe();
        let created = {
            let mut st = lock(&inner.state);
            if st.closed {
                return Err(StartChildError::Closed);
            }
            placement.validate(&inner.view(&st))?;
            if let Some(record) = st.table.live(&id) {
                let node = record
                    .slots
                    .iter()
                    .find(|(_, s)| s.instance.is_some())
                    .map(|(n, _)| n.clone());
                return Err(StartChildError::AlreadyStarted { child: id, node });
            }
            if st.table.get(&id).is_none() {
                if let Some(at) = inner.registry.whereis(&ChildName::unique(id.clone())) {
                    return Err(StartChildError::NameTaken {
                        child: id,
                        holder: at.node().to_owned(),
                    });
                }
            }
            let record = st.table.create(SpecWire::new(kind, bytes, &placement));
            let created = record.created.clone();
            inner.broadcast(&st, vec![record]);
            created
        };
        if inner.cmds.send(Cmd::Kick).await.is_err() {
            return Err(StartChildError::Closed);
        }
        let timeout = inner.spec.start_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let st = lock(&inner.state);
                if st.closed {
                    return Err(StartChildError::Closed);
                }
                match st.table.get(&id) {
                    Some(r) if r.created != created => {
                        // A concurrent start of the same id on another node won.
                        return Err(StartChildError::AlreadyStarted {
                            child: id,
                            node: None,
                        });
                    }
                    Some(r) => match &r.removed {
                        Some((_, Removal::GaveUp { failures, max })) => {
                            return Err(StartChildError::GaveUp {
                                child: id,
                                failures: *failures,
                                max: *max,
                            });
                        }
                        Some(_) => return Err(StartChildError::Removed { child: id }),
                        None => {}
                    },
                    None => return Err(StartChildError::Removed { child: id }),
                }
                if let Some(reason) = st.pending.get(&id) {
                    return Err(StartChildError::Pending {
                        child: id,
                        reason: reason.clone(),
                    });
                }
            }
            // Started means named and recorded: then a failure of its node is a failover.
            if let Some(at) = self.whereis(&id) {
                let recorded = lock(&inner.state)
                    .table
                    .live(&id)
                    .and_then(|r| r.slots.get(at.node()))
                    .is_some_and(|s| s.instance.is_some());
                if recorded {
                    return Ok(at);
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return Err(StartChildError::Closed) },
                _ = names.recv() => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(StartChildError::Timeout { child: id, waited: timeout });
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
        if inner.cmds.send(Cmd::Kick).await.is_err() {
            return Err(TerminateError::Closed);
        }
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
    pub fn whereis(&self, id: &str) -> Option<Location<M>> {
        self.resolve(id, false)
    }

    fn resolve(&self, id: &str, removed_too: bool) -> Option<Location<M>> {
        let inner = &self.inner;
        let (per_node, nodes) = {
            let st = lock(&inner.state);
            let record = if removed_too {
                st.table.get(id)
            } else {
                st.table.live(id)
            }?;
            let mut nodes: Vec<String> = vec![inner.me.clone()];
            nodes.extend(record.slots.keys().cloned());
            nodes.extend(st.peers.keys().cloned());
            (record.spec.per_node(), nodes)
        };
        if !per_node {
            return inner.registry.whereis(&ChildName::unique(id));
        }
        nodes
            .into_iter()
            .find_map(|node| inner.registry.whereis(&ChildName::on(id, node)))
    }

    /// Sends `msg` to an instance of child `id` ([`whereis`](Self::whereis)).
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::cast`]: [`CastError::NoSuchName`] if none answers by name.
    pub fn cast(&self, id: &str, msg: M) -> Result<(), CastError<M>> {
        match self.whereis(id) {
            Some(at) => crate::cluster::cast_at(&self.inner.node, &at, msg, || id.to_owned()),
            None => Err(CastError::NoSuchName {
                name: id.to_owned(),
                msg,
            }),
        }
    }

    /// Calls an instance of child `id` ([`whereis`](Self::whereis)) with the request
    /// `build` makes around a reply port, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::call`]: [`CallError::NoSuchName`] if none answers by name.
    pub async fn call<R, F>(&self, id: &str, build: F, timeout: Duration) -> Result<R, CallError>
    where
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
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
    /// distribution places them now, as `Eager` ones do on their own (for now a move is a
    /// stop on the old node and a fresh start on the new one: the state is not handed
    /// over). `Passive` children stay.
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

    /// Stops this node's part: its instances are stopped (and start on other nodes, as
    /// after a failure that is not counted), its peers are told it left.
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
