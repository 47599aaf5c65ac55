//! Handling a batch ([`Addr::cast_batch`]) or a feed's doorbell ([`Addr::cast_feed`]): the
//! handler once per message of the run (or of the feed), in order, each under its own
//! context and with what it holds released once it is handled; and, when one of them
//! crashes, what becomes of the rest.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::{ActorProcessingErr, ActorRef};

use super::{Actor, Caught, Crashed, in_context};
use crate::addr::{Addr, Doorbell, Envelope, FEED_BUDGET};
use crate::context::Context;

/// How a batch's run went: `Ok(Ok(()))` with nothing left, or the crash of one message
/// and the messages after it, not handled.
pub(super) struct Ran<M> {
    pub(super) caught: Caught,
    pub(super) rest: Vec<Envelope<M>>,
}

/// What a [`run`] handles: a batch's run, or what a feed yields.
pub(super) enum Source<M> {
    Run(Vec<Envelope<M>>),
    Feed(Doorbell<M>),
}

/// Runs the handler on each message of `source`, in order, until one fails or panics: a
/// batch's run whole, a feed's messages until it has none or [`FEED_BUDGET`] have been
/// handled (then the doorbell goes to the end of the mailbox, behind what arrived
/// meanwhile).
pub(super) async fn run<A: Actor>(
    actor: &A,
    addr: &Addr<A::Msg>,
    source: Source<A::Msg>,
    user: &mut A::State,
) -> Ran<A::Msg> {
    match source {
        Source::Run(run) => {
            let mut items = run.into_iter();
            while let Some(env) = items.next() {
                // Each message of a run is a single one (`Batch` builds no other).
                let (ctx, msg, held) = env.into_held_parts();
                let caught = one(actor, addr, ctx, msg, user).await;
                // Released once its own message is handled, as for a single message.
                drop(held);
                if !matches!(caught, Ok(Ok(()))) {
                    return Ran {
                        caught,
                        // In place: the run's own buffer.
                        rest: items.collect(),
                    };
                }
            }
        }
        Source::Feed(mut bell) => {
            for _ in 0..FEED_BUDGET {
                let Some((ctx, msg)) = bell.next() else {
                    return ok();
                };
                let caught = one(actor, addr, ctx, msg, user).await;
                if !matches!(caught, Ok(Ok(()))) {
                    // The rest of the feed goes with its doorbell.
                    return Ran {
                        caught,
                        rest: vec![Envelope::from_doorbell(bell)],
                    };
                }
            }
            // Refused: the process is stopping for good, or restarting with a full
            // backlog; the doorbell is dropped and tells its feed.
            let _ = addr.send_envelope(Envelope::from_doorbell(bell));
        }
    }
    ok()
}

fn ok<M>() -> Ran<M> {
    Ran {
        caught: Ok(Ok(())),
        rest: Vec::new(),
    }
}

/// The handler on one message, under its context if it has one.
async fn one<A: Actor>(
    actor: &A,
    addr: &Addr<A::Msg>,
    ctx: Option<Context>,
    msg: A::Msg,
    user: &mut A::State,
) -> Caught {
    let fut = AssertUnwindSafe(actor.handle(addr, msg, user)).catch_unwind();
    match ctx {
        None => fut.await,
        // Boxed, as for a single message (`Step::InContext`): the run's future, boxed and
        // moved once per batch or doorbell, stays small.
        Some(ctx) => Box::pin(in_context(ctx, addr.label(), fut)).await,
    }
}

/// A message of a batch crashed: as for a single message (`super::on_crash`), and the
/// rest of the run goes where the mailbox's messages behind it go. A supervised
/// incarnation that is draining salvages them first (they were queued before anything
/// still in its mailbox); otherwise the process stops for good and they are dropped with
/// its mailbox, counted in a warning.
#[cold]
#[inline(never)]
pub(super) fn on_crash<M: Send + 'static>(
    ran: Ran<M>,
    addr: &Addr<M>,
    myself: &ActorRef<Envelope<M>>,
    crashed: &mut Option<Box<Crashed<M>>>,
) -> Result<(), ActorProcessingErr> {
    let Ran { caught, rest } = ran;
    let out = super::on_crash(caught, addr, myself, crashed);
    match crashed {
        Some(c) => c.salvaged.extend(rest),
        None if !rest.is_empty() => tracing::warn!(
            process = %addr.label(),
            count = rest.len(),
            "messages of a batch were not handled: the process crashed on the one before them \
             and stops for good"
        ),
        None => {}
    }
    out
}
