//! Sharded entities (Akka Cluster Sharding, Orleans' virtual actors): many light
//! processes, one per key, started by their first message and passivated when idle.
//!
//! [`Sharded::new`] runs them on one node; [`Sharded::start_on`] spreads their shards
//! over the nodes of a cluster (see [Across a cluster](#across-a-cluster)).
//!
//! # The model
//!
//! A [`Sharded`] runs an entity type, any [`Actor`] (a hand-written one, or an `#[actor]`
//! type through [`TypedActor::actor`](foundation_actors::TypedActor::actor)), under one
//! name. [`Sharded::entity`] gives the typed handle of the entity of a key (`CounterRef`
//! for an `#[actor] impl Counter`) and [`Sharded::addr`] its [`Addr`]: casts and calls
//! through them reach the entity, starting it if it is not running (Orleans'
//! "activation"): the caller never spawns. The sender's [`Context`](foundation_actors::Context)
//! is current in the handler, as for any actor. Inside a handler, `me` (or
//! `ctx.me()`) is the entity's own address and `ctx.stop()` passivates it.
//!
//! Keys map to a fixed number of shards ([`ShardedSpec::shards`], 1,024 by default) by
//! an xxh3 hash of the key mod the count, the same on every node: shards, not keys, are
//! what a cluster will place and move.
//!
//! # Entities are light
//!
//! An entity is not a ractor actor (one costs about 9.5 KB idle here). Each shard is a map
//! from key to an entry: the entity's state while idle, a queue (unallocated while empty),
//! a `running` flag and two clocks. An entity with messages is run by a *runner*, a tokio
//! task that takes the state out of the entry, handles the queued messages one at a time
//! (through [`foundation_actors::hosted`], which makes the sender's context current and
//! catches panics), and puts the state back when the queue is empty. So an entity handles
//! one message at a time, in the order they were queued, and any number of entities run in
//! parallel on the runtime's workers; an idle entity has no task, no channel, no timer.
//!
//! Runner tasks are pooled (`sharded/pool.rs`): a task that has put an entity back takes
//! the next entity with work, or waits for one, so a message to an idle entity wakes a
//! waiting task instead of spawning one. At most as many tasks run entities whose
//! handlers are not waiting as the runtime has workers; an entity whose handler awaits
//! (I/O, a call) hands the queue to another task, so it never holds up the others. A
//! runner runs an entity with the address the waking message was sent through (no new
//! address per run). The pool's protocol is model-checked by loom in
//! `sharded/pool/tests/loom_pool.rs`.
//!
//! The protocol between senders and a runner is a flag under the shard's mutex: the
//! sender that finds the entity not running sets the flag and starts its runner, and the
//! runner parks (puts the state back and clears the flag) in the same critical section in
//! which it finds the queue empty. It is described in `sharded/shard.rs` and model-checked
//! by loom in `sharded/shard/tests/loom_shard.rs` (`cargo test -p foundation-registry --features
//! loom --lib loom`).
//!
//! ## Memory per idle entity
//!
//! On a 64-bit target, for a key of `k` bytes and a state of `s` bytes (an `#[actor]`
//! state `T` is held as `Running<T>`: `T` plus its 56-byte `Ctx`):
//!
//! | what | bytes |
//! |---|---|
//! | the entry: state `s`, queue (24), flags and clocks (24), key `k` | `s + k + 48` |
//! | hash-table slack: 1 control byte per bucket, load between 7/16 and 7/8 | ×1.14 to ×2.3 |
//! | the entity's own address, kept by an `#[actor]` state's `Ctx`: its slot (~100) and route (32 + `k`) | ~130 + `k` |
//!
//! For a `u64` key and an `#[actor]` state of one `u64` that is about 300 B in all, of
//! which 8 are the state: the budget is 400 B beyond the state (`cargo xtask bench`, row
//! "idle sharded entity"). A hand-written [`Actor`] whose state does not keep its address
//! saves the last row.
//!
//! # Passivation
//!
//! An entity is stopped (*passivated*) when it has had no message for
//! [`ShardedSpec::idle_timeout`] (checked twice per timeout by the region, so it stops
//! between 1 and 1.5 timeouts after its last message), when [`Sharded::passivate`] or its
//! own `ctx.stop()` asks, and when its shard is over its share of
//! [`ShardedSpec::max_entities`]: the limit is per node and each shard gets an equal part,
//! as in Akka; a new entity over it passivates its shard's least recently used idle
//! entity. Entities that are running are never passivated by the limit, so the count can
//! exceed it by the entities busy at that moment.
//!
//! Stopping an entity runs its `terminate`, or, with [`ShardedSpec::handoff`] (an entity
//! that implements [`Handoff`]), keeps its [`Handoff::export`]ed snapshot on this node
//! (as its last [checkpoint](#checkpoints)); its next message starts it again from the
//! snapshot ([`Handoff::restore`]), or with `init` when it has none. Messages that arrive
//! while an entity stops queue behind the stop.
//!
//! # Checkpoints
//!
//! An entity run with [`ShardedSpec::handoff`] may call
//! [`checkpoint`](crate::distributed::checkpoint) in its handlers, with a value of its
//! [`Handoff::Snapshot`] type, as a distributed child does: the snapshot is kept by its
//! shard on this node, and, in a cluster, copied (in memory) to
//! [`ShardedSpec::checkpoint_replicas`] other nodes, the next owners of its shard by the
//! same rendezvous, so that the node that takes the shard over when its owner dies
//! already holds it. An entity starts from its last checkpoint (an explicit one or its
//! passivation snapshot, whichever is newer) after a passivation, a crash, a move or its
//! node's death; with none, from `init`.
//!
//! A checkpoint over [`ShardedSpec::checkpoint_limit`] encoded is refused
//! ([`CheckpointError::TooLarge`](crate::distributed::CheckpointError::TooLarge)), as is
//! one that would take the node's checkpoints over [`ShardedSpec::checkpoint_memory`]
//! ([`CheckpointError::Full`](crate::distributed::CheckpointError::Full)). What is lost
//! on a node's death: the state since the last checkpoint that reached the new owner
//! (copies are sent, not confirmed), and the messages the node had accepted and not
//! handled (at most once). The protocol is in `sharded/checkpoint.rs`.
//!
//! # Crashes
//!
//! A handler that fails or panics crashes its entity only: the message in hand is lost
//! (a caller gets [`CallError::NoReply`](foundation_actors::CallError::NoReply)), the
//! state is dropped, and the entity starts again (from its snapshot, if one is kept) on
//! the next message. With the spec's [`Restart`] `Permanent` or `Transient` (the default)
//! the messages already queued for it are kept and start it again at once; `Temporary`
//! drops them. An `init` that fails drops the message that started it; the next one tries
//! again. Other entities, of the shard or not, do not notice. [`ShardedStats::crashed`]
//! counts crashes.
//!
//! # Supervision
//!
//! Each `Sharded` has one *region* actor per node ([`Sharded::child_spec`],
//! [`Sharded::start`]) that its supervisor supervises as any child. Until it starts the
//! shards hold their messages (up to [`ShardedSpec::backlog`]; beyond it a message is
//! dropped with a warning and counted in [`ShardedStats::dropped`]), and its `init`
//! delivers them. It sweeps idle entities on a timer. When it is stopped (its supervisor
//! shuts down or terminates it) every entity is stopped (snapshot or `terminate`) before
//! it returns, and later messages are refused ([`SendError::Stopped`](foundation_actors::SendError::Stopped));
//! starting it again opens the shards again. A crash of the region actor itself (none of
//! its callbacks runs user code) restarts its timer and leaves the entities as they are.
//!
//! # Across a cluster
//!
//! [`Sharded::start_on`] runs the same entities on every node of a cluster that starts
//! it under the same name: shards, not keys, are placed on the nodes (rendezvous over the
//! live members running it, the placement core's `View::owners`, restricted to
//! [`ShardedSpec::on_role`] if asked), every node computes the same owner, and
//! [`Sharded::entity`] / [`Sharded::addr`] on any node reach the entity on its shard's
//! owner, over the node's remote path, with the context (the entity's messages need a
//! wire form: [`RemoteMessage`], `#[actor(remote)]`; keys need serde).
//!
//! When membership changes, only the shards whose owner changed move, each in a planned
//! move (a join, [`Sharded::leave`]) without losing a message: the old owner serves it
//! until every member has sent it a barrier on the lane its messages take, drains it
//! (each entity handles its queue, then stops with its [`Handoff`] snapshot), and hands
//! the snapshots to the new owner, which held what came meanwhile and delivers it, in
//! order, after restoring. A node that dies hands nothing off: its shards open on their
//! new owners once it is detected, entities from their last replicated
//! [checkpoint](#checkpoints) (or `init`), messages it held lost (at most once); calls
//! waiting on it go again to the new owner. With
//! [`ShardedSpec::remember_entities`], a moved shard's active entities start on the new
//! owner without waiting for a message, and after an owner's death those whose last
//! checkpoint was made while they were active. The protocol, its guarantees and its
//! limits are in `sharded/cluster.rs`; the guide is `docs/placement.md`.
//!
//! A shard holds its messages while it is not served here: it starts *held*, queueing
//! every message in arrival order, and opening it delivers them in that order; a held
//! shard takes up to [`ShardedSpec::backlog`] messages in a cluster (beyond, dropped
//! and counted).
//!
//! ## State across moves
//!
//! A move loses no message, but an entity's state moves with it only if its type
//! implements [`Handoff`] and its spec says [`ShardedSpec::handoff`] (an `#[actor]` type
//! does with `#[actor(handoff)]`, run as `ShardedSpec::new(name, Counter::handoff_actor(),
//! args).handoff()`); any other entity is stopped on the old owner (its `terminate`
//! runs) and starts from `init` on the new one. A node joining moves about 1/N of the shards, so a counter that took
//! a cast before a join may read 0 afterwards, from every node, though the cast was
//! handled.
//!
//! A node that has not met the others within its join window (twice the node's
//! silence) serves every shard itself, as the first node of a cluster does: dial the
//! seeds before [`Sharded::start_on`], and wait until [`Sharded::members`] shows the
//! cluster before sending what must not be handled there. When such a node meets the
//! cluster, each shard goes to its owner as in a join; an entity both nodes ran keeps
//! the owner's state (a handed-over snapshot of an entity active on the new owner is
//! dropped, logged).
//!
//! ## Split brain
//!
//! The membership's split-brain policy ([`ShardedSpec::quorum`]; `KeepMajority` by
//! default, the distributed supervisor's) decides for the shards. A side of a partition
//! that loses the quorum serves no shard: every shard there holds its messages and the
//! entities of the shards it served stop (their [`Handoff`] snapshots kept there, or
//! their `terminate` run). Its callers wait: casts are held (up to the backlog, beyond
//! dropped and counted), calls fail with their timeout
//! ([`CallError::Timeout`](foundation_actors::CallError::Timeout)) unless the heal comes
//! first. The side that keeps the quorum opens the lost nodes' shards the margin of
//! [`ShardedSpec::timing`] after it dropped them from its view, their entities from
//! `init` (the snapshots stayed on the other side): what the losing side had not
//! handled is lost (at most once). So a shard is never served on both sides at once, as
//! long as the losing side notices the partition and stops its entities within the
//! margin (the distributed supervisor's timing argument).
//!
//! When the partition heals, a node back from the losing side takes its shards back from
//! the nodes that served them meanwhile, in planned moves (their state handed off), and
//! passes on what it held to the owners. Across a partition a sender's order is not
//! kept: what the losing side held may arrive after what its senders sent since the
//! heal, and a message sent across the cut before it was noticed arrives late or not
//! at all. Nothing is handled twice.
//!
//! ## Backpressure
//!
//! A cast to an entity on another node is queued for that node and returns, as a node's
//! remote send does. [`Sharded::cast`] and [`Sharded::try_cast`] go at the pace of the
//! entity: each node has a window of casts per other node ([`ShardedSpec::remote_window`])
//! that the other node credits back as its entities handle them (in batches: no round
//! trip per message). With the window full, `cast` waits and `try_cast` is refused
//! [`CastError::Overloaded`] (counted in [`ShardedStats::refused`]): a cast they accept
//! is not dropped for lack of room. A cast through an entity's address or typed handle
//! never waits: it is counted in the window but goes even when it is full, and past the
//! link's limit it is dropped, counted in [`ShardedStats::dropped`] and logged. The
//! protocol is in `sharded/flow.rs`.

