//! What `cluster_info` reports: each node's own view ([`NodeInfo`]), gathered from every
//! member over the node's own remote calls, and a history of rates for the dashboard.

use std::collections::VecDeque;
use std::time::Duration;

use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, ReplyPort};
use serde::{Deserialize, Serialize};

/// The cluster as one node sees it: every member, with its own report when it answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The node that gathered it.
    pub node: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// Every node known: this one first, then the members in name order.
    pub nodes: Vec<NodeEntry>,
}

impl ClusterInfo {
    /// The nodes whose status is `up`.
    pub fn up(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes.iter().filter(|n| n.status == "up")
    }
}

/// One node of [`ClusterInfo`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Its name.
    pub name: String,
    /// Its address, as peers dial it.
    pub addr: String,
    /// `up`, `leaving`, or `down (<reason>)`.
    pub status: String,
    /// Its own report, if it answered (a down node does not).
    pub info: Option<NodeInfo>,
    /// Why its report is missing, if it is.
    pub error: Option<String>,
}

/// A node's report of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Its incarnation (a restarted node has a new one).
    pub incarnation: u64,
    /// The profile in force (`development`, `production`).
    pub profile: String,
    /// Why that profile.
    pub profile_reason: String,
    /// Its discovery strategy (`kubernetes`, `dns`, `static`, `mdns`, `none`).
    pub discovery: String,
    /// Why that strategy.
    pub discovery_reason: String,
    /// Whether its connections to other nodes are TLS.
    #[serde(default)]
    pub tls: bool,
    /// Its HTTP endpoint, if it serves one.
    pub http: Option<String>,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// The members it sees (itself excluded): name and status.
    pub members: Vec<(String, String)>,
    /// Its distributed supervisors and their children.
    pub supervisors: Vec<SupervisorInfo>,
    /// Its cluster-wide registries and the names in them.
    pub registries: Vec<RegistryInfo>,
    /// Its service tables, with each service's instances.
    #[serde(default)]
    pub services: Vec<ServicesInfo>,
    /// Topics and patterns subscribed to on it, with their local subscriber counts.
    pub topics: Vec<(String, usize)>,
    /// Its caches.
    pub caches: Vec<CacheInfo>,
    /// Its cluster-wide work ecosystems, with each node's workers and queued jobs.
    #[serde(default)]
    pub work: Vec<WorkInfo>,
    /// Its named processes (exported: registered cluster-wide, distributed children, the
    /// runtime's own; and those named locally with `Addr::register`) with the most
    /// messages waiting, deepest first, at most [`MAILBOXES_SHOWN`]; only those holding
    /// any (see `docs/observability.md`).
    #[serde(default)]
    pub mailboxes: Vec<MailboxInfo>,
    /// Its counters now.
    pub totals: Sample,
    /// Its counters every [`SAMPLE_EVERY`] over the last [`HISTORY`], oldest first.
    pub history: Vec<Sample>,
}

/// A distributed supervisor, as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorInfo {
    /// Its name.
    pub name: String,
    /// Its children.
    pub children: Vec<ChildView>,
}

/// A child of a distributed supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildView {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Its status (`Running`, `Starting`, `Pending(..)`).
    pub status: String,
    /// The nodes its live instances run on.
    pub nodes: Vec<String>,
    /// Restarts of its instances, all nodes together.
    pub restarts: u64,
}

/// A cluster-wide registry, as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryInfo {
    /// Its scope.
    pub scope: String,
    /// Its names (as `Debug` prints the key, without the quotes of a plain string) and the
    /// node of each.
    pub names: Vec<(String, String)>,
}

/// A cluster-wide work ecosystem, as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkInfo {
    /// Its name.
    pub name: String,
    /// Each node of its last table: workers, and jobs queued there or in its workers'
    /// hands (the ecosystem's queue depth on that node).
    pub nodes: Vec<WorkNode>,
    /// Jobs this node submitted and has not seen done.
    pub outstanding: usize,
    /// Jobs this node's workers ran.
    pub ran_here: u64,
}

/// One node of a [`WorkInfo`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkNode {
    /// The node.
    pub node: String,
    /// Its workers.
    pub workers: u32,
    /// Jobs queued there or being run.
    pub queued: u32,
}

/// A service table, as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServicesInfo {
    /// Its scope.
    pub scope: String,
    /// Its services.
    pub services: Vec<ServiceInfo>,
}

