//! The Kubernetes strategy: list pods by label, or a headless service's EndpointSlices,
//! through the API server.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use tokio::sync::mpsc;

use super::report::{Poll, Poller, Reporter, Troubles, poll_every};
use super::{DiscoveryError, Peer, Sighting, Strategy};

const NAME: &str = "kubernetes";

/// How long one list request may take before the poll counts as failed. kube's own read
/// timeout is meant for watches (almost five minutes): far too long for a poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The Kubernetes strategy: polls the API server (every 5 s by default) for the pods that
/// make up the cluster, and reports each one's IP address with the configured port.
///
/// # What is listed
///
/// - [`Kubernetes::pods`]: the pods of the namespace that match a label selector, those
///   in phase `Running` with a pod IP and not being deleted.
/// - [`Kubernetes::service`]: the EndpointSlices of a (headless) service, found by their
///   `kubernetes.io/service-name` label; every address of every ready endpoint (an
///   endpoint without a `ready` condition counts as ready, as the API says).
///
/// The namespace is the client's default unless [`Kubernetes::namespace`] says otherwise:
/// in a pod, the pod's own namespace.
///
/// # Configuration
///
/// Without [`Kubernetes::client`], the client is configured as `kubectl` would be, by
/// [`kube::Config::infer`]: `KUBECONFIG` (or `~/.kube/config`) if present, else the pod's
/// service account. No configuration found stops the strategy with
/// [`DiscoveryError::Failed`].
///
/// # Failures
///
/// A failed list (the server unreachable or slow, a 5xx) changes nothing: the previous
/// sighting stands, the failure is logged as a warning (once while it repeats) and the
/// next poll tries again. 401, 403 and 404 are logged as errors, since they need a person
/// (a missing Role or RoleBinding allowing `list` on `pods` or
/// `endpointslices.discovery.k8s.io`, a missing API), and are retried as well: RBAC
/// objects applied together with the Deployment can reach the server after the first pod
/// starts, and a node that went on polling picks the grant up without a restart.
///
/// # Examples
///
/// ```no_run
/// use foundation_cluster::discovery::{Kubernetes, Strategy};
/// use tokio::sync::mpsc;
///
/// # async fn example() {
/// let k8s = Kubernetes::pods("app.kubernetes.io/name=orders", 4369);
/// let (tx, mut rx) = mpsc::channel(16);
/// tokio::spawn(Box::new(k8s).run(tx));
/// while let Some(sighting) = rx.recv().await {
///     println!("{:?}", sighting.peers);
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Kubernetes {
    source: Source,
    port: u16,
    namespace: Option<String>,
    every: Duration,
    client: Option<kube::Client>,
}

/// What to list.
#[derive(Debug, Clone)]
enum Source {
    Pods {
        selector: String,
    },
    Service {
        name: String,
    },
    /// The pods whose `label` has the value this pod's has (else `fallback`).
    PodsLike {
        pod: String,
        label: String,
        fallback: String,
    },
}

impl fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubernetes")
            .field("source", &self.source)
            .field("port", &self.port)
            .field("namespace", &self.namespace)
            .field("every", &self.every)
            .field("client", &self.client.as_ref().map(|_| "given"))
            .finish()
    }
}

impl Kubernetes {
    /// A strategy that lists the pods matching `label_selector` (`app=orders`, or any
    /// selector the API accepts) and reports their IPs with `port`.
    pub fn pods(label_selector: impl Into<String>, port: u16) -> Self {
        Self::new(
            Source::Pods {
                selector: label_selector.into(),
            },
            port,
        )
    }

    /// A strategy that lists the ready endpoints of service `service` (through its
    /// EndpointSlices) and reports their addresses with `port`.
    pub fn service(service: impl Into<String>, port: u16) -> Self {
        Self::new(
            Source::Service {
                name: service.into(),
            },
            port,
        )
    }

