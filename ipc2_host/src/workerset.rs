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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc2_common::codec::{decode_message, encode_frame};
use ipc2_common::{FrameKind, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::builder::{Config, WorkerSetBuilder};
use crate::dispatch::{Dispatch, Job, Reply};
use crate::error::Error;
use crate::gate::Gate;
use crate::socket_dir::SocketDir;
use crate::spawner::Spawner;
use crate::stats::{Counters, ShutdownReport, Stats};

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

impl<S, W, H> Clone for WorkerSet<S, W, H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _types: PhantomData,
        }
    }
}

impl<S, W, H> WorkerSet<S, W, H> {
    /// A builder for a new set. At least [`WorkerSetBuilder::worker_path`]
    /// must be given.
    pub fn builder() -> WorkerSetBuilder<S, W, H> {
        WorkerSetBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
            _types: PhantomData,
        }
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
    /// Runs `message` on a worker that is not busy (waiting in a queue while
    /// all are) and returns its reply.
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

    async fn send_with(&self, message: H, timeout: Option<Duration>) -> Result<W, Error> {
        let outcome = async {
            let reply = outcome(self.submit(FrameKind::Job, &message, timeout)?).await?;
            decode_message(&reply.payload).map_err(|source| Error::Decode {
                worker: reply.worker,
                pid: reply.pid,
                source,
            })
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
            outcome(self.submit(FrameKind::OneWayJob, &message, timeout)?).await?;
            Ok(())
        }
        .await;
        self.inner.shared.counters.record(&outcome);
        outcome
    }

    fn submit(
        &self,
        kind: FrameKind,
        message: &H,
        timeout: Option<Duration>,
    ) -> Result<PendingReply, Error> {
        let shared = &self.inner.shared;
        let id = shared.next_job_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(kind, id, message, shared.config.max_frame_length)
            .map_err(Error::Encode)?;
        let (reply, receiver) = oneshot::channel();
        shared.dispatch.submit(Job {
            id,
            frame,
            one_way: kind == FrameKind::OneWayJob,
            timeout,
            attempts: 0,
            reply,
        });
        Ok(receiver)
    }
}

/// Where a caller waits for its job's outcome.
type PendingReply = oneshot::Receiver<Result<Reply, Error>>;

/// The job's outcome. Every path that drops a job's sender unanswered is a
/// teardown, so a dropped sender means the set was closed.
async fn outcome(pending: PendingReply) -> Result<Reply, Error> {
    pending.await.unwrap_or(Err(Error::Closed))
}

/// State shared by the handle and the pool's tasks.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) dispatch: Dispatch,
    pub(crate) gate: Arc<Gate>,
    pub(crate) spawner: Spawner,
    pub(crate) socket_path: PathBuf,
    pub(crate) next_job_id: AtomicU64,
    pub(crate) counters: Counters,
}

/// Owns the pool; tears it down when the last handle goes.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    gate_task: JoinHandle<()>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
    /// Removed by `shutdown`, or when this struct drops.
    socket_dir: Mutex<Option<SocketDir>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    pub(crate) fn new(
        shared: Arc<Shared>,
        gate_task: JoinHandle<()>,
        supervisors: Vec<JoinHandle<()>>,
        socket_dir: SocketDir,
    ) -> Self {
        Self {
            shared,
            gate_task,
            supervisors: Mutex::new(supervisors),
            socket_dir: Mutex::new(Some(socket_dir)),
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
