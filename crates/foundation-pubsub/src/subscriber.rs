//! Subscribers: actors (a queue their mailbox is rung for) and streams (a queue read by
//! async code), behind one type-erased interface the fan-out calls.

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};

use foundation_actors::{
    Addr, AddrKey, Context, Feed, RemoteMessage, SendError, StopHook, WireError, WireType,
};

use crate::buffer::{Buffer, BufferConfig, Pushed};
use crate::pubsub::Core;
use crate::telemetry::DropCount;

/// What a topic's messages must be: clonable (each actor subscriber gets its own copy;
/// wrap a large payload in an `Arc`, which is the same type on the wire), and a
/// [`RemoteMessage`] (`#[derive(RemoteMessage)]`, as any message that crosses nodes): its
/// wire form is encoded once per broadcast for the other nodes, and its wire identity
/// ([`RemoteMessage::WIRE_TYPE`], the hash of its wire name) travels with it, so that a
/// node whose subscriber reads the topic as another type refuses it before decoding.
/// Plain values (`u64`, `String`, `Vec<u8>`, …) are remote messages already.
pub trait Payload: RemoteMessage + Clone + Sync {}
impl<T> Payload for T where T: RemoteMessage + Clone + Sync {}

/// One broadcast, shared by every local subscriber.
#[derive(Debug)]
pub(crate) struct Published<T> {
    pub(crate) msg: T,
    pub(crate) ctx: Option<Context>,
}

/// A message received by a [`Subscription`]: the payload, shared with the other stream
/// subscribers (it dereferences to `T`), and the publisher's context.
pub struct Received<T> {
    inner: Arc<Published<T>>,
}

impl<T> Received<T> {
    /// The publisher's [`Context`] when it broadcast, if it had one (across nodes too).
    pub fn context(&self) -> Option<&Context> {
        self.inner.ctx.as_ref()
    }

    /// The payload, taken out if no other subscriber shares it, cloned otherwise.
    pub fn into_inner(self) -> T
    where
        T: Clone,
    {
        match Arc::try_unwrap(self.inner) {
            Ok(p) => p.msg,
            Err(shared) => shared.msg.clone(),
        }
    }
}

impl<T> Deref for Received<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.msg
    }
}

impl<T: fmt::Debug> fmt::Debug for Received<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Received")
            .field("msg", &self.inner.msg)
            .field("ctx", &self.inner.ctx)
            .finish()
    }
}

/// What one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    /// A message dropped: the new one (`DropNewest`), or an older one, counted delivered
    /// when it came, that the new one replaced (`DropOldest`: one drop and no delivery
    /// more, the subscriber keeps as many as before).
    Dropped,
    /// Dropped, and the subscription must end.
    Disconnect,
    /// The subscriber is gone.
    Gone,
    /// The message is not of the subscriber's type.
    WrongType,
}

/// What [`Deliver::deliver_run`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Messages handed to the subscriber and kept: one that pushes an older one out
    /// of a [`Overflow::DropOldest`](crate::Overflow::DropOldest) buffer takes the place of
    /// that one's delivery, so it is not counted again.
    pub(crate) delivered: u64,
    /// Messages its policy dropped (new ones refused, or old ones pushed out).
    pub(crate) dropped: u64,
    /// What stopped the run: [`Outcome::Disconnect`] (that message dropped too),
    /// [`Outcome::Gone`] or [`Outcome::WrongType`].
    pub(crate) end: Option<Outcome>,
}

impl Tally {
    /// Counts what one push into a buffer did; false when it ends the subscription
    /// ([`Outcome::Disconnect`], that message dropped too).
    fn add(&mut self, pushed: Pushed) -> bool {
        match pushed {
            Pushed::Queued => self.delivered += 1,
            // `DropOldest`: the older message counted delivered when it came is dropped
            // instead, and the new one takes its place: one drop, no delivery more.
            Pushed::DroppedOldest | Pushed::DroppedNewest => self.dropped += 1,
            Pushed::Disconnect => {
                self.end = Some(Outcome::Disconnect);
                return false;
            }
        }
        true
    }
}

