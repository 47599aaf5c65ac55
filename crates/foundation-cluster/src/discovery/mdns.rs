//! The mDNS strategy: advertise this node and browse for the others on the local network.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use mdns_sd::{DaemonEvent, IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use super::report::Reporter;
use super::{DiscoveryError, Peer, Sighting, Strategy};

/// The DNS-SD service type every Foundation node advertises and browses.
pub const MDNS_SERVICE_TYPE: &str = "_foundation._tcp.local.";

/// The UDP port of multicast DNS (RFC 6762).
const MDNS_PORT: u16 = 5353;

const NAME: &str = "mdns";

/// TXT record keys. Short, as every byte of a TXT record goes in every announcement.
const TXT_NODE: &str = "node";
const TXT_CLUSTER: &str = "cluster";
const TXT_VERSION: &str = "version";
const TXT_CAPABILITIES: &str = "caps";

/// How long a clean stop waits for the daemon to say its goodbye packets are out.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

/// The mDNS strategy: advertises this node as a `_foundation._tcp.local.` service and
/// reports the other nodes of the same cluster that advertise themselves so.
///
/// # Advertisement
///
/// The service instance is named after the node and carries TXT records `node` (the node
/// name), `cluster`, `version` and `caps` (capabilities, comma-separated). Its addresses
/// are those of the interfaces mDNS runs on, kept up to date as they change.
///
/// # What is reported
///
/// Every instance of the service type whose `cluster` record equals this node's cluster and
/// whose `node` record is not this node's name, as one [`Peer`] per instance: the
/// advertised port, at the instance's best address (an IPv4 address that is neither
/// loopback nor link-local first, then a global IPv6 address, then the rest, loopback
/// last). A sighting with the whole set is sent whenever the set changes: when an instance
/// appears, changes address or leaves (its goodbye packet, or the expiry of its records).
///
/// # Stopping
///
/// When the node stops (the report channel closes), the service is unregistered (peers
/// receive a goodbye and drop this node at once) and the mDNS daemon is shut down. If the
/// task is aborted instead, the same is asked of the daemon without waiting.
///
/// # Examples
///
/// ```no_run
/// use foundation_cluster::discovery::{Mdns, Strategy};
/// use tokio::sync::mpsc;
///
/// # async fn example() -> Result<(), foundation_cluster::discovery::DiscoveryError> {
/// let mdns = Mdns::new("node-a", "orders", 4369).capabilities(["cache", "pubsub"]);
/// let (tx, mut rx) = mpsc::channel(16);
/// tokio::spawn(Box::new(mdns).run(tx));
/// while let Some(sighting) = rx.recv().await {
///     println!("{} sees {:?}", sighting.strategy, sighting.peers);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Mdns {
    node_name: String,
    cluster: String,
    port: u16,
    version: String,
    capabilities: Vec<String>,
    interfaces: Vec<String>,
    mdns_port: u16,
}

impl Mdns {
    /// A strategy that advertises node `node_name` of cluster `cluster`, reachable on TCP
    /// `port`, on every interface, with this crate's version and no capabilities.
    pub fn new(node_name: impl Into<String>, cluster: impl Into<String>, port: u16) -> Self {
        Self {
            node_name: node_name.into(),
            cluster: cluster.into(),
            port,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capabilities: Vec::new(),
            interfaces: Vec::new(),
            mdns_port: MDNS_PORT,
        }
    }

    /// Advertises `version` instead of this crate's version.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Advertises these capabilities (the roles or services this node offers). None may
    /// contain a comma, as the record lists them separated by commas.
    #[must_use]
    pub fn capabilities<I, S>(mut self, capabilities: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capabilities = capabilities.into_iter().map(Into::into).collect();
        self
    }

