//! Where a worker's jobs arrive.
//!
//! [`Receiver::recv`] takes the next job frame the host sent (reading the
//! connection itself when nothing is waiting; see the `inbound` module),
//! decodes it into the worker's message type and hands it out as a
//! [`Job`]. A job that cannot be decoded is answered with an error frame on
//! the spot (the host's caller learns why) and `recv` moves on to the next.
//!
//! The receiver counts the jobs it hands out. When it is dropped (the
//! worker's loop ended, or a panic unwinds through it) it tells the host
//! that count in a `Leaving` frame, so jobs the host sent that the worker's
//! code never took go to another worker instead of failing with this one.
//! A panic is about to end the process then: the receiver writes what is
//! queued (the panicking job's report among it) from the dying thread, as
//! the runtime's writer task may never run again.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipc2_common::codec::batch::JobMembers;
use ipc2_common::codec::{decode_message, decode_message_with_bodies, encode_frame};
use ipc2_common::{CodecError, FrameKind, Leaving, Outbox};
use serde::de::DeserializeOwned;

use crate::batch::{Collector, Ticker};
use crate::error::undecodable;
use crate::inbound::Inbound;
use crate::job::{Job, ReplySender, send_raw};

/// How long a worker that a panic is taking down may spend writing its last
/// frames to the host.
const FLUSH_ON_PANIC: Duration = Duration::from_secs(2);

/// A job handed out that came back to `recv` within this counts as quick:
/// answers of the jobs read with it may then be held, to go out together.
const QUICK_JOB: Duration = Duration::from_micros(50);

/// Longest the answers of quick jobs are held before they go out anyway.
const HOLD_AT_MOST: Duration = Duration::from_micros(250);

/// Yields the jobs the host sends to this worker.
pub struct Receiver<In, Out> {
    inbound: Arc<Inbound>,
    outbox: Outbox,
    max_frame_length: usize,
    max_in_flight: usize,
    /// Why the stream of jobs ended, once it has, if not cleanly.
    error: Option<CodecError>,
    /// Jobs handled so far, in the order the host sent them (each job of
    /// a batch counts).
    yielded: u64,
    /// The batch of jobs being handed out.
    batch: Option<OpenBatch>,
    /// Collectors of batches whose answers are not all sent.
    collecting: Vec<Arc<Collector>>,
    /// Sends the answers that collectors have held too long.
    ticker: Arc<Ticker>,
    /// When `recv` last handed out a job.
    handed_out: Option<Instant>,
    /// Since when answers are held (see [`Receiver::hold_answers`]).
    holding_since: Option<Instant>,
    /// The job handed out last was quick, and answers have not been held
    /// for long: the next ones may be held.
    may_hold: bool,
    /// The last `recv` waited for the host.
    waited: bool,
    _messages: PhantomData<fn() -> (In, Out)>,
}

/// A batch of jobs being handed out one by one.
struct OpenBatch {
    first_id: u64,
    next: u32,
    members: JobMembers,
    collector: Arc<Collector>,
}

impl<In: DeserializeOwned, Out> Receiver<In, Out> {
    pub(crate) fn new(inbound: Arc<Inbound>, outbox: Outbox, max_frame_length: usize) -> Self {
        let ticker = Ticker::new(inbound.runtime().clone());
        Self {
            inbound,
            outbox,
            max_frame_length,
            max_in_flight: 1,
            error: None,
            yielded: 0,
            batch: None,
            collecting: Vec::new(),
            ticker,
            handed_out: None,
            holding_since: None,
            may_hold: false,
            waited: false,
            _messages: PhantomData,
        }
    }

    pub(crate) fn with_max_in_flight(mut self, jobs: usize) -> Self {
        self.max_in_flight = jobs;
        self
    }

