//! Raft's messages between nodes: each node exports one process per group
//! (`$raft/<group>`) that hands what peers send to its Raft, and calls the others' through
//! [`Node::call`] (so over the node's lanes, with its TLS and failure detection).
//!
//! Raft's own messages travel as JSON inside the wire message: openraft's types are
//! `serde`-ready, but some of their derives need a self-describing format.

use std::time::Duration;

use foundation_actors::{Actor, ActorError, Addr, RemoteMessage, ReplyPort};
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Cfg, GroupError, Refused};
use crate::node::{CONTROL, Node, RemoteError as NodeRemoteError};

type NodeId = u64;

/// What the nodes of a group send each other. Every request carries JSON and is answered
/// with JSON.
#[derive(Debug, RemoteMessage)]
#[remote(name = "foundation.Raft")]
pub(crate) enum RaftRpc {
    /// Raft: append entries (and heartbeats).
    #[remote(tag = 1)]
    Append(Vec<u8>, ReplyPort<Vec<u8>>),
    /// Raft: request a vote.
    #[remote(tag = 2)]
    Vote(Vec<u8>, ReplyPort<Vec<u8>>),
    /// Raft: a chunk of a snapshot.
    #[remote(tag = 3)]
    Snapshot(Vec<u8>, ReplyPort<Vec<u8>>),
    /// A command for the leader to write, from a node that is not it.
    #[remote(tag = 4)]
    Write(Vec<u8>, ReplyPort<Vec<u8>>),
    /// "Up to which log index must I apply to read linearizably?", to the leader.
    #[remote(tag = 5)]
    ReadIndex(ReplyPort<Vec<u8>>),
    /// "Is your Raft initialized?", before a node bootstraps a group.
    #[remote(tag = 6)]
    Initialized(ReplyPort<bool>),
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // openraft's messages and our answers are plain data: encoding them cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GroupError> {
    serde_json::from_slice(bytes).map_err(|e| GroupError::Protocol(e.to_string()))
}

/// Answer of a forwarded write: the machine's reply, or why not.
pub(crate) type WriteAnswer = Result<Vec<u8>, Refused>;

/// Answer of a read-index request: the index to wait for, or why not.
pub(crate) type ReadAnswer = Result<Option<u64>, String>;

/// The process that serves a group's RPCs on one node.
pub(crate) struct Server {
    pub(crate) raft: Raft<Cfg>,
}

impl Actor for Server {
    type Msg = RaftRpc;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<RaftRpc>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<RaftRpc>, msg: RaftRpc, (): &mut ()) -> Result<(), ActorError> {
        // Each request in its own task: a slow write must not hold up heartbeats.
        let raft = self.raft.clone();
        tokio::spawn(async move { serve(raft, msg).await });
        Ok(())
    }
}

async fn serve(raft: Raft<Cfg>, msg: RaftRpc) {
    match msg {
        RaftRpc::Append(req, port) => {
            let answer = match serde_json::from_slice::<AppendEntriesRequest<Cfg>>(&req) {
                Ok(req) => to_json(&raft.append_entries(req).await),
                Err(e) => return tracing::warn!(error = %e, "malformed raft append"),
            };
            let _ = port.send(answer);
        }
        RaftRpc::Vote(req, port) => {
            let answer = match serde_json::from_slice::<VoteRequest<NodeId>>(&req) {
                Ok(req) => to_json(&raft.vote(req).await),
                Err(e) => return tracing::warn!(error = %e, "malformed raft vote"),
            };
            let _ = port.send(answer);
        }
        RaftRpc::Snapshot(req, port) => {
            let answer = match serde_json::from_slice::<InstallSnapshotRequest<Cfg>>(&req) {
                Ok(req) => to_json(&raft.install_snapshot(req).await),
                Err(e) => return tracing::warn!(error = %e, "malformed raft snapshot"),
            };
            let _ = port.send(answer);
        }
        RaftRpc::Write(command, port) => {
            let answer: WriteAnswer = match raft.client_write(command).await {
                Ok(written) => Ok(written.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(Refused::NotLeader)
                }
                Err(e) => Err(Refused::Other(e.to_string())),
            };
            let _ = port.send(to_json(&answer));
        }
        RaftRpc::ReadIndex(port) => {
            let answer: ReadAnswer = match raft.ensure_linearizable().await {
                Ok(read) => Ok(read.map(|id| id.index)),
                Err(e) => Err(e.to_string()),
            };
            let _ = port.send(to_json(&answer));
        }
        RaftRpc::Initialized(port) => {
            let _ = port.send(raft.is_initialized().await.unwrap_or(false));
        }
    }
}

/// Makes a [`Client`] per peer: openraft asks for one per replication stream.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) node: Node,
    pub(crate) service: String,
}

impl RaftNetworkFactory<Cfg> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Client {
        Client {
            node: self.node.clone(),
            service: self.service.clone(),
            target,
            peer: node.addr.clone(),
        }
    }
}

/// Sends one peer's RPCs.
pub(crate) struct Client {
    node: Node,
    service: String,
    target: NodeId,
    /// The peer's node name.
    peer: String,
}

// openraft's error type is what its trait returns; boxing it here would only unbox it again.
#[allow(clippy::result_large_err)]
impl Client {
    async fn rpc<E>(
        &self,
        build: impl FnOnce(ReplyPort<Vec<u8>>) -> RaftRpc,
        timeout: Duration,
    ) -> Result<Vec<u8>, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
    {
        self.node
            .call_on(CONTROL, &self.peer, &self.service, build, timeout)
            .await
            .map_err(|e| match e {
                NodeRemoteError::Wire(_) | NodeRemoteError::BadMessage { .. } => {
                    RPCError::Network(NetworkError::new(&e))
                }
                _ => RPCError::Unreachable(Unreachable::new(&e)),
            })
    }

    fn answer<T, E>(
        &self,
        bytes: &[u8],
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        answer(self.target, bytes)
    }
}

/// Reads a peer's answer to an RPC sent to `target`.
// openraft's error type is what its trait returns; boxing it here would only unbox it again.
#[allow(clippy::result_large_err)]
pub(crate) fn answer<T, E>(
    target: NodeId,
    bytes: &[u8],
) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
where
    T: DeserializeOwned,
    E: std::error::Error + DeserializeOwned,
{
    match serde_json::from_slice::<Result<T, RaftError<NodeId, E>>>(bytes) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
        Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
    }
}

impl RaftNetwork<Cfg> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Cfg>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let req = to_json(&rpc);
        let bytes = self
            .rpc(|p| RaftRpc::Append(req, p), option.hard_ttl())
            .await?;
        self.answer(&bytes)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Cfg>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let req = to_json(&rpc);
        let bytes = self
            .rpc(|p| RaftRpc::Snapshot(req, p), option.hard_ttl())
            .await?;
        self.answer(&bytes)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let req = to_json(&rpc);
        let bytes = self
            .rpc(|p| RaftRpc::Vote(req, p), option.hard_ttl())
            .await?;
        self.answer(&bytes)
    }
}
