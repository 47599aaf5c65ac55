//! A node: one OS process in a cluster.
//!
//! [`Node::start`] opens the node's one port and starts its parts:
//!
//! - a ractor_cluster `NodeServer`, which authenticates peers with the cookie and keeps a
//!   session to each (in isolated mode: this node decides whom to dial, so that every
//!   connection, transitive ones included, goes through the same code);
//! - the node's **agent**, its only actor visible to peers, which greets each peer's agent
//!   with what it needs to open a lane back (name, incarnation, address, a one-time
//!   token);
//! - **lanes**: one TCP connection per direction per peer per **channel** that carries
//!   messages, call replies and heartbeats in batched frames, delivered by name on
//!   arrival. `control` carries the node's own traffic (heartbeats, registry replication,
//!   raft) and is never refused; `default` carries [`Node::send`] and [`Node::call`];
//!   more are declared with [`NodeConfig::channel`] and used with [`Node::send_on`] and
//!   [`Node::call_on`], so a flood on one never delays another. A channel may open
//!   several lanes to each peer ([`ChannelConfig::parallelism`]; messages to one process
//!   keep one lane, so their order), and a [`Priority::Low`] channel's lanes run on a
//!   thread the OS ranks below the application's, so a flood there leaves the cores to a
//!   small call on another channel;
//! - per exported process, a limit on the messages from other nodes delivered and not yet
//!   handled ([`NodeConfig::max_remote_queued`], or the process's own, [`ExportConfig`]):
//!   a slow process sheds the surplus (counted in [`NodeStats`] and per process in
//!   [`Node::export_stats`]) instead of growing the node's memory;
//! - the **event loop**, which owns the membership view: it declares a peer up on its
//!   hello, down when its connections close (a killed process: at once) or when nothing
//!   has come from it for the silence limit (a partition or a paused process: 3 s by
//!   default), and dials the addresses discovery reports, with backoff.
//!
//! Why lanes beside ractor_cluster's sessions: a message through a ractor_cluster remote
//! actor crosses several actors on each side (remote shim, node session, TCP session,
//! reader), each a task wake-up; measured here, that path gives ~190k msg/s and a
//! 140–160 µs call round trip, against a ~13 µs bare TCP round trip. A lane's writer
//! batches whatever queued while it wrote, and its reader delivers straight into the
//! target's mailbox. Sessions keep what they do well: the cookie handshake and the
//! agent's exchange. See `docs/cluster.md`.
//!
//! # Examples
//!
//! Two nodes in one process would share ractor's process-wide registries, so the example
//! starts one; the crate's tests start several processes.
//!
//! ```
//! use foundation_cluster::node::{Node, NodeConfig};
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = NodeConfig::new("a", "secret-cookie").listen("127.0.0.1:0".parse()?);
//! let node = Node::start(config).await?;
//! assert_eq!(node.name(), "a");
//! assert!(node.members().is_empty()); // alone
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod admission;
mod agent;
mod config;
mod conn;
mod error;
mod exports;
mod lane;
pub(crate) mod locks;
mod priority;
mod runtime;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::{Addr, Context, RemoteMessage, ReplyPort};
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

pub use admission::NodeStats;

/// The histogram of remote call round trips, in seconds, labelled by `outcome` (`ok`,
/// `refused`, `node_down`, `timeout`), recorded in the [`metrics`] facade.
pub const CALL_SECONDS: &str = "foundation_remote_call_seconds";

/// Gives the [`metrics`] recorder installed now the help text and unit of the node's
/// metrics ([`CALL_SECONDS`]), which an exporter shows with them (Prometheus' `# HELP`).
/// Call it once per process, after installing the recorder (the `foundation` runtime
/// does); a recorder keeps the first description of a name.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        CALL_SECONDS,
        metrics::Unit::Seconds,
        "Round trips of calls to processes on other nodes, by outcome (ok, refused, node_down, timeout)"
    );
}
pub use config::{
    CONTROL, ChannelConfig, ConfigError, DEFAULT, DEFAULT_PORT, ENV_VARIABLES, MAX_CHANNELS,
    MAX_PARALLELISM, NodeConfig, Priority, Tls, closest, os_host_name, unknown_variables,
};
pub use error::{NodeError, RemoteError, WaitError};
pub use exports::{ExportConfig, ExportStats, Mailbox, Mailboxes};
pub use priority::spawn_low_priority;
pub use wire::{DEFAULT_MAX_FRAME, FrameError, Refusal};

use crate::discovery::{Peer, Strategy};
use crate::membership::{DownReason, Member, MembershipEvent};
use agent::{Agent, AgentMsg};
use lane::Refused;
use runtime::{Event, Loop, PendingCall, Shared};