/// A subscriber, whatever its payload type.
pub(crate) trait Deliver: Send + Sync {
    /// Its payload type's identity on the wire, as peers send it.
    fn wire_type(&self) -> WireType;
    /// Its payload type.
    fn payload_type(&self) -> TypeId;
    /// Delivers `msg`, an `Arc<Published<T>>` (anything else is [`Outcome::WrongType`]),
    /// with its publisher's context.
    fn deliver(&self, msg: &dyn Any) -> Outcome;
    /// Delivers each of `run` (what [`Deliver::decode`] made of a peer's broadcasts, `None`
    /// for one that did not decode) in order, with their publishers' contexts, and says
    /// what that did. Stops at the first that ends the subscription.
    fn deliver_run(&self, run: &[Option<Box<dyn Any + Send>>]) -> Tally;
    /// Reads the fields [`Deliver::deliver`] reads first, so that the fan-out can bring
    /// the next subscriber into the cache while it delivers to this one.
    fn touch(&self);
    /// Decodes a peer's payload into what [`Deliver::deliver`] takes.
    fn decode(&self, bytes: &[u8], ctx: Option<Context>) -> Result<Box<dyn Any + Send>, WireError>;
    /// The process, for an actor subscriber.
    fn process(&self) -> Option<AddrKey>;
    /// The subscription has ended (unsubscribed, disconnected, pubsub closed).
    fn end(&self);
}

fn decode<T: Payload>(
    bytes: &[u8],
    ctx: Option<Context>,
) -> Result<Box<dyn Any + Send>, WireError> {
    let msg = T::from_bytes(bytes)?;
    Ok(Box::new(Arc::new(Published { msg, ctx })))
}

/// Calls `f` with each entry of `list` and its subscriber, in order, bringing the next
/// subscriber into the cache while `f` delivers to this one: a fan-out over thousands of
/// subscribers otherwise waits for each one's memory in turn. Each subscriber is reached
/// once (its place in its entry is computed from its vtable's alignment, a dozen
/// instructions each time, so it is not computed again for the delivery).
#[inline]
pub(crate) fn each_ahead(list: &[Arc<Entry>], mut f: impl FnMut(&Entry, &dyn Deliver)) {
    let mut entries = list.iter();
    let Some(mut cur) = entries.next() else {
        return;
    };
    let mut cur_sub: &dyn Deliver = &cur.sub;
    loop {
        let next = entries.next().map(|e| {
            let sub: &dyn Deliver = &e.sub;
            sub.touch();
            (e, sub)
        });
        f(cur, cur_sub);
        match next {
            Some((e, sub)) => (cur, cur_sub) = (e, sub),
            None => return,
        }
    }
}

/// A subscription: one subscriber on one topic or pattern. The subscriber is inline
/// (`Arc<Entry>` is an `Arc<Entry<dyn Deliver>>`): a fan-out over thousands of
/// subscribers follows one pointer per subscriber to reach it, not two.
pub(crate) struct Entry<S: ?Sized = dyn Deliver> {
    pub(crate) id: u64,
    pub(crate) filter: Arc<str>,
    pub(crate) label: String,
    pub(crate) dropped: Arc<DropCount>,
    pub(crate) warned: AtomicBool,
    pub(crate) hook: Mutex<Option<StopHook>>,
    pub(crate) sub: S,
}

impl<S: ?Sized> fmt::Debug for Entry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("filter", &self.filter)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Takes a mutex whether or not a panic poisoned it: nothing under these locks leaves
/// state half-changed.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An actor subscriber: its messages wait in a queue of its own (its bounded buffer, a
/// [`Feed`] of its stable address), and its mailbox gets one doorbell ([`Addr::cast_feed`])
/// for as many of them as gather before it gets there, instead of one ractor message
/// each. The buffer then holds exactly the messages the actor has not taken yet, so every
/// [`Overflow`](crate::Overflow) policy applies as for a stream, `DropOldest` included.
///
/// A fan-out to 10,000 actors, 16 broadcasts in a row, pays per delivery a lock, a push and
/// a reference count (the payload is shared), and one mailbox message per actor for the
/// 16; each actor takes one turn of its receive loop for them, not 16.
pub(crate) struct ActorSub<T, M> {
    pub(crate) addr: Addr<M>,
    queue: Arc<ActorQueue<T, M>>,
}

impl<T, M> ActorSub<T, M> {
    pub(crate) fn new(addr: Addr<M>, config: BufferConfig) -> Self {
        Self {
            addr,
            queue: Arc::new(ActorQueue {
                state: Mutex::new(ActorQueueState {
                    buf: Buffer::new(config),
                    rung: false,
                }),
                _msg: PhantomData,
            }),
        }
    }
}

/// An actor subscriber's messages not yet taken by it, and whether its doorbell is on its
/// way (see [`Feed`] for the protocol).
pub(crate) struct ActorQueue<T, M> {
    state: Mutex<ActorQueueState<T>>,
    _msg: PhantomData<fn() -> M>,
}

