//! The planner: from the children, their records and the view, what each node does.

use std::collections::{BTreeMap, BTreeSet};

use foundation_actors::Restart;

use super::distribution::{Distribution, Load, Rendezvous};
use super::spec::{ChildPlacement, ChildState, Exit, Placement, Rebalance};
use super::view::View;

/// A distributed child: what it asks for and what is known of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// What it asks for.
    pub spec: ChildPlacement,
    /// Where it runs, how it ended, its recent failures.
    pub state: ChildState,
}

impl Child {
    /// A child not started yet.
    pub fn new(spec: ChildPlacement) -> Self {
        Self {
            spec,
            state: ChildState::new(),
        }
    }

    /// A child with a known state.
    pub fn with_state(spec: ChildPlacement, state: ChildState) -> Self {
        Self { spec, state }
    }
}

/// Why an instance is started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartCause {
    /// The child's first start.
    New,
    /// One more instance where one was missing without a failure: a node joined (`All`,
    /// `Replicated` short of `n`), or the first start of a child whose owner was pending.
    Grow,
    /// Replaces instances lost with their nodes (down, or restarted with a new
    /// incarnation). Counts toward the move intensity. When the quorum decision has a
    /// [`start_after`](super::Decision::start_after), wait for it.
    Failover {
        /// The nodes the lost instances ran on.
        lost: Vec<String>,
    },
    /// Replaces an instance that ended on its own (failed, or a `Permanent` child that
    /// stopped). Counts toward the move intensity.
    Restart,
    /// Took over from the instance on `from` in a planned move, with its state (see
    /// `distributed`'s handoff). Not a failure.
    HandOff {
        /// The node that handed over.
        from: String,
    },
}

impl StartCause {
    /// Whether carrying out this start counts as a failure
    /// ([`ChildState::count_failure`]).
    pub fn counts(&self) -> bool {
        matches!(self, Self::Failover { .. } | Self::Restart)
    }
}

/// Why an instance is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// More instances run than the placement asks for (after a partition heals, two
    /// instances of a singleton): this one is not among the preferred.
    Duplicate,
    /// This node no longer owns it and no other node needs its state (an `Eager` child
    /// whose replica count shrank, a `Pinned` child found elsewhere).
    NotOwner,
    /// This node is leaving and the child has no instance to move to (`All`).
    NodeLeaving,
    /// The child ended on its own and is not restarted (it is forgotten).
    Ended,
    /// The child failed more often than its move intensity allows.
    GaveUp,
}

/// What one node does with one child.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Start an instance here, from its last checkpoint if one exists (`init` otherwise).
    Start {
        /// The child.
        child: String,
        /// Why.
        cause: StartCause,
    },
    /// A planned move to here: wait for the instance on `from` to hand its state over
    /// (it stops first), then start from that state and deliver the messages held
    /// meanwhile. Never start before the state arrives.
    Receive {
        /// The child.
        child: String,
        /// The node handing over.
        from: String,
    },
    /// A planned move away: stop taking messages (hold them), hand the final state to
    /// `to`, stop, then forward what was held.
    HandOff {
        /// The child.
        child: String,
        /// The node taking over.
        to: String,
    },
    /// Stop the instance here.
    Stop {
        /// The child.
        child: String,
        /// Why.
        reason: StopReason,
    },
    /// The instance here stays.
    Keep {
        /// The child.
        child: String,
    },
}

impl Action {
    /// The child this action is about.
    pub fn child(&self) -> &str {
        match self {
            Self::Start { child, .. }
            | Self::Receive { child, .. }
            | Self::HandOff { child, .. }
            | Self::Stop { child, .. }
            | Self::Keep { child } => child,
        }
    }
}

/// Why a child's record is removed from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForgetReason {
    /// It ended on its own and its restart type does not restart it (`Temporary`, or
    /// `Transient` ending normally).
    Ended(Exit),
    /// A `Temporary` child's instances were all lost with their nodes.
    Lost,
    /// A `Local` child's home went down.
    HomeDown,
}

