//! Naming a process through a registry, and reaching it or its group by name.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_registry::{RegisterError, Registry, StartError, ViaCallError, ViaCastError};

use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::support::{Listener, Msg, PATIENCE, Worker, restarted, stopped, unstarted};

#[tokio::test]
async fn start_child_names_the_child_before_it_runs_and_across_restarts() {
    let names: Registry<String, Msg, &'static str> = Registry::unique();
    let sup = DynamicSupervisor::start("dyn", None).await.unwrap();
    let spec = ChildSpec::new("w", Worker, ());
    let addr = names
        .start_child(sup.handle(), "w".into(), "meta", spec)
        .await
        .unwrap();
    assert!(names.whereis("w").unwrap().same_process(&addr));
    assert_eq!(names.lookup("w")[0].1, "meta");

    names.cast("w", Msg::Say("one".into())).unwrap();
    let mut events = sup.handle().subscribe();
    names.cast("w", Msg::Fail).unwrap();
    restarted(&mut events).await;
    names.cast("w", Msg::Say("two".into())).unwrap();
    assert_eq!(names.call("w", Msg::Heard).await.unwrap(), ["two"]);

    sup.terminate_child_by_addr(&addr).await.unwrap();
    assert!(names.whereis("w").is_none());
    let e = names.call("w", Msg::Heard).await.unwrap_err();
    assert_eq!(
        e,
        ViaCallError::NotRegistered {
            key: "\"w\"".into()
        }
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn a_taken_name_starts_nothing_and_names_the_holder() {
    let names: Registry<String, Msg> = Registry::unique();
    let sup = DynamicSupervisor::start("dyn", None).await.unwrap();
    let first = names
        .start_child(
            sup.handle(),
            "w".into(),
            (),
            ChildSpec::new("w1", Worker, ()),
        )
        .await
        .unwrap();
    let second = ChildSpec::new("w2", Worker, ());
    let second_addr = second.addr();
    match names
        .start_child(sup.handle(), "w".into(), (), second)
        .await
    {
        Err(StartError::Register(RegisterError::AlreadyRegistered { key, holder })) => {
            assert_eq!(key, "w");
            assert!(holder.same_process(&first));
        }
        other => panic!("expected AlreadyRegistered, got {:?}", other.map(|_| ())),
    }
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    assert!(!second_addr.is_running());

    // Unsupervised: the actor runs its init, then is stopped again.
    match names.spawn("w".into(), (), Worker, ()).await {
        Err(StartError::Register(RegisterError::AlreadyRegistered { holder, .. })) => {
            assert!(holder.same_process(&first));
        }
        other => panic!("expected AlreadyRegistered, got {:?}", other.map(|_| ())),
    }
    assert!(names.whereis("w").unwrap().same_process(&first));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_failed_start_leaves_no_name() {
    let names: Registry<String, Msg> = Registry::unique();
    let sup = DynamicSupervisor::start("dyn", Some(1)).await.unwrap();
    names
        .start_child(
            sup.handle(),
            "one".into(),
            (),
            ChildSpec::new("one", Worker, ()),
        )
        .await
        .unwrap();
    // max_children is 1: the supervisor refuses the second child.
    let e = names
        .start_child(
            sup.handle(),
            "two".into(),
            (),
            ChildSpec::new("two", Worker, ()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StartError::Start(_)), "{e:?}");
    assert!(names.whereis("two").is_none());

    // A supervisor that is not running at all.
    sup.shutdown().await;
    let e = names
        .start_child(
            sup.handle(),
            "three".into(),
            (),
            ChildSpec::new("three", Worker, ()),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StartError::Start(_)), "{e:?}");
    assert!(names.is_empty());
}

#[tokio::test]
async fn spawn_names_an_unsupervised_process() {
    let names: Registry<String, Msg> = Registry::unique();
    let addr = names.spawn("solo".into(), (), Worker, ()).await.unwrap();
    names.cast("solo", Msg::Say("hi".into())).unwrap();
    assert_eq!(names.call("solo", Msg::Heard).await.unwrap(), ["hi"]);
    let gone = stopped(&addr);
    addr.stop(None);
    gone.await;
    assert!(names.whereis("solo").is_none());
}

#[tokio::test]
async fn messages_to_a_name_before_its_process_starts_are_held() {
    let names: Registry<String, Msg> = Registry::unique();
    let spec = ChildSpec::new("late", Worker, ());
    names.register("late".into(), &spec.addr(), ()).unwrap();
    names.cast("late", Msg::Say("early".into())).unwrap();
    let sup = DynamicSupervisor::start("dyn", None).await.unwrap();
    sup.start_child(spec).await.unwrap();
    assert_eq!(names.call("late", Msg::Heard).await.unwrap(), ["early"]);
    sup.shutdown().await;
}

#[tokio::test]
async fn cast_and_call_errors_name_the_key_and_give_the_message_back() {
    let names: Registry<String, Msg> = Registry::unique();
    let e = names.cast("nobody", Msg::Say("lost?".into())).unwrap_err();
    assert!(e.to_string().contains("\"nobody\""), "{e}");
    assert!(matches!(e.into_inner(), Msg::Say(s) if s == "lost?"));

    let e = names
        .call_timeout("nobody", Msg::Heard, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"nobody\""), "{e}");

    // A call that gets no answer in time.
    let silent = unstarted("silent");
    names.register("silent".into(), &silent, ()).unwrap();
    let e = names
        .call_timeout("silent", Msg::Heard, Duration::from_millis(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ViaCallError::Call {
                source: CallError::Timeout(_),
                ..
            }
        ),
        "{e:?}"
    );
    // A cast to it is held for its start: no error.
    names.cast("silent", Msg::Say("held".into())).unwrap();
    assert!(matches!(
        names.cast("nobody", Msg::Fail),
        Err(ViaCastError::NotRegistered { .. })
    ));
}

#[tokio::test]
async fn dispatch_and_cast_all_reach_every_member_of_a_group() {
    let groups: Registry<String, String, usize> = Registry::duplicate();
    let (out, mut heard) = mpsc::unbounded_channel();
    let mut members = Vec::new();
    for n in 0..4 {
        let a = spawn(
            Listener {
                n,
                out: out.clone(),
            },
            (),
        )
        .await
        .unwrap();
        groups.register("room".into(), &a, n).unwrap();
        members.push(a);
    }
    assert_eq!(groups.cast_all("room", "all".to_string()), 4);
    let n = groups.dispatch("room", |entries| {
        for (addr, n) in entries {
            addr.cast(format!("to {n}")).unwrap();
        }
    });
    assert_eq!(n, 4);
    let mut got = Vec::new();
    while got.len() < 8 {
        got.push(timeout(PATIENCE, heard.recv()).await.unwrap().unwrap());
    }
    got.sort();
    let mut want: Vec<(usize, String)> = (0..4)
        .flat_map(|n| [(n, "all".to_string()), (n, format!("to {n}"))])
        .collect();
    want.sort();
    assert_eq!(got, want);

    // A member that stops leaves the group.
    let (tx, rx) = tokio::sync::oneshot::channel();
    members[0].on_stop(move || {
        let _ = tx.send(());
    });
    members[0].stop(None);
    timeout(PATIENCE, rx).await.unwrap().unwrap();
    assert_eq!(groups.cast_all("room", "fewer".to_string()), 3);
    assert_eq!(groups.cast_all("nobody", "none".to_string()), 0);
}
