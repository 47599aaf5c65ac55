//! The runtime's configuration: one table of keys ([`KEYS`]) read from `foundation.toml`,
//! `FOUNDATION_*` environment variables and code, in that order of strength (code wins).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use foundation_cluster::discovery::{Peer, parse_peers};
use foundation_cluster::node::{Tls, closest};

mod tls;

pub use tls::TlsFileError;

/// One configuration key: its name in `foundation.toml`, its environment variable, what it
/// accepts and its default. [`KEYS`] lists them all; `docs/configuration.md` is generated
/// from it ([`reference()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key in `foundation.toml` (`http.listen` is `listen` under `[http]`).
    pub name: &'static str,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// What it accepts.
    pub allowed: &'static str,
    /// Its default, by profile where they differ.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// Every configuration key the runtime reads.
pub const KEYS: &[Key] = &[
    Key {
        name: "profile",
        env: "FOUNDATION_PROFILE",
        allowed: "`auto`, `development` or `production`",
        default: "`auto`",
        doc: "`development`: defaults for a laptop (a development cookie, mDNS, any free port). `production`: nothing secret is defaulted and a way to find peers is required. `auto`: `production` when `cluster` is (or is detected as) `kubernetes`, `dns` or `static`, else `development`.",
    },
    Key {
        name: "cluster",
        env: "FOUNDATION_DISCOVERY",
        allowed: "`auto`, `kubernetes`, `dns`, `static`, `mdns` or `none`",
        default: "`auto`",
        doc: "How the node finds its peers. `auto` detects: Kubernetes when `KUBERNETES_SERVICE_HOST` is set, `static` when `peers` is set, `dns` when `dns_query` is set, else `mdns` (in development; production requires one of the others). `none`: a single node.",
    },
    Key {
        name: "cluster_name",
        env: "FOUNDATION_CLUSTER",
        allowed: "a name of 1 to 255 letters, digits, `-`, `_` and `.`",
        default: "`foundation`",
        doc: "Nodes of other clusters are not admitted, nor found by mDNS; in Kubernetes, pods labelled `foundation/cluster=<cluster_name>` are the peers.",
    },
    Key {
        name: "node_name",
        env: "FOUNDATION_NODE_NAME",
        allowed: "a name of 1 to 255 letters, digits, `-`, `_` and `.`, unique in the cluster",
        default: "production: `HOSTNAME` (a pod's name), else the host's name; development: `<host>-<process id>` (and `-2`, `-3`… for more runtimes in one process)",
        doc: "This node's name.",
    },
    Key {
        name: "cookie",
        env: "FOUNDATION_COOKIE",
        allowed: "a non-empty secret shared by the cluster's nodes",
        default: "production: none (required); development: `foundation-development`",
        doc: "Peers that do not know it are refused.",
    },
    Key {
        name: "listen",
        env: "FOUNDATION_LISTEN",
        allowed: "an `ip:port` address",
        default: "production: `0.0.0.0:4370`; development: `0.0.0.0:0` (any free port)",
        doc: "Where the node listens for peers.",
    },
    Key {
        name: "advertise",
        env: "FOUNDATION_ADVERTISE",
        allowed: "a `host:port` address",
        default: "derived from `listen` and the host's address",
        doc: "The address peers dial to reach this node.",
    },
    Key {
        name: "peers",
        env: "FOUNDATION_PEERS",
        allowed: "`host:port` seeds (a TOML array, or a comma-separated list)",
        default: "none",
        doc: "The seeds of the `static` strategy.",
    },
    Key {
        name: "dns_query",
        env: "FOUNDATION_DNS_QUERY",
        allowed: "a DNS name (a headless service)",
        default: "none",
        doc: "The name whose A/AAAA records the `dns` strategy polls.",
    },
    Key {
        name: "kubernetes.selector",
        env: "FOUNDATION_KUBERNETES_SELECTOR",
        allowed: "a Kubernetes label selector",
        default: "with `cluster_name` set: `foundation/cluster=<cluster_name>`; else the pods whose `foundation/cluster` label has this pod's value (read with a `get` of this pod), or `foundation/cluster=foundation` when that cannot be read",
        doc: "Which pods of the namespace (the service account's own) are peers.",
    },
    Key {
        name: "silence_ms",
        env: "FOUNDATION_SILENCE_MS",
        allowed: "a number of milliseconds, at least 100",
        default: "`3000`",
        doc: "How long a peer may be silent before it is declared down.",
    },
    Key {
        name: "http.enabled",
        env: "FOUNDATION_HTTP",
        allowed: "`true` or `false`",
        default: "`true`",
        doc: "Whether the node serves `/health/live`, `/health/ready`, `/metrics`, `/cluster` and `/dashboard`.",
    },
    Key {
        name: "http.listen",
        env: "FOUNDATION_HTTP_LISTEN",
        allowed: "an `ip:port` address",
        default: "`127.0.0.1:4380` (in development, any free port if 4380 is taken)",
        doc: "Where the HTTP endpoint listens: loopback unless set (set `0.0.0.0:4380` in a pod, for the probes).",
    },
    Key {
        name: "http.token",
        env: "FOUNDATION_HTTP_TOKEN",
        allowed: "a non-empty token",
        default: "none",
        doc: "When set, every path but `/health/*` and the dashboard's page (`/dashboard`, `/`: it holds no data) requires `Authorization: Bearer <token>`; open the dashboard as `/dashboard?token=<token>`: the page keeps the token and sends it to `/cluster`.",
    },
    Key {
        name: "tls.cert",
        env: "FOUNDATION_TLS_CERT",
        allowed: "the path of a PEM file: this node's certificate, then its chain",
        default: "none: no TLS",
        doc: "When set, every connection between nodes is TLS and plain peers are refused; needs `tls.key` and `tls.ca`. The cookie is still required.",
    },
    Key {
        name: "tls.key",
        env: "FOUNDATION_TLS_KEY",
        allowed: "the path of a PEM file holding the private key of `tls.cert` (PKCS#8, PKCS#1 or SEC1)",
        default: "none",
        doc: "This node's private key.",
    },
    Key {
        name: "tls.ca",
        env: "FOUNDATION_TLS_CA",
        allowed: "the path of a PEM file of one or more CA certificates",
        default: "none (required with `tls.cert`)",
        doc: "The CAs peers' certificates are checked against.",
    },
    Key {
        name: "tls.server_name",
        env: "FOUNDATION_TLS_SERVER_NAME",
        allowed: "a DNS name or IP address",
        default: "`cluster_name` (`foundation` unless set)",
        doc: "The name every node's certificate is issued for: peers are dialled by address, so each checks the other's certificate against this one name.",
    },
    Key {
        name: "tls.mutual",
        env: "FOUNDATION_TLS_MUTUAL",
        allowed: "`true` or `false`",
        default: "`true`",
        doc: "Mutual TLS: a peer connecting to this node must present a certificate signed by `tls.ca`. `false` checks only the server's side of each connection.",
    },
    Key {
        name: "pubsub.name",
        env: "FOUNDATION_PUBSUB",
        allowed: "a name",
        default: "`foundation`",
        doc: "The name of the runtime's pubsub ([`Foundation::pubsub`](crate::Foundation::pubsub)).",
    },
    Key {
        name: "cache.max_entries",
        env: "FOUNDATION_CACHE_MAX_ENTRIES",
        allowed: "a number, at least 1",
        default: "`10000`",
        doc: "The bound of each local cache the runtime makes ([`Foundation::cache`](crate::Foundation::cache)).",
    },
    Key {
        name: "shutdown.timeout_ms",
        env: "FOUNDATION_SHUTDOWN_TIMEOUT_MS",
        allowed: "a number of milliseconds",
        default: "`15000`",
        doc: "How long a graceful shutdown (hand-offs, leaving the cluster) may take before the node stops anyway.",
    },
];

