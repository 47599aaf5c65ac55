//! Handoff and checkpoints: what a child that implements [`Handoff`] gives the
//! supervisor, and the wrapper that runs it.
//!
//! A handoff kind's instance runs as [`Handing`], which wraps the user's actor: it builds
//! the state from a seed (a handed-over state or the last checkpoint) when there is one,
//! makes [`checkpoint`] work inside the handlers, and, when the supervisor drains it for
//! a move, gives its final state instead of running `terminate`.

use std::any::TypeId;
use std::future::Future;
use std::sync::{Arc, Mutex};

use foundation_actors::{Actor, ActorError, Addr};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::sync::oneshot;

/// A child whose state survives planned moves and, from its last [`checkpoint`], crashes
/// and node deaths. Register it with
/// [`DistributedSpec::handoff_kind`](super::DistributedSpec::handoff_kind).
///
/// On a planned move ([`migrate`](super::DistributedSupervisor::migrate), a rebalance, a
/// graceful [`shutdown`](super::DistributedSupervisor::shutdown) of its node) the old
/// incarnation handles every message sent to it before the move, then [`export`](Self::export)
/// gives its state; the new incarnation, on the new node, starts with
/// [`restore`](Self::restore) from it instead of [`Actor::init`]. On a crash (restarted
/// by its local supervisor) or a failover after its node died, the new incarnation is
/// restored from the last snapshot given to [`checkpoint`], or built by `init` if there
/// is none.
///
/// Implement it on a hand-written [`Actor`], as below. An `#[actor]` type gets it with
/// `#[actor(handoff)]`: the type is then its own snapshot (serde's `Serialize` and
/// `Deserialize`), and `Counter::handoff_actor()` gives the generated actor, which
/// implements `Handoff`, for [`ShardedSpec::handoff`](crate::sharded::ShardedSpec::handoff)
/// and [`DistributedSpec::handoff_kind`](super::DistributedSpec::handoff_kind); its
/// optional `#[restored]` hook runs after a restore (see the macro's docs).
///
/// # Examples
///
/// ```
/// use foundation_actors::prelude::*;
/// use foundation_registry::distributed::{Handoff, checkpoint};
///
/// #[derive(Debug, RemoteMessage)]
/// enum Tally {
///     #[remote(tag = 1)]
///     Add(u64),
///     #[remote(tag = 2)]
///     Save,
/// }
///
/// #[derive(Clone)]
/// struct Counter;
/// impl Actor for Counter {
///     type Msg = Tally;
///     type State = u64;
///     type Args = ();
///     async fn init(&self, _: &Addr<Tally>, (): ()) -> Result<u64, ActorError> { Ok(0) }
///     async fn handle(&self, _: &Addr<Tally>, msg: Tally, n: &mut u64) -> Result<(), ActorError> {
///         match msg {
///             Tally::Add(k) => *n += k,
///             // Replicated to other nodes: a failover starts from here.
///             Tally::Save => { checkpoint(&*n)?; }
///         }
///         Ok(())
///     }
/// }
/// impl Handoff for Counter {
///     type Snapshot = u64;
///     fn export(&self, n: u64) -> u64 { n }
///     async fn restore(&self, _: &Addr<Tally>, n: u64, (): ()) -> Result<u64, ActorError> { Ok(n) }
/// }
/// ```
pub trait Handoff: Actor {
    /// The state's form on the wire (often the state itself).
    type Snapshot: Serialize + DeserializeOwned + Send + 'static;

    /// The old incarnation's state, at the end of a planned move (after its last message).
    fn export(&self, state: Self::State) -> Self::Snapshot;

    /// Builds the new incarnation's state from a snapshot (a handed-over state or a
    /// checkpoint), instead of [`Actor::init`]. An error fails the start, as `init`'s
    /// would.
    fn restore(
        &self,
        me: &Addr<Self::Msg>,
        snapshot: Self::Snapshot,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::State, ActorError>> + Send;
}

/// Why [`checkpoint`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not called from a handler of a distributed child registered with
    /// [`DistributedSpec::handoff_kind`](super::DistributedSpec::handoff_kind), nor of a
    /// sharded entity run with [`ShardedSpec::handoff`](crate::sharded::ShardedSpec::handoff).
    #[error(
        "checkpoint() called outside a handler of a distributed handoff child or a sharded entity with handoff"
    )]
    NotAChild,
    /// The value is not of the child's [`Handoff::Snapshot`] type.
    #[error("checkpoint() given a {given}, not the child's snapshot type")]
    WrongType {
        /// The type given.
        given: &'static str,
    },
    /// The snapshot does not encode.
    #[error("the checkpoint does not encode")]
    Encode(#[from] postcard::Error),
    /// A sharded entity's checkpoint is larger, encoded, than its
    /// [`ShardedSpec::checkpoint_limit`](crate::sharded::ShardedSpec::checkpoint_limit).
    #[error("the checkpoint is {size} bytes encoded, over the limit of {limit}")]
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A sharded entity's checkpoint would take this node's checkpoints over
    /// [`ShardedSpec::checkpoint_memory`](crate::sharded::ShardedSpec::checkpoint_memory).
    #[error("the node's checkpoints would take more than {limit} bytes ({used} used)")]
    Full {
        /// Bytes of checkpoints kept on this node now.
        used: usize,
        /// The limit.
        limit: usize,
    },
}

