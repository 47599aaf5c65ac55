//! Stable addresses: a handle that reaches a process across its restarts.
//!
//! ractor gives every spawn a new `ActorRef`, so a reference taken before a crash is dead
//! after the restart. An [`Addr`] instead points at a slot that the supervisor updates
//! with each new incarnation: the same `Addr` (or the same registered name) keeps working.
//! Messages sent while the process restarts are held and handed to the new incarnation
//! first, in order; once the process has stopped for good a send fails with
//! [`SendError::Stopped`] and gives the message back.
//!
//! # Stopped for good
//!
//! A process has *stopped for good* when no incarnation will follow: its supervisor will
//! not restart it (a `Temporary` child exited, a `Transient` one exited normally, its
//! supervisor terminated it, shut down or gave up), or, unsupervised, its task ended. A
//! restart is not a stop. [`Addr::is_stopped`] says so, and [`Addr::on_stop`] runs a
//! callback at that moment (a registry drops the process's names there). A static
//! supervisor's `restart_child` may bring a terminated child back behind the same
//! address: that is a new life, and callbacks added before the stop do not carry over.

mod batch;
mod depth;
mod feed;
mod slot;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use ractor::{ActorCell, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

use crate::context::Context;
use crate::error::{CallError, SendError};

pub use batch::Batch;
pub(crate) use batch::Opened;
pub(crate) use feed::Doorbell;
pub use feed::{FEED_BUDGET, Feed};
pub(crate) use slot::{Phase, Refused, Slot, Target};

/// How long [`Addr::call`] waits by default, as `GenServer.call`.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How many messages a process may hold between incarnations, by default.
pub const DEFAULT_RESTART_BACKLOG: usize = 65_536;

/// A message with the sender's context, if it had one: what actually travels through
/// ractor.
///
/// Without a context it is the bare message. For an enum message (what `#[actor]`
/// generates, and most hand-written ones) the compiler keeps the envelope's tag in the
/// message's spare tag values, so the envelope is no bigger than the message and ractor's
/// box for it is the size raw ractor allocates. A message with a context carries the pair
/// in a box of its own.
pub struct Envelope<M>(Repr<M>);

enum Repr<M> {
    Bare(M),
    WithContext(Box<(Context, M)>),
    /// With something held until the message has been handled (see [`Addr::cast_holding`]),
    /// in one allocation with the message: when the message is taken out, the rest of the
    /// box is what is held.
    Holding(Box<dyn Holds<M>>),
    /// A run of messages handled one by one, in order, as one mailbox message (see
    /// [`Addr::cast_batch`]): at least two, none of them a batch itself.
    Batch(Box<Batch<M>>),
    /// A feed's doorbell: the handler once per message the feed yields (see
    /// [`Addr::cast_feed`]).
    Feed(Doorbell<M>),
}

/// What a message holds until its handler has finished with it, dropped then: the box
/// the message came in, with the message taken out.
pub(crate) type Held<M> = Box<dyn Holds<M>>;

/// A message, its context and what it holds, in one allocation ([`Repr::Holding`]).
pub(crate) trait Holds<M>: Send {
    /// The context, while the message is in.
    fn ctx(&self) -> Option<&Context>;
    /// Takes the context and the message out: what stays in the box is what is held.
    fn take(&mut self) -> (Option<Context>, M);
}

/// The one [`Holds`]: `msg` is `None` once taken.
struct Holding<M, H> {
    ctx: Option<Context>,
    msg: Option<M>,
    // Never read: kept until the box is dropped.
    _held: H,
}

impl<M: Send, H: Send> Holds<M> for Holding<M, H> {
    fn ctx(&self) -> Option<&Context> {
        self.ctx.as_ref()
    }

    fn take(&mut self) -> (Option<Context>, M) {
        match self.msg.take() {
            Some(msg) => (self.ctx.take(), msg),
            // Taken once, by the one `into_held_parts` or `open` that consumes the
            // envelope.
            None => unreachable_message(),
        }
    }
}

/// `msg` with `ctx` and `held`, in one allocation.
pub(crate) fn holding_repr<M: Send + 'static>(
    ctx: Option<Context>,
    msg: M,
    held: impl Send + 'static,
) -> Box<dyn Holds<M>> {
    Box::new(Holding {
        ctx,
        msg: Some(msg),
        _held: held,
    })
}

