//! The cluster-wide registry: Horde.Registry on Foundation nodes.
//!
//! A name registered on one node is found on every node of the cluster. Each node keeps a
//! full copy of the name table ([`replica`](crate::replica)), so lookups are local reads:
//! no round trip, no lock shared with writers. A registration is made on the node of the
//! process it names, and is sent at once to every peer as one numbered change (a delta),
//! over the node's lanes; nothing waits for a sync interval.
//!
//! - **Processes stop, nodes die.** A registered process that stops for good takes its
//!   name with it (on every node, within a message's travel time); a node that goes down
//!   takes all its names, on every node, as soon as each node's failure detector says so.
//!   No ghost entries.
//! - **Late joiners and lost messages.** A peer that joins gets every node's snapshot;
//!   a replica that sees a gap in an origin's numbering asks it for a snapshot; each node
//!   tells its peers its last change number every [`Options::sync_every`], so even a lost
//!   last change is made up for.
//! - **Conflicts.** Two nodes that cannot see each other (a partition) may each register
//!   the same name. When they meet again, every node picks the same winner: the entry
//!   registered earliest by Lamport clock, then by node name. The loser's node reports
//!   [`RegistryEvent::Lost`] and, by [`OnConflict`], stops the losing process (the
//!   default; its supervisor sees it exit with a `name conflict` reason) or only takes its
//!   name away.
//!
//! Peers reach a registered process by name: its node exports it under a reserved name,
//! which [`Location`] carries, and [`ClusterRegistry::cast`] and [`ClusterRegistry::call`]
//! use (or the process's [`Addr`] directly, when it is on this node).
//!
//! # Examples
//!
//! One node here (a node is an OS process); on several nodes the code is the same, and
//! a name registered on any of them is found on all.
//!
//! ```
//! use std::time::Duration;
//! use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, ReplyPort, spawn};
//! use foundation_cluster::node::{Node, NodeConfig};
//! use foundation_registry::{ClusterRegistry, RegistryEvent};
//!
//! #[derive(Debug, RemoteMessage)]
//! enum Account {
//!     #[remote(tag = 1)]
//!     Deposit(u64),
//!     #[remote(tag = 2)]
//!     Balance(ReplyPort<u64>),
//! }
//!
//! struct Ledger;
//! impl Actor for Ledger {
//!     type Msg = Account;
//!     type State = u64;
//!     type Args = ();
//!     async fn init(&self, _: &Addr<Account>, (): ()) -> Result<u64, ActorError> { Ok(0) }
//!     async fn handle(&self, _: &Addr<Account>, msg: Account, total: &mut u64) -> Result<(), ActorError> {
//!         match msg {
//!             Account::Deposit(n) => *total += n,
//!             Account::Balance(port) => { let _ = port.send(*total); }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
//! // Accounts by number, each with its owner's name as metadata.
//! let accounts: ClusterRegistry<u64, Account, String> = ClusterRegistry::start(&node, "accounts").await?;
//! let mut events = accounts.subscribe();
//!
//! let ledger = spawn(Ledger, ()).await?;
//! accounts.register(42, &ledger, "ada".into())?;
//! assert!(matches!(events.recv().await?, RegistryEvent::Registered { key: 42, .. }));
//!
//! let (at, owner) = accounts.lookup(&42).ok_or("no account 42")?;
//! assert_eq!((at.node(), owner.as_str()), ("a", "ada"));
//! accounts.cast(&42, Account::Deposit(5))?;
//! assert_eq!(accounts.call(&42, Account::Balance, Duration::from_secs(5)).await?, 5);
//!
//! // A second holder is refused, naming the first's node.
//! let other = spawn(Ledger, ()).await?;
//! assert!(accounts.register(42, &other, "bob".into()).is_err());
//!
//! // The name goes with its process.
//! ledger.stop(None);
//! assert!(matches!(events.recv().await?, RegistryEvent::Unregistered { key: 42 }));
//! assert!(accounts.whereis(&42).is_none());
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod error;
mod sync;

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use foundation_actors::{Addr, RemoteMessage, ReplyPort};
use foundation_cluster::node::Node;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

pub use error::{CallError, CastError, RegisterError, StartError};
pub(crate) use sync::Found;
pub(crate) use sync::lock;
use sync::{Inner, Syncer};

use crate::Lookup;

/// What a cluster-wide key must be: hashable, printable in errors, and able to cross the
/// wire. `String`, integers, and tuples and derived types of them all are.
pub trait Key:
    Hash + Eq + Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}