    /// Runs mDNS on this network interface only (by name: `eth0`, `lo`), and on the others
    /// given by further calls; by default it runs on all of them, loopback included.
    #[must_use]
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interfaces.push(name.into());
        self
    }

    /// Uses UDP port `port` for mDNS instead of the standard 5353. Only nodes on the same
    /// port see each other: this keeps tests, or several clusters on one network, apart.
    #[must_use]
    pub fn mdns_port(mut self, port: u16) -> Self {
        self.mdns_port = port;
        self
    }

    /// This node's service record, or why the settings cannot be advertised.
    fn service_info(&self) -> Result<ServiceInfo, DiscoveryError> {
        let bad = |why: String| DiscoveryError::BadConfig {
            strategy: NAME,
            why,
        };
        if self.node_name.trim().is_empty() {
            return Err(bad("the node name is empty".to_owned()));
        }
        // An instance name is one DNS label.
        if self.node_name.len() > 63 {
            return Err(bad(format!(
                "the node name `{}` is longer than the 63 bytes of an mDNS instance name",
                self.node_name
            )));
        }
        if self.cluster.trim().is_empty() {
            return Err(bad("the cluster name is empty".to_owned()));
        }
        if self.port == 0 {
            return Err(bad("the node's port is 0".to_owned()));
        }
        if let Some(cap) = self
            .capabilities
            .iter()
            .find(|c| c.is_empty() || c.contains(','))
        {
            return Err(bad(format!(
                "capability `{cap}` is empty or has a comma, which separates capabilities in the TXT record"
            )));
        }
        let props = [
            (TXT_NODE, self.node_name.clone()),
            (TXT_CLUSTER, self.cluster.clone()),
            (TXT_VERSION, self.version.clone()),
            (TXT_CAPABILITIES, self.capabilities.join(",")),
        ];
        let host = format!("{}.local.", host_label(&self.node_name));
        let mut info = ServiceInfo::new(
            MDNS_SERVICE_TYPE,
            &self.node_name,
            &host,
            (),
            self.port,
            &props[..],
        )
        // mdns-sd refuses TXT entries over 255 bytes, with a message that names the key.
        .map_err(|e| bad(e.to_string()))?
        .enable_addr_auto();
        if !self.interfaces.is_empty() {
            info.set_interfaces(self.interface_kinds());
        }
        Ok(info)
    }

    fn interface_kinds(&self) -> Vec<IfKind> {
        self.interfaces
            .iter()
            .map(|name| IfKind::Name(name.clone()))
            .collect()
    }

    /// The peer an instance stands for, if it is another node of our cluster.
    fn peer_of(&self, service: &ResolvedService) -> Option<Peer> {
        let node = service.get_property_val_str(TXT_NODE);
        let cluster = service.get_property_val_str(TXT_CLUSTER);
        if cluster != Some(self.cluster.as_str()) {
            tracing::trace!(
                instance = service.get_fullname(),
                ?cluster,
                "mdns: not of our cluster"
            );
            return None;
        }
        if node == Some(self.node_name.as_str()) {
            return None;
        }
        let best = service
            .get_addresses()
            .iter()
            .map(mdns_sd::ScopedIp::to_ip_addr)
            .min_by_key(|ip| (address_rank(ip), *ip))?;
        Some(Peer {
            host: best.to_string(),
            port: service.get_port(),
        })
    }

    async fn run_inner(self, report: mpsc::Sender<Sighting>) -> Result<(), DiscoveryError> {
        let failed = |what: &str, e: mdns_sd::Error| DiscoveryError::Failed {
            strategy: NAME,
            why: format!("{what}: {e}"),
        };
        let info = self.service_info()?;
        let fullname = info.get_fullname().to_owned();
        let daemon = ServiceDaemon::new_with_port(self.mdns_port)
            .map_err(|e| failed("starting the mDNS daemon", e))?;
        let mut running = Running {
            daemon: daemon.clone(),
            fullname: None,
        };
        if !self.interfaces.is_empty() {
            daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(self.interface_kinds()))
                .map_err(|e| failed("choosing interfaces", e))?;
        }
        let monitor = daemon
            .monitor()
            .map_err(|e| failed("watching the daemon", e))?;
        daemon
            .register(info)
            .map_err(|e| failed("advertising this node", e))?;
        running.fullname = Some(fullname.clone());
        let mut events = daemon
            .browse(MDNS_SERVICE_TYPE)
            .map_err(|e| failed("browsing", e))?;
        tracing::info!(
            node = %self.node_name, cluster = %self.cluster, port = self.port, mdns_port = self.mdns_port,
            "mdns: advertising {fullname} and browsing for peers"
        );

        // Instance full name -> the peer it stands for, for the instances we report.
        let mut seen: BTreeMap<String, Peer> = BTreeMap::new();
        let mut reporter = Reporter::new(NAME, report);
        loop {
            let changed = tokio::select! {
                () = reporter.closed() => break,
                event = events.recv_async() => match event {
                    Ok(ServiceEvent::ServiceResolved(service)) => match self.peer_of(&service) {
                        Some(peer) => seen.insert(service.get_fullname().to_owned(), peer.clone()) != Some(peer),
                        // An instance that changed its cluster record leaves our set.
                        None => seen.remove(service.get_fullname()).is_some(),
                    },
                    Ok(ServiceEvent::ServiceRemoved(_, name)) => seen.remove(&name).is_some(),
                    Ok(_) => false,
                    Err(_) => {
                        // The daemon drops a subscription whose channel is full. Browse again:
                        // the daemon answers from its cache and queries again, so the set is
                        // rebuilt, and removals missed meanwhile cannot linger in it.
                        tracing::warn!("mdns: the daemon dropped our browse subscription; browsing again");
                        events = daemon
                            .browse(MDNS_SERVICE_TYPE)
                            .map_err(|e| failed("browsing again", e))?;
                        seen.clear();
                        false
                    }
                },
                event = monitor.recv_async() => match event {
                    Ok(DaemonEvent::Error(e)) => {
                        tracing::warn!("mdns: the daemon reports: {e}");
                        false
                    }
                    Ok(_) => false,
                    Err(_) => {
                        return Err(DiscoveryError::Failed {
                            strategy: NAME,
                            why: "the mDNS daemon stopped".to_owned(),
                        });
                    }
                },
            };
            if changed && !reporter.send(seen.values().cloned().collect()).await {
                break;
            }
        }
        running.stop().await;
        Ok(())
    }
}

