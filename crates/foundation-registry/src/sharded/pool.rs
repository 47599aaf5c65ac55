//! The runner tasks of one `Sharded`: the bookkeeping, without I/O, kept under one mutex
//! by the runtime (`runtime.rs`), which spawns the tasks and rings their bells.
//!
//! An entity with work is run (its queued messages handled, then parked: see `shard.rs`)
//! by a runner task. A task takes queued runs one after another and, when none is
//! queued, waits for the next instead of ending: a message to an idle entity then wakes
//! a waiting task rather than spawning one (a tokio spawn, with its aligned allocation
//! and its copy of the future, cost more than the rest of a message's path: about 1,700
//! of 3,400 instructions).
//!
//! How many tasks: at most as many *free* tasks (alive, and not inside a run that is
//! waiting on something) as the runtime has workers, so a flood of runs to idle
//! entities does not spawn a task per run; the free tasks take the queue in turn. A run
//! whose handler waits (I/O, a call) makes its task *blocked*: if runs are queued then,
//! a waiting task is woken or a new one spawned for them, so a waiting handler never
//! holds up other entities. A task that finds nothing to do ends when as many tasks
//! wait as the runtime has workers.
//!
//! Each waiting task has its own bell, a notification whose permit is kept if it rings
//! before the task waits. The protocol, every step under the pool's lock:
//!
//! - [`Pool::push`] queues a run and takes one waiting task off the list to ring, or
//!   asks for a spawn, or neither when enough free tasks exist.
//! - [`Pool::next`] is a free task's step: the next run, or to wait (its bell goes on
//!   the list), or to end.
//! - [`Pool::blocked`] / [`Pool::unblocked`]: the task's run waits / has ended after
//!   waiting.
//! - [`Pool::close`]: the region has stopped: the waiting tasks are rung and end.
//!
//! The invariant that makes it lose no run: whenever a run is queued, more tasks are
//! free than wait (some free task is not waiting, and will take it). It is checked after
//! every step in debug builds, and the loom model in `sharded/pool/tests/loom_pool.rs`
//! checks that every run is taken exactly once with producers, tasks and blocking racing.

use std::collections::VecDeque;

/// The room for queued runs kept once the queue is empty: a burst up to this size (a
/// frame of casts from a peer, say) queues without growing the queue again each time.
const KEEP_RUNS: usize = 256;

/// What the caller of [`Pool::push`] or [`Pool::blocked`] does next, outside the lock.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake<B> {
    /// Nothing: a free task will take the run.
    None,
    /// Ring this waiting task's bell.
    Ring(B),
    /// Spawn a new task (already counted as free).
    Spawn,
}

/// A free task's next step ([`Pool::next`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<R> {
    /// Do this run.
    Run(R),
    /// Wait for the bell (it is on the list).
    Wait,
    /// End (no longer counted).
    End,
}

/// The queued runs `R` and the waiting tasks' bells `B`.
pub(crate) struct Pool<R, B> {
    runs: VecDeque<R>,
    idle: Vec<B>,
    /// Tasks alive and not blocked in a run (those waiting included).
    free: usize,
    /// How many free tasks are enough, and how many may wait: the runtime's workers.
    workers: usize,
    /// The region has stopped: tasks end once the queue is empty.
    closed: bool,
}

impl<R, B> Pool<R, B> {
    /// An empty pool for a runtime with `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            runs: VecDeque::new(),
            idle: Vec::new(),
            free: 0,
            workers: workers.max(1),
            closed: false,
        }
    }

    /// Opens the pool (again) on a runtime with `workers` workers.
    pub(crate) fn open(&mut self, workers: usize) {
        self.workers = workers.max(1);
        self.closed = false;
    }

    /// Queues `run`; who is to take it.
    pub(crate) fn push(&mut self, run: R) -> Wake<B> {
        self.runs.push_back(run);
        let wake = self.wake();
        self.check();
        wake
    }

    /// A task for the queued runs: a waiting one, else a new one if too few are free.
    fn wake(&mut self) -> Wake<B> {
        if let Some(bell) = self.idle.pop() {
            Wake::Ring(bell)
        } else if self.free < self.workers {
            self.free += 1;
            Wake::Spawn
        } else {
            Wake::None
        }
    }

    /// A free task's next step; `bell` is its own, put on the list when it is to wait.
    pub(crate) fn next(&mut self, bell: &B) -> Step<R>
    where
        B: Clone,
    {
        if self.runs.is_empty() && self.runs.capacity() > KEEP_RUNS {
            // A burst of runs (a flood of first messages) grew the queue: its room is
            // given back down to `KEEP_RUNS`, not kept per entity it once held.
            self.runs.shrink_to(KEEP_RUNS);
        }
        let step = if let Some(run) = self.runs.pop_front() {
            Step::Run(run)
        } else if self.closed || self.idle.len() >= self.workers {
            self.free = self.free.saturating_sub(1);
            Step::End
        } else {
            self.idle.push(bell.clone());
            Step::Wait
        };
        self.check();
        step
    }

    /// The calling task's run waits on something: it is not free until
    /// [`Pool::unblocked`]; who is to take the queued runs meanwhile.
    pub(crate) fn blocked(&mut self) -> Wake<B> {
        self.free = self.free.saturating_sub(1);
        let wake = if self.runs.is_empty() {
            Wake::None
        } else {
            self.wake()
        };
        self.check();
        wake
    }

    /// The calling task's run, blocked before, has ended: the task is free again.
    pub(crate) fn unblocked(&mut self) {
        self.free += 1;
        self.check();
    }

    /// The region has stopped: the waiting tasks, to ring (they end).
    pub(crate) fn close(&mut self) -> Vec<B> {
        self.closed = true;
        let idle = std::mem::take(&mut self.idle);
        self.check();
        idle
    }

    /// The invariant (see the module docs): every waiting task is free, and a queued run
    /// has a free task that is not waiting. Checked in debug builds and in the loom
    /// models (run in release).
    fn check(&self) {
        if cfg!(any(debug_assertions, feature = "loom")) {
            assert!(self.free >= self.idle.len(), "a waiting task is not free");
            assert!(
                self.runs.is_empty() || self.free > self.idle.len(),
                "a run is queued and every free task waits"
            );
        }
    }
}

