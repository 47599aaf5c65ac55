//! The actor trait and its ractor glue.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures::FutureExt;
use pin_project_lite::pin_project;
use ractor::{ActorProcessingErr, ActorRef};
use tracing::Instrument;

use crate::addr::{Addr, DEFAULT_RESTART_BACKLOG, Envelope, Opened};
use crate::context::Context;
use crate::error::{ActorError, Crash, Ignore, SpawnError};

mod batch;

/// A process: state, and one callback per kind of event, as a `GenServer`.
///
/// Foundation runs it on ractor. Callbacks get the actor's own stable [`Addr`], which
/// stays valid across restarts and can be handed out. A callback that returns an error or
/// panics crashes the actor; its supervisor decides what happens next.
///
/// # Examples
///
/// ```
/// use foundation_actors::{Actor, ActorError, Addr, ReplyPort, spawn};
///
/// struct Counter;
/// enum CounterMsg {
///     Add(u64),
///     Total(ReplyPort<u64>),
/// }
///
/// impl Actor for Counter {
///     type Msg = CounterMsg;
///     type State = u64;
///     type Args = u64;
///
///     async fn init(&self, _me: &Addr<CounterMsg>, start: u64) -> Result<u64, ActorError> {
///         Ok(start)
///     }
///
///     async fn handle(&self, _me: &Addr<CounterMsg>, msg: CounterMsg, total: &mut u64) -> Result<(), ActorError> {
///         match msg {
///             CounterMsg::Add(n) => *total += n,
///             CounterMsg::Total(reply) => {
///                 let _ = reply.send(*total);
///             }
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let counter = spawn(Counter, 10).await?;
/// counter.cast(CounterMsg::Add(5))?;
/// assert_eq!(counter.call(CounterMsg::Total).await?, 15);
/// # Ok(()) }
/// ```
pub trait Actor: Send + Sync + 'static {
    /// The messages it handles. Needs no trait impl of its own.
    type Msg: Send + 'static;
    /// Its state, built by [`Actor::init`].
    type State: Send + 'static;
    /// What [`Actor::init`] is given.
    type Args: Send + 'static;

    /// Builds the initial state. An error fails the start (and, under a supervisor, the
    /// supervisor's start, naming this child). Returning [`Ignore`] as the
    /// error (`Err(Ignore.into())`) declines to start without failing, as OTP's `ignore`.
    fn init(
        &self,
        me: &Addr<Self::Msg>,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::State, ActorError>> + Send;

    /// Handles one message, with the sender's [`Context`] current.
    fn handle(
        &self,
        me: &Addr<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorError>> + Send;

    /// Runs when the actor stops gracefully (asked to stop, or shut down by its
    /// supervisor within its shutdown timeout). Not run after a crash or a kill.
    fn terminate(
        &self,
        me: &Addr<Self::Msg>,
        state: &mut Self::State,
    ) -> impl Future<Output = Result<(), ActorError>> + Send {
        let _ = (me, state);
        async { Ok(()) }
    }

    /// Called by a host that keeps the process's state while it has no message (a sharded
    /// entity, put away in its shard until its next one), as Erlang's `hibernate` shrinks
    /// an idle process: drop what the next message can rebuild. `#[actor]` drops the
    /// process's own address held by its `Ctx` (the address costs more than most states;
    /// the next handler gets it back from the host). Runs under the host's lock: keep it
    /// short, and it must not panic. Does nothing by default.
    fn hibernate(&self, state: &mut Self::State) {
        let _ = state;
    }
}

/// Runs an [`Actor`] as a ractor actor: unwraps envelopes, makes their context current,
/// and turns errors and panics into a cause its supervisor can match on.
///
/// # Crashes keep the mailbox
///
/// When a supervised actor's callback fails, the adapter does not exit at once: it drains
/// its mailbox (ractor's `drain` closes admission, so later sends are held by the address)
/// and keeps every message that was queued behind the failing one. On exit it hands them
/// to the address, ahead of anything held since, and reports the crash. The next
/// incarnation gets them first, in order: only the message being handled is lost.
pub(crate) struct Adapter<A: Actor> {
    pub(crate) actor: A,
    pub(crate) addr: Addr<A::Msg>,
}

impl<A: Actor> Adapter<A> {
    /// The glue for one incarnation of `actor` behind `addr`: it counts each message out
    /// of the mailbox as it takes it ([`Addr::queued`]), so it is installed counted.
    pub(crate) fn new(actor: A, addr: Addr<A::Msg>) -> Self {
        Self { actor, addr }
    }
}

impl<A: Actor> Drop for Adapter<A> {
    /// ractor drops the adapter when the incarnation's task ends, however it ends (a stop,
    /// a failure, a kill). A supervised process's supervisor decides whether that is the
    /// end; an unsupervised one has no supervisor, so this is where it stops for good (and
    /// its [`Addr::on_stop`] callbacks run).
    fn drop(&mut self) {
        if !self.addr.is_supervised() {
            self.addr.mark_stopped();
        }
    }
}

/// The adapter's state: the actor's own, and, after a crash, what it salvages (boxed:
/// idle actors should not pay for it).
pub(crate) struct Wrapped<A: Actor> {
    user: A::State,
    crashed: Option<Box<Crashed<A::Msg>>>,
}

struct Crashed<M> {
    crash: ActorProcessingErr,
    salvaged: Vec<Envelope<M>>,
}

fn crash_of(
    r: Result<Result<(), ActorError>, Box<dyn std::any::Any + Send>>,
) -> Result<(), ActorProcessingErr> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Box::new(Crash::Failed(e))),
        Err(panic) => Err(Box::new(Crash::Panicked(panic_message(panic)))),
    }
}

pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => (*s).to_owned(),
            Err(_) => "a panic with a non-string payload".to_owned(),
        },
    }
}

pin_project! {
    /// One message being handled: [`Adapter`]'s `handle`, written out by hand so that it
    /// stays small and cheap (it runs once per message). It salvages the message if the
    /// incarnation has crashed already, runs the handler under `catch_unwind`, and on a
    /// failure either starts the salvage (supervised) or reports the crash.
    struct Handling<'a, 's, M, F, G, R> {
        #[pin]
        step: Step<M, F, G, R>,
        addr: &'a Addr<M>,
        myself: ActorRef<Envelope<M>>,
        crashed: &'s mut Option<Box<Crashed<M>>>,
        // Dropped with this future, once the handler is done (a remote delivery's permit).
        _held: Option<crate::addr::Held<M>>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<M, F, G, R> {
        /// The incarnation crashed on an earlier message: keep this one for the next.
        Salvage { env: Option<Envelope<M>> },
        /// A message without a context: the handler's future, polled in place.
        Inline { #[pin] fut: F },
        /// A message with a context: the handler under the context's scope and span.
        InContext { fut: Pin<Box<G>> },
        /// A batch, or a feed's doorbell: the handler once per message of its run (or of
        /// the feed), in order (`batch::run`).
        /// Boxed, as `InContext`: the future of a single message stays small.
        Run { fut: Pin<Box<R>> },
    }
}

type Caught = std::thread::Result<Result<(), ActorError>>;

impl<M, F, G, R> Future for Handling<'_, '_, M, F, G, R>
where
    M: Send + 'static,
    F: Future<Output = Result<(), ActorError>>,
    G: Future<Output = Caught>,
    R: Future<Output = batch::Ran<M>>,
{
    type Output = Result<(), ActorProcessingErr>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let r = match this.step.project() {
            StepProj::Inline { fut } => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
                    Ok(Poll::Ready(Ok(()))) => return Poll::Ready(Ok(())),
                    Ok(Poll::Ready(Err(e))) => Ok(Err(e)),
                    Ok(Poll::Pending) => return Poll::Pending,
                    Err(panic) => Err(panic),
                }
            }
            StepProj::InContext { fut } => match fut.as_mut().poll(cx) {
                Poll::Ready(Ok(Ok(()))) => return Poll::Ready(Ok(())),
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            },
            StepProj::Run { fut } => {
                return match fut.as_mut().poll(cx) {
                    Poll::Ready(batch::Ran {
                        caught: Ok(Ok(())), ..
                    }) => Poll::Ready(Ok(())),
                    Poll::Ready(ran) => {
                        Poll::Ready(batch::on_crash(ran, this.addr, this.myself, this.crashed))
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            StepProj::Salvage { env } => {
                if let (Some(env), Some(crashed)) = (env.take(), this.crashed.as_mut()) {
                    // A batch's run is salvaged message by message.
                    env.flatten_into(&mut crashed.salvaged);
                }
                return Poll::Ready(Ok(()));
            }
        };
        Poll::Ready(on_crash(r, this.addr, this.myself, this.crashed))
    }
}

/// A handler failed or panicked: a supervised incarnation drains its mailbox to salvage
/// it (see [`Adapter`]); any other reports the crash at once.
#[cold]
#[inline(never)]
fn on_crash<M: Send + 'static>(
    r: Caught,
    addr: &Addr<M>,
    myself: &ActorRef<Envelope<M>>,
    crashed: &mut Option<Box<Crashed<M>>>,
) -> Result<(), ActorProcessingErr> {
    match crash_of(r) {
        Err(crash) if addr.is_supervised() && myself.drain().is_ok() => {
            *crashed = Some(Box::new(Crashed {
                crash,
                salvaged: Vec::new(),
            }));
            Ok(())
        }
        other => other,
    }
}

impl<A: Actor> ractor::Actor for Adapter<A> {
    type Msg = Envelope<A::Msg>;
    type State = Wrapped<A>;
    type Arguments = A::Args;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: A::Args,
    ) -> Result<Wrapped<A>, ActorProcessingErr> {
        match AssertUnwindSafe(self.actor.init(&self.addr, args))
            .catch_unwind()
            .await
        {
            Ok(Ok(user)) => Ok(Wrapped {
                user,
                crashed: None,
            }),
            // OTP's `ignore`: reported as a spawn error of its own, which the spawn
            // functions and supervisors tell apart from a failure.
            Ok(Err(e)) if e.is::<Ignore>() => {
                Err(Box::new(SpawnError::Ignored(self.addr.label().to_owned())))
            }
            Ok(Err(e)) => Err(Box::new(Crash::Failed(e))),
            Err(panic) => Err(Box::new(Crash::Panicked(panic_message(panic)))),
        }
    }

    #[inline]
    fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        env: Envelope<A::Msg>,
        state: &mut Wrapped<A>,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send {
        // Taken out of the mailbox: no longer queued, whatever happens to it next.
        self.addr.took();
        let Wrapped { user, crashed } = state;
        let mut held = None;
        let step = if crashed.is_some() {
            Step::Salvage { env: Some(env) }
        } else {
            match env.open() {
                Opened::One(ctx, msg, held_now) => {
                    held = held_now;
                    let fut = self.actor.handle(&self.addr, msg, user);
                    match ctx {
                        None => Step::Inline { fut },
                        // Boxed so that the future every actor keeps for its handler stays
                        // small; only messages that carry a context pay for the span and
                        // the task-local scope.
                        Some(ctx) => Step::InContext {
                            fut: Box::pin(in_context(
                                ctx,
                                self.addr.label(),
                                AssertUnwindSafe(fut).catch_unwind(),
                            )),
                        },
                    }
                }
                Opened::Run(run) => Step::Run {
                    fut: Box::pin(batch::run(
                        &self.actor,
                        &self.addr,
                        batch::Source::Run(run),
                        user,
                    )),
                },
                Opened::Feed(bell) => Step::Run {
                    fut: Box::pin(batch::run(
                        &self.actor,
                        &self.addr,
                        batch::Source::Feed(bell),
                        user,
                    )),
                },
            }
        };
        Handling {
            step,
            addr: &self.addr,
            myself,
            crashed,
            _held: held,
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Wrapped<A>,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(crashed) = state.crashed.take() {
            // The mailbox is drained: hand what was queued to the next incarnation, and
            // report the crash (not the drain) to the supervisor.
            self.addr.requeue_front(crashed.salvaged);
            return Err(crashed.crash);
        }
        crash_of(
            AssertUnwindSafe(self.actor.terminate(&self.addr, &mut state.user))
                .catch_unwind()
                .await,
        )
    }
}

/// Runs a handler future with the message's context current, inside a `tracing` span whose
/// parent is the sender's span.
pub(crate) async fn in_context<F: std::future::Future>(
    ctx: Context,
    process: &str,
    fut: F,
) -> F::Output {
    let hop = ctx.child();
    // Without the sender's span (a context from the wire, or a sender outside any span),
    // the span nests under whatever is current here, as a span without `parent:` would.
    let parent = ctx
        .sender_span()
        .cloned()
        .unwrap_or_else(tracing::Span::current);
    let span = tracing::debug_span!(
        parent: &parent,
        "handle",
        process = %process,
        trace_id = %hop.trace_id(),
        span_id = %hop.span_id(),
    );
    Context::scope(hop, fut).instrument(span).await
}

/// Starts an actor with no supervisor. Its [`Addr`] stops working when it exits.
///
/// # Errors
///
/// [`SpawnError::Init`] if its `init` fails or panics, [`SpawnError::Ignored`] if it
/// answers [`Ignore`].
pub async fn spawn<A: Actor>(actor: A, args: A::Args) -> Result<Addr<A::Msg>, SpawnError> {
    let label = std::any::type_name::<A>();
    let addr = Addr::new(label, false, DEFAULT_RESTART_BACKLOG);
    let adapter = Adapter::new(actor, addr.clone());
    let (actor_ref, _join) = ractor::Actor::spawn(None, adapter, args)
        .await
        .map_err(|e| SpawnError::from_ractor(label, e))?;
    addr.install(actor_ref, true);
    Ok(addr)
}
