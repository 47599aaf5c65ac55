//! What the shards of one partitioned cache send each other: the [`ShardMsg`] a node's
//! shard process takes, and the encoding of keys and values (postcard).

use foundation_actors::{RemoteMessage, ReplyPort};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::CacheError;
use crate::ttl::{Ttl, TtlLeft};

/// A key or a value as it travels and as a shard stores it: its postcard bytes.
pub(crate) type Bytes = Vec<u8>;

/// The message a shard process takes. Its wire name carries the protocol's version: a
/// node of another version refuses it at its door (`RemoteError::WrongType`) instead of
/// misreading it. (v2: a failed computation's outcome carries its message, and an operation sent to a
/// node that no longer owns its key is answered with the owner.)
#[derive(Debug, RemoteMessage)]
#[remote(name = "foundation.cache.Shard.v2")]
pub(crate) enum ShardMsg {
    /// The value under a key (the hot path: a message of its own, a small reply).
    #[remote(tag = 1, reply = "foundation.cache.Value")]
    Get(Bytes, ReplyPort<Option<Bytes>>),
    /// Any other operation on the shard.
    #[remote(tag = 2, reply = "foundation.cache.Answer")]
    Op(Op, ReplyPort<Answer>),
    /// Copies from another node: an owner's backups, or entries moved after a membership
    /// change (a cast).
    #[remote(tag = 3)]
    Copy(Vec<Copied>),
    /// `node` missed the key in `get_or_compute`: the value, or the right to compute it,
    /// or (later) the outcome of the computation another node runs.
    #[remote(tag = 4, reply = "foundation.cache.Claimed")]
    Claim(Bytes, String, ReplyPort<Claimed>),
    /// The outcome of a computation this node's claim allowed (a cast).
    #[remote(tag = 5)]
    Fulfill(Bytes, String, Outcome),
}

/// An operation a shard applies for another node (or for its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Op {
    Put(Bytes, Bytes, Ttl),
    PutNew(Bytes, Bytes, Ttl),
    Replace(Bytes, Bytes, Ttl),
    /// Writes `new` if the value is `expected` now (`None`: no live entry); a new entry
    /// gets `ttl`, an existing one keeps its TTL. For `incr`.
    Swap {
        key: Bytes,
        expected: Option<Bytes>,
        new: Bytes,
        ttl: Ttl,
    },
    Delete(Bytes),
    Take(Bytes),
    Contains(Bytes),
    Ttl(Bytes),
    Expire(Bytes, Ttl),
    Touch(Bytes),
    /// How many entries this node owns (as primary).
    Len,
    /// Removes every entry this node holds.
    Clear,
    /// Up to `limit` of the entries this node owns, skipping the first `skip`.
    Page {
        skip: u64,
        limit: u32,
    },
}

impl Op {
    /// The key the operation is on (`None` for the whole-shard ones).
    pub(crate) fn key(&self) -> Option<&Bytes> {
        match self {
            Op::Put(k, _, _)
            | Op::PutNew(k, _, _)
            | Op::Replace(k, _, _)
            | Op::Swap { key: k, .. }
            | Op::Delete(k)
            | Op::Take(k)
            | Op::Contains(k)
            | Op::Ttl(k)
            | Op::Expire(k, _)
            | Op::Touch(k) => Some(k),
            Op::Len | Op::Clear | Op::Page { .. } => None,
        }
    }
}

/// A shard's answer to an [`Op`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Answer {
    Done,
    Bool(bool),
    Value(Option<Bytes>),
    Left(Option<TtlLeft>),
    Count(u64),
    Page(Vec<(Bytes, Bytes)>),
    /// The shard refused the operation (a TTL it cannot keep: a caller of this version
    /// checks TTLs first, so only another version's node sends one).
    Refused(String),
    /// The key is not this node's under its ring now: the named node owns it (the caller
    /// routed by a ring that has changed since, a membership change under way). Nothing
    /// was applied; the caller sends the operation there.
    NotOwner(String),
}

/// An entry copied to another node: written (`Some`), or removed (`None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Copied {
    pub(crate) key: Bytes,
    pub(crate) value: Option<(Bytes, Ttl)>,
    /// Written only if the receiver holds no entry for the key: a move after a membership
    /// change never overwrites a newer write.
    pub(crate) if_absent: bool,
}

/// The owner's answer to a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Claimed {
    /// The value is there.
    Value(Bytes),
    /// No value and no computation: the claimant computes it and fulfils.
    Compute,
    /// The computation the claimant waited for was abandoned (its node died, or every
    /// caller there went away): claim again.
    Retry,
    /// The computation failed on `node`: nothing was cached.
    Failed { node: String, failure: Failure },
}

/// How a computation failed, as every waiter is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Failure {
    /// `f` returned an error: its message.
    Returned(String),
    /// `f` panicked: the panic's message.
    Panicked(String),
    /// `f`'s value failed to serialize: the codec's message.
    Unencodable(String),
}

/// What a claimant reports of its computation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Outcome {
    /// The value, to store with the TTL (already resolved) and hand to the waiters.
    Value(Bytes, Ttl),
    /// `f` failed, panicked, or gave a value that does not serialize: nothing is
    /// stored, the waiters get the failure.
    Failed(Failure),
    /// No computation will come (every caller went away): the waiters claim again.
    Abandoned,
}

/// `value`'s bytes.
pub(crate) fn encode<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Bytes, CacheError> {
    Ok(crate::codec::encode(what, value)?)
}

/// A `T` from `bytes` (all of them).
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CacheError> {
    Ok(crate::codec::decode(what, bytes)?)
}
