//! The DNS strategy: poll the A/AAAA records of a name, such as a headless service.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, TokioResolver};
use tokio::sync::mpsc;

use super::report::{Poll, Poller, Reporter, Troubles, poll_every};
use super::{DiscoveryError, Peer, Sighting, Strategy};

const NAME: &str = "dns";

/// The DNS strategy: resolves a name's A and AAAA records every interval (5 s by default)
/// and reports each address, with the configured port, as a peer.
///
/// This is how a Kubernetes headless service (or any DNS-based service registry) lists its
/// pods without API access: each ready pod is one address record of the service's name.
///
/// # Resolution
///
/// By default the system's resolver configuration is used (`/etc/resolv.conf`: its name
/// servers, search domains and `ndots`); [`Dns::nameserver`] names the servers instead.
/// Answers are not cached between polls: each poll asks the servers again.
///
/// # Failures
///
/// A name that does not exist (NXDOMAIN) or has no address records is a valid answer: the
/// strategy reports no peers, logs a warning, and polls again. A server that does not
/// answer, or answers with an error, changes nothing: the previous sighting stands, the
/// failure is logged (once while it repeats), and the next poll tries again. Only a name
/// that cannot be a DNS name, or a system configuration that cannot be read, stops the
/// strategy.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use foundation_cluster::discovery::{Dns, Strategy};
/// use tokio::sync::mpsc;
///
/// # async fn example() {
/// let dns = Dns::new("orders.prod.svc.cluster.local", 4369).every(Duration::from_secs(10));
/// let (tx, mut rx) = mpsc::channel(16);
/// tokio::spawn(Box::new(dns).run(tx));
/// while let Some(sighting) = rx.recv().await {
///     println!("{:?}", sighting.peers);
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Dns {
    name: String,
    port: u16,
    every: Duration,
    nameservers: Vec<SocketAddr>,
    timeout: Option<Duration>,
}

impl Dns {
    /// A strategy that polls the addresses of `name` every 5 s and reports them with `port`.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Self {
            name: name.into(),
            port,
            every: Duration::from_secs(5),
            nameservers: Vec::new(),
            timeout: None,
        }
    }

    /// Polls every `every` instead of every 5 s.
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(1));
        self
    }

    /// Asks this name server (over UDP), and any others given by further calls, instead of
    /// those of the system's configuration. No search domains apply then.
    #[must_use]
    pub fn nameserver(mut self, server: SocketAddr) -> Self {
        self.nameservers.push(server);
        self
    }

    /// Waits `timeout` for each answer instead of the configuration's timeout (5 s unless
    /// `/etc/resolv.conf` says otherwise).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn resolver(&self) -> Result<TokioResolver, DiscoveryError> {
        let mut builder = if self.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DiscoveryError::Failed {
                strategy: NAME,
                why: format!("cannot read the system's resolver configuration: {e}"),
            })?
        } else {
            let servers: Vec<NameServerConfig> = self
                .nameservers
                .iter()
                .map(|addr| NameServerConfig::new(*addr, Protocol::Udp))
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, Vec::new(), servers),
                TokioConnectionProvider::default(),
            )
            .with_options(ResolverOpts::default())
        };
        let options = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        if let Some(timeout) = self.timeout {
            options.timeout = timeout;
        }
        Ok(builder.build())
    }

    async fn run_inner(self, report: mpsc::Sender<Sighting>) -> Result<(), DiscoveryError> {
        let name = self.checked_name()?;
        let resolver = self.resolver()?;
        tracing::info!(name = %self.name, port = self.port, every = ?self.every, "dns: polling");
        let poller = DnsPoller {
            resolver,
            name,
            port: self.port,
            troubles: Troubles::new(NAME),
        };
        poll_every(Reporter::new(NAME, report), self.every, poller).await
    }

    fn checked_name(&self) -> Result<Name, DiscoveryError> {
        let bad = |why: String| DiscoveryError::BadConfig {
            strategy: NAME,
            why,
        };
        if self.name.trim().is_empty() {
            return Err(bad("the name to resolve is empty".to_owned()));
        }
        if self.port == 0 {
            return Err(bad("the peers' port is 0".to_owned()));
        }
        Name::from_utf8(self.name.trim())
            .map_err(|e| bad(format!("`{}` is not a DNS name: {e}", self.name)))
    }
}

/// One resolution of the name.
struct DnsPoller {
    resolver: TokioResolver,
    name: Name,
    port: u16,
    troubles: Troubles,
}

impl Poller for DnsPoller {
    async fn poll(&mut self) -> Result<Poll, DiscoveryError> {
        // Each poll asks the servers: a cached answer could hide a change for a whole TTL.
        self.resolver.clear_cache();
        match self.resolver.lookup_ip(self.name.clone()).await {
            Ok(found) => {
                self.troubles.succeeded();
                let peers = found
                    .iter()
                    .map(|ip| Peer {
                        host: ip.to_string(),
                        port: self.port,
                    })
                    .collect();
                Ok(Poll::Peers(peers))
            }
            Err(e) if e.is_no_records_found() => {
                let name = &self.name;
                let why = if e.is_nx_domain() {
                    format!("`{name}` does not exist (NXDOMAIN): no peers")
                } else {
                    format!("`{name}` has no address records: no peers")
                };
                self.troubles.failed(why, false);
                Ok(Poll::Peers(Vec::new()))
            }
            Err(e) => {
                let name = &self.name;
                self.troubles
                    .failed(format!("cannot resolve `{name}`: {e}"), false);
                Ok(Poll::Retry)
            }
        }
    }
}

impl Strategy for Dns {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_that_cannot_work_are_refused() {
        for (dns, why) in [
            (Dns::new(" ", 1), "empty"),
            (Dns::new("a..b", 1), "is not a DNS name"),
            (Dns::new("svc.local", 0), "port is 0"),
        ] {
            match dns.checked_name() {
                Err(DiscoveryError::BadConfig {
                    strategy: "dns",
                    why: got,
                }) => {
                    assert!(got.contains(why), "{got}");
                }
                other => panic!("expected BadConfig({why}), got {other:?}"),
            }
        }
    }
}
