//! Models of the slot's lock-based protocol: senders deliver under the read lock, and every
//! change of incarnation (restart, install, stop) takes the write lock.
//!
//! - A restart racing a sender: every message the sender was told was accepted reaches the
//!   old incarnation (while alive) or the new one, exactly once, in the order sent.
//! - No send reaches the old incarnation once `mark_restarting` has returned.
//! - A stop racing a sender: every message is delivered, returned by the stop, or refused,
//!   exactly once; and no send reaches the incarnation once `mark_stopped` has returned.
//! - Stop watchers run exactly once, or are refused, or are removed, whatever races them.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::super::{Phase, Refused, Slot, Target};

#[derive(Clone, Default)]
struct Incarnation {
    alive: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<u32>>>,
    /// Set once the supervisor's `mark_restarting` (or `mark_stopped`) has returned: no send
    /// may reach this incarnation after that.
    sealed: Arc<AtomicBool>,
}

impl Incarnation {
    fn live() -> Self {
        let i = Self::default();
        i.alive.store(true, Ordering::SeqCst);
        i
    }

    /// The incarnation dies: its mailbox refuses from now on.
    fn crash(&self) {
        let _mailbox = self.got.lock().unwrap();
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// A supervised slot with a live incarnation installed, and that incarnation.
fn running() -> (Arc<Slot<u32, Incarnation>>, Incarnation) {
    let slot = Arc::new(Slot::new(true, 16));
    let old = Incarnation::live();
    slot.install(old.clone());
    (slot, old)
}

/// A sender sending 1 to `n`, each of which must be accepted.
fn send_all(slot: &Arc<Slot<u32, Incarnation>>, n: u32) -> thread::JoinHandle<()> {
    let slot = slot.clone();
    thread::spawn(move || {
        for m in 1..=n {
            assert!(slot.send(m).is_ok());
        }
    })
}

/// What the old incarnation got, then what the new one got.
fn delivered(old: &Incarnation, new: &Incarnation) -> Vec<u32> {
    let mut all = old.got.lock().unwrap().clone();
    all.extend(new.got.lock().unwrap().iter().copied());
    all
}

impl Target<u32> for Incarnation {
    fn deliver(&self, m: u32) -> Result<(), u32> {
        // Holding the mailbox lock across the liveness check mirrors a channel whose
        // receiver is dropped atomically with respect to a send.
        let mut got = self.got.lock().unwrap();
        assert!(
            !self.sealed.load(Ordering::SeqCst),
            "a send reached the old incarnation after mark_restarting returned"
        );
        if self.alive.load(Ordering::SeqCst) {
            got.push(m);
            Ok(())
        } else {
            Err(m)
        }
    }
}

#[test]
fn loom_restart_keeps_order_and_loses_nothing() {
    loom::model(|| {
        let (slot, old) = running();
        let sender = send_all(&slot, 3);

        // The supervisor: the old incarnation crashes, is noticed, and is replaced.
        old.crash();
        slot.mark_restarting();
        let new = Incarnation::live();
        slot.install(new.clone());

        sender.join().unwrap();
        assert_eq!(delivered(&old, &new), vec![1, 2, 3]);
        assert_eq!(slot.phase(), Phase::Running);
    });
}

#[test]
fn loom_no_send_reaches_the_old_incarnation_after_mark_restarting() {
    loom::model(|| {
        // A restart that takes down a live incarnation (a sibling's, under `OneForAll`): the
        // sender may hold the read lock, mid-delivery, when the supervisor marks the restart.
        let (slot, old) = running();
        let sender = send_all(&slot, 2);

        slot.mark_restarting();
        old.sealed.store(true, Ordering::SeqCst);
        let new = Incarnation::live();
        slot.install(new.clone());

        sender.join().unwrap();
        assert_eq!(delivered(&old, &new), vec![1, 2]);
    });
}

#[test]
fn loom_stop_refuses_or_returns_every_message() {
    loom::model(|| {
        let (slot, old) = running();
        let sender = {
            let slot = slot.clone();
            thread::spawn(move || {
                let mut refused = Vec::new();
                for m in 1..=2 {
                    if let Err((_, m)) = slot.send(m) {
                        refused.push(m);
                    }
                }
                refused
            })
        };

        old.crash();
        let held = slot.mark_stopped();
        let refused = sender.join().unwrap();

        // Every message is accounted for exactly once: delivered, held then returned by
        // mark_stopped, or refused to the sender.
        let mut all = old.got.lock().unwrap().clone();
        all.extend(held);
        all.extend(refused);
        all.sort_unstable();
        assert_eq!(all, vec![1, 2]);
    });
}

#[test]
fn loom_no_send_reaches_the_incarnation_after_mark_stopped() {
    loom::model(|| {
        // A stop for good racing a sender while the incarnation is still alive (`Addr::stop`,
        // `terminate_child`): a send already under way may still be delivered, but none once
        // `mark_stopped` has returned, and after one refusal every later send is refused too.
        let (slot, old) = running();
        let sender = {
            let slot = slot.clone();
            thread::spawn(move || {
                let mut refused = Vec::new();
                for m in 1..=2 {
                    match slot.send(m) {
                        Ok(()) => assert!(refused.is_empty(), "accepted after a refusal"),
                        Err((why, m)) => {
                            assert_eq!(why, Refused::Stopped);
                            refused.push(m);
                        }
                    }
                }
                refused
            })
        };

        let held = slot.mark_stopped();
        old.sealed.store(true, Ordering::SeqCst);
        let refused = sender.join().unwrap();

        // The incarnation was alive throughout: nothing was held, and the messages it got
        // and those refused are 1 and 2, in that order.
        assert!(held.is_empty());
        let mut all = old.got.lock().unwrap().clone();
        all.extend(refused);
        assert_eq!(all, vec![1, 2]);
        assert_eq!(slot.phase(), Phase::Stopped);
    });
}

/// Counts the runs of a stop watcher.
fn counting_watcher(runs: &Arc<Mutex<u32>>) -> super::super::StopFn {
    let runs = runs.clone();
    Box::new(move || *runs.lock().unwrap() += 1)
}

#[test]
fn loom_watch_racing_stop_runs_once_or_is_refused() {
    loom::model(|| {
        let slot = Arc::new(Slot::<u32, Incarnation>::new(false, 16));
        slot.install(Incarnation::live());
        let runs = Arc::new(Mutex::new(0));

        let watcher = {
            let (slot, runs) = (slot.clone(), runs.clone());
            thread::spawn(move || slot.watch(counting_watcher(&runs)).is_ok())
        };
        slot.mark_stopped();
        let accepted = watcher.join().unwrap();

        // Accepted: it ran exactly once (by the stop, which came after). Refused: never.
        assert_eq!(*runs.lock().unwrap(), u32::from(accepted));
        assert_eq!(slot.watcher_count(), 0);
    });
}

#[test]
fn loom_unwatch_racing_stop_runs_at_most_once() {
    loom::model(|| {
        let slot = Arc::new(Slot::<u32, Incarnation>::new(false, 16));
        slot.install(Incarnation::live());
        let runs = Arc::new(Mutex::new(0));
        let id = slot
            .watch(counting_watcher(&runs))
            .unwrap_or_else(|_| panic!("a running slot refused a watcher"));

        let canceller = {
            let slot = slot.clone();
            thread::spawn(move || slot.unwatch(id))
        };
        slot.mark_stopped();
        let removed = canceller.join().unwrap();

        // Removed before the stop: never runs. Otherwise the stop ran it, once.
        assert_eq!(*runs.lock().unwrap(), u32::from(!removed));
        assert_eq!(slot.watcher_count(), 0);
    });
}

#[test]
fn loom_stop_seen_by_a_sender_runs_watchers_once() {
    loom::model(|| {
        // Unsupervised: a sender that finds the incarnation dead marks the slot stopped,
        // racing the task's own end (`mark_stopped`). Watchers run once either way.
        let slot = Arc::new(Slot::<u32, Incarnation>::new(false, 16));
        let old = Incarnation::live();
        slot.install(old.clone());
        let runs = Arc::new(Mutex::new(0));
        assert!(slot.watch(counting_watcher(&runs)).is_ok());
        old.crash();

        let sender = {
            let slot = slot.clone();
            thread::spawn(move || slot.send(1).is_err())
        };
        slot.mark_stopped();
        assert!(sender.join().unwrap());
        assert_eq!(*runs.lock().unwrap(), 1);
        assert_eq!(slot.phase(), Phase::Stopped);
    });
}
