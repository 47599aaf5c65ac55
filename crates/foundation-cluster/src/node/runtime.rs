//! The node's moving parts: state shared with callers and lane tasks, and the one event
//! loop that owns membership. The connections (accept, admit, dial, lanes) are in
//! `conn.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ractor::{ActorId, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeServerMessage, NodeSessionMessage};
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use super::ClusterEvent;
use super::admission::{Admission, Held, PREAUTH_BYTES, PREAUTH_FRAME};
use super::agent::{AgentMsg, Hello};
use super::config::{ChannelConfig, MAX_PARALLELISM, NodeConfig, Tls};
use super::conn::{dial, lane_out};
use super::exports::{Export, Inbox};
use super::lane::{Heard, Outbox};
use super::locks::{lock, read, write};
use super::wire::{Answer, Item, Refusal};
use crate::discovery::Sighting;
use crate::membership::{DownReason, Member, Membership, MembershipEvent, Status};

/// The index of the `control` channel (and of `default`) in [`Shared::channels`].
pub(crate) const CONTROL_CHANNEL: usize = 0;
#[cfg(test)]
pub(crate) const DEFAULT_CHANNEL: usize = 1;

/// How long a lane token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Backoff between dials of an address that does not answer.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many recent refusals are kept for [`super::Node::wait_for`]'s error.
const RECENT_REFUSALS: usize = 16;
/// How many (host, reason) pairs are remembered as logged; past that the memory starts
/// over (a peer refused again is then logged once more).
const LOGGED_REFUSALS: usize = 4096;

/// A lane of a peer's: its channel's index and its number among that channel's lanes.
type LaneId = (usize, u64);

/// A lane token given out: when, the number of the hello that carried it, and the lanes
/// that presented it already.
type Issued = (Instant, u64, Vec<LaneId>);

pub(crate) struct PendingCall {
    pub(crate) node: String,
    pub(crate) tx: oneshot::Sender<Answer>,
}

/// What callers, lane tasks and the agent share with the event loop.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) cluster: String,
    pub(crate) incarnation: u64,
    pub(crate) addr: String,
    pub(crate) epoch: Instant,
    pub(crate) max_frame: usize,
    /// The channels, by index: `control` (0), `default` (1), then those declared, each with
    /// its settings.
    pub(crate) channels: Vec<(String, ChannelConfig)>,
    pub(crate) handshake_timeout: Duration,
    /// How long a graceful leave waits for its lanes to drain.
    pub(crate) leave_timeout: Duration,
    pub(crate) silence: Duration,
    pub(crate) tls: Option<Tls>,
    /// The caps, gates and counters of connections not yet authenticated.
    pub(crate) admission: Arc<Admission>,
    pub(crate) outboxes: RwLock<FxHashMap<String, Arc<Outboxes>>>,
    /// Outboxes made for replies to nodes whose hello has not been handled yet; not for
    /// sends (those nodes are not members yet). Locked before `outboxes` where both are
    /// (a reply's sender checks `outboxes` again under it, and the loop moves an outbox
    /// from here to there under it, so no reply lands here after its outbox was adopted).
    pending: Mutex<FxHashMap<String, Arc<Outboxes>>>,
    pub(crate) exports: RwLock<FxHashMap<String, Export>>,
    /// How many messages from other nodes one process may hold unhandled.
    pub(crate) max_remote_queued: usize,
    /// Remote tells dropped, and remote calls refused, at a process holding that many.
    pub(crate) remote_dropped: AtomicU64,
    pub(crate) remote_refused: AtomicU64,
    /// Messages and calls that arrived from peers, and that this node queued to them.
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) calls: Mutex<FxHashMap<u64, PendingCall>>,
    pub(crate) next_call: AtomicU64,
    /// Messages and calls refused for their type, or a call for its reply type.
    pub(crate) wrong_types: AtomicU64,
    /// Lanes open now, from peers and to peers.
    pub(crate) lanes_in: AtomicUsize,
    pub(crate) lanes_out: AtomicUsize,
    /// Lane tokens given out: when, the number of the hello that carried it, and which
    /// lanes (channel, lane number) presented them already.
    tokens: Mutex<FxHashMap<u128, Issued>>,
    /// The number of the next hello: a peer's lanes that present a later hello's token
    /// belong to a later link (the peer admitted this node again).
    next_hello: AtomicU64,
    /// The number of the next inbound lane, so the loop tells a lane's close from that of
    /// an earlier lane in the same place.
    pub(crate) next_lane: AtomicU64,
    pub(crate) events: broadcast::Sender<ClusterEvent>,
    pub(crate) members: RwLock<Vec<Member>>,
    pub(crate) loop_tx: mpsc::UnboundedSender<Event>,
    /// The latest refusals: when, the peer, why.
    refusals: Mutex<VecDeque<(Instant, String, String)>>,
    /// The (host, reason) pairs already logged at `warn`.
    logged_refusals: Mutex<HashSet<(String, String)>>,
}

impl Shared {
    pub(crate) fn new(
        config: &NodeConfig,
        addr: String,
        loop_tx: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let incarnation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Self {
            name: config.name.clone(),
            cluster: config.cluster.clone(),
            incarnation,
            addr,
            epoch: Instant::now(),
            max_frame: config.max_frame,
            channels: config.channel_table(),
            handshake_timeout: config.handshake_timeout,
            leave_timeout: config.leave_timeout,
            silence: config.silence,
            tls: config.tls.clone(),
            admission: Admission::new(
                config.max_unauthenticated,
                config.max_unauthenticated_per_ip,
            ),
            outboxes: RwLock::default(),
            pending: Mutex::default(),
            exports: RwLock::default(),
            max_remote_queued: config.max_remote_queued,
            remote_dropped: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            remote_refused: AtomicU64::new(0),
            calls: Mutex::default(),
            next_call: AtomicU64::new(1),
            wrong_types: AtomicU64::new(0),
            lanes_in: AtomicUsize::new(0),
            lanes_out: AtomicUsize::new(0),
            tokens: Mutex::default(),
            next_hello: AtomicU64::new(1),
            next_lane: AtomicU64::new(1),
            events: broadcast::channel(1024).0,
            members: RwLock::default(),
            loop_tx,
            refusals: Mutex::default(),
            logged_refusals: Mutex::default(),
        }
    }

