//! [`OrSet`]: an observed-remove (add-wins) set, with dots and a causal context.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ReplicaId, SharedState};

/// One event: the `counter`-th addition made by `replica`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who made it.
    pub replica: ReplicaId,
    /// Its number among that replica's events (from 1).
    pub counter: u64,
}

/// The set of dots a state has seen: per replica every dot up to a counter, plus the dots
/// seen past a gap. Kept compact (no dot in `cloud` that `max` already covers, none that
/// extends it), so equal sets are equal values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Context {
    max: BTreeMap<ReplicaId, u64>,
    cloud: BTreeSet<Dot>,
}

impl Context {
    fn contains(&self, dot: &Dot) -> bool {
        self.max
            .get(&dot.replica)
            .is_some_and(|&m| dot.counter <= m)
            || self.cloud.contains(dot)
    }

    /// The next dot of `replica`: after every one of its dots seen.
    fn next(&self, replica: ReplicaId) -> Dot {
        let contiguous = self.max.get(&replica).copied().unwrap_or(0);
        let clouded = self
            .cloud
            .range(
                Dot {
                    replica,
                    counter: 0,
                }..=Dot {
                    replica,
                    counter: u64::MAX,
                },
            )
            .next_back()
            .map_or(0, |d| d.counter);
        // Saturating: only a peer forging this replica's dots reaches `u64::MAX`; the
        // dot is then reused rather than the counter overflowing.
        Dot {
            replica,
            counter: contiguous.max(clouded).saturating_add(1),
        }
    }

    fn insert(&mut self, dot: Dot) {
        self.cloud.insert(dot);
        self.compact();
    }

    fn merge(&mut self, other: &Context) {
        for (&replica, &m) in &other.max {
            let mine = self.max.entry(replica).or_default();
            *mine = (*mine).max(m);
        }
        self.cloud.extend(other.cloud.iter().copied());
        self.compact();
    }

    /// Folds cloud dots that extend `max` into it and drops those it covers.
    fn compact(&mut self) {
        let cloud = std::mem::take(&mut self.cloud);
        for dot in cloud {
            let m = self.max.entry(dot.replica).or_default();
            if m.checked_add(1) == Some(dot.counter) {
                *m = dot.counter;
            } else if dot.counter > *m {
                self.cloud.insert(dot);
            }
        }
        // Dots are visited in order per replica, so one pass folds every run that extends
        // `max`; remove replicas left at zero (they were only looked up).
        self.max.retain(|_, m| *m > 0);
    }
}

/// A set where an addition concurrent with a removal of the same element wins: a removal
/// removes only the additions it has seen.
///
/// Each addition is a [`Dot`]; an element is in the set while some dot of its is. The
/// causal context records every dot seen, so a merge tells "removed there" (seen, gone)
/// from "not yet seen there" (unseen).
///
/// # Examples
///
/// ```
/// use foundation_cache::crdt::{OrSet, ReplicaId, SharedState};
///
/// let mut a = OrSet::default();
/// let add = a.insert(ReplicaId(1), "x");
/// let mut b = a.clone();
/// let remove = b.remove(&"x");      // b removes the addition it saw...
/// let readd = a.insert(ReplicaId(1), "x"); // ...while a adds "x" again
/// a.apply(&remove);
/// b.apply(&readd);
/// assert!(a.contains(&"x") && b.contains(&"x")); // the concurrent addition wins
/// # let _ = add;
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrSet<T: Ord> {
    entries: BTreeMap<T, BTreeSet<Dot>>,
    context: Context,
}

impl<T: Ord> Default for OrSet<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            context: Context::default(),
        }
    }
}

impl<T: Ord + fmt::Debug> fmt::Debug for OrSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrSet")
            .field("entries", &self.entries)
            .field("context", &self.context)
            .finish()
    }
}

impl<T: Ord + Clone> OrSet<T> {
    /// Whether `x` is in the set.
    pub fn contains(&self, x: &T) -> bool {
        self.entries.contains_key(x)
    }

