//! The errors of cluster-wide ecosystems and map-reduce runs.

use std::time::Duration;

use thiserror::Error;

/// Why [`ClusterEcosystem::start`](super::ClusterEcosystem::start) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The spec is not usable: zero workers, a zero capacity or chunk size.
    #[error("the work spec is invalid: {0}")]
    Config(String),
    /// A cluster-wide ecosystem of that name runs on this node already.
    #[error("a cluster-wide ecosystem named {0:?} runs on this node already")]
    NameTaken(String),
    /// Its registry scope could not start.
    #[error("the ecosystem's registry did not start")]
    Registry(#[from] crate::cluster::StartError),
    /// Its coordinator's distributed supervisor could not start.
    #[error("the ecosystem's distributed supervisor did not start")]
    Supervisor(#[from] crate::distributed::StartError),
    /// A process (the receiver, or the local workers' ecosystem) could not start.
    #[error("a process of the ecosystem did not start")]
    Spawn(#[from] foundation_actors::SpawnError),
}

/// Why a job could not be submitted ([`ClusterEcosystem::submit`](super::ClusterEcosystem::submit),
/// [`try_submit`](super::ClusterEcosystem::try_submit)).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// No job kind of that name was registered in this node's spec.
    #[error("no job kind {kind:?} in this ecosystem")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
    },
    /// The kind's input or output type is not the one asked for (checked on the calling
    /// node, against the kind registered there).
    #[error("job kind {kind:?} takes `{input}` and gives `{output}`")]
    WrongTypes {
        /// The kind.
        kind: String,
        /// Its input type, as Rust names it.
        input: &'static str,
        /// Its output type.
        output: &'static str,
    },
    /// The input does not serialize.
    #[error("the input of a {kind:?} job does not serialize")]
    Input {
        /// The kind.
        kind: String,
        /// Why.
        #[source]
        source: postcard::Error,
    },
    /// Every node's queue is full as this node sees it ([`try_submit`](super::ClusterEcosystem::try_submit)
    /// only; `submit` waits instead).
    #[error("every node's queue of the ecosystem is full")]
    Full,
    /// No room came within the wait `submit` was given.
    #[error("no room in the ecosystem's queues within {0:?}")]
    Timeout(Duration),
    /// The ecosystem was shut down on this node.
    #[error("the ecosystem was shut down")]
    Closed,
}

/// Why a submitted job gave no result ([`Job::result`](super::Job::result)).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job failed where it ran: its function panicked, its input did not decode
    /// there, or its kind is not registered on that node.
    #[error("the job failed on node {node:?}: {why}")]
    Failed {
        /// The node it ran on.
        node: String,
        /// Why.
        why: String,
    },
    /// Its result did not decode here.
    #[error("the job's result does not decode")]
    Output(#[source] postcard::Error),
    /// The ecosystem was shut down on this node before the result came.
    #[error("the ecosystem was shut down")]
    Closed,
}

/// Why a map-reduce run gave no result ([`ClusterEcosystem::map_reduce`](super::ClusterEcosystem::map_reduce),
/// [`MapReduce::wait`](super::MapReduce::wait)).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MapReduceError {
    /// No job kind of that name was registered in this node's spec.
    #[error("no job kind {kind:?} in this ecosystem")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
    },
    /// No reducer of that name was registered in this node's spec.
    #[error("no reducer {reduce:?} in this ecosystem")]
    UnknownReduce {
        /// The reducer asked for.
        reduce: String,
    },
    /// The kind's or the reducer's types are not the ones asked for.
    #[error(
        "map {kind:?} takes `{input}` and gives `{output}`; reducer {reduce:?} folds `{folds}`"
    )]
    WrongTypes {
        /// The map kind.
        kind: String,
        /// Its input type.
        input: &'static str,
        /// Its output type.
        output: &'static str,
        /// The reducer.
        reduce: String,
        /// The type it folds.
        folds: &'static str,
    },
    /// Item `index` does not serialize (nothing was sent).
    #[error("item {index} does not serialize")]
    Item {
        /// Its index in the items given.
        index: usize,
        /// Why.
        #[source]
        source: postcard::Error,
    },
    /// A chunk failed where it ran (its map or reduce panicked, an item did not decode,
    /// the kind is not registered there); the run stops.
    #[error("a chunk failed on node {node:?}: {why}")]
    Failed {
        /// The node it ran on.
        node: String,
        /// Why.
        why: String,
    },
    /// The run did not finish in time; it is abandoned.
    #[error("the run did not finish within {waited:?} ({done} of {total} items done)")]
    Timeout {
        /// How long it was waited for.
        waited: Duration,
        /// Items done by then.
        done: usize,
        /// Items in all.
        total: usize,
    },
    /// The ecosystem was shut down on this node before the run finished.
    #[error("the ecosystem was shut down")]
    Closed,
}
