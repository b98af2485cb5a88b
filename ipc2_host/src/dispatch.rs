//! Where a job waits for a worker, and how a reply finds its caller.
//!
//! All routing state sits behind one short-held mutex (never held across an
//! `.await`): the queue of jobs no worker has taken yet, and per worker slot
//! its state, counters and, while it serves, the jobs it holds. A job goes
//! to the least-loaded serving worker with room; when a worker answers, its
//! next job comes off the queue under the same lock. A job's deadline starts
//! when a worker takes it, not while it queues.
//!
//! Every job's caller waits on a oneshot channel, so a job is answered at
//! most once, and a job whose sender is dropped still resolves its caller.
//! When no slot can serve (all are backing off after failed starts, or have
//! been given up), jobs fail at once with [`Error::NoWorkers`] instead of
//! queueing forever.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ipc2_common::codec::encode_raw_frame;
use ipc2_common::protocol::{FrameKind, credit_payload};
use ipc2_common::shm::Lent;
use ipc2_common::sync::lock;
use ipc2_common::{Frame, Outbox, RemotePeer};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::error::Error;
use crate::responder::{FrameAnswers, Responder};
use crate::stats::{WorkerState, WorkerStats};

/// What a job expects from its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// One reply.
    Reply,
    /// No reply; an acknowledgement that the worker's code took it.
    OneWay,
    /// A stream of items, then an end.
    Stream,
}

/// A job on its way to a worker: already encoded (so it can be sent again
/// after a worker death without re-encoding), with the caller's channel.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) frame: Bytes,
    /// The shared-memory bodies the frame names, lent to each worker it is
    /// given to.
    pub(crate) lent: Lent,
    pub(crate) kind: JobKind,
    /// Jobs the frame carries: 1, or the count of a `JobBatch` frame (whose
    /// responder answers them one by one; see [`Job::is_batch`]).
    pub(crate) members: u32,
    pub(crate) timeout: Option<Duration>,
    /// Workers this job has been given to so far.
    pub(crate) attempts: u32,
    /// Keep the encoded frame while a worker holds the job, to send it again
    /// if that worker dies (retries are on). Otherwise the frame goes to the
    /// worker's outbox without a copy of its handle.
    pub(crate) keep_frame: bool,
    pub(crate) reply: Responder,
    /// Whether the job holds a place in a bounded queue, to give back when
    /// it leaves the queue.
    pub(crate) holds_place: bool,
}

impl Job {
    /// Whether this is a `JobBatch` frame (even one of a single job), whose
    /// jobs are answered one by one.
    pub(crate) fn is_batch(&self) -> bool {
        self.reply.is_members()
    }
}

/// A job a worker holds.
pub(crate) struct InFlight {
    pub(crate) job: Job,
    pub(crate) deadline: Option<Instant>,
    /// Its place among the jobs sent to this worker process (0 for the
    /// first): a worker that leaves says how many it took, so the rest are
    /// known never to have started.
    seq: u64,
    /// Jobs of the frame not answered yet.
    left: u32,
}

/// How an answer from a worker relates to what it holds.
pub(crate) enum Done {
    /// It answers this job (or the last job of this `JobBatch` frame).
    Whole(InFlight),
    /// It answers a job that already timed out: discard it.
    Late,
    /// It answers job `index` of the `JobBatch` frame `batch`, which the
    /// worker still holds: settle it with [`Dispatch::complete_batch`].
    Member { batch: u64, index: u32 },
}

/// Jobs that timed out without the worker being killed: their callers have
/// their answer, but the worker is still busy with them.
struct Abandoned {
    /// The job's id (a `JobBatch` frame's: its first job's).
    id: u64,
    /// Ids it covers, from `id`.
    span: u32,
    /// Jobs whose late answers have not arrived.
    left: u32,
    /// Whether it is a `JobBatch` frame.
    batch: bool,
}

impl Abandoned {
    fn covers(&self, id: u64) -> bool {
        id.wrapping_sub(self.id) < u64::from(self.span)
    }
}

