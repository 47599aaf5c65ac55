//! The distributed supervisor's errors.

use std::time::Duration;

use foundation_actors::SpawnError;
use thiserror::Error;

use crate::placement::{PendingReason, Placement, PlacementError, QuorumError};

/// Why [`DistributedSupervisor::start`](super::DistributedSupervisor::start) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// This node runs a distributed supervisor of that name already.
    #[error("a distributed supervisor named {0:?} runs on this node already")]
    NameTaken(String),
    /// Its process could not start.
    #[error("the distributed supervisor's process did not start")]
    Spawn(#[from] SpawnError),
}

/// Why [`DistributedSupervisor::start_child`](super::DistributedSupervisor::start_child)
/// failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartChildError {
    /// No kind of that name was registered in this node's spec.
    #[error("no child kind {kind:?} in this distributed supervisor")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
    },
    /// The arguments do not encode.
    #[error("the arguments of child {child:?} do not encode")]
    Args {
        /// The child.
        child: String,
        /// Why.
        #[source]
        source: postcard::Error,
    },
    /// The arguments are not of the kind's argument type (checked on the calling node,
    /// against the kind registered there): they would not decode, or would decode as
    /// something else, where the child starts.
    #[error(
        "the arguments of child {child:?} are not of kind {kind:?}'s argument type `{expected}`"
    )]
    WrongArgs {
        /// The child.
        child: String,
        /// Its kind.
        kind: String,
        /// The kind's argument type, as Rust names it.
        expected: &'static str,
    },
    /// A child of that id runs (or waits to run) in this supervisor already.
    #[error("child {child:?} is started already")]
    AlreadyStarted {
        /// The child.
        child: String,
        /// A node it runs on, if it runs.
        node: Option<String>,
    },
    /// The child's name is held in the registry by a process that is not this
    /// supervisor's child.
    #[error("the name of child {child:?} is held by a process on node {holder:?}")]
    NameTaken {
        /// The child.
        child: String,
        /// The holder's node.
        holder: String,
    },
    /// The placement is invalid here (`Pinned` to an unknown node, zero replicas, …).
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The supervisor's split-brain policy cannot keep its promise of at most one running
    /// side among the members running it now (a `StaticQuorum` of at most half of them,
    /// or zero; a `KeepReferee` whose referee is not one of them).
    #[error("the split-brain policy cannot hold in this cluster: {0}")]
    Quorum(#[from] QuorumError),
    /// It failed on every node it was tried on, more often than its move intensity
    /// allows: the supervisor gave up and removed it.
    #[error("child {child:?} failed {failures} times (at most {max} allowed): given up")]
    GaveUp {
        /// The child.
        child: String,
        /// Failures counted.
        failures: u64,
        /// The most allowed.
        max: u32,
    },
    /// No node can run it now. It is kept, and starts when a suitable node appears.
    #[error("child {child:?} cannot run anywhere now ({reason:?}); it starts when it can")]
    Pending {
        /// The child.
        child: String,
        /// Why.
        reason: PendingReason,
    },
    /// It was removed before it answered (terminated meanwhile, or it ended and its
    /// restart type does not bring it back).
    #[error("child {child:?} was removed before it answered")]
    Removed {
        /// The child.
        child: String,
    },
    /// It did not answer by name within the supervisor's start timeout. It is kept, and
    /// may still start.
    #[error("child {child:?} did not start within {waited:?}")]
    Timeout {
        /// The child.
        child: String,
        /// How long the call waited.
        waited: Duration,
    },
    /// The supervisor was shut down.
    #[error("the distributed supervisor was shut down")]
    Closed,
}

/// Why [`DistributedSupervisor::terminate_child`](super::DistributedSupervisor::terminate_child)
/// failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TerminateError {
    /// No live child of that id.
    #[error("no child {child:?} in this distributed supervisor")]
    NotFound {
        /// The child.
        child: String,
    },
    /// It was removed, but an instance still answered by name after the timeout (its
    /// node stops it when the removal reaches it).
    #[error("child {child:?} removed, but an instance still answered after {waited:?}")]
    Timeout {
        /// The child.
        child: String,
        /// How long the call waited.
        waited: Duration,
    },
    /// The supervisor was shut down.
    #[error("the distributed supervisor was shut down")]
    Closed,
}

/// The distributed supervisor was shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the distributed supervisor was shut down")]
pub struct Closed;

/// Why [`DistributedSupervisor::migrate`](super::DistributedSupervisor::migrate) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// No live child of that id.
    #[error("no child {child:?} in this distributed supervisor")]
    NotFound {
        /// The child.
        child: String,
    },
    /// Only a singleton moves on request.
    #[error("child {child:?} is placed {placement:?}: only a singleton migrates")]
    NotMovable {
        /// The child.
        child: String,
        /// Its placement.
        placement: Placement,
    },
    /// Its kind was not registered with
    /// [`handoff_kind`](super::DistributedSpec::handoff_kind): it has no state to hand.
    #[error("child {child:?} is of kind {kind:?}, which does not hand off")]
    NoHandoff {
        /// The child.
        child: String,
        /// Its kind.
        kind: String,
    },
    /// The node does not run this supervisor (as this node sees it), or is leaving.
    #[error("node {node:?} does not run this supervisor: child {child:?} cannot go there")]
    UnknownNode {
        /// The child.
        child: String,
        /// The node asked for.
        node: String,
    },
    /// The node does not offer the child's role.
    #[error("node {node:?} does not offer role {role:?}, which child {child:?} needs")]
    MissingRole {
        /// The child.
        child: String,
        /// The node asked for.
        node: String,
        /// The role.
        role: String,
    },
    /// No instance of it runs now (starting, failing over, pending).
    #[error("child {child:?} does not run now")]
    NotRunning {
        /// The child.
        child: String,
    },
    /// The move was tried and failed; the child runs on where it was (or from its state
    /// there).
    #[error("child {child:?} did not move: {why}")]
    Failed {
        /// The child.
        child: String,
        /// Why.
        why: String,
    },
    /// The new incarnation did not answer in time. The move may still complete.
    #[error("child {child:?} did not answer on its new node within {waited:?}")]
    Timeout {
        /// The child.
        child: String,
        /// How long the call waited.
        waited: Duration,
    },
    /// The supervisor was shut down.
    #[error("the distributed supervisor was shut down")]
    Closed,
}
