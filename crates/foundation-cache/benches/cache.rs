//! The local cache beside raw moka, in one run: get of a present key, get of a missing
//! key, and put of a key already present (an overwrite, the steady state of a warm cache).
//!
//! Both sides are a `moka::sync::Cache<u64, _>` built the same way: bounded to the same
//! number of entries, with a per-entry `Expiry` (the TTL riding with the value, as a raw
//! moka user offering per-entry TTLs writes it) and an eviction listener counting
//! evictions and expirations into atomics (the local cache's `Stats` need one). Both cycle
//! through the same 10,000 keys, so each call hashes a new key.
//!
//! - `cache_get_hit/foundation`: `Local::get` (`Cache` trait) of a present key, its ready
//!   future polled once (`now_or_never`); `cache_get_hit/moka`: `Cache::get`.
//! - `cache_get_miss/...`: the same for keys never written.
//! - `cache_put/foundation`: `Local::put(k, v, Ttl::Default)`; `cache_put/moka`:
//!   `Cache::insert`.
//!
//! Reported only, to show what moka's own features cost:
//! - `cache_get_hit/moka_no_expiry`: raw moka without an `Expiry` or listener.
//! - `cache_put/moka_no_listener`: raw moka with the `Expiry` but no eviction listener
//!   (with one, moka takes a per-key lock on every write), and
//!   `cache_put/foundation_no_counts`: the local cache built with
//!   `count_evictions(false)`, which installs none.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-cache --bench cache`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_cache::{Cache, Local, Ttl};
use futures::FutureExt;
use moka::notification::RemovalCause;

const KEYS: u64 = 10_000;
const CAPACITY: u64 = 100_000;

type Raw = moka::sync::Cache<u64, (u64, Option<Duration>)>;

/// A raw moka `Expiry` as a user offering per-entry TTLs would write it: the TTL rides
/// with the value.
struct PerEntry;

impl moka::Expiry<u64, (u64, Option<Duration>)> for PerEntry {
    fn expire_after_create(
        &self,
        _: &u64,
        value: &(u64, Option<Duration>),
        _: Instant,
    ) -> Option<Duration> {
        value.1
    }
    fn expire_after_update(
        &self,
        _: &u64,
        value: &(u64, Option<Duration>),
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.1
    }
}

/// Raw moka with the per-entry `Expiry`, and with a listener counting removals if
/// `counts` is given.
fn raw(counts: Option<(Arc<AtomicU64>, Arc<AtomicU64>)>) -> Raw {
    let builder = moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .expire_after(PerEntry);
    match counts {
        Some((evictions, expirations)) => builder
            .eviction_listener(move |_, _, cause| match cause {
                RemovalCause::Size => {
                    evictions.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    expirations.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build(),
        None => builder.build(),
    }
}

fn cache(c: &mut Criterion) {
    let ours: Local<u64, u64> = Local::builder().max_entries(CAPACITY).build().unwrap();
    let ours_uncounted: Local<u64, u64> = Local::builder()
        .max_entries(CAPACITY)
        .count_evictions(false)
        .build()
        .unwrap();
    let removed = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let moka = raw(Some((Arc::clone(&removed.0), Arc::clone(&removed.1))));
    let moka_no_listener = raw(None);
    let plain: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(CAPACITY);
    for k in 0..KEYS {
        for local in [&ours, &ours_uncounted] {
            local
                .put(k, k, Ttl::Default)
                .now_or_never()
                .unwrap()
                .unwrap();
        }
        moka.insert(k, (k, None));
        moka_no_listener.insert(k, (k, None));
        plain.insert(k, k);
    }
    ours.run_pending_tasks();
    ours_uncounted.run_pending_tasks();
    moka.run_pending_tasks();
    moka_no_listener.run_pending_tasks();
    plain.run_pending_tasks();

    let mut i = 0;
    let mut next = move || {
        i = (i + 1) % KEYS;
        i
    };

    let mut group = c.benchmark_group("cache_get_hit");
    group.bench_function("foundation", |b| {
        b.iter(|| black_box(ours.get(black_box(&next())).now_or_never()))
    });
    group.bench_function("moka", |b| {
        b.iter(|| black_box(moka.get(black_box(&next())).map(|v| v.0)))
    });
    group.bench_function("moka_no_expiry", |b| {
        b.iter(|| black_box(plain.get(black_box(&next()))))
    });
    group.finish();

    let mut group = c.benchmark_group("cache_get_miss");
    group.bench_function("foundation", |b| {
        b.iter(|| black_box(ours.get(black_box(&(KEYS + next()))).now_or_never()))
    });
    group.bench_function("moka", |b| {
        b.iter(|| black_box(moka.get(black_box(&(KEYS + next()))).map(|v| v.0)))
    });
    group.finish();

    let mut group = c.benchmark_group("cache_put");
    group.bench_function("foundation", |b| {
        b.iter(|| {
            let k = next();
            black_box(ours.put(black_box(k), k, Ttl::Default).now_or_never())
        })
    });
    group.bench_function("moka", |b| {
        b.iter(|| {
            let k = next();
            moka.insert(black_box(k), (k, None));
        })
    });
    group.bench_function("foundation_no_counts", |b| {
        b.iter(|| {
            let k = next();
            black_box(
                ours_uncounted
                    .put(black_box(k), k, Ttl::Default)
                    .now_or_never(),
            )
        })
    });
    group.bench_function("moka_no_listener", |b| {
        b.iter(|| {
            let k = next();
            moka_no_listener.insert(black_box(k), (k, None));
        })
    });
    group.finish();
    // Nothing was evicted or expired: the listener's counters only cost their listener.
    assert_eq!(
        removed.0.load(Ordering::Relaxed) + removed.1.load(Ordering::Relaxed),
        0
    );
}

criterion_group!(benches, cache);
criterion_main!(benches);
