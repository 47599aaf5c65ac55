//! [`Replicated`]: every node holds every key; writes are applied everywhere, reads are
//! local.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use foundation_cluster::node::Node;
use futures::{FutureExt, Stream};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::{Cache, CacheKey, CacheValue, Counter};
use crate::crdt::{LwwMap, Message};
use crate::error::{CacheError, CodecError, ComputeError};
use crate::local::flight::Flights;
use crate::metrics::CacheMetrics;
use crate::shared::{Observer, Shared, SharedOptions, SharedStats, StartError, wall_ms};
use crate::stats::Stats;
use crate::ttl::{Ttl, TtlLeft};
use crate::{Local, LocalBuilder};

/// The replicated store: encoded keys to encoded values, last writer wins.
pub(crate) type Store = LwwMap<Vec<u8>, Item>;

/// One write as it travels: the value's bytes and how long it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Item {
    value: Vec<u8>,
    /// `Never`, `Live` (see `deadline_ms`) or `Idle` (counted on each node from when it
    /// receives the write: reads are per node).
    ttl: Ttl,
    /// For `Live`: the wall-clock millisecond it expires at, the same on every node.
    deadline_ms: Option<u64>,
}

impl Item {
    pub(crate) fn new(value: Vec<u8>, ttl: Ttl, now_ms: u64) -> Self {
        let deadline_ms = match ttl {
            Ttl::Live(d) => Some(now_ms.saturating_add(millis(d))),
            _ => None,
        };
        Self {
            value,
            ttl,
            deadline_ms,
        }
    }

    /// The TTL to give the local cache now: `None` if the item has expired.
    fn local_ttl(&self, now_ms: u64) -> Option<Ttl> {
        match (self.ttl, self.deadline_ms) {
            (Ttl::Live(_), Some(deadline)) => {
                (deadline > now_ms).then(|| Ttl::Live(Duration::from_millis(deadline - now_ms)))
            }
            (ttl, _) => Some(ttl),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a [`Replicated`] cache is built: its name, its local cache, its replication.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use foundation_cache::{Local, ReplicatedOptions, Ttl};
///
/// let options = ReplicatedOptions::<u64, String>::new("sessions")
///     .local(Local::builder().max_entries(100_000).default_ttl(Ttl::Live(Duration::from_secs(600))))
///     .max_key_bytes(256);
/// # let _ = options;
/// ```
pub struct ReplicatedOptions<K, V> {
    shared: SharedOptions,
    local: LocalBuilder<K, V>,
    default_ttl: Ttl,
    max_key_bytes: usize,
    on_peer_write: Option<PeerWrite<K>>,
}

/// A callback run for each peer's write that wins here.
type PeerWrite<K> = Arc<dyn Fn(&K) + Send + Sync>;

impl<K, V> fmt::Debug for ReplicatedOptions<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicatedOptions")
            .field("shared", &self.shared)
            .field("local", &self.local)
            .field("max_key_bytes", &self.max_key_bytes)
            .finish()
    }
}

impl<K: CacheKey, V: CacheValue> ReplicatedOptions<K, V> {
    /// Options for the replicated cache `name` (one name, one key and value type, on every
    /// node): an unbounded local cache, keys up to 1 KiB encoded.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            shared: SharedOptions::new(name),
            local: LocalBuilder::new(),
            default_ttl: Ttl::Never,
            max_key_bytes: 1024,
            on_peer_write: None,
        }
    }

    /// Runs `f` with the key of each write from a peer that wins here (a value or a
    /// removal), once it is readable here: to invalidate what is derived from the cache,
    /// or to watch replication (the bench times visibility with it). It runs on the
    /// replication's process, under the store's lock: keep it short, and do not call the
    /// cache from it.
    pub fn on_peer_write(mut self, f: impl Fn(&K) + Send + Sync + 'static) -> Self {
        self.on_peer_write = Some(Arc::new(f));
        self
    }

    /// The local cache every read is served from (its bound, eviction policy and default
    /// TTL; the default TTL is resolved on the writing node and travels with the write).
    pub fn local(mut self, builder: LocalBuilder<K, V>) -> Self {
        self.default_ttl = builder.default_ttl_setting();
        self.local = builder;
        self
    }

    /// How replication runs (flush and digest periods, channel): see [`SharedOptions`].
    /// Its name is replaced by the cache's.
    pub fn replication(mut self, options: SharedOptions) -> Self {
        let name = std::mem::take(&mut self.shared.name);
        self.shared = SharedOptions { name, ..options };
        self
    }

    /// The longest key accepted, encoded (1 KiB by default): a longer one is refused with
    /// [`CacheError::KeyTooLarge`], as every node would hold it.
    pub fn max_key_bytes(mut self, n: usize) -> Self {
        self.max_key_bytes = n;
        self
    }
}

