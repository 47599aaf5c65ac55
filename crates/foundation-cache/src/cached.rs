//! [`cached`]: cache-aside on an async computation, the function behind `#[cached]`.

use std::future::Future;

use crate::api::{Cache, CacheKey, CacheValue};
use crate::ttl::Ttl;

/// Cache-aside: the value under `key` if `cache` holds it; otherwise runs `f`, writes its
/// `Ok` value under `key` (to live as `ttl` says) and returns it. An `Err` from `f` is
/// returned as it is and caches nothing. What the `#[cached]` attribute expands to.
///
/// The cache is an optimisation here, not the source of truth: a failing read (a cluster
/// adapter's codec or unavailability) is logged and `f` runs; a failing write is logged
/// and `f`'s value is still returned. Concurrent misses each run `f`, as Nebulex's
/// `cacheable` does; [`Cache::get_or_compute`] runs one `f` for them all (single flight),
/// and shares its error (`ComputeError`).
///
/// # Errors
///
/// `f`'s error.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use foundation_cache::{Local, cached};
///
/// # futures::executor::block_on(async {
/// let users: Local<u64, String> = Local::builder().max_entries(100).build()?;
/// let load = |id: u64| async move { Ok::<_, std::io::Error>(format!("user {id}")) };
/// let name = cached(&users, 7, Duration::from_secs(60).into(), || load(7)).await?;
/// assert_eq!(name, "user 7");
/// // The second time, from the cache: the closure does not run.
/// let again = cached(&users, 7, Duration::from_secs(60).into(), || async {
///     Err(std::io::Error::other("not called"))
/// })
/// .await?;
/// assert_eq!(again, "user 7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// With the attribute (re-exported here from `foundation-macros`):
///
/// ```
/// use std::sync::LazyLock;
/// use std::time::Duration;
/// use foundation_cache::{Local, cached};
///
/// static USERS: LazyLock<Local<u64, String>> =
///     LazyLock::new(|| Local::builder().max_entries(10_000).build().expect("a valid TTL"));
///
/// #[cached(cache = *USERS, key = id, ttl = Duration::from_secs(60))]
/// async fn user_name(id: u64) -> Result<String, std::io::Error> {
///     Ok(format!("user {id}")) // a database, in life
/// }
///
/// # futures::executor::block_on(async {
/// assert_eq!(user_name(1).await?, "user 1");
/// assert_eq!(USERS.stats().writes, 1);
/// assert_eq!(user_name(1).await?, "user 1"); // a hit: the body does not run
/// assert_eq!(USERS.stats().hits, 1);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// # use foundation_cache::Cache;
/// ```
pub async fn cached<C, K, V, E, F, Fut>(cache: &C, key: K, ttl: Ttl, f: F) -> Result<V, E>
where
    C: Cache<K, V> + ?Sized,
    K: CacheKey,
    V: CacheValue,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<V, E>>,
{
    match cache.get(&key).await {
        Ok(Some(value)) => return Ok(value),
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, "cache-aside: the cache read failed; computing"),
    }
    let value = f().await?;
    if let Err(error) = cache.put(key, value.clone(), ttl).await {
        tracing::warn!(%error, "cache-aside: the computed value was not cached");
    }
    Ok(value)
}