mod checkpoint;
mod cluster;
mod flow;
/// The sharded entities' decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
mod pool;
mod runtime;
mod shard;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::{
    Actor, Addr, ChildSpec, RemoteMessage, Restart, Supervisor, SupervisorError,
};
use foundation_cluster::node::Node;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use checkpoint::{
    CheckpointWire, DEFAULT_CHECKPOINT_LIMIT, DEFAULT_CHECKPOINT_MEMORY,
    DEFAULT_CHECKPOINT_REPLICAS,
};
pub use cluster::{JoinError, ShardWire};
pub use flow::{CastError, DEFAULT_REMOTE_WINDOW};
pub use runtime::RegionMsg;

use crate::distributed::Handoff;
use crate::placement::{Quorum, Timing};
use checkpoint::{Checkpointed, Replicator, Store};
use cluster::{Cluster, ClusterRoute};
use runtime::{Keeper, Settings, Shared};

/// What an entity's key must be: hashed to its shard, compared, cloned into its entry,
/// and printed in logs.
pub trait EntityKey: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static {}

impl<T: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static> EntityKey for T {}

/// Shards per `Sharded`, by default.
pub const DEFAULT_SHARDS: usize = 1_024;

/// Entities per node, by default, above which the least recently used are passivated.
pub const DEFAULT_MAX_ENTITIES: usize = 1_000_000;

