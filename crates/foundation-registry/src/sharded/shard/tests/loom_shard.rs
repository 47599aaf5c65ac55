//! Models of a shard's runner protocol (see `shard.rs`): senders queue messages for one
//! entity while whoever was told to run it (a sender here, a task in the runtime) runs it,
//! and a passivation races both.
//!
//! - Every accepted message is handled exactly once, each sender's in the order sent.
//! - Never two messages of one entity at once (one runner at a time).
//! - A passivation saves the state and the next message starts from it: no update is lost
//!   and no two live copies of the state exist.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::super::{Next, Shard};

/// The shard, the entity's saved state, what was handled, and a flag raised while a
/// message is being handled.
#[derive(Clone)]
struct World {
    shard: Arc<Mutex<Shard<u8, u32, u32>>>,
    saved: Arc<Mutex<Option<u32>>>,
    log: Arc<Mutex<Vec<u32>>>,
    handling: Arc<AtomicBool>,
}

impl World {
    fn new() -> Self {
        let mut shard = Shard::new(8, 8);
        shard.release(0);
        Self {
            shard: Arc::new(Mutex::new(shard)),
            saved: Arc::new(Mutex::new(None)),
            log: Arc::new(Mutex::new(Vec::new())),
            handling: Arc::new(AtomicBool::new(false)),
        }
    }

    /// What a runner task does, run on this thread: the message it was handed first, if
    /// any, with the state handed beside it (else the state taken from the shard), then
    /// what the shard gives it.
    fn run(&self, key: u8, hand: Option<(u32, Option<u32>)>) {
        let mut state = match hand {
            Some((m, handed)) => {
                let mut state = handed;
                self.handle(&mut state, m);
                state
            }
            None => self.shard.lock().unwrap().take_state(&key),
        };
        loop {
            let step = self.shard.lock().unwrap().next(&key, &mut state);
            match step {
                Next::Park => return,
                Next::Stop => {
                    let s = state.take();
                    *self.saved.lock().unwrap() = s;
                }
                Next::Start => {
                    state = Some(self.saved.lock().unwrap().take().unwrap_or(0));
                }
                Next::Msg(m) => self.handle(&mut state, m),
            }
        }
    }

    /// Handles `m`, starting the entity (from its saved state) if it has none.
    fn handle(&self, state: &mut Option<u32>, m: u32) {
        if state.is_none() {
            *state = Some(self.saved.lock().unwrap().take().unwrap_or(0));
        }
        assert!(!self.handling.swap(true, Ordering::SeqCst), "two at once");
        self.log.lock().unwrap().push(m);
        *state.as_mut().unwrap() += 1;
        self.handling.store(false, Ordering::SeqCst);
    }

    /// Sends `msgs` to entity 0, running it whenever told to.
    fn send(&self, msgs: &[u32]) {
        for &m in msgs {
            let d = self.shard.lock().unwrap().deliver(&0, m, 0).unwrap();
            if d.run {
                self.run(0, d.hand);
            }
        }
    }

    /// The handled count the entity ends with: parked state or saved state, never both.
    fn count(&self) -> u32 {
        let mut shard = self.shard.lock().unwrap();
        let parked = shard.take_state(&0);
        let saved = *self.saved.lock().unwrap();
        match (parked, saved) {
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => 0,
            (Some(a), Some(b)) => panic!("two copies of the state: {a} and {b}"),
        }
    }
}

fn in_order(log: &[u32], of: &[u32]) -> bool {
    let mine: Vec<u32> = log.iter().copied().filter(|m| of.contains(m)).collect();
    mine == of
}

#[test]
fn two_senders_one_runner_at_a_time_each_message_once_in_order() {
    loom::model(|| {
        let w = World::new();
        let a = {
            let w = w.clone();
            thread::spawn(move || w.send(&[1, 2]))
        };
        let b = {
            let w = w.clone();
            thread::spawn(move || w.send(&[11]))
        };
        a.join().unwrap();
        b.join().unwrap();
        let log = w.log.lock().unwrap().clone();
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(in_order(&log, &[1, 2]), "{log:?}");
        assert_eq!(w.count(), 3);
    });
}

#[test]
fn a_passivation_racing_senders_loses_no_update() {
    loom::model(|| {
        let w = World::new();
        // The entity has started and is idle.
        w.send(&[1]);
        let a = {
            let w = w.clone();
            thread::spawn(move || w.send(&[2, 3]))
        };
        let p = {
            let w = w.clone();
            thread::spawn(move || {
                let run = w.shard.lock().unwrap().request_stop(&0);
                if run {
                    w.run(0, None);
                }
            })
        };
        a.join().unwrap();
        p.join().unwrap();
        let log = w.log.lock().unwrap().clone();
        assert_eq!(log, [1, 2, 3]);
        assert_eq!(w.count(), 3);
    });
}

#[test]
fn a_drain_racing_a_first_message_handles_it_once_or_holds_it() {
    loom::model(|| {
        let w = World::new();
        let a = {
            let w = w.clone();
            // Entity 0's first message: handed to the runner it starts, not queued.
            thread::spawn(move || w.send(&[1]))
        };
        let d = {
            let w = w.clone();
            thread::spawn(move || {
                let keys = w.shard.lock().unwrap().drain();
                for k in keys {
                    w.run(k, None);
                }
            })
        };
        a.join().unwrap();
        d.join().unwrap();
        let mut shard = w.shard.lock().unwrap();
        // Drained: every entity stopped (its state saved), nothing left running.
        assert_eq!(shard.len(), 0);
        let held = shard.end_drain();
        let log = w.log.lock().unwrap().clone();
        match (log.as_slice(), held.len()) {
            ([1], 0) => assert_eq!(*w.saved.lock().unwrap(), Some(1)),
            ([], 1) => assert_eq!(held[0], (0, 1)),
            other => panic!("handled and held: {other:?}"),
        }
    });
}
