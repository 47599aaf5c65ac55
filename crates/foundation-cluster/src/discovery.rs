//! How a node finds its peers: the strategies' common shape, the strategies, and the
//! choice of strategy from the environment.
//!
//! # Strategies
//!
//! Each runs as one task that reports a [`Sighting`] (every peer it sees) whenever that
//! changes, retries transient failures itself, and ends when the node stops listening or
//! it cannot go on:
//!
//! - [`Static`]: a fixed list of seeds.
//! - [`Mdns`]: advertises this node on the local network and finds the others of its
//!   cluster (multicast DNS, service type [`MDNS_SERVICE_TYPE`]).
//! - [`Dns`]: polls the addresses of a name, such as a Kubernetes headless service.
//! - `Kubernetes` (feature `kubernetes`, on by default): polls the API server for the pods
//!   of a label selector, or the ready endpoints of a service.
//!
//! # Choosing a strategy
//!
//! With no configuration, [`detect`] picks, in this order (the first that applies wins,
//! and the reason is returned to be logged):
//!
//! | environment | strategy |
//! |---|---|
//! | `KUBERNETES_SERVICE_HOST` set | Kubernetes |
//! | `FOUNDATION_PEERS` set | static seeds, from that list |
//! | `FOUNDATION_DNS_QUERY` set | DNS, that name |
//! | none of these | mDNS on the local network |
//!
//! A variable that is set but malformed is an error, never a silent fallback to the next
//! strategy: a typo in production must not turn into mDNS.
//!
//! # Examples
//!
//! ```
//! use foundation_cluster::discovery::{Choice, detect};
//!
//! let env = |name: &str| (name == "FOUNDATION_PEERS").then(|| "10.0.0.1:4369, node-b.internal:4369".to_string());
//! let (choice, why) = detect(env)?;
//! assert!(matches!(choice, Choice::Static(ref seeds) if seeds.len() == 2));
//! assert!(why.contains("FOUNDATION_PEERS"));
//! # Ok::<(), foundation_cluster::discovery::DiscoveryError>(())
//! ```

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

mod dns;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod mdns;
mod report;

pub use dns::Dns;
#[cfg(feature = "kubernetes")]
pub use kubernetes::Kubernetes;
pub use mdns::{MDNS_SERVICE_TYPE, Mdns};

