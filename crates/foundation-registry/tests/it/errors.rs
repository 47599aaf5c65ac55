//! Errors: typed, matchable, showing the key, and handing back what was given.

use foundation_actors::{ChildSpec, SendError};
use foundation_registry::{RegisterError, Registry, UpdateError, ViaCastError};

use crate::support::{Msg, Worker, stopped, unstarted, worker};

#[tokio::test]
async fn register_errors_read_well() {
    let names: Registry<String, Msg> = Registry::unique();
    let a = unstarted("a");
    names.register("k".into(), &a, ()).unwrap();
    let e = names.register("k".into(), &unstarted("b"), ()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the key \"k\" is already registered to a live process; unregister it or look it up instead"
    );
    assert!(
        format!("{e:?}").starts_with("AlreadyRegistered { key: \"k\""),
        "{e:?}"
    );

    let dead = worker().await;
    let gone = stopped(&dead);
    dead.stop(None);
    gone.await;
    let e = names.register("other".into(), &dead, ()).unwrap_err();
    assert!(matches!(&e, RegisterError::Stopped { key } if key == "other"));
    assert_eq!(
        e.to_string(),
        "cannot register the key \"other\": the process has stopped for good"
    );
    // Boxable as any error.
    let _: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
}

#[test]
fn a_refused_send_keeps_its_source_and_the_message() {
    let names: Registry<String, Msg> = Registry::unique();
    // Not started, and holding no message for its start: every send is refused.
    let full = ChildSpec::new("full", Worker, ()).restart_backlog(0).addr();
    names.register("full".into(), &full, ()).unwrap();
    let e = names.cast("full", Msg::Say("x".into())).unwrap_err();
    assert!(
        matches!(&e, ViaCastError::Send { key, source: SendError::Backlog(_) } if key == "\"full\""),
        "{e:?}"
    );
    assert!(std::error::Error::source(&e).is_some());
    assert!(
        e.to_string()
            .starts_with("the process registered under the key \"full\" refused")
    );
    assert!(matches!(e.into_inner(), Msg::Say(s) if s == "x"));

    let e = names.cast("nobody", Msg::Say("y".into())).unwrap_err();
    assert!(std::error::Error::source(&e).is_none());
    assert!(matches!(e.into_inner(), Msg::Say(s) if s == "y"));
}

#[tokio::test]
async fn update_of_a_stopped_process_is_not_registered() {
    let names: Registry<String, Msg, u32> = Registry::unique();
    let a = worker().await;
    names.register("a".into(), &a, 1).unwrap();
    let gone = stopped(&a);
    a.stop(None);
    gone.await;
    let e = names.update_value("a", &a, |v| v + 1).unwrap_err();
    assert!(matches!(e, UpdateError::NotRegistered { .. }));
    assert_eq!(
        e.to_string(),
        "the key \"a\" is not registered to this process"
    );
}