/// Messages held while the shards are not open (before the region starts), by default.
pub const DEFAULT_BACKLOG: usize = 65_536;

/// How to run an entity type: its actor, how its arguments come from its key, and the
/// runtime's limits.
///
/// # Examples
///
/// ```
/// use foundation_actors::prelude::*;
/// use foundation_registry::sharded::{Sharded, ShardedSpec};
/// use std::time::Duration;
///
/// #[derive(Clone, Default)]
/// struct Account { balance: u64 }
///
/// #[actor]
/// impl Account {
///     #[cast]
///     fn deposit(&mut self, n: u64) { self.balance += n }
///     #[call]
///     fn balance(&self) -> u64 { self.balance }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = ShardedSpec::new("accounts", Account::actor(), |_id: &u64| Account::default())
///     .idle_timeout(Duration::from_secs(60));
/// let accounts = Sharded::new(spec);
/// let sup = Supervisor::start(SupervisorSpec::new("bank", Strategy::OneForOne).child(accounts.child_spec())).await?;
///
/// let alice: AccountRef = accounts.entity(7);
/// alice.deposit(5).await?;          // starts account 7
/// assert_eq!(alice.balance().await?, 5);
/// sup.shutdown().await;
/// # Ok(()) }
/// ```
pub struct ShardedSpec<K, A: Actor> {
    settings: Settings<K, A>,
    /// Shards go only to nodes offering this role (in a cluster).
    role: Option<String>,
    /// The roles this node offers.
    offers: Vec<String>,
    /// Start a moved shard's active entities on its new owner.
    remember: bool,
    /// Split-brain policy and timing, window of remote casts (in a cluster).
    options: cluster::Options,
    /// Checkpoint replicas and limits.
    checkpoints: checkpoint::Config,
    /// The checkpoint store (entities that implement `Handoff`, with `handoff()`).
    store: Option<Arc<Store<K>>>,
}