/// A peer to connect to: a host name or IP address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Peer {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Peer {
    type Err = DiscoveryError;

    /// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &'static str| DiscoveryError::BadPeer {
            peer: s.to_owned(),
            why,
        };
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("expected `[address]:port`"))?;
            (host, port)
        } else {
            let (host, port) = s
                .rsplit_once(':')
                .ok_or_else(|| bad("expected `host:port`"))?;
            if host.contains(':') {
                return Err(bad("write an IPv6 address in brackets: `[::1]:4369`"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(bad(
                "the host has characters a host name or address cannot have",
            ));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// A discovery strategy, as chosen by [`detect`] or by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Pods of this node's namespace, through the Kubernetes API.
    Kubernetes,
    /// A fixed list of seeds.
    Static(Vec<Peer>),
    /// The A/AAAA records of a name (a headless service), polled.
    Dns(String),
    /// mDNS on the local network.
    Mdns,
}

/// Why discovery could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A peer address does not parse.
    #[error("bad peer address `{peer}`: {why}")]
    BadPeer {
        /// What was given.
        peer: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A strategy cannot go on (its API refused the node, its socket could not be opened).
    #[error("discovery strategy `{strategy}` stopped: {why}")]
    Failed {
        /// The strategy's name.
        strategy: &'static str,
        /// What went wrong.
        why: String,
    },
    /// A strategy's settings cannot work (an empty node name, a TXT record too long for
    /// mDNS, a malformed name to resolve). Found before the strategy touches the network.
    #[error("discovery strategy `{strategy}` is misconfigured: {why}")]
    BadConfig {
        /// The strategy's name.
        strategy: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A variable is set but says nothing usable.
    #[error("{variable} is set but {why}")]
    BadVariable {
        /// The environment variable.
        variable: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// What a strategy reports: every peer it sees now. A report replaces that strategy's
/// previous one; the node connects to peers it is not connected to yet and keeps retrying
/// (with backoff) those it cannot reach while they are still reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The strategy's [`Strategy::name`].
    pub strategy: &'static str,
    /// The peers it sees, without duplicates.
    pub peers: Vec<Peer>,
}

/// A way of finding peers. Several may run at once; the node merges their reports.
///
/// A strategy runs as one task: [`Strategy::run`] reports through `report` whenever what
/// it sees changes (or on every poll), and returns only when `report` is closed (the node
/// stopped) or when it cannot go on, with the reason. Transient failures (an API server
/// that does not answer one poll) are logged and retried by the strategy itself; they do
/// not end it.
pub trait Strategy: Send + 'static {
    /// A short name for logs and [`Sighting::strategy`]: `static`, `mdns`, `kubernetes`, `dns`.
    fn name(&self) -> &'static str;

    /// Runs until `report` closes or the strategy cannot go on.
    fn run(
        self: Box<Self>,
        report: mpsc::Sender<Sighting>,
    ) -> BoxFuture<'static, Result<(), DiscoveryError>>;
}

/// The static strategy: a fixed list of seeds, reported once and again every `every`, so
/// that a node restarted behind the same address is found again.
#[derive(Debug, Clone)]
pub struct Static {
    seeds: Vec<Peer>,
    every: Duration,
}

impl Static {
    /// A strategy that reports `seeds` (duplicates count once) every 5 s.
    pub fn new(mut seeds: Vec<Peer>) -> Self {
        seeds.sort();
        seeds.dedup();
        Self {
            seeds,
            every: Duration::from_secs(5),
        }
    }

    /// Reports every `every` instead of every 5 s.
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(1));
        self
    }
}

impl Strategy for Static {
    fn name(&self) -> &'static str {
        "static"
    }

    fn run(
        self: Box<Self>,
        report: mpsc::Sender<Sighting>,
    ) -> BoxFuture<'static, Result<(), DiscoveryError>> {
        Box::pin(async move {
            loop {
                let sighting = Sighting {
                    strategy: "static",
                    peers: self.seeds.clone(),
                };
                if report.send(sighting).await.is_err() {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(self.every) => {}
                    () = report.closed() => return Ok(()),
                }
            }
        })
    }
}

/// What [`strategy_for`] needs to know about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// This node's name, unique in its cluster.
    pub node_name: String,
    /// The cluster's name: nodes of other clusters are not peers.
    pub cluster: String,
    /// The TCP port every node of the cluster listens on.
    pub port: u16,
}

impl NodeInfo {
    /// Node `node_name` of cluster `cluster`, listening on `port` as its peers do.
    pub fn new(node_name: impl Into<String>, cluster: impl Into<String>, port: u16) -> Self {
        Self {
            node_name: node_name.into(),
            cluster: cluster.into(),
            port,
        }
    }
}

/// The pod label by which the Kubernetes strategy of [`strategy_for`] finds the nodes of
/// a cluster: pods labelled `foundation/cluster: <cluster>`. A label of Foundation's own,
/// so that other pods of the same application (a database, a web front) are not taken
/// for nodes.
pub const KUBERNETES_CLUSTER_LABEL: &str = "foundation/cluster";