/// The context and message of a holding envelope, and the rest of its box as what it
/// holds (no allocation: the box is the same).
#[inline]
pub(crate) fn take_holding<M>(mut all: Box<dyn Holds<M>>) -> (Option<Context>, M, Held<M>) {
    let (ctx, msg) = all.take();
    (ctx, msg, all)
}

impl<M> Envelope<M> {
    /// `msg`, with `ctx` if there is one.
    #[inline]
    pub(crate) fn new(ctx: Option<Context>, msg: M) -> Self {
        match ctx {
            None => Self(Repr::Bare(msg)),
            Some(ctx) => Self(Repr::WithContext(Box::new((ctx, msg)))),
        }
    }

    /// `msg`, with `ctx` if there is one, holding `held` until the message has been
    /// handled (see [`Addr::cast_holding`]).
    #[inline]
    pub(crate) fn holding(ctx: Option<Context>, msg: M, held: impl Send + 'static) -> Self
    where
        M: Send + 'static,
    {
        Self(Repr::Holding(holding_repr(ctx, msg, held)))
    }

    /// The context and the message (what it held is dropped).
    #[inline]
    pub(crate) fn into_parts(self) -> (Option<Context>, M) {
        let (ctx, msg, _) = self.into_held_parts();
        (ctx, msg)
    }

    /// The context, the message and what it holds until it has been handled.
    #[inline]
    pub(crate) fn into_held_parts(self) -> (Option<Context>, M, Option<Held<M>>) {
        match self.0 {
            Repr::Bare(msg) => (None, msg, None),
            Repr::WithContext(both) => {
                let (ctx, msg) = *both;
                (Some(ctx), msg, None)
            }
            Repr::Holding(all) => {
                let (ctx, msg, held) = take_holding(all);
                (ctx, msg, Some(held))
            }
            // Never here: whoever can be handed a batch opens it first (`Envelope::open`).
            Repr::Batch(run) => batch::first_of(*run),
            // Never here either, as for a batch.
            Repr::Feed(bell) => batch::first_of_feed(bell),
        }
    }

    /// The message alone.
    #[inline]
    pub(crate) fn into_msg(self) -> M {
        self.into_parts().1
    }

    /// The context, if the message carries one.
    pub(crate) fn ctx(&self) -> Option<&Context> {
        match &self.0 {
            Repr::Bare(_) => None,
            Repr::WithContext(both) => Some(&both.0),
            Repr::Holding(all) => all.ctx(),
            Repr::Batch(_) | Repr::Feed(_) => None,
        }
    }
}

impl<M> fmt::Debug for Envelope<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("ctx", &self.ctx())
            .finish()
    }
}

// The one `Message` impl Foundation needs: with ractor's `cluster` feature on there is no
// blanket impl, and wrapping every user message here means user types need none.
impl<M: Send + 'static> ractor::Message for Envelope<M> {}

/// Where an address delivers when its process is not a ractor actor of its own: a
/// process hosted by another (a sharded entity, run inside its shard). See
/// [`Addr::hosted`] and [`crate::hosted`].
pub trait Mailbox<M>: Send + Sync + 'static {
    /// Queues `env` for the hosted process, or hands it back if the host has stopped for
    /// good (the address then stops for good too, as an unsupervised process's does).
    ///
    /// # Errors
    ///
    /// The envelope, handed back, when the host does not run the process now: for good,
    /// or, when [`Mailbox::is_gone`] says otherwise, for now.
    fn deliver(&self, env: Envelope<M>) -> Result<(), Envelope<M>>;

    /// Whether a message handed back by [`Mailbox::deliver`] means the host will never run
    /// the process again: the address then stops for good ([`SendError::Stopped`]).
    /// `false` when the host is only down for now (a sharded entity's region stopped, to
    /// be restarted): the send fails with [`SendError::Unavailable`] and the address goes
    /// on working once the host is back. Default: `true`. Asked only after a refusal.
    fn is_gone(&self) -> bool {
        true
    }

    /// [`Addr::stop`]: asks the host to stop the process gracefully after the message in
    /// hand. Does nothing unless the host says otherwise.
    fn stop(&self) {}

    /// [`Addr::kill`]: asks the host to stop the process at once. Does nothing unless the
    /// host says otherwise.
    fn kill(&self) {}
}

