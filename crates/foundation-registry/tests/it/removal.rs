//! Entries go when their process stops for good, and stay across its restarts.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_registry::{Mode, RegisterError, Registry};

use crate::support::{Msg, Worker, restarted, stopped, worker};

#[tokio::test]
async fn an_unsupervised_process_that_stops_loses_its_names() {
    for how in ["stop", "fail", "kill"] {
        let names: Registry<String, Msg> = Registry::unique();
        let groups: Registry<String, Msg> = Registry::duplicate();
        let a = worker().await;
        names.register("a".into(), &a, ()).unwrap();
        names.register("also-a".into(), &a, ()).unwrap();
        groups.register("g".into(), &a, ()).unwrap();
        let gone = stopped(&a);
        match how {
            "stop" => a.stop(None),
            "fail" => a.cast(Msg::Fail).unwrap(),
            _ => a.kill(),
        }
        gone.await;
        assert!(names.whereis("a").is_none(), "{how}");
        assert!(names.is_empty(), "{how}: entries left behind");
        assert!(names.keys(&a).is_empty(), "{how}");
        assert!(groups.is_empty(), "{how}");
        // The name is free again.
        names.register("a".into(), &worker().await, ()).unwrap();
    }
}

#[tokio::test]
async fn a_supervised_restart_keeps_the_names() {
    let names: Registry<String, Msg, u32> = Registry::unique();
    let spec = ChildSpec::new("w", Worker, ());
    let addr = spec.addr();
    names.register("w".into(), &addr, 7).unwrap();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(10, Duration::from_secs(5))
            .child(spec),
    )
    .await
    .unwrap();
    let mut events = sup.subscribe();

    names.cast("w", Msg::Say("before".into())).unwrap();
    names.cast("w", Msg::Fail).unwrap();
    restarted(&mut events).await;
    assert_eq!(addr.incarnation(), 2);

    // Same entry, same value, reaching the new incarnation.
    assert_eq!(names.lookup("w").len(), 1);
    assert_eq!(names.lookup("w")[0].1, 7);
    names.cast("w", Msg::Say("after".into())).unwrap();
    assert_eq!(names.call("w", Msg::Heard).await.unwrap(), ["after"]);

    // Terminated for good: gone, by the time the supervisor answers.
    sup.terminate_child("w").await.unwrap();
    assert!(names.whereis("w").is_none());
    assert!(names.is_empty());

    // Brought back by restart_child: a new life, without its old names (as a new pid).
    sup.restart_child("w").await.unwrap();
    assert!(addr.is_running());
    assert!(names.whereis("w").is_none());
    names.register("w".into(), &addr, 8).unwrap();
    assert_eq!(
        names.call("w", Msg::Heard).await.unwrap(),
        Vec::<String>::new()
    );

    sup.shutdown().await;
    assert!(names.is_empty());
}

#[tokio::test]
async fn temporary_and_transient_children_lose_their_names_when_they_end() {
    let names: Registry<String, Msg> = Registry::new(Mode::Unique);
    let sup = DynamicSupervisor::start("dyn", None).await.unwrap();
    let temp = sup
        .start_child(ChildSpec::new("temp", Worker, ()).restart(Restart::Temporary))
        .await
        .unwrap();
    let trans = sup
        .start_child(ChildSpec::new("trans", Worker, ()).restart(Restart::Transient))
        .await
        .unwrap();
    names.register("temp".into(), &temp, ()).unwrap();
    names.register("trans".into(), &trans, ()).unwrap();

    let gone = stopped(&temp);
    temp.cast(Msg::Fail).unwrap();
    gone.await;
    assert!(names.whereis("temp").is_none());

    // A transient child that fails is restarted (keeps its name); one that stops
    // normally is not (loses it).
    let mut events = sup.handle().subscribe();
    trans.cast(Msg::Fail).unwrap();
    restarted(&mut events).await;
    assert!(names.whereis("trans").is_some());
    let gone = stopped(&trans);
    trans.stop(None);
    gone.await;
    assert!(names.whereis("trans").is_none());
    assert!(names.is_empty());
    sup.shutdown().await;
}

#[tokio::test]
async fn a_supervisor_shutdown_removes_its_childrens_names() {
    let names: Registry<String, Msg> = Registry::unique();
    let mut spec = SupervisorSpec::new("sup", Strategy::OneForAll);
    for i in 0..5 {
        let child = ChildSpec::new(format!("c{i}"), Worker, ());
        names.register(format!("c{i}"), &child.addr(), ()).unwrap();
        spec = spec.child(child);
    }
    let sup = Supervisor::start(spec).await.unwrap();
    assert_eq!(names.count(), 5);
    sup.shutdown().await;
    assert!(names.is_empty());
}

#[tokio::test]
async fn registering_a_stopped_process_is_refused() {
    let names: Registry<String, Msg> = Registry::duplicate();
    let a = worker().await;
    let gone = stopped(&a);
    a.stop(None);
    gone.await;
    match names.register("a".into(), &a, ()) {
        Err(RegisterError::Stopped { key }) => assert_eq!(key, "a"),
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert!(names.is_empty());
}

#[tokio::test]
async fn a_dropped_registry_leaves_the_process_alone() {
    let a = worker().await;
    {
        let names: Registry<String, Msg> = Registry::unique();
        names.register("a".into(), &a, ()).unwrap();
    }
    // The registry's hook was cancelled with it: stopping is uneventful.
    let gone = stopped(&a);
    a.stop(None);
    gone.await;
}

#[tokio::test]
async fn many_processes_come_and_go_without_leftovers() {
    let names: Registry<u32, Msg> = Registry::unique();
    let groups: Registry<u32, Msg> = Registry::duplicate();
    for round in 0..20u32 {
        let mut addrs = Vec::new();
        for i in 0..10 {
            let a = worker().await;
            names.register(round * 100 + i, &a, ()).unwrap();
            groups.register(i % 3, &a, ()).unwrap();
            addrs.push(a);
        }
        for a in &addrs {
            let gone = stopped(a);
            a.stop(None);
            gone.await;
        }
        assert!(names.is_empty(), "round {round}");
        assert!(groups.is_empty(), "round {round}");
    }
}
