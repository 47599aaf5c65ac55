//! Running an [`Actor`]'s callbacks without a ractor actor of its own: the pieces a host
//! (a shard of sharded entities) needs to run many light processes inside one.
//!
//! A ractor actor costs about 9.5 KB while idle (its task, mailbox channels, cell and
//! registry entries). A host keeps instead each process as its state plus a small queue,
//! and runs a process's queued messages one at a time on a task of its own only while it
//! has work. The process keeps Foundation's model: the same [`Actor`] (so `#[actor]` code
//! works unchanged, through [`TypedActor::actor`](crate::TypedActor::actor)), the same
//! [`Addr`] and typed handles ([`Addr::hosted`] routes them to the host through a
//! [`Mailbox`](crate::Mailbox)), and the same [`Context`](crate::Context): [`handle`] makes the sender's
//! context current and continues its span, as a ractor-run actor does.
//!
//! Failures come back as [`Crash`]: an error or a panic of the callback, caught here, so
//! the host decides what a crash means (a shard restarts the entity; its siblings are
//! untouched).

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::actor::{Actor, in_context, panic_message};
use crate::addr::{Addr, Envelope};
use crate::error::{ActorError, Ignore};

/// How a hosted process's callback failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Crash {
    /// The callback returned an error.
    #[error("failed: {0}")]
    Failed(ActorError),
    /// The callback panicked; the panic's message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// `init` declined to start ([`Ignore`]).
    #[error("declined to start (ignore)")]
    Ignored,
}

/// Runs `fut` (a callback), turning an error or a panic into a [`Crash`].
///
/// # Errors
///
/// [`Crash::Failed`], [`Crash::Panicked`], or [`Crash::Ignored`] for an [`Ignore`] error.
pub async fn catch<T, F>(fut: F) -> Result<T, Crash>
where
    F: Future<Output = Result<T, ActorError>>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.is::<Ignore>() => Err(Crash::Ignored),
        Ok(Err(e)) => Err(Crash::Failed(e)),
        Err(panic) => Err(Crash::Panicked(panic_message(panic))),
    }
}

/// Builds a hosted process's state with [`Actor::init`].
///
/// # Errors
///
/// As [`catch`].
pub async fn init<A: Actor>(
    actor: &A,
    me: &Addr<A::Msg>,
    args: A::Args,
) -> Result<A::State, Crash> {
    catch(actor.init(me, args)).await
}

/// Handles one message of a hosted process with [`Actor::handle`], with the sender's
/// context current and its span continued, as a ractor-run actor handles it. What the
/// envelope holds (a remote delivery's permit) is released once the handler is done.
///
/// # Errors
///
/// As [`catch`].
pub async fn handle<A: Actor>(
    actor: &A,
    me: &Addr<A::Msg>,
    env: Envelope<A::Msg>,
    state: &mut A::State,
) -> Result<(), Crash> {
    let (ctx, msg, _held) = env.into_held_parts();
    let fut = actor.handle(me, msg, state);
    match ctx {
        None => catch(fut).await,
        Some(ctx) => {
            let caught = in_context(ctx, me.label(), AssertUnwindSafe(fut).catch_unwind()).await;
            match caught {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Crash::Failed(e)),
                Err(panic) => Err(Crash::Panicked(panic_message(panic))),
            }
        }
    }
}

/// The sender's context and the message of an envelope a host was given (what it holds
/// until the message is handled is released): for a host that sends the message on
/// elsewhere, another node say, under the sender's context.
pub fn into_parts<M>(env: Envelope<M>) -> (Option<crate::Context>, M) {
    env.into_parts()
}

/// An envelope of `msg` with the sender's context `ctx` (the inverse of [`into_parts`]):
/// for a host that takes messages from elsewhere (another node) and queues them for its
/// processes itself, without an [`Addr`] per message.
pub fn from_parts<M>(ctx: Option<crate::Context>, msg: M) -> Envelope<M> {
    Envelope::new(ctx, msg)
}

/// As [`from_parts`], holding `held` until the message has been handled: it is dropped
/// once [`handle`] is done with the message, or with the message if it is never handled
/// (as [`Addr::cast_holding`] holds it). A host uses it to count what a peer has sent and
/// its processes have not handled yet.
pub fn holding<M: Send + 'static>(
    ctx: Option<crate::Context>,
    msg: M,
    held: impl Send + 'static,
) -> Envelope<M> {
    Envelope::holding(ctx, msg, held)
}

/// Stops a hosted process gracefully with [`Actor::terminate`].
///
/// # Errors
///
/// As [`catch`].
pub async fn terminate<A: Actor>(
    actor: &A,
    me: &Addr<A::Msg>,
    state: &mut A::State,
) -> Result<(), Crash> {
    catch(actor.terminate(me, state)).await
}
