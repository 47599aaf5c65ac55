//! What a distributed child asks for ([`ChildPlacement`]) and what is known of it
//! ([`ChildState`]).

use std::time::Duration;

use foundation_actors::Restart;

use super::error::PlacementError;
use super::view::View;

/// How many instances of a child run, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// One instance in the cluster, on the owner chosen by the distribution.
    Singleton,
    /// One instance on each of `n` nodes (all eligible nodes when there are fewer, topped
    /// up as nodes join).
    Replicated {
        /// How many instances.
        n: usize,
    },
    /// One instance on every eligible node; a joining node gets its own.
    All,
    /// An ordinary child of the node that started it ([`ChildPlacement::home`]): never
    /// moved, and gone with its node.
    Local,
    /// One instance on this node only. While the node is down the child waits for it;
    /// it is never started elsewhere.
    Pinned(String),
}

/// When a child moves because membership changed (a node that dies always loses its
/// instances; this is about moving living ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rebalance {
    /// Move at once what no longer belongs where it runs (a joining node takes the children
    /// it now owns, by a handoff).
    Eager,
    /// Move only on failure or when the node leaves: a running instance stays where it is
    /// while its node is up. The default (as Akka keeps its singleton on the oldest node).
    #[default]
    Passive,
    /// As `Passive`, but moved like `Eager` when a rebalance is asked for
    /// ([`Planner::rebalance`](super::Planner::rebalance)).
    Manual,
}

/// How many failures a child may have across nodes before it stops moving: more than
/// `max_failures` within `period` and the planner gives up on it
/// ([`Outcome::GaveUp`](super::Outcome::GaveUp)). A child that kills every node it lands on,
/// or whose `init` fails on every node, stops there.
///
/// What counts: each start that replaces an instance lost with its node, and each restart
/// after every local restart failed (the node's supervisor gave up). Planned moves (handoffs)
/// do not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveIntensity {
    /// Failures allowed within `period`.
    pub max_failures: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for MoveIntensity {
    /// 3 failures within 60 seconds.
    fn default() -> Self {
        Self {
            max_failures: 3,
            period: Duration::from_secs(60),
        }
    }
}

/// A distributed child as the placement core sees it: its id, placement, role, rebalancing,
/// restart type and move intensity. The same on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildPlacement {
    /// The child's id, unique in its distributed supervisor; also the key that places it.
    pub id: String,
    /// How many instances, where.
    pub placement: Placement,
    /// Only nodes offering this role run it (`None`: any node). Ignored by `Pinned` and
    /// `Local`.
    pub role: Option<String>,
    /// When a living instance moves.
    pub rebalance: Rebalance,
    /// OTP restart type: `Permanent` children are always restarted, `Transient` ones
    /// unless they ended normally, `Temporary` ones never (started once, never again).
    pub restart: Restart,
    /// Failures allowed across nodes.
    pub intensity: MoveIntensity,
    /// The node a `Local` child belongs to (the one that started it).
    pub home: Option<String>,
}

impl ChildPlacement {
    /// A `Permanent`, `Passive` child with the default move intensity.
    pub fn new(id: impl Into<String>, placement: Placement) -> Self {
        Self {
            id: id.into(),
            placement,
            role: None,
            rebalance: Rebalance::default(),
            restart: Restart::Permanent,
            intensity: MoveIntensity::default(),
            home: None,
        }
    }

    /// Runs only on nodes offering `role`.
    #[must_use]
    pub fn on_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Sets the rebalancing policy.
    #[must_use]
    pub fn rebalance(mut self, rebalance: Rebalance) -> Self {
        self.rebalance = rebalance;
        self
    }

