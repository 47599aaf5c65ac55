//! Interest gossip, without I/O: how this node's interest (each topic and pattern it has
//! subscribers for, with how many) is versioned and cut into messages, and how a peer's
//! is rebuilt from them. `cluster.rs` does the sending; `PROTOCOL.md` describes the
//! messages.
//!
//! A change is sent as a *delta*: the filters whose count changed, each with its count now
//! (0: none left), from version `v` to `v + 1`. Counts are absolute, so a delta applied to
//! a state that already holds some of it is still right. A receiver applies a delta only on
//! top of the version it names; a gap (a delta lost, dropped at a full queue) or another
//! epoch (the peer restarted) makes it ask for the whole set once (`Want`), which comes in
//! parts at one version. Once a period each node sends a digest (its epoch and version):
//! a receiver that holds another version asks for the whole set, so a lost last delta is
//! found within a period. The cost of a change on the wire is its own size, whatever the
//! number of topics; the whole set travels only to a new peer and after a loss.

use std::collections::HashSet;
use std::sync::Arc;

use crate::cluster::Wire;
use crate::telemetry::Count;
use crate::topic::validate;
use crate::trie::Trie;

/// The most bytes of filters in one delta or one part of a whole set: well under a node's
/// frame limit, and small enough not to hold the `control` channel for long.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;

/// What a filter costs a chunk: its bytes, its length prefix and count, the tuple.
fn cost(filter: &str) -> usize {
    filter.len() + 8
}

/// Cuts `filters` into chunks of at most [`CHUNK_BYTES`] (at least one filter each; none
/// for no filters).
fn chunks(filters: Vec<(String, u32)>) -> Vec<Vec<(String, u32)>> {
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut size = 0;
    for (f, n) in filters {
        if !chunk.is_empty() && size + cost(&f) > CHUNK_BYTES {
            out.push(std::mem::take(&mut chunk));
            size = 0;
        }
        size += cost(&f);
        chunk.push((f, n));
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}

/// This node's interest as its peers are told it: its epoch (new at each start), its
/// version (one step per delta), and the filters whose count changed since the last delta.
#[derive(Debug)]
pub(crate) struct Outgoing {
    epoch: u64,
    version: u64,
    dirty: HashSet<Arc<str>>,
}

impl Outgoing {
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            epoch,
            version: 0,
            dirty: HashSet::new(),
        }
    }

    /// `filter`'s count changed.
    pub(crate) fn mark(&mut self, filter: &Arc<str>) {
        if !self.dirty.contains(filter) {
            self.dirty.insert(filter.clone());
        }
    }

    /// The filters changed since the last delta, taken: the caller reads their counts now
    /// (while holding this, so that no whole set is cut in between) and passes them to
    /// [`Outgoing::deltas`].
    pub(crate) fn take_dirty(&mut self) -> Vec<Arc<str>> {
        self.dirty.drain().collect()
    }

    /// The deltas carrying `changes` (each filter with its count now), one version step
    /// each.
    pub(crate) fn deltas(&mut self, origin: &str, changes: Vec<(String, u32)>) -> Vec<Wire> {
        chunks(changes)
            .into_iter()
            .map(|changes| {
                let from = self.version;
                self.version += 1;
                Wire::Delta {
                    origin: origin.to_owned(),
                    epoch: self.epoch,
                    from,
                    changes,
                }
            })
            .collect()
    }

    /// The whole set `filters` (every filter with its count, read while holding this), in
    /// parts, at the current version. It may hold changes not yet sent as a delta: the
    /// next delta names them again with the same counts, which changes nothing.
    pub(crate) fn full(&self, origin: &str, filters: Vec<(String, u32)>) -> Vec<Wire> {
        let mut parts = chunks(filters);
        if parts.is_empty() {
            parts.push(Vec::new());
        }
        let n = u32::try_from(parts.len()).unwrap_or(u32::MAX);
        parts
            .into_iter()
            .zip(0..n)
            .map(|(filters, part)| Wire::Full {
                origin: origin.to_owned(),
                epoch: self.epoch,
                version: self.version,
                part,
                parts: n,
                filters,
            })
            .collect()
    }

    /// The digest peers compare with what they hold.
    pub(crate) fn digest(&self, origin: &str) -> Wire {
        Wire::Digest {
            origin: origin.to_owned(),
            epoch: self.epoch,
            version: self.version,
        }
    }

    /// The last message, when the pubsub stops: nothing left, one version on.
    pub(crate) fn gone(&mut self, origin: &str) -> Wire {
        self.version += 1;
        self.dirty.clear();
        Wire::Full {
            origin: origin.to_owned(),
            epoch: self.epoch,
            version: self.version,
            part: 0,
            parts: 1,
            filters: Vec::new(),
        }
    }
}

