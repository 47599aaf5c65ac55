//! The children's records, replicated among a distributed supervisor's nodes: a
//! state-based CRDT (every merge is commutative, associative and idempotent), so every
//! node that has seen the same records holds the same table, whatever the order.
//!
//! - A record is one child: its spec, written once by the node that started it, stamped
//!   `created` (a Lamport clock and that node's name). A newer `created` replaces the
//!   whole record (the same id started again after it was removed).
//! - Its per-node **slots**: where an instance runs, when it started, how it ended, the
//!   failures counted there and its local restarts. A slot is last-writer-wins by its
//!   Lamport stamp; normally only its node writes it (a node that fails a child over also
//!   clears the lost nodes' slots), so concurrent writes of two nodes touch different
//!   slots and both survive.
//! - Removal is a tombstone (`removed`), the larger stamp winning.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use foundation_actors::Restart;
use serde::{Deserialize, Serialize};

use crate::placement::{
    ChildPlacement, ChildState, Exit, Instance, MoveIntensity, Placement, Rebalance,
};

/// A Lamport timestamp: ordered by clock, then node name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Stamp {
    pub(crate) clock: u64,
    pub(crate) node: String,
}

/// A child's spec as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct SpecWire {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) args: Vec<u8>,
    placement: PlacementWire,
    role: Option<String>,
    rebalance: u8,
    restart: u8,
    max_failures: u32,
    period_ms: u64,
    home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum PlacementWire {
    Singleton,
    Replicated(u64),
    All,
    Local,
    Pinned(String),
}

impl SpecWire {
    pub(crate) fn new(kind: &str, args: Vec<u8>, spec: &ChildPlacement) -> Self {
        let placement = match &spec.placement {
            Placement::Singleton => PlacementWire::Singleton,
            Placement::Replicated { n } => PlacementWire::Replicated(*n as u64),
            Placement::All => PlacementWire::All,
            Placement::Local => PlacementWire::Local,
            Placement::Pinned(node) => PlacementWire::Pinned(node.clone()),
        };
        Self {
            id: spec.id.clone(),
            kind: kind.to_owned(),
            args,
            placement,
            role: spec.role.clone(),
            rebalance: match spec.rebalance {
                Rebalance::Eager => 0,
                Rebalance::Passive => 1,
                Rebalance::Manual => 2,
            },
            restart: match spec.restart {
                Restart::Permanent => 0,
                Restart::Transient => 1,
                Restart::Temporary => 2,
            },
            max_failures: spec.intensity.max_failures,
            period_ms: u64::try_from(spec.intensity.period.as_millis()).unwrap_or(u64::MAX),
            home: spec.home.clone(),
        }
    }

    /// The placement core's view of it. Unknown numbers (a newer peer's) read as defaults.
    pub(crate) fn placement(&self) -> ChildPlacement {
        let placement = match &self.placement {
            PlacementWire::Singleton => Placement::Singleton,
            PlacementWire::Replicated(n) => Placement::Replicated {
                n: usize::try_from(*n).unwrap_or(usize::MAX),
            },
            PlacementWire::All => Placement::All,
            PlacementWire::Local => Placement::Local,
            PlacementWire::Pinned(node) => Placement::Pinned(node.clone()),
        };
        let mut spec = ChildPlacement::new(self.id.clone(), placement)
            .rebalance(match self.rebalance {
                0 => Rebalance::Eager,
                2 => Rebalance::Manual,
                _ => Rebalance::Passive,
            })
            .restart(match self.restart {
                1 => Restart::Transient,
                2 => Restart::Temporary,
                _ => Restart::Permanent,
            })
            .intensity(MoveIntensity {
                max_failures: self.max_failures,
                period: Duration::from_millis(self.period_ms),
            });
        spec.role = self.role.clone();
        spec.home = self.home.clone();
        spec
    }

    /// Whether instances of it are one per node (each registered under its node).
    pub(crate) fn per_node(&self) -> bool {
        matches!(
            self.placement,
            PlacementWire::Replicated(_) | PlacementWire::All
        )
    }
}

/// How an instance ended on its own, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum ExitWire {
    Normal,
    Failed,
}

