//! [`LocalBuilder`]: the local cache's bound, eviction policy and default TTL.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;

use super::cache::{Inner, Local};
use super::flight::Flights;
use super::slot::{Slot, SlotExpiry, epoch};
use crate::api::{CacheKey, CacheValue};
use crate::error::TtlError;
use crate::stats::Counters;
use crate::ttl::Ttl;

/// A weigher: an entry's weight, for a cache bounded by weight.
type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// Builds a [`Local`] cache. From [`Local::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use foundation_cache::{Local, Ttl};
///
/// // At most 10,000 entries; an entry written without a TTL of its own lives 5 minutes.
/// let cache: Local<String, u64> = Local::builder()
///     .max_entries(10_000)
///     .default_ttl(Ttl::Live(Duration::from_secs(300)))
///     .build()?;
/// # Ok::<(), foundation_cache::TtlError>(())
/// ```
pub struct LocalBuilder<K, V> {
    max_capacity: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    default_ttl: Ttl,
    lru: bool,
    count_evictions: bool,
    _types: PhantomData<fn(K, V)>,
}

impl<K, V> fmt::Debug for LocalBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("weighed", &self.weigher.is_some())
            .field("default_ttl", &self.default_ttl)
            .field("lru", &self.lru)
            .field("count_evictions", &self.count_evictions)
            .finish()
    }
}

impl<K: CacheKey, V: CacheValue> LocalBuilder<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            max_capacity: None,
            weigher: None,
            default_ttl: Ttl::Never,
            lru: false,
            count_evictions: true,
            _types: PhantomData,
        }
    }

    /// Bounds the cache to `n` entries (moka evicts past it, by TinyLFU). Without a bound
    /// (of entries or of weight) the cache grows without limit.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_capacity = Some(n);
        self.weigher = None;
        self
    }

    /// Bounds the cache to a total weight of `max`, each entry weighing what `weigher`
    /// says (bytes, typically). Replaces [`max_entries`](Self::max_entries).
    pub fn max_weight(
        mut self,
        max: u64,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.max_capacity = Some(max);
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// The TTL of entries written with [`Ttl::Default`] (without it: [`Ttl::Never`]).
    pub fn default_ttl(mut self, ttl: Ttl) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Evicts the least recently used entry and admits every new one, instead of
    /// TinyLFU's frequency-based admission: for workloads with a strong recency bias.
    pub fn lru(mut self) -> Self {
        self.lru = true;
        self
    }

    /// Whether [`Stats`](crate::Stats) counts evictions and expirations (on by default).
    ///
    /// Counting them installs moka's eviction listener, and with a listener moka takes a
    /// per-key lock on every write (so that removals are reported in order): a write costs
    /// more (the bench rows `cache_put/moka` against `cache_put/moka_no_listener` show how
    /// much). Turn it off for write-heavy caches whose evictions need not be counted; they
    /// then stay at zero.
    pub fn count_evictions(mut self, on: bool) -> Self {
        self.count_evictions = on;
        self
    }

    /// The default TTL as set (the replicated adapter resolves it on the writing node).
    pub(crate) fn default_ttl_setting(&self) -> Ttl {
        match self.default_ttl {
            Ttl::Default => Ttl::Never,
            ttl => ttl,
        }
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// The default TTL's [`TtlError`] (zero, or over [`Ttl::MAX`]).
    pub fn build(self) -> Result<Local<K, V>, TtlError> {
        let default_ttl = match self.default_ttl.validate()? {
            Ttl::Default => Ttl::Never,
            ttl => ttl,
        };
        // Entries' stamps count from here on.
        epoch();
        let counters = Arc::new(Counters::new());
        let mut builder = moka::sync::Cache::<K, Slot<V>>::builder()
            .expire_after(SlotExpiry)
            .eviction_policy(if self.lru {
                EvictionPolicy::lru()
            } else {
                EvictionPolicy::tiny_lfu()
            });
        if self.count_evictions {
            let listened = Arc::clone(&counters);
            builder = builder.eviction_listener(move |_key, _value, cause| match cause {
                RemovalCause::Size => listened.eviction(),
                RemovalCause::Expired => listened.expiration(),
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            });
        }
        if let Some(max) = self.max_capacity {
            builder = builder.max_capacity(max);
        }
        if let Some(weigher) = self.weigher {
            builder = builder.weigher(move |k: &K, slot: &Slot<V>| weigher(k, &slot.value));
        }
        Ok(Local::from_inner(Inner {
            cache: builder.build(),
            counters,
            flights: Arc::new(Flights::default()),
            default_ttl,
        }))
    }
}
