//! `Addr::on_stop`: a callback when a process stops for good, never on a restart.

use std::time::Duration;

use foundation_actors::prelude::*;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Long enough for anything that should happen; nothing waits this long when it works.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Worker;

enum Msg {
    Ping(ReplyPort<()>),
    Fail,
    Panic,
}

impl Actor for Worker {
    type Msg = Msg;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<Msg>, msg: Msg, _: &mut ()) -> Result<(), ActorError> {
        match msg {
            Msg::Ping(reply) => {
                let _ = reply.send(());
            }
            Msg::Fail => return Err("asked to fail".into()),
            Msg::Panic => panic!("asked to panic"),
        }
        Ok(())
    }
}

/// A hook that reports `tag`, and whether the address was already stopped when it ran.
fn report(addr: &Addr<Msg>, tag: &'static str, tx: &mpsc::UnboundedSender<(&'static str, bool)>) {
    let (seen, tx) = (addr.clone(), tx.clone());
    let hook = addr.on_stop(move || {
        let _ = tx.send((tag, seen.is_stopped()));
    });
    assert!(hook.is_some(), "a live address refused a stop hook");
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(&'static str, bool)>) -> (&'static str, bool) {
    timeout(PATIENCE, rx.recv())
        .await
        .expect("the stop hook did not run")
        .expect("the hook's sender is gone")
}

#[tokio::test]
async fn unsupervised_stop_runs_hooks_once_in_order() {
    let addr = spawn(Worker, ()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    report(&addr, "first", &tx);
    report(&addr, "second", &tx);
    addr.stop(None);
    assert_eq!(next(&mut rx).await, ("first", true));
    assert_eq!(next(&mut rx).await, ("second", true));
    // Stopped without anyone sending to it, and a late hook is refused.
    assert!(addr.is_stopped());
    assert!(addr.on_stop(|| ()).is_none());
    drop(tx);
    assert!(rx.recv().await.is_none(), "a hook ran twice");
}

#[tokio::test]
async fn unsupervised_failure_panic_and_kill_run_the_hook() {
    for how in ["fail", "panic", "kill"] {
        let addr = spawn(Worker, ()).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        report(&addr, how, &tx);
        match how {
            "fail" => addr.cast(Msg::Fail).unwrap(),
            "panic" => addr.cast(Msg::Panic).unwrap(),
            _ => addr.kill(),
        }
        assert_eq!(next(&mut rx).await, (how, true));
        assert!(addr.is_stopped(), "{how}");
    }
}

#[tokio::test]
async fn a_restart_is_not_a_stop_but_a_termination_is() {
    let spec = ChildSpec::new("w", Worker, ());
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(10, Duration::from_secs(5))
            .child(spec),
    )
    .await
    .unwrap();
    let mut events = sup.subscribe();
    let (tx, mut rx) = mpsc::unbounded_channel();
    report(&addr, "w", &tx);

    addr.cast(Msg::Fail).unwrap();
    loop {
        let e = timeout(PATIENCE, events.recv()).await.unwrap().unwrap();
        if matches!(e, SupervisorEvent::ChildRestarted { .. }) {
            break;
        }
    }
    addr.call(Msg::Ping).await.unwrap();
    assert!(rx.try_recv().is_err(), "the hook ran on a restart");

    sup.terminate_child("w").await.unwrap();
    // The supervisor runs the hook before it answers.
    assert_eq!(rx.try_recv().unwrap(), ("w", true));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_temporary_child_exiting_runs_the_hook() {
    let sup = DynamicSupervisor::start("dyn", None).await.unwrap();
    let addr = sup
        .start_child(ChildSpec::new("t", Worker, ()).restart(Restart::Temporary))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    report(&addr, "t", &tx);
    addr.cast(Msg::Fail).unwrap();
    assert_eq!(next(&mut rx).await, ("t", true));
    sup.shutdown().await;
}

#[tokio::test]
async fn a_supervisor_shutdown_runs_its_childrens_hooks() {
    let spec = ChildSpec::new("w", Worker, ());
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("sup", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    report(&addr, "w", &tx);
    sup.shutdown().await;
    assert_eq!(next(&mut rx).await, ("w", true));
}

#[tokio::test]
async fn cancel_before_the_stop_keeps_the_hook_from_running() {
    let addr = spawn(Worker, ()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancelled = {
        let tx = tx.clone();
        addr.on_stop(move || {
            let _ = tx.send(("cancelled", true));
        })
        .unwrap()
    };
    let kept = {
        let tx = tx.clone();
        addr.on_stop(move || {
            let _ = tx.send(("kept", true));
        })
        .unwrap()
    };
    assert!(cancelled.cancel());
    addr.stop(None);
    assert_eq!(next(&mut rx).await, ("kept", true));
    // It ran already: nothing left to cancel.
    assert!(!kept.cancel());
    drop(tx);
    assert!(rx.recv().await.is_none());
}

#[tokio::test]
async fn a_panicking_hook_does_not_stop_the_others() {
    let addr = spawn(Worker, ()).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    addr.on_stop(|| panic!("a hook that panics")).unwrap();
    report(&addr, "after", &tx);
    addr.stop(None);
    assert_eq!(next(&mut rx).await, ("after", true));
}
