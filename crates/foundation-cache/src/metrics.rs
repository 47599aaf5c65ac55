//! The caches' counters in the `metrics` facade, for whatever recorder the
//! application installs (a Prometheus exporter, …).
//!
//! Every metric is named `foundation_cache_*` and labelled `cache` (the cache's or shared
//! state's name); those of a cache or shared state that runs on a node (replicated, shared)
//! are labelled `node` too (its node's name, as the `foundation` runtime's own series), so
//! two nodes in one process keep their series apart. A cache's [`Stats`] are counted on its hot path by striped atomics; the
//! facade is given their totals ([`Counter::absolute`]) when they are read: by
//! [`CacheMetrics::record`], by [`report`] once a period, and by the replicated adapter
//! itself once a digest period and on each `stats()`. A read or a write therefore costs
//! nothing more with metrics on. The replication counters of [`Shared`](crate::Shared)
//! and [`Replicated`](crate::Replicated) are updated where they are counted (once per
//! message sent or received, never per read).
//!
//! Install the recorder **before** building the cache or starting the shared state: the
//! handles are registered then, with the recorder installed at that time.
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `foundation_cache_hits_total` | counter | reads that found a live entry ([`Stats::hits`]) |
//! | `foundation_cache_misses_total` | counter | reads that found none ([`Stats::misses`]) |
//! | `foundation_cache_writes_total` | counter | entries written ([`Stats::writes`]) |
//! | `foundation_cache_evictions_total` | counter | entries evicted for the bound ([`Stats::evictions`]) |
//! | `foundation_cache_expirations_total` | counter | entries expired ([`Stats::expirations`]) |
//! | `foundation_cache_entries` | gauge | entries held on this node ([`report`], the replicated adapter) |
//! | `foundation_cache_sync_messages_total` | counter | replication messages sent: deltas, states, digests, requests ([`SharedStats`](crate::SharedStats)) |
//! | `foundation_cache_sync_deltas_total` | counter | deltas sent (one per peer per flush) |
//! | `foundation_cache_sync_bytes_total` | counter | their encoded bytes |
//! | `foundation_cache_sync_states_total` | counter | full states sent (to a joining node, or to repair a loss) |
//! | `foundation_cache_sync_received_total` | counter | replication messages received |
//! | `foundation_cache_sync_malformed_total` | counter | received messages that did not decode (another version or type of state under that name) |
//! | `foundation_cache_sync_send_failed_total` | counter | sends to peers that failed (repaired later by a full state) |
//! | `foundation_cache_codec_errors_total` | counter | values or states that failed to encode or decode |
//! | `foundation_cache_sync_collected_total` | counter | tombstones dropped once every peer held them |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::metrics::{Counter, Gauge, Label, Unit};

use crate::api::{Cache, CacheKey, CacheValue};
use crate::stats::Stats;

pub(crate) const HITS: &str = "foundation_cache_hits_total";
pub(crate) const MISSES: &str = "foundation_cache_misses_total";
pub(crate) const WRITES: &str = "foundation_cache_writes_total";
pub(crate) const EVICTIONS: &str = "foundation_cache_evictions_total";
pub(crate) const EXPIRATIONS: &str = "foundation_cache_expirations_total";
pub(crate) const ENTRIES: &str = "foundation_cache_entries";
pub(crate) const SYNC_MESSAGES: &str = "foundation_cache_sync_messages_total";
pub(crate) const SYNC_DELTAS: &str = "foundation_cache_sync_deltas_total";
pub(crate) const SYNC_BYTES: &str = "foundation_cache_sync_bytes_total";
pub(crate) const SYNC_STATES: &str = "foundation_cache_sync_states_total";
pub(crate) const SYNC_RECEIVED: &str = "foundation_cache_sync_received_total";
pub(crate) const SYNC_MALFORMED: &str = "foundation_cache_sync_malformed_total";
pub(crate) const SYNC_SEND_FAILED: &str = "foundation_cache_sync_send_failed_total";
pub(crate) const CODEC_ERRORS: &str = "foundation_cache_codec_errors_total";
pub(crate) const SYNC_COLLECTED: &str = "foundation_cache_sync_collected_total";

/// The facade's handles for one cache's [`Stats`], labelled `cache = name`.
///
/// # Examples
///
/// ```
/// use foundation_cache::metrics::CacheMetrics;
/// use foundation_cache::{Cache, Local, Ttl};
///
/// # futures::executor::block_on(async {
/// let users: Local<u64, String> = Local::builder().max_entries(100).build()?;
/// let metrics = CacheMetrics::new("users"); // after the recorder is installed
/// users.put(1, "ada".into(), Ttl::Default).await?;
/// metrics.record(&users.stats()); // foundation_cache_writes_total{cache="users"} = 1
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    hits: Counter,
    misses: Counter,
    writes: Counter,
    evictions: Counter,
    expirations: Counter,
    entries: Gauge,
}

impl CacheMetrics {
    /// Registers the handles of cache `name` with the recorder installed now.
    pub fn new(name: &str) -> Self {
        Self::labelled(&labels(name, None))
    }

