//! Strongly consistent names: leases in a consensus group, with fencing tokens.
//!
//! The [cluster registry](crate::cluster) answers from each node's copy and settles a
//! conflict after a partition heals. Some names must never have two holders, not even for
//! a moment: the leader of a shard, the owner of an account. A [`ConsistentRegistry`]
//! grants them through a Raft group ([`foundation_cluster::raft`]): a registration is a
//! linearizable write, and only a side of a partition holding a majority of the group's
//! voters can make one.
//!
//! - **Leases.** A name is held for a lease ([`ConsistentOptions::lease`], 5 s by default)
//!   that its node renews every third of it. A node that cannot renew (it is cut off from
//!   the majority) gives the name up when its lease runs out *by its own clock*, counted
//!   from before it asked; the group grants the name to another only after the lease
//!   runs out by the group's clock, counted from when it granted. A process that holds a
//!   name therefore loses it (stopped, by [`OnConflict::Stop`]) before anyone else can
//!   hold it, as long as clocks run at about the same rate.
//! - **Fencing tokens.** Every grant carries a token larger than every token granted
//!   before, in the whole group. A process that may have been paused past its lease (a GC
//!   pause, a stopped VM) passes its token to what it writes to; a store that keeps the
//!   largest token seen refuses an older holder. Leases alone cannot rule that case out.
//! - **No ghosts, eventually.** A process that stops for good releases its name at once.
//!   A node that dies holds its names until their leases run out: the group cannot tell a
//!   dead node from a cut-off one, and must not grant a name its holder may still use.
//!
//! Lookups are linearizable ([`ConsistentRegistry::whereis`], a read through the leader)
//! or local and possibly stale ([`ConsistentRegistry::whereis_local`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foundation_actors::{Addr, RemoteMessage, ReplyPort, StopHook};
use foundation_cluster::node::Node;
use foundation_cluster::raft::{Group, GroupError, GroupOptions, Machine};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::cluster::{
    CallError, CastError, Key, Location, OnConflict, Value, call_at, cast_at, lock,
};

/// One granted name, as the group keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    node: String,
    incarnation: u64,
    export: String,
    token: u64,
    expires_ms: u64,
    value: Vec<u8>,
}

/// A change to the leases, written to the group's log. Times are the writer's wall clock:
/// the machine has none of its own (every node must apply the same way).
#[derive(Debug, Serialize, Deserialize)]
enum Command {
    Acquire {
        key: Vec<u8>,
        node: String,
        incarnation: u64,
        export: String,
        value: Vec<u8>,
        now_ms: u64,
        ttl_ms: u64,
    },
    Renew {
        key: Vec<u8>,
        token: u64,
        now_ms: u64,
        ttl_ms: u64,
    },
    Release {
        key: Vec<u8>,
        token: u64,
    },
}

/// The machine's answer to a [`Command`].
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Reply {
    Granted { token: u64 },
    Held { node: String },
    Renewed,
    Lost,
    Released,
    Unreadable,
}

/// The leases: the group's replicated state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Leases {
    names: BTreeMap<Vec<u8>, Record>,
    last_token: u64,
}

impl Leases {
    fn act(&mut self, command: Command) -> Reply {
        match command {
            Command::Acquire {
                key,
                node,
                incarnation,
                export,
                value,
                now_ms,
                ttl_ms,
            } => {
                if let Some(r) = self.names.get_mut(&key) {
                    let same = r.node == node && r.incarnation == incarnation && r.export == export;
                    if same {
                        // A retry of a grant whose answer was lost: the same token.
                        r.expires_ms = r.expires_ms.max(now_ms.saturating_add(ttl_ms));
                        return Reply::Granted { token: r.token };
                    }
                    if r.expires_ms > now_ms {
                        return Reply::Held {
                            node: r.node.clone(),
                        };
                    }
                }
                self.last_token += 1;
                let token = self.last_token;
                self.names.insert(
                    key,
                    Record {
                        node,
                        incarnation,
                        export,
                        token,
                        expires_ms: now_ms.saturating_add(ttl_ms),
                        value,
                    },
                );
                Reply::Granted { token }
            }
            Command::Renew {
                key,
                token,
                now_ms,
                ttl_ms,
            } => match self.names.get_mut(&key) {
                Some(r) if r.token == token => {
                    r.expires_ms = r.expires_ms.max(now_ms.saturating_add(ttl_ms));
                    Reply::Renewed
                }
                _ => Reply::Lost,
            },
            Command::Release { key, token } => match self.names.get(&key) {
                Some(r) if r.token == token => {
                    self.names.remove(&key);
                    Reply::Released
                }
                _ => Reply::Lost,
            },
        }
    }
}