impl<T> Key for T where
    T: Hash + Eq + Clone + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

/// What a registration's value (metadata) must be: clonable, and able to cross the wire.
pub trait Value: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T> Value for T where T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}

/// What happens to a process whose registration lost a name conflict (two nodes held the
/// name while they could not see each other). Either way [`RegistryEvent::Lost`] is
/// reported on its node, and the name resolves to the winner everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnConflict {
    /// Stop the process, with the reason `name conflict: <key> is kept by node <winner>`
    /// (a normal exit: a transient child is not restarted; a permanent one is, without
    /// the name). Horde does the same.
    #[default]
    Stop,
    /// Leave the process running, without the name.
    Unregister,
}

/// How a cluster registry runs.
#[derive(Debug, Clone)]
pub struct Options {
    scope: String,
    on_conflict: OnConflict,
    sync_every: Duration,
    events: usize,
}

impl Options {
    /// A registry called `scope`: registries of the same scope on different nodes share
    /// their names; different scopes are separate tables.
    pub fn new(scope: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            on_conflict: OnConflict::default(),
            sync_every: Duration::from_millis(500),
            events: 1024,
        }
    }

    /// What happens to the loser of a name conflict. Default [`OnConflict::Stop`].
    pub fn on_conflict(mut self, policy: OnConflict) -> Self {
        self.on_conflict = policy;
        self
    }

    /// How often each node tells its peers how far its changes go, so a peer that missed
    /// the last of them asks for a snapshot. Default 500 ms. (Changes themselves are sent
    /// at once; this only bounds how long a lost one stays missing.)
    pub fn sync_every(mut self, every: Duration) -> Self {
        self.sync_every = every.max(Duration::from_millis(1));
        self
    }

    /// How many [`RegistryEvent`]s a subscriber may fall behind by before it misses some
    /// (it is then told how many). Default 1024.
    pub fn events(mut self, capacity: usize) -> Self {
        self.events = capacity.max(1);
        self
    }
}

/// A change of what names resolve to, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent<K> {
    /// `key` now resolves to a process on `node` (registered, or a conflict decided).
    Registered {
        /// The name.
        key: K,
        /// The node of the process it names.
        node: String,
    },
    /// `key` no longer resolves: its process stopped, was unregistered, or its node went
    /// down.
    Unregistered {
        /// The name.
        key: K,
    },
    /// This node's registration of `key` lost a conflict to `winner`'s, and was taken
    /// away (its process stopped, by [`OnConflict::Stop`]).
    Lost {
        /// The name.
        key: K,
        /// The node that keeps it.
        winner: String,
    },
}

/// Where a registered process is: its node and the name it is reached by there, and its
/// address when it is on this node.
pub struct Location<M> {
    pub(crate) node: Arc<str>,
    pub(crate) export: Arc<str>,
    pub(crate) local: Option<Addr<M>>,
}

impl<M> Clone for Location<M> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            export: self.export.clone(),
            local: self.local.clone(),
        }
    }
}

impl<M> fmt::Debug for Location<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("node", &self.node)
            .field("export", &self.export)
            .field("local", &self.local.is_some())
            .finish()
    }
}

impl<M> Location<M> {
    /// The node the process runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The name its node exports it as: with [`Node::send`] or [`Node::call`] to
    /// [`Location::node`], it reaches the process.
    pub fn export_name(&self) -> &str {
        &self.export
    }

    /// Whether the process is on this node.
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// Its address, when it is on this node.
    pub fn addr(&self) -> Option<&Addr<M>> {
        self.local.as_ref()
    }
}

/// A cluster-wide registry of unique names: keys of type `K` to processes taking `M`,
/// each with a value `V`. Cheap to clone; every clone is the same registry. When the last
/// clone is dropped (or on [`ClusterRegistry::shutdown`]) this node's names are taken
/// back everywhere.
///
/// See the [module docs](self) for what it guarantees.
pub struct ClusterRegistry<K: Key, M: RemoteMessage, V: Value = ()> {
    inner: Arc<Inner<K, M, V>>,
}

impl<K: Key, M: RemoteMessage, V: Value> Clone for ClusterRegistry<K, M, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Key, M: RemoteMessage, V: Value> fmt::Debug for ClusterRegistry<K, M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterRegistry")
            .field("service", &self.inner.service)
            .field("names", &self.inner.mirror.len())
            .finish_non_exhaustive()
    }
}

