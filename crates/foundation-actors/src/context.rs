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
//! # W3C Trace Context
//!
//! A request that comes in over HTTP with a [`traceparent`] header continues its trace
//! here: [`Context::from_traceparent`] reads the header, and [`Context::traceparent`]
//! writes one for a call going out, so Foundation's hops sit inside the caller's trace and
//! the next service's sit inside Foundation's. The header's sampled flag travels with the
//! context ([`Context::is_sampled`]); Foundation records nothing differently for it, it only
//! hands it on. A `tracestate` header is carried as it came, unparsed
//! ([`Context::with_tracestate`], at most [`MAX_TRACESTATE_BYTES`]).
//!
//! [`traceparent`]: https://www.w3.org/TR/trace-context/#traceparent-header
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

mod w3c;

pub use w3c::{TraceparentError, TraceparentField};

/// The most baggage items a context carries.
pub const MAX_BAGGAGE_ITEMS: usize = 32;
/// The most bytes of baggage (keys and values) a context carries.
pub const MAX_BAGGAGE_BYTES: usize = 4096;
/// The longest request id a context carries, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 256;
/// The longest `tracestate` a context carries, in bytes: the length W3C Trace Context asks
/// every vendor to pass on.
pub const MAX_TRACESTATE_BYTES: usize = 512;

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
    /// A `tracestate` longer than [`MAX_TRACESTATE_BYTES`].
    #[error(
        "a tracestate is at most {MAX_TRACESTATE_BYTES} bytes; W3C Trace Context lets a longer one be dropped"
    )]
    TracestateTooLong,
    /// A `tracestate` with a byte that an HTTP header value cannot hold (a control
    /// character, or one outside ASCII).
    #[error(
        "a tracestate is printable ASCII, spaces and tabs: it goes out as an HTTP header value"
    )]
    TracestateNotPrintable,
}

fn check_request_id(id: &str) -> Result<(), ContextError> {
    if id.len() > MAX_REQUEST_ID_BYTES {
        return Err(ContextError::RequestIdTooLong);
    }
    Ok(())
}

/// The tracestate checks: a length W3C Trace Context asks vendors to pass on, and only bytes
/// a header value may hold, so an outgoing request can carry it as it is.
fn check_tracestate(state: &str) -> Result<(), ContextError> {
    if state.len() > MAX_TRACESTATE_BYTES {
        return Err(ContextError::TracestateTooLong);
    }
    if !state
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(ContextError::TracestateNotPrintable);
    }
    Ok(())
}

/// The W3C trace flags bit that says the caller may have recorded its part of the trace.
const SAMPLED: u8 = 0x01;

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
    /// W3C Trace Context's sampled flag: set by [`Context::new`], kept from an incoming
    /// `traceparent`, handed on unchanged.
    sampled: bool,
    /// An incoming `tracestate`, unparsed; checked by [`check_tracestate`].
    tracestate: Option<Arc<str>>,
}

