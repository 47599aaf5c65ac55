//! [`Local`] and its [`Cache`] implementation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::Stream;
use moka::ops::compute::{CompResult, Op};

use super::builder::LocalBuilder;
use super::flight::Flights;
use super::slot::Slot;
use crate::api::{Cache, CacheKey, CacheValue, Counter};
use crate::error::{CacheError, ComputeError};
use crate::stats::{Counters, Stats};
use crate::ttl::{Ttl, TtlLeft};

/// A cache in this process, on `moka::sync::Cache`.
///
/// [`Local`] wraps a `moka::sync::Cache`: bounded by entries or by weight (a weigher you
/// give), TinyLFU admission and eviction (LRU on request), and per-entry expiry through
/// moka's `Expiry` (each entry's [`Ttl`](crate::Ttl): after a write, or after the last
/// read for [`Ttl::Idle`](crate::Ttl::Idle)).
///
/// # Why `moka::sync` (and not `moka::future`)
///
/// The sync cache does the least per call: `get` and `insert` are plain calls, where
/// `moka::future::Cache` wraps the same work in futures and async locks for its
/// housekeeping. What the future cache adds that we need, an async single-flight
/// (`try_get_with`), is written here over the sync cache ([`Cache::get_or_compute`]):
/// concurrent misses share one computation without blocking a thread, and only the miss
/// path pays for it. Housekeeping (applying recorded reads and writes, evicting, expiring)
/// runs on the calling thread every so many operations, for a few microseconds, as it
/// would with either cache.
///
/// # Counting
///
/// Hits, misses and writes go to striped counters (see `stats.rs`): one relaxed atomic
/// add on a line that other cores rarely touch. Evictions and expirations are counted by
/// moka's eviction listener when housekeeping removes an entry: an expired entry counts
/// when it is removed, not when it stops being readable (a read after its deadline already
/// misses). moka's timer wheel removes it at the first housekeeping after its bucket
/// (about a second wide) has passed. [`Local::run_pending_tasks`] runs the housekeeping
/// now.
///
/// [`Cache::get_or_compute`]: crate::Cache::get_or_compute
///
/// Cloning is cheap and gives another handle to the same cache.
///
/// # Examples
///
/// ```
/// use foundation_cache::{Cache, Local, Ttl};
///
/// # futures::executor::block_on(async {
/// let cache: Local<&'static str, u32> = Local::builder().max_entries(100).build()?;
/// cache.put("a", 1, Ttl::Default).await?;
/// assert_eq!(cache.get(&"a").await?, Some(1));
/// assert_eq!(cache.incr("hits", 5, Ttl::Default).await?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Local<K, V> {
    inner: Arc<Inner<K, V>>,
}

pub(crate) struct Inner<K, V> {
    pub(crate) cache: moka::sync::Cache<K, Slot<V>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) flights: Arc<Flights<K>>,
    /// `Never`, `Live` or `Idle`: what `Ttl::Default` stands for.
    pub(crate) default_ttl: Ttl,
}

impl<K, V> Clone for Local<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K: CacheKey, V: CacheValue> fmt::Debug for Local<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local")
            .field("entries", &self.inner.cache.entry_count())
            .field("default_ttl", &self.inner.default_ttl)
            .field("stats", &self.inner.counters.snapshot())
            .finish()
    }
}

impl<K: CacheKey, V: CacheValue> Local<K, V> {
    /// A builder: bound, eviction policy, default TTL.
    pub fn builder() -> LocalBuilder<K, V> {
        LocalBuilder::new()
    }

