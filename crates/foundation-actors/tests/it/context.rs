//! The context travels: casts, calls, restarts, deadlines, tracing spans, the wire.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use foundation_actors::prelude::*;
use foundation_actors::{Backoff, TraceId};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::support::{Events, Log, Msg, Probe};

/// Where each hop reports the trace id it saw.
type Seen = tokio::sync::mpsc::UnboundedSender<(String, Option<TraceId>)>;

/// Relays a message one hop on: `Cast` casts to the next actor, `Call` calls it.
#[derive(Clone)]
struct Relay {
    seen: Seen,
    name: &'static str,
    next: Option<Addr<RelayMsg>>,
    last: Option<Addr<Msg>>,
}

enum RelayMsg {
    Go,
}

impl Actor for Relay {
    type Msg = RelayMsg;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<RelayMsg>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<RelayMsg>, _: RelayMsg, _: &mut ()) -> Result<(), ActorError> {
        let trace = Context::current().map(|c| c.trace_id());
        self.seen.send((self.name.to_owned(), trace))?;
        if let Some(next) = &self.next {
            next.cast(RelayMsg::Go)?; // hop by cast
        }
        if let Some(last) = &self.last {
            // hop by call, to an actor in the middle of a restart
            let t = last.call(Msg::Trace).await?;
            self.seen.send(("c".to_owned(), t.map(|(t, _)| t)))?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_reaches_three_hops_through_cast_call_and_restart() {
    let log = Log::default();
    let (seen, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let c_spec = Probe::spec("c", &log);
    let c = c_spec.addr();
    let sup = Supervisor::start(
        SupervisorSpec::new("ctx", Strategy::OneForOne)
            .backoff(Backoff {
                min: Duration::from_millis(100),
                max: Duration::from_millis(100),
                jitter: 0.0,
            })
            .child(c_spec),
    )
    .await
    .unwrap();
    let b = spawn(
        Relay {
            seen: seen.clone(),
            name: "b",
            next: None,
            last: Some(c.clone()),
        },
        (),
    )
    .await
    .unwrap();
    let a = spawn(
        Relay {
            seen: seen.clone(),
            name: "a",
            next: Some(b),
            last: None,
        },
        (),
    )
    .await
    .unwrap();

    let mut ev = Events::of(&sup);
    c.cast(Msg::Crash).unwrap();
    assert!(
        ev.exited("c").await.1,
        "c is restarting (in its backoff delay)"
    );

    let edge = Context::new().with_request_id("r-1");
    let trace = edge.trace_id();
    edge.scope(async { a.cast(RelayMsg::Go).unwrap() }).await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        let hop = tokio::time::timeout(Duration::from_secs(20), reports.recv()).await;
        seen.push(hop.expect("three hops within the deadline").unwrap());
    }
    assert_eq!(
        seen,
        [
            ("a".to_owned(), Some(trace)),
            ("b".to_owned(), Some(trace)),
            ("c".to_owned(), Some(trace))
        ]
    );
    assert_eq!(c.incarnation(), 2, "c answered from its new incarnation");
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hop_gets_a_child_span_of_the_sender() {
    let log = Log::default();
    let p = spawn(Probe::new("p", &log), ()).await.unwrap();
    let edge = Context::new();
    let (t, span) = edge
        .clone()
        .scope(async { p.call(Msg::Trace).await.unwrap().unwrap() })
        .await;
    let (span_id, parent) = span.unwrap();
    assert_eq!(t, edge.trace_id());
    assert_eq!(parent, Some(edge.span_id()));
    assert_ne!(span_id, edge.span_id());
    // Outside any scope, no context travels.
    assert_eq!(p.call(Msg::Trace).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_honours_the_deadline() {
    let log = Log::default();
    let p = spawn(Probe::new("slow", &log), ()).await.unwrap();
    p.cast(Msg::Sleep(Duration::from_millis(500))).unwrap();
    let ctx = Context::new().with_timeout(Duration::from_millis(50));
    let r = ctx.scope(async { p.call(Msg::Get).await }).await;
    assert_eq!(r, Err(CallError::DeadlineExceeded));

    // An expired deadline fails before sending anything.
    let expired = Context::new().with_timeout(Duration::ZERO);
    let r = expired.scope(async { p.call(Msg::Get).await }).await;
    assert_eq!(r, Err(CallError::DeadlineExceeded));

    // A shorter call timeout than the deadline reports a timeout.
    let ctx = Context::new().with_timeout(Duration::from_secs(60));
    p.cast(Msg::Sleep(Duration::from_millis(500))).unwrap();
    let r = ctx
        .scope(async { p.call_timeout(Msg::Get, Duration::from_millis(20)).await })
        .await;
    assert_eq!(r, Err(CallError::Timeout(Duration::from_millis(20))));
}

#[test]
fn context_round_trips_through_serde_with_remaining_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let ctx = Context::new()
            .with_request_id("req-9")
            .with_baggage("tenant", "acme")
            .with_baggage("tenant", "globex")
            .with_timeout(Duration::from_secs(30));
        let json = serde_json::to_string(&ctx).unwrap();
        let back: Context = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ctx);
        assert_eq!(back.baggage("tenant"), Some("globex"));
        assert_eq!(back.request_id(), Some("req-9"));
        let left = back.remaining().unwrap();
        assert!(
            left <= Duration::from_secs(30) && left > Duration::from_secs(20),
            "{left:?}"
        );
        assert!(serde_json::from_str::<Context>("{\"trace_id\": 1}").is_err());
    });
}

/// Records each span's name and parent span name.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<NameAndParent>>>);

type NameAndParent = (String, Option<String>);

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_owned());
        let mut fields = String::new();
        struct V<'a>(&'a mut String);
        impl tracing::field::Visit for V<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "process" {
                    self.0.push_str(&format!("{v:?}"));
                }
            }
        }
        attrs.record(&mut V(&mut fields));
        self.0
            .lock()
            .unwrap()
            .push((format!("{}{}", attrs.metadata().name(), fields), parent));
    }
}