/// What the worker's supervisor should do after jobs completed.
pub(crate) struct Completed {
    /// An answer named a job the worker does not hold.
    pub(crate) unknown: bool,
    /// The earliest deadline among the jobs the worker still holds.
    pub(crate) next_deadline: Option<Instant>,
    /// The worker reached `max_jobs_per_worker` and holds nothing: ask it to
    /// exit.
    pub(crate) retire: bool,
}

/// Where the whole set is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Taking jobs.
    Open,
    /// `shutdown` began: finishing what is queued and running, taking nothing new.
    Draining,
    /// Workers were told to exit; slots must not restart.
    Stopping,
    /// Torn down.
    Closed,
}

/// Hashes job ids. They are numbered by this process (a worker can only
/// look them up, never insert one), so there is no flooding to defend
/// against, and a multiply spreads sequential ids well at a fraction of
/// SipHash's cost.
#[derive(Default)]
struct JobIdHasher(u64);

impl std::hash::Hasher for JobIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type JobTable = HashMap<u64, InFlight, std::hash::BuildHasherDefault<JobIdHasher>>;

struct LiveWorker {
    /// Its slot and process, to name in what reaches callers directly.
    slot: usize,
    pid: u32,
    outbox: Outbox,
    in_flight: JobTable,
    /// Unanswered jobs in `in_flight` (a `JobBatch` frame counts its jobs).
    load: usize,
    /// Jobs that timed out without the worker being killed.
    abandoned: Vec<Abandoned>,
    /// Jobs given to this process so far.
    given: u64,
    /// In-flight jobs that carry a deadline.
    with_deadline: usize,
    /// Wakes the supervisor when a job with a deadline arrives.
    wake: Arc<Notify>,
    /// Cleared once the worker is doomed (dead, killed, retiring for good):
    /// no new job is routed to it, though its answers are still read.
    accepting: bool,
    /// Set while it is unknown whether the worker survived a job's panic: it
    /// gets no new job until it answers the host's ping (or dies).
    suspended: bool,
}

struct Slot {
    state: WorkerState,
    pid: Option<u32>,
    live: Option<LiveWorker>,
    jobs_done: u64,
    restarts: u64,
    /// A remote worker's address and name.
    peer: Option<RemotePeer>,
}

impl Slot {
    /// A worker is connected here and jobs are routed to it.
    fn takes_jobs(&self) -> bool {
        self.live.as_ref().is_some_and(|worker| worker.accepting)
    }
}

struct State {
    phase: Phase,
    queue: VecDeque<Job>,
    slots: Vec<Slot>,
    /// Why the last slot stopped being able to serve.
    last_failure: Option<String>,
}

/// The routing table of one `WorkerSet`.
pub(crate) struct Dispatch {
    state: Mutex<State>,
    max_in_flight: usize,
    max_jobs_per_worker: Option<u64>,
    /// Places in a bounded queue: a caller takes one before submitting and
    /// the job gives it back when it leaves the queue (or never enters it).
    room: Option<Semaphore>,
    /// Signalled whenever a draining set runs out of queued and running jobs.
    drained: Notify,
    /// Signalled when slots must stop (workers told to exit, or torn down).
    stopping: Notify,
}

impl Dispatch {
    pub(crate) fn new(
        slots: usize,
        max_in_flight: usize,
        max_jobs: Option<u64>,
        queue_capacity: Option<usize>,
    ) -> Self {
        let slots = (0..slots)
            .map(|_| Slot {
                state: WorkerState::Starting,
                pid: None,
                live: None,
                jobs_done: 0,
                restarts: 0,
                peer: None,
            })
            .collect();
        Self {
            state: Mutex::new(State {
                phase: Phase::Open,
                queue: VecDeque::new(),
                slots,
                last_failure: None,
            }),
            max_in_flight,
            max_jobs_per_worker: max_jobs,
            room: queue_capacity.map(Semaphore::new),
            drained: Notify::new(),
            stopping: Notify::new(),
        }
    }

    /// The bounded queue's places, if the queue is bounded.
    pub(crate) fn room(&self) -> Option<&Semaphore> {
        self.room.as_ref()
    }

