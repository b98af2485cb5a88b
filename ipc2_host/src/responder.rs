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
//! for the last), so it decodes early answers while later jobs run. The
//! answers of a `ReplyBatch` frame go there as one [`FrameAnswers`]: the
//! frame's payload and where each reply lies in it, so the thread that
//! reads the frame (under the routing lock, for part of the work) does not
//! build, move and count a reference for an outcome per job; the caller
//! decodes each reply from the payload. A stream job
//! (`send_stream`) delivers its items, then its outcome, to the caller's
//! `ReplyStream`. A streaming map (`WorkerSet::map`) gives each job an
//! [`Indexed`] responder: outcomes go, tagged with the job's place in the
//! input, into one channel the map reads as they complete.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ipc2_common::codec::batch::BatchAnswers;
use ipc2_common::codec::{decode_message, decode_message_with_bodies};
use ipc2_common::shm::Body;
use ipc2_common::sync::lock;
use ipc2_common::{CodecError, Frame, FrameKind};
use serde::de::DeserializeOwned;
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

/// Decodes a reply into the host's reply type.
pub(crate) fn decoded<W: DeserializeOwned>(outcome: Outcome) -> Result<W, Error> {
    let reply = outcome?;
    decode_message_with_bodies(&reply.payload, reply.bodies)
        .map_err(undecodable(reply.worker, reply.pid))
}

/// The error for a reply of worker `worker` (process `pid`) that could not
/// be decoded.
fn undecodable(worker: usize, pid: u32) -> impl FnOnce(CodecError) -> Error {
    move |source| Error::Decode {
        worker,
        pid,
        source,
    }
}

/// The answers of one `ReplyBatch` frame to jobs of a batch, as its caller
/// gets them: replies stay where they are in the frame's payload until the
/// caller decodes them, so the thread that reads the frame neither copies
/// nor counts a reference per answer. Failures (and an answer that came
/// in a frame of its own) are settled outcomes.
pub(crate) struct FrameAnswers {
    worker: usize,
    pid: u32,
    payload: Bytes,
    /// In the frame's order: per job, its index in its `JobBatch` frame
    /// (its place in the batch once delivered) and its answer.
    answers: Vec<(usize, Answer)>,
}

/// One job's answer in [`FrameAnswers`].
enum Answer {
    /// A reply: this range of the frame's payload.
    Reply(Range<usize>),
    /// An outcome settled where it was read: a failure, or an answer that
    /// came in a frame of its own (both rare: boxed, so that a reply's
    /// entry stays small).
    Settled(Box<Outcome>),
}

impl FrameAnswers {
    /// Reads the answers of a `ReplyBatch` frame from worker `worker`
    /// (process `pid`) to the jobs of `JobBatch` frame `batch`: replies stay
    /// ranges of the payload; each other answer becomes the outcome that
    /// `settle` gives it as a frame of its own.
    pub(crate) fn read(
        worker: usize,
        pid: u32,
        batch: u64,
        answers: &BatchAnswers,
        mut settle: impl FnMut(Frame) -> Outcome,
    ) -> Self {
        let payload = answers.payload();
        let mut read = Self::new(worker, pid, payload.clone(), answers.len());
        for answer in answers.iter() {
            if answer.kind == FrameKind::Reply {
                read.push(answer.index, Answer::Reply(answer.payload));
                continue;
            }
            let outcome = settle(Frame {
                kind: answer.kind,
                id: batch,
                payload: payload.slice(answer.payload),
                bodies: Vec::new(),
            });
            read.settled(answer.index, outcome);
        }
        read
    }

    /// The one answer of worker `worker` (process `pid`) to the job at
    /// `index` in its `JobBatch` frame, which came in a frame of its own.
    pub(crate) fn one(worker: usize, pid: u32, index: u32, outcome: Outcome) -> Self {
        let mut one = Self::new(worker, pid, Bytes::new(), 1);
        one.settled(index, outcome);
        one
    }

    fn new(worker: usize, pid: u32, payload: Bytes, answers: usize) -> Self {
        Self {
            worker,
            pid,
            payload,
            answers: Vec::with_capacity(answers),
        }
    }

    fn push(&mut self, index: u32, answer: Answer) {
        self.answers.push((index as usize, answer));
    }

    fn settled(&mut self, index: u32, outcome: Outcome) {
        self.push(index, Answer::Settled(Box::new(outcome)));
    }

    /// Jobs answered.
    pub(crate) fn len(&self) -> usize {
        self.answers.len()
    }

