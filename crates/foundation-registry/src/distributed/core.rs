//! The supervisor's loop on one node: it follows membership and the peers' records, runs
//! the planner after every change, and carries out this node's part of the plan.
//!
//! # Locking
//!
//! `Inner::state` (records, peers, quorum bookkeeping) is a mutex held only for short,
//! synchronous steps; starts and stops of local instances (which await) run in the loop
//! task without it. Only the loop task changes `Inner::local`, so a plan is carried out
//! one action at a time, in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use foundation_actors::{
    Addr, RemoteMessage, Strategy, Supervisor, SupervisorEvent, SupervisorSpec,
};
use foundation_cluster::membership::{DownReason, Status};
use foundation_cluster::node::{CONTROL, ClusterEvent, Node};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::handoff::{Gate, Seed};
use super::moves::{CkptOut, Out, Routes, Stored};
use super::table::{ExitWire, Record, Removal, Table};
use super::wire::{DsupMsg, Rest, Window, Wire};
use super::{ChildName, DistributedEvent, DistributedSpec, Fence};
use crate::ClusterRegistry;
use crate::cluster::{RegisterError, lock};
use crate::placement::{
    Action, Child, Distribution, Exit, NodeInfo, Outcome, PendingReason, Placement, Planner,
    QuorumError, QuorumLoss, StartCause, Verdict, View,
};

/// What the loop is told.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// A peer's message.
    Wire(Wire),
    /// A local instance ended on its own (its local supervisor will not restart it).
    Ended { id: String, serial: u64, exit: Exit },
    /// A local instance was restarted by its local supervisor.
    Restarted { id: String, serial: u64 },
    /// Member `node`'s incarnation `incarnation`, down after its connection closed, is
    /// gone for good: its address refuses connections (no process listens there).
    Dead { node: String, incarnation: u64 },
    /// A rebalance asked for here.
    Rebalance,
    /// Shut this node's part down (from the loop, so no plan runs meanwhile); answer when
    /// done. Graceful: children that can are handed off first.
    Close(tokio::sync::oneshot::Sender<()>),
    /// Strict mode: this node lost the lease of child `id` granted with `token`.
    LeaseLost { id: String, token: u64 },
    /// `migrate` called here for a child running here.
    Migrate { id: String, to: String, req: u64 },
}

/// A peer running the same supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) incarnation: u64,
    pub(crate) roles: BTreeSet<String>,
    pub(crate) leaving: bool,
}

/// An instance running here, under its own local supervisor.
pub(crate) struct LocalChild<M> {
    pub(crate) serial: u64,
    pub(crate) created: super::table::Stamp,
    pub(crate) sup: Supervisor,
    pub(crate) addr: Addr<M>,
    pub(crate) watcher: JoinHandle<()>,
    /// What it shares with this loop: its seed, checkpoints, final state.
    pub(crate) gate: Arc<Gate>,
    /// The lease's token the instance runs under (strict mode), as its child reads it.
    pub(crate) fence: Fence,
}

/// A caller waiting for a child's start ([`Inner::waiting`]): woken by the loop when a
/// start of it here is carried out; unregistered when dropped.
pub(crate) struct Waiting<'a, M: RemoteMessage> {
    inner: &'a Inner<M>,
    id: String,
    notify: Arc<Notify>,
}

impl<M: RemoteMessage> Waiting<'_, M> {
    /// Until the loop says a start was carried out (at once if it said so meanwhile).
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }
}

impl<M: RemoteMessage> Drop for Waiting<'_, M> {
    fn drop(&mut self) {
        let mut waiters = lock(&self.inner.waiters);
        if let Some(all) = waiters.get_mut(&self.id) {
            all.retain(|n| !Arc::ptr_eq(n, &self.notify));
            if all.is_empty() {
                waiters.remove(&self.id);
            }
        }
    }
}

/// An instance just started: its local supervisor, its address, the supervisor's events,
/// its gate.
pub(crate) type Started<M> = (
    Supervisor,
    Addr<M>,
    broadcast::Receiver<SupervisorEvent>,
    Arc<Gate>,
);

/// How far this node and a peer have had each other's changes.
#[derive(Debug, Clone)]
pub(crate) struct PeerSync {
    /// The peer's incarnation this is about: a new one starts afresh.
    incarnation: u64,
    /// The peer's table, as its last message said.
    table: Option<u64>,
    /// The peer's table, and the number of its changes merged here without a gap.
    theirs: Option<(u64, u64)>,
    /// How far this node's changes have been sent to the peer, and when the oldest of the
    /// windows not yet acknowledged (in the peer's hello) was sent.
    sent: Option<(u64, Instant)>,
}

pub(crate) struct State {
    pub(crate) table: Table,
    pub(crate) peers: BTreeMap<String, Peer>,
    /// Each peer's exchange of changes with this node, kept while the peer is away (a
    /// partition) so that its return costs only what changed meanwhile.
    sync: BTreeMap<String, PeerSync>,
    /// The last stable membership (names and incarnations), this node included.
    stable: BTreeMap<String, u64>,
    /// Members of `stable` lost without a graceful leave, with when they were last heard.
    missing: BTreeMap<String, Instant>,
    /// Children that cannot run anywhere now, as the last plan said.
    pub(crate) pending: BTreeMap<String, PendingReason>,
    quorum_lost: Option<QuorumLoss>,
    /// The quorum policy cannot keep its promise in the stable membership (reported once
    /// per change).
    quorum_invalid: Option<QuorumError>,
    /// The members this node has seen go down (name, incarnation).
    downs: BTreeSet<(String, u64)>,
    /// Members whose records this node waits for before it starts anything, as it may be
    /// behind them (young, back from a partition; see `PROTOCOL.md`, "Catching up"): no
    /// starts until each has sent a whole window (or until `awaiting_until`).
    awaiting: BTreeSet<String>,
    awaiting_until: Option<Instant>,
    /// The members (name, incarnation) whose records have arrived here whole since they
    /// came up as this node saw it: a young node does not wait for them again.
    synced: BTreeSet<(String, u64)>,
    /// A rebalance was asked for: the next plan is `Planner::rebalance`.
    rebalance: bool,
    /// Records changed here whose sending to the peers waits for the end of the loop's
    /// pass: a start answers its caller first, and a record changed twice in one pass
    /// (created, then its instance recorded) goes once.
    pub(crate) outbox: BTreeSet<String>,
    /// The next plan looks at every live child, not only those whose records changed:
    /// set by what may change any child's placement (membership, peers, quorum, wake
    /// timers, the periodic resync). See `reconcile`.
    plan_all: bool,
    /// Members that left gracefully without their supervisor's bye (yet): their
    /// instances are not failed over before this instant.
    left: BTreeMap<String, Instant>,
    serial: u64,
    pub(crate) closed: bool,
    /// When the loop must plan again without an event (a failover's start_after, a retry).
    pub(crate) wake: Option<Instant>,
    /// Moves away from this node in progress.
    pub(crate) out: BTreeMap<String, Out>,
    /// Peers whose supervisor said it is shutting down gracefully.
    pub(crate) leavers: BTreeSet<String>,
    /// This node's part is shutting down gracefully: its children move away, and it
    /// answers `closing` when they have (or at its deadline).
    closing: Option<(tokio::sync::oneshot::Sender<()>, Instant)>,
}

pub(crate) struct Inner<M: RemoteMessage> {
    pub(crate) node: Node,
    pub(crate) me: String,
    pub(crate) incarnation: u64,
    /// When this node's part started: the join grace is measured from it.
    started: Instant,
    pub(crate) service: String,
    pub(crate) registry: ClusterRegistry<ChildName, M>,
    pub(crate) spec: DistributedSpec<M>,
    planner: Planner<Arc<dyn Distribution>>,
    pub(crate) state: Mutex<State>,
    pub(crate) local: Mutex<HashMap<String, LocalChild<M>>>,
    pub(crate) cmds: mpsc::Sender<Cmd>,
    /// Wakes the loop for a plan (a child placed or removed here): a permit is kept
    /// while the loop is busy, so a wakeup is never lost, and the caller never waits.
    pub(crate) kick: Arc<Notify>,
    /// Callers waiting for a child's start, by id: told by the loop as soon as a start of
    /// it here is carried out (named and recorded), before the pass ends.
    waiters: Mutex<HashMap<String, Vec<Arc<Notify>>>>,
    /// Bumped after every plan: what start_child and terminate_child wait on.
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) events: broadcast::Sender<DistributedEvent>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) receiver: Mutex<Option<Addr<DsupMsg>>>,
    /// Sends held while children move, and where moved children answer.
    pub(crate) routes: Mutex<Routes<M>>,
    /// Checkpoints kept here (this node's children's and copies of others').
    pub(crate) checkpoints: Mutex<HashMap<String, Stored>>,
    /// Checkpoints made here, to replicate.
    pub(crate) ckpt_out: Arc<CkptOut>,
    /// `migrate` requests made here that failed, by number.
    pub(crate) failed_moves: Mutex<HashMap<u64, String>>,
    pub(crate) next_req: std::sync::atomic::AtomicU64,
    /// The node's leave hook that shuts this part down gracefully first.
    pub(crate) leave_hook: Mutex<Option<foundation_cluster::node::LeaveHookId>>,
}

