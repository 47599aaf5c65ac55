//! [`LwwMap`]: a last-writer-wins map stamped by hybrid logical clocks.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ReplicaId, SharedState, Timestamp};

/// What orders two writes to one key: the hybrid-clock timestamp, then the writing
/// replica (so two replicas writing in the same tick are still ordered, the same way
/// everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When the write was made.
    pub time: Timestamp,
    /// Who made it.
    pub replica: ReplicaId,
}

/// A map whose concurrent writes to one key converge to the write with the greatest
/// [`Stamp`]. A removal writes a tombstone (kept, so that an older write arriving later
/// cannot bring the key back, until every replica holds it:
/// [`SharedState::collect`], driven by [`Replica::collect`](super::Replica::collect)).
///
/// The map is its own hybrid logical clock: a write is stamped after every timestamp the
/// map holds, so a write made after seeing a value (here or merged from elsewhere) wins
/// over it, whatever the wall clocks say.
///
/// # Examples
///
/// ```
/// use foundation_cache::crdt::{LwwMap, ReplicaId, SharedState};
///
/// let (mut a, mut b) = (LwwMap::default(), LwwMap::default());
/// let d1 = a.insert(ReplicaId(1), 1_000, "k", 1);
/// let d2 = b.insert(ReplicaId(2), 1_000, "k", 2); // same millisecond: replica 2 wins
/// a.apply(&d2);
/// b.apply(&d1);
/// assert_eq!((a.get(&"k"), b.get(&"k")), (Some(&2), Some(&2)));
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwMap<K: Ord, V> {
    /// Per key: the winning write's stamp and value (`None`: removed).
    entries: BTreeMap<K, (Stamp, Option<V>)>,
    /// The greatest timestamp in `entries` (the map's clock).
    clock: Timestamp,
}

impl<K: Ord, V> Default for LwwMap<K, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            clock: Timestamp::default(),
        }
    }
}

impl<K: Ord + fmt::Debug, V: fmt::Debug> fmt::Debug for LwwMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LwwMap")
            .field("entries", &self.entries)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<K: Ord + Clone, V: Clone> LwwMap<K, V> {
    /// The value under `key`, if it is not removed.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).and_then(|(_, v)| v.as_ref())
    }

    /// The stamp of the last write to `key` (a removal included).
    pub fn stamp(&self, key: &K) -> Option<Stamp> {
        self.entries.get(key).map(|(s, _)| *s)
    }

    /// The live entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries
            .iter()
            .filter_map(|(k, (_, v))| v.as_ref().map(|v| (k, v)))
    }

    /// Every key's last write, removals (`None`) included, in key order: what a delta
    /// or a state carries.
    pub fn writes(&self) -> impl Iterator<Item = (&K, Stamp, Option<&V>)> {
        self.entries.iter().map(|(k, (s, v))| (k, *s, v.as_ref()))
    }

    /// How many live entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no entry is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The map's clock: the greatest timestamp it holds.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// Writes `value` under `key` as `replica`, the wall clock saying `wall_ms`; returns
    /// the delta to send.
    pub fn insert(&mut self, replica: ReplicaId, wall_ms: u64, key: K, value: V) -> Self {
        self.write(replica, wall_ms, key, Some(value))
    }

    /// Removes `key` as `replica` (writes a tombstone); returns the delta to send.
    pub fn remove(&mut self, replica: ReplicaId, wall_ms: u64, key: K) -> Self {
        self.write(replica, wall_ms, key, None)
    }

    fn write(&mut self, replica: ReplicaId, wall_ms: u64, key: K, value: Option<V>) -> Self {
        let time = self.clock.next(wall_ms);
        let stamp = Stamp { time, replica };
        self.clock = time;
        self.entries.insert(key.clone(), (stamp, value.clone()));
        Self {
            entries: BTreeMap::from([(key, (stamp, value))]),
            clock: time,
        }
    }
}

impl<K, V> SharedState for LwwMap<K, V>
where
    K: Ord + Clone + fmt::Debug + Send + Sync + 'static,
    V: Clone + PartialEq + fmt::Debug + Send + Sync + 'static,
{
    type Delta = Self;

    fn merge(&mut self, other: &Self) {
        for (key, (stamp, value)) in &other.entries {
            match self.entries.get_mut(key) {
                Some(mine) if mine.0 >= *stamp => {}
                Some(mine) => *mine = (*stamp, value.clone()),
                None => {
                    self.entries.insert(key.clone(), (*stamp, value.clone()));
                }
            }
        }
        self.clock = self.clock.max(other.clock);
    }

    fn apply(&mut self, delta: &Self::Delta) {
        self.merge(delta);
    }

    fn join(into: &mut Self::Delta, other: &Self::Delta) {
        into.merge(other);
    }

    fn clock(&self) -> Option<Timestamp> {
        Some(self.clock)
    }

    /// Drops the tombstones every replica holds. The map's clock stays where it is, so a
    /// later write here is still stamped after every removal it has seen.
    fn collect(&mut self, stable: &dyn Fn(ReplicaId, Timestamp) -> bool) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|_, (stamp, value)| value.is_some() || !stable(stamp.replica, stamp.time));
        before - self.entries.len()
    }

    fn tombstones(&self) -> usize {
        self.entries.values().filter(|(_, v)| v.is_none()).count()
    }
}
