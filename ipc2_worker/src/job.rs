//! A job as the worker sees it, and the one-shot handle that answers it.
//!
//! Every job the host sends expects exactly one answer. [`ReplySender::send`]
//! (or [`fail`](ReplySender::fail)) consumes the sender, so a job cannot be
//! answered twice; dropping it without answering tells the host the job got
//! no reply, so the caller gets an error instead of waiting forever. A
//! sender dropped by a panic in the job's handler tells the host that, with
//! the panic's message and location (the worker library's panic hook keeps
//! the report for the panicking thread and task). A stream job's sender
//! turns into a [`StreamSender`] that answers with many
//! items.

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;

use ipc2_common::codec::{encode_frame, encode_raw_frame, prepare};
use ipc2_common::protocol::MAX_FAIL_REASON;
use ipc2_common::{FrameKind, Outbox, PanicReport};
use serde::Serialize;

use crate::batch::Collector;
use crate::error::{ReplyError, unencodable};
use crate::inbound::Inbound;
use crate::panic::{report_for_dropped_sender, truncated};
use crate::stream::StreamSender;

/// A job received from the host.
///
/// Its `Debug` output names the variant only: message types need not
/// implement `Debug`.
pub enum Job<In, Out> {
    /// The host waits for a reply: answer with `tx.send(reply)`.
    Bidirectional {
        /// The message.
        data: In,
        /// Answers the job; may be moved to another task and used later.
        tx: ReplySender<Out>,
    },
    /// The host expects no reply.
    Unidirectional {
        /// The message.
        data: In,
    },
}

/// Answers one job. Send it across tasks freely; replies may go out in any
/// order.
///
/// Dropped without an answer, it tells the host the job got no reply (the
/// caller gets `Error::NoReply`), or, if a panic dropped it, that the job
/// panicked (`Error::Panicked`, with the message and location).
pub struct ReplySender<Out> {
    answer: Answer,
    _reply: PhantomData<fn(Out)>,
}

impl<Out> ReplySender<Out> {
    pub(crate) fn new(
        id: u64,
        outbox: Outbox,
        max_frame_length: usize,
        stream: Option<Arc<Inbound>>,
    ) -> Self {
        Self {
            answer: Answer {
                id,
                outbox: Some(outbox),
                max_frame_length,
                stream,
                batch: None,
            },
            _reply: PhantomData,
        }
    }

    /// The sender of job `index` of a batch, whose answer goes to the
    /// batch's collector.
    pub(crate) fn in_batch(
        id: u64,
        outbox: Outbox,
        max_frame_length: usize,
        collector: Arc<Collector>,
        index: u32,
    ) -> Self {
        let mut sender = Self::new(id, outbox, max_frame_length, None);
        sender.answer.batch = Some((collector, index));
        sender
    }

    /// Fails the job with a reason of the application's (an invalid input,
    /// a resource that is missing, ...): the caller gets `Error::App` with
    /// this message, distinct from crashes, timeouts and decode errors. The
    /// worker goes on serving. Reasons longer than 64 KiB are cut.
    pub fn fail(mut self, reason: impl Display) {
        self.answer.fail(&reason.to_string());
    }

    /// Whether the host asked for a stream of items (`send_stream` on the
    /// host): then answer with [`into_stream`](Self::into_stream).
    pub fn is_stream(&self) -> bool {
        self.answer.stream.is_some()
    }

    /// Turns the sender of a stream job into a [`StreamSender`], which
    /// answers with any number of items, then an end. Gives the sender back
    /// (`Err`) when the host asked for a single reply instead. (A stream job
    /// may also be answered with a single `send`: the host sees a stream of
    /// that one item.)
    pub fn into_stream(mut self) -> Result<StreamSender<Out>, Self> {
        match self.answer.stream.is_some() {
            true => Ok(StreamSender::new(self.answer.take())),
            false => Err(self),
        }
    }
}

impl<Out: Serialize> ReplySender<Out> {
    /// Sends the reply. It is queued for the connection's writer at once; no
    /// `.await` needed.
    ///
    /// If the reply cannot be encoded, the host's caller gets an error saying
    /// so, and so does this call.
    pub fn send(mut self, reply: Out) -> Result<(), ReplyError> {
        self.answer.finish(FrameKind::Reply, &reply)
    }

