//! The worker side of `#[ipc2::service]`: [`serve`] connects to the host and
//! answers every call with the service's implementation.
//!
//! The macro generates, per service, only the match from request variant to
//! method ([`Dispatch`]); how a handler runs lives here, once:
//!
//! - An `async fn` handler starts right in the receive loop; if it has to
//!   wait (at its first `.await` that is not ready) it goes on in a task of
//!   its own (`tokio::spawn`), so calls of one worker overlap up to the
//!   pool's `max_in_flight_per_worker`, and one that never waits costs no
//!   task. Work that computes for long without awaiting belongs in a plain
//!   `fn` handler.
//! - A plain `fn` handler may block. When the pool gives the worker one job
//!   at a time (`max_in_flight_per_worker(1)`, the default) it runs right in
//!   the receive loop, which costs nothing; above 1, each call runs on
//!   tokio's blocking pool (`spawn_blocking`), so that calls run
//!   concurrently without stalling the loop. For many light, concurrent
//!   calls an `async fn` is much cheaper (no thread hop).
//!
//! Each call's reply sender goes with its handler (into the task, the
//! blocking closure, or the closure run in place), so a handler that panics
//! fails that one call with the panic, and the worker goes on serving.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::connect::jobs;
use crate::error::ServeError;
use crate::job::{Job, ReplySender};
use crate::receiver::Receiver;

/// A service's request enum: how each of its variants is answered with a
/// state `S` that implements the service. `#[ipc2::service]` implements it.
pub trait Dispatch<S>: DeserializeOwned + Send + 'static {
    /// The service's response enum.
    type Response: Serialize + Send + 'static;

    /// Runs the method this request calls, with `runner`'s state, and
    /// answers through `reply` (`None` for a one-way call).
    fn dispatch(self, runner: &Runner<S>, reply: Option<ReplySender<Self::Response>>);
}

/// Connects to the host that started this process and serves requests of
/// type `Req` with `state` until the host closes the connection or asks the
/// worker to stop; then waits for the calls still running.
///
/// The generated `serve()` method of a service trait calls this.
pub async fn serve<Req, S>(state: S) -> Result<(), ServeError>
where
    Req: Dispatch<S>,
    S: Send + Sync + 'static,
{
    let jobs = jobs::<Req, Req::Response>().await?;
    serve_jobs(jobs, state).await
}

/// [`serve`] on a receiver that is already connected (any transport).
pub async fn serve_jobs<Req, S>(
    mut jobs: Receiver<Req, Req::Response>,
    state: S,
) -> Result<(), ServeError>
where
    Req: Dispatch<S>,
    S: Send + Sync + 'static,
{
    let runner = Runner::new(state, jobs.max_in_flight() > 1);
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Bidirectional { data, tx } => data.dispatch(&runner, Some(tx)),
            Job::Unidirectional { data } => data.dispatch(&runner, None),
        }
    }
    runner.running.idle().await;
    match jobs.take_error() {
        Some(error) => Err(ServeError::Connection(error)),
        None => Ok(()),
    }
}

/// Runs a service's handlers: holds the state they share and knows whether
/// calls must run concurrently.
pub struct Runner<S> {
    state: Arc<S>,
    concurrent: bool,
    running: Arc<Running>,
}

impl<S: Send + Sync + 'static> Runner<S> {
    fn new(state: S, concurrent: bool) -> Self {
        Self {
            state: Arc::new(state),
            concurrent,
            running: Arc::default(),
        }
    }

    /// Runs a plain (possibly blocking) handler and sends what it returns
    /// through `reply`: in place when the worker gets one job at a time, on
    /// tokio's blocking pool otherwise.
    pub fn blocking<O, H>(&self, reply: Option<ReplySender<O>>, handler: H)
    where
        O: Serialize + Send + 'static,
        H: FnOnce(&S) -> O + Send + 'static,
    {
        if !self.concurrent {
            let state = &*self.state;
            // `reply` is moved into the closure: if the handler panics, it is
            // dropped while unwinding, which fails the call with the panic.
            // The state is shared, as with a task that panics: a handler that
            // must not leave it half-changed guards it (a Mutex poisons).
            let _ = catch_unwind(AssertUnwindSafe(move || answer(reply, handler(state))));
            return;
        }
        let state = Arc::clone(&self.state);
        let started = self.running.start();
        tokio::task::spawn_blocking(move || {
            let _started = started;
            answer(reply, handler(&state));
        });
    }

    /// Runs an async handler and sends what it returns through `reply`.
    ///
    /// The handler is polled once in place: one that finishes without
    /// waiting (most light handlers) costs no task. One that waits goes on
    /// in a task of its own, so that it runs alongside the calls after it.
    pub fn spawn<O, H, F>(&self, reply: Option<ReplySender<O>>, handler: H)
    where
        O: Serialize + Send + 'static,
        H: FnOnce(Arc<S>) -> F,
        F: Future<Output = O> + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        let running = &self.running;
        // The call (with `reply` inside it) lives in the closure until it has
        // been polled: a panic in that first poll drops it while unwinding,
        // which fails the call with the panic.
        let first_poll = catch_unwind(AssertUnwindSafe(move || {
            let call = handler(state);
            let mut call = Box::pin(async move { answer(reply, call.await) });
            let mut context = Context::from_waker(Waker::noop());
            match call.as_mut().poll(&mut context) {
                Poll::Ready(()) => None,
                Poll::Pending => Some(call),
            }
        }));
        if let Ok(Some(call)) = first_poll {
            // Polled again at once by its task, with the task's waker.
            let started = running.start();
            tokio::spawn(async move {
                let _started = started;
                call.await;
            });
        }
    }
}

/// Sends `value` as the reply, if the call wants one. A reply that cannot
/// be encoded has already been reported to the host's caller by `send`;
/// one whose connection is gone has nobody to go to.
fn answer<O: Serialize>(reply: Option<ReplySender<O>>, value: O) {
    if let Some(reply) = reply {
        let _ = reply.send(value);
    }
}

/// Counts the handlers running in tasks or on the blocking pool, so that
/// `serve` can wait for them before it returns.
#[derive(Default)]
struct Running {
    count: AtomicUsize,
    finished: Notify,
}

impl Running {
    fn start(self: &Arc<Self>) -> Started {
        self.count.fetch_add(1, Ordering::AcqRel);
        Started(Arc::clone(self))
    }

    async fn idle(&self) {
        while self.count.load(Ordering::Acquire) > 0 {
            self.finished.notified().await;
        }
    }
}

/// One running handler; dropping it (also when the handler panics) counts
/// it as finished.
struct Started(Arc<Running>);

impl Drop for Started {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Stores a permit if `idle` is not waiting yet, so none is lost.
            self.0.finished.notify_one();
        }
    }
}