/// Records per message: a window goes in batches, each well within a frame (the
/// node's `max_frame`, 8 MiB by default) unless the children's arguments are large.
const RECORDS_PER_MESSAGE: usize = 128;

/// Records per window answering a hello: a peer far behind asks for the next one when
/// it has this one.
const RECORDS_PER_WINDOW: usize = 8 * RECORDS_PER_MESSAGE;

/// How soon a lost member's address is asked again while it still accepts connections:
/// first after `PROBE_FIRST`, then twice as long each time, up to `PROBE_MOST`.
const PROBE_FIRST: Duration = Duration::from_millis(10);
const PROBE_MOST: Duration = Duration::from_millis(200);

/// How soon a start whose name is still held is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// Milliseconds on the wall clock: move-intensity windows are measured on it.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<M: RemoteMessage> Inner<M> {
    pub(crate) fn new(
        node: &Node,
        registry: &ClusterRegistry<ChildName, M>,
        spec: DistributedSpec<M>,
        cmds: mpsc::Sender<Cmd>,
    ) -> Self {
        let me = node.name().to_owned();
        let incarnation = node.incarnation();
        let mut stable = BTreeMap::new();
        stable.insert(me.clone(), incarnation);
        Self {
            node: node.clone(),
            started: Instant::now(),
            service: format!("$dsup/{}", spec.name),
            registry: registry.clone(),
            planner: Planner::new(spec.distribution.clone()),
            spec,
            state: Mutex::new(State {
                table: Table::new(&me),
                peers: BTreeMap::new(),
                sync: BTreeMap::new(),
                stable,
                missing: BTreeMap::new(),
                pending: BTreeMap::new(),
                quorum_lost: None,
                quorum_invalid: None,
                downs: BTreeSet::new(),
                awaiting: BTreeSet::new(),
                awaiting_until: None,
                synced: BTreeSet::new(),
                rebalance: false,
                plan_all: true,
                outbox: BTreeSet::new(),
                left: BTreeMap::new(),
                serial: 0,
                closed: false,
                wake: None,
                out: BTreeMap::new(),
                leavers: BTreeSet::new(),
                closing: None,
            }),
            me,
            incarnation,
            local: Mutex::new(HashMap::new()),
            cmds,
            kick: Arc::new(Notify::new()),
            waiters: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            events: broadcast::channel(1024).0,
            tasks: Mutex::new(Vec::new()),
            receiver: Mutex::new(None),
            routes: Mutex::new(Routes::default()),
            checkpoints: Mutex::new(HashMap::new()),
            ckpt_out: Arc::new(CkptOut::default()),
            failed_moves: Mutex::new(HashMap::new()),
            next_req: std::sync::atomic::AtomicU64::new(0),
            leave_hook: Mutex::new(None),
        }
    }

    /// The live members running this supervisor, this node included, as the planner
    /// sees them.
    pub(crate) fn view(&self, st: &State) -> View {
        let mut view = View::new();
        let mut mine = NodeInfo::new(self.me.clone(), self.incarnation);
        mine.roles = self.spec.roles.clone();
        mine.leaving = st.closing.is_some();
        view.insert(mine);
        for (name, peer) in &st.peers {
            let mut info = NodeInfo::new(name.clone(), peer.incarnation);
            info.roles = peer.roles.clone();
            info.leaving = peer.leaving || st.leavers.contains(name);
            view.insert(info);
        }
        // A live member whose instances the records show runs this supervisor, even
        // before its hello arrives here: without this, a node that just joined would
        // take the instances of the peers it has not heard from yet for lost.
        // The table keeps the nodes its live records show instances on (largest
        // incarnation first per node): no pass over the records.
        let young = self.young();
        let mut members: Option<HashMap<String, (u64, bool)>> = None;
        for (name, incarnation, _) in st.table.hosts() {
            if view.contains(name) {
                continue;
            }
            let members = members.get_or_insert_with(|| {
                self.node
                    .members()
                    .into_iter()
                    .map(|m| (m.id, (m.incarnation, m.status == Status::Leaving)))
                    .collect()
            });
            match members.get(name) {
                Some((live, leaving)) if *live == incarnation => {
                    let mut info = NodeInfo::new(name.to_owned(), incarnation);
                    info.leaving = *leaving;
                    view.insert(info);
                }
                // Not a member here (yet): while this node is new, a node it has not
                // seen go down may simply not have reached it yet; it counts as live
                // until the join grace (silence + margin) is over.
                None if young && !st.downs.contains(&(name.to_owned(), incarnation)) => {
                    view.insert(NodeInfo::new(name.to_owned(), incarnation));
                }
                _ => {}
            }
        }
        view
    }

    /// Whether this node's part started less than `silence + margin` ago: its join grace,
    /// while it may not yet have heard of every member running the supervisor.
    pub(crate) fn young(&self) -> bool {
        self.started.elapsed() < self.spec.timing.silence + self.spec.timing.margin
    }

    /// Whether this node is catching up: it holds its starts until members' records have
    /// arrived (`State::awaiting`), and that wait has not run out.
    pub(crate) fn catching_up(st: &State, now: Instant) -> bool {
        !st.awaiting.is_empty() && st.awaiting_until.is_some_and(|until| now < until)
    }

    /// Holds this node's starts until `member`'s records have arrived here (its window,
    /// whole and `Done`), or at most until `until`: a member that never answers does not
    /// run the supervisor, or is cut off again.
    pub(crate) fn await_records(&self, st: &mut State, member: &str, until: Instant) {
        if member == self.me {
            return;
        }
        st.awaiting.insert(member.to_owned());
        st.awaiting_until = Some(st.awaiting_until.map_or(until, |u| u.max(until)));
    }

    /// `silence + margin` after `now`: how long records are waited for at most.
    fn records_due(&self, now: Instant) -> Instant {
        now + self.spec.timing.silence + self.spec.timing.margin
    }

    /// A young node holds its starts until it has the records of every member that is up
    /// and not yet caught up with (called at the supervisor's start and before a child is
    /// placed here, so that a member the node layer knows and the loop has not heard of
    /// yet is waited for too). Returns whether this node is catching up now.
    pub(crate) fn await_members(&self, st: &mut State) -> bool {
        let now = Instant::now();
        if self.young() {
            // At most until the join grace is over.
            let until = self.records_due(self.started);
            for member in self.node.members() {
                let up = member.status == Status::Up || member.status == Status::Leaving;
                let caught_up = st.synced.contains(&(member.id.clone(), member.incarnation));
                if up && !caught_up {
                    self.await_records(st, &member.id, until);
                }
            }
        }
        Self::catching_up(st, now)
    }

    fn send(&self, peer: &str, wire: Wire) {
        if let Err(e) = self
            .node
            .send_on(CONTROL, peer, &self.service, &DsupMsg(wire))
        {
            tracing::debug!(peer, service = %self.service, error = %e, "supervisor sync not sent");
        }
    }

    /// Sends changed records to every peer.
    pub(crate) fn broadcast(&self, st: &State, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        for peer in st.peers.keys() {
            self.send_records(peer, st.table.id(), &records);
        }
    }

    /// Sends records to `peer`, in batches small enough for a frame.
    fn send_records(&self, peer: &str, table: u64, records: &[Record]) {
        for batch in records.chunks(RECORDS_PER_MESSAGE) {
            self.send(
                peer,
                Wire::Records {
                    from: self.me.clone(),
                    table,
                    records: batch.to_vec(),
                    window: None,
                },
            );
        }
    }

    /// The sync state of `peer` (incarnation `incarnation`), afresh for a new incarnation.
    fn peer_sync<'a>(st: &'a mut State, peer: &str, incarnation: u64) -> &'a mut PeerSync {
        let sync = st.sync.entry(peer.to_owned()).or_insert_with(|| PeerSync {
            incarnation,
            table: None,
            theirs: None,
            sent: None,
        });
        if sync.incarnation != incarnation {
            *sync = PeerSync {
                incarnation,
                table: None,
                theirs: None,
                sent: None,
            };
        }
        sync
    }

    /// Answers `peer`'s hello: the next window of this node's changes after `have` (what
    /// the peer says it has of them), in batches.
    ///
    /// A window already sent and not yet acknowledged is not sent again: the next one
    /// follows it, unless the oldest unacknowledged window went out more than three
    /// `sync_every` ago (then it was lost: everything after `have` is sent again).
    fn send_window(&self, st: &mut State, peer: &str, incarnation: u64, have: Option<(u64, u64)>) {
        let (table, seq) = (st.table.id(), st.table.seq());
        let have = match have {
            Some((t, n)) if t == table => n.min(seq),
            _ => 0,
        };
        let now = Instant::now();
        let resend = self.spec.sync_every.saturating_mul(3);
        let sync = Self::peer_sync(st, peer, incarnation);
        let theirs = sync.table;
        let (after, first_sent) = match sync.sent {
            Some((sent, at)) if have < sent && now.saturating_duration_since(at) < resend => {
                (sent, at)
            }
            _ => (have, now),
        };
        let source = theirs.map(|table| (peer, table));
        let window = st.table.since(after, source, RECORDS_PER_WINDOW);
        let more = window.len() == RECORDS_PER_WINDOW;
        let upto = match window.last() {
            Some((last, _)) if more => *last,
            _ => seq,
        };
        Self::peer_sync(st, peer, incarnation).sent = Some((upto, first_sent));
        // Nothing changed: one empty batch, which still acknowledges up to `upto`.
        let mut batches: Vec<&[(u64, Record)]> = window.chunks(RECORDS_PER_MESSAGE).collect();
        if batches.is_empty() {
            batches.push(&[]);
        }
        let mut lo = after;
        for (i, batch) in batches.iter().enumerate() {
            let last = i + 1 == batches.len();
            let hi = match batch.last() {
                Some((n, _)) if !last => *n,
                _ => upto,
            };
            let rest = match (last, more) {
                (false, _) => Rest::Batch,
                (true, false) => Rest::Done,
                (true, true) => Rest::More,
            };
            let window = Window {
                after: lo,
                upto: hi,
                rest,
            };
            self.send(
                peer,
                Wire::Records {
                    from: self.me.clone(),
                    table,
                    records: batch.iter().map(|(_, r)| r.clone()).collect(),
                    window: Some(window),
                },
            );
            lo = hi;
        }
    }

    fn hello(&self, st: &State, peer: &str, reply: bool) {
        let have = st.sync.get(peer).and_then(|s| s.theirs);
        self.send(
            peer,
            Wire::Hello {
                from: self.me.clone(),
                incarnation: self.incarnation,
                roles: self.spec.roles.iter().cloned().collect(),
                digest: st.table.digest(),
                reply,
                table: st.table.id(),
                have,
            },
        );
    }

    /// Asks every peer, and this node, for a rebalance.
    pub(crate) fn rebalance_all(&self) {
        let st = lock(&self.state);
        for peer in st.peers.keys() {
            self.send(peer, Wire::Rebalance);
        }
    }

    /// Hellos to every member (those not running this supervisor ignore them: nothing is
    /// exported under its name there).
    pub(crate) fn hello_all(&self) {
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        st.table.prune(Instant::now(), self.spec.tombstone_ttl);
        for member in self.node.members() {
            if member.status == Status::Up || member.status == Status::Leaving {
                self.hello(&st, &member.id, !st.peers.contains_key(&member.id));
            }
        }
    }

    pub(crate) fn emit(&self, event: DistributedEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// A peer's message, a local exit, or a kick.
    pub(crate) async fn on_cmd(&self, cmd: Cmd) {
        match cmd {
            Cmd::Wire(Wire::Hello {
                from,
                incarnation,
                roles,
                digest,
                reply,
                table,
                have,
            }) => {
                let live = self.node.members().into_iter().find(|m| m.id == from);
                let Some(member) = live.filter(|m| m.incarnation == incarnation) else {
                    // Not (or no longer) a member as this node sees it: its NodeUp will
                    // bring a hello from here.
                    return;
                };
                let mut st = lock(&self.state);
                let known = st
                    .peers
                    .get(&from)
                    .is_some_and(|p| p.incarnation == incarnation);
                let peer = Peer {
                    incarnation,
                    roles: roles.into_iter().collect(),
                    leaving: member.status == Status::Leaving,
                };
                let same = st.peers.get(&from).is_some_and(|p| {
                    p.incarnation == peer.incarnation
                        && p.roles == peer.roles
                        && p.leaving == peer.leaving
                });
                if !same {
                    // A new peer, or one that changed: every child's placement may move.
                    st.plan_all = true;
                }
                st.peers.insert(from.clone(), peer);
                // A new table there (its supervisor started again): its count restarts,
                // and it holds nothing of what its last table sent.
                let sync = Self::peer_sync(&mut st, &from, incarnation);
                if sync.table != Some(table) {
                    sync.table = Some(table);
                    sync.theirs = None;
                    sync.sent = None;
                }
                // A member lost to a partition is back. Until its records are here, this
                // node's may be stale (its side ran on): no starts meanwhile. The hello
                // below brings its window.
                let mut ask = !known || reply;
                if st.missing.remove(&from).is_some() && digest != st.table.digest() {
                    st.plan_all = true;
                    self.await_records(&mut st, &from, self.records_due(Instant::now()));
                    ask = true;
                }
                if ask {
                    self.hello(&st, &from, !known);
                }
                self.send_window(&mut st, &from, incarnation, have);
            }
            Cmd::Wire(Wire::Records {
                from,
                table,
                records,
                window,
            }) => {
                let mut st = lock(&self.state);
                st.table.merge_from(Some((&from, table)), records);
                let Some(window) = window else {
                    return;
                };
                let Some(incarnation) = st.peers.get(&from).map(|p| p.incarnation) else {
                    return;
                };
                let sync = Self::peer_sync(&mut st, &from, incarnation);
                if sync.table != Some(table) {
                    // Not the table its last hello named: that hello brings its window.
                    return;
                }
                let had = match sync.theirs {
                    Some((t, n)) if t == table => n,
                    _ => 0,
                };
                // Counted only without a gap: a lost batch is sent again.
                let whole = had >= window.after;
                if whole {
                    sync.theirs = Some((table, had.max(window.upto)));
                }
                match window.rest {
                    Rest::Batch => {}
                    Rest::Done => {
                        if whole {
                            st.synced.insert((from.clone(), incarnation));
                            if st.awaiting.remove(&from) {
                                // Starts held while its records were awaited may go now.
                                st.plan_all = true;
                            }
                        }
                    }
                    Rest::More => {
                        if whole {
                            self.hello(&st, &from, false);
                        }
                    }
                }
            }
            Cmd::Wire(Wire::Bye { from }) => {
                let mut st = lock(&self.state);
                st.plan_all = true;
                st.leavers.remove(&from);
                st.left.remove(&from);
                st.awaiting.remove(&from);
                st.synced.retain(|(n, _)| *n != from);
                st.peers.remove(&from);
                st.sync.remove(&from);
                st.stable.remove(&from);
                st.missing.remove(&from);
            }
            Cmd::Ended { id, serial, exit } => self.ended(&id, serial, exit).await,
            Cmd::Restarted { id, serial } => {
                let mine = lock(&self.local)
                    .get(&id)
                    .is_some_and(|l| l.serial == serial);
                if mine {
                    let mut st = lock(&self.state);
                    let rec = st.table.write_slot(&id, &self.me, |s, _| s.restarts += 1);
                    self.broadcast(&st, rec.into_iter().collect());
                }
            }
            Cmd::Wire(Wire::Rebalance) | Cmd::Rebalance => {
                let mut st = lock(&self.state);
                st.rebalance = true;
                st.plan_all = true;
            }
            Cmd::Close(done) => {
                // Graceful: every child that can is handed off first (the plan sees this
                // node leaving); the answer comes when none is left here, or at the
                // deadline (see `finish_close`).
                let deadline = Instant::now() + self.spec.start_timeout;
                let mut st = lock(&self.state);
                if st.closed {
                    let _ = done.send(());
                    return;
                }
                st.closing = Some((done, deadline));
                st.plan_all = true;
                st.wake = Some(st.wake.map_or(deadline, |w| w.min(deadline)));
                for peer in st.peers.keys() {
                    self.send(
                        peer,
                        Wire::Leaving {
                            from: self.me.clone(),
                        },
                    );
                }
            }
            Cmd::Dead { node, incarnation } => {
                let back = self.node.members().into_iter().any(|m| {
                    m.id == node
                        && m.incarnation == incarnation
                        && !matches!(m.status, Status::Down(_))
                });
                let mut st = lock(&self.state);
                st.plan_all = true;
                let lost =
                    st.stable.get(&node) == Some(&incarnation) && st.missing.contains_key(&node);
                if lost && !back {
                    tracing::info!(supervisor = %self.spec.name, %node, "a lost member's address refuses connections: gone, not cut off");
                    st.missing.remove(&node);
                    st.stable.remove(&node);
                }
            }
            Cmd::LeaseLost { id, token } => {
                lock(&self.state).table.mark_dirty(&id);
                let held = lock(&self.local)
                    .get(&id)
                    .is_some_and(|l| l.fence.token() == Some(token));
                if held {
                    if let Some(l) = lock(&self.local).get(&id) {
                        l.fence.clear();
                    }
                    self.stop_local(&id, &format!("lease lost (fencing token {token})"))
                        .await;
                    self.clear_slot(&id);
                }
            }
            Cmd::Migrate { id, to, req } => {
                self.plan_all();
                self.hand_off(&id, &to, Some((self.me.clone(), req))).await;
            }
            Cmd::Wire(wire) => {
                // Moves are rare and touch the plan's view of a child from several
                // sides (holds, `out`, the records): every child is planned again.
                self.plan_all();
                self.on_move(wire).await;
            }
        }
    }

    /// A membership event of the node.
    pub(crate) fn on_cluster(&self, event: ClusterEvent) {
        self.plan_all();
        match event {
            ClusterEvent::NodeUp(member) => {
                let mut st = lock(&self.state);
                if st
                    .peers
                    .get(&member.id)
                    .is_some_and(|p| p.incarnation != member.incarnation)
                {
                    st.peers.remove(&member.id);
                }
                // Up again (or for the first time) as this node sees it: whatever this
                // node had of its records may be behind. A node that is young, or
                // catching up after a partition, waits for them before it starts
                // anything (see `reconcile`).
                st.synced.retain(|(n, _)| *n != member.id);
                let now = Instant::now();
                if self.young() || Self::catching_up(&st, now) {
                    self.await_records(&mut st, &member.id, self.records_due(now));
                }
                self.hello(&st, &member.id, true);
            }
            ClusterEvent::NodeLeaving(member) => {
                let mut st = lock(&self.state);
                if let Some(peer) = st.peers.get_mut(&member.id) {
                    peer.leaving = true;
                }
            }
            ClusterEvent::NodeDown { member, reason } => {
                let now = Instant::now();
                let mut st = lock(&self.state);
                st.leavers.remove(&member.id);
                st.awaiting.remove(&member.id);
                st.synced.retain(|(n, _)| *n != member.id);
                st.downs.insert((member.id.clone(), member.incarnation));
                if st
                    .peers
                    .get(&member.id)
                    .is_some_and(|p| p.incarnation == member.incarnation)
                {
                    st.peers.remove(&member.id);
                }
                if !st.stable.contains_key(&member.id) {
                    return;
                }
                match reason {
                    // Gone for good: not a partition. Its supervisor's last records and
                    // bye (it was still in the stable membership, so no bye came yet)
                    // may still be on their way behind this event: its instances are not
                    // failed over before they had time to arrive.
                    DownReason::Left => {
                        st.stable.remove(&member.id);
                        st.left
                            .insert(member.id.clone(), now + self.spec.timing.silence);
                    }
                    // Back as a new incarnation: not a partition.
                    DownReason::Restarted => {
                        st.stable.remove(&member.id);
                    }
                    // Declared down after the silence limit: last heard that long ago. This
                    // is `T_W` of the timing argument (`placement`'s module docs): a
                    // detection that comes late moves it, and the start, later (safe).
                    DownReason::Silent => {
                        let heard = now.checked_sub(self.spec.timing.silence).unwrap_or(now);
                        st.missing.insert(member.id, heard);
                    }
                    // Its connection closed: a killed process, or a cut that looks like
                    // one. A partition until proved otherwise; the probe may prove it.
                    _ => {
                        if self.spec.probe_closed {
                            self.probe(&member.id, member.incarnation, &member.addr);
                        }
                        st.missing.insert(member.id, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// Asks the kernel of a member's host whether the member's process is still there:
    /// if its address refuses a connection, nothing listens on it, so the process that
    /// did is gone (a process that holds its listener until it ends; a paused process's
    /// listener still accepts). The loop is told (`Cmd::Dead`), and the member's
    /// instances are started elsewhere without waiting `silence + margin`: no instance
    /// can be running there. A timeout (a cut network, a host down) proves nothing: the
    /// member stays missing. An accepted connection, or another error (a reset, a
    /// transient failure), proves nothing either, and is not the last word: a killed
    /// process's connections may close a moment before its listener does, so the address
    /// is asked again (after 10 ms, then twice as long each time, at most 200 ms apart)
    /// until it refuses, the member is back, or `silence` has passed.
    fn probe(&self, node: &str, incarnation: u64, addr: &str) {
        let (cmds, node, addr) = (self.cmds.clone(), node.to_owned(), addr.to_owned());
        let cluster = self.node.clone();
        let until = tokio::time::Instant::now() + self.spec.timing.silence;
        let task = tokio::spawn(async move {
            let mut pause = PROBE_FIRST;
            loop {
                let got =
                    tokio::time::timeout_at(until, tokio::net::TcpStream::connect(&addr)).await;
                match got {
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        // The loop may have ended: nothing to tell then.
                        let _ = cmds.send(Cmd::Dead { node, incarnation }).await;
                        return;
                    }
                    // Accepted, or another error (a reset, a transient failure of the
                    // local stack): proves nothing, and is not the last word either.
                    Ok(Ok(_) | Err(_)) => {}
                    // Timed out at `until`: the member stays missing.
                    Err(_) => return,
                }
                let back = cluster.members().into_iter().any(|m| {
                    m.id == node
                        && m.incarnation >= incarnation
                        && !matches!(m.status, Status::Down(_))
                });
                if back || tokio::time::Instant::now() + pause >= until {
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(PROBE_MOST);
            }
        });
        self.keep_task(task);
    }

    /// Keeps a task of this supervisor's (aborted with it), dropping those that finished.
    fn keep_task(&self, task: JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Brings the peers in line with the node's members after missed events.
    pub(crate) fn resync(&self) {
        let members: HashMap<String, u64> = self
            .node
            .members()
            .into_iter()
            .map(|m| (m.id, m.incarnation))
            .collect();
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.plan_all = true;
        let gone: Vec<String> = st
            .peers
            .iter()
            .filter(|(n, p)| members.get(*n) != Some(&p.incarnation))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            st.peers.remove(&name);
            if st.stable.contains_key(&name) {
                st.missing.insert(name, now);
            }
        }
        drop(st);
        self.hello_all();
    }

    /// A local instance ended on its own.
    async fn ended(&self, id: &str, serial: u64, exit: Exit) {
        let taken = {
            let mut local = lock(&self.local);
            match local.get(id) {
                Some(l) if l.serial == serial => local.remove(id),
                _ => None,
            }
        };
        let Some(child) = taken else {
            return;
        };
        child.watcher.abort();
        self.registry.unregister(&self.name_of(id));
        child.sup.shutdown().await;
        let mut st = lock(&self.state);
        let rec = st.table.write_slot(id, &self.me, |s, at| {
            s.instance = None;
            s.ended = Some((at.clone(), ExitWire::from(exit)));
        });
        self.broadcast(&st, rec.into_iter().collect());
        drop(st);
        self.emit(DistributedEvent::Ended {
            child: id.to_owned(),
            exit,
        });
    }

    /// The name this node's instance of `id` is registered under.
    pub(crate) fn name_of(&self, id: &str) -> ChildName {
        let per_node = lock(&self.state)
            .table
            .get(id)
            .is_some_and(|r| r.spec.per_node());
        if per_node {
            ChildName::on(id, &self.me)
        } else {
            ChildName::unique(id)
        }
    }

    /// Plans and carries out this node's part.
    ///
    /// # Incremental plans
    ///
    /// A plan looks at the children whose records changed since the last one (the
    /// table's dirty set: every write, merge, creation and removal marks its id, so none
    /// is missed), plus those marked by hand (a name that went, a lost lease). With a
    /// distribution that ignores the load (rendezvous), a child's plan depends only on
    /// its record, the view and the clock, so the others' plans would not change. Every
    /// child is planned (`plan_all`) when what they all depend on may have changed:
    /// membership events, a peer that appeared or changed, a node that gained its first
    /// or lost its last instance (the view counts it), the quorum regained or the stable
    /// membership moved on, a rebalance, a move, a wake timer (a start waiting for its
    /// time: failover margin, a held name, awaited records), and the periodic tick
    /// (`sync_every`), which also catches what depends on the clock alone; and always
    /// with a distribution that reads the load.
    pub(crate) async fn reconcile(&self) {
        self.drive_moves().await;
        let now = Instant::now();
        let (plan, decision, dirty) = {
            let mut st = lock(&self.state);
            st.wake = None;
            let dirty = st.table.take_dirty();
            let mut full = std::mem::take(&mut st.plan_all)
                | st.table.take_hosts_changed()
                | st.rebalance
                | self.spec.distribution.uses_load();
            let view = self.view(&st);
            let stable: View = st
                .stable
                .iter()
                .map(|(n, i)| NodeInfo::new(n.clone(), *i))
                .collect();
            let last_heard = st.missing.values().max().copied().unwrap_or(now);
            let mut decision =
                self.spec
                    .timing
                    .decide(&self.spec.quorum, &stable, &view, &self.me, last_heard);
            if decision.verdict.keeps() && st.quorum_lost.is_some() && !st.missing.is_empty() {
                // Back from the losing side of a partition with members still missing:
                // they ran on without this node, and may simply not have reconnected
                // yet. Their wait starts now, not when this node lost sight of them.
                for heard in st.missing.values_mut() {
                    *heard = now;
                }
                decision =
                    self.spec
                        .timing
                        .decide(&self.spec.quorum, &stable, &view, &self.me, now);
            }
            if decision.verdict.keeps() && st.quorum_lost.is_some() {
                // The quorum is back: what was stopped meanwhile starts again, but not
                // before this node has the records of every member it is back with. Its
                // own are stale: the other side failed its children over meanwhile and
                // runs them still, and the view may hold those members already (the
                // records show their instances) before any of their hellos arrived.
                // Each is asked for its window now; no start here until every one has
                // come whole (or `silence + margin` has passed).
                full = true;
                let back: Vec<String> = view
                    .names()
                    .filter(|n| *n != self.me)
                    .map(str::to_owned)
                    .collect();
                for member in back {
                    self.await_records(&mut st, &member, self.records_due(now));
                    self.hello(&st, &member, false);
                }
            }
            if decision.may_start(now) {
                // Membership has settled (or the lost members' time is up): the view is
                // the new stable membership.
                let stable: BTreeMap<String, u64> =
                    view.iter().map(|n| (n.id.clone(), n.incarnation)).collect();
                if stable != st.stable || !st.missing.is_empty() {
                    full = true;
                }
                st.stable = stable;
                st.missing.clear();
                let invalid = self.spec.quorum.validate(&view).err();
                if invalid != st.quorum_invalid {
                    if let Some(e) = &invalid {
                        tracing::warn!(supervisor = %self.spec.name, error = %e, "the split-brain policy cannot keep its promise in this membership");
                        self.emit(DistributedEvent::QuorumInvalid(e.clone()));
                    }
                    st.quorum_invalid = invalid;
                }
            }
            let child = |r: &Record| Child::with_state(r.spec.placement(), r.state());
            let children: Vec<Child> = if full {
                st.table.all_live().map(child).collect()
            } else {
                dirty
                    .iter()
                    .filter_map(|id| st.table.live(id))
                    .map(child)
                    .collect()
            };
            let plan = if std::mem::take(&mut st.rebalance) {
                self.planner.rebalance(&self.me, &view, &children, now_ms())
            } else {
                self.planner.plan(&self.me, &view, &children, now_ms())
            };
            let pending = plan.outcomes.iter().filter_map(|o| match o {
                Outcome::Pending { child, reason } => Some((child.clone(), reason.clone())),
                _ => None,
            });
            if full {
                st.pending = pending.collect();
            } else {
                let pending: Vec<_> = pending.collect();
                st.pending.retain(|id, _| !dirty.contains(id));
                st.pending.extend(pending);
            }
            // `None`: every child was planned.
            let dirty = (!full).then_some(dirty);
            (plan, decision, dirty)
        };

        if let Verdict::Stop(loss) = &decision.verdict {
            let first = {
                let mut st = lock(&self.state);
                let first = st.quorum_lost.is_none();
                st.quorum_lost = Some(loss.clone());
                first
            };
            if first {
                tracing::warn!(supervisor = %self.spec.name, reason = %loss, "quorum lost: stopping every child here but local and pinned ones");
                self.emit(DistributedEvent::QuorumLost(loss.clone()));
            }
            // `Local` and `Pinned` children are bound to this node: no other side ever
            // starts them, so no second instance can appear; they keep running.
            let running: Vec<String> = lock(&self.local).keys().cloned().collect();
            let ids: Vec<String> = {
                let st = lock(&self.state);
                running
                    .into_iter()
                    .filter(|id| {
                        !st.table.live(id).is_some_and(|r| {
                            matches!(
                                r.spec.placement().placement,
                                Placement::Local | Placement::Pinned(_)
                            )
                        })
                    })
                    .collect()
            };
            // Each instance gets a quarter of the margin to stop on its own, then it is
            // killed: the timing argument needs the stop well inside the margin.
            let within = Some(self.spec.timing.margin / 4);
            for id in ids {
                self.stop_local_within(&id, &format!("quorum loss: {loss}"), within)
                    .await;
                // Recorded, so that after the heal no node counts on this instance.
                self.clear_slot(&id);
            }
            self.changed.send_modify(|n| *n += 1);
            return;
        }
        if lock(&self.state).quorum_lost.take().is_some() {
            tracing::info!(supervisor = %self.spec.name, "quorum regained");
            self.emit(DistributedEvent::QuorumRegained);
        }

        let held = {
            let mut st = lock(&self.state);
            match st.awaiting_until {
                Some(until) if !st.awaiting.is_empty() && now < until => Some(until),
                _ => {
                    st.awaiting.clear();
                    st.awaiting_until = None;
                    None
                }
            }
        };
        let mut placed_here: BTreeSet<String> = BTreeSet::new();
        for action in &plan.actions {
            if lock(&self.state).out.contains_key(action.child()) {
                // Moving away: the move decides what happens to it here.
                placed_here.insert(action.child().to_owned());
                continue;
            }
            match action {
                Action::Start { child, cause } => {
                    placed_here.insert(child.clone());
                    if let Some(until) = held {
                        self.wake_at(until);
                        continue;
                    }
                    if let StartCause::Failover { lost } = cause {
                        let until = {
                            let mut st = lock(&self.state);
                            st.left.retain(|_, until| *until > now);
                            lost.iter().filter_map(|n| st.left.get(n)).max().copied()
                        };
                        if let Some(until) = until {
                            self.wake_at(until);
                            continue;
                        }
                    }
                    if matches!(cause, StartCause::Failover { .. }) && !decision.may_start(now) {
                        // Wait for the lost side to have stopped (the timing argument).
                        if let Some(after) = decision.start_after {
                            self.wake_at(after);
                        }
                        continue;
                    }
                    self.start_local(child, cause).await;
                }
                Action::Keep { child } => {
                    placed_here.insert(child.clone());
                    self.keep(child);
                }
                Action::Receive { child, .. } => {
                    // A handoff kind's singleton: its state comes in a `State` message
                    // (moves.rs). Any other child: the old node stops it, and the next
                    // plan, with its record showing the old instance gone, says Start.
                    placed_here.insert(child.clone());
                }
                Action::HandOff { child, to } => {
                    let movable = {
                        let st = lock(&self.state);
                        self.can_hand_off(&st, child).is_ok() && st.peers.contains_key(to)
                    };
                    if movable {
                        placed_here.insert(child.clone());
                        self.hand_off(child, to, None).await;
                    } else {
                        // Not a handoff kind: a stop here, then a fresh start there.
                        self.stop_local(child, &format!("moving to node {to}"))
                            .await;
                        self.clear_slot(child);
                    }
                }
                Action::Stop { child, reason } => {
                    self.stop_local(child, &format!("{reason:?}")).await;
                    self.clear_slot(child);
                }
            }
        }
        for outcome in &plan.outcomes {
            let removal = match outcome {
                Outcome::Forget { child, reason } => Some((
                    child,
                    match reason {
                        crate::placement::ForgetReason::Lost => Removal::Lost,
                        crate::placement::ForgetReason::HomeDown => Removal::HomeDown,
                        _ => Removal::Ended,
                    },
                )),
                Outcome::GaveUp {
                    child,
                    failures,
                    max,
                } => {
                    self.emit(DistributedEvent::GaveUp {
                        child: child.clone(),
                        failures: *failures as u64,
                        max: *max,
                    });
                    Some((
                        child,
                        Removal::GaveUp {
                            failures: *failures as u64,
                            max: *max,
                        },
                    ))
                }
                _ => None,
            };
            if let Some((child, why)) = removal {
                let mut st = lock(&self.state);
                let rec = st.table.remove(child, why);
                self.broadcast(&st, rec.into_iter().collect());
            }
        }
        // Instances here that the plan no longer places here (removed, or replaced by a
        // newer start of the same id) go.
        let stale: Vec<String> = {
            let st = lock(&self.state);
            let local = lock(&self.local);
            let stale = |(id, l): &(&String, &LocalChild<M>)| {
                !st.out.contains_key(*id)
                    && (!placed_here.contains(*id)
                        || st.table.live(id).is_none_or(|r| r.created != l.created))
            };
            // Among the planned children only: an incremental plan does not pass over
            // every local instance.
            match &dirty {
                None => local
                    .iter()
                    .filter(stale)
                    .map(|(id, _)| id.clone())
                    .collect(),
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| local.get_key_value(id))
                    .filter(stale)
                    .map(|(id, _)| id.clone())
                    .collect(),
            }
        };
        for id in stale {
            let why = match lock(&self.state)
                .table
                .get(&id)
                .and_then(|r| r.removed.clone())
            {
                Some((_, Removal::Terminated)) => "terminated".to_owned(),
                Some((_, why)) => format!("removed: {why:?}"),
                None => "no longer placed here".to_owned(),
            };
            self.stop_local(&id, &why).await;
            self.clear_slot(&id);
        }
        if dirty.is_none() {
            self.prune_checkpoints(&lock(&self.state));
        }
        self.finish_close().await;
        self.changed.send_modify(|n| *n += 1);
    }

    /// A graceful shutdown ends when no child that can move is left here (or at its
    /// deadline): the rest stop, and the caller is answered.
    async fn finish_close(&self) {
        let due = {
            let st = lock(&self.state);
            match &st.closing {
                None => false,
                Some((_, deadline)) => {
                    let elsewhere = st
                        .peers
                        .iter()
                        .any(|(n, p)| !p.leaving && !st.leavers.contains(n));
                    let movable = elsewhere
                        && lock(&self.local).keys().any(|id| {
                            st.table.live(id).is_some_and(|r| {
                                r.spec.placement().placement
                                    == crate::placement::Placement::Singleton
                                    && self.spec.handoff.contains(&r.spec.kind)
                            })
                        });
                    Instant::now() >= *deadline || (!movable && st.out.is_empty())
                }
            }
        };
        if !due {
            return;
        }
        let done = lock(&self.state).closing.take();
        self.close().await;
        if let Some((done, _)) = done {
            // The caller may have given up waiting: nothing to answer then.
            let _ = done.send(());
        }
    }

    /// Sends the records queued in the outbox to every peer (their state now: a record
    /// changed several times goes once), in batches.
    pub(crate) fn flush(&self) {
        let mut st = lock(&self.state);
        if st.outbox.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut st.outbox);
        let records: Vec<Record> = ids
            .iter()
            .filter_map(|id| st.table.get(id).cloned())
            .collect();
        self.broadcast(&st, records);
    }

    /// Wakes the loop for a plan, without waiting.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Registers a caller waiting for child `id`'s start; the registration goes with
    /// the returned guard.
    pub(crate) fn waiting(&self, id: &str) -> Waiting<'_, M> {
        let notify = Arc::new(Notify::new());
        lock(&self.waiters)
            .entry(id.to_owned())
            .or_default()
            .push(notify.clone());
        Waiting {
            inner: self,
            id: id.to_owned(),
            notify,
        }
    }

    /// Tells the callers waiting for child `id` that a start of it here was carried out.
    fn answer(&self, id: &str) {
        if let Some(waiting) = lock(&self.waiters).get(id) {
            for notify in waiting {
                notify.notify_one();
            }
        }
    }

    /// The nodes child `placement` would be placed on now, as this node sees the cluster
    /// (empty when none can run it now).
    pub(crate) fn owners_now(
        &self,
        st: &State,
        view: &View,
        placement: &crate::placement::ChildPlacement,
    ) -> Vec<String> {
        let load: crate::placement::Load = if self.spec.distribution.uses_load() {
            st.table
                .hosts()
                .filter(|(node, incarnation, _)| view.is_live(node, *incarnation))
                .flat_map(|(node, _, n)| std::iter::repeat_n(node, n))
                .collect()
        } else {
            crate::placement::Load::new()
        };
        // What a plan of the new child alone would start, without the plan.
        self.planner
            .owners_new(placement, view, &load)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Makes the next plan look at every live child.
    pub(crate) fn plan_all(&self) {
        lock(&self.state).plan_all = true;
    }

    fn wake_at(&self, at: Instant) {
        let mut st = lock(&self.state);
        st.wake = Some(st.wake.map_or(at, |w| w.min(at)));
    }

    pub(crate) fn wake(&self) -> Option<Instant> {
        lock(&self.state).wake
    }

    /// The instance here stays: its record must say so, and it must run.
    fn keep(&self, id: &str) {
        let addr = lock(&self.local).get(id).map(|l| l.addr.clone());
        let running = addr.is_some();
        if let Some(addr) = addr {
            // Its name went (it lost a conflict with a registration made before this one
            // and since withdrawn, as after a move): register it again.
            let name = self.name_of(id);
            if self.registry.whereis(&name).is_none() && !addr.is_stopped() {
                match self.registry.register_keeping(name, &addr, ()) {
                    Ok(()) => {
                        tracing::info!(supervisor = %self.spec.name, child = id, "child's name registered again");
                    }
                    Err(e) => {
                        tracing::debug!(supervisor = %self.spec.name, child = id, error = %e, "child's name not registered again");
                        self.wake_at(Instant::now() + RETRY);
                    }
                }
            }
        }
        let mut st = lock(&self.state);
        let recorded = st
            .table
            .live(id)
            .and_then(|r| r.slots.get(&self.me))
            .and_then(|s| s.instance);
        let rec = match (running, recorded) {
            (true, Some(i)) if i == self.incarnation => None,
            // Running, but a peer cleared the record (it failed the child over while
            // this node was cut off): say it runs here again; the planner resolves the
            // duplicate.
            (true, _) => st.table.write_slot(id, &self.me, |s, at| {
                s.instance = Some(self.incarnation);
                s.started = Some(at.clone());
            }),
            // Recorded here but not running (this supervisor was restarted): clear the
            // record, so the next plan starts it.
            (false, Some(_)) => {
                st.wake = Some(Instant::now());
                st.table.write_slot(id, &self.me, |s, _| s.instance = None)
            }
            (false, None) => None,
        };
        self.broadcast(&st, rec.into_iter().collect());
    }

    fn clear_slot(&self, id: &str) {
        let mut st = lock(&self.state);
        let has = st
            .table
            .live(id)
            .and_then(|r| r.slots.get(&self.me))
            .is_some_and(|s| s.instance.is_some());
        if has {
            let rec = st.table.write_slot(id, &self.me, |s, _| s.instance = None);
            self.broadcast(&st, rec.into_iter().collect());
        }
    }

    /// Stops the instance here, if there is one.
    pub(crate) async fn stop_local(&self, id: &str, why: &str) {
        self.stop_local_within(id, why, None).await;
    }

    /// Stops the instance here, if there is one; with `within`, an instance still
    /// stopping after that long is killed (its `terminate` cut short): a side that lost
    /// the quorum must have stopped well inside the margin, whatever the child's own
    /// shutdown timeout says.
    pub(crate) async fn stop_local_within(&self, id: &str, why: &str, within: Option<Duration>) {
        let Some(child) = lock(&self.local).remove(id) else {
            return;
        };
        child.watcher.abort();
        self.registry.unregister(&self.name_of(id));
        let lease = child.fence.token();
        child.fence.clear();
        match within {
            None => child.sup.shutdown().await,
            Some(limit) => {
                if tokio::time::timeout(limit, child.sup.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!(supervisor = %self.spec.name, child = id, ?limit, "instance still stopping: killed");
                    child.addr.kill();
                    child.sup.shutdown().await;
                }
            }
        }
        if let Some(token) = lease {
            // Its stop released the lease already (the registry's stop hook); this is for
            // an instance whose process never stopped for good.
            self.release_lease(id, token);
        }
        tracing::info!(supervisor = %self.spec.name, child = id, reason = why, "stopped");
        self.emit(DistributedEvent::Stopped {
            child: id.to_owned(),
            reason: why.to_owned(),
        });
    }

    /// Whether an instance of a child placed so runs under a lease (strict mode).
    fn leased(&self, placement: &crate::placement::Placement) -> bool {
        self.spec.strict.is_some() && *placement == crate::placement::Placement::Singleton
    }

    /// Strict mode: takes the lease of `id` for `addr` (not started yet) and sets `fence`
    /// to its token. False when it is held elsewhere or the group cannot answer in time.
    async fn acquire_lease(&self, id: &str, addr: &Addr<M>, fence: &Fence) -> bool {
        let Some(strict) = &self.spec.strict else {
            return true;
        };
        match tokio::time::timeout(strict.acquire_timeout, strict.leases.acquire(id, addr)).await {
            Ok(Ok(token)) => {
                fence.set(token);
                tracing::debug!(supervisor = %self.spec.name, child = id, token, "lease granted");
                true
            }
            Ok(Err(e)) => {
                tracing::debug!(supervisor = %self.spec.name, child = id, error = %e, "lease not granted; retrying");
                false
            }
            Err(_) => {
                // A grant that gets through after all runs out unrenewed: no instance
                // holds it here.
                tracing::debug!(supervisor = %self.spec.name, child = id, "lease not granted in time; retrying");
                false
            }
        }
    }

    /// Strict mode: gives the lease of `id` granted with `token` back, if this node still
    /// holds that grant, in a task of its own: a loser without the Raft group's majority
    /// must not wait for the write before it stops its next instance.
    pub(crate) fn release_lease(&self, id: &str, token: u64) {
        if let Some(strict) = &self.spec.strict {
            self.keep_task(tokio::spawn(strict.leases.release(id, token)));
        }
    }

    /// Starts an instance of `id` here, registers its name, records it.
    async fn start_local(self: &Inner<M>, id: &str, cause: &StartCause) {
        let record = {
            let st = lock(&self.state);
            st.table.live(id).cloned()
        };
        let Some(record) = record else {
            return;
        };
        let running = lock(&self.local)
            .get(id)
            .is_some_and(|l| l.created == record.created);
        if running {
            // Already runs under this creation. Its slot may still say otherwise: two
            // declarations of one node at clock 0 (a first node at a cold start, then its
            // restart declaring again before it met anyone) share a stamp, and the one
            // that lost the merge took this instance's slot with it. Record it.
            self.keep(id);
            return;
        }
        // A previous child of the same id still runs here: it goes first.
        self.stop_local(id, "replaced by a newer start").await;
        let name = if record.spec.per_node() {
            ChildName::on(id, &self.me)
        } else {
            ChildName::unique(id)
        };
        if let Some(held) = self.registry.whereis(&name) {
            // Most often the old holder's name has not gone yet (its node's death is
            // still on its way to this node's registry): try again shortly, without
            // starting anything meanwhile.
            tracing::debug!(supervisor = %self.spec.name, child = id, holder = held.node(), "child's name still held; retrying");
            self.wake_at(Instant::now() + RETRY);
            return;
        }
        let placement = record.spec.placement();
        // A restart or failover starts from the last checkpoint kept here, if any.
        let fence = Fence::default();
        let seed = self.checkpoint_for(id, &record.created);
        let result = match self.spawn_instance(id, &record, seed, &fence).await {
            Ok(Some(started)) => Ok(started),
            Ok(None) => {
                // Strict mode: the lease is held elsewhere (its holder's has not run
                // out), or the consensus group has no quorum: nothing starts; try again
                // shortly.
                self.wake_at(Instant::now() + RETRY);
                return;
            }
            Err(e) => Err(e),
        };
        let counts = cause.counts();
        let (sup, addr, events, gate) = match result {
            Ok(started) => started,
            Err(why) => {
                if let Some(token) = fence.token() {
                    self.release_lease(id, token);
                }
                tracing::warn!(supervisor = %self.spec.name, child = id, error = %why, "child failed to start");
                let mut st = lock(&self.state);
                let rec = st.table.write_slot(id, &self.me, |s, at| {
                    s.instance = None;
                    s.ended = Some((at.clone(), ExitWire::Failed));
                    if counts {
                        count_failure(s, &placement.intensity.period);
                    }
                });
                self.broadcast(&st, rec.into_iter().collect());
                drop(st);
                self.emit(DistributedEvent::StartFailed {
                    child: id.to_owned(),
                    error: why,
                });
                return;
            }
        };
        if let Err(e) = self.registry.register_keeping(name, &addr, ()) {
            // Taken since the check above: try again shortly.
            sup.shutdown().await;
            if let Some(token) = fence.token() {
                self.release_lease(id, token);
            }
            let retry = matches!(e, RegisterError::Taken { .. });
            tracing::info!(supervisor = %self.spec.name, child = id, error = %e, "child's name not registered");
            if retry {
                self.wake_at(Instant::now() + RETRY);
            }
            return;
        }
        self.install(id, &record, sup, addr.clone(), events, gate, fence);
        let lost: Vec<String> = match cause {
            StartCause::Failover { lost } => lost.clone(),
            _ => Vec::new(),
        };
        {
            let mut st = lock(&self.state);
            let mut recs = Vec::new();
            recs.extend(st.table.write_slot(id, &self.me, |s, at| {
                s.instance = Some(self.incarnation);
                s.started = Some(at.clone());
                if counts {
                    count_failure(s, &placement.intensity.period);
                }
            }));
            // The lost instances are replaced: their records go, so the next failover
            // does not count them again.
            for node in &lost {
                if *node == self.me {
                    // This node's older incarnation: its slot now holds the new instance.
                    continue;
                }
                let had = st
                    .table
                    .live(id)
                    .and_then(|r| r.slots.get(node))
                    .is_some_and(|s| s.instance.is_some());
                if had {
                    recs.extend(st.table.write_slot(id, node, |s, _| s.instance = None));
                }
            }
            // Sent at the end of the pass (the outbox), after the caller is answered.
            if !recs.is_empty() {
                st.outbox.insert(id.to_owned());
            }
        }
        self.answer(id);
        tracing::info!(supervisor = %self.spec.name, child = id, cause = ?cause, "started");
        self.emit(DistributedEvent::Started {
            child: id.to_owned(),
            cause: cause.clone(),
        });
    }

    /// Starts an instance of `record` under its own local supervisor, from `seed` if a
    /// handoff kind has one (not registered, not recorded yet).
    pub(crate) async fn spawn_instance(
        &self,
        id: &str,
        record: &Record,
        seed: Option<Seed>,
        fence: &Fence,
    ) -> Result<Option<Started<M>>, String> {
        let placement = record.spec.placement();
        let gate = self.new_gate(id, &record.created, seed);
        let child_spec = match self.spec.kinds.get(&record.spec.kind) {
            None => return Err(format!("no child kind {:?} on this node", record.spec.kind)),
            Some(make) => {
                make(&record.spec.args, fence, &gate).map_err(|e| format!("bad arguments: {e}"))?
            }
        };
        let child_spec = child_spec.restart(placement.restart);
        let addr = child_spec.addr();
        if self.leased(&placement.placement) && !self.acquire_lease(id, &addr, fence).await {
            return Ok(None);
        }
        let (max, period) = self.spec.local_intensity;
        let sup_spec = SupervisorSpec::new(format!("{}/{id}", self.service), Strategy::OneForOne)
            .intensity(max, period)
            .child(child_spec);
        let events = sup_spec.handle().subscribe();
        match Supervisor::start(sup_spec).await {
            Ok(sup) => Ok(Some((sup, addr, events, gate))),
            Err(e) => {
                if let Some(token) = fence.token() {
                    self.release_lease(id, token);
                }
                Err(e.to_string())
            }
        }
    }

    /// Keeps a started instance as this node's, watched.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn install(
        &self,
        id: &str,
        record: &Record,
        sup: Supervisor,
        addr: Addr<M>,
        events: broadcast::Receiver<SupervisorEvent>,
        gate: Arc<Gate>,
        fence: Fence,
    ) {
        let serial = {
            let mut st = lock(&self.state);
            st.serial += 1;
            st.serial
        };
        let watcher = tokio::spawn(watch_child(
            events,
            self.cmds.clone(),
            id.to_owned(),
            serial,
        ));
        lock(&self.local).insert(
            id.to_owned(),
            LocalChild {
                serial,
                created: record.created.clone(),
                sup,
                addr,
                watcher,
                gate,
                fence,
            },
        );
    }

    /// Where an instance of child `id` is, as the registry here says: the one on this
    /// node if there is one, else another (the first by node name).
    pub(crate) fn resolve(
        &self,
        id: &str,
        removed_too: bool,
    ) -> Option<crate::cluster::Location<M>> {
        let nodes = {
            let st = lock(&self.state);
            let record = if removed_too {
                st.table.get(id)
            } else {
                st.table.live(id)
            }?;
            if !record.spec.per_node() {
                drop(st);
                return self.registry.whereis(&ChildName::unique(id));
            }
            let mut nodes: Vec<String> = vec![self.me.clone()];
            nodes.extend(record.slots.keys().cloned());
            nodes.extend(st.peers.keys().cloned());
            nodes
        };
        nodes
            .into_iter()
            .find_map(|node| self.registry.whereis(&ChildName::on(id, node)))
    }

    /// Stops every local instance and leaves the supervisor's membership (the caller
    /// then [`abort`](Self::abort)s).
    pub(crate) async fn close(&self) {
        {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            st.closed = true;
        }
        self.flush();
        let ids: Vec<String> = lock(&self.local).keys().cloned().collect();
        for id in ids {
            self.stop_local(&id, "supervisor shut down").await;
            self.clear_slot(&id);
        }
        self.bye_all();
    }

    /// Tells every peer this node's part of the supervisor is gone (`Bye`).
    fn bye_all(&self) {
        let st = lock(&self.state);
        for peer in st.peers.keys() {
            self.send(
                peer,
                Wire::Bye {
                    from: self.me.clone(),
                },
            );
        }
    }

    /// Takes the export back and stops the tasks.
    pub(crate) fn abort(&self) {
        if let Some(hook) = lock(&self.leave_hook).take() {
            self.node.remove_on_leave(hook);
        }
        if let Some(receiver) = lock(&self.receiver).take() {
            self.node.unexport(&self.service);
            receiver.stop(None);
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl<M: RemoteMessage> Drop for Inner<M> {
    /// The last handle is gone without a `shutdown`: as a shutdown would, the records say
    /// no instance runs here any more and the peers are told this node's part is gone
    /// (`Bye`), so they start its children elsewhere at once (the node itself may well
    /// stay up: nothing else would tell them); the export and tasks go; local instances
    /// are stopped where a runtime is at hand.
    fn drop(&mut self) {
        if !lock(&self.state).closed {
            self.flush();
            let ids: Vec<String> = lock(&self.local).keys().cloned().collect();
            for id in &ids {
                self.clear_slot(id);
            }
            self.bye_all();
        }
        self.abort();
        for (_, child) in lock(&self.local).drain() {
            child.watcher.abort();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let sup = child.sup;
                rt.spawn(async move { sup.shutdown().await });
            }
        }
    }
}

fn count_failure(slot: &mut super::table::Slot, period: &Duration) {
    let now = now_ms();
    slot.failures.push(now);
    slot.failures
        .retain(|&at| u128::from(now.saturating_sub(at)) < period.as_millis());
}

/// Follows one local instance's supervisor, and tells the loop when it restarts and when
/// it ends for good.
async fn watch_child(
    mut events: broadcast::Receiver<SupervisorEvent>,
    cmds: mpsc::Sender<Cmd>,
    id: String,
    serial: u64,
) {
    loop {
        let cmd = match events.recv().await {
            Ok(SupervisorEvent::ChildExited {
                reason,
                restarting: false,
                ..
            }) => Cmd::Ended {
                id: id.clone(),
                serial,
                exit: if reason.is_normal() {
                    Exit::Normal
                } else {
                    Exit::Failed
                },
            },
            Ok(SupervisorEvent::GaveUp(_)) => Cmd::Ended {
                id: id.clone(),
                serial,
                exit: Exit::Failed,
            },
            Ok(SupervisorEvent::ChildRestarted { .. }) => Cmd::Restarted {
                id: id.clone(),
                serial,
            },
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let last = matches!(cmd, Cmd::Ended { .. });
        if cmds.send(cmd).await.is_err() || last {
            return;
        }
    }
}

/// Strict mode: tells the loop of every lease this node loses.
pub(crate) async fn forward_lost_leases(
    mut lost: broadcast::Receiver<crate::consistent::LeaseEvent<ChildName>>,
    cmds: mpsc::Sender<Cmd>,
) {
    loop {
        let cmd = match lost.recv().await {
            Ok(crate::consistent::LeaseEvent::Lost { key, token }) => {
                Cmd::LeaseLost { id: key.id, token }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Those instances run on without their lease until their next stop (with
                // `OnConflict::Stop` the registry stopped them, but a local supervisor
                // may have restarted one); their fences still read the lost token,
                // which a fenced store refuses once a newer one was used. The channel
                // holds 256 events: this takes that many losses before the loop runs.
                tracing::warn!(missed = n, "lost-lease events missed");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if cmds.send(cmd).await.is_err() {
            return;
        }
    }
}

/// The loop: one per supervisor per node.
pub(crate) async fn run<M: RemoteMessage>(
    weak: Weak<Inner<M>>,
    kick: Arc<Notify>,
    mut cmds: mpsc::Receiver<Cmd>,
    mut cluster: broadcast::Receiver<ClusterEvent>,
    mut names: broadcast::Receiver<crate::RegistryEvent<ChildName>>,
    sync_every: Duration,
) {
    let mut tick = tokio::time::interval(sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = match weak.upgrade() {
            Some(inner) => inner.wake(),
            None => return,
        };
        let sleep = async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            cmd = cmds.recv() => {
                let (Some(cmd), Some(inner)) = (cmd, weak.upgrade()) else { return };
                inner.on_cmd(cmd).await;
            }
            event = cluster.recv() => {
                let Some(inner) = weak.upgrade() else { return };
                match event {
                    Ok(e) => inner.on_cluster(e),
                    Err(broadcast::error::RecvError::Lagged(_)) => inner.resync(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            event = names.recv() => {
                // Only a name of a child running here that went matters (it is registered
                // again); anything else needs no plan.
                let Some(inner) = weak.upgrade() else { return };
                let key = match event {
                    Ok(crate::RegistryEvent::Unregistered { key })
                    | Ok(crate::RegistryEvent::Lost { key, .. }) => key,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        inner.plan_all();
                        ChildName::unique("")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if !key.id.is_empty() {
                    if !lock(&inner.local).contains_key(&key.id) {
                        continue;
                    }
                    lock(&inner.state).table.mark_dirty(&key.id);
                }
            }
            () = kick.notified() => {}
            _ = tick.tick() => {
                // The periodic resync: hellos, and a plan of every child.
                let Some(inner) = weak.upgrade() else { return };
                inner.hello_all();
                inner.plan_all();
            }
            () = sleep => {
                // A start waiting for its time: every child is planned.
                let Some(inner) = weak.upgrade() else { return };
                inner.plan_all();
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        // Whatever else queued meanwhile, before planning once for the burst.
        while let Ok(cmd) = cmds.try_recv() {
            inner.on_cmd(cmd).await;
        }
        if lock(&inner.state).closed {
            return;
        }
        inner.reconcile().await;
        inner.flush();
    }
}
