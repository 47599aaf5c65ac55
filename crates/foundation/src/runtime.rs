//! The Foundation runtime: one call starts a node with everything an application uses.
//!
//! [`Foundation::start`] reads the configuration (`foundation.toml`, `FOUNDATION_*`
//! variables, code: see [`config::KEYS`] and `docs/configuration.md`), starts a node, runs
//! the discovery strategy the configuration chose (and logs which and why), starts a
//! pubsub, serves HTTP (`/health/live`, `/health/ready`, `/metrics`, `/cluster`,
//! `/dashboard`) and stops gracefully on SIGTERM or Ctrl-C. Distributed supervisors,
//! cluster-wide registries and local caches are made through it, so that
//! [`Foundation::cluster_info`] shows them and [`Foundation::shutdown`] stops them in
//! reverse order.
//!
//! With no configuration at all it is a development node: it finds the other nodes of
//! its cluster on the local network by mDNS. In production one line is enough:
//! `cluster = "kubernetes"` (or `dns`, `static`, `mdns`).
//!
//! ```
//! use foundation::prelude::*;
//!
//! # #[foundation::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Foundation::builder()
//!     .cluster(Discovery::None)            // one node, for this example
//!     .no_config_file()
//!     .http_listen("127.0.0.1:0".parse()?) // any free port
//!     .start()
//!     .await?;
//! let topic: Topic<String> = Topic::new("greetings")?;
//! let mut inbox = app.pubsub().subscribe_stream(&topic)?;
//! app.pubsub().broadcast(&topic, "hello".to_owned())?;
//! assert_eq!(inbox.recv().await.as_deref().map(String::as_str), Some("hello"));
//!
//! let info = app.cluster_info().await;
//! assert_eq!(info.nodes.len(), 1);
//! app.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
#[cfg(feature = "http")]
mod http;
pub mod info;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foundation_actors::{Addr, RemoteMessage};
use foundation_cache::{Cache as _, Local};
use foundation_cluster::discovery::{self, Dns, Mdns, Static};
use foundation_cluster::membership::Status;
use foundation_cluster::node::Node;
use foundation_pubsub::PubSub;
use foundation_registry::ClusterRegistry;
use foundation_registry::cluster::Value;
use foundation_registry::distributed::{ChildName, DistributedSpec, DistributedSupervisor};
use tokio::sync::watch;

pub use config::{Config, ConfigError, Discovery, Profile, Source};
pub use info::{ClusterInfo, NodeEntry, NodeInfo};

use info::{History, INFO_EXPORT, InfoMsg, InfoServer, Sample};

