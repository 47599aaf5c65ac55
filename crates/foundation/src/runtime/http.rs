//! The runtime's HTTP endpoint (axum): health probes, Prometheus metrics, the cluster as
//! JSON and the dashboard.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use super::config::{Config, Profile};
use super::{ClusterInfo, Foundation, Inner};

mod listener;

/// The dashboard: one page, no dependencies, reading `/cluster`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The process's Prometheus recorder: installed by the first runtime that serves HTTP
/// (before its parts are made, so their metrics register with it). `None` if the
/// application installed a recorder of its own first.
static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

pub(crate) fn install_recorder() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder);
            // Once per process, into whichever recorder is installed: the HELP lines.
            describe_metrics();
            match installed {
                Ok(()) => Some(handle),
                Err(_) => {
                    tracing::warn!("foundation: the application installed a metrics recorder already: the metrics go there, and /metrics answers empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The names of the runtime's own series, each labelled `node` (set at each scrape of
/// `/metrics` by `Inner::record_gauges`).
pub(crate) mod names {
    pub(crate) const MEMBERS_UP: &str = "foundation_members_up";
    pub(crate) const RESTARTS: &str = "foundation_restarts_total";
    pub(crate) const MEMBERSHIP_CHANGES: &str = "foundation_membership_changes_total";
    pub(crate) const UPTIME: &str = "foundation_uptime_seconds";
    pub(crate) const MAILBOX_QUEUED: &str = "foundation_mailbox_queued";
    pub(crate) const MAILBOX_QUEUED_MAX: &str = "foundation_mailbox_queued_max";
    pub(crate) const MAILBOX_FROM_PEERS: &str = "foundation_mailbox_from_peers";
    pub(crate) const REGISTRY_NAMES: &str = "foundation_registry_names";
    pub(crate) const SUPERVISOR_CHILDREN: &str = "foundation_supervisor_children";
    pub(crate) const WORK_QUEUED: &str = "foundation_work_queued";
    pub(crate) const CACHE_HIT_RATIO: &str = "foundation_cache_hit_ratio";
    pub(crate) const HTTP_REFUSED: &str = "foundation_http_refused_total";
    pub(crate) const MESSAGES: &str = "foundation_messages_total";
}

/// Gives the installed recorder the help text (and unit) of every metric Foundation
/// records: the runtime's own, the node's, the pubsub's and the caches'.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    use names::*;
    describe_gauge!(
        MEMBERS_UP,
        Unit::Count,
        "Members that are up, this node included"
    );
    describe_counter!(
        RESTARTS,
        Unit::Count,
        "Children restarted by the process's supervisors"
    );
    describe_counter!(
        MEMBERSHIP_CHANGES,
        Unit::Count,
        "Membership changes this node has seen (nodes up, down, left)"
    );
    describe_gauge!(UPTIME, Unit::Seconds, "Seconds since the node started");
    describe_gauge!(
        MAILBOX_QUEUED,
        Unit::Count,
        "Messages waiting in the mailboxes of this node's named processes (exported, registered cluster-wide or with Addr::register), from this node and others"
    );
    describe_gauge!(
        MAILBOX_QUEUED_MAX,
        Unit::Count,
        "The most messages waiting for any one named process of this node"
    );
    describe_gauge!(
        MAILBOX_FROM_PEERS,
        Unit::Count,
        "Messages from other nodes delivered to this node's exported processes and not handled yet"
    );
    describe_gauge!(
        REGISTRY_NAMES,
        Unit::Count,
        "Names in a cluster-wide registry, by scope"
    );
    describe_gauge!(
        SUPERVISOR_CHILDREN,
        Unit::Count,
        "Children of a distributed supervisor running on this node"
    );
    describe_gauge!(
        WORK_QUEUED,
        Unit::Count,
        "Jobs of a work ecosystem queued or running on a node (label at), as this node last saw"
    );
    describe_gauge!(
        CACHE_HIT_RATIO,
        "A cache's reads that hit, over all its reads, since it started"
    );
    describe_counter!(
        MESSAGES,
        Unit::Count,
        "Messages and calls between this node and others, by direction (in: arrived from peers; out: queued to them)"
    );
    describe_counter!(
        HTTP_REFUSED,
        Unit::Count,
        "Connections to the HTTP endpoint closed as soon as accepted: over its cap, in all or from one client address"
    );
    foundation_cluster::node::describe_metrics();
    foundation_pubsub::describe_metrics();
    foundation_cache::metrics::describe_metrics();
}

/// Binds the endpoint's address; in development, any free port when the default one is
/// taken (several nodes on one laptop).
pub(crate) async fn bind(addr: SocketAddr, config: &Config) -> std::io::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && config.profile == Profile::Development
                && config.http_listen_defaulted =>
        {
            let any = SocketAddr::new(addr.ip(), 0);
            tracing::info!(taken = %addr, "foundation: the HTTP port is taken (another node on this machine?): using any free port");
            TcpListener::bind(any).await
        }
        other => other,
    }
}