/// A request's context: trace id, span ids, request id, deadline and baggage, and the
/// W3C sampled flag and `tracestate` of a trace that came in over HTTP.
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
    /// A new root context: fresh trace and span ids, no deadline, no baggage; sampled (see
    /// [`Context::with_sampled`]).
    pub fn new() -> Self {
        Self::continuing(TraceId::random(), None, true)
    }

    /// A context of trace `trace_id` with a fresh span id, under `parent_span`.
    fn continuing(trace_id: TraceId, parent_span: Option<SpanId>, sampled: bool) -> Self {
        Self {
            shared: Arc::new(Shared {
                trace_id,
                request_id: None,
                deadline: None,
                baggage: Vec::new(),
                span: None,
                sampled,
                tracestate: None,
            }),
            span_id: SpanId::random(),
            parent_span,
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

    /// This context with W3C Trace Context's sampled flag set or cleared: whether the
    /// trace's spans may be recorded, as [`Context::traceparent`] tells the next service.
    /// Foundation itself records the same either way.
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_actors::Context;
    ///
    /// let ctx = Context::new().with_sampled(false);
    /// assert!(!ctx.is_sampled());
    /// assert!(ctx.traceparent().ends_with("-00"));
    /// assert!(!ctx.child().is_sampled(), "the next hop keeps it");
    /// ```
    pub fn with_sampled(&self, sampled: bool) -> Self {
        self.edit(|i| i.sampled = sampled)
    }

    /// This context carrying a W3C `tracestate` header's value, unparsed, to hand on to the
    /// next service with [`Context::tracestate`]. An empty value is none. One that
    /// [`Context::try_with_tracestate`] refuses is not set (a warning is logged).
    pub fn with_tracestate(&self, state: impl Into<Arc<str>>) -> Self {
        self.or_unchanged(self.try_with_tracestate(state))
    }

    /// This context carrying a W3C `tracestate` header's value, unparsed. An empty value
    /// (or one of spaces and tabs only) is none.
    ///
    /// # Errors
    ///
    /// [`ContextError::TracestateTooLong`] past [`MAX_TRACESTATE_BYTES`] (W3C Trace Context
    /// lets a longer one be dropped; Foundation keeps the value opaque, so it does not cut
    /// list members off), and [`ContextError::TracestateNotPrintable`] for a byte an HTTP
    /// header value cannot hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_actors::{Context, ContextError};
    ///
    /// let ctx = Context::new().try_with_tracestate("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")?;
    /// assert_eq!(ctx.tracestate(), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    /// assert_eq!(
    ///     Context::new().try_with_tracestate("a=1\r\nx: y").unwrap_err(),
    ///     ContextError::TracestateNotPrintable
    /// );
    /// # Ok::<(), ContextError>(())
    /// ```
    pub fn try_with_tracestate(&self, state: impl Into<Arc<str>>) -> Result<Self, ContextError> {
        let state = state.into();
        check_tracestate(&state)?;
        let state = (!state.trim_matches([' ', '\t']).is_empty()).then_some(state);
        Ok(self.edit(|i| i.tracestate = state))
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

    /// W3C Trace Context's sampled flag: whether the trace's spans may be recorded. True
    /// for a [`Context::new`]; an incoming `traceparent` sets it.
    pub fn is_sampled(&self) -> bool {
        self.shared.sampled
    }

    /// The W3C `tracestate` carried along, if any, exactly as it was set.
    pub fn tracestate(&self) -> Option<&str> {
        self.shared.tracestate.as_deref()
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
            .field("sampled", &self.shared.sampled)
            .field("tracestate", &self.shared.tracestate)
            .finish()
    }
}

impl PartialEq for Context {
    /// Contexts are equal when their ids, request id, baggage, sampled flag and tracestate
    /// are, and both have a deadline or neither has: the deadline's instant (which a round
    /// trip through the wire shifts) and the local `tracing` span are not compared.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.shared, &other.shared);
        a.trace_id == b.trace_id
            && self.span_id == other.span_id
            && self.parent_span == other.parent_span
            && a.request_id == b.request_id
            && a.baggage == b.baggage
            && a.sampled == b.sampled
            && a.tracestate == b.tracestate
            && a.deadline.is_some() == b.deadline.is_some()
    }
}

/// The wire form: the deadline becomes the time remaining, in microseconds.
///
/// `flags` and `tracestate` came later than the fields before them, and a peer of an
/// earlier version neither sends nor reads them. postcard writes fields in order, without
/// names, and a node decodes a context from a byte string of its own (foundation-cluster's
/// lane items), so each side still reads the other: an earlier peer stops after `baggage`
/// and ignores the bytes left, and a context that ends after `baggage` decodes here with
/// the defaults (sampled, no tracestate). That holds where a context ends its buffer; a
/// context inside a larger serialized value would need the two sides to agree on its form,
/// as any struct's fields do. Fields added later go after these, the same way.
#[derive(Serialize, Deserialize)]
struct Wire {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span: Option<SpanId>,
    request_id: Option<String>,
    remaining_us: Option<u64>,
    #[serde(deserialize_with = "bounded_baggage")]
    baggage: Vec<(String, String)>,
    /// W3C trace flags; only [`SAMPLED`] is read.
    #[serde(default = "sampled_flags")]
    flags: u8,
    #[serde(default)]
    tracestate: Option<String>,
}

/// The flags of a context sent without them: sampled, as [`Context::new`] is.
fn sampled_flags() -> u8 {
    SAMPLED
}

const WIRE_FIELDS: &[&str] = &[
    "trace_id",
    "span_id",
    "parent_span",
    "request_id",
    "remaining_us",
    "baggage",
    "flags",
    "tracestate",
];

/// Reads a [`Wire`] with or without its later fields. Fields by name (self-describing
/// formats) go to the derived impl, which takes missing ones as their defaults. Fields by
/// position (postcard) are read here: postcard reports a field past the end of the input
/// as an error, not as the end of the sequence, so the later fields are taken as absent
/// when they do not read, and the ones before them must.
struct WireVisitor;

impl<'de> serde::de::Visitor<'de> for WireVisitor {
    type Value = Wire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a context")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Wire, A::Error> {
        /// A field every version sends.
        fn field<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
            seq: &mut A,
            index: usize,
        ) -> Result<T, A::Error> {
            seq.next_element()?
                .ok_or_else(|| serde::de::Error::invalid_length(index, &"a context's six fields"))
        }
        /// The baggage, read with [`bounded_baggage`].
        struct Baggage(Vec<(String, String)>);
        impl<'de> Deserialize<'de> for Baggage {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                bounded_baggage(d).map(Self)
            }
        }

        let trace_id = field(&mut seq, 0)?;
        let span_id = field(&mut seq, 1)?;
        let parent_span = field(&mut seq, 2)?;
        let request_id = field(&mut seq, 3)?;
        let remaining_us = field(&mut seq, 4)?;
        let Baggage(baggage) = field(&mut seq, 5)?;
        let later = seq.next_element::<u8>().ok().flatten().map(|flags| {
            let tracestate = seq
                .next_element::<Option<String>>()
                .ok()
                .flatten()
                .flatten();
            (flags, tracestate)
        });
        let (flags, tracestate) = later.unwrap_or((SAMPLED, None));
        Ok(Wire {
            trace_id,
            span_id,
            parent_span,
            request_id,
            remaining_us,
            baggage,
            flags,
            tracestate,
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Wire, A::Error> {
        Wire::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
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
            flags: if i.sampled { SAMPLED } else { 0 },
            tracestate: i.tracestate.as_deref().map(str::to_owned),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = d.deserialize_struct("Wire", WIRE_FIELDS, WireVisitor)?;
        if let Some(id) = &w.request_id {
            check_request_id(id).map_err(serde::de::Error::custom)?;
        }
        if let Some(state) = &w.tracestate {
            check_tracestate(state).map_err(serde::de::Error::custom)?;
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
                sampled: w.flags & SAMPLED != 0,
                // An empty one is none, as `try_with_tracestate` has it.
                tracestate: w
                    .tracestate
                    .filter(|t| !t.trim_matches([' ', '\t']).is_empty())
                    .map(Into::into),
            }),
            span_id: w.span_id,
            parent_span: w.parent_span,
        })
    }
}
