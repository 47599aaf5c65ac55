//! Service discovery and routing, on the cluster-wide registry.
//!
//! A service is a name offered by any number of processes (its *instances*) on any nodes.
//! Each instance is registered with its capabilities (`["http", "gpu"]`), a value of
//! metadata, and a load figure it may update. Every node knows every instance (the table
//! is replicated as the registry's is), so discovery and routing are local reads:
//!
//! - discover: [`Services::instances`] by service name, [`Services::with_capability`]
//!   across services;
//! - route: [`Services::pick`] one instance by a [`Route`] (round robin, random, least
//!   loaded, consistent hash of a key, local first), optionally among those with a
//!   capability ([`Services::pick_with`]), and [`Services::cast`] or [`Services::call`]
//!   through it.
//!
//! An instance whose process stops for good, or whose node goes down, leaves the table at
//! once on every node that learns of it, and is never picked after that; an instance on
//! this node that has stopped is skipped even before its removal is processed.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, ReplyPort, spawn};
//! use foundation_cluster::node::{Node, NodeConfig};
//! use foundation_registry::services::{Route, Services, Spec};
//!
//! #[derive(Debug, RemoteMessage)]
//! enum Render {
//!     #[remote(tag = 1)]
//!     Frame(u64, ReplyPort<String>),
//! }
//!
//! struct Renderer(&'static str);
//! impl Actor for Renderer {
//!     type Msg = Render;
//!     type State = ();
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Render>, (): ()) -> Result<(), ActorError> { Ok(()) }
//!     async fn handle(&self, _: &Addr<Render>, msg: Render, (): &mut ()) -> Result<(), ActorError> {
//!         let Render::Frame(n, port) = msg;
//!         let _ = port.send(format!("frame {n} by {}", self.0));
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
//! // Instances carry their region as metadata.
//! let services: Services<Render, String> = Services::start(&node, "services").await?;
//!
//! let cpu = spawn(Renderer("cpu"), ()).await?;
//! let gpu = spawn(Renderer("gpu"), ()).await?;
//! services.register("render", &cpu, Spec::new("eu".to_owned()))?;
//! let fast = services.register("render", &gpu, Spec::new("eu".to_owned()).capability("gpu"))?;
//! assert_eq!(services.instances("render").len(), 2);
//!
//! // Any instance, by a route; or only those with a capability.
//! let reply = services.call("render", Route::RoundRobin, |p| Render::Frame(1, p), Duration::from_secs(5)).await?;
//! assert!(reply.starts_with("frame 1 by"));
//! let picked = services.pick_with("render", "gpu", Route::LeastLoaded).ok_or("no gpu")?;
//! assert_eq!(picked.id(), &fast);
//!
//! // Load reports steer `LeastLoaded`.
//! services.set_load(&fast, 10);
//! assert_eq!(services.pick("render", Route::LeastLoaded).ok_or("none")?.load(), 0);
//!
//! // A stopped instance is never picked.
//! gpu.stop(None);
//! while services.instances("render").len() != 1 { tokio::task::yield_now().await; }
//! assert!(services.pick_with("render", "gpu", Route::Random).is_none());
//! node.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use foundation_actors::{Addr, RemoteMessage, ReplyPort};
use foundation_cluster::node::Node;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::cluster::{
    CallError, CastError, ClusterRegistry, Found, Location, Options, RegisterError, RegistryEvent,
    StartError, Value,
};

/// One instance's identity: its service, its node, and a number unique on that node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    /// The service it offers.
    pub service: String,
    /// The node its process runs on.
    pub node: String,
    /// Its number on that node.
    pub n: u64,
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.service, self.node, self.n)
    }
}

/// What an instance is registered with: its capabilities and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec<V> {
    capabilities: Vec<String>,
    metadata: V,
}

impl<V> Spec<V> {
    /// An instance with `metadata` and no capabilities.
    pub fn new(metadata: V) -> Self {
        Self {
            capabilities: Vec::new(),
            metadata,
        }
    }

    /// Adds a capability (`"http"`, `"gpu"`): something callers may ask for.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }
}

/// An instance as replicated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record<V> {
    capabilities: Vec<String>,
    metadata: V,
    load: u64,
}

/// An instance as this node knows it: cheap to clone.
pub struct Instance<M, V> {
    id: Arc<InstanceId>,
    found: Arc<Found<M, Record<V>>>,
}

impl<M, V> Clone for Instance<M, V> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            found: self.found.clone(),
        }
    }
}

impl<M, V: fmt::Debug> fmt::Debug for Instance<M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("capabilities", &self.found.value.capabilities)
            .field("metadata", &self.found.value.metadata)
            .field("load", &self.found.value.load)
            .finish()
    }
}

