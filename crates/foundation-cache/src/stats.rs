//! A cache's counters: [`Stats`], and the striped counters behind it.
//!
//! Hits, misses and writes are counted on the hot path, by every thread: each thread adds
//! to one of a few cache-line-sized stripes (chosen once per thread), so threads on
//! different cores rarely share a line; `stats()` sums the stripes. Evictions and
//! expirations are counted by moka's eviction listener, off the hot path.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// A snapshot of a cache's counters on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Entries written (`put`, a `put_new` or `replace` that wrote, each entry of
    /// `put_many`, `incr`/`decr`, a computed value).
    pub writes: u64,
    /// Entries removed to keep the cache within its bound.
    pub evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expirations: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or `None` before the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

/// One stripe: the hot counters, alone on their (pair of) cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
}

/// The live counters of one cache.
#[derive(Debug)]
pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
    mask: usize,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

/// Hands each thread a number, once; a thread's stripe is its number modulo the stripes.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn thread_number() -> usize {
    THREAD.with(|n| {
        let mut v = n.get();
        if v == usize::MAX {
            v = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            n.set(v);
        }
        v
    })
}

impl Counters {
    /// Counters with two stripes per available core (a power of two, at most 64).
    pub(crate) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stripes = (cores * 2).next_power_of_two().min(64);
        Self {
            stripes: (0..stripes).map(|_| Stripe::default()).collect(),
            mask: stripes - 1,
            evictions: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
        }
    }

    #[inline]
    fn stripe(&self) -> &Stripe {
        // `mask` is `len - 1` of a non-empty power-of-two slice: always in bounds.
        &self.stripes[thread_number() & self.mask]
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.stripe().hits.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.stripe().misses.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn read(&self, hit: bool) {
        if hit { self.hit() } else { self.miss() }
    }

    #[inline]
    pub(crate) fn writes(&self, n: u64) {
        self.stripe().writes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn eviction(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn expiration(&self) {
        self.expirations.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum of the stripes.
    pub(crate) fn snapshot(&self) -> Stats {
        let mut s = Stats {
            evictions: self.evictions.load(Ordering::Relaxed),
            expirations: self.expirations.load(Ordering::Relaxed),
            ..Stats::default()
        };
        for stripe in self.stripes.iter() {
            s.hits += stripe.hits.load(Ordering::Relaxed);
            s.misses += stripe.misses.load(Ordering::Relaxed);
            s.writes += stripe.writes.load(Ordering::Relaxed);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up_exactly() {
        let c = Counters::new();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..1000 {
                        c.read(i % 4 != 0);
                        c.writes(2);
                    }
                });
            }
        });
        c.eviction();
        c.expiration();
        c.expiration();
        let s = c.snapshot();
        assert_eq!(
            s,
            Stats {
                hits: 6000,
                misses: 2000,
                writes: 16000,
                evictions: 1,
                expirations: 2
            }
        );
        assert_eq!(s.hit_ratio(), Some(0.75));
        assert_eq!(Stats::default().hit_ratio(), None);
    }
}
