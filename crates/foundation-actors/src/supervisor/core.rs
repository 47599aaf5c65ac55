//! The supervisor actor: one core for static and dynamic supervisors.

use std::collections::{HashMap, HashSet, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;

use ractor::{ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::spec::{Backoff, ChildEntry, ChildKind, Intensity, Restart, Shutdown, Strategy};
use super::{
    ChildCounts, ChildInfo, ChildSpecInfo, ChildStatus, Supervisor, SupervisorEvent, SupervisorMsg,
};
use crate::addr::{Envelope, Opened, ReplyPort};
use crate::error::{ExitReason, SHUTDOWN, SpawnError, SupervisorError, SupervisorExit};

/// What a supervisor is started with; cloned for each of its own restarts.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) id: String,
    pub(crate) strategy: Strategy,
    pub(crate) intensity: Intensity,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) dynamic: bool,
    pub(crate) members: Arc<Members>,
    pub(crate) children: Vec<ChildEntry>,
    /// Where the supervisor's exit reason is published, for [`Supervisor::wait`].
    pub(crate) exit: Arc<watch::Sender<Option<ExitReason>>>,
    /// Where observers hear of exits and restarts ([`Supervisor::subscribe`]).
    pub(crate) events: broadcast::Sender<SupervisorEvent>,
}

pub(crate) struct Core;

/// The ids of a supervisor's children, shared with its handles: `start_child` reserves an
/// id (and a place under `max_children`) and spawns the child itself, linked to the
/// supervisor, without a round trip through it; the supervisor then adopts the child.
///
/// The supervisor is not woken for an adoption: it takes the list in before anything that
/// reads its children (a request, an exit event, its own shutdown). A start costs the
/// supervisor no message, as a raw ractor spawn costs its parent none; only a child found
/// dying right after its start sends a `Wake`, so its exit is handled promptly.
pub(crate) struct Members {
    reserved: std::sync::Mutex<Reserved>,
    adoptions: std::sync::Mutex<Adoptions>,
    max: Option<usize>,
    /// Whether anonymous children are allowed (dynamic supervisors only).
    dynamic: bool,
}

/// The children reserved or running. Each supervisor incarnation starts a new
/// `generation`: a reservation made under an earlier one (a `start_child` that raced the
/// restart) releases nothing when it is undone.
#[derive(Default)]
struct Reserved {
    ids: FxHashSet<Arc<str>>,
    /// Children reserved or running, anonymous ones included (for `max_children`).
    count: usize,
    generation: u64,
}

/// Children waiting for adoption; `closed` once the supervisor shuts down, so a start
/// that races its exit is refused instead of leaving a child it will never see.
#[derive(Default)]
struct Adoptions {
    list: Vec<Adoption>,
    closed: bool,
}

/// A child spawned by `start_child` in the caller's task, linked to `linked_to`; without
/// a cell if its `init` answered ignore and a static supervisor keeps its spec.
pub(crate) struct Adoption {
    pub(crate) entry: ChildEntry,
    pub(crate) cell: Option<ActorCell>,
    pub(crate) linked_to: ractor::ActorId,
}