    /// A strategy that lists the pods whose label `label` has the value the pod named
    /// `pod` (this node's own, in a pod: `HOSTNAME`) has, read once from the API at start
    /// (a `get` of that pod): the peers are the pods labelled like this one, with no
    /// selector to configure. When the pod cannot be read (no `get` permission) or lacks
    /// the label, it logs why and lists the pods matching `fallback` instead.
    pub fn pods_like(
        pod: impl Into<String>,
        label: impl Into<String>,
        fallback: impl Into<String>,
        port: u16,
    ) -> Self {
        Self::new(
            Source::PodsLike {
                pod: pod.into(),
                label: label.into(),
                fallback: fallback.into(),
            },
            port,
        )
    }

    fn new(source: Source, port: u16) -> Self {
        Self {
            source,
            port,
            namespace: None,
            every: Duration::from_secs(5),
            client: None,
        }
    }

    /// Lists in `namespace` instead of the client's default namespace.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Polls every `every` instead of every 5 s.
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every.max(Duration::from_millis(1));
        self
    }

    /// Uses this client instead of one configured by [`kube::Config::infer`]; its default
    /// namespace applies unless [`Kubernetes::namespace`] is given.
    #[must_use]
    pub fn client(mut self, client: kube::Client) -> Self {
        self.client = Some(client);
        self
    }

    fn check(&self) -> Result<(), DiscoveryError> {
        let bad = |why: &str| DiscoveryError::BadConfig {
            strategy: NAME,
            why: why.to_owned(),
        };
        match &self.source {
            Source::Pods { selector }
            | Source::PodsLike {
                fallback: selector, ..
            } if selector.trim().is_empty() => Err(bad(
                "the label selector is empty, which would select every pod of the namespace",
            )),
            Source::PodsLike { pod, label, .. }
                if pod.trim().is_empty() || label.trim().is_empty() =>
            {
                Err(bad("the pod's name or the label to match is empty"))
            }
            Source::Service { name } if name.trim().is_empty() => {
                Err(bad("the service name is empty"))
            }
            _ if self.port == 0 => Err(bad("the peers' port is 0")),
            _ if self
                .namespace
                .as_ref()
                .is_some_and(|ns| ns.trim().is_empty()) =>
            {
                Err(bad("the namespace is empty"))
            }
            _ => Ok(()),
        }
    }

    async fn run_inner(self, report: mpsc::Sender<Sighting>) -> Result<(), DiscoveryError> {
        self.check()?;
        let client = match self.client {
            Some(client) => client,
            None => {
                let config = kube::Config::infer()
                    .await
                    .map_err(|e| DiscoveryError::Failed {
                        strategy: NAME,
                        why: format!(
                            "no Kubernetes configuration (neither KUBECONFIG nor in-cluster): {e}"
                        ),
                    })?;
                kube::Client::try_from(config).map_err(|e| DiscoveryError::Failed {
                    strategy: NAME,
                    why: format!("cannot make a Kubernetes client: {e}"),
                })?
            }
        };
        let namespace = self
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let source = match self.source {
            Source::PodsLike {
                pod,
                label,
                fallback,
            } => Source::Pods {
                selector: selector_like(&client, &namespace, &pod, &label, fallback).await,
            },
            other => other,
        };
        let (what, list) = match source {
            // (`PodsLike` is resolved above.)
            Source::Pods { selector }
            | Source::PodsLike {
                fallback: selector, ..
            } => (
                format!("pods `{selector}`"),
                List::Pods {
                    api: Api::namespaced(client, &namespace),
                    params: ListParams::default().labels(&selector),
                },
            ),
            Source::Service { name } => (
                format!("the EndpointSlices of service `{name}`"),
                List::Service {
                    api: Api::namespaced(client, &namespace),
                    params: ListParams::default()
                        .labels(&format!("kubernetes.io/service-name={name}")),
                },
            ),
        };
        tracing::info!(%namespace, port = self.port, every = ?self.every, "kubernetes: polling {what}");
        let poller = KubePoller {
            list,
            port: self.port,
            what: format!("{what} in namespace `{namespace}`"),
            troubles: Troubles::new(NAME),
        };
        poll_every(Reporter::new(NAME, report), self.every, poller).await
    }
}

