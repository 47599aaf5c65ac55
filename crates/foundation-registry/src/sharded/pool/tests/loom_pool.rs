//! Models of the runner tasks' pool (see `pool.rs`): senders queue runs while runner
//! threads take them, wait for their bell, end, or block in a run (a handler awaiting),
//! and a new runner is spawned when the pool says so.
//!
//! - Every queued run is taken exactly once, with no close needed: a run left queued
//!   while every runner waits would leave every thread blocked, which loom reports as a
//!   deadlock.
//! - The pool's invariant (a queued run has a free runner that is not waiting) holds
//!   after every step: `Pool::check` asserts it in these (debug) builds.
//! - After a close, every runner ends.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread::{self, JoinHandle};

use super::super::{Pool, Step, Wake};

/// A runner's bell as tokio's `Notify` behaves for one waiter: a ring before the wait is
/// kept (one permit), and a wait returns only after a ring (loom's own `Notify` may wake
/// spuriously, which tokio's does not).
#[derive(Default)]
struct Notify {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Notify {
    fn new() -> Self {
        Self::default()
    }

    fn notify(&self) {
        *self.rung.lock().unwrap() = true;
        self.cv.notify_one();
    }

    fn wait(&self) {
        let mut rung = self.rung.lock().unwrap();
        while !*rung {
            rung = self.cv.wait(rung).unwrap();
        }
        *rung = false;
    }
}

type Bell = Arc<Notify>;

/// The pool, the runs taken, the runner threads, and a bell rung once every run is taken.
#[derive(Clone)]
struct World {
    pool: Arc<Mutex<Pool<u32, Bell>>>,
    taken: Arc<Mutex<Vec<u32>>>,
    runners: Arc<Mutex<Vec<JoinHandle<()>>>>,
    total: usize,
    all_taken: Bell,
}

impl World {
    fn new(workers: usize, total: usize) -> Self {
        Self {
            pool: Arc::new(Mutex::new(Pool::new(workers))),
            taken: Arc::new(Mutex::new(Vec::new())),
            runners: Arc::new(Mutex::new(Vec::new())),
            total,
            all_taken: Arc::new(Notify::new()),
        }
    }

    /// Does what the pool said: rings a bell or spawns a runner thread.
    fn wake(&self, wake: Wake<Bell>) {
        match wake {
            Wake::None => {}
            Wake::Ring(bell) => bell.notify(),
            Wake::Spawn => {
                let w = self.clone();
                let h = thread::spawn(move || w.runner());
                self.runners.lock().unwrap().push(h);
            }
        }
    }

    fn push(&self, run: u32) {
        let wake = self.pool.lock().unwrap().push(run);
        self.wake(wake);
    }

    /// A runner: an odd run blocks (its handler awaits) before it is done.
    fn runner(&self) {
        let bell = Arc::new(Notify::new());
        loop {
            let step = self.pool.lock().unwrap().next(&bell);
            match step {
                Step::Run(r) => {
                    if r % 2 == 1 {
                        let wake = self.pool.lock().unwrap().blocked();
                        self.wake(wake);
                        self.take(r);
                        self.pool.lock().unwrap().unblocked();
                    } else {
                        self.take(r);
                    }
                }
                Step::Wait => bell.wait(),
                Step::End => return,
            }
        }
    }

    fn take(&self, r: u32) {
        let mut taken = self.taken.lock().unwrap();
        taken.push(r);
        if taken.len() == self.total {
            self.all_taken.notify();
        }
    }

    /// Waits until every run is taken, then closes the pool and joins every runner.
    fn finish(&self, runs: &[u32]) {
        self.all_taken.wait();
        let idle = self.pool.lock().unwrap().close();
        for bell in idle {
            bell.notify();
        }
        loop {
            let h = self.runners.lock().unwrap().pop();
            match h {
                Some(h) => h.join().unwrap(),
                None => break,
            }
        }
        let mut taken = self.taken.lock().unwrap().clone();
        taken.sort_unstable();
        assert_eq!(taken, runs);
    }
}

#[test]
fn two_senders_one_worker_every_run_taken_once() {
    loom::model(|| {
        let w = World::new(1, 2);
        let a = {
            let w = w.clone();
            thread::spawn(move || w.push(2))
        };
        let b = {
            let w = w.clone();
            thread::spawn(move || w.push(4))
        };
        a.join().unwrap();
        b.join().unwrap();
        w.finish(&[2, 4]);
    });
}

#[test]
fn a_blocked_run_hands_the_queue_on() {
    loom::model(|| {
        let w = World::new(1, 2);
        let a = {
            let w = w.clone();
            thread::spawn(move || {
                w.push(1);
                w.push(2);
            })
        };
        a.join().unwrap();
        w.finish(&[1, 2]);
    });
}

#[test]
fn two_workers_a_run_while_a_runner_goes_to_wait() {
    loom::model(|| {
        let w = World::new(2, 2);
        w.push(2);
        let a = {
            let w = w.clone();
            thread::spawn(move || w.push(3))
        };
        a.join().unwrap();
        w.finish(&[2, 3]);
    });
}
