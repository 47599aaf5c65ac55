//! Registrations racing each other and racing the death of their process.

use std::sync::{Arc, Barrier, Mutex};

use foundation_actors::prelude::*;
use foundation_registry::{RegisterError, Registry};

use crate::support::{Msg, Worker, stopped, unstarted, worker};

#[test]
fn of_concurrent_registrations_of_a_unique_key_exactly_one_wins() {
    const THREADS: usize = 8;
    let names: Registry<String, Msg> = Registry::unique();
    for round in 0..100 {
        let key = format!("k{round}");
        let barrier = Arc::new(Barrier::new(THREADS));
        let addrs: Vec<Addr<Msg>> = (0..THREADS).map(|i| unstarted(&format!("t{i}"))).collect();
        let outcomes: Vec<Result<(), RegisterError<String, Msg>>> = std::thread::scope(|s| {
            let handles: Vec<_> = addrs
                .iter()
                .map(|addr| {
                    let (names, key, barrier) = (&names, key.clone(), barrier.clone());
                    s.spawn(move || {
                        barrier.wait();
                        names.register(key, addr, ())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = (0..THREADS).filter(|&i| outcomes[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        let winner = &addrs[winners[0]];
        for o in &outcomes {
            if let Err(e) = o {
                match e {
                    RegisterError::AlreadyRegistered { holder, .. } => {
                        assert!(holder.same_process(winner))
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(names.whereis(key.as_str()).unwrap().same_process(winner));
        assert_eq!(names.count_key(key.as_str()), 1);
    }
    assert_eq!(names.count(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_racing_the_process_death_leave_nothing_behind() {
    let names: Registry<String, Msg> = Registry::unique();
    let groups: Registry<u8, Msg> = Registry::duplicate();
    let sup = DynamicSupervisor::start("dyn", None).await.unwrap();
    let (mut kept, mut refused) = (0, 0);
    for round in 0..200 {
        let addr = sup
            .start_child(
                ChildSpec::new(format!("c{round}"), Worker, ()).restart(Restart::Temporary),
            )
            .await
            .unwrap();
        let registering = {
            let (names, groups, addr) = (names.clone(), groups.clone(), addr.clone());
            tokio::task::spawn_blocking(move || {
                let mut outcomes = Vec::new();
                for i in 0..8u8 {
                    outcomes.push(names.register(format!("r{round}-{i}"), &addr, ()).is_ok());
                    outcomes.push(groups.register(i % 2, &addr, ()).is_ok());
                }
                outcomes
            })
        };
        // The supervisor runs the stop hooks before it answers.
        sup.terminate_child_by_addr(&addr).await.unwrap();
        for ok in registering.await.unwrap() {
            if ok { kept += 1 } else { refused += 1 }
        }
        // Whatever the interleaving, once both are done no entry of the dead process is left.
        assert!(
            names.is_empty(),
            "round {round}: {} names left",
            names.count()
        );
        assert!(
            groups.is_empty(),
            "round {round}: {} entries left",
            groups.count()
        );
        assert!(names.keys(&addr).is_empty() && groups.keys(&addr).is_empty());
        // And a registration now is refused.
        assert!(matches!(
            names.register("late".into(), &addr, ()),
            Err(RegisterError::Stopped { .. })
        ));
    }
    // Both sides of the race were seen (the counts are reported, not asserted on).
    eprintln!(
        "registrations that succeeded then went with the process: {kept}; refused: {refused}"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_unregister_from_many_threads_stay_consistent() {
    let groups: Registry<u8, Msg, usize> = Registry::duplicate();
    let addrs: Vec<Addr<Msg>> = (0..4).map(|i| unstarted(&format!("a{i}"))).collect();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (groups, addrs) = (groups.clone(), addrs.clone());
            std::thread::spawn(move || {
                for i in 0..2_000usize {
                    let addr = &addrs[(t + i) % addrs.len()];
                    let key = (i % 5) as u8;
                    groups.register(key, addr, t).unwrap();
                    if i % 3 != 0 {
                        groups.unregister_match(&key, addr, |v| *v == t);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // The count, the key index and the per-process index agree.
    let entries: usize = (0..5u8).map(|k| groups.count_key(&k)).sum();
    assert_eq!(entries, groups.count());
    let by_process: usize = addrs.iter().map(|a| groups.keys(a).len()).sum();
    assert_eq!(by_process, groups.count());
    for a in &addrs {
        for k in 0..5u8 {
            groups.unregister(&k, a);
        }
    }
    assert!(groups.is_empty());
}

#[tokio::test]
async fn a_unique_key_whose_holder_is_seen_stopped_is_free_at_once() {
    let names: Registry<String, Msg> = Registry::unique();
    let a = worker().await;
    let b = worker().await;
    // This hook runs before the registry's (it was added first): the registry still has
    // a's entry, but a is stopped. Taking the key over must succeed, and the registry's
    // own hook, running next, must leave b's entry alone.
    let took_over = Arc::new(Mutex::new(None));
    {
        let (names, a2, b, took_over) = (names.clone(), a.clone(), b.clone(), took_over.clone());
        a.on_stop(move || {
            assert!(a2.is_stopped());
            *took_over.lock().unwrap() = Some(names.register("k".into(), &b, ()).is_ok());
        })
        .unwrap();
    }
    names.register("k".into(), &a, ()).unwrap();
    let gone = stopped(&a);
    a.stop(None);
    gone.await;
    assert_eq!(*took_over.lock().unwrap(), Some(true));
    assert!(names.whereis("k").unwrap().same_process(&b));
    assert_eq!(names.count(), 1);
    assert_eq!(names.keys(&b), ["k"]);
    assert!(names.keys(&a).is_empty());
}