/// How long a graceful shutdown may take by default (`shutdown.timeout_ms`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

/// The variable that names the configuration file (else `foundation.toml` in the current
/// directory, when there is one).
pub const CONFIG_FILE_VARIABLE: &str = "FOUNDATION_CONFIG";

/// Environment variables with this prefix are the application's: the runtime does not
/// read them, and does not refuse them as unknown.
pub const APP_VARIABLE_PREFIX: &str = "FOUNDATION_APP_";

/// A resolved profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Defaults for a laptop: a development cookie, mDNS, any free port.
    Development,
    /// Nothing secret defaulted; a way to find peers required.
    Production,
}

/// How the node finds its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// Pods of the namespace, through the Kubernetes API.
    Kubernetes,
    /// The A/AAAA records of a DNS name, polled.
    Dns,
    /// A fixed list of seeds.
    Static,
    /// mDNS on the local network.
    Mdns,
    /// None: a single node (peers may still dial it).
    None,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Production => "production",
        })
    }
}

impl fmt::Display for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kubernetes => "kubernetes",
            Self::Dns => "dns",
            Self::Static => "static",
            Self::Mdns => "mdns",
            Self::None => "none",
        })
    }
}

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Its default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// The process's environment (an unknown variable).
    Environment,
    /// Code: [`Builder`](crate::runtime::Builder)'s setters.
    Code,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env(var) => write!(f, "the environment variable {var}"),
            Self::Environment => f.write_str("the environment"),
            Self::Code => f.write_str("code (Builder)"),
        }
    }
}

/// Why the configuration is unusable. Each names the key, the source and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key (or `FOUNDATION_*` variable) the runtime does not know.
    #[error("unknown key `{key}` in {origin}{}", hint(*.suggestion))]
    UnknownKey {
        /// The key as given.
        key: String,
        /// Where it was given.
        origin: Source,
        /// The known key it most resembles.
        suggestion: Option<&'static str>,
    },
    /// A value the key cannot take.
    #[error("bad value for `{key}` in {origin}: `{value}` is not {allowed}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What the key accepts.
        allowed: &'static str,
        /// Where it was given.
        origin: Source,
    },
    /// A key the chosen profile or strategy needs is not set.
    #[error("missing `{key}` (or {env}): {why}")]
    Missing {
        /// The key.
        key: &'static str,
        /// Its environment variable.
        env: &'static str,
        /// Why it is needed.
        why: String,
    },
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A file a `tls.*` key names is unusable.
    #[error("`{key}` in {origin}: {}: {error}", .path.display())]
    TlsFile {
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Where the key was given.
        origin: Source,
        /// What is wrong with it.
        error: TlsFileError,
    },
    /// The configuration file is not valid TOML.
    #[error("{path} is not valid TOML: {error}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        error: String,
    },
}

fn hint(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(": did you mean `{s}`?"))
}