struct ActorQueueState<T> {
    buf: Buffer<Arc<Published<T>>>,
    /// A doorbell is in the actor's mailbox (or held for its next incarnation), or about to
    /// be sent: a message queued now rides it.
    rung: bool,
}

impl<T: Payload, M: From<T> + Send + 'static> Feed<M> for ActorQueue<T, M> {
    fn next(&self) -> Option<(Option<Context>, M)> {
        let p = {
            let mut st = lock(&self.state);
            match st.buf.pop() {
                Some(p) => p,
                None => {
                    st.rung = false;
                    return None;
                }
            }
        };
        let (ctx, msg) = match Arc::try_unwrap(p) {
            Ok(Published { msg, ctx }) => (ctx, msg),
            Err(shared) => (shared.ctx.clone(), shared.msg.clone()),
        };
        Some((ctx, M::from(msg)))
    }

    fn unrung(&self) {
        lock(&self.state).rung = false;
    }
}

impl<T: Payload, M: From<T> + Send + 'static> ActorSub<T, M> {
    /// Rings the actor's doorbell (the queue was not rung). `None` if it is on its way,
    /// or if the actor is restarting with a full backlog (or is a hosted process whose
    /// host is down for now): then the queue is not rung, and what it holds waits for the
    /// next message to ring.
    #[inline(never)]
    fn ring(&self) -> Option<Outcome> {
        match self.addr.cast_feed(self.queue.clone()) {
            Ok(()) => None,
            Err(SendError::Stopped(_)) => Some(Outcome::Gone),
            Err(SendError::Backlog(_) | SendError::Unavailable(_)) => {
                self.queue.unrung();
                None
            }
        }
    }
}

/// What a push into a subscriber's buffer did, as an outcome.
fn outcome(pushed: Pushed) -> Outcome {
    match pushed {
        Pushed::Queued => Outcome::Delivered,
        Pushed::DroppedOldest | Pushed::DroppedNewest => Outcome::Dropped,
        Pushed::Disconnect => Outcome::Disconnect,
    }
}

impl<T: Payload, M: From<T> + Send + 'static> Deliver for ActorSub<T, M> {
    fn wire_type(&self) -> WireType {
        T::WIRE_TYPE
    }

    fn payload_type(&self) -> TypeId {
        TypeId::of::<T>()
    }

    #[inline]
    fn deliver(&self, msg: &dyn Any) -> Outcome {
        let Some(p) = msg.downcast_ref::<Arc<Published<T>>>() else {
            return Outcome::WrongType;
        };
        let (pushed, ring) = {
            let mut st = lock(&self.queue.state);
            let pushed = st.buf.push(p.clone());
            let ring = !st.rung && matches!(pushed, Pushed::Queued | Pushed::DroppedOldest);
            st.rung |= ring;
            (pushed, ring)
        };
        if ring {
            if let Some(gone) = self.ring() {
                return gone;
            }
        }
        outcome(pushed)
    }

    /// The whole run under one lock, with one doorbell at most: the bound and the policy
    /// apply to each message as they do one at a time.
    fn deliver_run(&self, run: &[Option<Box<dyn Any + Send>>]) -> Tally {
        let mut tally = Tally::default();
        let ring = {
            let mut st = lock(&self.queue.state);
            for msg in run.iter().flatten() {
                let Some(p) = msg.downcast_ref::<Arc<Published<T>>>() else {
                    tally.end = Some(Outcome::WrongType);
                    break;
                };
                if !tally.add(st.buf.push(p.clone())) {
                    break;
                }
            }
            let ring = !st.rung && !st.buf.is_empty();
            st.rung |= ring;
            ring
        };
        if ring {
            if let Some(gone) = self.ring() {
                tally.delivered = 0;
                tally.end = Some(gone);
            }
        }
        tally
    }

    fn decode(&self, bytes: &[u8], ctx: Option<Context>) -> Result<Box<dyn Any + Send>, WireError> {
        decode::<T>(bytes, ctx)
    }

    #[inline]
    fn touch(&self) {
        // Its queue's lock and buffer's header (one line): what a delivery reads first.
        std::hint::black_box(self.queue.state.is_poisoned());
    }

    fn process(&self) -> Option<AddrKey> {
        Some(self.addr.key())
    }

    fn end(&self) {}
}

/// The queue a [`Subscription`] reads.
pub(crate) struct StreamQueue<T> {
    state: Mutex<QueueState<T>>,
}

struct QueueState<T> {
    buf: Buffer<Arc<Published<T>>>,
    waker: Option<Waker>,
    ended: bool,
}

