//! Where a child (or a shard) goes: the [`Distribution`] strategies.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

/// Instances running per node: what [`LeastLoaded`] balances. The planner counts it from
/// the children's records, so every node that holds the same records has the same load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    per_node: BTreeMap<String, usize>,
}

impl Load {
    /// No instances anywhere.
    pub fn new() -> Self {
        Self::default()
    }

    /// The instances on `node`.
    pub fn get(&self, node: &str) -> usize {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    /// One more instance on `node`.
    pub fn add(&mut self, node: &str) {
        *self.per_node.entry(node.to_owned()).or_insert(0) += 1;
    }

    /// One instance fewer on `node` (never below zero).
    pub fn remove(&mut self, node: &str) {
        if let Some(count) = self.per_node.get_mut(node) {
            *count = count.saturating_sub(1);
        }
    }
}

impl<'a> FromIterator<&'a str> for Load {
    /// One instance per item.
    fn from_iter<T: IntoIterator<Item = &'a str>>(iter: T) -> Self {
        let mut load = Self::new();
        for node in iter {
            load.add(node);
        }
        load
    }
}

/// A placement strategy: ranks candidate nodes for a key, most preferred first.
///
/// The first node of the ranking owns a singleton, the first `n` own `n` replicas.
///
/// # Contract
///
/// - The result is a permutation of `candidates` (each exactly once, none added).
/// - It is a pure function of `(key, candidates as a set, load)`: no randomness, no clock,
///   no per-process hash seed, no dependence on the candidates' order. Every node computes
///   placements on its own, and they agree only if this holds.
///
/// Implement it for a strategy of your own (a zone-aware one, say) and pass it to the
/// [`Planner`](super::Planner). The tests in this module's `tests` run the contract
/// against [`Rendezvous`] and [`LeastLoaded`]; run them against yours too.
pub trait Distribution: fmt::Debug + Send + Sync {
    /// Ranks `candidates` (distinct node names) for `key`, most preferred first.
    fn rank<'a>(&self, key: &[u8], candidates: &[&'a str], load: &Load) -> Vec<&'a str>;

    /// Whether [`rank`](Self::rank) reads `load`. `true` unless said otherwise (the safe
    /// answer for a strategy of your own).
    ///
    /// A distributed supervisor plans only the children whose records changed when the
    /// ranking ignores the load; when it reads it, one child's start or stop shifts the
    /// others' rankings, so every change plans every child again.
    fn uses_load(&self) -> bool {
        true
    }
}

impl<D: Distribution + ?Sized> Distribution for &D {
    fn rank<'a>(&self, key: &[u8], candidates: &[&'a str], load: &Load) -> Vec<&'a str> {
        (**self).rank(key, candidates, load)
    }

    fn uses_load(&self) -> bool {
        (**self).uses_load()
    }
}

impl<D: Distribution + ?Sized> Distribution for Box<D> {
    fn rank<'a>(&self, key: &[u8], candidates: &[&'a str], load: &Load) -> Vec<&'a str> {
        (**self).rank(key, candidates, load)
    }

    fn uses_load(&self) -> bool {
        (**self).uses_load()
    }
}

impl<D: Distribution + ?Sized> Distribution for Arc<D> {
    fn rank<'a>(&self, key: &[u8], candidates: &[&'a str], load: &Load) -> Vec<&'a str> {
        (**self).rank(key, candidates, load)
    }

    fn uses_load(&self) -> bool {
        (**self).uses_load()
    }
}

/// Rendezvous (highest random weight) hashing, the default: each node scores
/// `xxh3(len(node) ‖ node ‖ key)` and the highest score wins (ties, which need a 64-bit
/// collision, go to the smaller name).
///
/// - **No coordination.** The score depends only on the node's name and the key, so every
///   node that sees the same members computes the same owners.
/// - **Stable under joins and leaves.** A joining node takes exactly the keys it now
///   scores highest on, about `1/N` of them, and nothing else moves; a leaving node's keys
///   go to their second choice, and nothing else moves.
/// - **Fixed hash.** xxh3 with its default seed is fixed by its specification, so nodes on
///   different platforms and Foundation versions agree (a test pins known values).
///
/// Ranking all candidates costs one hash per candidate: fine for clusters of tens or
/// hundreds of nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rendezvous;

impl Rendezvous {
    /// The score of `node` for `key`: higher is preferred.
    pub fn score(node: &str, key: &[u8]) -> u64 {
        // Short inputs (the usual names and ids) hash in one shot from the stack: the
        // same value as the streaming hasher, which a long input takes.
        let mut buf = [0_u8; 256];
        let len = 8 + node.len() + key.len();
        if len <= buf.len() {
            buf[..8].copy_from_slice(&(node.len() as u64).to_le_bytes());
            buf[8..8 + node.len()].copy_from_slice(node.as_bytes());
            buf[8 + node.len()..len].copy_from_slice(key);
            return xxhash_rust::xxh3::xxh3_64(&buf[..len]);
        }
        let mut hasher = Xxh3::new();
        // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
        hasher.update(&(node.len() as u64).to_le_bytes());
        hasher.update(node.as_bytes());
        hasher.update(key);
        hasher.digest()
    }
}

impl Distribution for Rendezvous {
    fn rank<'a>(&self, key: &[u8], candidates: &[&'a str], _load: &Load) -> Vec<&'a str> {
        let mut scored: Vec<(u64, &'a str)> = candidates
            .iter()
            .map(|&node| (Self::score(node, key), node))
            .collect();
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().map(|(_, node)| node).collect()
    }

    fn uses_load(&self) -> bool {
        false
    }
}

/// The node running the fewest instances first; among equally loaded nodes, the
/// [`Rendezvous`] order (so equal loads still spread keys, and all nodes agree).
///
/// The load is counted from the children's records, which every node holds, so nodes agree
/// while their records agree. Pair it with [`Rebalance::Passive`](super::Rebalance::Passive):
/// under `Eager`, a child moves whenever the loads shift enough to change its ranking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeastLoaded;

impl Distribution for LeastLoaded {
    fn rank<'a>(&self, key: &[u8], candidates: &[&'a str], load: &Load) -> Vec<&'a str> {
        let mut scored: Vec<(usize, u64, &'a str)> = candidates
            .iter()
            .map(|&node| (load.get(node), Rendezvous::score(node, key), node))
            .collect();
        scored.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.2.cmp(b.2))
        });
        scored.dedup_by(|a, b| a.2 == b.2);
        scored.into_iter().map(|(_, _, node)| node).collect()
    }
}