/// The target of a slot: a ractor actor, or a process hosted by another.
pub(crate) enum Route<M> {
    /// A ractor actor, and whether it keeps the counts of its mailbox (an actor run by
    /// [`crate::Actor`]'s glue does; a supervisor, which also sends to itself around its
    /// address, does not).
    Actor(ActorRef<Envelope<M>>, bool),
    // Boxed twice: a thin pointer keeps the slot's published copy of its target small.
    #[allow(clippy::redundant_allocation)]
    Hosted(Box<Box<dyn Mailbox<M>>>),
}

impl<M: Send + 'static> Target<Envelope<M>> for Route<M> {
    #[inline]
    fn deliver(&self, m: Envelope<M>) -> Result<(), Envelope<M>> {
        match self {
            Route::Actor(a, _) => a.send_message(m).map_err(|e| match e {
                ractor::MessagingErr::SendErr(m) => m,
                // Only `SendErr` carries the message back; the others cannot happen for a
                // typed local ref, but if they did the process is unreachable either way.
                _ => unreachable_message(),
            }),
            Route::Hosted(h) => deliver_hosted(h.as_ref().as_ref(), m),
        }
    }

    fn gone(&self) -> bool {
        match self {
            Route::Actor(..) => true,
            Route::Hosted(h) => h.is_gone(),
        }
    }

    #[inline]
    fn counted(&self) -> bool {
        matches!(self, Route::Actor(_, true))
    }
}

/// A hosted process's delivery, out of line: the send to a ractor actor is the hot path,
/// and keeping this branch's code out of it keeps that path as it was before hosting.
#[cold]
#[inline(never)]
fn deliver_hosted<M: Send + 'static>(
    h: &dyn Mailbox<M>,
    m: Envelope<M>,
) -> Result<(), Envelope<M>> {
    match m.0 {
        // A host takes one message at a time.
        Repr::Batch(run) => batch::deliver_each(h, *run),
        Repr::Feed(bell) => feed::deliver_each(h, bell),
        _ => h.deliver(m),
    }
}

impl<M> Route<M> {
    fn actor(&self) -> Option<&ActorRef<Envelope<M>>> {
        match self {
            Route::Actor(a, _) => Some(a),
            Route::Hosted(_) => None,
        }
    }
}

#[cold]
pub(crate) fn unreachable_message<T>() -> T {
    // `send_message` on a typed, local `ActorRef` only fails with `SendErr`.
    unreachable!("ractor returned a non-SendErr error for a typed local send")
}

type ActorSlot<M> = Slot<Envelope<M>, Route<M>>;

/// A stable address of a process whose messages are `M`. Cheap to clone; `Send + Sync`.
///
/// See the [module docs](self).
pub struct Addr<M> {
    slot: Arc<ActorSlot<M>>,
    label: Arc<str>,
}

impl<M> Clone for Addr<M> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            label: self.label.clone(),
        }
    }
}

/// A reference to an [`Addr`] that does not keep it alive ([`Addr::downgrade`]): the
/// address again with [`WeakAddr::upgrade`] while some clone of it lives. What a mailbox
/// given to [`Addr::hosted_with`] keeps of the address it serves.
pub struct WeakAddr<M> {
    slot: std::sync::Weak<ActorSlot<M>>,
    label: Arc<str>,
}

impl<M> Clone for WeakAddr<M> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            label: self.label.clone(),
        }
    }
}

impl<M> fmt::Debug for WeakAddr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakAddr")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl<M> WeakAddr<M> {
    /// The address, if a clone of it still lives.
    pub fn upgrade(&self) -> Option<Addr<M>> {
        Some(Addr {
            slot: self.slot.upgrade()?,
            label: self.label.clone(),
        })
    }
}

