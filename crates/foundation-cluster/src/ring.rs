//! A consistent-hash ring over the live members: every node that holds the same view
//! computes the same owner for a key, and a join or a leave moves only about `1/N` of
//! the keys.
//!
//! # Algorithm
//!
//! Each node is placed on a 64-bit ring at `vnodes` points, `xxh3(node id ‖ i)` for
//! `i in 0..vnodes`; a key belongs to the node of the first point at or after
//! `xxh3(key)`, wrapping around. Points that collide are ordered by node id, so the order
//! of joins never matters. With the default 128 points per node each node owns within a
//! few percent of `1/N` of the keys, and a lookup is one hash and a binary search.
//!
//! xxh3 is fixed by its specification, so nodes on different platforms and versions of
//! Foundation agree (a test pins known values). Keys are bytes: hash a key's stable
//! encoding, not its `std::hash::Hash` (which may differ between platforms).
//!
//! # Examples
//!
//! ```
//! use foundation_cluster::ring::HashRing;
//!
//! let mut ring = HashRing::new(["a@10.0.0.1", "b@10.0.0.2", "c@10.0.0.3"]);
//! let owner = *ring.owner(b"user:42").expect("the ring has nodes");
//! // Every node with the same members agrees, whatever order they joined in.
//! let other = HashRing::new(["c@10.0.0.3", "a@10.0.0.1", "b@10.0.0.2"]);
//! assert_eq!(other.owner(b"user:42"), Some(&owner));
//! // Replicas: the owner, then the next distinct nodes clockwise.
//! assert_eq!(ring.owners(b"user:42", 2)[0], &owner);
//! ring.remove(&"b@10.0.0.2");
//! assert_eq!(ring.len(), 2);
//! ```

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Points per node by default: each node's share stays within a few percent of `1/N`.
pub const DEFAULT_VNODES: u32 = 128;

/// A consistent-hash ring of nodes `N` (node ids: anything with stable bytes).
#[derive(Debug, Clone)]
pub struct HashRing<N> {
    vnodes: u32,
    /// The members, sorted and without duplicates.
    nodes: Vec<N>,
    /// `(point, index into nodes)`, sorted by point then by node.
    points: Vec<(u64, u32)>,
}

impl<N: AsRef<[u8]> + Ord> HashRing<N> {
    /// A ring of `nodes` with [`DEFAULT_VNODES`] points each.
    pub fn new(nodes: impl IntoIterator<Item = N>) -> Self {
        Self::with_vnodes(nodes, DEFAULT_VNODES)
    }

    /// A ring of `nodes` with `vnodes` points each (at least 1).
    pub fn with_vnodes(nodes: impl IntoIterator<Item = N>, vnodes: u32) -> Self {
        let mut nodes: Vec<N> = nodes.into_iter().collect();
        nodes.sort();
        nodes.dedup();
        let mut ring = Self {
            vnodes: vnodes.max(1),
            nodes,
            points: Vec::new(),
        };
        ring.rebuild();
        ring
    }

    /// Adds a node; `false` if it was a member already.
    pub fn add(&mut self, node: N) -> bool {
        match self.nodes.binary_search(&node) {
            Ok(_) => false,
            Err(at) => {
                self.nodes.insert(at, node);
                self.rebuild();
                true
            }
        }
    }

    /// Removes a node; `false` if it was not a member.
    pub fn remove(&mut self, node: &N) -> bool {
        match self.nodes.binary_search(node) {
            Ok(at) => {
                self.nodes.remove(at);
                self.rebuild();
                true
            }
            Err(_) => false,
        }
    }

