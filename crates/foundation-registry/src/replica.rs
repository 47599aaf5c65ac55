//! The cluster-wide name table as plain state: no I/O, no clock of its own. The node's
//! replication loop feeds it its own registrations and what peers send, and sends what it
//! returns; tests drive several replicas through a simulated network.
//!
//! # Model
//!
//! A name is registered on the node whose process holds it (its **origin**), and only the
//! origin ever changes its own entries. Each origin numbers its changes (`seq`); a
//! replica applies an origin's [`Delta`]s in order, ignores ones it has seen (so
//! duplicates are harmless), and asks for a [`Snapshot`] when it sees a gap (a lost
//! delta, a replica that joined late). Every replica that has the same deltas of every
//! origin holds the same entries: the table converges whatever the delivery order,
//! duplication or loss, given snapshots. It is a per-origin, single-writer map: the
//! simplest state CRDT there is, and all a registry whose entries live with their process
//! needs.
//!
//! An origin that goes down takes its entries with it at once ([`Replica::node_down`]):
//! no ghost entries. A new incarnation of an origin replaces the old one's entries.
//!
//! # Conflicts
//!
//! Two origins may register the same unique name while they cannot see each other (a
//! partition) or at the same moment. Both entries are kept; the **winner** is the entry
//! with the smallest [`Stamp`] (its origin's Lamport clock at registration, then the
//! origin's name): every replica that has both entries picks the same one, with no
//! further messages. Lookups return the winner only. When a replica learns that an entry
//! of *its own* lost, it reports [`Event::Lost`] so the node can stop the loser or leave
//! it unregistered, by policy.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// When an entry was registered: the origin's Lamport clock, then the origin's name. The
/// order decides conflicts: smaller wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The origin's Lamport clock at registration.
    pub clock: u64,
    /// The origin node's name, to break ties.
    pub node: String,
}

/// One registration as replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<V> {
    /// The node whose process holds the name.
    pub node: String,
    /// When it was registered (decides conflicts).
    pub stamp: Stamp,
    /// The registration's value (metadata), as the origin gave it.
    pub value: V,
}

/// One change made by an origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op<K, V> {
    /// `key` is registered at the origin with this stamp and value.
    Put {
        /// The name.
        key: K,
        /// When.
        stamp: Stamp,
        /// Its value.
        value: V,
    },
    /// `key` is no longer registered at the origin.
    Remove {
        /// The name.
        key: K,
    },
}

/// A change of one origin, numbered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta<K, V> {
    /// The origin.
    pub origin: String,
    /// Which start of the origin.
    pub incarnation: u64,
    /// The change's number at its origin: 1, 2, ...
    pub seq: u64,
    /// The change.
    pub op: Op<K, V>,
}

/// Everything an origin holds, as of its change `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot<K, V> {
    /// The origin.
    pub origin: String,
    /// Which start of the origin.
    pub incarnation: u64,
    /// The last change included.
    pub seq: u64,
    /// Its entries.
    pub entries: Vec<(K, Stamp, V)>,
}

/// What a replica tells its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<K> {
    /// An entry of this node lost a conflict to `winner`'s: stop or unregister it.
    Lost {
        /// The name.
        key: K,
        /// The node that keeps it.
        winner: String,
    },
    /// This replica missed changes of `origin`: ask it for a [`Snapshot`].
    NeedSnapshot {
        /// The origin.
        origin: String,
    },
}

/// Why a local registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// The name is held already, by this node or, as far as this replica knows, another.
    #[error("the name is registered on node `{holder}`")]
    Taken {
        /// The node that holds it.
        holder: String,
    },
}

#[derive(Debug)]
struct Origin<K, V> {
    incarnation: u64,
    seq: u64,
    entries: HashMap<K, (Stamp, V)>,
}

impl<K, V> Origin<K, V> {
    fn new(incarnation: u64) -> Self {
        Self {
            incarnation,
            seq: 0,
            entries: HashMap::new(),
        }
    }
}