/// The runtime's settings, resolved: every value, and where each came from.
#[derive(Clone)]
pub struct Config {
    /// The profile in force.
    pub profile: Profile,
    /// Why that profile (for the log and `cluster_info`).
    pub profile_reason: String,
    /// The discovery strategy.
    pub discovery: Discovery,
    /// Why that strategy.
    pub discovery_reason: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// This node's name.
    pub node_name: String,
    pub(crate) cookie: String,
    /// Where the node listens.
    pub listen: SocketAddr,
    /// The address peers dial, if set.
    pub advertise: Option<String>,
    /// Static seeds.
    pub peers: Vec<Peer>,
    /// Keys that are set but that the chosen discovery strategy does not use (`peers`
    /// without `static`, `dns_query` without `dns`), each with why: the runtime logs them
    /// as warnings at start.
    pub unused: Vec<String>,
    /// The DNS name polled by the `dns` strategy.
    pub dns_query: Option<String>,
    /// The label selector of the `kubernetes` strategy.
    pub kubernetes_selector: String,
    /// The pod whose `foundation/cluster` label gives the selector, when neither
    /// `kubernetes.selector` nor `cluster_name` is set (`HOSTNAME`, in a pod).
    pub(crate) kubernetes_pod: Option<String>,
    /// Silence before a peer is down.
    pub silence: Duration,
    /// The HTTP endpoint's address, `None` when disabled.
    pub http_listen: Option<SocketAddr>,
    pub(crate) http_listen_defaulted: bool,
    pub(crate) http_token: Option<String>,
    /// The runtime's pubsub's name.
    pub pubsub_name: String,
    /// The bound of each local cache.
    pub cache_max_entries: u64,
    /// How long a graceful shutdown may take.
    pub shutdown_timeout: Duration,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
    /// Where each key that was set came from (keys left at their default are absent).
    pub sources: BTreeMap<&'static str, Source>,
    /// TLS between nodes: from [`Builder::tls`](crate::runtime::Builder::tls), else from
    /// the `tls.*` keys.
    pub(crate) tls: Option<Tls>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("profile", &self.profile)
            .field("discovery", &self.discovery)
            .field("cluster_name", &self.cluster_name)
            .field("node_name", &self.node_name)
            .field("cookie", &"<hidden>")
            .field("listen", &self.listen)
            .field("http_listen", &self.http_listen)
            .field("http_token", &self.http_token.as_ref().map(|_| "<hidden>"))
            .field("tls", &self.tls.is_some())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The raw settings given, before they are resolved: key → (value, where).
#[derive(Debug, Clone, Default)]
pub(crate) struct Layers {
    values: BTreeMap<&'static str, (String, Source)>,
    /// TLS given ready-made in code: it wins over every `tls.*` key.
    tls: Option<Tls>,
}

fn key_named(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn key_names() -> Vec<&'static str> {
    KEYS.iter().map(|k| k.name).collect()
}

/// Whether `name=value` is one of the variables Kubernetes sets for a Service (its
/// "service links": a Service named `foundation` gives `FOUNDATION_SERVICE_HOST`,
/// `FOUNDATION_SERVICE_PORT`, `FOUNDATION_PORT=tcp://…`, `FOUNDATION_PORT_4370_TCP_ADDR`…),
/// which are not settings. Only those exact shapes, with values of their kind: a
/// `FOUNDATION_HTTP_PORT=5000` is a typo, and refused.
fn is_service_link(name: &str, value: &str) -> bool {
    let url = ["tcp://", "udp://", "sctp://"]
        .iter()
        .any(|p| value.starts_with(p));
    let number = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let proto = matches!(value, "tcp" | "udp" | "sctp" | "TCP" | "UDP" | "SCTP");
    let ip = value.parse::<std::net::IpAddr>().is_ok();
    if name.ends_with("_SERVICE_HOST") {
        return ip;
    }
    if name.ends_with("_SERVICE_PORT") || name.contains("_SERVICE_PORT_") {
        return number;
    }
    // X_PORT=tcp://ip:port, X_PORT_<n>_<PROTO>=tcp://…, and its _PROTO, _PORT, _ADDR.
    if let Some(i) = name.find("_PORT_") {
        let rest: Vec<&str> = name[i + "_PORT_".len()..].split('_').collect();
        let shaped = rest.len() >= 2
            && rest[0].bytes().all(|b| b.is_ascii_digit())
            && matches!(rest[1], "TCP" | "UDP" | "SCTP");
        return shaped
            && match rest.get(2) {
                None => url,
                Some(&"PROTO") => proto,
                Some(&"PORT") => number,
                Some(&"ADDR") => ip,
                Some(_) => false,
            };
    }
    name.ends_with("_PORT") && url
}

/// The known key `name` most likely means: the closest by spelling, a key of a table
/// given without it (`token` for `http.token`), or one given by its variable's name.
fn suggest_key(name: &str) -> Option<&'static str> {
    let plain = name.trim().to_ascii_lowercase();
    if let Some(k) = KEYS.iter().find(|k| {
        k.name
            .rsplit_once('.')
            .is_some_and(|(_, last)| last == plain)
            || k.env.eq_ignore_ascii_case(name)
            || k.name.replace('.', "_") == plain
    }) {
        return Some(k.name);
    }
    // A key put under a table it is not in (`[http]` then `cookie`).
    if let Some(k) = plain
        .rsplit_once('.')
        .and_then(|(_, last)| KEYS.iter().find(|k| k.name == last))
    {
        return Some(k.name);
    }
    match plain.as_str() {
        "discovery" | "strategy" => return Some("cluster"),
        "name" => return Some("node_name"),
        _ => {}
    }
    closest(name, &key_names())
}

/// The variable that sets what the unknown variable `name` most likely means: the
/// closest by spelling, or the one of the key its name spells (`FOUNDATION_CLUSTER_NAME`
/// for `cluster_name`, whose variable is `FOUNDATION_CLUSTER`).
fn suggest_env(name: &str) -> Option<&'static str> {
    let envs: Vec<&'static str> = KEYS.iter().map(|k| k.env).collect();
    let plain = name
        .strip_prefix("FOUNDATION_")
        .unwrap_or(name)
        .to_ascii_lowercase();
    if let Some(k) = KEYS.iter().find(|k| k.name.replace('.', "_") == plain) {
        return Some(k.env);
    }
    closest(name, &envs)
}

impl Layers {
    /// Sets `key` from code.
    pub(crate) fn set(&mut self, key: &str, value: String) -> Result<(), ConfigError> {
        let k = key_named(key).ok_or_else(|| ConfigError::UnknownKey {
            key: key.to_owned(),
            origin: Source::Code,
            suggestion: suggest_key(key),
        })?;
        self.values.insert(k.name, (value, Source::Code));
        Ok(())
    }

    /// Sets TLS from code; the `tls.*` keys are then not read.
    pub(crate) fn set_tls(&mut self, tls: Tls) {
        self.tls = Some(tls);
    }

