//! How a job's outcome reaches its caller.
//!
//! A [`Responder`] travels with its job from `send` through the queue to a
//! worker and back, and is consumed by the one place that learns the
//! outcome, so a job is answered at most once. It is answered at least once
//! too: a responder dropped unanswered (a teardown, a bug) answers
//! [`Error::Closed`] on its way out, so no caller waits forever.
//!
//! A single `send` waits on a oneshot channel. A batch (`send_batch`) shares
//! one [`Batch`] among all its jobs: outcomes gather there, tagged with
//! their job's place, and the caller is woken once per burst of them (and
//! for the last), so it decodes early answers while later jobs run. A stream job
//! (`send_stream`) delivers its items, then its outcome, to the caller's
//! `ReplyStream`. A streaming map (`WorkerSet::map`) gives each job an
//! [`Indexed`] responder: outcomes go, tagged with the job's place in the
//! input, into one channel the map reads as they complete.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ipc2_common::shm::Body;
use ipc2_common::sync::lock;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::Error;
use crate::stream::StreamShared;

/// A worker's answer to a job, still encoded.
pub(crate) struct Reply {
    /// Slot of the worker that answered.
    pub(crate) worker: usize,
    /// Its process id.
    pub(crate) pid: u32,
    /// The encoded reply (empty for one-way jobs).
    pub(crate) payload: Bytes,
    /// The shared-memory bodies the reply names.
    pub(crate) bodies: Vec<Body>,
}

/// A job's outcome.
pub(crate) type Outcome = Result<Reply, Error>;

/// Outcomes tagged with the index of their job in a map's input.
pub(crate) type Indexed = mpsc::UnboundedSender<(usize, Outcome)>;

/// Delivers one job's outcome.
pub(crate) struct Responder(Option<Target>);

enum Target {
    One(oneshot::Sender<Outcome>),
    Batch(Arc<Batch>, usize),
    /// The jobs of one `JobBatch` frame: per job, its place in the batch,
    /// `None` once answered.
    Members(Arc<Batch>, Vec<Option<usize>>),
    Stream(Arc<StreamShared>),
    Indexed(Indexed, usize),
}

impl Responder {
    /// A responder for a single caller, and what that caller awaits.
    pub(crate) fn one() -> (Self, oneshot::Receiver<Outcome>) {
        let (sender, receiver) = oneshot::channel();
        (Self(Some(Target::One(sender))), receiver)
    }

    /// A responder that delivers the outcome of input `index` to `outcomes`.
    pub(crate) fn indexed(outcomes: Indexed, index: usize) -> Self {
        Self(Some(Target::Indexed(outcomes, index)))
    }

    /// Whether this answers the jobs of a `JobBatch` frame (one by one).
    pub(crate) fn is_members(&self) -> bool {
        matches!(self.0, Some(Target::Members(..)))
    }

    /// A responder for a stream job's caller.
    pub(crate) fn stream(shared: Arc<StreamShared>) -> Self {
        Self(Some(Target::Stream(shared)))
    }

    /// The stream a stream job's items go to, if this is one.
    pub(crate) fn as_stream(&self) -> Option<&Arc<StreamShared>> {
        match &self.0 {
            Some(Target::Stream(shared)) => Some(shared),
            _ => None,
        }
    }

    /// Delivers outcomes of jobs of a `JobBatch` frame, each named by its
    /// index in the frame, under one short lock of the batch. Stops at an
    /// index the frame does not have or whose job is already answered (or
    /// at once, if this is not such a frame's responder). Returns how many
    /// it delivered, and whether it delivered them all.
    pub(crate) fn answer_members(&mut self, answers: Vec<(u32, Outcome)>) -> (u32, bool) {
        let Some(Target::Members(batch, places)) = &mut self.0 else {
            return (0, false);
        };
        let mut valid = true;
        let mut ready = Vec::with_capacity(answers.len());
        for (index, outcome) in answers {
            match places.get_mut(index as usize).and_then(Option::take) {
                Some(place) => ready.push((place, outcome)),
                None => {
                    valid = false;
                    break;
                }
            }
        }
        let delivered = batch.fill_with(|arrived| arrived.append(&mut ready));
        (delivered as u32, valid)
    }

    /// Fails the job with `error()`; every unanswered job of a `JobBatch`
    /// frame's responder gets an error of its own.
    pub(crate) fn fail(mut self, error: impl Fn() -> Error) {
        match self.0.take() {
            Some(Target::Members(batch, places)) => {
                for place in places.into_iter().flatten() {
                    batch.fill(place, Err(error()));
                }
            }
            target => Self(target).send(Err(error())),
        }
    }

