//! The handle a host program holds: [`WorkerSet`].
//!
//! A `WorkerSet` is a cheap, cloneable handle; all clones share one pool.
//! Its methods take `&self`, so any number of tasks may send at once. When
//! the last clone is dropped the pool is torn down at once: pending jobs fail
//! with [`Error::Closed`], every worker process is killed, every task is
//! stopped, and the socket directory is removed.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ipc2_common::codec::{decode_message, encode_frame};
use ipc2_common::{FrameKind, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::builder::{Config, WorkerSetBuilder};
use crate::dispatch::{Dispatch, Job, Reply};
use crate::error::Error;
use crate::gate::Gate;
use crate::socket_dir::SocketDir;
use crate::spawner::Spawner;

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
        let reply = outcome(self.submit(FrameKind::Job, &message)?).await?;
        decode_message(&reply.payload).map_err(|source| Error::Decode {
            worker: reply.worker,
            pid: reply.pid,
            source,
        })
    }

    /// Runs `message` as a one-way job (`Job::Unidirectional` in the
    /// worker). Resolves once a worker has taken the job into its code; no
    /// reply is awaited.
    pub async fn send_unidirectional(&self, message: H) -> Result<(), Error> {
        outcome(self.submit(FrameKind::OneWayJob, &message)?).await?;
        Ok(())
    }

    fn submit(&self, kind: FrameKind, message: &H) -> Result<PendingReply, Error> {
        let shared = &self.inner.shared;
        let id = shared.next_job_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_frame(kind, id, message, shared.config.max_frame_length)
            .map_err(Error::Encode)?;
        let (reply, receiver) = oneshot::channel();
        shared.dispatch.submit(Job {
            id,
            frame,
            one_way: kind == FrameKind::OneWayJob,
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
}

/// Owns the pool; tears it down when the last handle goes.
pub(crate) struct Inner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
    _socket_dir: SocketDir,
}

impl Inner {
    pub(crate) fn new(shared: Arc<Shared>, tasks: Vec<AbortHandle>, socket_dir: SocketDir) -> Self {
        Self {
            shared,
            tasks,
            _socket_dir: socket_dir,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.dispatch.close();
        self.shared.spawner.kill_all();
        for task in &self.tasks {
            task.abort();
        }
        // `_socket_dir` is removed when this struct's fields drop.
    }
}