    pub(crate) fn from_inner(inner: Inner<K, V>) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Runs moka's pending housekeeping now: applies recorded reads and writes, evicts
    /// past the bound, removes expired entries (counting them in [`Cache::stats`]).
    /// Otherwise it runs every so many operations.
    pub fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks();
    }

    /// The cache's total weight (its entry count when it is bounded by entries), as of the
    /// last housekeeping.
    pub fn weighted_size(&self) -> u64 {
        self.inner.cache.weighted_size()
    }

    /// `ttl` checked, with `Default` resolved.
    #[inline]
    fn resolve(&self, ttl: Ttl) -> Result<Ttl, CacheError> {
        match ttl {
            Ttl::Default => Ok(self.inner.default_ttl),
            Ttl::Never => Ok(Ttl::Never),
            ttl => Ok(ttl.validate()?),
        }
    }

    /// Writes `slot` under `key` if a live entry is there (`make` builds it from the
    /// old one). Whether it wrote.
    fn rewrite(&self, key: &K, make: impl FnOnce(Slot<V>) -> Slot<V>) -> bool {
        let result = self
            .inner
            .cache
            .entry_by_ref(key)
            .and_compute_with(|old| match old {
                Some(old) => Op::Put(make(old.into_value())),
                None => Op::Nop,
            });
        matches!(result, CompResult::ReplacedWith(_))
    }
}

impl<K: CacheKey, V: CacheValue> Cache<K, V> for Local<K, V> {
    #[inline]
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>, CacheError>> + Send {
        let value = self.inner.cache.get(key).map(|slot| slot.value);
        self.inner.counters.read(value.is_some());
        std::future::ready(Ok(value))
    }

