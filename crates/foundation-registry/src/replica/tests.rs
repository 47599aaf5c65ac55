//! Replicas driven through a simulated network that reorders, duplicates and drops.

use super::*;

type R = Replica<String, u32>;

/// A message in flight to replica `to`.
#[derive(Debug, Clone)]
enum Msg {
    Delta(Delta<String, u32>),
    Snapshot(Snapshot<String, u32>),
}

struct Net {
    nodes: Vec<R>,
    names: Vec<String>,
    flight: Vec<(usize, Msg)>,
    rng: fastrand::Rng,
    lost: Vec<(String, String)>,
}

impl Net {
    fn new(n: usize, seed: u64) -> Self {
        let names: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
        Self {
            nodes: names.iter().map(|n| Replica::new(n.clone(), 1)).collect(),
            names,
            flight: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            lost: Vec::new(),
        }
    }

    fn broadcast(&mut self, from: usize, d: &Delta<String, u32>) {
        for to in 0..self.nodes.len() {
            if to != from {
                self.flight.push((to, Msg::Delta(d.clone())));
            }
        }
    }

    fn index(&self, name: &str) -> usize {
        self.names.iter().position(|n| n == name).unwrap()
    }

    fn deliver(&mut self, to: usize, msg: Msg) {
        let events = match msg {
            Msg::Delta(d) => self.nodes[to].apply(d),
            Msg::Snapshot(s) => self.nodes[to].apply_snapshot(s),
        };
        for e in events {
            match e {
                Event::NeedSnapshot { origin } => {
                    let from = self.index(&origin);
                    let snap = self.nodes[from].snapshot();
                    self.flight.push((to, Msg::Snapshot(snap)));
                }
                Event::Lost { key, winner } => {
                    assert_ne!(winner, self.names[to]);
                    self.lost.push((self.names[to].clone(), key));
                }
            }
        }
    }

    /// Delivers one message in flight, chosen at random; sometimes drops or duplicates it.
    fn step(&mut self, lossy: bool) {
        if self.flight.is_empty() {
            return;
        }
        let i = self.rng.usize(..self.flight.len());
        let (to, msg) = self.flight.swap_remove(i);
        let roll = self.rng.u8(..100);
        if lossy && roll < 10 {
            return; // dropped
        }
        if lossy && roll < 20 {
            self.flight.push((to, msg.clone())); // duplicated
        }
        self.deliver(to, msg);
    }

    /// Delivers everything, then exchanges snapshots once (what a node does when it
    /// reconnects), so dropped deltas are made up for.
    fn settle(&mut self) {
        while !self.flight.is_empty() {
            self.step(false);
        }
        for from in 0..self.nodes.len() {
            let snap = self.nodes[from].snapshot();
            for to in 0..self.nodes.len() {
                if to != from {
                    self.deliver(to, Msg::Snapshot(snap.clone()));
                }
            }
        }
        while !self.flight.is_empty() {
            self.step(false);
        }
    }

    fn view(&self, i: usize) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.nodes[i]
            .names()
            .map(|(k, n)| (k.clone(), n.to_owned()))
            .collect();
        v.sort();
        v
    }
}

#[test]
fn replicas_converge_whatever_the_order_loss_and_duplication() {
    for seed in 0..200 {
        let mut net = Net::new(4, seed);
        for _ in 0..60 {
            let at = net.rng.usize(..4);
            let key = format!("k{}", net.rng.u8(..12));
            if net.rng.bool() {
                let value = net.rng.u32(..);
                if let Ok(d) = net.nodes[at].register(key, value) {
                    net.broadcast(at, &d);
                }
            } else if let Some(d) = net.nodes[at].unregister(&key) {
                net.broadcast(at, &d);
            }
            for _ in 0..net.rng.usize(..4) {
                net.step(true);
            }
        }
        net.settle();
        let first = net.view(0);
        for i in 1..4 {
            assert_eq!(net.view(i), first, "seed {seed}: replica {i} differs");
        }
        // Every name a node still holds as its own is visible everywhere: no lost write.
        for i in 0..4 {
            for (key, holder) in &first {
                let own = net.nodes[i].origins[&net.names[i]]
                    .entries
                    .contains_key(key);
                if own {
                    // It holds an entry: either it wins, or it was told it lost.
                    assert!(
                        holder == &net.names[i]
                            || net.lost.contains(&(net.names[i].clone(), key.clone())),
                        "seed {seed}: {} holds {key} unseen",
                        net.names[i]
                    );
                }
            }
        }
    }
}

