//! The context that travels with every message: trace id, span ids, request id, deadline
//! and baggage.
//!
//! # How it flows
//!
//! While an actor handles a message, the sender's context is *current*: a task-local that
//! [`Context::current`] reads. Every `cast` or `call` made from there attaches it, so a
//! trace started at the edge reaches every actor the request touches, on this node and,
//! serialized, on others. Each hop runs under a child context (same trace, new span id,
//! the sender's span as parent) and inside a `tracing` span whose parent is the sender's
//! span, so the trace continues in whatever subscriber the application installs.
//!
//! Code outside any actor sets a context with [`Context::scope`].
//!
//! # Baggage limits
//!
//! Baggage is for small things (a tenant, a feature flag): at most [`MAX_BAGGAGE_ITEMS`]
//! items of at most [`MAX_BAGGAGE_BYTES`] in all, and a request id of at most
//! [`MAX_REQUEST_ID_BYTES`]. [`Context::try_with_baggage`] and
//! [`Context::try_with_request_id`] refuse more with a [`ContextError`]; the `with_*`
//! forms keep the context as it was and log a warning. A context received from elsewhere
//! that exceeds the limits fails to deserialize; its baggage is read item by item and
//! refused as soon as it passes them.
//!
//! # Deadlines
//!
//! A deadline is an instant on this process's monotonic clock. [`Addr::call`] waits no
//! longer than the current deadline and fails with [`CallError::DeadlineExceeded`] once
//! it has passed. On the wire the deadline travels as the time remaining (as gRPC does),
//! so clocks of different machines need not agree.
//!
//! [`Addr::call`]: crate::Addr::call
//! [`CallError::DeadlineExceeded`]: crate::CallError::DeadlineExceeded
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::Context;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let ctx = Context::new()
//!     .with_request_id("req-42")
//!     .with_timeout(Duration::from_secs(2))
//!     .with_baggage("tenant", "acme");
//! let trace = ctx.trace_id();
//! ctx.scope(async move {
//!     let current = Context::current().expect("set by scope");
//!     assert_eq!(current.trace_id(), trace);
//!     assert_eq!(current.baggage("tenant"), Some("acme"));
//! })
//! .await;
//! assert!(Context::current().is_none());
//! # }
//! ```

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use pin_project_lite::pin_project;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::time::Instant;

/// The most baggage items a context carries.
pub const MAX_BAGGAGE_ITEMS: usize = 32;
/// The most bytes of baggage (keys and values) a context carries.
pub const MAX_BAGGAGE_BYTES: usize = 4096;
/// The longest request id a context carries, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 256;

/// A context that would exceed its limits (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// More than [`MAX_BAGGAGE_ITEMS`] baggage items.
    #[error(
        "a context carries at most {MAX_BAGGAGE_ITEMS} baggage items; keep baggage for small, cross-cutting values"
    )]
    TooManyItems,
    /// More than [`MAX_BAGGAGE_BYTES`] bytes of baggage in all.
    #[error(
        "a context carries at most {MAX_BAGGAGE_BYTES} bytes of baggage; pass large data in the message itself"
    )]
    BaggageTooLarge,
    /// A request id longer than [`MAX_REQUEST_ID_BYTES`].
    #[error("a request id is at most {MAX_REQUEST_ID_BYTES} bytes")]
    RequestIdTooLong,
}

fn check_request_id(id: &str) -> Result<(), ContextError> {
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err(ContextError::RequestIdTooLong);
    }
    Ok(())
}

/// Counts baggage against the limits, one item at a time.
#[derive(Default)]
struct BaggageBudget {
    items: usize,
    bytes: usize,
}

impl BaggageBudget {
    fn add(&mut self, key: &str, value: &str) -> Result<(), ContextError> {
        self.items += 1;
        self.bytes += key.len() + value.len();
        if self.items > MAX_BAGGAGE_ITEMS {
            return Err(ContextError::TooManyItems);
        }
        if self.bytes > MAX_BAGGAGE_BYTES {
            return Err(ContextError::BaggageTooLarge);
        }
        Ok(())
    }
}

tokio::task_local! {
    static CURRENT: Context;
}

thread_local! {
    /// How many context scopes this thread is inside right now: a [`Context::scope`] future
    /// being polled or dropped, or a [`Context::sync_scope`] closure running. The task-local
    /// is only ever set inside one of those, so while this is zero no context is current,
    /// and [`Context::current`] answers without the task-local lookup (a plain
    /// thread-local read: sends from code that uses no context pay nearly nothing for it).
    static ENTERED: Cell<u32> = const { Cell::new(0) };
}

/// One scope entered on this thread, for as long as it lives (unwinding included).
struct Entered(());

impl Entered {
    #[inline]
    fn enter() -> Self {
        ENTERED.with(|n| n.set(n.get().wrapping_add(1)));
        Self(())
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        ENTERED.with(|n| n.set(n.get().wrapping_sub(1)));
    }
}

