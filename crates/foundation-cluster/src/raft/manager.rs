//! The group's upkeep, on every node: start the group once enough nodes are up, and, on
//! the leader, keep every live node a member and the voters at their number.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Weak;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::sync::broadcast;

use super::net::RaftRpc;
use super::{Inner, Machine, node_id};
use crate::membership::Status;
use crate::node::ClusterEvent;

/// How often the upkeep looks, besides on membership events.
const EVERY: Duration = Duration::from_millis(500);

pub(crate) async fn run<S: Machine>(
    weak: Weak<Inner<S>>,
    mut events: broadcast::Receiver<ClusterEvent>,
) {
    loop {
        {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            if let Err(e) = tend(&inner).await {
                tracing::debug!(group = %inner.options.name, error = %e, "raft upkeep");
            }
        }
        // The next look: on a membership change, or after a while.
        match tokio::time::timeout(EVERY, events.recv()).await {
            Err(_) | Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => return,
        }
    }
}

/// The live nodes, self included: name → Raft id.
fn live<S: Machine>(inner: &Inner<S>) -> BTreeMap<String, u64> {
    let mut live: BTreeMap<String, u64> = inner
        .node
        .members()
        .into_iter()
        .filter(|m| m.status == Status::Up)
        .map(|m| {
            let id = node_id(&m.id, m.incarnation);
            (m.id, id)
        })
        .collect();
    live.insert(inner.node.name().to_owned(), inner.id);
    live
}

async fn tend<S: Machine>(inner: &Inner<S>) -> Result<(), String> {
    let live = live(inner);
    if !inner
        .raft
        .is_initialized()
        .await
        .map_err(|e| e.to_string())?
    {
        return bootstrap(inner, &live).await;
    }
    let metrics = inner.raft.metrics().borrow().clone();
    if metrics.state != ServerState::Leader {
        return Ok(());
    }
    let membership = metrics.membership_config.membership().clone();
    if membership.get_joint_config().len() > 1 {
        return Ok(()); // a change is under way
    }
    let known: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    let live_ids: BTreeSet<u64> = live.values().copied().collect();

    // Every live node is at least a learner.
    for (name, id) in &live {
        if !known.contains(id) {
            inner
                .raft
                .add_learner(*id, BasicNode::new(name), false)
                .await
                .map_err(|e| e.to_string())?;
        }
    }

    // Voters: keep the live ones; replace dead ones, and grow to the target, with live
    // learners, smallest name first. A dead voter with no replacement stays.
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut spare: Vec<u64> = live
        .values()
        .copied()
        .filter(|id| known.contains(id) && !voters.contains(id))
        .collect();
    spare.reverse(); // pop() takes the smallest name first
    let mut desired: BTreeSet<u64> = voters.intersection(&live_ids).copied().collect();
    let mut dead: Vec<u64> = voters.difference(&live_ids).copied().collect();
    while desired.len() < inner.options.voters {
        match spare.pop() {
            Some(id) => {
                desired.insert(id);
                dead.pop();
            }
            None => break,
        }
    }
    desired.extend(dead);
    if desired != voters {
        tracing::info!(group = %inner.options.name, ?voters, ?desired, "raft voters change");
        inner
            .raft
            .change_membership(desired, false)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }

    // Learners whose node is gone leave.
    let gone: BTreeSet<u64> = known
        .iter()
        .copied()
        .filter(|id| !voters.contains(id) && !live_ids.contains(id))
        .collect();
    if !gone.is_empty() {
        inner
            .raft
            .change_membership(ChangeMembers::RemoveNodes(gone), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Starts the group if enough nodes are up, this node has the smallest name among them,
/// and none of the others belongs to a group already.
async fn bootstrap<S: Machine>(
    inner: &Inner<S>,
    live: &BTreeMap<String, u64>,
) -> Result<(), String> {
    let want = inner.options.voters;
    if live.len() < want || live.keys().next().map(String::as_str) != Some(inner.node.name()) {
        return Ok(());
    }
    for name in live.keys().filter(|n| *n != inner.node.name()) {
        let asked = inner
            .node
            .call(
                name,
                &inner.service,
                RaftRpc::Initialized,
                Duration::from_secs(1),
            )
            .await;
        match asked {
            Ok(false) | Err(crate::node::RemoteError::NoSuchName { .. }) => {}
            // One of them is in a group already, or cannot tell: do not start another.
            Ok(true) | Err(_) => return Ok(()),
        }
    }
    let voters: BTreeMap<u64, BasicNode> = live
        .iter()
        .take(want)
        .map(|(name, id)| (*id, BasicNode::new(name)))
        .collect();
    tracing::info!(group = %inner.options.name, voters = ?voters.values().map(|n| &n.addr).collect::<Vec<_>>(), "raft group starts");
    inner
        .raft
        .initialize(voters)
        .await
        .map_err(|e| e.to_string())
}
