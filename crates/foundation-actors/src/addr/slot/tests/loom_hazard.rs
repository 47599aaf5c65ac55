//! Models of the lock-free send's hazard protocol: a published value is never dropped while
//! a reader uses it (loom reports the cell's read racing its drop), and once `retire`
//! returns no reader gets it again; `retire_later` returns at once and the next writer
//! waits instead.

#![allow(clippy::unwrap_used)] // model tests unwrap: a failure is the point

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use super::super::hazard::Published;

/// `value`, published.
fn published(value: u32) -> Arc<Published<u32>> {
    let p = Arc::new(Published::new());
    p.publish(value);
    p
}

/// A reader that reads the value through the guard, if it gets one: a write racing the
/// read is reported.
fn reader(p: &Arc<Published<u32>>) -> thread::JoinHandle<Option<u32>> {
    let p = p.clone();
    thread::spawn(move || p.protect().map(|v| *v))
}

#[test]
fn loom_retire_waits_for_a_reader() {
    loom::model(|| {
        let p = published(1);
        let reader = reader(&p);
        p.publish(2);
        p.retire();

        let seen = reader.join().unwrap();
        assert!(matches!(seen, None | Some(1) | Some(2)), "{seen:?}");
    });
}

#[test]
fn loom_nothing_is_read_after_retire_returns() {
    loom::model(|| {
        let p = published(7);
        let retired = Arc::new(AtomicBool::new(false));

        let reader = {
            let (p, retired) = (p.clone(), retired.clone());
            thread::spawn(move || {
                if let Some(v) = p.protect() {
                    // Retire has not returned while a guard is held.
                    assert!(!retired.load(Ordering::SeqCst));
                    assert_eq!(*v, 7);
                }
            })
        };
        p.retire();
        retired.store(true, Ordering::SeqCst);
        // Once retired, nothing is handed out.
        assert!(p.protect().is_none());
        reader.join().unwrap();
    });
}

#[test]
fn loom_two_readers_and_a_writer() {
    loom::model(|| {
        let p = published(1);
        let readers = [reader(&p), reader(&p)];
        p.retire();
        for r in readers {
            assert!(matches!(r.join().unwrap(), None | Some(1)));
        }
    });
}

#[test]
fn loom_retire_later_leaves_the_value_to_its_reader_and_the_next_publish_waits() {
    loom::model(|| {
        let p = published(1);
        let reader = reader(&p);
        p.retire_later();
        // Unpublished at once, though the reader may still hold the value.
        assert!(p.protect().is_none());
        p.publish(2);

        let seen = reader.join().unwrap();
        assert!(matches!(seen, None | Some(1) | Some(2)), "{seen:?}");
        assert_eq!(p.protect().map(|v| *v), Some(2));
    });
}
