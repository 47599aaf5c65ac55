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

/// A tombstone goes only once every listed peer's digest says it holds it: a partitioned
/// peer that still holds the older value keeps it on every replica; that peer's late full
/// state, arriving before its digests (one peer's messages arrive in order), meets the
/// tombstone and changes nothing; then all three drop it.
#[test]
fn a_tombstone_goes_once_every_peer_holds_it_and_a_partitioned_peers_old_value_does_not_come_back()
{
    type Map = LwwMap<u8, i8>;
    let ids = [ReplicaId(1), ReplicaId(2), ReplicaId(3)];
    let mut r: Vec<Replica<Map>> = ids.iter().map(|id| Replica::new(*id)).collect();
    let others =
        |i: usize| -> Vec<ReplicaId> { ids.iter().copied().filter(|id| *id != ids[i]).collect() };
    // Every replica's digest to every other, in order.
    let gossip = |r: &mut [Replica<Map>], among: &[usize]| {
        for &from in among {
            let digest = r[from].digest();
            for &to in among {
                if to != from {
                    assert!(r[to].handle(digest.clone()).is_none());
                }
            }
        }
    };
    r[0].update(|m, me| m.insert(me, 10, 7, 1));
    r[0].update(|m, me| m.insert(me, 10, 8, 2));
    let first = r[0].flush().unwrap();
    for to in [1, 2] {
        assert!(r[to].handle(first.clone()).is_none());
    }
    gossip(&mut r, &[0, 1, 2]);
    // Replica 3 is cut off, holding 7 => 1. Replica 1 removes it; replica 2 hears.
    let stale = r[2].full_state();
    r[0].update(|m, me| m.remove(me, 20, 7));
    let removal = r[0].flush().unwrap();
    assert!(r[1].handle(removal).is_none());
    for _ in 0..3 {
        gossip(&mut r, &[0, 1]);
        for i in [0, 1] {
            assert_eq!(r[i].collect(&others(i)), 0, "replica {i} dropped it early");
            assert_eq!(r[i].state().tombstones(), 1);
        }
    }
    // Without replica 3 listed (forgotten), it would go: what the horizon trades.
    let mut forgetful = r[0].clone();
    assert_eq!(forgetful.collect(&[ids[1]]), 1);

    // The heal: 3's state crosses first, then 1's state reaches 3, then digests.
    for to in [0, 1] {
        assert!(r[to].handle(stale.clone()).is_none());
        assert_eq!(r[to].state().get(&7), None, "the old value came back");
    }
    let state = r[0].full_state();
    assert!(r[2].handle(state).is_none());
    gossip(&mut r, &[0, 1, 2]);
    for (i, replica) in r.iter_mut().enumerate() {
        assert_eq!(replica.collect(&others(i)), 1, "replica {i}");
        assert_eq!(replica.state().tombstones(), 0);
        assert_eq!(replica.state().get(&7), None);
        assert_eq!(replica.state().get(&8), Some(&2));
    }
    // A later write to the key is stamped after the removal everywhere, and wins.
    r[1].update(|m, me| m.insert(me, 5, 7, 3));
    let again = r[1].flush().unwrap();
    for to in [0, 2] {
        assert!(r[to].handle(again.clone()).is_none());
        assert_eq!(r[to].state().get(&7), Some(&3));
    }
}

/// A digest sent with updates still pending covers only the batches sent: a peer that
/// holds them all does not take the pending writes as held.
#[test]
fn a_digest_with_updates_pending_vouches_only_for_what_was_sent() {
    let mut a: Replica<LwwMap<u8, i8>> = Replica::new(ReplicaId(1));
    let mut b: Replica<LwwMap<u8, i8>> = Replica::new(ReplicaId(2));
    a.update(|m, me| m.insert(me, 10, 1, 1));
    let first = a.flush().unwrap();
    assert!(b.handle(first).is_none());
    let sent = b.held(ReplicaId(1)).unwrap();
    a.update(|m, me| m.remove(me, 20, 1));
    assert!(b.handle(a.digest()).is_none());
    assert_eq!(b.held(ReplicaId(1)), Some(sent));
    // Flushed but lost: the digest shows the gap, and b asks instead of vouching.
    let lost = a.flush();
    assert!(lost.is_some());
    assert!(matches!(
        b.handle(a.digest()),
        Some((_, Message::Want { .. }))
    ));
    assert_eq!(b.held(ReplicaId(1)), Some(sent));
}