    /// How many jobs the host may give this worker at once (the pool's
    /// `max_in_flight_per_worker`). Above 1, a worker that wants to use
    /// them runs jobs concurrently (e.g. moves each `tx` into its own task).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The next job, or `None` once the host has closed the connection or
    /// asked this worker to shut down. Before returning `None` it waits until
    /// every reply sent so far has been written to the host.
    ///
    /// Where the host gives this worker several jobs at once and they
    /// arrive together, answers sent from the loop that calls `recv` go
    /// out together: held while the jobs come back to `recv` within 50 µs
    /// (for at most 250 µs), and sent before `recv` waits for the host. So
    /// an answer may wait for the one job handed out after it, if that one
    /// turns out slow, and at the latest until `recv` is called again or
    /// the receiver is dropped. Answers sent from other tasks, and stream
    /// items, are never held.
    ///
    /// Cancel safe: dropping the future loses no job.
    pub async fn recv(&mut self) -> Option<Job<In, Out>> {
        if self.batch.is_some() || self.max_in_flight <= 1 {
            // One job at a time has no answers to hold with others' (and
            // skips the clock); a batch's gather in its collector.
            return self.next_job().await;
        }
        let now = self.pace();
        let job = self.next_job().await;
        // After a wait, the job is handed out later than `now`.
        self.handed_out = Some(match self.waited {
            true => Instant::now(),
            false => now,
        });
        job
    }

    /// Decides, as `recv` is called again, whether answers may be held
    /// while the jobs already read are handed out: only while jobs come
    /// back quickly (a job that takes long would keep the answers before it
    /// from the host), and for a short while. Otherwise what is held goes
    /// out now.
    fn pace(&mut self) -> Instant {
        let now = Instant::now();
        self.may_hold = self
            .handed_out
            .is_some_and(|at| now.duration_since(at) <= QUICK_JOB)
            && self
                .holding_since
                .is_none_or(|since| now.duration_since(since) < HOLD_AT_MOST);
        if !self.may_hold && self.holding_since.take().is_some() {
            self.outbox.more_coming(false);
            self.outbox.release();
        }
        now
    }

    /// Tells the outbox whether more jobs' answers follow the one about to
    /// be handed out. While [`pace`](Self::pace) allows, the answers this
    /// loop sends are then held, to go out together with the last one's
    /// (see `Outbox::more_coming`), and no writer task is woken for them;
    /// otherwise each answer is written as it is sent.
    fn hold_answers(&mut self, more: bool) {
        let hold = more && self.may_hold;
        if hold == self.holding_since.is_some() {
            return;
        }
        self.holding_since = hold.then(Instant::now);
        self.outbox.more_coming(hold);
    }

    async fn next_job(&mut self) -> Option<Job<In, Out>> {
        self.waited = false;
        loop {
            if let Some(job) = self.next_of_batch() {
                match job {
                    Some(job) => return Some(job),
                    None => continue,
                }
            }
            if !self.collecting.is_empty() && self.inbound.filed().jobs.is_empty() {
                // About to wait: answers gathered so far go out first.
                self.flush_batches();
            }
            self.waited |= self.inbound.drive(|filed| !filed.jobs.is_empty()).await;
            let (frame, more) = {
                let mut filed = self.inbound.filed();
                let frame = filed.jobs.pop_front();
                if frame.is_none() {
                    self.error = filed.error.take();
                }
                (frame, !filed.jobs.is_empty())
            };
            // This job's answer goes out with those of the jobs behind it,
            // or alone and at once if it is the last.
            self.hold_answers(more);
            let Some(frame) = frame else { break };
            if frame.kind == FrameKind::JobBatch {
                if let Err(error) = self.open_batch(frame.id, frame.payload) {
                    self.error = Some(error);
                    break;
                }
                continue;
            }
            self.yielded += 1;
            let data = match decode_message_with_bodies::<In>(&frame.payload, frame.bodies) {
                Ok(data) => data,
                Err(error) => {
                    let reason = undecodable(&error);
                    send_raw(
                        &self.outbox,
                        FrameKind::JobFailed,
                        frame.id,
                        reason.as_bytes(),
                    );
                    if frame.kind == FrameKind::StreamJob {
                        self.inbound.filed().flows.remove(&frame.id);
                    }
                    continue;
                }
            };
            if frame.kind == FrameKind::OneWayJob {
                send_raw(&self.outbox, FrameKind::Ack, frame.id, &[]);
                return Some(Job::Unidirectional { data });
            }
            let stream = (frame.kind == FrameKind::StreamJob).then(|| Arc::clone(&self.inbound));
            let tx = ReplySender::new(frame.id, self.outbox.clone(), self.max_frame_length, stream);
            return Some(Job::Bidirectional { data, tx });
        }
        self.flush_batches();
        self.outbox.flushed().await;
        None
    }

