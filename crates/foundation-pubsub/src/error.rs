//! The errors of topics, subscriptions and broadcasts.

/// A topic name or pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The name is empty.
    #[error("a topic name cannot be empty")]
    Empty,
    /// The name is longer than [`crate::MAX_TOPIC_LEN`].
    #[error("a topic name of {len} bytes is longer than the limit of {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name has more segments than [`crate::MAX_SEGMENTS`].
    #[error("a topic name of {count} segments has more than the limit of {max}")]
    TooManySegments {
        /// Its segments.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two dots in a row, or a dot at either end.
    #[error("topic `{name}` has an empty segment (number {index}, from 0)")]
    EmptySegment {
        /// The name.
        name: String,
        /// Which segment, from 0.
        index: usize,
    },
    /// A wildcard where only a name is allowed (a publish).
    #[error("`{name}` is a pattern: a broadcast goes to a topic name, without `*` or `#`")]
    Wildcard {
        /// The name.
        name: String,
    },
    /// `#` before the last segment.
    #[error("in pattern `{name}`, `#` may only be the last segment")]
    HashNotLast {
        /// The pattern.
        name: String,
    },
    /// `*` or `#` inside a segment (`ord*`): a wildcard is a whole segment.
    #[error("in `{name}`, segment {index} mixes a wildcard with other characters")]
    PartialWildcard {
        /// The name.
        name: String,
        /// Which segment, from 0.
        index: usize,
    },
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The process has stopped for good.
    #[error("process `{label}` has stopped: it cannot subscribe")]
    Stopped {
        /// Its address's label.
        label: String,
    },
    /// The pubsub was shut down.
    #[error("the pubsub is shut down")]
    Closed,
}

/// Why a broadcast was refused as a whole. (A subscriber that is slow, stopped or panics
/// never fails a broadcast: its drops are counted instead, see [`crate::Stats`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The topic is a pattern.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The message could not be serialized for the other nodes.
    #[error("the message for `{topic}` could not be serialized: {source}")]
    Encode {
        /// The topic.
        topic: String,
        /// What the encoder said.
        #[source]
        source: foundation_actors::WireError,
    },
    /// [`crate::PubSub::direct_broadcast`] to a node that is not a live member, or on a
    /// pubsub without a node.
    #[error("node `{0}` is not a live member of this node's cluster")]
    UnknownNode(String),
    /// The send to the node of a [`crate::PubSub::direct_broadcast`] failed.
    #[error("the broadcast could not be sent to node `{node}`: {source}")]
    Remote {
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: Box<foundation_cluster::node::RemoteError>,
    },
    /// The pubsub was shut down.
    #[error("the pubsub is shut down")]
    Closed,
}

/// Why [`crate::PubSub::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// This node runs a pubsub of that name already.
    #[error("this node runs a pubsub named `{0}` already")]
    NameTaken(String),
    /// Its receiving process could not start.
    #[error("the pubsub's process could not start: {0}")]
    Spawn(#[from] foundation_actors::SpawnError),
    /// The node has shut down: a pubsub on it could neither reach peers nor be reached.
    #[error("node `{0}` has shut down: a pubsub cannot start on it")]
    NodeShutDown(String),
}

/// Why [`crate::PubSub::wait_for_subscribers`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The subscribers did not all appear in time.
    #[error(
        "`{topic}` had {seen} subscribers in the cluster, not the {wanted} waited for, when the wait timed out"
    )]
    Timeout {
        /// The topic or pattern.
        topic: String,
        /// How many were waited for.
        wanted: usize,
        /// How many there were at the end.
        seen: usize,
    },
    /// The pubsub was shut down (or its node).
    #[error("the pubsub is shut down")]
    Closed,
}
