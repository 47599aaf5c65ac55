//! Ecosystems: a coordinator and N workers under one supervisor, fed through a bounded
//! queue.
//!
//! # Shape
//!
//! ```text
//! <id> (rest_for_one)
//! ├── coordinator        resizes the pool, re-homes jobs of removed workers
//! └── workers (dynamic)  worker-0 … worker-N-1, each pulling from its own queue
//! ```
//!
//! Jobs are routed by [`Routing`] to a worker's queue. The queues belong to the ecosystem,
//! not to a worker's incarnation: when a worker crashes, its supervisor starts a new one on
//! the same queue, so jobs it had not taken yet are not lost. The job in hand when it
//! crashed is lost (at-most-once, as a message in a crashed process's mailbox).
//!
//! # Backpressure
//!
//! The ecosystem holds at most `capacity` jobs that no worker has taken. When full,
//! [`Ecosystem::send`] waits for room and [`Ecosystem::try_send`] returns
//! [`TrySendError::Full`] with the job: the caller chooses.
//!
//! # Examples
//!
//! ```
//! use foundation_actors::{ActorError, Ecosystem, EcosystemSpec, Routing, Worker};
//!
//! struct Printer;
//! impl Worker for Printer {
//!     type Job = String;
//!     async fn handle(&mut self, job: String) -> Result<(), ActorError> {
//!         println!("{job}");
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let eco = Ecosystem::start(EcosystemSpec::new("printers", 2, |_| Printer).capacity(100)).await?;
//! eco.send("hello".to_string()).await?;
//! eco.resize(4).await?;
//! assert_eq!(eco.stats().workers, 4);
//! eco.shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::actor::Actor;
use crate::addr::{Addr, ReplyPort};
use crate::context::Context;
use crate::error::{ActorError, CallError, SpawnError, SupervisorError};
use crate::supervisor::{
    ChildSpec, DEFAULT_SUPERVISOR_CALL_TIMEOUT, DynamicSupervisor, Intensity, Restart, Shutdown,
    Strategy, Supervisor, SupervisorSpec,
};

/// One worker of an ecosystem: handles one job at a time.
pub trait Worker: Send + 'static {
    /// What it works on.
    type Job: Send + 'static;

    /// Handles one job. An error or a panic crashes the worker; it is replaced and the
    /// jobs queued for it are kept.
    fn handle(&mut self, job: Self::Job) -> impl Future<Output = Result<(), ActorError>> + Send;
}

/// How a job picks its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Each worker in turn.
    #[default]
    RoundRobin,
    /// By the hash of the key given to [`Ecosystem::send_keyed`]: equal keys go to the
    /// same worker while the worker count is unchanged, so their jobs keep their order.
    /// Jobs sent without a key go round-robin.
    KeyHash,
    /// The worker with the fewest jobs queued or in hand.
    LeastLoaded,
}

/// Why [`Ecosystem::send`] failed; the job is handed back.
pub struct SendError<J>(pub J);

/// Why [`Ecosystem::try_send`] failed; the job is handed back.
pub enum TrySendError<J> {
    /// The queue is at capacity.
    Full(J),
    /// The ecosystem has shut down.
    Stopped(J),
}

impl<J> SendError<J> {
    /// The job that was not queued.
    pub fn into_inner(self) -> J {
        self.0
    }
}

impl<J> TrySendError<J> {
    /// The job that was not queued.
    pub fn into_inner(self) -> J {
        match self {
            Self::Full(j) | Self::Stopped(j) => j,
        }
    }
}

impl<J> fmt::Debug for SendError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<J> fmt::Display for SendError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the ecosystem has shut down; the job was not queued")
    }
}

impl<J> std::error::Error for SendError<J> {}

impl<J> fmt::Debug for TrySendError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Stopped(_) => f.write_str("Stopped(..)"),
        }
    }
}

impl<J> fmt::Display for TrySendError<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => {
                f.write_str("the ecosystem's queue is full; retry later or use send() to wait")
            }
            Self::Stopped(_) => f.write_str("the ecosystem has shut down; the job was not queued"),
        }
    }
}

impl<J> std::error::Error for TrySendError<J> {}

/// How to build an ecosystem.
pub struct EcosystemSpec<W: Worker> {
    id: String,
    workers: usize,
    capacity: usize,
    routing: Routing,
    intensity: Intensity,
    shutdown: Shutdown,
    make: Arc<dyn Fn(usize) -> W + Send + Sync>,
}

