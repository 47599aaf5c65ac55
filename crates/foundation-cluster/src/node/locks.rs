//! The one way the node takes its locks: a poisoned lock's guard is taken anyway.
//!
//! Its own module so that the event loop, the connections, lanes and exports (and the raft
//! store) can all import it without importing each other.

use std::sync::{Mutex, RwLock};

/// A lock's guard even if a panicking holder poisoned it: the node's tables stay usable
/// (every critical section leaves them consistent). The one way the node takes its locks.
pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// As [`read`], for writing.
pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// As [`read`], for a mutex.
pub(crate) fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
