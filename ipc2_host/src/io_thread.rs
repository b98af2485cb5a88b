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

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The runtime a pool's tasks run on.
pub(crate) enum IoRuntime {
    /// The runtime that built the pool.
    Caller(Handle),
    /// A thread of the pool's own, stopped when this value drops.
    Dedicated {
        handle: Handle,
        stop: Option<oneshot::Sender<()>>,
    },
}

impl IoRuntime {
    /// The caller's runtime. Must be called inside a tokio runtime.
    pub(crate) fn caller() -> Self {
        Self::Caller(Handle::current())
    }

    /// Starts a thread running a current-thread runtime until this value
    /// drops; whatever the pool left on it is dropped then.
    pub(crate) fn dedicated() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let subscriber = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name("ipc2-io".into())
            .spawn(move || {
                let _subscriber = tracing::dispatcher::set_default(&subscriber);
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self::Dedicated {
            handle,
            stop: Some(stop),
        })
    }

    /// Where to spawn the pool's tasks.
    pub(crate) fn handle(&self) -> &Handle {
        match self {
            Self::Caller(handle) | Self::Dedicated { handle, .. } => handle,
        }
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Self::Dedicated { stop, .. } = self
            && let Some(stop) = stop.take()
        {
            let _ = stop.send(());
        }
    }
}