    fn get_many(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<Option<V>>, CacheError>> + Send {
        let values = keys
            .iter()
            .map(|key| {
                let value = self.inner.cache.get(key).map(|slot| slot.value);
                self.inner.counters.read(value.is_some());
                value
            })
            .collect();
        std::future::ready(Ok(values))
    }

    #[inline]
    fn put(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<(), CacheError>> + Send {
        let result = self.resolve(ttl).map(|ttl| {
            self.inner.cache.insert(key, Slot::new(value, ttl));
            self.inner.counters.writes(1);
        });
        std::future::ready(result)
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send {
        let result = self.resolve(ttl).map(|ttl| {
            let entry = self
                .inner
                .cache
                .entry(key)
                .or_insert_with(|| Slot::new(value, ttl));
            if entry.is_fresh() {
                self.inner.counters.writes(1);
            }
            entry.is_fresh()
        });
        std::future::ready(result)
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send {
        let result = self.resolve(ttl).map(|ttl| {
            let wrote = self.rewrite(&key, |_| Slot::new(value, ttl));
            if wrote {
                self.inner.counters.writes(1);
            }
            wrote
        });
        std::future::ready(result)
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
        let result = self.resolve(ttl).map(|ttl| {
            let mut n = 0;
            for (key, value) in entries {
                self.inner.cache.insert(key, Slot::new(value, ttl));
                n += 1;
            }
            self.inner.counters.writes(n);
        });
        std::future::ready(result)
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<(), CacheError>> + Send {
        self.inner.cache.invalidate(key);
        std::future::ready(Ok(()))
    }

    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>, CacheError>> + Send {
        let value = self.inner.cache.remove(key).map(|slot| slot.value);
        self.inner.counters.read(value.is_some());
        std::future::ready(Ok(value))
    }

    fn contains(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send {
        std::future::ready(Ok(self.inner.cache.contains_key(key)))
    }

    fn incr(&self, key: K, by: i64, ttl: Ttl) -> impl Future<Output = Result<V, CacheError>> + Send
    where
        V: Counter,
    {
        let result = self.resolve(ttl).and_then(|ttl| {
            let mut out = Err(CacheError::overflow::<V>(by));
            self.inner.cache.entry(key).and_compute_with(|old| {
                let (current, slot) = match old {
                    // An existing counter keeps its deadline, as in Nebulex.
                    Some(old) => {
                        let old = old.into_value();
                        (old.value, Some(old))
                    }
                    None => (V::ZERO, None),
                };
                match current.checked_add_i64(by) {
                    Some(new) => {
                        out = Ok(new);
                        Op::Put(match slot {
                            Some(old) => Slot::keeping(new, &old),
                            None => Slot::new(new, ttl),
                        })
                    }
                    None => Op::Nop,
                }
            });
            if out.is_ok() {
                self.inner.counters.writes(1);
            }
            out
        });
        std::future::ready(result)
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<TtlLeft>, CacheError>> + Send {
        std::future::ready(Ok(self.inner.cache.get(key).map(|slot| slot.left())))
    }

    fn expire(&self, key: &K, ttl: Ttl) -> impl Future<Output = Result<bool, CacheError>> + Send {
        let result = self
            .resolve(ttl)
            .map(|ttl| self.rewrite(key, |old| Slot::new(old.value, ttl)));
        std::future::ready(result)
    }

    fn touch(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send {
        std::future::ready(Ok(self.rewrite(key, |old| Slot::new(old.value, old.ttl))))
    }

    fn len(&self) -> impl Future<Output = Result<u64, CacheError>> + Send {
        // moka counts entries when it applies recorded writes; apply them first.
        self.inner.cache.run_pending_tasks();
        std::future::ready(Ok(self.inner.cache.entry_count()))
    }

    fn clear(&self) -> impl Future<Output = Result<(), CacheError>> + Send {
        self.inner.cache.invalidate_all();
        std::future::ready(Ok(()))
    }

    fn stream_keys(&self) -> impl Stream<Item = Result<K, CacheError>> + Send + '_ {
        futures::stream::iter(self.inner.cache.iter().map(|(key, _)| Ok(K::clone(&key))))
    }

    fn stream(&self) -> impl Stream<Item = Result<(K, V), CacheError>> + Send + '_ {
        futures::stream::iter(
            self.inner
                .cache
                .iter()
                .map(|(key, slot)| Ok((K::clone(&key), slot.value))),
        )
    }

    async fn get_or_compute<F, Fut, E>(&self, key: K, ttl: Ttl, f: F) -> Result<V, ComputeError<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: std::fmt::Display + Send + Sync + 'static,
    {
        let ttl = self.resolve(ttl)?;
        let inner = &self.inner;
        if let Some(slot) = inner.cache.get(&key) {
            inner.counters.hit();
            return Ok(slot.value);
        }
        inner.counters.miss();
        let flight = {
            let mut table = inner.flights.lock();
            match Flights::find::<V, E>(&table, &key) {
                Some(flight) => flight,
                None => {
                    // A computation that finished after our miss wrote its value
                    // before leaving the table: look again, under the table's lock.
                    if let Some(slot) = inner.cache.get(&key) {
                        return Ok(slot.value);
                    }
                    let cache = inner.cache.clone();
                    let counters = Arc::clone(&inner.counters);
                    let compute = async move { f().await };
                    Flights::start(
                        &inner.flights,
                        &mut table,
                        key,
                        compute,
                        move |key, value: &V| {
                            cache.insert(key, Slot::new(value.clone(), ttl));
                            counters.writes(1);
                        },
                    )
                }
            }
        };
        flight.await
    }

    fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_computation_leaves_the_table_when_it_finishes_or_every_waiter_is_gone() {
        let cache: Local<u32, u32> = Local::builder()
            .max_entries(10)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        // Finished: its entry is gone and its value cached.
        let v = cache
            .get_or_compute(1, Ttl::Default, || async {
                Ok::<_, std::convert::Infallible>(7)
            })
            .now_or_never();
        assert!(matches!(v, Some(Ok(7))));
        assert_eq!(cache.inner.flights.len(), 0);
        // Abandoned (its only caller dropped before it finished): its entry is gone too,
        // and nothing is cached.
        let pending = cache.get_or_compute(2, Ttl::Default, || {
            futures::future::pending::<Result<u32, std::convert::Infallible>>()
        });
        let mut pending = Box::pin(pending);
        assert!((&mut pending).now_or_never().is_none());
        assert_eq!(cache.inner.flights.len(), 1);
        drop(pending);
        assert_eq!(cache.inner.flights.len(), 0);
        assert_eq!(cache.get(&2).now_or_never(), Some(Ok(None)));
        // A TTL is checked before anything runs.
        let zero = cache
            .get_or_compute(3, Ttl::Live(Duration::ZERO), || async {
                Ok::<_, std::convert::Infallible>(1)
            })
            .now_or_never();
        assert!(matches!(
            zero,
            Some(Err(ComputeError::Cache(CacheError::InvalidTtl(_))))
        ));
    }
}