    /// Registers the handles of cache `name` on node `node` (labelled `node` too) with
    /// the recorder installed now: for a cache of which each node of one process may hold
    /// a copy under the same name.
    pub fn for_node(name: &str, node: &str) -> Self {
        Self::labelled(&labels(name, Some(node)))
    }

    fn labelled(labels: &[Label]) -> Self {
        let l = || labels.to_vec();
        Self {
            hits: ::metrics::counter!(HITS, l()),
            misses: ::metrics::counter!(MISSES, l()),
            writes: ::metrics::counter!(WRITES, l()),
            evictions: ::metrics::counter!(EVICTIONS, l()),
            expirations: ::metrics::counter!(EXPIRATIONS, l()),
            entries: ::metrics::gauge!(ENTRIES, l()),
        }
    }

    /// Gives the facade the totals of `stats` (the counters only grow, so each is set to
    /// its total: [`Counter::absolute`]).
    pub fn record(&self, stats: &Stats) {
        self.hits.absolute(stats.hits);
        self.misses.absolute(stats.misses);
        self.writes.absolute(stats.writes);
        self.evictions.absolute(stats.evictions);
        self.expirations.absolute(stats.expirations);
    }

    /// Sets the entries gauge.
    pub fn record_entries(&self, entries: u64) {
        self.entries.set(entries as f64);
    }
}

/// The labels of cache `name`'s series: `node` (when it runs on one), `cache`.
fn labels(name: &str, node: Option<&str>) -> Vec<Label> {
    node.map(|n| Label::new("node", n.to_owned()))
        .into_iter()
        .chain([Label::new("cache", name.to_owned())])
        .collect()
}

/// Gives the [`metrics`] recorder installed now the help text (and unit) of
/// every cache metric (the table above), which an exporter shows with them (Prometheus'
/// `# HELP`). Call it once per process, after installing the recorder (the `foundation`
/// runtime does); a recorder keeps the first description of a name.
pub fn describe_metrics() {
    use ::metrics::{describe_counter, describe_gauge};
    describe_counter!(HITS, Unit::Count, "Cache reads that found a live entry");
    describe_counter!(MISSES, Unit::Count, "Cache reads that found none");
    describe_counter!(WRITES, Unit::Count, "Cache entries written");
    describe_counter!(
        EVICTIONS,
        Unit::Count,
        "Cache entries evicted for the bound"
    );
    describe_counter!(EXPIRATIONS, Unit::Count, "Cache entries expired");
    describe_gauge!(ENTRIES, Unit::Count, "Cache entries held on this node");
    describe_counter!(
        SYNC_MESSAGES,
        Unit::Count,
        "Replication messages sent: deltas, states, digests, requests"
    );
    describe_counter!(
        SYNC_DELTAS,
        Unit::Count,
        "Replication deltas sent (one per peer per flush)"
    );
    describe_counter!(
        SYNC_BYTES,
        Unit::Bytes,
        "Encoded bytes of the replication messages sent"
    );
    describe_counter!(
        SYNC_STATES,
        Unit::Count,
        "Full states sent (to a joining node, or to repair a loss)"
    );
    describe_counter!(SYNC_RECEIVED, Unit::Count, "Replication messages received");
    describe_counter!(
        SYNC_MALFORMED,
        Unit::Count,
        "Received replication messages that did not decode"
    );
    describe_counter!(
        SYNC_SEND_FAILED,
        Unit::Count,
        "Replication sends to peers that failed (repaired later by a full state)"
    );
    describe_counter!(
        CODEC_ERRORS,
        Unit::Count,
        "Values or states that failed to encode or decode"
    );
    describe_counter!(
        SYNC_COLLECTED,
        Unit::Count,
        "Tombstones dropped once every peer held them"
    );
}

/// Records `cache`'s [`Stats`] and entry count as cache `name`'s metrics every `every`,
/// until the returned task is aborted (or the runtime stops). For a [`Local`](crate::Local)
/// cache; the replicated adapter reports its own.
///
/// # Panics
///
/// Outside a tokio runtime (it spawns a task), as `tokio::spawn` does.
pub fn report<K, V, C>(name: &str, cache: C, every: Duration) -> tokio::task::JoinHandle<()>
where
    K: CacheKey,
    V: CacheValue,
    C: Cache<K, V> + 'static,
{
    let metrics = CacheMetrics::new(name);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            metrics.record(&cache.stats());
            if let Ok(n) = cache.len().await {
                metrics.record_entries(n);
            }
        }
    })
}

/// A count read by a `stats()` and recorded in the facade by the same amount.
#[derive(Debug)]
pub(crate) struct Count {
    value: AtomicU64,
    metric: Counter,
}

impl Count {
    /// Counted as `metric` of the shared state `name` on node `node`.
    pub(crate) fn new(metric: &'static str, name: &str, node: &str) -> Self {
        Self {
            value: AtomicU64::new(0),
            metric: ::metrics::counter!(metric, labels(name, Some(node))),
        }
    }

    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.metric.increment(n);
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}
