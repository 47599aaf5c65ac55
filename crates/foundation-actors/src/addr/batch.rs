//! Batches: a run of messages for one process, delivered as one mailbox message.
//!
//! Casting `n` messages costs `n` mailbox pushes and, on the receiving side, `n` turns of
//! ractor's receive loop (a `select!` over its four ports, then the handler). A node that
//! fans out broadcasts from a peer has them in runs already: [`Addr::cast_batch`] hands a
//! run over as one envelope, and the actor glue runs the handler once per message, in
//! order, each under its own context, as if they had been cast one by one.
//!
//! # What a batch keeps of the one-by-one semantics
//!
//! - Order: the run's messages are handled in order, and the run keeps its place among
//!   the process's other messages (it is one mailbox entry).
//! - Context: each message runs under the context it was pushed with (or none), never the
//!   context of the message before it.
//! - Held values ([`Batch::push_holding`]): each is dropped once *its* message has been
//!   handled (or with it, if it never is).
//! - A crash in the middle (a handler that fails or panics): the messages of the run after
//!   the failing one are what a mailbox would have held behind it, and go where those go
//!   (see [`crate::actor::Actor`]'s glue, "Crashes keep the mailbox"): a supervised process
//!   hands them to its next incarnation first, in order, ahead of the rest of its mailbox;
//!   an unsupervised one stops for good and they are dropped with its mailbox, counted in
//!   a warning (`messages of a batch were not handled`). Only the failing message is lost.
//! - A kill drops the rest of the run with the mailbox, as it drops queued messages.
//!
//! What differs: a batch is one message to ractor. An [`Addr::stop`] asked while a batch
//! is handled takes effect after the whole batch (a stop lets the message in hand finish,
//! and the batch is that message); while the process restarts, a held batch counts as
//! one message against its restart backlog. A process hosted by another
//! ([`Addr::hosted`]) is handed the run's messages one at a time.

use std::fmt;

use crate::addr::{Addr, Envelope, Held, Mailbox, Repr, current_for_send, refused};
use crate::context::Context;
use crate::error::SendError;

/// A run of messages for one process, sent together with [`Addr::cast_batch`]: one
/// mailbox message, the handler run once per message, in order.
///
/// What it keeps of casting them one by one: the run's order and its place among the
/// process's other messages; each message's own context; each held value dropped once its
/// message is handled. A crash in the middle loses only the failing message: a supervised
/// process hands the rest to its next incarnation first, an unsupervised one drops them
/// with its mailbox (counted in a warning); a kill drops them, as it drops queued
/// messages. What differs: a stop asked during a batch takes effect after the whole
/// batch, and while the process restarts a held batch counts as one message against its
/// restart backlog.
///
/// # Examples
///
/// ```
/// use foundation_actors::{Actor, ActorError, Addr, Batch, spawn};
///
/// struct Sum(tokio::sync::mpsc::UnboundedSender<u64>);
/// impl Actor for Sum {
///     type Msg = u64;
///     type State = u64;
///     type Args = ();
///     async fn init(&self, _: &Addr<u64>, _: ()) -> Result<u64, ActorError> { Ok(0) }
///     async fn handle(&self, _: &Addr<u64>, n: u64, total: &mut u64) -> Result<(), ActorError> {
///         *total += n;
///         let _ = self.0.send(*total);
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, mut totals) = tokio::sync::mpsc::unbounded_channel();
/// let sum = spawn(Sum(tx), ()).await?;
/// let mut batch = Batch::with_capacity(3);
/// for n in [1, 2, 3] {
///     batch.push(n);
/// }
/// sum.cast_batch(batch).map_err(|e| e.to_string())?;
/// // Handled one by one, in order.
/// for want in [1, 3, 6] {
///     assert_eq!(totals.recv().await, Some(want));
/// }
/// # Ok(()) }
/// ```
pub struct Batch<M> {
    items: Vec<Envelope<M>>,
}

impl<M> Default for Batch<M> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

impl<M> fmt::Debug for Batch<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("len", &self.items.len())
            .finish()
    }
}

impl<M: Send + 'static> Batch<M> {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` messages.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            items: Vec::with_capacity(n),
        }
    }

    /// Adds `msg`, under the current [`Context`] (as [`Addr::cast`] sends it).
    pub fn push(&mut self, msg: M) {
        self.items.push(Envelope::new(current_for_send(), msg));
    }

    /// Adds `msg` under `ctx`, or under no context at all (not the current one).
    pub fn push_with(&mut self, ctx: Option<Context>, msg: M) {
        let ctx = ctx.map(super::with_sender_span);
        self.items.push(Envelope::new(ctx, msg));
    }

    /// Adds `msg` under `ctx` (or none), holding `held` until the handler has finished
    /// with this message, as [`Addr::cast_holding`] does.
    pub fn push_holding(&mut self, ctx: Option<Context>, msg: M, held: impl Send + 'static) {
        let ctx = ctx.map(super::with_sender_span);
        self.items
            .push(Envelope(Repr::Holding(super::holding_repr(ctx, msg, held))));
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Its messages, in order (their contexts, and what they hold, dropped): what a
    /// refused batch gives back.
    pub fn into_messages(self) -> Vec<M> {
        self.items.into_iter().map(Envelope::into_msg).collect()
    }
}