    /// Reads a file's keys (weaker than what is set already).
    pub(crate) fn file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            error: e.to_string().trim().to_owned(),
        })?;
        let mut flat = Vec::new();
        for (k, v) in table {
            match v {
                toml::Value::Table(inner) => {
                    for (k2, v2) in inner {
                        flat.push((format!("{k}.{k2}"), v2));
                    }
                }
                v => flat.push((k, v)),
            }
        }
        for (name, value) in flat {
            let source = Source::File(path.to_owned());
            let Some(key) = key_named(&name) else {
                return Err(ConfigError::UnknownKey {
                    suggestion: suggest_key(&name),
                    key: name,
                    origin: source,
                });
            };
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) if key.name == "peers" => {
                    let mut seeds = Vec::new();
                    for item in items {
                        match item {
                            toml::Value::String(s) => seeds.push(s),
                            other => {
                                return Err(ConfigError::BadValue {
                                    key: key.name,
                                    value: other.to_string(),
                                    allowed: key.allowed,
                                    origin: source,
                                });
                            }
                        }
                    }
                    seeds.join(",")
                }
                other => {
                    return Err(ConfigError::BadValue {
                        key: key.name,
                        value: other.to_string(),
                        allowed: key.allowed,
                        origin: source,
                    });
                }
            };
            self.values.entry(key.name).or_insert((text, source));
        }
        Ok(())
    }

    /// Reads the `FOUNDATION_*` variables among `vars` (weaker than what is set already).
    pub(crate) fn env(&mut self, vars: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (name, value) in vars {
            if !name.starts_with("FOUNDATION_")
                || name.starts_with(APP_VARIABLE_PREFIX)
                || name == CONFIG_FILE_VARIABLE
                || is_service_link(name, value)
            {
                continue;
            }
            let Some(key) = KEYS.iter().find(|k| k.env == name) else {
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    origin: Source::Environment,
                    suggestion: suggest_env(name),
                });
            };
            self.values
                .entry(key.name)
                .or_insert((value.clone(), Source::Env(key.env)));
        }
        Ok(())
    }

    fn get(&self, key: &'static str) -> Option<&(String, Source)> {
        self.values.get(key)
    }

    /// Resolves the layers into a [`Config`]; `vars` is the environment (for
    /// `KUBERNETES_SERVICE_HOST`, `HOSTNAME`), `host` the OS's host name.
    pub(crate) fn resolve(
        &self,
        vars: &BTreeMap<String, String>,
        host: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let bad = |key: &'static str, value: &str, origin: &Source| ConfigError::BadValue {
            key,
            value: value.to_owned(),
            allowed: key_named(key).map_or("", |k| k.allowed),
            origin: origin.clone(),
        };
        let missing = |key: &'static str, why: String| ConfigError::Missing {
            key,
            env: key_named(key).map_or("", |k| k.env),
            why,
        };
        // A string key: trimmed, non-empty.
        let text = |key: &'static str| -> Result<Option<String>, ConfigError> {
            match self.get(key) {
                None => Ok(None),
                Some((v, src)) => {
                    let t = v.trim();
                    if t.is_empty() {
                        Err(bad(key, v, src))
                    } else {
                        Ok(Some(t.to_owned()))
                    }
                }
            }
        };
        let addr = |key: &'static str| -> Result<Option<SocketAddr>, ConfigError> {
            match self.get(key) {
                None => Ok(None),
                Some((v, src)) => v.trim().parse().map(Some).map_err(|_| bad(key, v, src)),
            }
        };
        let number = |key: &'static str, min: u64| -> Result<Option<u64>, ConfigError> {
            match self.get(key) {
                None => Ok(None),
                Some((v, src)) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(Some(n)),
                    _ => Err(bad(key, v, src)),
                },
            }
        };

        let profile_asked = match self.get("profile") {
            None => None,
            Some((v, src)) => match v.trim() {
                "auto" => None,
                "development" => Some(Profile::Development),
                "production" => Some(Profile::Production),
                _ => return Err(bad("profile", v, src)),
            },
        };
        let discovery_asked = match self.get("cluster") {
            None => None,
            Some((v, src)) => match v.trim() {
                "auto" => None,
                "kubernetes" => Some(Discovery::Kubernetes),
                "dns" => Some(Discovery::Dns),
                "static" => Some(Discovery::Static),
                "mdns" => Some(Discovery::Mdns),
                "none" => Some(Discovery::None),
                _ => return Err(bad("cluster", v, src)),
            },
        };
        let peers = match self.get("peers") {
            None => Vec::new(),
            Some((v, src)) => {
                let peers = parse_peers(v).map_err(|_| bad("peers", v, src))?;
                if peers.is_empty() {
                    return Err(bad("peers", v, src));
                }
                peers
            }
        };
        let dns_query = text("dns_query")?;
        let k8s_host = vars.get("KUBERNETES_SERVICE_HOST");

        let (discovery, discovery_reason) = match discovery_asked {
            Some(d) => (
                d,
                format!("`cluster = \"{d}\"` set in {}", self.source_of("cluster")),
            ),
            None => {
                if let Some(h) = k8s_host {
                    (
                        Discovery::Kubernetes,
                        format!("KUBERNETES_SERVICE_HOST is set ({h}): running in Kubernetes"),
                    )
                } else if !peers.is_empty() {
                    (
                        Discovery::Static,
                        format!(
                            "`peers` lists {} seed(s) (from {})",
                            peers.len(),
                            self.source_of("peers")
                        ),
                    )
                } else if let Some(q) = &dns_query {
                    (
                        Discovery::Dns,
                        format!("`dns_query` is set: polling the records of {q}"),
                    )
                } else if profile_asked == Some(Profile::Production) {
                    return Err(missing(
                        "cluster",
                        "the production profile needs a way to find peers and none was detected \
                         (no KUBERNETES_SERVICE_HOST, `peers` or `dns_query`): set `cluster` to \
                         `kubernetes`, `dns`, `static`, `mdns` or `none`"
                            .to_owned(),
                    ));
                } else {
                    (
                        Discovery::Mdns,
                        "no KUBERNETES_SERVICE_HOST, `peers` or `dns_query`: mDNS on the local network".to_owned(),
                    )
                }
            }
        };
        let (profile, profile_reason) = match profile_asked {
            Some(p) => (
                p,
                format!("`profile = \"{p}\"` set in {}", self.source_of("profile")),
            ),
            None => match discovery {
                Discovery::Kubernetes | Discovery::Dns | Discovery::Static => (
                    Profile::Production,
                    format!("auto: the `{discovery}` strategy is a deployment's"),
                ),
                Discovery::Mdns | Discovery::None => (
                    Profile::Development,
                    format!("auto: the `{discovery}` strategy is a laptop's"),
                ),
            },
        };
        if discovery == Discovery::Static && peers.is_empty() {
            return Err(missing(
                "peers",
                "`cluster = \"static\"` needs seeds".to_owned(),
            ));
        }
        if discovery == Discovery::Dns && dns_query.is_none() {
            return Err(missing(
                "dns_query",
                "`cluster = \"dns\"` needs the name to poll".to_owned(),
            ));
        }
        let mut unused = Vec::new();
        if discovery != Discovery::Static && !peers.is_empty() {
            unused.push(format!(
                "`peers` (from {}) is not used: the discovery strategy is `{discovery}` ({discovery_reason}); set `cluster = \"static\"` to use it",
                self.source_of("peers")
            ));
        }
        if discovery != Discovery::Dns && dns_query.is_some() {
            unused.push(format!(
                "`dns_query` (from {}) is not used: the discovery strategy is `{discovery}` ({discovery_reason}); set `cluster = \"dns\"` to use it",
                self.source_of("dns_query")
            ));
        }
        let production = profile == Profile::Production;

        let cluster_name = text("cluster_name")?.unwrap_or_else(|| "foundation".to_owned());
        if cluster_name.len() > 255
            || !cluster_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::BadValue {
                key: "cluster_name",
                value: cluster_name,
                allowed: key_named("cluster_name").map_or("", |k| k.allowed),
                origin: self.source_of("cluster_name"),
            });
        }
        if ["kubernetes", "dns", "static", "mdns", "none", "auto"].contains(&cluster_name.as_str())
        {
            tracing::warn!(
                cluster_name = %cluster_name,
                "foundation: the cluster is named `{cluster_name}`, a discovery strategy's name: \
                 the strategy is `cluster` in foundation.toml but FOUNDATION_DISCOVERY in the \
                 environment (FOUNDATION_CLUSTER names the cluster)"
            );
        }
        let cookie = match text("cookie")? {
            Some(c) => c,
            None if production => {
                return Err(missing(
                    "cookie",
                    "the production profile defaults no secret: give the cluster's cookie"
                        .to_owned(),
                ));
            }
            None => "foundation-development".to_owned(),
        };
        let host = host.unwrap_or_else(|| "node".to_owned());
        let node_name = match text("node_name")? {
            Some(n) => n,
            None if production => vars.get("HOSTNAME").cloned().unwrap_or(host),
            None => {
                // Several runtimes in one process (tests) get names of their own.
                static STARTED: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                match STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
                    0 => format!("{host}-{}", std::process::id()),
                    n => format!("{host}-{}-{}", std::process::id(), n + 1),
                }
            }
        };
        let listen = addr("listen")?.unwrap_or_else(|| {
            let port = if production {
                foundation_cluster::node::DEFAULT_PORT
            } else {
                0
            };
            SocketAddr::from(([0, 0, 0, 0], port))
        });
        let advertise = text("advertise")?;
        let kubernetes_selector = text("kubernetes.selector")?.unwrap_or_else(|| {
            format!(
                "{}={cluster_name}",
                foundation_cluster::discovery::KUBERNETES_CLUSTER_LABEL
            )
        });
        let silence = Duration::from_millis(number("silence_ms", 100)?.unwrap_or(3000));
        let http_enabled = match self.get("http.enabled") {
            None => true,
            Some((v, src)) => match v.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(bad("http.enabled", v, src)),
            },
        };
        let http_set = addr("http.listen")?;
        let http_listen_defaulted = http_set.is_none();
        let http_listen = http_enabled
            .then(|| http_set.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4380))));
        let http_token = text("http.token")?;
        let pubsub_name = text("pubsub.name")?.unwrap_or_else(|| "foundation".to_owned());
        let cache_max_entries = number("cache.max_entries", 1)?.unwrap_or(10_000);
        let shutdown_timeout = number("shutdown.timeout_ms", 0)?
            .map_or(DEFAULT_SHUTDOWN_TIMEOUT, Duration::from_millis);
        let tls = match &self.tls {
            Some(t) => Some(t.clone()),
            None => self.tls_from_keys(&cluster_name)?,
        };

        // What the node itself checks (names, cookie), named by key.
        let mut node = foundation_cluster::node::NodeConfig::new(&node_name, &cookie)
            .cluster(&cluster_name)
            .listen(listen)
            .silence(silence);
        if let Some(a) = &advertise {
            node = node.advertise(a);
        }
        if let Err(e) = node.validate() {
            let setting = match &e {
                foundation_cluster::node::ConfigError::Bad { setting, .. } => *setting,
                foundation_cluster::node::ConfigError::Missing(s) => s,
                _ => "",
            };
            let key = match setting {
                "name" => "node_name",
                "cookie" => "cookie",
                "cluster" => "cluster_name",
                "advertise" => "advertise",
                "silence" | "heartbeat" => "silence_ms",
                _ => "listen",
            };
            let value = match key {
                "node_name" => node_name.clone(),
                "cookie" => "<hidden>".to_owned(),
                "cluster_name" => cluster_name.clone(),
                "advertise" => advertise.clone().unwrap_or_default(),
                _ => e.to_string(),
            };
            return Err(ConfigError::BadValue {
                key,
                value,
                allowed: key_named(key).map_or("", |k| k.allowed),
                origin: self.source_of(key),
            });
        }

        Ok(Config {
            profile,
            profile_reason,
            discovery,
            discovery_reason,
            cluster_name,
            node_name,
            cookie,
            listen,
            advertise,
            peers,
            unused,
            dns_query,
            kubernetes_pod: (!self.values.contains_key("kubernetes.selector")
                && !self.values.contains_key("cluster_name"))
            .then(|| vars.get("HOSTNAME").cloned())
            .flatten(),
            kubernetes_selector,
            silence,
            http_listen,
            http_listen_defaulted,
            http_token,
            pubsub_name,
            cache_max_entries,
            shutdown_timeout,
            file,
            sources: self
                .values
                .iter()
                .map(|(k, (_, src))| (*k, src.clone()))
                .collect(),
            tls,
        })
    }

    fn source_of(&self, key: &'static str) -> Source {
        self.get(key).map_or(Source::Default, |(_, s)| s.clone())
    }
}

