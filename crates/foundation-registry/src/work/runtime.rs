//! One node's part of a cluster-wide ecosystem: the receiver peers send to, the local
//! workers, the coordinator (a singleton of the ecosystem's distributed supervisor) and
//! the loop that watches membership, re-sends and reports.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use foundation_actors::ecosystem::TrySendError;
use foundation_actors::{Actor, ActorError, Addr, ChildSpec, Ecosystem, EcosystemSpec, Routing};
use foundation_cluster::node::{ClusterEvent, ExportConfig, Node};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use super::dispatch::{Body, Dispatch, Outcome, Sink};
use super::error::{JobError, MapReduceError, StartError, SubmitError};
use super::run::{MapReduce, RunShared};
use super::spec::{Kinds, WorkSpec};
use super::wire::{Line, Wire, WorkMsg};
use crate::ClusterRegistry;
use crate::cluster::lock;
use crate::distributed::{ChildName, DistributedSpec, DistributedSupervisor, StartChildError};
use crate::placement::{ChildPlacement, Placement};

/// The coordinator's child id in the ecosystem's distributed supervisor.
const COORDINATOR: &str = "coordinator";

/// How often the loop re-sends what waits and lets waiting submitters look again.
const TICK: Duration = Duration::from_millis(25);

/// Messages from other nodes the receiver may hold: results and refusals are bounded by
/// the jobs this node's submitters keep, jobs by the peers' view of this node's room.
/// Far above both; the node's default (which sheds) would lose results.
const RECEIVER_QUEUE: usize = 1 << 20;

/// A job on this node's queue.
pub(crate) struct Task {
    ticket: u64,
    from: String,
    kind: String,
    reduce: Option<String>,
    items: Vec<Vec<u8>>,
}

/// One node's part: what its handles, receiver, workers and coordinator share.
pub(crate) struct Shared {
    me: String,
    /// This start of this node's part (random), in its reports and its `Bye`.
    part: u64,
    node: Node,
    name: String,
    service: String,
    workers: usize,
    capacity: usize,
    chunk: usize,
    role: Option<String>,
    roles: Vec<String>,
    respawn: bool,
    report_every: Duration,
    run_timeout: Duration,
    kinds: Arc<Kinds>,
    dispatch: Mutex<Dispatch>,
    /// Woken when room may have appeared (a result, a refusal, a table, a tick).
    room: tokio::sync::Notify,
    next_ticket: AtomicU64,
    local: OnceLock<Ecosystem<Task>>,
    /// The worker count last applied to the local ecosystem.
    applied: AtomicUsize,
    sup: OnceLock<DistributedSupervisor<WorkMsg>>,
    closed: AtomicBool,
    ran_here: AtomicU64,
    parts: Mutex<Parts>,
}

/// What a shutdown stops.
#[derive(Default)]
struct Parts {
    registry: Option<ClusterRegistry<ChildName, WorkMsg>>,
    receiver: Option<Addr<WorkMsg>>,
    task: Option<JoinHandle<()>>,
}