impl<W: Worker> fmt::Debug for EcosystemSpec<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcosystemSpec")
            .field("id", &self.id)
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("routing", &self.routing)
            .finish()
    }
}

impl<W: Worker> EcosystemSpec<W> {
    /// `workers` workers built by `make(index)` (again after each crash), round-robin
    /// routing, a capacity of 1,024 queued jobs, and a worker restart intensity of 100 in
    /// 1 s.
    pub fn new(
        id: impl Into<String>,
        workers: usize,
        make: impl Fn(usize) -> W + Send + Sync + 'static,
    ) -> Self {
        Self {
            id: id.into(),
            workers,
            capacity: 1024,
            routing: Routing::RoundRobin,
            intensity: Intensity {
                max_restarts: 100,
                period: Duration::from_secs(1),
            },
            shutdown: Shutdown::default(),
            make: Arc::new(make),
        }
    }

    /// Sets how many jobs may wait untaken.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Sets the routing policy.
    pub fn routing(mut self, routing: Routing) -> Self {
        self.routing = routing;
        self
    }

    /// Sets how workers are shut down (default: 5 s to finish the job in hand, then
    /// killed; a killed worker's job counts as handled).
    pub fn worker_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Sets the workers' restart intensity.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            period,
        };
        self
    }
}

/// A job with the context it was sent under.
struct Job<J> {
    ctx: Option<Context>,
    job: J,
}

struct QueueState<J> {
    jobs: VecDeque<Job<J>>,
    /// The worker found its queue empty and waits for a wake-up.
    idle: bool,
    /// The worker's stable address; replaced if the coordinator starts a new worker on
    /// this queue (after the workers' supervisor itself was restarted).
    worker: Option<Addr<Pull>>,
}

/// One worker's queue; outlives the worker's incarnations.
struct Queue<J> {
    state: Mutex<QueueState<J>>,
    busy: AtomicUsize,
}

impl<J> Queue<J> {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<J>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn load(&self) -> usize {
        self.lock().jobs.len() + self.busy.load(Ordering::Relaxed)
    }

    /// Appends jobs and wakes the worker if it is idle.
    fn push(&self, jobs: impl IntoIterator<Item = Job<J>>) {
        let wake = {
            let mut s = self.lock();
            s.jobs.extend(jobs);
            let idle = std::mem::replace(&mut s.idle, false);
            if idle && !s.jobs.is_empty() {
                s.worker.clone()
            } else {
                None
            }
        };
        if let Some(worker) = wake {
            // A stopped worker's queue is drained by the coordinator; nothing to wake.
            let _ = worker.cast(Pull);
        }
    }
}

struct Shared<J> {
    queues: RwLock<Vec<Arc<Queue<J>>>>,
    room: Semaphore,
    capacity: usize,
    next: AtomicUsize,
    routing: Routing,
    processed: AtomicU64,
    /// Jobs sent and not yet handled (queued, or in a worker's hands).
    unfinished: AtomicUsize,
    /// Notified whenever jobs finish, for `wait_in_flight`.
    idle: tokio::sync::Notify,
    hasher: std::collections::hash_map::RandomState,
}

impl<J> Shared<J> {
    /// Counts `n` jobs as done and wakes `wait_in_flight` callers.
    fn finished(&self, n: usize) {
        if n > 0 {
            self.unfinished.fetch_sub(n, Ordering::AcqRel);
            // Always: a waiter registers with the Notify before it reads the count, so it
            // either sees this decrement or is woken by this call.
            self.idle.notify_waiters();
        }
    }
}

