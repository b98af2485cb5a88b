//! What a set can tell about itself: [`Stats`] snapshots, and the report of
//! a graceful shutdown.
//!
//! Per-slot figures live with the routing state in `dispatch` (they change
//! under the same lock); outcome counters are atomics bumped by `send` as
//! each job resolves, so they count exactly what callers saw.

use std::sync::atomic::{AtomicU64, Ordering};

use ipc2_common::RemotePeer;

use crate::error::Error;

/// What a worker slot is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerState {
    /// The slot's first worker is starting.
    Starting,
    /// A worker is connected and takes jobs.
    Serving,
    /// The worker reached `max_jobs_per_worker`, holds no job, and was asked
    /// to exit; a fresh one replaces it.
    Retiring,
    /// A replacement worker is starting.
    Restarting,
    /// The last start failed; the slot waits before trying again.
    BackingOff,
    /// Too many failed starts within the restart window: the slot stopped
    /// trying.
    Failed,
    /// A remote slot that waits for a worker to dial in (the set never
    /// starts remote workers itself).
    Vacant,
    /// The set shut down.
    Stopped,
}

/// One worker slot, as seen by [`Stats`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The slot's index (0-based; stable across restarts).
    pub id: usize,
    /// Pid of the process serving in this slot, if one is.
    pub pid: Option<u32>,
    /// What the slot is doing.
    pub state: WorkerState,
    /// Jobs answered by workers of this slot, over all its processes.
    pub jobs_done: u64,
    /// Jobs the current worker holds.
    pub in_flight: usize,
    /// Times a replacement worker was started in this slot.
    pub restarts: u64,
    /// For a remote worker, its address and certificate name (`None` for a
    /// worker the set spawned, or a vacant slot).
    pub peer: Option<RemotePeer>,
}

/// How many jobs failed, by kind of error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureCounts {
    /// [`Error::WorkerDied`].
    pub worker_died: u64,
    /// [`Error::Timeout`].
    pub timed_out: u64,
    /// [`Error::WorkerLost`].
    pub worker_lost: u64,
    /// [`Error::RetriesExhausted`].
    pub retries_exhausted: u64,
    /// [`Error::NoReply`].
    pub no_reply: u64,
    /// [`Error::Panicked`].
    pub panicked: u64,
    /// [`Error::App`]: failed by the worker's code, with a reason.
    pub app: u64,
    /// [`Error::Protocol`].
    pub protocol: u64,
    /// [`Error::Encode`], [`Error::Decode`] and [`Error::JobFailed`].
    pub codec: u64,
    /// [`Error::NoWorkers`] and [`Error::QueueFull`].
    pub no_workers: u64,
    /// [`Error::ShuttingDown`] and [`Error::Closed`].
    pub shut_down: u64,
    /// Any other error.
    pub other: u64,
}

impl FailureCounts {
    /// All failures together.
    pub fn total(&self) -> u64 {
        self.worker_died
            + self.timed_out
            + self.worker_lost
            + self.retries_exhausted
            + self.no_reply
            + self.panicked
            + self.app
            + self.protocol
            + self.codec
            + self.no_workers
            + self.shut_down
            + self.other
    }
}

/// A snapshot of a set, from [`WorkerSet::stats`](crate::WorkerSet::stats).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Stats {
    /// Every worker slot.
    pub workers: Vec<WorkerStats>,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Jobs that resolved with a reply.
    pub completed: u64,
    /// Jobs that resolved with an error, by kind.
    pub failed: FailureCounts,
}

/// What a graceful shutdown did, from
/// [`WorkerSet::shutdown`](crate::WorkerSet::shutdown).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Jobs that were queued or running when the shutdown began and
    /// resolved (with a reply or an error of their own) before the deadline.
    pub finished: u64,
    /// Jobs still queued or running at the deadline, failed with
    /// [`Error::ShuttingDown`].
    pub cancelled: u64,
    /// Workers that had to be killed because they did not exit in time.
    pub killed: usize,
}

/// Outcome counters, bumped as each job resolves.
#[derive(Default)]
pub(crate) struct Counters {
    completed: AtomicU64,
    worker_died: AtomicU64,
    timed_out: AtomicU64,
    worker_lost: AtomicU64,
    retries_exhausted: AtomicU64,
    no_reply: AtomicU64,
    panicked: AtomicU64,
    app: AtomicU64,
    protocol: AtomicU64,
    codec: AtomicU64,
    no_workers: AtomicU64,
    shut_down: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    /// Counts one resolved job.
    pub(crate) fn record<T>(&self, outcome: &Result<T, Error>) {
        let counter = match outcome {
            Ok(_) => &self.completed,
            Err(Error::WorkerDied { .. }) => &self.worker_died,
            Err(Error::Timeout { .. }) => &self.timed_out,
            Err(Error::WorkerLost { .. }) => &self.worker_lost,
            Err(Error::RetriesExhausted { .. }) => &self.retries_exhausted,
            Err(Error::NoReply { .. }) => &self.no_reply,
            Err(Error::Panicked { .. }) => &self.panicked,
            Err(Error::App { .. }) => &self.app,
            Err(Error::Protocol { .. }) => &self.protocol,
            Err(Error::Encode(_) | Error::Decode { .. } | Error::JobFailed { .. }) => &self.codec,
            Err(Error::NoWorkers { .. } | Error::QueueFull { .. }) => &self.no_workers,
            Err(Error::ShuttingDown | Error::Closed) => &self.shut_down,
            Err(_) => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> FailureCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FailureCounts {
            worker_died: load(&self.worker_died),
            timed_out: load(&self.timed_out),
            worker_lost: load(&self.worker_lost),
            retries_exhausted: load(&self.retries_exhausted),
            no_reply: load(&self.no_reply),
            panicked: load(&self.panicked),
            app: load(&self.app),
            protocol: load(&self.protocol),
            codec: load(&self.codec),
            no_workers: load(&self.no_workers),
            shut_down: load(&self.shut_down),
            other: load(&self.other),
        }
    }
}
