//! Helpers shared by the tests.

use std::future::Future;

use foundation_cache::crdt::{LwwMap, OrSet, PnCounter, ReplicaId, SharedState};
use futures::FutureExt;

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