    fn free_places(&self, places: usize) {
        if let Some(room) = self.room.as_ref().filter(|_| places > 0) {
            room.add_permits(places);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every
        // critical section below is a handful of infallible collection ops.
        lock(&self.state)
    }

    /// Hands each job to the least-loaded worker with room, or queues it,
    /// under one lock. Jobs that cannot be taken resolve their callers with
    /// the reason.
    pub(crate) fn submit(&self, jobs: impl IntoIterator<Item = Job>) {
        let mut state = self.lock();
        let mut freed = 0;
        match state.admission() {
            Ok(()) => {
                for job in jobs {
                    freed += self.route(&mut state, job, false);
                }
                drop(state);
            }
            Err(refusal) => {
                drop(state);
                for job in jobs {
                    freed += usize::from(job.holds_place);
                    job.reply.fail(|| refusal.clone().into());
                }
            }
        }
        self.free_places(freed);
    }

    /// Puts a job whose worker died back at the head of the queue, or, if
    /// no worker can take it any more, resolves it with the reason.
    pub(crate) fn requeue(&self, job: Job) {
        let mut state = self.lock();
        let admission = match state.phase {
            Phase::Open | Phase::Draining => state.serviceable(),
            Phase::Stopping | Phase::Closed => Err(Refusal::ShuttingDown),
        };
        match admission {
            Ok(()) => {
                let freed = self.route(&mut state, job, true);
                drop(state);
                self.free_places(freed);
            }
            Err(refusal) => {
                drop(state);
                job.reply.fail(|| refusal.clone().into());
            }
        }
    }

    /// Starts `job` on a worker, or queues it. Returns the queue places
    /// freed (the job's own, if it never needed it).
    fn route(&self, state: &mut State, mut job: Job, front: bool) -> usize {
        let (max, max_jobs) = (self.max_in_flight, self.max_jobs_per_worker);
        let target = state
            .slots
            .iter_mut()
            .filter_map(|slot| slot.live.as_mut())
            .filter(|worker| worker.has_room(max, max_jobs, job.members))
            .min_by_key(|worker| worker.busy());
        let place = usize::from(job.holds_place);
        if let Some(worker) = target {
            job.holds_place = false;
            match worker.start(job) {
                Ok(()) => return place,
                Err(returned) => {
                    job = returned;
                    job.holds_place = place == 1;
                }
            }
        }
        if front {
            state.queue.push_front(job);
        } else {
            state.queue.push_back(job);
        }
        0
    }

    /// Gives `worker` queued jobs while it has room, if the set still runs
    /// jobs; returns the queue places freed.
    fn refill(&self, phase: Phase, queue: &mut VecDeque<Job>, worker: &mut LiveWorker) -> usize {
        match phase {
            Phase::Open | Phase::Draining => {
                worker.fill(queue, self.max_in_flight, self.max_jobs_per_worker)
            }
            Phase::Stopping | Phase::Closed => 0,
        }
    }

    /// A worker passed its handshake: route jobs to it from now on.
    pub(crate) fn worker_ready(&self, slot: usize, pid: u32, outbox: Outbox, wake: Arc<Notify>) {
        let mut state = self.lock();
        let State {
            phase,
            queue,
            slots,
            ..
        } = &mut *state;
        let Some(entry) = slots.get_mut(slot) else {
            return;
        };
        let mut worker = LiveWorker {
            slot,
            pid,
            outbox,
            in_flight: JobTable::default(),
            load: 0,
            abandoned: Vec::new(),
            given: 0,
            with_deadline: 0,
            wake,
            accepting: true,
            suspended: false,
        };
        let freed = self.refill(*phase, queue, &mut worker);
        entry.state = WorkerState::Serving;
        entry.pid = Some(pid);
        entry.live = Some(worker);
        drop(state);
        self.free_places(freed);
    }

    /// Worker `slot` answered the jobs `ids`, in order: moves into `done`
    /// what each answer settles (see [`Done`]), and gives the worker its
    /// next queued jobs, all under one lock. Stops at the first id the
    /// worker does not hold (a protocol violation), reported as `unknown`.
    pub(crate) fn complete(
        &self,
        slot: usize,
        ids: impl IntoIterator<Item = u64>,
        done: &mut Vec<Done>,
    ) -> Completed {
        self.answering(slot, |entry, worker| {
            for id in ids {
                let Some(answer) = worker.settle(id) else {
                    return true;
                };
                if !matches!(answer, Done::Member { .. }) {
                    entry.jobs_done += 1;
                }
                done.push(answer);
            }
            false
        })
    }

    /// Worker `slot` answered jobs of its `JobBatch` frame `batch` (by their
    /// index in it): delivers their outcomes, and gives the worker its next
    /// queued jobs, all under one lock. An index the frame does not have, or
    /// whose job is already answered, is a protocol violation (`unknown`).
    pub(crate) fn complete_batch(
        &self,
        slot: usize,
        batch: u64,
        answers: FrameAnswers,
    ) -> Completed {
        self.answering(slot, |entry, worker| {
            let Some(held) = worker
                .in_flight
                .get_mut(&batch)
                .filter(|held| held.job.is_batch())
            else {
                // Late answers to a frame that timed out: discard them.
                let Some(index) = worker
                    .abandoned
                    .iter()
                    .position(|late| late.id == batch && late.batch)
                else {
                    return true;
                };
                let count = answers.len();
                // More late answers than the frame had jobs left: unknown.
                let counted = worker.late_answers(index, count);
                if counted {
                    entry.jobs_done += count as u64;
                }
                return !counted;
            };
            let (answered, valid) = held.job.reply.answer_members(answers);
            let unknown = !valid;
            held.left -= answered;
            let finished = held.left == 0;
            worker.load -= answered as usize;
            entry.jobs_done += u64::from(answered);
            if finished {
                worker.take(batch);
            }
            unknown
        })
    }

    /// Runs `settle` on worker `slot`'s entry and routing state, then gives
    /// the worker its next queued jobs and works out what its supervisor
    /// should do next. `settle` returns whether an answer named a job the
    /// worker does not hold.
    fn answering(
        &self,
        slot: usize,
        settle: impl FnOnce(&mut Slot, &mut LiveWorker) -> bool,
    ) -> Completed {
        let mut state = self.lock();
        let State {
            phase,
            queue,
            slots,
            ..
        } = &mut *state;
        let Some((entry, mut worker)) = slots
            .get_mut(slot)
            .and_then(|entry| entry.live.take().map(|worker| (entry, worker)))
        else {
            return Completed {
                unknown: true,
                next_deadline: None,
                retire: false,
            };
        };
        let unknown = settle(entry, &mut worker);
        let freed = self.refill(*phase, queue, &mut worker);
        let retire = worker.busy() == 0
            && self
                .max_jobs_per_worker
                .is_some_and(|max| worker.given >= max);
        if retire {
            entry.state = WorkerState::Retiring;
        }
        let next_deadline = worker.next_deadline();
        entry.live = Some(worker);
        let drained = *phase == Phase::Draining && state.is_idle();
        drop(state);
        self.free_places(freed);
        if drained {
            self.drained.notify_waiters();
        }
        Completed {
            unknown,
            next_deadline,
            retire,
        }
    }

    /// Hands stream items from worker `slot` to their callers, in order,
    /// under one lock. Returns whether an item named a job the worker does
    /// not hold as a stream (a protocol violation), ignoring late items of
    /// jobs that timed out.
    pub(crate) fn items(&self, slot: usize, items: impl IntoIterator<Item = Frame>) -> bool {
        let state = self.lock();
        let Some(worker) = state.slots.get(slot).and_then(|s| s.live.as_ref()) else {
            return true;
        };
        let mut unknown = false;
        for item in items {
            match worker.in_flight.get(&item.id) {
                Some(held) => match held.job.reply.as_stream() {
                    Some(stream) => stream.push(item.payload),
                    None => unknown = true,
                },
                None => unknown |= !worker.abandoned.iter().any(|late| late.covers(item.id)),
            }
        }
        unknown
    }

    /// Takes the jobs of worker `slot` whose deadline has passed. Returns
    /// them and the next deadline of what it still holds. With `keep_busy`
    /// (the worker is not killed for it), the worker still counts each
    /// expired job as work in progress until its late reply arrives.
    pub(crate) fn expire(
        &self,
        slot: usize,
        now: Instant,
        keep_busy: bool,
    ) -> (Vec<InFlight>, Option<Instant>) {
        let mut state = self.lock();
        let Some(worker) = state.slots.get_mut(slot).and_then(|s| s.live.as_mut()) else {
            return (Vec::new(), None);
        };
        let expired: Vec<u64> = worker
            .in_flight
            .iter()
            .filter(|(_, job)| job.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        if keep_busy {
            for id in &expired {
                if let Some(held) = worker.in_flight.get(id) {
                    worker.abandoned.push(Abandoned {
                        id: *id,
                        span: held.job.members,
                        left: held.left,
                        batch: held.job.is_batch(),
                    });
                }
            }
        } else if !expired.is_empty() {
            // The worker is about to be killed.
            worker.accepting = false;
        }
        let expired: Vec<InFlight> = expired
            .into_iter()
            .filter_map(|id| worker.take(id))
            .collect();
        let next = worker.next_deadline();
        // A draining set whose last jobs just timed out has nothing left to
        // wait for (a worker still busy with them is stopped with the rest).
        let drained = !expired.is_empty() && state.phase == Phase::Draining && state.is_idle();
        drop(state);
        if drained {
            self.drained.notify_waiters();
        }
        (expired, next)
    }

    /// Worker `slot` is doomed: route nothing more to it. Its answers are
    /// still accepted until [`worker_gone`](Self::worker_gone).
    pub(crate) fn stop_routing(&self, slot: usize) {
        let mut state = self.lock();
        if let Some(worker) = state.slots.get_mut(slot).and_then(|s| s.live.as_mut()) {
            worker.accepting = false;
        }
    }

    /// A job of worker `slot` panicked: give it nothing new until
    /// [`resume`](Self::resume) (it answered a ping, so it survived).
    pub(crate) fn suspend(&self, slot: usize) {
        let mut state = self.lock();
        if let Some(worker) = state.slots.get_mut(slot).and_then(|s| s.live.as_mut()) {
            worker.suspended = true;
        }
    }

    /// Worker `slot` survived its job's panic: route to it again, starting
    /// with the jobs that queued meanwhile.
    pub(crate) fn resume(&self, slot: usize) {
        let mut state = self.lock();
        let State {
            phase,
            queue,
            slots,
            ..
        } = &mut *state;
        let Some(worker) = slots.get_mut(slot).and_then(|s| s.live.as_mut()) else {
            return;
        };
        worker.suspended = false;
        let freed = self.refill(*phase, queue, worker);
        drop(state);
        self.free_places(freed);
    }

    /// Worker `slot` is leaving, having taken the first `yielded` jobs sent
    /// to it: route nothing more to it, and take back the jobs sent after
    /// those, which it never started. Those whose encoded frame was kept
    /// (retries are on) are returned, their attempt undone, to be given to
    /// another worker; the others stay with the worker and share its fate.
    pub(crate) fn leaving(&self, slot: usize, yielded: u64) -> Vec<Job> {
        let mut state = self.lock();
        let Some(worker) = state.slots.get_mut(slot).and_then(|s| s.live.as_mut()) else {
            return Vec::new();
        };
        worker.accepting = false;
        let unstarted: Vec<u64> = worker
            .in_flight
            .iter()
            .filter(|(_, held)| held.seq >= yielded && held.job.keep_frame)
            .map(|(id, _)| *id)
            .collect();
        unstarted
            .into_iter()
            .filter_map(|id| worker.take(id))
            .map(|held| {
                let mut job = held.job;
                job.attempts = job.attempts.saturating_sub(1);
                job
            })
            .collect()
    }

    /// The earliest deadline among the jobs worker `slot` holds.
    pub(crate) fn next_deadline(&self, slot: usize) -> Option<Instant> {
        let state = self.lock();
        state
            .slots
            .get(slot)
            .and_then(|s| s.live.as_ref())
            .and_then(LiveWorker::next_deadline)
    }

    /// Worker `slot` is gone: stop routing to it and return the jobs it held.
    pub(crate) fn worker_gone(&self, slot: usize) -> Vec<InFlight> {
        let mut state = self.lock();
        let worker = state.slots.get_mut(slot).and_then(|s| s.live.take());
        let held = worker
            .map(|worker| worker.in_flight.into_values().collect())
            .unwrap_or_default();
        let drained = state.phase == Phase::Draining && state.is_idle();
        drop(state);
        if drained {
            self.drained.notify_waiters();
        }
        held
    }

    /// Records what slot `slot` is doing. When no slot can serve any more,
    /// the queued jobs fail with [`Error::NoWorkers`].
    pub(crate) fn set_state(&self, slot: usize, new_state: WorkerState, failure: Option<String>) {
        let mut state = self.lock();
        let Some(entry) = state.slots.get_mut(slot) else {
            return;
        };
        if new_state == WorkerState::Restarting {
            entry.restarts += 1;
        }
        if !matches!(new_state, WorkerState::Serving | WorkerState::Retiring) {
            entry.pid = None;
            entry.peer = None;
        }
        entry.state = new_state;
        if failure.is_some() {
            state.last_failure = failure;
        }
        let Err(refusal) = state.serviceable() else {
            return;
        };
        let stranded: Vec<Job> = state.queue.drain(..).collect();
        let drained = state.phase == Phase::Draining && state.is_idle();
        drop(state);
        self.free_places(stranded.iter().filter(|job| job.holds_place).count());
        if drained {
            self.drained.notify_waiters();
        }
        for job in stranded {
            job.reply.fail(|| refusal.clone().into());
        }
    }

    /// Whether slots must stop restarting workers.
    pub(crate) fn stopping(&self) -> bool {
        matches!(self.lock().phase, Phase::Stopping | Phase::Closed)
    }

    /// Resolves once slots must stop (at once if they already must).
    pub(crate) async fn until_stopping(&self) {
        loop {
            let notified = self.stopping.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.stopping() {
                return;
            }
            notified.await;
        }
    }

    /// Records the address and name of the remote worker in `slot`.
    pub(crate) fn set_peer(&self, slot: usize, peer: RemotePeer) {
        if let Some(entry) = self.lock().slots.get_mut(slot) {
            entry.peer = Some(peer);
        }
    }

    /// Starts a graceful shutdown: no new jobs; queued and running ones go
    /// on. Returns how many jobs that leaves to finish (none if the set was
    /// already shutting down).
    pub(crate) fn begin_shutdown(&self) -> usize {
        let mut state = self.lock();
        if state.phase != Phase::Open {
            return 0;
        }
        state.phase = Phase::Draining;
        state.queue.retain(|job| !job.reply.is_closed());
        let running: usize = state
            .slots
            .iter()
            .filter_map(|slot| slot.live.as_ref())
            .map(|worker| worker.load)
            .sum();
        state.queued_jobs() + running
    }

    /// Resolves when a draining set holds no queued or running job.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().is_idle() {
                return;
            }
            notified.await;
        }
    }

    /// Tells every serving worker to exit, and slots not to restart.
    pub(crate) fn stop_workers(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Closed {
            return;
        }
        state.phase = Phase::Stopping;
        self.stopping.notify_waiters();
        let Ok(shutdown) = encode_raw_frame(FrameKind::Shutdown, 0, &[], usize::MAX) else {
            return;
        };
        for worker in state.slots.iter().filter_map(|slot| slot.live.as_ref()) {
            let _ = worker.outbox.send(shutdown.clone());
        }
    }

    /// Stops everything and fails every queued and running job with `error`.
    /// Returns how many jobs it failed.
    pub(crate) fn close(&self, error: fn() -> Error) -> usize {
        let mut state = self.lock();
        state.phase = Phase::Closed;
        self.stopping.notify_waiters();
        // Counted in jobs: a `JobBatch` frame fails each job it still holds.
        let mut failed = state.queued_jobs();
        let queued: Vec<Responder> = state.queue.drain(..).map(|job| job.reply).collect();
        let running: Vec<Responder> = state
            .slots
            .iter_mut()
            .filter_map(|slot| slot.live.take())
            .flat_map(|worker| worker.in_flight.into_values())
            .map(|held| {
                failed += held.left as usize;
                held.job.reply
            })
            .collect();
        drop(state);
        for reply in queued.into_iter().chain(running) {
            reply.fail(error);
        }
        failed
    }

    /// Pids of the spawned workers currently taking jobs (a remote worker's
    /// pid is on another machine).
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.lock()
            .slots
            .iter()
            .filter(|slot| slot.peer.is_none())
            .filter(|slot| slot.takes_jobs())
            .filter_map(|slot| slot.pid)
            .collect()
    }

    /// How many of `slots` hold a worker that takes jobs (for remote slots:
    /// workers joined and not lost).
    pub(crate) fn serving(&self, slots: Range<usize>) -> usize {
        let state = self.lock();
        state.slots.get(slots).map_or(0, |slots| {
            slots.iter().filter(|slot| slot.takes_jobs()).count()
        })
    }

    /// Per-slot figures and the queue's length.
    pub(crate) fn snapshot(&self) -> (Vec<WorkerStats>, usize) {
        let state = self.lock();
        let workers = state
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| WorkerStats {
                id: index,
                pid: slot.pid,
                state: slot.state,
                jobs_done: slot.jobs_done,
                in_flight: slot.live.as_ref().map_or(0, LiveWorker::busy),
                restarts: slot.restarts,
                peer: slot.peer.clone(),
            })
            .collect();
        (workers, state.queued_jobs())
    }
}