/// A cache whose every entry is held on every node: writes are applied on every node (in
/// batches, as [`Shared`] replicates any state), reads are local, from a [`Local`] cache.
///
/// # Consistency
///
/// - The store is an [`LwwMap`] of encoded keys and values: concurrent writes to one key
///   (on either side of a partition, say) converge to **one value everywhere**, the write
///   with the greatest hybrid-logical-clock stamp (then the greatest replica id). A write
///   made after seeing another wins over it whatever the wall clocks say; between
///   concurrent writes, a node whose clock runs ahead wins.
/// - A write returns once applied here; the other nodes see it after the next flush (at
///   once when quiet, 1 ms apart under load) and a network hop. Reads are local: another
///   node may read the older value until then.
/// - A node that joins, or comes back after a partition, is sent every node's full state
///   (bulk load), then deltas.
/// - Conditional writes (`put_new`, `replace`, `incr`, `take`) decide on this node's
///   copy, atomically here; two nodes doing them concurrently on one key both write, and
///   the last writer wins (an `incr` made concurrently elsewhere is lost: count with
///   [`Shared`]`<`[`PnCounter`](crate::crdt::PnCounter)`>` for a cluster-wide counter).
/// - TTLs travel with the write: a [`Ttl::Live`] entry expires at the same wall-clock
///   time on every node; a [`Ttl::Idle`] one is idle per node (reads are per node).
/// - Eviction is per node: the local bound may drop an entry on one node and not on
///   another (a read misses there); no node ever reads another value than the winner.
///
/// # Keys and values
///
/// Both travel in `postcard`: `Serialize + DeserializeOwned`. A value that fails to
/// serialize is refused with [`CacheError::Codec`] and nothing is written; a peer's value
/// that fails to deserialize here (another version of the type) is skipped, logged and
/// counted ([`SharedStats::codec_errors`]). The cache stays usable either way.
///
/// # Examples
///
/// ```
/// use foundation_cache::{Cache, Replicated, ReplicatedOptions, Ttl};
/// use foundation_cluster::node::{Node, NodeConfig};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
/// let users: Replicated<u64, String> =
///     Replicated::start(&node, ReplicatedOptions::new("users")).await?;
/// users.put(1, "ada".to_owned(), Ttl::Default).await?; // on every node, soon
/// assert_eq!(users.get(&1).await?, Some("ada".to_owned())); // here, now
/// # users.shutdown();
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Replicated<K, V> {
    inner: Arc<Inner<K, V>>,
}

struct Inner<K, V> {
    local: Local<K, V>,
    shared: Shared<Store>,
    flights: Arc<Flights<K>>,
    default_ttl: Ttl,
    max_key_bytes: usize,
    metrics: CacheMetrics,
}

impl<K, V> Clone for Replicated<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: CacheKey, V: CacheValue> fmt::Debug for Replicated<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replicated")
            .field("name", &self.inner.shared.name())
            .field("local", &self.inner.local)
            .finish()
    }
}

use crate::codec::encode;

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes)
        .map_err(|e| crate::codec::deserialize_error::<T>(what, crate::codec::decode_reason(&e)))
}

impl<K, V> Replicated<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    /// Starts the replicated cache `options`' name on `node`: its local cache, and its
    /// replication (a process exported as `$shared/<name>`). A node already in a cluster
    /// is bulk-loaded from its peers.
    ///
    /// # Errors
    ///
    /// [`StartError::NameTaken`] if a shared state or replicated cache of that name runs
    /// here; [`StartError::Ttl`] for the local cache's default TTL.
    pub async fn start(node: &Node, options: ReplicatedOptions<K, V>) -> Result<Self, StartError> {
        let (parts, shared_options, observer) = Parts::new(options)?;
        let shared = Shared::start_observed(node, shared_options, Some(observer)).await?;
        Ok(parts.assemble(shared))
    }

    /// A replicated cache on `node`, replica `id`, whose replication runs no process and
    /// no task: the fuzz targets hand its shared state a peer's bytes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn detached(
        node: &Node,
        options: ReplicatedOptions<K, V>,
        id: crate::crdt::ReplicaId,
    ) -> Result<Self, StartError> {
        let (parts, shared_options, observer) = Parts::new(options)?;
        Ok(parts.assemble(Shared::detached(node, shared_options, Some(observer), id)))
    }

    /// The shared state underneath (the fuzz targets feed it a peer's bytes).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn shared(&self) -> &Shared<Store> {
        &self.inner.shared
    }
}

