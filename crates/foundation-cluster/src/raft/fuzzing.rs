//! A group's decoders of peer bytes, for the fuzz targets (see `crate::fuzzing`).

use std::collections::{BTreeMap, BTreeSet};

use foundation_actors::{RemoteMessage, Replier, ReplyPort};
use openraft::error::{
    Fatal, Infallible, InstallSnapshotError, RPCError, RaftError, SnapshotMismatch,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    SnapshotSegmentId, StoredMembership, Vote,
};

use super::net::{RaftRpc, ReadAnswer, WriteAnswer, answer, from_json, to_json};
use super::{Cfg, Refused};

/// Raft's messages between nodes. The first byte picks what the rest is read as:
///
/// - 0: a [`RaftRpc`] as the group's process receives it over a lane, then the JSON
///   request inside it as `net::serve` reads it;
/// - 1 to 3: the JSON of an append, a vote or a snapshot request;
/// - 4 to 6: the JSON answer to an append, a snapshot or a vote (`net::answer`);
/// - 7 and 8: the JSON answer to a forwarded write or a read-index request.
///
/// Other values wrap around.
pub fn raft(bytes: &[u8]) -> bool {
    let Some((&which, rest)) = bytes.split_first() else {
        return false;
    };
    match which % 9 {
        0 => rpc(rest),
        1 => request::<AppendEntriesRequest<Cfg>>(rest),
        2 => request::<VoteRequest<u64>>(rest),
        3 => request::<InstallSnapshotRequest<Cfg>>(rest),
        // An answer that says the peer failed is read as well as one that says it did not.
        4 => read(answer::<AppendEntriesResponse<u64>, Infallible>(0, rest)),
        5 => read(answer::<InstallSnapshotResponse<u64>, InstallSnapshotError>(0, rest)),
        6 => read(answer::<VoteResponse<u64>, Infallible>(0, rest)),
        7 => from_json::<WriteAnswer>(rest).is_ok(),
        _ => from_json::<ReadAnswer>(rest).is_ok(),
    }
}

fn rpc(bytes: &[u8]) -> bool {
    // The reply port is dropped unanswered: its sink does nothing.
    match RaftRpc::from_bytes_with_reply(bytes, Replier::new(|_| {})) {
        Ok(RaftRpc::Append(req, _)) => request::<AppendEntriesRequest<Cfg>>(&req),
        Ok(RaftRpc::Vote(req, _)) => request::<VoteRequest<u64>>(&req),
        Ok(RaftRpc::Snapshot(req, _)) => request::<InstallSnapshotRequest<Cfg>>(&req),
        // A write's command goes to the group's machine: the machine's own target reads it.
        Ok(RaftRpc::Write(..) | RaftRpc::ReadIndex(_) | RaftRpc::Initialized(_)) => true,
        Err(_) => false,
    }
}

/// Whether an answer was read: a remote error was, bytes that do not parse were not.
fn read<T, E: std::error::Error>(
    answered: Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>,
) -> bool {
    !matches!(answered, Err(RPCError::Network(_)))
}

fn request<T: serde::de::DeserializeOwned>(json: &[u8]) -> bool {
    serde_json::from_slice::<T>(json).is_ok()
}

/// Seed inputs for the target `raft`, made with the group's own encoders: (target, bytes).
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let log_id = |term, index| LogId::new(CommittedLeaderId::new(term, 1), index);
    let nodes: BTreeMap<u64, BasicNode> = [(1, "node-a"), (2, "node-b"), (3, "node-c")]
        .into_iter()
        .map(|(id, addr)| (id, BasicNode::new(addr)))
        .collect();
    let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes);
    let append = AppendEntriesRequest::<Cfg> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 4)),
        entries: vec![
            Entry {
                log_id: log_id(2, 5),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2, 6),
                payload: EntryPayload::Normal(b"\x00\x01k".to_vec()),
            },
            Entry {
                log_id: log_id(2, 7),
                payload: EntryPayload::Membership(membership.clone()),
            },
        ],
        leader_commit: Some(log_id(2, 5)),
    };
    let vote = VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 7)));
    let snapshot = InstallSnapshotRequest::<Cfg> {
        vote: Vote::new_committed(2, 1),
        meta: SnapshotMeta {
            last_log_id: Some(log_id(2, 7)),
            last_membership: StoredMembership::new(Some(log_id(2, 7)), membership),
            snapshot_id: "2-7-1".into(),
        },
        offset: 0,
        data: b"\x01\x00".to_vec(),
        done: true,
    };
    let segment = |offset| SnapshotSegmentId {
        id: "2-7-1".into(),
        offset,
    };
    let json = [
        (1, to_json(&append)),
        (2, to_json(&vote)),
        (3, to_json(&snapshot)),
        (
            4,
            to_json(&Ok::<_, RaftError<u64>>(
                AppendEntriesResponse::<u64>::Success,
            )),
        ),
        (
            4,
            to_json(&Ok::<_, RaftError<u64>>(
                AppendEntriesResponse::<u64>::PartialSuccess(Some(log_id(2, 6))),
            )),
        ),
        (
            4,
            to_json(&Err::<AppendEntriesResponse<u64>, _>(
                RaftError::<u64>::Fatal(Fatal::Stopped),
            )),
        ),
        (
            5,
            to_json(&Ok::<_, RaftError<u64, InstallSnapshotError>>(
                InstallSnapshotResponse {
                    vote: Vote::new_committed(2, 1),
                },
            )),
        ),
        (
            5,
            to_json(&Err::<InstallSnapshotResponse<u64>, _>(RaftError::<
                u64,
                InstallSnapshotError,
            >::APIError(
                InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                    expect: segment(0),
                    got: segment(4096),
                }),
            ))),
        ),
        (
            6,
            to_json(&Ok::<_, RaftError<u64>>(VoteResponse::new(
                Vote::new(3, 2),
                Some(log_id(2, 7)),
                true,
            ))),
        ),
        (7, to_json(&WriteAnswer::Ok(b"\x00\x01".to_vec()))),
        (7, to_json(&WriteAnswer::Err(Refused::NotLeader))),
        (
            7,
            to_json(&WriteAnswer::Err(Refused::Other("no quorum".into()))),
        ),
        (8, to_json(&ReadAnswer::Ok(Some(7)))),
        (8, to_json(&ReadAnswer::Err("not leader".into()))),
    ];
    let mut seeds: Vec<(&'static str, Vec<u8>)> = json
        .into_iter()
        .map(|(which, body)| ("raft", [vec![which], body].concat()))
        .collect();
    // The same requests inside the RPC envelope, and the RPCs without JSON.
    let port = || ReplyPort::from(tokio::sync::oneshot::channel().0);
    let rpcs = [
        RaftRpc::Append(to_json(&append), port()),
        RaftRpc::Vote(to_json(&vote), port()),
        RaftRpc::Snapshot(to_json(&snapshot), port()),
        RaftRpc::Write(b"\x00\x01k".to_vec(), port()),
        RaftRpc::ReadIndex(port()),
        RaftRpc::Initialized(ReplyPort::from(tokio::sync::oneshot::channel().0)),
    ];
    for rpc in rpcs {
        if let Ok(bytes) = rpc.to_bytes() {
            seeds.push(("raft", [vec![0], bytes].concat()));
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_is_accepted_by_its_decoder() {
        let seeds = seeds();
        // One seed per JSON kind and one per RPC.
        assert_eq!(seeds.len(), 20);
        for (target, bytes) in seeds {
            assert_eq!(target, "raft");
            assert!(raft(&bytes), "a seed is refused: {bytes:?}");
        }
    }
}
