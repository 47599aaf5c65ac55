//! [`Shared`], its process and its task.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use foundation_actors::{Actor, ActorError, Addr};
use foundation_cluster::membership::{DownReason, Status};
use foundation_cluster::node::{ClusterEvent, DEFAULT, ExportConfig, Node, RemoteError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use super::error::StartError;
use crate::crdt::{Message, Replica, ReplicaId, SharedState};
use crate::metrics::{self, Count};

/// How a [`Shared`] runs: its name, how often it sends, on which channel.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use foundation_cache::SharedOptions;
///
/// let options = SharedOptions::new("presence")
///     .flush_every(Duration::from_millis(20))
///     .digest_every(Duration::from_secs(2))
///     .channel("replication");
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SharedOptions {
    pub(crate) name: String,
    pub(crate) flush_every: Duration,
    pub(crate) digest_every: Duration,
    pub(crate) channel: String,
    pub(crate) max_queued: Option<usize>,
    pub(crate) forget_after: Duration,
}

impl SharedOptions {
    /// Options for the shared state `name` (one name, one state type, on every node).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            flush_every: Duration::from_millis(1),
            digest_every: Duration::from_secs(1),
            channel: DEFAULT.to_owned(),
            max_queued: None,
            forget_after: DEFAULT_FORGET_AFTER,
        }
    }

    /// The least time between two deltas sent to the peers (1 ms by default): updates made
    /// meanwhile travel together, as one delta per node. An update after a quiet period is
    /// sent at once.
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// How often this node tells its peers its last delta's number (1 s by default), so
    /// that a peer that lost the last one asks for the full state.
    pub fn digest_every(mut self, every: Duration) -> Self {
        self.digest_every = every;
        self
    }

    /// The node channel replication rides (`default` by default). Declare it on every node
    /// (`NodeConfig::channel`); where this node or a peer lacks it, `default` is used.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// The limit of messages from peers waiting at this state's process (the node's
    /// `max_remote_queued` by default); past it the node drops them, and the protocol
    /// repairs the loss with a full state.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = Some(n);
        self
    }

    /// How long a peer may stay unheard (down, partitioned, or no longer running this
    /// state) before this node stops waiting for it to see removals (10 minutes by
    /// default). A removal's tombstone is dropped once every peer this node has heard
    /// from within that time holds it; a peer silent for longer is forgotten.
    ///
    /// The risk, for a state that keeps tombstones (the [`LwwMap`](crate::crdt::LwwMap)
    /// of a [`Replicated`](crate::Replicated) cache): a node cut off for longer than this
    /// that comes back with its state can bring back keys removed while it was away (an
    /// older value it holds meets no tombstone). Shorter: less memory held by removed
    /// keys; longer: longer partitions survived without that risk. A node that leaves
    /// gracefully, or is replaced by a newer incarnation, is forgotten at once (it never
    /// comes back with its old state).
    pub fn forget_after(mut self, after: Duration) -> Self {
        self.forget_after = after;
        self
    }
}

/// [`SharedOptions::forget_after`]'s default.
pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(600);

/// What a [`Shared`] (or a [`Replicated`](crate::Replicated) cache) has sent and received
/// on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStats {
    /// Deltas sent (one per peer per flush).
    pub deltas_sent: u64,
    /// Full states sent (to a joining node, or to a peer that asked after a loss).
    pub states_sent: u64,
    /// Messages sent in all (deltas, states, digests, requests).
    pub messages_sent: u64,
    /// Their encoded bytes.
    pub bytes_sent: u64,
    /// Messages received from peers.
    pub received: u64,
    /// Received messages that did not decode, dropped.
    pub malformed: u64,
    /// Sends that failed (the peer went down, its outbox was full); repaired later.
    pub send_failed: u64,
    /// States or values that failed to encode or decode.
    pub codec_errors: u64,
    /// Tombstones dropped once every peer held them.
    pub collected: u64,
    /// Tombstones the state keeps now (removals not yet seen by every peer).
    pub tombstones: u64,
}

