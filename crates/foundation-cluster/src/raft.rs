//! Consensus groups: a replicated state machine over `openraft`, for what must never have
//! two answers (a name with two owners, two leaders of a shard).
//!
//! A [`Group`] runs on every node that starts it under the same name. It keeps 3 or 5
//! voters (by [`GroupOptions::voters`]); every other node is a learner, which receives the
//! log and can read locally. Writes ([`Group::write`]) are committed by a majority of the
//! voters and applied in the same order on every node; from a node that is not the leader
//! they are forwarded to it. Reads are linearizable ([`Group::read`]: a read index
//! confirmed by the leader with a quorum, then applied locally) or local and possibly
//! stale ([`Group::read_local`]).
//!
//! - **Start.** Once `voters` nodes are up, the node with the smallest name among them
//!   asks the others whether a group already exists and, if none does, initializes one with
//!   the `voters` smallest-named nodes. Until then writes fail with [`GroupError::NoQuorum`].
//! - **Members come and go.** The leader adds every live node as a learner, and replaces a
//!   voter that went down with a live learner (smallest name first), keeping the group at
//!   its size; a dead voter with no replacement stays counted, as Raft requires.
//! - **Identity.** A node's Raft id comes from its name *and incarnation*, so a restarted
//!   node joins as a new learner, never as the voter it was: the log lives in memory, and a
//!   voter that forgot its vote must not vote again.
//! - **Partitions.** Only a side holding a majority of the voters can commit; a minority
//!   leader's writes time out unapplied, and its reads are refused.
//!
//! Messages travel over the node's lanes to a process each node exports as
//! `$raft/<group>`.
//!
//! # Examples
//!
//! A one-voter group (a single node; with `voters(3)` the same code runs on three):
//!
//! ```
//! use std::time::Duration;
//! use foundation_cluster::node::{Node, NodeConfig};
//! use foundation_cluster::raft::{Group, GroupOptions, Machine};
//!
//! /// A counter: each command adds its byte.
//! #[derive(Default)]
//! struct Counter(u64);
//! impl Machine for Counter {
//!     fn apply(&mut self, command: &[u8]) -> Vec<u8> {
//!         self.0 += u64::from(command.first().copied().unwrap_or(0));
//!         self.0.to_le_bytes().to_vec()
//!     }
//!     fn snapshot(&self) -> Vec<u8> { self.0.to_le_bytes().to_vec() }
//!     fn restore(&mut self, bytes: &[u8]) {
//!         self.0 = bytes.try_into().map(u64::from_le_bytes).unwrap_or(0);
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::start(NodeConfig::new("a", "cookie").listen("127.0.0.1:0".parse()?)).await?;
//! let group = Group::start(&node, GroupOptions::new("counters").voters(1), Counter::default()).await?;
//! group.wait_leader(Duration::from_secs(10)).await?;
//! assert_eq!(group.write(vec![5]).await?, 5u64.to_le_bytes());
//! assert_eq!(group.read(|c| c.0).await?, 5);
//! group.shutdown().await;
//! node.shutdown().await;
//! # Ok(()) }
//! ```

mod manager;
mod net;
mod store;

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::node::locks::lock;
use crate::node::{CONTROL, Node};
use net::{RaftRpc, ReadAnswer, Server, from_json};
use store::{LogStore, MachineStore};

openraft::declare_raft_types!(
    /// The group's Raft types: commands and replies are bytes.
    pub(crate) Cfg:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<Cfg>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The application's state, replicated by a [`Group`]. Every node applies the same
/// commands in the same order, so `apply` must be deterministic: no clock, no randomness,
/// nothing outside `self` and the command (a time it needs travels in the command).
pub trait Machine: Send + Sync + 'static {
    /// Applies a committed command and returns the reply for whoever wrote it.
    fn apply(&mut self, command: &[u8]) -> Vec<u8>;
    /// The whole state, for a node that joins or fell too far behind.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot.
    fn restore(&mut self, snapshot: &[u8]);
}

/// How a group runs.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    name: String,
    voters: usize,
    heartbeat: Duration,
    write_timeout: Duration,
}

impl GroupOptions {
    /// A group called `name`: nodes that start groups of the same name form one.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            voters: 3,
            heartbeat: Duration::from_millis(100),
            write_timeout: Duration::from_secs(5),
        }
    }

    /// How many voters the group keeps: 3 (the default) or 5 for production, 1 for a
    /// single node. Values are taken to the nearest of 1, 3, 5, 7 (an even count tolerates
    /// no more failures than the odd one below it).
    pub fn voters(mut self, n: usize) -> Self {
        self.voters = match n {
            0..=1 => 1,
            2..=3 => 3,
            4..=5 => 5,
            _ => 7,
        };
        self
    }

    /// The leader's heartbeat interval; elections start after 4 to 8 of them go unheard.
    /// Default 100 ms.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// How long a write or a linearizable read may wait for a leader and a quorum.
    /// Default 5 s.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
}

