//! Answering a job with a stream of items.
//!
//! The host asks for a stream with `send_stream`; the worker turns the
//! job's [`ReplySender`](crate::ReplySender) into a [`StreamSender`] with
//! `into_stream`, sends items, and ends the stream with
//! [`finish`](StreamSender::finish) (or [`fail`](StreamSender::fail)).
//! Items are lossless and flow-controlled: the host grants credit for as
//! many items as its caller has room for, and [`send`](StreamSender::send)
//! waits while there is none, so a producer faster than its consumer waits
//! instead of filling the host's memory. When the host's caller drops its
//! stream, the host cancels the job: `send` then fails with
//! [`StreamError::Cancelled`] and the producer should stop.

use std::fmt::Display;
use std::marker::PhantomData;
use std::sync::Arc;

use ipc2_common::FrameKind;
use serde::Serialize;
use tokio::runtime::RuntimeFlavor;

use crate::error::{ReplyError, StreamError};
use crate::inbound::Inbound;
use crate::job::Answer;

/// Sends the items of one stream job; see the [module](self) docs.
///
/// Dropped without [`finish`](Self::finish), the stream ends with an error
/// for the host's caller (`NoReply`, or `Panicked` if a panic dropped it),
/// so a producer that stops early is never mistaken for a complete stream.
pub struct StreamSender<Out> {
    answer: Answer,
    _item: PhantomData<fn(Out)>,
}

impl<Out> StreamSender<Out> {
    pub(crate) fn new(answer: Answer) -> Self {
        Self {
            answer,
            _item: PhantomData,
        }
    }

    fn inbound(&self) -> Result<&Arc<Inbound>, StreamError> {
        self.answer.stream.as_ref().ok_or(StreamError::Ended)
    }

    /// Whether the host's caller has dropped its stream: stop producing.
    pub fn is_cancelled(&self) -> bool {
        self.inbound().is_ok_and(|inbound| {
            inbound
                .filed()
                .flows
                .get(&self.answer.id)
                .is_none_or(|flow| flow.cancelled)
        })
    }

    /// Ends the stream normally: the host's caller has every item, then the
    /// end.
    pub fn finish(mut self) -> Result<(), ReplyError> {
        self.answer.end_stream()
    }

    /// Ends the stream with a failure of the application's: after the items
    /// already sent, the host's caller gets `Error::App` with this reason.
    pub fn fail(mut self, reason: impl Display) {
        self.answer.fail(&reason.to_string());
    }

    /// Waits until the host has room for one more item, and takes it.
    async fn credit(&self) -> Result<(), StreamError> {
        let inbound = self.inbound()?;
        let id = self.answer.id;
        let mut outcome = Err(StreamError::Disconnected);
        inbound
            .drive(|filed| match filed.flows.get_mut(&id) {
                None => {
                    outcome = Err(StreamError::Cancelled);
                    true
                }
                Some(flow) if flow.cancelled => {
                    outcome = Err(StreamError::Cancelled);
                    true
                }
                Some(flow) if flow.credit > 0 => {
                    flow.credit -= 1;
                    outcome = Ok(());
                    true
                }
                Some(_) => false,
            })
            .await;
        outcome
    }
}

impl<Out: Serialize> StreamSender<Out> {
    /// Sends one item, first waiting (without blocking the thread) until
    /// the host's caller has room for it. Fails with
    /// [`StreamError::Cancelled`] once the caller dropped the stream, and
    /// with [`StreamError::Disconnected`] once the host is gone.
    pub async fn send(&mut self, item: Out) -> Result<(), StreamError> {
        self.credit().await?;
        self.answer
            .send_part(FrameKind::Item, &item)
            .map_err(StreamError::from)
    }

    /// [`send`](Self::send) for code that is not async: blocks the calling
    /// thread while the host's caller has no room. In the blocking worker
    /// (`ipc2_worker::blocking`) it works on any thread; in an async worker,
    /// call it only where blocking is allowed (`spawn_blocking`, a thread of
    /// your own, or a multi-thread runtime, where it uses
    /// `block_in_place`); on a current-thread runtime it fails with
    /// [`StreamError::WouldBlock`] rather than stall the runtime.
    pub fn send_blocking(&mut self, item: Out) -> Result<(), StreamError> {
        let inbound = self.inbound()?;
        match tokio::runtime::Handle::try_current() {
            // A thread of no runtime (the blocking worker's, or one of
            // yours): the connection's own runtime does the I/O meanwhile.
            Err(_) => inbound.runtime().block_on(self.credit())?,
            Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(self.credit()))?;
            }
            Ok(_) => return Err(StreamError::WouldBlock),
        }
        self.answer
            .send_part(FrameKind::Item, &item)
            .map_err(StreamError::from)
    }
}

impl<Out> Drop for StreamSender<Out> {
    fn drop(&mut self) {
        self.answer.unanswered();
    }
}

impl<Out> std::fmt::Debug for StreamSender<Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSender")
            .field("job", &self.answer.id)
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
