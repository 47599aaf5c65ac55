//! Flow control of casts to entities on other nodes: a window of casts per pair of nodes,
//! credited back by the owner as its entities handle them.
//!
//! # Why
//!
//! A node's remote send returns once the message is queued for the peer, and the peer's
//! `$sharded/<name>` process passes each message on to its entity's queue at once: a
//! sender faster than a slow entity would fill its outbox (then its sends fail
//! `Overloaded`, and a handle's cast drops them) or the peer's memory. The node's limits
//! protect the node; they do not tell a sender how fast an entity goes.
//!
//! # The protocol
//!
//! - Each node keeps, per owner node, a [`Window`]: `sent`, the casts it sent there (from
//!   any path), and `done`, how many of them the owner says are finished. A cast through
//!   [`Sharded::try_cast`](super::Sharded::try_cast) or
//!   [`Sharded::cast`](super::Sharded::cast) takes a place only while `sent - done` is
//!   below the window ([`ShardedSpec::remote_window`](super::ShardedSpec::remote_window)):
//!   `try_cast` is refused `Overloaded` (counted), `cast` waits for room.
//! - Each cast carries the sender's tag (a hash of its node's name). The owner keeps, per
//!   sender, a [`Ledger`]: casts received, and casts finished. Each cast travels to its
//!   entity with a [`Credit`] that counts it finished when the entity has handled it (or
//!   when it is dropped or passed on to another node), so a slow entity, or a shard held
//!   in a move, holds its senders' places.
//! - The owner tells the sender its `done` count (a `Credit` message on the `control`
//!   channel) once a quarter of a window has finished since the last report, and a few
//!   milliseconds after any finish otherwise: never one message per cast.
//! - A message lost on the way (a connection reset, a peer that restarted) would hold a
//!   place forever. A sender that waits for room for long sends a `Sync` with its `sent`
//!   count, on the lane its casts take, so every cast it counts is ahead of it: the owner
//!   counts those it never received as finished and reports. A window is made anew when
//!   its owner comes back into the view, with a `Sync` of 0, which resets the owner's
//!   ledger of this sender (credits of casts from before no longer count).
//!
//! Counts are cumulative, so a lost or late report is made up by the next one; a sender
//! never takes a report above what it sent. A cast through an entity's address (a typed
//! handle) never waits: it is counted in the window, so it slows the senders that ask,
//! but it goes even when the window is full (as a node's `send` does).

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

// The counters are hand-synchronised: loom's under the internal `loom` feature (the
// models in `flow/tests/loom_flow.rs`).
#[cfg(feature = "loom")]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(feature = "loom"))]
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Casts a node may have on the way to, or unhandled at, one other node, by default
/// ([`ShardedSpec::remote_window`](super::ShardedSpec::remote_window)).
pub const DEFAULT_REMOTE_WINDOW: usize = 4_096;

/// A sender's window of casts to one owner node.
#[derive(Debug)]
pub(crate) struct Window {
    /// Casts sent to the owner so far.
    sent: AtomicU64,
    /// Of those, how many the owner reported finished (or lost).
    done: AtomicU64,
    /// Woken when `done` grows.
    pub(crate) room: Notify,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            room: Notify::new(),
        }
    }
}

impl Window {
    /// Takes a place for one cast if fewer than `limit` are on the way or unhandled.
    pub(crate) fn admit(&self, limit: u64) -> bool {
        let done = self.done.load(Ordering::Acquire);
        self.sent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                if s.saturating_sub(done) < limit {
                    s.checked_add(1)
                } else {
                    None
                }
            })
            .is_ok()
    }

    /// Whether a cast would be admitted now.
    pub(crate) fn has_room(&self, limit: u64) -> bool {
        self.in_flight() < limit
    }

    /// Counts a cast sent without asking (a handle's cast, a message passed on).
    pub(crate) fn count(&self) {
        self.sent.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives back the place of a cast that could not be sent.
    pub(crate) fn unsend(&self) {
        let _ = self
            .sent
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| s.checked_sub(1));
    }

    /// Casts sent so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Casts on the way or unhandled, as far as this node knows.
    pub(crate) fn in_flight(&self) -> u64 {
        let done = self.done.load(Ordering::Acquire);
        self.sent.load(Ordering::Acquire).saturating_sub(done)
    }

    /// The owner reports `done` casts finished: room for as many more.
    pub(crate) fn credit(&self, done: u64) {
        let sent = self.sent.load(Ordering::Acquire);
        self.done.fetch_max(done.min(sent), Ordering::AcqRel);
        self.room.notify_waiters();
    }
}

