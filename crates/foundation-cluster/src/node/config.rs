//! A node's settings, from code or from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use super::wire::DEFAULT_MAX_FRAME;
use crate::membership::DEFAULT_SILENCE;

/// The port a node listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4370;

/// A node's settings. [`NodeConfig::new`] takes the two that have no default; the rest
/// have builder methods. [`NodeConfig::from_env`] reads them from `FOUNDATION_*` variables.
#[derive(Clone)]
pub struct NodeConfig {
    pub(crate) name: String,
    pub(crate) cookie: String,
    pub(crate) cluster: String,
    pub(crate) listen: SocketAddr,
    pub(crate) advertise: Option<String>,
    pub(crate) advertise_ip: Option<std::net::IpAddr>,
    pub(crate) silence: Duration,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) handshake_timeout: Duration,
    pub(crate) leave_timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) max_pending: usize,
    pub(crate) max_remote_queued: usize,
    pub(crate) max_unauthenticated: usize,
    pub(crate) max_unauthenticated_per_ip: usize,
    pub(crate) tls: Option<Tls>,
    /// Channels declared beside `control` and `default`, in order.
    pub(crate) channels: Vec<(String, ChannelConfig)>,
}

/// The name of the channel a node's own traffic rides: heartbeats, membership, a graceful
/// leave, registry replication and raft. Never refused for being full.
pub const CONTROL: &str = "control";
/// The name of the channel [`crate::node::Node::send`] and [`crate::node::Node::call`] use.
pub const DEFAULT: &str = "default";
/// How many channels a node may have, `control` and `default` included.
pub const MAX_CHANNELS: usize = 32;

/// The most lanes one channel may have to one peer ([`ChannelConfig::parallelism`]).
pub const MAX_PARALLELISM: usize = 16;

/// Where a channel's lanes run, as the OS ranks them against the rest of the node
/// (see `docs/cluster.md`, "Channel priority").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Priority {
    /// On the node's runtime, beside the application's tasks: `control`, `default`, and
    /// declared channels unless told otherwise.
    #[default]
    Normal,
    /// On a thread of the node's own that the OS runs only when the application's
    /// threads leave a core free (on Linux, at nice 19): a flood on such a channel takes
    /// what the node's other work leaves, and a small call on a normal channel preempts
    /// it. For bulk transfers, backfills, replication catch-up. Elsewhere than Linux, the
    /// lanes still run on their own thread, at the OS's normal priority.
    Low,
}

/// The settings of one channel: a named connection to each peer with its own outbox, so
/// that what waits on one never delays another (see `docs/cluster.md`, "Channels").
///
/// # Examples
///
/// ```
/// use foundation_cluster::node::{ChannelConfig, NodeConfig, Priority};
/// let config = NodeConfig::new("a", "secret").channel(
///     "bulk",
///     ChannelConfig::default()
///         .max_pending(256 << 20)
///         .priority(Priority::Low)
///         .parallelism(2),
/// );
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// How many bytes may wait to be written to one peer on one lane of this channel
    /// before sends on it fail with [`crate::node::RemoteError::Overloaded`].
    pub max_pending: usize,
    /// Where its lanes run: [`Priority::Low`] puts them on a low-priority thread.
    pub priority: Priority,
    /// How many lanes (TCP connections) it opens to each peer, 1 to [`MAX_PARALLELISM`].
    /// Messages to one process always take the same lane (chosen by a hash of its name),
    /// so they arrive in the order sent; messages to different processes spread over the
    /// lanes, so one large message delays only the processes that share its lane.
    pub parallelism: usize,
}

impl Default for ChannelConfig {
    /// 64 MiB may wait, normal priority, one lane.
    fn default() -> Self {
        Self {
            max_pending: 64 * 1024 * 1024,
            priority: Priority::Normal,
            parallelism: 1,
        }
    }
}

impl ChannelConfig {
    /// Sets [`ChannelConfig::max_pending`].
    #[must_use]
    pub fn max_pending(mut self, bytes: usize) -> Self {
        self.max_pending = bytes;
        self
    }

