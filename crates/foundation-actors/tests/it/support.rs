//! A probe actor that logs its life and does what it is told.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{Context, TraceId};

/// A shared, ordered log of events.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub(crate) fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
    pub(crate) fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Debug)]
pub(crate) enum Msg {
    Add(u64),
    Get(ReplyPort<u64>),
    Crash,
    Panic,
    Stop,
    Sleep(Duration),
    Trace(ReplyPort<Option<(TraceId, Option<SpanIdPair>)>>),
}

pub(crate) type SpanIdPair = (foundation_actors::SpanId, Option<foundation_actors::SpanId>);

/// Logs `start:<id>` on init and `stop:<id>` on terminate; `terminate_delay` makes
/// terminate slow.
#[derive(Clone)]
pub(crate) struct Probe {
    pub(crate) id: String,
    pub(crate) log: Log,
    pub(crate) fail_init: bool,
    pub(crate) terminate_delay: Duration,
}

impl Probe {
    pub(crate) fn new(id: &str, log: &Log) -> Self {
        Self {
            id: id.to_owned(),
            log: log.clone(),
            fail_init: false,
            terminate_delay: Duration::ZERO,
        }
    }

    pub(crate) fn spec(id: &str, log: &Log) -> ChildSpec<Msg> {
        ChildSpec::new(id, Self::new(id, log), ())
    }
}

impl Actor for Probe {
    type Msg = Msg;
    type State = u64;
    type Args = ();

    async fn init(&self, _: &Addr<Msg>, _: ()) -> Result<u64, ActorError> {
        if self.fail_init {
            self.log.push(format!("fail:{}", self.id));
            return Err(format!("{} refuses to start", self.id).into());
        }
        self.log.push(format!("start:{}", self.id));
        Ok(0)
    }

    async fn handle(&self, me: &Addr<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorError> {
        match msg {
            Msg::Add(k) => *n += k,
            Msg::Get(r) => {
                let _ = r.send(*n);
            }
            Msg::Crash => return Err(format!("{} crashed on purpose", self.id).into()),
            Msg::Panic => panic!("{} panicked on purpose", self.id),
            Msg::Stop => me.stop(None),
            Msg::Sleep(d) => tokio::time::sleep(d).await,
            Msg::Trace(r) => {
                let _ = r.send(
                    Context::current()
                        .map(|c| (c.trace_id(), Some((c.span_id(), c.parent_span())))),
                );
            }
        }
        Ok(())
    }

    async fn terminate(&self, _: &Addr<Msg>, _: &mut u64) -> Result<(), ActorError> {
        tokio::time::sleep(self.terminate_delay).await;
        self.log.push(format!("stop:{}", self.id));
        Ok(())
    }
}

/// Waits (without a fixed sleep) until `f` holds, failing after a generous deadline.
pub(crate) async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the address has had `n` incarnations and is running.
pub(crate) async fn incarnation<M: Send + 'static>(addr: &Addr<M>, n: u64) {
    eventually(&format!("incarnation {n} of {}", addr.label()), || {
        addr.incarnation() >= n && addr.is_running()
    })
    .await;
}