fn now() -> Instant {
    Instant::now()
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Dispatch> {
        lock(&self.dispatch)
    }

    fn sup(&self) -> Option<&DistributedSupervisor<WorkMsg>> {
        self.sup.get()
    }

    /// Jobs queued on this node or in its workers' hands.
    fn local_load(&self) -> u32 {
        self.local.get().map_or(0, |e| {
            u32::try_from(e.stats().in_flight).unwrap_or(u32::MAX)
        })
    }

    /// Sends what waits, while nodes have room.
    pub(crate) fn pump(&self) {
        loop {
            let Some((ticket, node, body)) = self.lock().next_send(now()) else {
                return;
            };
            if node == self.me {
                self.enqueue_local(Task {
                    ticket,
                    from: self.me.clone(),
                    kind: body.kind.clone(),
                    reduce: body.reduce.clone(),
                    items: body.items.clone(),
                });
                continue;
            }
            let msg = WorkMsg(Wire::Job {
                ticket,
                from: self.me.clone(),
                kind: body.kind.clone(),
                reduce: body.reduce.clone(),
                items: body.items.clone(),
            });
            if let Err(e) = self.node.send(&node, &self.service, &msg) {
                tracing::debug!(ecosystem = %self.name, %node, error = %e, "a job could not be sent; it waits again");
                self.lock().unsend(ticket, &node, now());
            }
        }
    }

    /// A job for this node's queue (sent by a peer, or by this node to itself): queued,
    /// or refused back to its sender when the queue is full.
    fn enqueue_local(&self, task: Task) {
        let refused = match self.local.get() {
            None => Some(task),
            Some(eco) => match eco.try_send(task) {
                Ok(()) => None,
                Err(TrySendError::Full(t) | TrySendError::Stopped(t)) => Some(t),
            },
        };
        let Some(task) = refused else { return };
        let load = self.local_load();
        if task.from == self.me {
            self.lock().nack(task.ticket, &self.me, load, now());
            return;
        }
        let msg = WorkMsg(Wire::Nack {
            ticket: task.ticket,
            node: self.me.clone(),
            load,
        });
        if let Err(e) = self.node.send(&task.from, &self.service, &msg) {
            tracing::debug!(ecosystem = %self.name, to = %task.from, error = %e, "a refusal could not be sent");
        }
    }

    /// Job `ticket` ran on `node`.
    fn complete(&self, ticket: u64, node: &str, outcome: Result<Vec<u8>, String>, load: u32) {
        let entry = self.lock().complete(ticket, node, load);
        if let Some(entry) = entry {
            match entry.sink {
                Sink::One(tx) => {
                    // The caller may have dropped its `Job`.
                    let _ = tx.send((node.to_owned(), outcome));
                }
                Sink::Run(run, items) => {
                    if !run.chunk_done(node, items, outcome) {
                        self.cancel_run(&run);
                    }
                }
            }
        }
        self.room.notify_waiters();
        self.pump();
    }

    pub(crate) fn cancel_run(&self, run: &Arc<RunShared>) {
        self.lock().cancel_run(run);
    }

    fn node_down(&self, node: &str) {
        let lost = self.lock().node_down(node);
        if lost > 0 {
            tracing::info!(ecosystem = %self.name, %node, jobs = lost, "node gone: its jobs are sent again");
        }
        self.room.notify_waiters();
        self.pump();
    }

    fn on_table(&self, lines: &[Line], peak: u32) {
        self.lock().set_table(lines, peak);
        if let (Some(eco), Some(mine)) =
            (self.local.get(), lines.iter().find(|l| l.node == self.me))
        {
            let want = usize::try_from(mine.workers).unwrap_or(usize::MAX);
            if want >= 1 && self.applied.swap(want, Ordering::AcqRel) != want {
                let eco = eco.clone();
                let name = self.name.clone();
                tokio::spawn(async move {
                    if let Err(e) = eco.resize(want).await {
                        tracing::warn!(ecosystem = %name, workers = want, error = %e, "workers could not be resized");
                    }
                });
            }
        }
        self.room.notify_waiters();
        self.pump();
    }

    /// This node's report to the coordinator.
    fn report(&self) {
        let Some(sup) = self.sup() else { return };
        let peak = self.lock().peak;
        let msg = WorkMsg(Wire::Report {
            node: self.me.clone(),
            part: self.part,
            roles: self.roles.clone(),
            load: self.local_load(),
            peak,
        });
        if let Err(e) = sup.cast(COORDINATOR, msg) {
            // Failing over, or not started yet: the next report goes to the new one.
            tracing::trace!(ecosystem = %self.name, error = %e, "no coordinator to report to");
        }
    }

    fn handle(&self, msg: Wire) {
        match msg {
            Wire::Job {
                ticket,
                from,
                kind,
                reduce,
                items,
            } => self.enqueue_local(Task {
                ticket,
                from,
                kind,
                reduce,
                items,
            }),
            Wire::Done {
                ticket,
                node,
                outcome,
                load,
            } => self.complete(ticket, &node, outcome, load),
            Wire::Nack { ticket, node, load } => {
                self.lock().nack(ticket, &node, load, now());
                self.pump();
            }
            Wire::Table { lines, peak } => self.on_table(&lines, peak),
            Wire::Bye { node, part } => {
                let lost = self.lock().part_gone(&node, part);
                if lost > 0 {
                    tracing::info!(ecosystem = %self.name, %node, jobs = lost, "node's part shut down: its jobs are sent again");
                }
                self.room.notify_waiters();
                self.pump();
            }
            Wire::Report { .. } => {
                tracing::debug!(ecosystem = %self.name, "a report reached a node's receiver; dropped");
            }
        }
    }
}

/// The process peers send to.
#[derive(Clone)]
struct Receiver {
    shared: Weak<Shared>,
}

