//! The `Local` adapter: a cache in this process, on moka.
//!
//! [`Local`] wraps a `moka::sync::Cache`: bounded by entries or by weight (a weigher you
//! give), TinyLFU admission and eviction (LRU on request), and per-entry expiry through
//! moka's `Expiry` (each entry's [`Ttl`](crate::Ttl): after a write, or after the last
//! read for [`Ttl::Idle`](crate::Ttl::Idle)).
//!
//! # Why `moka::sync` (and not `moka::future`)
//!
//! The sync cache does the least per call: `get` and `insert` are plain calls, where
//! `moka::future::Cache` wraps the same work in futures and async locks for its
//! housekeeping. What the future cache adds that we need, an async single-flight
//! (`try_get_with`), is written here over the sync cache ([`Cache::get_or_compute`]):
//! concurrent misses share one computation without blocking a thread, and only the miss
//! path pays for it. Housekeeping (applying recorded reads and writes, evicting, expiring)
//! runs on the calling thread every so many operations, for a few microseconds, as it
//! would with either cache.
//!
//! # Counting
//!
//! Hits, misses and writes go to striped counters (see `stats.rs`): one relaxed atomic
//! add on a line that other cores rarely touch. Evictions and expirations are counted by
//! moka's eviction listener when housekeeping removes an entry: an expired entry counts
//! when it is removed, not when it stops being readable (a read after its deadline already
//! misses). moka's timer wheel removes it at the first housekeeping after its bucket
//! (about a second wide) has passed. [`Local::run_pending_tasks`] runs the housekeeping
//! now.
//!
//! [`Cache::get_or_compute`]: crate::Cache::get_or_compute

mod builder;
mod cache;
mod flight;
mod slot;

pub use builder::LocalBuilder;
pub use cache::Local;
