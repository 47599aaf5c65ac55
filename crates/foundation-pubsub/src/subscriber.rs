//! Subscribers: actors (messages in their mailbox) and streams (a queue read by async
//! code), behind one type-erased interface the fan-out calls.

use std::any::{Any, TypeId};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};

use foundation_actors::{
    Addr, AddrKey, Batch, Context, RemoteMessage, SendError, StopHook, WireError, WireType,
};

use crate::buffer::{Buffer, BufferConfig, Pushed, admit};
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
    /// Delivered, and an older message dropped for it.
    DeliveredDroppingOldest,
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
    /// Messages handed to the subscriber.
    pub(crate) delivered: u64,
    /// Messages its policy dropped (new ones refused, or old ones pushed out).
    pub(crate) dropped: u64,
    /// What stopped the run: [`Outcome::Disconnect`] (that message dropped too),
    /// [`Outcome::Gone`] or [`Outcome::WrongType`].
    pub(crate) end: Option<Outcome>,
}

/// A subscriber, whatever its payload type.
pub(crate) trait Deliver: Send + Sync {
    /// Its payload type's identity on the wire, as peers send it.
    fn wire_type(&self) -> WireType;
    /// Its payload type.
    fn payload_type(&self) -> TypeId;
    /// Delivers `msg`, an `Arc<Published<T>>` (anything else is [`Outcome::WrongType`]),
    /// with its publisher's context. `ambient` says whether a context is current where the
    /// delivery is made: when there is none, a message without a context is a plain cast.
    fn deliver(&self, msg: &dyn Any, ambient: bool) -> Outcome;
    /// Delivers each of `run` (what [`Deliver::decode`] made of a peer's broadcasts, `None`
    /// for one that did not decode) in order, with their publishers' contexts, and says
    /// what that did. Stops at the first that ends the subscription.
    fn deliver_run(&self, run: &[Option<Box<dyn Any + Send>>], ambient: bool) -> Tally {
        one_by_one(self, run, ambient)
    }
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

/// [`Deliver::deliver_run`] as one [`Deliver::deliver`] per message.
fn one_by_one<S: Deliver + ?Sized>(
    sub: &S,
    run: &[Option<Box<dyn Any + Send>>],
    ambient: bool,
) -> Tally {
    let mut tally = Tally::default();
    for msg in run.iter().flatten() {
        match sub.deliver(&**msg, ambient) {
            Outcome::Delivered => tally.delivered += 1,
            Outcome::DeliveredDroppingOldest => {
                tally.delivered += 1;
                tally.dropped += 1;
            }
            Outcome::Dropped => tally.dropped += 1,
            end => {
                tally.end = Some(end);
                break;
            }
        }
    }
    tally
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

/// An actor subscriber: each message is cast to its stable address, converted to its
/// message type.
///
/// # Counting what it has not handled
///
/// Every `every`-th message carries a mark (through [`Addr::cast_holding`]) that, when
/// the handler is done with it, records its number in `handled`; the others are plain
/// casts. `sent - handled` is then the number in flight, over-counted by less than
/// `every`, so the bound is kept (a message may be dropped up to `every - 1` early) for
/// one atomic add per delivery and one mark (two small allocations) per `every`
/// deliveries, instead of a mark on each. `every` is the power of two at most
/// `capacity / 32`, from 1 (exact, for small buffers) to 1,024 (a power of two: the check
/// is a mask, not a division): the slack is at most a 32nd of the buffer, whatever its
/// size. (With a cap of 32, a buffer of a million messages paid a mark on every 32nd
/// delivery, and its allocations cost glibc's allocator ~65 instructions per delivery of
/// the fan-out to 10,000 actors, a fifth of what the pubsub adds to a cast.) Publishers on several threads delivering to one actor at the
/// same instant may each pass the check once: the bound is exceeded by at most their
/// number, never without limit.
// In this order (what a delivery reads, together): see `touch`.
#[repr(C)]
pub(crate) struct ActorSub<T, M> {
    pub(crate) addr: Addr<M>,
    sent: AtomicU64,
    /// The last value read from `handled`: while `sent` is less than a buffer ahead of
    /// it, the shared counter (another cache line, written by the actor's task) is not read.
    handled_seen: AtomicU64,
    /// `every - 1`.
    mask: u64,
    config: BufferConfig,
    handled: Arc<AtomicU64>,
    _payload: PhantomData<fn(T)>,
}

impl<T, M> ActorSub<T, M> {
    pub(crate) fn new(addr: Addr<M>, config: BufferConfig) -> Self {
        let config = BufferConfig::new(config.capacity, config.overflow);
        Self {
            addr,
            sent: AtomicU64::new(0),
            handled_seen: AtomicU64::new(0),
            mask: every(config.capacity) - 1,
            config,
            handled: Arc::default(),
            _payload: PhantomData,
        }
    }
}

impl<T, M> ActorSub<T, M> {
    /// `sent` messages, of which the last count read says that a buffer's worth is not
    /// handled: reads the count again, and returns what the policy does if it is right.
    #[cold]
    #[inline(never)]
    fn full(&self, sent: u64) -> Option<Outcome> {
        let handled = self.handled.load(Ordering::Acquire);
        self.handled_seen.fetch_max(handled, Ordering::Relaxed);
        let in_flight = usize::try_from(sent.saturating_sub(handled)).unwrap_or(usize::MAX);
        match admit(&self.config, in_flight) {
            Pushed::Queued | Pushed::DroppedOldest => None,
            Pushed::DroppedNewest => Some(Outcome::Dropped),
            Pushed::Disconnect => Some(Outcome::Disconnect),
        }
    }
}

/// What a refused cast to an actor subscriber means.
#[cold]
fn refused<M>(e: SendError<M>) -> Outcome {
    match e {
        SendError::Stopped(_) => Outcome::Gone,
        // Restarting with a full backlog: this message is lost, counted as a drop.
        SendError::Backlog(_) => Outcome::Dropped,
    }
}

/// How often an actor subscriber's message carries a mark: the power of two at most
/// `capacity / 32`, from 1 to 1,024.
pub(crate) fn every(capacity: usize) -> u64 {
    let every = (capacity as u64 / 32).clamp(1, 1024);
    1 << every.ilog2()
}

/// Records, when dropped (after the handler is done with its message), that messages up
/// to its number have been handled.
struct Mark(Arc<AtomicU64>, u64);

impl Drop for Mark {
    fn drop(&mut self) {
        self.0.fetch_max(self.1, Ordering::Release);
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
    fn deliver(&self, msg: &dyn Any, ambient: bool) -> Outcome {
        let Some(p) = msg.downcast_ref::<Arc<Published<T>>>() else {
            return Outcome::WrongType;
        };
        // The common case, kept to a few loads: the buffer is not near full.
        let sent = self.sent.load(Ordering::Relaxed);
        if sent.saturating_sub(self.handled_seen.load(Ordering::Relaxed))
            >= self.config.capacity as u64
        {
            if let Some(refused) = self.full(sent) {
                return refused;
            }
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let m = M::from(p.msg.clone());
        let sent = if n & self.mask == 0 {
            self.addr
                .cast_holding(p.ctx.clone(), m, Mark(self.handled.clone(), n))
        } else {
            match (&p.ctx, ambient) {
                // No context here either: a plain cast carries none.
                (None, false) => self.addr.cast(m),
                (Some(ctx), _) => self.addr.cast_with(ctx.clone(), m),
                // Another message's context is current here (a batch of broadcasts from a
                // peer, each with its own): this one must go without.
                (None, true) => self.addr.cast_holding(None, m, ()),
            }
        };
        match sent {
            Ok(()) => Outcome::Delivered,
            Err(e) => refused(e),
        }
    }

    /// The run as one [`Batch`] ([`Addr::cast_batch`]): one mailbox message and one wake
    /// of the actor for the run instead of one per message; its handler still runs once
    /// per message, in order, each under its publisher's context. The bound and the policy
    /// apply to each message as they do one at a time: a message past the bound is
    /// dropped (counted) or ends the subscription, and those before it are sent; every
    /// `every`-th message carries its mark. A run of one is a plain delivery.
    fn deliver_run(&self, run: &[Option<Box<dyn Any + Send>>], ambient: bool) -> Tally {
        if run.len() < 2 {
            return one_by_one(self, run, ambient);
        }
        let mut tally = Tally::default();
        let mut batch = Batch::with_capacity(run.len());
        for msg in run.iter().flatten() {
            let Some(p) = msg.downcast_ref::<Arc<Published<T>>>() else {
                tally.end = Some(Outcome::WrongType);
                break;
            };
            let sent = self.sent.load(Ordering::Relaxed);
            if sent.saturating_sub(self.handled_seen.load(Ordering::Relaxed))
                >= self.config.capacity as u64
            {
                match self.full(sent) {
                    None => {}
                    Some(Outcome::Dropped) => {
                        tally.dropped += 1;
                        continue;
                    }
                    Some(end) => {
                        tally.end = Some(end);
                        break;
                    }
                }
            }
            let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
            let m = M::from(p.msg.clone());
            // Each message carries its own context or none: never the one current here.
            if n & self.mask == 0 {
                batch.push_holding(p.ctx.clone(), m, Mark(self.handled.clone(), n));
            } else {
                batch.push_with(p.ctx.clone(), m);
            }
        }
        let len = batch.len() as u64;
        match self.addr.cast_batch(batch) {
            Ok(()) => tally.delivered += len,
            Err(e) => match refused(e) {
                // Stopped: none of the run reached it, as one at a time none would have.
                Outcome::Gone => tally.end = Some(Outcome::Gone),
                // Restarting with a full backlog: the run is lost, counted.
                _ => tally.dropped += len,
            },
        }
        tally
    }

    fn decode(&self, bytes: &[u8], ctx: Option<Context>) -> Result<Box<dyn Any + Send>, WireError> {
        decode::<T>(bytes, ctx)
    }

    #[inline]
    fn touch(&self) {
        // The first and the last of the fields a delivery reads (`repr(C)`): their lines.
        std::hint::black_box(self.addr.key());
        std::hint::black_box(self.config.capacity);
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
    fn deliver(&self, msg: &dyn Any, _ambient: bool) -> Outcome {
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
        match pushed {
            Pushed::Queued => Outcome::Delivered,
            Pushed::DroppedOldest => Outcome::DeliveredDroppingOldest,
            Pushed::DroppedNewest => Outcome::Dropped,
            Pushed::Disconnect => Outcome::Disconnect,
        }
    }

    /// The whole run under one lock, with one wake: a run from a peer is up to a batch of
    /// broadcasts, and a lock and a wake for each was most of the fan-out's cost.
    fn deliver_run(&self, run: &[Option<Box<dyn Any + Send>>], _ambient: bool) -> Tally {
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
            match st.buf.push(p.clone()) {
                Pushed::Queued => tally.delivered += 1,
                Pushed::DroppedOldest => {
                    tally.delivered += 1;
                    tally.dropped += 1;
                }
                Pushed::DroppedNewest => tally.dropped += 1,
                Pushed::Disconnect => {
                    st.ended = true;
                    tally.end = Some(Outcome::Disconnect);
                    break;
                }
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

    /// The next message, or `None` once the subscription has ended and its queue is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken from the queue only when it is returned.
    pub async fn recv(&mut self) -> Option<Received<T>> {
        std::future::poll_fn(|cx| self.poll_recv(cx.waker())).await
    }

    fn poll_recv(&self, waker: &Waker) -> Poll<Option<Received<T>>> {
        let mut st = lock(&self.queue.state);
        if let Some(inner) = st.buf.pop() {
            return Poll::Ready(Some(Received { inner }));
        }
        if st.ended {
            return Poll::Ready(None);
        }
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
        self.poll_recv(cx.waker())
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade() {
            core.remove(self.id);
        }
    }
}
