//! Across nodes: each node exports one process per pubsub (`$pubsub/<name>`), tells its
//! peers which topics and patterns it has subscribers for (its *interest*), and sends each
//! broadcast once to each peer whose interest matches, where that peer's process fans it
//! out. See `PROTOCOL.md` beside this file for the messages and guarantees.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use foundation_actors::{Actor, ActorError, Addr};
use foundation_cluster::membership::Status;
use foundation_cluster::node::{
    CONTROL, ChannelConfig, ClusterEvent, DEFAULT, ExportConfig, Node, Priority, RemoteError,
    spawn_low_priority,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::error::{BroadcastError, StartError};
use crate::interest::{Outgoing, PeerView, Reply};
use crate::pubsub::{Core, Incoming, Options};
use crate::subscriber::{Payload, lock};
use crate::trie::Trie;

/// The node channel broadcasts ride by default: declare it on every node with
/// `NodeConfig::channel(foundation_pubsub::CHANNEL, foundation_pubsub::channel_config())`.
pub const CHANNEL: &str = "pubsub";

/// How many bytes of broadcasts may wait to be written to one peer in
/// [`channel_config`]: 4 MiB (four thousand broadcasts of 1 KiB).
pub const CHANNEL_MAX_PENDING: usize = 4 * 1024 * 1024;

/// The settings to declare the broadcasts' channel ([`CHANNEL`]) with on every node:
/// [`Priority::Low`], so that a flood of broadcasts runs on what calls, heartbeats and
/// replication leave (on both nodes: the sender's writer, the receiver's reader and the
/// pubsub's fan-out, on the node's low-priority thread), and at most
/// [`CHANNEL_MAX_PENDING`] bytes waiting per peer, so that a publisher faster than a peer
/// takes its broadcasts learns it soon ([`Stats::send_failed`](crate::Stats)) instead of
/// filling the default 64 MiB outbox (at most once, as any broadcast across nodes).
///
/// # Examples
///
/// ```
/// use foundation_cluster::node::NodeConfig;
/// let config = NodeConfig::new("web-1", "cookie")
///     .channel(foundation_pubsub::CHANNEL, foundation_pubsub::channel_config());
/// # let _ = config;
/// ```
#[must_use]
pub fn channel_config() -> ChannelConfig {
    ChannelConfig::default()
        .priority(Priority::Low)
        .max_pending(CHANNEL_MAX_PENDING)
}

/// What the pubsub processes of one name send each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Wire {
    /// A broadcast: its topic, its payload type's wire id
    /// ([`WireType::id`](foundation_actors::WireType::id) of the topic's type), the
    /// payload's wire form ([`RemoteMessage::to_bytes`](foundation_actors::RemoteMessage::to_bytes)).
    Publish {
        topic: String,
        type_id: u64,
        payload: Vec<u8>,
    },
    /// What changed in `origin`'s interest from its version `from` to `from + 1`: each
    /// topic or pattern whose count changed, with its count now (0: no subscriber left).
    Delta {
        origin: String,
        epoch: u64,
        from: u64,
        changes: Vec<(String, u32)>,
    },
    /// Part `part` (from 0) of `parts` of `origin`'s whole interest at `version`: every
    /// topic and pattern it has subscribers for, with how many.
    Full {
        origin: String,
        epoch: u64,
        version: u64,
        part: u32,
        parts: u32,
        filters: Vec<(String, u32)>,
    },
    /// `origin`'s interest is at `version` of `epoch` (once a gossip period).
    Digest {
        origin: String,
        epoch: u64,
        version: u64,
    },
    /// `origin` asks for the receiver's whole interest (it missed a delta).
    Want { origin: String },
}

/// The pubsub process's message.
#[derive(Debug)]
pub(crate) struct WireMsg(pub(crate) Wire);

// The wire name carries the protocol's version: a node of another version refuses these
// messages at its door (`RemoteError::WrongType`, counted by the node) instead of
// misreading them. v2: a broadcast names its payload type by wire id, not by Rust name;
// interest travels as versioned deltas, whole sets (in parts), digests and requests.
foundation_actors::__newtype_remote_message!(WireMsg, "foundation.pubsub.Wire.v2");

