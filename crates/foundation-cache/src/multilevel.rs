//! The `Multilevel` adapter (a near cache): a [`Local`] L1 on each node in front of a
//! shared L2 (a [`Partitioned`] cache by default), whose L1 entries are invalidated on
//! every node through `foundation-pubsub` when their key is written anywhere.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foundation_actors::RemoteMessage;
use foundation_pubsub::{BufferConfig, Overflow, PubSub, Topic};
use futures::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StartError;
use crate::api::{Cache, CacheKey, CacheValue, Counter};
use crate::error::{CacheError, ComputeError};
use crate::local::Local;
use crate::partitioned::Partitioned;
use crate::partitioned::wire_codec::{decode, encode};
use crate::stats::{Counters, Stats};
use crate::ttl::{Ttl, TtlLeft};

/// An invalidation: `key` (its encoded bytes) changed, or, with no key, everything did
/// (`clear`). `origin` is the writing node (it dropped its own L1 entry already).
#[derive(Debug, Clone, RemoteMessage)]
#[remote(name = "foundation.cache.Invalidate.v1")]
pub(crate) struct Invalidate {
    origin: String,
    key: Option<Vec<u8>>,
}

/// Builds a [`Multilevel`] cache: [`Multilevel::builder`].
#[derive(Debug, Clone)]
pub struct MultilevelBuilder<K, V> {
    name: String,
    l1_max_entries: u64,
    l1_ttl: Ttl,
    buffer: usize,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> MultilevelBuilder<K, V>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue,
{
    /// Bounds each node's L1 to `n` entries (default 10,000).
    pub fn l1_max_entries(mut self, n: u64) -> Self {
        self.l1_max_entries = n;
        self
    }

    /// How long an entry stays in an L1 at most (default 60 s): the bound on staleness
    /// if an invalidation is lost (a partition, a node's subscriber buffer overflowing).
    pub fn l1_ttl(mut self, ttl: Ttl) -> Self {
        self.l1_ttl = ttl;
        self
    }

    /// How many invalidations may wait to be applied on a node (default 65,536); past
    /// it the node drops its whole L1 rather than miss one.
    pub fn buffer(mut self, n: usize) -> Self {
        self.buffer = n;
        self
    }

    /// Starts the near cache on `pubsub`'s node in front of `l2` (the same name, and an
    /// L2 of the same name, on every node). Invalidations ride `pubsub`.
    ///
    /// # Errors
    ///
    /// [`StartError::BadName`] if the name does not make a topic name,
    /// [`StartError::Ttl`] for a bad L1 TTL, [`StartError::Spawn`] if the subscription
    /// fails.
    pub async fn start<L2: Cache<K, V> + 'static>(
        self,
        pubsub: &PubSub,
        l2: L2,
    ) -> Result<Multilevel<K, V, L2>, StartError> {
        let topic: Topic<Invalidate> = Topic::new(&format!("foundation.cache.{}", self.name))
            .map_err(|e| StartError::BadName {
                name: self.name.clone(),
                reason: format!(
                    "its invalidation topic `foundation.cache.{}`: {e}",
                    self.name
                ),
            })?;
        let l1 = Local::builder()
            .max_entries(self.l1_max_entries)
            .default_ttl(self.l1_ttl)
            .build()?;
        let origin = pubsub
            .node()
            .map_or_else(|| "local".to_owned(), |n| n.name().to_owned());
        let mut sub = pubsub
            .subscribe_stream_with(&topic, BufferConfig::new(self.buffer, Overflow::DropNewest))
            .map_err(|e| StartError::Spawn {
                name: self.name.clone(),
                reason: e.to_string(),
            })?;
        let shared = Arc::new(Shared {
            l1,
            l2,
            pubsub: pubsub.clone(),
            topic,
            origin,
            name: self.name.clone(),
            seen: AtomicU64::new(0),
            invalidated: AtomicU64::new(0),
            counters: Counters::new(),
            _types: PhantomData,
        });
        let weak = Arc::downgrade(&shared);
        let task = tokio::spawn(async move {
            let mut dropped = 0;
            while let Some(msg) = sub.recv().await {
                let Some(shared) = weak.upgrade() else { return };
                // Lost invalidations (the buffer overflowed): any L1 entry may be stale.
                let lost = sub.dropped();
                if lost > dropped {
                    dropped = lost;
                    shared.drop_all();
                }
                shared.invalidate(&msg);
            }
        });
        Ok(Multilevel {
            shared,
            task: Arc::new(Abort(task)),
        })
    }
}

struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A near cache: a [`Local`] L1 on each node in front of a shared L2 ([`Partitioned`] by
/// default), as Nebulex's multilevel adapter with a local level over a partitioned one.
///
/// - **Reads** look in the L1, then in the L2; a value found in the L2 is kept in the L1
///   (for at most the builder's `l1_ttl`).
/// - **Writes** go to the L2, drop the key from this node's L1, and broadcast the key on
///   the pubsub topic `foundation.cache.<name>`: every other node drops it from its L1
///   when the broadcast arrives (on loopback, within milliseconds: see `docs/cache.md`).
///   A read racing an invalidation does not put back the value it read: an L1 is filled
///   only if no invalidation arrived while its L2 read was in flight.
/// - **Writes must go through the near cache** on every node: a write made on the L2
///   directly invalidates no L1 (its entries then live out their `l1_ttl`), nor does an
///   entry expiring or being evicted in the L2.
///
/// # Examples
///
/// ```
/// use foundation_cache::{Cache, Multilevel, Partitioned, Ttl};
/// use foundation_cluster::node::{Node, NodeConfig};
/// use foundation_pubsub::PubSub;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
/// let pubsub = PubSub::start(&node, "app").await?;
/// let l2: Partitioned<u64, String> = Partitioned::builder("users").start(&node).await?;
/// let users = Multilevel::builder("users").start(&pubsub, l2).await?;
/// users.put(1, "ada".to_owned(), Ttl::Default).await?;
/// assert_eq!(users.get(&1).await?, Some("ada".to_owned())); // from the L2, now in the L1
/// assert_eq!(users.get(&1).await?, Some("ada".to_owned())); // from the L1
/// assert_eq!(users.l1().stats().hits, 1);
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Multilevel<K, V, L2 = Partitioned<K, V>> {
    shared: Arc<Shared<K, V, L2>>,
    task: Arc<Abort>,
}

struct Shared<K, V, L2> {
    l1: Local<K, V>,
    l2: L2,
    pubsub: PubSub,
    topic: Topic<Invalidate>,
    origin: String,
    /// The cache's name, for errors.
    name: String,
    /// Invalidations received: an L1 fill is skipped if one arrived during its L2 read.
    seen: AtomicU64,
    /// L1 entries dropped for other nodes' writes.
    invalidated: AtomicU64,
    counters: Counters,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V, L2> Clone for Multilevel<K, V, L2> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            task: Arc::clone(&self.task),
        }
    }
}

impl<K, V, L2> fmt::Debug for Multilevel<K, V, L2> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multilevel")
            .field("topic", &self.shared.topic.name())
            .field("stats", &self.shared.counters.snapshot())
            .finish()
    }
}

impl<K, V, L2> Shared<K, V, L2>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue,
{
    fn drop_all(&self) {
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.l1.run_pending_tasks();
        let _ = futures::FutureExt::now_or_never(self.l1.clear());
    }

    fn invalidate(&self, msg: &Invalidate) {
        if msg.origin == self.origin {
            return;
        }
        self.seen.fetch_add(1, Ordering::SeqCst);
        match &msg.key {
            Some(bytes) => match decode::<K>("key", bytes) {
                Ok(key) => {
                    let _ = futures::FutureExt::now_or_never(self.l1.delete(&key));
                    self.invalidated.fetch_add(1, Ordering::Relaxed);
                }
                // A key this node cannot read (another version's type): any entry may
                // be the one meant.
                Err(_) => self.drop_all(),
            },
            None => self.drop_all(),
        }
    }

    /// Drops `key` here and tells every other node to.
    fn changed(&self, key: Option<&K>) -> Result<(), CacheError> {
        let bytes = key.map(|k| encode("key", k)).transpose()?;
        match key {
            Some(k) => {
                let _ = futures::FutureExt::now_or_never(self.l1.delete(k));
            }
            None => {
                let _ = futures::FutureExt::now_or_never(self.l1.clear());
            }
        }
        let msg = Invalidate {
            origin: self.origin.clone(),
            key: bytes,
        };
        self.pubsub.broadcast(&self.topic, msg).map_err(|e| {
            CacheError::unavailable(&self.name, format!("the invalidation was not sent: {e}"))
        })
    }

    /// Keeps `value` in the L1 unless an invalidation arrived since `since`.
    fn fill(&self, key: K, value: V, since: u64) {
        if self.seen.load(Ordering::SeqCst) == since {
            let _ = futures::FutureExt::now_or_never(self.l1.put(key, value, Ttl::Default));
        }
    }
}

impl<K, V> Multilevel<K, V, Partitioned<K, V>>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue + Serialize + DeserializeOwned,
{
    /// A builder for the near cache `name` (the same name on every node).
    pub fn builder(name: impl Into<String>) -> MultilevelBuilder<K, V> {
        MultilevelBuilder {
            name: name.into(),
            l1_max_entries: 10_000,
            l1_ttl: Ttl::Live(Duration::from_secs(60)),
            buffer: 65_536,
            _types: PhantomData,
        }
    }
}

impl<K, V, L2> Multilevel<K, V, L2>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue,
    L2: Cache<K, V>,
{
    /// This node's L1.
    pub fn l1(&self) -> &Local<K, V> {
        &self.shared.l1
    }

    /// The L2.
    pub fn l2(&self) -> &L2 {
        &self.shared.l2
    }

    /// L1 entries this node dropped for writes made on other nodes.
    pub fn invalidated(&self) -> u64 {
        self.shared.invalidated.load(Ordering::Relaxed)
    }
}