/// Runs when a peer's delta or state is about to be merged, with the state before the
/// merge (a replicated cache mirrors the writes that win into its local cache); returns
/// how many parts of it did not decode (counted in [`SharedStats::codec_errors`]).
pub(crate) type Observer<S> = Box<dyn Fn(&Message<S>, &S) -> u64 + Send + Sync>;

/// A [`SharedState`] replicated across the cluster: each node that starts one of a name
/// holds a copy; updates apply here at once and reach every node, in batches, and every
/// copy converges to the join of all updates, across losses and partitions. See the
/// [module docs](crate::shared) for how.
///
/// Cloning is cheap and gives another handle to the same state. The state stops when
/// [`shutdown`](Self::shutdown) is called or the last handle is dropped.
///
/// # Examples
///
/// ```
/// use foundation_cache::Shared;
/// use foundation_cache::crdt::PnCounter;
/// use foundation_cluster::node::{Node, NodeConfig};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
/// let visits: Shared<PnCounter> = Shared::start(&node, "visits").await?;
/// visits.update(|counter, me| counter.add(me, 3));
/// visits.update(|counter, me| counter.add(me, -1));
/// assert_eq!(visits.read(|counter| counter.value()), 2);
/// # visits.shutdown();
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Shared<S: SharedState> {
    core: Arc<Core<S>>,
}

impl<S: SharedState> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<S: SharedState> fmt::Debug for Shared<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.core.name)
            .field("id", &self.core.id)
            .field("stats", &self.stats())
            .finish()
    }
}

pub(crate) struct Core<S: SharedState> {
    name: String,
    service: String,
    id: ReplicaId,
    node: Node,
    channel: String,
    replica: Mutex<Replica<S>>,
    /// Shared with the task, which holds no strong reference to the core while it
    /// waits: dropping the last handle ends it.
    changed: Arc<Notify>,
    observer: Option<Observer<S>>,
    counters: Counters,
    server: Mutex<Option<Addr<SyncMsg>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The peer nodes that may hold an older write of a removed key: what tombstones wait
    /// for. Lock order: `peers`, then `replica`.
    peers: Mutex<HashMap<String, Peer>>,
    forget_after: Duration,
    /// How long a node that came up may go without a word of this state before it is
    /// taken as not running it (until then, nothing is collected).
    unheard: Duration,
}

/// A peer node as the collection of tombstones sees it.
struct Peer {
    /// Its replica of this state, once it has said anything.
    replica: Option<ReplicaId>,
    /// When it last said anything (or came up, if it has not yet).
    heard: Instant,
}

struct Counters {
    deltas: Count,
    states: Count,
    messages: Count,
    bytes: Count,
    received: Count,
    malformed: Count,
    send_failed: Count,
    codec: Count,
    collected: Count,
}

impl Counters {
    fn new(name: &str, node: &str) -> Self {
        let count = |metric| Count::new(metric, name, node);
        Self {
            deltas: count(metrics::SYNC_DELTAS),
            states: count(metrics::SYNC_STATES),
            messages: count(metrics::SYNC_MESSAGES),
            bytes: count(metrics::SYNC_BYTES),
            received: count(metrics::SYNC_RECEIVED),
            malformed: count(metrics::SYNC_MALFORMED),
            send_failed: count(metrics::SYNC_SEND_FAILED),
            codec: count(metrics::CODEC_ERRORS),
            collected: count(metrics::SYNC_COLLECTED),
        }
    }
}

/// What the processes of one shared state send each other: the sending node, and a
/// [`Message`] in postcard.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Wire {
    from: String,
    body: Vec<u8>,
}

/// The shared state's process's message.
#[derive(Debug)]
pub(crate) struct SyncMsg(pub(crate) Wire);

// The version is in the wire name: a node of another version refuses these at its door.
foundation_actors::__newtype_remote_message!(SyncMsg, "foundation.cache.Sync.v2");

/// Locks `m`, poisoned or not: every critical section leaves the replica whole (a merge
/// that panicked halfway leaves a state that later merges complete).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it): what the
/// hybrid clocks of [`LwwMap`](crate::crdt::LwwMap) writes are given.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A replica id for this start of the node: random (std's hasher keys are), so a node
/// restarted with an empty state never reuses its old id (see the crdt module's limits).
fn fresh_id(node: &Node) -> ReplicaId {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(node.name().as_bytes());
    h.write_u64(node.incarnation());
    h.write_u64(wall_ms());
    ReplicaId(h.finish())
}