/// Why a child runs nowhere for now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingReason {
    /// No live node offers the child's role (or the cluster is empty).
    NoEligibleNode {
        /// The role asked for.
        role: Option<String>,
    },
    /// The node a `Pinned` child belongs to is down.
    PinnedNodeDown {
        /// The node.
        node: String,
    },
}

/// A decision about a child's record, the same on every node. The I/O layer applies it
/// to the shared record once (applying it twice does no harm).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Remove the child's record.
    Forget {
        /// The child.
        child: String,
        /// Why.
        reason: ForgetReason,
    },
    /// The child failed more often than its move intensity allows: its instances are
    /// stopped and it is not started again. Report it (the supervisor's caller sees it),
    /// then remove the record.
    GaveUp {
        /// The child.
        child: String,
        /// Failures within the period, this one included.
        failures: usize,
        /// The most allowed.
        max: u32,
    },
    /// The child cannot run anywhere now; it starts when a suitable node appears.
    Pending {
        /// The child.
        child: String,
        /// Why.
        reason: PendingReason,
    },
    /// A second child with an id already seen in the same plan: ignored. Ids are unique
    /// in a distributed supervisor; this says the records are corrupt.
    DuplicateId {
        /// The id.
        child: String,
    },
}

/// What one node does: its actions, and the outcomes for the shared records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// This node's actions, by child id.
    pub actions: Vec<Action>,
    /// Decisions about records (the same on every node).
    pub outcomes: Vec<Outcome>,
}

/// What every node does: each node's actions, and the outcomes. For observers, tests and
/// `which_children`-style views; a node acts on its own part ([`Planner::plan`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterPlan {
    /// Actions by node.
    pub nodes: BTreeMap<String, Vec<Action>>,
    /// Decisions about records.
    pub outcomes: Vec<Outcome>,
}

impl ClusterPlan {
    /// The actions of `node`.
    pub fn actions(&self, node: &str) -> &[Action] {
        self.nodes.get(node).map_or(&[], Vec::as_slice)
    }

    fn push(&mut self, node: &str, action: Action) {
        self.nodes.entry(node.to_owned()).or_default().push(action);
    }
}

/// The placement planner: a [`Distribution`] and the rules of placements, rebalancing,
/// restart types and move intensity, as a pure function of the children, their records
/// and the view. No I/O, no clock of its own (the time is an argument).
///
/// Every node runs it on the same inputs and gets the same plan; each carries out its own
/// part. See the module docs of [`placement`](super) for the rules.
#[derive(Debug, Clone, Default)]
pub struct Planner<D = Rendezvous> {
    distribution: D,
}

impl<D: Distribution> Planner<D> {
    /// A planner placing with `distribution`.
    pub fn new(distribution: D) -> Self {
        Self { distribution }
    }

    /// The distribution.
    pub fn distribution(&self) -> &D {
        &self.distribution
    }