/// The cluster side of a pubsub.
pub(crate) struct Remote {
    node: Node,
    service: String,
    channel: String,
    /// Each peer's interest, as it told.
    peers: RwLock<HashMap<String, PeerView>>,
    /// This node's interest, as the peers are told it.
    outgoing: Mutex<Outgoing>,
    /// Peers that asked for this node's whole interest.
    wants: Mutex<HashSet<String>>,
    changed: Arc<Notify>,
    /// Woken when a peer's view changes (what [`crate::PubSub::wait_for_subscribers`]
    /// waits on).
    heard: Notify,
    server: Mutex<Option<Addr<WireMsg>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Broadcasts went on `default` at least once: the broadcasts' channel is missing
    /// here or at a peer (warned once).
    fell_back: std::sync::atomic::AtomicBool,
    /// What the node had dropped at the process when it was unexported.
    dropped_before_close: AtomicU64,
    /// The name of the thread the process started on (tests check where it runs).
    #[cfg(test)]
    server_thread: Mutex<Option<String>>,
}

impl Remote {
    pub(crate) fn new(node: &Node, options: &Options) -> Self {
        Self {
            node: node.clone(),
            service: format!("$pubsub/{}", options.name),
            channel: options.channel.clone(),
            peers: RwLock::new(HashMap::new()),
            outgoing: Mutex::new(Outgoing::new(epoch())),
            wants: Mutex::new(HashSet::new()),
            changed: Arc::new(Notify::new()),
            heard: Notify::new(),
            server: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            fell_back: std::sync::atomic::AtomicBool::new(false),
            dropped_before_close: AtomicU64::new(0),
            #[cfg(test)]
            server_thread: Mutex::new(None),
        }
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Whether messages from peers other than the one being handled wait at this pubsub's
    /// process (delivered to it, not handled yet).
    fn more_waiting(&self) -> bool {
        self.node
            .export_stats(&self.service)
            .is_some_and(|s| s.queued > 1)
    }

    /// Messages from peers the node dropped at this pubsub's process for its limit.
    pub(crate) fn dropped(&self) -> u64 {
        // The node counts per export, from `start` until `close` unexports it; what it
        // counted is kept then.
        let server = lock(&self.server);
        if server.is_none() {
            return self.dropped_before_close.load(Ordering::Relaxed);
        }
        self.node
            .export_stats(&self.service)
            .map_or(0, |s| s.dropped)
    }

    fn peers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PeerView>> {
        self.peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn peers_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, PeerView>> {
        self.peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `filter`'s count changed here: the gossip task sends it in its next delta
    /// (coalescing bursts).
    pub(crate) fn changed(&self, filter: &Arc<str>) {
        lock(&self.outgoing).mark(filter);
        self.changed.notify_one();
    }

    /// Subscribers of `topic` on the other nodes, as they last told.
    pub(crate) fn count(&self, topic: &str, pattern: bool) -> usize {
        let peers = self.peers();
        peers
            .values()
            .map(|p| count_in(&p.trie, topic, pattern))
            .sum()
    }

    /// Sends a broadcast once to each peer with interest in `topic`.
    pub(crate) fn forward<T: Payload>(
        &self,
        core: &Core,
        topic: &str,
        msg: &T,
    ) -> Result<(), BroadcastError> {
        let targets: Vec<String> = self
            .peers()
            .iter()
            .filter(|(_, p)| p.trie.any_match(topic))
            .map(|(n, _)| n.clone())
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let wire = WireMsg(publish(topic, msg)?);
        for peer in targets {
            if let Err(error) = self.send_wire(core, &peer, &wire) {
                core.counters.send_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(pubsub = %core.name, peer, topic, %error, "broadcast not sent to a peer");
            } else {
                core.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Sends a broadcast to `peer` on the broadcasts' channel; on `default` when this node
    /// or the peer has no such channel (said once in the log, as a warning): a node that
    /// did not declare the `pubsub` channel still sends and gets broadcasts, without the
    /// isolation from calls that the channel gives.
    fn send_wire(&self, core: &Core, peer: &str, wire: &WireMsg) -> Result<(), RemoteError> {
        match self.node.send_on(&self.channel, peer, &self.service, wire) {
            Err(RemoteError::UnknownChannel { channel, node }) => {
                if !self.fell_back.swap(true, Ordering::Relaxed) {
                    tracing::warn!(pubsub = %core.name, %channel, %node, "broadcasts go on the `default` channel: declare the `{channel}` channel on every node (NodeConfig::channel) so that a flood of broadcasts never delays calls");
                }
                self.node.send_on(DEFAULT, peer, &self.service, wire)
            }
            other => other,
        }
    }

    /// Sends a broadcast to `node` alone.
    pub(crate) fn direct<T: Payload>(
        &self,
        core: &Core,
        node: &str,
        topic: &str,
        msg: &T,
    ) -> Result<(), BroadcastError> {
        let up = self
            .node
            .members()
            .iter()
            .any(|m| m.id == node && m.status == Status::Up);
        if !up {
            return Err(BroadcastError::UnknownNode(node.to_owned()));
        }
        let wire = WireMsg(publish(topic, msg)?);
        match self.send_wire(core, node, &wire) {
            Ok(()) => {
                core.counters.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(source) => {
                core.counters.send_failed.fetch_add(1, Ordering::Relaxed);
                Err(BroadcastError::Remote {
                    node: node.to_owned(),
                    source: Box::new(source),
                })
            }
        }
    }

    /// Sends one interest message to `peer`, counted. Interest rides `control`: small
    /// (a change costs its own size), and never stuck behind a flood of broadcasts, so
    /// counts and routing stay current while the `pubsub` channel is busy.
    fn send_interest(&self, core: &Core, peer: &str, msg: &WireMsg) {
        match self.node.send_on(CONTROL, peer, &self.service, msg) {
            Ok(()) => {
                core.counters.interest_sent.fetch_add(1, Ordering::Relaxed);
                core.counters
                    .interest_bytes
                    .fetch_add(encoded_len(&msg.0), Ordering::Relaxed);
            }
            Err(error) => {
                tracing::debug!(pubsub = %core.name, peer, %error, "interest not sent");
            }
        }
    }

    /// Sends what changed here since the last delta to `peers`.
    fn send_deltas(&self, core: &Core, peers: &[String]) {
        let deltas = {
            let mut out = lock(&self.outgoing);
            let dirty = out.take_dirty();
            if dirty.is_empty() {
                return;
            }
            // Read under `outgoing`: no whole set is cut between this and the version step.
            let changes = core.counts_of(&dirty);
            out.deltas(self.node.name(), changes)
        };
        for delta in deltas {
            let msg = WireMsg(delta);
            for peer in peers {
                self.send_interest(core, peer, &msg);
            }
        }
    }

    /// Sends this node's whole interest to `peer`, in parts.
    fn send_full(&self, core: &Core, peer: &str) {
        let parts = {
            let out = lock(&self.outgoing);
            out.full(self.node.name(), core.interest())
        };
        core.counters.interest_full.fetch_add(1, Ordering::Relaxed);
        for part in parts {
            self.send_interest(core, peer, &WireMsg(part));
        }
    }

    fn send_digest(&self, core: &Core, peers: &[String]) {
        let msg = WireMsg(lock(&self.outgoing).digest(self.node.name()));
        for peer in peers {
            self.send_interest(core, peer, &msg);
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

    fn is_up(&self, peer: &str) -> bool {
        self.node
            .members()
            .iter()
            .any(|m| m.id == peer && m.status == Status::Up)
    }

    fn take_wants(&self) -> Vec<String> {
        lock(&self.wants).drain().collect()
    }

    /// The epoch of `peer`'s pubsub as last heard here (0 before any whole set).
    fn peer_epoch(&self, peer: &str) -> u64 {
        self.peers().get(peer).map_or(0, PeerView::epoch)
    }

    /// A peer's interest message: its view here follows it, and a view that missed
    /// something asks the peer for its whole set.
    fn interest(&self, core: &Core, wire: Wire) {
        let malformed = &core.counters.malformed;
        let origin = match &wire {
            Wire::Delta { origin, .. }
            | Wire::Full { origin, .. }
            | Wire::Digest { origin, .. }
            | Wire::Want { origin } => origin.clone(),
            Wire::Publish { .. } => return,
        };
        // A late message from a node already down must not bring its interest back.
        if !self.is_up(&origin) {
            return;
        }
        if let Wire::Want { .. } = wire {
            // The gossip task answers: it alone sends this node's interest, in order.
            lock(&self.wants).insert(origin);
            self.changed.notify_one();
            return;
        }
        let reply = {
            let mut peers = self.peers_mut();
            let view = if matches!(wire, Wire::Delta { .. }) {
                // Not heard from yet: its whole set is on its way (it sends one to each
                // node it sees come up), or its next digest makes this node ask.
                let Some(view) = peers.get_mut(&origin) else {
                    return;
                };
                view
            } else {
                peers.entry(origin.clone()).or_default()
            };
            let Some(reply) = view.receive(wire, malformed) else {
                return;
            };
            reply
        };
        self.heard.notify_waiters();
        if reply == Reply::Want {
            self.send_want(core, &origin);
        }
    }

    /// Asks `peer` for its whole interest.
    fn send_want(&self, core: &Core, peer: &str) {
        let want = WireMsg(Wire::Want {
            origin: self.node.name().to_owned(),
        });
        self.send_interest(core, peer, &want);
    }

    /// Wakes what waits for peers' interest to change ([`Remote::heard`]).
    fn node_down(&self, peer: &str) {
        self.peers_mut().remove(peer);
        self.heard.notify_waiters();
    }

    /// Notified whenever a peer's interest as seen here changes (or a peer's view goes).
    pub(crate) fn heard(&self) -> &Notify {
        &self.heard
    }

    /// The peers whose pubsub of this name has told this node its interest.
    pub(crate) fn peers_heard(&self) -> Vec<String> {
        let mut peers: Vec<String> = self.peers().keys().cloned().collect();
        peers.sort_unstable();
        peers
    }

    /// Forgets the interest of nodes no longer up (after membership events were missed).
    fn resync(&self) {
        let up = self.up_peers();
        self.peers_mut().retain(|p, _| up.contains(p));
    }

    pub(crate) fn close(&self) {
        // Tell the peers this node has no interest any more, then stop.
        let gone = WireMsg(lock(&self.outgoing).gone(self.node.name()));
        for peer in self.up_peers() {
            if let Err(error) = self.node.send_on(CONTROL, &peer, &self.service, &gone) {
                tracing::debug!(peer, %error, "the last interest was not sent");
            }
        }
        // Held until unexported, so `dropped` reads one or the other, never neither.
        let mut held = lock(&self.server);
        if let Some(server) = held.take() {
            let dropped = self
                .node
                .export_stats(&self.service)
                .map_or(0, |s| s.dropped);
            self.dropped_before_close.store(dropped, Ordering::Relaxed);
            self.node.unexport(&self.service);
            server.stop(None);
        }
        drop(held);
        // Counts from peers end with it: a pubsub shut down has no subscribers anywhere.
        self.peers_mut().clear();
        self.heard.notify_waiters();
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// A pubsub's epoch: new at each start, so that peers tell a restarted node's versions
/// from the ones before.
fn epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // The low 64 bits: they differ between two starts.
    nanos as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

/// The size of `wire`'s encoded form: what [`Stats::interest_bytes`](crate::Stats) counts.
fn encoded_len(wire: &Wire) -> u64 {
    struct Len(u64);
    impl Extend<u8> for Len {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
            self.0 += bytes.into_iter().count() as u64;
        }
    }
    postcard::to_extend(wire, Len(0)).map_or(0, |l| l.0)
}

/// A peer's subscribers of `topic` (or, for a pattern, of exactly that pattern) in its
/// interest `trie`.
pub(crate) fn count_in(trie: &Trie<u32>, topic: &str, pattern: bool) -> usize {
    if pattern {
        return trie.get(topic).map_or(0, |n| *n as usize);
    }
    let mut n = 0;
    trie.matches(topic, |c| n += *c as usize);
    n
}

pub(crate) fn publish<T: Payload>(topic: &str, msg: &T) -> Result<Wire, BroadcastError> {
    let payload = msg.to_bytes().map_err(|source| BroadcastError::Encode {
        topic: topic.to_owned(),
        source,
    })?;
    Ok(Wire::Publish {
        topic: topic.to_owned(),
        type_id: T::WIRE_TYPE.id(),
        payload,
    })
}

/// Starts the pubsub's process and tasks on `node`.
pub(crate) async fn start(
    core: &Arc<Core>,
    node: &Node,
    options: &Options,
) -> Result<(), StartError> {
    let Some(remote) = &core.remote else {
        return Ok(());
    };
    let server = spawn_server(core, node, &options.channel).await?;
    let mut export = ExportConfig::new();
    if let Some(n) = options.max_queued {
        export = export.max_queued(n);
    }
    if node
        .export_with(&remote.service, server.clone(), export)
        .is_err()
    {
        server.stop(None);
        return Err(StartError::NameTaken(options.name.clone()));
    }
    *lock(&remote.server) = Some(server);
    // Subscribe before the first gossip, so no node joining in between is missed.
    let events = node.subscribe();
    let gossip = tokio::spawn(gossip(
        Arc::downgrade(core),
        node.clone(),
        events,
        remote.changed.clone(),
        options.gossip_every,
    ));
    lock(&remote.tasks).push(gossip);
    Ok(())
}

/// Spawns the pubsub's process where the broadcasts' channel runs its lanes: for a
/// [`Priority::Low`] channel, on the node's low-priority thread
/// ([`spawn_low_priority`]), so the fan-out of a flood of broadcasts (decoding, handing
/// each to every local subscriber, waking them) runs at the priority of the lane that
/// reads them, below the application's threads, instead of taking their cores from a
/// call; otherwise on the caller's runtime.
async fn spawn_server(
    core: &Arc<Core>,
    node: &Node,
    channel: &str,
) -> Result<Addr<WireMsg>, foundation_actors::SpawnError> {
    let server = Server {
        core: Arc::downgrade(core),
    };
    if node.channel_priority(channel) != Some(Priority::Low) {
        return foundation_actors::spawn(server, ()).await;
    }
    // Spawned from a task on the low-priority thread: ractor runs the process there.
    let on_low = spawn_low_priority(foundation_actors::spawn(server, ()));
    match on_low.await {
        Ok(spawned) => spawned,
        Err(error) => {
            // Only if the spawn panicked: as on a normal-priority channel.
            tracing::warn!(%error, "the pubsub's process could not start on the low-priority thread; it runs on the node's runtime");
            foundation_actors::spawn(
                Server {
                    core: Arc::downgrade(core),
                },
                (),
            )
            .await
        }
    }
}

/// Tells peers this node's interest: what changed, at once (bursts coalesce into one
/// delta); the whole set to each node that comes up and to each that asks (at most once a
/// period each, a request past that waits for the next tick); a digest every `every`.
/// Forgets the interest of nodes that go down. It is the only sender of this node's
/// interest, so each peer gets it in order.
async fn gossip(
    core: Weak<Core>,
    node: Node,
    mut events: broadcast::Receiver<ClusterEvent>,
    changed: Arc<Notify>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this node last sent each peer its whole set, and the epoch of the peer's
    // pubsub it had heard of then.
    let mut last_full: HashMap<String, (tokio::time::Instant, u64)> = HashMap::new();
    let full_to = |remote: &Remote, core: &Core, peer: &str, last: &mut HashMap<_, _>| {
        remote.send_full(core, peer);
        last.insert(
            peer.to_owned(),
            (tokio::time::Instant::now(), remote.peer_epoch(peer)),
        );
    };
    let mut wanted: HashSet<String> = HashSet::new();
    // Peers up already when this pubsub starts (the usual order: the node connects, then
    // the application starts its pubsub): each gets this node's whole set and is asked
    // for its own at once, not at its next digests. A peer whose pubsub of this name
    // starts later does the same towards this one.
    if let Some(core) = core.upgrade() {
        if let Some(remote) = &core.remote {
            for peer in remote.up_peers() {
                full_to(remote, &core, &peer, &mut last_full);
                remote.send_want(&core, &peer);
            }
        }
    }
    let shut_down = node.shut_down();
    tokio::pin!(shut_down);
    loop {
        enum Do {
            Changes,
            Tick,
            Up(String),
            Down(String),
            Resync,
            Stop,
            NodeShutDown,
        }
        let what = tokio::select! {
            () = &mut shut_down => Do::NodeShutDown,
            () = changed.notified() => Do::Changes,
            _ = tick.tick() => Do::Tick,
            e = events.recv() => match e {
                Ok(ClusterEvent::NodeUp(m)) => Do::Up(m.id),
                Ok(ClusterEvent::NodeDown { member, .. }) => Do::Down(member.id),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => Do::Resync,
                Err(broadcast::error::RecvError::Closed) => Do::Stop,
            },
        };
        let Some(core) = core.upgrade() else {
            return;
        };
        let Some(remote) = &core.remote else {
            return;
        };
        match what {
            Do::Changes | Do::Tick => {
                let on_tick = matches!(what, Do::Tick);
                let peers = remote.up_peers();
                remote.send_deltas(&core, &peers);
                let now = tokio::time::Instant::now();
                wanted.extend(remote.take_wants());
                wanted.retain(|peer| {
                    if !peers.contains(peer) {
                        return false;
                    }
                    // At most once a period per peer, but at once for a peer whose
                    // pubsub started since the last whole set it was sent (a new epoch):
                    // that set may have found no pubsub there to take it.
                    let due = on_tick
                        || last_full.get(peer).is_none_or(|(at, epoch)| {
                            now.duration_since(*at) >= every || *epoch != remote.peer_epoch(peer)
                        });
                    if due {
                        full_to(remote, &core, peer, &mut last_full);
                    }
                    !due
                });
                if on_tick {
                    remote.send_digest(&core, &peers);
                    last_full.retain(|p, _| peers.contains(p));
                    // The node counts these: the metric follows once a period.
                    core.counters.remote_dropped.absolute(remote.dropped());
                }
            }
            Do::Up(peer) => full_to(remote, &core, &peer, &mut last_full),
            Do::Down(peer) => {
                remote.node_down(&peer);
                last_full.remove(&peer);
            }
            Do::Resync => {
                // Nodes that came up meanwhile hold no view of this one: the digest makes
                // them ask for it.
                remote.resync();
                remote.send_digest(&core, &remote.up_peers());
            }
            Do::Stop => return,
            Do::NodeShutDown => {
                // Ends its streams and unsubscribes its actors; later calls get `Closed`.
                core.close();
                return;
            }
        }
    }
}

/// The most broadcasts from peers the pubsub process holds back to fan out together.
const BATCH: usize = 64;

/// The process peers send to.
///
/// # Batches
///
/// A broadcast is not fanned out as soon as it is handled when more messages from peers
/// wait behind it (the node counts them): it is held, and the last of those that arrive
/// together (or the [`BATCH`]-th) fans them all out at once ([`Core::receive_batch`]).
/// Under load an actor subscriber then gets several broadcasts as one batch (one mailbox
/// message, one wake), not one message each; alone, a broadcast goes out at once. The node's limit of messages waiting at
/// the process (`Options::max_queued`) counts those not handled yet: the process holds
/// at most [`BATCH`] more.
struct Server {
    core: Weak<Core>,
}

impl Actor for Server {
    type Msg = WireMsg;
    type State = Vec<Incoming>;
    type Args = ();

    async fn init(&self, _: &Addr<WireMsg>, (): ()) -> Result<Vec<Incoming>, ActorError> {
        #[cfg(test)]
        if let Some(remote) = self.core.upgrade().as_ref().and_then(|c| c.remote.as_ref()) {
            *lock(&remote.server_thread) = std::thread::current().name().map(str::to_owned);
        }
        Ok(Vec::new())
    }

    async fn handle(
        &self,
        _: &Addr<WireMsg>,
        msg: WireMsg,
        held: &mut Vec<Incoming>,
    ) -> Result<(), ActorError> {
        let Some(core) = self.core.upgrade() else {
            held.clear();
            return Ok(());
        };
        let Some(remote) = &core.remote else {
            return Ok(());
        };
        match msg.0 {
            Wire::Publish {
                topic,
                type_id,
                payload,
            } => held.push(Incoming {
                topic,
                type_id,
                payload,
                ctx: foundation_actors::Context::current(),
            }),
            interest => remote.interest(&core, interest),
        }
        if !held.is_empty() && (held.len() >= BATCH || !remote.more_waiting()) {
            core.receive_batch(held);
            held.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::{PubSub, Topic};
    use foundation_actors::RemoteMessage;
    use foundation_actors::remote::wire_id;

    /// A topic's type, under a pinned wire name.
    #[derive(Debug, Clone, RemoteMessage)]
    #[remote(name = "test.Price")]
    struct Price {
        cents: u64,
    }

    /// The same type moved to another module: another `std::any::type_name`.
    mod moved {
        #[derive(Debug, Clone, foundation_actors::RemoteMessage)]
        #[remote(name = "test.Price")]
        pub(super) struct Price {
            pub(super) cents: u64,
        }
    }

    /// `Price`'s shape (its bytes decode as one) under another wire name.
    #[derive(Debug, Clone, RemoteMessage)]
    struct Cost {
        cents: u64,
    }

    fn sent<T: Payload>(msg: &T) -> (u64, Vec<u8>) {
        match publish("prices", msg).unwrap() {
            Wire::Publish {
                type_id, payload, ..
            } => (type_id, payload),
            other => panic!("not a broadcast: {other:?}"),
        }
    }

    async fn node_with(priority: Priority) -> Node {
        use foundation_cluster::node::{ChannelConfig, NodeConfig};
        let config = NodeConfig::new("placement", "cookie")
            .listen("127.0.0.1:0".parse().unwrap())
            .channel(CHANNEL, ChannelConfig::default().priority(priority));
        Node::start(config).await.unwrap()
    }

    fn server_thread(ps: &PubSub) -> Option<String> {
        let remote = ps.core().remote.as_ref().unwrap();
        lock(&remote.server_thread).clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_process_fed_by_a_low_priority_channel_runs_on_the_low_priority_thread() {
        let node = node_with(Priority::Low).await;
        let ps = PubSub::start(&node, "low").await.unwrap();
        // The node's thread for low-priority lanes (`foundation_cluster::node::priority`).
        assert_eq!(server_thread(&ps).as_deref(), Some("fnd-low-lanes"));
        node.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_process_fed_by_a_normal_channel_runs_on_the_callers_runtime() {
        let node = node_with(Priority::Normal).await;
        let ps = PubSub::start(&node, "normal").await.unwrap();
        let thread = server_thread(&ps);
        assert!(thread.is_some());
        assert_ne!(thread.as_deref(), Some("fnd-low-lanes"));
        node.shutdown().await;
    }

    #[test]
    fn a_broadcast_names_its_type_by_the_hash_of_its_wire_name() {
        // Fixed values: peers built from other versions compare them.
        assert_eq!(sent(&7_u64).0, 0xa248_1493_b936_2ff3);
        assert_eq!(sent(&"x".to_owned()).0, 0x826f_81d3_512e_3e7b);
        assert_eq!(sent(&std::sync::Arc::new(7_u64)), sent(&7_u64));
        assert_eq!(sent(&Price { cents: 5 }).0, wire_id("test.Price"));
        assert_eq!(sent(&moved::Price { cents: 5 }), sent(&Price { cents: 5 }));
        assert_eq!(sent(&Cost { cents: 5 }).0, wire_id("Cost"));
        assert_eq!(sent(&Cost { cents: 5 }).1, sent(&Price { cents: 5 }).1);
    }

    #[test]
    fn a_peers_broadcast_is_taken_by_its_wire_identity_not_its_rust_path_or_shape() {
        let ps = PubSub::local("wire-identity");
        let topic: Topic<Price> = Topic::new("prices").unwrap();
        let sub = ps.subscribe_stream(&topic).unwrap();
        // Another Rust path, the same wire name: delivered.
        let (id, bytes) = sent(&moved::Price { cents: 5 });
        ps.core().receive("prices", id, &bytes, None);
        assert_eq!((sub.len(), ps.stats().wrong_type), (1, 0));
        // The same bytes under another wire name: refused before decoding, counted.
        let (id, bytes) = sent(&Cost { cents: 5 });
        ps.core().receive("prices", id, &bytes, None);
        assert_eq!((sub.len(), ps.stats().wrong_type), (1, 1));
        // The subscription goes on.
        let (id, bytes) = sent(&Price { cents: 6 });
        ps.core().receive("prices", id, &bytes, None);
        assert_eq!((sub.len(), ps.stats().delivered), (2, 2));
    }
}
