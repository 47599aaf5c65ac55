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
//! Paired ratios (`target/bench-cache-paired.json`, read by `cargo xtask bench` for the
//! three budget rows): criterion measures each side in its own window of seconds, and on
//! a shared 2-core machine a slow spell or moka's own housekeeping landing in one window
//! moves the ratio by tens of percent (hit ratios of 1.13-1.38 were read minutes apart).
//! So, after criterion, the bench runs [`PROCESSES`] processes of itself; each fills the
//! two caches as above and runs [`ROUNDS`] rounds, each one chunk of ours and one of raw
//! moka back to back (the order swapped every round), and reports the median of its
//! rounds' ratios; the figure is the median over the processes (as foundation-actors'
//! `paired` bench does for the actor rows).
//!
//! Run with: `cargo xtask bench` (or `cargo bench -p foundation-cache --bench cache`).

#![allow(clippy::unwrap_used, missing_docs)] // a bench that fails should stop loudly

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
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

/// One process's reading of one pair: ours (ns per operation), raw moka's, their ratio.
type Reading = (f64, f64, f64);

/// Rounds per process of the paired ratios.
const ROUNDS: usize = 21;
/// Operations per side and round.
const CHUNK: u64 = 100_000;
/// Processes of the paired ratios.
const PROCESSES: usize = 5;
/// Set in the processes the bench starts for its paired ratios.
const CHILD_ENV: &str = "FOUNDATION_CACHE_PAIRED_CHILD";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `ROUNDS` rounds of `ours` and `raw` (each timing `CHUNK` operations), the order swapped
/// every round: the median time per operation of each and the median of the ratios.
fn pair(mut ours: impl FnMut() -> Duration, mut raw: impl FnMut() -> Duration) -> Reading {
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (o, m) = if round % 2 == 0 {
            let o = ours();
            (o, raw())
        } else {
            let m = raw();
            (ours(), m)
        };
        let (o, m) = (
            o.as_nanos() as f64 / CHUNK as f64,
            m.as_nanos() as f64 / CHUNK as f64,
        );
        a.push(o);
        b.push(m);
        r.push(o / m);
    }
    (median(a), median(b), median(r))
}

/// Times `CHUNK` calls of `f` over the keys in turn.
fn timed(mut f: impl FnMut(u64)) -> Duration {
    let t = Instant::now();
    for i in 0..CHUNK {
        f(i % KEYS);
    }
    t.elapsed()
}

/// One process's paired readings: `pair <group> <ours ns> <moka ns> <ratio>` lines.
fn paired_child() {
    let ours: Local<u64, u64> = Local::builder().max_entries(CAPACITY).build().unwrap();
    let removed = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let moka = raw(Some((Arc::clone(&removed.0), Arc::clone(&removed.1))));
    for k in 0..KEYS {
        ours.put(k, k, Ttl::Default)
            .now_or_never()
            .unwrap()
            .unwrap();
        moka.insert(k, (k, None));
    }
    ours.run_pending_tasks();
    moka.run_pending_tasks();
    let hit = pair(
        || {
            timed(|k| {
                black_box(ours.get(black_box(&k)).now_or_never());
            })
        },
        || {
            timed(|k| {
                black_box(moka.get(black_box(&k)).map(|v| v.0));
            })
        },
    );
    let miss = pair(
        || {
            timed(|k| {
                black_box(ours.get(black_box(&(KEYS + k))).now_or_never());
            })
        },
        || {
            timed(|k| {
                black_box(moka.get(black_box(&(KEYS + k))).map(|v| v.0));
            })
        },
    );
    let put = pair(
        || {
            timed(|k| {
                black_box(ours.put(black_box(k), k, Ttl::Default).now_or_never());
            })
        },
        || timed(|k| moka.insert(black_box(k), (k, None))),
    );
    for (group, (o, m, r)) in [
        ("cache_get_hit", hit),
        ("cache_get_miss", miss),
        ("cache_put", put),
    ] {
        println!("pair {group} {o} {m} {r}");
    }
}

/// Runs [`PROCESSES`] processes of [`paired_child`] and writes their medians to
/// `<target>/bench-cache-paired.json`.
fn paired() {
    let exe = std::env::current_exe().unwrap();
    let mut runs: Vec<(String, Vec<Reading>)> = Vec::new();
    for _ in 0..PROCESSES {
        let out = std::process::Command::new(&exe)
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "a paired cache-bench process failed");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let ["pair", group, o, m, r] = f[..] else {
                continue;
            };
            let reading = (o.parse().unwrap(), m.parse().unwrap(), r.parse().unwrap());
            match runs.iter_mut().find(|(g, _)| g == group) {
                Some((_, v)) => v.push(reading),
                None => runs.push((group.to_owned(), vec![reading])),
            }
        }
    }
    let mut pairs = Vec::new();
    for (group, readings) in &runs {
        let ours = median(readings.iter().map(|r| r.0).collect());
        let moka = median(readings.iter().map(|r| r.1).collect());
        let ratio = median(readings.iter().map(|r| r.2).collect());
        let each: Vec<String> = readings.iter().map(|r| format!("{:.3}", r.2)).collect();
        println!(
            "{group:<16} ours {ours:>7.1} ns  moka {moka:>7.1} ns  paired ratio {ratio:.3} \
             (median of {PROCESSES} processes: {}; each the median of {ROUNDS} rounds)",
            each.join(" ")
        );
        pairs.push(format!(
            "{{\"group\":\"{group}\",\"ours_ns\":{ours:.1},\"ractor_ns\":{moka:.1},\"ratio\":{ratio:.4},\"rounds\":{ROUNDS},\"processes\":{PROCESSES},\"process_ratios\":[{}]}}",
            each.join(",")
        ));
    }
    // `<target>/release/deps/<bench>`: the target directory is three levels up.
    let target = exe.ancestors().nth(3).unwrap();
    std::fs::write(
        target.join("bench-cache-paired.json"),
        format!("{{\"pairs\":[{}]}}", pairs.join(",")),
    )
    .unwrap();
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

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        paired_child();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench` (criterion's test mode runs each bench once, quickly).
    if std::env::args().any(|a| a == "--bench") {
        paired();
    }
}