    /// The same as [`send`](Self::send), by the name request/reply libraries
    /// such as ump give it.
    pub fn reply(self, reply: Out) -> Result<(), ReplyError> {
        self.send(reply)
    }
}

impl<Out> Drop for ReplySender<Out> {
    fn drop(&mut self) {
        self.answer.unanswered();
    }
}

impl<Out> std::fmt::Debug for ReplySender<Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplySender")
            .field("job", &self.answer.id)
            .field("stream", &self.is_stream())
            .finish()
    }
}

impl<In, Out> std::fmt::Debug for Job<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bidirectional { tx, .. } => f
                .debug_struct("Job::Bidirectional")
                .field("tx", tx)
                .finish_non_exhaustive(),
            Self::Unidirectional { .. } => f
                .debug_struct("Job::Unidirectional")
                .finish_non_exhaustive(),
        }
    }
}

/// The one answer a job is owed, shared by [`ReplySender`] and
/// [`StreamSender`]: whichever holds it answers exactly once, or, dropped
/// unanswered, tells the host why.
pub(crate) struct Answer {
    pub(crate) id: u64,
    /// `None` once the job is answered.
    pub(crate) outbox: Option<Outbox>,
    pub(crate) max_frame_length: usize,
    /// The connection's read side, for a stream job (its credit arrives
    /// there).
    pub(crate) stream: Option<Arc<Inbound>>,
    /// For a job of a batch: the batch's collector and the job's place.
    pub(crate) batch: Option<(Arc<Collector>, u32)>,
}

impl Answer {
    /// Moves the answer out, leaving this one answered.
    fn take(&mut self) -> Self {
        Self {
            id: self.id,
            outbox: self.outbox.take(),
            max_frame_length: self.max_frame_length,
            stream: self.stream.take(),
            batch: self.batch.take(),
        }
    }

    /// Queues a frame that belongs to the job without ending it (a stream
    /// item).
    pub(crate) fn send_part<T: Serialize>(
        &self,
        kind: FrameKind,
        message: &T,
    ) -> Result<(), ReplyError> {
        let outbox = self.outbox.as_ref().ok_or(ReplyError::Disconnected)?;
        let frame = encode_frame(kind, self.id, message, self.max_frame_length)
            .map_err(ReplyError::Encode)?;
        outbox.send(frame).map_err(|_| ReplyError::Disconnected)?;
        // An item is never held back with answers: the caller reads items
        // as they come, and a stream may run for long.
        outbox.release();
        Ok(())
    }

    /// Answers the job with `message` in a frame of `kind`. If it cannot be
    /// encoded the host's caller is told so instead.
    pub(crate) fn finish<T: Serialize>(
        &mut self,
        kind: FrameKind,
        message: &T,
    ) -> Result<(), ReplyError> {
        let Some(outbox) = self.end() else {
            return Err(ReplyError::Disconnected);
        };
        // A batch's collector keeps the connection's link at hand.
        let fetched;
        let link = match &self.batch {
            Some((collector, _)) => collector.link(),
            None => {
                fetched = outbox.link();
                fetched.as_ref()
            }
        };
        let (id, max) = (self.id, self.max_frame_length);
        let prepared = prepare(message, link.is_some(), link);
        let encoded = match (prepared, &self.batch) {
            // In a batch, a reply without shared bodies joins the others,
            // unless it is too large to share a frame: then it goes alone.
            (Ok(prepared), Some((collector, index))) if !prepared.has_bodies() => {
                match collector.reply(*index, &prepared) {
                    Ok(true) => return Ok(()),
                    Ok(false) => prepared.into_frame(kind, id, max),
                    Err(error) => return Err(ReplyError::Encode(error)),
                }
            }
            (prepared, _) => prepared.and_then(|prepared| prepared.into_frame(kind, id, max)),
        };
        match encoded {
            // A body the host lent, passed back, is released (when the
            // message drops) only after this frame: the host holds it then.
            Ok((frame, lent)) => {
                let sent = outbox.send_lending(frame, &lent);
                if let Some((collector, _)) = &self.batch {
                    collector.answered_alone();
                }
                sent.map_err(|_| ReplyError::Disconnected)
            }
            Err(error) => {
                self.answer_raw(
                    &outbox,
                    FrameKind::JobFailed,
                    unencodable(&error).as_bytes(),
                );
                Err(ReplyError::Encode(error))
            }
        }
    }

