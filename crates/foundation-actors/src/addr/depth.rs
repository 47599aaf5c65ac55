//! How many messages wait in one incarnation's mailbox: what [`Addr::queued`] reads.
//!
//! ractor keeps no count of a mailbox, so the address keeps one: a sender counts a message
//! just before it puts it in the mailbox, and the incarnation counts it again when it takes
//! it out. The depth is the difference.
//!
//! # Protocol
//!
//! - **Senders** add one to `sent` *before* the delivery (an atomic add: there may be many
//!   senders), and take it back if the delivery is refused (the incarnation has died).
//! - **The incarnation** is the one reader of its mailbox and the one writer of `taken`: it
//!   loads its own count and stores one more, with `Release`, each time it takes a message.
//! - **An observer** loads `taken` with `Acquire`, then `sent`.
//!
//! A message's count is added before the message enters the mailbox, and the mailbox hands a
//! message over with a happens-before edge (tokio's channel). So every taken message's
//! count happens-before its take, and an observer that sees `taken = t` through the
//! `Acquire` load also sees `sent ≥ t`: the depth is never negative, and a message is never
//! counted as taken before it is counted as sent. A refused delivery adds and takes back
//! one in the same thread: an observer sees both or neither, or only the add (one too
//! many, for that moment). The loom model in `tests/loom_depth.rs` checks these (it fails
//! if a sender counts a message after delivering it). loom does not produce every stale
//! value a `Relaxed` load may read, so the `Acquire`/`Release` pair rests on the argument
//! above, not on the model.
//!
//! The two counters sit 64 bytes apart, on different cache lines: a sender and the
//! incarnation, on different threads, write them at every message.
//!
//! The counts live in the address's slot (no allocation per start) and belong to the live
//! incarnation: when a new one is installed ([`Depth::reset`], under the slot's write lock,
//! the one before having ended), what was left in the old mailbox is forgotten with it.

use crate::loom::atomic::{AtomicU64, Ordering};

/// The counts of one incarnation's mailbox (see the [module docs](self)).
#[repr(C)]
pub(crate) struct Depth {
    /// Messages counted in by senders (and not taken back).
    sent: Line,
    /// Keeps `taken` 64 bytes past `sent`: on another cache line, wherever the allocator
    /// puts the whole. (Padding, not `align(64)`: an over-aligned allocation takes the
    /// allocator's slow path, at every start of a process.)
    _apart: [u64; 7],
    /// Messages the incarnation has taken out of its mailbox.
    taken: Line,
}

/// A counter.
struct Line(AtomicU64);

impl Depth {
    /// An empty mailbox's counts.
    pub(crate) fn new() -> Self {
        Self {
            sent: Line(AtomicU64::new(0)),
            _apart: [0; 7],
            taken: Line(AtomicU64::new(0)),
        }
    }

    /// A sender is about to put a message in the mailbox.
    #[inline]
    pub(crate) fn will_send(&self) {
        self.sent.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The mailbox refused the message counted by [`Depth::will_send`].
    #[cold]
    pub(crate) fn unsent(&self) {
        self.sent.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// The incarnation took a message out of its mailbox. Called by the incarnation's own
    /// task only (the one writer of `taken`).
    #[inline]
    pub(crate) fn took(&self) {
        let n = self.taken.0.load(Ordering::Relaxed);
        self.taken.0.store(n.wrapping_add(1), Ordering::Release);
    }

    /// A new incarnation's start: what the mailbox before held is forgotten. Called under
    /// the slot's write lock (no sender counts meanwhile), once the incarnation before
    /// has ended (it takes nothing more); the new one takes only what is delivered after,
    /// so it sees this store.
    pub(crate) fn reset(&self) {
        let sent = self.sent.0.load(Ordering::Relaxed);
        self.taken.0.store(sent, Ordering::Relaxed);
    }

    /// How many messages are in the mailbox now.
    pub(crate) fn queued(&self) -> u64 {
        let (taken, sent) = self.counts();
        // Never below zero (see the module docs); saturating all the same, as a gauge.
        sent.saturating_sub(taken)
    }

    /// Taken, then sent, as an observer reads them.
    #[inline]
    fn counts(&self) -> (u64, u64) {
        let taken = self.taken.0.load(Ordering::Acquire);
        let sent = self.sent.0.load(Ordering::Relaxed);
        (taken, sent)
    }
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    mod loom_depth;
}
