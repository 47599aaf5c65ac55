//! Checkpoints of sharded entities: a per-shard store keyed by entity key on each node,
//! and its replication to the next owners of the shard.
//!
//! The distributed supervisor replicates checkpoints per child id, each with the record
//! stamp it belongs to, and drops those of children not in its table: that shape does
//! not fit millions of entities that are in no table. So a `Sharded` with
//! [`ShardedSpec::handoff`](super::ShardedSpec::handoff) keeps its own store, with the
//! same user-facing call ([`checkpoint`](crate::distributed::checkpoint)) and the same
//! placement: the copies go where the shard goes next.
//!
//! # What is kept
//!
//! Per entity key, its last checkpoint: the snapshot's postcard bytes, a sequence number
//! (1 for the entity's first, counted across moves and restarts while some node keeps
//! it), and whether it is a *parked* entity's (its passivation snapshot: the entity
//! stopped after it) or an active one's. Two things write it:
//!
//! - the entity, calling `checkpoint(&snapshot)` in a handler (or in `init`/`restore`);
//! - its passivation (idle, LRU, `ctx.stop()`, a shard's drain for a move): the
//!   [`Handoff::export`]ed state is kept as a parked checkpoint, so a passivation is a
//!   checkpoint too.
//!
//! An entity starts from its key's checkpoint when one is kept here (after a passivation,
//! a crash, a move or its old owner's death), else with `init`. The owner keeps its
//! entities' checkpoints while they run (the next start after a crash begins there).
//!
//! # Replication
//!
//! Shard `i`'s holders, as a node sees the cluster, are
//! `View::owners(Rendezvous, "<name>/<i>", k + 1, role)`: its owner, then the `k` nodes
//! a failover would pick next ([`ShardedSpec::checkpoint_replicas`](super::ShardedSpec::checkpoint_replicas)).
//! Each checkpoint made on a node is sent, when it is made, to the first `k` holders
//! other than that node (process `$sharded/<name>/checkpoints`, `default` channel); a
//! holder keeps a copy if its sequence number is newer than the one it has. When an
//! owner dies, rendezvous gives its shard to its second choice, which is the first
//! replica: the new owner holds the copies already, and an entity's first message there
//! restores it from its last replicated checkpoint.
//!
//! Every [`TICK`], each node compares its holders table with the view and its shards:
//!
//! - a shard it serves whose replica set has members it has not sent the shard's
//!   checkpoints to (a node joined, a replica died, the shard just arrived) gets them all
//!   sent there, in batches;
//! - a shard it neither serves nor holds any more has its copies dropped;
//! - with `remember_entities`, a shard it starts serving has the entities whose last
//!   checkpoint was an active one's started (after a crash: those active when they last
//!   checkpointed).
//!
//! In a planned move the old owner drains the shard (every entity parked) and hands a
//! copy of its checkpoints over with the snapshots (it keeps its own until its ticks
//! drop what it does not hold: it may be a replica of the shard now); the new owner
//! sends them to its own replicas. A node that becomes a replica of a shard in its own
//! view also asks the shard's owner for its checkpoints (`Want`), in case a copy sent
//! earlier was dropped here while its view said otherwise.
//!
//! # Limits and memory
//!
//! A checkpoint larger than [`ShardedSpec::checkpoint_limit`](super::ShardedSpec::checkpoint_limit)
//! encoded is refused ([`CheckpointError::TooLarge`]); one that would take the bytes of
//! all checkpoints on this node over
//! [`ShardedSpec::checkpoint_memory`](super::ShardedSpec::checkpoint_memory) too
//! ([`CheckpointError::Full`]), as is a copy from a peer over either limit (dropped,
//! counted in [`ShardedStats::checkpoints_refused`]). A passivation snapshot is kept
//! even over them (dropping it would lose the entity's state) but is not replicated when
//! it is over the size limit. A checkpoint is replaced by the entity's next one.
//!
//! # What is lost
//!
//! Copies are sent, not confirmed. On a node's death its entities restart from the last
//! checkpoint that reached the new owner; what they did after it, and the messages the
//! node had accepted and not handled, are lost (at most once). While views disagree a
//! copy may go to a node that does not take the shard over: the entity then restarts
//! from `init` (or an older copy), and replicas holding a higher sequence number ignore
//! its new checkpoints until its numbers pass theirs. When every holder of a checkpoint
//! goes, so does the state.

use super::runtime::shard_index;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use foundation_actors::{Actor, ActorError, Addr, RemoteMessage};
use foundation_cluster::node::Node;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::runtime::{Keeper, Restoring};
use super::{EntityKey, ShardedStats};
use crate::cluster::lock;
use crate::distributed::{CheckpointError, EntityCheckpoint, Handoff};
use crate::placement::{Load, Rendezvous, View};