    /// Delivers the outcome. A caller that has gone away is not an error.
    /// A `JobBatch` frame's responder is answered job by job
    /// ([`answer_members`](Self::answer_members)) or failed whole
    /// ([`fail`](Self::fail)); given one outcome, it fails its jobs with
    /// [`Error::Closed`].
    pub(crate) fn send(mut self, outcome: Outcome) {
        match self.0.take() {
            Some(Target::One(sender)) => {
                let _ = sender.send(outcome);
            }
            Some(Target::Batch(batch, index)) => batch.fill(index, outcome),
            Some(members @ Target::Members(..)) => Self(Some(members)).fail(|| Error::Closed),
            Some(Target::Stream(shared)) => shared.end(outcome),
            Some(Target::Indexed(outcomes, index)) => {
                let _ = outcomes.send((index, outcome));
            }
            None => {}
        }
    }

    /// Whether nobody waits for the outcome any more.
    pub(crate) fn is_closed(&self) -> bool {
        match &self.0 {
            Some(Target::One(sender)) => sender.is_closed(),
            Some(Target::Batch(batch, _) | Target::Members(batch, _)) => {
                batch.abandoned.load(Ordering::Relaxed)
            }
            Some(Target::Stream(shared)) => shared.is_closed(),
            Some(Target::Indexed(outcomes, _)) => outcomes.is_closed(),
            None => true,
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        // A dropped oneshot sender already tells its receiver; a batch slot
        // a stream or a map's outcome must be ended or delivered, or its
        // caller would wait forever.
        match self.0.take() {
            Some(Target::Batch(batch, index)) => batch.fill(index, Err(Error::Closed)),
            Some(members @ Target::Members(..)) => Self(Some(members)).fail(|| Error::Closed),
            Some(Target::Stream(shared)) => shared.end(Err(Error::Closed)),
            Some(Target::Indexed(outcomes, index)) => {
                let _ = outcomes.send((index, Err(Error::Closed)));
            }
            _ => {}
        }
    }
}

/// Outcomes a batch hands its caller at a time: the caller is woken once
/// per this many (and for the last ones), and decodes them while the rest
/// are still running.
const BURST: usize = 256;

/// The outcomes of one batch, each tagged with its job's place in the
/// batch, as they arrive.
pub(crate) struct Batch {
    arrived: Mutex<Vec<(usize, Outcome)>>,
    remaining: AtomicUsize,
    done: Notify,
    abandoned: AtomicBool,
}

impl Batch {
    /// A batch of `size` jobs; [`responder`](Self::responder) makes each
    /// job's responder when the job is submitted.
    pub(crate) fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            arrived: Mutex::new(Vec::new()),
            remaining: AtomicUsize::new(size),
            done: Notify::new(),
            abandoned: AtomicBool::new(false),
        })
    }

    /// The responder of the job at `index` in the batch (each index once).
    pub(crate) fn responder(self: &Arc<Self>, index: usize) -> Responder {
        Responder(Some(Target::Batch(Arc::clone(self), index)))
    }

    /// The responder of a `JobBatch` frame whose jobs are those at
    /// `places` in the batch, in the frame's order.
    pub(crate) fn members(self: &Arc<Self>, places: Vec<usize>) -> Responder {
        let places = places.into_iter().map(Some).collect();
        Responder(Some(Target::Members(Arc::clone(self), places)))
    }

    fn arrived(&self) -> std::sync::MutexGuard<'_, Vec<(usize, Outcome)>> {
        lock(&self.arrived)
    }

    fn fill(&self, index: usize, outcome: Outcome) {
        self.fill_with(|arrived| arrived.push((index, outcome)));
    }

    /// Lets `add` push outcomes under one lock; returns how many it pushed.
    fn fill_with(&self, add: impl FnOnce(&mut Vec<(usize, Outcome)>)) -> usize {
        let mut arrived = self.arrived();
        let before = arrived.len();
        add(&mut arrived);
        let after = arrived.len();
        drop(arrived);
        let added = after - before;
        if added == 0 {
            return 0;
        }
        // Pushed before counted: whoever sees the count reach zero finds
        // every outcome in `arrived`.
        let last = self.remaining.fetch_sub(added, Ordering::AcqRel) == added;
        if last || (before < BURST && after >= BURST) {
            self.done.notify_one();
        }
        added
    }

    /// Moves the outcomes that have arrived into `into` (empty), without
    /// waiting.
    pub(crate) fn take_arrived(&self, into: &mut Vec<(usize, Outcome)>) {
        std::mem::swap(&mut *self.arrived(), into);
    }

    /// Waits for a burst of outcomes, or the last ones, and moves them into
    /// `into` (empty). Returns `false`, taking nothing, once every outcome
    /// has been taken.
    pub(crate) async fn next(&self, into: &mut Vec<(usize, Outcome)>) -> bool {
        loop {
            let remaining = self.remaining.load(Ordering::Acquire);
            {
                let mut arrived = self.arrived();
                if arrived.len() >= BURST || (remaining == 0 && !arrived.is_empty()) {
                    std::mem::swap(&mut *arrived, into);
                    return true;
                }
                if remaining == 0 {
                    return false;
                }
            }
            self.done.notified().await;
        }
    }

    /// The caller gave up: jobs still queued are dropped, never sent.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}
