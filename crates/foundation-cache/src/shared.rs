//! [`Shared`]: a [`SharedState`](crate::crdt::SharedState) replicated across the nodes of a
//! cluster, by the [`Replica`](crate::crdt::Replica) protocol over the node's lanes.
//!
//! # How it runs
//!
//! Each node that starts a shared state of a name runs one process for it, exported as
//! `$shared/<name>`, and one task:
//!
//! - **Updates** ([`Shared::update`]) apply to this node's copy at once, under a lock, and
//!   their deltas join the pending batch. The task sends the batch as **one** delta to
//!   every node that is up: at once after a quiet period, then at most once every
//!   [`SharedOptions::flush_every`] (1 ms) while updates keep coming, however many there
//!   are.
//! - **Joining.** When a node comes up, every node sends it its full state; a shared state
//!   started on a node already connected asks each peer for its state. Then deltas.
//! - **Losses** (a peer's outbox was full, a connection broke, a partition): a delta's
//!   number shows the receiver a gap, and every [`SharedOptions::digest_every`] (1 s) each
//!   node sends its last number; either way the receiver asks the origin for its full
//!   state. After a partition heals, the nodes come up to each other again and exchange
//!   full states: merges commute, so nothing is lost and nothing conflicts.
//! - **Tombstones** (a state that keeps them: the [`LwwMap`](crate::crdt::LwwMap) of a
//!   replicated cache) are dropped at a digest once every peer node heard from within
//!   [`SharedOptions::forget_after`] (10 minutes) holds them, as the peers' digests say
//!   ([`Replica::collect`](crate::crdt::Replica::collect)): a partitioned node is waited
//!   for, so its older writes cannot bring a removed key back when it heals, unless it
//!   stays away past that horizon. See [`SharedOptions::forget_after`] for the risk.
//! - **Channel.** Replication rides the node channel [`SharedOptions::channel`] (`default`
//!   unless set; if this node or the peer lacks the one named, `default`).
//!
//! Messages travel as `postcard` bytes of [`Message`](crate::crdt::Message); a message that
//! does not decode (another version, or another state type under this name on that node)
//! is dropped and counted ([`SharedStats::malformed`]): one name must have one state type
//! on every node.

mod core;
mod error;

pub use self::core::{DEFAULT_FORGET_AFTER, Shared, SharedOptions, SharedStats};
pub use self::error::StartError;

pub(crate) use self::core::{Observer, wall_ms};