/// To how many other nodes each entity checkpoint is copied, by default: one copy
/// survives the death of any one node, and millions of entities cost twice their
/// checkpoints' bytes, not three times.
pub const DEFAULT_CHECKPOINT_REPLICAS: usize = 1;

/// The largest checkpoint of one entity, encoded, by default (64 KiB).
pub const DEFAULT_CHECKPOINT_LIMIT: usize = 64 * 1024;

/// The bytes of checkpoints one node keeps for one `Sharded`, by default (256 MiB).
pub const DEFAULT_CHECKPOINT_MEMORY: usize = 256 * 1024 * 1024;

/// How often a node re-replicates and prunes its checkpoints.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// How long the holders table must stay the same before copies of shards this node
/// does not hold are dropped: a node whose view is still filling in (it just joined) is
/// not a holder of what its peers already send it.
pub(crate) const PRUNE_AFTER: Duration = Duration::from_secs(2);

/// Checkpoints per message when a shard's are sent in bulk.
const BATCH: usize = 256;

/// The checkpoint settings of a spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) replicas: usize,
    pub(crate) limit: usize,
    pub(crate) memory: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            replicas: DEFAULT_CHECKPOINT_REPLICAS,
            limit: DEFAULT_CHECKPOINT_LIMIT,
            memory: DEFAULT_CHECKPOINT_MEMORY,
        }
    }
}

/// One entity's last checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    seq: u64,
    /// The entity was passivated after it (its passivation snapshot).
    parked: bool,
    bytes: Arc<[u8]>,
}

/// The form a checkpoint is handed over in (in a shard's handoff).
#[derive(Serialize, Deserialize)]
struct Handed {
    seq: u64,
    parked: bool,
    bytes: Vec<u8>,
}