impl<K, V, L2> Cache<K, V> for Multilevel<K, V, L2>
where
    K: CacheKey + Serialize + DeserializeOwned,
    V: CacheValue,
    L2: Cache<K, V>,
{
    async fn get(&self, key: &K) -> Result<Option<V>, CacheError> {
        let s = &self.shared;
        if let Ok(Some(v)) = futures::FutureExt::now_or_never(s.l1.get(key)).unwrap_or(Ok(None)) {
            s.counters.hit();
            return Ok(Some(v));
        }
        let since = s.seen.load(Ordering::SeqCst);
        let got = s.l2.get(key).await?;
        s.counters.read(got.is_some());
        if let Some(v) = &got {
            s.fill(key.clone(), v.clone(), since);
        }
        Ok(got)
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>, CacheError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }

    async fn put(&self, key: K, value: V, ttl: Ttl) -> Result<(), CacheError> {
        self.shared.l2.put(key.clone(), value, ttl).await?;
        self.shared.counters.writes(1);
        self.shared.changed(Some(&key))
    }

    async fn put_new(&self, key: K, value: V, ttl: Ttl) -> Result<bool, CacheError> {
        let wrote = self.shared.l2.put_new(key.clone(), value, ttl).await?;
        if wrote {
            self.shared.counters.writes(1);
            self.shared.changed(Some(&key))?;
        }
        Ok(wrote)
    }

    async fn replace(&self, key: K, value: V, ttl: Ttl) -> Result<bool, CacheError> {
        let wrote = self.shared.l2.replace(key.clone(), value, ttl).await?;
        if wrote {
            self.shared.counters.writes(1);
            self.shared.changed(Some(&key))?;
        }
        Ok(wrote)
    }

    async fn put_many<I>(&self, entries: I, ttl: Ttl) -> Result<(), CacheError>
    where
        I: IntoIterator<Item = (K, V)> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let keys: Vec<K> = entries.iter().map(|(k, _)| k.clone()).collect();
        self.shared.l2.put_many(entries, ttl).await?;
        self.shared.counters.writes(keys.len() as u64);
        for k in &keys {
            self.shared.changed(Some(k))?;
        }
        Ok(())
    }

    async fn delete(&self, key: &K) -> Result<(), CacheError> {
        self.shared.l2.delete(key).await?;
        self.shared.changed(Some(key))
    }

    async fn take(&self, key: &K) -> Result<Option<V>, CacheError> {
        let v = self.shared.l2.take(key).await?;
        self.shared.counters.read(v.is_some());
        self.shared.changed(Some(key))?;
        Ok(v)
    }

    async fn contains(&self, key: &K) -> Result<bool, CacheError> {
        self.shared.l2.contains(key).await
    }

    async fn incr(&self, key: K, by: i64, ttl: Ttl) -> Result<V, CacheError>
    where
        V: Counter,
    {
        let v = self.shared.l2.incr(key.clone(), by, ttl).await?;
        self.shared.counters.writes(1);
        self.shared.changed(Some(&key))?;
        Ok(v)
    }

    async fn ttl(&self, key: &K) -> Result<Option<TtlLeft>, CacheError> {
        self.shared.l2.ttl(key).await
    }

    async fn expire(&self, key: &K, ttl: Ttl) -> Result<bool, CacheError> {
        let had = self.shared.l2.expire(key, ttl).await?;
        // The L1 copies keep their own TTL: an earlier deadline in the L2 must reach them.
        self.shared.changed(Some(key))?;
        Ok(had)
    }

    async fn touch(&self, key: &K) -> Result<bool, CacheError> {
        self.shared.l2.touch(key).await
    }

    async fn len(&self) -> Result<u64, CacheError> {
        self.shared.l2.len().await
    }

    async fn clear(&self) -> Result<(), CacheError> {
        self.shared.l2.clear().await?;
        self.shared.changed(None)
    }

    fn stream_keys(&self) -> impl Stream<Item = Result<K, CacheError>> + Send + '_ {
        self.shared.l2.stream_keys()
    }

    fn stream(&self) -> impl Stream<Item = Result<(K, V), CacheError>> + Send + '_ {
        self.shared.l2.stream()
    }

    /// The L1's value, else the L2's `get_or_compute` (single flight as the L2 gives it:
    /// across the cluster for a [`Partitioned`] L2); the value is kept in the L1.
    async fn get_or_compute<F, Fut, E>(&self, key: K, ttl: Ttl, f: F) -> Result<V, ComputeError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: std::fmt::Display + Send + Sync + 'static,
    {
        let s = &self.shared;
        if let Ok(Some(v)) = futures::FutureExt::now_or_never(s.l1.get(&key)).unwrap_or(Ok(None)) {
            s.counters.hit();
            return Ok(v);
        }
        s.counters.miss();
        let since = s.seen.load(Ordering::SeqCst);
        let v = s.l2.get_or_compute(key.clone(), ttl, f).await?;
        s.fill(key, v.clone(), since);
        Ok(v)
    }

    /// Reads answered by either level count as hits; writes as writes. The levels' own
    /// counters: `l1().stats()`, `l2().stats()`.
    fn stats(&self) -> Stats {
        let l1 = self.shared.l1.stats();
        Stats {
            evictions: l1.evictions,
            expirations: l1.expirations,
            ..self.shared.counters.snapshot()
        }
    }
}
