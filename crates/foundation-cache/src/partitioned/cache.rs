//! [`Partitioned`], its builder, and its [`Cache`] implementation.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use foundation_cluster::node::{Node, RemoteError};
use futures::{FutureExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::shard::{Core, Server, follow};
use super::wire::{Answer, Bytes, Claimed, Failure, Op, Outcome, ShardMsg, decode, encode};
use crate::api::{Cache, CacheKey, CacheValue, Counter};
use crate::error::{CacheError, CodecError, ComputeError, StartError};
use crate::local::Local;
use crate::local::flight::Flights;
use crate::stats::{Counters, Stats};
use crate::ttl::{Ttl, TtlLeft};

/// The longest key accepted by default, encoded: 1 KiB.
pub const DEFAULT_MAX_KEY_BYTES: usize = 1024;

/// Entries per page of `stream` / `stream_keys`.
const PAGE: u32 = 512;

/// How many times `get_or_compute` claims a key whose computations keep being abandoned
/// (their nodes dying) before it gives up.
const MAX_CLAIMS: usize = 16;

/// How many times `incr` retries a swap that lost a race before it gives up.
const MAX_SWAPS: usize = 1_000;

/// Builds a [`Partitioned`] cache: [`Partitioned::builder`].
#[derive(Debug, Clone)]
pub struct PartitionedBuilder<K, V> {
    name: String,
    replicas: usize,
    max_key_bytes: usize,
    max_bytes: Option<u64>,
    max_entries: Option<u64>,
    default_ttl: Ttl,
    timeout: Duration,
    compute_timeout: Duration,
    max_queued: Option<usize>,
    _types: PhantomData<fn(K, V)>,
}

impl<K: CacheKey, V: CacheValue> PartitionedBuilder<K, V> {
    /// Backups per key (default 0): each key is held by its owner and the next `k`
    /// distinct nodes of the ring, so the death of up to `k` of them loses none of it.
    pub fn replicas(mut self, k: usize) -> Self {
        self.replicas = k;
        self
    }

    /// The longest key accepted, in encoded bytes (default [`DEFAULT_MAX_KEY_BYTES`]).
    /// Longer ones are refused with [`CacheError::KeyTooLarge`].
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key_bytes = bytes;
        self
    }

    /// Bounds what this node holds (its own keys and its backups) to `bytes` of encoded
    /// keys and values (default 64 MiB); past it the shard evicts (TinyLFU).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self.max_entries = None;
        self
    }

    /// Bounds what this node holds to `n` entries instead of a number of bytes.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = Some(n);
        self.max_bytes = None;
        self
    }

    /// The TTL of entries written with [`Ttl::Default`] (without it: [`Ttl::Never`]).
    pub fn default_ttl(mut self, ttl: Ttl) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// How long an operation waits for a remote owner (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long `get_or_compute` waits for a computation running on another node
    /// (default 60 s): past it, the caller gets [`CacheError::Unavailable`].
    pub fn compute_timeout(mut self, timeout: Duration) -> Self {
        self.compute_timeout = timeout;
        self
    }

    /// The most messages from other nodes (requests, copies) that may wait at this node's
    /// shard (default: the node's `max_remote_queued`); past it a copy is dropped and a
    /// request refused (the caller gets [`CacheError::Unavailable`]). With the weight
    /// bound, it bounds what peers can make this node hold: the entries, plus at most
    /// this many messages (each up to the node's frame limit).
    pub fn max_queued(mut self, messages: usize) -> Self {
        self.max_queued = Some(messages);
        self
    }

    /// Starts this node's shard of the cache on `node` (every node of the cluster that
    /// uses the cache starts it under the same name, with the same `replicas`).
    ///
    /// # Errors
    ///
    /// [`StartError::NameTaken`] if a cache of this name runs on `node` already;
    /// [`StartError::BadName`], [`StartError::Ttl`] for a bad setting.
    pub async fn start(self, node: &Node) -> Result<Partitioned<K, V>, StartError> {
        if self.name.is_empty() || self.name.len() > 200 {
            let reason = format!("a name is 1 to 200 bytes, this one is {}", self.name.len());
            return Err(StartError::BadName {
                name: self.name,
                reason,
            });
        }
        let default_ttl = match self.default_ttl.validate()? {
            Ttl::Default => Ttl::Never,
            ttl => ttl,
        };
        let store = match (self.max_entries, self.max_bytes) {
            (Some(n), _) => Local::builder().max_entries(n),
            (None, bytes) => Local::builder()
                .max_weight(bytes.unwrap_or(64 << 20), |k: &Bytes, v: &Bytes| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                }),
        }
        .build()?;
        let service = format!("$cache/{}", self.name);
        // Subscribe before the ring is first read, so no change in between is missed.
        let events = node.subscribe();
        let core = Arc::new(Core::new(
            node.clone(),
            service.clone(),
            self.replicas,
            store,
            self.max_key_bytes,
        ));
        let server = foundation_actors::spawn(
            Server {
                core: Arc::downgrade(&core),
            },
            (),
        )
        .await
        .map_err(|e| StartError::Spawn {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        let mut export = foundation_cluster::node::ExportConfig::new();
        if let Some(n) = self.max_queued {
            export = export.max_queued(n);
        }
        if node.export_with(&service, server.clone(), export).is_err() {
            server.stop(None);
            return Err(StartError::NameTaken(self.name));
        }
        let task = tokio::spawn(follow(Arc::downgrade(&core), events));
        Ok(Partitioned {
            shared: Arc::new(Shared {
                core,
                server,
                task,
                flights: Arc::new(Flights::default()),
                counters: Counters::new(),
                name: self.name,
                default_ttl,
                max_key_bytes: self.max_key_bytes,
                timeout: self.timeout,
                compute_timeout: self.compute_timeout,
            }),
            _types: PhantomData,
        })
    }
}

