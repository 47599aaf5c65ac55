//! The `Partitioned` adapter: keys spread over the cluster by its hash ring, with
//! optional backups, moved to their new owners on a membership change, and a single
//! flight across the cluster (see [`Partitioned`] and `docs/cache.md`).

mod cache;
mod shard;
mod wire;

/// The key and value codec, for the near cache's invalidations.
pub(crate) mod wire_codec {
    pub(crate) use super::wire::{decode, encode};
}

pub use cache::{DEFAULT_MAX_KEY_BYTES, Partitioned, PartitionedBuilder};

/// The shard and its wire, for the fuzz targets (`crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing {
    pub(crate) use super::shard::{Core, serve};
    pub(crate) use super::wire::{Answer, Claimed, Copied, Failure, Op, Outcome, ShardMsg};
}