    /// This node's introduction to one peer, with a fresh lane token for it.
    pub(crate) fn hello(&self) -> Hello {
        let token = new_token();
        let seq = self.next_hello.fetch_add(1, Ordering::Relaxed);
        lock(&self.tokens).insert(token, (Instant::now(), seq, Vec::new()));
        Hello {
            cluster: self.cluster.clone(),
            node: self.name.clone(),
            incarnation: self.incarnation,
            addr: self.addr.clone(),
            token,
            members: read(&self.members).iter().map(|m| m.addr.clone()).collect(),
            silence_ms: u64::try_from(self.silence.as_millis()).unwrap_or(u64::MAX),
            channels: self.channels.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    /// Whether `token` admits lane number `lane` of channel `channel`: each once, and at
    /// most [`MAX_PARALLELISM`] lanes per channel (the peer's parallelism may differ from
    /// this node's, but not exceed the cap). `Some` with the number of the hello that
    /// carried the token if it does.
    pub(super) fn take_token(&self, token: u128, channel: usize, lane: u64) -> Option<u64> {
        let mut tokens = lock(&self.tokens);
        let (issued, seq, used) = tokens.get_mut(&token)?;
        let fits = usize::try_from(lane).is_ok_and(|l| l < MAX_PARALLELISM);
        if !fits || issued.elapsed() >= TOKEN_TTL || used.contains(&(channel, lane)) {
            return None;
        }
        used.push((channel, lane));
        Some(*seq)
    }

    /// Where the lanes of channel `channel` run.
    pub(crate) fn priority(&self, channel: usize) -> super::config::Priority {
        self.channels
            .get(channel)
            .map_or_else(Default::default, |(_, c)| c.priority)
    }

    /// The index of the channel named `name`.
    pub(crate) fn channel(&self, name: &str) -> Option<usize> {
        self.channels.iter().position(|(n, _)| n == name)
    }

    /// A fresh set of outboxes: per channel of this node's, one per lane.
    fn new_outboxes(&self, known: impl Fn(&str) -> bool) -> Outboxes {
        Outboxes(
            self.channels
                .iter()
                .map(|(n, c)| {
                    known(n).then(|| {
                        (0..c.parallelism.max(1))
                            .map(|_| Arc::new(Outbox::new(self.max_frame, c.max_pending)))
                            .collect()
                    })
                })
                .collect(),
        )
    }

    /// The outbox to `node` (of channel `channel`, the lane chosen by `key`), made now if
    /// its hello has not been handled yet: a call can arrive on its lane before its hello
    /// reaches the event loop, and the reply must wait for the lane back rather than be
    /// lost. The loop adopts it on the hello.
    pub(super) fn outbox_for_reply(
        &self,
        node: &str,
        channel: usize,
        key: u64,
    ) -> Option<Arc<Outbox>> {
        if let Some(o) = read(&self.outboxes).get(node) {
            return o.get(channel, key);
        }
        let mut pending = lock(&self.pending);
        // Again under the lock: the loop may have adopted the pending outbox since the
        // look above, and a reply put in a new one now would never be written.
        if let Some(o) = read(&self.outboxes).get(node) {
            return o.get(channel, key);
        }
        pending
            .entry(node.to_owned())
            .or_insert_with(|| Arc::new(self.new_outboxes(|_| true)))
            .get(channel, key)
    }

    /// Hands call `id`'s answer to its caller, if it still waits.
    pub(crate) fn complete_call(&self, id: u64, result: Answer) {
        let pending = lock(&self.calls).remove(&id);
        if let Some(p) = pending {
            let _ = p.tx.send(result);
        }
    }

    pub(crate) fn inbox(&self, name: &str) -> Option<Export> {
        read(&self.exports).get(name).cloned()
    }

    /// Counts and logs an item refused for its type: `ty` is the type it came with and,
    /// for a call, `reply` the reply type its caller expects. Only hashes travel, so the
    /// sender's types are named by their hashes.
    pub(crate) fn refused_type(
        &self,
        from: &str,
        name: &str,
        inbox: &dyn Inbox,
        why: Refusal,
        ty: u64,
        call: Option<(u64, &[u8])>,
    ) {
        self.wrong_types.fetch_add(1, Ordering::Relaxed);
        let takes = inbox.wire_type();
        match (why, call) {
            (Refusal::WrongReplyType, Some((reply, msg))) => {
                let answers = inbox
                    .reply_type_of(msg)
                    .map_or(super::exports::NO_REPLY_TYPE, |t| t.name());
                tracing::warn!(
                    %from, %name, answers, expected = format_args!("{reply:#018x}"),
                    "refused a call whose caller expects another reply type than the handler answers; the handler did not run"
                );
            }
            _ => tracing::warn!(
                %from, %name, takes = takes.name(), got = format_args!("{ty:#018x}"),
                call = call.is_some(),
                "refused a message of another type than the process takes; it was not decoded"
            ),
        }
    }

    /// Refuses a connection: an event every time, a warning once per peer host and
    /// reason (a peer with the wrong cookie redials every few seconds, forever), and a
    /// note for [`super::Node::wait_for`]'s error.
    pub(crate) fn reject(&self, peer: String, why: String) {
        self.refuse(peer, why, true);
    }

    /// As [`Shared::reject`], logged at `debug` only (`warn` false): counted, an event, and
    /// a note for `wait_for` all the same.
    pub(crate) fn refuse(&self, peer: String, why: String, warn: bool) {
        self.log_refusal(&peer, &why, warn);
        {
            let mut recent = lock(&self.refusals);
            if recent.len() >= RECENT_REFUSALS {
                recent.pop_front();
            }
            recent.push_back((Instant::now(), peer.clone(), why.clone()));
        }
        let _ = self.events.send(ClusterEvent::Rejected { peer, why });
    }

    /// Logs a refusal: a warning the first time for its peer host and reason (if `warn`),
    /// else at `debug`.
    pub(crate) fn log_refusal(&self, peer: &str, why: &str, warn: bool) {
        // Inbound connections come from a new port each time: the host is the peer.
        let host = peer
            .parse::<SocketAddr>()
            .map_or_else(|_| peer.to_owned(), |a| a.ip().to_string());
        let first = warn && {
            let mut logged = lock(&self.logged_refusals);
            if logged.len() >= LOGGED_REFUSALS {
                logged.clear();
            }
            logged.insert((host, kind_of(why)))
        };
        if first {
            tracing::warn!(%peer, %why, "refused a connection (logged once per peer and reason; again at debug level)");
        } else {
            tracing::debug!(%peer, %why, "refused a connection again");
        }
    }

    /// The refusals since `since` (all kept ones for `None`), each (peer, reason) once.
    pub(crate) fn refusals_since(&self, since: Option<Instant>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (at, peer, why) in lock(&self.refusals).iter() {
            if since.is_some_and(|s| *at < s) {
                continue;
            }
            let host = |p: &str| {
                p.parse::<SocketAddr>()
                    .map_or_else(|_| p.to_owned(), |a| a.ip().to_string())
            };
            if !out.iter().any(|(p, w)| w == why && host(p) == host(peer)) {
                out.push((peer.clone(), why.clone()));
            }
        }
        out
    }

    /// Handles one item that arrived from `from`.
    pub(super) fn dispatch(
        self: &Arc<Self>,
        from: &str,
        from_incarnation: u64,
        channel: usize,
        item: Item<'_>,
    ) {
        if matches!(item, Item::Cast { .. } | Item::Call { .. }) {
            self.messages_in.fetch_add(1, Ordering::Relaxed);
        }
        match item {
            Item::Cast { name, ctx, ty, msg } => match self.inbox(name) {
                // A process holding its limit of unhandled remote messages: the newest
                // is dropped and counted; the lane goes on for every other process.
                Some(export) => match export.queued.try_take() {
                    Some(held) => match export.inbox.cast(ty, msg, ctx, Some(held)) {
                        Ok(()) => {}
                        Err(r @ Refusal::WrongType) => {
                            self.refused_type(from, name, &*export.inbox, r, ty, None);
                        }
                        Err(r) => {
                            tracing::debug!(%from, %name, ?r, "a message from another node was not delivered");
                        }
                    },
                    None => {
                        self.remote_dropped.fetch_add(1, Ordering::Relaxed);
                        export.queued.dropped();
                        tracing::trace!(%from, %name, "dropped a message for a process holding its limit of remote messages");
                    }
                },
                None => {
                    tracing::debug!(%from, %name, "a message for a name not exported here was dropped")
                }
            },
            Item::Call {
                id,
                name,
                ctx,
                ty,
                reply: reply_ty,
                msg,
            } => {
                let shared = self.clone();
                let to = from.to_owned();
                let reply: super::exports::ReplyTo = Box::new(move |r| {
                    // The reply rides the channel the call came on (any of its lanes:
                    // replies need no order among themselves).
                    let Some(outbox) = shared.outbox_for_reply(&to, channel, id) else {
                        return;
                    };
                    let result = match &r {
                        Ok(bytes) => Ok(&bytes[..]),
                        Err((r, theirs)) => Err((*r, theirs.as_str())),
                    };
                    // Its caller waits: written at once if the lane is idle, and queued
                    // even when the outbox is over its limit (a flood on this channel).
                    if let Err(e) = outbox.push_reply(&Item::Reply { id, result }) {
                        tracing::debug!(node = %to, ?e, "a reply could not be sent");
                    }
                });
                let Some(export) = self.inbox(name) else {
                    return reply(Err((Refusal::NoSuchName, String::new())));
                };
                let Some(held) = export.queued.try_take() else {
                    self.remote_refused.fetch_add(1, Ordering::Relaxed);
                    export.queued.refused();
                    return reply(Err((Refusal::Overloaded, String::new())));
                };
                // The other refusals were answered, and are the caller's to report.
                if let Err(r @ (Refusal::WrongType | Refusal::WrongReplyType)) =
                    export.inbox.call(ty, reply_ty, msg, ctx, Some(held), reply)
                {
                    self.refused_type(from, name, &*export.inbox, r, ty, Some((reply_ty, msg)));
                }
            }
            Item::Reply { id, result } => self.complete_call(
                id,
                result
                    .map(<[u8]>::to_vec)
                    .map_err(|(r, theirs)| (r, theirs.to_owned())),
            ),
            Item::Heartbeat => {}
            Item::Leave => {
                let _ = self.loop_tx.send(Event::Leaving {
                    node: from.to_owned(),
                    incarnation: from_incarnation,
                });
            }
            Item::Hello { .. } => {
                tracing::debug!(%from, "a second hello on a lane was ignored");
            }
        }
    }
}

/// The outboxes to one peer: per channel of this node's, one per lane (none for a channel
/// the peer does not know).
#[derive(Debug)]
pub(crate) struct Outboxes(Vec<Option<Vec<Arc<Outbox>>>>);

impl Outboxes {
    /// The outbox of channel `channel` that `key` picks among its lanes: the same key,
    /// the same lane, so what is sent with one key stays in order.
    pub(crate) fn get(&self, channel: usize, key: u64) -> Option<Arc<Outbox>> {
        let lanes = self.0.get(channel)?.as_ref()?;
        let n = u64::try_from(lanes.len()).ok().filter(|n| *n > 0)?;
        let i = usize::try_from(key % n).ok()?;
        lanes.get(i).cloned()
    }

    /// Each lane's outbox, with its channel's index and its lane number.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, u64, &Arc<Outbox>)> {
        self.0.iter().enumerate().flat_map(|(i, lanes)| {
            lanes
                .iter()
                .flatten()
                .zip(0u64..)
                .map(move |(o, lane)| (i, lane, o))
        })
    }

    pub(crate) fn close(&self) {
        self.iter().for_each(|(_, _, o)| o.close());
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.iter().any(|(_, _, o)| o.is_closed())
    }

    /// Whether nothing waits to be written on any lane.
    pub(crate) fn is_drained(&self) -> bool {
        self.iter().all(|(_, _, o)| o.is_drained())
    }
}

/// The key that picks the lane of a message to the process named `name`: a hash of the
/// name, so every message to one process takes the same lane of a channel.
pub(crate) fn lane_key(name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(name)
}

fn new_token() -> u128 {
    let mut b = [0u8; 16];
    // The OS's generator: tokens admit a lane, so they must not be guessable. Should
    // it fail, a token of zeros is refused by every node (zero is never issued below).
    if getrandom::fill(&mut b).is_err() || b == [0; 16] {
        b[0] = 1;
        b[1..].fill(0);
        tracing::error!("the OS random generator failed; lanes cannot be admitted");
    }
    u128::from_le_bytes(b)
}

/// What the event loop hears.
pub(crate) enum Event {
    Hello(Hello),
    /// A peer's live members' addresses (gossip).
    Members(Vec<String>),
    Leaving {
        node: String,
        incarnation: u64,
    },
    LaneIn {
        node: String,
        incarnation: u64,
        channel: usize,
        lane: u64,
        /// This lane's number among the node's inbound lanes.
        id: u64,
        /// The number of this node's hello whose token the lane presented.
        hello: u64,
        heard: Arc<Heard>,
        kill: Arc<Notify>,
    },
    LaneInClosed {
        node: String,
        incarnation: u64,
        channel: usize,
        lane: u64,
        id: u64,
        why: Option<String>,
    },
    LaneOutClosed {
        node: String,
        /// The link the lane was opened for.
        link: u64,
        why: Option<String>,
    },
    SessionOpened(NodeServerSessionInformation),
    SessionAuthenticated(NodeServerSessionInformation),
    SessionClosed(NodeServerSessionInformation),
    Sighting(Sighting),
    Dialed {
        addr: String,
        result: Result<SocketAddr, String>,
    },
    Connect(String),
    Leave(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Forwards ractor_cluster's session events into the loop.
pub(crate) struct Sessions(pub(crate) mpsc::UnboundedSender<Event>);

impl ractor_cluster::NodeEventSubscription for Sessions {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(Event::SessionOpened(ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(Event::SessionClosed(ses));
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(Event::SessionAuthenticated(ses));
    }
}

// ------------------------------------------------------------------------------------
// The event loop

/// The node name of a session's peer: ractor_cluster names it `name@host`.
fn session_peer(s: &NodeServerSessionInformation) -> Option<String> {
    let full = &s.peer_name.as_ref()?.name;
    Some(
        full.rsplit_once('@')
            .map_or(full.as_str(), |(n, _)| n)
            .to_owned(),
    )
}

/// This node's link to a member: made when it is admitted, gone when it is declared down.
struct PeerLink {
    incarnation: u64,
    /// Its number, unique in this node: what a lane opened for an earlier link of the same
    /// peer reports when it closes is not about this one.
    link: u64,
    /// When it was made.
    since: Instant,
    outboxes: Arc<Outboxes>,
    /// How often it needs to hear from this node: a sixth of its silence limit.
    heartbeat: Duration,
    last_heartbeat: Instant,
}

/// A peer's inbound lanes, by (channel, lane number).
struct InLanes {
    incarnation: u64,
    /// The number of this node's hello whose token the peer's lanes presented: lanes of
    /// the peer's latest link to this node. Kept after the lanes close, so lanes of a
    /// later link are told from late ones of an earlier link.
    hello: u64,
    lanes: HashMap<(usize, u64), InLane>,
}

/// One inbound lane: its number, when it was last heard, and how to close it.
struct InLane {
    id: u64,
    heard: Arc<Heard>,
    kill: Arc<Notify>,
}

impl InLanes {
    /// Closes every lane (their closes, reported later, are then not about a live lane).
    fn kill(&mut self) {
        self.lanes.drain().for_each(|(_, l)| l.kill.notify_one());
    }

    /// When the peer was last heard on any of its lanes.
    fn heard(&self) -> Option<Instant> {
        self.lanes.values().map(|l| l.heard.at()).max()
    }
}

struct SessionInfo {
    name: Option<String>,
    authenticated: bool,
    actor: ActorRef<NodeSessionMessage>,
    peer_addr: String,
    opened: Instant,
}

#[derive(Default)]
struct Known {
    sources: BTreeSet<&'static str>,
    backoff: Duration,
    next_try: Option<Instant>,
    in_flight_until: Option<Instant>,
}

pub(crate) struct Loop {
    pub(crate) shared: Arc<Shared>,
    pub(crate) server: ActorRef<NodeServerMessage>,
    pub(crate) heartbeat: Duration,
    membership: Membership,
    peers: HashMap<String, PeerLink>,
    inbound: HashMap<String, InLanes>,
    sessions: HashMap<ActorId, SessionInfo>,
    known: BTreeMap<String, Known>,
    sightings: HashMap<&'static str, Vec<String>>,
    /// Resolved address dialed → the address as known.
    dialed: HashMap<String, String>,
    /// Address as known → the node found there.
    owner: HashMap<String, String>,
    /// Peers whose lane from this node was closed by them while their lanes to this node
    /// are still open: their link, down at the instant given unless those close first
    /// (see [`OUT_CLOSE_GRACE`]).
    closing: HashMap<String, (u64, Instant)>,
    /// The latest hello from each node, with when it came while its token is unspent.
    hellos: HashMap<String, (Hello, Option<Instant>)>,
    /// Sessions from hosts that ran no member, closed before authenticating: the peer's
    /// address and when. Judged [`UNSETTLED`] later (see `on_session_closed`).
    unsettled: Vec<(String, Instant)>,
    /// Dials whose failure was warned about: address and reason.
    warned_dials: BTreeSet<(String, String)>,
    /// The number of the next link made.
    next_link: u64,
    leaving: bool,
}

/// How long a peer that closed this node's lane to it stays up while its own lanes to this
/// node are open or still opening. A leaving peer writes `Leave` on its lanes before it
/// closes anything, but this node reads those lanes and watches its own in separate tasks
/// (and a peer that leaves right after joining may close this node's lane before its own
/// lanes here have finished their handshake): without the wait, a closed outbound lane
/// seen first would make a graceful leave look like a disconnection. A killed peer's lanes
/// to this node close at once too, and take it down without waiting.
const OUT_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How long after a session closed before authenticating it is judged: if a member from
/// its host is up by then, it was the other of two simultaneous dials (debug); if not, a
/// warning (a wrong cookie, TLS on one side only, not a Foundation node).
const UNSETTLED: Duration = Duration::from_secs(3);

/// What a session closed before authenticating is recorded as.
pub(crate) const UNAUTHENTICATED: &str = "session closed before authenticating: a wrong cookie, TLS on one side only, or not a Foundation node (once, while two nodes dial each other: a duplicate connection, harmless)";

impl Loop {
    pub(crate) fn new(
        shared: Arc<Shared>,
        server: ActorRef<NodeServerMessage>,
        silence: Duration,
        heartbeat: Duration,
    ) -> Self {
        Self {
            shared,
            server,
            heartbeat,
            membership: Membership::new(silence),
            peers: HashMap::new(),
            inbound: HashMap::new(),
            sessions: HashMap::new(),
            known: BTreeMap::new(),
            sightings: HashMap::new(),
            dialed: HashMap::new(),
            owner: HashMap::new(),
            closing: HashMap::new(),
            hellos: HashMap::new(),
            unsettled: Vec::new(),
            warned_dials: BTreeSet::new(),
            next_link: 1,
            leaving: false,
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let step = (self.heartbeat / 2).clamp(Duration::from_millis(5), Duration::from_millis(50));
        let mut tick = tokio::time::interval(step);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Also wake at the next silence deadline, so a silent peer is declared down
            // when its time is up, not up to a tick later.
            let deadline = self.membership.next_deadline().map_or_else(
                || tokio::time::Instant::now() + step,
                tokio::time::Instant::from_std,
            );
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => self.on_tick(),
                ev = rx.recv() => match ev {
                    None => return,
                    Some(Event::Shutdown(done)) => {
                        self.close_all();
                        let _ = done.send(());
                        return;
                    }
                    Some(ev) => self.on_event(ev),
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn publish(&mut self, events: Vec<MembershipEvent>) {
        self.publish_as(events, None);
    }

    /// As [`Loop::publish`]; the node named `renewed` has admitted this node again under a
    /// new link, whose lanes and session stay (see [`Loop::cleanup`]).
    fn publish_as(&mut self, events: Vec<MembershipEvent>, renewed: Option<&str>) {
        for ev in &events {
            if let MembershipEvent::NodeDown { member, reason } = ev {
                let renewed = renewed == Some(member.id.as_str());
                self.cleanup(&member.id, member.incarnation, *reason, renewed);
            }
        }
        // The view callers read is up to date before anyone hears of the change.
        *write(&self.shared.members) = self.membership.live().cloned().collect();
        if events
            .iter()
            .any(|e| matches!(e, MembershipEvent::NodeUp(_)))
        {
            self.gossip_members();
        }
        for ev in events {
            match &ev {
                MembershipEvent::NodeUp(m) => {
                    tracing::info!(node = %m.id, addr = %m.addr, "node up")
                }
                MembershipEvent::NodeLeaving(m) => tracing::info!(node = %m.id, "node leaving"),
                MembershipEvent::NodeDown { member, reason } => {
                    tracing::warn!(node = %member.id, ?reason, "node down");
                }
            }
            let _ = self.shared.events.send(ev.into());
        }
    }

    /// Tells every peer's agent this node's live members, so that nodes that joined
    /// through this one at about the same time find each other.
    fn gossip_members(&self) {
        let members: Vec<String> = read(&self.shared.members)
            .iter()
            .map(|m| m.addr.clone())
            .collect();
        let agents = ractor::pg::get_scoped_members(
            &super::agent::SCOPE.to_owned(),
            &super::agent::GROUP.to_owned(),
        );
        for cell in agents.into_iter().filter(|c| !c.get_id().is_local()) {
            let peer: ActorRef<AgentMsg> = cell.into();
            let msg = AgentMsg::Members {
                members: members.clone(),
            };
            if let Err(e) = peer.cast(msg) {
                tracing::debug!(error = %e, "could not gossip members to a peer's agent");
            }
        }
    }

    /// Drops everything tied to `node`'s incarnation `incarnation`: this node's link to it
    /// (its outboxes close, calls waiting on it fail now rather than at their timeouts),
    /// its lanes to this node and, when it went silent or disconnected, its sessions. With
    /// `renewed` (it has admitted this node again under a new link) its lanes of that link
    /// and its sessions stay: only what belonged to the old link goes.
    fn cleanup(&mut self, node: &str, incarnation: u64, reason: DownReason, renewed: bool) {
        let mut since = None;
        if self
            .peers
            .get(node)
            .is_some_and(|p| p.incarnation == incarnation)
        {
            if let Some(p) = self.peers.remove(node) {
                since = Some(p.since);
                p.outboxes.close();
                let mut outboxes = write(&self.shared.outboxes);
                if outboxes
                    .get(node)
                    .is_some_and(|o| Arc::ptr_eq(o, &p.outboxes))
                {
                    outboxes.remove(node);
                }
            }
            self.closing.remove(node);
        }
        // Calls waiting on it fail now rather than at their timeouts.
        lock(&self.shared.calls).retain(|_, c| c.node != node);
        if renewed {
            return;
        }
        if let Some(l) = self
            .inbound
            .get_mut(node)
            .filter(|l| l.incarnation == incarnation)
        {
            l.kill();
        }
        if matches!(reason, DownReason::Silent | DownReason::Disconnected) {
            // Its session may still look alive (a partition): end it, so that a
            // reconnection starts from a clean handshake. One opened since the link was
            // made is the peer's reconnection (it declared this node down first and
            // dialed again): it carries the hellos that admit each other again, and stays.
            for s in self.sessions.values() {
                if s.name.as_deref() == Some(node) && since.is_none_or(|t| s.opened <= t) {
                    s.actor.stop(Some("foundation: node declared down".into()));
                }
            }
        }
        if reason == DownReason::Left {
            self.hellos.remove(node);
            // A node that left is not dialed again on the strength of gossip alone.
            let owned: Vec<String> = self
                .owner
                .iter()
                .filter(|(_, n)| n.as_str() == node)
                .map(|(a, _)| a.clone())
                .collect();
            for a in owned {
                if self
                    .known
                    .get(&a)
                    .is_some_and(|k| k.sources.iter().all(|s| *s == "gossip"))
                {
                    self.known.remove(&a);
                }
            }
        }
    }

    fn down(&mut self, node: &str, incarnation: u64, reason: DownReason) {
        let reason = match self.membership.get(node) {
            Some(m) if m.status == Status::Leaving => DownReason::Left,
            _ => reason,
        };
        let evs = self.membership.gone(node, incarnation, reason);
        self.publish(evs);
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Hello(h) => self.on_hello(h, now),
            Event::Members(members) => {
                for a in members {
                    self.know(a, "gossip");
                }
                self.dial_due(now);
            }
            Event::Leaving { node, incarnation } => {
                let evs = self.membership.leaving(&node, incarnation);
                self.publish(evs);
            }
            Event::LaneIn {
                node,
                incarnation,
                channel,
                lane,
                id,
                hello,
                heard,
                kill,
            } => self.on_lane_in(
                node,
                incarnation,
                (channel, lane),
                hello,
                InLane { id, heard, kill },
                now,
            ),
            Event::LaneInClosed {
                node,
                incarnation,
                channel,
                lane,
                id,
                why,
            } => {
                // Only the close of a lane still in place says something of the peer: one
                // replaced by a later lane, or closed by this node, does not.
                let Some(l) = self.inbound.get_mut(&node).filter(|l| {
                    l.incarnation == incarnation
                        && l.lanes.get(&(channel, lane)).is_some_and(|x| x.id == id)
                }) else {
                    tracing::debug!(%node, channel, lane, ?why, "a lane replaced or closed earlier ended");
                    return;
                };
                if let Some(why) = &why {
                    tracing::info!(%node, %why, "a lane closed");
                }
                l.lanes.remove(&(channel, lane));
                let others = !l.lanes.is_empty();
                // A node that is leaving closes its lanes one by one as each drains: it
                // is down once the last one closes, so nothing queued before is lost.
                let leaving = self
                    .membership
                    .get(&node)
                    .is_some_and(|m| m.status == Status::Leaving && m.incarnation == incarnation);
                if !(leaving && others && why.is_none()) {
                    self.down(&node, incarnation, DownReason::Disconnected);
                }
            }
            Event::LaneOutClosed { node, link, why } => {
                // A lane of an earlier link to it (declared down since) says nothing of
                // the current one.
                if self.peers.get(&node).is_none_or(|p| p.link != link) {
                    tracing::debug!(%node, ?why, "a lane of an earlier link ended");
                    return;
                }
                if let Some(why) = why {
                    tracing::info!(%node, %why, "a lane closed");
                }
                // Its lanes to this node decide, if they close or say `Leave` within the
                // grace: those being read, and those still in their handshake (a peer that
                // leaves right after it joined closes this lane before this node has
                // registered its lanes, whose `Leave` is on the way). Once all of them
                // have closed it is down already.
                self.closing
                    .entry(node)
                    .or_insert((link, now + OUT_CLOSE_GRACE));
            }
            Event::SessionOpened(s) => {
                // Its handshake deadline runs from the accept (or the dial).
                let opened = self.shared.admission.accepted(&s.peer_addr).unwrap_or(now);
                self.sessions.insert(
                    s.actor.get_id(),
                    SessionInfo {
                        name: None,
                        authenticated: false,
                        actor: s.actor.clone(),
                        peer_addr: s.peer_addr.clone(),
                        opened,
                    },
                );
            }
            Event::SessionAuthenticated(s) => self.on_authenticated(&s),
            Event::SessionClosed(s) => self.on_session_closed(&s),
            Event::Sighting(s) => {
                let addrs: Vec<String> = s.peers.iter().map(ToString::to_string).collect();
                self.sightings.insert(s.strategy, addrs.clone());
                for a in addrs {
                    self.know(a, s.strategy);
                }
                // Addresses no strategy reports any more are dropped.
                let reported: BTreeSet<&String> = self.sightings.values().flatten().collect();
                let strategy = s.strategy;
                for (addr, k) in &mut self.known {
                    if !reported.contains(addr) {
                        k.sources.remove(strategy);
                    }
                }
                self.known.retain(|_, k| !k.sources.is_empty());
            }
            Event::Dialed { addr, result } => match result {
                Ok(sa) => {
                    self.dialed.insert(sa.to_string(), addr);
                }
                Err(why) => {
                    // A TLS handshake that fails is a configuration to fix (a server name,
                    // a CA), not a peer still starting: said once per address and reason.
                    if tls_to_fix(&why) && {
                        if self.warned_dials.len() >= LOGGED_REFUSALS {
                            self.warned_dials.clear();
                        }
                        self.warned_dials.insert((addr.clone(), kind_of(&why)))
                    } {
                        tracing::warn!(%addr, %why, "dial failed (logged once per address and reason; again at debug level)");
                    } else {
                        tracing::debug!(%addr, %why, "dial failed");
                    }
                    self.backoff(&addr, now);
                }
            },
            Event::Connect(addr) => self.know(addr, "manual"),
            Event::Leave(done) => {
                self.leaving = true;
                for p in self.peers.values() {
                    // Each lane says it, after what it carries: the peer is told on the
                    // first, and has read each lane to its end when it closes.
                    for (_, _, o) in p.outboxes.iter() {
                        let _ = o.push_item(&Item::Leave);
                        o.finish();
                    }
                }
                let _ = done.send(());
            }
            Event::Shutdown(_) => {}
        }
    }

    fn know(&mut self, addr: String, source: &'static str) {
        if addr == self.shared.addr {
            return;
        }
        self.known.entry(addr).or_default().sources.insert(source);
    }

    fn backoff(&mut self, addr: &str, now: Instant) {
        if let Some(k) = self.known.get_mut(addr) {
            k.in_flight_until = None;
            k.backoff = (k.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
            let jitter = 0.8 + 0.4 * fastrand::f64();
            k.next_try = Some(now + k.backoff.mul_f64(jitter));
        }
    }

    fn on_hello(&mut self, h: Hello, now: Instant) {
        if h.node == self.shared.name {
            return;
        }
        for a in &h.members {
            self.know(a.clone(), "gossip");
        }
        self.owner.insert(h.addr.clone(), h.node.clone());
        if let Some(k) = self.known.get_mut(&h.addr) {
            k.backoff = Duration::ZERO;
            k.next_try = None;
            k.in_flight_until = None;
        }
        // Kept, even when it changes nothing now: a peer that declared this node down and
        // admitted it again greets it on its new session while this node still counts it
        // up, and this node admits it again with this hello once its lanes show that.
        if self
            .hellos
            .get(&h.node)
            .is_none_or(|(old, _)| old.incarnation <= h.incarnation)
        {
            self.hellos.insert(h.node.clone(), (h.clone(), Some(now)));
        }
        let known = self.membership.get(&h.node);
        if known.is_some_and(|m| m.incarnation >= h.incarnation) || self.leaving {
            return;
        }
        if let Some(old) = known.filter(|m| m.addr != h.addr) {
            // A restart is most often at the same address; at another one, while the old
            // incarnation is still a member, it may be a second process given the same
            // name: each would push the other out in turn. Say so loudly.
            tracing::warn!(
                node = %h.node, old = %old.addr, new = %h.addr,
                "a node of this name joined from another address while the old one is still a member: it replaces it (a restart elsewhere), or two processes share one name, which the cluster cannot tell apart"
            );
        }
        self.admit(&h, now);
    }

    /// Makes `h`'s node a member (or its newer incarnation), with a new link to it: fresh
    /// outboxes (adopting those made for replies before), lanes opened with `h`'s token.
    fn admit(&mut self, h: &Hello, now: Instant) {
        if let Some((stored, unused)) = self.hellos.get_mut(&h.node) {
            if stored.token == h.token {
                // Its token is spent on this link.
                *unused = None;
            }
        }
        let evs = self.membership.joined(
            Member::new(h.node.clone(), h.addr.clone(), h.incarnation),
            now,
        );
        if !evs.iter().any(|e| matches!(e, MembershipEvent::NodeUp(_))) {
            return;
        }
        // Down events (an older incarnation) are cleaned up before the new link exists.
        let (ups, downs): (Vec<_>, Vec<_>) = evs
            .into_iter()
            .partition(|e| matches!(e, MembershipEvent::NodeUp(_)));
        self.publish(downs);
        // An outbox made for replies before this hello is adopted, with what it holds.
        // Lanes go out for the channels both nodes know; a send on another fails.
        let theirs: BTreeSet<&str> = h.channels.iter().map(String::as_str).collect();
        // Held until the outboxes are in place (see `Shared::pending`).
        let mut pending_lock = lock(&self.shared.pending);
        let pending = pending_lock.remove(&h.node).filter(|o| !o.is_closed());
        let outboxes = Arc::new(Outboxes(
            self.shared
                .new_outboxes(|n| theirs.contains(n))
                .0
                .into_iter()
                .enumerate()
                .map(|(i, fresh)| {
                    let adopted = pending.as_ref().and_then(|p| p.0.get(i)?.clone());
                    fresh.map(|f| adopted.unwrap_or(f))
                })
                .collect(),
        ));
        write(&self.shared.outboxes).insert(h.node.clone(), outboxes.clone());
        drop(pending_lock);
        for (i, (name, _)) in self.shared.channels.iter().enumerate() {
            if !theirs.contains(name.as_str()) {
                tracing::warn!(node = %h.node, channel = %name, "the peer does not know this channel; sends on it to that peer will fail");
                let lanes = pending.as_ref().and_then(|p| p.0.get(i)?.as_ref());
                lanes.into_iter().flatten().for_each(|o| o.close());
            }
        }
        let link = self.next_link;
        self.next_link += 1;
        self.closing.remove(&h.node);
        self.peers.insert(
            h.node.clone(),
            PeerLink {
                incarnation: h.incarnation,
                link,
                since: now,
                outboxes: outboxes.clone(),
                // Nodes may have different silence limits: each is sent what it needs.
                heartbeat: self
                    .heartbeat
                    .min(Duration::from_millis(h.silence_ms) / 6)
                    .max(Duration::from_millis(1)),
                last_heartbeat: now,
            },
        );
        for (channel, lane, outbox) in outboxes.iter() {
            // A low-priority channel's lanes run on the low-priority thread.
            super::priority::spawn(
                self.shared.priority(channel),
                lane_out(
                    self.shared.clone(),
                    h.node.clone(),
                    link,
                    h.addr.clone(),
                    h.token,
                    (channel, lane),
                    outbox.clone(),
                ),
            );
        }
        self.publish(ups);
    }

    /// An inbound lane from `node` is open.
    fn on_lane_in(
        &mut self,
        node: String,
        incarnation: u64,
        at: LaneId,
        hello: u64,
        lane: InLane,
        now: Instant,
    ) {
        let lanes = self.inbound.entry(node.clone()).or_insert_with(|| InLanes {
            incarnation,
            hello,
            lanes: HashMap::new(),
        });
        if incarnation < lanes.incarnation
            || (incarnation == lanes.incarnation && hello < lanes.hello)
        {
            // Late: a lane of an older incarnation, or of a link the peer has replaced.
            tracing::debug!(%node, "closed a late lane of an earlier link");
            lane.kill.notify_one();
            return;
        }
        let later_link = incarnation == lanes.incarnation && hello > lanes.hello;
        // The peer made a new link to this node while lanes of its old one are open here
        // (this node has not closed them, nor read their end): it declared this node down
        // on its own. (Lanes of a new link after this node closed the old one, or after
        // those ended, are the peer's answer to this node's new link.)
        let renewed = later_link && !lanes.lanes.is_empty();
        if incarnation > lanes.incarnation || later_link {
            // A newer incarnation's lanes, or those of the peer's new link, replace the
            // older ones.
            lanes.kill();
            lanes.incarnation = incarnation;
            lanes.hello = hello;
        }
        if let Some(old) = lanes.lanes.insert(at, lane) {
            old.kill.notify_one();
        }
        if renewed {
            self.renewed(&node, incarnation, now);
        } else if later_link && self.membership.get(&node).is_none() {
            // Declared down here, and its answer to this node's hello since is open: it
            // is back (its own hello may have come while it still counted up here).
            self.admit_latest(&node, incarnation, now);
        }
    }

    /// `node` (incarnation `incarnation`) opened lanes of a new link to this node: it
    /// declared this node down (silent, or its lanes closed) and admitted it again, while
    /// this node may still count it up. What this node sent on its old link since may be
    /// lost (the peer closed those lanes): that link goes as for a disconnection (calls
    /// waiting on it fail), and the peer is admitted again with its latest hello, which
    /// came on the session it dialed again; if that hello has not come yet, it admits the
    /// peer when it does. The new lanes, and that session, stay.
    fn renewed(&mut self, node: &str, incarnation: u64, now: Instant) {
        if self.leaving {
            return;
        }
        if self
            .membership
            .get(node)
            .is_some_and(|m| m.incarnation == incarnation && m.status == Status::Up)
        {
            tracing::info!(%node, "the peer admitted this node again under a new link (it had declared it down): this node's link to it is renewed");
            let evs = self
                .membership
                .gone(node, incarnation, DownReason::Disconnected);
            self.publish_as(evs, Some(node));
        }
        self.admit_latest(node, incarnation, now);
    }

    /// Admits `node` (incarnation `incarnation`), not a member now, with its latest hello if
    /// that hello's token is unspent and fresh; otherwise its next hello admits it.
    fn admit_latest(&mut self, node: &str, incarnation: u64, now: Instant) {
        if self.leaving || self.membership.get(node).is_some() {
            return;
        }
        let fresh = self.hellos.get(node).and_then(|(h, at)| {
            let at = (*at)?;
            (h.incarnation == incarnation && now.duration_since(at) < TOKEN_TTL / 2)
                .then(|| h.clone())
        });
        if let Some(h) = fresh {
            self.admit(&h, now);
        }
    }

    fn on_authenticated(&mut self, s: &NodeServerSessionInformation) {
        // Its frames are no longer limited to a handshake's, and its slot is free.
        self.shared.admission.authenticated(&s.peer_addr);
        let name = session_peer(s);
        if name.as_deref() == Some(self.shared.name.as_str()) {
            // Dialed itself (its own address in a seed list or a DNS answer).
            if let Some(addr) = self.dialed.get(&s.peer_addr).cloned() {
                tracing::debug!(%addr, "that address is this node; not dialing it again");
                self.known.remove(&addr);
            }
            s.actor.stop(Some("foundation: connected to itself".into()));
            return;
        }
        if let Some(info) = self.sessions.get_mut(&s.actor.get_id()) {
            info.authenticated = true;
            info.name.clone_from(&name);
        }
        if let (Some(name), Some(addr)) = (name, self.dialed.get(&s.peer_addr).cloned()) {
            self.owner.insert(addr, name);
        }
    }

    fn on_session_closed(&mut self, s: &NodeServerSessionInformation) {
        self.shared.admission.forget(&s.peer_addr);
        let Some(info) = self.sessions.remove(&s.actor.get_id()) else {
            return;
        };
        // A dial whose session ended is no longer in flight: retry it after a backoff.
        if let Some(addr) = self.dialed.remove(&info.peer_addr) {
            self.backoff(&addr, Instant::now());
        }
        if !info.authenticated {
            // Two nodes that dial each other at once each keep one of the two sessions:
            // the other closes before authenticating. From a host that runs a member
            // already, that is the likely cause, and not worth a warning at every
            // cluster's formation. From another host it is judged a little later, once the
            // node there has had time to join (`on_tick`).
            let known = self.member_on_host(&info.peer_addr);
            // Bounded: past it (a flood of such sessions), the rest stay at debug.
            if !known && self.unsettled.len() < LOGGED_REFUSALS {
                self.unsettled
                    .push((info.peer_addr.clone(), Instant::now()));
            }
            // An event and a note for `wait_for`'s error at once all the same: a wrong
            // cookie from that host is told apart there.
            self.shared
                .refuse(info.peer_addr, UNAUTHENTICATED.into(), false);
            return;
        }
        // An authenticated session that ends does not end the membership: lanes carry
        // the messages and heartbeats, and a dead process closes them too. Deciding on
        // the lanes keeps a graceful leave (whose last word is on the lane) from racing
        // the session's close.
        if let Some(name) = info.name {
            tracing::debug!(node = %name, "session closed");
        }
    }

    /// Whether a member runs on the host of `addr`.
    fn member_on_host(&self, addr: &str) -> bool {
        let host = host_of(addr);
        read(&self.shared.members)
            .iter()
            .any(|m| host_of(&m.addr) == host)
    }

    /// Warns of the sessions closed before authenticating [`UNSETTLED`] ago whose host has
    /// run no member since.
    fn judge_unsettled(&mut self, now: Instant) {
        if self.unsettled.is_empty() {
            return;
        }
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsettled)
            .into_iter()
            .partition(|(_, at)| now.duration_since(*at) >= UNSETTLED);
        self.unsettled = rest;
        for (peer, _) in due {
            let warn = !self.member_on_host(&peer);
            self.shared.log_refusal(&peer, UNAUTHENTICATED, warn);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        self.judge_unsettled(now);
        if !self.closing.is_empty() {
            let due: Vec<(String, u64)> = self
                .closing
                .iter()
                .filter(|(_, (_, at))| *at <= now)
                .map(|(n, (link, _))| (n.clone(), *link))
                .collect();
            for (node, link) in due {
                self.closing.remove(&node);
                if let Some(p) = self.peers.get(&node).filter(|p| p.link == link) {
                    let incarnation = p.incarnation;
                    self.down(&node, incarnation, DownReason::Disconnected);
                }
            }
        }
        if !self.leaving {
            for p in self.peers.values_mut() {
                if now.duration_since(p.last_heartbeat) >= p.heartbeat {
                    p.last_heartbeat = now;
                    if let Some(control) = p.outboxes.get(CONTROL_CHANNEL, 0) {
                        let _ = control.push_item(&Item::Heartbeat);
                    }
                }
            }
        }
        for (node, lanes) in &self.inbound {
            if let Some(at) = lanes.heard() {
                self.membership.heard(node, lanes.incarnation, at);
            }
        }
        let evs = self.membership.expire(now);
        self.publish(evs);
        lock(&self.shared.tokens).retain(|_, (issued, _, _)| issued.elapsed() < TOKEN_TTL);
        // Sessions that never authenticate (a peer that connects and stalls).
        let stalled: Vec<ActorId> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                !s.authenticated && now.duration_since(s.opened) > self.shared.handshake_timeout
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stalled {
            if let Some(s) = self.sessions.remove(&id) {
                s.actor.stop(Some("foundation: handshake timed out".into()));
                let admission = &self.shared.admission;
                let why = match admission.holding(&s.peer_addr) {
                    Some(Held::Frame(len)) => {
                        admission.count_oversized();
                        format!(
                            "announced a frame of {len} bytes before authenticating, over the {PREAUTH_FRAME} a handshake needs"
                        )
                    }
                    Some(Held::Bytes) => {
                        admission.count_oversized();
                        format!(
                            "sent over {PREAUTH_BYTES} bytes before authenticating, more than a handshake needs"
                        )
                    }
                    None => {
                        admission.count_timeout();
                        "did not finish the handshake in time".to_owned()
                    }
                };
                admission.forget(&s.peer_addr);
                self.shared.reject(s.peer_addr, why);
            }
        }
        if !self.leaving {
            self.dial_due(now);
        }
    }

    fn dial_due(&mut self, now: Instant) {
        let live: BTreeSet<&str> = self.membership.live().map(|m| m.id.as_str()).collect();
        let mut due = Vec::new();
        for (addr, k) in &mut self.known {
            if self
                .owner
                .get(addr)
                .is_some_and(|n| live.contains(n.as_str()))
            {
                continue;
            }
            if k.in_flight_until.is_some_and(|t| t > now) {
                continue;
            }
            if k.in_flight_until.is_some() {
                // Dialed, but no hello in time: count it as a failure.
                k.in_flight_until = None;
                k.backoff = (k.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                k.next_try = Some(now + k.backoff);
                continue;
            }
            if k.next_try.is_some_and(|t| t > now) {
                continue;
            }
            k.in_flight_until = Some(now + self.shared.handshake_timeout * 2);
            due.push(addr.clone());
        }
        for addr in due {
            let server = self.server.clone();
            let shared = self.shared.clone();
            let tx = self.shared.loop_tx.clone();
            let timeout = self.shared.handshake_timeout;
            tokio::spawn(async move {
                let result = dial(shared, server, addr.clone(), timeout).await;
                let _ = tx.send(Event::Dialed { addr, result });
            });
        }
    }

    fn close_all(&mut self) {
        for p in self.peers.values() {
            p.outboxes.close();
        }
        for l in self.inbound.values_mut() {
            l.kill();
        }
        write(&self.shared.outboxes).clear();
        for (_, o) in lock(&self.shared.pending).drain() {
            o.close();
        }
        lock(&self.shared.calls).clear();
    }
}

/// Runs a discovery strategy, forwarding its sightings into the loop.
pub(crate) async fn run_strategy(
    strategy: Box<dyn crate::discovery::Strategy>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let name = strategy.name();
    let (stx, mut srx) = mpsc::channel(16);
    let forward = async {
        while let Some(s) = srx.recv().await {
            if tx.send(Event::Sighting(s)).is_err() {
                return;
            }
        }
    };
    let (r, ()) = tokio::join!(strategy.run(stx), forward);
    if let Err(e) = r {
        tracing::error!(strategy = name, error = %e, "discovery strategy stopped");
    }
}

/// The host part of `ip:port` (or of `[v6]:port`, or of `name:port`); the whole text if
/// it has no port.
/// A reason without its figures: what a refusal or a failed dial is told apart by when it
/// is logged once (a certificate's "expired … N seconds ago" changes at every redial, and a
/// port at every connection).
fn kind_of(why: &str) -> String {
    why.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Whether a failed dial's reason is a TLS handshake that failed on something to fix (a
/// certificate, a server name, a protocol mismatch), not a connection that was reset or
/// closed (a peer restarting).
fn tls_to_fix(why: &str) -> bool {
    let why = why.to_ascii_lowercase();
    why.contains("tls")
        && [
            "certificate",
            "alert",
            "corrupt",
            "invalid",
            "unsupported",
            "name",
        ]
        .iter()
        .any(|k| why.contains(k))
}

fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            host.trim_start_matches('[').trim_end_matches(']')
        }
        _ => addr,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests {
    use super::*;

    /// Log lines written while `f` runs, at `debug` and above.
    fn logs(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                lock(&self.0).extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(lock(&buf.0).clone()).unwrap()
    }

    #[test]
    fn one_process_keeps_one_lane_of_a_channel_and_many_spread_over_all() {
        use crate::node::ChannelConfig;
        let config =
            NodeConfig::new("a", "cookie").channel("wide", ChannelConfig::default().parallelism(4));
        let shared = Shared::new(&config, "127.0.0.1:1".into(), mpsc::unbounded_channel().0);
        let wide = shared.channel("wide").unwrap();
        // The peer knows `wide` only: no outboxes for the others.
        let outboxes = shared.new_outboxes(|n| n == "wide");
        assert!(outboxes.get(DEFAULT_CHANNEL, 0).is_none());
        assert_eq!(outboxes.iter().count(), 4);
        let lane_of = |name: &str| {
            let o = outboxes.get(wide, lane_key(name)).unwrap();
            outboxes
                .iter()
                .position(|(_, _, x)| Arc::ptr_eq(x, &o))
                .unwrap()
        };
        let first = lane_of("orders");
        assert!((0..100).all(|_| lane_of("orders") == first));
        let used: BTreeSet<usize> = (0..64).map(|i| lane_of(&format!("p{i}"))).collect();
        assert_eq!(used.len(), 4, "{used:?}");
    }

    #[test]
    fn a_token_admits_each_lane_of_each_channel_once_and_no_more_than_the_cap() {
        let config = NodeConfig::new("a", "cookie");
        let shared = Shared::new(&config, "127.0.0.1:1".into(), mpsc::unbounded_channel().0);
        let token = shared.hello().token;
        assert!(shared.take_token(token, DEFAULT_CHANNEL, 0).is_some());
        assert!(shared.take_token(token, DEFAULT_CHANNEL, 1).is_some());
        assert!(shared.take_token(token, CONTROL_CHANNEL, 0).is_some());
        assert!(
            shared.take_token(token, DEFAULT_CHANNEL, 1).is_none(),
            "presented twice"
        );
        let cap = MAX_PARALLELISM as u64;
        assert!(shared.take_token(token, DEFAULT_CHANNEL, cap - 1).is_some());
        assert!(
            shared.take_token(token, DEFAULT_CHANNEL, cap).is_none(),
            "over the cap"
        );
        assert!(
            shared.take_token(token ^ 1, DEFAULT_CHANNEL, 2).is_none(),
            "never issued"
        );
        // A later hello's token says so: its lanes belong to a later link.
        let later = shared.hello().token;
        let first = shared.take_token(later, DEFAULT_CHANNEL, 0).unwrap();
        let second = shared
            .take_token(shared.hello().token, DEFAULT_CHANNEL, 0)
            .unwrap();
        assert!(second > first);
    }

    #[test]
    fn a_peer_refused_again_and_again_is_warned_about_once() {
        let config = NodeConfig::new("a", "cookie");
        let shared = Shared::new(&config, "127.0.0.1:1".into(), mpsc::unbounded_channel().0);
        let why = "session closed before authenticating: wrong cookie";
        let out = logs(|| {
            // A peer with the wrong cookie redials from a new port each time.
            for port in 40_000..40_010 {
                shared.reject(format!("10.0.0.7:{port}"), why.into());
            }
            shared.reject("10.0.0.8:40000".into(), why.into());
            shared.reject("10.0.0.7:40000".into(), "sent 0x47 first".into());
        });
        let warned: Vec<&str> = out.lines().filter(|l| l.contains(" WARN ")).collect();
        assert_eq!(warned.len(), 3, "{out}");
        assert!(warned[0].contains("10.0.0.7:40000") && warned[0].contains("wrong cookie"));
        assert!(warned[1].contains("10.0.0.8"));
        assert!(warned[2].contains("0x47"));
        assert_eq!(
            out.lines()
                .filter(|l| l.contains("refused a connection again"))
                .count(),
            9,
            "{out}"
        );
        // A waiting caller is told each (host, reason) once.
        let refused = shared.refusals_since(None);
        assert_eq!(refused.len(), 3, "{refused:?}");
    }

    #[test]
    fn a_dial_warning_is_told_apart_by_its_kind_not_its_figures() {
        let expired = |secs: u64| {
            format!(
                "TLS handshake failed: invalid peer certificate: certificate expired: verification time {secs} (UNIX), but certificate is not valid after 1700000000 ({} seconds ago)",
                secs - 1_700_000_000
            )
        };
        assert_eq!(
            kind_of(&expired(1_736_000_000)),
            kind_of(&expired(1_736_000_005))
        );
        assert!(tls_to_fix(&expired(1_736_000_000)));
        assert!(tls_to_fix(
            "TLS handshake failed: invalid peer certificate: certificate not valid for name \"billing\""
        ));
        assert!(tls_to_fix(
            "TLS handshake failed: received fatal alert: BadCertificate"
        ));
        // A peer restarting: not a configuration to fix.
        assert!(!tls_to_fix(
            "TLS handshake failed: Connection reset by peer (os error 104)"
        ));
        assert!(!tls_to_fix("Connection refused (os error 111)"));
    }

    #[test]
    fn the_host_of_an_address_is_its_ip_or_name() {
        assert_eq!(super::host_of("10.0.0.7:4370"), "10.0.0.7");
        assert_eq!(super::host_of("[::1]:4370"), "::1");
        assert_eq!(super::host_of("n1.svc:4370"), "n1.svc");
        assert_eq!(super::host_of("n1.svc"), "n1.svc");
    }
}
