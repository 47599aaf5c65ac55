//! Replicated state: delta-state CRDTs, and the protocol that replicates them.
//!
//! A [`SharedState`] is a join-semilattice: [`merge`](SharedState::merge) is
//! commutative, associative and idempotent, so replicas that have merged the same updates,
//! in any order and any number of times, hold the same state. Each update made on a
//! replica applies there at once and yields a small **delta** (the part of the state it
//! changed, itself joinable), which is what travels: deltas made between two sends are
//! joined into one ([`join`](SharedState::join)) and sent once to every peer.
//!
//! The types here (Almeida, Shoker and Baquero's delta-state CRDTs; Horde and
//! Phoenix.Presence stand on the same idea):
//!
//! - [`PnCounter`]: a counter that goes up and down; each replica counts its own
//!   increments and decrements, merge takes the maximum of each.
//! - [`LwwMap`]: a map whose concurrent writes to one key resolve to the write with the
//!   greatest [`Stamp`]: a hybrid logical clock [`Timestamp`], then the [`ReplicaId`].
//!   A removal is a write of a tombstone.
//! - [`OrSet`]: an observed-remove (add-wins) set: a removal removes the additions it has
//!   seen; an addition concurrent with it wins. It tracks causality with [`Dot`]s and a
//!   causal context.
//!
//! [`Replica`] drives any of them between nodes without doing I/O itself: it batches
//! deltas, numbers them per origin, notices a lost one (a gap, or a peer's digest ahead of
//! what it has) and asks for the full state to repair it. See its docs and
//! `docs/cache.md` for the protocol; [`Shared`](crate::Shared) runs it across the nodes of
//! a cluster.
//!
//! # Limits
//!
//! - A [`ReplicaId`] must be unique per replica *incarnation*: a restarted node that
//!   reuses its id with an empty state would reuse dots (OR-set) and have its counts masked
//!   by its old ones (PN-counter). Draw a fresh random id at start.
//! - Tombstones (LWW map) are collected once every replica the node knows holds them
//!   ([`Replica::collect`]: each replica's digest says, per origin, up to when it holds
//!   every write of it); a replica the node has never heard from, or has forgotten after
//!   a long silence, is not waited for (see `docs/cache.md`). Causal contexts (OR-set)
//!   grow with the replicas that wrote, and are not collected.
//! - Last-writer-wins trusts wall clocks to within their skew: a replica whose clock runs
//!   ahead wins concurrent writes until the others' clocks pass it (the hybrid clock keeps
//!   every replica's own writes in order regardless).

mod hlc;
mod lww;
mod orset;
mod pncounter;
mod replica;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use hlc::{Hlc, Timestamp};
pub use lww::{LwwMap, Stamp};
pub use orset::{Dot, OrSet};
pub use pncounter::PnCounter;
pub use replica::{Message, Replica};

/// One replica (one node incarnation) of a shared state. See the module docs' limits:
/// unique per incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReplicaId(pub u64);

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{:x}", self.0)
    }
}

/// A state-based CRDT with deltas: the trait every replicated type implements.
///
/// Laws (checked by property tests for each type): [`merge`](Self::merge) is
/// commutative, associative and idempotent; [`apply`](Self::apply) of a delta is a merge
/// of it; [`join`](Self::join) of two deltas applies as both.
pub trait SharedState: Clone + Default + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// What an update sends: the part of the state it changed. For the types here a delta
    /// is a state itself (of the same type), as in delta-state CRDTs.
    type Delta: Clone + fmt::Debug + Send + Sync + 'static;

    /// Joins another replica's full state into this one (a joining node's bulk load, a
    /// repair).
    fn merge(&mut self, other: &Self);

    /// Joins a delta into this state.
    fn apply(&mut self, delta: &Self::Delta);

    /// Joins `other` into the delta `into`, so that applying the result is applying both
    /// (batching deltas between two sends).
    fn join(into: &mut Self::Delta, other: &Self::Delta);

    /// For a type whose writes are stamped by a hybrid logical clock (the [`LwwMap`]): the
    /// greatest timestamp the state holds. A replica's own next write is stamped after it,
    /// which is what lets [`Replica`] tell its peers, for each origin, up to when it holds
    /// every write of that origin (and so when a tombstone can go). `None` (the default):
    /// the type keeps nothing to collect.
    fn clock(&self) -> Option<Timestamp> {
        None
    }

    /// Drops what the state keeps only to stop older writes coming back (the LWW map's
    /// tombstones) where `stable(origin, time)` says every replica holds every write of
    /// `origin` stamped at or before `time`; returns how many it dropped. The default
    /// drops nothing.
    fn collect(&mut self, stable: &dyn Fn(ReplicaId, Timestamp) -> bool) -> usize {
        let _ = stable;
        0
    }

    /// How many tombstones the state keeps now (0 for types without).
    fn tombstones(&self) -> usize {
        0
    }
}