impl Strategy for Mdns {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(
        self: Box<Self>,
        report: mpsc::Sender<Sighting>,
    ) -> BoxFuture<'static, Result<(), DiscoveryError>> {
        Box::pin(self.run_inner(report))
    }
}

/// The daemon while the strategy runs: dropping it (the task aborted, or a fatal error)
/// unregisters the service and shuts the daemon down without waiting.
struct Running {
    daemon: ServiceDaemon,
    /// The registered instance, once registered.
    fullname: Option<String>,
}

impl Running {
    /// Unregisters (waiting a little for the goodbye packets to be sent) and shuts down.
    async fn stop(mut self) {
        if let Some(fullname) = self.fullname.take() {
            match self.daemon.unregister(&fullname) {
                Ok(done) => {
                    if tokio::time::timeout(GOODBYE_WAIT, done.recv_async())
                        .await
                        .is_err()
                    {
                        tracing::debug!(
                            "mdns: no word from the daemon on unregistering {fullname}"
                        );
                    }
                }
                Err(e) => tracing::debug!("mdns: could not unregister {fullname}: {e}"),
            }
        }
        // Drop shuts the daemon down.
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The daemon runs its commands in order, so the goodbye goes out before it exits.
        if let Some(fullname) = self.fullname.take() {
            if let Err(e) = self.daemon.unregister(&fullname) {
                tracing::debug!("mdns: could not unregister {fullname}: {e}");
            }
        }
        if let Err(e) = self.daemon.shutdown() {
            tracing::debug!("mdns: could not shut the daemon down: {e}");
        }
    }
}

/// A host name label for the node: mDNS host names are DNS labels (letters, digits, `-`).
fn host_label(node_name: &str) -> String {
    let label: String = node_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() {
        "foundation-node".to_owned()
    } else {
        label.to_owned()
    }
}

/// Lower is better: which of an instance's addresses to connect to.
fn address_rank(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => 5,
        IpAddr::V4(v4) if v4.is_link_local() => 2,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_loopback() => 6,
        // Link-local IPv6 needs a scope (interface) that a `Peer` cannot carry.
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => 7,
        IpAddr::V6(_) => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_before_any_network_use() {
        for (mdns, why) in [
            (Mdns::new("", "c", 1), "the node name is empty"),
            (Mdns::new("a", " ", 1), "the cluster name is empty"),
            (Mdns::new("a", "c", 0), "the node's port is 0"),
            (Mdns::new("a", "c", 1).capabilities(["x,y"]), "has a comma"),
            (Mdns::new("a".repeat(64), "c", 1), "63 bytes"),
            (Mdns::new("a", "c".repeat(300), 1), "255"),
        ] {
            match mdns.service_info() {
                Err(DiscoveryError::BadConfig {
                    strategy: "mdns",
                    why: got,
                }) => {
                    assert!(got.contains(why), "{got}");
                }
                other => panic!("expected BadConfig({why}), got {other:?}"),
            }
        }
    }

    #[test]
    fn the_record_carries_node_cluster_version_and_capabilities() {
        let info = Mdns::new("Node A_1", "orders", 4369)
            .version("1.2.3")
            .capabilities(["cache", "pubsub"])
            .service_info()
            .unwrap();
        assert_eq!(info.get_fullname(), "Node A_1._foundation._tcp.local.");
        assert_eq!(info.get_hostname(), "node-a-1.local.");
        assert_eq!(info.get_port(), 4369);
        for (key, value) in [
            ("node", "Node A_1"),
            ("cluster", "orders"),
            ("version", "1.2.3"),
            ("caps", "cache,pubsub"),
        ] {
            assert_eq!(info.get_property_val_str(key), Some(value), "{key}");
        }
    }

    #[test]
    fn routable_v4_addresses_win_and_loopback_comes_last() {
        let mut ips: Vec<IpAddr> = [
            "127.0.0.1",
            "::1",
            "fe80::1",
            "2001:db8::1",
            "169.254.1.1",
            "10.0.0.7",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        ips.sort_by_key(|ip| (address_rank(ip), *ip));
        let shown: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "10.0.0.7",
                "2001:db8::1",
                "169.254.1.1",
                "127.0.0.1",
                "::1",
                "fe80::1"
            ]
        );
    }
}
