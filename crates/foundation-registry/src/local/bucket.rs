//! The entries under one key.

use foundation_actors::{Addr, AddrKey};

/// One registration: a process and the value it was registered with.
pub(super) struct Entry<M, V> {
    pub(super) addr: Addr<M>,
    pub(super) value: V,
}

impl<M, V: Clone> Entry<M, V> {
    /// The entry as lookups hand it out.
    pub(super) fn to_pair(&self) -> (Addr<M>, V) {
        (self.addr.clone(), self.value.clone())
    }
}

/// The entries under one key, in registration order. A unique key, and most duplicate
/// ones, hold a single entry, kept inline; only a group of two or more allocates. A bucket
/// is empty only transiently, while its last entry is being removed under the map's lock:
/// the map never shows an empty bucket.
pub(super) enum Bucket<M, V> {
    One(Entry<M, V>),
    Many(Vec<Entry<M, V>>),
}

impl<M: Send + 'static, V> Bucket<M, V> {
    /// The entries, oldest first.
    pub(super) fn entries(&self) -> &[Entry<M, V>] {
        match self {
            Self::One(e) => std::slice::from_ref(e),
            Self::Many(v) => v,
        }
    }

    /// The entries, oldest first, for updating values in place.
    pub(super) fn entries_mut(&mut self) -> &mut [Entry<M, V>] {
        match self {
            Self::One(e) => std::slice::from_mut(e),
            Self::Many(v) => v,
        }
    }

    /// Adds an entry after the others.
    pub(super) fn push(&mut self, e: Entry<M, V>) {
        *self = match std::mem::replace(self, Self::Many(Vec::new())) {
            Self::One(first) => Self::Many(vec![first, e]),
            Self::Many(mut v) => {
                v.push(e);
                Self::Many(v)
            }
        };
    }

    /// Removes the entries of process `key` whose value satisfies `doomed`, keeping the
    /// order of the rest; returns how many went. `doomed` is asked about every entry
    /// before anything changes, so if it panics the bucket is left as it was.
    pub(super) fn remove(&mut self, key: AddrKey, mut doomed: impl FnMut(&V) -> bool) -> usize {
        let verdicts: Vec<bool> = self
            .entries()
            .iter()
            .map(|e| e.addr.key() == key && doomed(&e.value))
            .collect();
        let n = verdicts.iter().filter(|d| **d).count();
        if n == 0 {
            return 0;
        }
        match self {
            Self::One(_) => *self = Self::Many(Vec::new()),
            Self::Many(v) => {
                let mut verdict = verdicts.iter();
                v.retain(|_| !verdict.next().copied().unwrap_or(false));
            }
        }
        n
    }

    /// Whether no entry is left (only ever seen under the map's lock).
    pub(super) fn is_empty(&self) -> bool {
        matches!(self, Self::Many(v) if v.is_empty())
    }

    /// How many entries there are.
    pub(super) fn len(&self) -> usize {
        self.entries().len()
    }
}