impl Config {
    /// Whether the node's connections are TLS (the `tls.*` keys, or
    /// [`Builder::tls`](crate::runtime::Builder::tls)).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The node's settings this configuration gives.
    ///
    /// A node listening on every interface advertises the host's first address that is
    /// not loopback (IPv4 first), unless `advertise` says otherwise: peers on other hosts
    /// dial it back there.
    pub fn node_config(&self) -> foundation_cluster::node::NodeConfig {
        let mut node = foundation_cluster::node::NodeConfig::new(&self.node_name, &self.cookie)
            .cluster(&self.cluster_name)
            .listen(self.listen)
            .silence(self.silence);
        // Broadcasts on a channel of their own: a flood never delays calls or heartbeats.
        node = node.channel(
            foundation_pubsub::CHANNEL,
            foundation_pubsub::channel_config(),
        );
        if self.listen.ip().is_unspecified() {
            if let Some(ip) = host_ip() {
                node = node.advertise_ip(ip);
            }
        }
        if let Some(a) = &self.advertise {
            node = node.advertise(a);
        }
        if let Some(tls) = &self.tls {
            node = node.tls(tls.clone());
        }
        node
    }
}

/// The host's first address that is not loopback, IPv4 first.
fn host_ip() -> Option<std::net::IpAddr> {
    let addrs = if_addrs::get_if_addrs().ok()?;
    let usable = |v4: bool| {
        addrs
            .iter()
            .map(if_addrs::Interface::ip)
            .find(|ip| !ip.is_loopback() && ip.is_ipv4() == v4 && !is_link_local(ip))
    };
    usable(true).or_else(|| usable(false))
}