impl<M: Send + 'static, V> Instance<M, V> {
    /// Its identity.
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    /// Where its process is.
    pub fn location(&self) -> &Location<M> {
        &self.found.location
    }

    /// The node its process runs on.
    pub fn node(&self) -> &str {
        self.found.location.node()
    }

    /// Its capabilities.
    pub fn capabilities(&self) -> &[String] {
        &self.found.value.capabilities
    }

    /// Whether it has `capability`.
    pub fn has(&self, capability: &str) -> bool {
        self.found
            .value
            .capabilities
            .iter()
            .any(|c| c == capability)
    }

    /// Its metadata.
    pub fn metadata(&self) -> &V {
        &self.found.value.metadata
    }

    /// The load it last reported ([`Services::set_load`]); 0 until then.
    pub fn load(&self) -> u64 {
        self.found.value.load
    }

    /// Whether it can be picked: not a process of this node known to have stopped.
    fn is_live(&self) -> bool {
        self.found.location.addr().is_none_or(|a| !a.is_stopped())
    }
}

/// How [`Services::pick`] chooses among a service's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Route {
    /// Each in turn (per service, on this node).
    RoundRobin,
    /// Any, uniformly.
    Random,
    /// The one that reported the lowest load; ties in turn.
    LeastLoaded,
    /// The same instance for the same key on every node (rendezvous hashing: when an
    /// instance goes, only its keys move). Build it with [`Route::hash`].
    ConsistentHash(u64),
    /// One on this node if there is any (in turn), else any (in turn).
    LocalFirst,
}

/// The hasher behind [`Route::hash`] and rendezvous scores: fixed, so that every node of
/// one build computes the same values.
const STABLE: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5eed_f00d);

impl Route {
    /// [`Route::ConsistentHash`] of `key`, hashed the same way on every node.
    pub fn hash(key: &(impl Hash + ?Sized)) -> Self {
        Self::ConsistentHash(STABLE.hash_one(key))
    }
}

/// The instances of one service on this node's view, in id order, and the turn counter.
struct Group<M, V> {
    members: Vec<Instance<M, V>>,
    next: AtomicUsize,
}

impl<M, V> Default for Group<M, V> {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            next: AtomicUsize::new(0),
        }
    }
}

impl<M: Send + 'static, V> Group<M, V> {
    fn turn(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    fn pick(
        &self,
        route: Route,
        accept: impl Fn(&Instance<M, V>) -> bool,
    ) -> Option<Instance<M, V>> {
        let live: Vec<&Instance<M, V>> = self
            .members
            .iter()
            .filter(|i| i.is_live() && accept(i))
            .collect();
        if live.is_empty() {
            return None;
        }
        let chosen = match route {
            Route::RoundRobin => live[self.turn() % live.len()],
            Route::Random => live[fastrand::usize(..live.len())],
            Route::LeastLoaded => {
                let least = live.iter().map(|i| i.load()).min()?;
                let tied: Vec<&Instance<M, V>> =
                    live.iter().copied().filter(|i| i.load() == least).collect();
                tied[self.turn() % tied.len()]
            }
            Route::ConsistentHash(key) => live
                .iter()
                .copied()
                .max_by_key(|i| STABLE.hash_one((key, &*i.id)))?,
            Route::LocalFirst => {
                let local: Vec<&Instance<M, V>> = live
                    .iter()
                    .copied()
                    .filter(|i| i.location().is_local())
                    .collect();
                let from = if local.is_empty() { &live } else { &local };
                from[self.turn() % from.len()]
            }
        };
        Some(chosen.clone())
    }
}

type Index<M, V> = DashMap<String, Group<M, V>>;

/// The cluster-wide service table: instances of services taking `M`, each with metadata
/// `V`. Cheap to clone. See the [module docs](self).
pub struct Services<M: RemoteMessage, V: Value = ()> {
    names: ClusterRegistry<InstanceId, M, Record<V>>,
    index: Arc<Index<M, V>>,
    next: Arc<AtomicU64>,
}

impl<M: RemoteMessage, V: Value> Clone for Services<M, V> {
    fn clone(&self) -> Self {
        Self {
            names: self.names.clone(),
            index: self.index.clone(),
            next: self.next.clone(),
        }
    }
}

impl<M: RemoteMessage, V: Value> fmt::Debug for Services<M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("services", &self.index.len())
            .field("instances", &self.names.count())
            .finish()
    }
}