impl<K: EntityKey, A: Actor> ShardedSpec<K, A> {
    /// Entities run by `actor` under `name`; `args` gives the `init` arguments of a key's
    /// entity each time it starts.
    pub fn new(
        name: impl Into<Arc<str>>,
        actor: A,
        args: impl Fn(&K) -> A::Args + Send + Sync + 'static,
    ) -> Self {
        Self {
            settings: Settings {
                name: name.into(),
                actor,
                args: Arc::new(args),
                shards: DEFAULT_SHARDS,
                idle_timeout: None,
                max_entities: DEFAULT_MAX_ENTITIES,
                restart: Restart::Transient,
                backlog: DEFAULT_BACKLOG,
                keeper: None,
            },
            role: None,
            offers: Vec::new(),
            remember: false,
            options: cluster::Options::default(),
            checkpoints: checkpoint::Config::default(),
            store: None,
        }
    }

    /// In a cluster, the split-brain policy of the shards' membership (the distributed
    /// supervisor `$sharded/<name>`; [`Quorum::KeepMajority`] by default): a side of a
    /// partition that loses the quorum holds every shard and stops their entities, the
    /// side that keeps it serves them. Every node must give the same. See
    /// [Split brain](self#split-brain).
    #[must_use]
    pub fn quorum(mut self, quorum: Quorum) -> Self {
        self.options.quorum = Some(quorum);
        self
    }

    /// In a cluster, how many casts this node may have on the way to, or not yet handled
    /// at, each other node ([`DEFAULT_REMOTE_WINDOW`] by default; at least 1): past it,
    /// [`Sharded::try_cast`] is refused [`CastError::Overloaded`] and [`Sharded::cast`]
    /// waits. The other node reports handled casts in batches (a quarter of a window, or
    /// a few milliseconds after the last), so a window well above the casts a sender has
    /// in flight in that time keeps a fast entity's pace. See [Backpressure](self#backpressure).
    #[must_use]
    pub fn remote_window(mut self, casts: usize) -> Self {
        self.options.window = casts.max(1);
        self
    }

    /// In a cluster, the silence limit and margin of the membership's split-brain
    /// decisions ([`DistributedSpec::timing`](crate::distributed::DistributedSpec::timing);
    /// by default the node's silence and a 1 s margin): the winning side of a partition
    /// opens the lost side's shards `margin` after it lost sight of it, so the margin
    /// must cover the losing side's detection and the stop of its entities.
    #[must_use]
    pub fn timing(mut self, timing: Timing) -> Self {
        self.options.timing = Some(timing);
        self
    }

    /// In a cluster, the entities active in a shard when it moves are started on its
    /// new owner at once (from their handed-over snapshots), without waiting for a
    /// message (Akka's `remember-entities`, for what moves in a planned move). When the
    /// owner dies, the new owner starts those whose last replicated
    /// [checkpoint](self#checkpoints) was made while they were active, from it (with
    /// [`ShardedSpec::handoff`]; an entity that never checkpointed is not known there).
    #[must_use]
    pub fn remember_entities(mut self) -> Self {
        self.remember = true;
        self
    }