/// Whether to ask the peer for its whole set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Reply {
    Nothing,
    /// Send it a `Want`.
    Want,
}

/// A whole set arriving in parts.
#[derive(Debug)]
struct Staging {
    epoch: u64,
    version: u64,
    next: u32,
    parts: u32,
    trie: Trie<u32>,
}

/// A peer's interest as this node holds it: a trie of counts at the peer's epoch and
/// version. A new one (`default`) is empty, awaiting a whole set.
#[derive(Debug, Default)]
pub(crate) struct PeerView {
    pub(crate) trie: Trie<u32>,
    epoch: u64,
    version: u64,
    /// `trie` is the peer's interest at `version` (else a whole set is awaited).
    synced: bool,
    /// A `Want` was sent and not answered: no other until the next digest.
    asked: bool,
    /// A digest came while no whole set ever had: the next one asks.
    waited: bool,
    staging: Option<Staging>,
}

impl PeerView {
    /// The epoch of the peer's pubsub as last heard (0 before any whole set).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    fn ask(&mut self) -> Reply {
        if self.asked {
            Reply::Nothing
        } else {
            self.asked = true;
            Reply::Want
        }
    }

    /// A delta from version `from`: applied on top of exactly that version.
    pub(crate) fn delta(
        &mut self,
        epoch: u64,
        from: u64,
        changes: Vec<(String, u32)>,
        malformed: &Count,
    ) -> Reply {
        if !self.synced {
            // No whole set yet: it is on its way (a node sends one to each node it sees
            // come up), or a digest will ask for it.
            return Reply::Nothing;
        }
        if epoch == self.epoch {
            if from == self.version {
                for (filter, n) in changes {
                    if validate(&filter, true).is_err() {
                        malformed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else if n == 0 {
                        self.trie.remove(&filter);
                    } else {
                        *self.trie.slot(&filter) = Some(n);
                    }
                }
                self.version += 1;
                return Reply::Nothing;
            }
            if from < self.version {
                // Older than a whole set already taken: in it.
                return Reply::Nothing;
            }
        }
        // A gap, or another epoch.
        self.ask()
    }

    /// Part `part` of `parts` of the whole set at `version`; the set replaces the view
    /// when its last part arrives, unless the view is already past it.
    pub(crate) fn full(
        &mut self,
        epoch: u64,
        version: u64,
        part: u32,
        parts: u32,
        filters: Vec<(String, u32)>,
        malformed: &Count,
    ) -> Reply {
        if part >= parts {
            malformed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.staging = None;
            return self.ask();
        }
        if part == 0 {
            self.staging = Some(Staging {
                epoch,
                version,
                next: 0,
                parts,
                trie: Trie::default(),
            });
        }
        let Some(st) = self.staging.as_mut().filter(|st| {
            (st.epoch, st.version, st.next, st.parts) == (epoch, version, part, parts)
        }) else {
            // A part lost in between: this set is incomplete.
            self.staging = None;
            return self.ask();
        };
        fill(&mut st.trie, filters, malformed);
        st.next += 1;
        if st.next < st.parts {
            return Reply::Nothing;
        }
        let Some(st) = self.staging.take() else {
            return Reply::Nothing;
        };
        if !self.synced || st.epoch != self.epoch || st.version >= self.version {
            self.trie = st.trie;
            self.epoch = st.epoch;
            self.version = st.version;
            self.synced = true;
            self.asked = false;
        }
        Reply::Nothing
    }

    /// The peer's digest: a view at another epoch or version has missed something (every
    /// interest message of a peer comes from one task on one channel, in order, so none
    /// is still on its way).
    pub(crate) fn digest(&mut self, epoch: u64, version: u64) -> Reply {
        // One `Want` per period at most: a lost one (or its answer) is asked again here.
        self.asked = false;
        if self.synced && (epoch, version) == (self.epoch, self.version) {
            return Reply::Nothing;
        }
        if !self.synced && !self.waited {
            // A peer just seen: the whole set it sends to each node it sees come up may
            // still be on its way (sent by the same task after this digest). Asked at the
            // next digest if it does not come.
            self.waited = true;
            return Reply::Nothing;
        }
        self.ask()
    }

    /// One interest message of the peer (`Delta`, `Full` or `Digest`): the view follows
    /// it. `None` for a message that is not about the view (`Want`, `Publish`).
    pub(crate) fn receive(&mut self, wire: Wire, malformed: &Count) -> Option<Reply> {
        Some(match wire {
            Wire::Delta {
                epoch,
                from,
                changes,
                ..
            } => self.delta(epoch, from, changes, malformed),
            Wire::Full {
                epoch,
                version,
                part,
                parts,
                filters,
                ..
            } => self.full(epoch, version, part, parts, filters, malformed),
            Wire::Digest { epoch, version, .. } => self.digest(epoch, version),
            Wire::Want { .. } | Wire::Publish { .. } => return None,
        })
    }
}

