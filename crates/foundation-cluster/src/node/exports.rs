//! Processes reachable from other nodes by name.
//!
//! Each item names its message type (a hash of its wire name) and, for a call, the reply
//! type its caller expects. Both are compared with the process's before anything is
//! decoded: a message of another type whose tags happen to match would otherwise decode
//! as one of the process's own variants and run its handler.

use std::sync::{Arc, Mutex};

use foundation_actors::remote::WireType;
use foundation_actors::{Addr, Context, RemoteMessage};

use super::runtime::lock;
use super::wire::{Answer, NOT_A_CALL, Refusal};

/// Where a call's answer goes: the reply's bytes, or why there is none.
pub(crate) type ReplyTo = Box<dyn FnOnce(Answer) + Send>;

/// The reply type named when one side's message is not a call.
pub(crate) const NO_REPLY_TYPE: &str = "no reply (not a call)";

/// A process that can take messages as bytes: an [`Addr`] whose message type has a wire
/// form.
pub(crate) trait Inbox: Send + Sync {
    /// The process's message type.
    fn wire_type(&self) -> WireType;

    /// The reply type of the process's handler of the call `msg` is, from its tag.
    fn reply_type_of(&self, msg: &[u8]) -> Option<WireType>;

    /// Delivers a message of type `ty`.
    ///
    /// # Errors
    ///
    /// [`Refusal::WrongType`] (before decoding), [`Refusal::BadMessage`],
    /// [`Refusal::Stopped`].
    fn cast(&self, ty: u64, msg: &[u8], ctx: Option<Context>) -> Result<(), Refusal>;

    /// Delivers a call of type `ty` whose caller expects a reply of type `reply_ty`; its
    /// answer goes to `reply`, exactly once.
    ///
    /// # Errors
    ///
    /// Why it was not delivered, once `reply` has been told: [`Refusal::WrongType`] and
    /// [`Refusal::WrongReplyType`] (before decoding), [`Refusal::BadMessage`],
    /// [`Refusal::Stopped`].
    fn call(
        &self,
        ty: u64,
        reply_ty: u64,
        msg: &[u8],
        ctx: Option<Context>,
        reply: ReplyTo,
    ) -> Result<(), Refusal>;

    /// Whether the process has stopped for good.
    fn is_stopped(&self) -> bool;
}

impl<M: RemoteMessage> Inbox for Addr<M> {
    fn is_stopped(&self) -> bool {
        Addr::is_stopped(self)
    }

    fn wire_type(&self) -> WireType {
        M::WIRE_TYPE
    }

    fn reply_type_of(&self, msg: &[u8]) -> Option<WireType> {
        M::reply_type_of(msg)
    }

    fn cast(&self, ty: u64, msg: &[u8], ctx: Option<Context>) -> Result<(), Refusal> {
        if ty != M::WIRE_TYPE.id() {
            return Err(Refusal::WrongType);
        }
        let msg = M::from_bytes(msg).map_err(|e| {
            tracing::warn!(error = %e, "dropped a message from another node that does not decode");
            Refusal::BadMessage
        })?;
        deliver(self, msg, ctx)
    }

    fn call(
        &self,
        ty: u64,
        reply_ty: u64,
        msg: &[u8],
        ctx: Option<Context>,
        reply: ReplyTo,
    ) -> Result<(), Refusal> {
        if ty != M::WIRE_TYPE.id() {
            reply(Err((Refusal::WrongType, M::TYPE_NAME.to_owned())));
            return Err(Refusal::WrongType);
        }
        // Read from the tag alone: the handler that would answer is not reached.
        let answers = M::reply_type_of(msg);
        if let Some(answers) = answers.filter(|t| t.id() != reply_ty) {
            reply(Err((Refusal::WrongReplyType, answers.name().to_owned())));
            return Err(Refusal::WrongReplyType);
        }
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
                None if o.delivered && stopping(&target) => {
                    o.send(Err((Refusal::Stopped, String::new())));
                }
                None if o.delivered => o.send(Err((Refusal::NoReply, String::new()))),
                None => o.dropped = true,
            }
        });
        let outcome = match M::from_bytes_with_reply(msg, replier) {
            // The caller expects a reply and this side's variant is not a call (the tag
            // had no reply type): its handler would never answer.
            Ok(msg) if answers.is_none() && reply_ty != NOT_A_CALL && !msg.is_call() => {
                Err((Refusal::WrongReplyType, NO_REPLY_TYPE))
            }
            Ok(msg) => deliver(self, msg, ctx).map_err(|r| (r, "")),
            Err(e) => {
                tracing::warn!(error = %e, "refused a call from another node that does not decode");
                Err((Refusal::BadMessage, ""))
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
                    o.send(Err((why, String::new())));
                }
                Ok(())
            }
            Err((r, theirs)) => {
                o.send(Err((r, theirs.to_owned())));
                Err(r)
            }
        }
    }
}

struct Once {
    reply: Option<ReplyTo>,
    delivered: bool,
    dropped: bool,
}

impl Once {
    fn send(&mut self, r: Answer) {
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
