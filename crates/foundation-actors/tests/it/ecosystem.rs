//! Ecosystems: routing, backpressure, resizing, crash replacement without lost jobs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::ecosystem::TrySendError;
use foundation_actors::prelude::*;
use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
enum Job {
    Work(u32),
    Key(&'static str, u32),
    Crash,
    Block,
}

/// Records (worker index, job) for each finished job and reports it on `finished_tx`;
/// `Block` releases a permit of `blocked` when it starts, then waits on the gate.
struct Recorder {
    index: usize,
    done: Arc<Mutex<Vec<(usize, u32)>>>,
    keys: Arc<Mutex<Vec<(&'static str, usize)>>>,
    gate: Arc<Semaphore>,
    blocked: Arc<Semaphore>,
    finished_tx: tokio::sync::mpsc::UnboundedSender<u32>,
}

impl Worker for Recorder {
    type Job = Job;
    async fn handle(&mut self, job: Job) -> Result<(), ActorError> {
        match job {
            Job::Work(n) => {
                self.done.lock().unwrap().push((self.index, n));
                self.finished_tx.send(n)?;
            }
            Job::Key(k, n) => {
                self.keys.lock().unwrap().push((k, self.index));
                self.done.lock().unwrap().push((self.index, n));
                self.finished_tx.send(n)?;
            }
            Job::Crash => panic!("worker {} crashed on purpose", self.index),
            Job::Block => {
                self.blocked.add_permits(1);
                self.gate.acquire().await?.forget();
            }
        }
        Ok(())
    }
}

struct Harness {
    done: Arc<Mutex<Vec<(usize, u32)>>>,
    keys: Arc<Mutex<Vec<(&'static str, usize)>>>,
    gate: Arc<Semaphore>,
    blocked: Arc<Semaphore>,
    finished_tx: tokio::sync::mpsc::UnboundedSender<u32>,
    finished_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<u32>>,
}

impl Harness {
    fn new() -> Self {
        let (finished_tx, finished_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            done: Default::default(),
            keys: Default::default(),
            gate: Arc::new(Semaphore::new(0)),
            blocked: Arc::new(Semaphore::new(0)),
            finished_tx,
            finished_rx: tokio::sync::Mutex::new(finished_rx),
        }
    }
    fn spec(&self, id: &str, workers: usize) -> EcosystemSpec<Recorder> {
        let (done, keys, gate) = (self.done.clone(), self.keys.clone(), self.gate.clone());
        let (blocked, finished_tx) = (self.blocked.clone(), self.finished_tx.clone());
        EcosystemSpec::new(id, workers, move |index| Recorder {
            index,
            done: done.clone(),
            keys: keys.clone(),
            gate: gate.clone(),
            blocked: blocked.clone(),
            finished_tx: finished_tx.clone(),
        })
    }
    /// Waits until `n` workers have started a blocking job.
    async fn blocked(&self, n: u32) {
        let wait = self.blocked.acquire_many(n);
        let permits = tokio::time::timeout(Duration::from_secs(20), wait).await;
        permits
            .expect("workers blocked within the deadline")
            .unwrap()
            .forget();
    }
    /// Waits for the next finished job.
    async fn next_finished(&self) -> u32 {
        let mut rx = self.finished_rx.lock().await;
        let next = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        next.expect("a job finished within the deadline").unwrap()
    }
    fn finished(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.done.lock().unwrap().iter().map(|(_, n)| *n).collect();
        v.sort_unstable();
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_rejects_try_send_and_makes_send_wait() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("bp", 1).capacity(2)).await.unwrap();
    eco.send(Job::Block).await.unwrap();
    h.blocked(1).await;
    eco.try_send(Job::Work(1)).unwrap();
    eco.try_send(Job::Work(2)).unwrap();
    assert!(matches!(
        eco.try_send(Job::Work(3)),
        Err(TrySendError::Full(Job::Work(3)))
    ));