impl Actor for Receiver {
    type Msg = WorkMsg;
    type State = ();
    type Args = ();

    async fn init(&self, _: &Addr<WorkMsg>, (): ()) -> Result<(), ActorError> {
        Ok(())
    }

    async fn handle(&self, _: &Addr<WorkMsg>, msg: WorkMsg, (): &mut ()) -> Result<(), ActorError> {
        if let Some(shared) = self.shared.upgrade() {
            shared.handle(msg.0);
        }
        Ok(())
    }
}

/// One of this node's workers: runs a job on a blocking thread and sends its outcome
/// back to the node that submitted it.
struct LocalWorker {
    shared: Weak<Shared>,
}

/// What a panic carried, as text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

impl foundation_actors::Worker for LocalWorker {
    type Job = Task;

    async fn handle(&mut self, task: Task) -> Result<(), ActorError> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let Task {
            ticket,
            from,
            kind,
            reduce,
            items,
        } = task;
        let kinds = shared.kinds.clone();
        let ran =
            tokio::task::spawn_blocking(move || kinds.execute(&kind, reduce.as_deref(), &items))
                .await;
        let outcome = match ran {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => Err(format!("panicked: {}", panic_text(&*e.into_panic()))),
            Err(e) => Err(e.to_string()),
        };
        shared.ran_here.fetch_add(1, Ordering::Relaxed);
        // This job still counts in the load; the next one taken will not.
        let load = shared.local_load().saturating_sub(1);
        if from == shared.me {
            let me = shared.me.clone();
            shared.complete(ticket, &me, outcome, load);
            return Ok(());
        }
        let msg = WorkMsg(Wire::Done {
            ticket,
            node: shared.me.clone(),
            outcome,
            load,
        });
        // Waits while the link to the submitter is full: the workers slow to its pace.
        if let Err(e) = shared.node.send_wait(&from, &shared.service, &msg).await {
            tracing::debug!(ecosystem = %shared.name, to = %from, error = %e, "a result could not be sent");
        }
        Ok(())
    }
}

/// The coordinator: a singleton of the ecosystem's distributed supervisor. It decides
/// how many workers each node runs and tells every node the table of workers and loads.
/// It keeps nothing a failover would lose: a new one rebuilds the table from the next
/// reports (the worker total it keeps comes back in them).
#[derive(Clone)]
struct Coordinator {
    shared: Weak<Shared>,
}

/// A node's last report: its part, roles and load.
struct Reported {
    part: u64,
    roles: Vec<String>,
    load: u32,
}

/// What the coordinator knows.
#[derive(Default)]
pub(crate) struct Board {
    reports: HashMap<String, Reported>,
    pub(crate) peak: u32,
    last: Vec<Line>,
    sent: Option<Instant>,
}

impl Board {
    /// Takes `node`'s report (reports of nodes no longer `members` are dropped); whether
    /// it is the first of its part.
    pub(crate) fn report(
        &mut self,
        node: String,
        part: u64,
        roles: Vec<String>,
        load: u32,
        peak: u32,
        members: &[String],
    ) -> bool {
        let new = self
            .reports
            .insert(node, Reported { part, roles, load })
            .is_none_or(|old| old.part != part);
        self.reports.retain(|n, _| members.contains(n));
        self.peak = self.peak.max(peak);
        new
    }

    /// Workers per node: `workers` on each eligible node (those offering `role`), or,
    /// when lost workers are replaced (`respawn`), the largest total seen spread over the
    /// eligible nodes.
    pub(crate) fn lines(
        &mut self,
        role: Option<&str>,
        workers: usize,
        respawn: bool,
        members: &[String],
    ) -> Vec<Line> {
        let eligible: Vec<&String> = members
            .iter()
            .filter(|m| match role {
                None => true,
                Some(role) => self
                    .reports
                    .get(*m)
                    .is_some_and(|r| r.roles.iter().any(|r| r == role)),
            })
            .collect();
        let n = u32::try_from(workers).unwrap_or(u32::MAX);
        let count = u32::try_from(eligible.len()).unwrap_or(u32::MAX);
        let mut give: HashMap<&String, u32> = HashMap::new();
        if respawn && count > 0 {
            self.peak = self.peak.max(n.saturating_mul(count));
            let (each, extra) = (self.peak / count, self.peak % count);
            for (i, m) in eligible.iter().enumerate() {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                give.insert(m, each + u32::from(i < extra));
            }
        } else {
            for m in &eligible {
                give.insert(m, n);
            }
        }
        members
            .iter()
            .map(|m| Line {
                node: m.clone(),
                workers: give.get(m).copied().unwrap_or(0),
                load: self.reports.get(m).map_or(0, |r| r.load),
                part: self.reports.get(m).map_or(0, |r| r.part),
            })
            .collect()
    }
}