pin_project! {
    /// A future run with a context current: tokio's task-local scope, counted in
    /// [`ENTERED`] while it is polled and while it is dropped (the task-local is set then
    /// too, so the inner future's drop sees its context).
    #[project = ScopedProj]
    struct Scoped<F: Future> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<Context, F>,
        // Declared after `inner`, so it is dropped after it: set by `drop` below, it keeps
        // the count up while `inner` drops.
        dropping: Option<Entered>,
    }

    impl<F: Future> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            *this.project().dropping = Some(Entered::enter());
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let _entered = Entered::enter();
        self.project().inner.poll(cx)
    }
}

/// A 128-bit trace identifier, shared by every hop of one request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TraceId(pub u128);

/// A 64-bit span identifier, one per hop.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanId(pub u64);

impl TraceId {
    /// A random, non-zero trace id.
    pub fn random() -> Self {
        Self(fastrand::u128(1..))
    }
}

impl SpanId {
    /// A random, non-zero span id.
    pub fn random() -> Self {
        Self(fastrand::u64(1..))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// What the hops of a request share. Set where the request starts and rarely edited, so it
/// sits behind one reference count; a hop's own span ids are inline in [`Context`].
#[derive(Clone)]
struct Shared {
    trace_id: TraceId,
    request_id: Option<Arc<str>>,
    deadline: Option<Instant>,
    baggage: Vec<(Arc<str>, Arc<str>)>,
    /// The `tracing` span current where this context was attached to a message; local
    /// only, it does not cross nodes.
    span: Option<tracing::Span>,
}

/// A request's context: trace id, span ids, request id, deadline and baggage.
///
/// Cheap to clone (one reference count): a hop's own ids are inline, and what the hops
/// share is behind an `Arc`, so the next hop's context ([`Context::child`]) allocates
/// nothing. Build it with the `with_*` methods; each returns a new context and leaves the
/// original untouched. See the [module docs](self).
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    span_id: SpanId,
    parent_span: Option<SpanId>,
}

impl Context {
    /// A new root context: fresh trace and span ids, no deadline, no baggage.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                trace_id: TraceId::random(),
                request_id: None,
                deadline: None,
                baggage: Vec::new(),
                span: None,
            }),
            span_id: SpanId::random(),
            parent_span: None,
        }
    }

    /// The context current in this task, if any.
    #[inline]
    pub fn current() -> Option<Self> {
        if ENTERED.with(Cell::get) == 0 {
            return None;
        }
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this context current: sends and calls made inside carry it.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        Scoped {
            inner: CURRENT.scope(self, fut),
            dropping: None,
        }
    }

    /// Runs `f` with this context current (synchronous code).
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _entered = Entered::enter();
        CURRENT.sync_scope(self, f)
    }

    /// This context with what the hops share edited.
    fn edit(&self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = (*self.shared).clone();
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
            span_id: self.span_id,
            parent_span: self.parent_span,
        }
    }

    /// The edited context, or this one unchanged (with a warning) if the edit was refused.
    fn or_unchanged(&self, edited: Result<Self, ContextError>) -> Self {
        edited.unwrap_or_else(|e| {
            tracing::warn!(trace_id = %self.trace_id(), error = %e, "context left unchanged");
            self.clone()
        })
    }

    /// The context of the next hop: same trace, a new span id whose parent is this one's.
    pub fn child(&self) -> Self {
        Self {
            parent_span: Some(self.span_id),
            span_id: SpanId::random(),
            ..self.clone()
        }
    }

    /// This context with the given request id. An id longer than
    /// [`MAX_REQUEST_ID_BYTES`] is not set (a warning is logged); use
    /// [`Context::try_with_request_id`] to handle that case.
    pub fn with_request_id(&self, id: impl Into<Arc<str>>) -> Self {
        self.or_unchanged(self.try_with_request_id(id))
    }

    /// This context with the given request id.
    ///
    /// # Errors
    ///
    /// [`ContextError::RequestIdTooLong`] past [`MAX_REQUEST_ID_BYTES`].
    pub fn try_with_request_id(&self, id: impl Into<Arc<str>>) -> Result<Self, ContextError> {
        let id = id.into();
        check_request_id(&id)?;
        Ok(self.edit(|i| i.request_id = Some(id)))
    }

    /// This context with a deadline; an earlier deadline already set is kept.
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        self.edit(|i| {
            i.deadline = Some(i.deadline.map_or(deadline, |d| d.min(deadline)));
        })
    }

    /// This context with a deadline `timeout` from now (an earlier one is kept).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// This context with one more baggage item (replacing an item of the same key). Past
    /// the limits the item is not added and a warning is logged; use
    /// [`Context::try_with_baggage`] to handle that case.
    pub fn with_baggage(&self, key: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        self.or_unchanged(self.try_with_baggage(key, value))
    }

    /// This context with one more baggage item (replacing an item of the same key).
    ///
    /// # Errors
    ///
    /// [`ContextError::TooManyItems`] or [`ContextError::BaggageTooLarge`] if the item
    /// would take the baggage past its limits.
    pub fn try_with_baggage(
        &self,
        key: impl Into<Arc<str>>,
        value: impl Into<Arc<str>>,
    ) -> Result<Self, ContextError> {
        let (key, value) = (key.into(), value.into());
        let mut budget = BaggageBudget::default();
        for (k, v) in self.shared.baggage.iter().filter(|(k, _)| *k != key) {
            budget.add(k, v)?;
        }
        budget.add(&key, &value)?;
        Ok(self.edit(|i| {
            i.baggage.retain(|(k, _)| *k != key);
            i.baggage.push((key, value));
        }))
    }

    /// This context carrying the current `tracing` span as the sender's, as a cast attaches
    /// it (the receiver's span then nests under it): for a context handed to a process
    /// another way, as a [`Feed`](crate::Feed)'s messages are. Unchanged when no span is
    /// current.
    pub fn with_current_span(self) -> Self {
        crate::addr::with_sender_span(self)
    }

    /// This context carrying `span` as the `tracing` parent of the next hop's span.
    pub(crate) fn with_span(&self, span: tracing::Span) -> Self {
        self.edit(|i| i.span = Some(span))
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.shared.trace_id
    }

    /// This hop's span id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The span id of the hop that sent this one, if any.
    pub fn parent_span(&self) -> Option<SpanId> {
        self.parent_span
    }

    /// The request id, if set.
    pub fn request_id(&self) -> Option<&str> {
        self.shared.request_id.as_deref()
    }

    /// The deadline, if set.
    pub fn deadline(&self) -> Option<Instant> {
        self.shared.deadline
    }

    /// Time left before the deadline: `None` without a deadline, zero once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.shared
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.shared.deadline.is_some_and(|d| d <= Instant::now())
    }

    /// A baggage value.
    pub fn baggage(&self, key: &str) -> Option<&str> {
        self.shared
            .baggage
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// All baggage items, in the order they were added.
    pub fn baggage_items(&self) -> impl Iterator<Item = (&str, &str)> {
        self.shared.baggage.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The `tracing` span of the sender, when the message came from this process.
    pub fn sender_span(&self) -> Option<&tracing::Span> {
        self.shared.span.as_ref()
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("trace_id", &self.shared.trace_id)
            .field("span_id", &self.span_id)
            .field("parent_span", &self.parent_span)
            .field("request_id", &self.shared.request_id)
            .field("remaining", &self.remaining())
            .field("baggage", &self.shared.baggage)
            .finish()
    }
}

impl PartialEq for Context {
    /// Contexts are equal when their ids, request id and baggage are, and both have a
    /// deadline or neither has: the deadline's instant (which a round trip through the
    /// wire shifts) and the local `tracing` span are not compared.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.shared, &other.shared);
        a.trace_id == b.trace_id
            && self.span_id == other.span_id
            && self.parent_span == other.parent_span
            && a.request_id == b.request_id
            && a.baggage == b.baggage
            && a.deadline.is_some() == b.deadline.is_some()
    }
}