/// Adds `filters` to `trie`; a filter that is not a valid topic or pattern, or has no
/// subscriber, is skipped and counted in `malformed`.
pub(crate) fn fill(trie: &mut Trie<u32>, filters: Vec<(String, u32)>, malformed: &Count) {
    for (filter, n) in filters {
        if validate(&filter, true).is_err() || n == 0 {
            malformed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        *trie.slot(&filter) = Some(n);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A sender with a registry of counts, and a receiver's view of it.
    struct Pair {
        counts: std::collections::BTreeMap<Arc<str>, u32>,
        out: Outgoing,
        view: PeerView,
        malformed: Count,
        wants: usize,
    }

    impl Pair {
        fn new() -> Self {
            Self {
                counts: Default::default(),
                out: Outgoing::new(7),
                view: PeerView::default(),
                malformed: Count::default(),
                wants: 0,
            }
        }

        fn set(&mut self, filter: &str, n: u32) {
            let f: Arc<str> = Arc::from(filter);
            if n == 0 {
                self.counts.remove(&f);
            } else {
                self.counts.insert(f.clone(), n);
            }
            self.out.mark(&f);
        }

        fn deltas(&mut self) -> Vec<Wire> {
            let dirty = self.out.take_dirty();
            let changes = dirty
                .iter()
                .map(|f| (f.to_string(), self.counts.get(f).copied().unwrap_or(0)))
                .collect();
            self.out.deltas("a", changes)
        }

        fn full(&self) -> Vec<Wire> {
            let all = self
                .counts
                .iter()
                .map(|(f, n)| (f.to_string(), *n))
                .collect();
            self.out.full("a", all)
        }

        fn deliver(&mut self, wires: Vec<Wire>) {
            for w in wires {
                let Some(reply) = self.view.receive(w, &self.malformed) else {
                    panic!("not an interest message");
                };
                if reply == Reply::Want {
                    self.wants += 1;
                }
            }
        }

        /// The view's counts, as the sender's.
        fn agrees(&self) -> bool {
            self.counts
                .iter()
                .all(|(f, n)| self.view.trie.get(f) == Some(n))
                && self.counts.len() == count_filters(&self.view.trie, &self.counts)
        }
    }

    /// How many of the sender's filters (and no others, checked by the probes) the view holds.
    fn count_filters(
        trie: &Trie<u32>,
        counts: &std::collections::BTreeMap<Arc<str>, u32>,
    ) -> usize {
        let held = counts.keys().filter(|f| trie.get(f).is_some()).count();
        // A removed filter must be gone too.
        for probe in ["gone.1", "gone.2", "gone.3"] {
            assert!(trie.get(probe).is_none(), "{probe} still held");
        }
        held
    }

    #[test]
    fn deltas_carry_only_the_changes_and_the_view_follows() {
        let mut p = Pair::new();
        let full = p.full();
        p.deliver(full);
        for i in 0..1000 {
            p.set(&format!("t.{i}"), 1);
        }
        let first = p.deltas();
        p.deliver(first);
        assert!(p.agrees());
        // One change among a thousand topics: one small delta.
        p.set("t.5", 0);
        p.set("gone.1", 2);
        p.set("gone.1", 0);
        let d = p.deltas();
        assert_eq!(d.len(), 1);
        let Wire::Delta { changes, .. } = &d[0] else {
            panic!()
        };
        assert_eq!(changes.len(), 2);
        p.deliver(d);
        assert!(p.agrees());
        assert_eq!(p.wants, 0);
        // A digest at the same version asks for nothing.
        let digest = p.out.digest("a");
        p.deliver(vec![digest]);
        assert_eq!(p.wants, 0);
    }

    #[test]
    fn a_lost_delta_is_found_by_the_next_one_or_the_digest_and_healed_by_a_whole_set() {
        let mut p = Pair::new();
        let full = p.full();
        p.deliver(full);
        p.set("a.1", 1);
        let _lost = p.deltas();
        p.set("a.2", 1);
        let next = p.deltas();
        p.deliver(next.clone());
        assert_eq!(p.wants, 1, "a gap asks for the whole set");
        p.deliver(next);
        assert_eq!(p.wants, 1, "once, until answered or the next digest");
        let full = p.full();
        p.deliver(full);
        assert!(p.agrees());

        // The last delta lost: only the digest shows it.
        p.set("a.3", 4);
        let _lost = p.deltas();
        assert!(!p.agrees());
        let digest = p.out.digest("a");
        p.deliver(vec![digest]);
        assert_eq!(p.wants, 2);
        let full = p.full();
        p.deliver(full);
        assert!(p.agrees());
    }

    #[test]
    fn a_whole_set_comes_in_parts_and_a_lost_part_asks_again() {
        let mut p = Pair::new();
        for i in 0..20_000 {
            p.set(&format!("topic.number.{i}"), 1 + i % 3);
        }
        let _ = p.out.take_dirty();
        let parts = p.full();
        assert!(parts.len() > 2, "{} parts", parts.len());
        let mut missing = parts.clone();
        missing.remove(1);
        p.deliver(missing);
        assert_eq!(p.wants, 1);
        assert!(p.view.trie.is_empty(), "an incomplete set is not taken");
        p.deliver(parts);
        assert!(p.agrees());
    }

    #[test]
    fn an_old_delta_after_a_newer_whole_set_is_ignored_and_a_restart_asks_again() {
        let mut p = Pair::new();
        p.set("x", 1);
        let old = p.deltas();
        p.set("x", 2);
        let newer = p.full(); // version 1, with x = 2 (not yet in a delta)
        p.deliver(newer);
        p.deliver(old); // from 0: behind the set
        assert_eq!(p.view.trie.get("x"), Some(&2));
        let d = p.deltas(); // from 1: x = 2 again
        p.deliver(d);
        assert!(p.agrees());
        assert_eq!(p.wants, 0);

        // The peer restarts: another epoch, its own version 0.
        let mut restarted = Outgoing::new(8);
        let d = restarted.deltas("a", vec![("y".into(), 1)]);
        p.deliver(d);
        assert_eq!(p.wants, 1);
    }

    #[test]
    fn a_new_peer_waits_one_digest_for_the_whole_set_before_asking() {
        let mut p = Pair::new();
        p.set("x", 1);
        let d = p.deltas();
        // Heard before the whole set: nothing asked yet.
        let digest = p.out.digest("a");
        p.deliver(vec![digest.clone()]);
        p.deliver(d);
        assert_eq!(p.wants, 0);
        assert!(p.view.trie.is_empty());
        // The set did not come by the next digest: asked.
        p.deliver(vec![digest]);
        assert_eq!(p.wants, 1);
        let full = p.full();
        p.deliver(full);
        assert!(p.agrees());
    }

    #[test]
    fn invalid_filters_are_counted_and_skipped() {
        let mut p = Pair::new();
        let full = p.full();
        p.deliver(full);
        let d = p
            .out
            .deltas("a", vec![("a..b".into(), 1), ("ok".into(), 1)]);
        p.deliver(d);
        assert_eq!(p.malformed.load(Ordering::Relaxed), 1);
        assert_eq!(p.view.trie.get("ok"), Some(&1));
        assert_eq!(
            p.view
                .full(7, 9, 0, 1, vec![("ok".into(), 0)], &p.malformed),
            Reply::Nothing
        );
        assert_eq!(p.malformed.load(Ordering::Relaxed), 2);
        assert!(p.view.trie.is_empty());
        assert_eq!(
            p.view.full(7, 9, 3, 1, Vec::new(), &p.malformed),
            Reply::Want
        );
    }
}