impl<S> Shared<S>
where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
{
    /// Starts the shared state `name` on `node`, with the default [`SharedOptions`].
    ///
    /// # Errors
    ///
    /// [`StartError::NameTaken`] if one of that name runs on this node already.
    pub async fn start(node: &Node, name: &str) -> Result<Self, StartError> {
        Self::start_with(node, SharedOptions::new(name)).await
    }

    /// Starts the shared state `options.name` on `node`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); [`StartError::Spawn`] if its process did not start.
    pub async fn start_with(node: &Node, options: SharedOptions) -> Result<Self, StartError> {
        Self::start_observed(node, options, None).await
    }

    pub(crate) async fn start_observed(
        node: &Node,
        options: SharedOptions,
        observer: Option<Observer<S>>,
    ) -> Result<Self, StartError> {
        let (max_queued, flush_every, digest_every) = (
            options.max_queued,
            options.flush_every,
            options.digest_every,
        );
        let id = fresh_id(node);
        let core = Arc::new(Core::new(node, options, observer, id));
        let server = foundation_actors::spawn(
            Server {
                core: Arc::downgrade(&core),
            },
            (),
        )
        .await
        .map_err(|e| StartError::Spawn {
            name: core.name.clone(),
            reason: e.to_string(),
        })?;
        let mut export = ExportConfig::new();
        if let Some(n) = max_queued {
            export = export.max_queued(n);
        }
        if node
            .export_with(&core.service, server.clone(), export)
            .is_err()
        {
            server.stop(None);
            return Err(StartError::NameTaken(core.name.clone()));
        }
        *lock(&core.server) = Some(server);
        // Subscribed before asking: a node that comes up in between is sent the state.
        let events = node.subscribe();
        // Peers already up do not see this node come up: ask each for its state.
        let want = Message::Want { from: id };
        for peer in core.up_peers() {
            core.met(&peer, None);
            core.send(&peer, &want);
        }
        let task = tokio::spawn(run(
            Arc::downgrade(&core),
            events,
            Arc::clone(&core.changed),
            flush_every,
            digest_every,
        ));
        lock(&core.tasks).push(task);
        Ok(Self { core })
    }

    /// A shared state on `node`, replica `id`, that runs no process and no task
    /// (nothing is exported): the fuzz targets hand its
    /// [`receive_bytes`](Self::receive_bytes) a peer's bytes.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn detached(
        node: &Node,
        options: SharedOptions,
        observer: Option<Observer<S>>,
        id: ReplicaId,
    ) -> Self {
        Self {
            core: Arc::new(Core::new(node, options, observer, id)),
        }
    }

    /// A peer's message as the process takes it from the node: decoded as its message
    /// type, then received. Whether it was accepted at the door (the body is checked
    /// after, and counted in [`SharedStats::malformed`]).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn receive_bytes(&self, bytes: &[u8]) -> bool {
        use foundation_actors::RemoteMessage as _;
        match SyncMsg::from_bytes(bytes) {
            Ok(SyncMsg(wire)) => {
                self.core.receive(wire);
                true
            }
            Err(_) => false,
        }
    }

    /// This node's copy and its protocol state, as a peer would be sent it now: the full
    /// state, then the pending delta (flushed), then the digest.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn outgoing(&self) -> Vec<Message<S>> {
        let mut replica = lock(&self.core.replica);
        let mut out = vec![replica.full_state()];
        out.extend(replica.flush());
        out.push(replica.digest());
        out
    }

    /// The bytes of a [`SyncMsg`] from `from` carrying `msg`, as a peer sends it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn wire_bytes(from: &str, msg: &Message<S>) -> Option<Vec<u8>> {
        use foundation_actors::RemoteMessage as _;
        let body = postcard::to_allocvec(msg).ok()?;
        SyncMsg(Wire {
            from: from.to_owned(),
            body,
        })
        .to_bytes()
        .ok()
    }
}