/// A replicated cache's parts other than its replication.
struct Parts<K, V> {
    local: Local<K, V>,
    default_ttl: Ttl,
    max_key_bytes: usize,
}

impl<K, V> Parts<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    /// The local cache, the replication's options, and the observer that mirrors the
    /// peers' winning writes into the local cache.
    fn new(
        options: ReplicatedOptions<K, V>,
    ) -> Result<(Self, SharedOptions, Observer<Store>), StartError> {
        let name = options.shared.name.clone();
        let local = options.local.build()?;
        let mirror = local.clone();
        let on_peer_write = options.on_peer_write;
        let observer: Observer<Store> = Box::new(move |msg: &Message<Store>, before: &Store| {
            let incoming = match msg {
                Message::Delta { delta, .. } => delta,
                Message::State { state, .. } => state,
                _ => return 0,
            };
            mirror_winners(&mirror, incoming, before, &name, on_peer_write.as_deref())
        });
        let parts = Self {
            local,
            default_ttl: options.default_ttl,
            max_key_bytes: options.max_key_bytes,
        };
        Ok((parts, options.shared, observer))
    }

    fn assemble(self, shared: Shared<Store>) -> Replicated<K, V> {
        let metrics = CacheMetrics::for_node(shared.name(), shared.node_name());
        Replicated {
            inner: Arc::new(Inner {
                local: self.local,
                shared,
                flights: Arc::new(Flights::default()),
                default_ttl: self.default_ttl,
                max_key_bytes: self.max_key_bytes,
                metrics,
            }),
        }
    }
}

/// Writes into the local cache each write of `incoming` that wins over `before` (the
/// store's state before the merge): its value, or its removal. Returns how many keys or
/// values did not decode.
fn mirror_winners<K, V>(
    local: &Local<K, V>,
    incoming: &Store,
    before: &Store,
    name: &str,
    on_write: Option<&(dyn Fn(&K) + Send + Sync)>,
) -> u64
where
    K: CacheKey + DeserializeOwned,
    V: CacheValue + DeserializeOwned,
{
    let now = wall_ms();
    let mut failed = 0;
    for (kb, stamp, item) in incoming.writes() {
        if before.stamp(kb).is_some_and(|mine| mine >= stamp) {
            continue;
        }
        let key: K = match decode("key", kb) {
            Ok(k) => k,
            Err(error) => {
                failed += 1;
                tracing::warn!(cache = name, %error, "a peer's key did not decode: skipped");
                continue;
            }
        };
        let live = item.and_then(|item| item.local_ttl(now).map(|ttl| (item, ttl)));
        match live {
            Some((item, ttl)) => match decode::<V>("value", &item.value) {
                Ok(value) => {
                    let _ = local.put(key.clone(), value, ttl).now_or_never();
                    if let Some(f) = on_write {
                        f(&key);
                    }
                }
                Err(error) => {
                    // Not readable here: drop what was, so no older value is read.
                    let _ = local.delete(&key).now_or_never();
                    failed += 1;
                    tracing::warn!(cache = name, %error, "a peer's value did not decode: skipped");
                }
            },
            None => {
                let _ = local.delete(&key).now_or_never();
                if let Some(f) = on_write {
                    f(&key);
                }
            }
        }
    }
    failed
}

