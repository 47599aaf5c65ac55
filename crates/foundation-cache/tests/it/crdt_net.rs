//! Replicas of each CRDT on a simulated network that drops, reorders and duplicates
//! messages, with a partition for a while; once it delivers again (digests now and then,
//! as a node would send them), every replica holds the join of every update made, and a
//! node that joins late catches up.

use std::collections::VecDeque;

use foundation_cache::crdt::{LwwMap, Message, OrSet, PnCounter, Replica, ReplicaId, SharedState};

use crate::support::Model;

const NODES: usize = 4;

struct Net<S: SharedState> {
    replicas: Vec<Replica<S>>,
    /// (to, message) in flight.
    queue: VecDeque<(usize, Message<S>)>,
    rng: fastrand::Rng,
    /// Every delta made, joined: what every replica must end up holding.
    oracle: S,
}

impl<S: Model> Net<S> {
    fn new(seed: u64) -> Self {
        Self {
            replicas: (0..NODES)
                .map(|i| Replica::new(ReplicaId(i as u64 + 1)))
                .collect(),
            queue: VecDeque::new(),
            rng: fastrand::Rng::with_seed(seed),
            oracle: S::default(),
        }
    }

    fn index(&self, id: ReplicaId) -> usize {
        self.replicas.iter().position(|r| r.id() == id).unwrap()
    }

    fn broadcast(&mut self, from: usize, message: Message<S>) {
        for to in 0..self.replicas.len() {
            if to != from {
                self.queue.push_back((to, message.clone()));
            }
        }
    }

    fn update(&mut self, at: usize) {
        let (wall, key, n) = (self.rng.u64(0..50), self.rng.u8(0..8), self.rng.i8(-3..8));
        let mut delta = None;
        self.replicas[at].update(|state, id| {
            let d = state.update(id, wall, key, n);
            delta = Some(d.clone());
            d
        });
        if let Some(d) = delta {
            self.oracle.apply(&d);
        }
    }

    /// Delivers one message, picked at random (reordering); `lossy` drops some and
    /// duplicates some; `cut` drops every message across the two halves.
    fn step(&mut self, lossy: bool, cut: bool) {
        if self.queue.is_empty() {
            return;
        }
        let i = self.rng.usize(..self.queue.len());
        let Some((to, message)) = self.queue.remove(i) else {
            return;
        };
        let half = |i: usize| i < NODES / 2;
        let from = match &message {
            Message::Delta { origin, .. }
            | Message::State { origin, .. }
            | Message::Digest { origin, .. } => self.index(*origin),
            Message::Want { from } => self.index(*from),
        };
        if cut && half(from) != half(to) {
            return;
        }
        if lossy && self.rng.u8(..100) < 25 {
            return;
        }
        if lossy && self.rng.u8(..100) < 10 {
            self.queue.push_back((to, message.clone()));
        }
        if let Some((reply_to, reply)) = self.replicas[to].handle(message) {
            let reply_to = self.index(reply_to);
            self.queue.push_back((reply_to, reply));
        }
    }

    /// Random updates, flushes and deliveries on a lossy network, partitioned for the
    /// middle third.
    fn churn(&mut self, rounds: usize) {
        for round in 0..rounds {
            let cut = round > rounds / 3 && round < 2 * rounds / 3;
            let at = self.rng.usize(..self.replicas.len());
            match self.rng.u8(..10) {
                0..=4 => self.update(at),
                5..=6 => {
                    if let Some(m) = self.replicas[at].flush() {
                        self.broadcast(at, m);
                    }
                }
                7 => {
                    let digest = self.replicas[at].digest();
                    self.broadcast(at, digest);
                }
                _ => {
                    for _ in 0..3 {
                        self.step(true, cut);
                    }
                }
            }
        }
    }

    /// The network delivers again: every replica flushes and sends digests, and every
    /// message is delivered, until a round ends with nothing left to say. Returns the
    /// rounds it took.
    fn heal(&mut self) -> usize {
        for round in 1..=10 {
            for at in 0..self.replicas.len() {
                if let Some(m) = self.replicas[at].flush() {
                    self.broadcast(at, m);
                }
                let digest = self.replicas[at].digest();
                self.broadcast(at, digest);
            }
            let mut delivered = 0;
            while !self.queue.is_empty() {
                self.step(false, false);
                delivered += 1;
            }
            if self.converged() {
                return round;
            }
            assert!(delivered > 0);
        }
        panic!("no convergence in 10 rounds: {:?}", self.states());
    }

    fn converged(&self) -> bool {
        self.replicas.iter().all(|r| r.state() == &self.oracle)
    }

    fn states(&self) -> Vec<&S> {
        self.replicas.iter().map(Replica::state).collect()
    }
}

fn converge<S: Model>() {
    for seed in 0..150 {
        let mut net = Net::<S>::new(seed);
        net.churn(300);
        net.heal();
        for (i, r) in net.replicas.iter().enumerate() {
            assert_eq!(r.state(), &net.oracle, "seed {seed}: replica {i} differs");
        }

        // A node joins late: sent one member's full state, it then follows deltas (and
        // asks for what it missed).
        let mut joiner = Replica::new(ReplicaId(99));
        joiner.handle(net.replicas[0].full_state());
        net.replicas.push(joiner);
        net.churn(60);
        net.heal();
        assert!(net.converged(), "seed {seed}: the joiner did not catch up");
    }
}

#[test]
fn pn_counters_converge_over_a_lossy_reordering_duplicating_partitioned_network() {
    converge::<PnCounter>();
}

#[test]
fn lww_maps_converge_over_a_lossy_reordering_duplicating_partitioned_network() {
    converge::<LwwMap<u8, i8>>();
}

#[test]
fn or_sets_converge_over_a_lossy_reordering_duplicating_partitioned_network() {
    converge::<OrSet<u8>>();
}

#[test]
fn deltas_are_batched_into_one_message_per_flush_and_a_gap_asks_for_the_state() {
    let mut a: Replica<PnCounter> = Replica::new(ReplicaId(1));
    let mut b: Replica<PnCounter> = Replica::new(ReplicaId(2));
    for _ in 0..10 {
        a.update(|s, id| s.add(id, 1));
    }
    let first = a.flush().unwrap();
    assert!(a.flush().is_none(), "one message for ten updates");
    a.update(|s, id| s.add(id, 5));
    let second = a.flush().unwrap();
    // The first batch is lost: the second shows the gap, and b asks for a's state.
    let reply = b.handle(second);
    assert_eq!(
        reply,
        Some((ReplicaId(1), Message::Want { from: ReplicaId(2) }))
    );
    let (_, state) = a.handle(Message::Want { from: ReplicaId(2) }).unwrap();
    assert!(b.handle(state).is_none());
    assert_eq!(b.state().value(), 15);
    // A duplicate of a batch already held changes nothing and asks for nothing.
    assert!(b.handle(first).is_none());
    assert_eq!(b.state().value(), 15);
    // Digests: b has all of a's batches, so it asks for nothing.
    assert!(b.handle(a.digest()).is_none());
}