impl<S: SharedState> Shared<S> {
    /// Applies an update to this node's copy at once: `f` changes the state (given this
    /// replica's id) and returns its delta, which is sent to every node with the next
    /// flush.
    ///
    /// `f` runs under the state's lock: keep it short, and do not call this shared state
    /// from it.
    pub fn update(&self, f: impl FnOnce(&mut S, ReplicaId) -> S::Delta) {
        lock(&self.core.replica).update(f);
        self.core.changed.notify_one();
    }

    /// Reads this node's copy (under the state's lock: keep `f` short).
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(lock(&self.core.replica).state())
    }

    /// Runs `f` on the replica under its lock, and has the pending delta flushed after
    /// (the replicated cache's check-and-write operations).
    pub(crate) fn with_replica<R>(&self, f: impl FnOnce(&mut Replica<S>) -> R) -> R {
        let out = f(&mut lock(&self.core.replica));
        self.core.changed.notify_one();
        out
    }

    /// This node's replica id (fresh at each start).
    pub fn id(&self) -> ReplicaId {
        self.core.id
    }

    /// The shared state's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Its node's name.
    pub(crate) fn node_name(&self) -> &str {
        self.core.node.name()
    }

    /// What this node has sent and received for this state.
    pub fn stats(&self) -> SharedStats {
        let c = &self.core.counters;
        SharedStats {
            deltas_sent: c.deltas.get(),
            states_sent: c.states.get(),
            messages_sent: c.messages.get(),
            bytes_sent: c.bytes.get(),
            received: c.received.get(),
            malformed: c.malformed.get(),
            send_failed: c.send_failed.get(),
            codec_errors: c.codec.get(),
            collected: c.collected.get(),
            tombstones: self.read(|s| s.tombstones() as u64),
        }
    }

    /// Counts a value or state that failed to encode or decode (the replicated cache).
    pub(crate) fn codec_error(&self) {
        self.core.counters.codec.add(1);
    }

    /// Stops replicating here: the process is unexported and stopped, the task ends. This
    /// node's copy stays readable through the handles left; updates apply to it alone.
    pub fn shutdown(&self) {
        self.core.close();
    }
}

impl<S: SharedState> Core<S> {
    fn new(
        node: &Node,
        options: SharedOptions,
        observer: Option<Observer<S>>,
        id: ReplicaId,
    ) -> Self {
        Core {
            service: format!("$shared/{}", options.name),
            counters: Counters::new(&options.name, node.name()),
            name: options.name,
            id,
            node: node.clone(),
            channel: options.channel,
            replica: Mutex::new(Replica::new(id)),
            changed: Arc::new(Notify::new()),
            observer,
            server: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            peers: Mutex::new(HashMap::new()),
            forget_after: options.forget_after,
            unheard: (options.digest_every * 5).max(Duration::from_secs(5)),
        }
    }

    fn up_peers(&self) -> Vec<String> {
        let me = self.node.name();
        self.node
            .members()
            .into_iter()
            .filter(|m| m.status == Status::Up && m.id != me)
            .map(|m| m.id)
            .collect()
    }

    /// `node` came up (`replica` `None`) or said something as `replica`.
    fn met(&self, node: &str, replica: Option<ReplicaId>) {
        let mut peers = lock(&self.peers);
        let now = Instant::now();
        let peer = peers.entry(node.to_owned()).or_insert(Peer {
            replica: None,
            heard: now,
        });
        let Some(replica) = replica else { return };
        peer.heard = now;
        if let Some(old) = peer.replica.replace(replica) {
            if old != replica {
                // Restarted (a fresh id per start): the old incarnation never comes back.
                lock(&self.replica).forget(old);
            }
        }
    }

    /// `node` left for good (gracefully, or replaced by a newer incarnation).
    fn gone(&self, node: &str) {
        let peer = lock(&self.peers).remove(node);
        if let Some(replica) = peer.and_then(|p| p.replica) {
            lock(&self.replica).forget(replica);
        }
    }