impl Members {
    /// Whether this is a dynamic supervisor's (anonymous children allowed).
    pub(crate) fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    pub(crate) fn new(max: Option<usize>, dynamic: bool) -> Self {
        Self {
            reserved: std::sync::Mutex::new(Reserved::default()),
            adoptions: std::sync::Mutex::new(Adoptions::default()),
            max,
            dynamic,
        }
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, Reserved> {
        self.reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn adoptions(&self) -> std::sync::MutexGuard<'_, Adoptions> {
        self.adoptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a child for adoption; hands it back if the supervisor is shutting down.
    pub(crate) fn push_adoption(&self, a: Adoption) -> Result<(), Adoption> {
        let mut adoptions = self.adoptions();
        if adoptions.closed {
            return Err(a);
        }
        adoptions.list.push(a);
        Ok(())
    }

    /// Takes back a queued adoption (its supervisor went away).
    pub(crate) fn withdraw_adoption(&self, cell: ractor::ActorId) -> Option<Adoption> {
        let mut adoptions = self.adoptions();
        let i = adoptions
            .list
            .iter()
            .position(|a| a.cell.as_ref().is_some_and(|c| c.get_id() == cell))?;
        Some(adoptions.list.swap_remove(i))
    }

    fn take_adoptions(&self) -> Vec<Adoption> {
        std::mem::take(&mut self.adoptions().list)
    }

    /// Refuses further adoptions and returns those queued.
    fn close(&self) -> Vec<Adoption> {
        let mut adoptions = self.adoptions();
        adoptions.closed = true;
        std::mem::take(&mut adoptions.list)
    }

    /// Claims a place (and the entry's id) for a new child, stamping the entry with the
    /// current generation.
    fn reserve(&self, entry: &mut ChildEntry) -> Result<(), SpawnError> {
        if entry.anonymous && !self.dynamic {
            return Err(SpawnError::Config(
                "anonymous children are for dynamic supervisors; give the child an id".into(),
            ));
        }
        let mut r = self.reserved();
        if let Some(max) = self.max {
            if r.count >= max {
                return Err(SpawnError::MaxChildren(max));
            }
        }
        // Anonymous children have no id to keep unique (they are told apart by address).
        if !entry.anonymous && !r.ids.insert(entry.id.clone()) {
            return Err(SpawnError::DuplicateId(entry.id.to_string()));
        }
        r.count += 1;
        entry.generation = r.generation;
        Ok(())
    }

    /// Frees the entry's place, unless it was reserved under an earlier incarnation.
    fn release(&self, entry: &ChildEntry) {
        let mut r = self.reserved();
        if entry.generation != r.generation {
            return;
        }
        r.count = r.count.saturating_sub(1);
        if !entry.anonymous {
            r.ids.remove(&*entry.id);
        }
    }

    /// Reserves the entry's place and registers its name, undoing the reservation if
    /// the name is taken.
    pub(crate) fn admit(&self, entry: &mut ChildEntry) -> Result<(), SpawnError> {
        self.reserve(entry)?;
        if let Some(name) = &entry.name {
            if let Err(e) = entry.child.addr().register(name) {
                self.discard(entry);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Lets a child go for good: frees its place, removes its name, stops its address.
    pub(crate) fn discard(&self, entry: &ChildEntry) {
        self.release(entry);
        if let Some(name) = &entry.name {
            // Removes the name only if it is this child's.
            entry.child.addr().unregister(name);
        }
        entry.child.addr().mark_stopped();
    }

    /// A new incarnation of the supervisor begins: every reservation is forgotten and
    /// adoptions are accepted again.
    fn begin_incarnation(&self) {
        {
            let mut r = self.reserved();
            r.ids.clear();
            r.count = 0;
            r.generation += 1;
        }
        self.adoptions().closed = false;
    }
}

struct Child {
    entry: ChildEntry,
    /// Its address's slot key: what the supervisor's indexes know it by.
    slot: usize,
    /// Set and taken through `State::set_cell` / `State::take_cell`, which keep the
    /// index of running children.
    cell: Option<ActorCell>,
    status: ChildStatus,
    restarts: u32,
    consecutive: u32,
    last_restart: Option<Instant>,
    /// The restart this child waits for, if it is restarting.
    pending_epoch: u64,
}

impl Child {
    /// A child record: running if it has a cell, about to be started otherwise.
    fn new(entry: ChildEntry, cell: Option<ActorCell>) -> Box<Self> {
        let status = if cell.is_some() {
            ChildStatus::Running
        } else {
            ChildStatus::Restarting
        };
        Box::new(Self {
            slot: entry.child.addr().slot_key(),
            entry,
            cell,
            status,
            restarts: 0,
            consecutive: 0,
            last_restart: None,
            pending_epoch: 0,
        })
    }
}

pub(crate) struct State {
    cfg: Config,
    /// This incarnation's actor id.
    me: ractor::ActorId,
    /// Boxed: a supervisor of many children keeps growth slack of pointers, not of
    /// 150-byte records (the memory bench measured ~350 B less per idle child).
    #[allow(clippy::vec_box)]
    children: Vec<Box<Child>>,
    /// Where each child is in `children`, by slot key. With `ids` and `running`, a
    /// request, an exit or a removal finds its child without a scan: terminating 10,000
    /// children one by one was quadratic with scans (see `forget`).
    at: FxHashMap<usize, usize>,
    /// Children with an id (not anonymous ones), by id: their slot keys.
    ids: FxHashMap<Arc<str>, usize>,
    /// Running children by actor id: their slot keys.
    running: FxHashMap<ractor::ActorId, usize>,
    /// Children this supervisor shut down itself: their exit events are expected.
    expected: HashSet<ractor::ActorId>,
    /// Exits of linked children not adopted yet (spawned by `start_child`, died at once).
    orphans: HashMap<ractor::ActorId, ExitReason>,
    restarts: VecDeque<Instant>,
    /// Bumped for each restart that is scheduled, so a stale delayed restart is ignored.
    epoch: u64,
}

/// How a request names a child.
pub(crate) enum ChildKey {
    /// By its id.
    Id(String),
    /// By its address (anonymous children have no usable id).
    Addr(usize),
}

/// A supervisor's strategy and its children, with handles of those that are supervisors.
pub(crate) type Subtree = (Strategy, Vec<(ChildInfo, Option<Supervisor>)>);

/// Internal requests, wrapped by the public `SupervisorMsg`.
pub(crate) enum Request {
    /// A child spawned by `start_child` died before it could be adopted: take it in.
    Wake,
    TerminateChild(ChildKey, ReplyPort<Result<(), SupervisorError>>),
    RestartChild(String, ReplyPort<Result<(), SupervisorError>>),
    DeleteChild(String, ReplyPort<Result<(), SupervisorError>>),
    GetChildSpec(String, ReplyPort<Result<ChildSpecInfo, SupervisorError>>),
    WhichChildren(ReplyPort<Vec<ChildInfo>>),
    CountChildren(ReplyPort<ChildCounts>),
    Subtree(ReplyPort<Subtree>),
    /// An attempt to start again the children of a restart (by address, in start order):
    /// after a backoff delay, or a retry after a failed attempt. Each attempt is a message
    /// of its own, so the supervisor serves requests (and a shutdown) between attempts.
    Restart {
        keys: Vec<usize>,
        epoch: u64,
    },
}

impl State {
    fn info(&self, c: &Child) -> ChildInfo {
        ChildInfo {
            id: c.entry.id.to_string(),
            name: c.entry.name.clone(),
            kind: c.entry.kind,
            restart: c.entry.restart,
            status: c.status.clone(),
            restarts: u64::from(c.restarts),
            incarnation: c.entry.child.addr().incarnation(),
            actor_id: c.cell.as_ref().map(|c| c.get_id().to_string()),
        }
    }

    /// The running child whose incarnation is this actor.
    fn position_by_cell(&self, id: ractor::ActorId) -> Option<usize> {
        self.position_by_slot(*self.running.get(&id)?)
    }

    /// The child with this address.
    fn position_by_slot(&self, slot: usize) -> Option<usize> {
        self.at.get(&slot).copied()
    }

    /// The child with this id; anonymous children are never found by id.
    fn position(&self, id: &str) -> Option<usize> {
        self.position_by_slot(*self.ids.get(id)?)
    }

    /// Adds a child record at the end, and to the indexes.
    fn push_child(&mut self, c: Box<Child>) {
        self.at.insert(c.slot, self.children.len());
        if !c.entry.anonymous {
            self.ids.insert(c.entry.id.clone(), c.slot);
        }
        if let Some(cell) = &c.cell {
            self.running.insert(cell.get_id(), c.slot);
        }
        self.children.push(c);
    }

    /// Records the child's new incarnation.
    fn set_cell(&mut self, idx: usize, cell: ActorCell) {
        let c = &mut self.children[idx];
        self.running.insert(cell.get_id(), c.slot);
        if let Some(old) = c.cell.replace(cell) {
            self.running.remove(&old.get_id());
        }
    }

    /// Takes the child's incarnation (it has exited, or is being shut down).
    fn take_cell(&mut self, idx: usize) -> Option<ActorCell> {
        let cell = self.children[idx].cell.take()?;
        self.running.remove(&cell.get_id());
        Some(cell)
    }

    /// Removes a child from the supervisor for good.
    ///
    /// A static supervisor keeps its children in start order (it has few, and the order
    /// is its strategy's). A dynamic one may have many: it moves its last child into the
    /// gap, so a removal costs the same however many children there are (shifting the rest
    /// and their index entries made terminating 10,000 children one by one quadratic);
    /// its children are listed in no set order, as OTP's.
    fn forget(&mut self, idx: usize) {
        let c = if self.cfg.dynamic {
            let c = self.children.swap_remove(idx);
            if let Some(moved) = self.children.get(idx) {
                self.at.insert(moved.slot, idx);
            }
            c
        } else {
            let c = self.children.remove(idx);
            for (i, later) in self.children.iter().enumerate().skip(idx) {
                self.at.insert(later.slot, i);
            }
            c
        };
        self.at.remove(&c.slot);
        if !c.entry.anonymous && self.ids.get(&c.entry.id) == Some(&c.slot) {
            self.ids.remove(&c.entry.id);
        }
        if let Some(cell) = &c.cell {
            self.running.remove(&cell.get_id());
        }
        self.cfg.members.discard(&c.entry);
    }

    /// Starts a child: `Ok(true)` if it runs, `Ok(false)` if its `init` answered
    /// [`Ignore`](crate::Ignore) (its address is then stopped and its status `Ignored`).
    async fn start_child(&mut self, idx: usize, sup: &ActorCell) -> Result<bool, SpawnError> {
        let c = &mut self.children[idx];
        match c.entry.child.start(&c.entry.id, sup.clone()).await {
            Ok(cell) => {
                c.status = ChildStatus::Running;
                self.set_cell(idx, cell);
                Ok(true)
            }
            Err(SpawnError::Ignored(_)) => {
                c.entry.child.addr().mark_stopped();
                c.status = ChildStatus::Ignored;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Shuts one child down by its policy, tells observers how it went down (restarting
    /// or not), and returns that reason. Its exit event, when it arrives, matches no live
    /// child and is ignored.
    async fn shutdown_child(&mut self, idx: usize, restarting: bool) -> Option<ExitReason> {
        let cell = self.take_cell(idx)?;
        self.expected.insert(cell.get_id());
        let c = &self.children[idx];
        let reason = stop_child(cell, c.entry.shutdown, c.entry.id.clone()).await;
        self.emit_exit(idx, reason.clone(), restarting);
        Some(reason)
    }

    /// Tells observers that the child at `idx` exited.
    fn emit_exit(&self, idx: usize, reason: ExitReason, restarting: bool) {
        let c = &self.children[idx];
        self.emit(SupervisorEvent::ChildExited {
            child: c.entry.id.to_string(),
            key: c.entry.child.addr().key(),
            reason,
            restarting,
        });
    }

    /// Shuts every child down and marks them stopped for good: a static supervisor last
    /// started first; a dynamic one all at once, as OTP's `simple_one_for_one` (its
    /// children are alike and independent, so shutdown takes the longest child's time, not
    /// the sum).
    async fn shutdown_all(&mut self) {
        // Children still waiting for adoption go down too (their exits no longer matter),
        // and starts from now on are refused.
        let late = self.cfg.members.close();
        self.take_in_adoptions(late);
        if self.cfg.dynamic {
            let mut stopping = Vec::with_capacity(self.children.len());
            for (idx, c) in self.children.iter_mut().enumerate() {
                if let Some(cell) = c.cell.take() {
                    self.running.remove(&cell.get_id());
                    self.expected.insert(cell.get_id());
                    stopping.push((idx, stop_child(cell, c.entry.shutdown, c.entry.id.clone())));
                }
            }
            let (idxs, stops): (Vec<usize>, Vec<_>) = stopping.into_iter().unzip();
            let reasons = futures::future::join_all(stops).await;
            for (idx, reason) in idxs.into_iter().zip(reasons) {
                self.emit_exit(idx, reason, false);
            }
        } else {
            for idx in (0..self.children.len()).rev() {
                self.shutdown_child(idx, false).await;
            }
        }
        for c in &mut self.children {
            c.entry.child.addr().mark_stopped();
            c.status = ChildStatus::Terminated;
        }
    }

    /// Records a restart; false if it exceeds the intensity.
    fn note_restart(&mut self, now: Instant) -> bool {
        let period = self.cfg.intensity.period;
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > period)
        {
            self.restarts.pop_front();
        }
        self.restarts.len() <= self.cfg.intensity.max_restarts as usize
    }

    /// Tells observers, if there are any (a send without receivers is not an error).
    fn emit(&self, event: SupervisorEvent) {
        let _ = self.cfg.events.send(event);
    }

    /// Gives up: shuts every child down and returns the exit its parent will see.
    async fn escalate(&mut self, child: &str, last_exit: ExitReason) -> ActorProcessingErr {
        let exit = SupervisorExit {
            supervisor: self.cfg.id.clone(),
            child: child.to_owned(),
            max_restarts: self.cfg.intensity.max_restarts,
            period: self.cfg.intensity.period,
            last_exit,
        };
        self.shutdown_all().await;
        self.emit(SupervisorEvent::GaveUp(exit.clone()));
        self.cfg
            .exit
            .send_replace(Some(ExitReason::Escalated(Arc::new(exit.clone()))));
        Box::new(exit)
    }

    async fn child_exited(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        actor: ractor::ActorId,
        reason: ExitReason,
    ) -> Result<(), ActorProcessingErr> {
        // One we shut down ourselves (checked first: a lookup, not a search).
        if self.expected.remove(&actor) {
            return Ok(());
        }
        let Some(idx) = self.position_by_cell(actor) else {
            // Not a child we know: one whose adoption is still on its way.
            self.orphans.insert(actor, reason);
            return Ok(());
        };
        self.take_cell(idx);
        let c = &mut self.children[idx];
        let id = c.entry.id.clone();
        let restart = match c.entry.restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        };
        if !restart {
            tracing::debug!(supervisor = %self.cfg.id, child = %id, reason = %reason, "child exited; not restarting it");
            c.entry.child.addr().mark_stopped();
            self.emit_exit(idx, reason.clone(), false);
            let c = &mut self.children[idx];
            if c.entry.restart == Restart::Temporary || self.cfg.dynamic {
                self.forget(idx);
            } else {
                c.status = ChildStatus::Exited(reason.to_string().into());
            }
            return Ok(());
        }
        c.entry.child.addr().mark_restarting();
        c.status = ChildStatus::Restarting;
        let now = Instant::now();
        let within_intensity = self.note_restart(now);
        self.emit_exit(idx, reason.clone(), within_intensity);
        if !within_intensity {
            tracing::error!(supervisor = %self.cfg.id, child = %id, reason = %reason, "restart intensity exceeded; shutting down");
            return Err(self.escalate(&id, reason).await);
        }
        tracing::info!(supervisor = %self.cfg.id, child = %id, reason = %reason, "restarting child");

        // Which children go down with it, and come back in start order.
        let range = match self.cfg.strategy {
            Strategy::OneForOne => idx..idx + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => idx..self.children.len(),
        };
        // Siblings go down last-started first. Temporary ones are not restarted: OTP
        // removes them.
        let mut temporaries = Vec::new();
        for i in range.clone().rev() {
            if i == idx {
                continue;
            }
            let temporary = self.children[i].entry.restart == Restart::Temporary;
            if !temporary {
                self.children[i].entry.child.addr().mark_restarting();
            }
            self.shutdown_child(i, !temporary).await;
            if temporary {
                temporaries.push(i);
            } else {
                self.children[i].status = ChildStatus::Restarting;
            }
        }
        // Keyed by address: anonymous children share an id.
        let keys: Vec<usize> = self.children[range]
            .iter()
            .filter(|c| c.entry.restart != Restart::Temporary)
            .map(|c| c.slot)
            .collect();
        let delay = self.next_delay(idx, now);
        // Indices are done with: `temporaries` is in descending order, so removing keeps
        // the rest valid.
        for i in temporaries {
            self.forget(i);
        }
        let epoch = self.await_restart(&keys);
        match delay {
            Some(d) if !d.is_zero() => {
                self.schedule(myself, keys, epoch, Some(d));
                Ok(())
            }
            _ => self.restart_keys(myself, &keys, epoch).await,
        }
    }

    /// The backoff delay before restarting the child at `idx` again, if there is a backoff.
    fn next_delay(&mut self, idx: usize, now: Instant) -> Option<std::time::Duration> {
        let delay = self.cfg.backoff.map(|b| {
            let c = &mut self.children[idx];
            if c.last_restart
                .is_some_and(|t| now.saturating_duration_since(t) > b.max)
            {
                c.consecutive = 0;
            }
            let d = b.delay(c.consecutive);
            c.consecutive = c.consecutive.saturating_add(1);
            d
        });
        self.children[idx].last_restart = Some(now);
        delay
    }

    /// Starts a new restart of the children with these keys: they wait for its epoch, so
    /// an earlier restart still pending for them comes to nothing.
    fn await_restart(&mut self, keys: &[usize]) -> u64 {
        self.epoch += 1;
        let epoch = self.epoch;
        for key in keys {
            if let Some(idx) = self.position_by_slot(*key) {
                self.children[idx].pending_epoch = epoch;
            }
        }
        epoch
    }

    /// Sends the supervisor the next attempt of a restart: at once (behind whatever is
    /// queued) or after `delay`.
    fn schedule(
        &self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        keys: Vec<usize>,
        epoch: u64,
        delay: Option<std::time::Duration>,
    ) {
        let msg = Envelope::new(None, SupervisorMsg(Request::Restart { keys, epoch }));
        match delay {
            Some(d) if !d.is_zero() => {
                let me = myself.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    // If the supervisor has gone, nothing is left to restart.
                    let _ = me.send_message(msg);
                });
            }
            // If the supervisor is stopping, nothing is left to restart.
            _ => {
                let _ = myself.send_message(msg);
            }
        }
    }

    /// One attempt to start the given children (by address) again, in order.
    ///
    /// A start that fails counts as another restart (past the intensity the supervisor
    /// gives up), and the next attempt is sent to the supervisor as a message (after the
    /// backoff delay, if any), so it serves requests and a shutdown in between, as OTP's
    /// supervisor does. Which children the next attempt starts follows OTP: under
    /// `OneForAll` the children this attempt started are shut down again and the whole
    /// group restarts; otherwise it resumes with the child that failed (those started
    /// before it under `RestForOne` do not depend on it, and stay).
    async fn restart_keys(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        keys: &[usize],
        epoch: u64,
    ) -> Result<(), ActorProcessingErr> {
        let sup = myself.get_cell();
        let mut started = Vec::new();
        for (pos, key) in keys.iter().enumerate() {
            let Some(idx) = self.position_by_slot(*key) else {
                continue;
            };
            let c = &self.children[idx];
            // Only a child still waiting for this very restart: not one terminated in the
            // meantime, nor one a later restart (of a group it belongs to) will bring back.
            if c.cell.is_some() || c.status != ChildStatus::Restarting || c.pending_epoch != epoch {
                continue;
            }
            let id = c.entry.id.clone();
            let addr_key = c.entry.child.addr().key();
            match self.start_child(idx, &sup).await {
                Ok(true) => {
                    let c = &mut self.children[idx];
                    c.restarts = c.restarts.saturating_add(1);
                    RESTARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let incarnation = c.entry.child.addr().incarnation();
                    self.emit(SupervisorEvent::ChildRestarted {
                        child: id.to_string(),
                        key: addr_key,
                        incarnation,
                    });
                    started.push(idx);
                }
                Ok(false) => {
                    tracing::info!(supervisor = %self.cfg.id, child = %id, "child answered ignore to its restart; it stays down");
                    self.emit(SupervisorEvent::ChildIgnored {
                        child: id.to_string(),
                        key: addr_key,
                    });
                }
                Err(e) => {
                    let reason = match e {
                        SpawnError::Init { reason, .. } => reason,
                        other => ExitReason::Failed(Arc::new(other)),
                    };
                    tracing::warn!(supervisor = %self.cfg.id, child = %id, reason = %reason, "restart failed");
                    self.emit(SupervisorEvent::RestartFailed {
                        child: id.to_string(),
                        key: addr_key,
                        reason: reason.clone(),
                    });
                    let now = Instant::now();
                    if !self.note_restart(now) {
                        return Err(self.escalate(&id, reason).await);
                    }
                    let retry = if self.cfg.strategy == Strategy::OneForAll {
                        for &i in started.iter().rev() {
                            self.children[i].entry.child.addr().mark_restarting();
                            self.shutdown_child(i, true).await;
                            self.children[i].status = ChildStatus::Restarting;
                        }
                        keys.to_vec()
                    } else {
                        keys[pos..].to_vec()
                    };
                    let delay = self.next_delay(idx, now);
                    let epoch = self.await_restart(&retry);
                    self.schedule(myself, retry, epoch, delay);
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
        req: Request,
    ) -> Result<(), ActorProcessingErr> {
        match req {
            // The adoption, and the exit seen for it, were handled before this request.
            Request::Wake => {}
            Request::TerminateChild(key, reply) => {
                let found = match &key {
                    ChildKey::Id(id) => self.position(id),
                    ChildKey::Addr(slot) => self.position_by_slot(*slot),
                };
                let r = match found {
                    None => Err(SupervisorError::UnknownChild(match key {
                        ChildKey::Id(id) => id,
                        ChildKey::Addr(_) => "<by address>".to_owned(),
                    })),
                    Some(idx) => {
                        self.shutdown_child(idx, false).await;
                        let c = &mut self.children[idx];
                        c.entry.child.addr().mark_stopped();
                        c.status = ChildStatus::Terminated;
                        if self.cfg.dynamic || c.entry.restart == Restart::Temporary {
                            self.forget(idx);
                        }
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Request::RestartChild(id, reply) => {
                let r = match self.position(&id) {
                    None => Err(SupervisorError::UnknownChild(id)),
                    Some(idx) if self.children[idx].cell.is_some() => {
                        Err(SupervisorError::Running(id))
                    }
                    Some(idx) if self.children[idx].status == ChildStatus::Restarting => {
                        Err(SupervisorError::Restarting(id))
                    }
                    // Answering ignore again is not an error (OTP's `{ok, undefined}`).
                    Some(idx) => self
                        .start_child(idx, &myself.get_cell())
                        .await
                        .map(drop)
                        .map_err(SupervisorError::from),
                };
                let _ = reply.send(r);
            }
            Request::GetChildSpec(id, reply) => {
                let r = match self.position(&id) {
                    None => Err(SupervisorError::UnknownChild(id)),
                    Some(idx) => {
                        let e = &self.children[idx].entry;
                        Ok(ChildSpecInfo {
                            id: e.id.to_string(),
                            name: e.name.clone(),
                            restart: e.restart,
                            shutdown: e.shutdown,
                            kind: e.kind,
                        })
                    }
                };
                let _ = reply.send(r);
            }
            Request::DeleteChild(id, reply) => {
                let r = match self.position(&id) {
                    None => Err(SupervisorError::UnknownChild(id)),
                    Some(idx) if self.children[idx].cell.is_some() => {
                        Err(SupervisorError::Running(id))
                    }
                    Some(idx) if self.children[idx].status == ChildStatus::Restarting => {
                        Err(SupervisorError::Restarting(id))
                    }
                    Some(idx) => {
                        self.forget(idx);
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Request::WhichChildren(reply) => {
                let _ = reply.send(self.children.iter().map(|c| self.info(c)).collect());
            }
            Request::CountChildren(reply) => {
                let mut n = ChildCounts::default();
                for c in &self.children {
                    n.specs += 1;
                    n.active += usize::from(c.cell.is_some());
                    match c.entry.kind {
                        ChildKind::Worker => n.workers += 1,
                        ChildKind::Supervisor => n.supervisors += 1,
                    }
                }
                let _ = reply.send(n);
            }
            Request::Subtree(reply) => {
                let kids = self
                    .children
                    .iter()
                    .map(|c| (self.info(c), c.entry.child.as_supervisor()))
                    .collect();
                let _ = reply.send((self.cfg.strategy, kids));
            }
            Request::Restart { keys, epoch } => {
                return self.restart_keys(myself, &keys, epoch).await;
            }
        }
        Ok(())
    }

    /// Takes in the children that `start_child` spawned since the last call, and returns
    /// the exits already seen for any of them.
    fn take_in_adoptions(&mut self, list: Vec<Adoption>) -> Vec<(ractor::ActorId, ExitReason)> {
        let mut exits = Vec::new();
        for Adoption {
            entry,
            cell,
            linked_to,
        } in list
        {
            if linked_to != self.me {
                // Spawned under an earlier incarnation of this supervisor, which took it
                // down when it exited.
                self.cfg.members.discard(&entry);
                continue;
            }
            let Some(cell) = cell else {
                // Answered ignore: kept, not running.
                let mut child = Child::new(entry, None);
                child.status = ChildStatus::Ignored;
                self.push_child(child);
                continue;
            };
            let actor = cell.get_id();
            self.push_child(Child::new(entry, Some(cell)));
            if !self.orphans.is_empty() {
                if let Some(reason) = self.orphans.remove(&actor) {
                    exits.push((actor, reason));
                }
            }
        }
        exits
    }

    /// Takes in pending adoptions and handles the exits already seen for them.
    async fn adopt_pending(
        &mut self,
        myself: &ActorRef<Envelope<SupervisorMsg>>,
    ) -> Result<(), ActorProcessingErr> {
        let list = self.cfg.members.take_adoptions();
        for (actor, reason) in self.take_in_adoptions(list) {
            self.child_exited(myself, actor, reason).await?;
        }
        Ok(())
    }

    /// Adds and starts a child of the spec, from inside the supervisor. A child that
    /// answers ignore is kept, not running, unless it is `Temporary` (as OTP).
    async fn add_child(
        &mut self,
        mut entry: ChildEntry,
        sup: &ActorCell,
    ) -> Result<(), SpawnError> {
        self.cfg.members.admit(&mut entry)?;
        self.push_child(Child::new(entry, None));
        let idx = self.children.len() - 1;
        match self.start_child(idx, sup).await {
            Ok(true) => {}
            Ok(false) => {
                if self.children[idx].entry.restart == Restart::Temporary {
                    self.forget(idx);
                }
            }
            Err(e) => {
                self.forget(idx);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl ractor::Actor for Core {
    type Msg = Envelope<SupervisorMsg>;
    type State = State;
    type Arguments = Config;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        cfg: Config,
    ) -> Result<State, ActorProcessingErr> {
        cfg.exit.send_replace(None);
        // Children added at run time do not survive a restart of their supervisor (as in
        // OTP); the spec's children start again.
        cfg.members.begin_incarnation();
        let entries = cfg.children.clone();
        let mut state = State {
            cfg,
            me: myself.get_id(),
            children: Vec::new(),
            at: FxHashMap::default(),
            ids: FxHashMap::default(),
            running: FxHashMap::default(),
            expected: HashSet::new(),
            orphans: HashMap::new(),
            restarts: VecDeque::new(),
            epoch: 0,
        };
        let sup = myself.get_cell();
        for entry in entries {
            let child = entry.id.clone();
            if let Err(e) = state.add_child(entry, &sup).await {
                state.shutdown_all().await;
                return Err(Box::new(SpawnError::Child {
                    supervisor: state.cfg.id.clone(),
                    child: child.to_string(),
                    source: Box::new(e),
                }));
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        env: Envelope<SupervisorMsg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        Box::pin(async move {
            state.adopt_pending(&myself).await?;
            match env.open() {
                Opened::One(_, msg, _) => state.handle(&myself, msg.0).await,
                // No batch is sent here (nothing outside this crate can build a request);
                // were one, its requests are handled in order all the same.
                Opened::Run(run) => {
                    for env in run {
                        state.handle(&myself, env.into_msg().0).await?;
                    }
                    Ok(())
                }
                // Nor a feed's doorbell.
                Opened::Feed(mut bell) => {
                    while let Some((_, msg)) = bell.next() {
                        state.handle(&myself, msg.0).await?;
                    }
                    Ok(())
                }
            }
        })
        .await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        // ractor moves this future for every event (one per child start too): the exit
        // handling, whose future is large, is boxed so the common path stays small.
        let (actor, reason) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                (cell.get_id(), ExitReason::from_failure(err))
            }
            SupervisionEvent::ActorTerminated(cell, state, reason) => (
                cell.get_id(),
                ExitReason::from_termination(state.is_some(), reason),
            ),
            _ => return Ok(()),
        };
        Box::pin(async move {
            // The exit may concern a child still waiting for adoption.
            state.adopt_pending(&myself).await?;
            state.child_exited(&myself, actor, reason).await
        })
        .await
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown_all().await;
        state.cfg.exit.send_replace(Some(ExitReason::Normal(None)));
        Ok(())
    }
}

/// Stops a child's incarnation by its shutdown policy and returns how it went down:
/// `shutdown`, or killed (a brutal shutdown, or a timeout that ran out).
async fn stop_child(cell: ActorCell, shutdown: Shutdown, id: Arc<str>) -> ExitReason {
    match shutdown {
        Shutdown::Brutal => {
            let _ = cell.kill_and_wait(None).await;
            ExitReason::Killed
        }
        Shutdown::Timeout(d) => {
            if let Err(ractor::RactorErr::Timeout) =
                cell.stop_and_wait(Some(SHUTDOWN.into()), Some(d)).await
            {
                tracing::warn!(child = %id, timeout = ?d, "child did not stop within its shutdown timeout; killing it");
                let _ = cell.kill_and_wait(None).await;
                ExitReason::Killed
            } else {
                ExitReason::shutdown()
            }
        }
        Shutdown::Infinity => {
            let _ = cell.stop_and_wait(Some(SHUTDOWN.into()), None).await;
            ExitReason::shutdown()
        }
    }
}

/// Children restarted by every supervisor of this process, since it started.
pub(crate) static RESTARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