impl<K, V> Replicated<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    /// What this node's replication has sent and received.
    pub fn sync_stats(&self) -> SharedStats {
        self.inner.shared.stats()
    }

    /// Stops replicating here (the local cache stays readable and writable, alone).
    pub fn shutdown(&self) {
        self.inner.shared.shutdown();
    }

    /// The local cache underneath (reads from it are what `get` does).
    pub fn local(&self) -> &Local<K, V> {
        &self.inner.local
    }

    fn resolve(&self, ttl: Ttl) -> Result<Ttl, CacheError> {
        match ttl {
            Ttl::Default => Ok(self.inner.default_ttl),
            ttl => Ok(ttl.validate()?),
        }
    }

    fn key_bytes(&self, key: &K) -> Result<Vec<u8>, CacheError> {
        let kb = encode("key", key)?;
        if kb.len() > self.inner.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                cache: self.inner.shared.name().to_owned(),
                size: kb.len(),
                limit: self.inner.max_key_bytes,
            });
        }
        Ok(kb)
    }

    /// Writes `entries` (already encoded) here and for every node, under the store's lock
    /// so that a peer's newer write merged meanwhile is not overwritten locally.
    fn write_all(&self, entries: Vec<(K, Vec<u8>, V, Vec<u8>)>, ttl: Ttl) {
        let local = &self.inner.local;
        self.inner.shared.with_replica(|replica| {
            let now = wall_ms();
            for (key, kb, value, vb) in entries {
                let item = Item::new(vb, ttl, now);
                replica.update(|map, me| map.insert(me, now, kb, item));
                let _ = local.put(key, value, ttl).now_or_never();
            }
        });
    }

    fn remove_all(&self, keys: Vec<(K, Vec<u8>)>) {
        let local = &self.inner.local;
        self.inner.shared.with_replica(|replica| {
            let now = wall_ms();
            for (key, kb) in keys {
                replica.update(|map, me| map.remove(me, now, kb));
                let _ = local.delete(&key).now_or_never();
            }
        });
    }

    /// Gives the live entry `key` TTL `ttl` from now, here and everywhere; whether there
    /// was one. `ttl` `None`: its own TTL (a touch).
    fn retime(&self, key: &K, ttl: Option<Ttl>) -> Result<bool, CacheError> {
        let kb = self.key_bytes(key)?;
        let local = &self.inner.local;
        Ok(self.inner.shared.with_replica(|replica| {
            let wrote = match ttl {
                Some(ttl) => local.expire(key, ttl).now_or_never(),
                None => local.touch(key).now_or_never(),
            };
            if !matches!(wrote, Some(Ok(true))) {
                return false;
            }
            if let Some(item) = replica.state().get(&kb).cloned() {
                let now = wall_ms();
                let item = Item::new(item.value, ttl.unwrap_or(item.ttl), now);
                replica.update(|map, me| map.insert(me, now, kb, item));
            }
            true
        }))
    }

    /// Records the local stats in the metrics facade.
    fn record(&self, stats: &Stats) {
        self.inner.metrics.record(stats);
    }
}

