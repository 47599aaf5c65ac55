//! The submitting side of a cluster-wide ecosystem, as plain state: the jobs this node
//! submitted and keeps until they are done (the ledger), where each is, and which node
//! the next one goes to. No I/O: the runtime sends what [`Dispatch::next_send`] picks.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::run::RunShared;
use super::wire::Line;

/// How long a node that refused a job (its queue full) is passed over, unless a result
/// from it says it has room sooner.
pub(crate) const NACK_HOLD: Duration = Duration::from_millis(20);

/// What a job carries, kept until it is done so that it can be sent again.
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) kind: String,
    pub(crate) reduce: Option<String>,
    pub(crate) items: Vec<Vec<u8>>,
}

/// The outcome of a job: the node it ran on, and its encoded output or why it failed.
pub(crate) type Outcome = (String, Result<Vec<u8>, String>);

/// Where a job's outcome goes.
pub(crate) enum Sink {
    /// A job of `submit`: its caller.
    One(oneshot::Sender<Outcome>),
    /// A chunk of a map-reduce run, of this many items.
    Run(Arc<RunShared>, usize),
}

/// A job this node submitted and keeps until it is done.
pub(crate) struct Entry {
    pub(crate) body: Arc<Body>,
    /// The node it was sent to, if it was sent and not refused or lost since.
    pub(crate) node: Option<String>,
    pub(crate) sink: Sink,
}

/// A node of the table, as the submitting side sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) workers: u32,
    pub(crate) load: u32,
}

/// The submitting side's state.
pub(crate) struct Dispatch {
    capacity: u32,
    table: BTreeMap<String, Peer>,
    pub(crate) table_seen: bool,
    pub(crate) peak: u32,
    down: HashSet<String>,
    /// Nodes whose part said `Bye`, with that part: a table showing another part of the
    /// node (started again) makes it usable again.
    gone: HashMap<String, u64>,
    nacked: HashMap<String, Instant>,
    /// Jobs of this node's ledger sent to each node and not done.
    mine: HashMap<String, u32>,
    ledger: HashMap<u64, Entry>,
    /// Tickets waiting to be sent: re-queued ones first.
    pending: VecDeque<u64>,
    rr: usize,
    pub(crate) requeued: u64,
    pub(crate) duplicates: u64,
    pub(crate) nacks: u64,
}