/// A cache whose keys are spread over the nodes of the cluster by its hash ring, as
/// Nebulex's partitioned adapter.
///
/// Each key belongs to one node, its **owner**: the first node at or after the key's hash
/// on the ring ([`foundation_cluster::ring`]) of this node and its members that are up.
/// Every node with the same view of the cluster finds the same owner. An operation on a
/// key this node owns is applied here at once; one on another node's key is a call to
/// that node's shard process (`$cache/<name>`), over the node's `default` channel. Keys
/// and values travel and are stored as their postcard bytes.
///
/// - **Backups** ([`replicas(k)`](PartitionedBuilder::replicas)): the owner sends each
///   write to the next `k` nodes of the ring. When the owner dies, the next of them is the
///   key's owner on the new ring, and it holds the key.
/// - **Membership changes**: entries are **moved** to their new owners (see the module
///   docs, `docs/cache.md`).
/// - **Single flight across the cluster**: `get_or_compute` asks the key's owner, which
///   lets one caller compute and makes the others (on any node) wait for its value.
///
/// Cloning is cheap and gives another handle to the same cache.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use foundation_cache::{Cache, Partitioned, Ttl};
/// use foundation_cluster::node::{Node, NodeConfig};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
/// let users: Partitioned<u64, String> = Partitioned::builder("users")
///     .replicas(1)
///     .default_ttl(Ttl::Live(Duration::from_secs(60)))
///     .start(&node)
///     .await?;
/// users.put(1, "ada".to_owned(), Ttl::Default).await?;
/// assert_eq!(users.get(&1).await?, Some("ada".to_owned()));
/// let n = users
///     .get_or_compute(2, Ttl::Default, || async { Ok::<_, std::io::Error>("grace".to_owned()) })
///     .await?;
/// assert_eq!(n, "grace");
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Partitioned<K, V> {
    shared: Arc<Shared<K>>,
    _types: PhantomData<fn(K, V)>,
}

struct Shared<K> {
    core: Arc<Core>,
    server: foundation_actors::Addr<ShardMsg>,
    task: tokio::task::JoinHandle<()>,
    flights: Arc<Flights<K>>,
    counters: Counters,
    /// The cache's name, for errors.
    name: String,
    default_ttl: Ttl,
    max_key_bytes: usize,
    timeout: Duration,
    compute_timeout: Duration,
}

