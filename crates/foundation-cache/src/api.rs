//! The cache API: the [`Cache`] trait every adapter implements (its docs say why a trait).

use std::future::Future;
use std::hash::Hash;

use futures::Stream;

use crate::error::{CacheError, ComputeError};
use crate::stats::Stats;
use crate::ttl::{Ttl, TtlLeft};

/// What a cache key must be: hashable, comparable, cloneable and shareable across threads.
/// Implemented for every such type.
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + 'static> CacheKey for T {}

/// What a cache value must be: cloneable (reads hand out clones) and shareable across
/// threads. Implemented for every such type.
pub trait CacheValue: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> CacheValue for T {}

/// A value that [`Cache::incr`] and [`Cache::decr`] can count with: the primitive integers.
pub trait Counter: CacheValue + Copy {
    /// The value a missing counter starts from.
    const ZERO: Self;

    /// `self + by`, or `None` if the result is outside the type's range.
    fn checked_add_i64(self, by: i64) -> Option<Self>;
}

macro_rules! counter {
    ($($t:ty),*) => {$(
        impl Counter for $t {
            const ZERO: Self = 0;
            fn checked_add_i64(self, by: i64) -> Option<Self> {
                // Every type here fits in an i128, and so does the sum.
                Self::try_from((self as i128) + (by as i128)).ok()
            }
        }
    )*};
}
counter!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

/// A cache: Nebulex's API in Rust's idiom, implemented by every adapter
/// ([`Local`](crate::Local) for the adapter on one node).
///
/// Reads (`get`, `get_many`, `take`, `get_or_compute`) count hits and misses in
/// [`stats`](Cache::stats); each entry written counts one write. `contains` and `ttl` are
/// not counted.
///
/// # Why a trait (and not one type)
///
/// Nebulex picks the adapter in configuration and calls it through one module. In Rust the
/// same API is a trait that each adapter implements ([`Local`](crate::Local) now;
/// `Partitioned`, `Replicated` and `Multilevel` next), for three reasons:
///
/// - **No cost on the local path.** Called on a concrete adapter, every method is
///   statically dispatched and inlined: `Local::get` is moka's `get` plus a counter, and
///   its future is ready at the first poll. A single type dispatching on an enum, or a
///   `dyn` object, would add a branch or an allocation to every call (the local budget is
///   10% over raw moka).
/// - **Adapters compose.** `Multilevel<L1, L2>` is generic over two `Cache`s, as
///   Nebulex's multilevel adapter holds a list of caches of any adapter.
/// - **Async where a remote adapter needs it.** Every operation that a partitioned or
///   replicated adapter must send to another node returns a `Future` (`+ Send`, so it can
///   be spawned) and a [`CacheError`] (a remote node can be unreachable, a key can fail to
///   encode). [`stats`](Cache::stats) alone is synchronous: each node keeps its own.
///
/// The methods return `impl Future` (return-position `impl Trait` in traits), so the trait
/// is not object-safe; choosing the adapter at run time (from configuration) will be an
/// enum over the adapters that implements `Cache` by matching, one predictable branch per
/// call.
///
/// # Keys and values
///
/// Keys are [`CacheKey`] (hashable, comparable, cloneable, `Send + Sync + 'static`),
/// values are [`CacheValue`] (cloneable: a read hands out a clone, so wrap a large value
/// in an `Arc`). The cluster adapters will also ask for `Serialize + DeserializeOwned`.
///
/// # Cancel safety
///
/// Await every future. The local adapter does its work when a method is called (its
/// futures are values ready at the first poll), so dropping one does not undo it; a remote
/// adapter's future does nothing until polled, and a write dropped mid-flight may or may
/// not have been applied, as with any remote call. `get_or_compute` is lazy everywhere: a
/// dropped caller leaves its computation to the other waiters.
pub trait Cache<K: CacheKey, V: CacheValue>: Send + Sync {
    /// The value under `key`, if there is one and it has not expired.
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails (codec, unreachable node).
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>, CacheError>> + Send;

    /// The values under `keys`, in their order (`None` for a missing key).
    ///
    /// # Errors
    ///
    /// As [`get`](Cache::get).
    fn get_many(
        &self,
        keys: &[K],
    ) -> impl Future<Output = Result<Vec<Option<V>>, CacheError>> + Send;

    /// Writes `value` under `key`, replacing any value there, to live as `ttl` says.
    ///
    /// # Errors
    ///
    /// [`CacheError::InvalidTtl`] for a zero or overlong TTL (nothing is written).
    fn put(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// Writes `value` under `key` only if no live entry is there. Returns whether it wrote.
    ///
    /// # Errors
    ///
    /// As [`put`](Cache::put).
    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Writes `value` under `key` only if a live entry is there (its TTL becomes `ttl`).
    /// Returns whether it wrote.
    ///
    /// # Errors
    ///
    /// As [`put`](Cache::put).
    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Ttl,
    ) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Writes every entry, each as [`put`](Cache::put) would. Not atomic: a reader may see
    /// some of the entries before the others.
    ///
    /// # Errors
    ///
    /// As [`put`](Cache::put); an invalid TTL is refused before anything is written.
    fn put_many<I>(
        &self,
        entries: I,
        ttl: Ttl,
    ) -> impl Future<Output = Result<(), CacheError>> + Send
    where
        I: IntoIterator<Item = (K, V)> + Send,
        I::IntoIter: Send;