impl Machine for Leases {
    fn apply(&mut self, command: &[u8]) -> Vec<u8> {
        let reply = match postcard::from_bytes::<Command>(command) {
            Ok(c) => self.act(c),
            Err(_) => Reply::Unreadable,
        };
        postcard::to_allocvec(&reply).unwrap_or_default()
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) {
        match postcard::from_bytes::<Leases>(snapshot) {
            Ok(l) => *self = l,
            Err(e) => tracing::error!(error = %e, "unreadable lease snapshot; kept the state"),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a consistent registry runs.
#[derive(Debug, Clone)]
pub struct ConsistentOptions {
    group: GroupOptions,
    name: String,
    lease: Duration,
    on_lost: OnConflict,
}

impl ConsistentOptions {
    /// A registry called `name` (its consensus group has the same name), with 3 voters.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            group: GroupOptions::new(format!("names/{name}")),
            name,
            lease: Duration::from_secs(5),
            on_lost: OnConflict::Stop,
        }
    }

    /// The consensus group's settings (voters, heartbeat, write timeout).
    pub fn group(mut self, tune: impl FnOnce(GroupOptions) -> GroupOptions) -> Self {
        self.group = tune(self.group);
        self
    }

    /// How long a grant lasts without renewal. Default 5 s. Shorter frees the names of a
    /// dead node sooner; it must stay well above the group's write latency.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// What happens to a process whose lease is lost (its node was cut off from the
    /// majority, or the group refused a renewal). Default [`OnConflict::Stop`].
    pub fn on_lost(mut self, policy: OnConflict) -> Self {
        self.on_lost = policy;
        self
    }
}

/// What a registration got: the fencing token, larger than any granted before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The fencing token.
    pub token: u64,
}

/// Who holds a name, as the group says.
pub struct Holder<M, V> {
    /// Where the process is.
    pub location: Location<M>,
    /// The fencing token of its grant.
    pub token: u64,
    /// Its value.
    pub value: V,
}

impl<M, V: fmt::Debug> fmt::Debug for Holder<M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder")
            .field("location", &self.location)
            .field("token", &self.token)
            .field("value", &self.value)
            .finish()
    }
}

/// What happened to a name held by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseEvent<K> {
    /// The lease on `key` was lost: not renewed in time, or refused.
    Lost {
        /// The name.
        key: K,
        /// The token it was held with.
        token: u64,
    },
}

/// Why a consistent registration or lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsistentError {
    /// Another process holds the name.
    #[error("`{name}` is held by a process on node `{holder}`")]
    Taken {
        /// The name, as `Debug` prints it.
        name: String,
        /// Its holder's node.
        holder: String,
    },
    /// The process has stopped.
    #[error("cannot register `{name}`: the process has stopped")]
    Stopped {
        /// The name, as `Debug` prints it.
        name: String,
    },
    /// The consensus group could not answer (no quorum, a partition).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A key, value or answer could not be encoded or read.
    #[error("cannot encode or read: {0}")]
    Wire(String),
}

struct Holding<M> {
    addr: Addr<M>,
    token: u64,
    export: String,
    /// When this node stops counting on the lease: its start, by this node's clock, plus
    /// the lease.
    deadline: Instant,
    hook: Option<StopHook>,
}