impl Actor for Coordinator {
    type Msg = WorkMsg;
    type State = Board;
    type Args = ();

    async fn init(&self, _: &Addr<WorkMsg>, (): ()) -> Result<Board, ActorError> {
        Ok(Board::default())
    }

    async fn handle(
        &self,
        _: &Addr<WorkMsg>,
        msg: WorkMsg,
        board: &mut Board,
    ) -> Result<(), ActorError> {
        let Wire::Report {
            node,
            part,
            roles,
            load,
            peak,
        } = msg.0
        else {
            return Ok(());
        };
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let Some(sup) = shared.sup() else {
            return Ok(());
        };
        let members = sup.members();
        let new = board.report(node, part, roles, load, peak, &members);
        let lines = board.lines(
            shared.role.as_deref(),
            shared.workers,
            shared.respawn,
            &members,
        );
        let changed = lines.len() != board.last.len()
            || lines
                .iter()
                .zip(&board.last)
                .any(|(a, b)| a.node != b.node || a.workers != b.workers || a.part != b.part);
        let due = board
            .sent
            .is_none_or(|at| at.elapsed() >= shared.report_every / 2);
        if !(new || changed || due) {
            return Ok(());
        }
        for m in &members {
            if *m == shared.me {
                shared.on_table(&lines, board.peak);
                continue;
            }
            let msg = WorkMsg(Wire::Table {
                lines: lines.clone(),
                peak: board.peak,
            });
            if let Err(e) = shared.node.send(m, &shared.service, &msg) {
                tracing::debug!(ecosystem = %shared.name, to = %m, error = %e, "the table could not be sent");
            }
        }
        board.last = lines;
        board.sent = Some(Instant::now());
        Ok(())
    }
}

/// The loop of one node's part: membership events (a dead node's jobs are sent again),
/// the tick that re-sends what waits, and the reports to the coordinator.
async fn run(
    weak: Weak<Shared>,
    mut events: broadcast::Receiver<ClusterEvent>,
    report_every: Duration,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: Option<Instant> = None;
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(shared) = weak.upgrade() else { return };
                match e {
                    Ok(ClusterEvent::NodeDown { member, .. }) => shared.node_down(&member.id),
                    Ok(ClusterEvent::NodeUp(member)) => shared.lock().node_up(&member.id),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            _ = tick.tick() => {
                let Some(shared) = weak.upgrade() else { return };
                if shared.closed.load(Ordering::Acquire) {
                    return;
                }
                shared.room.notify_waiters();
                shared.pump();
                // Until the first table comes, report at every tick.
                let seen = shared.lock().table_seen;
                if !seen || reported.is_none_or(|at| at.elapsed() >= report_every) {
                    shared.report();
                    reported = Some(Instant::now());
                }
            }
        }
    }
}

/// One node's load, as this node sees it ([`ClusterEcosystem::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeLoad {
    /// The node.
    pub node: String,
    /// Workers the coordinator gives it.
    pub workers: u32,
    /// Its last reported load: jobs queued there or in its workers' hands.
    pub load: u32,
    /// This node's jobs sent there and not done.
    pub mine: u32,
}

/// Counts of one node's part of a cluster-wide ecosystem ([`ClusterEcosystem::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkStats {
    /// The nodes of the coordinator's last table (nodes known down left out), sorted.
    pub nodes: Vec<NodeLoad>,
    /// Jobs this node submitted and keeps until done (sent, or waiting to be sent).
    pub outstanding: usize,
    /// Of those, jobs waiting to be sent (no node has room, or re-queued).
    pub waiting: usize,
    /// Jobs sent again because their node died or left.
    pub requeued: u64,
    /// Results that came for jobs done already (a re-queued job's first run finished).
    pub duplicates: u64,
    /// Jobs a node refused because its queue was full.
    pub refused: u64,
    /// Jobs this node's workers ran (for any node).
    pub ran_here: u64,
    /// This node's workers now.
    pub workers_here: usize,
}