/// Why the runtime did not start. Its `Debug` prints the message too, so that a `main`
/// returning `Result<_, Box<dyn Error>>` shows what to fix.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is unusable: the message names the key, the value and what is
    /// allowed.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The node did not start (its port is taken, say).
    #[error("the node did not start: {0}")]
    Node(#[from] foundation_cluster::node::NodeError),
    /// The discovery strategy could not be configured.
    #[error("discovery: {0}")]
    Discovery(#[from] discovery::DiscoveryError),
    /// The pubsub did not start.
    #[error("pubsub: {0}")]
    PubSub(#[from] foundation_pubsub::StartError),
    /// The HTTP endpoint could not listen.
    #[error(
        "the HTTP endpoint cannot listen on {addr} (`http.listen`, FOUNDATION_HTTP_LISTEN): {error}"
    )]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// A process of the runtime did not start.
    #[error("a process of the runtime did not start: {0}")]
    Spawn(#[from] foundation_actors::SpawnError),
}

impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a part made through the runtime was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartError {
    /// A cache of that name exists with other key or value types.
    #[error("a cache named `{0}` exists with other key or value types")]
    CacheTypes(String),
    /// The cache's settings are unusable.
    #[error("cache `{name}`: {error}")]
    Cache {
        /// The cache.
        name: String,
        /// Why.
        error: String,
    },
    /// The registry did not start.
    #[error(transparent)]
    Registry(#[from] foundation_registry::cluster::StartError),
    /// The distributed supervisor did not start.
    #[error(transparent)]
    Supervisor(#[from] foundation_registry::distributed::StartError),
    /// The work ecosystem did not start.
    #[error(transparent)]
    Work(#[from] foundation_registry::work::StartError),
    /// The runtime is shut down.
    #[error("the runtime is shut down")]
    ShutDown,
}

/// Sets up a [`Foundation`] in code; code wins over the environment and the file.
#[derive(Debug)]
pub struct Builder {
    layers: config::Layers,
    error: Option<ConfigError>,
    file: FileChoice,
    env: Option<BTreeMap<String, String>>,
    signals: bool,
}

#[derive(Debug)]
enum FileChoice {
    Default,
    Path(PathBuf),
    None,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            layers: config::Layers::default(),
            error: None,
            file: FileChoice::Default,
            env: None,
            signals: true,
        }
    }
}

impl Builder {
    /// Sets any key of [`config::KEYS`] by its `foundation.toml` name (`"http.listen"`). An
    /// unknown key fails [`Builder::start`], naming the closest known one.
    #[must_use]
    pub fn set(mut self, key: &str, value: impl fmt::Display) -> Self {
        if let Err(e) = self.layers.set(key, value.to_string()) {
            self.error.get_or_insert(e);
        }
        self
    }

    /// The profile (`profile`).
    #[must_use]
    pub fn profile(self, profile: Profile) -> Self {
        self.set("profile", profile)
    }

    /// The discovery strategy (`cluster`).
    #[must_use]
    pub fn cluster(self, discovery: Discovery) -> Self {
        self.set("cluster", discovery)
    }

    /// The cluster's name (`cluster_name`).
    #[must_use]
    pub fn cluster_name(self, name: &str) -> Self {
        self.set("cluster_name", name)
    }

    /// This node's name (`node_name`).
    #[must_use]
    pub fn node_name(self, name: &str) -> Self {
        self.set("node_name", name)
    }

    /// The cluster's cookie (`cookie`).
    #[must_use]
    pub fn cookie(self, cookie: &str) -> Self {
        self.set("cookie", cookie)
    }

    /// Where the node listens (`listen`).
    #[must_use]
    pub fn listen(self, addr: SocketAddr) -> Self {
        self.set("listen", addr)
    }

    /// Static seeds (`peers`), `host:port` each.
    #[must_use]
    pub fn peers<S: AsRef<str>>(self, peers: impl IntoIterator<Item = S>) -> Self {
        let list: Vec<String> = peers.into_iter().map(|p| p.as_ref().to_owned()).collect();
        self.set("peers", list.join(","))
    }

    /// Where the HTTP endpoint listens (`http.listen`).
    #[must_use]
    pub fn http_listen(self, addr: SocketAddr) -> Self {
        self.set("http.listen", addr)
    }

    /// TLS between nodes from rustls configurations built in code: wins over every
    /// `tls.*` key of the file and the environment, which are then not read. Without it,
    /// the `tls.*` keys (`tls.cert`, `tls.key`, `tls.ca`…) turn TLS on from PEM files.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(
    /// #     server: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
    /// #     client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// use foundation::cluster::node::Tls;
    /// use foundation::prelude::*;
    ///
    /// let app = Foundation::builder()
    ///     .tls(Tls::new(server, client, "payments.internal")?)
    ///     .start()
    ///     .await?;
    /// assert!(app.config().tls());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tls(mut self, tls: foundation_cluster::node::Tls) -> Self {
        self.layers.set_tls(tls);
        self
    }

    /// No HTTP endpoint (`http.enabled = false`).
    #[must_use]
    pub fn no_http(self) -> Self {
        self.set("http.enabled", false)
    }

    /// Reads this file instead of `foundation.toml` (and of `FOUNDATION_CONFIG`); it must
    /// exist.
    #[must_use]
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = FileChoice::Path(path.into());
        self
    }

    /// Reads no configuration file.
    #[must_use]
    pub fn no_config_file(mut self) -> Self {
        self.file = FileChoice::None;
        self
    }

    /// Reads these variables instead of the process's environment (tests, embedding).
    #[must_use]
    pub fn env<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Whether SIGTERM and Ctrl-C shut the runtime down gracefully (on by default).
    #[must_use]
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Resolves the configuration without starting anything: what [`Builder::start`] would
    /// run with, or why it would not.
    ///
    /// # Errors
    ///
    /// [`ConfigError`], naming the key, the value, its source and what is allowed.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let vars = self.env.clone().unwrap_or_else(|| {
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect()
        });
        let mut layers = self.layers.clone();
        layers.env(&vars)?;
        let path = match &self.file {
            FileChoice::None => None,
            FileChoice::Path(p) => Some((p.clone(), true)),
            FileChoice::Default => match vars.get(config::CONFIG_FILE_VARIABLE) {
                Some(p) => Some((PathBuf::from(p), true)),
                None => Some((PathBuf::from("foundation.toml"), false)),
            },
        };
        let mut read = None;
        if let Some((path, required)) = path {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    layers.file(&path, &text)?;
                    read = Some(path);
                }
                Err(e) if required || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ConfigError::File {
                        path,
                        error: e.to_string(),
                    });
                }
                Err(_) => {}
            }
        }
        layers.resolve(&vars, foundation_cluster::node::os_host_name(), read)
    }

    /// Starts the runtime.
    ///
    /// # Errors
    ///
    /// [`StartError`]: the configuration, the node, discovery, the pubsub or the HTTP
    /// endpoint. Nothing is left running then.
    pub async fn start(self) -> Result<Foundation, StartError> {
        let config = self.resolve()?;
        Foundation::start_with(config, self.signals).await
    }
}

/// A running Foundation node: its node, pubsub, HTTP endpoint and the parts made through
/// it. Cheap to clone.
#[derive(Clone)]
pub struct Foundation {
    inner: Arc<Inner>,
}

impl fmt::Debug for Foundation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Foundation")
            .field("node", &self.inner.node.name())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A part the runtime stops at shutdown and reports in `cluster_info`.
trait Part: Send + Sync {
    fn report(&self, info: &mut NodeInfo);
    /// A cache's hits and misses, for the sampled rates (no other part has any).
    fn cache_reads(&self) -> Option<(u64, u64)> {
        None
    }
    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

struct SupervisorPart<M: RemoteMessage> {
    sup: DistributedSupervisor<M>,
    registry: ClusterRegistry<ChildName, M>,
}

impl<M: RemoteMessage> Part for SupervisorPart<M> {
    fn report(&self, info: &mut NodeInfo) {
        let children = self
            .sup
            .which_children()
            .into_iter()
            .map(|c| info::ChildView {
                nodes: c
                    .instances
                    .iter()
                    .filter(|i| i.live)
                    .map(|i| i.node.clone())
                    .collect(),
                restarts: c.instances.iter().map(|i| i.restarts).sum(),
                id: c.id,
                kind: c.kind,
                status: format!("{:?}", c.status),
            })
            .collect();
        info.supervisors.push(info::SupervisorInfo {
            name: self.sup.name().to_owned(),
            children,
        });
        // Its children's names, in the registry of its own.
        info.registries.push(info::RegistryInfo {
            scope: format!("{}.children", self.sup.name()),
            names: self
                .registry
                .names()
                .into_iter()
                .map(|(k, node)| match k.node {
                    Some(on) => (format!("{}@{on}", k.id), node),
                    None => (k.id, node),
                })
                .collect(),
        });
    }

    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.sup.shutdown().await;
            self.registry.shutdown();
        })
    }
}