impl State {
    /// Jobs waiting in the queue (a `JobBatch` frame counts its jobs).
    fn queued_jobs(&self) -> usize {
        self.queue.iter().map(|job| job.members as usize).sum()
    }

    /// Whether a new job may be submitted now.
    fn admission(&self) -> Result<(), Refusal> {
        match self.phase {
            Phase::Open => self.serviceable(),
            Phase::Draining | Phase::Stopping => Err(Refusal::ShuttingDown),
            Phase::Closed => Err(Refusal::Closed),
        }
    }

    /// Whether some slot serves or is expected to serve soon.
    fn serviceable(&self) -> Result<(), Refusal> {
        let hopeless = |slot: &Slot| {
            matches!(
                slot.state,
                WorkerState::BackingOff
                    | WorkerState::Failed
                    | WorkerState::Stopped
                    | WorkerState::Vacant
            )
        };
        if self.slots.iter().all(hopeless) {
            let reason = self
                .last_failure
                .clone()
                .unwrap_or_else(|| "no worker is running".into());
            let given_up = self
                .slots
                .iter()
                .filter(|slot| slot.state == WorkerState::Failed)
                .count();
            return Err(Refusal::NoWorkers { given_up, reason });
        }
        Ok(())
    }

    fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self
                .slots
                .iter()
                .filter_map(|slot| slot.live.as_ref())
                .all(|worker| worker.in_flight.is_empty())
    }
}