/// What an owner's ledger reports to when one of its casts finishes.
pub(crate) trait Creditor: Send + Sync {
    /// A cast from `ledger`'s sender finished; `done` of them have now.
    fn finished(&self, ledger: &Arc<Ledger>, done: u64);
}

/// An owner's count of the casts one sender node sent it.
pub(crate) struct Ledger {
    /// The sender's tag (in its casts).
    pub(crate) tag: u64,
    /// The sender's node name, once known (its `Sync`, or its tag found in the view).
    pub(crate) name: OnceLock<Arc<str>>,
    /// Bumped when the sender starts counting anew: credits of older casts are void.
    generation: AtomicU64,
    received: AtomicU64,
    done: AtomicU64,
    /// The `done` count last reported.
    reported: AtomicU64,
    creditor: Weak<dyn Creditor>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("tag", &self.tag)
            .field("name", &self.name.get())
            .field("received", &self.received.load(Ordering::Relaxed))
            .field("done", &self.done.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Ledger {
    pub(crate) fn new(tag: u64, creditor: Weak<dyn Creditor>) -> Self {
        Self {
            tag,
            name: OnceLock::new(),
            generation: AtomicU64::new(0),
            received: AtomicU64::new(0),
            done: AtomicU64::new(0),
            reported: AtomicU64::new(0),
            creditor,
        }
    }

    /// A cast from the sender came: its credit, to travel with it to its entity.
    pub(crate) fn receive(self: &Arc<Self>) -> Credit {
        self.received.fetch_add(1, Ordering::AcqRel);
        Credit {
            ledger: self.clone(),
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// The sender says it sent `sent` casts, all of them ahead of this on their lane:
    /// those not received were lost, and count as finished. Fewer than received: the
    /// sender counts anew (its window was made again), and so does the ledger. Called
    /// for the sender's messages one at a time, in the order they came, as
    /// [`Ledger::receive`] is: the owner's reader of the sender's lane hands them on
    /// itself (a node's messages to one process keep one lane).
    pub(crate) fn sync(&self, sent: u64) {
        let received = self.received.load(Ordering::Acquire);
        if sent >= received {
            let lost = sent - received;
            self.received.fetch_add(lost, Ordering::AcqRel);
            self.done.fetch_add(lost, Ordering::AcqRel);
        } else {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.received.store(sent, Ordering::Release);
            self.done.store(sent, Ordering::Release);
            self.reported.store(0, Ordering::Release);
        }
    }

    /// Casts finished since the last report.
    pub(crate) fn unreported(&self) -> u64 {
        let done = self.done.load(Ordering::Acquire);
        done.saturating_sub(self.reported.load(Ordering::Acquire))
    }

    /// The `done` count to report now, if it grew since the last report (or always,
    /// with `force`).
    pub(crate) fn report(&self, force: bool) -> Option<u64> {
        let done = self.done.load(Ordering::Acquire);
        let before = self.reported.fetch_max(done, Ordering::AcqRel);
        (force || done > before).then_some(done)
    }
}

/// One cast's place in its sender's [`Ledger`]: finished when dropped (after its entity
/// handled it, or with the message if it is dropped or passed on).
pub(crate) struct Credit {
    ledger: Arc<Ledger>,
    generation: u64,
}

impl Drop for Credit {
    fn drop(&mut self) {
        let l = &self.ledger;
        if l.generation.load(Ordering::Acquire) != self.generation {
            return;
        }
        let done = l.done.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        if let Some(c) = l.creditor.upgrade() {
            c.finished(l, done);
        }
    }
}

/// The tag a node's casts carry: a hash of its name.
pub(crate) fn tag(node: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(node.as_bytes())
}

/// Why a cast through [`Sharded::try_cast`](super::Sharded::try_cast) or
/// [`Sharded::cast`](super::Sharded::cast) was not sent. The message is handed back
/// ([`CastError::into_inner`]).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum CastError<M> {
    /// The owner of the entity's shard, `node`, has as many casts from this node on the
    /// way or unhandled as the window allows
    /// ([`ShardedSpec::remote_window`](super::ShardedSpec::remote_window)), or the link to
    /// it holds as much as it may: try again later, or await
    /// [`Sharded::cast`](super::Sharded::cast), which waits for room.
    #[error(
        "the node {node} owning the entity's shard has too many casts from this node unhandled"
    )]
    Overloaded {
        /// The owner.
        node: String,
        /// The message.
        msg: M,
    },
    /// The owner of the entity's shard, `node`, cannot be reached now (it went down, or
    /// this node is shutting down).
    #[error("the node {node} owning the entity's shard cannot be reached: {why}")]
    Unreachable {
        /// The owner.
        node: String,
        /// Why.
        why: String,
        /// The message.
        msg: M,
    },
    /// No member can own the entity's shard (none offers its role).
    #[error("no member can own the entity's shard")]
    NoOwner(M),
    /// The key or the message has no wire form.
    #[error("the entity's key or the message does not encode: {why}")]
    Encode {
        /// Why.
        why: String,
        /// The message.
        msg: M,
    },
    /// The entities' runtime here has stopped for good (its region stopped, or it left).
    #[error("the sharded entities' runtime has stopped")]
    Stopped(M),
    /// The entity's region on this node is stopped for now (terminated or restarting by
    /// its supervisor): try again once it is back.
    #[error("the sharded entities' region here is stopped for now")]
    Unavailable(M),
}

impl<M> CastError<M> {
    /// A local entity's address refused `e`'s message: its region is down for now, or
    /// the runtime stopped for good.
    pub(crate) fn from_local(e: foundation_actors::SendError<M>) -> Self {
        match e {
            foundation_actors::SendError::Unavailable(m) => Self::Unavailable(m),
            e => Self::Stopped(e.into_inner()),
        }
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            Self::Overloaded { msg, .. }
            | Self::Unreachable { msg, .. }
            | Self::Encode { msg, .. }
            | Self::NoOwner(msg)
            | Self::Stopped(msg)
            | Self::Unavailable(msg) => msg,
        }
    }
}