struct RegistryPart<K: foundation_registry::cluster::Key, M: RemoteMessage, V: Value>(
    String,
    ClusterRegistry<K, M, V>,
);

impl<K: foundation_registry::cluster::Key, M: RemoteMessage, V: Value> Part
    for RegistryPart<K, M, V>
{
    fn report(&self, info: &mut NodeInfo) {
        info.registries.push(info::RegistryInfo {
            scope: self.0.clone(),
            names: self
                .1
                .names()
                .into_iter()
                .map(|(k, node)| (key_text(&k), node))
                .collect(),
        });
    }

    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.1.shutdown() })
    }
}

/// A key as the report shows it: as `Debug` prints it, without the quotes of a plain
/// string (`kv@host`, not `"kv@host"`).
fn key_text(k: &impl fmt::Debug) -> String {
    let s = format!("{k:?}");
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if !inner.contains(['"', '\\']) => inner.to_owned(),
        _ => s,
    }
}

struct WorkPart(foundation_registry::work::ClusterEcosystem);

impl Part for WorkPart {
    fn report(&self, info: &mut NodeInfo) {
        let stats = self.0.stats();
        info.work.push(info::WorkInfo {
            name: self.0.name().to_owned(),
            nodes: stats
                .nodes
                .iter()
                .map(|n| info::WorkNode {
                    node: n.node.clone(),
                    workers: n.workers,
                    queued: n.load,
                })
                .collect(),
            outstanding: stats.outstanding,
            ran_here: stats.ran_here,
        });
    }

    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.0.shutdown())
    }
}

/// A cache the runtime reports: its name, kind and counters.
struct ServicesPart<M: RemoteMessage, V: foundation_registry::cluster::Value>(
    String,
    foundation_registry::services::Services<M, V>,
);

impl<M: RemoteMessage, V: foundation_registry::cluster::Value> Part for ServicesPart<M, V> {
    fn report(&self, info: &mut NodeInfo) {
        let services = self
            .1
            .services()
            .into_iter()
            .map(|name| {
                let instances = self
                    .1
                    .instances(&name)
                    .iter()
                    .map(|i| (i.node().to_owned(), i.capabilities().to_vec()))
                    .collect();
                info::ServiceInfo { name, instances }
            })
            .collect();
        info.services.push(info::ServicesInfo {
            scope: self.0.clone(),
            services,
        });
    }

    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move { self.1.shutdown() })
    }
}

struct CachePart {
    name: String,
    kind: &'static str,
    stats: Box<dyn Fn() -> foundation_cache::Stats + Send + Sync>,
}

impl Part for CachePart {
    fn report(&self, info: &mut NodeInfo) {
        let s = (self.stats)();
        info.caches.push(info::CacheInfo {
            name: self.name.clone(),
            kind: self.kind.to_owned(),
            hits: s.hits,
            misses: s.misses,
            writes: s.writes,
            evictions: s.evictions,
        });
    }

    fn cache_reads(&self) -> Option<(u64, u64)> {
        let s = (self.stats)();
        Some((s.hits, s.misses))
    }