    /// Sets [`ChannelConfig::priority`].
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Sets [`ChannelConfig::parallelism`].
    #[must_use]
    pub fn parallelism(mut self, lanes: usize) -> Self {
        self.parallelism = lanes;
        self
    }
}

/// TLS for every connection of a node: sessions and lanes, inbound and outbound, to seeds
/// and to peers learned from others alike. A node with TLS refuses plain connections.
///
/// The rustls configurations decide what is checked: a server certificate against the
/// client's roots, and client certificates too if the server configuration asks for
/// them (mutual TLS). The cookie is still required on top.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) server_name: tokio_rustls::rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS from a server and a client configuration. Every peer's certificate is checked
    /// against `server_name` (the name the cluster's certificates are issued for, since
    /// peers are dialed by address).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Bad`] if `server_name` is not a DNS name or IP address.
    pub fn new(
        server: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
        client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
        server_name: &str,
    ) -> Result<Self, ConfigError> {
        let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(
            server_name.to_owned(),
        )
        .map_err(|e| ConfigError::Bad {
            setting: "tls server name",
            why: e.to_string(),
        })?;
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(server),
            connector: tokio_rustls::TlsConnector::from(client),
            server_name,
        })
    }
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cookie is a secret: never in logs.
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("cookie", &"<hidden>")
            .field("cluster", &self.cluster)
            .field("listen", &self.listen)
            .field("advertise", &self.advertise)
            .field("silence", &self.silence)
            .field("heartbeat", &self.heartbeat)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a node's settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value it cannot have.
    #[error("bad setting `{setting}`: {why}")]
    Bad {
        /// The setting (or environment variable).
        setting: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A setting without a default is missing.
    #[error("missing setting `{0}`")]
    Missing(&'static str),
}

impl NodeConfig {
    /// A node named `name` (unique in its cluster) that admits peers knowing `cookie`,
    /// listening on `0.0.0.0:4370`, in cluster `foundation`, declaring silent peers down
    /// after 3 s.
    pub fn new(name: impl Into<String>, cookie: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cookie: cookie.into(),
            cluster: "foundation".to_owned(),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            advertise: None,
            advertise_ip: None,
            silence: DEFAULT_SILENCE,
            heartbeat: None,
            handshake_timeout: Duration::from_secs(5),
            leave_timeout: Duration::from_secs(10),
            max_frame: DEFAULT_MAX_FRAME,
            max_pending: 64 * 1024 * 1024,
            max_remote_queued: 10_000,
            max_unauthenticated: 64,
            max_unauthenticated_per_ip: 16,
            tls: None,
            channels: Vec::new(),
        }
    }

    /// Reads the settings from the environment:
    ///
    /// | variable | setting | default |
    /// |---|---|---|
    /// | `FOUNDATION_NODE_NAME` | [`NodeConfig::new`]'s name | `HOSTNAME`, else the OS's host name |
    /// | `FOUNDATION_COOKIE` | the cookie | none: required |
    /// | `FOUNDATION_CLUSTER` | [`NodeConfig::cluster`] | `foundation` |
    /// | `FOUNDATION_LISTEN` | [`NodeConfig::listen`] | `0.0.0.0:4370` |
    /// | `FOUNDATION_ADVERTISE` | [`NodeConfig::advertise`] | derived |
    /// | `FOUNDATION_SILENCE_MS` | [`NodeConfig::silence`] | 3000 |
    ///
    /// `env` looks a variable up: pass `|k| std::env::var(k).ok()`. A `FOUNDATION_*`
    /// variable of the process that no Foundation setting reads (a typo such as
    /// `FOUNDATION_PEER`) is logged as a warning, once per process.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the variable that is missing or malformed.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        warn_unknown_variables();
        Self::from_lookup(env, os_host_name)
    }

    /// [`NodeConfig::from_env`] with the OS's host name looked up by `host`.
    fn from_lookup(
        env: impl Fn(&str) -> Option<String>,
        host: impl FnOnce() -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let name = match env("FOUNDATION_NODE_NAME").or_else(|| env("HOSTNAME")) {
            Some(n) => n,
            // A laptop's shell does not export HOSTNAME; a container's does.
            None => host().ok_or(ConfigError::Missing("FOUNDATION_NODE_NAME"))?,
        };
        let cookie = env("FOUNDATION_COOKIE").ok_or(ConfigError::Missing("FOUNDATION_COOKIE"))?;
        let mut config = Self::new(name, cookie);
        if let Some(c) = env("FOUNDATION_CLUSTER") {
            config = config.cluster(c);
        }
        if let Some(l) = env("FOUNDATION_LISTEN") {
            let addr = l.trim().parse().map_err(|_| ConfigError::Bad {
                setting: "FOUNDATION_LISTEN",
                why: format!("`{l}` is not an `ip:port` address"),
            })?;
            config = config.listen(addr);
        }
        if let Some(a) = env("FOUNDATION_ADVERTISE") {
            config = config.advertise(a);
        }
        if let Some(s) = env("FOUNDATION_SILENCE_MS") {
            let ms: u64 = s.trim().parse().map_err(|_| ConfigError::Bad {
                setting: "FOUNDATION_SILENCE_MS",
                why: format!("`{s}` is not a number of milliseconds"),
            })?;
            config = config.silence(Duration::from_millis(ms));
        }
        config.validate().map_err(|e| match e {
            // Say which variable the unusable value came from.
            ConfigError::Bad { setting, why } => ConfigError::Bad {
                setting: match setting {
                    "name" if env("FOUNDATION_NODE_NAME").is_some() => "FOUNDATION_NODE_NAME",
                    "name" if env("HOSTNAME").is_some() => {
                        "HOSTNAME (the default of FOUNDATION_NODE_NAME)"
                    }
                    "name" => "the host name (the default of FOUNDATION_NODE_NAME)",
                    "cookie" => "FOUNDATION_COOKIE",
                    "cluster" => "FOUNDATION_CLUSTER",
                    "silence" | "heartbeat" => "FOUNDATION_SILENCE_MS",
                    "advertise" => "FOUNDATION_ADVERTISE",
                    other => other,
                },
                why,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// The cluster's name: nodes of other clusters are not admitted (`foundation`).
    #[must_use]
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = cluster.into();
        self
    }

    /// Where to listen for peers; port 0 picks a free port ([`crate::node::Node::addr`]
    /// tells which).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The `host:port` peers should use to reach this node, when it differs from the
    /// listen address (behind NAT, in a pod, listening on `0.0.0.0`). By default, the
    /// listen address, with `0.0.0.0` replaced by `127.0.0.1`.
    #[must_use]
    pub fn advertise(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// The IP peers should use to reach this node when it listens on `0.0.0.0` (or `::`),
    /// with whatever port it listens on (port 0 picks one). [`NodeConfig::advertise`]
    /// wins over it. The runtime sets it to the host's first address that is not
    /// loopback, so that nodes on other hosts can dial back.
    #[must_use]
    pub fn advertise_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.advertise_ip = Some(ip);
        self
    }

    /// How long a peer may stay silent before it is declared down (3 s).
    #[must_use]
    pub fn silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }

    /// How often this node proves itself alive to its peers (a sixth of the silence).
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// How long a connection may take, from its accept, to authenticate (a lane's token,
    /// a session's cookie handshake, TLS included) before it is closed (5 s).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long [`crate::node::Node::leave`] waits for what is queued for its peers, its
    /// leave notice last, to be written before it shuts down (10 s; it returns as soon as
    /// everything is written). A peer that gets the notice sees
    /// [`crate::node::ClusterEvent::NodeLeaving`] and a down as
    /// [`crate::membership::DownReason::Left`]; one that does not, within this time (a
    /// lane still connecting on a loaded machine, a peer not reading), sees the node
    /// disconnect instead.
    #[must_use]
    pub fn leave_timeout(mut self, timeout: Duration) -> Self {
        self.leave_timeout = timeout;
        self
    }

    /// The largest frame accepted from a peer (8 MiB). A message larger than this cannot
    /// be sent; a peer announcing a larger frame is disconnected.
    #[must_use]
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How many bytes may wait to be written to one peer on the `default` channel before
    /// sends on it fail with [`crate::node::RemoteError::Overloaded`] (64 MiB). Channels
    /// declared with [`NodeConfig::channel`] have their own limit; `control` has none.
    #[must_use]
    pub fn max_pending(mut self, bytes: usize) -> Self {
        self.max_pending = bytes;
        self
    }

    /// How many messages from other nodes one exported process may have been delivered and
    /// not yet handled (10,000). Past it, a tell from another node is dropped (the newest,
    /// counted in [`crate::node::NodeStats::remote_dropped`]) and a call is answered with
    /// [`crate::node::RemoteError::Overloaded`] (counted in
    /// [`crate::node::NodeStats::remote_refused`]). The lane keeps being read for every other
    /// process, so a slow process neither grows this node's memory without bound nor
    /// stalls its peers' other traffic. See `docs/cluster.md`, "Limits".
    #[must_use]
    pub fn max_remote_queued(mut self, messages: usize) -> Self {
        self.max_remote_queued = messages;
        self
    }

    /// Declares a channel named `name` (or sets the `default` channel's limit): a
    /// connection of its own to each peer, with its own outbox and limit, chosen per send
    /// with [`crate::node::Node::send_on`] and [`crate::node::Node::call_on`]. Both nodes
    /// must declare it; a send on a channel the peer does not know fails with
    /// [`crate::node::RemoteError::UnknownChannel`]. `control` cannot be declared: it is
    /// the node's own. See `docs/cluster.md`, "Channels".
    #[must_use]
    pub fn channel(mut self, name: impl Into<String>, config: ChannelConfig) -> Self {
        let name = name.into();
        self.channels.retain(|(n, _)| *n != name);
        self.channels.push((name, config));
        self
    }

    /// The node's channels in their order: `control`, `default`, then those declared.
    /// `control` is never full, runs at normal priority and has one lane; `default` takes
    /// [`NodeConfig::max_pending`] unless declared.
    pub(crate) fn channel_table(&self) -> Vec<(String, ChannelConfig)> {
        let default = self.channels.iter().find(|(n, _)| n == DEFAULT).map_or(
            ChannelConfig::default().max_pending(self.max_pending),
            |(_, c)| *c,
        );
        let control = ChannelConfig::default().max_pending(usize::MAX);
        let mut table = vec![(CONTROL.to_owned(), control), (DEFAULT.to_owned(), default)];
        for (n, c) in &self.channels {
            if n != DEFAULT && n != CONTROL {
                table.push((n.clone(), *c));
            }
        }
        table
    }

    /// How many connections may be open at once that have not authenticated yet (64),
    /// and how many of them from one IP address (16). A connection over either is closed
    /// as soon as it is accepted, and counted in [`crate::node::NodeStats::over_cap`].
    /// Each one's handshake must end within [`NodeConfig::handshake_timeout`], so a
    /// client holding its share keeps out no one for longer. See `docs/cluster.md`,
    /// "Limits".
    #[must_use]
    pub fn max_unauthenticated(mut self, in_all: usize, per_ip: usize) -> Self {
        self.max_unauthenticated = in_all;
        self.max_unauthenticated_per_ip = per_ip;
        self
    }

    /// Encrypts every connection with TLS; plain connections are refused.
    #[must_use]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub(crate) fn heartbeat_every(&self) -> Duration {
        self.heartbeat.unwrap_or(self.silence / 6)
    }

    /// Checks the settings together.
    ///
    /// # Errors
    ///
    /// The first setting that is unusable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting, why: &str| {
            Err(ConfigError::Bad {
                setting,
                why: why.to_owned(),
            })
        };
        if self.name.is_empty() || self.name.len() > 255 {
            return bad("name", "must be 1 to 255 bytes");
        }
        if !self
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad("name", "may hold only letters, digits, `-`, `_` and `.`");
        }
        if self.cookie.is_empty() {
            return bad(
                "cookie",
                "is empty; every node of a cluster needs the same secret",
            );
        }
        if self.cluster.is_empty() {
            return bad("cluster", "is empty");
        }
        for (n, c) in &self.channels {
            if c.parallelism == 0 || c.parallelism > MAX_PARALLELISM {
                return bad("channel", "a channel's parallelism must be 1 to 16 lanes");
            }
            if n == CONTROL {
                return bad(
                    "channel",
                    "`control` is the node's own and cannot be declared",
                );
            }
            if n.is_empty() || n.len() > 64 {
                return bad("channel", "a channel's name must be 1 to 64 bytes");
            }
        }
        if self.channel_table().len() > MAX_CHANNELS {
            return bad("channel", "more than 32 channels");
        }
        if self.silence < Duration::from_millis(10) {
            return bad("silence", "must be at least 10 ms");
        }
        let hb = self.heartbeat_every();
        if hb.is_zero() || hb >= self.silence {
            return bad(
                "heartbeat",
                "must be above zero and below the silence limit",
            );
        }
        if self.max_frame < 1024 || self.max_frame > u32::MAX as usize {
            return bad("max_frame", "must be from 1 KiB to 4 GiB");
        }
        if self.max_unauthenticated == 0 || self.max_unauthenticated_per_ip == 0 {
            return bad(
                "max_unauthenticated",
                "must admit at least one connection, in all and per address",
            );
        }
        if let Some(a) = &self.advertise {
            a.parse::<crate::discovery::Peer>()
                .map_err(|e| ConfigError::Bad {
                    setting: "advertise",
                    why: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// The environment variables Foundation reads: a node's settings
/// ([`NodeConfig::from_env`]) and its discovery ([`crate::discovery::detect`]).
pub const ENV_VARIABLES: &[&str] = &[
    "FOUNDATION_NODE_NAME",
    "FOUNDATION_COOKIE",
    "FOUNDATION_CLUSTER",
    "FOUNDATION_LISTEN",
    "FOUNDATION_ADVERTISE",
    "FOUNDATION_SILENCE_MS",
    "FOUNDATION_PEERS",
    "FOUNDATION_DNS_QUERY",
    // The runtime's (`foundation::Foundation`, docs/configuration.md).
    "FOUNDATION_CONFIG",
    "FOUNDATION_PROFILE",
    "FOUNDATION_DISCOVERY",
    "FOUNDATION_KUBERNETES_SELECTOR",
    "FOUNDATION_HTTP",
    "FOUNDATION_HTTP_LISTEN",
    "FOUNDATION_HTTP_TOKEN",
    "FOUNDATION_PUBSUB",
    "FOUNDATION_CACHE_MAX_ENTRIES",
    "FOUNDATION_SHUTDOWN_TIMEOUT_MS",
    "FOUNDATION_TLS_CERT",
    "FOUNDATION_TLS_KEY",
    "FOUNDATION_TLS_CA",
    "FOUNDATION_TLS_SERVER_NAME",
    "FOUNDATION_TLS_MUTUAL",
];

/// The `FOUNDATION_*` names among `names` that Foundation does not read, each with the
/// known variable it most resembles (a typo's likely intent), if one is close.
pub fn unknown_variables<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, Option<&'static str>)> {
    names
        .into_iter()
        .filter(|n| n.starts_with("FOUNDATION_") && !ENV_VARIABLES.contains(n))
        .map(|n| (n.to_owned(), closest(n, ENV_VARIABLES)))
        .collect()
}

/// The name among `known` that `name` most resembles (at most 3 edits away, a typo's
/// likely intent), for a "did you mean" hint.
///
/// ```
/// use foundation_cluster::node::closest;
/// assert_eq!(closest("listne", &["listen", "cookie"]), Some("listen"));
/// assert_eq!(closest("zzzzzzzz", &["listen", "cookie"]), None);
/// ```
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .min()
        .filter(|(d, _)| *d <= 3)
        .map(|(_, k)| k)
}

/// Logs each unknown `FOUNDATION_*` variable of this process, once per process.
pub(crate) fn warn_unknown_variables() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for (name, near) in unknown_variables(names.iter().map(String::as_str)) {
        match near {
            Some(near) => tracing::warn!(
                variable = %name,
                "{name} is set but Foundation reads no such variable: did you mean {near}?"
            ),
            None => tracing::warn!(
                variable = %name,
                "{name} is set but Foundation reads no such variable (known: {})",
                ENV_VARIABLES.join(", ")
            ),
        }
    }
}