impl<J: Send + 'static> Shared<J> {
    fn queues(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Queue<J>>>> {
        self.queues
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queues_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Queue<J>>>> {
        self.queues
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn route(&self, key: Option<u64>, job: Job<J>) {
        let queues = self.queues();
        let n = queues.len().max(1);
        let i = match (self.routing, key) {
            (Routing::KeyHash, Some(h)) => (h % n as u64) as usize,
            (Routing::LeastLoaded, _) => queues
                .iter()
                .enumerate()
                .min_by_key(|(_, q)| q.load())
                .map_or(0, |(i, _)| i),
            _ => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        if let Some(q) = queues.get(i) {
            q.push([job]);
        }
    }
}

/// The wake-up a worker gets when its queue has work.
#[derive(Debug)]
pub(crate) struct Pull;

struct WorkerActor<W: Worker> {
    index: usize,
    make: Arc<dyn Fn(usize) -> W + Send + Sync>,
    queue: Arc<Queue<W::Job>>,
    shared: Arc<Shared<W::Job>>,
}

impl<W: Worker> Clone for WorkerActor<W> {
    fn clone(&self) -> Self {
        Self {
            index: self.index,
            make: self.make.clone(),
            queue: self.queue.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<W: Worker> Actor for WorkerActor<W> {
    type Msg = Pull;
    type State = W;
    type Args = ();

    async fn init(&self, me: &Addr<Pull>, _: ()) -> Result<W, ActorError> {
        self.queue.busy.store(0, Ordering::Relaxed);
        self.queue.lock().idle = false;
        // Held by the address until this incarnation is published.
        let _ = me.cast(Pull);
        Ok((self.make)(self.index))
    }

    async fn handle(&self, me: &Addr<Pull>, _: Pull, worker: &mut W) -> Result<(), ActorError> {
        let job = {
            let mut s = self.queue.lock();
            match s.jobs.pop_front() {
                Some(job) => job,
                None => {
                    s.idle = true;
                    return Ok(());
                }
            }
        };
        self.queue.busy.store(1, Ordering::Relaxed);
        self.shared.room.add_permits(1);
        // Counts the job done however the handler ends: returned, panicked, or cancelled
        // because the worker was killed.
        let _done = JobDone {
            queue: &self.queue,
            shared: &self.shared,
        };
        let Job { ctx, job } = job;
        let r = match ctx {
            Some(ctx) => ctx.child().scope(worker.handle(job)).await,
            None => worker.handle(job).await,
        };
        // One job per message, so a shutdown request is seen between jobs.
        let _ = me.cast(Pull);
        r
    }
}

/// Marks the job in a worker's hands as done when dropped.
struct JobDone<'a, J> {
    queue: &'a Queue<J>,
    shared: &'a Shared<J>,
}

impl<J> Drop for JobDone<'_, J> {
    fn drop(&mut self) {
        self.queue.busy.store(0, Ordering::Relaxed);
        self.shared.processed.fetch_add(1, Ordering::Relaxed);
        self.shared.finished(1);
    }
}

enum CoordinatorMsg {
    Resize(usize, ReplyPort<Result<(), SupervisorError>>),
}

struct Coordinator<W: Worker> {
    spec_make: Arc<dyn Fn(usize) -> W + Send + Sync>,
    shutdown: Shutdown,
    shared: Arc<Shared<W::Job>>,
    workers: Supervisor,
}

impl<W: Worker> Clone for Coordinator<W> {
    fn clone(&self) -> Self {
        Self {
            spec_make: self.spec_make.clone(),
            shutdown: self.shutdown,
            shared: self.shared.clone(),
            workers: self.workers.clone(),
        }
    }
}

impl<W: Worker> Coordinator<W> {
    /// The spec of worker `index`, on `queue` or on a new one.
    fn worker_spec(
        &self,
        index: usize,
        queue: Option<Arc<Queue<W::Job>>>,
    ) -> (ChildSpec<Pull>, Arc<Queue<W::Job>>) {
        let queue = queue.unwrap_or_else(|| {
            Arc::new(Queue {
                state: Mutex::new(QueueState {
                    jobs: VecDeque::new(),
                    idle: false,
                    worker: None,
                }),
                busy: AtomicUsize::new(0),
            })
        });
        let actor = WorkerActor {
            index,
            make: self.spec_make.clone(),
            queue: queue.clone(),
            shared: self.shared.clone(),
        };
        let spec = ChildSpec::new(format!("worker-{index}"), actor, ())
            .restart(Restart::Permanent)
            .shutdown(self.shutdown);
        // Set before the worker starts, so its first wake-up has somewhere to go.
        queue.lock().worker = Some(spec.addr());
        (spec, queue)
    }

    async fn resize(&self, n: usize) -> Result<(), SupervisorError> {
        if n == 0 {
            return Err(SpawnError::Config("an ecosystem needs at least one worker".into()).into());
        }
        let current = self.shared.queues().len();
        for index in current..n {
            let (spec, queue) = self.worker_spec(index, None);
            self.workers.start_child(spec).await?;
            self.shared.queues_mut().push(queue);
        }
        if n < current {
            let removed: Vec<_> = self.shared.queues_mut().drain(n..).collect();
            // A worker may take its whole shutdown timeout to stop: wait for that, and
            // then the usual time for the answer.
            let patient = match self.shutdown {
                Shutdown::Timeout(d) => d.saturating_add(DEFAULT_SUPERVISOR_CALL_TIMEOUT),
                Shutdown::Brutal => DEFAULT_SUPERVISOR_CALL_TIMEOUT,
                Shutdown::Infinity => Duration::from_secs(3600),
            };
            let workers = self.workers.with_timeout(patient);
            for (offset, q) in removed.iter().enumerate() {
                workers
                    .terminate_child(&format!("worker-{}", n + offset))
                    .await?;
                let left: Vec<_> = q.lock().jobs.drain(..).collect();
                for job in left {
                    self.shared.route(None, job);
                }
            }
        }
        Ok(())
    }
}

impl<W: Worker> Actor for Coordinator<W> {
    type Msg = CoordinatorMsg;
    type State = ();
    type Args = usize;

    /// After a restart of the workers' supervisor (which comes back empty: its children
    /// were started at run time), starts a worker again on each queue, so queued jobs are
    /// not stranded. On the first start there are no queues yet.
    async fn init(&self, _: &Addr<CoordinatorMsg>, _: usize) -> Result<(), ActorError> {
        let queues: Vec<_> = self.shared.queues().iter().cloned().collect();
        if queues.is_empty() {
            return Ok(());
        }
        let running: Vec<String> = self
            .workers
            .which_children()
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        for (index, queue) in queues.into_iter().enumerate() {
            if !running.contains(&format!("worker-{index}")) {
                let (spec, _) = self.worker_spec(index, Some(queue));
                self.workers.start_child(spec).await?;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: &Addr<CoordinatorMsg>,
        msg: CoordinatorMsg,
        _: &mut (),
    ) -> Result<(), ActorError> {
        match msg {
            CoordinatorMsg::Resize(n, reply) => {
                let _ = reply.send(self.resize(n).await);
            }
        }
        Ok(())
    }
}

/// Counts of an ecosystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcosystemStats {
    /// Workers now.
    pub workers: usize,
    /// Jobs queued and not yet taken.
    pub queued: usize,
    /// The queue's capacity.
    pub capacity: usize,
    /// Jobs handled so far (including ones whose worker crashed on them).
    pub processed: u64,
    /// Jobs sent and not yet handled: queued, or in a worker's hands.
    pub in_flight: usize,
}

/// A running ecosystem's handle. Cheap to clone.
pub struct Ecosystem<J> {
    shared: Arc<Shared<J>>,
    coordinator: Addr<CoordinatorMsg>,
    sup: Supervisor,
    workers: Supervisor,
}

impl<J> Clone for Ecosystem<J> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            coordinator: self.coordinator.clone(),
            sup: self.sup.clone(),
            workers: self.workers.clone(),
        }
    }
}

impl<J> fmt::Debug for Ecosystem<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ecosystem")
            .field("id", &self.sup.id())
            .finish()
    }
}

