//! # foundation-cache
//!
//! Caches behind one API, in the manner of Nebulex, and replicated state as delta CRDTs.
//!
//! - **The API** is the [`Cache`] trait: `get`, `get_many`, `put` (with a [`Ttl`]),
//!   `put_new`, `replace`, `put_many`, `delete`, `take`, `contains`, `incr`/`decr`, `ttl`,
//!   `expire`, `touch`, `len`, `clear`, `stream_keys`/`stream` (a `Stream`), the
//!   single-flight [`get_or_compute`](Cache::get_or_compute), and [`stats`](Cache::stats).
//!   Every adapter implements it; code written against it runs on any of them.
//! - **The adapters**: [`Local`] (this process, on moka: bounded by entries or weight,
//!   TinyLFU, per-entry TTL or time-to-idle); [`Partitioned`] (keys owned by the
//!   cluster's hash ring, with `replicas = k` backups, moved to their new owners on a
//!   membership change, single flight across the cluster); [`Multilevel`] (a near cache:
//!   a `Local` L1 on each node in front of a shared L2, invalidated on every node through
//!   `foundation-pubsub`); [`Replicated`] (every node holds every key, reads are local,
//!   writes reach every node; concurrent writes to one key converge to one value,
//!   last-writer-wins by hybrid logical clock). `docs/cache.md` says what each does.
//! - **Replicated state**: the [`crdt`] module's [`SharedState`](crdt::SharedState)
//!   trait and its delta CRDTs ([`LwwMap`](crdt::LwwMap), [`OrSet`](crdt::OrSet),
//!   [`PnCounter`](crdt::PnCounter)), [`Replica`](crdt::Replica), the I/O-free protocol
//!   that batches deltas and repairs losses, and [`Shared`], which runs it across the
//!   cluster's nodes (see the [`shared`] module).
//! - **Cache-aside**: [`macro@cached`] on an async function, or [`cached()`](fn@cached).
//! - **Metrics**: every cache's [`Stats`] and every replicated state's [`SharedStats`]
//!   in the `metrics` facade (`foundation_cache_*`, labelled `cache`; see [`metrics`]).
//!
//! Errors are typed: [`CacheError`] for every operation (a refused [`TtlError`], a
//! [`CodecError`] of a cluster adapter, an overflowing counter), [`ComputeError`] for
//! `get_or_compute` (every waiter of a failed computation, on any node, gets the same
//! variant and message), [`StartError`] for starting a replicated cache or shared state.
//! Their messages say which cache or type failed, the input, and what is allowed (the
//! limit and the setting that sets it).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use foundation_cache::{Cache, Local, Ttl};
//!
//! # futures::executor::block_on(async {
//! let users: Local<u64, String> = Local::builder()
//!     .max_entries(10_000)
//!     .default_ttl(Ttl::Live(Duration::from_secs(60)))
//!     .build()?;
//!
//! users.put(1, "ada".to_owned(), Ttl::Default).await?;
//! assert_eq!(users.get(&1).await?, Some("ada".to_owned()));
//!
//! // Cache-aside with single flight: concurrent misses on key 2 run one lookup.
//! let name = users
//!     .get_or_compute(2, Ttl::Default, || async { Ok::<_, std::io::Error>("grace".to_owned()) })
//!     .await?;
//! assert_eq!(name, "grace");
//! assert!(users.contains(&2).await?);
//!
//! let stats = users.stats();
//! assert_eq!((stats.hits, stats.misses, stats.writes), (1, 1, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

// `#[cached]` names this crate `::foundation_cache`, in its own tests and docs too.
extern crate self as foundation_cache;

mod api;
mod cached;
mod codec;
pub mod crdt;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod local;
pub mod metrics;
mod multilevel;
mod partitioned;
mod replicated;
pub mod shared;
mod stats;
mod ttl;

pub use api::{Cache, CacheKey, CacheValue, Counter};
pub use cached::cached;
pub use error::{CacheError, CodecError, ComputeError, StartError, TtlError};
/// `#[cached]`: cache-aside on an async function (see [`cached()`](fn@cached)).
pub use foundation_macros::cached;
pub use local::{Local, LocalBuilder};
pub use multilevel::{Multilevel, MultilevelBuilder};
pub use partitioned::{DEFAULT_MAX_KEY_BYTES, Partitioned, PartitionedBuilder};
pub use replicated::{Replicated, ReplicatedOptions};
pub use shared::{Shared, SharedOptions, SharedStats};
pub use stats::Stats;
pub use ttl::{Ttl, TtlLeft};
