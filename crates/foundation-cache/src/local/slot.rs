//! What the local adapter stores in moka for each entry: the value, its TTL, and when its
//! clock last started; and the moka `Expiry` that reads them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ttl::{Ttl, TtlLeft};

/// The instant entries' stamps count from. Set when the first cache is built, before any
/// entry is written, so no stamp is before it.
static EPOCH: OnceLock<Instant> = OnceLock::new();

pub(crate) fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// `at` as nanoseconds since [`epoch`], saturating.
fn nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// One entry as moka holds it.
#[derive(Debug)]
pub(crate) struct Slot<V> {
    pub(crate) value: V,
    /// `Never`, `Live` or `Idle` (never `Default`: resolved before the write).
    pub(crate) ttl: Ttl,
    /// When this entry's clock last started (nanoseconds since [`epoch`]): written by the
    /// expiry below, with the time moka already read, so a write costs no clock read of
    /// its own. Only `ttl()` reads it.
    stamp: AtomicU64,
    /// On an update, keep the old deadline (`incr` of an existing counter).
    keep_deadline: bool,
}

impl<V> Slot<V> {
    pub(crate) fn new(value: V, ttl: Ttl) -> Self {
        Self {
            value,
            ttl,
            stamp: AtomicU64::new(0),
            keep_deadline: false,
        }
    }

    /// A new value for an existing entry that keeps the entry's TTL and deadline.
    pub(crate) fn keeping<W>(value: V, old: &Slot<W>) -> Self {
        Self {
            value,
            ttl: old.ttl,
            stamp: AtomicU64::new(old.stamp.load(Ordering::Relaxed)),
            keep_deadline: true,
        }
    }

    /// Starts the entry's clock at `at`; the duration until it expires.
    fn start(&self, at: Instant) -> Option<Duration> {
        match self.ttl {
            Ttl::Live(d) | Ttl::Idle(d) => {
                self.stamp.store(nanos(at), Ordering::Relaxed);
                Some(d)
            }
            _ => None,
        }
    }

    /// What is left of the entry's life, now, just after a read of it (which restarted
    /// an idle entry's clock: it has its whole idle time left).
    pub(crate) fn left(&self) -> TtlLeft {
        match self.ttl {
            Ttl::Idle(d) => TtlLeft::After(d),
            Ttl::Live(d) => {
                let started = Duration::from_nanos(self.stamp.load(Ordering::Relaxed));
                let elapsed = epoch().elapsed().saturating_sub(started);
                TtlLeft::After(d.saturating_sub(elapsed))
            }
            _ => TtlLeft::Never,
        }
    }
}

impl<V: Clone> Clone for Slot<V> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            ttl: self.ttl,
            stamp: AtomicU64::new(self.stamp.load(Ordering::Relaxed)),
            keep_deadline: self.keep_deadline,
        }
    }
}

/// Per-entry expiry from each [`Slot`]'s TTL: a write (re)starts the clock, a read
/// restarts it for [`Ttl::Idle`] only.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotExpiry;

impl<K, V> moka::Expiry<K, Slot<V>> for SlotExpiry {
    fn expire_after_create(&self, _: &K, slot: &Slot<V>, at: Instant) -> Option<Duration> {
        slot.start(at)
    }

    fn expire_after_update(
        &self,
        _: &K,
        slot: &Slot<V>,
        at: Instant,
        left: Option<Duration>,
    ) -> Option<Duration> {
        if slot.keep_deadline {
            left
        } else {
            slot.start(at)
        }
    }

    fn expire_after_read(
        &self,
        _: &K,
        slot: &Slot<V>,
        at: Instant,
        left: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        match slot.ttl {
            Ttl::Idle(_) => slot.start(at),
            _ => left,
        }
    }
}