impl<M: Send + 'static> fmt::Debug for Addr<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Addr")
            .field("label", &self.label)
            .field("phase", &self.slot.phase())
            .finish()
    }
}

impl<M: Send + 'static> Addr<M> {
    pub(crate) fn new(label: impl Into<Arc<str>>, supervised: bool, backlog: usize) -> Self {
        Self {
            slot: Arc::new(Slot::new(supervised, backlog)),
            label: label.into(),
        }
    }

    /// Publishes a new incarnation; `counted` if it keeps its mailbox's counts (its glue
    /// calls [`Addr::took`] for each message it takes: see [`Addr::queued`]).
    pub(crate) fn install(&self, actor: ActorRef<Envelope<M>>, counted: bool) {
        self.slot.install(Route::Actor(actor, counted));
    }

    /// The live incarnation took a message out of its mailbox (its glue only).
    #[inline]
    pub(crate) fn took(&self) {
        self.slot.took();
    }

    /// An address whose messages go to `mailbox` instead of a ractor actor: a process
    /// hosted by another (a sharded entity, run inside its shard). It is running at once;
    /// it stops for good when `mailbox` hands a message back. [`Addr::stop`] and
    /// [`Addr::kill`] go to the mailbox; [`Addr::actor_id`] and [`Addr::actor_cell`] are
    /// `None`.
    pub fn hosted(label: impl Into<Arc<str>>, mailbox: Box<dyn Mailbox<M>>) -> Self {
        let addr = Self::new(label, false, 0);
        addr.slot.install(Route::Hosted(Box::new(mailbox)));
        addr
    }

    /// As [`Addr::hosted`], with a mailbox built from a [`WeakAddr`] of the address it
    /// serves: a host can then give the process this very address (an upgrade, no
    /// allocation) when a message through it sets the process running, instead of
    /// building a new one.
    pub fn hosted_with(
        label: impl Into<Arc<str>>,
        mailbox: impl FnOnce(WeakAddr<M>) -> Box<dyn Mailbox<M>>,
    ) -> Self {
        let addr = Self::new(label, false, 0);
        let mailbox = mailbox(addr.downgrade());
        addr.slot.install(Route::Hosted(Box::new(mailbox)));
        addr
    }

    /// A reference to this address that does not keep it alive: see [`WeakAddr`].
    pub fn downgrade(&self) -> WeakAddr<M> {
        WeakAddr {
            slot: Arc::downgrade(&self.slot),
            label: self.label.clone(),
        }
    }

    /// Identifies the process (the address of its slot), for lookups by address.
    pub(crate) fn slot_key(&self) -> usize {
        Arc::as_ptr(&self.slot) as usize
    }

    /// An identity of the process behind this address, equal for every clone of it and
    /// stable across restarts; supervisor events carry it (useful for anonymous children).
    pub fn key(&self) -> AddrKey {
        AddrKey(self.slot_key())
    }

    pub(crate) fn set_supervised(&self, supervised: bool) {
        self.slot.set_supervised(supervised);
    }

    pub(crate) fn set_backlog(&self, n: usize) {
        self.slot.set_backlog(n);
    }

    pub(crate) fn is_supervised(&self) -> bool {
        self.slot.is_supervised()
    }

    /// Hands messages salvaged from a crashed incarnation to the next one, first.
    pub(crate) fn requeue_front(&self, salvaged: Vec<Envelope<M>>) {
        let lost = self.slot.requeue_front(salvaged);
        if !lost.is_empty() {
            tracing::warn!(
                process = %self.label,
                count = lost.len(),
                "messages in a crashed mailbox were not delivered: the process stopped for good"
            );
        }
    }

    pub(crate) fn mark_restarting(&self) {
        self.slot.mark_restarting();
    }

    /// Marks the process gone for good; the held messages are dropped with a warning
    /// (their reply ports close, so callers get [`CallError::NoReply`]).
    pub(crate) fn mark_stopped(&self) {
        let lost = self.slot.mark_stopped();
        if !lost.is_empty() {
            tracing::warn!(
                process = %self.label,
                count = lost.len(),
                "messages held during a restart were not delivered: the process stopped for good"
            );
        }
    }

    /// Sends `msg` without waiting for it to be handled (Erlang's `!`, `GenServer.cast`).
    /// The current [`Context`] travels with it.
    ///
    /// # Errors
    ///
    /// [`SendError::Stopped`] if the process has stopped for good, [`SendError::Backlog`]
    /// if it is restarting with a full backlog. Either way the message is handed back.
    #[inline]
    pub fn cast(&self, msg: M) -> Result<(), SendError<M>> {
        self.send_envelope(Envelope::new(current_for_send(), msg))
            .map_err(|(r, env)| refused(r, env.into_msg()))
    }

    /// Sends `msg` under an explicit context instead of the current one.
    ///
    /// # Errors
    ///
    /// As [`Addr::cast`].
    pub fn cast_with(&self, ctx: Context, msg: M) -> Result<(), SendError<M>> {
        self.send_envelope(Envelope::new(Some(with_sender_span(ctx)), msg))
            .map_err(|(r, env)| refused(r, env.into_msg()))
    }

    /// Sends `msg` with `ctx` (if any), holding `held` until a handler has finished with
    /// the message: `held` is dropped after the handler returns (or fails), or with the
    /// message if it is never handled (refused, or dropped with a stopped process's
    /// mailbox). The node uses it to count the remote messages a process has not handled
    /// yet (a permit), so that a slow process bounds what peers can queue at it.
    ///
    /// # Errors
    ///
    /// As [`Addr::cast`]; `held` is dropped.
    pub fn cast_holding(
        &self,
        ctx: Option<Context>,
        msg: M,
        held: impl Send + 'static,
    ) -> Result<(), SendError<M>> {
        let ctx = ctx.map(with_sender_span);
        self.send_envelope(Envelope::holding(ctx, msg, held))
            .map_err(|(r, env)| refused(r, env.into_msg()))
    }

    #[inline]
    pub(crate) fn send_envelope(&self, env: Envelope<M>) -> Result<(), (Refused, Envelope<M>)> {
        self.slot.send(env)
    }

    /// Sends a request built by `build` around a reply port, and waits for the reply for
    /// at most [`DEFAULT_CALL_TIMEOUT`] or until the context's deadline, whichever is first.
    ///
    /// # Errors
    ///
    /// See [`CallError`]: the process stopped, did not reply in time, the deadline passed,
    /// or it dropped the reply port.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the reply; the request may still be handled.
    ///
    /// # Examples
    ///
    /// ```
    /// # use foundation_actors::{Actor, ActorError, Addr, ReplyPort, spawn};
    /// struct Echo;
    /// impl Actor for Echo {
    ///     type Msg = (String, ReplyPort<String>);
    ///     type State = ();
    ///     type Args = ();
    ///     async fn init(&self, _: &Addr<Self::Msg>, _: ()) -> Result<(), ActorError> { Ok(()) }
    ///     async fn handle(&self, _: &Addr<Self::Msg>, (s, reply): Self::Msg, _: &mut ()) -> Result<(), ActorError> {
    ///         let _ = reply.send(s);
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let echo = spawn(Echo, ()).await.unwrap();
    /// let got = echo.call(|port| ("hi".to_string(), port)).await.unwrap();
    /// assert_eq!(got, "hi");
    /// # }
    /// ```
    pub async fn call<R, F>(&self, build: F) -> Result<R, CallError>
    where
        F: FnOnce(ReplyPort<R>) -> M,
        R: Send + 'static,
    {
        self.call_timeout(build, DEFAULT_CALL_TIMEOUT).await
    }

    /// As [`Addr::call`], waiting at most `timeout` (and never past the deadline).
    ///
    /// # Errors
    ///
    /// As [`Addr::call`].
    pub async fn call_timeout<R, F>(&self, build: F, timeout: Duration) -> Result<R, CallError>
    where
        F: FnOnce(ReplyPort<R>) -> M,
        R: Send + 'static,
    {
        let ctx = current_for_send();
        let (wait, expired_is_deadline) = match ctx.as_ref().and_then(Context::remaining) {
            Some(left) if left.is_zero() => return Err(CallError::DeadlineExceeded),
            Some(left) if left < timeout => (left, true),
            _ => (timeout, false),
        };
        let (tx, rx) = oneshot::channel();
        let port: ReplyPort<R> = (tx, wait).into();
        self.send_envelope(Envelope::new(ctx, build(port)))
            .map_err(|(r, env)| CallError::from(refused(r, env.into_msg())))?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CallError::NoReply),
            Err(_) if expired_is_deadline => Err(CallError::DeadlineExceeded),
            Err(_) => Err(CallError::Timeout(wait)),
        }
    }

    /// Asks the current incarnation to stop after the message it is handling. A
    /// supervised process is then treated as having exited normally (a `Permanent` child is
    /// restarted, a `Transient` or `Temporary` one is not).
    pub fn stop(&self, reason: Option<String>) {
        // A reason that reads "killed" must not be taken for a kill.
        let reason = reason.map(crate::error::escape_stop_reason);
        self.slot.with_target(|t| match t {
            Route::Actor(a, _) => a.stop(reason),
            Route::Hosted(h) => h.stop(),
        });
    }

    /// Kills the current incarnation at once, as Erlang's `exit(Pid, kill)`: it does not
    /// finish the message in hand and its `terminate` does not run. Its supervisor sees
    /// [`ExitReason::Killed`](crate::ExitReason::Killed), an abnormal exit (a `Transient`
    /// child is restarted). Does nothing if no incarnation is live.
    pub fn kill(&self) {
        self.slot.with_target(|t| match t {
            Route::Actor(a, _) => a.kill(),
            Route::Hosted(h) => h.kill(),
        });
    }

    /// Whether an incarnation is live now.
    pub fn is_running(&self) -> bool {
        self.slot.phase() == Phase::Running
    }

    /// Whether the process has stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.slot.phase() == Phase::Stopped
    }

    /// How many incarnations there have been (1 before any restart).
    pub fn incarnation(&self) -> u64 {
        self.slot.generation()
    }

    /// How many messages are held for the next incarnation.
    pub fn held_messages(&self) -> usize {
        self.slot.pending_len()
    }

    /// How many messages wait for the process: those in its current incarnation's mailbox,
    /// not yet taken by its handler, and those held for its next incarnation (as Erlang's
    /// `process_info(Pid, message_queue_len)`). The message being handled is not counted.
    ///
    /// Every message that reaches the mailbox through an address (or a name) is counted,
    /// whichever node sent it. A batch ([`Addr::cast_batch`]) or a feed's doorbell
    /// ([`Addr::cast_feed`]) counts as one until the handler takes it. Supervisors, and
    /// processes hosted by another ([`Addr::hosted`]), count only what is held between
    /// incarnations. A level read now, while senders and the handler go on: a gauge.
    ///
    /// A message sent to the incarnation's ractor cell directly ([`Addr::actor_cell`]),
    /// around the address, is not counted in but is counted out when handled: the count
    /// then reads low for the rest of that incarnation. Send through the address.
    ///
    /// # Examples
    ///
    /// ```
    /// # use foundation_actors::{Actor, ActorError, Addr, spawn};
    /// struct Slow;
    /// impl Actor for Slow {
    ///     type Msg = tokio::sync::oneshot::Receiver<()>;
    ///     type State = ();
    ///     type Args = ();
    ///     async fn init(&self, _: &Addr<Self::Msg>, _: ()) -> Result<(), ActorError> { Ok(()) }
    ///     async fn handle(&self, _: &Addr<Self::Msg>, go: Self::Msg, _: &mut ()) -> Result<(), ActorError> {
    ///         let _ = go.await;
    ///         Ok(())
    ///     }
    /// }
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let slow = spawn(Slow, ()).await?;
    /// let mut gates = Vec::new();
    /// for _ in 0..4 {
    ///     let (open, gate) = tokio::sync::oneshot::channel();
    ///     slow.cast(gate)?;
    ///     gates.push(open);
    /// }
    /// // The handler holds the first message; three wait behind it.
    /// while slow.queued() != 3 {
    ///     tokio::task::yield_now().await;
    /// }
    /// for open in gates {
    ///     let _ = open.send(());
    /// }
    /// while slow.queued() != 0 {
    ///     tokio::task::yield_now().await;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn queued(&self) -> usize {
        let (live, held) = self.slot.queued();
        usize::try_from(live)
            .unwrap_or(usize::MAX)
            .saturating_add(held)
    }

    /// The id of the current incarnation's ractor actor, if one is live.
    pub fn actor_id(&self) -> Option<ractor::ActorId> {
        self.slot
            .with_target(|t| t.actor().map(|a| a.get_id()))
            .flatten()
    }

    /// The current incarnation's ractor cell, if one is live.
    pub fn actor_cell(&self) -> Option<ActorCell> {
        self.slot
            .with_target(|t| t.actor().map(|a| a.get_cell()))
            .flatten()
    }

    /// The label the address was created with (a child id or a name).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether two addresses reach the same process.
    pub fn same_process(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot)
    }

    /// Runs `f` once when the process stops for good (see the [module docs](self#stopped-for-good)),
    /// not on a restart. Returns a [`StopHook`] that can cancel it, or `None`, without
    /// running `f`, if the process has stopped for good already.
    ///
    /// `f` runs on the thread that observed the stop (a supervisor, the process's own task,
    /// or a sender that found an unsupervised process gone), after `is_stopped` has become
    /// true, in the order the callbacks were added. Keep it short and non-blocking; a panic
    /// in it is logged and goes no further. Dropping the hook does not cancel the callback.
    ///
    /// # Examples
    ///
    /// ```
    /// # use foundation_actors::{Actor, ActorError, Addr, spawn};
    /// # struct Idle;
    /// # impl Actor for Idle { type Msg = (); type State = (); type Args = ();
    /// #   async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> { Ok(()) }
    /// #   async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> { Ok(()) } }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let addr = spawn(Idle, ()).await?;
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let _hook = addr.on_stop(move || { let _ = tx.send(()); });
    /// addr.stop(None);
    /// rx.await?;
    /// assert!(addr.is_stopped());
    /// assert!(addr.on_stop(|| ()).is_none());
    /// # Ok(()) }
    /// ```
    pub fn on_stop(&self, f: impl FnOnce() + Send + Sync + 'static) -> Option<StopHook> {
        let id = self.slot.watch(Box::new(f)).ok()?;
        let slot: Arc<dyn Unwatch> = self.slot.clone();
        Some(StopHook {
            slot: Arc::downgrade(&slot),
            id,
        })
    }

    /// Registers this address under `name`, for [`Addr::whereis`].
    ///
    /// # Errors
    ///
    /// [`crate::SpawnError::NameTaken`] if a process that has not stopped holds the name.
    pub fn register(&self, name: &str) -> Result<(), crate::SpawnError> {
        let mut names = NAMES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = names.get(name) {
            if !(existing.stopped)() {
                return Err(crate::SpawnError::NameTaken(name.to_owned()));
            }
        }
        let slot = self.slot.clone();
        let this = self.clone();
        names.insert(
            name.to_owned(),
            NameEntry {
                addr: Arc::new(self.clone()),
                key: self.key(),
                stopped: Arc::new(move || slot.phase() == Phase::Stopped),
                queued: Arc::new(move || this.queued()),
            },
        );
        Ok(())
    }

    /// Removes `name` if it is registered to this address.
    pub fn unregister(&self, name: &str) {
        let mut names = NAMES.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = names.get(name) {
            if e.addr
                .downcast_ref::<Self>()
                .is_some_and(|a| a.same_process(self))
            {
                names.remove(name);
            }
        }
    }

    /// The address registered under `name`, if it is registered with message type `M`
    /// and its process has not stopped for good. Works across restarts.
    pub fn whereis(name: &str) -> Option<Self> {
        let names = NAMES.read().unwrap_or_else(|e| e.into_inner());
        let e = names.get(name)?;
        let addr = e.addr.downcast_ref::<Self>()?;
        (!addr.is_stopped()).then(|| addr.clone())
    }
}