type Shared = Weak<Inner>;

/// Serves until `stop` fires or the runtime is gone.
pub(crate) async fn serve(
    listener: TcpListener,
    inner: Shared,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let node_name: Arc<str> = inner
        .upgrade()
        .map_or_else(|| Arc::from(""), |i| Arc::from(i.node.name()));
    let token = inner
        .upgrade()
        .and_then(|i| i.config.http_token.clone())
        .map(Arc::<str>::from);
    // One gathering of `/cluster` at a time, its answer shared for a moment: a client
    // polling it in a loop costs each member a report a second at most.
    let gathered = Arc::new(Gathered::default());
    let guarded = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/cluster", get(cluster))
        .route("/cluster/node", get(node))
        .route_layer(middleware::from_fn_with_state(token, authorize));
    // The probes, and the dashboard's page (it holds no data: its script reads `/cluster`
    // with the token given in `?token=`), need no token.
    let app = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/dashboard", get(dashboard))
        .route("/", get(dashboard))
        .merge(guarded)
        .layer(axum::Extension(gathered))
        .with_state(inner);
    let shutdown = async {
        let _ = stop.await;
    };
    if let Err(e) = axum::serve(listener::Guarded::new(listener, &node_name), app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "foundation: the HTTP endpoint stopped");
    }
}

async fn authorize(
    State(token): State<Option<Arc<str>>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme's name is case-insensitive (RFC 7235).
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        let why = if given.is_some() {
            "the bearer token is wrong (it must equal http.token, FOUNDATION_HTTP_TOKEN)\n"
        } else {
            "a bearer token is required: Authorization: Bearer <http.token>\n"
        };
        let mut r = (StatusCode::UNAUTHORIZED, why).into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The runtime, while it runs.
fn runtime(inner: &Shared) -> Option<Foundation> {
    inner.upgrade().map(|inner| Foundation { inner })
}

fn stopped() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "stopped\n").into_response()
}

async fn live() -> &'static str {
    "ok\n"
}

async fn ready(State(inner): State<Shared>) -> Response {
    match runtime(&inner) {
        Some(f) if f.is_ready() => (StatusCode::OK, "ready\n").into_response(),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
        None => stopped(),
    }
}

/// Runs `f` in the context a `traceparent` header names (a trace entering through HTTP
/// continues through the node's calls), and answers with the context's own `traceparent`.
async fn traced<F: std::future::Future<Output = Response>>(headers: &HeaderMap, f: F) -> Response {
    let ctx = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| foundation_actors::Context::from_traceparent(v).ok())
        .unwrap_or_default();
    let out = ctx.traceparent();
    let mut response = ctx.scope(f).await;
    if let Ok(v) = HeaderValue::from_str(&out) {
        response.headers_mut().insert("traceparent", v);
    }
    response
}

/// How long a gathered `/cluster` answer is served again.
const GATHERED_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// The last `/cluster` answer, and when it was gathered.
#[derive(Default)]
struct Gathered(tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<ClusterInfo>)>>);

async fn cluster(
    State(inner): State<Shared>,
    axum::Extension(gathered): axum::Extension<Arc<Gathered>>,
    headers: HeaderMap,
) -> Response {
    let Some(f) = runtime(&inner) else {
        return stopped();
    };
    traced(&headers, async move {
        // Requests that come while one gathers wait for it, and take its answer.
        let mut last = gathered.0.lock().await;
        let info = match last.as_ref() {
            Some((at, info)) if at.elapsed() < GATHERED_FOR => info.clone(),
            _ => {
                let info = Arc::new(f.cluster_info().await);
                *last = Some((tokio::time::Instant::now(), info.clone()));
                info
            }
        };
        drop(last);
        axum::Json(info.as_ref()).into_response()
    })
    .await
}

async fn node(State(inner): State<Shared>) -> Response {
    match runtime(&inner) {
        Some(f) => axum::Json(f.node_info()).into_response(),
        None => stopped(),
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn metrics_page(State(inner): State<Shared>) -> Response {
    let Some(f) = runtime(&inner) else {
        return stopped();
    };
    f.inner.record_gauges();
    let body = PROMETHEUS
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