#[cfg(all(test, not(feature = "loom")))]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod unit {
    use super::*;

    #[test]
    fn runs_go_to_a_waiting_task_else_a_new_one_up_to_the_workers() {
        let mut p: Pool<u32, &str> = Pool::new(2);
        assert_eq!(p.push(1), Wake::Spawn);
        assert_eq!(p.push(2), Wake::Spawn);
        // Two free tasks: a third run waits for one of them.
        assert_eq!(p.push(3), Wake::None);
        assert_eq!(p.next(&"a"), Step::Run(1));
        assert_eq!(p.next(&"b"), Step::Run(2));
        assert_eq!(p.next(&"a"), Step::Run(3));
        assert_eq!(p.next(&"a"), Step::Wait);
        assert_eq!(p.next(&"b"), Step::Wait);
        // Both wait: the next run rings one, not a spawn.
        assert_eq!(p.push(4), Wake::Ring("b"));
        assert_eq!(p.next(&"b"), Step::Run(4));
        assert_eq!(p.next(&"b"), Step::Wait);
    }

    #[test]
    fn a_blocked_run_hands_the_queue_to_another_task() {
        let mut p: Pool<u32, &str> = Pool::new(1);
        assert_eq!(p.push(1), Wake::Spawn);
        assert_eq!(p.next(&"a"), Step::Run(1));
        assert_eq!(p.push(2), Wake::None);
        // Run 1 waits on I/O: run 2 gets a new task.
        assert_eq!(p.blocked(), Wake::Spawn);
        assert_eq!(p.next(&"b"), Step::Run(2));
        assert_eq!(p.next(&"b"), Step::Wait);
        // Run 1 has ended: `a` finds nothing, and as many tasks wait as there are
        // workers: it ends.
        p.unblocked();
        assert_eq!(p.next(&"a"), Step::End);
        assert_eq!(p.push(3), Wake::Ring("b"));
        assert_eq!(p.next(&"b"), Step::Run(3));
        // Blocked with nothing queued: nobody is woken.
        assert_eq!(p.blocked(), Wake::None);
        p.unblocked();
        assert_eq!(p.next(&"b"), Step::Wait);
    }

    #[test]
    fn a_closed_pool_rings_its_waiting_tasks_and_they_end_once_the_queue_is_empty() {
        let mut p: Pool<u32, &str> = Pool::new(2);
        assert_eq!(p.push(1), Wake::Spawn);
        assert_eq!(p.next(&"a"), Step::Run(1));
        assert_eq!(p.next(&"a"), Step::Wait);
        assert_eq!(p.push(2), Wake::Ring("a"));
        assert_eq!(p.next(&"a"), Step::Run(2));
        assert_eq!(p.next(&"a"), Step::Wait);
        assert_eq!(p.close(), vec!["a"]);
        assert_eq!(p.next(&"a"), Step::End);
        // Opened again, it spawns as before.
        p.open(2);
        assert_eq!(p.push(3), Wake::Spawn);
    }

    #[test]
    fn a_burst_gives_its_room_back_down_to_what_a_frame_of_casts_needs() {
        let mut p: Pool<u32, &str> = Pool::new(1);
        let burst = |p: &mut Pool<u32, &str>, n: u32| {
            for r in 0..n {
                p.push(r);
            }
            for r in 0..n {
                assert_eq!(p.next(&"a"), Step::Run(r));
            }
            assert_eq!(p.next(&"a"), Step::Wait);
            p.push(n);
            assert_eq!(p.next(&"a"), Step::Run(n));
        };
        // A flood of 10,000 first messages: its room is not kept.
        burst(&mut p, 10_000);
        assert_eq!(p.next(&"a"), Step::Wait);
        assert!(p.runs.capacity() <= 2 * KEEP_RUNS, "{}", p.runs.capacity());
        // Bursts that fit are queued in the room kept, without growing it each time.
        let kept = p.runs.capacity();
        assert!(kept >= KEEP_RUNS, "{kept}");
        for _ in 0..3 {
            burst(&mut p, KEEP_RUNS as u32 - 1);
            assert_eq!(p.runs.capacity(), kept);
        }
    }
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    mod loom_pool;
}
