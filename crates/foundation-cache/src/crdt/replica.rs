//! [`Replica`]: one node's copy of a shared state and the delta protocol, without I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ReplicaId, SharedState, Timestamp};

/// What replicas send each other. The node that drives a [`Replica`] carries these
/// ([`Shared`](crate::Shared) sends them in postcard, on the node channel its
/// [`SharedOptions::channel`](crate::SharedOptions::channel) names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize, S::Delta: Serialize",
    deserialize = "S: Deserialize<'de>, S::Delta: Deserialize<'de>"
))]
pub enum Message<S: SharedState> {
    /// The deltas `origin` made since its previous `Delta`, joined; `seq` numbers
    /// `origin`'s deltas from 1. Sent to every peer ([`Replica::flush`]).
    Delta {
        /// Who made the updates.
        origin: ReplicaId,
        /// This batch's number among `origin`'s.
        seq: u64,
        /// `origin`'s clock when it sent the batch ([`SharedState::clock`]): every write of
        /// `origin` stamped at or before it is in this batch or an earlier one.
        clock: Option<Timestamp>,
        /// The joined deltas.
        delta: S::Delta,
    },
    /// `origin`'s full state, which holds every delta of its own up to `seq` (a reply to
    /// [`Message::Want`], or what a joining node is sent).
    State {
        /// Whose state.
        origin: ReplicaId,
        /// The last of `origin`'s own batches it holds.
        seq: u64,
        /// The state.
        state: S,
    },
    /// `origin`'s last batch number, sent to every peer now and then
    /// ([`Replica::digest`]), so a peer that lost `origin`'s last batch notices.
    Digest {
        /// Whose number.
        origin: ReplicaId,
        /// `origin`'s last batch.
        seq: u64,
        /// Every write of `origin` stamped at or before this is in its batches up to `seq`.
        clock: Option<Timestamp>,
        /// Per other origin, the time up to which `origin` holds every write of it: what
        /// the receiver needs to know before it drops a tombstone
        /// ([`Replica::collect`]).
        held: Vec<(ReplicaId, Timestamp)>,
    },
    /// `from` has missed some of the receiver's batches: a request for its full state.
    Want {
        /// Who asks.
        from: ReplicaId,
    },
}

/// One replica of a [`SharedState`], and the delta protocol between replicas, as a plain
/// struct: the node's event loop ([`Shared`](crate::Shared) on a cluster node) feeds it
/// updates, messages and ticks, and sends what it returns. No I/O, no clock: a simulated
/// network drives it in tests.
///
/// # Protocol
///
/// - [`update`](Self::update) applies an update at once and joins its delta into the
///   pending batch. [`flush`](Self::flush) (on a timer, or when the batch is big) turns the
///   batch into one [`Message::Delta`], numbered, for **every** peer: one message per node
///   per interval however many updates were made.
/// - A received `Delta` is applied whatever its order (joins commute). Its number tells
///   the receiver whether it has every batch of that origin so far; on a gap it answers
///   [`Message::Want`] and the origin replies with its full [`Message::State`].
/// - [`digest`](Self::digest), sent to every peer now and then, carries the last number:
///   a peer that lost the *last* batch (no later one shows the gap) asks too.
/// - A joining node starts empty, so its first `Delta` or `Digest` from each origin shows
///   a gap: it gets each origin's full state, then deltas.
///
/// Duplicates are harmless (joins are idempotent), lost messages are repaired by the full
/// state, and once the network delivers again every replica converges to the join of
/// every update.
///
/// # Tombstones
///
/// A type that keeps tombstones (the [`LwwMap`](super::LwwMap)) stamps its writes with a
/// hybrid clock; a replica's next write is stamped after everything it holds. So once a
/// peer holds every batch of `origin` up to one sent at `origin`'s clock `c` (or its full
/// state, or all its batches when its digest said `c`), it holds every write of `origin`
/// stamped up to `c`. Each digest carries those times, per origin. A tombstone written by
/// `origin` at `t` can go ([`collect`](Self::collect)) once every peer holds `origin`'s
/// writes up to `t`: each of them then holds the tombstone (or a later write), so no
/// older write of the key is left anywhere to come back. Messages from one peer arrive in
/// order, so a delta sent before a digest is applied before that digest is believed.
#[derive(Debug, Clone)]
pub struct Replica<S: SharedState> {
    id: ReplicaId,
    state: S,
    pending: Option<S::Delta>,
    /// Our last batch's number.
    seq: u64,
    /// Per origin: every batch of its up to this number is in `state`.
    seen: BTreeMap<ReplicaId, u64>,
    /// Per origin: every write of its stamped at or before this time is in `state`.
    held: BTreeMap<ReplicaId, Timestamp>,
    /// Per peer: its `held`, as its last digest said.
    acks: BTreeMap<ReplicaId, BTreeMap<ReplicaId, Timestamp>>,
    /// Our clock when we last flushed: every write of ours up to it is in a batch.
    flushed: Option<Timestamp>,
}