    let waiting = tokio::spawn({
        let eco = eco.clone();
        async move { eco.send(Job::Work(3)).await }
    });
    // A send that did not wait would finish at once; this one must still be waiting.
    let waited = tokio::time::timeout(Duration::from_millis(100), async {
        while !waiting.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_err(), "send waits while the queue is full");
    assert_eq!(eco.stats().queued, 2);
    h.gate.add_permits(1);
    waiting.await.unwrap().unwrap();
    eco.wait_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.finished(), [1, 2, 3]);
    assert_eq!(eco.stats().in_flight, 0);
    eco.shutdown().await;
    assert!(matches!(
        eco.try_send(Job::Work(4)),
        Err(TrySendError::Stopped(_))
    ));
    assert!(eco.send(Job::Work(5)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_replaced_and_its_queued_jobs_survive() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("crashy", 1).capacity(100))
        .await
        .unwrap();
    eco.send(Job::Block).await.unwrap();
    h.blocked(1).await;
    eco.send(Job::Crash).await.unwrap();
    for n in 1..=20 {
        eco.send(Job::Work(n)).await.unwrap();
    }
    h.gate.add_permits(1);
    eco.wait_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.finished(), (1..=20).collect::<Vec<_>>());
    let kids = eco.workers().which_children().await.unwrap();
    assert_eq!(kids[0].restarts, 1);
    eco.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_hash_sends_equal_keys_to_one_worker() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("keys", 4).routing(Routing::KeyHash))
        .await
        .unwrap();
    // Sixteen keys: with a per-run hash seed, five keys all land on one of four workers
    // once in 256 runs; sixteen, once in 4^15.
    let keys = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "omicron", "pi",
    ];
    for n in 0..100u32 {
        let k = keys[n as usize % keys.len()];
        eco.send_keyed(k, Job::Key(k, n)).await.unwrap();
    }
    eco.wait_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.finished().len(), 100);
    let seen = h.keys.lock().unwrap().clone();
    for k in keys {
        let workers: HashSet<usize> = seen
            .iter()
            .filter(|(kk, _)| *kk == k)
            .map(|(_, w)| *w)
            .collect();
        assert_eq!(workers.len(), 1, "key {k} went to {workers:?}");
    }
    let used: HashSet<usize> = seen.iter().map(|(_, w)| *w).collect();
    assert!(
        used.len() > 1,
        "sixteen keys all went to one of four workers: {used:?}"
    );
    eco.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_avoids_a_busy_worker() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("ll", 2).routing(Routing::LeastLoaded))
        .await
        .unwrap();
    eco.send(Job::Block).await.unwrap();
    h.blocked(1).await;
    let busy_worker = 0; // the first job goes to the first of two idle workers
    for n in 1..=10 {
        eco.send(Job::Work(n)).await.unwrap();
        assert_eq!(h.next_finished().await, n);
        // Until the other worker is idle again, both count one job and tie.
        eco.wait_in_flight(1, Duration::from_secs(20))
            .await
            .unwrap();
    }
    assert!(
        h.done
            .lock()
            .unwrap()
            .iter()
            .all(|(w, _)| *w != busy_worker)
    );
    h.gate.add_permits(1);
    eco.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizing_while_running_loses_no_job() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("resize", 4).capacity(10_000))
        .await
        .unwrap();
    // Block every worker so jobs pile up in their queues.
    for _ in 0..4 {
        eco.send(Job::Block).await.unwrap();
    }
    h.blocked(4).await;
    for n in 0..400 {
        eco.send(Job::Work(n)).await.unwrap();
    }
    eco.resize(6).await.unwrap();
    assert_eq!(eco.stats().workers, 6);
    h.gate.add_permits(4); // the removed workers must finish their blocking job to stop
    eco.resize(1).await.unwrap();
    assert_eq!(eco.stats().workers, 1);
    for n in 400..500 {
        eco.send(Job::Work(n)).await.unwrap();
    }
    eco.wait_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.finished(), (0..500).collect::<Vec<_>>());
    assert!(eco.resize(0).await.is_err());
    eco.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_come_back_after_their_supervisor_gives_up() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("phoenix", 2).intensity(0, Duration::from_secs(5)))
        .await
        .unwrap();
    let mut top = eco.supervisor().subscribe();
    // Intensity 0: the first crash makes the workers' supervisor give up; the ecosystem's
    // own supervisor restarts it and the coordinator, which starts the workers again.
    eco.send(Job::Crash).await.unwrap();
    let restarted = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(foundation_actors::SupervisorEvent::ChildRestarted { child, .. }) =
                top.recv().await
            {
                if child.ends_with("coordinator") {
                    return;
                }
            }
        }
    })
    .await;
    assert!(restarted.is_ok(), "the coordinator was restarted");
    for n in 1..=10 {
        eco.send(Job::Work(n)).await.unwrap();
    }
    eco.wait_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.finished(), (1..=10).collect::<Vec<_>>());
    assert_eq!(eco.workers().count_children().await.unwrap().active, 2);
    eco.shutdown().await;
}

/// Counts live workers; its factory panics for index 2.
struct Fragile(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Fragile {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Worker for Fragile {
    type Job = ();
    async fn handle(&mut self, _: ()) -> Result<(), ActorError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_leaves_nothing_running() {
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = live.clone();
    let spec = EcosystemSpec::new("fragile", 4, move |index| {
        assert!(index != 2, "worker {index} cannot be built");
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Fragile(counter.clone())
    });
    assert!(Ecosystem::start(spec).await.is_err());
    assert_eq!(
        live.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "workers 0 and 1 were stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_job_counts_as_handled() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("killed", 1).worker_shutdown(Shutdown::Brutal))
        .await
        .unwrap();
    eco.send(Job::Block).await.unwrap();
    h.blocked(1).await;
    eco.send(Job::Work(1)).await.unwrap();
    eco.shutdown().await;
    let stats = eco.stats();
    assert_eq!((stats.in_flight, stats.queued), (0, 0), "{stats:?}");
    eco.wait_idle(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_queued_when_the_workers_supervisor_gives_up_are_not_stranded() {
    let h = Harness::new();
    let eco = Ecosystem::start(
        h.spec("stranded", 1)
            .intensity(0, Duration::from_secs(5))
            .worker_shutdown(Shutdown::Brutal),
    )
    .await
    .unwrap();
    eco.send(Job::Block).await.unwrap();
    h.blocked(1).await;
    // Behind the blocking job: a crash, then work that must survive it.
    eco.send(Job::Crash).await.unwrap();
    for n in 1..=10 {
        eco.send(Job::Work(n)).await.unwrap();
    }
    h.gate.add_permits(1);
    eco.wait_idle(Duration::from_secs(20)).await.unwrap();
    assert_eq!(h.finished(), (1..=10).collect::<Vec<_>>());
    eco.shutdown().await;
}