/// Records `snapshot` as the running child's last checkpoint: kept on this node and sent
/// to [`DistributedSpec::checkpoint_replicas`](super::DistributedSpec::checkpoint_replicas)
/// other nodes (in memory), from where a restart after a crash or a failover after this
/// node's death starts. Call it from a handler of a [`Handoff`] child, with a value of its
/// [`Handoff::Snapshot`] type. Returns the checkpoint's sequence number (1 for the
/// child's first, counted across moves).
///
/// A sharded entity run with [`ShardedSpec::handoff`](crate::sharded::ShardedSpec::handoff)
/// calls it the same way (from its handlers, `init` or `restore`): its checkpoint is kept
/// by its shard on this node and sent to
/// [`ShardedSpec::checkpoint_replicas`](crate::sharded::ShardedSpec::checkpoint_replicas)
/// other nodes, the shard's next owners; see
/// [the sharded module](crate::sharded#checkpoints).
///
/// The copy is sent when this returns, not confirmed: a node that dies at once may take
/// the newest checkpoint with it, and the next incarnation starts from an older one.
///
/// # Errors
///
/// [`CheckpointError::NotAChild`] outside such a handler, [`CheckpointError::WrongType`],
/// [`CheckpointError::Encode`]; for a sharded entity also [`CheckpointError::TooLarge`]
/// and [`CheckpointError::Full`].
pub fn checkpoint<S: Serialize + 'static>(snapshot: &S) -> Result<u64, CheckpointError> {
    let current = CURRENT
        .try_with(|c| (c.target.clone(), c.snapshot))
        .map_err(|_| CheckpointError::NotAChild)?;
    let (target, ty) = current;
    if ty != TypeId::of::<S>() {
        return Err(CheckpointError::WrongType {
            given: std::any::type_name::<S>(),
        });
    }
    let bytes = postcard::to_allocvec(snapshot)?;
    match target {
        Target::Child(gate) => Ok(gate.checkpoint(bytes)),
        Target::Entity(entity) => entity.checkpoint(bytes),
    }
}

tokio::task_local! {
    static CURRENT: Current;
}

struct Current {
    target: Target,
    snapshot: TypeId,
}

/// Where [`checkpoint`] sends what it is given.
#[derive(Clone)]
enum Target {
    /// A distributed child: its gate, which the supervisor replicates from.
    Child(Arc<Gate>),
    /// A sharded entity: its shard's checkpoint store.
    Entity(Arc<dyn EntityCheckpoint>),
}

/// A sharded entity's end of [`checkpoint`]: keeps and replicates its encoded snapshot.
pub(crate) trait EntityCheckpoint: Send + Sync {
    /// Keeps `bytes` as the entity's last checkpoint; its sequence number.
    fn checkpoint(&self, bytes: Vec<u8>) -> Result<u64, CheckpointError>;
}

/// Makes [`checkpoint`] work in `fut` (a sharded entity's runner), for an entity whose
/// [`Handoff::Snapshot`] type is `snapshot`.
pub(crate) fn entity_scope<F: Future>(
    entity: Arc<dyn EntityCheckpoint>,
    snapshot: TypeId,
    fut: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(
        Current {
            target: Target::Entity(entity),
            snapshot,
        },
        fut,
    )
}

/// Where a checkpoint goes: the supervisor stores and replicates it.
pub(crate) type Sink = Arc<dyn Fn(u64, Arc<Vec<u8>>) + Send + Sync>;

/// A snapshot and its sequence number.
#[derive(Debug, Clone)]
pub(crate) struct Seed {
    pub(crate) seq: u64,
    pub(crate) bytes: Arc<Vec<u8>>,
}