/// A job submitted by [`ClusterEcosystem::submit`]: its result comes later.
pub struct Job<O> {
    rx: oneshot::Receiver<Outcome>,
    _out: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for Job<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl<O: DeserializeOwned> Job<O> {
    /// Waits for the job's output. A job whose node dies is sent again elsewhere, so
    /// this waits for that run too.
    ///
    /// # Errors
    ///
    /// [`JobError::Failed`] (it failed where it ran), [`JobError::Output`],
    /// [`JobError::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the result when it comes; the job still runs.
    pub async fn result(self) -> Result<O, JobError> {
        match self.rx.await {
            Err(_) => Err(JobError::Closed),
            Ok((node, Err(why))) => Err(JobError::Failed { node, why }),
            Ok((_, Ok(bytes))) => postcard::from_bytes(&bytes).map_err(JobError::Output),
        }
    }

    /// The result if it is in, without waiting; `None` if not yet.
    ///
    /// # Errors
    ///
    /// As [`result`](Self::result).
    pub fn try_result(&mut self) -> Option<Result<O, JobError>> {
        match self.rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(JobError::Closed)),
            Ok((node, Err(why))) => Some(Err(JobError::Failed { node, why })),
            Ok((_, Ok(bytes))) => Some(postcard::from_bytes(&bytes).map_err(JobError::Output)),
        }
    }
}

/// One node's part of a cluster-wide ecosystem. Cheap to clone; every clone is the same.
/// See the [module docs](super).
#[derive(Clone)]
pub struct ClusterEcosystem {
    shared: Arc<Shared>,
}

impl fmt::Debug for ClusterEcosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterEcosystem")
            .field("name", &self.shared.name)
            .field("node", &self.shared.me)
            .finish_non_exhaustive()
    }
}

impl ClusterEcosystem {
    /// Starts this node's part of the ecosystem `spec` names: its workers (unless the
    /// spec restricts them to a role this node does not offer), its receiver, its
    /// distributed supervisor and, if none runs in the cluster, the coordinator. Start
    /// it with the same name, kinds and reducers on every node.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] (zero workers, capacity or chunk),
    /// [`StartError::NameTaken`], [`StartError::Registry`], [`StartError::Supervisor`],
    /// [`StartError::Spawn`].
    pub async fn start(node: &Node, spec: WorkSpec) -> Result<Self, StartError> {
        if spec.workers == 0 || spec.capacity == 0 || spec.chunk == 0 {
            return Err(StartError::Config(
                "a cluster-wide ecosystem needs at least one worker per node, a capacity and a chunk of at least one".into(),
            ));
        }
        let runs_workers = spec.runs_workers();
        let me = node.name().to_owned();
        let scope = format!("$work/{}", spec.name);
        let mut dispatch = Dispatch::new(spec.capacity);
        // Before the coordinator's first table: this node alone, if it runs workers.
        if runs_workers {
            dispatch.set_table(
                &[Line {
                    node: me.clone(),
                    workers: u32::try_from(spec.workers).unwrap_or(u32::MAX),
                    load: 0,
                    part: 0,
                }],
                0,
            );
            dispatch.table_seen = false;
        }
        let shared = Arc::new(Shared {
            me: me.clone(),
            part: fastrand::u64(..),
            node: node.clone(),
            name: spec.name.clone(),
            service: scope.clone(),
            workers: spec.workers,
            capacity: spec.capacity,
            chunk: spec.chunk,
            role: spec.role.clone(),
            roles: spec.roles.iter().cloned().collect(),
            respawn: spec.respawn,
            report_every: spec.report_every,
            run_timeout: spec.run_timeout,
            kinds: Arc::new(spec.kinds),
            dispatch: Mutex::new(dispatch),
            room: tokio::sync::Notify::new(),
            next_ticket: AtomicU64::new(fastrand::u64(..) >> 2),
            local: OnceLock::new(),
            applied: AtomicUsize::new(spec.workers),
            sup: OnceLock::new(),
            closed: AtomicBool::new(false),
            ran_here: AtomicU64::new(0),
            parts: Mutex::new(Parts::default()),
        });
        let started = Self {
            shared: shared.clone(),
        };
        if let Err(e) = started.start_parts(node, runs_workers).await {
            started.shutdown().await;
            return Err(e);
        }
        Ok(started)
    }