    /// Sets the restart type.
    #[must_use]
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the move intensity.
    #[must_use]
    pub fn intensity(mut self, intensity: MoveIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Sets the home of a `Local` child.
    #[must_use]
    pub fn home(mut self, node: impl Into<String>) -> Self {
        self.home = Some(node.into());
        self
    }

    /// The key the distribution places this child by: its id's bytes.
    pub fn key(&self) -> &[u8] {
        self.id.as_bytes()
    }

    /// Checks the child against the view it is started in.
    ///
    /// A `Replicated { n }` with `n` larger than the cluster is not an error: it runs on
    /// every eligible node and is topped up as nodes join. A role no node offers is not an
    /// error either: the child waits ([`Outcome::Pending`](super::Outcome::Pending)).
    ///
    /// # Errors
    ///
    /// [`PlacementError::ZeroReplicas`] for `Replicated { n: 0 }`,
    /// [`PlacementError::UnknownNode`] for `Pinned` to a node not in `view`,
    /// [`PlacementError::NoHome`] for a `Local` child without a home, and
    /// [`PlacementError::EmptyId`] for an empty id.
    pub fn validate(&self, view: &View) -> Result<(), PlacementError> {
        if self.id.is_empty() {
            return Err(PlacementError::EmptyId);
        }
        match &self.placement {
            Placement::Replicated { n: 0 } => Err(PlacementError::ZeroReplicas {
                child: self.id.clone(),
            }),
            Placement::Pinned(node) if !view.contains(node) => Err(PlacementError::UnknownNode {
                child: self.id.clone(),
                node: node.clone(),
            }),
            Placement::Local if self.home.is_none() => Err(PlacementError::NoHome {
                child: self.id.clone(),
            }),
            _ => Ok(()),
        }
    }
}

/// How a child's instance ended on its own (not by a move or a node's death).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It stopped normally.
    Normal,
    /// It failed and its node's supervisor gave up restarting it.
    Failed,
}

/// A running (or starting) instance: the node and which start of that node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instance {
    /// The node's name.
    pub node: String,
    /// The node's incarnation when the instance was started there. An instance on an
    /// older incarnation than the view's is lost (the node restarted).
    pub incarnation: u64,
}

impl Instance {
    /// An instance on `node` at `incarnation`.
    pub fn new(node: impl Into<String>, incarnation: u64) -> Self {
        Self {
            node: node.into(),
            incarnation,
        }
    }
}

/// What the cluster knows of a child: where its instances run, how the last one ended,
/// and its recent failures. The I/O layer keeps one per child, the same on every node,
/// and records facts in it with these methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildState {
    /// Where instances run (or are being started), as recorded.
    pub instances: Vec<Instance>,
    /// How the last instance ended on its own, if one did and none was started since.
    pub ended: Option<Exit>,
    /// When each counted failure happened (milliseconds on the cluster's wall clock),
    /// oldest first; only the last [`MoveIntensity::period`] matters.
    pub failures: Vec<u64>,
}

impl ChildState {
    /// A child not started yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A child running on `instances`.
    pub fn running_on(instances: impl IntoIterator<Item = Instance>) -> Self {
        let mut state = Self::new();
        for instance in instances {
            state.started(instance);
        }
        state
    }

    /// Whether an instance was ever started (a `Temporary` child is started only once).
    pub fn ever_started(&self) -> bool {
        !self.instances.is_empty() || self.ended.is_some() || !self.failures.is_empty()
    }

    /// Records an instance started (or handed off to) on a node; replaces any record of
    /// the same node.
    pub fn started(&mut self, instance: Instance) {
        self.instances.retain(|i| i.node != instance.node);
        self.instances.push(instance);
        self.instances.sort();
        self.ended = None;
    }

    /// Records that the instance on `node` is gone (stopped by a plan, handed off, or
    /// lost with its node).
    pub fn removed(&mut self, node: &str) {
        self.instances.retain(|i| i.node != node);
    }

    /// Records that the instance on `node` ended on its own, and how.
    pub fn ended(&mut self, node: &str, exit: Exit) {
        self.removed(node);
        self.ended = Some(exit);
    }

    /// Records a failure at `now_ms` (do this when carrying out a start whose
    /// [`StartCause::counts`](super::StartCause::counts) is true), forgetting those older
    /// than `period`.
    pub fn count_failure(&mut self, now_ms: u64, period: Duration) {
        self.failures.push(now_ms);
        self.failures.sort_unstable();
        self.failures.retain(|&at| within(at, now_ms, period));
    }

    /// The failures within `period` before `now_ms`.
    pub fn recent_failures(&self, now_ms: u64, period: Duration) -> usize {
        self.failures
            .iter()
            .filter(|&&at| within(at, now_ms, period))
            .count()
    }
}

/// Whether a failure at `at` is less than `period` before `now_ms` (one from the future,
/// by a clock that runs ahead, counts).
fn within(at: u64, now_ms: u64, period: Duration) -> bool {
    u128::from(now_ms.saturating_sub(at)) < period.as_millis()
}