    /// Decodes each answer as `W` and hands it to `each`, with its job's
    /// place in the batch.
    pub(crate) fn decode_each<W: DeserializeOwned>(
        self,
        mut each: impl FnMut(usize, Result<W, Error>),
    ) {
        for (place, answer) in self.answers {
            let outcome = match answer {
                Answer::Reply(range) => {
                    // Replies in a frame of answers name no shared bodies.
                    let payload = self.payload.get(range).unwrap_or_default();
                    decode_message(payload).map_err(undecodable(self.worker, self.pid))
                }
                Answer::Settled(outcome) => decoded(*outcome),
            };
            each(place, outcome);
        }
    }
}

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

    /// Delivers the answers of a `JobBatch` frame's jobs, each named by its
    /// index in the frame, under one short lock of the batch. Stops at an
    /// index the frame does not have or whose job is already answered (or
    /// at once, if this is not such a frame's responder): the answers after
    /// it are dropped, and their jobs fail with the worker. Returns how
    /// many it delivered, and whether it delivered them all.
    pub(crate) fn answer_members(&mut self, mut answers: FrameAnswers) -> (u32, bool) {
        let Some(Target::Members(batch, places)) = &mut self.0 else {
            return (0, false);
        };
        let mut valid = answers.answers.len();
        for (at, (job, _)) in answers.answers.iter_mut().enumerate() {
            match places.get_mut(*job).and_then(Option::take) {
                Some(place) => *job = place,
                None => {
                    valid = at;
                    break;
                }
            }
        }
        let all = valid == answers.answers.len();
        answers.answers.truncate(valid);
        let delivered = batch.fill_with(valid, |arrived| {
            arrived.push(Arrival::Frame(answers));
        });
        (delivered as u32, all)
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

/// What has arrived for a batch and not yet been taken by its caller.
#[derive(Default)]
struct Arrived {
    /// Outcomes, one job's or one frame's at a time.
    arrivals: Vec<Arrival>,
    /// Jobs they answer.
    jobs: usize,
}

/// Outcomes of jobs of a batch, each tagged with its job's place in it.
pub(crate) enum Arrival {
    /// One job's outcome.
    One(usize, Outcome),
    /// The answers of one `ReplyBatch` frame (its jobs' places filled in).
    Frame(FrameAnswers),
}

/// The outcomes of one batch, as they arrive.
pub(crate) struct Batch {
    arrived: Mutex<Arrived>,
    remaining: AtomicUsize,
    done: Notify,
    abandoned: AtomicBool,
}

impl Batch {
    /// A batch of `size` jobs; [`responder`](Self::responder) makes each
    /// job's responder when the job is submitted.
    pub(crate) fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            arrived: Mutex::default(),
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

    fn arrived(&self) -> std::sync::MutexGuard<'_, Arrived> {
        lock(&self.arrived)
    }

    fn fill(&self, index: usize, outcome: Outcome) {
        self.fill_with(1, |arrived| arrived.push(Arrival::One(index, outcome)));
    }

    /// Lets `add` push the outcomes of `jobs` jobs under one lock; returns
    /// `jobs`.
    fn fill_with(&self, jobs: usize, add: impl FnOnce(&mut Vec<Arrival>)) -> usize {
        if jobs == 0 {
            return 0;
        }
        let mut arrived = self.arrived();
        let before = arrived.jobs;
        add(&mut arrived.arrivals);
        arrived.jobs += jobs;
        let after = arrived.jobs;
        drop(arrived);
        // Pushed before counted: whoever sees the count reach zero finds
        // every outcome in `arrived`.
        let last = self.remaining.fetch_sub(jobs, Ordering::AcqRel) == jobs;
        if last || (before < BURST && after >= BURST) {
            self.done.notify_one();
        }
        jobs
    }

    /// Moves the outcomes that have arrived into `into` (empty), without
    /// waiting.
    pub(crate) fn take_arrived(&self, into: &mut Vec<Arrival>) {
        let mut arrived = self.arrived();
        std::mem::swap(&mut arrived.arrivals, into);
        arrived.jobs = 0;
    }

    /// Waits for a burst of outcomes, or the last ones, and moves them into
    /// `into` (empty). Returns `false`, taking nothing, once every outcome
    /// has been taken.
    pub(crate) async fn next(&self, into: &mut Vec<Arrival>) -> bool {
        loop {
            let remaining = self.remaining.load(Ordering::Acquire);
            {
                let mut arrived = self.arrived();
                if arrived.jobs >= BURST || (remaining == 0 && arrived.jobs > 0) {
                    std::mem::swap(&mut arrived.arrivals, into);
                    arrived.jobs = 0;
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

#[cfg(test)]
mod tests {
    use ipc2_common::codec::batch::ReplyBatchWriter;
    use ipc2_common::codec::{encode_frame, prepare};
    use ipc2_common::{FrameCodec, FrameReader};

    use super::*;

    /// A `ReplyBatch` frame's answers, by job index in the `JobBatch`
    /// frame: a reply of the value, or `NoReply`.
    fn frame_of(answers: &[(u32, Option<u32>)]) -> BatchAnswers {
        let mut writer = ReplyBatchWriter::new(1, 1 << 20);
        for &(index, value) in answers {
            match value {
                Some(value) => {
                    let reply = prepare(&value, false, None).unwrap();
                    writer
                        .push_message(index, FrameKind::Reply, &reply)
                        .unwrap();
                }
                None => writer.push_raw(index, FrameKind::NoReply, &[]),
            }
        }
        BatchAnswers::new(one_frame(&writer.take()).payload).unwrap()
    }

    fn one_frame(bytes: &[u8]) -> Frame {
        let mut reader = FrameReader::new(bytes, FrameCodec::new(1 << 20));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(reader.next()).unwrap().unwrap()
    }

    /// What the supervisor makes of them, for worker 3 (pid 42).
    fn read(answers: &BatchAnswers) -> FrameAnswers {
        FrameAnswers::read(3, 42, 1, answers, |frame| {
            assert_eq!(frame.kind, FrameKind::NoReply);
            Err(Error::NoReply { worker: 3, pid: 42 })
        })
    }

    /// The outcomes the batch's caller takes now, by place.
    fn take(batch: &Batch) -> Vec<(usize, Result<u32, Error>)> {
        let mut arrived = Vec::new();
        batch.take_arrived(&mut arrived);
        let mut outcomes = Vec::new();
        for arrival in arrived {
            match arrival {
                Arrival::One(place, outcome) => outcomes.push((place, decoded(outcome))),
                Arrival::Frame(answers) => {
                    answers.decode_each(|place, outcome| outcomes.push((place, outcome)));
                }
            }
        }
        outcomes.sort_by_key(|(place, _)| *place);
        outcomes
    }

    #[test]
    fn a_frame_s_answers_reach_their_jobs_places_and_count_one_job_each() {
        let batch = Batch::new(4);
        // The frame's jobs are the batch's jobs 3, 1 and 2, in that order.
        let mut members = batch.members(vec![3, 1, 2]);
        let answers = frame_of(&[(2, Some(20)), (0, Some(30)), (1, None)]);
        assert_eq!(members.answer_members(read(&answers)), (3, true));
        assert_eq!(batch.remaining.load(Ordering::Relaxed), 1);
        assert_eq!(batch.arrived().jobs, 3);
        let outcomes = take(&batch);
        assert!(
            matches!(
                outcomes[..],
                [
                    (1, Err(Error::NoReply { worker: 3, pid: 42 })),
                    (2, Ok(20)),
                    (3, Ok(30))
                ]
            ),
            "{:?}",
            outcomes.iter().map(|(place, _)| place).collect::<Vec<_>>()
        );
        assert_eq!(batch.arrived().jobs, 0, "taken");
        // Every job of the frame is answered: dropping its responder
        // answers nothing twice.
        drop(members);
        assert!(take(&batch).is_empty());
        assert_eq!(batch.remaining.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn answers_stop_at_the_first_that_names_a_job_the_frame_cannot_give() {
        let batch = Batch::new(3);
        let mut members = batch.members(vec![0, 1, 2]);
        // Job 1 answered twice: that answer and the ones after it are
        // dropped, and their jobs fail with the worker (here: the
        // responder dropped), each once.
        let answers = frame_of(&[(1, Some(1)), (1, Some(2)), (2, Some(3))]);
        assert_eq!(members.answer_members(read(&answers)), (1, false));
        // An index the frame does not have.
        assert_eq!(
            members.answer_members(read(&frame_of(&[(7, Some(7))]))),
            (0, false)
        );
        drop(members);
        let outcomes = take(&batch);
        assert!(matches!(
            outcomes[..],
            [(0, Err(Error::Closed)), (1, Ok(1)), (2, Err(Error::Closed))]
        ));
        assert_eq!(batch.remaining.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_member_answered_in_a_frame_of_its_own_keeps_its_outcome() {
        let batch = Batch::new(2);
        let mut members = batch.members(vec![1, 0]);
        let reply = Reply {
            worker: 3,
            pid: 42,
            payload: one_frame(&encode_frame(FrameKind::Reply, 0, &9u32, 1 << 20).unwrap()).payload,
            bodies: Vec::new(),
        };
        let one = FrameAnswers::one(3, 42, 0, Ok(reply));
        assert_eq!(members.answer_members(one), (1, true));
        assert!(matches!(take(&batch)[..], [(1, Ok(9))]));
    }
}