    async fn start_parts(&self, node: &Node, runs_workers: bool) -> Result<(), StartError> {
        let shared = &self.shared;
        let weak = Arc::downgrade(shared);
        if runs_workers {
            let w = weak.clone();
            let eco = Ecosystem::start(
                EcosystemSpec::new(format!("work/{}", shared.name), shared.workers, move |_| {
                    LocalWorker { shared: w.clone() }
                })
                .capacity(shared.capacity)
                .routing(Routing::LeastLoaded),
            )
            .await?;
            let _ = shared.local.set(eco);
        }
        let receiver = foundation_actors::spawn(
            Receiver {
                shared: weak.clone(),
            },
            (),
        )
        .await?;
        lock(&shared.parts).receiver = Some(receiver.clone());
        if node
            .export_with(
                &shared.service,
                receiver,
                ExportConfig::new().max_queued(RECEIVER_QUEUE),
            )
            .is_err()
        {
            return Err(StartError::NameTaken(shared.name.clone()));
        }
        let registry: ClusterRegistry<ChildName, WorkMsg> =
            ClusterRegistry::start(node, &shared.service).await?;
        lock(&shared.parts).registry = Some(registry.clone());
        let w = weak.clone();
        let dspec = DistributedSpec::new(shared.service.clone())
            .kind(COORDINATOR, move |(): ()| {
                ChildSpec::new(COORDINATOR, Coordinator { shared: w.clone() }, ())
            });
        let sup = DistributedSupervisor::start(node, &registry, dspec).await?;
        let _ = shared.sup.set(sup.clone());
        // Subscribed before the coordinator is asked for, so no death is missed.
        let events = node.subscribe();
        let task = tokio::spawn(run(weak, events, shared.report_every));
        lock(&shared.parts).task = Some(task);
        // Every node declares the coordinator; the first start wins.
        match sup.place_child(
            COORDINATOR,
            &(),
            ChildPlacement::new(COORDINATOR, Placement::Singleton),
        ) {
            Ok(_) | Err(StartChildError::AlreadyStarted { .. }) => {}
            Err(e) => {
                tracing::warn!(ecosystem = %shared.name, error = %e, "the coordinator could not be placed; another node's will do");
            }
        }
        shared.report();
        Ok(())
    }

    /// The ecosystem's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where the coordinator runs now, if it answers.
    pub fn coordinator(&self) -> Option<String> {
        self.shared
            .sup()
            .and_then(|s| s.whereis(COORDINATOR))
            .map(|at| at.node().to_owned())
    }

    fn kind_checked<I: 'static, O: 'static>(&self, kind: &str) -> Result<(), SubmitError> {
        let k = self
            .shared
            .kinds
            .jobs
            .get(kind)
            .ok_or_else(|| SubmitError::UnknownKind {
                kind: kind.to_owned(),
            })?;
        if k.input != TypeId::of::<I>() || k.output != TypeId::of::<O>() {
            return Err(SubmitError::WrongTypes {
                kind: kind.to_owned(),
                input: k.input_name,
                output: k.output_name,
            });
        }
        Ok(())
    }

    fn ticket(&self) -> u64 {
        self.shared.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits a job of `kind` with `input`, waiting while every node's queue is full
    /// as this node sees it (backpressure). The job goes to the least-loaded node with
    /// room; this node keeps it until it is done, and sends it again elsewhere if its
    /// node dies first (at-least-once).
    ///
    /// # Errors
    ///
    /// [`SubmitError::UnknownKind`], [`SubmitError::WrongTypes`], [`SubmitError::Input`],
    /// [`SubmitError::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled submit has submitted nothing.
    pub async fn submit<I, O>(&self, kind: &str, input: &I) -> Result<Job<O>, SubmitError>
    where
        I: Serialize + 'static,
        O: DeserializeOwned + 'static,
    {
        self.submit_inner(kind, input, Wait::Forever).await
    }

    /// As [`submit`](Self::submit), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit), and [`SubmitError::Timeout`].
    ///
    /// # Cancel safety
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_timeout<I, O>(
        &self,
        kind: &str,
        input: &I,
        timeout: Duration,
    ) -> Result<Job<O>, SubmitError>
    where
        I: Serialize + 'static,
        O: DeserializeOwned + 'static,
    {
        self.submit_inner(kind, input, Wait::For(timeout)).await
    }

    /// Submits a job if a node has room now.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] when every node's queue is full as this node sees it (or
    /// jobs of this node wait to be sent already); otherwise as [`submit`](Self::submit).
    pub fn try_submit<I, O>(&self, kind: &str, input: &I) -> Result<Job<O>, SubmitError>
    where
        I: Serialize + 'static,
        O: DeserializeOwned + 'static,
    {
        let (body, tx, rx) = self.job_parts::<I, O>(kind, input)?;
        {
            let mut d = self.shared.lock();
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(SubmitError::Closed);
            }
            if !d.has_room(now()) {
                return Err(SubmitError::Full);
            }
            d.add(self.ticket(), body, Sink::One(tx));
        }
        self.shared.pump();
        Ok(Job {
            rx,
            _out: PhantomData,
        })
    }

