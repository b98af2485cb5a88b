//! The handle a host program holds: [`WorkerSet`].
//!
//! A `WorkerSet` is a cheap, cloneable handle; all clones share one pool.
//! Its methods take `&self`, so any number of tasks may send at once.
//!
//! Two ways to end a pool: [`WorkerSet::shutdown`] drains it gracefully
//! (queued and running jobs finish, workers are asked to exit, stragglers
//! are killed at the deadline); dropping the last clone is a hard stop:
//! pending jobs fail with [`Error::Closed`], every worker process is killed
//! at once, every task is stopped. Either way the socket directory is
//! removed and no worker outlives the pool.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ipc2_common::codec::{Prepared, prepare};
use ipc2_common::shm::Lent;
use ipc2_common::{FrameKind, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dispatch::{Job, JobKind};
use crate::error::Error;
use crate::grouping::Grouper;
use crate::io_thread::IoRuntime;
use crate::responder::{Arrival, Batch, Outcome, Responder, decoded};
use crate::shared::Shared;
use crate::socket_dir::SocketDir;
use crate::stats::{ShutdownReport, Stats};
use crate::stream::{ReplyStream, StreamShared};
use ipc2_common::sync::lock;

/// A set of worker processes that run jobs of type `H` (host → worker) and
/// answer with `W` (worker → host), talking over the server type `S`.
///
/// ```no_run
/// # use ipc2_host::workerset::WorkerSet;
/// # #[derive(serde::Serialize)] enum HostMessage { Add(u32, u32) }
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let workers: WorkerSet<tokio::net::UnixListener, u32, HostMessage> = WorkerSet::builder()
///     .worker_path("./target/debug/worker_test")
///     .finish()
///     .await?;
/// let sum = workers.send(HostMessage::Add(6, 7)).await?;
/// assert_eq!(sum, 13);
/// # Ok(()) }
/// ```
pub struct WorkerSet<S, W, H> {
    inner: Arc<Inner>,
    _types: PhantomData<fn(H) -> (S, W)>,
}

/// A pool over the default transport (the host's Unix socket), with its
/// messages named in the order a worker names them: the job (`Request`)
/// first, then the `Reply` (as in `ipc2_worker::jobs::<Request, Reply>()`).
///
/// `Pool<HostMessage, u32>` is `WorkerSet<UnixListener, u32, HostMessage>`:
/// the seed's spelling stays valid, and the two name the same type.
pub type Pool<Request, Reply> = WorkerSet<tokio::net::UnixListener, Reply, Request>;

/// Shows the worker count, the pids of the workers serving, and how many
/// jobs wait in the queue (message types need not implement `Debug`).
impl<S, W, H> std::fmt::Debug for WorkerSet<S, W, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (_, queued) = self.inner.shared.dispatch.snapshot();
        f.debug_struct("WorkerSet")
            .field("worker_count", &self.worker_count())
            .field("pids", &self.worker_pids())
            .field("queued", &queued)
            .field("socket", &self.socket_path())
            .finish()
    }
}

impl<S, W, H> Clone for WorkerSet<S, W, H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _types: PhantomData,
        }
    }
}

impl<S, W, H> WorkerSet<S, W, H> {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
            _types: PhantomData,
        }
    }

    /// The state the handle shares with the pool's tasks, for the request
    /// shapes built on top of `send` (blocking, pending, map).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The runtime the pool's tasks run on.
    pub(crate) fn io_handle(&self) -> &tokio::runtime::Handle {
        self.inner.runtime.handle()
    }

    /// Process ids of the workers currently connected and serving.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.inner.shared.dispatch.pids()
    }

    /// Path of the socket workers connect to (inside a private directory
    /// that is removed with the set).
    pub fn socket_path(&self) -> &Path {
        &self.inner.shared.socket_path
    }

    /// Number of worker slots.
    pub fn worker_count(&self) -> usize {
        self.inner.shared.config.worker_count
    }

    /// A snapshot: per worker slot its pid, state, jobs done, jobs in
    /// flight and restarts; for the pool, queued jobs, and jobs resolved
    /// with a reply or with an error (by kind).
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let (workers, queued) = shared.dispatch.snapshot();
        Stats {
            workers,
            queued,
            completed: shared.counters.completed(),
            failed: shared.counters.failures(),
        }
    }

    /// Shuts the pool down gracefully within `timeout`: new jobs fail with
    /// [`Error::ShuttingDown`] at once; queued and running jobs go on to
    /// finish; then every worker is asked to exit (its `recv()` returns
    /// `None`) and awaited. Whatever has not finished at the deadline is
    /// cancelled (those jobs fail with [`Error::ShuttingDown`]) and workers
    /// still running are killed, and the socket directory is removed.
    /// Afterwards the set is closed: clones fail with [`Error::Closed`].
    /// Calling it again reports nothing more.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let inner = &self.inner;
        let shared = &inner.shared;
        let deadline = tokio::time::Instant::now() + timeout;
        tracing::info!(?timeout, "WorkerSet shutting down");
        let pending = shared.dispatch.begin_shutdown();
        let _ = tokio::time::timeout_at(deadline, shared.dispatch.drained()).await;
        shared.dispatch.stop_workers();
        let supervisors = std::mem::take(&mut *lock(&inner.supervisors));
        for supervisor in supervisors {
            let abort = supervisor.abort_handle();
            if tokio::time::timeout_at(deadline, supervisor).await.is_err() {
                abort.abort();
            }
        }
        let killed = shared.spawner.kill_all();
        let cancelled = shared.dispatch.close(|| Error::ShuttingDown);
        inner.gate_task.abort();
        drop(lock(&inner.socket_dir).take());
        let finished = pending.saturating_sub(cancelled) as u64;
        tracing::info!(finished, cancelled, killed, "WorkerSet shut down");
        ShutdownReport {
            finished,
            cancelled: cancelled as u64,
            killed,
        }
    }
}

