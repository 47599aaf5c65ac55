//! A probe actor that logs its life and does what it is told.

use std::sync::atomic::{AtomicU32, Ordering};
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
}

#[derive(Debug)]
pub(crate) enum Msg {
    Add(u64),
    /// Logs `got:<id>:<n>`, to check the order messages arrive in.
    Note(u64),
    Get(ReplyPort<u64>),
    Crash,
    Panic,
    Stop,
    Sleep(Duration),
    /// Signals when it starts, sleeps, then logs `napped:<id>`.
    Nap(Duration, tokio::sync::oneshot::Sender<()>),
    /// Signals when it starts, then waits until told to go on (or the sender is dropped).
    Hold(
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    ),
    Trace(ReplyPort<Option<(TraceId, Option<SpanIdPair>)>>),
}

pub(crate) type SpanIdPair = (foundation_actors::SpanId, Option<foundation_actors::SpanId>);

/// What a probe's next starts answer: `fail`/`ignore` starts fail or answer ignore (and
/// count down; `u32::MAX` is for ever). Shared by every incarnation of the probe.
#[derive(Clone, Default)]
pub(crate) struct Refusals {
    fail: Arc<AtomicU32>,
    ignore: Arc<AtomicU32>,
}

impl Refusals {
    /// The next `n` starts fail.
    pub(crate) fn fail_next(&self, n: u32) {
        self.fail.store(n, Ordering::SeqCst);
    }
    /// The next `n` starts answer ignore.
    pub(crate) fn ignore_next(&self, n: u32) {
        self.ignore.store(n, Ordering::SeqCst);
    }
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                u32::MAX => Some(n),
                n => Some(n - 1),
            })
            .is_ok()
    }
}

/// Logs `start:<id>` on init and `stop:<id>` on terminate; `terminate_delay` makes
/// terminate slow.
#[derive(Clone)]
pub(crate) struct Probe {
    pub(crate) id: String,
    pub(crate) log: Log,
    pub(crate) fail_init: bool,
    pub(crate) init_delay: Duration,
    /// Released when `init` begins.
    pub(crate) init_started: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    pub(crate) terminate_delay: Duration,
    /// Starts to fail or to answer ignore (logged `fail:<id>`, `ignore:<id>`).
    pub(crate) refuse: Refusals,
}

impl Probe {
    pub(crate) fn new(id: &str, log: &Log) -> Self {
        Self {
            id: id.to_owned(),
            log: log.clone(),
            fail_init: false,
            init_delay: Duration::ZERO,
            init_started: None,
            terminate_delay: Duration::ZERO,
            refuse: Refusals::default(),
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
        if let Some(started) = &self.init_started {
            started.add_permits(1);
        }
        tokio::time::sleep(self.init_delay).await;
        if Refusals::take(&self.refuse.ignore) {
            self.log.push(format!("ignore:{}", self.id));
            return Err(foundation_actors::Ignore.into());
        }
        if self.fail_init || Refusals::take(&self.refuse.fail) {
            self.log.push(format!("fail:{}", self.id));
            return Err(format!("{} refuses to start", self.id).into());
        }
        self.log.push(format!("start:{}", self.id));
        Ok(0)
    }

    async fn handle(&self, me: &Addr<Msg>, msg: Msg, n: &mut u64) -> Result<(), ActorError> {
        match msg {
            Msg::Add(k) => *n += k,
            Msg::Note(k) => self.log.push(format!("got:{}:{k}", self.id)),
            Msg::Get(r) => {
                let _ = r.send(*n);
            }
            Msg::Crash => return Err(format!("{} crashed on purpose", self.id).into()),
            Msg::Panic => panic!("{} panicked on purpose", self.id),
            Msg::Stop => me.stop(None),
            Msg::Sleep(d) => tokio::time::sleep(d).await,
            Msg::Nap(d, started) => {
                let _ = started.send(());
                tokio::time::sleep(d).await;
                self.log.push(format!("napped:{}", self.id));
            }
            Msg::Hold(started, go) => {
                let _ = started.send(());
                let _ = go.await;
            }
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

/// A subscription to a supervisor's events, for tests that wait for one.
pub(crate) struct Events(tokio::sync::broadcast::Receiver<foundation_actors::SupervisorEvent>);

impl Events {
    pub(crate) fn of(sup: &Supervisor) -> Self {
        Self(sup.subscribe())
    }

    /// Waits (with a generous deadline) for the first event `pick` accepts.
    pub(crate) async fn wait<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&foundation_actors::SupervisorEvent) -> Option<T>,
    ) -> T {
        let wait = async {
            loop {
                match self.0.recv().await {
                    Ok(e) => {
                        if let Some(t) = pick(&e) {
                            return t;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("supervisor events ended while waiting for {what}: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// The events received and not yet read (those lost to lag are skipped).
    pub(crate) fn drain(&mut self) -> Vec<foundation_actors::SupervisorEvent> {
        let mut out = Vec::new();
        loop {
            match self.0.try_recv() {
                Ok(e) => out.push(e),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return out,
            }
        }
    }

    /// Waits for `child` to be restarted; returns its incarnation.
    pub(crate) async fn restarted(&mut self, child: &str) -> u64 {
        self.wait(&format!("a restart of {child}"), |e| match e {
            foundation_actors::SupervisorEvent::ChildRestarted {
                child: c,
                incarnation,
                ..
            } if c == child => Some(*incarnation),
            _ => None,
        })
        .await
    }

    /// Waits for `child` to exit; returns the reason and whether it will be restarted.
    pub(crate) async fn exited(&mut self, child: &str) -> (foundation_actors::ExitReason, bool) {
        self.wait(&format!("an exit of {child}"), |e| match e {
            foundation_actors::SupervisorEvent::ChildExited {
                child: c,
                reason,
                restarting,
                ..
            } if c == child => Some((reason.clone(), *restarting)),
            _ => None,
        })
        .await
    }
}