impl Dispatch {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            table: BTreeMap::new(),
            table_seen: false,
            peak: 0,
            down: HashSet::new(),
            gone: HashMap::new(),
            nacked: HashMap::new(),
            mine: HashMap::new(),
            ledger: HashMap::new(),
            pending: VecDeque::new(),
            rr: 0,
            requeued: 0,
            duplicates: 0,
            nacks: 0,
        }
    }

    /// The coordinator's table replaces the last one.
    pub(crate) fn set_table(&mut self, lines: &[Line], peak: u32) {
        for l in lines {
            if self.gone.get(&l.node).is_some_and(|p| *p != l.part) {
                self.gone.remove(&l.node);
                self.down.remove(&l.node);
            }
        }
        self.table = lines
            .iter()
            .map(|l| {
                (
                    l.node.clone(),
                    Peer {
                        workers: l.workers,
                        load: l.load,
                    },
                )
            })
            .collect();
        self.table_seen = true;
        self.peak = self.peak.max(peak);
    }

    /// The table as this node uses it: nodes known down or gone from the ecosystem left
    /// out.
    pub(crate) fn peers(&self) -> Vec<(String, Peer)> {
        self.table
            .iter()
            .filter(|(n, _)| !self.down.contains(*n))
            .map(|(n, p)| (n.clone(), *p))
            .collect()
    }

    /// Jobs this node sent to `node` and did not see done.
    pub(crate) fn mine(&self, node: &str) -> u32 {
        self.mine.get(node).copied().unwrap_or(0)
    }

    /// The load of `node` as this node sees it: its own jobs there, exactly, or the
    /// node's last reported load, whichever is larger.
    fn load(&self, node: &str, peer: Peer) -> u32 {
        self.mine(node).max(peer.load)
    }

    /// The least-loaded node with room (relative to its workers), if any: a node with
    /// workers, not down, not holding a refusal, whose queue and workers are not full.
    fn pick(&mut self, now: Instant) -> Option<String> {
        let mut best: Option<(u64, usize, &String)> = None;
        let n = self.table.len().max(1);
        for (i, (node, peer)) in self.table.iter().enumerate() {
            if peer.workers == 0 || self.down.contains(node) {
                continue;
            }
            if self.nacked.get(node).is_some_and(|until| *until > now) {
                continue;
            }
            let load = self.load(node, *peer);
            if load >= self.capacity.saturating_add(peer.workers) {
                continue;
            }
            // Load per worker, in thousandths; ties go round the nodes in turn.
            let score = u64::from(load) * 1000 / u64::from(peer.workers);
            let turn = (i + n - self.rr % n) % n;
            if best.is_none_or(|(s, t, _)| (score, turn) < (s, t)) {
                best = Some((score, turn, node));
            }
        }
        let node = best.map(|(_, _, n)| n.clone());
        self.rr = self.rr.wrapping_add(1);
        node
    }

    /// Whether a job submitted now would be sent at once (room somewhere, nothing
    /// waiting ahead of it).
    pub(crate) fn has_room(&mut self, now: Instant) -> bool {
        self.pending.iter().all(|t| !self.ledger.contains_key(t)) && {
            let rr = self.rr;
            let room = self.pick(now).is_some();
            self.rr = rr;
            room
        }
    }

    /// Keeps a new job, to be sent by [`Dispatch::next_send`].
    pub(crate) fn add(&mut self, ticket: u64, body: Arc<Body>, sink: Sink) {
        self.ledger.insert(
            ticket,
            Entry {
                body,
                node: None,
                sink,
            },
        );
        self.pending.push_back(ticket);
    }

    /// The next job to send and where, marked as sent there; `None` when nothing waits or
    /// no node has room.
    pub(crate) fn next_send(&mut self, now: Instant) -> Option<(u64, String, Arc<Body>)> {
        loop {
            let ticket = *self.pending.front()?;
            if !self.ledger.contains_key(&ticket) {
                // Done or cancelled meanwhile.
                self.pending.pop_front();
                continue;
            }
            let node = self.pick(now)?;
            self.pending.pop_front();
            let entry = self.ledger.get_mut(&ticket)?;
            entry.node = Some(node.clone());
            *self.mine.entry(node.clone()).or_default() += 1;
            return Some((ticket, node, entry.body.clone()));
        }
    }

    fn unassign(&mut self, ticket: u64) -> Option<String> {
        let entry = self.ledger.get_mut(&ticket)?;
        let node = entry.node.take()?;
        if let Some(m) = self.mine.get_mut(&node) {
            *m = m.saturating_sub(1);
        }
        Some(node)
    }

    /// Sending job `ticket` to `node` failed: it waits again, first, and the node is
    /// passed over for a moment.
    pub(crate) fn unsend(&mut self, ticket: u64, node: &str, now: Instant) {
        if self.unassign(ticket).is_some() {
            self.pending.push_front(ticket);
        }
        self.nacked.insert(node.to_owned(), now + NACK_HOLD);
    }

    /// `node` refused job `ticket` (its queue is full): the job waits again, first.
    pub(crate) fn nack(&mut self, ticket: u64, node: &str, load: u32, now: Instant) {
        self.nacks += 1;
        if let Some(p) = self.table.get_mut(node) {
            p.load = load;
        }
        let held_there = self
            .ledger
            .get(&ticket)
            .is_some_and(|e| e.node.as_deref() == Some(node));
        if held_there {
            self.unassign(ticket);
            self.pending.push_front(ticket);
        }
        self.nacked.insert(node.to_owned(), now + NACK_HOLD);
    }

    /// Job `ticket` is done on `node`: its entry, unless it was done already (a job sent
    /// again after its node was taken for lost, whose first run finished after all).
    pub(crate) fn complete(&mut self, ticket: u64, node: &str, load: u32) -> Option<Entry> {
        if let Some(p) = self.table.get_mut(node) {
            p.load = load;
        }
        self.nacked.remove(node);
        self.unassign(ticket);
        let entry = self.ledger.remove(&ticket);
        if entry.is_none() {
            self.duplicates += 1;
        }
        entry
    }

    /// `node` died or left the ecosystem: every job sent there and not done waits again,
    /// ahead of new ones. Returns how many.
    pub(crate) fn node_down(&mut self, node: &str) -> usize {
        self.down.insert(node.to_owned());
        let mut lost: Vec<u64> = self
            .ledger
            .iter()
            .filter(|(_, e)| e.node.as_deref() == Some(node))
            .map(|(t, _)| *t)
            .collect();
        // Oldest first, ahead of what waits already.
        lost.sort_unstable();
        for t in lost.iter().rev() {
            self.unassign(*t);
            self.pending.push_front(*t);
        }
        self.mine.remove(node);
        self.requeued += lost.len() as u64;
        lost.len()
    }

    /// `node`'s part `part` shut down (it said `Bye`): as [`Dispatch::node_down`], until a
    /// table shows another part of it.
    pub(crate) fn part_gone(&mut self, node: &str, part: u64) -> usize {
        self.gone.insert(node.to_owned(), part);
        self.node_down(node)
    }

    /// `node` is up again (a new incarnation): it may be given jobs once the table has it.
    pub(crate) fn node_up(&mut self, node: &str) {
        self.down.remove(node);
    }

    /// Drops every entry of run `run` (failed, timed out or abandoned).
    pub(crate) fn cancel_run(&mut self, run: &Arc<RunShared>) {
        let gone: Vec<u64> = self
            .ledger
            .iter()
            .filter(|(_, e)| matches!(&e.sink, Sink::Run(r, _) if Arc::ptr_eq(r, run)))
            .map(|(t, _)| *t)
            .collect();
        for t in gone {
            self.unassign(t);
            self.ledger.remove(&t);
        }
    }

    /// Every entry, for a shutdown.
    pub(crate) fn take_all(&mut self) -> Vec<Entry> {
        self.pending.clear();
        self.mine.clear();
        self.ledger.drain().map(|(_, e)| e).collect()
    }

    /// Jobs kept (sent and not done, or waiting to be sent).
    pub(crate) fn outstanding(&self) -> usize {
        self.ledger.len()
    }

    /// Jobs waiting to be sent.
    pub(crate) fn waiting(&self) -> usize {
        self.pending
            .iter()
            .filter(|t| self.ledger.get(t).is_some_and(|e| e.node.is_none()))
            .count()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table(d: &mut Dispatch, lines: &[(&str, u32)]) {
        let lines: Vec<Line> = lines
            .iter()
            .map(|(n, w)| Line {
                node: (*n).to_owned(),
                workers: *w,
                load: 0,
                part: 1,
            })
            .collect();
        d.set_table(&lines, 0);
    }

    fn job(d: &mut Dispatch, ticket: u64) {
        let (tx, _rx) = oneshot::channel();
        let body = Arc::new(Body {
            kind: "k".into(),
            reduce: None,
            items: vec![vec![1]],
        });
        d.add(ticket, body, Sink::One(tx));
    }

    #[test]
    fn jobs_go_to_the_least_loaded_node_and_stop_at_capacity() {
        let mut d = Dispatch::new(2);
        table(&mut d, &[("a", 1), ("b", 1), ("c", 0)]);
        let now = Instant::now();
        for t in 0..8 {
            job(&mut d, t);
        }
        let mut sent = Vec::new();
        while let Some((_, node, _)) = d.next_send(now) {
            sent.push(node);
        }
        // Capacity 2 plus 1 worker each on a and b; c runs no workers.
        assert_eq!(sent.iter().filter(|n| *n == "a").count(), 3);
        assert_eq!(sent.iter().filter(|n| *n == "b").count(), 3);
        assert_eq!(d.waiting(), 2);
        assert!(!d.has_room(now));
        assert!(d.complete(0, "a", 0).is_some());
        assert_eq!(
            d.next_send(now).map(|(t, n, _)| (t, n)),
            Some((6, "a".into()))
        );
    }

    #[test]
    fn a_dead_nodes_jobs_wait_again_first_and_a_late_result_is_a_duplicate() {
        let mut d = Dispatch::new(10);
        table(&mut d, &[("a", 1), ("b", 1)]);
        let now = Instant::now();
        for t in 0..4 {
            job(&mut d, t);
        }
        let mut on_b = Vec::new();
        while let Some((t, node, _)) = d.next_send(now) {
            if node == "b" {
                on_b.push(t);
            }
        }
        assert_eq!(on_b.len(), 2);
        assert_eq!(d.node_down("b"), 2);
        assert_eq!(d.requeued, 2);
        let again: Vec<(u64, String)> =
            std::iter::from_fn(|| d.next_send(now).map(|(t, n, _)| (t, n))).collect();
        assert_eq!(
            again,
            on_b.iter()
                .map(|t| (*t, "a".to_owned()))
                .collect::<Vec<_>>()
        );
        // b's first run finished after all: the first result counts, the second is a
        // duplicate.
        assert!(d.complete(on_b[0], "b", 0).is_some());
        assert!(d.complete(on_b[0], "a", 0).is_none());
        assert_eq!(d.duplicates, 1);
        // a's two own jobs and the re-sent one not done yet.
        assert_eq!(d.mine("a"), 3);
    }

    #[test]
    fn a_part_that_said_bye_is_used_again_once_started_again() {
        let mut d = Dispatch::new(10);
        table(&mut d, &[("a", 1), ("b", 1)]);
        assert_eq!(d.part_gone("b", 1), 0);
        assert_eq!(d.peers().len(), 1);
        // A table still showing the part that left changes nothing.
        table(&mut d, &[("a", 1), ("b", 1)]);
        assert_eq!(d.peers().len(), 1);
        let restarted = [
            Line {
                node: "a".into(),
                workers: 1,
                load: 0,
                part: 1,
            },
            Line {
                node: "b".into(),
                workers: 1,
                load: 0,
                part: 2,
            },
        ];
        d.set_table(&restarted, 0);
        assert_eq!(d.peers().len(), 2);
    }

    #[test]
    fn a_refusal_passes_the_node_over_for_a_moment() {
        let mut d = Dispatch::new(10);
        table(&mut d, &[("a", 1), ("b", 1)]);
        let now = Instant::now();
        job(&mut d, 1);
        let (t, first, _) = d.next_send(now).unwrap();
        d.nack(t, &first, 3, now);
        let (t2, second, _) = d.next_send(now).unwrap();
        assert_eq!(t2, 1);
        assert_ne!(first, second);
        // After the hold, the refusing node may be picked again.
        d.nack(t2, &second, 3, now);
        assert!(d.next_send(now).is_none());
        assert!(d.next_send(now + NACK_HOLD * 2).is_some());
    }
}