impl<S: SharedState> Replica<S> {
    /// A replica with an empty state.
    pub fn new(id: ReplicaId) -> Self {
        Self {
            id,
            state: S::default(),
            pending: None,
            seq: 0,
            seen: BTreeMap::new(),
            held: BTreeMap::new(),
            acks: BTreeMap::new(),
            flushed: None,
        }
    }

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The state as this replica knows it.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Applies an update: `f` changes the state (given this replica's id) and returns its
    /// delta, which joins the pending batch.
    pub fn update(&mut self, f: impl FnOnce(&mut S, ReplicaId) -> S::Delta) {
        let delta = f(&mut self.state, self.id);
        match &mut self.pending {
            Some(pending) => S::join(pending, &delta),
            None => self.pending = Some(delta),
        }
    }

    /// Whether updates wait to be flushed.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The pending batch as a [`Message::Delta`] for every peer, or `None` if no update
    /// was made since the last flush.
    pub fn flush(&mut self) -> Option<Message<S>> {
        let delta = self.pending.take()?;
        self.seq += 1;
        let clock = self.state.clock();
        self.flushed = clock;
        Some(Message::Delta {
            origin: self.id,
            seq: self.seq,
            clock,
            delta,
        })
    }

    /// This replica's last batch number, as a [`Message::Digest`] for every peer, with
    /// what it holds of every origin (for the peers' [`collect`](Self::collect)).
    pub fn digest(&self) -> Message<S> {
        // With updates pending, only the writes of the batches sent so far are covered.
        let clock = if self.pending.is_some() {
            self.flushed
        } else {
            self.state.clock()
        };
        Message::Digest {
            origin: self.id,
            seq: self.seq,
            clock,
            held: self.held.iter().map(|(o, t)| (*o, *t)).collect(),
        }
    }

    /// Drops the tombstones (of a type that keeps some: [`SharedState::collect`]) that
    /// every replica of `peers` holds, as their digests said: a tombstone written by
    /// `origin` at `time` goes once each peer holds every write of `origin` up to `time`.
    /// Returns how many went.
    ///
    /// `peers` are the replicas that may still hold (or send) an older write of a removed
    /// key: every other replica the node knows of, reachable or not. A peer never heard
    /// from (no digest yet) holds nothing as far as this replica knows, so nothing goes
    /// while one is listed. With no peers, every tombstone goes: call this only once the
    /// node knows its peers (see [`Shared`](crate::Shared)).
    pub fn collect(&mut self, peers: &[ReplicaId]) -> usize {
        let acks = &self.acks;
        let empty = BTreeMap::new();
        let stable = |origin: ReplicaId, time: Timestamp| {
            peers.iter().all(|peer| {
                *peer == origin
                    || acks
                        .get(peer)
                        .unwrap_or(&empty)
                        .get(&origin)
                        .is_some_and(|held| *held >= time)
            })
        };
        self.state.collect(&stable)
    }

    /// Forgets what `peer` told this replica (it is gone for good, or a new incarnation
    /// replaced it): no longer listed in [`collect`](Self::collect)'s peers, its acks are
    /// only memory.
    pub fn forget(&mut self, peer: ReplicaId) {
        self.acks.remove(&peer);
    }

    /// Every write of `origin` stamped at or before the returned time is in this
    /// replica's state, as far as it knows (`None`: nothing known).
    pub fn held(&self, origin: ReplicaId) -> Option<Timestamp> {
        self.held.get(&origin).copied()
    }

    /// Records that every write of `origin` up to `clock` is here.
    fn hold(&mut self, origin: ReplicaId, clock: Option<Timestamp>) {
        if let Some(clock) = clock {
            let held = self.held.entry(origin).or_default();
            *held = (*held).max(clock);
        }
    }

    /// The full state, as a [`Message::State`] (for a joining node).
    pub fn full_state(&self) -> Message<S> {
        Message::State {
            origin: self.id,
            seq: self.seq,
            state: self.state.clone(),
        }
    }

    /// Handles a peer's message; returns the reply to send, and to whom, if any.
    pub fn handle(&mut self, message: Message<S>) -> Option<(ReplicaId, Message<S>)> {
        match message {
            Message::Delta {
                origin,
                seq,
                clock,
                delta,
            } => {
                self.state.apply(&delta);
                let seen = self.seen.entry(origin).or_default();
                // Saturating: a peer may claim any number, `u64::MAX` included.
                let next = seen.saturating_add(1);
                if seq == next {
                    *seen = seq;
                    self.hold(origin, clock);
                    None
                } else if seq > next {
                    Some((origin, Message::Want { from: self.id }))
                } else {
                    None
                }
            }
            Message::State { origin, seq, state } => {
                self.state.merge(&state);
                let seen = self.seen.entry(origin).or_default();
                *seen = (*seen).max(seq);
                // Its full state holds every write of its own so far; its next is later.
                self.hold(origin, state.clock());
                None
            }
            Message::Digest {
                origin,
                seq,
                clock,
                held,
            } => {
                let acked = self.acks.entry(origin).or_default();
                for (o, t) in held {
                    let mine = acked.entry(o).or_default();
                    *mine = (*mine).max(t);
                }
                let seen = self.seen.get(&origin).copied().unwrap_or(0);
                if seen < seq {
                    Some((origin, Message::Want { from: self.id }))
                } else {
                    self.hold(origin, clock);
                    None
                }
            }
            Message::Want { from } => Some((from, self.full_state())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::PnCounter;

    /// Found while adding the `cache` fuzz target: a peer's state numbered `u64::MAX`, then a
    /// delta of the same origin, overflowed the next expected number (a panic with
    /// overflow checks on).
    #[test]
    fn a_peer_numbering_its_batches_up_to_u64_max_is_taken_without_overflow() {
        let mut r = Replica::<PnCounter>::new(ReplicaId(1));
        let origin = ReplicaId(2);
        let state = Message::State {
            origin,
            seq: u64::MAX,
            state: PnCounter::default(),
        };
        assert_eq!(r.handle(state), None);
        let mut delta = PnCounter::default();
        let delta = delta.add(origin, 3);
        for seq in [u64::MAX, 7] {
            let msg = Message::Delta {
                origin,
                seq,
                clock: None,
                delta: delta.clone(),
            };
            assert_eq!(r.handle(msg), None);
        }
        assert_eq!(r.state().value(), 3);
        let digest = Message::Digest {
            origin,
            seq: u64::MAX,
            clock: None,
            held: Vec::new(),
        };
        assert_eq!(r.handle(digest), None);
    }
}