impl<S, W, H> WorkerSet<S, W, H>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    /// Runs `message` on the least-loaded worker with room (by default, one
    /// that is not running a job; waiting in a queue while none has room)
    /// and returns its reply.
    ///
    /// Errors: [`Error::WorkerDied`] if the worker died while on the job,
    /// [`Error::NoReply`] if it dropped the reply sender,
    /// [`Error::Protocol`] if it sent garbage (it is killed),
    /// [`Error::Encode`] / [`Error::Decode`] / [`Error::JobFailed`] if a
    /// message could not be encoded or decoded, [`Error::Closed`] if the set
    /// is gone. The future may be dropped at any time; a job not yet given
    /// to a worker is then never sent.
    pub async fn send(&self, message: H) -> Result<W, Error> {
        let timeout = self.inner.shared.config.job_timeout;
        self.send_with(message, timeout).await
    }

    /// Like [`send`](Self::send), with its own deadline instead of the
    /// builder's `job_timeout`: counted from when a worker takes the job;
    /// past it, the job fails with [`Error::Timeout`].
    pub async fn send_timeout(&self, message: H, timeout: Duration) -> Result<W, Error> {
        self.send_with(message, Some(timeout)).await
    }

    /// Like [`send`](Self::send), but when the queue is bounded
    /// ([`queue_capacity`](crate::WorkerSetBuilder::queue_capacity)) and full,
    /// fails at once with [`Error::QueueFull`] instead of waiting for room.
    pub async fn try_send(&self, message: H) -> Result<W, Error> {
        let outcome = async {
            let job = self.encode(FrameKind::Job, &message)?;
            let place = self.try_place()?;
            let timeout = self.inner.shared.config.job_timeout;
            decoded(wait(self.enqueue(job, timeout, place)).await)
        }
        .await;
        self.inner.shared.counters.record(&outcome);
        outcome
    }

    async fn send_with(&self, message: H, timeout: Option<Duration>) -> Result<W, Error> {
        let outcome = async {
            let job = self.encode(FrameKind::Job, &message)?;
            let place = self.place(1).await;
            decoded(wait(self.enqueue(job, timeout, place)).await)
        }
        .await;
        self.inner.shared.counters.record(&outcome);
        outcome
    }

    /// Runs `message` as a one-way job (`Job::Unidirectional` in the
    /// worker). Resolves once a worker has taken the job into its code; no
    /// reply is awaited.
    pub async fn send_unidirectional(&self, message: H) -> Result<(), Error> {
        let timeout = self.inner.shared.config.job_timeout;
        let outcome = async {
            let job = self.encode(FrameKind::OneWayJob, &message)?;
            let place = self.place(1).await;
            wait(self.enqueue(job, timeout, place)).await.map(drop)
        }
        .await;
        self.inner.shared.counters.record(&outcome);
        outcome
    }

    /// Runs every message as a job and returns their outcomes in the same
    /// order (the counterpart of Python's `Pool.map`). Jobs run in parallel
    /// on all workers. They are encoded and handed to the pool a slice at a
    /// time (one lock per slice), so workers start on the first jobs while
    /// later ones are still being encoded; answers are decoded in bursts as
    /// they arrive, while later jobs still run. Each outcome is what
    /// [`send`](Self::send) would have returned for that message; one
    /// failing job does not fail the others. With a bounded queue, the
    /// batch waits for room as it goes. Dropping the future cancels the jobs
    /// not yet given to a worker.
    ///
    /// Jobs ready together share a frame (far cheaper per job) only where
    /// a worker may hold at least four at once
    /// ([`max_in_flight_per_worker`](crate::WorkerSetBuilder::max_in_flight_per_worker)):
    /// a frame holds at most half of them, up to 1,024, and no more than an
    /// even share of the batch per worker (a batch of at most two jobs per
    /// worker is sent a job per frame). With the default of one, each job
    /// travels alone, at the rate of single `send`s. Grouping is also off
    /// with retries (`max_attempts` above 1), `max_jobs_per_worker` or a
    /// bounded queue, and a job whose message holds shared blobs travels
    /// alone.
    pub async fn send_batch<I>(&self, messages: I) -> Vec<Result<W, Error>>
    where
        I: IntoIterator<Item = H>,
    {
        let shared = &self.inner.shared;
        let messages: Vec<H> = messages.into_iter().collect();
        let batch = Batch::new(messages.len());
        let _abandon_on_drop = AbandonOnDrop(&batch);
        let mut results: Vec<Option<Result<W, Error>>> = std::iter::repeat_with(|| None)
            .take(messages.len())
            .collect();
        let mut settle = |arrived: &mut Vec<Arrival>| {
            let mut put = |index: usize, outcome: Result<W, Error>| {
                shared.counters.record(&outcome);
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(outcome);
                }
            };
            for arrival in arrived.drain(..) {
                match arrival {
                    Arrival::One(index, outcome) => put(index, decoded(outcome)),
                    Arrival::Frame(answers) => answers.decode_each(&mut put),
                }
            }
        };
        let slice = match shared.dispatch.room() {
            Some(_) => shared
                .config
                .queue_capacity
                .unwrap_or(1)
                .clamp(1, SUBMIT_SLICE),
            None => SUBMIT_SLICE,
        };
        let config = &shared.config;
        let mut grouper = Grouper::new(config, messages.len(), &batch, &shared.next_job_id);
        // A slice fills at least one whole frame.
        let slice = grouper
            .as_ref()
            .map_or(slice, |grouper| slice.max(grouper.per_frame()));
        let mut part: Vec<Job> = Vec::with_capacity(slice);
        let mut arrived = Vec::new();
        let mut messages = messages.iter().enumerate().peekable();
        while messages.peek().is_some() {
            for (index, message) in messages.by_ref().take(slice) {
                let prepared = match prepare(message, config.shared_memory, None) {
                    Ok(prepared) => prepared,
                    Err(error) => {
                        batch.responder(index).send(Err(Error::Encode(error)));
                        continue;
                    }
                };
                let alone = match grouper.as_mut() {
                    Some(grouper) => match grouper.add(index, prepared, &mut part) {
                        Ok(()) => continue,
                        Err(alone) => alone,
                    },
                    None => prepared,
                };
                let reply = batch.responder(index);
                match self.encode_prepared(FrameKind::Job, alone) {
                    Ok(job) => part.push(job.into_job(reply, config.job_timeout, false)),
                    Err(error) => reply.send(Err(error)),
                }
            }
            if let Some(grouper) = grouper.as_mut() {
                grouper.close(&mut part);
            }
            let place = self.place(part.len()).await;
            part.iter_mut().for_each(|job| job.holds_place = place);
            shared.dispatch.submit(part.drain(..));
            batch.take_arrived(&mut arrived);
            settle(&mut arrived);
        }
        while batch.next(&mut arrived).await {
            settle(&mut arrived);
        }
        results
            .into_iter()
            .map(|outcome| outcome.unwrap_or(Err(Error::Closed)))
            .collect()
    }

    /// Runs `message` as a job answered by a stream of items (the worker
    /// turns the job's reply sender into a `StreamSender`), and returns the
    /// stream at once: the job is queued now. Items come in the order the
    /// worker sent them, each decoded as `W`; the stream ends with the job's
    /// outcome (see [`ReplyStream`]). The worker may run ahead of the
    /// caller by at most
    /// [`stream_window`](crate::WorkerSetBuilder::stream_window) items,
    /// then waits. Stream jobs are never retried (their items cannot be
    /// taken back); the job's deadline (`job_timeout`) covers the whole
    /// stream. With a bounded queue that is full, the stream ends at once
    /// with [`Error::QueueFull`]. Dropping the stream cancels the job.
    pub fn send_stream(&self, message: H) -> ReplyStream<W> {
        let shared = &self.inner.shared;
        let stream = StreamShared::new(shared.config.stream_window);
        let reply = Responder::stream(Arc::clone(&stream));
        match self
            .encode(FrameKind::StreamJob, &message)
            .and_then(|job| Ok((job, self.try_place()?)))
        {
            Ok((job, place)) => {
                let job = job.into_job(reply, shared.config.job_timeout, place);
                shared.dispatch.submit([job]);
            }
            Err(error) => reply.send(Err(error)),
        }
        ReplyStream::new(stream, Arc::clone(shared))
    }

    /// Encodes `message` straight into a frame with a fresh job id.
    pub(crate) fn encode(&self, kind: FrameKind, message: &H) -> Result<Encoded, Error> {
        let prepared = prepare(message, self.inner.shared.config.shared_memory, None)
            .map_err(Error::Encode)?;
        self.encode_prepared(kind, prepared)
    }

    /// Encodes a message already sized into a frame with a fresh job id.
    fn encode_prepared(&self, kind: FrameKind, message: Prepared<'_, H>) -> Result<Encoded, Error> {
        let shared = &self.inner.shared;
        let id = shared.next_job_id.fetch_add(1, Ordering::Relaxed);
        let (frame, lent) = message
            .into_frame(kind, id, shared.config.max_frame_length)
            .map_err(Error::Encode)?;
        let kind = match kind {
            FrameKind::OneWayJob => JobKind::OneWay,
            FrameKind::StreamJob => JobKind::Stream,
            _ => JobKind::Reply,
        };
        Ok(Encoded {
            id,
            frame,
            lent,
            kind,
            // A stream's items cannot be taken back: it is never retried.
            keep_frame: shared.config.max_attempts > 1 && kind != JobKind::Stream,
        })
    }

    /// Waits for `count` places in a bounded queue (the set never closes
    /// the queue's semaphore); `false` when the queue is unbounded.
    pub(crate) async fn place(&self, count: usize) -> bool {
        let Some(room) = self.inner.shared.dispatch.room() else {
            return false;
        };
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if let Ok(places) = room.acquire_many(count).await {
            places.forget();
        }
        true
    }

    /// Takes a place in a bounded queue at once, or fails with `QueueFull`.
    pub(crate) fn try_place(&self) -> Result<bool, Error> {
        let Some(room) = self.inner.shared.dispatch.room() else {
            return Ok(false);
        };
        match room.try_acquire() {
            Ok(place) => {
                place.forget();
                Ok(true)
            }
            Err(_) => Err(Error::QueueFull {
                capacity: self.inner.shared.config.queue_capacity.unwrap_or(0),
            }),
        }
    }

    /// Submits one encoded job; returns what its caller awaits.
    pub(crate) fn enqueue(
        &self,
        job: Encoded,
        timeout: Option<Duration>,
        holds_place: bool,
    ) -> oneshot::Receiver<Outcome> {
        let (reply, receiver) = Responder::one();
        let job = job.into_job(reply, timeout, holds_place);
        self.inner.shared.dispatch.submit([job]);
        receiver
    }
}

