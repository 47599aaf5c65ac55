//! Supervisor behaviour, mirroring OTP's documented rules.

use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{
    Backoff, ChildStatus, ExitReason, SpawnError, SupervisorError, SupervisorEvent,
};

use crate::support::{Events, Log, Msg, Probe};

async fn three(strategy: Strategy, log: &Log) -> (Supervisor, Vec<Addr<Msg>>) {
    let specs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| Probe::spec(id, log))
        .collect();
    let addrs = specs.iter().map(ChildSpec::addr).collect();
    let mut spec = SupervisorSpec::new("sup", strategy).intensity(10, Duration::from_secs(10));
    for s in specs {
        spec = spec.child(s);
    }
    (Supervisor::start(spec).await.unwrap(), addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_start_in_order_and_stop_in_reverse() {
    let log = Log::default();
    let (sup, _) = three(Strategy::OneForOne, &log).await;
    assert_eq!(log.take(), ["start:a", "start:b", "start:c"]);
    sup.shutdown().await;
    assert_eq!(log.take(), ["stop:c", "stop:b", "stop:a"]);
    assert!(matches!(sup.wait().await, ExitReason::Normal(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_one_restarts_only_the_crashed_child() {
    let log = Log::default();
    let (sup, a) = three(Strategy::OneForOne, &log).await;
    log.take();
    let mut ev = Events::of(&sup);
    a[1].cast(Msg::Crash).unwrap();
    let (reason, restarting) = ev.exited("b").await;
    assert!(
        matches!(reason, ExitReason::Failed(_)) && restarting,
        "{reason}"
    );
    assert_eq!(ev.restarted("b").await, 2);
    assert_eq!(log.take(), ["start:b"]);
    assert_eq!((a[0].incarnation(), a[2].incarnation()), (1, 1));
    let kids = sup.which_children().await.unwrap();
    assert_eq!(
        kids.iter().map(|k| k.restarts).collect::<Vec<_>>(),
        [0, 1, 0]
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_every_child_in_order() {
    let log = Log::default();
    let (sup, a) = three(Strategy::OneForAll, &log).await;
    log.take();
    let mut ev = Events::of(&sup);
    a[1].cast(Msg::Panic).unwrap();
    assert!(matches!(ev.exited("b").await.0, ExitReason::Panicked(p) if p.contains("b panicked")));
    for id in ["a", "b", "c"] {
        assert_eq!(ev.restarted(id).await, 2);
    }
    // The survivors are shut down last-started first, then all start in order.
    assert_eq!(
        log.take(),
        ["stop:c", "stop:a", "start:a", "start:b", "start:c"]
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_restarts_the_child_and_those_after_it() {
    let log = Log::default();
    let (sup, a) = three(Strategy::RestForOne, &log).await;
    log.take();
    let mut ev = Events::of(&sup);
    a[1].cast(Msg::Crash).unwrap();
    ev.restarted("b").await;
    ev.restarted("c").await;
    assert_eq!(log.take(), ["stop:c", "start:b", "start:c"]);
    assert_eq!(a[0].incarnation(), 1);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_restarts_after_a_crash_but_not_after_a_normal_exit() {
    let log = Log::default();
    let t = Probe::spec("t", &log).restart(Restart::Transient);
    let addr = t.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(5, Duration::from_secs(5))
            .child(t),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    ev.restarted("t").await;
    addr.cast(Msg::Stop).unwrap();
    let (reason, restarting) = ev.exited("t").await;
    assert!(reason.is_normal() && !restarting, "{reason}");
    assert!(addr.is_stopped());
    let kids = sup.which_children().await.unwrap();
    assert!(matches!(kids[0].status, ChildStatus::Exited(_)), "{kids:?}");
    assert!(matches!(
        addr.cast(Msg::Add(1)),
        Err(SendError::Stopped(Msg::Add(1)))
    ));
    assert_eq!(addr.call(Msg::Get).await, Err(CallError::Stopped));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_is_never_restarted_and_is_forgotten() {
    let log = Log::default();
    let t = Probe::spec("t", &log).restart(Restart::Temporary);
    let addr = t.addr();
    let sup = Supervisor::start(SupervisorSpec::new("sup", Strategy::OneForOne).child(t))
        .await
        .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert!(
        !ev.exited("t").await.1,
        "a temporary child is not restarted"
    );
    assert!(addr.is_stopped());
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intensity_allows_max_restarts_then_escalates() {
    let log = Log::default();
    let w = Probe::spec("w", &log);
    let other = Probe::spec("other", &log);
    let addr = w.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("top", Strategy::OneForOne)
            .intensity(3, Duration::from_secs(60))
            .child(other)
            .child(w),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    for n in 2..=4 {
        addr.cast(Msg::Crash).unwrap();
        assert_eq!(ev.restarted("w").await, n);
    }
    assert!(sup.is_running(), "3 restarts in the period are allowed");
    log.take();
    addr.cast(Msg::Crash).unwrap();
    let gave_up = ev
        .wait("the supervisor giving up", |e| match e {
            SupervisorEvent::GaveUp(exit) => Some(exit.clone()),
            _ => None,
        })
        .await;
    assert_eq!(gave_up.child, "w");
    match sup.wait().await {
        ExitReason::Escalated(e) => {
            assert_eq!(
                (e.supervisor.as_str(), e.child.as_str(), e.max_restarts),
                ("top", "w", 3)
            );
            assert!(matches!(e.last_exit, ExitReason::Failed(_)));
        }
        other => panic!("expected an escalation, got {other}"),
    }
    // The remaining children were shut down before the supervisor exited.
    assert_eq!(log.take(), ["stop:other"]);
    assert!(addr.is_stopped());
}

#[tokio::test(start_paused = true)]
async fn intensity_counts_only_restarts_within_the_period() {
    let log = Log::default();
    let w = Probe::spec("w", &log);
    let addr = w.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(1, Duration::from_secs(5))
            .child(w),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    ev.restarted("w").await;
    tokio::time::advance(Duration::from_secs(6)).await;
    addr.cast(Msg::Crash).unwrap();
    assert_eq!(ev.restarted("w").await, 3);
    assert!(sup.is_running(), "the first restart left the window");
    addr.cast(Msg::Crash).unwrap();
    assert!(
        matches!(sup.wait().await, ExitReason::Escalated(_)),
        "two restarts within 5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_climbs_the_tree_and_the_parent_restarts_the_subtree() {
    let log = Log::default();
    let w = Probe::spec("w", &log);
    let addr = w.addr();
    let inner = SupervisorSpec::new("inner", Strategy::OneForOne)
        .intensity(0, Duration::from_secs(5))
        .child(w);
    let inner_handle = inner.handle();
    let top = Supervisor::start(
        SupervisorSpec::new("top", Strategy::OneForOne).child(inner.into_child()),
    )
    .await
    .unwrap();
    let mut top_events = Events::of(&top);
    addr.cast(Msg::Crash).unwrap();
    // inner may not restart w (intensity 0), so it gives up; top restarts inner, which
    // starts w again behind the same address.
    let (reason, restarting) = top_events.exited("inner").await;
    assert!(
        restarting && matches!(reason, ExitReason::Escalated(ref e) if e.child == "w"),
        "{reason}"
    );
    top_events.restarted("inner").await;
    assert_eq!(addr.incarnation(), 2);
    assert!(inner_handle.is_running());
    assert_eq!(addr.call(Msg::Get).await, Ok(0));
    let tree = top.tree().await.unwrap();
    let node = tree.find("inner").unwrap();
    assert_eq!(node.info.restarts, 1);
    assert!(node.find("w").is_some());
    let printed = tree.to_string();
    assert!(
        printed.contains("inner (one_for_one) [running, restarts 1]"),
        "{printed}"
    );
    assert!(printed.contains("└── w [running]"), "{printed}");
    top.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_start_fails_the_supervisor_start_naming_it() {
    let log = Log::default();
    let mut bad = Probe::new("b", &log);
    bad.fail_init = true;
    let r = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .child(Probe::spec("a", &log))
            .child(ChildSpec::new("b", bad, ()))
            .child(Probe::spec("c", &log)),
    )
    .await;
    match r {
        Err(SpawnError::Child {
            supervisor,
            child,
            source,
        }) => {
            assert_eq!((supervisor.as_str(), child.as_str()), ("sup", "b"));
            assert!(
                source.to_string().contains("b refuses to start"),
                "{source}"
            );
        }
        other => panic!("expected a child start failure, got {other:?}"),
    }
    assert_eq!(log.take(), ["start:a", "fail:b", "stop:a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeouts_let_children_finish_or_kill_them() {
    let log = Log::default();
    let mut patient = Probe::new("patient", &log);
    patient.terminate_delay = Duration::from_millis(100);
    let mut stubborn = Probe::new("stubborn", &log);
    stubborn.terminate_delay = Duration::from_secs(3600);
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .child(ChildSpec::new("patient", patient, ()).shutdown(Shutdown::Infinity))
            .child(
                ChildSpec::new("stubborn", stubborn, ())
                    .shutdown(Shutdown::Timeout(Duration::from_millis(50))),
            )
            .child(Probe::spec("brutal", &log).shutdown(Shutdown::Brutal)),
    )
    .await
    .unwrap();
    log.take();
    sup.shutdown().await;
    // brutal: killed, no terminate; stubborn: killed after its timeout; patient: finished.
    assert_eq!(log.take(), ["stop:patient"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_finishes_the_message_in_hand_before_stopping() {
    let log = Log::default();
    let spec = Probe::spec("w", &log).shutdown(Shutdown::Timeout(Duration::from_secs(30)));
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("sup", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    let (started, in_hand) = tokio::sync::oneshot::channel();
    addr.cast(Msg::Nap(Duration::from_millis(100), started))
        .unwrap();
    addr.cast(Msg::Add(1)).unwrap();
    in_hand.await.unwrap();
    sup.terminate_child("w").await.unwrap();
    // The nap in hand finished, then terminate ran; the queued Add was not handled.
    assert_eq!(log.take(), ["start:w", "napped:w", "stop:w"]);
    assert!(addr.is_stopped());
    sup.restart_child("w").await.unwrap();
    assert_eq!(addr.call(Msg::Get).await, Ok(0));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_during_a_restart_reach_the_new_incarnation_in_order() {
    let log = Log::default();
    let spec = Probe::spec("w", &log).name("stable-w");
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .backoff(Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_millis(200),
                jitter: 0.0,
            })
            .child(spec),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert!(
        ev.exited("w").await.1,
        "a restart is under way (in its backoff delay)"
    );
    let kids = sup.which_children().await.unwrap();
    assert_eq!(kids[0].status, ChildStatus::Restarting);
    log.take();
    for k in 1..=3 {
        addr.cast(Msg::Add(k)).unwrap();
        addr.cast(Msg::Note(k)).unwrap();
    }
    let by_name = Addr::<Msg>::whereis("stable-w").expect("name survives the restart");
    let got = by_name.call(Msg::Get).await;
    assert_eq!(got, Ok(6), "held messages are delivered first");
    assert_eq!(
        log.take(),
        ["start:w", "got:w:1", "got:w:2", "got:w:3"],
        "in order"
    );
    assert_eq!(addr.incarnation(), 2);
    assert!(
        Addr::<u32>::whereis("stable-w").is_none(),
        "wrong message type finds nothing"
    );
    sup.shutdown().await;
    assert!(
        Addr::<Msg>::whereis("stable-w").is_none(),
        "a stopped process is not found"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_backlog_is_bounded() {
    let log = Log::default();
    let spec = Probe::spec("w", &log).restart_backlog(2);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .backoff(Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(1),
                jitter: 0.0,
            })
            .child(spec),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert!(
        ev.exited("w").await.1,
        "a restart is under way (in its backoff delay)"
    );
    addr.cast(Msg::Add(1)).unwrap();
    addr.cast(Msg::Add(2)).unwrap();
    assert!(matches!(
        addr.cast(Msg::Add(3)),
        Err(SendError::Backlog(Msg::Add(3)))
    ));
    assert_eq!(addr.call(Msg::Get).await, Err(CallError::Backlog));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_supervisor_manages_children_at_runtime() {
    let log = Log::default();
    let sup = DynamicSupervisor::start("dyn", Some(2)).await.unwrap();
    let a = sup.start_child(Probe::spec("a", &log)).await.unwrap();
    sup.start_child(Probe::spec("b", &log).name("dyn-b"))
        .await
        .unwrap();
    assert!(matches!(
        sup.start_child(Probe::spec("c", &log)).await,
        Err(SupervisorError::Spawn(SpawnError::MaxChildren(2)))
    ));
    sup.terminate_child("b").await.unwrap();
    assert!(Addr::<Msg>::whereis("dyn-b").is_none());
    assert!(matches!(
        sup.start_child(Probe::spec("a", &log)).await,
        Err(SupervisorError::Spawn(SpawnError::DuplicateId(id))) if id == "a"
    ));
    assert!(matches!(
        sup.terminate_child("nope").await,
        Err(SupervisorError::UnknownChild(_))
    ));
    let counts = sup.count_children().await.unwrap();
    assert_eq!(
        (
            counts.specs,
            counts.active,
            counts.workers,
            counts.supervisors
        ),
        (1, 1, 1, 0)
    );
    let mut ev = Events::of(sup.handle());
    a.cast(Msg::Crash).unwrap();
    assert_eq!(ev.restarted("a").await, 2);
    let kids = sup.which_children().await.unwrap();
    assert_eq!((kids[0].id.as_str(), kids[0].restarts), ("a", 1));
    sup.shutdown().await;
    assert!(a.is_stopped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupervised_actor_refuses_messages_once_dead() {
    let log = Log::default();
    let addr = spawn(Probe::new("solo", &log), ()).await.unwrap();
    let cell = addr.actor_cell().unwrap();
    addr.cast(Msg::Crash).unwrap();
    cell.wait(Some(Duration::from_secs(20))).await.unwrap();
    assert!(matches!(addr.cast(Msg::Add(1)), Err(SendError::Stopped(_))));
    assert_eq!(addr.call(Msg::Get).await, Err(CallError::Stopped));
    let mut bad = Probe::new("bad", &log);
    bad.fail_init = true;
    let err = spawn(bad, ()).await.unwrap_err();
    assert!(err.to_string().contains("bad refuses to start"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_behind_a_crash_reach_the_next_incarnation() {
    let log = Log::default();
    let spec = Probe::spec("w", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("sup", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    // Queue work behind a slow message, then the crash, then more work.
    addr.cast(Msg::Sleep(Duration::from_millis(50))).unwrap();
    addr.cast(Msg::Add(100)).unwrap();
    addr.cast(Msg::Crash).unwrap();
    for k in 1..=4 {
        addr.cast(Msg::Add(k)).unwrap();
        addr.cast(Msg::Note(k)).unwrap();
    }
    // Only the crashing message is lost; what was behind it reaches incarnation 2 in order.
    assert_eq!(addr.call(Msg::Get).await, Ok(10));
    let notes: Vec<String> = log
        .take()
        .into_iter()
        .filter(|l| l.starts_with("got:"))
        .collect();
    assert_eq!(notes, ["got:w:1", "got:w:2", "got:w:3", "got:w:4"]);
    assert_eq!(addr.incarnation(), 2);
    sup.shutdown().await;
}

/// Crashes right after its first start, before its supervisor can have adopted it.
#[derive(Clone)]
struct CrashOnce(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Actor for CrashOnce {
    type Msg = Msg;
    type State = u64;
    type Args = ();
    async fn init(&self, me: &Addr<Msg>, _: ()) -> Result<u64, ActorError> {
        if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
            me.cast(Msg::Crash)?;
        }
        Ok(0)
    }
    async fn handle(&self, _: &Addr<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorError> {
        match msg {
            Msg::Crash => Err("crash before adoption".into()),
            Msg::Get(r) => {
                let _ = r.send(*n);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_dies_before_adoption_is_still_restarted() {
    let spec = DynamicSupervisor::spec("adopt", None).intensity(100, Duration::from_secs(5));
    let sup = DynamicSupervisor::start_spec(spec).await.unwrap();
    let mut ev = Events::of(sup.handle());
    for i in 0..20 {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let addr = sup
            .start_child(ChildSpec::new(format!("c{i}"), CrashOnce(flag), ()))
            .await
            .unwrap();
        assert_eq!(ev.restarted(&format!("c{i}")).await, 2);
        assert_eq!(addr.call(Msg::Get).await, Ok(0));
    }
    let kids = sup.which_children().await.unwrap();
    assert_eq!(kids.len(), 20);
    assert!(
        kids.iter()
            .all(|k| k.restarts == 1 && k.status == ChildStatus::Running),
        "{kids:?}"
    );
    sup.shutdown().await;
}

fn slow_restarts() -> Backoff {
    Backoff {
        min: Duration::from_millis(300),
        max: Duration::from_millis(300),
        jitter: 0.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_terminated_during_its_backoff_stays_terminated() {
    let log = Log::default();
    let spec = Probe::spec("w", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(5, Duration::from_secs(5))
            .backoff(slow_restarts())
            .child(spec)
            .child(Probe::spec("marker", &log).name("the-marker")),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert!(ev.exited("w").await.1);
    sup.terminate_child("w").await.unwrap();
    // The delayed restart comes due; then the marker's restart shows the supervisor has
    // handled it (requests and events are handled in order).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let marker = Addr::<Msg>::whereis("the-marker").unwrap();
    marker.cast(Msg::Crash).unwrap();
    assert_eq!(ev.restarted("marker").await, 2);
    let kids = sup.which_children().await.unwrap();
    assert_eq!(kids[0].status, ChildStatus::Terminated, "{kids:?}");
    assert!(addr.is_stopped());
    assert!(matches!(sup.delete_child("w").await, Ok(())));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_waiting_to_restart_cannot_be_deleted() {
    let log = Log::default();
    let spec = Probe::spec("w", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .backoff(slow_restarts())
            .child(spec),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert!(ev.exited("w").await.1);
    assert!(matches!(
        sup.delete_child("w").await,
        Err(SupervisorError::Restarting(id)) if id == "w"
    ));
    assert_eq!(ev.restarted("w").await, 2);
    sup.shutdown().await;
    assert!(addr.is_stopped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_does_not_restart_temporary_siblings() {
    let log = Log::default();
    let a = Probe::spec("a", &log);
    let t = Probe::spec("t", &log).restart(Restart::Temporary);
    let (a_addr, t_addr) = (a.addr(), t.addr());
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForAll)
            .intensity(5, Duration::from_secs(5))
            .child(a)
            .child(t),
    )
    .await
    .unwrap();
    log.take();
    let mut ev = Events::of(&sup);
    a_addr.cast(Msg::Crash).unwrap();
    assert_eq!(ev.restarted("a").await, 2);
    assert_eq!(log.take(), ["stop:t", "start:a"]);
    assert!(t_addr.is_stopped());
    assert_eq!(sup.count_children().await.unwrap().specs, 1);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonsense_backoff_does_not_bring_the_supervisor_down() {
    let log = Log::default();
    let spec = Probe::spec("w", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(5, Duration::from_secs(5))
            .backoff(Backoff {
                min: Duration::from_millis(1),
                max: Duration::from_millis(5),
                jitter: f64::NAN,
            })
            .child(spec),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    addr.cast(Msg::Crash).unwrap();
    assert_eq!(ev.restarted("w").await, 2);
    // Durations near the maximum: no overflow panic, and the delay stays near the cap.
    let huge = Backoff {
        min: Duration::MAX,
        max: Duration::MAX,
        jitter: 0.0,
    };
    for n in 0..40 {
        assert!(huge.delay(n) >= Duration::MAX - Duration::from_secs(1));
    }
    assert!(sup.is_running());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_child_on_a_stopped_supervisor_is_refused() {
    let log = Log::default();
    let sup = DynamicSupervisor::start("gone", None).await.unwrap();
    sup.shutdown().await;
    let spec = Probe::spec("late", &log);
    let addr = spec.addr();
    assert!(matches!(
        sup.start_child(spec).await,
        Err(SupervisorError::Spawn(SpawnError::SupervisorStopped))
    ));
    assert!(addr.is_stopped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_children_are_told_apart_by_address() {
    let log = Log::default();
    let spec = DynamicSupervisor::spec("anon", Some(3)).intensity(5, Duration::from_secs(5));
    let sup = DynamicSupervisor::start_spec(spec).await.unwrap();
    let mut kids = Vec::new();
    for _ in 0..3 {
        let addr = sup
            .start_child(ChildSpec::anonymous(Probe::new("anon", &log), ()))
            .await
            .unwrap();
        kids.push(addr);
    }
    assert!(matches!(
        sup.start_child(ChildSpec::anonymous(Probe::new("anon", &log), ()))
            .await,
        Err(SupervisorError::Spawn(SpawnError::MaxChildren(3)))
    ));
    // The crashed one comes back, not another that shares its (absent) id.
    let mut ev = Events::of(sup.handle());
    kids[1].cast(Msg::Crash).unwrap();
    assert_eq!(ev.restarted("<anonymous>").await, 2);
    let incarnations: Vec<u64> = kids.iter().map(Addr::incarnation).collect();
    assert_eq!(incarnations, [1, 2, 1]);
    sup.terminate_child_by_addr(&kids[0]).await.unwrap();
    assert!(kids[0].is_stopped() && kids[1].is_running() && kids[2].is_running());
    assert_eq!(sup.count_children().await.unwrap().active, 2);
    assert!(matches!(
        sup.terminate_child_by_addr(&kids[0]).await,
        Err(SupervisorError::UnknownChild(_))
    ));
    // A place was freed under max_children.
    sup.start_child(ChildSpec::anonymous(Probe::new("anon", &log), ()))
        .await
        .unwrap();
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_transient_child_is_restarted() {
    let log = Log::default();
    let spec = Probe::spec("t", &log).restart(Restart::Transient);
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("sup", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    let mut ev = Events::of(&sup);
    addr.kill();
    let (reason, restarting) = ev.exited("t").await;
    assert!(
        matches!(reason, ExitReason::Killed) && restarting,
        "{reason}"
    );
    assert_eq!(ev.restarted("t").await, 2);
    sup.shutdown().await;
}

#[test]
fn backoff_grows_exponentially_within_its_jitter_and_cap() {
    let b = Backoff {
        min: Duration::from_millis(10),
        max: Duration::from_millis(500),
        jitter: 0.2,
    };
    for (n, base) in [(0, 10), (1, 20), (2, 40), (3, 80), (4, 160), (5, 320)] {
        for _ in 0..50 {
            let d = b.delay(n).as_secs_f64() * 1000.0;
            let base = f64::from(base);
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "delay {n}: {d} ms"
            );
        }
    }
    for n in [6, 10, 31, 1000] {
        assert!(b.delay(n) <= Duration::from_millis(500), "capped at max");
    }
    let exact = Backoff { jitter: 0.0, ..b };
    assert_eq!(exact.delay(2), Duration::from_millis(40));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_and_names_are_refused_with_clear_errors() {
    let log = Log::default();
    let r = Supervisor::start(
        SupervisorSpec::new("dups", Strategy::OneForOne)
            .child(Probe::spec("same", &log))
            .child(Probe::spec("same", &log)),
    )
    .await;
    match r {
        Err(SpawnError::Child { child, source, .. }) => {
            assert_eq!(child, "same");
            assert!(
                matches!(*source, SpawnError::DuplicateId(ref id) if id == "same"),
                "{source}"
            );
        }
        other => panic!("expected a duplicate id error, got {other:?}"),
    }
    let sup = DynamicSupervisor::start("names", None).await.unwrap();
    sup.start_child(Probe::spec("a", &log).name("taken-name"))
        .await
        .unwrap();
    let refused = Probe::spec("b", &log).name("taken-name");
    let refused_addr = refused.addr();
    let err = sup.start_child(refused).await.unwrap_err();
    assert!(
        refused_addr.is_stopped(),
        "a refused child's address does not hold messages"
    );
    assert!(
        matches!(err, SupervisorError::Spawn(SpawnError::NameTaken(ref n)) if n == "taken-name")
    );
    assert!(err.to_string().contains("already registered"), "{err}");
    // The refused child left no trace: its id is free again.
    sup.start_child(Probe::spec("b", &log)).await.unwrap();
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_survive_a_supervisor_restart_during_a_start() {
    let log = Log::default();
    let dynamic = DynamicSupervisor::spec("dyn", Some(2)).intensity(0, Duration::from_secs(5));
    let dyn_handle = dynamic.handle();
    let top = Supervisor::start(
        SupervisorSpec::new("top", Strategy::OneForOne).child(dynamic.into_child()),
    )
    .await
    .unwrap();
    let dyns = DynamicSupervisor::from_handle(dyn_handle);
    let crasher = dyns
        .start_child(Probe::spec("crasher", &log))
        .await
        .unwrap();
    // A start whose init is slow, in flight while the supervisor restarts.
    let started = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let mut slow = Probe::new("slow", &log);
    slow.init_delay = Duration::from_secs(2);
    slow.init_started = Some(started.clone());
    let slow_start = tokio::spawn({
        let dyns = dyns.clone();
        async move { dyns.start_child(ChildSpec::new("slow", slow, ())).await }
    });
    started.acquire().await.unwrap().forget();
    let mut top_events = Events::of(&top);
    crasher.cast(Msg::Crash).unwrap();
    top_events.restarted("dyn").await;
    assert!(
        slow_start.await.unwrap().is_err(),
        "the in-flight start did not survive"
    );
    // The new incarnation's places and ids are intact: two starts fit, a duplicate does not.
    dyns.start_child(Probe::spec("x", &log)).await.unwrap();
    assert!(matches!(
        dyns.start_child(Probe::spec("x", &log)).await,
        Err(SupervisorError::Spawn(SpawnError::DuplicateId(_)))
    ));
    dyns.start_child(Probe::spec("y", &log)).await.unwrap();
    assert!(matches!(
        dyns.start_child(Probe::spec("z", &log)).await,
        Err(SupervisorError::Spawn(SpawnError::MaxChildren(2)))
    ));
    top.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_children_belong_to_dynamic_supervisors_and_are_never_found_by_id() {
    let log = Log::default();
    let r = Supervisor::start(
        SupervisorSpec::new("static", Strategy::OneForOne)
            .child(ChildSpec::anonymous(Probe::new("a", &log), ())),
    )
    .await;
    assert!(
        matches!(r, Err(SpawnError::Child { source, .. }) if matches!(*source, SpawnError::Config(_)))
    );
    let sup = DynamicSupervisor::start("dyn-anon", None).await.unwrap();
    let a = sup
        .start_child(ChildSpec::anonymous(Probe::new("a", &log), ()))
        .await
        .unwrap();
    assert!(matches!(
        sup.terminate_child("<anonymous>").await,
        Err(SupervisorError::UnknownChild(_))
    ));
    assert!(a.is_running());
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_restart_still_restarts_its_own_child() {
    let log = Log::default();
    let (a, b) = (Probe::spec("a", &log), Probe::spec("b", &log));
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .intensity(5, Duration::from_secs(5))
            .backoff(slow_restarts())
            .child(a)
            .child(b),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    a_addr.cast(Msg::Crash).unwrap();
    ev.exited("a").await;
    b_addr.cast(Msg::Crash).unwrap();
    ev.exited("b").await;
    // Each child waits for its own restart; a later one does not cancel an earlier one.
    // (Both delays end in the same tick: the two restarts may come in either order.)
    let mut restarted = std::collections::BTreeSet::new();
    while restarted.len() < 2 {
        let child = ev
            .wait("the restarts of a and b", |e| match e {
                SupervisorEvent::ChildRestarted { child, .. } => Some(child.clone()),
                _ => None,
            })
            .await;
        restarted.insert(child);
    }
    assert_eq!(a_addr.incarnation() + b_addr.incarnation(), 4);
    sup.shutdown().await;
}

// ---- Where behaviour follows OTP's documented semantics (issue 12) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_for_all_restarts_the_whole_group_again_when_a_child_fails_to_start() {
    let log = Log::default();
    let a = Probe::spec("a", &log);
    let b = Probe::new("b", &log);
    let refuse = b.refuse.clone();
    let a_addr = a.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForAll)
            .intensity(10, Duration::from_secs(60))
            .child(a)
            .child(ChildSpec::new("b", b, ()))
            .child(Probe::spec("c", &log)),
    )
    .await
    .unwrap();
    log.take();
    let mut ev = Events::of(&sup);
    refuse.fail_next(1);
    a_addr.cast(Msg::Crash).unwrap();
    ev.restarted("c").await;
    // b's start failed: a, restarted already, goes down again and the whole group starts
    // again in order (OTP), rather than b alone being retried with a left as it was.
    assert_eq!(
        log.take(),
        [
            "stop:c", "stop:b", "start:a", "fail:b", "stop:a", "start:a", "start:b", "start:c"
        ]
    );
    assert_eq!(a_addr.incarnation(), 3);
    let kids = sup.which_children().await.unwrap();
    assert!(
        kids.iter().all(|k| k.status == ChildStatus::Running),
        "{kids:?}"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_for_one_retries_from_the_child_that_failed_to_start() {
    let log = Log::default();
    let b = Probe::spec("b", &log);
    let c = Probe::new("c", &log);
    let refuse = c.refuse.clone();
    let b_addr = b.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::RestForOne)
            .intensity(10, Duration::from_secs(60))
            .child(Probe::spec("a", &log))
            .child(b)
            .child(ChildSpec::new("c", c, ()))
            .child(Probe::spec("d", &log)),
    )
    .await
    .unwrap();
    log.take();
    let mut ev = Events::of(&sup);
    refuse.fail_next(1);
    b_addr.cast(Msg::Crash).unwrap();
    ev.restarted("d").await;
    // As OTP: b, restarted before the failure, does not depend on c and stays; the next
    // attempt starts c and those after it.
    assert_eq!(
        log.take(),
        [
            "stop:d", "stop:c", "start:b", "fail:c", "start:c", "start:d"
        ]
    );
    assert_eq!(b_addr.incarnation(), 2);
    sup.shutdown().await;
}

/// A supervisor whose child `w` crashed and now fails every start (each after `delay`).
async fn failing_restarts(id: &str, log: &Log, delay: Duration) -> (Supervisor, Events) {
    let mut w = Probe::new("w", log);
    w.init_delay = delay;
    let refuse = w.refuse.clone();
    let spec = ChildSpec::new("w", w, ());
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new(id, Strategy::OneForOne)
            .intensity(u32::MAX, Duration::from_secs(3600))
            .child(spec)
            .child(Probe::spec("other", log)),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    refuse.fail_next(u32::MAX);
    addr.cast(Msg::Crash).unwrap();
    for _ in 0..3 {
        ev.wait("a failed restart", |e| {
            matches!(e, SupervisorEvent::RestartFailed { .. }).then_some(())
        })
        .await;
    }
    (sup, ev)
}

/// Within a generous deadline: a supervisor that never hands control back never answers.
async fn answered<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| {
            panic!("the supervisor did not answer {what} while a restart kept failing")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_serves_requests_while_a_restart_keeps_failing() {
    let log = Log::default();
    let (sup, _ev) = failing_restarts("busy", &log, Duration::from_millis(5)).await;
    let kids = answered("which_children", sup.which_children())
        .await
        .unwrap();
    assert_eq!(kids[0].status, ChildStatus::Restarting, "{kids:?}");
    assert_eq!(kids[1].status, ChildStatus::Running, "{kids:?}");
    // Terminating the child ends its restart.
    answered("terminate_child", sup.terminate_child("w"))
        .await
        .unwrap();
    let kids = answered("which_children", sup.which_children())
        .await
        .unwrap();
    assert_eq!(kids[0].status, ChildStatus::Terminated, "{kids:?}");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_failing_restarts_ends_as_a_shutdown() {
    let log = Log::default();
    let (sup, mut ev) = failing_restarts("stopping", &log, Duration::from_millis(5)).await;
    answered("shutdown", sup.shutdown()).await;
    let reason = sup.wait().await;
    assert!(matches!(reason, ExitReason::Normal(_)), "{reason}");
    // No giving up among what it reported.
    for e in ev.drain() {
        assert!(!matches!(e, SupervisorEvent::GaveUp(_)), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_child_supervisor_that_gives_up_is_not_restarted() {
    let log = Log::default();
    let w = Probe::spec("w", &log);
    let addr = w.addr();
    let inner = SupervisorSpec::new("inner-t", Strategy::OneForOne)
        .intensity(0, Duration::from_secs(5))
        .child(w);
    let inner_handle = inner.handle();
    let top = Supervisor::start(
        SupervisorSpec::new("top-t", Strategy::OneForOne)
            .child(inner.into_child().restart(Restart::Transient))
            .child(Probe::spec("sibling", &log)),
    )
    .await
    .unwrap();
    let mut top_events = Events::of(&top);
    addr.cast(Msg::Crash).unwrap();
    // OTP's supervisor exits with `shutdown` when it gives up: a transient one stays down.
    // Why it gave up is kept in the reason.
    let (reason, restarting) = top_events.exited("inner-t").await;
    assert!(!restarting, "{reason}");
    match &reason {
        ExitReason::Escalated(e) => {
            assert_eq!((e.supervisor.as_str(), e.child.as_str()), ("inner-t", "w"));
            assert!(matches!(e.last_exit, ExitReason::Failed(_)));
        }
        other => panic!("expected the reason it gave up, got {other}"),
    }
    assert!(reason.is_normal());
    assert!(matches!(
        inner_handle.wait().await,
        ExitReason::Escalated(_)
    ));
    assert!(top.is_running());
    let kids = top.which_children().await.unwrap();
    assert!(matches!(kids[0].status, ChildStatus::Exited(_)), "{kids:?}");
    assert_eq!(kids[1].status, ChildStatus::Running);
    assert!(addr.is_stopped());
    top.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_child_of_a_running_child_is_an_error() {
    let log = Log::default();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne).child(Probe::spec("w", &log)),
    )
    .await
    .unwrap();
    assert!(matches!(
        sup.restart_child("w").await,
        Err(SupervisorError::Running(id)) if id == "w"
    ));
    assert_eq!(log.take(), ["start:w"], "nothing was started again");
    sup.shutdown().await;
}

/// Counts the terminates in progress; each waits to be let go.
#[derive(Clone)]
struct SlowStop {
    in_progress: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Actor for SlowStop {
    type Msg = ();
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn terminate(&self, _: &Addr<()>, _: &mut ()) -> Result<(), ActorError> {
        self.in_progress.send_modify(|n| *n += 1);
        self.release.acquire().await?.forget();
        // What a slow terminate costs: 200 ms of work once let go.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_supervisor_shuts_its_children_down_concurrently() {
    const N: usize = 50;
    let (tx, mut in_progress) = tokio::sync::watch::channel(0);
    let stop = SlowStop {
        in_progress: std::sync::Arc::new(tx),
        release: std::sync::Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let sup = DynamicSupervisor::start("concurrent-stop", None)
        .await
        .unwrap();
    let mut ev = Events::of(sup.handle());
    for _ in 0..N {
        sup.start_child(
            ChildSpec::anonymous(stop.clone(), ())
                .shutdown(Shutdown::Timeout(Duration::from_secs(60))),
        )
        .await
        .unwrap();
    }
    let shutdown = tokio::spawn({
        let sup = sup.clone();
        async move { sup.shutdown().await }
    });
    // Every terminate is under way before any is let go: shutdown time is the slowest
    // child's, not the sum.
    tokio::time::timeout(Duration::from_secs(20), in_progress.wait_for(|n| *n == N))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "only {} of {N} terminates were in progress at once",
                *stop.in_progress.borrow()
            )
        })
        .unwrap();
    stop.release.add_permits(N);
    shutdown.await.unwrap();
    // Each exit is reported, as a shutdown.
    for _ in 0..N {
        let (reason, restarting) = ev.exited("<anonymous>").await;
        assert!(
            matches!(&reason, ExitReason::Normal(Some(r)) if r == "shutdown") && !restarting,
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_reports_how_it_stopped_a_child() {
    let log = Log::default();
    let mut stubborn = Probe::new("stubborn", &log);
    stubborn.terminate_delay = Duration::from_secs(3600);
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .child(Probe::spec("polite", &log))
            .child(Probe::spec("brutal", &log).shutdown(Shutdown::Brutal))
            .child(
                ChildSpec::new("stubborn", stubborn, ())
                    .shutdown(Shutdown::Timeout(Duration::from_millis(50))),
            ),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    for (id, killed) in [("polite", false), ("brutal", true), ("stubborn", true)] {
        sup.terminate_child(id).await.unwrap();
        let (reason, restarting) = ev.exited(id).await;
        assert!(!restarting, "{id}: {reason}");
        if killed {
            assert!(matches!(reason, ExitReason::Killed), "{id}: {reason}");
        } else {
            assert!(
                matches!(&reason, ExitReason::Normal(Some(r)) if r == "shutdown"),
                "{id}: {reason}"
            );
        }
    }
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_whose_reason_reads_killed_is_a_normal_exit() {
    let log = Log::default();
    let spec = Probe::spec("t", &log).restart(Restart::Transient);
    let addr = spec.addr();
    let sup = Supervisor::start(SupervisorSpec::new("sup", Strategy::OneForOne).child(spec))
        .await
        .unwrap();
    let mut ev = Events::of(&sup);
    addr.stop(Some("killed".into()));
    let (reason, restarting) = ev.exited("t").await;
    assert!(
        matches!(&reason, ExitReason::Normal(Some(r)) if r == "killed") && !restarting,
        "{reason}"
    );
    assert!(addr.is_stopped());
    sup.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn supervisor_calls_time_out_after_five_seconds_by_default() {
    let log = Log::default();
    let mut slow = Probe::new("slow", &log);
    slow.terminate_delay = Duration::from_secs(10 * 3600);
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .child(ChildSpec::new("slow", slow, ()).shutdown(Shutdown::Infinity)),
    )
    .await
    .unwrap();
    // The supervisor is busy shutting the child down: the call gives up after gen_server's
    // default, not after an hour.
    assert!(matches!(
        sup.terminate_child("slow").await,
        Err(SupervisorError::Call(CallError::Timeout(d))) if d == Duration::from_secs(5)
    ));
    assert!(matches!(
        sup.with_timeout(Duration::from_secs(60)).which_children().await,
        Err(CallError::Timeout(d)) if d == Duration::from_secs(60)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_may_answer_ignore() {
    let log = Log::default();
    let p = Probe::new("p", &log);
    p.refuse.ignore_next(1);
    let p_refuse = p.refuse.clone();
    let t = Probe::new("t", &log);
    t.refuse.ignore_next(1);
    let p_spec = ChildSpec::new("p", p, ());
    let p_addr = p_spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .child(p_spec)
            .child(ChildSpec::new("t", t, ()).restart(Restart::Temporary))
            .child(Probe::spec("c", &log)),
    )
    .await
    .unwrap();
    assert_eq!(log.take(), ["ignore:p", "ignore:t", "start:c"]);
    // The permanent child's spec is kept, not running; the temporary one is forgotten.
    let kids = sup.which_children().await.unwrap();
    let ids: Vec<_> = kids
        .iter()
        .map(|k| (k.id.as_str(), k.status.clone()))
        .collect();
    assert_eq!(
        ids,
        [("p", ChildStatus::Ignored), ("c", ChildStatus::Running)]
    );
    assert!(matches!(
        p_addr.cast(Msg::Add(1)),
        Err(SendError::Stopped(_))
    ));
    sup.restart_child("p").await.unwrap();
    assert_eq!(p_addr.call(Msg::Get).await, Ok(0));
    // Ignore answered to a restart: the child stays down, and that is no failure.
    let mut ev = Events::of(&sup);
    p_refuse.ignore_next(1);
    p_addr.cast(Msg::Crash).unwrap();
    ev.wait("p ignoring its restart", |e| {
        matches!(e, SupervisorEvent::ChildIgnored { child, .. } if child == "p").then_some(())
    })
    .await;
    assert_eq!(
        sup.which_children().await.unwrap()[0].status,
        ChildStatus::Ignored
    );
    sup.shutdown().await;

    // A dynamic supervisor keeps nothing; `spawn` says it was ignored.
    let dynamic = DynamicSupervisor::start("dyn-ignore", None).await.unwrap();
    let q = Probe::new("q", &log);
    q.refuse.ignore_next(1);
    let q_spec = ChildSpec::new("q", q, ());
    let q_addr = q_spec.addr();
    assert!(matches!(
        dynamic.start_child(q_spec).await,
        Err(SupervisorError::Spawn(SpawnError::Ignored(id))) if id == "q"
    ));
    assert!(q_addr.is_stopped());
    assert_eq!(dynamic.count_children().await.unwrap().specs, 0);
    dynamic.shutdown().await;
    let solo = Probe::new("solo", &log);
    solo.refuse.ignore_next(1);
    assert!(matches!(spawn(solo, ()).await, Err(SpawnError::Ignored(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_childspec_describes_a_child() {
    let log = Log::default();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne).child(
            Probe::spec("w", &log)
                .restart(Restart::Transient)
                .shutdown(Shutdown::Brutal)
                .name("spec-w"),
        ),
    )
    .await
    .unwrap();
    let spec = sup.get_childspec("w").await.unwrap();
    assert_eq!(
        (
            spec.id.as_str(),
            spec.name.as_deref(),
            spec.restart,
            spec.shutdown,
            spec.kind
        ),
        (
            "w",
            Some("spec-w"),
            Restart::Transient,
            Shutdown::Brutal,
            foundation_actors::ChildKind::Worker
        )
    );
    assert!(matches!(
        sup.get_childspec("nope").await,
        Err(SupervisorError::UnknownChild(_))
    ));
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_starts_behave_as_start_child_for_every_kind_of_spec() {
    let log = Log::default();
    let spec = DynamicSupervisor::spec("typed", Some(4)).intensity(5, Duration::from_secs(5));
    let sup = DynamicSupervisor::start_spec(spec).await.unwrap();
    // Made by `new` and `anonymous` (started in place), and by `from_fn` (started boxed, as
    // `start_child` starts it): each runs, and a crash brings it back behind its address.
    let named = sup
        .start_child_typed::<Probe>(Probe::spec("named", &log))
        .await
        .unwrap();
    let anon = sup
        .start_child_typed::<Probe>(ChildSpec::anonymous(Probe::new("anon", &log), ()))
        .await
        .unwrap();
    let probe = Probe::new("made", &log);
    let made = sup
        .start_child_typed::<Probe>(ChildSpec::from_fn("made", move || (probe.clone(), ())))
        .await
        .unwrap();
    assert_eq!(log.take(), ["start:named", "start:anon", "start:made"]);
    let mut ev = Events::of(sup.handle());
    for (addr, id) in [(&named, "named"), (&anon, "<anonymous>"), (&made, "made")] {
        addr.cast(Msg::Add(2)).unwrap();
        addr.cast(Msg::Crash).unwrap();
        assert_eq!(ev.restarted(id).await, 2);
        addr.cast(Msg::Add(3)).unwrap();
        assert_eq!(addr.call(Msg::Get).await, Ok(3));
    }
    // Refusals are start_child's: a taken id, a failed init (the address stops), ignore,
    // max_children.
    assert!(matches!(
        sup.start_child_typed::<Probe>(Probe::spec("named", &log)).await,
        Err(SupervisorError::Spawn(SpawnError::DuplicateId(id))) if id == "named"
    ));
    let mut failing = Probe::new("failing", &log);
    failing.fail_init = true;
    let failing = ChildSpec::new("failing", failing, ());
    let failing_addr = failing.addr();
    assert!(matches!(
        sup.start_child_typed::<Probe>(failing).await,
        Err(SupervisorError::Spawn(SpawnError::Init { .. }))
    ));
    assert!(failing_addr.is_stopped());
    let ignoring = Probe::new("ignoring", &log);
    ignoring.refuse.ignore_next(1);
    assert!(matches!(
        sup.start_child_typed::<Probe>(ChildSpec::new("ignoring", ignoring, ()))
            .await,
        Err(SupervisorError::Spawn(SpawnError::Ignored(_)))
    ));
    sup.start_child_typed::<Probe>(Probe::spec("fourth", &log))
        .await
        .unwrap();
    assert!(matches!(
        sup.start_child_typed::<Probe>(Probe::spec("fifth", &log))
            .await,
        Err(SupervisorError::Spawn(SpawnError::MaxChildren(4)))
    ));
    assert_eq!(sup.count_children().await.unwrap().active, 4);
    sup.shutdown().await;
    assert!(named.is_stopped() && anon.is_stopped() && made.is_stopped());
}

/// Sends a `Hold` and waits until the handler has it: what is sent next stays queued until
/// the returned sender lets it go on.
async fn hold(addr: &Addr<Msg>) -> tokio::sync::oneshot::Sender<()> {
    let (started, in_hand) = tokio::sync::oneshot::channel();
    let (go, wait) = tokio::sync::oneshot::channel();
    addr.cast(Msg::Hold(started, wait)).unwrap();
    in_hand.await.unwrap();
    go
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_counts_the_mailbox_and_what_is_held_through_a_restart() {
    let log = Log::default();
    let spec = Probe::spec("w", &log);
    let addr = spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("sup", Strategy::OneForOne)
            .backoff(Backoff {
                min: Duration::from_millis(300),
                max: Duration::from_millis(300),
                jitter: 0.0,
            })
            .child(spec),
    )
    .await
    .unwrap();
    let mut ev = Events::of(&sup);
    assert_eq!(addr.queued(), 0, "an idle process");

    // Behind a message in hand, every send waits in the mailbox, counted.
    let go = hold(&addr).await;
    for k in 1..=5 {
        addr.cast(Msg::Add(k)).unwrap();
    }
    assert_eq!(addr.queued(), 5, "the message in hand is not counted");
    go.send(()).unwrap();
    assert_eq!(addr.call(Msg::Get).await, Ok(15));
    assert_eq!(addr.queued(), 0, "all taken");

    // A crash with messages behind it: they are salvaged and held for the next incarnation.
    let go = hold(&addr).await;
    addr.cast(Msg::Crash).unwrap();
    addr.cast(Msg::Add(1)).unwrap();
    addr.cast(Msg::Add(2)).unwrap();
    assert_eq!(addr.queued(), 3);
    go.send(()).unwrap();
    assert!(ev.exited("w").await.1, "a restart is under way");
    assert_eq!(addr.held_messages(), 2);
    assert_eq!(
        addr.queued(),
        2,
        "the crashed one is not counted; the salvaged two are"
    );
    // Sent during the restart's backoff: held too.
    addr.cast(Msg::Add(4)).unwrap();
    assert_eq!(addr.queued(), 3);
    assert_eq!(
        addr.call(Msg::Get).await,
        Ok(7),
        "the new incarnation got them"
    );
    assert_eq!(addr.queued(), 0);
    assert_eq!(addr.incarnation(), 2);

    // Stopped with messages queued: they go with the incarnation, and so does their count.
    let go = hold(&addr).await;
    addr.cast(Msg::Add(1)).unwrap();
    assert_eq!(addr.queued(), 1);
    let stopping = tokio::spawn({
        let sup = sup.clone();
        async move { sup.terminate_child("w").await }
    });
    go.send(()).unwrap();
    stopping.await.unwrap().unwrap();
    assert!(addr.is_stopped());
    assert_eq!(addr.queued(), 0);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_counts_what_many_senders_queue_and_comes_back_to_zero() {
    let log = Log::default();
    let addr = spawn(Probe::new("w", &log), ()).await.unwrap();
    let go = hold(&addr).await;
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                for _ in 0..1_000 {
                    addr.cast(Msg::Add(1)).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(addr.queued(), 4_000);
    go.send(()).unwrap();
    assert_eq!(addr.call(Msg::Get).await, Ok(4_000));
    assert_eq!(addr.queued(), 0);
    // A dead process queues nothing.
    addr.stop(None);
    while !addr.is_stopped() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(addr.queued(), 0);
}
