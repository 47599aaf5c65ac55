//! A small actor and helpers to wait for events instead of sleeping.

use std::time::Duration;

use foundation_actors::prelude::*;
use tokio::sync::oneshot;

/// Long enough for anything that should happen; nothing waits this long when it works.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// Remembers what it was told; fails or panics when asked.
#[derive(Clone)]
pub(crate) struct Worker;

pub(crate) enum Msg {
    Say(String),
    Heard(ReplyPort<Vec<String>>),
    Fail,
}

impl Actor for Worker {
    type Msg = Msg;
    type State = Vec<String>;
    type Args = ();
    async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<Vec<String>, ActorError> {
        Ok(Vec::new())
    }
    async fn handle(
        &self,
        _: &Addr<Msg>,
        msg: Msg,
        heard: &mut Vec<String>,
    ) -> Result<(), ActorError> {
        match msg {
            Msg::Say(s) => heard.push(s),
            Msg::Heard(reply) => {
                let _ = reply.send(heard.clone());
            }
            Msg::Fail => return Err("asked to fail".into()),
        }
        Ok(())
    }
}

/// A live unsupervised worker.
pub(crate) async fn worker() -> Addr<Msg> {
    spawn(Worker, ()).await.unwrap()
}

/// An address of a child spec that has not started: valid, not stopped, holds messages.
pub(crate) fn unstarted(id: &str) -> Addr<Msg> {
    ChildSpec::new(id, Worker, ()).addr()
}

/// Resolves once `addr` has stopped for good and every stop hook added before this one
/// (a registry's among them) has run: hooks run in the order they were added.
pub(crate) fn stopped(addr: &Addr<Msg>) -> impl std::future::Future<Output = ()> + use<> {
    let (tx, rx) = oneshot::channel();
    let hook = addr.on_stop(move || {
        let _ = tx.send(());
    });
    assert!(hook.is_some(), "the address had stopped already");
    async move {
        tokio::time::timeout(PATIENCE, rx)
            .await
            .expect("the process did not stop")
            .expect("the stop hook was dropped without running");
    }
}

/// Waits for `sup`'s next `ChildRestarted` event.
pub(crate) async fn restarted(events: &mut tokio::sync::broadcast::Receiver<SupervisorEvent>) {
    loop {
        let e = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("no restart")
            .expect("the supervisor's events ended");
        if matches!(e, SupervisorEvent::ChildRestarted { .. }) {
            return;
        }
    }
}

/// Forwards every message it gets, tagged with its number, to a channel: a group member
/// whose messages (`String`) can be copied.
pub(crate) struct Listener {
    pub(crate) n: usize,
    pub(crate) out: tokio::sync::mpsc::UnboundedSender<(usize, String)>,
}

impl Actor for Listener {
    type Msg = String;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<String>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<String>, msg: String, _: &mut ()) -> Result<(), ActorError> {
        let _ = self.out.send((self.n, msg));
        Ok(())
    }
}
