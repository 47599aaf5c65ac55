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
