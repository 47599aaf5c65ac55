//! The placement core's errors and reasons.

use thiserror::Error;

/// A child that cannot be placed as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The child's id is empty.
    #[error("a distributed child needs a non-empty id")]
    EmptyId,
    /// `Replicated { n: 0 }`.
    #[error("child {child:?} asks for zero replicas")]
    ZeroReplicas {
        /// The child.
        child: String,
    },
    /// `Pinned` to a node that is not a member.
    #[error("child {child:?} is pinned to node {node:?}, which is not a member")]
    UnknownNode {
        /// The child.
        child: String,
        /// The node it names.
        node: String,
    },
    /// A `Local` child without a home node.
    #[error("local child {child:?} has no home node")]
    NoHome {
        /// The child.
        child: String,
    },
}

/// A quorum policy that cannot keep its promise of at most one running side.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// `StaticQuorum(n)` with `n` at most half the cluster: two sides could both reach it.
    #[error(
        "a static quorum of {quorum} in a cluster of {size} lets two sides run; it must exceed half"
    )]
    QuorumTooSmall {
        /// The quorum asked for.
        quorum: usize,
        /// The cluster's size.
        size: usize,
    },
    /// `KeepReferee` names a node that is not a member.
    #[error("the referee {referee:?} is not a member of the cluster")]
    UnknownReferee {
        /// The referee.
        referee: String,
    },
}

/// Why a side of a partition stops its children: the exit reason they are stopped with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuorumLoss {
    /// This side has less than half of the last stable membership.
    #[error("split brain: this side reaches {reachable} of {stable} members, not a majority")]
    Minority {
        /// Members of the stable membership reachable here.
        reachable: usize,
        /// Size of the stable membership.
        stable: usize,
    },
    /// An exact half, without the smallest node name.
    #[error(
        "split brain: an even split, and {smallest:?} (the smallest name) is on the other side"
    )]
    TieLost {
        /// The smallest name of the stable membership.
        smallest: String,
    },
    /// The oldest member is on the other side.
    #[error("split brain: the oldest member {oldest:?} is on the other side")]
    OldestUnreachable {
        /// The oldest member.
        oldest: String,
    },
    /// This side is the oldest member alone (`down_if_alone`).
    #[error("split brain: the oldest member {oldest:?} is alone and steps down")]
    OldestAlone {
        /// The oldest member.
        oldest: String,
    },
    /// Fewer members reachable than the static quorum.
    #[error("split brain: {reachable} members reachable, below the quorum of {quorum}")]
    BelowQuorum {
        /// Members reachable here.
        reachable: usize,
        /// The quorum.
        quorum: usize,
    },
    /// The referee is on the other side.
    #[error("split brain: the referee {referee:?} is not reachable")]
    RefereeUnreachable {
        /// The referee.
        referee: String,
    },
    /// `DownAll`: membership changed without a graceful leave, every side stops.
    #[error("split brain: membership lost members and the policy is to down all")]
    DownAll,
}