impl From<Exit> for ExitWire {
    fn from(e: Exit) -> Self {
        match e {
            Exit::Normal => Self::Normal,
            Exit::Failed => Self::Failed,
        }
    }
}

impl From<ExitWire> for Exit {
    fn from(e: ExitWire) -> Self {
        match e {
            ExitWire::Normal => Self::Normal,
            ExitWire::Failed => Self::Failed,
        }
    }
}

/// What is known of a child on one node. Last writer wins, by `stamp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub(crate) stamp: Stamp,
    /// The node's incarnation when its instance started; `None`: no instance there.
    pub(crate) instance: Option<u64>,
    /// When the instance there last started.
    pub(crate) started: Option<Stamp>,
    /// When and how an instance there last ended on its own.
    pub(crate) ended: Option<(Stamp, ExitWire)>,
    /// Failures counted by starts carried out there (ms on the wall clock).
    pub(crate) failures: Vec<u64>,
    /// Restarts by the node's local supervisor.
    pub(crate) restarts: u64,
}

/// Why a record was removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Removal {
    Terminated,
    Ended,
    Lost,
    HomeDown,
    GaveUp { failures: u64, max: u32 },
}

/// One child, as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) created: Stamp,
    pub(crate) spec: SpecWire,
    pub(crate) removed: Option<(Stamp, Removal)>,
    pub(crate) slots: BTreeMap<String, Slot>,
}

impl Record {
    /// Whether it is live (not removed).
    pub(crate) fn live(&self) -> bool {
        self.removed.is_none()
    }

    /// The placement core's [`ChildState`] of it.
    pub(crate) fn state(&self) -> ChildState {
        let mut state = ChildState::new();
        let mut last_start: Option<&Stamp> = None;
        let mut last_end: Option<&(Stamp, ExitWire)> = None;
        for (node, slot) in &self.slots {
            if let Some(incarnation) = slot.instance {
                state
                    .instances
                    .push(Instance::new(node.clone(), incarnation));
            }
            if slot.started.as_ref() > last_start {
                last_start = slot.started.as_ref();
            }
            if slot.ended.as_ref().map(|e| &e.0) > last_end.map(|e| &e.0) {
                last_end = slot.ended.as_ref();
            }
            state.failures.extend_from_slice(&slot.failures);
        }
        state.instances.sort();
        state.failures.sort_unstable();
        state.ended = last_end
            .filter(|(at, _)| Some(at) > last_start)
            .map(|(_, exit)| Exit::from(*exit));
        state
    }

    /// Merges `other` into this record; `true` if this one changed.
    fn merge(&mut self, other: Self) -> bool {
        match other.created.cmp(&self.created) {
            std::cmp::Ordering::Greater => {
                *self = other;
                true
            }
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => {
                let mut changed = false;
                if other.removed.as_ref().map(|r| &r.0) > self.removed.as_ref().map(|r| &r.0) {
                    self.removed = other.removed;
                    changed = true;
                }
                for (node, slot) in other.slots {
                    match self.slots.get_mut(&node) {
                        Some(mine) if mine.stamp >= slot.stamp => {}
                        Some(mine) => {
                            *mine = slot;
                            changed = true;
                        }
                        None => {
                            self.slots.insert(node, slot);
                            changed = true;
                        }
                    }
                }
                changed
            }
        }
    }

    /// The largest stamp in it.
    fn max_clock(&self) -> u64 {
        let mut clock = self.created.clock;
        if let Some((s, _)) = &self.removed {
            clock = clock.max(s.clock);
        }
        for slot in self.slots.values() {
            clock = clock.max(slot.stamp.clock);
        }
        clock
    }
}

/// A record and its hash (its share of the table's digest).
#[derive(Debug)]
struct Entry {
    record: Record,
    hash: u64,
}

impl Entry {
    fn new(record: Record) -> Self {
        let hash = hash(&record);
        Self { record, hash }
    }
}

/// The hash of one record: of its wire form, so that it is the same on every platform.
fn hash(record: &Record) -> u64 {
    match postcard::to_allocvec(record) {
        Ok(bytes) => xxhash_rust::xxh3::xxh3_64(&bytes),
        Err(e) => {
            tracing::warn!(error = %e, "a record does not encode");
            0
        }
    }
}