impl<T> StreamQueue<T> {
    pub(crate) fn new(config: BufferConfig) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState {
                buf: Buffer::new(config),
                waker: None,
                ended: false,
            }),
        })
    }
}

/// A stream subscriber, as the fan-out sees it.
pub(crate) struct StreamSub<T>(pub(crate) Arc<StreamQueue<T>>);

impl<T: Payload> Deliver for StreamSub<T> {
    fn wire_type(&self) -> WireType {
        T::WIRE_TYPE
    }

    fn payload_type(&self) -> TypeId {
        TypeId::of::<T>()
    }

    #[inline]
    fn deliver(&self, msg: &dyn Any) -> Outcome {
        let Some(p) = msg.downcast_ref::<Arc<Published<T>>>() else {
            return Outcome::WrongType;
        };
        let mut st = lock(&self.0.state);
        if st.ended {
            return Outcome::Gone;
        }
        let pushed = st.buf.push(p.clone());
        if pushed == Pushed::Disconnect {
            st.ended = true;
        }
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        outcome(pushed)
    }

    /// The whole run under one lock, with one wake: a run from a peer is up to a batch of
    /// broadcasts, and a lock and a wake for each was most of the fan-out's cost.
    fn deliver_run(&self, run: &[Option<Box<dyn Any + Send>>]) -> Tally {
        let mut tally = Tally::default();
        let mut st = lock(&self.0.state);
        if st.ended {
            tally.end = Some(Outcome::Gone);
            return tally;
        }
        for msg in run.iter().flatten() {
            let Some(p) = msg.downcast_ref::<Arc<Published<T>>>() else {
                tally.end = Some(Outcome::WrongType);
                break;
            };
            if !tally.add(st.buf.push(p.clone())) {
                st.ended = true;
                break;
            }
        }
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        tally
    }

    fn decode(&self, bytes: &[u8], ctx: Option<Context>) -> Result<Box<dyn Any + Send>, WireError> {
        decode::<T>(bytes, ctx)
    }

    #[inline]
    fn touch(&self) {
        // The queue is behind its own pointer, read under its lock: nothing to read early.
    }

    fn process(&self) -> Option<AddrKey> {
        None
    }

    fn end(&self) {
        let mut st = lock(&self.0.state);
        st.ended = true;
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A subscription read as a [`Stream`](futures::Stream) of [`Received`] messages.
///
/// Messages wait in a bounded queue ([`BufferConfig`]); what overflows is dropped and
/// counted ([`Subscription::dropped`]). The stream ends when the subscription is
/// disconnected by [`Overflow::Disconnect`](crate::Overflow::Disconnect) (after the messages
/// queued before) or the pubsub shuts down. Dropping it unsubscribes.
pub struct Subscription<T> {
    pub(crate) queue: Arc<StreamQueue<T>>,
    pub(crate) id: u64,
    pub(crate) dropped: Arc<DropCount>,
    pub(crate) core: Weak<Core>,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl<T> Subscription<T> {
    /// How many messages this subscription lost to its overflow policy.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How many messages wait to be read.
    pub fn len(&self) -> usize {
        lock(&self.queue.state).buf.len()
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the subscription has ended (disconnected, or the pubsub shut down); the
    /// messages queued before can still be read.
    pub fn is_ended(&self) -> bool {
        lock(&self.queue.state).ended
    }

    /// The next message if one waits now, without waiting; `None` when none does
    /// ([`Subscription::is_ended`] tells whether more may come).
    pub fn try_recv(&mut self) -> Option<Received<T>> {
        let inner = lock(&self.queue.state).buf.pop()?;
        Some(Received { inner })
    }

    /// The next message, or `None` once the subscription has ended and its queue is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken from the queue only when it is returned.
    pub async fn recv(&mut self) -> Option<Received<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message if one waits. Each message taken spends a unit of the task's tokio
    /// budget (as tokio's own channels do): a subscriber with a full queue yields to the
    /// other tasks of its worker every 128 messages instead of draining its whole queue in
    /// one poll while a call waits behind it.
    fn poll_recv(&self, cx: &mut std::task::Context<'_>) -> Poll<Option<Received<T>>> {
        let budget = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut st = lock(&self.queue.state);
        if let Some(inner) = st.buf.pop() {
            budget.made_progress();
            return Poll::Ready(Some(Received { inner }));
        }
        if st.ended {
            budget.made_progress();
            return Poll::Ready(None);
        }
        let waker = cx.waker();
        match &mut st.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        Poll::Pending
    }
}

impl<T> futures::Stream for Subscription<T> {
    type Item = Received<T>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.poll_recv(cx)
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            core.remove(self.id);
        }
    }
}