impl LiveWorker {
    /// Jobs the worker is working on, answered or not.
    fn busy(&self) -> usize {
        let late: usize = self.abandoned.iter().map(|late| late.left as usize).sum();
        self.load + late
    }

    /// Whether the worker may take a frame of `jobs` jobs now. A frame
    /// larger than the limits is taken by an idle worker, so that it never
    /// waits forever.
    fn has_room(&self, max_in_flight: usize, max_jobs: Option<u64>, jobs: u32) -> bool {
        let busy = self.busy();
        self.accepting
            && !self.suspended
            && (busy + jobs as usize <= max_in_flight || busy == 0)
            && max_jobs.is_none_or(|max| self.given + u64::from(jobs) <= max || self.given == 0)
    }

    /// What an answer to job `id` settles; `None` if the worker holds no
    /// such job.
    fn settle(&mut self, id: u64) -> Option<Done> {
        if let Some(held) = self.in_flight.get(&id) {
            if held.job.is_batch() {
                return Some(Done::Member {
                    batch: id,
                    index: 0,
                });
            }
            return self.take(id).map(Done::Whole);
        }
        if let Some(index) = self.abandoned.iter().position(|late| late.covers(id)) {
            // An abandoned entry has an answer left until it is removed.
            self.late_answers(index, 1);
            return Some(Done::Late);
        }
        // A job of a `JobBatch` frame answered in a frame of its own.
        self.in_flight
            .iter()
            .filter(|(_, held)| held.job.is_batch())
            .find_map(|(&batch, held)| {
                let index = id.wrapping_sub(batch);
                (index < u64::from(held.job.members)).then_some(Done::Member {
                    batch,
                    index: index as u32,
                })
            })
    }