    fn stop(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

pub(crate) struct Inner {
    config: Config,
    node: Node,
    pubsub: PubSub,
    started: Instant,
    parts: Mutex<Vec<Arc<dyn Part>>>,
    caches: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
    history: Mutex<History>,
    http_addr: Option<SocketAddr>,
    info: Addr<InfoMsg>,
    ready: AtomicBool,
    stopping: AtomicBool,
    membership_changes: std::sync::atomic::AtomicU64,
    /// Members that went down or left, when and why: `cluster_info` lists them for
    /// [`info::HISTORY`] after.
    gone: Mutex<BTreeMap<String, (String, Instant, String)>>,
    stopped: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    http_stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Inner {
    /// The last [`Foundation`] dropped without [`Foundation::shutdown`]: the same stop, in
    /// the same order, on the Tokio runtime still running (if none is, the node's tasks
    /// end with it and its peers see its connections close).
    fn drop(&mut self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        self.ready.store(false, Ordering::SeqCst);
        // The HTTP endpoint stops last, as in `shutdown()`: meanwhile its probes answer
        // 503 (the runtime is gone), not a refused connection.
        let http_stop = lock(&self.http_stop).take();
        // Its tasks (the HTTP endpoint's among them) hold the runtime weakly: they are
        // ended after the stop.
        let tasks: Vec<_> = lock(&self.tasks).drain(..).collect();
        let parts: Vec<Arc<dyn Part>> = lock(&self.parts).drain(..).rev().collect();
        let node = self.node.clone();
        let pubsub = self.pubsub.clone();
        let info = self.info.clone();
        let timeout = self.config.shutdown_timeout;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if let Some(tx) = http_stop {
                let _ = tx.send(());
            }
            for task in tasks {
                task.abort();
            }
            return;
        };
        tracing::info!(node = %node.name(), "foundation: dropped without shutdown(); stopping");
        runtime.spawn(async move {
            let graceful = async {
                for part in &parts {
                    part.stop().await;
                }
                node.leave().await;
            };
            let _ = tokio::time::timeout(timeout, graceful).await;
            pubsub.shutdown();
            node.unexport(INFO_EXPORT);
            info.stop(None);
            node.shutdown().await;
            if let Some(tx) = http_stop {
                let _ = tx.send(());
            }
            for task in tasks {
                task.abort();
            }
            tracing::info!(node = %node.name(), "foundation: stopped");
        });
    }
}

impl Foundation {
    /// Starts a node with the configuration from `foundation.toml` and `FOUNDATION_*`
    /// variables, or none: see [`Builder`].
    ///
    /// # Errors
    ///
    /// As [`Builder::start`].
    pub async fn start() -> Result<Self, StartError> {
        Builder::default().start().await
    }

    /// Sets the runtime up in code.
    pub fn builder() -> Builder {
        Builder::default()
    }

    async fn start_with(config: Config, signals: bool) -> Result<Self, StartError> {
        tracing::info!(
            node = %config.node_name,
            profile = %config.profile,
            reason = %config.profile_reason,
            tls = config.tls(),
            "foundation: profile chosen"
        );
        if config.profile == Profile::Development && !config.sources.contains_key("cookie") {
            tracing::info!(
                node = %config.node_name,
                "foundation: development cookie: any Foundation node of cluster `{}` on this network may join; set `cookie` (FOUNDATION_COOKIE) to keep others out",
                config.cluster_name
            );
        }
        tracing::info!(
            node = %config.node_name,
            strategy = %config.discovery,
            reason = %config.discovery_reason,
            tls = config.tls(),
            "foundation: discovery strategy chosen"
        );
        for unused in &config.unused {
            tracing::warn!(node = %config.node_name, "foundation: {unused}");
        }
        if config.profile == Profile::Production && !config.tls() {
            tracing::info!(
                node = %config.node_name,
                "foundation: connections between nodes are not encrypted; set `tls.cert`, `tls.key` and `tls.ca` (FOUNDATION_TLS_*) to encrypt them"
            );
        }
        #[cfg(feature = "http")]
        if config.http_listen.is_some() {
            // Before any part is made: their metrics register with the recorder there is.
            http::install_recorder();
        }
        #[cfg(not(feature = "http"))]
        if config.http_listen.is_some() {
            return Err(ConfigError::BadValue {
                key: "http.enabled",
                value: "true".to_owned(),
                allowed: "`false`: foundation was built without its `http` feature",
                origin: config
                    .sources
                    .get("http.enabled")
                    .cloned()
                    .unwrap_or(Source::Default),
            }
            .into());
        }
        let node = Node::start(config.node_config()).await?;
        let stop_node = |node: Node| async move { node.shutdown().await };
        let pubsub = match PubSub::start(&node, &config.pubsub_name).await {
            Ok(p) => p,
            Err(e) => {
                stop_node(node).await;
                return Err(e.into());
            }
        };
        if let Err(e) = start_discovery(&node, &config) {
            stop_node(node).await;
            return Err(e.into());
        }
        #[cfg(feature = "http")]
        let http_listener = match config.http_listen {
            None => None,
            Some(addr) => match http::bind(addr, &config).await {
                Ok(l) => Some(l),
                Err(error) => {
                    stop_node(node).await;
                    return Err(StartError::Http { addr, error });
                }
            },
        };
        #[cfg(feature = "http")]
        let http_addr = http_listener.as_ref().and_then(|l| l.local_addr().ok());
        #[cfg(not(feature = "http"))]
        let http_addr = None;
        let (stopped, _) = watch::channel(false);
        // The info process answers from the runtime, which holds its address: it learns
        // where the runtime is once the runtime is made.
        let runtime = Arc::new(std::sync::OnceLock::new());
        let info = match foundation_actors::spawn(InfoServer(runtime.clone()), ()).await {
            Ok(a) => a,
            Err(e) => {
                stop_node(node).await;
                return Err(e.into());
            }
        };
        let inner = Arc::new(Inner {
            config,
            node: node.clone(),
            pubsub,
            started: Instant::now(),
            parts: Mutex::new(Vec::new()),
            caches: Mutex::new(HashMap::new()),
            history: Mutex::new(History::default()),
            http_addr,
            info: info.clone(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            membership_changes: std::sync::atomic::AtomicU64::new(0),
            gone: Mutex::new(BTreeMap::new()),
            stopped,
            tasks: Mutex::new(Vec::new()),
            http_stop: Mutex::new(None),
        });
        let _ = runtime.set(Arc::downgrade(&inner));
        let _ = node.export(INFO_EXPORT, info);
        let me = Self { inner };
        #[cfg(feature = "http")]
        if let Some(listener) = http_listener {
            let (tx, rx) = tokio::sync::oneshot::channel();
            *lock(&me.inner.http_stop) = Some(tx);
            let task = tokio::spawn(http::serve(listener, Arc::downgrade(&me.inner), rx));
            lock(&me.inner.tasks).push(task);
            if let Some(a) = http_addr {
                tracing::info!(node = %me.inner.node.name(), "foundation: HTTP on http://{a} (dashboard: http://{a}/dashboard)");
            }
        }
        // Samples for the rates, every SAMPLE_EVERY.
        let weak = Arc::downgrade(&me.inner);
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(info::SAMPLE_EVERY);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let s = inner.sample();
                lock(&inner.history).push(s);
            }
        });
        lock(&me.inner.tasks).push(sampler);
        if signals {
            let weak = Arc::downgrade(&me.inner);
            let task = tokio::spawn(async move {
                let why = wait_for_signal().await;
                let Some(inner) = weak.upgrade() else { return };
                tracing::info!(node = %inner.node.name(), "foundation: {why}: leaving the cluster gracefully (a second signal stops the process at once)");
                let app = Foundation { inner };
                // The shutdown on a task of its own: this one waits for a second signal.
                tokio::spawn(async move { app.shutdown().await });
                let why = wait_for_signal().await;
                tracing::warn!(
                    "foundation: {why} again: exiting now, without finishing the graceful shutdown"
                );
                std::process::exit(130);
            });
            lock(&me.inner.tasks).push(task);
        }
        // When the node is shut down from elsewhere, the runtime follows.
        let weak = Arc::downgrade(&me.inner);
        let mut events = node.subscribe();
        let follow = tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(inner) = weak.upgrade() else { break };
                let changes = match event {
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => n,
                    Ok(foundation_cluster::node::ClusterEvent::NodeDown { member, reason }) => {
                        lock(&inner.gone).insert(
                            member.id.clone(),
                            (member.addr.clone(), Instant::now(), format!("{reason:?}")),
                        );
                        1
                    }
                    Ok(foundation_cluster::node::ClusterEvent::NodeUp(member)) => {
                        lock(&inner.gone).remove(&member.id);
                        1
                    }
                    Ok(_) => 1,
                    Err(_) => break,
                };
                inner
                    .membership_changes
                    .fetch_add(changes, Ordering::Relaxed);
                if inner.node.is_shut_down() {
                    break;
                }
            }
            if let Some(inner) = weak.upgrade() {
                Foundation { inner }.shutdown().await;
            }
        });
        lock(&me.inner.tasks).push(follow);
        me.inner.ready.store(true, Ordering::SeqCst);
        Ok(me)
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The runtime's pubsub (named by `pubsub.name`, `foundation` by default).
    pub fn pubsub(&self) -> &PubSub {
        &self.inner.pubsub
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Where the HTTP endpoint listens, if it does.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr
    }

    /// Whether it is ready (started, not shutting down): `/health/ready`.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// A local cache named `name`, bounded by `cache.max_entries`: made on first use, the
    /// same cache after (a clone of its handle).
    ///
    /// # Errors
    ///
    /// [`PartError::CacheTypes`] if `name` was made with other key or value types,
    /// [`PartError::ShutDown`] after [`Foundation::shutdown`].
    pub fn cache<K, V>(&self, name: &str) -> Result<Local<K, V>, PartError>
    where
        K: foundation_cache::CacheKey,
        V: foundation_cache::CacheValue,
    {
        self.check_running()?;
        let mut caches = lock(&self.inner.caches);
        if let Some(any) = caches.get(name) {
            return any
                .downcast_ref::<Local<K, V>>()
                .cloned()
                .ok_or_else(|| PartError::CacheTypes(name.to_owned()));
        }
        let cache = Local::<K, V>::builder()
            .max_entries(self.inner.config.cache_max_entries)
            .build()
            .map_err(|e| PartError::Cache {
                name: name.to_owned(),
                error: e.to_string(),
            })?;
        caches.insert(name.to_owned(), Arc::new(cache.clone()));
        let counted = cache.clone();
        lock(&self.inner.parts).push(Arc::new(CachePart {
            name: name.to_owned(),
            kind: "local",
            stats: Box::new(move || counted.stats()),
        }));
        Ok(cache)
    }

    /// Starts the replicated cache `name` on the node (every node holds every entry; start
    /// it under the same name and types on every node): a write on one node is read on
    /// the others, as Nebulex's replicated adapter. Its local copy is bounded by
    /// `cache.max_entries`. It shows in `cluster_info` and `/metrics`.
    ///
    /// # Errors
    ///
    /// [`PartError::Cache`] if it cannot start (the name is taken here).
    pub async fn replicated_cache<K, V>(
        &self,
        name: &str,
    ) -> Result<foundation_cache::Replicated<K, V>, PartError>
    where
        K: foundation_cache::CacheKey + serde::Serialize + serde::de::DeserializeOwned,
        V: foundation_cache::CacheValue + serde::Serialize + serde::de::DeserializeOwned,
    {
        self.check_running()?;
        let options = foundation_cache::ReplicatedOptions::new(name)
            .local(Local::builder().max_entries(self.inner.config.cache_max_entries));
        let cache = foundation_cache::Replicated::start(&self.inner.node, options)
            .await
            .map_err(|e| PartError::Cache {
                name: name.to_owned(),
                error: e.to_string(),
            })?;
        let counted = cache.clone();
        lock(&self.inner.parts).push(Arc::new(CachePart {
            name: name.to_owned(),
            kind: "replicated",
            stats: Box::new(move || counted.stats()),
        }));
        Ok(cache)
    }

    /// Starts a cluster-wide registry of scope `scope` on the node (start it under the same
    /// scope on every node). It shows in `cluster_info` and stops at shutdown.
    ///
    /// # Errors
    ///
    /// [`PartError::Registry`] if it cannot start (the scope is taken here).
    pub async fn registry<K, M>(&self, scope: &str) -> Result<ClusterRegistry<K, M>, PartError>
    where
        K: foundation_registry::cluster::Key,
        M: RemoteMessage,
    {
        self.registry_with_values(scope).await
    }

    /// As [`Foundation::registry`], for a registry whose names carry a value of type `V`
    /// each (given to `ClusterRegistry::register`, as the values of Elixir's `Registry`).
    ///
    /// # Errors
    ///
    /// As [`Foundation::registry`].
    pub async fn registry_with_values<K, M, V>(
        &self,
        scope: &str,
    ) -> Result<ClusterRegistry<K, M, V>, PartError>
    where
        K: foundation_registry::cluster::Key,
        M: RemoteMessage,
        V: Value,
    {
        self.check_running()?;
        let registry = ClusterRegistry::start(&self.inner.node, scope).await?;
        lock(&self.inner.parts).push(Arc::new(RegistryPart(scope.to_owned(), registry.clone())));
        Ok(registry)
    }

    /// Starts the service table of scope `scope` on the node (start it under the same scope
    /// on every node): instances registered on any node, discovered and routed to from
    /// every node. Its services and their instances show in `cluster_info`; it stops at
    /// shutdown.
    ///
    /// # Errors
    ///
    /// [`PartError::Registry`] if it cannot start (the scope is taken here).
    pub async fn services<M, V>(
        &self,
        scope: &str,
    ) -> Result<foundation_registry::services::Services<M, V>, PartError>
    where
        M: RemoteMessage,
        V: foundation_registry::cluster::Value,
    {
        self.check_running()?;
        let services =
            foundation_registry::services::Services::start(&self.inner.node, scope).await?;
        lock(&self.inner.parts).push(Arc::new(ServicesPart(scope.to_owned(), services.clone())));
        Ok(services)
    }

    /// Starts this node's part of the distributed supervisor `spec` describes (start it with
    /// the same spec on every node), with a registry of its own for its children's names
    /// (scope: the supervisor's name). At shutdown its singletons are handed off first.
    ///
    /// # Errors
    ///
    /// [`PartError::Registry`] or [`PartError::Supervisor`] if the names are taken here.
    pub async fn supervisor<M: RemoteMessage>(
        &self,
        spec: DistributedSpec<M>,
    ) -> Result<DistributedSupervisor<M>, PartError> {
        self.check_running()?;
        let scope = format!("{}.children", spec.name());
        let registry = ClusterRegistry::start(&self.inner.node, &scope).await?;
        let sup = match DistributedSupervisor::start(&self.inner.node, &registry, spec).await {
            Ok(s) => s,
            Err(e) => {
                registry.shutdown();
                return Err(e.into());
            }
        };
        lock(&self.inner.parts).push(Arc::new(SupervisorPart {
            sup: sup.clone(),
            registry,
        }));
        Ok(sup)
    }

    /// Starts this node's part of the cluster-wide work ecosystem `spec` describes (start it
    /// with the same spec on every node): workers and a bounded queue here, jobs and
    /// map-reduce spread over the nodes. Its queues show in `cluster_info` and in
    /// `/metrics` (`foundation_work_queued`); it stops at shutdown, before the node leaves
    /// (its jobs in flight go to the nodes left).
    ///
    /// # Errors
    ///
    /// [`PartError::Work`] if it cannot start (the name is taken here).
    pub async fn work(
        &self,
        spec: foundation_registry::work::WorkSpec,
    ) -> Result<foundation_registry::work::ClusterEcosystem, PartError> {
        self.check_running()?;
        let eco =
            foundation_registry::work::ClusterEcosystem::start(&self.inner.node, spec).await?;
        lock(&self.inner.parts).push(Arc::new(WorkPart(eco.clone())));
        Ok(eco)
    }

    fn check_running(&self) -> Result<(), PartError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            Err(PartError::ShutDown)
        } else {
            Ok(())
        }
    }

    /// This node's report of itself.
    pub fn node_info(&self) -> NodeInfo {
        self.inner.node_info()
    }

    /// The cluster as this node sees it: every member, each with its own report (asked
    /// over the network, a second at most; a node that does not answer in time is listed
    /// with the error).
    pub async fn cluster_info(&self) -> ClusterInfo {
        self.inner.cluster_info().await
    }

    /// Leaves the cluster gracefully and stops, in reverse order of start: not ready first
    /// (`/health/ready` answers 503), then the supervisors hand their singletons off and
    /// the node leaves the cluster (at most `shutdown.timeout_ms`), the pubsub stops, the
    /// node stops, the HTTP endpoint stops. Calling it again waits for the first call.
    ///
    /// # Cancel safety
    ///
    /// The stop runs in a task of its own: dropping this future (a `select!`, a timeout)
    /// stops only the wait, and the runtime still stops all the way ([`Foundation::stopped`]
    /// resolves when it has).
    pub async fn shutdown(&self) {
        if !self.inner.stopping.swap(true, Ordering::SeqCst) {
            let this = self.clone();
            tokio::spawn(async move { this.stop_now().await });
        }
        self.stopped().await;
    }

    /// [`Foundation::shutdown`]'s work, once `stopping` is set.
    async fn stop_now(&self) {
        let inner = &self.inner;
        inner.ready.store(false, Ordering::SeqCst);
        let parts: Vec<Arc<dyn Part>> = lock(&inner.parts).drain(..).rev().collect();
        let graceful = async {
            for part in &parts {
                part.stop().await;
            }
            inner.node.leave().await;
        };
        if tokio::time::timeout(inner.config.shutdown_timeout, graceful)
            .await
            .is_err()
        {
            tracing::warn!(node = %inner.node.name(), timeout = ?inner.config.shutdown_timeout, "foundation: graceful shutdown timed out; stopping anyway");
        }
        inner.pubsub.shutdown();
        inner.node.unexport(INFO_EXPORT);
        inner.info.stop(None);
        inner.node.shutdown().await;
        if let Some(tx) = lock(&inner.http_stop).take() {
            let _ = tx.send(());
        }
        let tasks: Vec<_> = lock(&inner.tasks).drain(..).collect();
        let me = tokio::task::try_id();
        for t in tasks {
            if Some(t.id()) != me {
                t.abort();
            }
        }
        inner.stopped.send_replace(true);
        tracing::info!(node = %inner.node.name(), "foundation: stopped");
    }

    /// Resolves once the runtime has stopped (by [`Foundation::shutdown`], a signal, or
    /// its node shut down): `main` awaits it to run until told to stop.
    pub async fn stopped(&self) {
        let mut rx = self.inner.stopped.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl Inner {
    fn sample(&self) -> Sample {
        let ps = self.pubsub.stats();
        // Only the caches' counters: not every part's whole report, every 2 s.
        let (hits, misses) = lock(&self.parts)
            .iter()
            .filter_map(|p| p.cache_reads())
            .fold((0, 0), |(h, m), (ph, pm)| (h + ph, m + pm));
        // A few counters read per named process: no names copied.
        let boxes = self.node.mailboxes(0);
        let stats = self.node.stats();
        let up = self
            .node
            .members()
            .iter()
            .filter(|m| m.status == Status::Up && m.id != self.node.name())
            .count() as u64
            + 1;
        Sample {
            at_ms: self.started.elapsed().as_millis() as u64,
            restarts: foundation_actors::supervisor::restarts_total(),
            delivered: ps.delivered,
            dropped: ps.dropped,
            remote: ps.sent + ps.received,
            cache_hits: hits,
            cache_misses: misses,
            members_up: up,
            mailbox_queued: boxes.queued as u64,
            mailbox_queued_max: boxes.max as u64,
            mailbox_from_peers: boxes.from_peers as u64,
            messages_in: stats.messages_in,
            messages_out: stats.messages_out,
        }
    }

    /// Sets the runtime's gauges and totals in the metrics facade (at each scrape of
    /// `/metrics`), labelled by node.
    #[cfg(feature = "http")]
    pub(crate) fn record_gauges(&self) {
        use http::names::*;
        let node = self.node.name().to_owned();
        let info = self.node_info();
        let t = info.totals;
        metrics::gauge!(MEMBERS_UP, "node" => node.clone()).set(t.members_up as f64);
        metrics::counter!(RESTARTS, "node" => node.clone()).absolute(t.restarts);
        metrics::counter!(MEMBERSHIP_CHANGES, "node" => node.clone())
            .absolute(self.membership_changes.load(Ordering::Relaxed));
        metrics::gauge!(UPTIME, "node" => node.clone()).set(info.uptime_ms as f64 / 1000.0);
        metrics::gauge!(MAILBOX_QUEUED, "node" => node.clone()).set(t.mailbox_queued as f64);
        metrics::gauge!(MAILBOX_QUEUED_MAX, "node" => node.clone())
            .set(t.mailbox_queued_max as f64);
        metrics::gauge!(MAILBOX_FROM_PEERS, "node" => node.clone())
            .set(t.mailbox_from_peers as f64);
        metrics::counter!(MESSAGES, "node" => node.clone(), "direction" => "in")
            .absolute(t.messages_in);
        metrics::counter!(MESSAGES, "node" => node.clone(), "direction" => "out")
            .absolute(t.messages_out);
        for r in &info.registries {
            metrics::gauge!(REGISTRY_NAMES, "node" => node.clone(), "scope" => r.scope.clone())
                .set(r.names.len() as f64);
        }
        for s in &info.supervisors {
            let here = s
                .children
                .iter()
                .filter(|c| c.nodes.contains(&node))
                .count();
            metrics::gauge!(SUPERVISOR_CHILDREN, "node" => node.clone(), "supervisor" => s.name.clone())
                .set(here as f64);
        }
        for w in &info.work {
            for n in &w.nodes {
                metrics::gauge!(WORK_QUEUED, "node" => node.clone(), "ecosystem" => w.name.clone(), "at" => n.node.clone())
                    .set(f64::from(n.queued));
            }
        }
        for c in &info.caches {
            let reads = c.hits + c.misses;
            if reads > 0 {
                metrics::gauge!(CACHE_HIT_RATIO, "node" => node.clone(), "cache" => c.name.clone())
                    .set(c.hits as f64 / reads as f64);
            }
        }
        // The pubsub and the caches record their own counters (foundation_pubsub_*,
        // foundation_cache_*).
        let _ = node;
    }

    fn empty_info(&self) -> NodeInfo {
        NodeInfo {
            name: self.node.name().to_owned(),
            incarnation: self.node.incarnation(),
            profile: self.config.profile.to_string(),
            profile_reason: self.config.profile_reason.clone(),
            discovery: self.config.discovery.to_string(),
            discovery_reason: self.config.discovery_reason.clone(),
            tls: self.config.tls(),
            http: self.http_addr.map(|a| a.to_string()),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            members: Vec::new(),
            supervisors: Vec::new(),
            registries: Vec::new(),
            services: Vec::new(),
            topics: Vec::new(),
            caches: Vec::new(),
            work: Vec::new(),
            mailboxes: Vec::new(),
            totals: Sample::default(),
            history: Vec::new(),
        }
    }

    pub(crate) fn node_info(&self) -> NodeInfo {
        let mut info = self.empty_info();
        let parts: Vec<Arc<dyn Part>> = lock(&self.parts).clone();
        for part in &parts {
            part.report(&mut info);
        }
        let mut members: Vec<(String, String)> = self
            .node
            .members()
            .into_iter()
            .filter(|m| m.id != self.node.name())
            .map(|m| (m.id, status_text(&m.status)))
            .collect();
        members.sort();
        info.members = members;
        info.topics = self.pubsub.topics();
        info.mailboxes = self
            .node
            .mailboxes(info::MAILBOXES_SHOWN)
            .deepest
            .into_iter()
            .map(|b| info::MailboxInfo {
                name: b.name,
                queued: b.queued,
                from_peers: b.from_peers,
                max_queued: b.max_queued,
            })
            .collect();
        info.totals = self.sample();
        info.history = lock(&self.history).to_vec();
        info
    }

    async fn cluster_info(&self) -> ClusterInfo {
        let me = NodeEntry {
            name: self.node.name().to_owned(),
            addr: self.node.advertised().to_owned(),
            status: if self.stopping.load(Ordering::SeqCst) {
                "leaving".to_owned()
            } else {
                "up".to_owned()
            },
            info: Some(self.node_info()),
            error: None,
        };
        let mut members = self.node.members();
        members.retain(|m| m.id != self.node.name());
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let asks = members.into_iter().map(|m| async move {
            let status = status_text(&m.status);
            let (info, error) = if matches!(m.status, Status::Down(_)) {
                (None, None)
            } else {
                match self
                    .node
                    .call(&m.id, INFO_EXPORT, InfoMsg::Report, Duration::from_secs(1))
                    .await
                {
                    Ok(json) => match serde_json::from_str::<NodeInfo>(&json) {
                        Ok(i) => (Some(i), None),
                        Err(e) => (None, Some(format!("unreadable report: {e}"))),
                    },
                    Err(e) => (None, Some(e.to_string())),
                }
            };
            NodeEntry {
                name: m.id,
                addr: m.addr,
                status,
                info,
                error,
            }
        });
        let mut nodes = vec![me];
        nodes.extend(futures::future::join_all(asks).await);
        // Nodes gone in the last minutes, that the membership no longer lists.
        let mut gone = lock(&self.gone);
        gone.retain(|_, (_, since, _)| since.elapsed() < info::HISTORY);
        for (name, (addr, since, why)) in gone.iter() {
            if nodes.iter().all(|n| &n.name != name) {
                nodes.push(NodeEntry {
                    name: name.clone(),
                    addr: addr.clone(),
                    status: format!("down ({why})"),
                    info: None,
                    error: Some(format!("down for {} s", since.elapsed().as_secs())),
                });
            }
        }
        drop(gone);
        ClusterInfo {
            node: self.node.name().to_owned(),
            cluster_name: self.config.cluster_name.clone(),
            nodes,
        }
    }
}

fn status_text(s: &Status) -> String {
    match s {
        Status::Up => "up".to_owned(),
        Status::Leaving => "leaving".to_owned(),
        Status::Down(why) => format!("down ({why:?})"),
    }
}

fn start_discovery(node: &Node, config: &Config) -> Result<(), discovery::DiscoveryError> {
    let port = node
        .advertised()
        .parse::<discovery::Peer>()
        .map_or(node.addr().port(), |p| p.port);
    match config.discovery {
        Discovery::None => {}
        Discovery::Static => node.discover(Box::new(Static::new(config.peers.clone()))),
        Discovery::Dns => {
            if let Some(q) = &config.dns_query {
                node.discover(Box::new(Dns::new(q.clone(), port)));
            }
        }
        Discovery::Mdns => {
            node.discover(Box::new(Mdns::new(node.name(), &config.cluster_name, port)))
        }
        Discovery::Kubernetes => {
            // The strategy would stop at once, logging it, and the node would run alone:
            // refuse to start instead when there is no configuration to talk to the API.
            let in_pod =
                std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")
                    .exists();
            let kubeconfig = std::env::var_os("KUBECONFIG").is_some()
                || std::env::var_os("HOME")
                    .is_some_and(|h| std::path::Path::new(&h).join(".kube/config").exists());
            if !in_pod && !kubeconfig {
                return Err(discovery::DiscoveryError::BadConfig {
                    strategy: "kubernetes",
                    why: "no Kubernetes configuration: not in a pod (no service account token \
                          at /var/run/secrets/kubernetes.io/serviceaccount/token) and no \
                          KUBECONFIG or ~/.kube/config"
                        .to_owned(),
                });
            }
            #[cfg(feature = "kubernetes")]
            node.discover(Box::new(match &config.kubernetes_pod {
                // One line of configuration: the peers are labelled as this pod is.
                Some(pod) => discovery::Kubernetes::pods_like(
                    pod.clone(),
                    discovery::KUBERNETES_CLUSTER_LABEL,
                    config.kubernetes_selector.clone(),
                    port,
                ),
                None => discovery::Kubernetes::pods(config.kubernetes_selector.clone(), port),
            }));
            #[cfg(not(feature = "kubernetes"))]
            return Err(discovery::DiscoveryError::BadConfig {
                strategy: "kubernetes",
                why: "foundation was built without its `kubernetes` feature".to_owned(),
            });
        }
    }
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::key_text;

    #[test]
    fn a_plain_string_key_is_shown_without_its_quotes() {
        assert_eq!(key_text(&"kv@host".to_owned()), "kv@host");
        assert_eq!(key_text(&7_u32), "7");
        assert_eq!(key_text(&("a", 1)), "(\"a\", 1)");
        // Quotes inside stay as Debug writes them: nothing is lost.
        assert_eq!(key_text(&"say \"hi\"".to_owned()), "\"say \\\"hi\\\"\"");
    }
}