/// Levenshtein distance, for short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The OS's name for this machine (what `gethostname` returns), if it has a usable one:
/// Linux's `/proc/sys/kernel/hostname`, else `/etc/hostname`, else `COMPUTERNAME`
/// (Windows), else the `hostname` command (macOS and the BSDs). No dependency for it.
/// The default node name ([`NodeConfig::from_env`]) and the runtime's.
pub fn os_host_name() -> Option<String> {
    let usable = |s: String| Some(s.trim().to_owned()).filter(|n| !n.is_empty());
    let file = |path: &str| std::fs::read_to_string(path).ok().and_then(usable);
    file("/proc/sys/kernel/hostname")
        .or_else(|| file("/etc/hostname"))
        .or_else(|| std::env::var("COMPUTERNAME").ok().and_then(usable))
        .or_else(|| {
            let out = std::process::Command::new("hostname").output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8(out.stdout).ok())
                .flatten()
                .and_then(usable)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn settings_come_from_the_environment() {
        let c = NodeConfig::from_env(env(&[
            ("FOUNDATION_NODE_NAME", "a"),
            ("FOUNDATION_COOKIE", "s3cret"),
            ("FOUNDATION_LISTEN", "127.0.0.1:0"),
            ("FOUNDATION_SILENCE_MS", "600"),
        ]))
        .unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.silence, Duration::from_millis(600));
        assert_eq!(c.heartbeat_every(), Duration::from_millis(100));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn the_default_name_is_the_host_name() {
        let no_host = || None;
        let c = NodeConfig::from_lookup(
            env(&[("FOUNDATION_COOKIE", "c"), ("HOSTNAME", "pod-7")]),
            no_host,
        )
        .unwrap();
        assert_eq!(c.name, "pod-7");
        // A laptop's shell does not export HOSTNAME: the OS's name is used.
        let c = NodeConfig::from_lookup(env(&[("FOUNDATION_COOKIE", "c")]), || {
            Some("laptop.local".into())
        })
        .unwrap();
        assert_eq!(c.name, "laptop.local");
        let e = NodeConfig::from_lookup(env(&[("FOUNDATION_COOKIE", "c")]), no_host).unwrap_err();
        assert_eq!(e, ConfigError::Missing("FOUNDATION_NODE_NAME"));
        // The real lookup gives this machine's name.
        assert!(os_host_name().is_some_and(|n| !n.is_empty()));
        // An unusable host name is blamed on where it came from.
        let e = NodeConfig::from_lookup(env(&[("FOUNDATION_COOKIE", "c")]), || {
            Some("my laptop".into())
        })
        .unwrap_err();
        assert!(e.to_string().contains("the host name"), "{e}");
    }

    #[test]
    fn unknown_variables_are_named_with_a_guess() {
        let unknown = unknown_variables([
            "FOUNDATION_PEER",
            "FOUNDATION_COOKIE",
            "PATH",
            "FOUNDATION_WHATEVER_ELSE",
        ]);
        assert_eq!(
            unknown,
            [
                ("FOUNDATION_PEER".to_owned(), Some("FOUNDATION_PEERS")),
                ("FOUNDATION_WHATEVER_ELSE".to_owned(), None),
            ]
        );
    }

    #[test]
    fn validation_errors_name_the_variable() {
        const C: (&str, &str) = ("FOUNDATION_COOKIE", "c");
        const N: (&str, &str) = ("FOUNDATION_NODE_NAME", "a");
        let e = NodeConfig::from_env(env(&[
            ("FOUNDATION_COOKIE", "c"),
            ("FOUNDATION_NODE_NAME", "a b"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("`FOUNDATION_NODE_NAME`"), "{e}");
        let e = NodeConfig::from_env(env(&[("FOUNDATION_COOKIE", "c"), ("HOSTNAME", "a b")]))
            .unwrap_err();
        assert!(e.to_string().contains("HOSTNAME"), "{e}");
        let e = NodeConfig::from_env(env(&[C, N, ("FOUNDATION_SILENCE_MS", "1")])).unwrap_err();
        assert!(e.to_string().contains("`FOUNDATION_SILENCE_MS`"), "{e}");
        let e = NodeConfig::from_env(env(&[C, N, ("FOUNDATION_CLUSTER", "")])).unwrap_err();
        assert!(e.to_string().contains("`FOUNDATION_CLUSTER`"), "{e}");
        let e = NodeConfig::from_env(env(&[C, N, ("FOUNDATION_ADVERTISE", "nope")])).unwrap_err();
        assert!(e.to_string().contains("`FOUNDATION_ADVERTISE`"), "{e}");
        let e = NodeConfig::from_env(env(&[("FOUNDATION_COOKIE", ""), N])).unwrap_err();
        assert!(e.to_string().contains("`FOUNDATION_COOKIE`"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let e = NodeConfig::from_env(env(&[("FOUNDATION_NODE_NAME", "a")])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("FOUNDATION_COOKIE"));
        let e = NodeConfig::from_env(env(&[
            ("FOUNDATION_NODE_NAME", "a"),
            ("FOUNDATION_COOKIE", "c"),
            ("FOUNDATION_LISTEN", "localhost"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("FOUNDATION_LISTEN"), "{e}");
        let e = NodeConfig::new("a b", "c").validate().unwrap_err();
        assert!(e.to_string().contains("name"), "{e}");
        let e = NodeConfig::new("a", "").validate().unwrap_err();
        assert!(e.to_string().contains("cookie"), "{e}");
        let e = NodeConfig::new("a", "c")
            .silence(Duration::from_secs(1))
            .heartbeat(Duration::from_secs(2))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("heartbeat"), "{e}");
    }

    #[test]
    fn a_channel_takes_1_to_16_lanes_and_default_keeps_what_is_declared_for_it() {
        let wide = |n| ChannelConfig::default().parallelism(n);
        for bad in [0, MAX_PARALLELISM + 1] {
            let e = NodeConfig::new("a", "c")
                .channel("bulk", wide(bad))
                .validate()
                .unwrap_err();
            assert!(e.to_string().contains("parallelism"), "{e}");
        }
        let low = ChannelConfig::default().priority(Priority::Low);
        let c = NodeConfig::new("a", "c")
            .max_pending(1000)
            .channel("bulk", low.parallelism(MAX_PARALLELISM))
            .channel(DEFAULT, wide(3));
        c.validate().unwrap();
        let table = c.channel_table();
        let names: Vec<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [CONTROL, DEFAULT, "bulk"]);
        assert_eq!(table[0].1.max_pending, usize::MAX);
        assert_eq!(table[0].1.parallelism, 1);
        assert_eq!(table[1].1, wide(3));
        assert_eq!(table[2].1.priority, Priority::Low);
        // Undeclared, `default` takes `max_pending`, at normal priority, one lane.
        let table = NodeConfig::new("a", "c").max_pending(1000).channel_table();
        assert_eq!(table[1].1, ChannelConfig::default().max_pending(1000));
    }
}
