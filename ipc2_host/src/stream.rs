//! Jobs answered with a stream of items: [`ReplyStream`].
//!
//! `WorkerSet::send_stream` queues a job whose worker answers with any
//! number of items, then an end. Items are lossless and flow-controlled by
//! credit: the host grants the worker room for `stream_window` items, and
//! grants more as the caller takes them, so however fast the worker
//! produces, at most a window of items waits in the host's memory per
//! stream. The stream ends with the job's outcome: nothing more when it
//! ended normally, or one last error (the worker died, panicked, failed the
//! job, timed out, ...). Dropping the stream cancels the job: a queued job
//! is never sent, and a running one is told to stop (its worker's
//! `StreamSender::send` fails with `Cancelled`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use ipc2_common::codec::{decode_message, encode_raw_frame};
use ipc2_common::protocol::credit_payload;
use ipc2_common::sync::lock;
use ipc2_common::{FrameKind, Outbox};
use serde::de::DeserializeOwned;

use crate::blocking::block_on;
use crate::error::Error;
use crate::responder::Outcome;
use crate::shared::Shared;

/// What the caller's [`ReplyStream`] and the worker's side of the pool
/// share for one stream job.
pub(crate) struct StreamShared {
    /// Items the worker may have outstanding.
    window: u32,
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    items: VecDeque<Bytes>,
    /// The job's outcome, once it ended.
    end: Option<Outcome>,
    waker: Option<Waker>,
    /// Items the caller took since credit was last granted.
    taken: u32,
    /// The worker running the job, once one does: where credit and
    /// cancellation go, and who to name in a decode error.
    worker: Option<Running>,
    /// The caller dropped its stream.
    closed: bool,
}

struct Running {
    outbox: Outbox,
    job: u64,
    slot: usize,
    pid: u32,
}

impl StreamShared {
    pub(crate) fn new(window: u32) -> Arc<Self> {
        Arc::new(Self {
            window: window.max(1),
            state: Mutex::default(),
        })
    }

    /// Items the worker may send before it hears from the host.
    pub(crate) fn window(&self) -> u32 {
        self.window
    }

    fn state(&self) -> MutexGuard<'_, StreamState> {
        lock(&self.state)
    }

    /// A worker took the job: credit and cancellation go to it from now on.
    pub(crate) fn attach(&self, outbox: Outbox, job: u64, slot: usize, pid: u32) {
        self.state().worker = Some(Running {
            outbox,
            job,
            slot,
            pid,
        });
    }

    /// An item arrived (dropped if the caller is gone).
    pub(crate) fn push(&self, item: Bytes) {
        let mut state = self.state();
        if state.closed {
            return;
        }
        state.items.push_back(item);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The job ended; the first outcome counts.
    pub(crate) fn end(&self, outcome: Outcome) {
        let mut state = self.state();
        if state.end.is_some() {
            return;
        }
        state.end = Some(outcome);
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Whether the caller is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// The caller is gone: tell the worker to stop, if one runs the job.
    fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.items.clear();
        if state.end.is_none()
            && let Some(running) = &state.worker
        {
            send_to(running, FrameKind::Cancel, &[]);
        }
    }
}

fn send_to(running: &Running, kind: FrameKind, payload: &[u8]) {
    if let Ok(frame) = encode_raw_frame(kind, running.job, payload, usize::MAX) {
        let _ = running.outbox.send(frame);
    }
}

/// The items of a job answered by a stream, then its outcome; from
/// [`WorkerSet::send_stream`](crate::WorkerSet::send_stream).
///
/// Each item is `Ok(reply)`; a job that ends normally ends the stream
/// (`None`), one that fails ends it with one `Err` (then `None`). Read it
/// with [`next`](Self::next) or as a `futures_core::Stream` in async code,
/// and with [`next_blocking`](Self::next_blocking) or as an `Iterator` in
/// synchronous code. Dropping it cancels the job.
pub struct ReplyStream<W> {
    shared: Arc<StreamShared>,
    /// For counting the outcome in the pool's stats.
    pool: Arc<Shared>,
    done: bool,
    _reply: PhantomData<fn() -> W>,
}

impl<W> ReplyStream<W> {
    pub(crate) fn new(shared: Arc<StreamShared>, pool: Arc<Shared>) -> Self {
        Self {
            shared,
            pool,
            done: false,
            _reply: PhantomData,
        }
    }

    /// Items received and not yet taken (never more than the window).
    pub fn buffered(&self) -> usize {
        self.shared.state().items.len()
    }
}

impl<W: DeserializeOwned> ReplyStream<W> {
    /// The next item, the job's error, or `None` once the stream is over.
    pub async fn next(&mut self) -> Option<Result<W, Error>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<W, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let shared = &self.shared;
        let mut state = shared.state();
        if let Some(item) = state.items.pop_front() {
            state.taken += 1;
            // Grant credit in batches of half a window, and not once the
            // job has ended.
            if state.taken >= shared.window.div_ceil(2) && state.end.is_none() {
                let granted = std::mem::take(&mut state.taken);
                if let Some(running) = &state.worker {
                    send_to(running, FrameKind::Credit, &credit_payload(granted));
                }
            }
            let (slot, pid) = state
                .worker
                .as_ref()
                .map_or((0, 0), |running| (running.slot, running.pid));
            drop(state);
            let item = decode_message(&item).map_err(|source| Error::Decode {
                worker: slot,
                pid,
                source,
            });
            if item.is_err() {
                // The types disagree: every item would fail alike. This
                // error is the stream's outcome.
                self.done = true;
                self.shared.close();
                self.pool.counters.record(&item);
            }
            return Poll::Ready(Some(item));
        }
        match state.end.take() {
            Some(outcome) => {
                drop(state);
                self.done = true;
                let outcome = outcome.map(drop);
                self.pool.counters.record(&outcome);
                Poll::Ready(outcome.err().map(Err))
            }
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<W: DeserializeOwned> ReplyStream<W> {
    /// [`next`](Self::next) for synchronous code: blocks the thread until
    /// the next item or the end. It may block outside any runtime and on a
    /// multi-thread runtime; on a current-thread runtime the wait is refused
    /// with [`Error::BlockingInRuntime`] (use `next().await` there).
    pub fn next_blocking(&mut self) -> Option<Result<W, Error>> {
        let next = std::future::poll_fn(|cx| self.poll_item(cx));
        block_on("ReplyStream::next_blocking", None, next)
            .unwrap_or_else(|refused| Some(Err(refused)))
    }
}

/// Iterates a stream from synchronous code with
/// [`next_blocking`](ReplyStream::next_blocking).
impl<W: DeserializeOwned> Iterator for ReplyStream<W> {
    type Item = Result<W, Error>;

    fn next(&mut self) -> Option<Result<W, Error>> {
        self.next_blocking()
    }
}

impl<W: DeserializeOwned> futures_core::Stream for ReplyStream<W> {
    type Item = Result<W, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl<W> Drop for ReplyStream<W> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.close();
        }
    }
}

impl<W> std::fmt::Debug for ReplyStream<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("window", &self.shared.window)
            .field("buffered", &self.buffered())
            .field("done", &self.done)
            .finish()
    }
}