    /// Answers with a frame kind and a short payload: in the batch's
    /// collector for a job of a batch, in a frame of its own otherwise.
    fn answer_raw(&self, outbox: &Outbox, kind: FrameKind, payload: &[u8]) {
        match &self.batch {
            Some((collector, index)) => collector.raw(*index, kind, payload),
            None => send_raw(outbox, kind, self.id, payload),
        }
    }

    /// Fails the job with the application's reason.
    pub(crate) fn fail(&mut self, reason: &str) {
        if let Some(outbox) = self.end() {
            let reason = truncated(reason, MAX_FAIL_REASON.min(self.max_frame_length / 2));
            self.answer_raw(&outbox, FrameKind::Failed, reason.as_bytes());
        }
    }

    /// Ends a stream job normally.
    pub(crate) fn end_stream(&mut self) -> Result<(), ReplyError> {
        let outbox = self.end().ok_or(ReplyError::Disconnected)?;
        let frame = encode_raw_frame(FrameKind::StreamEnd, self.id, &[], usize::MAX)
            .map_err(ReplyError::Encode)?;
        outbox.send(frame).map_err(|_| ReplyError::Disconnected)
    }

    /// The job was dropped unanswered: a panic's report if a panic dropped
    /// it, "no reply" otherwise.
    pub(crate) fn unanswered(&mut self) {
        let Some(outbox) = self.end() else {
            return;
        };
        match (report_for_dropped_sender(), &self.batch) {
            (Some(report), Some((collector, index))) => {
                send_panic_report_in_batch(collector, *index, report);
            }
            (Some(report), None) => {
                send_panic_report(&outbox, self.id, report, self.max_frame_length);
            }
            (None, _) => self.answer_raw(&outbox, FrameKind::NoReply, &[]),
        }
    }

    /// Marks the job answered: forgets its stream's flow control, and
    /// returns the outbox to answer through (`None` if already answered).
    fn end(&mut self) -> Option<Outbox> {
        if let Some(inbound) = self.stream.take() {
            inbound.filed().flows.remove(&self.id);
            inbound.wake_all();
        }
        self.outbox.take()
    }
}

/// Queues a `Panicked` answer for job `id`; a message too long for the
/// frame limit is cut until it fits.
fn send_panic_report(outbox: &Outbox, id: u64, mut report: PanicReport, max_frame_length: usize) {
    loop {
        match encode_frame(FrameKind::Panicked, id, &report, max_frame_length) {
            Ok(frame) => {
                let _ = outbox.send(frame);
                return;
            }
            Err(_) if !report.message.is_empty() => {
                let shorter = truncated(&report.message, report.message.len() / 2).to_owned();
                report.message = shorter;
            }
            // Not even an empty report fits: the host hears "no reply".
            Err(_) => return send_raw(outbox, FrameKind::NoReply, id, &[]),
        }
    }
}

/// Answers job `index` of a batch with a `Panicked` report, cut until it
/// fits a frame (or "no reply" if not even an empty report does).
fn send_panic_report_in_batch(collector: &Arc<Collector>, index: u32, mut report: PanicReport) {
    while !collector.message(index, FrameKind::Panicked, &report) {
        if report.message.is_empty() {
            return collector.raw(index, FrameKind::NoReply, &[]);
        }
        report.message = truncated(&report.message, report.message.len() / 2).to_owned();
    }
}

/// Queues a frame whose payload is plain bytes (short, so always within the
/// limit). Losing it because the connection is gone is fine: so is the host.
pub(crate) fn send_raw(outbox: &Outbox, kind: FrameKind, id: u64, payload: &[u8]) {
    if let Ok(frame) = encode_raw_frame(kind, id, payload, usize::MAX) {
        let _ = outbox.send(frame);
    }
}
