//! Ecosystems: routing, backpressure, resizing, crash replacement without lost jobs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundation_actors::ecosystem::TrySendError;
use foundation_actors::prelude::*;
use tokio::sync::Semaphore;

use crate::support::eventually;

#[derive(Debug, Clone)]
enum Job {
    Work(u32),
    Key(&'static str, u32),
    Crash,
    Block,
}

/// Records (worker index, job) for each finished job; `Block` waits on the gate.
struct Recorder {
    index: usize,
    done: Arc<Mutex<Vec<(usize, u32)>>>,
    keys: Arc<Mutex<Vec<(&'static str, usize)>>>,
    gate: Arc<Semaphore>,
}

impl Worker for Recorder {
    type Job = Job;
    async fn handle(&mut self, job: Job) -> Result<(), ActorError> {
        match job {
            Job::Work(n) => self.done.lock().unwrap().push((self.index, n)),
            Job::Key(k, n) => {
                self.keys.lock().unwrap().push((k, self.index));
                self.done.lock().unwrap().push((self.index, n));
            }
            Job::Crash => panic!("worker {} crashed on purpose", self.index),
            Job::Block => {
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
}

impl Harness {
    fn new() -> Self {
        Self {
            done: Default::default(),
            keys: Default::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
    fn spec(&self, id: &str, workers: usize) -> EcosystemSpec<Recorder> {
        let (done, keys, gate) = (self.done.clone(), self.keys.clone(), self.gate.clone());
        EcosystemSpec::new(id, workers, move |index| Recorder {
            index,
            done: done.clone(),
            keys: keys.clone(),
            gate: gate.clone(),
        })
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
    eventually("worker took the blocking job", || eco.stats().queued == 0).await;
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
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "send waits while the queue is full");
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
    eventually("blocked", || eco.stats().queued == 0).await;
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
    let keys = ["alpha", "beta", "gamma", "delta", "epsilon"];
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
    eco.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_avoids_a_busy_worker() {
    let h = Harness::new();
    let eco = Ecosystem::start(h.spec("ll", 2).routing(Routing::LeastLoaded))
        .await
        .unwrap();
    eco.send(Job::Block).await.unwrap();
    eventually("one worker busy", || eco.stats().queued == 0).await;
    let busy_worker = 0; // the first job goes to the first of two idle workers
    for n in 1..=10 {
        eco.send(Job::Work(n)).await.unwrap();
        eventually("job done", || h.finished().len() == n as usize).await;
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
    eventually("all blocked", || eco.stats().queued == 0).await;
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
