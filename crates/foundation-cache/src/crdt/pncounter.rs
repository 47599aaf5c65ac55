//! [`PnCounter`]: a counter that goes up and down.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ReplicaId, SharedState};

/// A counter that goes up and down: each replica keeps the totals of its own increments
/// and decrements; the value is all increments less all decrements; merge keeps the
/// larger total of each replica's (its totals only grow).
///
/// # Examples
///
/// ```
/// use foundation_cache::crdt::{PnCounter, ReplicaId, SharedState};
///
/// let (mut a, mut b) = (PnCounter::default(), PnCounter::default());
/// let delta = a.add(ReplicaId(1), 5);
/// b.add(ReplicaId(2), -2);
/// b.apply(&delta);
/// a.merge(&b);
/// assert_eq!((a.value(), b.value()), (3, 3));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    /// Per replica: (total increments, total decrements).
    totals: BTreeMap<ReplicaId, (u64, u64)>,
}

impl PnCounter {
    /// The counter's value: every replica's increments less its decrements.
    pub fn value(&self) -> i128 {
        self.totals
            .values()
            .map(|&(p, n)| i128::from(p) - i128::from(n))
            .sum()
    }

    /// Adds `by` (negative: subtracts) as `replica`, and returns the delta to send. A
    /// replica's totals saturate at `u64::MAX` each.
    pub fn add(&mut self, replica: ReplicaId, by: i64) -> PnCounter {
        let totals = self.totals.entry(replica).or_default();
        if by >= 0 {
            totals.0 = totals.0.saturating_add(by.unsigned_abs());
        } else {
            totals.1 = totals.1.saturating_add(by.unsigned_abs());
        }
        PnCounter {
            totals: BTreeMap::from([(replica, *totals)]),
        }
    }
}

impl SharedState for PnCounter {
    type Delta = PnCounter;

    fn merge(&mut self, other: &Self) {
        for (&replica, &(p, n)) in &other.totals {
            let mine = self.totals.entry(replica).or_default();
            *mine = (mine.0.max(p), mine.1.max(n));
        }
    }

    fn apply(&mut self, delta: &Self::Delta) {
        self.merge(delta);
    }

    fn join(into: &mut Self::Delta, other: &Self::Delta) {
        into.merge(other);
    }
}
