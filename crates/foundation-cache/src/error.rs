//! The cache's errors: one enum for every operation ([`CacheError`]), the TTL's own
//! ([`TtlError`]), the codec's ([`CodecError`], for the cluster adapters) and
//! [`ComputeError`] for [`Cache::get_or_compute`](crate::Cache::get_or_compute).
//!
//! Each message says what failed (which cache, which type), the input that made it fail
//! (its size, the amount), and what is allowed (the limit, and the setting that sets it).

use std::fmt;
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
    /// A key's encoding is longer than the cache accepts (cluster adapters): its
    /// `max_key_bytes` setting ([`PartitionedBuilder::max_key_bytes`],
    /// [`ReplicatedOptions::max_key_bytes`]).
    ///
    /// [`PartitionedBuilder::max_key_bytes`]: crate::PartitionedBuilder::max_key_bytes
    /// [`ReplicatedOptions::max_key_bytes`]: crate::ReplicatedOptions::max_key_bytes
    #[error(
        "cache `{cache}`: a key of {size} bytes (encoded) is over the limit of {limit} bytes, \
         set by the cache's `max_key_bytes`"
    )]
    KeyTooLarge {
        /// The cache's name.
        cache: String,
        /// The encoded key's length in bytes.
        size: usize,
        /// The cache's limit in bytes (its `max_key_bytes`).
        limit: usize,
    },
    /// `incr`/`decr` would take the counter past its type's range; the counter is
    /// unchanged.
    #[error(
        "the counter would overflow: adding {by} leaves the range of `{counter}`; it is unchanged"
    )]
    Overflow {
        /// What was to be added (a `decr` by `n` adds `-n`).
        by: i128,
        /// The counter's type ([`std::any::type_name`]).
        counter: &'static str,
    },
    /// The cache could not reach the node that holds the key, or that node refused the
    /// operation (cluster adapters). `reason` names the node and, for a timeout, the
    /// setting that bounds the wait.
    #[error("cache `{cache}` is unavailable: {reason}")]
    Unavailable {
        /// The cache's name.
        cache: String,
        /// What went wrong, and with which node.
        reason: String,
    },
}

impl CacheError {
    /// [`CacheError::Overflow`] for adding `by` to a counter of type `V`.
    pub(crate) fn overflow<V>(by: impl Into<i128>) -> Self {
        CacheError::Overflow {
            by: by.into(),
            counter: std::any::type_name::<V>(),
        }
    }

    /// [`CacheError::Unavailable`] for the cache `cache`.
    pub(crate) fn unavailable(cache: &str, reason: impl Into<String>) -> Self {
        CacheError::Unavailable {
            cache: cache.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Why a TTL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtlError {
    /// A TTL of zero: the entry would be expired before it is written. Use `delete`.
    #[error(
        "a TTL of zero would expire the entry before it is written (to remove an entry, use `delete`)"
    )]
    Zero,
    /// A TTL longer than [`Ttl::MAX`](crate::Ttl::MAX): its deadline would overflow the
    /// clock (use [`Ttl::Never`](crate::Ttl::Never) for no expiry).
    #[error(
        "a TTL of {0:?} is over the maximum of {max:?} (for no expiry, use `Ttl::Never`)",
        max = crate::Ttl::MAX
    )]
    TooLong(Duration),
}

/// A key or a value that failed to encode or decode (cluster adapters, which send both
/// across the network).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Encoding failed: `reason` is the message of the type's `Serialize` impl (what it
    /// gave `serde::ser::Error::custom`), or the codec's own.
    #[error("a {what} of type `{type_name}` failed to serialize: {reason}")]
    Serialize {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// The type that failed ([`std::any::type_name`]).
        type_name: &'static str,
        /// Why: the `Serialize` impl's message, or the codec's.
        reason: String,
    },
    /// Decoding failed: bytes from a peer (or the cache's store) that are not a
    /// `type_name` (another version of the type, a broken peer).
    #[error("bytes of a {what} failed to deserialize as `{type_name}`: {reason}")]
    Deserialize {
        /// `"key"`, `"value"` or `"reply"`.
        what: &'static str,
        /// The type expected ([`std::any::type_name`]).
        type_name: &'static str,
        /// The codec's message.
        reason: String,
    },
}