/// Builds the strategy `choice` names, for `node`, with each strategy's defaults: peers
/// on `node.port`; mDNS on every interface; DNS through the system's resolver; in
/// Kubernetes, the running pods of this pod's namespace labelled
/// [`KUBERNETES_CLUSTER_LABEL`]`=<cluster>`.
///
/// # Errors
///
/// [`DiscoveryError::BadConfig`] for [`Choice::Kubernetes`] when this crate is built
/// without its `kubernetes` feature.
///
/// # Examples
///
/// ```
/// use foundation_cluster::discovery::{NodeInfo, detect, strategy_for};
///
/// let (choice, why) = detect(|_| None)?;
/// let strategy = strategy_for(choice, &NodeInfo::new("node-a", "orders", 4369))?;
/// assert_eq!(strategy.name(), "mdns", "{why}");
/// # Ok::<(), foundation_cluster::discovery::DiscoveryError>(())
/// ```
pub fn strategy_for(choice: Choice, node: &NodeInfo) -> Result<Box<dyn Strategy>, DiscoveryError> {
    Ok(match choice {
        Choice::Static(seeds) => Box::new(Static::new(seeds)),
        Choice::Dns(name) => Box::new(Dns::new(name, node.port)),
        Choice::Mdns => Box::new(Mdns::new(&node.node_name, &node.cluster, node.port)),
        #[cfg(feature = "kubernetes")]
        Choice::Kubernetes => Box::new(Kubernetes::pods(
            format!("{KUBERNETES_CLUSTER_LABEL}={}", node.cluster),
            node.port,
        )),
        #[cfg(not(feature = "kubernetes"))]
        Choice::Kubernetes => {
            return Err(DiscoveryError::BadConfig {
                strategy: "kubernetes",
                why: "foundation-cluster was built without its `kubernetes` feature".to_owned(),
            });
        }
    })
}

/// Parses a comma- or whitespace-separated list of seeds; duplicates count once.
///
/// # Errors
///
/// [`DiscoveryError::BadPeer`] naming the first entry that does not parse.
pub fn parse_peers(list: &str) -> Result<Vec<Peer>, DiscoveryError> {
    let mut peers = list
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Peer>, _>>()?;
    peers.sort();
    peers.dedup();
    Ok(peers)
}

