//! Detached replies: fire a job now, collect its reply later.
//!
//! [`WorkerSet::submit`] does at once, synchronously, everything `send`
//! does before it waits: it encodes the job, takes a place in a bounded
//! queue, and hands the job to a worker or the queue. What it returns, a
//! [`PendingReply`], is only the waiting half (ump's `req_async` and
//! `WaitReply`): `.await` it in async code, [`wait`](PendingReply::wait) for
//! it in synchronous code, or drop it to cancel the job exactly as dropping
//! a `send` future does.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use ipc2_common::{FrameKind, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::blocking::block_on;
use crate::error::Error;
use crate::responder::Outcome;
use crate::responder::decoded;
use crate::shared::Shared;
use crate::workerset::WorkerSet;

/// The reply to a job [`submit`](WorkerSet::submit)ted to a pool, to be
/// collected later.
///
/// It resolves to exactly what [`send`](WorkerSet::send) would have
/// returned for the job: `.await` it (it is a `Future`), or block on it with
/// [`wait`](Self::wait). Dropping it cancels the job: if no worker has taken
/// the job yet it is never sent, and a reply that arrives later is
/// discarded. The job does not keep the pool alive: if the last
/// [`WorkerSet`] handle drops first, it resolves to [`Error::Closed`].
///
/// ```
/// # use test_common::behaviour::{Request, Response};
/// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
/// #     .worker_count(2)
/// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
/// #     .finish_blocking()?;
/// // Both jobs are running before the first wait.
/// let slow = workers.submit(Request::Sleep(50));
/// let quick = workers.submit(Request::Add(2, 3));
/// assert_eq!(quick.wait()?, Response::Sum(5));
/// assert!(matches!(slow.wait()?, Response::Slept(_)));
/// # Ok::<(), ipc2_host::Error>(())
/// ```
#[must_use = "dropping a PendingReply cancels its job"]
pub struct PendingReply<W> {
    state: State,
    /// For counting the outcome in `stats()`; weak, so that a pending job
    /// does not keep a dropped pool's state alive.
    shared: Weak<Shared>,
    _reply: PhantomData<fn() -> W>,
}

enum State {
    /// Queued or running.
    Waiting(oneshot::Receiver<Outcome>),
    /// Refused before it was queued (encoding failed, bounded queue full).
    Refused(Error),
    /// Its outcome was handed out.
    Done,
}

impl<S, W, H> WorkerSet<S, W, H>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    /// Queues `message` as a job right away and returns a handle to its
    /// reply: the job runs whether or not the handle is awaited yet, so one
    /// caller can have many jobs running before it waits for any.
    ///
    /// Nothing here waits: the job is encoded and handed to a worker (or to
    /// the queue) before `submit` returns. When the queue is bounded and
    /// full, the handle resolves to [`Error::QueueFull`], as
    /// [`try_send`](Self::try_send) would (nothing was sent). Otherwise it
    /// resolves to what [`send`](Self::send) would have returned, with the
    /// builder's `job_timeout`; the outcome is counted in
    /// [`stats`](Self::stats) when the handle yields it.
    ///
    /// ```
    /// # use test_common::behaviour::{Request, Response};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ipc2_host::Error> {
    /// # let workers: ipc2_host::Pool<Request, Response> = ipc2_host::Pool::builder()
    /// #     .worker_count(2)
    /// #     .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
    /// #     .finish()
    /// #     .await?;
    /// let pending: Vec<_> = (0..4).map(|i| workers.submit(Request::Add(i, i))).collect();
    /// for (i, reply) in pending.into_iter().enumerate() {
    ///     assert_eq!(reply.await?, Response::Sum(2 * i as u32));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn submit(&self, message: H) -> PendingReply<W> {
        let shared = self.shared();
        let queued = self
            .encode(FrameKind::Job, &message)
            .and_then(|job| Ok((job, self.try_place()?)));
        let state = match queued {
            Ok((job, place)) => State::Waiting(self.enqueue(job, shared.config.job_timeout, place)),
            Err(error) => State::Refused(error),
        };
        PendingReply {
            state,
            shared: Arc::downgrade(shared),
            _reply: PhantomData,
        }
    }
}

impl<W: DeserializeOwned> PendingReply<W> {
    /// Blocks the calling thread until the reply (or the job's error)
    /// arrives; the synchronous counterpart of `.await`.
    ///
    /// Like every blocking call of a pool it needs no runtime of the
    /// caller's; on a multi-thread tokio runtime it blocks inside
    /// `block_in_place`; on a current-thread runtime it fails at once with
    /// [`Error::BlockingInRuntime`] (and, the handle being consumed, the job
    /// is cancelled): `.await` the handle there instead.
    pub fn wait(self) -> Result<W, Error> {
        block_on("PendingReply::wait", None, self)?
    }
}

impl<W: DeserializeOwned> Future for PendingReply<W> {
    type Output = Result<W, Error>;

    /// # Panics
    ///
    /// If polled again after it returned its outcome (as most futures do).
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outcome = match std::mem::replace(&mut this.state, State::Done) {
            State::Waiting(mut receiver) => match Pin::new(&mut receiver).poll(context) {
                Poll::Pending => {
                    this.state = State::Waiting(receiver);
                    return Poll::Pending;
                }
                // A responder dropped unanswered means the set was torn down.
                Poll::Ready(outcome) => decoded(outcome.unwrap_or(Err(Error::Closed))),
            },
            State::Refused(error) => Err(error),
            State::Done => panic!("a PendingReply was polled after it returned its outcome"),
        };
        if let Some(shared) = this.shared.upgrade() {
            shared.counters.record(&outcome);
        }
        Poll::Ready(outcome)
    }
}

/// Shows whether the reply is still awaited (the reply type need not
/// implement `Debug`).
impl<W> std::fmt::Debug for PendingReply<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Waiting(_) => "waiting",
            State::Refused(_) => "refused",
            State::Done => "done",
        };
        f.debug_struct("PendingReply")
            .field("state", &state)
            .finish()
    }
}
