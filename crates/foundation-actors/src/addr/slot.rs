//! The slot behind a stable address: the current incarnation of a process, and the
//! messages that arrive while there is none.
//!
//! # Protocol
//!
//! A sender takes the read lock and delivers to the current incarnation. Only when that is
//! impossible (no incarnation yet, a restart under way, or the incarnation died before its
//! supervisor noticed) does it take the write lock and append to `pending`. The supervisor
//! takes the write lock to mark a restart, and to install a new incarnation: under that
//! lock it first delivers everything pending, in order, then publishes the incarnation. So a
//! sender's messages keep their order across a restart, and a send is either delivered,
//! held for the next incarnation, or handed back with an error.
//!
//! Because a sender delivers under the read lock and every change of incarnation takes the
//! write lock, when [`Slot::mark_restarting`] returns no sender is delivering to the old
//! incarnation and none will, and once [`Slot::mark_stopped`] returns every send is
//! refused. A delivery only pushes onto a mailbox: it never sends to a slot itself, so the
//! read lock is never taken twice on one thread.
//!
//! # Why a lock
//!
//! The read lock costs two atomic read-modify-writes per send (about 13 ns of a cast's
//! ~300). A lock-free send (hazard pointers, with `membarrier` as the writer's barrier) was
//! tried and taken out again: it bought 1–3 % on a cast, but cost a `membarrier` on every
//! restart (restart latency ~1.45× raw ractor's instead of ~1.25×), 8–16 ms of
//! registration in the kernel when a process started, and `unsafe` code whose proof had
//! gaps the loom models did not close (issue 20).
//!
//! Messages that a crashed incarnation had accepted into its mailbox are salvaged by the
//! actor glue and put back with [`Slot::requeue_front`], ahead of those held since; only
//! the message being handled when it crashed is lost.
//!
//! A *stop* is different, as in OTP: an incarnation that is stopped (by `Addr::stop`, by
//! its supervisor's `terminate_child` or shutdown, or because a sibling's restart takes it
//! down under `OneForAll`/`RestForOne`) or killed finishes at most the message in hand,
//! and the messages still queued in its mailbox are dropped. Held messages of a process
//! that stops for good are dropped with a warning.
//!
//! # Stop watchers
//!
//! A watcher is a callback run once when the slot stops for good. It is added under the
//! write lock, and refused if the slot has stopped already; the transition to `Stopped`
//! takes the watchers under the same lock, and runs them after releasing it (in the order
//! they were added). So a watcher either is refused, or runs exactly once, or is removed
//! before the stop and never runs: whatever the interleaving, never two of these.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::depth::Depth;
use crate::loom::{Mutex, RwLock, get_mut, lock, read, write};

/// Where a slot delivers: a live incarnation. Handing the message back means the
/// incarnation is gone.
pub(crate) trait Target<M>: Send + Sync {
    /// Delivers `m`, or hands it back if the incarnation has stopped.
    fn deliver(&self, m: M) -> Result<(), M>;

    /// After a refusal: whether the incarnation is gone for good (else its host is only
    /// down for now, and an unsupervised slot stays as it is). Default: `true`.
    fn gone(&self) -> bool {
        true
    }

    /// Whether the incarnation keeps the counts of its mailbox (see `depth.rs`): a sender
    /// counts each message in before delivering it. Default: `false`.
    fn counted(&self) -> bool {
        false
    }
}

/// The slot's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not yet started: messages are held.
    Starting,
    /// An incarnation is live.
    Running,
    /// Between incarnations: messages are held.
    Restarting,
    /// Terminated for good: messages are refused.
    Stopped,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The process has stopped for good.
    Stopped,
    /// Too many messages are held while the process restarts.
    Backlog,
    /// The target refused the message but is not gone: its host is down for now.
    Unavailable,
}

struct State<M, T> {
    phase: Phase,
    target: Option<T>,
    /// Held messages, boxed on first use: almost every slot never holds any, and every
    /// actor has a slot. Behind its own mutex so the state is `Sync` for messages that are
    /// only `Send`; under the write lock it is reached without locking (`get_mut`), and
    /// only a reader of its length (under the read lock) takes it.
    #[allow(clippy::box_collection)] // 8 bytes in every slot instead of 32
    pending: Mutex<Option<Box<VecDeque<M>>>>,
    /// Incarnations installed, for introspection.
    generation: u32,
    /// Callbacks to run when the slot stops for good, boxed on first use (few slots are
    /// watched).
    watchers: Option<Box<Watchers>>,
}

/// A callback run once, when a slot stops for good.
pub(crate) type StopFn = Box<dyn FnOnce() + Send + Sync>;

/// The stop watchers of one slot, in the order they were added.
#[derive(Default)]
struct Watchers {
    list: Vec<(u64, StopFn)>,
}