    /// Removes the entry under `key`, if any.
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn delete(&self, key: &K) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// Removes the entry under `key` and returns its value, if it was live.
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>, CacheError>> + Send;

    /// Whether a live entry is under `key` (not counted as a read; does not restart an
    /// idle entry's clock).
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn contains(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Adds `by` to the counter under `key` (starting from zero if there is none) and
    /// returns the new value. Atomic: concurrent `incr`s on one key lose no update. The
    /// entry's TTL becomes `ttl`.
    ///
    /// # Errors
    ///
    /// [`CacheError::Overflow`] if the sum leaves `V`'s range (the counter is unchanged),
    /// [`CacheError::InvalidTtl`] as [`put`](Cache::put).
    fn incr(&self, key: K, by: i64, ttl: Ttl) -> impl Future<Output = Result<V, CacheError>> + Send
    where
        V: Counter;

    /// Subtracts `by` from the counter under `key`: [`incr`](Cache::incr) by `-by`.
    ///
    /// # Errors
    ///
    /// As [`incr`](Cache::incr); [`CacheError::Overflow`] also for `by == i64::MIN`.
    fn decr(&self, key: K, by: i64, ttl: Ttl) -> impl Future<Output = Result<V, CacheError>> + Send
    where
        V: Counter,
    {
        async move {
            let by = by
                .checked_neg()
                .ok_or_else(|| CacheError::overflow::<V>(-i128::from(by)))?;
            self.incr(key, by, ttl).await
        }
    }

    /// What is left of the life of the entry under `key`, or `None` if there is no live
    /// entry. For a [`Ttl::Idle`] entry this is a read, which restarts its clock: it
    /// reports the full idle time.
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<TtlLeft>, CacheError>> + Send;

    /// Gives the live entry under `key` a new TTL, counted from now. Returns whether there
    /// was one.
    ///
    /// # Errors
    ///
    /// As [`put`](Cache::put).
    fn expire(&self, key: &K, ttl: Ttl) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// Restarts the clock of the live entry under `key` (its TTL counts again from now).
    /// Returns whether there was one.
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn touch(&self, key: &K) -> impl Future<Output = Result<bool, CacheError>> + Send;

    /// How many entries the cache holds (a cluster adapter: across the cluster). An entry
    /// past its deadline counts until it is removed (the local adapter: within about a
    /// second).
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn len(&self) -> impl Future<Output = Result<u64, CacheError>> + Send;

    /// Whether [`len`](Cache::len) is zero.
    ///
    /// # Errors
    ///
    /// As [`len`](Cache::len).
    fn is_empty(&self) -> impl Future<Output = Result<bool, CacheError>> + Send {
        async move { Ok(self.len().await? == 0) }
    }

    /// Removes every entry.
    ///
    /// # Errors
    ///
    /// Only a cluster adapter fails.
    fn clear(&self) -> impl Future<Output = Result<(), CacheError>> + Send;

    /// The keys of the live entries, one at a time, in no particular order. Entries written
    /// or removed while the stream runs may or may not be seen.
    fn stream_keys(&self) -> impl Stream<Item = Result<K, CacheError>> + Send + '_;

    /// The live entries, one at a time, as [`stream_keys`](Cache::stream_keys).
    fn stream(&self) -> impl Stream<Item = Result<(K, V), CacheError>> + Send + '_;

    /// The value under `key`; on a miss, runs `f`, caches its value (to live as `ttl`
    /// says) and returns it.
    ///
    /// **Single flight:** concurrent misses on one key (with the same error type `E`) run
    /// one `f` between them; the others wait for it and get its value. If `f` fails,
    /// nothing is cached and every waiter gets [`ComputeError::Compute`] with the error's
    /// message (its `Display`, hence the bound), and the error itself where `f` ran; if
    /// it panics, every waiter gets [`ComputeError::Panicked`] with the panic's message.
    /// Every waiter gets the same variant and message, on whichever node it waits (the
    /// partitioned adapter's waiters may be on other nodes). The computation is
    /// driven by whichever waiter is polled: if the caller whose `f` runs is dropped, the
    /// others carry it on, so no waiter hangs. Once all waiters are gone it is dropped.
    ///
    /// # Errors
    ///
    /// [`ComputeError::Compute`] and [`ComputeError::Panicked`] as above;
    /// [`ComputeError::Cache`] as [`put`](Cache::put) (the TTL is checked before `f` runs).
    fn get_or_compute<F, Fut, E>(
        &self,
        key: K,
        ttl: Ttl,
        f: F,
    ) -> impl Future<Output = Result<V, ComputeError<E>>> + Send
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: std::fmt::Display + Send + Sync + 'static;

    /// This node's counters for this cache: hits, misses, writes, evictions, expirations.
    fn stats(&self) -> Stats;
}

#[cfg(test)]
mod tests {
    use super::Counter;

    #[test]
    fn counters_add_within_their_range_and_refuse_past_it() {
        assert_eq!(5u8.checked_add_i64(-5), Some(0));
        assert_eq!(0u8.checked_add_i64(-1), None);
        assert_eq!(255u8.checked_add_i64(1), None);
        assert_eq!(i64::MAX.checked_add_i64(1), None);
        assert_eq!(i64::MIN.checked_add_i64(-1), None);
        assert_eq!(u64::MAX.checked_add_i64(-1), Some(u64::MAX - 1));
        assert_eq!((-3i32).checked_add_i64(10), Some(7));
        assert_eq!(0i32.checked_add_i64(i64::MAX), None);
    }
}