impl<M: Send + 'static> Addr<M> {
    /// Sends every message of `batch`, in order, as one mailbox message: the process's
    /// handler runs once per message, each under its own context, as if they had been
    /// cast one by one, for one mailbox push and one wake of the process instead of one
    /// per message. See [`Batch`] for what a crash in the middle does to the rest. A batch
    /// of one is a plain cast; an empty one sends nothing.
    ///
    /// # Errors
    ///
    /// As [`Addr::cast`], for the whole batch, which is handed back:
    /// [`SendError::Stopped`] if the process has stopped for good, [`SendError::Backlog`]
    /// if it is restarting with a full backlog (where a batch counts as one message).
    pub fn cast_batch(&self, mut batch: Batch<M>) -> Result<(), SendError<Batch<M>>> {
        let env = match batch.items.len() {
            0 => return Ok(()),
            1 => match batch.items.pop() {
                Some(env) => env,
                None => return Ok(()),
            },
            _ => Envelope(Repr::Batch(Box::new(batch))),
        };
        self.slot.send(env).map_err(|(r, env)| {
            let mut back = Batch::default();
            env.flatten_into(&mut back.items);
            refused(r, back)
        })
    }
}

/// An envelope opened by whoever runs the handler: one message, or a run of them.
pub(crate) enum Opened<M> {
    /// One message: its context, the message, what it holds until handled.
    One(Option<Context>, M, Option<Held<M>>),
    /// A run, in order; none of them a batch.
    Run(Vec<Envelope<M>>),
    /// A feed's doorbell ([`Addr::cast_feed`](crate::Addr::cast_feed)).
    Feed(super::Doorbell<M>),
}

impl<M> Envelope<M> {
    /// One message, or the run of a batch.
    #[inline]
    pub(crate) fn open(self) -> Opened<M> {
        match self.0 {
            Repr::Bare(msg) => Opened::One(None, msg, None),
            Repr::WithContext(both) => {
                let (ctx, msg) = *both;
                Opened::One(Some(ctx), msg, None)
            }
            Repr::Holding(all) => {
                let (ctx, msg, held) = super::take_holding(all);
                Opened::One(ctx, msg, Some(held))
            }
            Repr::Batch(run) => Opened::Run(run.items),
            Repr::Feed(bell) => Opened::Feed(bell),
        }
    }

    /// Appends its messages to `out`, in order: itself, or a batch's run.
    pub(crate) fn flatten_into(self, out: &mut Vec<Envelope<M>>) {
        match self.0 {
            Repr::Batch(run) => out.extend(run.items),
            _ => out.push(self),
        }
    }
}

/// The first message of a batch that reached a path taking one message. Not reached:
/// every path that can be handed a batch opens it ([`Envelope::open`]); if one ever did,
/// the rest of the run is dropped with an error in the log, never silently.
#[cold]
#[inline(never)]
pub(super) fn first_of<M>(run: Batch<M>) -> (Option<Context>, M, Option<Held<M>>) {
    let mut items = run.items.into_iter();
    let lost = items.len().saturating_sub(1);
    let Some(first) = items.next() else {
        // A batch is built by `Addr::cast_batch` alone, from two messages or more.
        super::unreachable_message()
    };
    if lost > 0 {
        tracing::error!(
            count = lost,
            "a batch reached a path that takes one message: the rest of its run was dropped"
        );
    }
    first.into_held_parts()
}

/// The first message of a feed whose doorbell reached a path taking one message. Not
/// reached, as for a batch ([`first_of`]); if one ever did, the feed is told it is no
/// longer rung (its other messages stay queued for its next doorbell), with an error in the
/// log.
#[cold]
#[inline(never)]
pub(super) fn first_of_feed<M>(
    mut bell: super::Doorbell<M>,
) -> (Option<Context>, M, Option<Held<M>>) {
    tracing::error!("a feed's doorbell reached a path that takes one message");
    match bell.next() {
        Some((ctx, msg)) => (ctx, msg, None),
        // A feed is rung when it has a message queued; an empty one has none to give.
        None => super::unreachable_message(),
    }
}

/// Hands a batch's messages to a host one at a time; if the host refuses one (it has
/// stopped for good), that one and the rest come back as a batch.
#[cold]
#[inline(never)]
pub(super) fn deliver_each<M: Send + 'static>(
    h: &dyn Mailbox<M>,
    run: Batch<M>,
) -> Result<(), Envelope<M>> {
    let mut items = run.items.into_iter();
    while let Some(env) = items.next() {
        if let Err(env) = h.deliver(env) {
            if items.as_slice().is_empty() {
                return Err(env);
            }
            let mut back = Vec::with_capacity(items.len() + 1);
            back.push(env);
            back.extend(items);
            return Err(Envelope(Repr::Batch(Box::new(Batch { items: back }))));
        }
    }
    Ok(())
}