    /// Counts `count` late answers against `abandoned[index]`, forgetting
    /// it once all have come; `false`, counting nothing, if it has fewer
    /// answers left.
    fn late_answers(&mut self, index: usize, count: usize) -> bool {
        let Some(late) = self.abandoned.get_mut(index) else {
            return false;
        };
        let Some(left) = (late.left as usize).checked_sub(count) else {
            return false;
        };
        late.left = left as u32;
        if left == 0 {
            self.abandoned.swap_remove(index);
        }
        true
    }

    /// Sends `job` to this worker; gives it back if the connection is gone.
    fn start(&mut self, mut job: Job) -> Result<(), Job> {
        let frame = match job.keep_frame {
            true => job.frame.clone(),
            false => std::mem::take(&mut job.frame),
        };
        if let Err(frame) = self.outbox.send_lending(frame, &job.lent) {
            job.frame = frame;
            return Err(job);
        }
        if let Some(stream) = job.reply.as_stream() {
            // The worker may send a window of items before it hears more.
            stream.attach(self.outbox.clone(), job.id, self.slot, self.pid);
            let credit = credit_payload(stream.window());
            if let Ok(frame) = encode_raw_frame(FrameKind::Credit, job.id, &credit, usize::MAX) {
                let _ = self.outbox.send(frame);
            }
        }
        job.attempts += 1;
        let seq = self.given;
        self.given += u64::from(job.members);
        self.load += job.members as usize;
        let left = job.members;
        let deadline = job.timeout.map(|timeout| Instant::now() + timeout);
        if deadline.is_some() {
            self.with_deadline += 1;
            self.wake.notify_one();
        }
        self.in_flight.insert(
            job.id,
            InFlight {
                job,
                deadline,
                seq,
                left,
            },
        );
        Ok(())
    }