/// Why [`Cache::get_or_compute`](crate::Cache::get_or_compute) gave no value.
///
/// # Every waiter gets the same shape
///
/// Every caller that waited on one computation gets the same variant with the same
/// `message`, whichever node it called from: [`Compute`](Self::Compute) if the compute
/// function returned an error, [`Panicked`](Self::Panicked) if it panicked. The error
/// value itself (`error`) is only where the function ran: on another node of a
/// [`Partitioned`](crate::Partitioned) cache it is `None` (an `E` need not be
/// serializable), and `message` (its `Display`) and `node` say what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError<E> {
    /// The cache refused the operation (bad TTL, codec, unavailable, ...).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The compute function returned an error; nothing was cached.
    #[error("the compute function failed{}: {message}", OnNode(.node))]
    Compute {
        /// The error's message (its `Display`).
        message: String,
        /// The node whose compute function ran: for a [`Partitioned`](crate::Partitioned)
        /// cache, whose waiters may be on other nodes; `None` for the adapters that compute
        /// on the caller's node.
        node: Option<String>,
        /// The error itself, shared by the callers on the node where it ran (`None` on
        /// the other nodes).
        error: Option<Arc<E>>,
    },
    /// The compute function panicked; nothing was cached.
    #[error("the compute function panicked{}: {message}", OnNode(.node))]
    Panicked {
        /// The panic's message (`"a panic without a message"` if its payload was no
        /// string).
        message: String,
        /// The node whose compute function ran, as in [`Compute`](Self::Compute).
        node: Option<String>,
    },
}

/// ` on node `n`` when there is a node.
struct OnNode<'a>(&'a Option<String>);

impl fmt::Display for OnNode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(node) => write!(f, " on node `{node}`"),
            None => Ok(()),
        }
    }
}

impl<E> ComputeError<E> {
    /// [`ComputeError::Compute`] for `error`, returned by a compute function that ran on
    /// `node`.
    pub(crate) fn returned(error: E, node: Option<String>) -> Self
    where
        E: fmt::Display,
    {
        ComputeError::Compute {
            message: error.to_string(),
            node,
            error: Some(Arc::new(error)),
        }
    }

    /// [`ComputeError::Panicked`] for a panic's `payload`, on `node`.
    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send), node: Option<String>) -> Self {
        ComputeError::Panicked {
            message: panic_message(payload),
            node,
        }
    }
}

/// A panic's message: its payload if that is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

impl<E> Clone for ComputeError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Cache(e) => Self::Cache(e.clone()),
            Self::Compute {
                message,
                node,
                error,
            } => Self::Compute {
                message: message.clone(),
                node: node.clone(),
                error: error.clone(),
            },
            Self::Panicked { message, node } => Self::Panicked {
                message: message.clone(),
                node: node.clone(),
            },
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
    /// The name cannot be used: `reason` says what is allowed.
    #[error("the cache name {name:?} cannot be used: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The default TTL cannot be kept.
    #[error(transparent)]
    Ttl(#[from] TtlError),
    /// The process of the cache (or shared state) `name` could not start.
    #[error("the process of `{name}` could not start: {reason}")]
    Spawn {
        /// The cache's or shared state's name.
        name: String,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed_the_input_and_what_is_allowed() {
        let key = CacheError::KeyTooLarge {
            cache: "users".into(),
            size: 1500,
            limit: 1024,
        };
        assert_eq!(
            key.to_string(),
            "cache `users`: a key of 1500 bytes (encoded) is over the limit of 1024 bytes, \
             set by the cache's `max_key_bytes`"
        );
        assert_eq!(
            CacheError::overflow::<u8>(-3i64).to_string(),
            "the counter would overflow: adding -3 leaves the range of `u8`; it is unchanged"
        );
        assert_eq!(
            CacheError::from(TtlError::Zero).to_string(),
            "invalid TTL: a TTL of zero would expire the entry before it is written (to remove an entry, use `delete`)"
        );
        let e: ComputeError<String> = ComputeError::returned("no row".to_owned(), None);
        assert_eq!(e.to_string(), "the compute function failed: no row");
        let e: ComputeError<String> = ComputeError::Compute {
            message: "no row".into(),
            node: Some("b".into()),
            error: None,
        };
        assert_eq!(
            e.to_string(),
            "the compute function failed on node `b`: no row"
        );
        let boom: Box<dyn std::any::Any + Send> = Box::new(format!("boom {}", 1));
        let e: ComputeError<String> = ComputeError::panicked(&*boom, Some("a".into()));
        assert_eq!(
            e.to_string(),
            "the compute function panicked on node `a`: boom 1"
        );
        let opaque: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert_eq!(panic_message(&*opaque), "a panic without a message");
    }
}