/// How far before a wait began a refusal still counts as a likely reason for it.
const REFUSALS_WINDOW: Duration = Duration::from_secs(60);

/// What a node tells its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node joined (or a newer incarnation of it).
    NodeUp(Member),
    /// A node announced a graceful leave.
    NodeLeaving(Member),
    /// A node went down.
    NodeDown {
        /// The member, as it was.
        member: Member,
        /// Why.
        reason: DownReason,
    },
    /// A connection was refused: wrong cookie, garbage, a bad frame, a silent peer.
    Rejected {
        /// The peer's address (and name, when known).
        peer: String,
        /// Why, as logged.
        why: String,
    },
}

impl From<MembershipEvent> for ClusterEvent {
    fn from(e: MembershipEvent) -> Self {
        match e {
            MembershipEvent::NodeUp(m) => Self::NodeUp(m),
            MembershipEvent::NodeLeaving(m) => Self::NodeLeaving(m),
            MembershipEvent::NodeDown { member, reason } => Self::NodeDown { member, reason },
        }
    }
}

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
    control: Arc<Control>,
}

struct Control {
    addr: SocketAddr,
    /// The silence limit of this node's failure detector.
    silence: Duration,
    server: ActorRef<NodeServerMessage>,
    agent: ActorRef<AgentMsg>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: std::sync::atomic::AtomicBool,
    /// Woken when the node shuts down (for [`Node::wait_for_members`]).
    shut: tokio::sync::Notify,
    /// What [`Node::leave`] runs first, by id ([`Node::on_leave`]).
    leave_hooks: Mutex<Vec<(u64, LeaveHook)>>,
    next_hook: std::sync::atomic::AtomicU64,
}

/// Work a graceful [`Node::leave`] does first (a distributed supervisor handing its
/// children off): returns the future to wait for.
pub type LeaveHook =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync>;

/// Names a hook given to [`Node::on_leave`], for [`Node::remove_on_leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaveHookId(u64);

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.name)
            .field("incarnation", &self.shared.incarnation)
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