    /// The node that owns `key`, or `None` on an empty ring.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> Option<&N> {
        let i = self.first_point(xxh3_64(key))?;
        Some(&self.nodes[self.points[i].1 as usize])
    }

    /// The owner of `key` and the next distinct nodes clockwise: up to `n` nodes, the
    /// owner first (for replicas and fallbacks).
    pub fn owners(&self, key: &[u8], n: usize) -> Vec<&N> {
        let want = n.min(self.nodes.len());
        let mut out: Vec<&N> = Vec::with_capacity(want);
        let Some(start) = self.first_point(xxh3_64(key)) else {
            return out;
        };
        let mut seen = vec![false; self.nodes.len()];
        for k in 0..self.points.len() {
            if out.len() == want {
                break;
            }
            let idx = self.points[(start + k) % self.points.len()].1 as usize;
            if !seen[idx] {
                seen[idx] = true;
                out.push(&self.nodes[idx]);
            }
        }
        out
    }

    /// The members, sorted.
    pub fn nodes(&self) -> &[N] {
        &self.nodes
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The index of the first point at or after `h`, wrapping around.
    #[inline]
    fn first_point(&self, h: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|&(p, _)| p < h);
        Some(if i == self.points.len() { 0 } else { i })
    }

    fn rebuild(&mut self) {
        let mut points = Vec::with_capacity(self.nodes.len() * self.vnodes as usize);
        for (idx, node) in self.nodes.iter().enumerate() {
            for v in 0..self.vnodes {
                let mut h = Xxh3::new();
                h.update(node.as_ref());
                h.update(&v.to_le_bytes());
                // Members are far fewer than 2^32.
                points.push((h.digest(), idx as u32));
            }
        }
        // Nodes are sorted, so ties between colliding points go to the smaller node id.
        points.sort_unstable();
        self.points = points;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}@10.0.0.{i}")).collect()
    }

    fn keys(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("key-{i}").into_bytes()).collect()
    }

    fn owners_of(ring: &HashRing<String>, keys: &[Vec<u8>]) -> Vec<String> {
        keys.iter()
            .map(|k| ring.owner(k).expect("non-empty").clone())
            .collect()
    }

    #[test]
    fn the_hash_is_pinned() {
        // Peers must agree: these values must never change.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(xxh3_64(b"foundation"), PINNED_FOUNDATION);
        // And the points built from node ids: owners of a fixed ring.
        let ring = HashRing::new(["a", "b", "c"]);
        let owners = ["user:1", "user:2", "user:3", "user:4"].map(|k| ring.owner(k.as_bytes()));
        assert_eq!(owners, [Some(&"a"), Some(&"c"), Some(&"c"), Some(&"c")]);
    }

    const PINNED_FOUNDATION: u64 = 0xffe1_ef70_66c1_ffd8;

    #[test]
    fn the_same_members_give_the_same_owners_in_any_order() {
        let keys = keys(5_000);
        let a = HashRing::new(names(7));
        let mut shuffled = names(7);
        fastrand::Rng::with_seed(3).shuffle(&mut shuffled);
        let mut b = HashRing::new(Vec::<String>::new());
        for n in shuffled {
            b.add(n);
        }
        assert_eq!(owners_of(&a, &keys), owners_of(&b, &keys));
    }

    #[test]
    fn a_join_moves_about_one_nth_of_the_keys_and_only_to_the_new_node() {
        let keys = keys(50_000);
        for n in [2, 5, 10] {
            let before = HashRing::new(names(n));
            let mut after = before.clone();
            let newcomer = format!("new@10.0.1.{n}");
            after.add(newcomer.clone());
            let (old, new) = (owners_of(&before, &keys), owners_of(&after, &keys));
            let moved: Vec<_> = old.iter().zip(&new).filter(|(o, n)| o != n).collect();
            assert!(
                moved.iter().all(|(_, to)| **to == newcomer),
                "keys moved between old nodes"
            );
            let share = moved.len() as f64 / keys.len() as f64;
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                (share - ideal).abs() < ideal * 0.25,
                "{n}+1 nodes: {share:.3} moved, ideal {ideal:.3}"
            );
        }
    }

    #[test]
    fn a_leave_moves_only_the_leavers_keys() {
        let keys = keys(50_000);
        let before = HashRing::new(names(6));
        let mut after = before.clone();
        let leaver = names(6)[2].clone();
        assert!(after.remove(&leaver));
        assert!(!after.remove(&leaver));
        let (old, new) = (owners_of(&before, &keys), owners_of(&after, &keys));
        for (o, n) in old.iter().zip(&new) {
            if o != n {
                assert_eq!(*o, leaver, "a key moved away from a node that stayed");
            }
        }
        let share = old.iter().filter(|o| **o == leaver).count() as f64 / keys.len() as f64;
        assert!(
            (share - 1.0 / 6.0).abs() < 0.25 / 6.0,
            "the leaver owned {share:.3}"
        );
    }

    #[test]
    fn every_node_owns_close_to_its_share() {
        let keys = keys(100_000);
        let ring = HashRing::new(names(10));
        for node in ring.nodes() {
            let owned = keys.iter().filter(|k| ring.owner(k) == Some(node)).count();
            let share = owned as f64 / keys.len() as f64;
            assert!((share - 0.1).abs() < 0.025, "{node} owns {share:.3}");
        }
    }

    #[test]
    fn owners_are_distinct_and_start_with_the_owner() {
        let ring = HashRing::new(names(5));
        for k in keys(200) {
            let all = ring.owners(&k, 10);
            assert_eq!(all.len(), 5);
            assert_eq!(Some(all[0]), ring.owner(&k));
            let mut sorted = all.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 5);
            assert_eq!(ring.owners(&k, 2), all[..2].to_vec());
        }
    }

    #[test]
    fn an_empty_ring_owns_nothing_and_duplicates_count_once() {
        let mut ring: HashRing<&str> = HashRing::new([]);
        assert!(ring.is_empty());
        assert_eq!(ring.owner(b"k"), None);
        assert!(ring.owners(b"k", 3).is_empty());
        assert!(ring.add("a"));
        assert!(!ring.add("a"));
        assert_eq!(HashRing::new(["a", "a", "b"]).len(), 2);
        assert_eq!(ring.owner(b"k"), Some(&"a"));
        let zero = HashRing::with_vnodes(["a"], 0);
        assert_eq!(zero.owner(b"k"), Some(&"a"), "at least one point per node");
    }
}
