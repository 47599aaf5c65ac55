//! Models of the flow control's counters (see `flow.rs`): senders taking places in a
//! window while the owner's credits come back, and an owner's ledger whose casts finish
//! while the sender asks it to count again.
//!
//! - Places taken never exceed the window, whatever the interleaving of admits and
//!   credits; every place taken is counted as sent.
//! - Every cast received and finished is reported (the last report, or the next one,
//!   carries it); a finish racing a `Sync` never makes `done` exceed `received`.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use std::sync::{Arc, Mutex, Weak};

use loom::thread;

use super::super::{Creditor, Ledger, Window};

#[test]
fn two_senders_never_take_more_places_than_the_window() {
    loom::model(|| {
        let w = Arc::new(Window::default());
        let sender =
            |w: Arc<Window>| thread::spawn(move || (0..2).filter(|_| w.admit(2)).count() as u64);
        let a = sender(w.clone());
        let b = sender(w.clone());
        let credit = {
            let w = w.clone();
            thread::spawn(move || w.credit(1))
        };
        let taken = a.join().unwrap() + b.join().unwrap();
        credit.join().unwrap();
        // At most the window, plus the one place a credit may have freed meanwhile.
        assert!((2..=3).contains(&taken), "{taken} places taken");
        assert_eq!(w.sent(), taken);
        assert!(w.in_flight() <= 2, "{} in flight", w.in_flight());
    });
}

struct Reports(Mutex<Vec<u64>>);

impl Creditor for Reports {
    fn finished(&self, ledger: &Arc<Ledger>, _: u64) {
        if let Some(done) = ledger.report(false) {
            self.0.lock().unwrap().push(done);
        }
    }
}

#[test]
fn finished_casts_racing_a_sync_are_all_reported_once() {
    loom::model(|| {
        let reports = Arc::new(Reports(Mutex::new(Vec::new())));
        let weak: Weak<dyn Creditor> = Arc::downgrade(&reports) as Weak<dyn Creditor>;
        let l = Arc::new(Ledger::new(1, weak));
        let one = l.receive();
        let two = l.receive();
        let a = thread::spawn(move || drop(one));
        let b = thread::spawn(move || drop(two));
        // The sender sent 3: one was lost on the way.
        l.sync(3);
        a.join().unwrap();
        b.join().unwrap();
        // Whatever was not reported by a finish is reported now.
        let last = l.report(true).unwrap();
        assert_eq!(last, 3);
        let seen = reports.0.lock().unwrap().clone();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(seen.iter().all(|d| *d <= 3), "{seen:?}");
    });
}