impl<M: RemoteMessage, V: Value> Services<M, V> {
    /// Starts the service table `scope` on `node`, with default [`Options`].
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::start_with`].
    pub async fn start(node: &Node, scope: &str) -> Result<Self, StartError> {
        Self::start_with(node, Options::new(scope)).await
    }

    /// Starts a service table on `node`, shared with the tables of the same scope on every
    /// member. (Instances never conflict: their ids include their node.)
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::start_with`].
    pub async fn start_with(node: &Node, options: Options) -> Result<Self, StartError> {
        let index: Arc<Index<M, V>> = Arc::new(DashMap::new());
        let watched = index.clone();
        let watch = Box::new(
            move |id: &InstanceId, found: Option<&Arc<Found<M, Record<V>>>>| {
                update(&watched, id, found);
            },
        );
        let names = ClusterRegistry::start_watched(node, options, Some(watch)).await?;
        Ok(Self {
            names,
            index,
            next: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Registers `addr`, a process on this node, as an instance of `service`. Returns its
    /// id; the instance goes when the process stops for good, or on
    /// [`Services::deregister`].
    ///
    /// # Errors
    ///
    /// [`RegisterError::Stopped`] if the process has stopped, [`RegisterError::Closed`]
    /// after shutdown.
    pub fn register(
        &self,
        service: &str,
        addr: &Addr<M>,
        spec: Spec<V>,
    ) -> Result<InstanceId, RegisterError> {
        let id = InstanceId {
            service: service.to_owned(),
            node: self.names.node().name().to_owned(),
            n: self.next.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let record = Record {
            capabilities: spec.capabilities,
            metadata: spec.metadata,
            load: 0,
        };
        self.names.register(id.clone(), addr, record)?;
        Ok(id)
    }

    /// Takes an instance of this node out, everywhere. Returns whether it was there.
    pub fn deregister(&self, id: &InstanceId) -> bool {
        self.names.unregister(id)
    }

    /// Reports an instance's load (for [`Route::LeastLoaded`]), everywhere. Returns
    /// whether it is an instance of this node.
    pub fn set_load(&self, id: &InstanceId, load: u64) -> bool {
        let Some((_, mut record)) = self.names.lookup(id) else {
            return false;
        };
        if record.load == load {
            return true;
        }
        record.load = load;
        self.names.update_value(id, record)
    }

    /// Every live instance of `service`, in id order.
    pub fn instances(&self, service: &str) -> Vec<Instance<M, V>> {
        self.index.get(service).map_or_else(Vec::new, |g| {
            g.members.iter().filter(|i| i.is_live()).cloned().collect()
        })
    }

    /// Every live instance with `capability`, of any service.
    pub fn with_capability(&self, capability: &str) -> Vec<Instance<M, V>> {
        self.index
            .iter()
            .flat_map(|g| {
                g.members
                    .iter()
                    .filter(|i| i.is_live() && i.has(capability))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The names of the services with at least one instance.
    pub fn services(&self) -> Vec<String> {
        self.index.iter().map(|g| g.key().clone()).collect()
    }

    /// One live instance of `service`, chosen by `route`.
    pub fn pick(&self, service: &str, route: Route) -> Option<Instance<M, V>> {
        self.index.get(service)?.pick(route, |_| true)
    }

    /// One live instance of `service` that has `capability`, chosen by `route`.
    pub fn pick_with(
        &self,
        service: &str,
        capability: &str,
        route: Route,
    ) -> Option<Instance<M, V>> {
        self.index.get(service)?.pick(route, |i| i.has(capability))
    }

    /// Sends `msg` to one instance of `service`, chosen by `route`.
    ///
    /// # Errors
    ///
    /// [`CastError::NoSuchName`] if the service has no live instance; otherwise as
    /// [`ClusterRegistry::cast`]. The message is handed back.
    pub fn cast(&self, service: &str, route: Route, msg: M) -> Result<(), CastError<M>> {
        match self.pick(service, route) {
            Some(i) => {
                crate::cluster::cast_at(self.names.node(), i.location(), msg, || i.id().to_string())
            }
            None => Err(CastError::NoSuchName {
                name: service.to_owned(),
                msg,
            }),
        }
    }

    /// Calls one instance of `service`, chosen by `route`, and waits at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`CallError::NoSuchName`] if the service has no live instance; otherwise as
    /// [`ClusterRegistry::call`].
    pub async fn call<R, F>(
        &self,
        service: &str,
        route: Route,
        build: F,
        timeout: Duration,
    ) -> Result<R, CallError>
    where
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
        let Some(i) = self.pick(service, route) else {
            return Err(CallError::NoSuchName(service.to_owned()));
        };
        crate::cluster::call_at(self.names.node(), i.location(), build, timeout).await
    }

    /// Instances coming and going on this node's view, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent<InstanceId>> {
        self.names.subscribe()
    }

    /// Stops replicating: this node's instances are taken out everywhere.
    pub fn shutdown(&self) {
        self.names.shutdown();
    }
}

/// Applies one change of the table to the per-service index.
fn update<M, V>(index: &Index<M, V>, id: &InstanceId, found: Option<&Arc<Found<M, Record<V>>>>) {
    let empty = {
        let mut group = index.entry(id.service.clone()).or_default();
        let members = &mut group.members;
        let at = members.binary_search_by(|i| (*i.id).cmp(id));
        match (at, found) {
            (Ok(k), Some(f)) => members[k].found = f.clone(),
            (Err(k), Some(f)) => members.insert(
                k,
                Instance {
                    id: Arc::new(id.clone()),
                    found: f.clone(),
                },
            ),
            (Ok(k), None) => {
                members.remove(k);
            }
            (Err(_), None) => {}
        }
        members.is_empty()
    };
    if empty {
        index.remove_if(&id.service, |_, g| g.members.is_empty());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests;
