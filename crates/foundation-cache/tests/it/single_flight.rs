//! `get_or_compute`: one computation per key for concurrent misses, errors and panics
//! shared by every waiter with nothing cached, and a dropped caller leaving the
//! computation to the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foundation_cache::{Cache, ComputeError, Local, Ttl};
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{Shared, join_all};

use crate::support::now;

#[derive(Debug, PartialEq)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database is down")
    }
}

/// A compute function that counts its runs and finishes when `gate` fires.
fn gated<T: Send + 'static>(
    runs: &Arc<AtomicUsize>,
    gate: &Shared<oneshot::Receiver<()>>,
    result: T,
) -> impl FnOnce() -> futures::future::BoxFuture<'static, T> + Send + 'static {
    let runs = Arc::clone(runs);
    let gate = gate.clone();
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = gate.await;
            result
        }
        .boxed()
    }
}

fn cache() -> Local<u32, String> {
    Local::builder().max_entries(100).build().unwrap()
}

#[test]
fn concurrent_misses_on_one_key_run_one_computation() {
    let c = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let (open, gate) = oneshot::channel::<()>();
    let gate = gate.shared();
    let callers = (0..50).map(|_| {
        c.get_or_compute(
            1,
            Ttl::Default,
            gated(&runs, &gate, Ok::<_, Boom>("v".to_owned())),
        )
    });
    let mut all = Box::pin(join_all(callers));
    // One poll of every caller: all have missed and wait on the one computation.
    assert!((&mut all).now_or_never().is_none());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    open.send(()).unwrap();
    let results = futures::executor::block_on(all);
    assert!(results.iter().all(|r| matches!(r, Ok(v) if v == "v")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(now(c.get(&1)), Ok(Some("v".to_owned())));
    let stats = c.stats();
    assert_eq!((stats.misses, stats.writes, stats.hits), (50, 1, 1));

    // A hit runs nothing.
    let again = now(c.get_or_compute(1, Ttl::Default, || async { Err::<String, Boom>(Boom) }));
    assert_eq!(again.unwrap(), "v");
}

#[test]
fn a_failing_computation_caches_nothing_and_every_waiter_gets_its_error() {
    let c = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let (open, gate) = oneshot::channel::<()>();
    let gate = gate.shared();
    let callers = (0..10)
        .map(|_| c.get_or_compute(1, Ttl::Default, gated(&runs, &gate, Err::<String, _>(Boom))));
    let mut all = Box::pin(join_all(callers));
    assert!((&mut all).now_or_never().is_none());
    open.send(()).unwrap();
    let results = futures::executor::block_on(all);
    let errors: Vec<Arc<Boom>> = results
        .into_iter()
        .map(|r| match r {
            Err(e @ ComputeError::Compute { .. }) => {
                assert_eq!(
                    e.to_string(),
                    "the compute function failed: the database is down"
                );
                match e {
                    ComputeError::Compute {
                        message,
                        node: None,
                        error: Some(error),
                    } if message == "the database is down" => error,
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])),
        "the same error, shared"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(now(c.get(&1)), Ok(None));
    assert_eq!(c.stats().writes, 0);

    // The next miss runs the function again.
    let v = now(c.get_or_compute(1, Ttl::Default, || async { Ok::<_, Boom>("w".to_owned()) }));
    assert_eq!(v.unwrap(), "w");
}

#[test]
fn a_panicking_computation_gives_every_waiter_an_error_and_leaves_the_cache_usable() {
    let c = cache();
    let (open, gate) = oneshot::channel::<()>();
    let gate = gate.shared();
    let first = c.get_or_compute(1, Ttl::Default, {
        let gate = gate.clone();
        move || async move {
            let _ = gate.await;
            if true {
                panic!("compute failed loudly");
            }
            Ok::<String, Boom>(String::new())
        }
    });
    let second = c.get_or_compute(1, Ttl::Default, || async {
        Ok::<_, Boom>("never".to_owned())
    });
    let mut both = Box::pin(futures::future::join(first, second));
    assert!((&mut both).now_or_never().is_none());
    open.send(()).unwrap();
    let (a, b) = futures::executor::block_on(both);
    // The same variant and message for both: the panic's.
    for r in [&a, &b] {
        assert!(
            matches!(r, Err(ComputeError::Panicked { message, node: None }) if message == "compute failed loudly"),
            "{r:?}"
        );
    }
    assert_eq!(
        a.unwrap_err().to_string(),
        "the compute function panicked: compute failed loudly"
    );
    assert_eq!(now(c.get(&1)), Ok(None));
    now(c.put(1, "ok".to_owned(), Ttl::Default)).unwrap();
    assert_eq!(now(c.get(&1)), Ok(Some("ok".to_owned())));
}

#[test]
fn a_dropped_caller_leaves_its_computation_to_the_waiters() {
    let c = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let (open, gate) = oneshot::channel::<()>();
    let gate = gate.shared();
    let mut leader = Box::pin(c.get_or_compute(
        1,
        Ttl::Default,
        gated(&runs, &gate, Ok::<_, Boom>("v".to_owned())),
    ));
    let mut waiter = Box::pin(c.get_or_compute(
        1,
        Ttl::Default,
        gated(&runs, &gate, Ok::<_, Boom>("x".to_owned())),
    ));
    assert!((&mut leader).now_or_never().is_none());
    assert!((&mut waiter).now_or_never().is_none());
    drop(leader);
    open.send(()).unwrap();
    let v = futures::executor::block_on(waiter).unwrap();
    assert_eq!(v, "v", "the leader's computation, carried on by the waiter");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(now(c.get(&1)), Ok(Some("v".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_from_many_tasks_compute_each_key_at_most_once_while_it_is_cached() {
    // Tasks on two threads race on 8 keys; the value is cached with no TTL and nothing
    // is evicted, so each key's function runs at most once.
    let c = cache();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let (c, runs) = (c.clone(), Arc::clone(&runs));
            tokio::spawn(async move {
                let key = i % 8;
                c.get_or_compute(key, Ttl::Never, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, Boom>(key.to_string())
                })
                .await
                .map(|v| (key, v))
            })
        })
        .collect();
    for t in tasks {
        let (key, v) = t.await.unwrap().unwrap();
        assert_eq!(v, key.to_string());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 8);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever the callers and keys: with every caller waiting before any computation
    /// ends, each distinct key's function runs once and every caller gets its key's value.
    #[test]
    fn each_key_computes_once_for_any_set_of_concurrent_callers(
        keys in proptest::collection::vec(0..6u32, 1..40)
    ) {
        let c = cache();
        let runs = Arc::new(AtomicUsize::new(0));
        let (open, gate) = oneshot::channel::<()>();
        let gate = gate.shared();
        let callers = keys.iter().map(|&k| {
            c.get_or_compute(k, Ttl::Default, gated(&runs, &gate, Ok::<_, Boom>(k.to_string())))
        });
        let mut all = Box::pin(join_all(callers));
        proptest::prop_assert!((&mut all).now_or_never().is_none());
        open.send(()).unwrap();
        let results = futures::executor::block_on(all);
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        proptest::prop_assert_eq!(runs.load(Ordering::SeqCst), distinct.len());
        for (k, r) in keys.iter().zip(results) {
            proptest::prop_assert_eq!(r.unwrap(), k.to_string());
        }
        proptest::prop_assert_eq!(c.stats().writes, distinct.len() as u64);
    }
}