/// The wire form: the deadline becomes the time remaining, in microseconds.
#[derive(Serialize, Deserialize)]
struct Wire {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span: Option<SpanId>,
    request_id: Option<String>,
    remaining_us: Option<u64>,
    #[serde(deserialize_with = "bounded_baggage")]
    baggage: Vec<(String, String)>,
}

/// Reads baggage item by item and stops at the limits, so a peer cannot make this side
/// allocate an oversized list before it is refused.
fn bounded_baggage<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_BAGGAGE_ITEMS} baggage items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut budget = BaggageBudget::default();
            let mut items = Vec::new();
            while let Some((k, v)) = seq.next_element::<(String, String)>()? {
                budget.add(&k, &v).map_err(serde::de::Error::custom)?;
                items.push((k, v));
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Bounded)
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = &self.shared;
        Wire {
            trace_id: i.trace_id,
            span_id: self.span_id,
            parent_span: self.parent_span,
            request_id: i.request_id.as_deref().map(str::to_owned),
            remaining_us: self
                .remaining()
                .map(|r| u64::try_from(r.as_micros()).unwrap_or(u64::MAX)),
            baggage: i
                .baggage
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        if let Some(id) = &w.request_id {
            check_request_id(id).map_err(serde::de::Error::custom)?;
        }
        let now = Instant::now();
        Ok(Self {
            shared: Arc::new(Shared {
                trace_id: w.trace_id,
                request_id: w.request_id.map(Into::into),
                // A remaining time too large to add is no deadline in practice.
                deadline: w
                    .remaining_us
                    .and_then(|us| now.checked_add(Duration::from_micros(us))),
                baggage: w
                    .baggage
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
                span: None,
            }),
            span_id: w.span_id,
            parent_span: w.parent_span,
        })
    }
}
