//! The local cache beside raw moka, in one run: get of a present key, get of a missing
//! key, and put of a key already present (an overwrite, the steady state of a warm cache).
//!
//! Both sides are a `moka::sync::Cache<u64, u64>` bounded to the same number of entries
//! and built with a per-entry `Expiry` (the local cache's TTLs need one; a raw moka cache
//! that offers per-entry TTLs is built the same way), cycling through the same 10,000
//! keys so each call hashes a new key.
//!
//! - `cache_get_hit/foundation`: `Local::get` (`Cache` trait) of a present key, its ready
//!   future polled once (`now_or_never`); `cache_get_hit/moka`: `Cache::get`.
//! - `cache_get_miss/...`: the same for keys never written.
//! - `cache_put/...`: `Local::put(k, v, Ttl::Default)` against `Cache::insert`.
//! - `cache_get_hit/moka_no_expiry`: raw moka without an `Expiry`, reported only: what
//!   per-entry expiry costs moka itself.
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-cache --bench cache`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use foundation_cache::{Cache, Local, Ttl};
use futures::FutureExt;

const KEYS: u64 = 10_000;
const CAPACITY: u64 = 100_000;

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

fn cache(c: &mut Criterion) {
    let ours: Local<u64, u64> = Local::builder().max_entries(CAPACITY).build().unwrap();
    let moka: moka::sync::Cache<u64, (u64, Option<Duration>)> = moka::sync::Cache::builder()
        .max_capacity(CAPACITY)
        .expire_after(PerEntry)
        .build();
    let plain: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(CAPACITY);
    for k in 0..KEYS {
        ours.put(k, k, Ttl::Default)
            .now_or_never()
            .unwrap()
            .unwrap();
        moka.insert(k, (k, None));
        plain.insert(k, k);
    }
    ours.run_pending_tasks();
    moka.run_pending_tasks();
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
    group.finish();
}

criterion_group!(benches, cache);
criterion_main!(benches);
