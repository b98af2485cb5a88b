//! A job as the worker sees it, and the one-shot handle that answers it.
//!
//! Every job the host sends expects exactly one answer. [`ReplySender::send`]
//! consumes the sender, so a job cannot be answered twice; dropping it
//! without sending tells the host the job got no reply, so the caller gets an
//! error instead of waiting forever.

use std::marker::PhantomData;

use ipc2_common::codec::{encode_frame_with_bodies, encode_raw_frame};
use ipc2_common::{FrameKind, Outbox};
use serde::Serialize;

use crate::error::ReplyError;

/// A job received from the host.
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
        let link = outbox.link();
        let (kind, id, max) = (FrameKind::Reply, self.id, self.max_frame_length);
        match encode_frame_with_bodies(kind, id, &reply, max, link.is_some(), link.as_ref()) {
            // A body the host lent, passed back, is released (when `reply`
            // drops) only after this frame: the host holds it by then.
            Ok((frame, lent)) => outbox
                .send_lending(frame, &lent)
                .map_err(|_| ReplyError::Disconnected),
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
        if let Some(outbox) = self.outbox.take() {
            send_raw(&outbox, FrameKind::NoReply, self.id, &[]);
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
