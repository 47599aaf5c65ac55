//! Helpers shared by the tests.

use std::future::Future;

use std::time::Duration;

use foundation_cache::crdt::{LwwMap, OrSet, PnCounter, ReplicaId, SharedState};
use foundation_cluster::node::{ClusterEvent, Node, NodeConfig};
use futures::FutureExt;

/// A node process's start, shared by the cluster harnesses: `config` with the
/// `SILENCE_MS` setting applied, started, and its membership said on stdout as
/// `up <node>` and `down <node>` for the test to wait on.
pub async fn start_node(mut config: NodeConfig) -> Node {
    if let Some(ms) = foundation_testkit::setting("SILENCE_MS") {
        config = config.silence(Duration::from_millis(ms.parse().unwrap()));
    }
    let node = Node::start(config).await.unwrap();
    let mut cluster = node.subscribe();
    tokio::spawn(async move {
        while let Ok(e) = cluster.recv().await {
            match e {
                ClusterEvent::NodeUp(m) => foundation_testkit::say(&format!("up {}", m.id)),
                ClusterEvent::NodeDown { member, .. } => {
                    foundation_testkit::say(&format!("down {}", member.id))
                }
                _ => {}
            }
        }
    });
    node
}

/// Polls a future of the local adapter once: its futures are ready at the first poll.
pub fn now<F: Future>(f: F) -> F::Output {
    f.now_or_never()
        .expect("a local cache future is ready at its first poll")
}

/// A CRDT the generic tests can update: `key` and `n` pick the update (for the map and
/// the set, `n < 0` removes `key`).
pub trait Model: SharedState<Delta = Self> {
    fn update(&mut self, replica: ReplicaId, wall: u64, key: u8, n: i8) -> Self;
}

impl Model for PnCounter {
    fn update(&mut self, replica: ReplicaId, _: u64, _: u8, n: i8) -> Self {
        self.add(replica, i64::from(n))
    }
}

impl Model for LwwMap<u8, i8> {
    fn update(&mut self, replica: ReplicaId, wall: u64, key: u8, n: i8) -> Self {
        if n < 0 {
            self.remove(replica, wall, key)
        } else {
            self.insert(replica, wall, key, n)
        }
    }
}

impl Model for OrSet<u8> {
    fn update(&mut self, replica: ReplicaId, _: u64, key: u8, n: i8) -> Self {
        if n < 0 {
            self.remove(&key)
        } else {
            self.insert(replica, key)
        }
    }
}

/// `a` joined with `b`, as a new value.
pub fn merged<S: SharedState>(a: &S, b: &S) -> S {
    let mut m = a.clone();
    m.merge(b);
    m
}