/// How many connections the kernel completes and queues for a node before it accepts
/// them. The usual default (128) overflows under a burst of connections (hundreds of
/// clients reconnecting at once, or a client opening silent ones): the kernel then drops
/// the handshake's last packet, and a client that sends nothing first (it waits for the
/// node) is left holding a connection the node never saw. Linux caps it at
/// `net.core.somaxconn` (4096 by default).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds and listens on `addr` with [`LISTEN_BACKLOG`] (on Unix with address reuse on, as
/// `TcpListener::bind` sets it, so a restarted node gets its port back at once).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Node {
    /// Starts a node: binds its port, starts its session server, agent and event loop.
    /// It then dials the peers given to [`Node::connect`] and those its discovery
    /// strategies ([`Node::discover`]) report.
    ///
    /// # Errors
    ///
    /// [`NodeError::Config`] for unusable settings, [`NodeError::Bind`] if the port is
    /// taken, [`NodeError::Start`] if ractor refuses to start an actor.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        config.validate()?;
        let listener = listen(config.listen).map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
        let advertised = config.advertise.clone().unwrap_or_else(|| {
            let ip = if addr.ip().is_unspecified() {
                config
                    .advertise_ip
                    .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
            } else {
                addr.ip()
            };
            SocketAddr::new(ip, addr.port()).to_string()
        });
        let (loop_tx, loop_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(&config, advertised, loop_tx.clone()));

        // ractor_cluster's own listener cannot be turned off; it listens on a loopback
        // port of the OS's choosing that nothing dials. Peers come in through this
        // node's port, where silent and garbage connections are dealt with first.
        let server = NodeServer::new(
            0,
            config.cookie.clone(),
            config.name.clone(),
            "127.0.0.1".to_owned(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(std::net::IpAddr::from([127, 0, 0, 1]))
        .with_max_inbound_frame_size(config.max_frame as u64);
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| NodeError::Start {
                what: "session server",
                why: e.to_string(),
            })?;
        let _ = server.cast(NodeServerMessage::SubscribeToEvents {
            id: "foundation".to_owned(),
            subscription: Box::new(runtime::Sessions(loop_tx.clone())),
        });
        let (agent, _) = Actor::spawn(
            None,
            Agent {
                shared: shared.clone(),
                events: loop_tx.clone(),
            },
            (),
        )
        .await
        .map_err(|e| NodeError::Start {
            what: "agent",
            why: e.to_string(),
        })?;

        let event_loop = Loop::new(
            shared.clone(),
            server.clone(),
            config.silence,
            config.heartbeat_every(),
        );
        let tasks = vec![
            tokio::spawn(event_loop.run(loop_rx)),
            tokio::spawn(conn::accept(listener, shared.clone(), server.clone())),
        ];
        tracing::info!(
            node = %shared.name,
            incarnation = shared.incarnation,
            listen = %addr,
            advertised = %shared.addr,
            cluster = %shared.cluster,
            "node started"
        );
        Ok(Self {
            shared,
            control: Arc::new(Control {
                addr,
                silence: config.silence,
                server,
                agent,
                tasks: Mutex::new(tasks),
                stopped: std::sync::atomic::AtomicBool::new(false),
                shut: tokio::sync::Notify::new(),
                leave_hooks: Mutex::new(Vec::new()),
                next_hook: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This start of the node: higher is newer.
    pub fn incarnation(&self) -> u64 {
        self.shared.incarnation
    }

    /// The address the node's port is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.control.addr
    }

    /// How long a peer may stay silent before this node declares it down
    /// ([`NodeConfig::silence`]): the limit layers above time their own decisions by
    /// (a distributed supervisor's failover, for one).
    pub fn silence(&self) -> Duration {
        self.control.silence
    }

    /// The `host:port` peers reach this node at.
    pub fn advertised(&self) -> &str {
        &self.shared.addr
    }

    /// Dials `peer`, and again with backoff whenever it is not a live member.
    pub fn connect(&self, peer: &Peer) {
        let _ = self.shared.loop_tx.send(Event::Connect(peer.to_string()));
    }

    /// Runs a discovery strategy; the node dials whatever it reports.
    pub fn discover(&self, strategy: Box<dyn Strategy>) {
        let task = tokio::spawn(runtime::run_strategy(strategy, self.shared.loop_tx.clone()));
        locks::lock(&self.control.tasks).push(task);
    }

    /// Chooses a discovery strategy from the environment ([`crate::discovery::detect`]:
    /// Kubernetes, `FOUNDATION_PEERS`, `FOUNDATION_DNS_QUERY`, else mDNS), logs the
    /// choice and its reason, and runs it. `env` looks a variable up: pass
    /// `|k| std::env::var(k).ok()`.
    ///
    /// # Errors
    ///
    /// A variable that decides the strategy is set but malformed, or the chosen strategy
    /// cannot be configured. Nothing is started then. A `FOUNDATION_*` variable that
    /// nothing reads (a typo such as `FOUNDATION_PEER`) is logged as a warning.
    pub fn discover_from_env(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), crate::discovery::DiscoveryError> {
        config::warn_unknown_variables();
        let (choice, why) = crate::discovery::detect(env)?;
        let port = self
            .shared
            .addr
            .parse::<Peer>()
            .map_or(self.control.addr.port(), |p| p.port);
        let info = crate::discovery::NodeInfo::new(&self.shared.name, &self.shared.cluster, port);
        let strategy = crate::discovery::strategy_for(choice, &info)?;
        tracing::info!(node = %self.shared.name, strategy = strategy.name(), reason = %why, "discovery strategy chosen");
        self.discover(strategy);
        Ok(())
    }

    /// Waits until `peer` is a member that is up, and returns it. Resolves at once if it
    /// is up already: there is no window between a [`Node::subscribe`] and a
    /// [`Node::members`] to get wrong.
    ///
    /// # Errors
    ///
    /// [`WaitError::Timeout`] after `timeout`, naming the missing node and the
    /// connections this node refused meanwhile (or in the minute before) (a wrong cookie, another cluster, a TLS
    /// mismatch), which usually say why; [`WaitError::Shutdown`] if this node shuts down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future only stops waiting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use foundation_cluster::node::{Node, NodeConfig, WaitError};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
    /// // Nobody told this node where "b" is: the error says which node is missing.
    /// let err = node.wait_for("b", Duration::from_millis(100)).await.unwrap_err();
    /// assert!(matches!(&err, WaitError::Timeout { missing, .. } if missing == &["b"]));
    /// assert!(err.to_string().starts_with("`b` is not up after 100ms"));
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn wait_for(&self, peer: &str, timeout: Duration) -> Result<Member, WaitError> {
        let mut up = self.wait_for_members(&[peer], timeout).await?;
        up.pop().ok_or(WaitError::Shutdown)
    }

    /// Waits until every node in `peers` is a member that is up, and returns them in the
    /// order asked. As [`Node::wait_for`], for several nodes: the timeout's error names
    /// every node still missing.
    ///
    /// # Errors
    ///
    /// As [`Node::wait_for`].
    pub async fn wait_for_members(
        &self,
        peers: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Member>, WaitError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        // Subscribed before the first look at the members: a node that comes up between
        // the two is seen in one or the other.
        let mut events = self.subscribe();
        let shut = self.control.shut.notified();
        tokio::pin!(shut);
        shut.as_mut().enable();
        loop {
            if self.control.stopped.load(Ordering::SeqCst) {
                return Err(WaitError::Shutdown);
            }
            let members = self.members();
            let up = |p: &str| {
                members
                    .iter()
                    .find(|m| m.id == p && m.status == crate::membership::Status::Up)
                    .cloned()
            };
            let missing: Vec<String> = peers
                .iter()
                .filter(|p| up(p).is_none())
                .map(|p| (*p).to_owned())
                .collect();
            if missing.is_empty() {
                return Ok(peers.iter().filter_map(|p| up(p)).collect());
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    return Err(WaitError::Timeout {
                        missing,
                        waited: timeout,
                        refused: self.shared.refusals_since(
                            started.into_std().checked_sub(timeout.max(REFUSALS_WINDOW)),
                        ),
                    });
                }
                () = &mut shut => return Err(WaitError::Shutdown),
                // Any event (or missed events) may have changed the view: look again.
                _ = events.recv() => {}
            }
        }
    }

    /// Membership events from now on: [`ClusterEvent`]s. A subscriber that falls more
    /// than 1024 events behind misses the oldest (and is told so by the receiver).
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.shared.events.subscribe()
    }

    /// What the node has refused at its door (connections over the caps, handshakes
    /// that timed out, oversized frames before authentication, failed accepts) and how
    /// many connections it holds that have not authenticated yet. See `docs/cluster.md`,
    /// "Limits".
    pub fn stats(&self) -> NodeStats {
        let mut stats = self.shared.admission.stats();
        stats.remote_dropped = self.shared.remote_dropped.load(Ordering::Relaxed);
        stats.remote_refused = self.shared.remote_refused.load(Ordering::Relaxed);
        stats.wrong_type = self.shared.wrong_types.load(Ordering::Relaxed);
        stats.messages_in = self.shared.messages_in.load(Ordering::Relaxed);
        stats.messages_out = self.shared.messages_out.load(Ordering::Relaxed);
        stats.lanes_in = self.shared.lanes_in.load(Ordering::Relaxed);
        stats.lanes_out = self.shared.lanes_out.load(Ordering::Relaxed);
        stats
    }

    /// The live members (up or leaving), this node excluded.
    pub fn members(&self) -> Vec<Member> {
        locks::read(&self.shared.members).clone()
    }

    /// The consistent-hash ring over this node and its members that are up (leaving ones
    /// own nothing). Every node with the same view computes the same owner for a key.
    pub fn ring(&self) -> crate::ring::HashRing<String> {
        let members = self.members();
        let up = members
            .into_iter()
            .filter(|m| m.status == crate::membership::Status::Up)
            .map(|m| m.id);
        crate::ring::HashRing::new(std::iter::once(self.shared.name.clone()).chain(up))
    }

    /// Makes the process at `addr` reachable from other nodes as `name`. Its message
    /// type needs a wire form (`#[actor(remote)]` on an actor, or
    /// `#[derive(RemoteMessage)]`). Takes an [`Addr`] or a reference to one
    /// (`handle.addr()` of a typed handle).
    ///
    /// A name whose process has stopped for good is taken over: a restarted service
    /// exports itself again under its old name without an [`Node::unexport`] first.
    ///
    /// # Errors
    ///
    /// [`foundation_actors::SpawnError::NameTaken`] if a live process is exported as
    /// `name` already ([`Node::unexport`] it first).
    pub fn export<M: RemoteMessage>(
        &self,
        name: &str,
        addr: impl std::borrow::Borrow<Addr<M>>,
    ) -> Result<(), foundation_actors::SpawnError> {
        self.export_with(name, addr, ExportConfig::new())
    }

    /// As [`Node::export`], with the process's own limit of unhandled messages from other
    /// nodes ([`ExportConfig::max_queued`]); its drops and refusals are then read with
    /// [`Node::export_stats`].
    ///
    /// # Errors
    ///
    /// As [`Node::export`].
    pub fn export_with<M: RemoteMessage>(
        &self,
        name: &str,
        addr: impl std::borrow::Borrow<Addr<M>>,
        config: ExportConfig,
    ) -> Result<(), foundation_actors::SpawnError> {
        let mut exports = locks::write(&self.shared.exports);
        if exports
            .get(name)
            .is_some_and(|held| !held.inbox.is_stopped())
        {
            return Err(foundation_actors::SpawnError::NameTaken(name.to_owned()));
        }
        exports.insert(
            name.to_owned(),
            exports::Export::new(
                Arc::new(addr.borrow().clone()),
                config.max_queued.unwrap_or(self.shared.max_remote_queued),
            ),
        );
        Ok(())
    }

    /// The counters of the process exported as `name` (what it holds from other nodes,
    /// its limit, what was dropped and refused for it), since it was exported; `None` if
    /// nothing is exported under that name.
    pub fn export_stats(&self, name: &str) -> Option<ExportStats> {
        locks::read(&self.shared.exports)
            .get(name)
            .map(|e| e.queued.stats())
    }

    /// The mailboxes of the named processes on this node, read at once: every process
    /// exported here (registered in a cluster-wide registry, distributed children) and
    /// every name registered in this OS process with [`Addr::register`]. For each, the
    /// messages waiting for it ([`Addr::queued`]: sent from here or from other nodes),
    /// and, for an exported one, those from other nodes and their limit; all together,
    /// and for the `deepest` deepest of them, with their names. See [`Mailboxes`].
    ///
    /// It reads a few counters per process under the exports' and the names' read locks;
    /// names are copied only for the deepest ones that hold something. Cheap enough for a
    /// sampler or a scrape, not meant for a message's path. A process with two names (an
    /// exported one and a local one) is counted once, under its exported name.
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_cluster::node::{Node, NodeConfig};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
    /// let boxes = node.mailboxes(5);
    /// assert_eq!(boxes.queued, 0); // nothing waits here
    /// assert!(boxes.deepest.is_empty());
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn mailboxes(&self, deepest: usize) -> Mailboxes {
        let exports = locks::read(&self.shared.exports);
        let exported = exports
            .iter()
            .filter(|(_, e)| !e.inbox.is_stopped())
            .map(|(name, e)| {
                let peers = e.queued.stats();
                (name.as_str(), e.inbox.key(), e.inbox.queued(), peers)
            });
        let mut named = Vec::new();
        foundation_actors::addr::each_named(|name, key, queued| {
            // Copied: the names' lock is not held past this call.
            named.push((name.to_owned(), key, queued));
        });
        exports::gather(exported, named, deepest)
    }

    /// The [`Priority`] this node declared the channel named `channel` with (where its
    /// lanes run here), `None` if this node has no such channel. A service that runs work
    /// fed by a channel (as a pubsub's fan-out) runs it at the same priority.
    ///
    /// # Examples
    ///
    /// ```
    /// use foundation_cluster::node::{ChannelConfig, NodeConfig, Priority, DEFAULT};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = NodeConfig::new("a", "cookie")
    ///     .listen("127.0.0.1:0".parse()?)
    ///     .channel("bulk", ChannelConfig::default().priority(Priority::Low));
    /// let node = foundation_cluster::node::Node::start(config).await?;
    /// assert_eq!(node.channel_priority("bulk"), Some(Priority::Low));
    /// assert_eq!(node.channel_priority(DEFAULT), Some(Priority::Normal));
    /// assert_eq!(node.channel_priority("nope"), None);
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn channel_priority(&self, channel: &str) -> Option<Priority> {
        self.shared
            .channel(channel)
            .map(|i| self.shared.priority(i))
    }

    /// Stops exporting `name`.
    pub fn unexport(&self, name: &str) {
        locks::write(&self.shared.exports).remove(name);
    }

    /// Sends `msg` to the process exported as `name` on `node` (Erlang's
    /// `{Name, Node} ! Msg`). The current [`Context`] travels with it. Returns once the
    /// message is queued for the node: like a local cast, delivery is not confirmed.
    ///
    /// The message carries its type's identity ([`RemoteMessage::WIRE_TYPE`]): the other
    /// node drops a message whose type is not the process's before decoding it, and counts
    /// it ([`NodeStats::wrong_type`]), so a message of another type never runs the
    /// process's handlers.
    ///
    /// # Errors
    ///
    /// [`RemoteError::UnknownNode`] if `node` is not a live member,
    /// [`RemoteError::Overloaded`] if too much already waits for it,
    /// [`RemoteError::TooLarge`] or [`RemoteError::Wire`] if `msg` cannot be sent; for a
    /// send to this node itself, also the refusals a peer would only log, such as
    /// [`RemoteError::WrongType`].
    pub fn send<M: RemoteMessage>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), RemoteError> {
        self.send_on(DEFAULT, node, name, msg)
    }

    /// As [`Node::send`], on the channel named `channel` ([`CONTROL`], [`DEFAULT`] or one
    /// declared with [`NodeConfig::channel`]): what waits on one channel never delays
    /// another, and each has its own limit.
    ///
    /// # Errors
    ///
    /// As [`Node::send`], and [`RemoteError::UnknownChannel`] if this node or `node` has
    /// no such channel.
    pub fn send_on<M: RemoteMessage>(
        &self,
        channel: &str,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), RemoteError> {
        let ctx = Context::current();
        self.push(channel, node, None, name, ctx.as_ref(), msg)
    }

    /// As [`Node::send`], but where `send` fails with [`RemoteError::Overloaded`] because
    /// too much already waits to be written to `node`, this waits until the channel's
    /// writer has taken it, then queues `msg`: the sender is slowed to the pace the link
    /// and the peer keep, instead of spinning or dropping (backpressure, as a bounded
    /// channel's `send().await`). Other channels are not affected.
    ///
    /// It waits at most until the current [`Context`]'s deadline, if there is one; wrap
    /// it in [`tokio::time::timeout`] for another bound.
    ///
    /// # Errors
    ///
    /// As [`Node::send`] but [`RemoteError::Overloaded`]; [`RemoteError::DeadlineExceeded`]
    /// if the context's deadline passes first; [`RemoteError::NodeDown`] if `node` goes
    /// down while this waits.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes queues nothing.
    pub async fn send_wait<M: RemoteMessage>(
        &self,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), RemoteError> {
        self.send_on_wait(DEFAULT, node, name, msg).await
    }

    /// As [`Node::send_wait`], on the channel named `channel` (see [`Node::send_on`]).
    ///
    /// # Errors
    ///
    /// As [`Node::send_wait`], and [`RemoteError::UnknownChannel`] if this node or `node`
    /// has no such channel.
    ///
    /// # Cancel safety
    ///
    /// As [`Node::send_wait`].
    pub async fn send_on_wait<M: RemoteMessage>(
        &self,
        channel: &str,
        node: &str,
        name: &str,
        msg: &M,
    ) -> Result<(), RemoteError> {
        let ctx = Context::current();
        let deadline = ctx
            .as_ref()
            .and_then(Context::remaining)
            .map(|left| tokio::time::Instant::now() + left);
        // One unit of the task's cooperative budget a send, as a bounded channel's send
        // takes: a producer looping on this gives its worker up now and then even while
        // there is room, instead of holding it until the outbox is full.
        tokio::task::coop::consume_budget().await;
        loop {
            match self.push(channel, node, None, name, ctx.as_ref(), msg) {
                Err(RemoteError::Overloaded(_)) => {}
                done => return done,
            }
            let outbox = self.shared.channel(channel).and_then(|ch| {
                let key = runtime::lane_key(name);
                locks::read(&self.shared.outboxes).get(node)?.get(ch, key)
            });
            // Gone since (the node went down): the next push says so.
            let Some(outbox) = outbox else { continue };
            let room = outbox.room();
            tokio::pin!(room);
            room.as_mut().enable();
            if !outbox.is_full() {
                continue;
            }
            match deadline {
                Some(at) => {
                    if tokio::time::timeout_at(at, room).await.is_err() {
                        return Err(RemoteError::DeadlineExceeded);
                    }
                }
                None => room.await,
            }
        }
    }

    /// Queues `msg` for `name` on `node`: a cast, or with `call` a call (its id and the
    /// hash of the reply type the caller expects).
    fn push<M: RemoteMessage>(
        &self,
        channel: &str,
        node: &str,
        call: Option<(u64, u64)>,
        name: &str,
        ctx: Option<&Context>,
        msg: &M,
    ) -> Result<(), RemoteError> {
        if self.control.stopped.load(Ordering::SeqCst) {
            return Err(RemoteError::Shutdown(self.shared.name.clone()));
        }
        let unknown_channel = || RemoteError::UnknownChannel {
            channel: channel.to_owned(),
            node: node.to_owned(),
        };
        let ch = self.shared.channel(channel).ok_or_else(unknown_channel)?;
        if node == self.shared.name {
            return self.push_local(call, name, ctx, msg);
        }
        let outbox = {
            let outboxes = locks::read(&self.shared.outboxes);
            let peer = outboxes
                .get(node)
                .ok_or_else(|| RemoteError::UnknownNode(node.to_owned()))?;
            // Messages to one process take one lane of the channel: they stay in order.
            peer.get(ch, runtime::lane_key(name))
                .ok_or_else(unknown_channel)?
        };
        let put = |out: &mut Vec<u8>| {
            wire::put_cast_with(out, call, name, ctx, M::WIRE_TYPE.id(), |o| msg.encode(o))
        };
        // A caller waits for its call: written at once if the lane is idle.
        let pushed = match call {
            Some(_) => outbox.push_direct(put),
            None => outbox.push(put),
        };
        match pushed {
            Ok(Ok(())) => {
                self.shared.messages_out.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(RemoteError::Wire(e)),
            Err(Refused::Closed) => Err(RemoteError::NodeDown(node.to_owned())),
            Err(Refused::Full) => Err(RemoteError::Overloaded(node.to_owned())),
            Err(Refused::TooLarge) => Err(RemoteError::TooLarge),
        }
    }

    /// A send to this node itself goes through the same encoding, so it behaves as a
    /// remote one would.
    fn push_local<M: RemoteMessage>(
        &self,
        call: Option<(u64, u64)>,
        name: &str,
        ctx: Option<&Context>,
        msg: &M,
    ) -> Result<(), RemoteError> {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes)?;
        let shared = &self.shared;
        let ty = M::WIRE_TYPE.id();
        let Some(inbox) = shared.inbox(name).map(|e| e.inbox) else {
            return match call {
                None => Err(RemoteError::refused(
                    Refusal::NoSuchName,
                    &shared.name,
                    name,
                    String::new(),
                    sent(msg),
                )),
                Some((id, _)) => {
                    shared.complete_call(id, Err((Refusal::NoSuchName, String::new())));
                    Ok(())
                }
            };
        };
        match call {
            None => inbox.cast(ty, &bytes, ctx.cloned(), None).map_err(|r| {
                if r == Refusal::WrongType {
                    shared.refused_type(&shared.name, name, &*inbox, r, ty, None);
                }
                let theirs = inbox.wire_type().name().to_owned();
                RemoteError::refused(r, &shared.name, name, theirs, sent(msg))
            }),
            Some((id, reply_ty)) => {
                let done = shared.clone();
                let refused = inbox.call(
                    ty,
                    reply_ty,
                    &bytes,
                    ctx.cloned(),
                    None,
                    Box::new(move |r| done.complete_call(id, r)),
                );
                if let Err(r @ (Refusal::WrongType | Refusal::WrongReplyType)) = refused {
                    let call = Some((reply_ty, &bytes[..]));
                    shared.refused_type(&shared.name, name, &*inbox, r, ty, call);
                }
                Ok(())
            }
        }
    }

    /// Sends a request built by `build` around a reply port to the process exported as
    /// `name` on `node`, and waits for the reply for at most `timeout` (and never past
    /// the current context's deadline). The message type's call variants carry the port
    /// (`#[actor(remote)]` generates them); the reply travels back as bytes.
    ///
    /// The call carries its message type's identity and its reply type's
    /// ([`RemoteMessage::reply_type`]): the other node refuses a call of another message
    /// type, or one whose handler there answers another reply type, before the handler
    /// runs.
    ///
    /// # Errors
    ///
    /// As [`Node::send`], and: [`RemoteError::NoSuchName`], [`RemoteError::BadMessage`],
    /// [`RemoteError::WrongType`], [`RemoteError::WrongReplyType`],
    /// [`RemoteError::NoReply`], [`RemoteError::Stopped`] as the other node says;
    /// [`RemoteError::NodeDown`] if it goes down first; [`RemoteError::Timeout`] or
    /// [`RemoteError::DeadlineExceeded`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the reply; the request may still be handled.
    pub async fn call<M, R, F>(
        &self,
        node: &str,
        name: &str,
        build: F,
        timeout: Duration,
    ) -> Result<R, RemoteError>
    where
        M: RemoteMessage,
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
        self.call_on(DEFAULT, node, name, build, timeout).await
    }

    /// As [`Node::call`], on the channel named `channel` (the reply comes back on the
    /// same channel): see [`Node::send_on`].
    ///
    /// # Errors
    ///
    /// As [`Node::call`], and [`RemoteError::UnknownChannel`] if this node or `node` has
    /// no such channel.
    ///
    /// # Cancel safety
    ///
    /// As [`Node::call`].
    pub async fn call_on<M, R, F>(
        &self,
        channel: &str,
        node: &str,
        name: &str,
        build: F,
        timeout: Duration,
    ) -> Result<R, RemoteError>
    where
        M: RemoteMessage,
        R: DeserializeOwned + Send + 'static,
        F: FnOnce(ReplyPort<R>) -> M,
    {
        let ctx = Context::current();
        let (deadline_first, wait) = match ctx.as_ref().and_then(Context::remaining) {
            Some(left) if left < timeout => (true, left),
            _ => (false, timeout),
        };
        // The port only shapes the message: the answer comes back over the wire.
        let (port_tx, _port_rx) = ractor::concurrency::oneshot();
        let msg = build(ReplyPort::from(port_tx));
        let sent = sent(&msg);
        let reply_ty = msg.reply_type().map_or(wire::NOT_A_CALL, |t| t.id());
        let id = self.shared.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        locks::lock(&self.shared.calls).insert(
            id,
            PendingCall {
                node: node.to_owned(),
                tx,
            },
        );
        let guard = Forget {
            shared: &self.shared,
            id,
        };
        self.push(
            channel,
            node,
            Some((id, reply_ty)),
            name,
            ctx.as_ref(),
            &msg,
        )?;
        drop(msg);
        let asked = std::time::Instant::now();
        let got = tokio::time::timeout(wait, rx).await;
        drop(guard);
        let outcome = match &got {
            Ok(Ok(Ok(_))) => "ok",
            Ok(Ok(Err(_))) => "refused",
            Ok(Err(_)) => "node_down",
            Err(_) => "timeout",
        };
        metrics::histogram!(CALL_SECONDS, "outcome" => outcome)
            .record(asked.elapsed().as_secs_f64());
        match got {
            Ok(Ok(Ok(bytes))) => postcard::from_bytes(&bytes).map_err(|e| {
                RemoteError::Wire(foundation_actors::WireError::Malformed {
                    type_name: std::any::type_name::<R>(),
                    tag: None,
                    in_tag: false,
                    source: e,
                })
            }),
            Ok(Ok(Err((r, theirs)))) => Err(RemoteError::refused(r, node, name, theirs, sent)),
            Ok(Err(_)) => Err(RemoteError::NodeDown(node.to_owned())),
            Err(_) if deadline_first => Err(RemoteError::DeadlineExceeded),
            Err(_) => Err(RemoteError::Timeout),
        }
    }

    /// Runs `hook` at the start of every graceful [`Node::leave`], while the node is
    /// still a full member, and waits for its future (all hooks run at once; together
    /// they get at most [`NodeConfig::leave_timeout`]). A distributed supervisor uses it
    /// to hand its children off before the node goes.
    pub fn on_leave(&self, hook: LeaveHook) -> LeaveHookId {
        let id = self.control.next_hook.fetch_add(1, Ordering::Relaxed);
        locks::lock(&self.control.leave_hooks).push((id, hook));
        LeaveHookId(id)
    }

    /// Removes a hook given to [`Node::on_leave`].
    pub fn remove_on_leave(&self, id: LeaveHookId) {
        locks::lock(&self.control.leave_hooks).retain(|(i, _)| *i != id.0);
    }

    /// Leaves the cluster gracefully: first runs the [`Node::on_leave`] hooks (a
    /// distributed supervisor hands its children off there), then peers see
    /// [`ClusterEvent::NodeLeaving`], then [`DownReason::Left`] once what was queued for
    /// them is written. Then shuts down. Waits for the hooks, and then for the writing,
    /// at most [`NodeConfig::leave_timeout`] (10 s) each.
    pub async fn leave(&self) {
        let hooks: Vec<LeaveHook> = locks::lock(&self.control.leave_hooks)
            .iter()
            .map(|(_, h)| h.clone())
            .collect();
        if !hooks.is_empty() {
            let all = futures::future::join_all(hooks.iter().map(|h| h()));
            if tokio::time::timeout(self.shared.leave_timeout, all)
                .await
                .is_err()
            {
                tracing::warn!(node = %self.shared.name, "leave hooks did not finish in time");
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.shared.loop_tx.send(Event::Leave(tx)).is_ok() {
            let _ = rx.await;
        }
        // Let the lanes write what was queued before the leave, and the notice itself.
        let deadline = tokio::time::Instant::now() + self.shared.leave_timeout;
        while tokio::time::Instant::now() < deadline {
            let pending = locks::read(&self.shared.outboxes)
                .values()
                .any(|o| !o.is_drained());
            if !pending {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.shutdown().await;
    }

    /// Whether [`Node::shutdown`] (or [`Node::leave`], which ends with it) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.control.stopped.load(Ordering::SeqCst)
    }

    /// Waits until the node shuts down ([`Node::shutdown`] begins); at once if it has. What
    /// runs on a node (a pubsub, for one) stops with it this way.
    pub async fn shut_down(&self) {
        let shut = self.control.shut.notified();
        tokio::pin!(shut);
        // Registered before the flag is read: a shutdown in between still wakes it.
        shut.as_mut().enable();
        if self.is_shut_down() {
            return;
        }
        shut.await;
    }

    /// Stops the node: its sessions, lanes, agent and loop. Peers see it disconnect.
    /// Whatever waits on [`Node::shut_down`] is woken.
    pub async fn shutdown(&self) {
        if self.control.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.control.shut.notify_waiters();
        let (tx, rx) = oneshot::channel();
        if self.shared.loop_tx.send(Event::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        self.control.agent.stop(None);
        let _ = self
            .control
            .server
            .stop_and_wait(
                Some("foundation: node shut down".into()),
                Some(Duration::from_secs(2)),
            )
            .await;
        for t in locks::lock(&self.control.tasks).drain(..) {
            t.abort();
        }
        tracing::info!(node = %self.shared.name, "node stopped");
    }
}

/// What `msg` says of itself to a refusal: its type's wire name and its reply type's.
fn sent<M: RemoteMessage>(msg: &M) -> error::Sent {
    error::Sent {
        ty: M::TYPE_NAME,
        reply: msg
            .reply_type()
            .map_or(exports::NO_REPLY_TYPE, |t| t.name()),
    }
}

/// Removes a call's entry when its caller stops waiting.
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        locks::lock(&self.shared.calls).remove(&self.id);
    }
}

/// The decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub(crate) mod fuzzing;