/// The selector of the pods labelled as pod `pod` is (its `label`'s value), or `fallback`
/// when the pod cannot be read or lacks the label (logged).
async fn selector_like(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    label: &str,
    fallback: String,
) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    match api.get(pod).await {
        Ok(p) => match p.metadata.labels.as_ref().and_then(|l| l.get(label)) {
            Some(value) => {
                tracing::info!(%pod, "kubernetes: peers are the pods labelled like this one: {label}={value}");
                format!("{label}={value}")
            }
            None => {
                tracing::warn!(%pod, "kubernetes: this pod has no label `{label}`: peers are the pods matching `{fallback}`");
                fallback
            }
        },
        Err(e) => {
            tracing::warn!(%pod, error = %e, "kubernetes: cannot read this pod's labels (the role needs `get` on pods): peers are the pods matching `{fallback}`");
            fallback
        }
    }
}

impl Strategy for Kubernetes {
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

/// The request a poll makes.
enum List {
    Pods {
        api: Api<Pod>,
        params: ListParams,
    },
    Service {
        api: Api<EndpointSlice>,
        params: ListParams,
    },
}

impl List {
    /// The hosts listed now.
    async fn hosts(&self) -> Result<Vec<String>, kube::Error> {
        match self {
            Self::Pods { api, params } => Ok(api
                .list(params)
                .await?
                .items
                .iter()
                .filter_map(running_pod_ip)
                .map(|ip| ip.to_string())
                .collect()),
            Self::Service { api, params } => Ok(api
                .list(params)
                .await?
                .items
                .into_iter()
                .flat_map(|slice| slice.endpoints)
                .filter(|endpoint| {
                    // The API: "nil should be interpreted as ready".
                    endpoint
                        .conditions
                        .as_ref()
                        .and_then(|c| c.ready)
                        .unwrap_or(true)
                })
                .flat_map(|endpoint| endpoint.addresses)
                .collect()),
        }
    }
}

/// The pod's IP if it is running, has one, and is not being deleted.
fn running_pod_ip(pod: &Pod) -> Option<IpAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running") {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// One list request.
struct KubePoller {
    list: List,
    port: u16,
    what: String,
    troubles: Troubles,
}

impl Poller for KubePoller {
    async fn poll(&mut self) -> Result<Poll, DiscoveryError> {
        let what = &self.what;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.list.hosts()).await {
            Ok(Ok(hosts)) => {
                self.troubles.succeeded();
                let port = self.port;
                Ok(Poll::Peers(
                    hosts.into_iter().map(|host| Peer { host, port }).collect(),
                ))
            }
            Ok(Err(kube::Error::Api(status))) if matches!(status.code, 401 | 403 | 404) => {
                let hint = match status.code {
                    401 => "the API server does not accept this node's credentials",
                    403 => {
                        "this node's service account may not `list` them: grant it with a Role and RoleBinding"
                    }
                    _ => "the API server does not serve them (does the cluster have this API?)",
                };
                self.troubles.failed(
                    format!(
                        "cannot list {what}: {} {}: {}; {hint}",
                        status.code, status.reason, status.message
                    ),
                    true,
                );
                Ok(Poll::Retry)
            }
            Ok(Err(e)) => {
                self.troubles
                    .failed(format!("cannot list {what}: {e}"), false);
                Ok(Poll::Retry)
            }
            Err(_) => {
                self.troubles.failed(
                    format!("cannot list {what}: no answer within {REQUEST_TIMEOUT:?}"),
                    false,
                );
                Ok(Poll::Retry)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused() {
        for (k8s, why) in [
            (Kubernetes::pods(" ", 1), "every pod"),
            (Kubernetes::service("", 1), "service name is empty"),
            (Kubernetes::pods("app=x", 0), "port is 0"),
            (
                Kubernetes::pods("app=x", 1).namespace(""),
                "namespace is empty",
            ),
        ] {
            match k8s.check() {
                Err(DiscoveryError::BadConfig {
                    strategy: "kubernetes",
                    why: got,
                }) => assert!(got.contains(why), "{got}"),
                other => panic!("expected BadConfig({why}), got {other:?}"),
            }
        }
    }
}
