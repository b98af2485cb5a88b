//! Where the pool's own tasks run.
//!
//! A pool has a few tasks of its own: the gate's accept loop, one supervisor
//! per worker (which reads that worker's replies and enforces deadlines),
//! and one writer per worker connection. They can run on the runtime that
//! called `finish()`, or on a dedicated thread with a current-thread runtime
//! of their own.
//!
//! On a multi-thread runtime the difference is large: every reply, every
//! batch of frames to write, wakes a task that the scheduler may place on
//! another thread, and waking a parked thread costs a system call. On a
//! dedicated thread that stays busy under load, the pool's tasks wake each
//! other without leaving the thread; only the callers' own tasks are woken
//! across. `ipc2_bench` measures both (see BENCHMARKS.md); the builder's
//! [`dedicated_io_thread`](crate::WorkerSetBuilder::dedicated_io_thread)
//! chooses.
//!
//! The dedicated thread carries the `tracing` subscriber that was in effect
//! where the pool was built, so the pool's events go where the caller's do.

use std::io;

use ipc2_common::runtime_thread::RuntimeThread;
use tokio::runtime::Handle;

/// The runtime a pool's tasks run on.
pub(crate) enum IoRuntime {
    /// The runtime that built the pool.
    Caller(Handle),
    /// A thread of the pool's own, stopped when this value drops.
    Dedicated(RuntimeThread),
}

impl IoRuntime {
    /// The caller's runtime. Must be called inside a tokio runtime.
    pub(crate) fn caller() -> Self {
        Self::Caller(Handle::current())
    }

    /// Starts a thread running a current-thread runtime until this value
    /// drops, with the caller's `tracing` subscriber; whatever the pool left
    /// on it is dropped then.
    pub(crate) fn dedicated() -> io::Result<Self> {
        let subscriber = tracing::dispatcher::get_default(Clone::clone);
        RuntimeThread::start("ipc2-io", move || {
            tracing::dispatcher::set_default(&subscriber)
        })
        .map(Self::Dedicated)
    }

    /// Where to spawn the pool's tasks.
    pub(crate) fn handle(&self) -> &Handle {
        match self {
            Self::Caller(handle) => handle,
            Self::Dedicated(thread) => thread.handle(),
        }
    }
}
