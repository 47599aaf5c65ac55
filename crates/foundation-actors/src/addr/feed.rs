//! Feeds: messages that wait for a process in a queue of the sender's, beside its mailbox,
//! and reach it through one mailbox message for as many of them as have gathered.
//!
//! A fan-out that sends each of many processes a message, over and over, pays a mailbox
//! message per delivery: ractor boxes each one, pushes it onto the process's channel and
//! wakes its task, which then takes one turn of its receive loop per message. A [`Feed`]
//! is a queue the sender keeps for one process: it queues there, and rings the process
//! ([`Addr::cast_feed`]) only when the feed is not rung already. The doorbell is one
//! mailbox message; when the process reaches it, its handler runs once per message the
//! feed yields, in order, each under its own context. Messages queued while the doorbell
//! waits in the mailbox ride it for free.
//!
//! The protocol a feed keeps, and what a process does with a doorbell, are on [`Feed`].

use std::fmt;
use std::sync::Arc;

use crate::addr::{Addr, Envelope, Mailbox, Repr, refused, unreachable_message};
use crate::context::Context;
use crate::error::SendError;

/// How many of a feed's messages a process handles for one doorbell before it puts the
/// doorbell back at the end of its mailbox.
pub const FEED_BUDGET: usize = 256;

/// Messages queued for one process outside its mailbox, handed to it when its mailbox
/// reaches the doorbell rung with [`Addr::cast_feed`]: one mailbox message, and one wake
/// of the process, for every message queued until it gets there.
///
/// # The feed's part
///
/// A feed keeps a `rung` flag beside its queue, both under one lock:
///
/// - to queue: push, and if `rung` was false set it and, after the lock is released, ring
///   with [`Addr::cast_feed`]; if that is refused, clear `rung` (the message stays queued,
///   or goes with the feed);
/// - [`Feed::next`]: pop the oldest; when there is none, clear `rung` and return `None`
///   (under the same lock: a message queued after that rings again);
/// - [`Feed::unrung`]: clear `rung`.
///
/// Then a queued message is never left without a doorbell on its way, or a sender about
/// to ring, while the process runs.
///
/// # What the process does with a doorbell
///
/// - It handles the feed's messages in order, each under the context `next` gives it (as
///   given: capture the sender's span into it when queueing, with
///   [`Context::with_current_span`], if the handler's span should nest under it).
/// - After [`FEED_BUDGET`] messages it puts the doorbell back at the end of its mailbox,
///   so that the messages that arrived meanwhile (a call, a stop) are not held up by a
///   feed that keeps filling.
/// - A crash in the middle (a handler that fails or panics) loses that message only: the
///   doorbell goes where the mailbox's messages behind it go (to the next incarnation
///   first, under a supervisor), and the rest of the feed with it.
/// - A doorbell that is dropped unhandled (a kill, or a stop, drops the mailbox; the
///   process stopped for good with it held during a restart) calls [`Feed::unrung`]: the
///   feed's messages stay queued, and the next message queued rings again.
/// - A process hosted by another ([`Addr::hosted`]) is handed the feed's messages one at a
///   time when the doorbell reaches its address.
///
/// # Examples
///
/// ```
/// use std::collections::VecDeque;
/// use std::sync::{Arc, Mutex};
/// use foundation_actors::{Actor, ActorError, Addr, Context, Feed, spawn};
///
/// /// A queue and its `rung` flag under one lock.
/// #[derive(Default)]
/// struct Queue(Mutex<(VecDeque<u64>, bool)>);
///
/// impl Feed<u64> for Queue {
///     fn next(&self) -> Option<(Option<Context>, u64)> {
///         let mut q = self.0.lock().unwrap();
///         let next = q.0.pop_front();
///         if next.is_none() {
///             q.1 = false;
///         }
///         next.map(|n| (None, n))
///     }
///     fn unrung(&self) {
///         self.0.lock().unwrap().1 = false;
///     }
/// }
///
/// /// Queues `n`, ringing if the feed is not rung.
/// fn queue(feed: &Arc<Queue>, to: &Addr<u64>, n: u64) {
///     let ring = {
///         let mut q = feed.0.lock().unwrap();
///         q.0.push_back(n);
///         !std::mem::replace(&mut q.1, true)
///     };
///     if ring && to.cast_feed(feed.clone()).is_err() {
///         feed.unrung();
///     }
/// }
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
/// let feed = Arc::new(Queue::default());
/// for n in [1, 2, 3] {
///     queue(&feed, &sum, n); // one doorbell for the three
/// }
/// for want in [1, 3, 6] {
///     assert_eq!(totals.recv().await, Some(want));
/// }
/// # Ok(()) }
/// ```
pub trait Feed<M>: Send + Sync {
    /// The oldest message queued, with the context to handle it under; `None` when none
    /// is, and then the feed is no longer rung (under the lock that queues): the next
    /// message queued must ring again.
    fn next(&self) -> Option<(Option<Context>, M)>;