impl<K: Key, M: RemoteMessage, V: Value> ClusterRegistry<K, M, V> {
    /// Starts the registry `scope` on `node`, with default [`Options`].
    ///
    /// # Errors
    ///
    /// As [`ClusterRegistry::start_with`].
    pub async fn start(node: &Node, scope: &str) -> Result<Self, StartError> {
        Self::start_with(node, Options::new(scope)).await
    }

    /// Starts a registry on `node`: it replicates with the registries of the same scope
    /// on every member, now and as they come and go.
    ///
    /// # Errors
    ///
    /// [`StartError::ScopeTaken`] if this node runs a registry of that scope already,
    /// [`StartError::Spawn`] if its replication process cannot start.
    pub async fn start_with(node: &Node, options: Options) -> Result<Self, StartError> {
        Self::start_watched(node, options, None).await
    }

    /// As [`ClusterRegistry::start_with`], telling `watch` of every change of what a name
    /// resolves to.
    pub(crate) async fn start_watched(
        node: &Node,
        options: Options,
        watch: Option<sync::Watch<K, M, V>>,
    ) -> Result<Self, StartError> {
        let inner = Arc::new(Inner::new(
            node,
            &options.scope,
            options.on_conflict,
            options.events,
            watch,
        ));
        let syncer = foundation_actors::spawn(
            Syncer {
                inner: Arc::downgrade(&inner),
            },
            (),
        )
        .await?;
        if node.export(&inner.service, syncer.clone()).is_err() {
            syncer.stop(None);
            return Err(StartError::ScopeTaken(options.scope));
        }
        *lock(&inner.syncer) = Some(syncer);
        // Subscribe before reading the members, so no one joining in between is missed.
        let events = node.subscribe();
        inner.resync();
        let follow = tokio::spawn(Inner::follow(Arc::downgrade(&inner), events));
        let weak = Arc::downgrade(&inner);
        let every = options.sync_every;
        let digests = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                inner.digest();
            }
        });
        lock(&inner.tasks).extend([follow, digests]);
        Ok(Self { inner })
    }

    /// The node it runs on.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Registers `addr`, a process on this node, under `key` with `value`, for the whole
    /// cluster. Visible to lookups on this node when it returns, and on the others as
    /// soon as the change reaches them (it is sent at once). The name goes when the
    /// process stops for good (not when it restarts).
    ///
    /// # Errors
    ///
    /// [`RegisterError::Taken`] if the name is held, here or on a node this one knows of;
    /// [`RegisterError::Stopped`] if the process has stopped; [`RegisterError::Closed`]
    /// after [`ClusterRegistry::shutdown`]. Two nodes that register one name at the same
    /// moment both succeed; the conflict is then decided as the module docs say.
    pub fn register(&self, key: K, addr: &Addr<M>, value: V) -> Result<(), RegisterError> {
        if addr.is_stopped() {
            return Err(RegisterError::Stopped {
                name: format!("{key:?}"),
            });
        }
        self.inner.register(key, addr, value, None)
    }

    /// [`register`](Self::register), but a lost name conflict only takes the name away
    /// ([`OnConflict::Unregister`]), whatever the registry's policy: for processes whose
    /// owner decides which of two instances stops (the distributed supervisor, by its
    /// records), and registers the kept one again once the name is free.
    pub(crate) fn register_keeping(
        &self,
        key: K,
        addr: &Addr<M>,
        value: V,
    ) -> Result<(), RegisterError> {
        if addr.is_stopped() {
            return Err(RegisterError::Stopped {
                name: format!("{key:?}"),
            });
        }
        self.inner
            .register(key, addr, value, Some(OnConflict::Unregister))
    }

    /// Takes this node's registration of `key` back, everywhere. Returns whether there
    /// was one (a name held by another node is not this node's to unregister).
    pub fn unregister(&self, key: &K) -> bool {
        self.inner.unregister(key)
    }

    /// Replaces the value of this node's registration of `key`, everywhere. Returns
    /// whether there was one.
    pub fn update_value(&self, key: &K, value: V) -> bool {
        self.inner.update(key, value)
    }

    /// Where the process registered as `key` is, as this node knows now.
    pub fn whereis<Q>(&self, key: &Q) -> Option<Location<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.mirror.get(key).map(|f| f.location.clone())
    }

    /// Where the process registered as `key` is, and its value.
    pub fn lookup<Q>(&self, key: &Q) -> Option<(Location<M>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner
            .mirror
            .get(key)
            .map(|f| (f.location.clone(), f.value.clone()))
    }

    /// How many names resolve.
    pub fn count(&self) -> usize {
        self.inner.mirror.len()
    }

    /// Every name, with the node of its process.
    pub fn names(&self) -> Vec<(K, String)> {
        self.inner
            .mirror
            .iter()
            .map(|e| (e.key().clone(), e.value().location.node.to_string()))
            .collect()
    }

    /// The names whose entries `pred` accepts, with their locations and values.
    pub fn select(
        &self,
        mut pred: impl FnMut(&K, &Location<M>, &V) -> bool,
    ) -> Vec<(K, Location<M>, V)> {
        self.inner
            .mirror
            .iter()
            .filter(|e| pred(e.key(), &e.value().location, &e.value().value))
            .map(|e| {
                (
                    e.key().clone(),
                    e.value().location.clone(),
                    e.value().value.clone(),
                )
            })
            .collect()
    }

    /// Changes of what names resolve to on this node, and conflicts it lost, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent<K>> {
        self.inner.events.subscribe()
    }

    /// Sends `msg` to the process registered as `key`, wherever it is. Like a local cast,
    /// delivery is not confirmed.
    ///
    /// # Errors
    ///
    /// [`CastError::NoSuchName`], [`CastError::NotDelivered`] for a process here that has
    /// stopped, [`CastError::Remote`] if the send to its node fails. The message is
    /// handed back.
    pub fn cast<Q>(&self, key: &Q, msg: M) -> Result<(), CastError<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
    {
        match self.whereis(key) {
            Some(at) => cast_at(&self.inner.node, &at, msg, || format!("{key:?}")),
            None => Err(CastError::NoSuchName {
                name: format!("{key:?}"),
                msg,
            }),
        }
    }

    /// Sends a request built by `build` around a reply port to the process registered
    /// as `key`, wherever it is, and waits at most `timeout` for the reply (and never past
    /// the current context's deadline).
    ///
    /// # Errors
    ///
    /// [`CallError::NoSuchName`]; [`CallError::Local`] or [`CallError::Remote`] as the
    /// call to the process fails.
    pub async fn call<Q, R, F>(&self, key: &Q, build: F, timeout: Duration) -> Result<R, CallError>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + fmt::Debug + ?Sized,
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
        match self.whereis(key) {
            Some(at) => call_at(&self.inner.node, &at, build, timeout).await,
            None => Err(CallError::NoSuchName(format!("{key:?}"))),
        }
    }

    /// Stops replicating: this node's names are taken back on every node, and no more
    /// registrations are accepted. Names of other nodes stay readable as they were.
    pub fn shutdown(&self) {
        self.inner.close();
    }
}