impl<K> Drop for Shared<K> {
    fn drop(&mut self) {
        self.task.abort();
        self.core.node.unexport(&self.core.service);
        self.server.stop(None);
    }
}

impl<K, V> Clone for Partitioned<K, V> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _types: PhantomData,
        }
    }
}

impl<K, V> fmt::Debug for Partitioned<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partitioned")
            .field("service", &self.shared.core.service)
            .field("replicas", &self.shared.core.replicas)
            .field("stats", &self.shared.counters.snapshot())
            .finish()
    }
}

/// How many times an operation follows a node's answer that another node owns its key
/// (rings that disagree for a moment during a membership change).
const OWNER_HOPS: u32 = 8;

impl<K> Shared<K> {
    /// A failed call of `node`'s shard as the cache reports it; `R` is the reply expected,
    /// and `setting` the builder's setting that bounded the wait (`timeout`,
    /// `compute_timeout`).
    fn remote<R>(&self, node: &str, setting: &str, e: RemoteError) -> CacheError {
        match e {
            RemoteError::Wire(w) => CacheError::Codec(crate::codec::deserialize_error::<R>(
                "reply",
                format!("from node `{node}`: {w}"),
            )),
            RemoteError::Timeout => {
                let wait = match setting {
                    "compute_timeout" => self.compute_timeout,
                    _ => self.timeout,
                };
                CacheError::unavailable(
                    &self.name,
                    format!(
                        "node `{node}` gave no reply within {wait:?} (the cache's `{setting}`)"
                    ),
                )
            }
            other => CacheError::unavailable(&self.name, other.to_string()),
        }
    }

    /// An answer of the wrong kind from `node`: a peer of another version, or a broken one.
    fn unexpected(&self, node: &str, answer: Answer) -> CacheError {
        match answer {
            Answer::Refused(why) => CacheError::unavailable(
                &self.name,
                format!("node `{node}` refused the operation: {why}"),
            ),
            other => CacheError::Codec(crate::codec::deserialize_error::<Answer>(
                "reply",
                format!("node `{node}` answered {other:?}, which is no answer to this operation"),
            )),
        }
    }
}

/// `Answer::Done`, for [`Partitioned::op`].
fn done(answer: Answer) -> Result<(), Answer> {
    match answer {
        Answer::Done => Ok(()),
        other => Err(other),
    }
}

/// `Answer::Bool`, for [`Partitioned::op`].
fn boolean(answer: Answer) -> Result<bool, Answer> {
    match answer {
        Answer::Bool(b) => Ok(b),
        other => Err(other),
    }
}