fn is_link_local(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The configuration reference, generated from [`KEYS`]: the table in
/// `docs/configuration.md` (a test checks the page holds it).
pub fn reference() -> String {
    let mut out = String::from(
        "| key (`foundation.toml`) | environment variable | accepts | default | what |\n|---|---|---|---|---|\n",
    );
    for k in KEYS {
        let doc = k
            .doc
            .replace("(crate::Foundation::pubsub)", "")
            .replace("(crate::Foundation::cache)", "");
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} |\n",
            k.name, k.env, k.allowed, k.default, doc
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn resolve(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = vars(env);
        let mut layers = Layers::default();
        layers.env(&env)?;
        layers.file(Path::new("foundation.toml"), file)?;
        layers.resolve(&env, Some("laptop".to_owned()), None)
    }

    #[test]
    fn nothing_set_is_development_with_mdns() {
        let c = resolve("", &[]).unwrap();
        assert_eq!(c.profile, Profile::Development);
        assert_eq!(c.discovery, Discovery::Mdns);
        assert_eq!(c.cookie, "foundation-development");
        assert!(
            c.node_name
                .starts_with(&format!("laptop-{}", std::process::id())),
            "{}",
            c.node_name
        );
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.http_listen, Some("127.0.0.1:4380".parse().unwrap()));
        assert!(
            c.discovery_reason.contains("mDNS"),
            "{}",
            c.discovery_reason
        );
    }

    #[test]
    fn one_line_is_enough_for_production_in_kubernetes() {
        let env = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("HOSTNAME", "app-7d9c-x2"),
            ("FOUNDATION_COOKIE", "s3cret"),
        ];
        let c = resolve("cluster = \"kubernetes\"\n", &env).unwrap();
        assert_eq!(c.profile, Profile::Production);
        assert_eq!(c.discovery, Discovery::Kubernetes);
        assert_eq!(c.node_name, "app-7d9c-x2");
        assert_eq!(c.listen, "0.0.0.0:4370".parse().unwrap());
        assert_eq!(c.kubernetes_selector, "foundation/cluster=foundation");
        // With no cluster_name, the peers are the pods labelled as this one.
        assert_eq!(c.kubernetes_pod.as_deref(), Some("app-7d9c-x2"));
        let named = resolve("cluster = \"kubernetes\"\ncluster_name = \"shop\"\n", &env).unwrap();
        assert_eq!(named.kubernetes_selector, "foundation/cluster=shop");
        assert_eq!(named.kubernetes_pod, None);
        // And detected with no line at all.
        let c = resolve("", &env).unwrap();
        assert_eq!(c.discovery, Discovery::Kubernetes);
        assert!(c.discovery_reason.contains("KUBERNETES_SERVICE_HOST"));
    }

    #[test]
    fn production_defaults_no_secret() {
        let err = resolve("cluster = \"kubernetes\"", &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing { key: "cookie", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("FOUNDATION_COOKIE"), "{err}");
        let err = resolve("profile = \"production\"", &[("FOUNDATION_COOKIE", "c")]).unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing { key: "cluster", .. }),
            "{err}"
        );
    }

    #[test]
    fn env_wins_over_the_file_and_code_over_both() {
        let env = vars(&[("FOUNDATION_NODE_NAME", "from-env")]);
        let mut layers = Layers::default();
        layers.set("node_name", "from-code".to_owned()).unwrap();
        layers.env(&env).unwrap();
        layers
            .file(
                Path::new("f.toml"),
                "node_name = \"from-file\"\ncluster_name = \"c1\"",
            )
            .unwrap();
        let c = layers.resolve(&env, None, None).unwrap();
        assert_eq!(c.node_name, "from-code");
        assert_eq!(c.cluster_name, "c1");
        assert_eq!(c.sources["node_name"], Source::Code);
        assert_eq!(c.sources["cluster_name"], Source::File("f.toml".into()));

        let mut layers = Layers::default();
        layers.env(&env).unwrap();
        layers
            .file(Path::new("f.toml"), "node_name = \"from-file\"")
            .unwrap();
        let c = layers.resolve(&env, None, None).unwrap();
        assert_eq!(c.node_name, "from-env");
        assert_eq!(c.sources["node_name"], Source::Env("FOUNDATION_NODE_NAME"));
    }

    #[test]
    fn an_unknown_key_names_the_closest_known_one() {
        let err = resolve("clustr = \"dns\"", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown key `clustr` in foundation.toml: did you mean `cluster`?"
        );
        let err = resolve("[http]\nlisen = \"1.2.3.4:1\"", &[]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::UnknownKey {
                    suggestion: Some("http.listen"),
                    ..
                }
            ),
            "{err}"
        );
        let err = resolve("", &[("FOUNDATION_PEER", "a:1")]).unwrap_err();
        assert!(
            err.to_string().contains("did you mean `FOUNDATION_PEERS`?"),
            "{err}"
        );
        let err = resolve("completely_unrelated_thing = 1", &[]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::UnknownKey {
                    suggestion: None,
                    ..
                }
            ),
            "{err}"
        );
        let mut layers = Layers::default();
        let err = layers.set("cokie", "x".to_owned()).unwrap_err();
        assert!(err.to_string().contains("`cookie`"), "{err}");
        // The application's own variables are left alone, and so are those Kubernetes
        // sets for a Service named `foundation`.
        resolve(
            "",
            &[
                ("FOUNDATION_APP_COLOR", "blue"),
                ("FOUNDATION_SERVICE_HOST", "10.0.0.9"),
                ("FOUNDATION_SERVICE_PORT_HTTP", "4380"),
                ("FOUNDATION_PORT", "tcp://10.0.0.9:4370"),
                ("FOUNDATION_PORT_4370_TCP_ADDR", "10.0.0.9"),
            ],
        )
        .unwrap();
    }

    #[test]
    fn suggestions_cover_keys_given_without_their_table_or_by_their_variable() {
        let hint = |file: &str| match resolve(file, &[]).unwrap_err() {
            ConfigError::UnknownKey { suggestion, .. } => suggestion,
            other => panic!("{other}"),
        };
        assert_eq!(hint("token = \"x\""), Some("http.token"));
        assert_eq!(hint("max_entries = 5"), Some("cache.max_entries"));
        assert_eq!(hint("discovery = \"dns\""), Some("cluster"));
        assert_eq!(hint("FOUNDATION_COOKIE = \"c\""), Some("cookie"));
        assert_eq!(hint("[http]\ncookie = \"c\""), Some("cookie"));
        let env_hint = |var: &str| match resolve("", &[(var, "x")]).unwrap_err() {
            ConfigError::UnknownKey { suggestion, .. } => suggestion,
            other => panic!("{other}"),
        };
        assert_eq!(
            env_hint("FOUNDATION_CLUSTER_NAME"),
            Some("FOUNDATION_CLUSTER")
        );
        assert_eq!(env_hint("FOUNDATION_HTTP_ENABLED"), Some("FOUNDATION_HTTP"));
        assert_eq!(
            env_hint("FOUNDATION_PUBSUB_NAME"),
            Some("FOUNDATION_PUBSUB")
        );
        // Port-like typos are not taken for Kubernetes' service links.
        for (var, value) in [
            ("FOUNDATION_HTTP_PORT", "5000"),
            ("FOUNDATION_PORT", "4370"),
            ("FOUNDATION_LISTEN_PORT", "1"),
            ("FOUNDATION_COOKIE_SERVICE_HOST", "x"),
            ("FOUNDATION_PORT_4370_TCP_ADDR", "nope"),
        ] {
            assert!(
                matches!(
                    resolve("", &[(var, value)]),
                    Err(ConfigError::UnknownKey { .. })
                ),
                "{var}={value} was ignored"
            );
        }
    }

    #[test]
    fn names_follow_the_nodes_rules_and_default_names_differ_in_one_process() {
        for file in [
            "cluster_name = \"my cluster!\"",
            "cluster_name = \"a/b=c,d\"",
            "node_name = \"a@b\"",
        ] {
            let err = resolve(file, &[]).unwrap_err();
            assert!(matches!(err, ConfigError::BadValue { .. }), "{file}: {err}");
            assert!(err.to_string().contains("letters, digits"), "{err}");
        }
        let a = resolve("", &[]).unwrap().node_name;
        let b = resolve("", &[]).unwrap().node_name;
        assert_ne!(a, b);
    }

    #[test]
    fn a_bad_value_names_key_value_source_and_what_is_allowed() {
        let err = resolve("cluster = \"consul\"", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for `cluster` in foundation.toml: `consul` is not `auto`, `kubernetes`, `dns`, `static`, `mdns` or `none`"
        );
        let err = resolve("", &[("FOUNDATION_HTTP_LISTEN", "localhost")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for `http.listen` in the environment variable FOUNDATION_HTTP_LISTEN: `localhost` is not an `ip:port` address"
        );
        for file in [
            "silence_ms = 5",
            "silence_ms = \"soon\"",
            "cache.max_entries = 0",
            "[http]\nenabled = \"yes\"",
            "peers = [1, 2]",
            "peers = \"\"",
            "listen = 4370",
            "node_name = \"\"",
            "node_name = \"has space\"",
            "profile = \"staging\"",
            "[http]\ntoken = \"\"",
        ] {
            let err = resolve(file, &[]).unwrap_err();
            assert!(matches!(err, ConfigError::BadValue { .. }), "{file}: {err}");
        }
        let err = resolve("cluster = [", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn strategies_need_their_settings() {
        let err = resolve("cluster = \"static\"\ncookie = \"c\"", &[]).unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing { key: "peers", .. }),
            "{err}"
        );
        let err = resolve("cluster = \"dns\"\ncookie = \"c\"", &[]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Missing {
                    key: "dns_query",
                    ..
                }
            ),
            "{err}"
        );
        let c = resolve(
            "peers = [\"10.0.0.1:4370\", \"10.0.0.2:4370\"]\ncookie = \"c\"",
            &[],
        )
        .unwrap();
        assert_eq!(
            (c.discovery, c.profile),
            (Discovery::Static, Profile::Production)
        );
        assert_eq!(c.peers.len(), 2);
        let c = resolve(
            "profile = \"development\"\ncluster = \"none\"\n[http]\nenabled = false",
            &[],
        )
        .unwrap();
        assert_eq!(c.discovery, Discovery::None);
        assert_eq!(c.http_listen, None);
        assert!(c.unused.is_empty());
        // Seeds in the file, and another strategy from the environment: the seeds are not
        // used, and that is said.
        let c = resolve(
            "peers = [\"10.0.0.1:4370\"]\ndns_query = \"nodes.local\"",
            &[("FOUNDATION_DISCOVERY", "none")],
        )
        .unwrap();
        assert_eq!(c.discovery, Discovery::None);
        assert_eq!(c.unused.len(), 2, "{:?}", c.unused);
        assert!(
            c.unused[0].starts_with("`peers` (from ") && c.unused[0].contains("`none`"),
            "{:?}",
            c.unused
        );
        assert!(c.unused[1].starts_with("`dns_query`"), "{:?}", c.unused);
    }

    #[test]
    fn tls_keys_come_together_and_are_checked_before_any_file_is_read() {
        // No `tls.*` key: no TLS.
        assert!(!resolve("", &[]).unwrap().tls());
        let err = resolve("[tls]\ncert = \"/nowhere/node.pem\"", &[]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::Missing {
                    key: "tls.key",
                    env: "FOUNDATION_TLS_KEY",
                    ..
                }
            ),
            "{err}"
        );
        let err = resolve("", &[("FOUNDATION_TLS_KEY", "/nowhere/node.key")]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::Missing {
                    key: "tls.cert",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("FOUNDATION_TLS_KEY"), "{err}");
        // A CA alone would leave the node in plain TCP: refused.
        let err = resolve("[tls]\nca = \"/nowhere/ca.pem\"", &[]).unwrap_err();
        assert!(
            matches!(
                &err,
                ConfigError::Missing {
                    key: "tls.cert",
                    ..
                }
            ),
            "{err}"
        );
        let both = "[tls]\ncert = \"/nowhere/node.pem\"\nkey = \"/nowhere/node.key\"\n";
        let err = resolve(both, &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Missing { key: "tls.ca", .. }),
            "{err}"
        );
        let with_ca = format!("{both}ca = \"/nowhere/ca.pem\"\n");
        for (extra, key) in [
            ("mutual = \"yes\"", "tls.mutual"),
            ("server_name = \"not a name!\"", "tls.server_name"),
            ("cert = \"\"", "tls.cert"),
        ] {
            let file = if extra.starts_with("cert") {
                format!("[tls]\n{extra}\nkey = \"k\"\nca = \"c\"\n")
            } else {
                format!("{with_ca}{extra}\n")
            };
            let err = resolve(&file, &[]).unwrap_err();
            assert!(
                matches!(&err, ConfigError::BadValue { key: k, .. } if *k == key),
                "{file}: {err}"
            );
        }
        // The server name defaults to the cluster's name, and is checked as one.
        let err = resolve(&format!("cluster_name = \"shop-\"\n{with_ca}"), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::BadValue { key: "tls.server_name", value, .. } if value == "shop-"),
            "{err}"
        );
        // Then the files: the first one read is named with its key and source.
        let err = resolve(&with_ca, &[]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::TlsFile {
                key: "tls.cert",
                path: "/nowhere/node.pem".into(),
                origin: Source::File("foundation.toml".into()),
                error: TlsFileError::NotFound,
            }
        );
        assert_eq!(
            err.to_string(),
            "`tls.cert` in foundation.toml: /nowhere/node.pem: no such file"
        );
    }

    #[test]
    fn every_key_has_a_distinct_foundation_variable_known_to_the_node() {
        let mut envs: Vec<&str> = KEYS.iter().map(|k| k.env).collect();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), KEYS.len());
        for k in KEYS {
            assert!(k.env.starts_with("FOUNDATION_"), "{}", k.env);
            // The node's typo check must not warn about the runtime's variables.
            assert!(
                foundation_cluster::node::ENV_VARIABLES.contains(&k.env),
                "{} is missing from foundation_cluster::node::ENV_VARIABLES",
                k.env
            );
        }
        assert!(foundation_cluster::node::ENV_VARIABLES.contains(&CONFIG_FILE_VARIABLE));
    }

    #[test]
    fn the_configuration_page_holds_the_generated_reference() {
        let page = include_str!("../../../../docs/configuration.md");
        let table = reference();
        assert!(
            page.contains(&table),
            "docs/configuration.md is out of date: replace its table with\n{table}"
        );
    }
}