/// Watcher ids, unique in the process: an id is never reused, so removing a watcher by a
/// stale id (of one that ran before a static supervisor revived the slot) removes nothing.
static NEXT_WATCHER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs the watchers taken from a slot that has just stopped, outside its lock. A panic in
/// one is logged and does not keep the others from running (nor reach whoever stopped the
/// slot: a supervisor, or a sender).
fn run_watchers(watchers: Option<Box<Watchers>>) {
    let Some(watchers) = watchers else { return };
    for (_, f) in watchers.list {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            tracing::error!(
                panic = %crate::actor::panic_message(panic),
                "a stop callback (Addr::on_stop) panicked"
            );
        }
    }
}

/// A stable address's shared state.
pub(crate) struct Slot<M, T> {
    state: RwLock<State<M, T>>,
    /// Whether a supervisor will bring a new incarnation after a crash; if not, a dead
    /// incarnation means the process has stopped.
    supervised: AtomicBool,
    /// How many messages may be held between incarnations.
    backlog: AtomicU32,
    /// The counts of the live incarnation's mailbox, when its target keeps them: set anew
    /// at each [`Slot::install`] (see `depth.rs`).
    depth: Depth,
}

impl<M, T: Target<M>> Slot<M, T> {
    /// A slot with no incarnation yet.
    pub(crate) fn new(supervised: bool, backlog: usize) -> Self {
        Self {
            state: RwLock::new(State {
                phase: Phase::Starting,
                target: None,
                pending: Mutex::new(None),
                generation: 0,
                watchers: None,
            }),
            supervised: AtomicBool::new(supervised),
            backlog: AtomicU32::new(saturate(backlog)),
            depth: Depth::new(),
        }
    }

    /// Delivers `m` to `t`, counting it in first if `t` keeps counts (and back out if it
    /// is refused).
    #[inline(always)]
    fn deliver_to(&self, t: &T, m: M) -> Result<(), M> {
        let counted = t.counted();
        if counted {
            self.depth.will_send();
        }
        t.deliver(m).inspect_err(|_| {
            if counted {
                self.depth.unsent();
            }
        })
    }

    /// The incarnation took a message out of its mailbox (called by that incarnation
    /// only).
    #[inline]
    pub(crate) fn took(&self) {
        self.depth.took();
    }

    /// Delivers `m` to the current incarnation, or holds it for the next one.
    // Forced: left to itself the compiler keeps this out of line, and the call (frame,
    // spilled envelope) costs about as much as the read lock.
    #[inline(always)]
    pub(crate) fn send(&self, m: M) -> Result<(), (Refused, M)> {
        let m = {
            let s = read(&self.state);
            // There is a target exactly when the phase is `Running`: the hot path looks at
            // the target only.
            if let Some(t) = &s.target {
                debug_assert_eq!(s.phase, Phase::Running);
                match self.deliver_to(t, m) {
                    Ok(()) => return Ok(()),
                    Err(m) => m,
                }
            } else if s.phase == Phase::Stopped {
                return Err((Refused::Stopped, m));
            } else {
                m
            }
        };
        self.send_slow(m)
    }

    #[cold]
    fn send_slow(&self, m: M) -> Result<(), (Refused, M)> {
        let mut s = write(&self.state);
        let m = match (&s.phase, &s.target) {
            (Phase::Stopped, _) => return Err((Refused::Stopped, m)),
            (Phase::Running, Some(t)) => match self.deliver_to(t, m) {
                Ok(()) => return Ok(()),
                // The incarnation died and its supervisor has not handled that yet.
                Err(m) if self.supervised.load(Ordering::Relaxed) => m,
                // A hosted process whose host is down for now: refused, the slot kept.
                Err(m) if !t.gone() => return Err((Refused::Unavailable, m)),
                Err(m) => {
                    // Unsupervised, and its incarnation is gone: stopped for good.
                    s.phase = Phase::Stopped;
                    s.target = None;
                    let watchers = s.watchers.take();
                    drop(s);
                    run_watchers(watchers);
                    return Err((Refused::Stopped, m));
                }
            },
            _ => m,
        };
        // Under the write lock: the pending mutex is reached without locking it.
        let held = get_mut(&mut s.pending).get_or_insert_with(Box::default);
        if held.len() >= self.backlog.load(Ordering::Relaxed) as usize {
            return Err((Refused::Backlog, m));
        }
        held.push_back(m);
        Ok(())
    }

    /// Marks the start of a restart: messages are held until [`Slot::install`].
    pub(crate) fn mark_restarting(&self) {
        let mut s = write(&self.state);
        if s.phase != Phase::Stopped {
            s.phase = Phase::Restarting;
            s.target = None;
        }
    }

    /// Publishes a new incarnation after handing it every held message, in order.
    pub(crate) fn install(&self, target: T) {
        let mut s = write(&self.state);
        // No sender delivers now (the write lock), and the incarnation before, if any, is
        // gone: what its mailbox held went with it. The new one starts empty.
        self.depth.reset();
        {
            let pending = get_mut(&mut s.pending);
            if let Some(held) = pending.as_mut() {
                while let Some(m) = held.pop_front() {
                    if let Err(m) = self.deliver_to(&target, m) {
                        // The new incarnation died already; keep the rest for the next one.
                        held.push_front(m);
                        break;
                    }
                }
                if held.is_empty() {
                    *pending = None;
                }
            }
        }
        s.target = Some(target);
        s.phase = Phase::Running;
        s.generation = s.generation.saturating_add(1);
    }