    /// In a cluster ([`Sharded::start_on`]), places the shards only on nodes that offer
    /// `role` ([`ShardedSpec::role`] on their spec). Every node must give the same.
    #[must_use]
    pub fn on_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// In a cluster, this node offers `role`: shards restricted to it
    /// ([`ShardedSpec::on_role`]) may be placed here.
    #[must_use]
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.offers.push(role.into());
        self
    }

    /// The number of shards (at least 1; [`DEFAULT_SHARDS`] by default). Every node of a
    /// cluster must use the same.
    #[must_use]
    pub fn shards(mut self, n: usize) -> Self {
        self.settings.shards = n.max(1);
        self
    }

    /// Passivates an entity after this long without a message (never, by default).
    #[must_use]
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.settings.idle_timeout = Some(t);
        self
    }

    /// The number of entities on this node above which the least recently used idle ones
    /// are passivated, divided equally among the shards ([`DEFAULT_MAX_ENTITIES`] by
    /// default). Each shard keeps at least one entity, so the floor is the number of
    /// shards. Only idle entities are passivated: a flood of new keys whose entities are
    /// all still busy goes over the limit for a while, and each shard comes back down to
    /// its part as they go idle (one passivation per entity that parks over the limit).
    #[must_use]
    pub fn max_entities(mut self, n: usize) -> Self {
        self.settings.max_entities = n.max(1);
        self
    }

    /// What a crash does to the messages queued for the entity: kept (`Permanent`,
    /// `Transient`, the default) or dropped (`Temporary`). See [Crashes](self#crashes).
    #[must_use]
    pub fn restart(mut self, r: Restart) -> Self {
        self.settings.restart = r;
        self
    }

    /// How many messages the shards hold, in all, while they are not open
    /// ([`DEFAULT_BACKLOG`] by default). In a cluster ([`Sharded::start_on`]), each
    /// shard may hold this many while it moves.
    #[must_use]
    pub fn backlog(mut self, n: usize) -> Self {
        self.settings.backlog = n.max(1);
        self
    }

    /// Keeps a passivated entity's [`Handoff::export`]ed snapshot (in memory, on this
    /// node), and restarts it from there with [`Handoff::restore`]; lets its handlers
    /// call [`checkpoint`](crate::distributed::checkpoint), replicated in a cluster (see
    /// [Checkpoints](self#checkpoints)).
    #[must_use]
    pub fn handoff(mut self) -> Self
    where
        A: Handoff,
    {
        let store = Store::new();
        let keeper: Box<dyn Keeper<K, A>> = Box::new(Checkpointed {
            store: store.clone(),
        });
        self.settings.keeper = Some(keeper);
        self.store = Some(store);
        self
    }

    /// To how many other nodes each checkpoint of an entity is copied (in memory): the
    /// first `k` nodes after its shard's owner in the shard's rendezvous order, so that
    /// the node that takes the shard over when its owner dies holds it while views
    /// agree. Default [`DEFAULT_CHECKPOINT_REPLICAS`] (1); 0 keeps checkpoints on the
    /// owner only (they then survive entity crashes and passivation, not the node's
    /// death). With [`ShardedSpec::handoff`].
    #[must_use]
    pub fn checkpoint_replicas(mut self, k: usize) -> Self {
        self.checkpoints.replicas = k;
        self
    }

    /// The largest checkpoint of one entity, encoded (postcard), in bytes: a larger one
    /// is refused with [`CheckpointError::TooLarge`](crate::distributed::CheckpointError::TooLarge)
    /// ([`DEFAULT_CHECKPOINT_LIMIT`] by default). Every node must give the same: a copy
    /// over it from a peer is refused.
    #[must_use]
    pub fn checkpoint_limit(mut self, bytes: usize) -> Self {
        self.checkpoints.limit = bytes;
        self
    }

    /// The bytes of checkpoints (this node's entities' and copies of others') this node
    /// keeps for this `Sharded`: a checkpoint that would go over is refused with
    /// [`CheckpointError::Full`](crate::distributed::CheckpointError::Full), a copy from a
    /// peer dropped and counted ([`DEFAULT_CHECKPOINT_MEMORY`] by default). Passivation
    /// snapshots are kept even over it.
    #[must_use]
    pub fn checkpoint_memory(mut self, bytes: usize) -> Self {
        self.checkpoints.memory = bytes;
        self
    }
}

impl<K, A: Actor> fmt::Debug for ShardedSpec<K, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedSpec")
            .field("name", &self.settings.name)
            .field("shards", &self.settings.shards)
            .field("idle_timeout", &self.settings.idle_timeout)
            .field("max_entities", &self.settings.max_entities)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a [`Sharded`]'s counters on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShardedStats {
    /// Shards.
    pub shards: usize,
    /// Entities started and not passivated (running, idle, or stopping).
    pub entities: usize,
    /// Entities with a runner now (handling, starting or stopping).
    pub running: usize,
    /// Entity starts (`init` or restore) so far.
    pub started: u64,
    /// Entity stops (passivations) so far.
    pub passivated: u64,
    /// Entity crashes (a failed or panicking `init` or handler) so far.
    pub crashed: u64,
    /// Of those, failed or panicking `init`s (or restores from a snapshot): a call to such
    /// an entity gets [`CallError::NoReply`](foundation_actors::CallError::NoReply);
    /// [`Sharded::last_crash`] tells why.
    pub init_failed: u64,
    /// Messages dropped because the shards held a full backlog.
    pub dropped: u64,
    /// Snapshots kept for passivated entities ([`ShardedSpec::handoff`]).
    pub snapshots: usize,
    /// Shards served by this node (in a cluster; all of them on one node).
    pub served: usize,
    /// Shards in a move here: waiting for their old owner's handoff, or being handed
    /// off (in a cluster).
    pub in_transit: usize,
    /// Shards handed off from this node to another so far (in a cluster): those it
    /// served, and, when it joined, those it held for a moment before it knew their
    /// owners (a joining node holds what comes for a shard until it knows who serves
    /// it, then passes the shards it does not own on: those count too).
    pub handed_off: u64,
    /// Casts refused [`CastError::Overloaded`] by [`Sharded::try_cast`] so far (in a
    /// cluster).
    pub refused: u64,
    /// Entity checkpoints kept on this node: of its entities (passivation snapshots
    /// included) and copies of other nodes' ([`ShardedSpec::handoff`]).
    pub checkpoints: usize,
    /// Their bytes, encoded (bounded by [`ShardedSpec::checkpoint_memory`], passivation
    /// snapshots aside).
    pub checkpoint_bytes: usize,
    /// Checkpoint copies from peers refused so far: not decoding, over the size limit or
    /// the memory limit.
    pub checkpoints_refused: u64,
}

/// An entity's crash, as [`Sharded::last_crash`] tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntityCrash {
    /// The entity's key, as `Debug` prints it.
    pub key: String,
    /// What crashed: `"init"` (its `init`, or its restore from a snapshot) or `"handler"`.
    pub during: &'static str,
    /// What happened: `failed: <the error it returned>` or `panicked: <its message>`.
    pub reason: String,
}