    #[allow(clippy::type_complexity)]
    fn job_parts<I, O>(
        &self,
        kind: &str,
        input: &I,
    ) -> Result<
        (
            Arc<Body>,
            oneshot::Sender<Outcome>,
            oneshot::Receiver<Outcome>,
        ),
        SubmitError,
    >
    where
        I: Serialize + 'static,
        O: DeserializeOwned + 'static,
    {
        self.kind_checked::<I, O>(kind)?;
        let bytes = postcard::to_allocvec(input).map_err(|source| SubmitError::Input {
            kind: kind.to_owned(),
            source,
        })?;
        let body = Arc::new(Body {
            kind: kind.to_owned(),
            reduce: None,
            items: vec![bytes],
        });
        let (tx, rx) = oneshot::channel();
        Ok((body, tx, rx))
    }

    async fn submit_inner<I, O>(
        &self,
        kind: &str,
        input: &I,
        wait: Wait,
    ) -> Result<Job<O>, SubmitError>
    where
        I: Serialize + 'static,
        O: DeserializeOwned + 'static,
    {
        let (body, tx, rx) = self.job_parts::<I, O>(kind, input)?;
        let deadline = match wait {
            Wait::Forever => None,
            Wait::For(d) => Some((tokio::time::Instant::now() + d, d)),
        };
        let mut tx = Some(tx);
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so room appearing between the two is seen.
            notified.as_mut().enable();
            {
                let mut d = self.shared.lock();
                if self.shared.closed.load(Ordering::Acquire) {
                    return Err(SubmitError::Closed);
                }
                if d.has_room(now()) {
                    if let Some(tx) = tx.take() {
                        d.add(self.ticket(), body, Sink::One(tx));
                    }
                    break;
                }
            }
            match deadline {
                None => notified.await,
                Some((at, d)) => {
                    if tokio::time::timeout_at(at, notified).await.is_err() {
                        return Err(SubmitError::Timeout(d));
                    }
                }
            }
        }
        self.shared.pump();
        Ok(Job {
            rx,
            _out: PhantomData,
        })
    }

    /// Starts a map-reduce run: `items` cut into chunks (the spec's
    /// [`chunk`](WorkSpec::chunk)), each chunk a job that maps its items with job kind
    /// `map` and folds their outputs with reducer `reduce` on the node it goes to; the
    /// chunks' results are folded here as they come. Returns at once with the run's
    /// handle: its progress, and its result.
    ///
    /// Every item is mapped once into the result, whatever happens to the nodes: a
    /// chunk whose node dies is sent again, and a chunk's result counts once however
    /// many times it ran. With a reducer that is associative and commutative and a map
    /// that is a function of its item, the result is the one a single node gives.
    ///
    /// # Errors
    ///
    /// [`MapReduceError::UnknownKind`], [`MapReduceError::UnknownReduce`],
    /// [`MapReduceError::WrongTypes`] (the map's input is not `I`, or its output or the
    /// reducer's type is not `O`), [`MapReduceError::Item`] (nothing is sent then),
    /// [`MapReduceError::Closed`].
    pub fn start_map_reduce<I, O>(
        &self,
        map: &str,
        items: impl IntoIterator<Item = I>,
        reduce: &str,
    ) -> Result<MapReduce<O>, MapReduceError>
    where
        I: Serialize + 'static,
        O: Send + 'static,
    {
        let shared = &self.shared;
        let kind = shared
            .kinds
            .jobs
            .get(map)
            .ok_or_else(|| MapReduceError::UnknownKind {
                kind: map.to_owned(),
            })?;
        let reducer =
            shared
                .kinds
                .reducers
                .get(reduce)
                .ok_or_else(|| MapReduceError::UnknownReduce {
                    reduce: reduce.to_owned(),
                })?;
        if kind.input != TypeId::of::<I>()
            || kind.output != TypeId::of::<O>()
            || reducer.ty != TypeId::of::<O>()
        {
            return Err(MapReduceError::WrongTypes {
                kind: map.to_owned(),
                input: kind.input_name,
                output: kind.output_name,
                reduce: reduce.to_owned(),
                folds: reducer.ty_name,
            });
        }
        let mut chunks: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut total = 0;
        for (index, item) in items.into_iter().enumerate() {
            let bytes = postcard::to_allocvec(&item)
                .map_err(|source| MapReduceError::Item { index, source })?;
            match chunks.last_mut() {
                Some(c) if c.len() < shared.chunk => c.push(bytes),
                _ => chunks.push(vec![bytes]),
            }
            total += 1;
        }
        let run = Arc::new(RunShared::new(
            total,
            chunks.len(),
            reduce.to_owned(),
            shared.kinds.clone(),
        ));
        {
            let mut d = shared.lock();
            if shared.closed.load(Ordering::Acquire) {
                return Err(MapReduceError::Closed);
            }
            for items in chunks {
                let n = items.len();
                let body = Arc::new(Body {
                    kind: map.to_owned(),
                    reduce: Some(reduce.to_owned()),
                    items,
                });
                d.add(self.ticket(), body, Sink::Run(run.clone(), n));
            }
        }
        shared.pump();
        Ok(MapReduce::new(
            run,
            Arc::downgrade(shared),
            shared.run_timeout,
        ))
    }

    /// Runs map-reduce over the cluster and waits for its result (at most the spec's
    /// [`run_timeout`](WorkSpec::run_timeout)): [`start_map_reduce`](Self::start_map_reduce),
    /// then [`MapReduce::wait`]. `None` for no items.
    ///
    /// # Errors
    ///
    /// As [`start_map_reduce`](Self::start_map_reduce) and [`MapReduce::wait`].
    pub async fn map_reduce<I, O>(
        &self,
        map: &str,
        items: impl IntoIterator<Item = I>,
        reduce: &str,
    ) -> Result<Option<O>, MapReduceError>
    where
        I: Serialize + 'static,
        O: Send + 'static,
    {
        self.start_map_reduce(map, items, reduce)?.wait().await
    }

    /// Counts of this node's part: the table of nodes, this node's jobs, re-queues.
    pub fn stats(&self) -> WorkStats {
        let shared = &self.shared;
        let d = shared.lock();
        let nodes = d
            .peers()
            .into_iter()
            .map(|(node, p)| NodeLoad {
                mine: d.mine(&node),
                node,
                workers: p.workers,
                load: p.load,
            })
            .collect();
        WorkStats {
            nodes,
            outstanding: d.outstanding(),
            waiting: d.waiting(),
            requeued: d.requeued,
            duplicates: d.duplicates,
            refused: d.nacks,
            ran_here: shared.ran_here.load(Ordering::Relaxed),
            workers_here: shared.local.get().map_or(0, |e| e.stats().workers),
        }
    }

    /// Stops this node's part: peers are told (what they sent here is sent again
    /// elsewhere), this node's jobs and runs end with `Closed`, the workers stop (jobs
    /// queued here are dropped: their submitters send them again), the coordinator moves
    /// if it ran here.
    pub async fn shutdown(&self) {
        let shared = &self.shared;
        if shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (entries, peers) = {
            let mut d = shared.lock();
            let peers: Vec<String> = d.peers().into_iter().map(|(n, _)| n).collect();
            (d.take_all(), peers)
        };
        for peer in peers.iter().filter(|p| **p != shared.me) {
            let bye = WorkMsg(Wire::Bye {
                node: shared.me.clone(),
                part: shared.part,
            });
            if let Err(e) = shared.node.send(peer, &shared.service, &bye) {
                tracing::debug!(ecosystem = %shared.name, to = %peer, error = %e, "bye not sent");
            }
        }
        for entry in entries {
            if let Sink::Run(run, _) = entry.sink {
                run.close();
            }
        }
        shared.room.notify_waiters();
        if let Some(sup) = shared.sup() {
            sup.shutdown().await;
        }
        if let Some(eco) = shared.local.get() {
            eco.shutdown().await;
        }
        shared.node.unexport(&shared.service);
        let parts = std::mem::take(&mut *lock(&shared.parts));
        if let Some(task) = parts.task {
            task.abort();
        }
        if let Some(receiver) = parts.receiver {
            receiver.stop(None);
        }
        if let Some(registry) = parts.registry {
            registry.shutdown();
        }
    }
}

/// How long a submit waits for room.
#[derive(Clone, Copy)]
enum Wait {
    Forever,
    For(Duration),
}
