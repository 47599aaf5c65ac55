//! The cache's errors: one enum for every operation ([`CacheError`]), the TTL's own
//! ([`TtlError`]), the codec's ([`CodecError`], for the cluster adapters) and
//! [`ComputeError`] for [`Cache::get_or_compute`](crate::Cache::get_or_compute).

use std::sync::Arc;
use std::time::Duration;

/// Why a cache operation failed.
///
/// The cache stays usable after every one of these: a failed operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The TTL given is not one the cache can keep.
    #[error("invalid TTL: {0}")]
    InvalidTtl(#[from] TtlError),
    /// A key or a value could not be turned into bytes or back (cluster adapters).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A key's encoding is longer than the adapter accepts (cluster adapters).
    #[error("a key of {size} bytes is over the limit of {limit} bytes")]
    KeyTooLarge {
        /// The encoded key's length in bytes.
        size: usize,
        /// The adapter's limit in bytes.
        limit: usize,
    },
    /// `incr`/`decr` would take the counter past its type's range; the counter is unchanged.
    #[error("the counter would overflow")]
    Overflow,
    /// The adapter could not reach the node that holds the key (cluster adapters).
    #[error("the cache is unavailable: {0}")]
    Unavailable(String),
    /// `get_or_compute` waited for a computation on another node, which failed (or
    /// panicked): nothing was cached. The error itself stays on that node.
    #[error("the computation on node `{node}` failed{}", if *panicked { " (it panicked)" } else { "" })]
    ComputeFailed {
        /// The node whose compute function failed.
        node: String,
        /// Whether it panicked.
        panicked: bool,
    },
}

/// Why a TTL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtlError {
    /// A TTL of zero: the entry would be expired before it is written. Use `delete`.
    #[error("a TTL of zero")]
    Zero,
    /// A TTL longer than [`Ttl::MAX`](crate::Ttl::MAX): its deadline would overflow the
    /// clock (use [`Ttl::Never`](crate::Ttl::Never) for no expiry).
    #[error("a TTL of {0:?} is over the maximum of {max:?}", max = crate::Ttl::MAX)]
    TooLong(Duration),
}

/// A key or a value that failed to encode or decode (cluster adapters, which send both
/// across the network). The message is the codec's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Encoding failed.
    #[error("a {what} failed to serialize: {reason}")]
    Serialize {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// Decoding failed (a peer sent bytes that are not a `what`).
    #[error("a {what} failed to deserialize: {reason}")]
    Deserialize {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
}

/// Why [`Cache::get_or_compute`](crate::Cache::get_or_compute) gave no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError<E> {
    /// The cache refused the operation (bad TTL, codec, unavailable, ...).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The compute function failed. Every caller that waited on the same computation gets
    /// the same error, shared; nothing was cached.
    #[error("the compute function failed: {0}")]
    Compute(Arc<E>),
    /// The compute function panicked. Every caller that waited on it gets this; nothing
    /// was cached.
    #[error("the compute function panicked")]
    Panicked,
}

impl<E> Clone for ComputeError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Cache(e) => Self::Cache(e.clone()),
            Self::Compute(e) => Self::Compute(Arc::clone(e)),
            Self::Panicked => Self::Panicked,
        }
    }
}

/// Why a cluster cache ([`Partitioned`](crate::Partitioned),
/// [`Multilevel`](crate::Multilevel), [`Replicated`](crate::Replicated)) or a
/// [`Shared`](crate::Shared) state could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A cache or shared state of this name runs on this node already.
    #[error("a cache or shared state named `{0}` runs on this node already")]
    NameTaken(String),
    /// The name is empty or longer than 200 bytes.
    #[error("a cache's name must be 1 to 200 bytes: {0:?}")]
    BadName(String),
    /// The default TTL cannot be kept.
    #[error(transparent)]
    Ttl(#[from] TtlError),
    /// Its process could not start.
    #[error("the process could not start: {0}")]
    Spawn(String),
}

impl From<foundation_actors::SpawnError> for StartError {
    fn from(e: foundation_actors::SpawnError) -> Self {
        StartError::Spawn(e.to_string())
    }
}