/// Every child's record, as this node knows them, and its Lamport clock.
///
/// Live records and tombstones are kept apart: a plan, a view and `which_children` look
/// at the live ones only, so the tombstones of many short-lived children (kept for
/// `tombstone_ttl`) cost those nothing. The digest is kept up to date with every change
/// (the sum of the records' hashes), so a hello costs no pass over the table.
#[derive(Debug)]
pub(crate) struct Table {
    me: String,
    clock: u64,
    live: BTreeMap<String, Entry>,
    /// Tombstones, with when this node learned of each removal: they go after a while.
    removed: BTreeMap<String, (Entry, Instant)>,
    /// The wrapping sum of every entry's hash, tombstones included.
    digest: u64,
}

impl Table {
    pub(crate) fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            clock: 0,
            live: BTreeMap::new(),
            removed: BTreeMap::new(),
            digest: 0,
        }
    }

    fn tick(&mut self) -> Stamp {
        self.clock += 1;
        Stamp {
            clock: self.clock,
            node: self.me.clone(),
        }
    }

    /// Takes `id`'s entry out, live or not, and its hash out of the digest.
    fn take(&mut self, id: &str) -> Option<Entry> {
        let entry = match self.live.remove(id) {
            Some(entry) => entry,
            None => self.removed.remove(id)?.0,
        };
        self.digest = self.digest.wrapping_sub(entry.hash);
        Some(entry)
    }

    /// Puts `entry` in, with the live records or the tombstones as it is, and its hash
    /// into the digest. `learned`: when this node learned of its removal.
    fn put(&mut self, entry: Entry, learned: Instant) {
        self.digest = self.digest.wrapping_add(entry.hash);
        let id = entry.record.spec.id.clone();
        if entry.record.live() {
            self.live.insert(id, entry);
        } else {
            self.removed.insert(id, (entry, learned));
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        match self.live.get(id) {
            Some(entry) => Some(&entry.record),
            None => self.removed.get(id).map(|(entry, _)| &entry.record),
        }
    }

    /// The live record of `id`.
    pub(crate) fn live(&self, id: &str) -> Option<&Record> {
        self.live.get(id).map(|entry| &entry.record)
    }

    /// Every live record, by id.
    pub(crate) fn all_live(&self) -> impl Iterator<Item = &Record> {
        self.live.values().map(|entry| &entry.record)
    }

    /// Every record, tombstones included.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Record> {
        self.all_live()
            .chain(self.removed.values().map(|(entry, _)| &entry.record))
    }

    /// Merges records from a peer; gives back those that changed here.
    pub(crate) fn merge(&mut self, records: Vec<Record>) -> Vec<String> {
        let mut changed = Vec::new();
        for record in records {
            self.clock = self.clock.max(record.max_clock());
            let id = record.spec.id.clone();
            let (mine, was_live) = match self.live.get_mut(&id) {
                Some(entry) => (entry, true),
                None => match self.removed.get_mut(&id) {
                    Some((entry, _)) => (entry, false),
                    // The tombstone of a record this node does not hold (pruned, or
                    // never seen): nothing to remove, and keeping it would undo the
                    // pruning.
                    None if !record.live() => continue,
                    None => {
                        self.put(Entry::new(record), Instant::now());
                        changed.push(id);
                        continue;
                    }
                },
            };
            // An unchanged record (most of a full table a peer sends) costs no hash.
            if !mine.record.merge(record) {
                continue;
            }
            let hash = hash(&mine.record);
            self.digest = self.digest.wrapping_sub(mine.hash).wrapping_add(hash);
            mine.hash = hash;
            let is_live = mine.record.live();
            if was_live && !is_live {
                if let Some(entry) = self.live.remove(&id) {
                    self.removed.insert(id.clone(), (entry, Instant::now()));
                }
            } else if !was_live && is_live {
                if let Some((entry, _)) = self.removed.remove(&id) {
                    self.live.insert(id.clone(), entry);
                }
            }
            changed.push(id);
        }
        changed
    }

    /// A new child (replacing a removed one of the same id).
    pub(crate) fn create(&mut self, spec: SpecWire) -> Record {
        let record = Record {
            created: self.tick(),
            spec,
            removed: None,
            slots: BTreeMap::new(),
        };
        self.take(&record.spec.id);
        self.put(Entry::new(record.clone()), Instant::now());
        record
    }

    /// Removes the live record of `id`; gives back the tombstone to send.
    pub(crate) fn remove(&mut self, id: &str, why: Removal) -> Option<Record> {
        let stamp = self.tick();
        if !self.live.contains_key(id) {
            return None;
        }
        let mut record = self.take(id)?.record;
        record.removed = Some((stamp, why));
        self.put(Entry::new(record.clone()), Instant::now());
        Some(record)
    }

    /// Rewrites `node`'s slot of the live record `id` with `f`; gives back the record to
    /// send.
    pub(crate) fn write_slot(
        &mut self,
        id: &str,
        node: &str,
        f: impl FnOnce(&mut Slot, &Stamp),
    ) -> Option<Record> {
        let stamp = self.tick();
        let entry = self.live.get_mut(id)?;
        let slot = entry
            .record
            .slots
            .entry(node.to_owned())
            .or_insert_with(|| Slot {
                stamp: stamp.clone(),
                instance: None,
                started: None,
                ended: None,
                failures: Vec::new(),
                restarts: 0,
            });
        slot.stamp = stamp.clone();
        f(slot, &stamp);
        let hash = hash(&entry.record);
        self.digest = self.digest.wrapping_sub(entry.hash).wrapping_add(hash);
        entry.hash = hash;
        Some(entry.record.clone())
    }

    /// Drops the tombstones this node has known for longer than `ttl`: the table stays
    /// bounded by the live children plus recent removals. A peer cut off for longer than
    /// `ttl` that still holds such a child live brings it back when it returns.
    pub(crate) fn prune(&mut self, now: Instant, ttl: Duration) {
        let old: Vec<String> = self
            .removed
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.take(&id);
        }
    }

    /// How many records it holds, tombstones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live.len() + self.removed.len()
    }

    /// A digest of the whole table: equal on two nodes iff (with overwhelming
    /// probability) their tables are equal. Kept up to date by every change: free.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// The digest computed afresh from every record.
    #[cfg(test)]
    fn digest_afresh(&self) -> u64 {
        self.all().fold(0, |sum, r| sum.wrapping_add(hash(r)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(id: &str) -> SpecWire {
        SpecWire::new(
            "k",
            vec![1, 2],
            &ChildPlacement::new(id, Placement::Replicated { n: 2 }).restart(Restart::Transient),
        )
    }

    #[test]
    fn a_spec_survives_the_wire_form() {
        let placement = ChildPlacement::new("x", Placement::Pinned("b".into()))
            .on_role("gpu")
            .rebalance(Rebalance::Manual)
            .restart(Restart::Temporary)
            .home("a");
        assert_eq!(
            SpecWire::new("k", vec![], &placement).placement(),
            placement
        );
    }

    #[test]
    fn concurrent_slot_writes_of_two_nodes_both_survive_in_any_order() {
        let mut a = Table::new("a");
        let mut b = Table::new("b");
        let created = a.create(spec("x"));
        b.merge(vec![created]);
        let from_a = a.write_slot("x", "a", |s, at| {
            s.instance = Some(1);
            s.started = Some(at.clone());
        });
        let from_b = b.write_slot("x", "b", |s, at| {
            s.instance = Some(7);
            s.started = Some(at.clone());
        });
        a.merge(from_b.into_iter().collect());
        b.merge(from_a.into_iter().collect());
        assert_eq!(a.get("x"), b.get("x"));
        assert_eq!(a.digest(), b.digest());
        let before = a.digest();
        a.write_slot("x", "a", |s, _| s.restarts += 1);
        assert_ne!(a.digest(), before, "a cached digest outlived a change");
        let state = a.get("x").map(Record::state).unwrap_or_default();
        assert_eq!(
            state.instances,
            [Instance::new("a", 1), Instance::new("b", 7)]
        );
    }

    #[test]
    fn a_removal_wins_over_older_writes_and_a_new_start_wins_over_the_removal() {
        let mut a = Table::new("a");
        let mut b = Table::new("b");
        let created = a.create(spec("x"));
        b.merge(vec![created]);
        let gone = b.remove("x", Removal::Terminated);
        let late = a.write_slot("x", "a", |s, _| s.restarts = 1);
        a.merge(gone.into_iter().collect());
        b.merge(late.into_iter().collect());
        assert!(a.live("x").is_none() && b.live("x").is_none());
        assert_eq!(a.get("x"), b.get("x"));
        let again = a.create(spec("x"));
        b.merge(vec![again]);
        assert!(b.live("x").is_some_and(|r| r.slots.is_empty()));
    }

    #[test]
    fn tombstones_go_after_their_time_and_do_not_come_back_from_a_peer() {
        let mut a = Table::new("a");
        let mut b = Table::new("b");
        let created = a.create(spec("x"));
        b.merge(vec![created]);
        let gone = a.remove("x", Removal::Terminated).unwrap();
        b.merge(vec![gone.clone()]);
        a.create(spec("y"));
        let later = Instant::now() + Duration::from_secs(10);
        a.prune(later, Duration::from_secs(5));
        assert_eq!(
            a.len(),
            1,
            "the tombstone stays its time, the live record stays"
        );
        assert!(a.get("x").is_none() && a.live("y").is_some());
        // A peer that has not pruned yet sends it back: ignored.
        assert!(a.merge(vec![gone]).is_empty());
        assert!(a.get("x").is_none());
        // A tombstone younger than the limit stays.
        b.prune(Instant::now(), Duration::from_secs(5));
        assert!(b.get("x").is_some());
    }

    #[test]
    fn tombstones_stay_out_of_the_live_records_and_the_digest_follows_every_change() {
        let mut a = Table::new("a");
        let mut b = Table::new("b");
        for id in ["x", "y", "z"] {
            let created = a.create(spec(id));
            b.merge(vec![created]);
        }
        let gone = a.remove("x", Removal::Terminated).unwrap();
        assert_eq!(
            a.all_live().map(|r| r.spec.id.as_str()).collect::<Vec<_>>(),
            ["y", "z"]
        );
        assert_eq!(a.all().count(), 3, "the tombstone is still sent to peers");
        assert!(a.live("x").is_none() && a.get("x").is_some_and(|r| !r.live()));
        // Removed on b by a merge; b's slot write on another record; a new start of x.
        assert_eq!(b.merge(vec![gone]), ["x"]);
        assert!(b.live("x").is_none() && b.all_live().count() == 2);
        let slot = b.write_slot("y", "b", |s, at| {
            s.instance = Some(1);
            s.started = Some(at.clone());
        });
        a.merge(slot.into_iter().collect());
        let again = a.create(spec("x"));
        assert!(a.live("x").is_some_and(|r| r.slots.is_empty()));
        b.merge(vec![again]);
        assert!(
            b.live("x").is_some(),
            "a newer start brings it back to the live records"
        );
        // z removed on b: on a, the merge turns a live record into a tombstone.
        let gone = b.remove("z", Removal::Ended).unwrap();
        a.merge(vec![gone]);
        for t in [&a, &b] {
            assert_eq!(t.digest(), t.digest_afresh(), "the kept digest drifted");
        }
        assert_eq!(a.digest(), b.digest());
        assert_eq!(
            a.all().cloned().collect::<Vec<_>>(),
            b.all().cloned().collect::<Vec<_>>()
        );
        let before = a.digest();
        a.prune(
            Instant::now() + Duration::from_secs(10),
            Duration::from_secs(5),
        );
        assert_eq!((a.len(), a.all_live().count()), (2, 2));
        assert_ne!(a.digest(), before);
        assert_eq!(a.digest(), a.digest_afresh());
        // A full table from a peer, all of it known: nothing changes.
        let all: Vec<Record> = a.all().cloned().collect();
        assert!(a.merge(all).is_empty());
        assert_eq!(a.digest(), a.digest_afresh());
    }

    #[test]
    fn ended_counts_only_when_no_instance_started_since() {
        let mut a = Table::new("a");
        a.create(spec("x"));
        a.write_slot("x", "a", |s, at| {
            s.ended = Some((at.clone(), ExitWire::Failed))
        });
        assert_eq!(a.get("x").unwrap().state().ended, Some(Exit::Failed));
        a.write_slot("x", "b", |s, at| {
            s.instance = Some(1);
            s.started = Some(at.clone());
        });
        assert_eq!(a.get("x").unwrap().state().ended, None);
    }
}
