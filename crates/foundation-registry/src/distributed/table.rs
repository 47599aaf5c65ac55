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

/// Every child's record, as this node knows them, and its Lamport clock.
#[derive(Debug)]
pub(crate) struct Table {
    me: String,
    clock: u64,
    records: BTreeMap<String, Record>,
    /// The digest, until the next change (hellos carry it every `sync_every`).
    digest: std::cell::Cell<Option<u64>>,
    /// When this node learned of each removal: tombstones go after a while.
    removed_at: BTreeMap<String, Instant>,
}

impl Table {
    pub(crate) fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            clock: 0,
            records: BTreeMap::new(),
            digest: std::cell::Cell::new(None),
            removed_at: BTreeMap::new(),
        }
    }

    fn tick(&mut self) -> Stamp {
        self.clock += 1;
        Stamp {
            clock: self.clock,
            node: self.me.clone(),
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        self.records.get(id)
    }

    /// The live record of `id`.
    pub(crate) fn live(&self, id: &str) -> Option<&Record> {
        self.records.get(id).filter(|r| r.live())
    }

    /// Every live record, by id.
    pub(crate) fn all_live(&self) -> impl Iterator<Item = &Record> {
        self.records.values().filter(|r| r.live())
    }

    /// Every record, tombstones included.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Merges records from a peer; gives back those that changed here.
    pub(crate) fn merge(&mut self, records: Vec<Record>) -> Vec<String> {
        let mut changed = Vec::new();
        for record in records {
            self.clock = self.clock.max(record.max_clock());
            let id = record.spec.id.clone();
            let did = match self.records.get_mut(&id) {
                Some(mine) => mine.merge(record),
                // The tombstone of a record this node does not hold (pruned, or never
                // seen): nothing to remove, and keeping it would undo the pruning.
                None if !record.live() => false,
                None => {
                    self.records.insert(id.clone(), record);
                    true
                }
            };
            if did {
                self.digest.set(None);
                if self.records.get(&id).is_some_and(|r| !r.live()) {
                    self.removed_at
                        .entry(id.clone())
                        .or_insert_with(Instant::now);
                } else {
                    self.removed_at.remove(&id);
                }
                changed.push(id);
            }
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
        self.records.insert(record.spec.id.clone(), record.clone());
        self.removed_at.remove(&record.spec.id);
        self.digest.set(None);
        record
    }

    /// Removes the live record of `id`; gives back the tombstone to send.
    pub(crate) fn remove(&mut self, id: &str, why: Removal) -> Option<Record> {
        let stamp = self.tick();
        let record = self.records.get_mut(id).filter(|r| r.live())?;
        self.digest.set(None);
        self.removed_at.insert(id.to_owned(), Instant::now());
        record.removed = Some((stamp, why));
        Some(record.clone())
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
        let record = self.records.get_mut(id).filter(|r| r.live())?;
        self.digest.set(None);
        let slot = record.slots.entry(node.to_owned()).or_insert_with(|| Slot {
            stamp: stamp.clone(),
            instance: None,
            started: None,
            ended: None,
            failures: Vec::new(),
            restarts: 0,
        });
        slot.stamp = stamp.clone();
        f(slot, &stamp);
        Some(record.clone())
    }

    /// Drops the tombstones this node has known for longer than `ttl`: the table stays
    /// bounded by the live children plus recent removals. A peer cut off for longer than
    /// `ttl` that still holds such a child live brings it back when it returns.
    pub(crate) fn prune(&mut self, now: Instant, ttl: Duration) {
        let old: Vec<String> = self
            .removed_at
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.removed_at.remove(&id);
            if self.records.get(&id).is_some_and(|r| !r.live()) {
                self.records.remove(&id);
                self.digest.set(None);
            }
        }
    }

    /// How many records it holds, tombstones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// A digest of the whole table: equal on two nodes iff (with overwhelming
    /// probability) their tables are equal.
    pub(crate) fn digest(&self) -> u64 {
        if let Some(digest) = self.digest.get() {
            return digest;
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for record in self.records.values() {
            match postcard::to_allocvec(record) {
                Ok(bytes) => hasher.update(&bytes),
                Err(e) => tracing::warn!(error = %e, "a record does not encode"),
            }
        }
        let digest = hasher.digest();
        self.digest.set(Some(digest));
        digest
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