/// One node's copy of the cluster-wide name table.
#[derive(Debug)]
pub struct Replica<K, V> {
    me: String,
    incarnation: u64,
    clock: u64,
    /// Every origin's entries, this node's own included.
    origins: BTreeMap<String, Origin<K, V>>,
    /// Per key, every entry (origin → stamp), so the winner is found without a scan.
    by_key: HashMap<K, BTreeMap<Stamp, String>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Replica<K, V> {
    /// The replica of node `me`, incarnation `incarnation`, with no entries.
    pub fn new(me: impl Into<String>, incarnation: u64) -> Self {
        let me = me.into();
        let mut origins = BTreeMap::new();
        origins.insert(me.clone(), Origin::new(incarnation));
        Self {
            me,
            incarnation,
            clock: 0,
            origins,
            by_key: HashMap::new(),
        }
    }

    /// Registers `key` here, unless this replica knows of a holder already. Returns the
    /// delta to send to every peer.
    ///
    /// # Errors
    ///
    /// [`ReplicaError::Taken`] naming the holder.
    pub fn register(&mut self, key: K, value: V) -> Result<Delta<K, V>, ReplicaError> {
        if let Some(holder) = self.winner(&key) {
            return Err(ReplicaError::Taken {
                holder: holder.node.clone(),
            });
        }
        self.clock += 1;
        let stamp = Stamp {
            clock: self.clock,
            node: self.me.clone(),
        };
        let op = Op::Put { key, stamp, value };
        Ok(self.local(op))
    }

    /// Replaces the value of `key`, registered here, keeping its stamp (so it keeps any
    /// conflict it won). Returns the delta to send, or `None` if this node does not hold it.
    pub fn update(&mut self, key: &K, value: V) -> Option<Delta<K, V>> {
        let own = self.origins.get(&self.me)?;
        let (stamp, _) = own.entries.get(key)?;
        let op = Op::Put {
            key: key.clone(),
            stamp: stamp.clone(),
            value,
        };
        Some(self.local(op))
    }

    /// Unregisters `key` here. Returns the delta to send, or `None` if this node did not
    /// hold it.
    pub fn unregister(&mut self, key: &K) -> Option<Delta<K, V>> {
        let own = self.origins.get(&self.me)?;
        if !own.entries.contains_key(key) {
            return None;
        }
        Some(self.local(Op::Remove { key: key.clone() }))
    }

    fn local(&mut self, op: Op<K, V>) -> Delta<K, V> {
        let me = self.me.clone();
        let seq = self.origins.get(&me).map_or(0, |o| o.seq) + 1;
        let delta = Delta {
            origin: me,
            incarnation: self.incarnation,
            seq,
            op,
        };
        // A local change never conflicts with itself; conflicts with others are
        // reported when their entries arrive.
        let _ = self.apply(delta.clone());
        delta
    }

    /// Applies a peer's change (or re-applies a duplicate, which does nothing).
    pub fn apply(&mut self, delta: Delta<K, V>) -> Vec<Event<K>> {
        let mut events = Vec::new();
        if !self.admit(&delta.origin, delta.incarnation) {
            return events;
        }
        let Some(origin) = self.origins.get_mut(&delta.origin) else {
            return events;
        };
        if delta.seq <= origin.seq {
            return events;
        }
        if delta.seq > origin.seq + 1 {
            events.push(Event::NeedSnapshot {
                origin: delta.origin,
            });
            return events;
        }
        origin.seq = delta.seq;
        match delta.op {
            Op::Put { key, stamp, value } => {
                self.clock = self.clock.max(stamp.clock);
                let origin = delta.origin;
                self.reporting_losses(vec![key.clone()], &mut events, |r| {
                    r.put(&origin, key, stamp, value);
                });
            }
            Op::Remove { key } => self.remove(&delta.origin, &key),
        }
        events
    }

    /// Replaces what this replica holds of an origin with its snapshot (when newer).
    pub fn apply_snapshot(&mut self, snap: Snapshot<K, V>) -> Vec<Event<K>> {
        let mut events = Vec::new();
        if snap.origin == self.me || !self.admit(&snap.origin, snap.incarnation) {
            return events;
        }
        if self
            .origins
            .get(&snap.origin)
            .is_some_and(|o| o.seq > snap.seq)
        {
            return events;
        }
        let keys: Vec<K> = snap.entries.iter().map(|(k, _, _)| k.clone()).collect();
        self.reporting_losses(keys, &mut events, |r| {
            r.drop_origin_entries(&snap.origin);
            if let Some(o) = r.origins.get_mut(&snap.origin) {
                o.seq = snap.seq;
            }
            for (key, stamp, value) in snap.entries {
                r.clock = r.clock.max(stamp.clock);
                r.put(&snap.origin, key, stamp, value);
            }
        });
        events
    }

    /// What this node holds, for a peer that asked (or joined).
    pub fn snapshot(&self) -> Snapshot<K, V> {
        let own = self.origins.get(&self.me);
        Snapshot {
            origin: self.me.clone(),
            incarnation: self.incarnation,
            seq: own.map_or(0, |o| o.seq),
            entries: own
                .map(|o| {
                    o.entries
                        .iter()
                        .map(|(k, (s, v))| (k.clone(), s.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// `node` is down: its entries go at once, everywhere this is called.
    pub fn node_down(&mut self, node: &str) {
        if node == self.me {
            return;
        }
        self.drop_origin_entries(node);
        self.origins.remove(node);
    }

    /// The entry `key` resolves to: the winner among those registered.
    pub fn winner<Q>(&self, key: &Q) -> Option<Entry<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (stamp, node) = self.by_key.get(key)?.iter().next()?;
        let (_, value) = self.origins.get(node)?.entries.get(key)?;
        Some(Entry {
            node: node.clone(),
            stamp: stamp.clone(),
            value: value.clone(),
        })
    }

    /// The names `origin` holds, as far as this replica knows.
    pub fn keys_of(&self, origin: &str) -> Vec<K> {
        self.origins
            .get(origin)
            .map(|o| o.entries.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// How far this replica has `origin`'s changes: its incarnation and the last change
    /// applied. `None` for an origin it holds nothing of.
    pub fn progress(&self, origin: &str) -> Option<(u64, u64)> {
        self.origins.get(origin).map(|o| (o.incarnation, o.seq))
    }

    /// Whether this replica misses changes that `origin` says it has made (its
    /// incarnation `incarnation` is at change `seq`): then ask it for a [`Snapshot`].
    pub fn is_behind(&self, origin: &str, incarnation: u64, seq: u64) -> bool {
        if origin == self.me {
            return false;
        }
        match self.progress(origin) {
            Some((known, _)) if known > incarnation => false,
            Some((known, applied)) if known == incarnation => applied < seq,
            // It holds entries of an older incarnation, which the newer one replaces.
            Some(_) => true,
            None => seq > 0,
        }
    }

    /// How many names resolve (conflicting entries count once).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether no name resolves.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every name and the node that wins it.
    pub fn names(&self) -> impl Iterator<Item = (&K, &str)> {
        self.by_key
            .iter()
            .filter_map(|(k, e)| e.values().next().map(|n| (k, n.as_str())))
    }

    /// Whether changes of `origin`'s incarnation `incarnation` count: a newer incarnation
    /// replaces the old one's entries; an older one is ignored.
    fn admit(&mut self, origin: &str, incarnation: u64) -> bool {
        match self.origins.get(origin).map(|o| o.incarnation) {
            Some(known) if incarnation < known => false,
            Some(known) if incarnation == known => true,
            _ => {
                if origin == self.me {
                    return false;
                }
                self.drop_origin_entries(origin);
                self.origins
                    .insert(origin.to_owned(), Origin::new(incarnation));
                true
            }
        }
    }

    fn put(&mut self, origin: &str, key: K, stamp: Stamp, value: V) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        if let Some((old, _)) = o.entries.insert(key.clone(), (stamp.clone(), value)) {
            if let Some(e) = self.by_key.get_mut(&key) {
                e.remove(&old);
            }
        }
        self.by_key
            .entry(key)
            .or_default()
            .insert(stamp, origin.to_owned());
    }

    /// The node that beats this node's own entry for `key`, if it has one and it loses.
    fn beaten_by(&self, key: &K) -> Option<String> {
        let entries = self.by_key.get(key)?;
        let winner = entries.values().next()?;
        let mine = entries.values().any(|n| *n == self.me);
        (mine && *winner != self.me).then(|| winner.clone())
    }

    /// Runs `change` and reports the keys among `keys` whose own entry it made lose (a
    /// key already lost is not reported again).
    fn reporting_losses(
        &mut self,
        keys: Vec<K>,
        events: &mut Vec<Event<K>>,
        change: impl FnOnce(&mut Self),
    ) {
        let before: Vec<bool> = keys.iter().map(|k| self.beaten_by(k).is_some()).collect();
        change(self);
        for (key, was) in keys.into_iter().zip(before) {
            if !was {
                if let Some(winner) = self.beaten_by(&key) {
                    events.push(Event::Lost { key, winner });
                }
            }
        }
    }

    fn remove(&mut self, origin: &str, key: &K) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        if let Some((stamp, _)) = o.entries.remove(key) {
            if let Some(e) = self.by_key.get_mut(key) {
                e.remove(&stamp);
                if e.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
    }

    fn drop_origin_entries(&mut self, origin: &str) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        for (key, (stamp, _)) in o.entries.drain() {
            if let Some(e) = self.by_key.get_mut(&key) {
                e.remove(&stamp);
                if e.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a failure is the point
mod tests;