impl<K, V> Partitioned<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    /// A builder for the cache `name` (the same name on every node).
    pub fn builder(name: impl Into<String>) -> PartitionedBuilder<K, V> {
        PartitionedBuilder {
            name: name.into(),
            replicas: 0,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_bytes: None,
            max_entries: None,
            default_ttl: Ttl::Never,
            timeout: Duration::from_secs(5),
            compute_timeout: Duration::from_secs(60),
            max_queued: None,
            _types: PhantomData,
        }
    }

    /// The node that owns `key` now, as this node sees the cluster.
    ///
    /// # Errors
    ///
    /// [`CacheError::Codec`] or [`CacheError::KeyTooLarge`] for a key that cannot be
    /// encoded or is too long.
    pub fn owner_of(&self, key: &K) -> Result<String, CacheError> {
        Ok(self.shared.core.owner(&self.key(key)?))
    }

    /// The nodes the cache spreads keys over now, as this node sees the cluster (it
    /// follows membership events a moment after the node reports them).
    pub fn nodes(&self) -> Vec<String> {
        self.shared.core.ring().nodes().to_vec()
    }

    /// How many entries this node holds: the keys it owns and those it backs up.
    pub fn held(&self) -> u64 {
        let mut n = 0;
        let mut entries = self.shared.core.store.stream();
        while let Some(Some(_)) = entries.next().now_or_never() {
            n += 1;
        }
        n
    }

    /// The weight of what this node holds, as of now (housekeeping run first): the
    /// encoded bytes of its keys and values, or its entry count for a cache bounded by
    /// entries. At most the bound ([`max_bytes`](PartitionedBuilder::max_bytes) or
    /// [`max_entries`](PartitionedBuilder::max_entries)), whatever peers write.
    pub fn held_weight(&self) -> u64 {
        let store = &self.shared.core.store;
        store.run_pending_tasks();
        store.weighted_size()
    }

    /// Computations this node coordinates now as the owner of their keys, plus the
    /// callers (on any node) waiting for them. Bounded: past 100,000 a new claim is let
    /// compute on its own instead of waiting (counted in [`refused`](Self::refused)).
    pub fn waiting(&self) -> usize {
        self.shared.core.waiting()
    }

    /// Requests from peers this node refused (a key over its `max_key_bytes`: not stored,
    /// not waited on) or served without single flight (a claim past the bound of
    /// [`waiting`](Self::waiting)). A peer of this version with the same settings causes
    /// none.
    pub fn refused(&self) -> u64 {
        self.shared
            .core
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Entries this node has sent to new owners after membership changes.
    pub fn moved_out(&self) -> u64 {
        self.shared
            .core
            .moved_out
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `key`'s bytes, checked against the limit.
    fn key(&self, key: &K) -> Result<Bytes, CacheError> {
        let bytes = encode("key", key)?;
        if bytes.len() > self.shared.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                cache: self.shared.name.clone(),
                size: bytes.len(),
                limit: self.shared.max_key_bytes,
            });
        }
        Ok(bytes)
    }

    fn resolve(&self, ttl: Ttl) -> Result<Ttl, CacheError> {
        match ttl {
            Ttl::Default => Ok(self.shared.default_ttl),
            Ttl::Never => Ok(Ttl::Never),
            ttl => Ok(ttl.validate()?),
        }
    }

    fn is_me(&self, node: &str) -> bool {
        node == self.shared.core.node.name()
    }

    /// The value bytes under `key` at its owner.
    async fn get_bytes(&self, key: Bytes) -> Result<Option<Bytes>, CacheError> {
        let core = &self.shared.core;
        // The owner's name borrowed from the ring (the hot path: no copy of it).
        let ring = core.ring();
        let me = core.node.name();
        let owner = ring.owner(&key).map_or(me, String::as_str);
        if owner == me {
            return Ok(core.get(&key));
        }
        core.node
            .call(
                owner,
                &core.service,
                |p| ShardMsg::Get(key, p),
                self.shared.timeout,
            )
            .await
            .map_err(|e| self.shared.remote::<Option<Bytes>>(owner, "timeout", e))
    }

    /// `op` applied by the owner of `key`, its answer taken by `want` (which gives back an
    /// answer of the wrong kind).
    async fn op<T>(
        &self,
        key: &[u8],
        op: Op,
        want: impl FnOnce(Answer) -> Result<T, Answer>,
    ) -> Result<T, CacheError> {
        let core = &self.shared.core;
        let owner = core.owner(key);
        self.op_at(&owner, op, want).await
    }

    /// `op` applied by `node`, its answer taken by `want`. A node that no longer owns the
    /// key (its ring changed since this one routed it) names the owner, and `op` goes
    /// there, up to [`OWNER_HOPS`] times while the rings of a membership change agree.
    async fn op_at<T>(
        &self,
        node: &str,
        mut op: Op,
        want: impl FnOnce(Answer) -> Result<T, Answer>,
    ) -> Result<T, CacheError> {
        let core = &self.shared.core;
        let mut node = node.to_owned();
        let mut hops = 0;
        let answer = loop {
            let answer = if self.is_me(&node) {
                match core.apply(op) {
                    Ok(answer) => break answer,
                    Err((back, owner)) => {
                        op = back;
                        Answer::NotOwner(owner)
                    }
                }
            } else {
                // Kept for another hop (a key's op is small beside the call's round trip).
                let sent = op.clone();
                core.node
                    .call(
                        &node,
                        &core.service,
                        |p| ShardMsg::Op(sent, p),
                        self.shared.timeout,
                    )
                    .await
                    .map_err(|e| self.shared.remote::<Answer>(&node, "timeout", e))?
            };
            let Answer::NotOwner(owner) = answer else {
                break answer;
            };
            hops += 1;
            if hops > OWNER_HOPS || owner == node {
                return Err(CacheError::unavailable(
                    &self.shared.name,
                    format!(
                        "the key's owner is changing (node `{node}` names `{owner}`): a membership change is under way; try again"
                    ),
                ));
            }
            if hops > 1 {
                // The two rings disagree: give the membership change a moment.
                tokio::time::sleep(Duration::from_millis(u64::from(hops))).await;
            }
            node = owner;
        };
        want(answer).map_err(|other| self.shared.unexpected(&node, other))
    }

    async fn op_bool(&self, key: &[u8], op: Op) -> Result<bool, CacheError> {
        self.op(key, op, boolean).await
    }

    fn value(&self, bytes: Option<Bytes>) -> Result<Option<V>, CacheError> {
        bytes.map(|b| decode::<V>("value", &b)).transpose()
    }

    fn read(&self, value: Result<Option<V>, CacheError>) -> Result<Option<V>, CacheError> {
        if let Ok(v) = &value {
            self.shared.counters.read(v.is_some());
        }
        value
    }

    /// One page of `node`'s own entries.
    async fn page(&self, node: &str, skip: u64) -> Result<Vec<(Bytes, Bytes)>, CacheError> {
        self.op_at(node, Op::Page { skip, limit: PAGE }, |a| match a {
            Answer::Page(p) => Ok(p),
            other => Err(other),
        })
        .await
    }

    /// Every node's own entries, page by page: a failing node ends the stream after its
    /// error.
    fn pages(&self) -> impl Stream<Item = Result<Vec<(Bytes, Bytes)>, CacheError>> + Send + '_ {
        let nodes = self.shared.core.ring().nodes().to_vec();
        futures::stream::unfold(
            (nodes, 0usize, 0u64, false),
            move |(nodes, i, skip, done)| async move {
                if done || i >= nodes.len() {
                    return None;
                }
                match self.page(&nodes[i], skip).await {
                    Ok(page) => {
                        let next = if page.len() < PAGE as usize {
                            (i + 1, 0)
                        } else {
                            (i, skip + page.len() as u64)
                        };
                        Some((Ok(page), (nodes, next.0, next.1, false)))
                    }
                    Err(e) => Some((Err(e), (nodes, i, skip, true))),
                }
            },
        )
    }

    /// The cluster side of `get_or_compute`: claims the key at its owner until it gets
    /// the value, or the right to compute it (then computes and reports).
    async fn compute_cluster<F, Fut, E>(
        self,
        key: Bytes,
        ttl: Ttl,
        f: F,
    ) -> Result<V, ComputeError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: std::fmt::Display + Send + Sync + 'static,
    {
        let core = Arc::clone(&self.shared.core);
        let me = core.node.name().to_owned();
        let mut f = Some(f);
        for _ in 0..MAX_CLAIMS {
            let owner = core.owner(&key);
            let claimed = core
                .node
                .call(
                    &owner,
                    &core.service,
                    |p| ShardMsg::Claim(key.clone(), me.clone(), p),
                    self.shared.compute_timeout,
                )
                .await
                .map_err(|e| self.shared.remote::<Claimed>(&owner, "compute_timeout", e))?;
            match claimed {
                Claimed::Value(bytes) => return Ok(decode::<V>("value", &bytes)?),
                Claimed::Retry => continue,
                // What the callers on the computing node got, with its message.
                Claimed::Failed { node, failure } => {
                    return Err(match failure {
                        Failure::Returned(message) => ComputeError::Compute {
                            message,
                            node: Some(node),
                            error: None,
                        },
                        Failure::Panicked(message) => ComputeError::Panicked {
                            message,
                            node: Some(node),
                        },
                        Failure::Unencodable(reason) => {
                            ComputeError::Cache(CacheError::Codec(CodecError::Serialize {
                                what: "value",
                                type_name: std::any::type_name::<V>(),
                                reason,
                            }))
                        }
                    });
                }
                Claimed::Compute => {
                    let Some(f) = f.take() else {
                        let why = format!("node `{owner}` let this node compute the key twice");
                        return Err(CacheError::unavailable(&self.shared.name, why).into());
                    };
                    let mut report = Report {
                        core: Arc::clone(&core),
                        owner,
                        key: key.clone(),
                        me: me.clone(),
                        outcome: Some(Outcome::Abandoned),
                    };
                    let result = AssertUnwindSafe(async move { f().await })
                        .catch_unwind()
                        .await;
                    return match result {
                        Ok(Ok(value)) => match encode("value", &value) {
                            Ok(bytes) => {
                                report.outcome = Some(Outcome::Value(bytes, ttl));
                                Ok(value)
                            }
                            Err(e) => {
                                let reason = match &e {
                                    CacheError::Codec(CodecError::Serialize { reason, .. }) => {
                                        reason.clone()
                                    }
                                    other => other.to_string(),
                                };
                                report.outcome =
                                    Some(Outcome::Failed(Failure::Unencodable(reason)));
                                Err(e.into())
                            }
                        },
                        Ok(Err(e)) => {
                            let failed = ComputeError::returned(e, Some(me));
                            if let ComputeError::Compute { message, .. } = &failed {
                                let failure = Failure::Returned(message.clone());
                                report.outcome = Some(Outcome::Failed(failure));
                            }
                            Err(failed)
                        }
                        Err(payload) => {
                            let failed = ComputeError::panicked(&*payload, Some(me));
                            if let ComputeError::Panicked { message, .. } = &failed {
                                let failure = Failure::Panicked(message.clone());
                                report.outcome = Some(Outcome::Failed(failure));
                            }
                            Err(failed)
                        }
                    };
                }
            }
        }
        let why = format!(
            "the computation of the key was abandoned {MAX_CLAIMS} times in a row (the nodes \
             computing it went down, or their callers went away)"
        );
        Err(CacheError::unavailable(&self.shared.name, why).into())
    }
}