    /// Puts messages salvaged from a crashed incarnation's mailbox before those held
    /// since (they were sent earlier). Returns them if the process has stopped for good.
    pub(crate) fn requeue_front(&self, salvaged: Vec<M>) -> Vec<M> {
        let mut s = write(&self.state);
        if s.phase == Phase::Stopped {
            return salvaged;
        }
        if !salvaged.is_empty() {
            let held = get_mut(&mut s.pending).get_or_insert_with(Box::default);
            for m in salvaged.into_iter().rev() {
                held.push_front(m);
            }
        }
        Vec::new()
    }

    /// Whether a supervisor brings new incarnations.
    pub(crate) fn is_supervised(&self) -> bool {
        self.supervised.load(Ordering::Relaxed)
    }

    /// Marks the process stopped for good, runs the stop watchers, and returns the messages
    /// it will never get.
    pub(crate) fn mark_stopped(&self) -> VecDeque<M> {
        let (lost, watchers) = {
            let mut s = write(&self.state);
            s.phase = Phase::Stopped;
            s.target = None;
            let lost = get_mut(&mut s.pending)
                .take()
                .map(|held| *held)
                .unwrap_or_default();
            (lost, s.watchers.take())
        };
        run_watchers(watchers);
        lost
    }

    /// Adds a callback to run once when the slot stops for good, and returns its id for
    /// [`Slot::unwatch`]; hands it back if the slot has stopped already.
    pub(crate) fn watch(&self, f: StopFn) -> Result<u64, StopFn> {
        let mut s = write(&self.state);
        if s.phase == Phase::Stopped {
            return Err(f);
        }
        let id = NEXT_WATCHER.fetch_add(1, Ordering::Relaxed);
        s.watchers
            .get_or_insert_with(Box::default)
            .list
            .push((id, f));
        Ok(id)
    }

    /// Removes a watcher that has not run; false if it has run (or is running) already.
    pub(crate) fn unwatch(&self, id: u64) -> bool {
        let removed = {
            let mut s = write(&self.state);
            let Some(w) = s.watchers.as_mut() else {
                return false;
            };
            let Some(i) = w.list.iter().position(|(wid, _)| *wid == id) else {
                return false;
            };
            let removed = w.list.remove(i);
            if w.list.is_empty() {
                s.watchers = None;
            }
            removed
        };
        // Dropped outside the lock: the callback's captures may have drops of their own.
        drop(removed);
        true
    }

    /// How many stop watchers wait, for the model tests.
    #[cfg(all(test, feature = "loom"))]
    pub(crate) fn watcher_count(&self) -> usize {
        read(&self.state)
            .watchers
            .as_ref()
            .map_or(0, |w| w.list.len())
    }

    /// Sets whether a supervisor brings new incarnations.
    pub(crate) fn set_supervised(&self, supervised: bool) {
        self.supervised.store(supervised, Ordering::Relaxed);
    }

    /// Sets how many messages may be held between incarnations.
    pub(crate) fn set_backlog(&self, n: usize) {
        self.backlog.store(saturate(n), Ordering::Relaxed);
    }

    /// The slot's phase.
    pub(crate) fn phase(&self) -> Phase {
        read(&self.state).phase
    }

    /// How many incarnations have been installed.
    pub(crate) fn generation(&self) -> u64 {
        u64::from(read(&self.state).generation)
    }

    /// Runs `f` on the current incarnation, if one is live.
    pub(crate) fn with_target<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let s = read(&self.state);
        match (&s.phase, &s.target) {
            (Phase::Running, Some(t)) => Some(f(t)),
            _ => None,
        }
    }

    /// `f` of the current incarnation (0 if none is live), and the messages held between
    /// incarnations, read under one lock: a restart between the two cannot count a
    /// message twice or not at all.
    /// The messages in the live incarnation's mailbox (0 if none is live, or it keeps no
    /// counts), and those held between incarnations, read under one lock: a restart
    /// between the two cannot count a message twice or not at all.
    pub(crate) fn queued(&self) -> (u64, usize) {
        let s = read(&self.state);
        let live = match (&s.phase, &s.target) {
            (Phase::Running, Some(t)) if t.counted() => self.depth.queued(),
            _ => 0,
        };
        let held = lock(&s.pending).as_ref().map_or(0, |held| held.len());
        (live, held)
    }

    /// How many messages are held between incarnations.
    pub(crate) fn pending_len(&self) -> usize {
        lock(&read(&self.state).pending)
            .as_ref()
            .map_or(0, |held| held.len())
    }
}

/// Backlogs beyond `u32::MAX` messages are as good as unbounded.
fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    mod loom_slot;
}