    /// The owners of `key` among the eligible members for `role`: the call shards use.
    /// See [`View::owners`].
    pub fn owners<'v>(
        &self,
        view: &'v View,
        key: &[u8],
        n: usize,
        role: Option<&str>,
        load: &Load,
    ) -> Vec<&'v str> {
        view.owners(&self.distribution, key, n, role, load)
    }

    /// What `me` does, and the outcomes for the records, after membership or a record
    /// changed. `now_ms` is the cluster's wall clock in milliseconds (move intensity
    /// windows are measured on it).
    pub fn plan(&self, me: &str, view: &View, children: &[Child], now_ms: u64) -> Plan {
        self.plan_cluster(view, children, now_ms, false)
            .for_node(me)
    }

    /// As [`plan`](Self::plan), with a rebalance asked for: `Manual` children move as
    /// `Eager` ones do.
    pub fn rebalance(&self, me: &str, view: &View, children: &[Child], now_ms: u64) -> Plan {
        self.plan_cluster(view, children, now_ms, true).for_node(me)
    }

    /// What every node does. `manual` is a rebalance asked for.
    pub fn plan_cluster(
        &self,
        view: &View,
        children: &[Child],
        now_ms: u64,
        manual: bool,
    ) -> ClusterPlan {
        let load: Load = children
            .iter()
            .flat_map(|c| c.state.instances.iter())
            .filter(|i| view.is_live(&i.node, i.incarnation))
            .map(|i| i.node.as_str())
            .collect();
        self.plan_cluster_loaded(view, children, load, now_ms, manual)
    }

    /// As [`plan_cluster`](Self::plan_cluster) with the load counted by the caller: the
    /// live instances per node of every child of the supervisor, not only of `children`
    /// (a plan of some children only, each placed beside all the others).
    pub(crate) fn plan_cluster_loaded(
        &self,
        view: &View,
        children: &[Child],
        mut load: Load,
        now_ms: u64,
        manual: bool,
    ) -> ClusterPlan {
        let mut order: Vec<&Child> = children.iter().collect();
        order.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
        let mut plan = ClusterPlan::default();
        let mut last: Option<&str> = None;
        for child in order {
            if last == Some(child.spec.id.as_str()) {
                plan.outcomes.push(Outcome::DuplicateId {
                    child: child.spec.id.clone(),
                });
                continue;
            }
            last = Some(&child.spec.id);
            self.place(child, view, now_ms, manual, &mut load, &mut plan);
        }
        plan
    }

    fn place(
        &self,
        child: &Child,
        view: &View,
        now_ms: u64,
        manual: bool,
        load: &mut Load,
        plan: &mut ClusterPlan,
    ) {
        let (spec, state) = (&child.spec, &child.state);
        let id = &spec.id;
        let mut surviving: Vec<&str> = Vec::new();
        let mut lost: Vec<String> = Vec::new();
        for instance in &state.instances {
            if view.is_live(&instance.node, instance.incarnation) {
                if !surviving.contains(&instance.node.as_str()) {
                    surviving.push(&instance.node);
                }
            } else if !lost.contains(&instance.node) {
                lost.push(instance.node.clone());
            }
        }
        surviving.sort_unstable();
        lost.sort_unstable();
        let stop_all = |plan: &mut ClusterPlan, reason: StopReason| {
            for node in &surviving {
                plan.push(
                    node,
                    Action::Stop {
                        child: id.clone(),
                        reason: reason.clone(),
                    },
                );
            }
        };

        // Ended on its own: restarted or forgotten, by restart type.
        if let Some(exit) = state.ended {
            let restarts = match spec.restart {
                Restart::Permanent => true,
                Restart::Transient => exit == Exit::Failed,
                Restart::Temporary => false,
            };
            if !restarts {
                stop_all(plan, StopReason::Ended);
                release(load, &surviving);
                plan.outcomes.push(Outcome::Forget {
                    child: id.clone(),
                    reason: ForgetReason::Ended(exit),
                });
                return;
            }
        }
        let may_start = spec.restart != Restart::Temporary || !state.ever_started();
        if !may_start && surviving.is_empty() {
            plan.outcomes.push(Outcome::Forget {
                child: id.clone(),
                reason: ForgetReason::Lost,
            });
            return;
        }

        // Candidates in order of preference, and how many instances.
        release(load, &surviving);
        let Some((ranked, count)) = self.candidates(spec, view, load, &surviving) else {
            stop_all(plan, StopReason::NotOwner);
            plan.outcomes.push(Outcome::Forget {
                child: id.clone(),
                reason: ForgetReason::HomeDown,
            });
            return;
        };
        if ranked.is_empty() {
            // Nowhere to go: what survives stays (even on a leaving node), and the child
            // waits for a suitable node.
            for node in &surviving {
                plan.push(node, Action::Keep { child: id.clone() });
                load.add(node);
            }
            let reason = match &spec.placement {
                Placement::Pinned(node) => PendingReason::PinnedNodeDown { node: node.clone() },
                Placement::Local => {
                    // Its home is leaving and it does not run there: it goes with its home.
                    plan.outcomes.push(Outcome::Forget {
                        child: id.clone(),
                        reason: ForgetReason::HomeDown,
                    });
                    return;
                }
                _ => PendingReason::NoEligibleNode {
                    role: spec.role.clone(),
                },
            };
            plan.outcomes.push(Outcome::Pending {
                child: id.clone(),
                reason,
            });
            return;
        }

        let eager = match spec.rebalance {
            Rebalance::Eager => true,
            Rebalance::Passive => false,
            Rebalance::Manual => manual,
        };
        let mut desired: Vec<&str> = if eager {
            ranked.iter().copied().take(count).collect()
        } else {
            // Survivors on eligible nodes first, by preference; then the fill.
            ranked
                .iter()
                .copied()
                .filter(|n| surviving.contains(n))
                .take(count)
                .collect()
        };
        for node in &ranked {
            if desired.len() >= count {
                break;
            }
            if !desired.contains(node) {
                desired.push(node);
            }
        }

        let keep: Vec<&str> = surviving
            .iter()
            .copied()
            .filter(|n| desired.contains(n))
            .collect();
        let mut new: Vec<&str> = desired
            .iter()
            .copied()
            .filter(|n| !surviving.contains(n))
            .collect();
        let out: Vec<&str> = surviving
            .iter()
            .copied()
            .filter(|n| !desired.contains(n))
            .collect();

        // Planned moves: an instance that must go hands its state to a node that needs
        // one. `All` instances are independent: nothing to hand over.
        let mut moves: Vec<(&str, &str)> = Vec::new();
        let mut stops: Vec<(&str, StopReason)> = Vec::new();
        for from in out {
            let target = if matches!(spec.placement, Placement::All) || new.is_empty() {
                None
            } else {
                Some(new.remove(0))
            };
            match target {
                Some(to) => moves.push((from, to)),
                None => {
                    let reason = if view.get(from).is_some_and(|n| n.leaving) {
                        StopReason::NodeLeaving
                    } else if surviving.len() > count {
                        StopReason::Duplicate
                    } else {
                        StopReason::NotOwner
                    };
                    stops.push((from, reason));
                }
            }
        }

        // Fresh starts for what is still missing, each with its cause.
        let mut starts: Vec<(&str, StartCause)> = Vec::new();
        if may_start {
            let never = !state.ever_started();
            let mut replacing = lost.len() + usize::from(state.ended.is_some());
            for node in new {
                let cause = if never {
                    StartCause::New
                } else if replacing > 0 {
                    replacing -= 1;
                    if state.ended.is_some() && lost.is_empty() {
                        StartCause::Restart
                    } else {
                        StartCause::Failover { lost: lost.clone() }
                    }
                } else {
                    StartCause::Grow
                };
                starts.push((node, cause));
            }
        }

        // Restart intensity across moves.
        let counted = starts.iter().filter(|(_, c)| c.counts()).count();
        if counted > 0 {
            let failures = state.recent_failures(now_ms, spec.intensity.period) + counted;
            if failures > spec.intensity.max_failures as usize {
                stop_all(plan, StopReason::GaveUp);
                plan.outcomes.push(Outcome::GaveUp {
                    child: id.clone(),
                    failures,
                    max: spec.intensity.max_failures,
                });
                return;
            }
        }

        for node in keep {
            plan.push(node, Action::Keep { child: id.clone() });
            load.add(node);
        }
        for (from, to) in moves {
            plan.push(
                from,
                Action::HandOff {
                    child: id.clone(),
                    to: to.to_owned(),
                },
            );
            plan.push(
                to,
                Action::Receive {
                    child: id.clone(),
                    from: from.to_owned(),
                },
            );
            load.add(to);
        }
        for (node, reason) in stops {
            plan.push(
                node,
                Action::Stop {
                    child: id.clone(),
                    reason,
                },
            );
        }
        for (node, cause) in starts {
            plan.push(
                node,
                Action::Start {
                    child: id.clone(),
                    cause,
                },
            );
            load.add(node);
        }
    }

    /// The candidates for `spec`'s instances in order of preference, and how many
    /// instances it asks for; `None` for a `Local` child whose home is not a member.
    /// `surviving`: the nodes its instances survive on.
    fn candidates<'v>(
        &self,
        spec: &ChildPlacement,
        view: &'v View,
        load: &Load,
        surviving: &[&str],
    ) -> Option<(Vec<&'v str>, usize)> {
        let role = spec.role.as_deref();
        Some(match &spec.placement {
            Placement::Singleton => (self.rank(spec, view, role, load), 1),
            Placement::Replicated { n } => (self.rank(spec, view, role, load), *n),
            Placement::All => {
                let ranked = self.rank(spec, view, role, load);
                let n = ranked.len();
                (ranked, n)
            }
            Placement::Pinned(node) => (fixed(view, node, surviving), 1),
            Placement::Local => match spec.home.as_deref() {
                Some(home) if view.contains(home) => (fixed(view, home, surviving), 1),
                _ => return None,
            },
        })
    }

    /// The nodes a plan of a new child (no instance, no history) alone starts it on,
    /// sorted: what [`ClusterPlan::placements`] of that plan gives for it, without the
    /// plan (`place_child` answers with it). Empty when it would be pending or forgotten.
    ///
    /// A new child has nothing surviving, nothing lost and no failures, and its starts
    /// (`StartCause::New`) count against no intensity: its plan starts it on its first
    /// `count` candidates.
    pub(crate) fn owners_new<'v>(
        &self,
        spec: &ChildPlacement,
        view: &'v View,
        load: &Load,
    ) -> Vec<&'v str> {
        let Some((ranked, count)) = self.candidates(spec, view, load, &[]) else {
            return Vec::new();
        };
        // As `place` fills `desired` with nothing surviving (and no rebalance asked for).
        let mut owners: Vec<&str> = if spec.rebalance == Rebalance::Eager {
            ranked.into_iter().take(count).collect()
        } else {
            let mut desired = Vec::with_capacity(count.min(ranked.len()));
            for node in ranked {
                if desired.len() >= count {
                    break;
                }
                if !desired.contains(&node) {
                    desired.push(node);
                }
            }
            desired
        };
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// Eligible nodes for `role`, ranked for the child.
    fn rank<'v>(
        &self,
        spec: &ChildPlacement,
        view: &'v View,
        role: Option<&str>,
        load: &Load,
    ) -> Vec<&'v str> {
        self.distribution
            .rank(spec.key(), &view.eligible(role), load)
    }
}

impl ClusterPlan {
    fn for_node(mut self, me: &str) -> Plan {
        Plan {
            actions: self.nodes.remove(me).unwrap_or_default(),
            outcomes: self.outcomes,
        }
    }

    /// The nodes each child will run on once this plan is carried out (kept, received,
    /// started), by child.
    pub fn placements(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut placed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (node, actions) in &self.nodes {
            for action in actions {
                if matches!(
                    action,
                    Action::Keep { .. } | Action::Receive { .. } | Action::Start { .. }
                ) {
                    placed.entry(action.child()).or_default().insert(node);
                }
            }
        }
        placed
    }
}

/// A node fixed by the placement (`Pinned`, `Local`): a candidate while it is a member,
/// but a leaving one only for an instance already there.
fn fixed<'v>(view: &'v View, node: &str, surviving: &[&str]) -> Vec<&'v str> {
    match view.get(node) {
        Some(info) if !info.leaving || surviving.contains(&node) => vec![info.id.as_str()],
        _ => Vec::new(),
    }
}

fn release(load: &mut Load, nodes: &[&str]) {
    for node in nodes {
        load.remove(node);
    }
}
