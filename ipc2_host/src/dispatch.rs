//! Where a job waits for a worker, and how a reply finds its caller.
//!
//! All routing state sits behind one short-held mutex (never held across an
//! `.await`): the queue of jobs no worker has taken yet, and per live worker
//! the jobs it holds. A job goes to the least-loaded worker with room; when a
//! worker answers, its next job comes off the queue under the same lock.
//! Every job's caller waits on a oneshot channel, so a job is answered at
//! most once, and a job whose sender is dropped (worker gone, set torn down)
//! still resolves its caller.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use ipc2_common::Outbox;
use tokio::sync::oneshot;

use crate::error::Error;

/// A worker's answer to a job, still encoded.
pub(crate) struct Reply {
    /// Slot of the worker that answered.
    pub(crate) worker: usize,
    /// Its process id.
    pub(crate) pid: u32,
    /// The encoded reply (empty for one-way jobs).
    pub(crate) payload: Bytes,
}

/// The channel a job's caller waits on.
pub(crate) type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

/// A job on its way to a worker: already encoded, with the caller's channel.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) frame: Bytes,
    pub(crate) one_way: bool,
    pub(crate) reply: ReplyTx,
}

/// A job a worker holds.
pub(crate) struct InFlight {
    pub(crate) one_way: bool,
    pub(crate) reply: ReplyTx,
}

struct LiveWorker {
    pid: u32,
    outbox: Outbox,
    in_flight: HashMap<u64, InFlight>,
}

#[derive(Default)]
struct State {
    closed: bool,
    queue: VecDeque<Job>,
    workers: Vec<Option<LiveWorker>>,
}

/// The routing table of one `WorkerSet`.
pub(crate) struct Dispatch {
    state: Mutex<State>,
    max_in_flight: usize,
}

impl Dispatch {
    pub(crate) fn new(slots: usize, max_in_flight: usize) -> Self {
        let mut state = State::default();
        state.workers.resize_with(slots, || None);
        Self {
            state: Mutex::new(state),
            max_in_flight,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every
        // critical section below is a handful of infallible collection ops.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands `job` to the least-loaded worker with room, or queues it.
    /// Fails with [`Error::Closed`] (resolving the caller) once the set is closed.
    pub(crate) fn submit(&self, job: Job) {
        let mut state = self.lock();
        if state.closed {
            drop(state);
            let _ = job.reply.send(Err(Error::Closed));
            return;
        }
        let max = self.max_in_flight;
        let target = state
            .workers
            .iter_mut()
            .flatten()
            .filter(|worker| worker.in_flight.len() < max)
            .min_by_key(|worker| worker.in_flight.len());
        match target {
            Some(worker) => {
                if let Err(job) = worker.start(job) {
                    state.queue.push_back(job);
                }
            }
            None => state.queue.push_back(job),
        }
    }

    /// A worker passed its handshake: route jobs to it from now on.
    pub(crate) fn worker_ready(&self, slot: usize, pid: u32, outbox: Outbox) {
        let mut state = self.lock();
        let mut worker = LiveWorker {
            pid,
            outbox,
            in_flight: HashMap::new(),
        };
        if !state.closed {
            worker.fill(&mut state.queue, self.max_in_flight);
        }
        if let Some(entry) = state.workers.get_mut(slot) {
            *entry = Some(worker);
        }
    }

    /// Worker `slot` answered job `id`: returns who waits for it, and gives
    /// the worker its next queued job. `None` if the worker does not hold
    /// that job (a protocol violation).
    pub(crate) fn complete(&self, slot: usize, id: u64) -> Option<InFlight> {
        let mut state = self.lock();
        let State {
            closed,
            queue,
            workers,
        } = &mut *state;
        let worker = workers.get_mut(slot)?.as_mut()?;
        let done = worker.in_flight.remove(&id)?;
        if !*closed {
            worker.fill(queue, self.max_in_flight);
        }
        Some(done)
    }

    /// Worker `slot` is gone: stop routing to it and return the jobs it held.
    pub(crate) fn worker_gone(&self, slot: usize) -> Vec<ReplyTx> {
        let mut state = self.lock();
        let worker = state.workers.get_mut(slot).and_then(Option::take);
        drop(state);
        worker
            .map(|worker| {
                worker
                    .in_flight
                    .into_values()
                    .map(|job| job.reply)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops accepting jobs and fails every queued and running one with
    /// [`Error::Closed`].
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let queued = std::mem::take(&mut state.queue);
        let running: Vec<_> = state
            .workers
            .iter_mut()
            .filter_map(Option::take)
            .flat_map(|worker| worker.in_flight.into_values().map(|job| job.reply))
            .collect();
        drop(state);
        for reply in queued.into_iter().map(|job| job.reply).chain(running) {
            let _ = reply.send(Err(Error::Closed));
        }
    }

    /// Pids of the workers currently serving.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .workers
            .iter()
            .flatten()
            .map(|worker| worker.pid)
            .collect()
    }
}

impl LiveWorker {
    /// Sends `job` to this worker; gives it back if the connection is gone.
    fn start(&mut self, job: Job) -> Result<(), Job> {
        let Job {
            id,
            frame,
            one_way,
            reply,
        } = job;
        match self.outbox.send(frame) {
            Ok(()) => {
                self.in_flight.insert(id, InFlight { one_way, reply });
                Ok(())
            }
            Err(frame) => Err(Job {
                id,
                frame,
                one_way,
                reply,
            }),
        }
    }

    /// Takes queued jobs while this worker has room. Jobs whose caller has
    /// gone away are dropped here, never sent.
    fn fill(&mut self, queue: &mut VecDeque<Job>, max_in_flight: usize) {
        while self.in_flight.len() < max_in_flight {
            let Some(job) = queue.pop_front() else { return };
            if job.reply.is_closed() {
                continue;
            }
            if let Err(job) = self.start(job) {
                queue.push_front(job);
                return;
            }
        }
    }
}
