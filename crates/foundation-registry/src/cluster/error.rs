//! The cluster-wide registry's errors.

use std::fmt;

use foundation_cluster::node::RemoteError;

/// Why a registration was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is held already, by this node or, as far as this node knows, another.
    #[error("`{name}` is registered already, on node `{holder}`")]
    Taken {
        /// The name, as `Debug` prints it.
        name: String,
        /// The node whose process holds it.
        holder: String,
    },
    /// The process has stopped for good.
    #[error("cannot register `{name}`: the process has stopped")]
    Stopped {
        /// The name, as `Debug` prints it.
        name: String,
    },
    /// The registry was shut down.
    #[error("cannot register `{name}`: the registry was shut down")]
    Closed {
        /// The name, as `Debug` prints it.
        name: String,
    },
}

/// Why a registry could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A registry of that scope runs on this node already.
    #[error("a cluster registry with scope `{0}` runs on this node already")]
    ScopeTaken(String),
    /// Its replication process could not start.
    #[error("cannot start the registry's replication process: {0}")]
    Spawn(#[from] foundation_actors::SpawnError),
}

/// Why a message sent by name was not delivered. The message is handed back.
#[non_exhaustive]
pub enum CastError<M> {
    /// No process is registered under the name, as far as this node knows.
    NoSuchName {
        /// The name, as `Debug` prints it.
        name: String,
        /// The message.
        msg: M,
    },
    /// The process (on this node) has stopped, or its restart backlog is full.
    NotDelivered {
        /// The name, as `Debug` prints it.
        name: String,
        /// The message.
        msg: M,
    },
    /// The process is on another node, and the send failed there or on the way.
    Remote {
        /// The name, as `Debug` prints it.
        name: String,
        /// Why (boxed: it names nodes and types, and a send's error should stay small).
        source: Box<RemoteError>,
        /// The message.
        msg: M,
    },
}

impl<M> CastError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            Self::NoSuchName { msg, .. }
            | Self::NotDelivered { msg, .. }
            | Self::Remote { msg, .. } => msg,
        }
    }
}

impl<M> fmt::Debug for CastError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchName { name, .. } => f
                .debug_struct("NoSuchName")
                .field("name", name)
                .finish_non_exhaustive(),
            Self::NotDelivered { name, .. } => f
                .debug_struct("NotDelivered")
                .field("name", name)
                .finish_non_exhaustive(),
            Self::Remote { name, source, .. } => f
                .debug_struct("Remote")
                .field("name", name)
                .field("source", source)
                .finish_non_exhaustive(),
        }
    }
}

impl<M> fmt::Display for CastError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchName { name, .. } => write!(f, "no process is registered as `{name}`"),
            Self::NotDelivered { name, .. } => write!(
                f,
                "`{name}` has stopped, or is restarting with a full backlog"
            ),
            Self::Remote { name, source, .. } => write!(f, "cannot send to `{name}`: {source}"),
        }
    }
}

impl<M> std::error::Error for CastError<M> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Remote { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a call by name failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No process is registered under the name, as far as this node knows.
    #[error("no process is registered as `{0}`")]
    NoSuchName(String),
    /// The process is on this node, and the call failed.
    #[error(transparent)]
    Local(#[from] foundation_actors::CallError),
    /// The process is on another node, and the call failed there or on the way.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}