/// The handle of one [`Actor`] type run as sharded entities: gives their addresses and
/// typed handles. Cheap to clone. See the [module docs](self).
pub struct Sharded<K, M> {
    inner: Arc<dyn Router<K, M>>,
    /// The checkpoint store ([`ShardedSpec::handoff`]).
    store: Option<Arc<Store<K>>>,
}

/// What a `Sharded` needs of its runtime, whatever the actor.
trait Router<K, M>: Send + Sync {
    fn addr(&self, key: K) -> Addr<M>;
    fn child_spec(&self) -> ChildSpec<RegionMsg>;
    fn passivate(&self, key: &K);
    fn shard_of(&self, key: &K) -> usize;
    fn is_active(&self, key: &K) -> bool;
    fn stats(&self) -> ShardedStats;
    fn last_crash(&self) -> Option<EntityCrash>;
    fn name(&self) -> &str;
    fn owner_of(&self, key: &K) -> Option<String>;
    fn shard_owner(&self, shard: usize) -> Option<String>;
    fn members(&self) -> Vec<String>;
    fn leave(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
    fn try_cast(&self, key: K, msg: M) -> Result<(), CastError<M>>;
    fn cast(&self, key: K, msg: M) -> Casting<'_, M>;
}

/// The future of [`Sharded::cast`].
type Casting<'a, M> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CastError<M>>> + Send + 'a>>;

/// The runtime behind a `Sharded` handle.
struct Runtime<K, A: Actor>(Arc<Shared<K, A>>);

impl<K: EntityKey, A: Actor> Router<K, A::Msg> for Runtime<K, A> {
    fn addr(&self, key: K) -> Addr<A::Msg> {
        self.0.addr(key)
    }
    fn child_spec(&self) -> ChildSpec<RegionMsg> {
        self.0.clone().child_spec()
    }
    fn passivate(&self, key: &K) {
        self.0.passivate(key);
    }
    fn shard_of(&self, key: &K) -> usize {
        self.0.shard_of(key)
    }
    fn is_active(&self, key: &K) -> bool {
        self.0.is_active(key)
    }
    fn stats(&self) -> ShardedStats {
        self.0.stats()
    }
    fn last_crash(&self) -> Option<EntityCrash> {
        self.0.last_crash()
    }
    fn name(&self) -> &str {
        self.0.name()
    }
    fn owner_of(&self, _: &K) -> Option<String> {
        None
    }
    fn shard_owner(&self, _: usize) -> Option<String> {
        None
    }
    fn members(&self) -> Vec<String> {
        Vec::new()
    }
    fn leave(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
    fn try_cast(&self, key: K, msg: A::Msg) -> Result<(), CastError<A::Msg>> {
        self.0.addr(key).cast(msg).map_err(CastError::from_local)
    }
    fn cast(&self, key: K, msg: A::Msg) -> Casting<'_, A::Msg> {
        let sent = self.try_cast(key, msg);
        Box::pin(async move { sent })
    }
}

/// The runtime behind a `Sharded` handle spread over a cluster, and the replication of
/// its checkpoints.
struct ClusterRuntime<K, A: Actor>(Arc<Cluster<K, A>>, Option<Arc<Replicator<K>>>);

impl<K, A> Router<K, A::Msg> for ClusterRuntime<K, A>
where
    K: EntityKey + Serialize + DeserializeOwned,
    A: Actor,
    A::Msg: RemoteMessage,
{
    fn addr(&self, key: K) -> Addr<A::Msg> {
        Addr::hosted_with(self.0.local.label(), |me| {
            Box::new(ClusterRoute {
                cluster: Arc::downgrade(&self.0),
                key,
                me,
            })
        })
    }
    fn child_spec(&self) -> ChildSpec<RegionMsg> {
        self.0.local.clone().child_spec()
    }
    fn passivate(&self, key: &K) {
        self.0.local.passivate(key);
    }
    fn shard_of(&self, key: &K) -> usize {
        self.0.local.shard_of(key)
    }
    fn is_active(&self, key: &K) -> bool {
        self.0.local.is_active(key)
    }
    fn stats(&self) -> ShardedStats {
        let mut stats = self.0.local.stats();
        stats.dropped += self
            .0
            .undelivered
            .load(std::sync::atomic::Ordering::Relaxed);
        stats.served = self.0.served();
        stats.in_transit = self.0.in_transit();
        stats.handed_off = self.0.handed_off.load(std::sync::atomic::Ordering::Relaxed);
        stats.refused = self.0.refused.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }
    fn last_crash(&self) -> Option<EntityCrash> {
        self.0.local.last_crash()
    }
    fn name(&self) -> &str {
        self.0.local.name()
    }
    fn owner_of(&self, key: &K) -> Option<String> {
        self.0.owner_of(key)
    }
    fn shard_owner(&self, shard: usize) -> Option<String> {
        self.0.owners().owner(shard).map(|o| o.to_string())
    }
    fn members(&self) -> Vec<String> {
        self.0.members()
    }
    fn leave(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.0.leave().await;
            if let Some(r) = &self.1 {
                r.stop();
            }
        })
    }
    fn try_cast(&self, key: K, msg: A::Msg) -> Result<(), CastError<A::Msg>> {
        self.0.try_cast(&key, msg)
    }
    fn cast(&self, key: K, msg: A::Msg) -> Casting<'_, A::Msg> {
        Box::pin(async move { self.0.cast(&key, msg).await })
    }
}