    /// Drops the tombstones every peer holds; forgets peers unheard for `forget_after`.
    fn collect(&self) {
        let mut peers = lock(&self.peers);
        let mut forgotten = Vec::new();
        peers.retain(|_, p| {
            let keep = p.heard.elapsed() <= self.forget_after;
            if !keep {
                forgotten.extend(p.replica);
            }
            keep
        });
        let mut waiting = Vec::new();
        for p in peers.values() {
            match p.replica {
                Some(r) => waiting.push(r),
                // Up, but nothing heard yet: it may hold older writes (a joining node
                // bulk-loaded by another), so nothing goes until it speaks, or until it
                // has been silent long enough to be taken as not running this state.
                None if p.heard.elapsed() < self.unheard => return,
                None => {}
            }
        }
        let mut replica = lock(&self.replica);
        drop(peers);
        for r in forgotten {
            replica.forget(r);
        }
        let n = replica.collect(&waiting);
        if n > 0 {
            self.counters.collected.add(n as u64);
        }
    }

    fn close(&self) {
        if let Some(server) = lock(&self.server).take() {
            self.node.unexport(&self.service);
            server.stop(None);
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl<S: SharedState> Drop for Core<S> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<S> Core<S>
where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
{
    /// Encodes `msg` once, for any number of peers.
    fn encode(&self, msg: &Message<S>) -> Option<SyncMsg> {
        match postcard::to_allocvec(msg) {
            Ok(body) => Some(SyncMsg(Wire {
                from: self.node.name().to_owned(),
                body,
            })),
            Err(error) => {
                self.counters.codec.add(1);
                tracing::warn!(state = %self.name, %error, "a replication message failed to encode");
                None
            }
        }
    }

    fn send(&self, peer: &str, msg: &Message<S>) {
        if let Some(wire) = self.encode(msg) {
            self.send_wire(peer, &wire, msg);
        }
    }

    fn send_wire(&self, peer: &str, wire: &SyncMsg, msg: &Message<S>) {
        let sent = match self.node.send_on(&self.channel, peer, &self.service, wire) {
            Err(RemoteError::UnknownChannel { .. }) => {
                self.node.send_on(DEFAULT, peer, &self.service, wire)
            }
            other => other,
        };
        match sent {
            Ok(()) => {
                let c = &self.counters;
                c.messages.add(1);
                c.bytes.add(wire.0.body.len() as u64);
                match msg {
                    Message::Delta { .. } => c.deltas.add(1),
                    Message::State { .. } => c.states.add(1),
                    Message::Digest { .. } | Message::Want { .. } => {}
                }
            }
            Err(error) => {
                self.counters.send_failed.add(1);
                tracing::debug!(state = %self.name, peer, %error, "replication message not sent");
            }
        }
    }

    fn broadcast(&self, msg: &Message<S>) {
        let peers = self.up_peers();
        if peers.is_empty() {
            return;
        }
        if let Some(wire) = self.encode(msg) {
            for peer in &peers {
                self.send_wire(peer, &wire, msg);
            }
        }
    }

    /// A peer's message: merged (the observer sees it first), and answered if it asks
    /// for something or shows a gap.
    fn receive(&self, wire: Wire) {
        self.counters.received.add(1);
        let msg: Message<S> = match postcard::from_bytes(&wire.body) {
            Ok(msg) => msg,
            Err(error) => {
                self.counters.malformed.add(1);
                tracing::warn!(state = %self.name, from = %wire.from, %error, "a replication message did not decode: another version, or another state type under this name");
                return;
            }
        };
        // Every message names its sender's replica.
        let sender = match &msg {
            Message::Delta { origin, .. }
            | Message::State { origin, .. }
            | Message::Digest { origin, .. } => *origin,
            Message::Want { from } => *from,
        };
        self.met(&wire.from, Some(sender));
        let reply = {
            let mut replica = lock(&self.replica);
            if let Some(observe) = &self.observer {
                if matches!(msg, Message::Delta { .. } | Message::State { .. }) {
                    let failed = observe(&msg, replica.state());
                    if failed > 0 {
                        self.counters.codec.add(failed);
                    }
                }
            }
            replica.handle(msg)
        };
        // Every reply goes to the node that sent: a gap or a digest asks its origin, who
        // sent it; a request is answered to who asked.
        if let Some((_, reply)) = reply {
            self.send(&wire.from, &reply);
        }
    }

    fn flush(&self) -> bool {
        let batch = lock(&self.replica).flush();
        match batch {
            Some(delta) => {
                self.broadcast(&delta);
                true
            }
            None => false,
        }
    }
}

/// The state's task: flushes the pending batch (at once after a quiet period, then at
/// most once every `flush_every`), sends a digest every `digest_every`, and the full state
/// to each node that comes up.
async fn run<S>(
    core: Weak<Core<S>>,
    mut events: broadcast::Receiver<ClusterEvent>,
    changed: Arc<Notify>,
    flush_every: Duration,
    digest_every: Duration,
) where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
{
    let mut digest = tokio::time::interval(digest_every);
    digest.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        enum Do {
            Flush,
            Digest,
            Up(String),
            Gone(String),
            Resync,
        }
        let what = tokio::select! {
            () = changed.notified() => Do::Flush,
            _ = digest.tick() => Do::Digest,
            e = events.recv() => match e {
                Ok(ClusterEvent::NodeUp(m)) => Do::Up(m.id),
                Ok(ClusterEvent::NodeDown {
                    member,
                    reason: DownReason::Left | DownReason::Restarted,
                }) => Do::Gone(member.id),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => Do::Resync,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        let Some(core) = core.upgrade() else { return };
        match what {
            Do::Flush => {
                if core.flush() {
                    drop(core);
                    // Updates made meanwhile wait and go together at the next flush.
                    tokio::time::sleep(flush_every).await;
                    continue;
                }
            }
            Do::Digest => {
                core.flush();
                let digest = lock(&core.replica).digest();
                core.broadcast(&digest);
                core.collect();
            }
            Do::Gone(peer) => core.gone(&peer),
            Do::Up(peer) => {
                if peer != core.node.name() {
                    core.met(&peer, None);
                    core.flush();
                    let state = lock(&core.replica).full_state();
                    core.send(&peer, &state);
                }
            }
            Do::Resync => {
                // Nodes that came up meanwhile were not sent the state: they ask at the
                // digest.
                core.flush();
                let digest = lock(&core.replica).digest();
                core.broadcast(&digest);
            }
        }
    }
}

/// The process peers send to.
struct Server<S: SharedState> {
    core: Weak<Core<S>>,
}

impl<S> Actor for Server<S>
where
    S: SharedState + Serialize + DeserializeOwned,
    S::Delta: Serialize + DeserializeOwned,
{
    type Msg = SyncMsg;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<SyncMsg>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<SyncMsg>, msg: SyncMsg, (): &mut ()) -> Result<(), ActorError> {
        if let Some(core) = self.core.upgrade() {
            core.receive(msg.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::PnCounter;
    use foundation_cluster::node::NodeConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peers_bytes_that_do_not_decode_are_counted_and_change_nothing() {
        let node = Node::start(
            NodeConfig::new("garbage", "cookie")
                .listen("127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let hits: Shared<PnCounter> = Shared::start(&node, "hits")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        hits.update(|c, me| c.add(me, 2));
        for body in [vec![], vec![0xff; 9], vec![7, 1, 2, 3]] {
            hits.core.receive(Wire {
                from: "nobody".into(),
                body,
            });
        }
        // A state of another type under this name: bytes that are not a counter's.
        let other: Message<crate::crdt::OrSet<String>> = Message::State {
            origin: ReplicaId(9),
            seq: 1,
            state: crate::crdt::OrSet::default(),
        };
        let body = postcard::to_allocvec(&other).unwrap_or_else(|e| panic!("{e}"));
        hits.core.receive(Wire {
            from: "nobody".into(),
            body,
        });
        let stats = hits.stats();
        assert_eq!(stats.received, 4);
        assert!(stats.malformed >= 3, "{stats:?}");
        assert_eq!(hits.read(PnCounter::value), 2);
        // A second state of one name on one node is refused.
        let again: Result<Shared<PnCounter>, _> = Shared::start(&node, "hits").await;
        assert!(matches!(again, Err(StartError::NameTaken(n)) if n == "hits"));
        hits.shutdown();
        node.shutdown().await;
    }
}