/// A service and its instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// Its instances: node and capabilities.
    pub instances: Vec<(String, Vec<String>)>,
}

/// A cache, as a node reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheInfo {
    /// Its name.
    pub name: String,
    /// `local` or `replicated`.
    #[serde(default)]
    pub kind: String,
    /// Reads that hit.
    pub hits: u64,
    /// Reads that missed.
    pub misses: u64,
    /// Entries written.
    pub writes: u64,
    /// Entries evicted to keep its bound.
    pub evictions: u64,
}

/// A named process's mailbox, as a node reports it ([`NodeInfo::mailboxes`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxInfo {
    /// The name it is exported or registered under.
    pub name: String,
    /// Messages waiting for it (from this node and others), not taken by its handler yet.
    pub queued: usize,
    /// The messages from other nodes delivered to it and not handled yet, the one in hand
    /// included (so it may be one more than `queued`); 0 if it is not exported.
    #[serde(default)]
    pub from_peers: usize,
    /// Its limit of messages from other nodes: past it, the node drops tells and refuses
    /// calls to it; 0 if it is not exported.
    pub max_queued: usize,
}

/// How many of its deepest mailboxes a node reports ([`NodeInfo::mailboxes`]).
pub const MAILBOXES_SHOWN: usize = 5;

/// A node's counters at one moment (totals since it started).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sample {
    /// Milliseconds since the node started.
    pub at_ms: u64,
    /// Children restarted by the process's supervisors.
    pub restarts: u64,
    /// Pubsub messages handed to local subscribers.
    pub delivered: u64,
    /// Pubsub messages lost to slow subscribers.
    pub dropped: u64,
    /// Pubsub broadcasts sent to and received from peers.
    pub remote: u64,
    /// Cache reads that hit, all caches together.
    pub cache_hits: u64,
    /// Cache reads that missed.
    pub cache_misses: u64,
    /// Members that are up (this node included).
    pub members_up: u64,
    /// Messages waiting for its named processes (exported or registered locally), from
    /// this node and others, all together, now (a level, not a total).
    #[serde(default)]
    pub mailbox_queued: u64,
    /// The most of those any one named process has waiting, now.
    #[serde(default)]
    pub mailbox_queued_max: u64,
    /// Messages from other nodes delivered to its exported processes and not handled yet,
    /// all together, now.
    #[serde(default)]
    pub mailbox_from_peers: u64,
    /// Messages and calls that arrived from other nodes.
    #[serde(default)]
    pub messages_in: u64,
    /// Messages and calls this node queued to other nodes.
    #[serde(default)]
    pub messages_out: u64,
}

/// How often the runtime samples its counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// How much history a node keeps (the dashboard's charts).
pub const HISTORY: Duration = Duration::from_secs(300);

/// The samples kept: the last [`HISTORY`].
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub(crate) fn push(&mut self, s: Sample) {
        let keep = (HISTORY.as_millis() / SAMPLE_EVERY.as_millis()) as usize;
        if self.samples.len() >= keep {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    pub(crate) fn to_vec(&self) -> Vec<Sample> {
        self.samples.iter().copied().collect()
    }
}

/// The name the runtime's info process is exported under on every node.
pub(crate) const INFO_EXPORT: &str = "foundation.runtime.info";

/// The info process's messages: a peer asks for this node's report.
#[derive(RemoteMessage)]
#[remote(name = "foundation.runtime.Info")]
pub(crate) enum InfoMsg {
    /// This node's report, as JSON (kept out of the wire's schema, so a report can grow
    /// without breaking older peers).
    #[remote(tag = 1)]
    Report(ReplyPort<String>),
}

/// Answers [`InfoMsg`] from the runtime's state.
pub(crate) struct InfoServer(
    pub(crate) std::sync::Arc<std::sync::OnceLock<std::sync::Weak<super::Inner>>>,
);

impl Actor for InfoServer {
    type Msg = InfoMsg;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<InfoMsg>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<InfoMsg>, msg: InfoMsg, (): &mut ()) -> Result<(), ActorError> {
        match msg {
            InfoMsg::Report(reply) => {
                let json = match self.0.get().and_then(std::sync::Weak::upgrade) {
                    Some(inner) => serde_json::to_string(&inner.node_info()).unwrap_or_default(),
                    None => String::new(),
                };
                let _ = reply.send(json);
            }
        }
        Ok(())
    }
}
