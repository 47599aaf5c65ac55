//! Single flight for `get_or_compute`: at most one computation per key (and error type)
//! at a time, shared by every caller that misses meanwhile.
//!
//! A computation is a boxed future made [`Shared`]: every waiter holds a clone and awaits
//! it, so whichever waiter is polled drives it, and a dropped caller leaves it to the
//! others. The table holds only a weak handle; when the last waiter is gone the future is
//! dropped and its entry removed. The future itself writes the value into the cache
//! *before* it leaves the table, so a caller that finds no computation and then re-checks
//! the cache (under the table's lock) never starts a second one for a value just written.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared, WeakShared};

use crate::api::{CacheKey, CacheValue};
use crate::error::ComputeError;

/// A computation in flight, as waiters hold it.
pub(crate) type Flight<V, E> = Shared<BoxFuture<'static, Result<V, ComputeError<E>>>>;

/// The computations in flight, by key and error type (a call with another error type
/// cannot share the result, so it gets a flight of its own). Each entry is a weak handle
/// to the computation (its type erased) and the computation's number.
pub(crate) struct Flights<K> {
    map: Mutex<HashMap<(K, TypeId), Entry>>,
    next: AtomicU64,
}

/// One entry of the table.
pub(crate) struct Entry {
    /// Tells this computation from a later one for the same key.
    number: u64,
    /// A `WeakShared` of the computation's future.
    weak: Box<dyn Any + Send + Sync>,
}

impl<K> std::fmt::Debug for Flights<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let in_flight = self.map.lock().map_or(0, |t| t.len());
        f.debug_struct("Flights")
            .field("in_flight", &in_flight)
            .finish()
    }
}

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    }
}

/// The table's lock. Nothing panics while holding it, so a poisoned lock still holds a
/// consistent table. No computation is dropped while it is held (only weak handles are),
/// so a computation's own exit, which takes it, cannot deadlock.
pub(crate) type Table<'a, K> = MutexGuard<'a, HashMap<(K, TypeId), Entry>>;

type Weak<V, E> = WeakShared<BoxFuture<'static, Result<V, ComputeError<E>>>>;

impl<K: CacheKey> Flights<K> {
    pub(crate) fn lock(&self) -> Table<'_, K> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live computation for `key` with error type `E`, if any (under `table`).
    pub(crate) fn find<V, E>(table: &Table<'_, K>, key: &K) -> Option<Flight<V, E>>
    where
        V: CacheValue,
        E: Send + Sync + 'static,
    {
        // The table's key owns a `K`; a lookup by reference would need a borrowed pair.
        let id = (key.clone(), TypeId::of::<E>());
        table
            .get(&id)
            .and_then(|entry| entry.weak.downcast_ref::<Weak<V, E>>())
            .and_then(WeakShared::upgrade)
    }

    /// Starts `compute` as the computation for `key`, registered under `table` (in place
    /// of a dead one, if any). `finish` runs with its value, once, before the computation
    /// leaves the table (it writes the value into the cache).
    pub(crate) fn start<V, E, Fut>(
        this: &Arc<Self>,
        table: &mut Table<'_, K>,
        key: K,
        compute: Fut,
        finish: impl FnOnce(K, &V) + Send + 'static,
    ) -> Flight<V, E>
    where
        V: CacheValue,
        E: std::fmt::Display + Send + Sync + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let id = (key.clone(), TypeId::of::<E>());
        let number = this.next.fetch_add(1, Ordering::Relaxed);
        let leave = Leave {
            flights: Arc::clone(this),
            id: Some(id.clone()),
            number,
        };
        let flight: Flight<V, E> = async move {
            let result = match AssertUnwindSafe(compute).catch_unwind().await {
                Ok(Ok(value)) => {
                    finish(key, &value);
                    Ok(value)
                }
                // The node is `None`: the adapters that compute here; the partitioned
                // one says where its computation ran in its own errors (this flight's
                // `E` is then its `ComputeError`).
                Ok(Err(e)) => Err(ComputeError::returned(e, None)),
                Err(panic) => Err(ComputeError::panicked(&*panic, None)),
            };
            drop(leave);
            result
        }
        .boxed()
        .shared();
        if let Some(weak) = flight.downgrade() {
            let weak = Box::new(weak);
            table.insert(id, Entry { number, weak });
        }
        flight
    }
}

/// Takes a computation out of the table when it ends, finished or dropped unfinished
/// (every waiter gone): only if the entry is still its own, as a later computation for
/// the same key may have replaced a dead one.
struct Leave<K: CacheKey> {
    flights: Arc<Flights<K>>,
    id: Option<(K, TypeId)>,
    number: u64,
}

impl<K: CacheKey> Drop for Leave<K> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let mut table = self.flights.lock();
        if table.get(&id).is_some_and(|e| e.number == self.number) {
            table.remove(&id);
        }
    }
}

#[cfg(test)]
impl<K: CacheKey> Flights<K> {
    /// How many computations the table holds (dead ones included).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