/// Why a group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// No leader with a quorum within the timeout: too few voters up, a partition, or the
    /// group not started yet. A write that got this far may still be applied later.
    #[error("no leader with a quorum within {0:?}; the write may still be applied")]
    NoQuorum(Duration),
    /// The group's settings are unusable.
    #[error("the group cannot start: {0}")]
    Start(String),
    /// A peer answered something this node cannot read (another version?).
    #[error("unreadable answer from the group: {0}")]
    Protocol(String),
    /// Raft refused (a fatal error, or the group is shutting down).
    #[error("raft: {0}")]
    Raft(String),
}

/// A replicated state machine `S` run by a Raft group across the cluster. Cheap to clone.
pub struct Group<S: Machine> {
    inner: Arc<Inner<S>>,
}

impl<S: Machine> Clone for Group<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Machine> std::fmt::Debug for Group<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("service", &self.inner.service)
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<S: Machine> {
    node: Node,
    raft: Raft<Cfg>,
    machine: MachineStore<S>,
    service: String,
    options: GroupOptions,
    id: u64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A node's Raft id: its name and incarnation, hashed. A restarted node has a new one.
pub fn node_id(name: &str, incarnation: u64) -> u64 {
    let mut bytes = name.as_bytes().to_vec();
    bytes.extend_from_slice(&incarnation.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// The time a write or read may take, counted from its start.
struct Budget {
    timeout: Duration,
    deadline: tokio::time::Instant,
}

impl Budget {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadline: tokio::time::Instant::now() + timeout,
        }
    }

    /// What is left of it, or the error for having spent it.
    fn left(&self) -> Result<Duration, GroupError> {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            Err(self.spent())
        } else {
            Ok(left)
        }
    }

    fn spent(&self) -> GroupError {
        GroupError::NoQuorum(self.timeout)
    }
}

/// Why a forwarded write was not done.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Refused {
    /// The node asked is not the leader: nothing was written.
    NotLeader,
    /// Anything else.
    Other(String),
}

impl<S: Machine> Group<S> {
    /// Starts this node's member of group `options.name`, with `machine` as its (empty)
    /// state: the group's state reaches it through the log or a snapshot.
    ///
    /// # Errors
    ///
    /// [`GroupError::Start`] if openraft refuses the settings, the group's process cannot
    /// start, or this node runs a group of that name already.
    pub async fn start(node: &Node, options: GroupOptions, machine: S) -> Result<Self, GroupError> {
        let beat = u64::try_from(options.heartbeat.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: options.name.clone(),
            heartbeat_interval: beat,
            election_timeout_min: beat.saturating_mul(4),
            election_timeout_max: beat.saturating_mul(8),
            ..Default::default()
        }
        .validate()
        .map_err(|e| GroupError::Start(e.to_string()))?;
        let service = format!("$raft/{}", options.name);
        let id = node_id(node.name(), node.incarnation());
        let machine = MachineStore::new(machine);
        let network = net::Network {
            node: node.clone(),
            service: service.clone(),
        };
        let raft = Raft::new(
            id,
            Arc::new(config),
            network,
            LogStore::default(),
            machine.clone(),
        )
        .await
        .map_err(|e| GroupError::Start(e.to_string()))?;
        let server = foundation_actors::spawn(Server { raft: raft.clone() }, ())
            .await
            .map_err(|e| GroupError::Start(e.to_string()))?;
        if node.export(&service, server.clone()).is_err() {
            server.stop(None);
            let _ = raft.shutdown().await;
            return Err(GroupError::Start(format!(
                "a group named `{}` runs on this node already",
                options.name
            )));
        }
        let inner = Arc::new(Inner {
            node: node.clone(),
            raft,
            machine,
            service,
            options,
            id,
            tasks: Mutex::new(Vec::new()),
        });
        let upkeep = tokio::spawn(manager::run(Arc::downgrade(&inner), node.subscribe()));
        lock(&inner.tasks).push(upkeep);
        Ok(Self { inner })
    }