impl<K, M> Clone for Sharded<K, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            store: self.store.clone(),
        }
    }
}

impl<K, M> fmt::Debug for Sharded<K, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharded")
            .field("name", &self.inner.name())
            .finish_non_exhaustive()
    }
}

impl<K: EntityKey, M: Send + 'static> Sharded<K, M> {
    /// The runtime of `spec`'s entities on this node. Messages sent to them are held until
    /// its region starts ([`Sharded::child_spec`] under a supervisor, or
    /// [`Sharded::start`]).
    pub fn new<A: Actor<Msg = M>>(spec: ShardedSpec<K, A>) -> Self {
        if let Some(store) = &spec.store {
            store.configure(spec.settings.shards, spec.checkpoints);
        }
        Self {
            inner: Arc::new(Runtime(Shared::new(spec.settings))),
            store: spec.store,
        }
    }

    /// The runtime of `spec`'s entities on this node, as one of the nodes of `node`'s
    /// cluster that run a `Sharded` of the spec's name: each shard has one owner among
    /// them (rendezvous over the live members, restricted to [`ShardedSpec::on_role`]),
    /// the same on every node that sees the same members, and a message sent to an
    /// entity through [`Sharded::entity`] or [`Sharded::addr`] on any node goes to the
    /// owner of its shard, under the sender's context, and starts the entity there. See
    /// `sharded/cluster.rs` for the limits of this step. Start its region as on one node
    /// ([`Sharded::child_spec`]).
    ///
    /// Dial the cluster before this call: a node that meets no other within twice its
    /// silence serves every shard alone, and hands them over when it meets the others.
    /// Entities keep their state through moves only with [`ShardedSpec::handoff`]; others
    /// start from `init` on their shard's new owner (see
    /// [State across moves](self#state-across-moves)).
    ///
    /// # Errors
    ///
    /// [`JoinError::NameTaken`] if a `Sharded` of this name runs on this node already,
    /// [`JoinError::Membership`] or [`JoinError::Spawn`] if its processes cannot start.
    pub async fn start_on<A>(node: &Node, spec: ShardedSpec<K, A>) -> Result<Self, JoinError>
    where
        A: Actor<Msg = M>,
        K: Serialize + DeserializeOwned,
        M: RemoteMessage,
    {
        let ShardedSpec {
            settings,
            role,
            offers,
            remember,
            options,
            checkpoints,
            store,
        } = spec;
        let name = settings.name.clone();
        // Peers' copies are taken before this node shows in their views.
        let receiver = match &store {
            Some(store) => {
                store.configure(settings.shards, checkpoints);
                Some(checkpoint::serve(node, &name, store.clone()).await?)
            }
            None => None,
        };
        let local = Shared::new(settings);
        let cluster =
            match Cluster::start(node, local, role.clone(), offers, remember, options).await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(r) = receiver {
                        node.unexport(&format!("$sharded/{name}/checkpoints"));
                        r.stop(None);
                    }
                    return Err(e);
                }
            };
        let kept = store.clone();
        let replicator = match (store, receiver) {
            (Some(store), Some(receiver)) => {
                let view = Arc::downgrade(&cluster);
                let served = Arc::downgrade(&cluster.local);
                let activate = Arc::downgrade(&cluster.local);
                let hooks = checkpoint::Hooks {
                    view: Box::new(move || view.upgrade().map(|c| c.view())),
                    served: Box::new(move |i| {
                        served
                            .upgrade()
                            .is_some_and(|l| l.gate.get().is_some_and(|g| g(i)))
                    }),
                    activate: remember.then(|| -> checkpoint::Activate<K> {
                        Box::new(move |k: &K| {
                            if let Some(l) = activate.upgrade() {
                                l.activate(k);
                            }
                        })
                    }),
                };
                Some(Replicator::start(node, store, role, hooks, receiver, &name))
            }
            _ => None,
        };
        Ok(Self {
            inner: Arc::new(ClusterRuntime(cluster, replicator)),
            store: kept,
        })
    }

    /// The node that owns `key`'s shard now, as this node sees the cluster; `None` on one
    /// node ([`Sharded::new`]) and when no member can own it.
    pub fn owner_of(&self, key: &K) -> Option<String> {
        self.inner.owner_of(key)
    }

    /// The node that owns shard `shard` now, as this node sees the cluster; `None` on
    /// one node and when no member can own it.
    pub fn shard_owner(&self, shard: usize) -> Option<String> {
        self.inner.shard_owner(shard)
    }

    /// The nodes running this `Sharded` as this node sees them (itself included), sorted;
    /// empty on one node.
    pub fn members(&self) -> Vec<String> {
        self.inner.members()
    }

    /// Leaves the cluster (a `Sharded` from [`Sharded::start_on`]): hands this node's
    /// shards off to their new owners, then stops this node's membership and the process
    /// peers send to; calls waiting on other nodes get no reply. The region and its
    /// entities stop with their supervisor, as on one node. A graceful
    /// [`Node::leave`](foundation_cluster::node::Node::leave) runs it first by itself; a
    /// second call waits for the first.
    pub async fn leave(&self) {
        self.inner.leave().await;
    }

    /// The child spec of the region actor (id: the spec's name), for a supervisor.
    pub fn child_spec(&self) -> ChildSpec<RegionMsg> {
        self.inner.child_spec()
    }

    /// Starts the region actor under `sup`.
    ///
    /// # Errors
    ///
    /// As [`Supervisor::start_child`] (a second start under one static supervisor is a
    /// duplicate id).
    pub async fn start(
        &self,
        sup: &(impl AsRef<Supervisor> + ?Sized),
    ) -> Result<Addr<RegionMsg>, SupervisorError> {
        sup.as_ref().start_child(self.child_spec()).await
    }

    /// The address of `key`'s entity, running or not: a send starts it if it is not.
    pub fn addr(&self, key: K) -> Addr<M> {
        self.inner.addr(key)
    }

    /// Casts `msg` to `key`'s entity, or tells why not: in a cluster, refused
    /// [`CastError::Overloaded`] (and counted in [`ShardedStats::refused`]) when this node
    /// has a full window of casts on the way to, or unhandled at, the entity's node
    /// ([`ShardedSpec::remote_window`]), or the link to it holds its limit. A cast it
    /// accepts is never dropped for room (see [Backpressure](self#backpressure)).
    ///
    /// # Errors
    ///
    /// [`CastError::Overloaded`]; [`CastError::Unreachable`] if the owner cannot be
    /// reached, [`CastError::NoOwner`] if no member can own the shard,
    /// [`CastError::Encode`] if the key or message has no wire form,
    /// [`CastError::Stopped`] if the entities' runtime here has stopped,
    /// [`CastError::Unavailable`] if the region here is stopped for now. The message is
    /// handed back.
    pub fn try_cast(&self, key: K, msg: M) -> Result<(), CastError<M>> {
        self.inner.try_cast(key, msg)
    }

    /// Casts `msg` to `key`'s entity, waiting while this node's window of casts to the
    /// entity's node (or the link to it) is full: the sender goes at the pace the entity
    /// keeps (backpressure, as a bounded channel's `send().await`). Wrap it in
    /// [`tokio::time::timeout`] for a bound. On one node, and for an entity owned here,
    /// it is a plain cast.
    ///
    /// # Errors
    ///
    /// As [`Sharded::try_cast`] but [`CastError::Overloaded`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits sends nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_actors::prelude::*;
    /// use foundation_registry::sharded::{CastError, Sharded, ShardedSpec};
    ///
    /// #[derive(Clone, Default)]
    /// struct Meter { n: u64 }
    ///
    /// #[actor]
    /// impl Meter {
    ///     #[cast]
    ///     fn add(&mut self, k: u64) { self.n += k }
    ///     #[call]
    ///     fn read(&self) -> u64 { self.n }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let meters = Sharded::new(ShardedSpec::new("meters", Meter::actor(), |_: &u64| Meter::default()));
    /// let sup = Supervisor::start(SupervisorSpec::new("m", Strategy::OneForOne).child(meters.child_spec())).await?;
    /// // Waits for room when the entity's node has too many casts from here unhandled.
    /// meters.cast(3, MeterMsg::Add(1)).await?;
    /// // Or is told so, and keeps the message.
    /// match meters.try_cast(3, MeterMsg::Add(1)) {
    ///     Ok(()) => {}
    ///     Err(CastError::Overloaded { msg, .. }) => drop(msg), // later, elsewhere, or never
    ///     Err(other) => return Err(other.into()),
    /// }
    /// let m: MeterRef = meters.entity(3);
    /// assert_eq!(m.read().await?, 2);
    /// sup.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn cast(&self, key: K, msg: M) -> Result<(), CastError<M>> {
        self.inner.cast(key, msg).await
    }

    /// The typed handle of `key`'s entity (`let c: CounterRef = counters.entity(7)`).
    pub fn entity<R: From<Addr<M>>>(&self, key: K) -> R {
        R::from(self.addr(key))
    }

    /// Passivates `key`'s entity after the message in hand, if it is running.
    pub fn passivate(&self, key: &K) {
        self.inner.passivate(key);
    }

    /// The shard `key` belongs to.
    pub fn shard_of(&self, key: &K) -> usize {
        self.inner.shard_of(key)
    }

    /// Whether `key`'s entity is active here (started or starting, and not passivated).
    pub fn is_active(&self, key: &K) -> bool {
        self.inner.is_active(key)
    }

    /// The sequence number of the newest checkpoint of `key`'s entity this node keeps
    /// (its own or a copy of another node's; 1 for the entity's first); `None` without
    /// one, or without [`ShardedSpec::handoff`].
    pub fn checkpoint_seq(&self, key: &K) -> Option<u64> {
        self.store.as_ref().and_then(|s| s.seq(key))
    }

    /// The last crash of an entity on this node (its `init` or a handler failing or
    /// panicking), if any: what a caller whose call got
    /// [`CallError::NoReply`](foundation_actors::CallError::NoReply) may want to know. Each
    /// crash is also logged at `warn` with its key and reason, and counted in
    /// [`ShardedStats::crashed`] (and [`ShardedStats::init_failed`]).
    pub fn last_crash(&self) -> Option<EntityCrash> {
        self.inner.last_crash()
    }

    /// This node's counters.
    pub fn stats(&self) -> ShardedStats {
        self.inner.stats()
    }
}
