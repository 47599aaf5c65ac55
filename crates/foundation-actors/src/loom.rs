//! Synchronisation primitives, swapped for loom's under the internal `loom` feature so the
//! hand-synchronised pieces (the stable-address slot) can be model-checked.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Atomics, loom's under the `loom` feature.
pub(crate) mod atomic {
    #[cfg(feature = "loom")]
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

    #[cfg(not(feature = "loom"))]
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
}

// Poisoning is recovered from: the state guarded here is left consistent before anything
// that can panic runs, so a panic elsewhere must not make every later send panic too.

/// Takes the read lock.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Takes the write lock.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Takes a mutex.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a mutex guards, reached through an exclusive borrow of it: no locking.
pub(crate) fn get_mut<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}
