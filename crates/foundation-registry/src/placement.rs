//! The placement core: where distributed children run, when they move, and which side of a
//! partition keeps them, as plain logic without I/O.
//!
//! This is the part of distributed supervision that decides; the
//! [distributed supervisor](crate::distributed) carries the decisions out: it feeds the core the membership view and the
//! children's records, and starts, stops and hands off processes as told. Every node runs
//! the same functions on the same inputs and reaches the same decisions without asking
//! anyone: there is no leader. Sharded entities (partitioned placement) will place their
//! shards with the same [`View::owners`].
//!
//! The algorithm, its inputs and its guarantees are described in `ALGORITHM.md` beside
//! this module; the guide is `docs/placement.md`.
//!
//! # Placements
//!
//! [`Placement::Singleton`] (one instance), [`Placement::Replicated`] (`n` instances on `n`
//! nodes), [`Placement::All`] (one per eligible node), [`Placement::Local`] (an ordinary
//! child of its home node) and [`Placement::Pinned`] (one instance on that node only). A
//! child may be restricted to nodes offering a role ([`ChildPlacement::on_role`]).
//!
//! # Distribution
//!
//! A [`Distribution`] ranks eligible nodes for a child's id; the first `n` own it.
//! [`Rendezvous`] (the default) hashes node and key with xxh3, so a join moves only what
//! the new node wins (about `1/N`); [`LeastLoaded`] prefers the nodes running fewest
//! instances. Implement the trait for your own.
//!
//! # Rebalancing
//!
//! A node that dies loses its instances; the planner starts `Permanent` children, and
//! `Transient` ones that had not ended normally, on their new owners ([`StartCause::Failover`]).
//! `Temporary` children are started once and never again. Living instances move only by
//! the child's [`Rebalance`]: `Eager` as soon as they no longer belong where they run,
//! `Passive` (the default) only when their node leaves, `Manual` when
//! [`Planner::rebalance`] is called. A planned move is a handoff ([`Action::HandOff`] on
//! the old node, [`Action::Receive`] on the new one): the old instance stops after handing
//! its state over, so two never run at once.
//!
//! # Restart intensity across moves
//!
//! Every failover and every restart after a local give-up counts against the child's
//! [`MoveIntensity`]; past it, the planner gives up ([`Outcome::GaveUp`]): a child that
//! kills every node it lands on stops moving.
//!
//! # Split brain
//!
//! A [`Quorum`] policy says which side of a partition keeps running: a pure function of the
//! last stable membership, the members reached now and this node. [`Timing::decide`] adds
//! when to act ([`Decision`]).
//!
//! ## The timing argument
//!
//! Let a partition begin at instant `P`, between a losing node `L` and a winning node `W`.
//! Heartbeats flow every `h`; a message that arrives takes at most `d`; the failure
//! detector checks every `t`; a child stops within `s`.
//!
//! - `L` last hears from `W` at `T_L ≤ P + d`. It declares `W` down by `T_L + silence + t`,
//!   decides to stop ([`Decision::stop_at`]) and its children are gone by
//!   `P + d + silence + t + s`.
//! - `W` last hears from `L` at `T_W ≥ P − h` (the last heartbeat `L` sent before `P`). It
//!   starts `L`'s children no earlier than `T_W + silence + margin`
//!   ([`Decision::start_after`]), that is no earlier than `P − h + silence + margin`.
//! - So with `margin > h + d + t + s`, the loser's instances are gone before the winner's
//!   start: no instant has two. [`MarginBounds::margin`] computes that bound, plus the
//!   difference two clocks' rates make over the span (`drift_ppm`).
//!
//! Where the distributed supervisor reads these times: a member declared down for silence
//! was last heard `silence` before the event (so a detection up to `t` late only moves
//! `T_W` later, and the start with it: safe); a side that decides `Stop` stops its
//! instances in the same plan, before it does anything else; a side that decides `Keep`
//! holds every failover start until `start_after`, and a node back from the losing side
//! restarts the wait for members still missing from the moment it regained the quorum.
//! The argument holds for any split, not only two nodes: every member of a side sees the
//! same lost members and reaches the same verdict (the policies are pure functions of the
//! stable membership and the side), so a 3|2 split behaves as a 2|1 one; the tests run
//! both across network namespaces under `KeepMajority`, `KeepOldest` and `StaticQuorum`,
//! with an observer outside the partition recording every instance's life.
//!
//! **The limit:** the argument assumes a node that is not paused. A process stopped longer
//! than the margin (a long GC-like stall, SIGSTOP, a VM migration) neither hears nor
//! stops; when it resumes, its instances run beside the winner's until it notices.
//! **Strict mode** ([`DistributedSpec::strict`](crate::distributed::DistributedSpec::strict))
//! guards a singleton with a lease of the [consistent registry](crate::consistent): an
//! instance starts only under the lease, the group grants it to another node only after it
//! ran out, with a larger fencing token, and the child gets the token
//! ([`Fence`](crate::distributed::Fence)), so the paused holder's writes are refused by a
//! store that checks it. The paused process still runs for a moment after its resume;
//! strict mode fences its effects, not its life.
//!
//! # Examples
//!
//! ```
//! use foundation_registry::placement::{
//!     Action, Child, ChildPlacement, ChildState, Instance, NodeInfo, Placement, Planner,
//!     Rendezvous, StartCause, View,
//! };
//!
//! let view: View = ["a", "b", "c"].into_iter().map(|n| NodeInfo::new(n, 1)).collect();
//! let planner = Planner::new(Rendezvous);
//! let children = vec![Child::new(ChildPlacement::new("billing", Placement::Singleton))];
//!
//! // Every node computes the same owner; exactly one is told to start it.
//! let owner = planner.owners(&view, b"billing", 1, None, &Default::default())[0].to_owned();
//! let plan = planner.plan(&owner, &view, &children, 0);
//! assert!(matches!(&plan.actions[..], [Action::Start { cause: StartCause::New, .. }]));
//!
//! // Its node dies: the next owner takes it over, counted as a failover.
//! let running = ChildState::running_on([Instance::new(owner.clone(), 1)]);
//! let children = vec![Child::with_state(children[0].spec.clone(), running)];
//! let mut after = view.clone();
//! after.remove(&owner);
//! let next = planner.owners(&after, b"billing", 1, None, &Default::default())[0];
//! let plan = planner.plan(next, &after, &children, 1_000);
//! assert!(matches!(
//!     &plan.actions[..],
//!     [Action::Start { cause: StartCause::Failover { lost }, .. }] if lost == &[owner]
//! ));
//! ```

mod distribution;
mod error;
mod planner;
mod quorum;
mod spec;
mod view;

#[cfg(test)]
mod tests;

pub use distribution::{Distribution, LeastLoaded, Load, Rendezvous};
pub use error::{PlacementError, QuorumError, QuorumLoss};
pub use planner::{
    Action, Child, ClusterPlan, ForgetReason, Outcome, PendingReason, Plan, Planner, StartCause,
    StopReason,
};
pub use quorum::{Decision, MarginBounds, Quorum, Timing, Verdict};
pub use spec::{ChildPlacement, ChildState, Exit, Instance, MoveIntensity, Placement, Rebalance};
pub use view::{NodeInfo, View};
