//! The one way this crate takes a std mutex.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering from poisoning: every critical section in this crate is a few
/// map or counter operations that cannot leave the data half-updated, so a panic
/// elsewhere must not turn into a panic for every later caller.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