    /// Starts handing out the jobs of a `JobBatch` frame.
    fn open_batch(&mut self, first_id: u64, payload: Bytes) -> Result<(), CodecError> {
        let members = JobMembers::new(payload)?;
        let collector = Arc::new(Collector::new(
            first_id,
            members.left(),
            self.outbox.clone(),
            self.max_frame_length,
            Arc::clone(&self.ticker),
        ));
        self.collecting.push(Arc::clone(&collector));
        self.batch = Some(OpenBatch {
            first_id,
            next: 0,
            members,
            collector,
        });
        Ok(())
    }

    /// The next job of the open batch: `None` if there is no open batch,
    /// `Some(None)` if its next job could not be decoded (and was answered
    /// so).
    fn next_of_batch(&mut self) -> Option<Option<Job<In, Out>>> {
        let batch = self.batch.as_mut()?;
        // Decoded from the frame's payload in place.
        let Some(message) = batch.members.next_message() else {
            self.batch = None;
            return Some(None);
        };
        let decoded = decode_message::<In>(message);
        let index = batch.next;
        batch.next += 1;
        let id = batch.first_id.wrapping_add(u64::from(index));
        let collector = Arc::clone(&batch.collector);
        let more = batch.members.left() > 0;
        if !more {
            self.batch = None;
        }
        self.yielded += 1;
        // Answers of a batch gather in its collector; an answer sent in a
        // frame of its own (shared bodies) waits for the jobs behind it.
        let more = more || !self.inbound.filed().jobs.is_empty();
        self.hold_answers(more);
        match decoded {
            Ok(data) => {
                let max = self.max_frame_length;
                let tx = ReplySender::in_batch(id, self.outbox.clone(), max, collector, index);
                Some(Some(Job::Bidirectional { data, tx }))
            }
            Err(error) => {
                collector.raw(index, FrameKind::JobFailed, undecodable(&error).as_bytes());
                Some(None)
            }
        }
    }

    /// Why the stream of jobs ended, if it ended because of an error rather
    /// than a clean close or shutdown request from the host.
    pub fn error(&self) -> Option<&CodecError> {
        self.error.as_ref()
    }

    /// [`error`](Self::error), taken out.
    pub(crate) fn take_error(&mut self) -> Option<CodecError> {
        self.error.take()
    }
}

impl<In, Out> Receiver<In, Out> {
    /// Sends the answers gathered in every batch's collector, and forgets
    /// the batches that are fully answered.
    fn flush_batches(&mut self) {
        self.collecting.retain(|collector| {
            collector.flush();
            !collector.is_done()
        });
    }

    /// The outbox replies go through (for the blocking worker, which flushes
    /// it before its runtime stops).
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl<In, Out> Drop for Receiver<In, Out> {
    fn drop(&mut self) {
        // Nothing more is coming from this loop: what it held goes out with
        // the `Leaving` frame.
        self.outbox.more_coming(false);
        self.flush_batches();
        let panicking = std::thread::panicking();
        let leaving = Leaving {
            yielded: self.yielded,
            panicking,
        };
        if let Ok(frame) = encode_frame(FrameKind::Leaving, 0, &leaving, usize::MAX) {
            let _ = self.outbox.send(frame);
        }
        if panicking {
            self.outbox.flush_blocking(FLUSH_ON_PANIC);
        }
    }
}

impl<In, Out> std::fmt::Debug for Receiver<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("jobs_taken", &self.yielded)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}