    fn take(&mut self, id: u64) -> Option<InFlight> {
        let held = self.in_flight.remove(&id)?;
        self.load -= held.left as usize;
        if held.deadline.is_some() {
            self.with_deadline -= 1;
        }
        Some(held)
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.with_deadline == 0 {
            return None;
        }
        self.in_flight.values().filter_map(|job| job.deadline).min()
    }

    /// Takes queued jobs while this worker has room. Jobs whose caller has
    /// gone away are dropped here, never sent. Returns the queue places
    /// freed.
    fn fill(
        &mut self,
        queue: &mut VecDeque<Job>,
        max_in_flight: usize,
        max_jobs: Option<u64>,
    ) -> usize {
        let mut freed = 0;
        while let Some(front) = queue.front() {
            if !self.has_room(max_in_flight, max_jobs, front.members) {
                break;
            }
            let Some(mut job) = queue.pop_front() else {
                break;
            };
            let place = usize::from(job.holds_place);
            if job.reply.is_closed() {
                freed += place;
                continue;
            }
            job.holds_place = false;
            if let Err(mut job) = self.start(job) {
                job.holds_place = place == 1;
                queue.push_front(job);
                break;
            }
            freed += place;
        }
        freed
    }
}

/// Why the set takes no job now. Unlike [`Error`], it can be cloned, so a
/// whole batch can be refused.
#[derive(Clone)]
enum Refusal {
    ShuttingDown,
    Closed,
    NoWorkers { given_up: usize, reason: String },
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::ShuttingDown => Error::ShuttingDown,
            Refusal::Closed => Error::Closed,
            Refusal::NoWorkers { given_up, reason } => Error::NoWorkers { given_up, reason },
        }
    }
}
