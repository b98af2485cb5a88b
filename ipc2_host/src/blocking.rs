//! Using a pool from synchronous code: [`block_on`], the one place that
//! decides whether, and how, a thread may wait for the pool.
//!
//! Everything a caller waits for on the send path (a place in a bounded
//! queue, a job's reply, the next outcome of a map) is a tokio
//! synchronisation primitive, which needs no runtime to be awaited: any
//! waker will do. So a blocking call polls its future on the calling thread
//! and parks the thread between wake-ups (`std` only: a waker that unparks
//! it). The pool's own tasks keep running wherever they run (on the pool's
//! own thread after [`finish_blocking`](crate::WorkerSetBuilder::finish_blocking)),
//! so nothing needs the caller's runtime.
//!
//! Where the calling thread is matters:
//! - no tokio runtime on this thread: block it;
//! - a multi-thread runtime (in a task, in `Runtime::block_on`, in
//!   `spawn_blocking`): block inside `tokio::task::block_in_place`, which
//!   first hands the thread's other tasks to another worker thread;
//! - a current-thread runtime: refuse with [`Error::BlockingInRuntime`].
//!   Blocking its only thread would stop every task on it, and that may be
//!   the very runtime that drives the pool: a deadlock, not a slow call.
//!   Its `spawn_blocking` threads are refused too: tokio shows them with
//!   the same runtime context, and gives no way to tell them apart.
//!
//! This module also holds the blocking entry points that need nothing else:
//! [`WorkerSetBuilder::finish_blocking`], [`WorkerSet::send_blocking`] and
//! [`WorkerSet::shutdown_blocking`].

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use ipc2_common::Server;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::builder::WorkerSetBuilder;
use crate::error::Error;
use crate::stats::ShutdownReport;
use crate::workerset::WorkerSet;

/// Runs `future` to completion on this thread, by the rules above. `call`
/// names the blocking method for the error; `timers`, if given, is the
/// runtime entered while polling (for futures that set timers).
pub(crate) fn block_on<F: Future>(
    call: &'static str,
    timers: Option<&Handle>,
    future: F,
) -> Result<F::Output, Error> {
    let run = || park_until_done(timers, future);
    Ok(match may_block(call)? {
        Wait::Park => run(),
        Wait::InPlace => tokio::task::block_in_place(run),
    })
}

/// How this thread may wait.
pub(crate) enum Wait {
    /// Outside any runtime: park the thread.
    Park,
    /// On a multi-thread runtime: park it inside `block_in_place`.
    InPlace,
}

/// Whether, and how, this thread may block on the pool; the error names
/// `call`.
pub(crate) fn may_block(call: &'static str) -> Result<Wait, Error> {
    match Handle::try_current() {
        Err(_) => Ok(Wait::Park),
        Ok(current) => match current.runtime_flavor() {
            RuntimeFlavor::CurrentThread => Err(Error::BlockingInRuntime { call }),
            _ => Ok(Wait::InPlace),
        },
    }
}

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` until it is ready, parking between polls. A spurious
/// wake-up only costs one more poll.
fn park_until_done<F: Future>(timers: Option<&Handle>, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        let polled = {
            let _entered = timers.map(Handle::enter);
            future.as_mut().poll(&mut context)
        };
        match polled {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

impl<S, W, H> WorkerSetBuilder<S, W, H>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    /// [`finish`](Self::finish) for synchronous programs: starts the workers
    /// and blocks until every one has connected, with no tokio runtime of
    /// the caller's. The pool's own tasks run on a thread of its own (as
    /// with [`dedicated_io_thread(true)`](Self::dedicated_io_thread), which
    /// it implies), so the set serves blocking and async callers alike, from
    /// any thread, until its last handle drops.
    ///
    /// Called on a current-thread tokio runtime it fails at once with
    /// [`Error::BlockingInRuntime`] (use `finish().await` there); on a
    /// multi-thread runtime it blocks inside `block_in_place`.
    ///
    /// ```
    /// use ipc2_host::Pool;
    /// use test_common::behaviour::{Request, Response};
    /// # use test_common::binaries::worker_binary;
    ///
    /// fn main() -> Result<(), ipc2_host::Error> {
    ///     let workers: Pool<Request, Response> = Pool::builder()
    ///         .worker_count(2)
    /// #       .worker_path(worker_binary("behaviour_worker"))
    /// #       /*
    ///         .worker_path("./target/debug/behaviour_worker")
    /// #       */
    ///         .finish_blocking()?;
    ///     assert_eq!(workers.send_blocking(Request::Add(6, 7))?, Response::Sum(13));
    ///     Ok(())
    /// }
    /// ```
    pub fn finish_blocking(self) -> Result<WorkerSet<S, W, H>, Error> {
        block_on(
            "WorkerSetBuilder::finish_blocking",
            None,
            self.dedicated_io_thread(true).finish(),
        )?
    }
}