    /// This node's Raft id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The leader's node name, as this node knows it.
    pub fn leader(&self) -> Option<String> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// Whether this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The voters' node names, as this node knows them.
    pub fn voters(&self) -> Vec<String> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let mut names: Vec<String> = membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.addr.clone()))
            .collect();
        names.sort();
        names
    }

    /// Waits until the group has a leader (as this node knows), at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`GroupError::NoQuorum`] if none within `timeout`.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<String, GroupError> {
        let mut metrics = self.inner.raft.metrics();
        let found = tokio::time::timeout(timeout, async {
            loop {
                if let Some(leader) = self.leader() {
                    return leader;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await;
        found.map_err(|_| GroupError::NoQuorum(timeout))
    }

    /// Writes `command` to the group's log and returns the machine's reply once it is
    /// committed and applied (on the leader). Linearizable.
    ///
    /// # Errors
    ///
    /// [`GroupError::NoQuorum`] if no leader commits it within the write timeout (the
    /// outcome is then unknown); [`GroupError::Raft`] or [`GroupError::Protocol`].
    pub async fn write(&self, command: Vec<u8>) -> Result<Vec<u8>, GroupError> {
        let budget = Budget::new(self.inner.options.write_timeout);
        let inner = &self.inner;
        loop {
            let left = budget.left()?;
            let leader = match tokio::time::timeout(left, inner.raft.client_write(command.clone()))
                .await
            {
                Err(_) => return Err(budget.spent()),
                Ok(Ok(written)) => return Ok(written.data),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_node,
                Ok(Err(e)) => return Err(GroupError::Raft(e.to_string())),
            };
            let Some(leader) = leader else {
                // No leader known yet: an election is under way, or no quorum.
                self.settle(left).await;
                continue;
            };
            let cmd = command.clone();
            let sent = inner
                .node
                .call(
                    &leader.addr,
                    &inner.service,
                    |p| RaftRpc::Write(cmd, p),
                    left,
                )
                .await;
            match sent {
                Ok(bytes) => match from_json::<Result<Vec<u8>, Refused>>(&bytes)? {
                    Ok(reply) => return Ok(reply),
                    // It stopped leading before the command reached it: nothing written.
                    Err(Refused::NotLeader) => self.settle(left).await,
                    Err(Refused::Other(e)) => return Err(GroupError::Raft(e)),
                },
                Err(crate::node::RemoteError::UnknownNode(_)) => self.settle(left).await,
                // Sent, and the answer lost: it may have been written.
                Err(_) => return Err(budget.spent()),
            }
        }
    }

    /// Waits for a change of leadership (or a short while), before trying again.
    ///
    /// Only a change of leader or term ends the wait early: metrics change with every
    /// heartbeat, and waking on those would spin.
    async fn settle(&self, left: Duration) {
        let mut metrics = self.inner.raft.metrics();
        let seen = {
            let m = metrics.borrow();
            (m.current_leader, m.current_term)
        };
        let pause = left.min(self.inner.options.heartbeat * 2);
        let _ = tokio::time::timeout(pause, async {
            while metrics.changed().await.is_ok() {
                let m = metrics.borrow();
                if (m.current_leader, m.current_term) != seen {
                    return;
                }
            }
            // The group shut down: wait out the pause rather than spin.
            std::future::pending::<()>().await;
        })
        .await;
    }

    /// Reads the machine linearizably: the read sees every write that completed before it
    /// started, wherever it was made. On a follower, the leader confirms its leadership
    /// with a quorum and names the log index to reach; this node waits until it has applied
    /// that far, then reads.
    ///
    /// # Errors
    ///
    /// [`GroupError::NoQuorum`] if no leader confirms within the write timeout.
    pub async fn read<R>(&self, f: impl FnOnce(&S) -> R) -> Result<R, GroupError> {
        let budget = Budget::new(self.inner.options.write_timeout);
        let inner = &self.inner;
        loop {
            let left = budget.left()?;
            if self.is_leader() {
                match tokio::time::timeout(left, inner.raft.ensure_linearizable()).await {
                    Ok(Ok(_)) => return Ok(inner.machine.read(f)),
                    Ok(Err(_)) => {
                        self.settle(left).await;
                        continue;
                    }
                    Err(_) => return Err(budget.spent()),
                }
            }
            let Some(leader) = self.leader() else {
                self.settle(left).await;
                continue;
            };
            let asked = inner
                .node
                .call_on(CONTROL, &leader, &inner.service, RaftRpc::ReadIndex, left)
                .await;
            let index = match asked {
                Ok(bytes) => match from_json::<ReadAnswer>(&bytes)? {
                    Ok(index) => index,
                    Err(_) => {
                        self.settle(left).await;
                        continue;
                    }
                },
                Err(_) => {
                    self.settle(left).await;
                    continue;
                }
            };
            if let Some(index) = index {
                let waited = inner
                    .raft
                    .wait(Some(left))
                    .applied_index_at_least(Some(index), "linearizable read")
                    .await;
                if waited.is_err() {
                    return Err(budget.spent());
                }
            }
            return Ok(inner.machine.read(f));
        }
    }

    /// Reads this node's copy of the machine as it is now: fast, possibly stale.
    pub fn read_local<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        self.inner.machine.read(f)
    }

    /// Leaves the group on this node: its Raft stops, its process goes.
    pub async fn shutdown(&self) {
        self.inner.node.unexport(&self.inner.service);
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
        let _ = self.inner.raft.shutdown().await;
    }
}

impl<S: Machine> Drop for Inner<S> {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// The decoders of peer bytes, for the fuzz targets (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub(crate) mod fuzzing;
