//! Locks that outlive a panicking holder.
//!
//! Every mutex in ipc2 guards a few collection operations that leave its
//! state consistent at every step, so a panic while it was held (a job's
//! panic unwinding through a sender, say) must not poison it for everyone
//! after: [`lock`] takes the state as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking its state as it is if a holder panicked.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
