//! The children's records, replicated among a distributed supervisor's nodes: a
//! state-based CRDT (every merge is commutative, associative and idempotent), so every
//! node that has seen the same records holds the same table, whatever the order.
//!
//! - A record is one child: its spec, written once by the node that started it, stamped
//!   `created` (a Lamport clock and that node's name) and `born` (the declaring node's wall
//!   clock, in ms). A newer creation replaces the whole record (the same id started again
//!   after it was removed); of two with the same clock (two concurrent declarations), the
//!   one born first wins, then the node name decides.
//! - Its per-node **slots**: where an instance runs, when it started, how it ended, the
//!   failures counted there and its local restarts. A slot is last-writer-wins by its
//!   Lamport stamp; normally only its node writes it (a node that fails a child over also
//!   clears the lost nodes' slots), so concurrent writes of two nodes touch different
//!   slots and both survive.
//! - Removal is a tombstone (`removed`), the larger stamp winning.

use std::collections::{BTreeMap, BTreeSet};
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

/// The wall clock in ms since the Unix epoch (0 if it reads before it).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn new(kind: &str, args: Vec<u8>, spec: &ChildPlacement) -> Self {
        Self::from_placement(kind, args, spec.clone())
    }

    /// A child's spec from its kind, its encoded arguments and its placement (whose
    /// strings it takes).
    pub(crate) fn from_placement(kind: &str, args: Vec<u8>, spec: ChildPlacement) -> Self {
        let placement = match spec.placement {
            Placement::Singleton => PlacementWire::Singleton,
            Placement::Replicated { n } => PlacementWire::Replicated(n as u64),
            Placement::All => PlacementWire::All,
            Placement::Local => PlacementWire::Local,
            Placement::Pinned(node) => PlacementWire::Pinned(node),
        };
        Self {
            id: spec.id,
            kind: kind.to_owned(),
            args,
            placement,
            role: spec.role,
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
            home: spec.home,
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
    /// When it was declared, in ms since the Unix epoch on the declaring node's clock:
    /// of two records of one id created at the same Lamport clock (declared concurrently,
    /// typically one by a node that had not met the cluster yet), the older wins, so the
    /// instance the cluster runs is kept whatever the node names.
    pub(crate) born: u64,
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

    /// The order of creations: the Lamport clock, then the older `born` first (it wins),
    /// then the node name. A total order, so merges stay commutative and associative.
    fn creation(&self) -> (u64, std::cmp::Reverse<u64>, &str) {
        (
            self.created.clock,
            std::cmp::Reverse(self.born),
            &self.created.node,
        )
    }

    /// Merges `other` into this record; `true` if this one changed.
    fn merge(&mut self, other: Self) -> bool {
        match other.creation().cmp(&self.creation()) {
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

/// A peer's table: its node's name and the table's identity.
pub(crate) type Source<'a> = (&'a str, u64);

/// A record, its hash (its share of the table's digest), its instances (its share of the
/// table's hosts: none for a tombstone), the sequence number of its last change here, and
/// the peer's table whose message made that change (if one did).
#[derive(Debug)]
struct Entry {
    record: Record,
    hash: u64,
    hosts: Vec<(String, u64)>,
    seq: u64,
    via: Option<(String, u64)>,
}

impl Entry {
    fn new(record: Record, via: Option<Source<'_>>) -> Self {
        let hash = hash(&record);
        let hosts = if record.live() {
            record
                .slots
                .iter()
                .filter_map(|(node, s)| s.instance.map(|i| (node.clone(), i)))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            record,
            hash,
            hosts,
            seq: 0,
            via: via.map(|(node, table)| (node.to_owned(), table)),
        }
    }
}

/// The hash of one record: of its wire form, so that it is the same on every platform.
/// A record of ordinary size encodes into a buffer on the stack: no allocation.
fn hash(record: &Record) -> u64 {
    let mut buf = [0_u8; 512];
    let encoded = match postcard::to_slice(record, &mut buf) {
        Ok(bytes) => return xxhash_rust::xxh3::xxh3_64(bytes),
        Err(postcard::Error::SerializeBufferFull) => postcard::to_allocvec(record),
        Err(e) => Err(e),
    };
    match encoded {
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
///
/// Every change here (made here or merged from a peer) takes the next number of the
/// table's sequence, and an index keeps the records by the number of their last change:
/// a peer that has had this table's changes up to `n` is sent those after `n` only
/// ([`Table::since`]), so the cost of keeping peers in step follows the rate of change,
/// not the size of the table.
#[derive(Debug)]
pub(crate) struct Table {
    me: String,
    clock: u64,
    live: BTreeMap<String, Entry>,
    /// Tombstones, with when this node learned of each removal: they go after a while.
    removed: BTreeMap<String, (Entry, Instant)>,
    /// The wrapping sum of every entry's hash, tombstones included.
    digest: u64,
    /// This table's identity (random): a peer's count of this table's changes means
    /// nothing for another table, such as the one a restarted supervisor holds.
    id: u64,
    /// The number of the last change.
    seq: u64,
    /// Every record's id by the number of its last change.
    by_seq: BTreeMap<u64, String>,
    /// The instances of the live records per node and incarnation: the nodes the records
    /// show running this supervisor, and each one's load, with no pass over the records.
    hosts: BTreeMap<(String, u64), usize>,
    /// Whether a node (an incarnation) gained its first instance or lost its last one
    /// since [`take_hosts_changed`](Self::take_hosts_changed).
    hosts_changed: bool,
    /// The ids changed (created, written, merged, removed) since
    /// [`take_dirty`](Self::take_dirty): the children a plan must look at again.
    dirty: BTreeSet<String>,
}

impl Table {
    pub(crate) fn new(me: &str) -> Self {
        Self {
            me: me.to_owned(),
            clock: 0,
            live: BTreeMap::new(),
            removed: BTreeMap::new(),
            digest: 0,
            id: fastrand::u64(..),
            seq: 0,
            by_seq: BTreeMap::new(),
            hosts: BTreeMap::new(),
            hosts_changed: false,
            dirty: BTreeSet::new(),
        }
    }

    fn tick(&mut self) -> Stamp {
        self.clock += 1;
        Stamp {
            clock: self.clock,
            node: self.me.clone(),
        }
    }

    /// This table's identity.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The number of the last change.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Takes `id`'s entry out, live or not, and its hash out of the digest; with when
    /// this node learned of its removal, for a tombstone.
    fn take(&mut self, id: &str) -> Option<(Entry, Option<Instant>)> {
        let (entry, learned) = match self.live.remove(id) {
            Some(entry) => (entry, None),
            None => {
                let (entry, at) = self.removed.remove(id)?;
                (entry, Some(at))
            }
        };
        self.digest = self.digest.wrapping_sub(entry.hash);
        self.by_seq.remove(&entry.seq);
        for host in &entry.hosts {
            if let Some(n) = self.hosts.get_mut(host) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.hosts.remove(host);
                    self.hosts_changed = true;
                }
            }
        }
        Some((entry, learned))
    }

    /// Puts `entry` in as the table's latest change: with the live records or the
    /// tombstones as it is, its hash into the digest. `learned`: when this node learned
    /// of its removal.
    fn put(&mut self, mut entry: Entry, learned: Instant) {
        self.seq += 1;
        entry.seq = self.seq;
        self.by_seq.insert(self.seq, entry.record.spec.id.clone());
        self.digest = self.digest.wrapping_add(entry.hash);
        for host in &entry.hosts {
            let n = self.hosts.entry(host.clone()).or_insert(0);
            if *n == 0 {
                self.hosts_changed = true;
            }
            *n += 1;
        }
        let id = entry.record.spec.id.clone();
        self.dirty.insert(id.clone());
        if entry.record.live() {
            self.live.insert(id, entry);
        } else {
            self.removed.insert(id, (entry, learned));
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        self.entry(id).map(|entry| &entry.record)
    }

    fn entry(&self, id: &str) -> Option<&Entry> {
        match self.live.get(id) {
            Some(entry) => Some(entry),
            None => self.removed.get(id).map(|(entry, _)| entry),
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

    /// The ids changed since the last call (every change goes through `put`): a plan
    /// of these alone misses no record's change.
    pub(crate) fn take_dirty(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.dirty)
    }

    /// Marks `id` for the next plan, though its record did not change (its instance's
    /// name went, its lease was lost).
    pub(crate) fn mark_dirty(&mut self, id: &str) {
        self.dirty.insert(id.to_owned());
    }

    /// Whether a node (an incarnation) gained its first instance or lost its last one
    /// since the last call: the records' part of a supervisor's view changed.
    pub(crate) fn take_hosts_changed(&mut self) -> bool {
        std::mem::take(&mut self.hosts_changed)
    }

    /// The nodes, with their incarnations, that live records show instances on, and how
    /// many each: largest incarnation first for each node.
    pub(crate) fn hosts(&self) -> impl Iterator<Item = (&str, u64, usize)> {
        self.hosts
            .iter()
            .rev()
            .map(|((node, incarnation), n)| (node.as_str(), *incarnation, *n))
    }

    /// Every record, tombstones included.
    #[cfg(test)]
    pub(crate) fn all(&self) -> impl Iterator<Item = &Record> {
        self.all_live()
            .chain(self.removed.values().map(|(entry, _)| &entry.record))
    }

    /// The records changed here after change number `after`, in the order of their last
    /// change, each with that change's number; at most `limit` of them. Those whose last
    /// change came from a message of `peer`'s table are left out: it holds them, or newer.
    pub(crate) fn since(
        &self,
        after: u64,
        peer: Option<Source<'_>>,
        limit: usize,
    ) -> Vec<(u64, Record)> {
        let peer = peer.map(|(node, table)| (node.to_owned(), table));
        self.by_seq
            .range(after.saturating_add(1)..)
            .filter_map(|(seq, id)| {
                let entry = self.entry(id)?;
                let theirs = peer.is_some() && entry.via == peer;
                (!theirs).then(|| (*seq, entry.record.clone()))
            })
            .take(limit)
            .collect()
    }

    /// Merges records from a peer; gives back those that changed here.
    #[cfg(test)]
    pub(crate) fn merge(&mut self, records: Vec<Record>) -> Vec<String> {
        self.merge_from(None, records)
    }

    /// Merges records from `peer`'s table (`None`: not known); gives back those that
    /// changed here.
    pub(crate) fn merge_from(
        &mut self,
        peer: Option<Source<'_>>,
        records: Vec<Record>,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        for record in records {
            self.clock = self.clock.max(record.max_clock());
            let id = record.spec.id.clone();
            let known = self.entry(&id).is_some();
            if !known {
                // The tombstone of a record this node does not hold (pruned, or never
                // seen): nothing to remove, and keeping it would undo the pruning.
                if record.live() {
                    self.put(Entry::new(record, peer), Instant::now());
                    changed.push(id);
                }
                continue;
            }
            // An unchanged record (most of what a peer sends back) costs no hash and
            // keeps its place in the sequence.
            let unchanged = match self.live.get_mut(&id) {
                Some(entry) => !entry.record.merge(record),
                None => match self.removed.get_mut(&id) {
                    Some((entry, _)) => !entry.record.merge(record),
                    None => true,
                },
            };
            if unchanged {
                continue;
            }
            if let Some((entry, learned)) = self.take(&id) {
                let learned = match (learned, entry.record.live()) {
                    // Still a tombstone: learned when it first was one here.
                    (Some(at), false) => at,
                    _ => Instant::now(),
                };
                self.put(Entry::new(entry.record, peer), learned);
                changed.push(id);
            }
        }
        changed
    }

    /// A new child (replacing a removed one of the same id); gives back its record.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn create(&mut self, spec: SpecWire) -> Record {
        let record = Record {
            created: self.tick(),
            born: now_ms(),
            spec,
            removed: None,
            slots: BTreeMap::new(),
        };
        self.put_created(record.clone(), true);
        record
    }

    /// A new child whose id has no live record here; gives back its creation stamp.
    /// `tombstone`: whether a removed child of that id is kept ([`is_removed`](Self::is_removed)),
    /// which the new one replaces. The caller has looked both up already: with thousands
    /// of tombstones, each lookup is a walk of a large map. The record is not copied:
    /// `place_child` needs only the stamp.
    ///
    /// `oldest`: stamp it as the oldest possible creation (clock 0, below every stamp a
    /// table gives), so that any record of the same id another node holds wins over it
    /// when they meet: a child declared by a node that has not caught up with its peers
    /// yet (just started, or back from a partition) never replaces one the cluster already
    /// runs. Not with a tombstone here, which the new record must replace. Two such
    /// declarations of one id (both at clock 0) are ordered by `born`: the older wins.
    pub(crate) fn add(&mut self, spec: SpecWire, tombstone: bool, oldest: bool) -> Stamp {
        debug_assert!(!self.live.contains_key(&spec.id));
        debug_assert_eq!(tombstone, self.removed.contains_key(&spec.id));
        let created = if oldest && !tombstone {
            Stamp {
                clock: 0,
                node: self.me.clone(),
            }
        } else {
            self.tick()
        };
        self.put_created(
            Record {
                created: created.clone(),
                born: now_ms(),
                spec,
                removed: None,
                slots: BTreeMap::new(),
            },
            tombstone,
        );
        created
    }

    /// Puts a new record in; `known`: whether an entry of its id may be there to take out.
    fn put_created(&mut self, record: Record, known: bool) {
        if known {
            self.take(&record.spec.id);
        }
        self.put(Entry::new(record, None), Instant::now());
    }

    /// Whether a tombstone of `id` is kept.
    pub(crate) fn is_removed(&self, id: &str) -> bool {
        self.removed.contains_key(id)
    }

    /// Removes the live record of `id`; gives back the tombstone to send.
    pub(crate) fn remove(&mut self, id: &str, why: Removal) -> Option<Record> {
        let stamp = self.tick();
        if !self.live.contains_key(id) {
            return None;
        }
        let mut record = self.take(id)?.0.record;
        record.removed = Some((stamp, why));
        self.put(Entry::new(record.clone(), None), Instant::now());
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
        let (mut entry, _) = match self.live.contains_key(id) {
            true => self.take(id)?,
            false => return None,
        };
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
        let record = entry.record.clone();
        self.put(Entry::new(entry.record, None), Instant::now());
        Some(record)
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
    fn a_child_declared_as_the_oldest_yields_to_the_clusters_record_in_either_order() {
        // `a` runs `x`; `c`, started again with an empty table, declares it before the
        // records arrive: stamped clock 0, its record loses wherever the two meet.
        let mut a = Table::new("a");
        let running = a.create(spec("x"));
        let mut started = a
            .write_slot("x", "a", |s, at| {
                s.instance = Some(1);
                s.started = Some(at.clone());
            })
            .unwrap();
        let mut c = Table::new("c");
        let declared = c.add(spec("x"), false, true);
        assert_eq!(declared.clock, 0);
        let from_c = c.get("x").cloned().unwrap();
        c.merge(vec![started.clone()]);
        a.merge(vec![from_c]);
        assert_eq!(a.get("x"), c.get("x"));
        assert_eq!(c.get("x").map(|r| &r.created), Some(&running.created));
        assert_eq!(
            c.get("x").map(Record::state).unwrap_or_default().instances,
            [Instance::new("a", 1)]
        );
        // Replacing a tombstone kept here, a declaration takes a fresh stamp: it must win
        // over the removal it follows.
        started = a.remove("x", Removal::Terminated).unwrap();
        c.merge(vec![started]);
        let again = c.add(spec("x"), true, true);
        assert!(again > running.created);
        a.merge(c.get("x").cloned().into_iter().collect());
        assert!(a.live("x").is_some_and(|r| r.created == again));
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
    fn a_peer_is_sent_only_what_changed_after_what_it_has() {
        let mut a = Table::new("a");
        let mut b = Table::new("b");
        // Many short-lived children: their tombstones stay for `tombstone_ttl`.
        for i in 0..2_000 {
            let id = format!("gone-{i}");
            a.create(spec(&id));
            a.remove(&id, Removal::Terminated);
        }
        let kept = a.create(spec("kept"));
        assert_eq!(
            a.since(0, Some(("b", 2)), usize::MAX).len(),
            2_001,
            "a new peer gets all"
        );
        let had = a.seq();
        // Nothing changed since: nothing to send, however many records the table holds.
        assert!(a.since(had, Some(("b", 2)), usize::MAX).is_empty());
        // A change, and an unchanged record merged again (no new number).
        let slot = a.write_slot("kept", "a", |s, at| s.started = Some(at.clone()));
        assert!(a.merge_from(Some(("c", 3)), vec![kept]).is_empty());
        let after = a.since(had, Some(("b", 2)), usize::MAX);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].1.spec.id, "kept");
        assert!(after[0].0 > had && after[0].0 == a.seq());
        // What b's table sent a is not sent back to it, but is to another peer, and to
        // a new table of b (b's supervisor started again: it holds nothing).
        let from_b = b.create(spec("from-b"));
        assert_eq!(a.merge_from(Some(("b", 2)), vec![from_b]), ["from-b"]);
        let ids = |peer: Source<'_>| -> Vec<String> {
            a.since(had, Some(peer), usize::MAX)
                .into_iter()
                .map(|(_, r)| r.spec.id)
                .collect()
        };
        assert_eq!(ids(("b", 2)), ["kept"]);
        assert_eq!(ids(("c", 3)), ["kept", "from-b"]);
        assert_eq!(ids(("b", 4)), ["kept", "from-b"]);
        // In the order of the changes, at most `limit`, and every record once.
        assert_eq!(a.since(0, None, 10).len(), 10);
        let all = a.since(0, None, usize::MAX);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(all.len(), 2_002);
        // Pruned tombstones leave the sequence too.
        a.prune(
            Instant::now() + Duration::from_secs(10),
            Duration::from_secs(5),
        );
        assert_eq!(a.since(0, None, usize::MAX).len(), 2);
        b.merge(slot.into_iter().collect());
    }

    #[test]
    fn every_change_marks_its_id_dirty_and_the_hosts_follow_the_live_instances() {
        let mut a = Table::new("a");
        let mut b = Table::new("b");
        let hosts = |t: &Table| -> Vec<(String, u64, usize)> {
            t.hosts().map(|(n, i, c)| (n.to_owned(), i, c)).collect()
        };
        let x = a.create(spec("x"));
        a.create(spec("y"));
        let ids = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
        assert_eq!(ids(a.take_dirty()), ["x", "y"]);
        assert!(a.take_dirty().is_empty(), "taken once");
        assert!(!a.take_hosts_changed(), "no instance yet");
        a.write_slot("x", "a", |s, _| s.instance = Some(1));
        a.write_slot("y", "a", |s, _| s.instance = Some(1));
        a.write_slot("y", "b", |s, _| s.instance = Some(4));
        assert_eq!(ids(a.take_dirty()), ["x", "y"]);
        assert!(a.take_hosts_changed());
        assert_eq!(hosts(&a), [("b".to_owned(), 4, 1), ("a".to_owned(), 1, 2)]);
        // A restart count changes no host; a second incarnation of b is a new host, and
        // the largest comes first.
        a.write_slot("x", "a", |s, _| s.restarts += 1);
        assert!(!a.take_hosts_changed());
        a.write_slot("x", "b", |s, _| s.instance = Some(5));
        assert!(a.take_hosts_changed());
        assert_eq!(
            hosts(&a)[..2],
            [("b".to_owned(), 5, 1), ("b".to_owned(), 4, 1)]
        );
        // Merged from a peer: changed ids only; an unchanged record marks nothing.
        b.merge(vec![x.clone()]);
        b.take_dirty();
        assert!(b.merge(vec![x]).is_empty());
        assert!(b.take_dirty().is_empty());
        let all: Vec<Record> = a.all().cloned().collect();
        b.merge(all);
        assert_eq!(ids(b.take_dirty()), ["x", "y"]);
        assert_eq!(hosts(&a), hosts(&b));
        // A removal takes its instances out of the hosts, and marks the id.
        a.take_dirty();
        a.remove("y", Removal::Terminated);
        assert_eq!(ids(a.take_dirty()), ["y"]);
        assert_eq!(hosts(&a), [("b".to_owned(), 5, 1), ("a".to_owned(), 1, 1)]);
        a.remove("x", Removal::Terminated);
        assert!(a.hosts().next().is_none());
        // A new start of a removed id counts its new instances only.
        a.create(spec("x"));
        assert!(a.hosts().next().is_none());
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
