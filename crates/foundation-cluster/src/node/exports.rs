//! Processes reachable from other nodes by name.

use std::sync::{Arc, Mutex};

use foundation_actors::{Addr, Context, RemoteMessage};

use super::runtime::lock;
use super::wire::Refusal;

/// Where a call's answer goes: the reply's bytes, or why there is none.
pub(crate) type ReplyTo = Box<dyn FnOnce(Result<Vec<u8>, Refusal>) + Send>;

/// A process that can take messages as bytes: an [`Addr`] whose message type has a wire
/// form.
pub(crate) trait Inbox: Send + Sync {
    fn cast(&self, msg: &[u8], ctx: Option<Context>) -> Result<(), Refusal>;
    fn call(&self, msg: &[u8], ctx: Option<Context>, reply: ReplyTo);
    /// Whether the process has stopped for good.
    fn is_stopped(&self) -> bool;
}

impl<M: RemoteMessage> Inbox for Addr<M> {
    fn is_stopped(&self) -> bool {
        Addr::is_stopped(self)
    }

    fn cast(&self, msg: &[u8], ctx: Option<Context>) -> Result<(), Refusal> {
        let msg = M::from_bytes(msg).map_err(|e| {
            tracing::warn!(error = %e, "dropped a message from another node that does not decode");
            Refusal::BadMessage
        })?;
        deliver(self, msg, ctx)
    }

    fn call(&self, msg: &[u8], ctx: Option<Context>, reply: ReplyTo) {
        // The reply goes out once: the handler's answer, or `NoReply` when it drops the
        // port, or, when the request never reaches a handler, the reason. A port dropped
        // while decoding or delivering fails says nothing: the reason follows.
        let once = Arc::new(Mutex::new(Once {
            reply: Some(reply),
            delivered: false,
            dropped: false,
        }));
        let port_side = once.clone();
        let target = self.clone();
        let replier = foundation_actors::remote::Replier::new(move |bytes: Option<Vec<u8>>| {
            let mut o = lock(&port_side);
            match bytes {
                Some(bytes) => o.send(Ok(bytes)),
                // Dropped with the mailbox of a process that stopped (a call right after
                // `stop()`): the process is gone, not silent.
                None if o.delivered && stopping(&target) => o.send(Err(Refusal::Stopped)),
                None if o.delivered => o.send(Err(Refusal::NoReply)),
                None => o.dropped = true,
            }
        });
        let outcome = match M::from_bytes_with_reply(msg, replier) {
            Ok(msg) => deliver(self, msg, ctx),
            Err(e) => {
                tracing::warn!(error = %e, "refused a call from another node that does not decode");
                Err(Refusal::BadMessage)
            }
        };
        let mut o = lock(&once);
        match outcome {
            Ok(()) => {
                o.delivered = true;
                if o.dropped {
                    let why = if stopping(self) {
                        Refusal::Stopped
                    } else {
                        Refusal::NoReply
                    };
                    o.send(Err(why));
                }
            }
            Err(r) => o.send(Err(r)),
        }
    }
}

struct Once {
    reply: Option<ReplyTo>,
    delivered: bool,
    dropped: bool,
}

impl Once {
    fn send(&mut self, r: Result<Vec<u8>, Refusal>) {
        if let Some(reply) = self.reply.take() {
            reply(r);
        }
    }
}

/// Whether the process has stopped for good or its incarnation is stopping (its mailbox,
/// and the ports in it, are being dropped).
fn stopping<M: Send + 'static>(addr: &Addr<M>) -> bool {
    use ractor::ActorStatus;
    addr.is_stopped()
        || addr
            .actor_cell()
            .is_some_and(|c| matches!(c.get_status(), ActorStatus::Stopping | ActorStatus::Stopped))
}

fn deliver<M: Send + 'static>(addr: &Addr<M>, msg: M, ctx: Option<Context>) -> Result<(), Refusal> {
    let sent = match ctx {
        Some(ctx) => addr.cast_with(ctx, msg),
        None => addr.cast(msg),
    };
    sent.map_err(|_| Refusal::Stopped)
}