impl<M> fmt::Debug for CastError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overloaded { node, .. } => f
                .debug_struct("Overloaded")
                .field("node", node)
                .finish_non_exhaustive(),
            Self::Unreachable { node, why, .. } => f
                .debug_struct("Unreachable")
                .field("node", node)
                .field("why", why)
                .finish_non_exhaustive(),
            Self::NoOwner(_) => f.write_str("NoOwner(..)"),
            Self::Encode { why, .. } => f
                .debug_struct("Encode")
                .field("why", why)
                .finish_non_exhaustive(),
            Self::Stopped(_) => f.write_str("Stopped(..)"),
            Self::Unavailable(_) => f.write_str("Unavailable(..)"),
        }
    }
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    mod loom_flow;
}

#[cfg(all(test, not(feature = "loom")))]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod unit {
    use super::*;

    struct Count(std::sync::Mutex<Vec<u64>>);

    impl Creditor for Count {
        fn finished(&self, _: &Arc<Ledger>, done: u64) {
            self.0.lock().unwrap().push(done);
        }
    }

    #[test]
    fn a_window_admits_up_to_its_limit_and_credits_make_room() {
        let w = Window::default();
        assert!(w.admit(2));
        assert!(w.admit(2));
        assert!(!w.admit(2));
        w.count(); // a handle's cast goes anyway
        assert_eq!(w.in_flight(), 3);
        w.credit(1);
        assert!(!w.has_room(2));
        w.credit(3);
        assert!(w.admit(2));
        // A report above what was sent (a stale ledger) is capped.
        w.credit(100);
        assert_eq!(w.in_flight(), 0);
        w.unsend();
        assert_eq!(w.sent(), 3);
    }

    #[test]
    fn a_ledger_counts_finished_casts_and_sync_makes_up_for_lost_ones() {
        let c: Arc<Count> = Arc::new(Count(std::sync::Mutex::new(Vec::new())));
        let weak: Weak<dyn Creditor> = Arc::downgrade(&c) as Weak<dyn Creditor>;
        let l = Arc::new(Ledger::new(7, weak));
        let one = l.receive();
        let two = l.receive();
        drop(one);
        assert_eq!(l.report(false), Some(1));
        assert_eq!(l.report(false), None);
        // The sender sent 5: 3 never came.
        l.sync(5);
        assert_eq!(l.report(false), Some(4));
        drop(two);
        assert_eq!(l.report(false), Some(5));
        // The sender counts anew: an old cast's credit no longer counts.
        let old = l.receive();
        l.sync(0);
        drop(old);
        assert_eq!(l.unreported(), 0);
        assert_eq!(*c.0.lock().unwrap(), vec![1, 5]);
    }

    #[test]
    fn counts_from_a_confused_or_hostile_peer_neither_panic_nor_open_a_window_too_far() {
        let c: Arc<Count> = Arc::new(Count(std::sync::Mutex::new(Vec::new())));
        let weak: Weak<dyn Creditor> = Arc::downgrade(&c) as Weak<dyn Creditor>;
        let l = Arc::new(Ledger::new(7, weak));
        l.sync(u64::MAX);
        drop(l.receive());
        l.sync(3);
        let _ = l.report(true);
        // A credit beyond what was sent opens the window only as far as it was filled.
        let w = Window::default();
        assert!(w.admit(1));
        w.credit(u64::MAX);
        assert_eq!(w.in_flight(), 0);
        assert!(w.admit(1));
        assert!(!w.admit(1));
    }
}