impl<S, W, H> WorkerSet<S, W, H>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    /// [`send`](Self::send) for synchronous code: blocks the calling thread
    /// until the reply (or the job's error) arrives. Safe to call from many
    /// threads at once, and alongside async callers of the same set.
    ///
    /// Needs no runtime of the caller's. The pool's tasks must be running:
    /// they are, on the pool's own thread, for a set built with
    /// [`finish_blocking`](WorkerSetBuilder::finish_blocking) or
    /// `dedicated_io_thread(true)`; otherwise on the runtime that called
    /// `finish()`, which must still be running.
    ///
    /// On a current-thread tokio runtime it fails at once with
    /// [`Error::BlockingInRuntime`] and sends nothing: use
    /// `send(..).await` there. On a multi-thread runtime it blocks inside
    /// `block_in_place`. The outcome is counted in [`stats`](Self::stats)
    /// as `send`'s is.
    ///
    /// ```
    /// # use test_common::behaviour::{Request, Response};
    /// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
    /// #     .worker_count(1)
    /// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
    /// #     .finish_blocking()?;
    /// let threads: Vec<_> = (0..4)
    ///     .map(|i| {
    ///         let workers = workers.clone();
    ///         std::thread::spawn(move || workers.send_blocking(Request::Add(i, 1)))
    ///     })
    ///     .collect();
    /// for (i, thread) in threads.into_iter().enumerate() {
    ///     assert_eq!(thread.join().unwrap()?, Response::Sum(i as u32 + 1));
    /// }
    /// # Ok::<(), ipc2_host::Error>(())
    /// ```
    pub fn send_blocking(&self, message: H) -> Result<W, Error> {
        block_on("WorkerSet::send_blocking", None, self.send(message))?
    }
}

impl<S, W, H> WorkerSet<S, W, H> {
    /// [`shutdown`](Self::shutdown) for synchronous code: drains the pool
    /// gracefully within `timeout`, blocking the calling thread, and reports
    /// what it did. Fails at once with [`Error::BlockingInRuntime`] on a
    /// current-thread tokio runtime (use `shutdown(..).await` there); the
    /// pool is then left as it was.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use test_common::behaviour::{Request, Response};
    /// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
    /// #     .worker_count(1)
    /// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
    /// #     .finish_blocking()?;
    /// workers.send_blocking(Request::Pid)?;
    /// let report = workers.shutdown_blocking(Duration::from_secs(5))?;
    /// assert_eq!(report.killed, 0);
    /// assert!(matches!(workers.send_blocking(Request::Pid), Err(ipc2_host::Error::Closed)));
    /// # Ok::<(), ipc2_host::Error>(())
    /// ```
    pub fn shutdown_blocking(&self, timeout: Duration) -> Result<ShutdownReport, Error> {
        block_on(
            "WorkerSet::shutdown_blocking",
            Some(self.io_handle()),
            self.shutdown(timeout),
        )
    }
}
