//! A job as the worker sees it, and the one-shot handle that answers it.
//!
//! Every job the host sends expects exactly one answer. [`ReplySender::send`]
//! consumes the sender, so a job cannot be answered twice; dropping it
//! without sending tells the host the job got no reply, so the caller gets an
//! error instead of waiting forever. A sender dropped by a panic in the
//! job's handler tells the host that, with the panic's message and location
//! (the worker library's panic hook keeps the report for the panicking
//! thread and task).

use std::marker::PhantomData;

use ipc2_common::codec::{encode_frame, encode_raw_frame};
use ipc2_common::{FrameKind, Outbox, PanicReport};
use serde::Serialize;

use crate::error::ReplyError;
use crate::panic::{report_for_dropped_sender, truncated};

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
/// Dropped without [`send`](Self::send), it tells the host the job got no
/// reply (the caller gets `Error::NoReply`), or, if a panic dropped it, that
/// the job panicked (`Error::Panicked`, with the message and location).
pub struct ReplySender<Out> {
    id: u64,
    outbox: Option<Outbox>,
    max_frame_length: usize,
    _reply: PhantomData<fn(Out)>,
}

impl<Out> ReplySender<Out> {
    pub(crate) fn new(id: u64, outbox: Outbox, max_frame_length: usize) -> Self {
        Self {
            id,
            outbox: Some(outbox),
            max_frame_length,
            _reply: PhantomData,
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
        let outbox = self.outbox.take().ok_or(ReplyError::Disconnected)?;
        match encode_frame(FrameKind::Reply, self.id, &reply, self.max_frame_length) {
            Ok(frame) => outbox.send(frame).map_err(|_| ReplyError::Disconnected),
            Err(error) => {
                let message = format!("the worker could not encode its reply: {error}");
                send_raw(&outbox, FrameKind::JobFailed, self.id, message.as_bytes());
                Err(ReplyError::Encode(error))
            }
        }
    }
}

impl<Out> Drop for ReplySender<Out> {
    fn drop(&mut self) {
        let Some(outbox) = self.outbox.take() else {
            return;
        };
        match report_for_dropped_sender() {
            Some(report) => send_panic_report(&outbox, self.id, report, self.max_frame_length),
            None => send_raw(&outbox, FrameKind::NoReply, self.id, &[]),
        }
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

/// Queues a frame whose payload is plain bytes (short, so always within the
/// limit). Losing it because the connection is gone is fine: so is the host.
pub(crate) fn send_raw(outbox: &Outbox, kind: FrameKind, id: u64, payload: &[u8]) {
    if let Ok(frame) = encode_raw_frame(kind, id, payload, usize::MAX) {
        let _ = outbox.send(frame);
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

impl<Out> std::fmt::Debug for ReplySender<Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplySender")
            .field("job", &self.id)
            .field("answered", &self.outbox.is_none())
            .finish()
    }
}