struct Inner<K, M> {
    node: Node,
    group: Group<Leases>,
    options: ConsistentOptions,
    held: Mutex<HashMap<K, Holding<M>>>,
    next_id: AtomicU64,
    events: broadcast::Sender<LeaseEvent<K>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<K, M> Drop for Inner<K, M> {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

/// A registry of names that never have two holders at once: leases granted by a Raft
/// group, with fencing tokens. Cheap to clone. See the [module docs](self).
pub struct ConsistentRegistry<K: Key, M: RemoteMessage, V: Value = ()> {
    inner: Arc<Inner<K, M>>,
    _value: std::marker::PhantomData<fn() -> V>,
}

impl<K: Key, M: RemoteMessage, V: Value> Clone for ConsistentRegistry<K, M, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _value: std::marker::PhantomData,
        }
    }
}

impl<K: Key, M: RemoteMessage, V: Value> fmt::Debug for ConsistentRegistry<K, M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsistentRegistry")
            .field("name", &self.inner.options.name)
            .field("held here", &lock(&self.inner.held).len())
            .finish_non_exhaustive()
    }
}

fn encode<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, ConsistentError> {
    postcard::to_allocvec(v).map_err(|e| ConsistentError::Wire(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConsistentError> {
    postcard::from_bytes(bytes).map_err(|e| ConsistentError::Wire(e.to_string()))
}

impl<K: Key, M: RemoteMessage, V: Value> ConsistentRegistry<K, M, V> {
    /// Starts the registry on `node`: its member of the consensus group, and the task that
    /// renews this node's leases.
    ///
    /// # Errors
    ///
    /// [`ConsistentError::Group`] if the group cannot start (a registry of that name runs
    /// here already).
    pub async fn start(node: &Node, options: ConsistentOptions) -> Result<Self, ConsistentError> {
        let group = Group::start(node, options.group.clone(), Leases::default()).await?;
        let inner = Arc::new(Inner {
            node: node.clone(),
            group,
            options,
            held: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            events: broadcast::channel(256).0,
            tasks: Mutex::new(Vec::new()),
        });
        let renew = tokio::spawn(renewals::<K, M>(Arc::downgrade(&inner)));
        let watch = tokio::spawn(watchdog::<K, M>(Arc::downgrade(&inner)));
        lock(&inner.tasks).extend([renew, watch]);
        Ok(Self {
            inner,
            _value: std::marker::PhantomData,
        })
    }

    /// The node name of the consensus group's leader, as this node knows it.
    pub fn leader(&self) -> Option<String> {
        self.inner.group.leader()
    }

    /// Waits until the consensus group has a leader, at most `timeout` (the group starts
    /// once enough nodes are up).
    ///
    /// # Errors
    ///
    /// [`ConsistentError::Group`] if none within `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<String, ConsistentError> {
        Ok(self.inner.group.wait_leader(timeout).await?)
    }

    /// Registers `addr`, a process on this node, under `key`: a linearizable write. Once
    /// this returns, every linearizable lookup anywhere finds it, and no other process can
    /// be granted `key` until this one releases it or loses its lease.
    ///
    /// # Errors
    ///
    /// [`ConsistentError::Taken`] naming the holder's node; [`ConsistentError::Stopped`];
    /// [`ConsistentError::Group`] without a quorum (the name is then not held here, and
    /// the group frees it when the lease runs out if the grant did happen).
    pub async fn register(
        &self,
        key: K,
        addr: &Addr<M>,
        value: V,
    ) -> Result<Lease, ConsistentError> {
        let inner = &self.inner;
        let name = || format!("{key:?}");
        if addr.is_stopped() {
            return Err(ConsistentError::Stopped { name: name() });
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let export = format!("$consistent/{}/{id}", inner.options.name);
        let key_bytes = encode(&key)?;
        let command = encode(&Command::Acquire {
            key: key_bytes.clone(),
            node: inner.node.name().to_owned(),
            incarnation: inner.node.incarnation(),
            export: export.clone(),
            value: encode(&value)?,
            now_ms: now_ms(),
            ttl_ms: u64::try_from(inner.options.lease.as_millis()).unwrap_or(u64::MAX),
        })?;
        if inner.node.export(&export, addr.clone()).is_err() {
            return Err(ConsistentError::Wire(format!("export `{export}` taken")));
        }
        let asked = Instant::now();
        let reply = match inner.group.write(command).await {
            Ok(bytes) => decode::<Reply>(&bytes),
            Err(e) => Err(e.into()),
        };
        let token = match reply {
            Ok(Reply::Granted { token }) => token,
            Ok(Reply::Held { node }) => {
                inner.node.unexport(&export);
                return Err(ConsistentError::Taken {
                    name: name(),
                    holder: node,
                });
            }
            Ok(other) => {
                inner.node.unexport(&export);
                return Err(ConsistentError::Wire(format!(
                    "unexpected answer {other:?}"
                )));
            }
            Err(e) => {
                inner.node.unexport(&export);
                return Err(e);
            }
        };
        let weak = Arc::downgrade(inner);
        let stop_key = key.clone();
        let rt = tokio::runtime::Handle::current();
        let hook = addr.on_stop(move || {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            rt.spawn(async move { release::<K, M>(&inner, &stop_key, token).await });
        });
        let Some(hook) = hook else {
            // It stopped while the group granted: give the name back.
            inner.node.unexport(&export);
            let _ = write_release(inner, key_bytes, token).await;
            return Err(ConsistentError::Stopped { name: name() });
        };
        lock(&inner.held).insert(
            key,
            Holding {
                addr: addr.clone(),
                token,
                export,
                deadline: asked + inner.options.lease,
                hook: Some(hook),
            },
        );
        Ok(Lease { token })
    }

    /// Releases this node's hold on `key`. Returns whether it held it.
    ///
    /// # Errors
    ///
    /// [`ConsistentError::Group`] if the release could not be written (the name is then
    /// freed when its lease runs out).
    pub async fn unregister(&self, key: &K) -> Result<bool, ConsistentError> {
        let holding = lock(&self.inner.held).remove(key);
        let Some(mut h) = holding else {
            return Ok(false);
        };
        if let Some(hook) = h.hook.take() {
            hook.cancel();
        }
        self.inner.node.unexport(&h.export);
        write_release(&self.inner, encode(key)?, h.token).await?;
        Ok(true)
    }

    fn holder(&self, record: Option<Record>) -> Result<Option<Holder<M, V>>, ConsistentError> {
        let Some(r) = record.filter(|r| r.expires_ms > now_ms()) else {
            return Ok(None);
        };
        let local = (r.node == self.inner.node.name())
            .then(|| {
                lock(&self.inner.held)
                    .values()
                    .find(|h| h.token == r.token)
                    .map(|h| h.addr.clone())
            })
            .flatten();
        Ok(Some(Holder {
            location: Location {
                node: Arc::from(r.node.as_str()),
                export: Arc::from(r.export.as_str()),
                local,
            },
            token: r.token,
            value: decode(&r.value)?,
        }))
    }

    /// Who holds `key`, linearizably: reflects every registration and release that
    /// completed before the call, anywhere.
    ///
    /// # Errors
    ///
    /// [`ConsistentError::Group`] without a quorum.
    pub async fn whereis(&self, key: &K) -> Result<Option<Holder<M, V>>, ConsistentError> {
        let k = encode(key)?;
        let record = self.inner.group.read(|l| l.names.get(&k).cloned()).await?;
        self.holder(record)
    }

    /// Who holds `key` as this node's copy says: no round trip, possibly stale.
    pub fn whereis_local(&self, key: &K) -> Option<Holder<M, V>> {
        let k = encode(key).ok()?;
        let record = self.inner.group.read_local(|l| l.names.get(&k).cloned());
        self.holder(record).ok().flatten()
    }

    /// Sends `msg` to the holder of `key`, found linearizably.
    ///
    /// # Errors
    ///
    /// [`CastError::NoSuchName`] if no one holds it (or the group cannot say), otherwise
    /// as [`crate::ClusterRegistry::cast`].
    pub async fn cast(&self, key: &K, msg: M) -> Result<(), CastError<M>> {
        match self.whereis(key).await {
            Ok(Some(h)) => cast_at(&self.inner.node, &h.location, msg, || format!("{key:?}")),
            _ => Err(CastError::NoSuchName {
                name: format!("{key:?}"),
                msg,
            }),
        }
    }

    /// Calls the holder of `key`, found linearizably, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`CallError::NoSuchName`] if no one holds it (or the group cannot say), otherwise
    /// as [`crate::ClusterRegistry::call`].
    pub async fn call<R, F>(&self, key: &K, build: F, timeout: Duration) -> Result<R, CallError>
    where
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
        match self.whereis(key).await {
            Ok(Some(h)) => call_at(&self.inner.node, &h.location, build, timeout).await,
            _ => Err(CallError::NoSuchName(format!("{key:?}"))),
        }
    }

    /// Releases this node's hold on `key` if it is still the grant `token` (a later grant
    /// of the same key, here, is left alone); otherwise does nothing. A release that
    /// cannot be written is logged, and the lease runs out.
    pub(crate) async fn release_grant(&self, key: &K, token: u64) {
        release::<K, M>(&self.inner, key, token).await;
    }

    /// Leases of this node that were lost, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LeaseEvent<K>> {
        self.inner.events.subscribe()
    }
}

async fn write_release<K, M>(
    inner: &Inner<K, M>,
    key: Vec<u8>,
    token: u64,
) -> Result<(), ConsistentError> {
    inner
        .group
        .write(encode(&Command::Release { key, token })?)
        .await?;
    Ok(())
}

/// Takes this node's hold on `key` out of its table, if it is still the grant `token`
/// (a later grant of the same key is left alone).
fn take_holding<K: Key, M>(inner: &Inner<K, M>, key: &K, token: u64) -> Option<Holding<M>> {
    let mut held = lock(&inner.held);
    match held.get(key) {
        Some(h) if h.token == token => held.remove(key),
        _ => None,
    }
}

/// A held process stopped: give its name back (if it still holds it with `token`).
async fn release<K: Key, M: RemoteMessage>(inner: &Inner<K, M>, key: &K, token: u64) {
    if let Some(h) = take_holding(inner, key, token) {
        inner.node.unexport(&h.export);
        if let Ok(k) = encode(key) {
            if let Err(e) = write_release(inner, k, token).await {
                tracing::warn!(key = ?key, error = %e, "release not written; the lease will run out");
            }
        }
    }
}

/// Takes `key` away from this node: its lease is lost.
fn lose<K: Key, M: RemoteMessage>(inner: &Inner<K, M>, key: &K, token: u64, why: &str) {
    let Some(mut h) = take_holding(inner, key, token) else {
        return;
    };
    if let Some(hook) = h.hook.take() {
        hook.cancel();
    }
    inner.node.unexport(&h.export);
    tracing::warn!(key = ?key, token, why, "lease lost");
    if inner.options.on_lost == OnConflict::Stop {
        h.addr
            .stop(Some(format!("lease lost: {key:?} (token {token}): {why}")));
    }
    let _ = inner.events.send(LeaseEvent::Lost {
        key: key.clone(),
        token,
    });
}

/// Renews every held lease every third of the lease.
async fn renewals<K: Key, M: RemoteMessage>(weak: Weak<Inner<K, M>>) {
    loop {
        let every = match weak.upgrade() {
            Some(inner) => inner.options.lease / 3,
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let held: Vec<(K, u64)> = lock(&inner.held)
            .iter()
            .map(|(k, h)| (k.clone(), h.token))
            .collect();
        for (key, token) in held {
            let Ok(k) = encode(&key) else { continue };
            let ttl_ms = u64::try_from(inner.options.lease.as_millis()).unwrap_or(u64::MAX);
            let Ok(command) = encode(&Command::Renew {
                key: k,
                token,
                now_ms: now_ms(),
                ttl_ms,
            }) else {
                continue;
            };
            let asked = Instant::now();
            match inner
                .group
                .write(command)
                .await
                .map(|b| decode::<Reply>(&b))
            {
                Ok(Ok(Reply::Renewed)) => {
                    if let Some(h) = lock(&inner.held).get_mut(&key) {
                        if h.token == token {
                            h.deadline = asked + inner.options.lease;
                        }
                    }
                }
                Ok(Ok(_)) => lose(&inner, &key, token, "the group refused the renewal"),
                // No quorum: the watchdog lets the lease run out.
                Ok(Err(_)) | Err(_) => {}
            }
        }
    }
}

/// Gives up leases whose deadline passed, checking 20 times per lease.
async fn watchdog<K: Key, M: RemoteMessage>(weak: Weak<Inner<K, M>>) {
    loop {
        let every = match weak.upgrade() {
            Some(inner) => inner.options.lease / 20,
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let now = Instant::now();
        let late: Vec<(K, u64)> = lock(&inner.held)
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(k, h)| (k.clone(), h.token))
            .collect();
        for (key, token) in late {
            lose(
                &inner,
                &key,
                token,
                "not renewed within the lease (no quorum)",
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    fn acquire(key: &str, node: &str, now_ms: u64) -> Command {
        Command::Acquire {
            key: key.as_bytes().to_vec(),
            node: node.into(),
            incarnation: 1,
            export: format!("$x/{node}"),
            value: Vec::new(),
            now_ms,
            ttl_ms: 1000,
        }
    }

    #[test]
    fn a_name_is_granted_once_until_released_or_expired_and_tokens_only_grow() {
        let mut l = Leases::default();
        assert_eq!(l.act(acquire("k", "a", 0)), Reply::Granted { token: 1 });
        // A retry by the same holder gets the same token.
        assert_eq!(l.act(acquire("k", "a", 10)), Reply::Granted { token: 1 });
        assert_eq!(
            l.act(acquire("k", "b", 500)),
            Reply::Held { node: "a".into() }
        );
        // Renewed: still held past the first expiry.
        let renew = |token, now_ms| Command::Renew {
            key: b"k".to_vec(),
            token,
            now_ms,
            ttl_ms: 1000,
        };
        assert_eq!(l.act(renew(1, 900)), Reply::Renewed);
        assert_eq!(
            l.act(acquire("k", "b", 1500)),
            Reply::Held { node: "a".into() }
        );
        // Expired: b gets it with a larger token; a's renewal and release are refused.
        assert_eq!(l.act(acquire("k", "b", 1900)), Reply::Granted { token: 2 });
        assert_eq!(l.act(renew(1, 1901)), Reply::Lost);
        let release = |token| Command::Release {
            key: b"k".to_vec(),
            token,
        };
        assert_eq!(l.act(release(1)), Reply::Lost);
        assert_eq!(l.act(release(2)), Reply::Released);
        assert_eq!(l.act(acquire("k", "a", 1902)), Reply::Granted { token: 3 });
    }

    #[test]
    fn the_machine_survives_garbage_and_a_snapshot_round_trip() {
        let mut l = Leases::default();
        let reply: Reply = postcard::from_bytes(&l.apply(&[0xff, 0xff, 0xff])).unwrap();
        assert_eq!(reply, Reply::Unreadable);
        l.apply(&postcard::to_allocvec(&acquire("k", "a", 0)).unwrap());
        let mut copy = Leases::default();
        copy.restore(&l.snapshot());
        assert_eq!(copy.names, l.names);
        assert_eq!(copy.last_token, 1);
        copy.restore(b"not a snapshot");
        assert_eq!(copy.last_token, 1, "a bad snapshot must not wipe the state");
    }
}

/// The lease machine's decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod fuzzing;