struct NameEntry {
    addr: Arc<dyn std::any::Any + Send + Sync>,
    key: AddrKey,
    stopped: Arc<dyn Fn() -> bool + Send + Sync>,
    /// [`Addr::queued`], whatever the message type.
    queued: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// Calls `f` with each name registered by [`Addr::register`] (in this process) whose
/// process has not stopped for good: the name, the process's [`AddrKey`] and its
/// [`Addr::queued`] now. In no particular order. For a metrics scrape: it holds the table
/// of names (read) while it runs, so `f` must not touch the table at all (no
/// [`Addr::register`], [`Addr::unregister`] nor [`Addr::whereis`]: a writer waiting would
/// make that read wait for ever).
///
/// # Examples
///
/// ```
/// # use foundation_actors::{Actor, ActorError, Addr, spawn};
/// # struct Idle;
/// # impl Actor for Idle { type Msg = (); type State = (); type Args = ();
/// #   async fn init(&self, _: &Addr<()>, _: ()) -> Result<(), ActorError> { Ok(()) }
/// #   async fn handle(&self, _: &Addr<()>, _: (), _: &mut ()) -> Result<(), ActorError> { Ok(()) } }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let idle = spawn(Idle, ()).await?;
/// idle.register("idle-for-the-example")?;
/// let mut found = None;
/// foundation_actors::addr::each_named(|name, key, queued| {
///     if name == "idle-for-the-example" {
///         found = Some((key, queued));
///     }
/// });
/// assert_eq!(found, Some((idle.key(), 0)));
/// # Ok(()) }
/// ```
pub fn each_named(mut f: impl FnMut(&str, AddrKey, usize)) {
    let names = NAMES.read().unwrap_or_else(|e| e.into_inner());
    for (name, e) in names.iter() {
        if !(e.stopped)() {
            f(name, e.key, (e.queued)());
        }
    }
}

/// The process-wide table of names given to stable addresses.
static NAMES: LazyLock<RwLock<HashMap<String, NameEntry>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// The identity of a process behind an [`Addr`] ([`Addr::key`]). Only meaningful while
/// an address of that process exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey(usize);

/// A callback added by [`Addr::on_stop`], which [`StopHook::cancel`] removes. Dropping it
/// leaves the callback in place.
pub struct StopHook {
    slot: std::sync::Weak<dyn Unwatch>,
    id: u64,
}

impl StopHook {
    /// Removes the callback if it has not run. Returns whether it was removed: false if it
    /// has run or is running (the process stopped), or the address is gone.
    pub fn cancel(self) -> bool {
        self.slot.upgrade().is_some_and(|s| s.unwatch(self.id))
    }
}

impl fmt::Debug for StopHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHook").field("id", &self.id).finish()
    }
}

/// Removing a stop callback, whatever the slot's message type.
trait Unwatch: Send + Sync {
    fn unwatch(&self, id: u64) -> bool;
}

impl<M: Send + 'static> Unwatch for ActorSlot<M> {
    fn unwatch(&self, id: u64) -> bool {
        Slot::unwatch(self, id)
    }
}

/// A reply port for a call: send the answer with `send`. Re-exported from ractor.
pub type ReplyPort<T> = RpcReplyPort<T>;

fn refused<M>(r: Refused, m: M) -> SendError<M> {
    match r {
        Refused::Stopped => SendError::Stopped(m),
        Refused::Backlog => SendError::Backlog(m),
        Refused::Unavailable => SendError::Unavailable(m),
    }
}

/// The context to attach to a send from here: the current one, carrying the current
/// `tracing` span so the receiver's span nests under it.
#[inline]
fn current_for_send() -> Option<Context> {
    Context::current().map(with_sender_span)
}

pub(crate) fn with_sender_span(ctx: Context) -> Context {
    let span = tracing::Span::current();
    if span.is_disabled() {
        ctx
    } else {
        ctx.with_span(span)
    }
}