impl<K, V> Cache<K, V> for Replicated<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>, CacheError>> + Send {
        self.inner.local.get(key)
    }

    fn get_many(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<Option<V>>, CacheError>> + Send {
        self.inner.local.get_many(keys)
    }

    fn put(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<(), CacheError>> + Send {
        let result = (|| {
            let ttl = self.resolve(ttl)?;
            let kb = self.key_bytes(&key)?;
            let vb = encode("value", &value)?;
            self.write_all(vec![(key, kb, value, vb)], ttl);
            Ok(())
        })();
        std::future::ready(result)
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send {
        std::future::ready(self.put_if(key, value, ttl, false))
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send {
        std::future::ready(self.put_if(key, value, ttl, true))
    }

    fn put_many<I>(
        &self,
        entries: I,
        ttl: Ttl,
    ) -> impl Future<Output = Result<(), CacheError>> + Send
    where
        I: IntoIterator<Item = (K, V)> + Send,
        I::IntoIter: Send,
    {
        let result = (|| {
            let ttl = self.resolve(ttl)?;
            // Every entry encoded before anything is written: a bad one writes nothing.
            let mut encoded = Vec::new();
            for (key, value) in entries {
                let kb = self.key_bytes(&key)?;
                let vb = encode("value", &value)?;
                encoded.push((key, kb, value, vb));
            }
            self.write_all(encoded, ttl);
            Ok(())
        })();
        std::future::ready(result)
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<(), CacheError>> + Send {
        let result = self
            .key_bytes(key)
            .map(|kb| self.remove_all(vec![(key.clone(), kb)]));
        std::future::ready(result)
    }

    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>, CacheError>> + Send {
        let result = self.key_bytes(key).map(|kb| {
            let local = &self.inner.local;
            self.inner.shared.with_replica(|replica| {
                let value = local
                    .take(key)
                    .now_or_never()
                    .and_then(Result::ok)
                    .flatten();
                if value.is_some() {
                    let now = wall_ms();
                    replica.update(|map, me| map.remove(me, now, kb));
                }
                value
            })
        });
        std::future::ready(result)
    }

    fn contains(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send {
        self.inner.local.contains(key)
    }

    fn incr(&self, key: K, by: i64, ttl: Ttl) -> impl Future<Output = Result<V, CacheError>> + Send
    where
        V: Counter,
    {
        let result = (|| {
            let ttl = self.resolve(ttl)?;
            let kb = self.key_bytes(&key)?;
            let local = &self.inner.local;
            self.inner.shared.with_replica(|replica| {
                let new = local
                    .incr(key.clone(), by, ttl)
                    .now_or_never()
                    .unwrap_or_else(|| Err(CacheError::overflow::<V>(by)))?;
                let vb = encode("value", &new)?;
                // The counter keeps its deadline (as the local one does): send what is left.
                let left = match local.ttl(&key).now_or_never() {
                    Some(Ok(Some(TtlLeft::After(d)))) if !d.is_zero() => match ttl {
                        Ttl::Idle(_) => ttl,
                        _ => Ttl::Live(d),
                    },
                    _ => Ttl::Never,
                };
                let now = wall_ms();
                let item = Item::new(vb, left, now);
                replica.update(|map, me| map.insert(me, now, kb, item));
                Ok(new)
            })
        })();
        std::future::ready(result)
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<TtlLeft>, CacheError>> + Send {
        self.inner.local.ttl(key)
    }

    fn expire(&self, key: &K, ttl: Ttl) -> impl Future<Output = Result<bool, CacheError>> + Send {
        let result = self
            .resolve(ttl)
            .and_then(|ttl| self.retime(key, Some(ttl)));
        std::future::ready(result)
    }

    fn touch(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send {
        std::future::ready(self.retime(key, None))
    }

    fn len(&self) -> impl Future<Output = Result<u64, CacheError>> + Send {
        self.inner.local.len()
    }

    fn clear(&self) -> impl Future<Output = Result<(), CacheError>> + Send {
        let local = &self.inner.local;
        self.inner.shared.with_replica(|replica| {
            let now = wall_ms();
            let keys: Vec<Vec<u8>> = replica.state().iter().map(|(k, _)| k.clone()).collect();
            for kb in keys {
                replica.update(|map, me| map.remove(me, now, kb));
            }
            let _ = local.clear().now_or_never();
        });
        std::future::ready(Ok(()))
    }

    fn stream_keys(&self) -> impl Stream<Item = Result<K, CacheError>> + Send + '_ {
        self.inner.local.stream_keys()
    }

    fn stream(&self) -> impl Stream<Item = Result<(K, V), CacheError>> + Send + '_ {
        self.inner.local.stream()
    }

    async fn get_or_compute<F, Fut, E>(&self, key: K, ttl: Ttl, f: F) -> Result<V, ComputeError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: std::fmt::Display + Send + Sync + 'static,
    {
        let ttl = self.resolve(ttl)?;
        let kb = self.key_bytes(&key)?;
        if let Some(value) = self.inner.local.get(&key).await? {
            return Ok(value);
        }
        let flight = {
            let mut table = self.inner.flights.lock();
            match Flights::find::<V, E>(&table, &key) {
                Some(flight) => flight,
                None => {
                    // A computation that finished after our miss wrote its value before
                    // leaving the table: look again, under the table's lock.
                    if let Some(Ok(Some(value))) = self.inner.local.get(&key).now_or_never() {
                        return Ok(value);
                    }
                    let this = self.clone();
                    Flights::start(
                        &self.inner.flights,
                        &mut table,
                        key,
                        async move { f().await },
                        move |key, value: &V| match encode("value", value) {
                            Ok(vb) => this.write_all(vec![(key, kb, value.clone(), vb)], ttl),
                            Err(error) => {
                                // The caller gets its value; it is cached nowhere.
                                this.inner.shared.codec_error();
                                tracing::warn!(cache = this.inner.shared.name(), %error, "a computed value failed to serialize: not cached");
                            }
                        },
                    )
                }
            }
        };
        flight.await
    }

    fn stats(&self) -> Stats {
        let stats = self.inner.local.stats();
        self.record(&stats);
        stats
    }
}

impl<K, V> Replicated<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    /// `put` if no live entry is here (`present` false) or if one is (`present` true).
    fn put_if(&self, key: K, value: V, ttl: Ttl, present: bool) -> Result<bool, CacheError> {
        let ttl = self.resolve(ttl)?;
        let kb = self.key_bytes(&key)?;
        let vb = encode("value", &value)?;
        let local = &self.inner.local;
        Ok(self.inner.shared.with_replica(|replica| {
            let here = matches!(local.contains(&key).now_or_never(), Some(Ok(true)));
            if here != present {
                return false;
            }
            let now = wall_ms();
            let item = Item::new(vb, ttl, now);
            replica.update(|map, me| map.insert(me, now, kb, item));
            let _ = local.put(key, value, ttl).now_or_never();
            true
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::ReplicaId;

    fn local() -> Local<String, u64> {
        Local::builder()
            .max_entries(10)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn bytes<T: Serialize>(t: &T) -> Vec<u8> {
        encode("test", t).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_peers_write_that_does_not_decode_is_skipped_counted_and_leaves_no_older_value() {
        let here = local();
        let _ = here.put("k".into(), 1, Ttl::Never).now_or_never();
        let before = Store::default();
        let mut incoming = Store::default();
        // A value whose bytes are no u64 (a varint longer than one can be), a key that is
        // not a string, and a good write.
        let bad_value = Item::new(vec![0xff; 11], Ttl::Never, 0);
        incoming.insert(ReplicaId(1), 1, bytes(&"k".to_owned()), bad_value);
        incoming.insert(
            ReplicaId(1),
            2,
            vec![0xff, 0xff],
            Item::new(bytes(&1u64), Ttl::Never, 0),
        );
        incoming.insert(
            ReplicaId(1),
            3,
            bytes(&"ok".to_owned()),
            Item::new(bytes(&7u64), Ttl::Never, 0),
        );
        let seen = std::sync::Mutex::new(Vec::new());
        let record = |k: &String| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(k.clone())
        };
        let failed = mirror_winners(&here, &incoming, &before, "t", Some(&record));
        assert_eq!(failed, 2);
        assert_eq!(here.get(&"k".into()).now_or_never(), Some(Ok(None)));
        assert_eq!(here.get(&"ok".into()).now_or_never(), Some(Ok(Some(7))));
        assert_eq!(
            *seen.lock().unwrap_or_else(|e| e.into_inner()),
            vec!["ok".to_owned()]
        );
    }

    #[test]
    fn a_write_that_loses_to_what_is_here_is_not_mirrored() {
        let here = local();
        let mut mine = Store::default();
        mine.insert(
            ReplicaId(2),
            10,
            bytes(&"k".to_owned()),
            Item::new(bytes(&2u64), Ttl::Never, 10),
        );
        let _ = here.put("k".into(), 2, Ttl::Never).now_or_never();
        let mut older = Store::default();
        older.insert(
            ReplicaId(1),
            5,
            bytes(&"k".to_owned()),
            Item::new(bytes(&1u64), Ttl::Never, 5),
        );
        assert_eq!(mirror_winners(&here, &older, &mine, "t", None), 0);
        assert_eq!(here.get(&"k".into()).now_or_never(), Some(Ok(Some(2))));
    }

    #[test]
    fn a_live_ttl_travels_as_a_deadline_and_an_expired_write_is_not_written() {
        let item = Item::new(vec![], Ttl::Live(Duration::from_secs(10)), 1_000);
        assert_eq!(item.deadline_ms, Some(11_000));
        assert_eq!(
            item.local_ttl(4_000),
            Some(Ttl::Live(Duration::from_secs(7)))
        );
        assert_eq!(item.local_ttl(11_000), None);
        let idle = Item::new(vec![], Ttl::Idle(Duration::from_secs(3)), 1_000);
        assert_eq!(
            idle.local_ttl(u64::MAX),
            Some(Ttl::Idle(Duration::from_secs(3)))
        );
        let far = Item::new(vec![], Ttl::Live(Ttl::MAX), u64::MAX - 5);
        assert_eq!(far.deadline_ms, Some(u64::MAX));
    }
}