/// A job encoded and numbered, not yet submitted.
pub(crate) struct Encoded {
    id: u64,
    frame: Bytes,
    lent: Lent,
    kind: JobKind,
    keep_frame: bool,
}

impl Encoded {
    pub(crate) fn into_job(
        self,
        reply: Responder,
        timeout: Option<Duration>,
        holds_place: bool,
    ) -> Job {
        Job {
            id: self.id,
            frame: self.frame,
            lent: self.lent,
            kind: self.kind,
            members: 1,
            timeout,
            attempts: 0,
            keep_frame: self.keep_frame,
            reply,
            holds_place,
        }
    }
}

/// Jobs of a batch encoded and submitted together: enough that the lock
/// and the wake-up of a submission are shared by many jobs, few enough that
/// the workers start within tens of microseconds.
const SUBMIT_SLICE: usize = 256;

/// Marks a batch abandoned if its caller drops the future early.
struct AbandonOnDrop<'a>(&'a Batch);

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// The job's outcome. Every path that drops a job's responder unanswered is
/// a teardown, so a dropped one means the set was closed.
async fn wait(pending: oneshot::Receiver<Outcome>) -> Outcome {
    pending.await.unwrap_or(Err(Error::Closed))
}

/// Owns the pool; tears it down when the last handle goes.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    gate_task: JoinHandle<()>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Removed by `shutdown`, or when this struct drops.
    socket_dir: Mutex<Option<SocketDir>>,
    /// Where the pool's tasks run; dropped after they are aborted.
    runtime: IoRuntime,
}

impl Inner {
    pub(crate) fn new(
        shared: Arc<Shared>,
        gate_task: JoinHandle<()>,
        supervisors: Vec<JoinHandle<()>>,
        socket_dir: SocketDir,
        runtime: IoRuntime,
    ) -> Self {
        Self {
            shared,
            gate_task,
            supervisors: Mutex::new(supervisors),
            socket_dir: Mutex::new(Some(socket_dir)),
            runtime,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.dispatch.close(|| Error::Closed);
        self.shared.spawner.kill_all();
        self.gate_task.abort();
        for task in lock(&self.supervisors).iter() {
            task.abort();
        }
        // `socket_dir`, if still there, is removed when the fields drop.
    }
}
