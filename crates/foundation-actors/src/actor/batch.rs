//! Handling a batch ([`Addr::cast_batch`]): the handler once per message of the run, in
//! order, each under its own context and with what it holds released once it is handled;
//! and, when one of them crashes, what becomes of the rest of the run.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::{ActorProcessingErr, ActorRef};

use super::{Actor, Caught, Crashed, in_context};
use crate::addr::{Addr, Envelope};

/// How a batch's run went: `Ok(Ok(()))` with nothing left, or the crash of one message
/// and the messages after it, not handled.
pub(super) struct Ran<M> {
    pub(super) caught: Caught,
    pub(super) rest: Vec<Envelope<M>>,
}

/// Runs the handler on each message of `run`, in order, until one fails or panics.
pub(super) async fn run<A: Actor>(
    actor: &A,
    addr: &Addr<A::Msg>,
    run: Vec<Envelope<A::Msg>>,
    user: &mut A::State,
) -> Ran<A::Msg> {
    let mut items = run.into_iter();
    while let Some(env) = items.next() {
        // Each message of a run is a single one (`Batch` builds no other).
        let (ctx, msg, held) = env.into_held_parts();
        let fut = AssertUnwindSafe(actor.handle(addr, msg, user)).catch_unwind();
        let caught = match ctx {
            None => fut.await,
            Some(ctx) => in_context(ctx, addr.label(), fut).await,
        };
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
    Ran {
        caught: Ok(Ok(())),
        rest: Vec::new(),
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