impl<J: Send + 'static> Ecosystem<J> {
    /// Starts the ecosystem: its supervisor, coordinator and workers.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Config`] for zero workers or zero capacity; any start failure.
    pub async fn start<W: Worker<Job = J>>(spec: EcosystemSpec<W>) -> Result<Self, SpawnError> {
        if spec.workers == 0 || spec.capacity == 0 {
            return Err(SpawnError::Config(
                "an ecosystem needs at least one worker and a capacity of at least one".into(),
            ));
        }
        let shared = Arc::new(Shared {
            queues: RwLock::new(Vec::new()),
            room: Semaphore::new(spec.capacity),
            capacity: spec.capacity,
            next: AtomicUsize::new(0),
            routing: spec.routing,
            processed: AtomicU64::new(0),
            unfinished: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            hasher: std::collections::hash_map::RandomState::new(),
        });
        let workers_spec = DynamicSupervisor::spec(format!("{}/workers", spec.id), None)
            .intensity(spec.intensity.max_restarts, spec.intensity.period);
        let workers = workers_spec.handle();
        let coordinator = Coordinator {
            spec_make: spec.make.clone(),
            shutdown: spec.shutdown,
            shared: shared.clone(),
            workers: workers.clone(),
        };
        let coordinator_spec = ChildSpec::new(
            format!("{}/coordinator", spec.id),
            coordinator.clone(),
            0usize,
        );
        let coordinator_addr = coordinator_spec.addr();
        let sup = Supervisor::start(
            SupervisorSpec::new(spec.id.clone(), Strategy::RestForOne)
                .child(workers_spec.into_child())
                .child(coordinator_spec),
        )
        .await?;
        if let Err(e) = coordinator.resize(spec.workers).await {
            // Leave nothing running behind a failed start.
            sup.shutdown().await;
            return Err(match e {
                SupervisorError::Spawn(e) => e,
                other => SpawnError::Config(other.to_string()),
            });
        }
        Ok(Self {
            shared,
            coordinator: coordinator_addr,
            sup,
            workers,
        })
    }

    fn job(job: J) -> Job<J> {
        Job {
            ctx: Context::current(),
            job,
        }
    }

    /// Queues a job, waiting for room while the queue is full (backpressure).
    ///
    /// # Errors
    ///
    /// [`SendError`] once the ecosystem has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled send has queued nothing.
    pub async fn send(&self, job: J) -> Result<(), SendError<J>> {
        self.send_inner(None, job).await
    }

    /// Queues a job routed by `key` (with [`Routing::KeyHash`]), waiting for room.
    ///
    /// # Errors
    ///
    /// As [`Ecosystem::send`].
    pub async fn send_keyed(&self, key: impl Hash, job: J) -> Result<(), SendError<J>> {
        let h = self.shared.hasher.hash_one(key);
        self.send_inner(Some(h), job).await
    }

    async fn send_inner(&self, key: Option<u64>, job: J) -> Result<(), SendError<J>> {
        match self.shared.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(SendError(job)),
        }
        self.shared.unfinished.fetch_add(1, Ordering::AcqRel);
        self.shared.route(key, Self::job(job));
        Ok(())
    }

    /// Queues a job if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySendError::Full`] when the queue is at capacity, [`TrySendError::Stopped`]
    /// once the ecosystem has shut down.
    pub fn try_send(&self, job: J) -> Result<(), TrySendError<J>> {
        match self.shared.room.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(TrySendError::Full(job)),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(TrySendError::Stopped(job)),
        }
        self.shared.unfinished.fetch_add(1, Ordering::AcqRel);
        self.shared.route(None, Self::job(job));
        Ok(())
    }

    /// Changes the number of workers. Jobs queued for removed workers go to the others.
    ///
    /// # Errors
    ///
    /// Zero workers, a worker that fails to start, or the coordinator not answering.
    pub async fn resize(&self, workers: usize) -> Result<(), SupervisorError> {
        self.coordinator
            .call_timeout(
                |p| CoordinatorMsg::Resize(workers, p),
                Duration::from_secs(60),
            )
            .await?
    }

    /// Counts of workers and jobs.
    pub fn stats(&self) -> EcosystemStats {
        let queues = self.shared.queues();
        EcosystemStats {
            workers: queues.len(),
            queued: queues.iter().map(|q| q.lock().jobs.len()).sum(),
            capacity: self.shared.capacity,
            processed: self.shared.processed.load(Ordering::Relaxed),
            in_flight: self.shared.unfinished.load(Ordering::Acquire),
        }
    }

    /// The ecosystem's supervisor (for its tree).
    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    /// The supervisor of the workers.
    pub fn workers(&self) -> &Supervisor {
        &self.workers
    }

    /// Stops taking jobs and shuts the ecosystem down in reverse start order: the
    /// coordinator, then the workers (each finishing the job in hand within its shutdown
    /// timeout). Jobs still queued are dropped, with a warning that counts them.
    pub async fn shutdown(&self) {
        self.shared.room.close();
        self.sup.shutdown().await;
        let mut dropped = 0;
        for q in self.shared.queues().iter() {
            let mut s = q.lock();
            dropped += s.jobs.len();
            s.jobs.clear();
        }
        if dropped > 0 {
            tracing::warn!(ecosystem = %self.sup.id(), dropped, "queued jobs were dropped at shutdown");
        }
        self.shared.finished(dropped);
    }

    /// Waits until every job sent so far has been handled (or lost with a worker that
    /// crashed or was killed on it), or `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] if jobs are still in flight then.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), CallError> {
        self.wait_in_flight(0, timeout).await
    }

    /// Waits until at most `max` jobs are in flight (queued, or in a worker's hands), or
    /// `timeout` passes.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] if more are still in flight then.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    pub async fn wait_in_flight(&self, max: usize, timeout: Duration) -> Result<(), CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up between the two is not missed.
            notified.as_mut().enable();
            if self.shared.unfinished.load(Ordering::Acquire) <= max {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(CallError::Timeout(timeout));
            }
        }
    }
}
