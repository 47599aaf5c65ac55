//! A map-reduce run on the calling node: its chunks' results folded as they come, its
//! progress, its end.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::error::MapReduceError;
use super::runtime::Shared;
use super::spec::{Kinds, Value};

/// How far a map-reduce run is ([`MapReduce::progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Items in all.
    pub total: usize,
    /// Items mapped and folded into the result so far.
    pub done: usize,
    /// Items done, by the node that mapped them.
    pub per_node: BTreeMap<String, usize>,
}

struct RunState {
    acc: Option<Value>,
    done: usize,
    chunks_left: usize,
    per_node: BTreeMap<String, usize>,
    failed: Option<(String, String)>,
    closed: bool,
}

/// A run's state, shared by its handle and the ledger's entries of its chunks.
pub(crate) struct RunShared {
    total: usize,
    reduce: String,
    kinds: Arc<Kinds>,
    state: Mutex<RunState>,
    changed: tokio::sync::Notify,
}

impl RunShared {
    pub(crate) fn new(total: usize, chunks: usize, reduce: String, kinds: Arc<Kinds>) -> Self {
        Self {
            total,
            reduce,
            kinds,
            state: Mutex::new(RunState {
                acc: None,
                done: 0,
                chunks_left: chunks,
                per_node: BTreeMap::new(),
                failed: None,
                closed: false,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunState> {
        crate::cluster::lock(&self.state)
    }

    /// A chunk of `items` items came back from `node`: folds its result in. Returns
    /// `false` when the run has failed (its other chunks are to be dropped).
    pub(crate) fn chunk_done(
        &self,
        node: &str,
        items: usize,
        outcome: Result<Vec<u8>, String>,
    ) -> bool {
        let ok = {
            let mut st = self.lock();
            if st.failed.is_some() {
                return false;
            }
            let folded = outcome.and_then(|bytes| {
                let reducer = self
                    .kinds
                    .reducers
                    .get(&self.reduce)
                    .ok_or_else(|| format!("no reducer {:?} here", self.reduce))?;
                let partial = (reducer.decode)(&bytes)?;
                Ok(match st.acc.take() {
                    None => partial,
                    Some(acc) => (reducer.fold)(acc, partial)?,
                })
            });
            match folded {
                Ok(acc) => {
                    st.acc = Some(acc);
                    st.done += items;
                    st.chunks_left = st.chunks_left.saturating_sub(1);
                    *st.per_node.entry(node.to_owned()).or_default() += items;
                    true
                }
                Err(why) => {
                    st.failed = Some((node.to_owned(), why));
                    false
                }
            }
        };
        self.changed.notify_waiters();
        ok
    }

    /// The ecosystem shut down on this node.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    fn progress(&self) -> Progress {
        let st = self.lock();
        Progress {
            total: self.total,
            done: st.done,
            per_node: st.per_node.clone(),
        }
    }

    fn finished(&self) -> bool {
        let st = self.lock();
        st.chunks_left == 0 || st.failed.is_some() || st.closed
    }
}

/// Reads a map-reduce run's progress ([`MapReduce::tracker`]). Cheap to clone.
#[derive(Clone)]
pub struct Tracker(Arc<RunShared>);

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tracker").field(&self.0.progress()).finish()
    }
}

impl Tracker {
    /// Items done so far, in all and per node.
    pub fn progress(&self) -> Progress {
        self.0.progress()
    }

    /// Whether the run has ended: every item done, failed, or the ecosystem closed.
    pub fn is_finished(&self) -> bool {
        self.0.finished()
    }
}

/// A map-reduce run started by [`ClusterEcosystem::start_map_reduce`](super::ClusterEcosystem::start_map_reduce):
/// read its [`progress`](Self::progress), [`wait`](Self::wait) for its result. Dropping
/// it abandons the run (its chunks not yet done are dropped from this node's ledger).
pub struct MapReduce<O> {
    run: Arc<RunShared>,
    shared: Weak<Shared>,
    timeout: Duration,
    _out: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for MapReduce<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapReduce")
            .field("progress", &self.run.progress())
            .finish_non_exhaustive()
    }
}

impl<O: Send + 'static> MapReduce<O> {
    pub(crate) fn new(run: Arc<RunShared>, shared: Weak<Shared>, timeout: Duration) -> Self {
        Self {
            run,
            shared,
            timeout,
            _out: PhantomData,
        }
    }

    /// Items done so far, in all and per node.
    pub fn progress(&self) -> Progress {
        self.run.progress()
    }

    /// A handle that reads the run's progress while [`wait`](Self::wait) waits.
    pub fn tracker(&self) -> Tracker {
        Tracker(self.run.clone())
    }

    /// Waits for the result, at most the spec's [`run_timeout`](super::WorkSpec::run_timeout):
    /// the reducer's fold of every item's map (`None` for no items).
    ///
    /// # Errors
    ///
    /// [`MapReduceError::Failed`] (a chunk failed where it ran), [`MapReduceError::Timeout`],
    /// [`MapReduceError::Closed`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the run.
    pub async fn wait(self) -> Result<Option<O>, MapReduceError> {
        let timeout = self.timeout;
        self.wait_timeout(timeout).await
    }

    /// As [`wait`](Self::wait), at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_timeout(self, timeout: Duration) -> Result<Option<O>, MapReduceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.run.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change between the two is not missed.
            notified.as_mut().enable();
            {
                let mut st = self.run.lock();
                if let Some((node, why)) = st.failed.take() {
                    return Err(MapReduceError::Failed { node, why });
                }
                if st.closed {
                    return Err(MapReduceError::Closed);
                }
                if st.chunks_left == 0 {
                    return match st.acc.take() {
                        None => Ok(None),
                        Some(v) => v.downcast::<O>().map(|o| Some(*o)).map_err(|_| {
                            MapReduceError::Failed {
                                node: String::new(),
                                why: format!(
                                    "the result is not a `{}`",
                                    std::any::type_name::<O>()
                                ),
                            }
                        }),
                    };
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let p = self.run.progress();
                return Err(MapReduceError::Timeout {
                    waited: timeout,
                    done: p.done,
                    total: p.total,
                });
            }
        }
    }
}

impl<O> Drop for MapReduce<O> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            if !self.run.finished() || self.run.lock().failed.is_some() {
                shared.cancel_run(&self.run);
            }
        }
    }
}