/// Why a checkpoint from a peer (a copy, a handoff) was not kept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// Its key does not decode as the entity's key type.
    #[error("its key does not decode")]
    Key(#[source] postcard::Error),
    /// It does not decode (a handed-over checkpoint).
    #[error("it does not decode")]
    Decode(#[source] postcard::Error),
    /// Larger than the limit.
    #[error("it is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// This node's checkpoints are full.
    #[error("this node's checkpoints would take more than {limit} bytes ({used} used)")]
    Full { used: usize, limit: usize },
    /// The store is not configured (no `Sharded` runs it).
    #[error("the store is not running")]
    Unconfigured,
}

/// Where replicated checkpoints go on a node: `put`s of peers' copies.
#[derive(Debug, RemoteMessage)]
#[remote(name = "foundation.registry.ShardCheckpoint", crate = foundation_actors)]
pub enum CheckpointWire {
    /// Copies of entity checkpoints: (key as postcard, sequence number, parked, bytes).
    #[remote(tag = 1)]
    Put {
        /// The copies.
        entries: Vec<(Vec<u8>, u64, bool, Vec<u8>)>,
    },
    /// From a node that became a replica of these shards (in its own view), to their
    /// owner: send it their checkpoints.
    #[remote(tag = 2)]
    Want {
        /// The node asking.
        from: String,
        /// The shards.
        shards: Vec<u32>,
    },
}

type Bucket<K> = Mutex<HashMap<K, Kept>>;
/// Starts an entity without a message (`remember_entities`).
pub(crate) type Activate<K> = Box<dyn Fn(&K) + Send + Sync>;
type Sink<K> = Box<dyn Fn(usize, &K, &Kept) + Send + Sync>;

/// One node's checkpoints of one `Sharded`'s entities, by shard and key.
pub(crate) struct Store<K> {
    buckets: OnceLock<Box<[Bucket<K>]>>,
    config: OnceLock<Config>,
    /// Bytes of checkpoints kept. Checked against the memory limit under one shard's
    /// lock only: inserts into different shards at once may overshoot it by their own
    /// sizes (at most a limit's worth per thread), which is why no lock spans the shards.
    used: AtomicUsize,
    /// Checkpoints kept, and those of them parked.
    count: AtomicUsize,
    parked: AtomicUsize,
    /// Copies from peers refused.
    refused: AtomicU64,
    /// Where a checkpoint made here is sent (in a cluster).
    sink: OnceLock<Sink<K>>,
    /// What answers a peer's `Want` (in a cluster).
    wants: OnceLock<Wants>,
}

type Wants = Box<dyn Fn(&str, &[u32]) + Send + Sync>;

impl<K: EntityKey> Store<K> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            buckets: OnceLock::new(),
            config: OnceLock::new(),
            used: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            sink: OnceLock::new(),
            wants: OnceLock::new(),
        })
    }

    /// Sizes the store for `shards` shards with `config` (once; the spec's, when its
    /// `Sharded` is built).
    pub(crate) fn configure(&self, shards: usize, config: Config) {
        let _ = self
            .buckets
            .set((0..shards.max(1)).map(|_| Mutex::default()).collect());
        let _ = self.config.set(config);
    }

    /// Sends the checkpoints made here with `sink` from now on.
    pub(crate) fn set_sink(&self, sink: Sink<K>) {
        let _ = self.sink.set(sink);
    }

    pub(crate) fn config(&self) -> Config {
        self.config.get().copied().unwrap_or_default()
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.buckets.get().map_or(0, |b| b.len())
    }

    fn bucket(&self, shard: usize) -> Option<&Bucket<K>> {
        self.buckets.get().and_then(|b| b.get(shard))
    }

    fn shard_of(&self, key: &K) -> usize {
        shard_index(key, self.shard_count())
    }

    /// Accounts for `new` replacing `old`.
    fn account(&self, old: Option<&Kept>, new: Option<&Kept>) {
        if let Some(o) = old {
            self.used.fetch_sub(o.bytes.len(), Ordering::Relaxed);
            self.count.fetch_sub(1, Ordering::Relaxed);
            if o.parked {
                self.parked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if let Some(n) = new {
            self.used.fetch_add(n.bytes.len(), Ordering::Relaxed);
            self.count.fetch_add(1, Ordering::Relaxed);
            if n.parked {
                self.parked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records `bytes` as `key`'s last checkpoint made here, and sends it to the shard's
    /// replicas. `explicit`: the entity's own `checkpoint()` call, held to the limits; a
    /// passivation snapshot (`parked`) is kept whatever its size.
    pub(crate) fn record(
        &self,
        key: &K,
        bytes: Vec<u8>,
        parked: bool,
        explicit: bool,
    ) -> Result<u64, CheckpointError> {
        let config = self.config();
        let shard = self.shard_of(key);
        let Some(bucket) = self.bucket(shard) else {
            return Err(CheckpointError::NotAChild);
        };
        let size = bytes.len();
        if explicit && size > config.limit {
            return Err(CheckpointError::TooLarge {
                size,
                limit: config.limit,
            });
        }
        let kept = {
            let mut map = lock(bucket);
            let old = map.get(key);
            let used = self.used.load(Ordering::Relaxed);
            let freed = old.map_or(0, |o| o.bytes.len());
            if explicit && used.saturating_sub(freed) + size > config.memory {
                return Err(CheckpointError::Full {
                    used,
                    limit: config.memory,
                });
            }
            let kept = Kept {
                seq: old.map_or(0, |o| o.seq) + 1,
                parked,
                bytes: bytes.into(),
            };
            let old = map.insert(key.clone(), kept.clone());
            self.account(old.as_ref(), Some(&kept));
            kept
        };
        if let Some(sink) = self.sink.get() {
            sink(shard, key, &kept);
        }
        Ok(kept.seq)
    }

    /// The sequence number of `key`'s checkpoint kept here.
    pub(crate) fn seq(&self, key: &K) -> Option<u64> {
        let bucket = self.bucket(self.shard_of(key))?;
        lock(bucket).get(key).map(|k| k.seq)
    }

    /// `key`'s last checkpoint, to start its entity from; it is active from now on.
    fn restoring(&self, key: &K) -> Option<Arc<[u8]>> {
        let bucket = self.bucket(self.shard_of(key))?;
        let mut map = lock(bucket);
        let kept = map.get_mut(key)?;
        if kept.parked {
            kept.parked = false;
            self.parked.fetch_sub(1, Ordering::Relaxed);
        }
        Some(kept.bytes.clone())
    }

    /// Keeps a copy from a peer (or a handoff) if it is newer than the one kept; whether
    /// it was.
    pub(crate) fn put(&self, key: K, kept: Kept) -> Result<bool, Refused> {
        let config = self.config.get().copied().ok_or(Refused::Unconfigured)?;
        let size = kept.bytes.len();
        if size > config.limit {
            return Err(Refused::TooLarge {
                size,
                limit: config.limit,
            });
        }
        let bucket = self
            .bucket(self.shard_of(&key))
            .ok_or(Refused::Unconfigured)?;
        let mut map = lock(bucket);
        let old = map.get(&key);
        if old.is_some_and(|o| o.seq >= kept.seq) {
            return Ok(false);
        }
        let used = self.used.load(Ordering::Relaxed);
        let freed = old.map_or(0, |o| o.bytes.len());
        if used.saturating_sub(freed) + size > config.memory {
            return Err(Refused::Full {
                used,
                limit: config.memory,
            });
        }
        let old = map.insert(key, kept.clone());
        self.account(old.as_ref(), Some(&kept));
        Ok(true)
    }

    /// Keeps a checkpoint handed over in a planned move: it wins over any kept here (it
    /// is the entity's state after its last message), numbered past both. Not held to
    /// the limits, as a passivation snapshot is not.
    fn put_handed(&self, key: K, mut kept: Kept) -> Result<(), Refused> {
        let bucket = self
            .bucket(self.shard_of(&key))
            .ok_or(Refused::Unconfigured)?;
        let mut map = lock(bucket);
        if let Some(o) = map.get(&key) {
            kept.seq = kept.seq.max(o.seq + 1);
        }
        let old = map.insert(key, kept.clone());
        self.account(old.as_ref(), Some(&kept));
        Ok(())
    }

    /// Copies of shard `shard`'s checkpoints.
    fn shard_entries(&self, shard: usize) -> Vec<(K, Kept)> {
        self.bucket(shard).map_or_else(Vec::new, |b| {
            lock(b)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
    }

    /// The keys of shard `shard` whose last checkpoint is an active entity's.
    fn active_keys(&self, shard: usize) -> Vec<K> {
        self.bucket(shard).map_or_else(Vec::new, |b| {
            lock(b)
                .iter()
                .filter(|(_, v)| !v.parked)
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    /// Drops shard `shard`'s checkpoints (this node neither serves nor holds it).
    fn prune(&self, shard: usize) -> usize {
        let Some(bucket) = self.bucket(shard) else {
            return 0;
        };
        let dropped: Vec<Kept> = lock(bucket).drain().map(|(_, v)| v).collect();
        for kept in &dropped {
            self.account(Some(kept), None);
        }
        dropped.len()
    }

    fn stats(&self, stats: &mut ShardedStats) {
        stats.snapshots = self.parked.load(Ordering::Relaxed);
        stats.checkpoints = self.count.load(Ordering::Relaxed);
        stats.checkpoint_bytes = self.used.load(Ordering::Relaxed);
        stats.checkpoints_refused = self.refused.load(Ordering::Relaxed);
    }
}

/// Decodes one replicated copy as a peer sent it.
///
/// # Errors
///
/// [`Refused::Key`] if the key does not decode as `K`.
pub(crate) fn decode_copy<K: DeserializeOwned>(
    (key, seq, parked, bytes): (Vec<u8>, u64, bool, Vec<u8>),
) -> Result<(K, Kept), Refused> {
    let key = postcard::from_bytes::<K>(&key).map_err(Refused::Key)?;
    Ok((
        key,
        Kept {
            seq,
            parked,
            bytes: bytes.into(),
        },
    ))
}

/// Decodes a checkpoint handed over in a shard's handoff.
///
/// # Errors
///
/// [`Refused::Decode`] if the bytes are not a handed-over checkpoint.
pub(crate) fn decode_handed(bytes: &[u8]) -> Result<Kept, Refused> {
    let h: Handed = postcard::from_bytes(bytes).map_err(Refused::Decode)?;
    Ok(Kept {
        seq: h.seq,
        parked: h.parked,
        bytes: h.bytes.into(),
    })
}

/// The keeper of a `Sharded` whose entities implement [`Handoff`]: passivation snapshots
/// and checkpoints in the [`Store`].
pub(crate) struct Checkpointed<K> {
    pub(crate) store: Arc<Store<K>>,
}

/// An entity's end of `checkpoint()`.
struct EntityEnd<K> {
    store: Arc<Store<K>>,
    key: K,
}

impl<K: EntityKey> EntityCheckpoint for EntityEnd<K> {
    fn checkpoint(&self, bytes: Vec<u8>) -> Result<u64, CheckpointError> {
        self.store.record(&self.key, bytes, false, true)
    }
}

impl<K: EntityKey, A: Handoff> Keeper<K, A> for Checkpointed<K> {
    fn save(&self, actor: &A, key: &K, state: A::State) {
        let snapshot = actor.export(state);
        let recorded = postcard::to_allocvec(&snapshot)
            .map_err(CheckpointError::from)
            .and_then(|bytes| self.store.record(key, bytes, true, false));
        if let Err(error) = recorded {
            tracing::error!(key = ?key, %error, "a passivated entity's snapshot could not be kept; it starts from its last checkpoint or init");
        }
    }

    fn restore<'a>(
        &'a self,
        actor: &'a A,
        key: &K,
        me: &'a Addr<A::Msg>,
        args: A::Args,
    ) -> Result<Restoring<'a, A::State>, A::Args> {
        let Some(bytes) = self.store.restoring(key) else {
            return Err(args);
        };
        match postcard::from_bytes::<A::Snapshot>(&bytes) {
            Ok(snapshot) => Ok(Box::pin(actor.restore(me, snapshot, args))),
            Err(error) => {
                tracing::warn!(key = ?key, %error, "an entity's checkpoint does not decode: it starts from init");
                Err(args)
            }
        }
    }

    fn len(&self) -> usize {
        self.store.parked.load(Ordering::Relaxed)
    }

    fn take_encoded(&self, shard: usize, which: &dyn Fn(&K) -> bool) -> Vec<(K, Vec<u8>)> {
        // Copies, not taken out: this node may hold the shard's copies as a replica in
        // the new view (a node that served a shard for a moment while it joined), and the
        // ones it does not hold are dropped by the replicator's next ticks.
        let taken: Vec<(K, Kept)> = self
            .store
            .shard_entries(shard)
            .into_iter()
            .filter(|(k, _)| which(k))
            .collect();
        let mut out = Vec::with_capacity(taken.len());
        for (k, kept) in taken {
            let handed = Handed {
                seq: kept.seq,
                parked: kept.parked,
                bytes: kept.bytes.to_vec(),
            };
            match postcard::to_allocvec(&handed) {
                Ok(bytes) => out.push((k, bytes)),
                Err(error) => {
                    tracing::error!(key = ?k, %error, "a checkpoint does not encode for its handoff; it stays here");
                }
            }
        }
        out
    }

    fn put_encoded(&self, key: K, bytes: &[u8]) -> Result<(), postcard::Error> {
        let kept = match decode_handed(bytes) {
            Ok(k) => k,
            Err(Refused::Decode(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        if let Err(why) = self.store.put_handed(key, kept) {
            self.store.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%why, "a handed-over checkpoint was refused");
        }
        Ok(())
    }

    fn checkpoints(&self, _shard: usize, key: &K) -> Option<(Arc<dyn EntityCheckpoint>, TypeId)> {
        self.store.buckets.get()?;
        let end: Arc<dyn EntityCheckpoint> = Arc::new(EntityEnd {
            store: self.store.clone(),
            key: key.clone(),
        });
        Some((end, TypeId::of::<A::Snapshot>()))
    }

    fn stats(&self, stats: &mut ShardedStats) {
        self.store.stats(stats);
    }
}

/// Shard holders as a node sees the cluster: per shard, its owner then its replicas.
struct Table {
    signature: Vec<(String, u64, bool)>,
    holders: Vec<Vec<Arc<str>>>,
    /// When it was computed.
    since: tokio::time::Instant,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            signature: Vec::new(),
            holders: Vec::new(),
            since: tokio::time::Instant::now(),
        }
    }
}

/// What was done per shard at the last tick.
#[derive(Default)]
struct Plan {
    served: Vec<bool>,
    /// Served since the last tick: its remembered entities start at the next (the shard
    /// opens just after it is marked served).
    fresh: Vec<bool>,
    /// The replicas that have this shard's checkpoints (sent to them since it is served
    /// here).
    sent_to: Vec<Vec<Arc<str>>>,
    /// Asks for copies that could not be sent yet: (owner, shards).
    asks: Vec<(Arc<str>, Vec<u32>)>,
}

/// Replicates one node's checkpoints of one `Sharded` in a cluster.
pub(crate) struct Replicator<K> {
    store: Arc<Store<K>>,
    node: Node,
    me: Arc<str>,
    name: Arc<str>,
    service: String,
    role: Option<String>,
    view: Box<dyn Fn() -> Option<View> + Send + Sync>,
    served: Box<dyn Fn(usize) -> bool + Send + Sync>,
    activate: Option<Activate<K>>,
    table: RwLock<Arc<Table>>,
    plan: Mutex<Plan>,
    task: Mutex<Option<JoinHandle<()>>>,
    receiver: Mutex<Option<Addr<CheckpointWire>>>,
}

/// The process name copies of `name`'s checkpoints are sent to.
fn service(name: &str) -> String {
    format!("$sharded/{name}/checkpoints")
}

/// Starts the process that takes peers' copies into `store`, exported on `node`.
///
/// # Errors
///
/// The process cannot start, or its name is taken.
pub(crate) async fn serve<K>(
    node: &Node,
    name: &str,
    store: Arc<Store<K>>,
) -> Result<Addr<CheckpointWire>, super::JoinError>
where
    K: EntityKey + Serialize + DeserializeOwned,
{
    let addr = foundation_actors::spawn(
        Inbox {
            store,
            name: Arc::from(name),
        },
        (),
    )
    .await?;
    if node.export(&service(name), addr.clone()).is_err() {
        addr.stop(None);
        return Err(super::JoinError::NameTaken(name.to_owned()));
    }
    Ok(addr)
}

/// What a [`Replicator`] needs of the cluster runtime.
pub(crate) struct Hooks<K> {
    /// The membership view shards are placed over; `None` once it is gone.
    pub(crate) view: Box<dyn Fn() -> Option<View> + Send + Sync>,
    /// Whether shard `i` is served here.
    pub(crate) served: Box<dyn Fn(usize) -> bool + Send + Sync>,
    /// Starts an entity without a message (`remember_entities`).
    pub(crate) activate: Option<Activate<K>>,
}

impl<K> Replicator<K>
where
    K: EntityKey + Serialize + DeserializeOwned,
{
    /// Replicates `store`'s checkpoints over `node`'s cluster; `receiver` is the process
    /// from [`serve`].
    pub(crate) fn start(
        node: &Node,
        store: Arc<Store<K>>,
        role: Option<String>,
        hooks: Hooks<K>,
        receiver: Addr<CheckpointWire>,
        name: &str,
    ) -> Arc<Self> {
        let shards = store.shard_count();
        let me = Arc::new(Self {
            store,
            node: node.clone(),
            me: Arc::from(node.name()),
            name: Arc::from(name),
            service: service(name),
            role,
            view: hooks.view,
            served: hooks.served,
            activate: hooks.activate,
            table: RwLock::new(Arc::new(Table::default())),
            plan: Mutex::new(Plan {
                served: vec![false; shards],
                fresh: vec![false; shards],
                sent_to: vec![Vec::new(); shards],
                asks: Vec::new(),
            }),
            task: Mutex::new(None),
            receiver: Mutex::new(Some(receiver)),
        });
        let weak = Arc::downgrade(&me);
        me.store
            .set_sink(Box::new(move |shard: usize, key: &K, kept: &Kept| {
                if let Some(r) = weak.upgrade() {
                    r.send_one(shard, key, kept);
                }
            }));
        let weak = Arc::downgrade(&me);
        let _ = me
            .store
            .wants
            .set(Box::new(move |from: &str, shards: &[u32]| {
                if let Some(r) = weak.upgrade() {
                    r.answer_want(from, shards);
                }
            }));
        let weak = Arc::downgrade(&me);
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(r) = weak.upgrade() else { return };
                if !r.tick() {
                    return;
                }
            }
        });
        *lock(&me.task) = Some(task);
        me
    }

    /// Stops replicating: the tick, and the process peers send copies to.
    pub(crate) fn stop(&self) {
        if let Some(t) = lock(&self.task).take() {
            t.abort();
        }
        if let Some(r) = lock(&self.receiver).take() {
            self.node.unexport(&self.service);
            r.stop(None);
        }
    }

    fn table(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The replicas of shard `shard` in `table`, as this node sends to them.
    fn replicas(&self, table: &Table, shard: usize) -> Vec<Arc<str>> {
        let k = self.store.config().replicas;
        table.holders.get(shard).map_or_else(Vec::new, |h| {
            h.iter()
                .filter(|n| ***n != *self.me)
                .take(k)
                .cloned()
                .collect()
        })
    }

    /// Sends a checkpoint made here to its shard's replicas.
    fn send_one(&self, shard: usize, key: &K, kept: &Kept) {
        let limit = self.store.config().limit;
        if kept.bytes.len() > limit {
            tracing::warn!(sharded = %self.name, key = ?key, size = kept.bytes.len(), limit, "a passivation snapshot over the checkpoint limit is kept here only");
            return;
        }
        let targets = self.replicas(&self.table(), shard);
        if targets.is_empty() {
            return;
        }
        let key_bytes = match postcard::to_allocvec(key) {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(sharded = %self.name, key = ?key, %error, "a key does not encode: its checkpoint stays here");
                return;
            }
        };
        let wire = CheckpointWire::Put {
            entries: vec![(key_bytes, kept.seq, kept.parked, kept.bytes.to_vec())],
        };
        for t in targets {
            if let Err(error) = self.node.send(&t, &self.service, &wire) {
                tracing::debug!(sharded = %self.name, node = %t, %error, "a checkpoint was not replicated");
            }
        }
    }

    /// A replica asks for `shards`' checkpoints: those served here are sent to it.
    fn answer_want(&self, from: &str, shards: &[u32]) {
        let table = self.table();
        for &s in shards {
            let i = usize::try_from(s).unwrap_or(usize::MAX);
            if i >= self.store.shard_count() || !(self.served)(i) {
                // Not served here: its owner sends them when it serves it.
                continue;
            }
            if self.send_shard(i, from) && self.replicas(&table, i).iter().any(|r| **r == *from) {
                let mut plan = lock(&self.plan);
                if let Some(sent) = plan.sent_to.get_mut(i) {
                    if !sent.iter().any(|r| **r == *from) {
                        sent.push(Arc::from(from));
                    }
                }
            }
        }
    }

    /// Sends every checkpoint of shard `shard` to `to`, in batches; whether all went.
    fn send_shard(&self, shard: usize, to: &str) -> bool {
        let limit = self.store.config().limit;
        let entries: Vec<(Vec<u8>, u64, bool, Vec<u8>)> = self
            .store
            .shard_entries(shard)
            .into_iter()
            .filter(|(_, kept)| kept.bytes.len() <= limit)
            .filter_map(|(k, kept)| {
                postcard::to_allocvec(&k)
                    .ok()
                    .map(|kb| (kb, kept.seq, kept.parked, kept.bytes.to_vec()))
            })
            .collect();
        let mut ok = true;
        tracing::debug!(sharded = %self.name, node = to, shard, n = entries.len(), "sending a shard's checkpoints");
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            let batch: Vec<_> = entries.by_ref().take(BATCH).collect();
            let wire = CheckpointWire::Put { entries: batch };
            if let Err(error) = self.node.send(to, &self.service, &wire) {
                tracing::debug!(sharded = %self.name, node = to, shard, %error, "a shard's checkpoints were not replicated; again at the next tick");
                ok = false;
                break;
            }
        }
        ok
    }

    /// One round: the holders table computed again if the view changed, shards served
    /// here re-replicated to replicas that lack them, shards neither served nor held
    /// here pruned, remembered entities started on shards just served. `false` once the
    /// cluster runtime is gone.
    fn tick(&self) -> bool {
        let Some(view) = (self.view)() else {
            return false;
        };
        let signature: Vec<(String, u64, bool)> = view
            .iter()
            .map(|n| (n.id.clone(), n.incarnation, n.leaving))
            .collect();
        let old = self.table();
        let mut plan = lock(&self.plan);
        if old.signature != signature {
            // A node gone, or started again (a new incarnation), has none of the copies
            // sent to it before.
            let gone: Vec<&str> = old
                .signature
                .iter()
                .filter(|o| !signature.iter().any(|n| n.0 == o.0 && n.1 == o.1))
                .map(|o| o.0.as_str())
                .collect();
            for sent in &mut plan.sent_to {
                sent.retain(|n| !gone.contains(&&**n));
            }
            let table = self.holders(&view, signature);
            plan.asks.extend(self.asks(&old, &table));
            *self
                .table
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
        }
        let table = self.table();
        if old.signature != table.signature {
            tracing::debug!(sharded = %self.name, members = table.signature.len(), "checkpoint holders computed");
        }
        let asks = std::mem::take(&mut plan.asks);
        for (owner, shards) in asks {
            if !table.signature.iter().any(|n| *n.0 == *owner) {
                continue;
            }
            let want = CheckpointWire::Want {
                from: self.me.to_string(),
                shards,
            };
            if let Err(error) = self.node.send(&owner, &self.service, &want) {
                tracing::debug!(sharded = %self.name, node = %owner, %error, "could not ask for shards' checkpoints; again at the next tick");
                if let CheckpointWire::Want { shards, .. } = want {
                    plan.asks.push((owner, shards));
                }
            }
        }
        let settled = table.since.elapsed() >= PRUNE_AFTER;
        let mut activate = Vec::new();
        for i in 0..self.store.shard_count() {
            let served = (self.served)(i);
            if served {
                if !plan.served[i] {
                    plan.fresh[i] = self.activate.is_some();
                } else if plan.fresh[i] {
                    plan.fresh[i] = false;
                    activate.extend(self.store.active_keys(i));
                }
                let want = self.replicas(&table, i);
                let mut have: Vec<Arc<str>> = Vec::with_capacity(want.len());
                for r in want {
                    if plan.sent_to[i].contains(&r) || self.send_shard(i, &r) {
                        have.push(r);
                    }
                }
                plan.sent_to[i] = have;
            } else {
                plan.fresh[i] = false;
                plan.sent_to[i].clear();
                let holds = table
                    .holders
                    .get(i)
                    .is_some_and(|h| h.iter().any(|n| **n == *self.me));
                if !holds && settled && !table.holders.is_empty() {
                    let dropped = self.store.prune(i);
                    if dropped > 0 {
                        tracing::debug!(sharded = %self.name, shard = i, dropped, "checkpoint copies of a shard no longer held here dropped");
                    }
                }
            }
            plan.served[i] = served;
        }
        drop(plan);
        if let Some(start) = &self.activate {
            for k in &activate {
                start(k);
            }
        }
        true
    }

    /// The owners to ask for the checkpoints of the shards this node holds copies of in
    /// `new` and did not in `old`: a copy sent here while this node's view said it was no
    /// holder was dropped, and the owner does not know.
    fn asks(&self, old: &Table, new: &Table) -> Vec<(Arc<str>, Vec<u32>)> {
        let mut asks: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (i, h) in new.holders.iter().enumerate() {
            let replica = h.iter().skip(1).any(|n| **n == *self.me);
            let was = old
                .holders
                .get(i)
                .is_some_and(|o| o.iter().any(|n| **n == *self.me));
            if let (true, false, Some(owner)) = (replica, was, h.first()) {
                asks.entry(owner.clone())
                    .or_default()
                    .push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        asks.into_iter().collect()
    }

    /// Each shard's holders over `view`: its owner, then the next `k`.
    fn holders(&self, view: &View, signature: Vec<(String, u64, bool)>) -> Table {
        let k = self.store.config().replicas;
        let load = Load::new();
        let mut names: Vec<Arc<str>> = Vec::new();
        let holders = (0..self.store.shard_count())
            .map(|i| {
                let key = super::cluster::shard_key(&self.name, i);
                view.owners(
                    &Rendezvous,
                    key.as_bytes(),
                    k + 1,
                    self.role.as_deref(),
                    &load,
                )
                .into_iter()
                .map(|n| match names.iter().find(|m| ***m == *n) {
                    Some(m) => m.clone(),
                    None => {
                        let m: Arc<str> = Arc::from(n);
                        names.push(m.clone());
                        m
                    }
                })
                .collect()
            })
            .collect();
        Table {
            signature,
            holders,
            since: tokio::time::Instant::now(),
        }
    }
}

/// The process peers send copies to (`$sharded/<name>/checkpoints`).
struct Inbox<K> {
    store: Arc<Store<K>>,
    name: Arc<str>,
}

impl<K> Actor for Inbox<K>
where
    K: EntityKey + Serialize + DeserializeOwned,
{
    type Msg = CheckpointWire;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<CheckpointWire>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(
        &self,
        _: &Addr<CheckpointWire>,
        msg: CheckpointWire,
        (): &mut (),
    ) -> Result<(), ActorError> {
        match msg {
            CheckpointWire::Put { entries } => {
                tracing::debug!(sharded = %self.name, n = entries.len(), "checkpoint copies came");
                for entry in entries {
                    let kept =
                        decode_copy::<K>(entry).and_then(|(k, kept)| self.store.put(k, kept));
                    if let Err(why) = kept {
                        self.store.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(sharded = %self.name, %why, "a checkpoint copy from a peer was refused");
                    }
                }
            }
            CheckpointWire::Want { from, shards } => {
                if let Some(answer) = self.store.wants.get() {
                    answer(&from, &shards);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn store(limit: usize, memory: usize) -> Arc<Store<u64>> {
        let s = Store::new();
        s.configure(
            8,
            Config {
                replicas: 1,
                limit,
                memory,
            },
        );
        s
    }

    #[derive(Clone)]
    struct Nop;
    impl Actor for Nop {
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
    fn the_store_puts_a_key_in_the_shard_the_runtime_does() {
        let settings = super::super::runtime::Settings::<String, Nop> {
            name: "t".into(),
            actor: Nop,
            args: Arc::new(|_: &String| ()),
            shards: 37,
            idle_timeout: None,
            max_entities: 10,
            restart: foundation_actors::Restart::Transient,
            backlog: 10,
            keeper: None,
        };
        let shared = super::super::runtime::Shared::new(settings);
        for k in 0..500 {
            let key = format!("key-{k}");
            assert_eq!(shared.shard_of(&key), shard_index(&key, 37));
        }
    }

    #[test]
    fn garbage_from_a_peer_gives_typed_errors() {
        let garbage: Vec<u8> = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        // A key that is not a postcard u64.
        let copy = (garbage.clone(), 1, false, vec![1, 2, 3]);
        assert!(matches!(decode_copy::<u64>(copy), Err(Refused::Key(_))));
        // A handed-over checkpoint that is not one.
        for bytes in [&garbage[..], &[][..], &[0x80][..]] {
            assert!(matches!(decode_handed(bytes), Err(Refused::Decode(_))));
        }
        // The message itself, from random bytes: an error, never a panic.
        let mut rng = fastrand::Rng::with_seed(15);
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if let Ok(CheckpointWire::Put { entries }) = CheckpointWire::from_bytes(&bytes) {
                for e in entries {
                    let _ = decode_copy::<String>(e);
                }
            }
            let _ = decode_handed(&bytes);
        }
    }

    #[test]
    fn copies_over_the_limits_are_refused_and_older_ones_ignored() {
        let s = store(4, 6);
        let kept = |seq, n: usize| Kept {
            seq,
            parked: false,
            bytes: vec![0; n].into(),
        };
        assert!(matches!(
            s.put(1, kept(1, 5)),
            Err(Refused::TooLarge { size: 5, limit: 4 })
        ));
        assert!(s.put(1, kept(2, 4)).unwrap());
        assert!(
            !s.put(1, kept(1, 1)).unwrap(),
            "an older copy replaced a newer"
        );
        assert!(matches!(s.put(2, kept(1, 3)), Err(Refused::Full { .. })));
        // Replacing a key's copy frees its old bytes.
        assert!(s.put(1, kept(3, 2)).unwrap());
        assert!(s.put(2, kept(1, 3)).unwrap());
        let mut st = ShardedStats::default();
        s.stats(&mut st);
        assert_eq!((st.checkpoints, st.checkpoint_bytes), (2, 5));
    }

    #[test]
    fn an_entity_checkpoint_over_the_limit_or_the_memory_is_a_typed_error() {
        let s = store(4, 6);
        assert!(matches!(
            s.record(&1, vec![0; 5], false, true),
            Err(CheckpointError::TooLarge { size: 5, limit: 4 })
        ));
        assert_eq!(s.record(&1, vec![0; 4], false, true).unwrap(), 1);
        assert!(matches!(
            s.record(&2, vec![0; 4], false, true),
            Err(CheckpointError::Full { used: 4, limit: 6 })
        ));
        // A passivation snapshot is kept over the limits; the sequence goes on.
        assert_eq!(s.record(&1, vec![0; 9], true, false).unwrap(), 2);
    }
}
