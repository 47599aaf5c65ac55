//! The node's agent: its one actor visible to ractor_cluster peers.
//!
//! ractor_cluster advertises every remote-able actor to every peer. A Foundation node
//! keeps exactly one (user processes are reached through lanes by name, not through
//! per-actor shims): the agent. Agents join the process group `foundation/nodes`; when
//! ractor_cluster syncs a peer's agent into that group, the local agent greets it with a
//! [`Hello`] carrying what the peer needs to open a lane back: this node's name,
//! incarnation, address and a one-time token. The agent hands what it receives to the
//! node's event loop.

use std::sync::Arc;

use ractor::message::SerializedMessage;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::runtime::{Event, Shared};

pub(crate) const SCOPE: &str = "foundation";
pub(crate) const GROUP: &str = "nodes";
pub(super) const VARIANT: &str = "foundation.agent.v1";

/// A node introducing itself to a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) cluster: String,
    pub(crate) node: String,
    pub(crate) incarnation: u64,
    /// Where the node listens (sessions and lanes).
    pub(crate) addr: String,
    /// The token the receiver presents when it opens its lane to this node.
    pub(crate) token: u128,
    /// The addresses of the node's live members, so the receiver meshes with them too.
    pub(crate) members: Vec<String>,
    /// Its silence limit: this node sends it heartbeats often enough for it.
    pub(crate) silence_ms: u64,
    /// The channels it knows: lanes are opened to it for those both nodes know.
    pub(crate) channels: Vec<String>,
}

/// What agents say to each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum AgentMsg {
    Hello(Hello),
    Leaving {
        node: String,
        incarnation: u64,
    },
    /// The sender's live members' addresses, sent to every peer when a member joins: a
    /// node that joined through this one at the same moment as another learns of it here,
    /// not only from a hello that may have been sent before the other arrived.
    Members {
        members: Vec<String>,
    },
}

// The agent's messages cross ractor_cluster sessions, so they implement ractor's
// serialization by hand (postcard inside a cast); a peer's bytes that do not decode are
// refused by ractor with an error, never a panic.
impl ractor::Message for AgentMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, ractor::message::BoxedDowncastErr> {
        let args = postcard::to_stdvec(&self).map_err(|_| ractor::message::BoxedDowncastErr)?;
        Ok(SerializedMessage::Cast {
            variant: VARIANT.to_owned(),
            args,
            metadata: None,
        })
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, ractor::message::BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { variant, args, .. } if variant == VARIANT => {
                postcard::from_bytes(&args).map_err(|_| {
                    tracing::warn!("a peer's agent sent bytes that do not decode; ignored");
                    ractor::message::BoxedDowncastErr
                })
            }
            _ => Err(ractor::message::BoxedDowncastErr),
        }
    }
}

pub(crate) struct Agent {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: mpsc::UnboundedSender<Event>,
}

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        (): (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::monitor_scope(SCOPE.to_owned(), myself.get_cell());
        ractor::pg::join_scoped(SCOPE.to_owned(), GROUP.to_owned(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave_scoped(SCOPE.to_owned(), GROUP.to_owned(), vec![myself.get_cell()]);
        ractor::pg::demonitor_scope(SCOPE.to_owned(), myself.get_id());
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let event = match msg {
            AgentMsg::Hello(hello) => {
                if hello.cluster != self.shared.cluster {
                    tracing::warn!(
                        peer = %hello.node,
                        their_cluster = %hello.cluster,
                        our_cluster = %self.shared.cluster,
                        "a node of another cluster connected (same cookie?); ignored"
                    );
                    return Ok(());
                }
                Event::Hello(hello)
            }
            AgentMsg::Leaving { node, incarnation } => Event::Leaving { node, incarnation },
            AgentMsg::Members { members } => Event::Members(members),
        };
        let _ = self.events.send(event);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        (): &mut (),
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(ractor::pg::GroupChangeMessage::Join(
            scope,
            group,
            cells,
        )) = evt
        {
            if scope == SCOPE && group == GROUP {
                for cell in cells.into_iter().filter(|c| !c.get_id().is_local()) {
                    let peer: ActorRef<AgentMsg> = cell.into();
                    let hello = self.shared.hello();
                    if let Err(e) = peer.cast(AgentMsg::Hello(hello)) {
                        tracing::debug!(error = %e, "could not greet a peer's agent");
                    }
                }
            }
        }
        Ok(())
    }
}