#[test]
fn a_name_registered_on_both_sides_of_a_partition_resolves_to_one_winner_and_the_loser_is_told() {
    let mut net = Net::new(3, 1);
    // n1 registers first by its clock; n2 later: n1 wins everywhere.
    let d1 = net.nodes[1].register("svc".into(), 10).unwrap();
    net.nodes[2].register("other".into(), 0).unwrap();
    let d2 = net.nodes[2].register("svc".into(), 20).unwrap();
    assert!(d1.seq == 1 && d2.seq == 2);
    // Heal: everyone hears everything.
    net.broadcast(1, &d1);
    let d_other = Delta {
        origin: "n2".into(),
        incarnation: 1,
        seq: 1,
        op: Op::Put {
            key: "other".into(),
            stamp: Stamp {
                clock: 1,
                node: "n2".into(),
            },
            value: 0,
        },
    };
    net.broadcast(2, &d_other);
    net.broadcast(2, &d2);
    net.settle();
    for i in 0..3 {
        let w = net.nodes[i].winner("svc").unwrap();
        assert_eq!((w.node.as_str(), w.value), ("n1", 10), "replica {i}");
    }
    assert_eq!(net.lost, vec![("n2".to_owned(), "svc".to_owned())]);
    // The loser, by policy, unregisters; the winner stays.
    let d = net.nodes[2].unregister(&"svc".to_owned()).unwrap();
    net.broadcast(2, &d);
    net.settle();
    for i in 0..3 {
        assert_eq!(net.nodes[i].winner("svc").unwrap().node, "n1");
    }
}

#[test]
fn equal_clocks_are_decided_by_node_name() {
    let mut a: R = Replica::new("a", 1);
    let mut b: R = Replica::new("b", 1);
    let da = a.register("x".into(), 1).unwrap();
    let db = b.register("x".into(), 2).unwrap();
    assert_eq!(da.seq, db.seq);
    assert!(a.apply(db).is_empty());
    assert_eq!(
        b.apply(da),
        vec![Event::Lost {
            key: "x".into(),
            winner: "a".into()
        }]
    );
    assert_eq!(a.winner("x").unwrap().node, "a");
    assert_eq!(b.winner("x").unwrap().node, "a");
}

#[test]
fn a_node_that_goes_down_takes_its_names_with_it_and_a_restart_replaces_them() {
    let mut a: R = Replica::new("a", 1);
    let mut b: R = Replica::new("b", 1);
    for k in ["x", "y"] {
        let d = b.register(k.into(), 0).unwrap();
        a.apply(d);
    }
    assert_eq!(a.len(), 2);
    a.node_down("b");
    assert!(a.is_empty(), "ghost entries after the node went down");
    // A late delta of the old incarnation does not bring them back.
    let stale = Delta {
        origin: "b".into(),
        incarnation: 1,
        seq: 3,
        op: Op::Put {
            key: "z".into(),
            stamp: Stamp {
                clock: 9,
                node: "b".into(),
            },
            value: 0,
        },
    };
    // (b's incarnation is forgotten with it: a delta out of order asks for a snapshot.)
    assert_eq!(
        a.apply(stale),
        vec![Event::NeedSnapshot { origin: "b".into() }]
    );
    assert!(a.is_empty());
    // b restarts (incarnation 2) with one name: its snapshot is the truth.
    let mut b2: R = Replica::new("b", 2);
    b2.register("w".into(), 0).unwrap();
    a.apply_snapshot(b2.snapshot());
    let names: Vec<_> = a.names().map(|(k, n)| (k.clone(), n.to_owned())).collect();
    assert_eq!(names, vec![("w".to_owned(), "b".to_owned())]);
    // And the old incarnation's snapshot, arriving late, is ignored.
    a.apply_snapshot(b.snapshot());
    assert_eq!(a.len(), 1);
}

#[test]
fn a_taken_name_is_refused_locally_and_freed_by_unregister() {
    let mut a: R = Replica::new("a", 1);
    let mut b: R = Replica::new("b", 1);
    let d = b.register("x".into(), 0).unwrap();
    a.apply(d);
    assert_eq!(
        a.register("x".into(), 1),
        Err(ReplicaError::Taken { holder: "b".into() })
    );
    let d = b.unregister(&"x".into()).unwrap();
    a.apply(d);
    assert!(a.register("x".into(), 1).is_ok());
    assert!(b.unregister(&"nope".into()).is_none());
}
