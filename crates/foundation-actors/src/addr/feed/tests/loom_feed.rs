//! Models of the feed protocol ([`Feed`]'s docs) with the real doorbell: a sender queues
//! and rings when the feed is not rung; the process drains a doorbell until the feed says
//! it is empty; a doorbell dropped unhandled tells the feed.
//!
//! - A sender racing the process draining: every message is handled exactly once, in the
//!   order queued, and none is left queued without a doorbell on its way.
//! - A kill (the mailbox dropped with its doorbell) racing a sender: the feed is not left
//!   rung with no doorbell; the next message queued rings, and everything queued is then
//!   handled, in order.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use std::collections::VecDeque;

use loom::sync::{Arc, Mutex};
use loom::thread;

use super::super::{Doorbell, Feed};
use crate::context::Context;

/// A feed as the trait's docs describe it: a queue and its `rung` flag under one lock.
#[derive(Default)]
struct Queue(Mutex<(VecDeque<u32>, bool)>);

impl Feed<u32> for Queue {
    fn next(&self) -> Option<(Option<Context>, u32)> {
        let mut q = self.0.lock().unwrap();
        let next = q.0.pop_front();
        if next.is_none() {
            q.1 = false;
        }
        next.map(|m| (None, m))
    }

    fn unrung(&self) {
        self.0.lock().unwrap().1 = false;
    }
}

/// A mailbox of doorbells.
type Mailbox = Arc<Mutex<VecDeque<Doorbell<u32>>>>;

/// Queues `m`, and rings (pushes a doorbell into the mailbox) if the feed was not rung.
fn queue(feed: &std::sync::Arc<Queue>, mailbox: &Mailbox, m: u32) {
    let ring = {
        let mut q = feed.0.lock().unwrap();
        q.0.push_back(m);
        !std::mem::replace(&mut q.1, true)
    };
    if ring {
        let feed: std::sync::Arc<dyn Feed<u32>> = feed.clone();
        mailbox
            .lock()
            .unwrap()
            .push_back(Doorbell { feed: Some(feed) });
    }
}

/// Handles the doorbells in the mailbox now, each until its feed has none.
fn drain(mailbox: &Mailbox, handled: &mut Vec<u32>) {
    loop {
        let Some(mut bell) = mailbox.lock().unwrap().pop_front() else {
            return;
        };
        while let Some((_, m)) = bell.next() {
            handled.push(m);
        }
    }
}

#[test]
fn loom_feed_a_sender_racing_the_drain_strands_nothing() {
    loom::model(|| {
        let feed = std::sync::Arc::new(Queue::default());
        let mailbox: Mailbox = Arc::default();
        let sender = {
            let (feed, mailbox) = (feed.clone(), mailbox.clone());
            thread::spawn(move || {
                for m in 1..=2 {
                    queue(&feed, &mailbox, m);
                }
            })
        };
        let process = {
            let mailbox = mailbox.clone();
            thread::spawn(move || {
                let mut handled = Vec::new();
                drain(&mailbox, &mut handled);
                handled
            })
        };
        sender.join().unwrap();
        let mut handled = process.join().unwrap();
        // What the process has not reached yet has its doorbell in the mailbox.
        drain(&mailbox, &mut handled);
        assert_eq!(handled, [1, 2]);
        let q = feed.0.lock().unwrap();
        assert!(q.0.is_empty() && !q.1, "drained, and no longer rung");
    });
}

#[test]
fn loom_feed_a_kill_racing_a_sender_leaves_it_to_the_next_ring() {
    loom::model(|| {
        let feed = std::sync::Arc::new(Queue::default());
        let mailbox: Mailbox = Arc::default();
        queue(&feed, &mailbox, 1);
        let sender = {
            let (feed, mailbox) = (feed.clone(), mailbox.clone());
            thread::spawn(move || queue(&feed, &mailbox, 2))
        };
        // The kill: the mailbox's doorbells are dropped unhandled.
        let killed: Vec<Doorbell<u32>> = mailbox.lock().unwrap().drain(..).collect();
        drop(killed);
        sender.join().unwrap();
        // The next incarnation: the next message queued rings if nothing is on its way.
        queue(&feed, &mailbox, 3);
        let mut handled = Vec::new();
        drain(&mailbox, &mut handled);
        assert_eq!(handled, [1, 2, 3]);
        let q = feed.0.lock().unwrap();
        assert!(q.0.is_empty() && !q.1, "drained, and no longer rung");
    });
}