/// Chooses a strategy from the environment (`env` looks a variable up: pass
/// `|k| std::env::var(k).ok()`), and says why, for the log.
///
/// # Errors
///
/// A variable that decides the strategy is set but malformed (an empty peer list, a bad
/// address, an empty DNS name).
pub fn detect(env: impl Fn(&str) -> Option<String>) -> Result<(Choice, String), DiscoveryError> {
    if let Some(host) = env("KUBERNETES_SERVICE_HOST") {
        return Ok((
            Choice::Kubernetes,
            format!("KUBERNETES_SERVICE_HOST is set ({host}): running in Kubernetes"),
        ));
    }
    if let Some(list) = env("FOUNDATION_PEERS") {
        let peers = parse_peers(&list)?;
        if peers.is_empty() {
            return Err(DiscoveryError::BadVariable {
                variable: "FOUNDATION_PEERS",
                why: "lists no peers; give `host:port` entries separated by commas, or unset it",
            });
        }
        let why = format!("FOUNDATION_PEERS lists {} seed(s)", peers.len());
        return Ok((Choice::Static(peers), why));
    }
    if let Some(name) = env("FOUNDATION_DNS_QUERY") {
        let name = name.trim();
        if name.is_empty() {
            return Err(DiscoveryError::BadVariable {
                variable: "FOUNDATION_DNS_QUERY",
                why: "is empty; give the name of a headless service, or unset it",
            });
        }
        let why = format!("FOUNDATION_DNS_QUERY is set: polling the records of {name}");
        return Ok((Choice::Dns(name.to_owned()), why));
    }
    Ok((
        Choice::Mdns,
        "no KUBERNETES_SERVICE_HOST, FOUNDATION_PEERS or FOUNDATION_DNS_QUERY: mDNS on the local network".to_owned(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_first_applicable_strategy_wins_in_order() {
        let all = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("FOUNDATION_PEERS", "a:1"),
            ("FOUNDATION_DNS_QUERY", "svc.ns.svc.cluster.local"),
        ];
        assert_eq!(detect(env(&all)).unwrap().0, Choice::Kubernetes);
        assert_eq!(
            detect(env(&all[1..])).unwrap().0,
            Choice::Static(vec!["a:1".parse().unwrap()])
        );
        assert_eq!(
            detect(env(&all[2..])).unwrap().0,
            Choice::Dns("svc.ns.svc.cluster.local".into())
        );
        let (choice, why) = detect(env(&[])).unwrap();
        assert_eq!(choice, Choice::Mdns);
        assert!(why.contains("mDNS"), "{why}");
    }

    #[test]
    fn a_malformed_variable_is_an_error_not_a_fallback() {
        let err = detect(env(&[("FOUNDATION_PEERS", " , ")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("FOUNDATION_PEERS is set but lists no peers"),
            "{err}"
        );
        let err = detect(env(&[("FOUNDATION_PEERS", "a:1,b")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad peer address `b`: expected `host:port`"
        );
        let err = detect(env(&[("FOUNDATION_DNS_QUERY", "  ")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("FOUNDATION_DNS_QUERY is set but is empty"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_static_strategy_reports_its_seeds_again_and_stops_when_the_node_does() {
        let (tx, mut rx) = mpsc::channel(4);
        let seeds = parse_peers("b:1, a:1, b:1").unwrap();
        let task = tokio::spawn(
            Box::new(Static::new(seeds.clone()).every(Duration::from_secs(1))).run(tx),
        );
        for _ in 0..3 {
            let s = rx.recv().await.unwrap();
            assert_eq!((s.strategy, s.peers.len()), ("static", 2));
        }
        drop(rx);
        assert!(task.await.unwrap().is_ok());
    }

    #[test]
    fn each_choice_builds_its_strategy() {
        let node = NodeInfo::new("node-a", "orders", 4369);
        for (choice, name) in [
            (Choice::Static(parse_peers("a:1").unwrap()), "static"),
            (Choice::Dns("svc.local".into()), "dns"),
            (Choice::Mdns, "mdns"),
        ] {
            assert_eq!(strategy_for(choice, &node).unwrap().name(), name);
        }
        let kubernetes = strategy_for(Choice::Kubernetes, &node);
        #[cfg(feature = "kubernetes")]
        assert_eq!(kubernetes.unwrap().name(), "kubernetes");
        #[cfg(not(feature = "kubernetes"))]
        assert!(matches!(
            kubernetes.err(),
            Some(DiscoveryError::BadConfig {
                strategy: "kubernetes",
                ..
            })
        ));
    }

    #[test]
    fn peers_parse_names_v4_and_bracketed_v6() {
        let peers =
            parse_peers("b.internal:4369, 10.0.0.1:4369 [::1]:9000\n10.0.0.1:4369").unwrap();
        let shown: Vec<String> = peers.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.1:4369", "[::1]:9000", "b.internal:4369"]);
    }

    #[test]
    fn bad_peers_say_what_is_wrong() {
        for (input, why) in [
            ("host", "expected `host:port`"),
            (":4369", "the host is empty"),
            ("host:0", "the port is not a number from 1 to 65535"),
            ("host:70000", "the port is not a number from 1 to 65535"),
            ("host:x", "the port is not a number from 1 to 65535"),
            (
                "::1:4369",
                "write an IPv6 address in brackets: `[::1]:4369`",
            ),
            ("[::1:4369", "an IPv6 address needs its closing `]`"),
            ("[::1]4369", "expected `[address]:port`"),
            (
                "bad host:1",
                "the host has characters a host name or address cannot have",
            ),
        ] {
            match input.parse::<Peer>() {
                Err(DiscoveryError::BadPeer { why: got, .. }) => assert_eq!(got, why, "{input}"),
                other => panic!("{input}: expected an error, got {other:?}"),
            }
        }
    }
}
