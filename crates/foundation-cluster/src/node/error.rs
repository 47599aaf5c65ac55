//! The node's errors.

use foundation_actors::WireError;

use super::config::ConfigError;
use super::wire::Refusal;

/// Why a node could not start. Its `Debug` prints the message too, so that a `main`
/// returning `Result<_, Box<dyn Error>>` shows what to fix.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} (`NodeConfig::listen`; FOUNDATION_LISTEN): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// ractor could not start one of the node's actors.
    #[error("cannot start the node's {what}: {why}")]
    Start {
        /// Which actor.
        what: &'static str,
        /// ractor's error.
        why: String,
    },
}

/// Why [`Node::wait_for`](super::Node::wait_for) or
/// [`Node::wait_for_members`](super::Node::wait_for_members) gave up. Its `Debug` prints
/// the message too, as [`NodeError`]'s.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Some nodes were not up in time.
    #[error("{}", timeout_message(missing, *waited, refused))]
    Timeout {
        /// The nodes that are not up.
        missing: Vec<String>,
        /// How long it waited.
        waited: std::time::Duration,
        /// Connections this node refused meanwhile, as `(peer, why)`: the likely reason
        /// (a wrong cookie, another cluster, TLS on one side only).
        refused: Vec<(String, String)>,
    },
    /// This node shut down while waiting.
    #[error("this node shut down while waiting for its peers")]
    Shutdown,
}

impl std::fmt::Debug for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Debug for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn timeout_message(
    missing: &[String],
    waited: std::time::Duration,
    refused: &[(String, String)],
) -> String {
    let names = missing
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if missing.len() == 1 { "is" } else { "are" };
    let mut s = format!("{names} {verb} not up after {waited:?}");
    if refused.is_empty() {
        s.push_str(
            ": no connection was refused meanwhile (is discovery configured: FOUNDATION_PEERS, \
             and is the peer listening where it is looked for?)",
        );
    } else {
        s.push_str("; connections refused meanwhile: ");
        let why = refused
            .iter()
            .map(|(peer, why)| format!("{peer}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        s.push_str(&why);
    }
    s
}

/// Why a remote send or call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// This node has shut down: it sends and calls nothing any more.
    #[error("node `{0}` (this node) has shut down")]
    Shutdown(String),
    /// No live member of that name.
    #[error("node `{0}` is not a live member of the cluster")]
    UnknownNode(String),
    /// The node went down before the request was sent or answered.
    #[error("node `{0}` went down")]
    NodeDown(String),
    /// Too many bytes wait to be written to that node already (on the channel used), or,
    /// for a call, the process there has as many messages from other nodes waiting as it
    /// may ([`crate::node::NodeConfig::max_remote_queued`]).
    #[error("node `{0}` is overloaded: too much waits for it, here or at the process")]
    Overloaded(String),
    /// This node, or the peer, has no channel of that name (see
    /// [`crate::node::NodeConfig::channel`]).
    #[error("no channel `{channel}` to node `{node}`: declare it on both nodes")]
    UnknownChannel {
        /// The channel asked for.
        channel: String,
        /// The node it was for.
        node: String,
    },
    /// The message is larger than a frame may be.
    #[error("the message is larger than the largest frame")]
    TooLarge,
    /// The message could not be encoded, or the reply decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Nothing is exported under that name on that node.
    #[error("no process is exported as `{name}` on node `{node}`")]
    NoSuchName {
        /// The node.
        node: String,
        /// The name.
        name: String,
    },
    /// The process could not read the request: the two nodes run different versions of
    /// its message type.
    #[error(
        "`{name}` on node `{node}` could not read the request (another version of its message type?)"
    )]
    BadMessage {
        /// The node.
        node: String,
        /// The name.
        name: String,
    },
    /// The process dropped the reply port, or its reply could not be encoded.
    #[error("`{name}` on node `{node}` did not reply")]
    NoReply {
        /// The node.
        node: String,
        /// The name.
        name: String,
    },
    /// The process has stopped.
    #[error("`{name}` on node `{node}` has stopped")]
    Stopped {
        /// The node.
        node: String,
        /// The name.
        name: String,
    },
    /// The process exported as `name` takes another message type than the one sent (their
    /// wire names differ): the message was refused before it was decoded, and no handler
    /// ran. A tell refused so is counted ([`NodeStats::wrong_type`]) and logged on the
    /// receiving node; a call's caller gets this error.
    ///
    /// [`NodeStats::wrong_type`]: super::NodeStats::wrong_type
    #[error(
        "`{name}` on node `{node}` takes `{expected}`, not `{got}`: refused before decoding, no handler ran"
    )]
    WrongType {
        /// The node.
        node: String,
        /// The name.
        name: String,
        /// The wire name of the process's message type.
        expected: String,
        /// The wire name of the message type sent.
        got: String,
    },
    /// The handler of this call on the other node answers another reply type than the
    /// caller expects (the two sides' message types share a wire name and a tag, but not
    /// the reply): the call was refused before the handler ran.
    #[error(
        "the caller expects a `{expected}` reply, and `{name}` on node `{node}` answers this call with `{got}`: refused before the handler ran"
    )]
    WrongReplyType {
        /// The node.
        node: String,
        /// The name.
        name: String,
        /// The wire name of the reply type the caller expects.
        expected: String,
        /// The wire name of the reply type the handler there answers.
        got: String,
    },
    /// No reply within the timeout.
    #[error("no reply within the timeout")]
    Timeout,
    /// The context's deadline passed before the reply came.
    #[error("the deadline passed")]
    DeadlineExceeded,
}

/// What the refused side sent: its message type's wire name and, for a call, the wire
/// name of the reply type it expects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub(crate) ty: &'static str,
    pub(crate) reply: &'static str,
}

impl RemoteError {
    /// The error for refusal `r` by the process exported as `name` on `node`; `theirs` is
    /// that process's type named by a wrong-type refusal.
    pub(crate) fn refused(r: Refusal, node: &str, name: &str, theirs: String, sent: Sent) -> Self {
        let (node, name) = (node.to_owned(), name.to_owned());
        match r {
            Refusal::NoSuchName => Self::NoSuchName { node, name },
            Refusal::BadMessage => Self::BadMessage { node, name },
            Refusal::NoReply => Self::NoReply { node, name },
            Refusal::Stopped => Self::Stopped { node, name },
            Refusal::WrongType => Self::WrongType {
                node,
                name,
                expected: theirs,
                got: sent.ty.to_owned(),
            },
            Refusal::WrongReplyType => Self::WrongReplyType {
                node,
                name,
                expected: sent.reply.to_owned(),
                got: theirs,
            },
            Refusal::Overloaded => Self::Overloaded(node),
        }
    }
}