    /// Its doorbell was dropped before the feed yielded `None` (a kill or a stop dropped
    /// the mailbox that held it): the feed is no longer rung. Called from wherever the
    /// doorbell is dropped; keep it to clearing the flag.
    fn unrung(&self);
}

/// The mailbox message that rings a feed. Dropped unhandled, it tells the feed
/// ([`Feed::unrung`]).
pub(crate) struct Doorbell<M> {
    feed: Option<Arc<dyn Feed<M>>>,
}

impl<M> Doorbell<M> {
    /// The feed's next message; `None` once it has none (the feed has cleared its flag,
    /// and this doorbell is spent).
    pub(crate) fn next(&mut self) -> Option<(Option<Context>, M)> {
        let next = self.feed.as_ref()?.next();
        if next.is_none() {
            self.feed = None;
        }
        next
    }

    /// The feed, without telling it anything: a refused ring hands it back.
    fn into_feed(mut self) -> Option<Arc<dyn Feed<M>>> {
        self.feed.take()
    }
}

impl<M> Drop for Doorbell<M> {
    fn drop(&mut self) {
        if let Some(feed) = self.feed.take() {
            feed.unrung();
        }
    }
}

impl<M> fmt::Debug for Doorbell<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell")
            .field("spent", &self.feed.is_none())
            .finish()
    }
}

impl<M> Envelope<M> {
    /// A doorbell for `feed`.
    pub(crate) fn doorbell(feed: Arc<dyn Feed<M>>) -> Self {
        Self::from_doorbell(Doorbell { feed: Some(feed) })
    }

    /// `bell`, to send again (or salvage) as a mailbox message.
    pub(crate) fn from_doorbell(bell: Doorbell<M>) -> Self {
        Self(Repr::Feed(bell))
    }
}

impl<M: Send + 'static> Addr<M> {
    /// Rings `feed`: puts one message in the process's mailbox that, when the process
    /// reaches it, runs its handler once per message `feed` yields, in order, each under
    /// the context it comes with, until the feed has none (see [`Feed`] for the protocol
    /// and what a crash, a kill or a stop does). Ring only when the feed is not rung already:
    /// every message queued before the process gets to the doorbell rides it.
    ///
    /// # Errors
    ///
    /// As [`Addr::cast`], with the feed handed back (its [`Feed::unrung`] not called):
    /// [`SendError::Stopped`] if the process has stopped for good, [`SendError::Backlog`]
    /// if it is restarting with a full backlog.
    pub fn cast_feed(&self, feed: Arc<dyn Feed<M>>) -> Result<(), SendError<Arc<dyn Feed<M>>>> {
        self.send_envelope(Envelope::doorbell(feed))
            .map_err(|(r, env)| match env.0 {
                // The slot hands back the envelope it was given: this doorbell, unspent.
                Repr::Feed(bell) => match bell.into_feed() {
                    Some(feed) => refused(r, feed),
                    None => unreachable_message(),
                },
                _ => unreachable_message(),
            })
    }
}

/// Hands a feed's messages to a host one at a time; if the host refuses one (it has
/// stopped for good), that one is lost with it, and the doorbell comes back.
#[cold]
#[inline(never)]
pub(super) fn deliver_each<M: Send + 'static>(
    h: &dyn Mailbox<M>,
    mut bell: Doorbell<M>,
) -> Result<(), Envelope<M>> {
    while let Some((ctx, msg)) = bell.next() {
        if h.deliver(Envelope::new(ctx, msg)).is_err() {
            return Err(Envelope(Repr::Feed(bell)));
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "loom"))]
mod tests {
    mod loom_feed;
}