fn spans() -> &'static Spans {
    static SPANS: OnceLock<Spans> = OnceLock::new();
    SPANS.get_or_init(|| {
        let spans = Spans::default();
        let subscriber = tracing_subscriber::registry().with(spans.clone());
        tracing::subscriber::set_global_default(subscriber)
            .expect("only this test installs a subscriber");
        spans
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_tracing_span_is_the_parent_of_the_handlers() {
    let spans = spans();
    let log = Log::default();
    let p = spawn(Probe::new("traced", &log), ()).await.unwrap();
    let edge = tracing::info_span!("edge_request");
    Context::new()
        .scope(async {
            let _g = edge.enter();
            p.call(Msg::Get).await.unwrap();
        })
        .await;
    let recorded = spans.0.lock().unwrap().clone();
    assert!(
        recorded.iter().any(|(name, parent)| name.contains("handle")
            && name.contains("Probe")
            && parent.as_deref() == Some("edge_request")),
        "{recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_with_sends_an_explicit_context() {
    let log = Log::default();
    let p = spawn(Probe::new("explicit", &log), ()).await.unwrap();
    let ctx = Context::new().with_baggage("k", "v");
    let (tx, rx) = tokio::sync::oneshot::channel();
    p.cast_with(ctx.clone(), Msg::Trace(tx.into())).unwrap();
    let (trace, spans) = rx.await.unwrap().unwrap();
    assert_eq!(trace, ctx.trace_id());
    assert_eq!(spans.unwrap().1, Some(ctx.span_id()));
}

#[test]
fn baggage_is_bounded_and_oversized_contexts_are_refused() {
    use foundation_actors::ContextError;
    use foundation_actors::context::{MAX_BAGGAGE_BYTES, MAX_BAGGAGE_ITEMS};
    let mut ctx = Context::new();
    for i in 0..MAX_BAGGAGE_ITEMS {
        ctx = ctx.try_with_baggage(format!("k{i}"), "v").unwrap();
    }
    assert_eq!(
        ctx.try_with_baggage("one-more", "v").unwrap_err(),
        ContextError::TooManyItems
    );
    // Replacing an existing key is always fine.
    assert!(ctx.try_with_baggage("k0", "w").is_ok());
    // with_baggage keeps the context as it was.
    assert_eq!(
        ctx.with_baggage("one-more", "v").baggage_items().count(),
        MAX_BAGGAGE_ITEMS
    );
    let big = "x".repeat(MAX_BAGGAGE_BYTES);
    assert_eq!(
        Context::new().try_with_baggage("k", big).unwrap_err(),
        ContextError::BaggageTooLarge
    );

    // A peer's oversized context does not deserialize.
    let items: Vec<(String, String)> = (0..=MAX_BAGGAGE_ITEMS)
        .map(|i| (format!("k{i}"), "v".into()))
        .collect();
    let wire = serde_json::json!({
        "trace_id": 1, "span_id": 2, "parent_span": null, "request_id": null,
        "remaining_us": null, "baggage": items,
    });
    let err = serde_json::from_value::<Context>(wire).unwrap_err();
    assert!(err.to_string().contains("baggage items"), "{err}");
    let wire = serde_json::json!({
        "trace_id": 1, "span_id": 2, "parent_span": null, "request_id": "r".repeat(300),
        "remaining_us": null, "baggage": [],
    });
    assert!(serde_json::from_value::<Context>(wire).is_err());
}

#[test]
fn request_ids_are_bounded_at_both_ends() {
    use foundation_actors::context::MAX_REQUEST_ID_BYTES;
    let long = "r".repeat(MAX_REQUEST_ID_BYTES + 1);
    assert_eq!(
        Context::new()
            .try_with_request_id(long.clone())
            .unwrap_err(),
        foundation_actors::ContextError::RequestIdTooLong
    );
    assert_eq!(Context::new().with_request_id(long).request_id(), None);
    let fits = "r".repeat(MAX_REQUEST_ID_BYTES);
    let ctx = Context::new().try_with_request_id(fits).unwrap();
    // What is built locally always deserializes at the receiver.
    let back: Context = serde_json::from_str(&serde_json::to_string(&ctx).unwrap()).unwrap();
    assert_eq!(back, ctx);
}

/// A future that is pending until told, and reports the context current when it drops.
struct Pending {
    dropped_under: Arc<Mutex<Option<Option<TraceId>>>>,
}

impl std::future::Future for Pending {
    type Output = ();
    fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        // Polled inside the scope: the context is current.
        assert!(Context::current().is_some());
        std::task::Poll::Pending
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let now = Context::current().map(|c| c.trace_id());
        *self.dropped_under.lock().unwrap() = Some(now);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_scope_is_current_only_while_its_future_runs_or_drops() {
    assert!(Context::current().is_none());
    let ctx = Context::new();
    let trace = ctx.trace_id();

    // Polled once, then dropped unfinished: current inside, also while the inner future
    // drops, and gone afterwards.
    let dropped_under = Arc::new(Mutex::new(None));
    let mut scoped = Box::pin(ctx.clone().scope(Pending {
        dropped_under: dropped_under.clone(),
    }));
    assert!(futures::poll!(scoped.as_mut()).is_pending());
    assert!(
        Context::current().is_none(),
        "leaked out of a pending scope"
    );
    drop(scoped);
    assert_eq!(*dropped_under.lock().unwrap(), Some(Some(trace)));
    assert!(
        Context::current().is_none(),
        "leaked out of a dropped scope"
    );

    // Nested scopes: the inner one is current inside, the outer one again after it.
    let inner = Context::new();
    let inner_trace = inner.trace_id();
    ctx.clone()
        .scope(async move {
            inner
                .scope(async move {
                    assert_eq!(Context::current().map(|c| c.trace_id()), Some(inner_trace));
                })
                .await;
            assert_eq!(Context::current().map(|c| c.trace_id()), Some(trace));
        })
        .await;

    // A panic inside a synchronous scope unwinds out of it.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.clone().sync_scope(|| {
            assert!(Context::current().is_some());
            panic!("inside the scope");
        })
    }));
    assert!(unwound.is_err());
    assert!(
        Context::current().is_none(),
        "leaked out of an unwound scope"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_child_context_keeps_the_trace_and_shares_what_the_hops_share() {
    let root = Context::new()
        .with_request_id("req-1")
        .with_baggage("tenant", "acme")
        .with_timeout(Duration::from_secs(60));
    let child = root.child();
    assert_eq!(child.trace_id(), root.trace_id());
    assert_eq!(child.parent_span(), Some(root.span_id()));
    assert_ne!(child.span_id(), root.span_id());
    assert_eq!(child.request_id(), Some("req-1"));
    assert_eq!(child.baggage("tenant"), Some("acme"));
    assert_eq!(child.deadline(), root.deadline());
    // Editing the child leaves the root alone.
    let edited = child.with_baggage("tenant", "other");
    assert_eq!(edited.baggage("tenant"), Some("other"));
    assert_eq!(edited.span_id(), child.span_id());
    assert_eq!(root.baggage("tenant"), Some("acme"));
}

/// Answers the context its handler runs under.
#[derive(Clone)]
struct Echo;

enum EchoMsg {
    Current(ReplyPort<Option<Context>>),
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Args = ();
    async fn init(&self, _: &Addr<EchoMsg>, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
    async fn handle(&self, _: &Addr<EchoMsg>, msg: EchoMsg, _: &mut ()) -> Result<(), ActorError> {
        let EchoMsg::Current(reply) = msg;
        let _ = reply.send(Context::current());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_trace_survives_an_actor_hop_and_goes_out_again() {
    let echo = spawn(Echo, ()).await.unwrap();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let edge = Context::from_traceparent(incoming)
        .unwrap()
        .with_tracestate("rojo=00f067aa0ba902b7");
    let hop = edge
        .clone()
        .scope(echo.call(EchoMsg::Current))
        .await
        .unwrap()
        .expect("the handler runs under the sender's context");
    assert_eq!(hop.trace_id(), TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736));
    assert_eq!(hop.parent_span(), Some(edge.span_id()));
    assert!(!hop.is_sampled(), "the caller's flag travels");
    assert_eq!(hop.tracestate(), Some("rojo=00f067aa0ba902b7"));
    assert_eq!(
        hop.traceparent(),
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-00", hop.span_id())
    );
}

#[test]
fn sampled_flag_and_tracestate_round_trip_through_serde() {
    let ctx = Context::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
        .unwrap()
        .with_tracestate("congo=t61rcWkgMzE")
        .with_baggage("k", "v");
    let back: Context = postcard::from_bytes(&postcard::to_stdvec(&ctx).unwrap()).unwrap();
    assert_eq!(back, ctx);
    assert!(!back.is_sampled());
    assert_eq!(back.tracestate(), Some("congo=t61rcWkgMzE"));
    let back: Context = serde_json::from_str(&serde_json::to_string(&ctx).unwrap()).unwrap();
    assert_eq!(back, ctx);

    // A peer's tracestate is held to the same limits as one set here.
    let wire = serde_json::json!({
        "trace_id": 1, "span_id": 2, "parent_span": null, "request_id": null,
        "remaining_us": null, "baggage": [], "flags": 1, "tracestate": "x".repeat(513),
    });
    let err = serde_json::from_value::<Context>(wire).unwrap_err();
    assert!(err.to_string().contains("tracestate"), "{err}");
}

/// A context as nodes without W3C Trace Context's fields encode and decode it.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct EarlierWire {
    trace_id: TraceId,
    span_id: foundation_actors::SpanId,
    parent_span: Option<foundation_actors::SpanId>,
    request_id: Option<String>,
    remaining_us: Option<u64>,
    baggage: Vec<(String, String)>,
}

#[test]
fn contexts_cross_between_this_version_and_an_earlier_one() {
    use foundation_actors::SpanId;
    // From an earlier peer: no flags, no tracestate; sampled, as a new context is.
    let earlier = EarlierWire {
        trace_id: TraceId(7),
        span_id: SpanId(8),
        parent_span: Some(SpanId(9)),
        request_id: Some("req-1".into()),
        remaining_us: None,
        baggage: vec![("k".into(), "v".into())],
    };
    let by_position: Context =
        postcard::from_bytes(&postcard::to_stdvec(&earlier).unwrap()).unwrap();
    let by_name: Context = serde_json::from_str(&serde_json::to_string(&earlier).unwrap()).unwrap();
    for ctx in [by_position, by_name] {
        assert_eq!(ctx.trace_id(), TraceId(7));
        assert_eq!(ctx.span_id(), SpanId(8));
        assert_eq!(ctx.parent_span(), Some(SpanId(9)));
        assert_eq!(ctx.request_id(), Some("req-1"));
        assert_eq!(ctx.baggage("k"), Some("v"));
        assert!(ctx.is_sampled());
        assert_eq!(ctx.tracestate(), None);
    }
    // A truncated earlier context is still refused.
    let bytes = postcard::to_stdvec(&earlier).unwrap();
    for cut in 0..bytes.len() {
        assert!(
            postcard::from_bytes::<Context>(&bytes[..cut]).is_err(),
            "{cut}"
        );
    }

    // To an earlier peer: it reads the fields it knows and leaves the rest.
    let ctx = Context::new()
        .with_sampled(false)
        .with_tracestate("rojo=1")
        .with_request_id("req-2");
    let theirs: EarlierWire = postcard::from_bytes(&postcard::to_stdvec(&ctx).unwrap()).unwrap();
    assert_eq!(theirs.trace_id, ctx.trace_id());
    assert_eq!(theirs.span_id, ctx.span_id());
    assert_eq!(theirs.request_id.as_deref(), Some("req-2"));
    let theirs: EarlierWire = serde_json::from_str(&serde_json::to_string(&ctx).unwrap()).unwrap();
    assert_eq!(theirs.trace_id, ctx.trace_id());
}

#[test]
fn tracestate_is_bounded_and_printable() {
    use foundation_actors::ContextError;
    use foundation_actors::context::MAX_TRACESTATE_BYTES;
    let fits = "a".repeat(MAX_TRACESTATE_BYTES);
    assert_eq!(
        Context::new()
            .try_with_tracestate(fits.clone())
            .unwrap()
            .tracestate(),
        Some(fits.as_str())
    );
    let long = "a".repeat(MAX_TRACESTATE_BYTES + 1);
    assert_eq!(
        Context::new()
            .try_with_tracestate(long.clone())
            .unwrap_err(),
        ContextError::TracestateTooLong
    );
    for bad in ["a=1\r\nx: y", "a=\u{7f}", "a=é", "a=\0"] {
        assert_eq!(
            Context::new().try_with_tracestate(bad).unwrap_err(),
            ContextError::TracestateNotPrintable,
            "{bad:?}"
        );
    }
    // with_tracestate keeps the context as it was.
    let ctx = Context::new().with_tracestate("a=1");
    assert_eq!(ctx.with_tracestate(long).tracestate(), Some("a=1"));
    // An empty one is none, and replaces what was there.
    assert_eq!(ctx.with_tracestate(" \t").tracestate(), None);
    assert_eq!(ctx.child().tracestate(), Some("a=1"));
}