/// What one local instance shares with the supervisor.
pub(crate) struct Gate {
    state: Mutex<GateState>,
    sink: Sink,
}

#[derive(Default)]
struct GateState {
    /// What a (re)start begins from: the handed-over state or the last checkpoint.
    seed: Option<Seed>,
    /// The last sequence number given.
    seq: u64,
    /// A move asked for the final state.
    capture: Option<oneshot::Sender<Result<Vec<u8>, String>>>,
    /// The state has gone: an incarnation started now is dormant.
    moved: bool,
    /// Whether the wrapper ever ran (a plain kind never does).
    attached: bool,
}

impl Gate {
    pub(crate) fn new(seed: Option<Seed>, sink: Sink) -> Arc<Self> {
        let seq = seed.as_ref().map_or(0, |s| s.seq);
        Arc::new(Self {
            state: Mutex::new(GateState {
                seed,
                seq,
                ..GateState::default()
            }),
            sink,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkpoint(&self, bytes: Vec<u8>) -> u64 {
        let bytes = Arc::new(bytes);
        let seq = {
            let mut st = self.lock();
            st.seq += 1;
            st.seed = Some(Seed {
                seq: st.seq,
                bytes: bytes.clone(),
            });
            st.seq
        };
        (self.sink)(seq, bytes);
        seq
    }

    /// The last sequence number given (a handed-over state counts the next one).
    pub(crate) fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Whether a handoff wrapper runs behind this gate.
    pub(crate) fn attached(&self) -> bool {
        self.lock().attached
    }

    /// Asks the wrapper for its final state: it comes when the instance has handled its
    /// mailbox and stopped (drained).
    pub(crate) fn capture(&self) -> oneshot::Receiver<Result<Vec<u8>, String>> {
        let (tx, rx) = oneshot::channel();
        self.lock().capture = Some(tx);
        rx
    }

    /// The move was called off before the instance drained.
    pub(crate) fn cancel_capture(&self) {
        self.lock().capture = None;
    }
}

/// A [`Handoff`] child as the local supervisor runs it. `None` state: dormant (its state
/// has moved; it only outlives the move until the supervisor stops it).
pub(crate) struct Handing<H> {
    pub(crate) actor: H,
    pub(crate) gate: Arc<Gate>,
}

impl<H: Clone> Clone for Handing<H> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<H: Handoff> Actor for Handing<H> {
    type Msg = H::Msg;
    type State = Option<H::State>;
    type Args = H::Args;

    async fn init(&self, me: &Addr<H::Msg>, args: H::Args) -> Result<Self::State, ActorError> {
        let seed = {
            let mut st = self.gate.lock();
            st.attached = true;
            if st.moved {
                return Ok(None);
            }
            st.seed.clone()
        };
        if let Some(seed) = seed {
            match postcard::from_bytes::<H::Snapshot>(&seed.bytes) {
                Ok(snapshot) => return self.actor.restore(me, snapshot, args).await.map(Some),
                Err(e) => {
                    tracing::warn!(process = me.label(), error = %e, "snapshot does not decode: starting from init");
                }
            }
        }
        self.actor.init(me, args).await.map(Some)
    }

    async fn handle(
        &self,
        me: &Addr<H::Msg>,
        msg: H::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorError> {
        let Some(user) = state else {
            tracing::warn!(process = me.label(), "message to a moved instance dropped");
            return Ok(());
        };
        let current = Current {
            target: Target::Child(self.gate.clone()),
            snapshot: TypeId::of::<H::Snapshot>(),
        };
        CURRENT
            .scope(current, self.actor.handle(me, msg, user))
            .await
    }

    async fn terminate(
        &self,
        me: &Addr<H::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorError> {
        let capture = {
            let mut st = self.gate.lock();
            let capture = st.capture.take();
            if capture.is_some() {
                st.moved = true;
            }
            capture
        };
        match (capture, state.take()) {
            (Some(tx), Some(user)) => {
                let bytes = postcard::to_allocvec(&self.actor.export(user))
                    .map_err(|e| format!("the state does not encode: {e}"));
                // The supervisor gave up waiting: nothing to hand the state to.
                let _ = tx.send(bytes);
                Ok(())
            }
            (Some(tx), None) => {
                let _ = tx.send(Err("the instance had no state".to_owned()));
                Ok(())
            }
            (None, Some(mut user)) => {
                let r = self.actor.terminate(me, &mut user).await;
                *state = Some(user);
                r
            }
            (None, None) => Ok(()),
        }
    }
}