/// Sends `msg` to the process at `at`: through its address on this node, or by its
/// exported name to its node. `name` names it in errors.
pub(crate) fn cast_at<M: RemoteMessage>(
    node: &Node,
    at: &Location<M>,
    msg: M,
    name: impl FnOnce() -> String,
) -> Result<(), CastError<M>> {
    match &at.local {
        Some(addr) => addr.cast(msg).map_err(|e| CastError::NotDelivered {
            name: name(),
            msg: e.into_inner(),
        }),
        None => match node.send(&at.node, &at.export, &msg) {
            Ok(()) => Ok(()),
            Err(source) => Err(CastError::Remote {
                name: name(),
                source: Box::new(source),
                msg,
            }),
        },
    }
}

/// Calls the process at `at`, as [`cast_at`] sends to it.
pub(crate) async fn call_at<M, R, F>(
    node: &Node,
    at: &Location<M>,
    build: F,
    timeout: Duration,
) -> Result<R, CallError>
where
    M: RemoteMessage,
    R: DeserializeOwned + Send + 'static,
    F: FnOnce(ReplyPort<R>) -> M,
{
    match &at.local {
        Some(addr) => Ok(addr.call_timeout(build, timeout).await?),
        None => Ok(node.call(&at.node, &at.export, build, timeout).await?),
    }
}

impl<K: Key, M: RemoteMessage, V: Value> Lookup<K> for ClusterRegistry<K, M, V> {
    type Target = Location<M>;
    type Value = V;

    fn whereis<Q>(&self, key: &Q) -> Option<Location<M>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        ClusterRegistry::whereis(self, key)
    }

    fn lookup<Q>(&self, key: &Q) -> Vec<(Location<M>, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        ClusterRegistry::lookup(self, key).into_iter().collect()
    }

    fn count_key<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        usize::from(self.inner.mirror.contains_key(key))
    }
}

/// The replication's decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