    /// The elements, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.keys()
    }

    /// How many elements.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds `x` as `replica`; returns the delta to send. The addition replaces the
    /// additions of `x` seen so far (they are in the delta's context, not its entries).
    pub fn insert(&mut self, replica: ReplicaId, x: T) -> Self {
        let dot = self.context.next(replica);
        let mut context = Context::default();
        for seen in self.entries.get(&x).into_iter().flatten() {
            context.cloud.insert(*seen);
        }
        context.insert(dot);
        let delta = Self {
            entries: BTreeMap::from([(x, BTreeSet::from([dot]))]),
            context,
        };
        self.join_from(&delta);
        delta
    }

    /// Removes `x` (the additions of it seen so far); returns the delta to send (empty
    /// if `x` is not in the set).
    pub fn remove(&mut self, x: &T) -> Self {
        let mut context = Context::default();
        for seen in self.entries.get(x).into_iter().flatten() {
            context.cloud.insert(*seen);
        }
        context.compact();
        let delta = Self {
            entries: BTreeMap::new(),
            context,
        };
        self.join_from(&delta);
        delta
    }

    /// The join: a dot survives if both sides have it, or one side has it and the other
    /// has not seen it.
    fn join_from(&mut self, other: &Self) {
        let mut keys: BTreeSet<T> = self.entries.keys().cloned().collect();
        keys.extend(other.entries.keys().cloned());
        let empty = BTreeSet::new();
        for key in keys {
            let mine = self.entries.get(&key).unwrap_or(&empty);
            let theirs = other.entries.get(&key).unwrap_or(&empty);
            let kept: BTreeSet<Dot> = mine
                .iter()
                .filter(|d| theirs.contains(d) || !other.context.contains(d))
                .chain(
                    theirs
                        .iter()
                        .filter(|d| mine.contains(d) || !self.context.contains(d)),
                )
                .copied()
                .collect();
            if kept.is_empty() {
                self.entries.remove(&key);
            } else {
                self.entries.insert(key, kept);
            }
        }
        self.context.merge(&other.context);
    }
}

impl<T> SharedState for OrSet<T>
where
    T: Ord + Clone + fmt::Debug + Send + Sync + 'static,
{
    type Delta = Self;

    fn merge(&mut self, other: &Self) {
        self.join_from(other);
    }

    fn apply(&mut self, delta: &Self::Delta) {
        self.join_from(delta);
    }

    fn join(into: &mut Self::Delta, other: &Self::Delta) {
        into.join_from(other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_stays_compact_whatever_the_order_dots_arrive_in() {
        let r = ReplicaId(1);
        let mut c = Context::default();
        for counter in [3, 1, 5, 2] {
            c.insert(Dot {
                replica: r,
                counter,
            });
        }
        assert_eq!(c.max.get(&r), Some(&3));
        assert_eq!(
            c.cloud,
            BTreeSet::from([Dot {
                replica: r,
                counter: 5
            }])
        );
        assert_eq!(c.next(r).counter, 6);
        c.insert(Dot {
            replica: r,
            counter: 4,
        });
        assert_eq!((c.max.get(&r), c.cloud.len()), (Some(&5), 0));
        assert!(c.contains(&Dot {
            replica: r,
            counter: 5
        }));
        assert!(!c.contains(&Dot {
            replica: r,
            counter: 6
        }));
        assert_eq!(c.next(ReplicaId(2)).counter, 1);
    }

    /// Found while adding the `cache` fuzz target: a peer's OR-set whose context holds every dot of
    /// a replica up to `u64::MAX` and one past a gap overflowed the compaction of a merge,
    /// and a local addition after a peer claimed this replica's last dot overflowed the
    /// next dot (panics with overflow checks on).
    #[test]
    fn a_peers_context_at_u64_max_merges_and_adds_without_overflow() {
        let r = ReplicaId(1);
        let dot = |counter| Dot {
            replica: r,
            counter,
        };
        let theirs = OrSet {
            entries: BTreeMap::from([("x".to_owned(), BTreeSet::from([dot(u64::MAX)]))]),
            context: Context {
                max: BTreeMap::from([(r, u64::MAX)]),
                cloud: BTreeSet::from([dot(5), dot(u64::MAX)]),
            },
        };
        let mut mine = OrSet::default();
        mine.insert(ReplicaId(2), "y".to_owned());
        mine.merge(&theirs);
        assert!(mine.contains(&"x".to_owned()) && mine.contains(&"y".to_owned()));
        assert!(mine.context.cloud.is_empty(), "{:?}", mine.context);
        // The next dot saturates at the one the peer claimed: this node's addition reuses a
        // seen dot and is lost (a forged replica id can do that), but nothing panics.
        let delta = mine.insert(r, "z".to_owned());
        assert_eq!(delta.len(), 1);
        assert!(!mine.contains(&"z".to_owned()));
    }
}
