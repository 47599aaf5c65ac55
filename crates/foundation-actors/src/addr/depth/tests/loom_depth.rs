//! Models of a mailbox's counts ([`Depth`]): senders count a message in before they put it
//! in the mailbox (and take the count back if it is refused), the incarnation counts it out
//! when it takes it, and an observer reads the two.
//!
//! - An observer never sees more messages taken than sent, whatever it races.
//! - Once everyone is done, the depth is exactly what is left in the mailbox.
//! - A delivery refused by a mailbox that closed meanwhile leaves no count behind.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::super::Depth;

/// A mailbox as ractor's channel behaves for this purpose: a push and a pop under one lock
/// (a happens-before edge from the push to the pop), refused once closed.
#[derive(Default)]
struct Mailbox {
    queue: Mutex<VecDeque<u32>>,
    closed: AtomicBool,
}

struct Incarnation {
    mailbox: Mailbox,
    depth: Depth,
}

impl Incarnation {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            mailbox: Mailbox::default(),
            depth: Depth::new(),
        })
    }

    /// A sender's delivery, as the address's route does it: counted in first, counted back
    /// out if refused. Whether it was accepted.
    fn send(&self, m: u32) -> bool {
        self.depth.will_send();
        let mut q = self.mailbox.queue.lock().unwrap();
        if self.mailbox.closed.load(Ordering::Relaxed) {
            drop(q);
            self.depth.unsent();
            return false;
        }
        q.push_back(m);
        true
    }

    /// The incarnation's take of one message, if there is one.
    fn take(&self) -> Option<u32> {
        let m = self.mailbox.queue.lock().unwrap().pop_front()?;
        self.depth.took();
        Some(m)
    }

    fn close(&self) {
        let _q = self.mailbox.queue.lock().unwrap();
        self.mailbox.closed.store(true, Ordering::Relaxed);
    }

    fn left(&self) -> u64 {
        self.mailbox.queue.lock().unwrap().len() as u64
    }

    /// The observer's check: never more taken than sent.
    fn observe(&self) {
        let (taken, sent) = self.depth.counts();
        assert!(taken <= sent, "taken {taken} > sent {sent}");
        assert!(sent <= 2);
    }
}

#[test]
fn an_observer_never_sees_more_taken_than_sent_and_the_end_count_is_exact() {
    loom::model(|| {
        let inc = Incarnation::new();
        let sender = {
            let inc = inc.clone();
            thread::spawn(move || {
                for m in 1..=2 {
                    assert!(inc.send(m));
                }
            })
        };
        let taker = {
            let inc = inc.clone();
            thread::spawn(move || {
                let mut got = 0;
                for _ in 0..2 {
                    if inc.take().is_some() {
                        got += 1;
                    }
                    inc.observe();
                }
                got
            })
        };
        inc.observe();
        sender.join().unwrap();
        let got = taker.join().unwrap();
        assert_eq!(inc.depth.queued(), inc.left());
        assert_eq!(inc.depth.queued(), 2 - got);
    });
}

#[test]
fn a_delivery_refused_by_a_closing_mailbox_leaves_no_count() {
    loom::model(|| {
        let inc = Incarnation::new();
        let sender = {
            let inc = inc.clone();
            thread::spawn(move || (1..=2).filter(|m| inc.send(*m)).count() as u64)
        };
        let taker = {
            let inc = inc.clone();
            thread::spawn(move || {
                let got = u64::from(inc.take().is_some());
                inc.close();
                inc.observe();
                got
            })
        };
        inc.observe();
        let accepted = sender.join().unwrap();
        let got = taker.join().unwrap();
        assert_eq!(inc.depth.queued(), accepted - got);
        assert_eq!(inc.depth.queued(), inc.left());
    });
}