/// Reports a computation's outcome to its key's owner when dropped: the value or the
/// failure once it is known, or that it was abandoned (every caller went away, or the
/// caller's future was dropped mid-computation).
struct Report {
    core: Arc<Core>,
    owner: String,
    key: Bytes,
    me: String,
    outcome: Option<Outcome>,
}

impl Drop for Report {
    fn drop(&mut self) {
        let Some(outcome) = self.outcome.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        let core = &self.core;
        // This node's own claim is ended here and now, so that the caller's next read
        // sees the value; another owner's is ended by a message sent before the caller's
        // next request to it (and so handled first).
        if self.owner == self.me {
            core.fulfill(key, &self.me, outcome);
            return;
        }
        let msg = ShardMsg::Fulfill(key, self.me.clone(), outcome);
        if let Err(error) = core.node.send(&self.owner, &core.service, &msg) {
            tracing::debug!(cache = %core.service, owner = %self.owner, %error, "a computation's outcome was not reported");
        }
    }
}

impl<K, V> Cache<K, V> for Partitioned<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    async fn get(&self, key: &K) -> Result<Option<V>, CacheError> {
        let key = self.key(key)?;
        let bytes = self.get_bytes(key).await?;
        self.read(self.value(bytes))
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, CacheError> {
        let keys = keys
            .iter()
            .map(|k| self.key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let got = futures::future::join_all(keys.into_iter().map(|k| self.get_bytes(k))).await;
        got.into_iter()
            .map(|b| self.read(b.and_then(|b| self.value(b))))
            .collect()
    }

    async fn put(&self, key: K, value: V, ttl: Ttl) -> Result<(), CacheError> {
        let ttl = self.resolve(ttl)?;
        let key = self.key(&key)?;
        let value = encode("value", &value)?;
        self.op(&key.clone(), Op::Put(key, value, ttl), done)
            .await?;
        self.shared.counters.writes(1);
        Ok(())
    }

    async fn put_new(&self, key: K, value: V, ttl: Ttl) -> Result<bool, CacheError> {
        let ttl = self.resolve(ttl)?;
        let key = self.key(&key)?;
        let value = encode("value", &value)?;
        let wrote = self
            .op_bool(&key.clone(), Op::PutNew(key, value, ttl))
            .await?;
        if wrote {
            self.shared.counters.writes(1);
        }
        Ok(wrote)
    }

    async fn replace(&self, key: K, value: V, ttl: Ttl) -> Result<bool, CacheError> {
        let ttl = self.resolve(ttl)?;
        let key = self.key(&key)?;
        let value = encode("value", &value)?;
        let wrote = self
            .op_bool(&key.clone(), Op::Replace(key, value, ttl))
            .await?;
        if wrote {
            self.shared.counters.writes(1);
        }
        Ok(wrote)
    }

    async fn put_many<I>(&self, entries: I, ttl: Ttl) -> Result<(), CacheError>
    where
        I: IntoIterator<Item = (K, V)> + Send,
        I::IntoIter: Send,
    {
        let ttl = self.resolve(ttl)?;
        // Everything is encoded before anything is written.
        let mut encoded = Vec::new();
        for (k, v) in entries {
            encoded.push((self.key(&k)?, encode("value", &v)?));
        }
        let n = encoded.len() as u64;
        let written = futures::future::join_all(
            encoded
                .into_iter()
                .map(|(k, v)| async move { self.op(&k.clone(), Op::Put(k, v, ttl), done).await }),
        )
        .await;
        for w in written {
            w?;
        }
        self.shared.counters.writes(n);
        Ok(())
    }

    async fn delete(&self, key: &K) -> Result<(), CacheError> {
        let key = self.key(key)?;
        self.op(&key.clone(), Op::Delete(key), done).await
    }

    async fn take(&self, key: &K) -> Result<Option<V>, CacheError> {
        let key = self.key(key)?;
        let v = self
            .op(&key.clone(), Op::Take(key), |a| match a {
                Answer::Value(v) => Ok(v),
                other => Err(other),
            })
            .await?;
        self.read(self.value(v))
    }

    async fn contains(&self, key: &K) -> Result<bool, CacheError> {
        let key = self.key(key)?;
        self.op_bool(&key.clone(), Op::Contains(key)).await
    }

    async fn incr(&self, key: K, by: i64, ttl: Ttl) -> Result<V, CacheError>
    where
        V: Counter,
    {
        let ttl = self.resolve(ttl)?;
        let key = self.key(&key)?;
        // Read, add, and swap in if nothing changed meanwhile: atomic against every other
        // write to the key, which its owner applies one at a time.
        for _ in 0..MAX_SWAPS {
            let current = self.get_bytes(key.clone()).await?;
            let value = match &current {
                Some(b) => decode::<V>("value", b)?,
                None => V::ZERO,
            };
            let new = value
                .checked_add_i64(by)
                .ok_or_else(|| CacheError::overflow::<V>(by))?;
            let swap = Op::Swap {
                key: key.clone(),
                expected: current,
                new: encode("value", &new)?,
                ttl,
            };
            if self.op_bool(&key, swap).await? {
                self.shared.counters.writes(1);
                return Ok(new);
            }
        }
        Err(CacheError::unavailable(
            &self.shared.name,
            format!("incr lost {MAX_SWAPS} races in a row to other writes of the key"),
        ))
    }

    async fn ttl(&self, key: &K) -> Result<Option<TtlLeft>, CacheError> {
        let key = self.key(key)?;
        self.op(&key.clone(), Op::Ttl(key), |a| match a {
            Answer::Left(left) => Ok(left),
            other => Err(other),
        })
        .await
    }

    async fn expire(&self, key: &K, ttl: Ttl) -> Result<bool, CacheError> {
        let ttl = self.resolve(ttl)?;
        let key = self.key(key)?;
        self.op_bool(&key.clone(), Op::Expire(key, ttl)).await
    }

    async fn touch(&self, key: &K) -> Result<bool, CacheError> {
        let key = self.key(key)?;
        self.op_bool(&key.clone(), Op::Touch(key)).await
    }

    async fn len(&self) -> Result<u64, CacheError> {
        let nodes = self.shared.core.ring().nodes().to_vec();
        let counts = futures::future::join_all(nodes.iter().map(|n| {
            self.op_at(n, Op::Len, |a| match a {
                Answer::Count(n) => Ok(n),
                other => Err(other),
            })
        }))
        .await;
        let mut total = 0;
        for c in counts {
            total += c?;
        }
        Ok(total)
    }

    async fn clear(&self) -> Result<(), CacheError> {
        let nodes = self.shared.core.ring().nodes().to_vec();
        let cleared =
            futures::future::join_all(nodes.iter().map(|n| self.op_at(n, Op::Clear, done))).await;
        for c in cleared {
            c?;
        }
        Ok(())
    }

    fn stream_keys(&self) -> impl Stream<Item = Result<K, CacheError>> + Send + '_ {
        self.pages().flat_map(|page| {
            let items: Vec<Result<K, CacheError>> = match page {
                Ok(entries) => entries
                    .into_iter()
                    .map(|(k, _)| decode::<K>("key", &k))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        })
    }

    fn stream(&self) -> impl Stream<Item = Result<(K, V), CacheError>> + Send + '_ {
        self.pages().flat_map(|page| {
            let items: Vec<Result<(K, V), CacheError>> = match page {
                Ok(entries) => entries
                    .into_iter()
                    .map(|(k, v)| Ok((decode::<K>("key", &k)?, decode::<V>("value", &v)?)))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        })
    }

    /// As the trait says, across the cluster: concurrent misses for one key on this node
    /// share one flight (as with the local adapter), and the flights of all nodes claim
    /// the key at its owner, which lets one of them compute and makes the others wait for
    /// its value. If `f` fails, every waiter, on any node, gets
    /// [`ComputeError::Compute`] with its message and the node it ran on (the error value
    /// itself only on that node: `E` need not be serializable); if it panics,
    /// [`ComputeError::Panicked`] likewise; if its value fails to serialize,
    /// [`ComputeError::Cache`] with the [`CodecError`]. If the computing node dies
    /// mid-computation, or every caller there goes away, the waiters claim again and one of
    /// them computes. A waiter waits at most the builder's `compute_timeout`.
    async fn get_or_compute<F, Fut, E>(&self, key: K, ttl: Ttl, f: F) -> Result<V, ComputeError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: std::fmt::Display + Send + Sync + 'static,
    {
        let ttl = self.resolve(ttl)?;
        let bytes = self.key(&key)?;
        // A hit costs a get, not a claim.
        if let Some(value) = self.value(self.get_bytes(bytes.clone()).await?)? {
            self.shared.counters.hit();
            return Ok(value);
        }
        self.shared.counters.miss();
        let flights = &self.shared.flights;
        let flight = {
            let mut table = flights.lock();
            match Flights::find::<V, ComputeError<E>>(&table, &key) {
                Some(flight) => flight,
                None => {
                    let this = self.clone();
                    let compute = this.compute_cluster(bytes, ttl, f);
                    let counters = Arc::clone(&self.shared);
                    Flights::start(flights, &mut table, key, compute, move |_, _: &V| {
                        counters.counters.writes(1);
                    })
                }
            }
        };
        // The flight's error is `compute_cluster`'s, wrapped: unwrap it.
        match flight.await {
            Ok(v) => Ok(v),
            Err(ComputeError::Compute {
                error: Some(inner), ..
            }) => Err((*inner).clone()),
            Err(ComputeError::Compute { message, node, .. }) => Err(ComputeError::Compute {
                message,
                node,
                error: None,
            }),
            Err(ComputeError::Cache(e)) => Err(ComputeError::Cache(e)),
            Err(ComputeError::Panicked { message, .. }) => Err(ComputeError::Panicked {
                message,
                node: Some(self.shared.core.node.name().to_owned()),
            }),
        }
    }

    fn stats(&self) -> Stats {
        let store = self.shared.core.store.stats();
        Stats {
            evictions: store.evictions,
            expirations: store.expirations,
            ..self.shared.counters.snapshot()
        }
    }
}
