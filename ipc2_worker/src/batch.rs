//! Answers to the jobs of a batch, gathered into few frames.
//!
//! When the host sends several jobs in one `JobBatch` frame, the receiver
//! hands them out one by one as usual, and each job's [`ReplySender`]
//! answers into the batch's [`Collector`] instead of a frame of its own.
//! The collector sends what it gathered as one `ReplyBatch` frame when every
//! job of the batch is answered, when the frame grows large, whenever the
//! receiver is about to wait for more jobs (so answers never wait for jobs
//! that are not there yet) or goes away, and at the latest about
//! [`FLUSH_AFTER`] after the first answer it holds (the connection's
//! [`Ticker`] sends them): a job that runs long (or hangs, or crashes the
//! worker) does not hold back, or take down with it, the answers of the
//! jobs before it. A reply that holds shared
//! bodies goes in a frame of its own, with their table, as it would outside
//! a batch.
//!
//! [`ReplySender`]: crate::job::ReplySender

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ipc2_common::codec::batch::ReplyBatchWriter;
use ipc2_common::codec::{Prepared, prepare};
use ipc2_common::shm::Link;
use ipc2_common::sync::lock;
use ipc2_common::{CodecError, FrameKind, Outbox};
use serde::Serialize;

use crate::error::unencodable;

/// A frame of answers is sent once it holds this many bytes, even if more
/// answers of its batch are to come.
const FLUSH_BYTES: usize = 64 * 1024;
/// An answer waits at most this long for others to join it.
const FLUSH_AFTER: Duration = Duration::from_millis(1);

/// Gathers the answers to one batch of jobs.
pub(crate) struct Collector {
    state: Mutex<State>,
    outbox: Outbox,
    /// Jobs in the batch.
    jobs: u32,
    /// Sends answers that would wait too long.
    ticker: Arc<Ticker>,
    /// The connection's shared-memory link, if it has one.
    link: Option<Arc<Link>>,
}

struct State {
    writer: ReplyBatchWriter,
    /// Jobs answered so far, here or in frames of their own.
    answered: u32,
}

impl Collector {
    /// The collector of the batch whose first job is `batch_id`.
    pub(crate) fn new(
        batch_id: u64,
        jobs: u32,
        outbox: Outbox,
        max_frame_length: usize,
        ticker: Arc<Ticker>,
    ) -> Self {
        let link = outbox.link();
        Self {
            link,
            state: Mutex::new(State {
                writer: ReplyBatchWriter::new(batch_id, max_frame_length),
                answered: 0,
            }),
            outbox,
            jobs,
            ticker,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Answers job `index` with `reply`, which holds no shared bodies:
    /// `Ok(false)`, answering nothing, when the reply is too large to share
    /// a frame with others (it may still fit a frame of its own). Fails
    /// when the reply cannot be encoded; the job is then answered with
    /// `JobFailed` saying so.
    pub(crate) fn reply<T: Serialize + ?Sized>(
        self: &Arc<Self>,
        index: u32,
        reply: &Prepared<'_, T>,
    ) -> Result<bool, CodecError> {
        let mut state = self.state();
        if !state.writer.could_fit(reply.size()) {
            return Ok(false);
        }
        self.make_room(&mut state, reply.size());
        if let Err(error) = state.writer.push_message(index, FrameKind::Reply, reply) {
            drop(state);
            self.raw(index, FrameKind::JobFailed, unencodable(&error).as_bytes());
            return Err(error);
        }
        self.answered(state);
        Ok(true)
    }

    /// Answers job `index` with a frame kind and a short payload (cut to
    /// fit a frame, which only an absurdly small frame limit needs).
    pub(crate) fn raw(self: &Arc<Self>, index: u32, kind: FrameKind, payload: &[u8]) {
        let mut state = self.state();
        let mut payload = payload;
        while !state.writer.could_fit(payload.len()) && !payload.is_empty() {
            payload = &payload[..payload.len() / 2];
        }
        self.make_room(&mut state, payload.len());
        state.writer.push_raw(index, kind, payload);
        self.answered(state);
    }

    /// Answers job `index` with a message of `kind` (a panic's report),
    /// `false` if it cannot fit in a frame.
    pub(crate) fn message<T: Serialize>(
        self: &Arc<Self>,
        index: u32,
        kind: FrameKind,
        message: &T,
    ) -> bool {
        let Ok(prepared) = prepare(message, false, None) else {
            return false;
        };
        let mut state = self.state();
        if !state.writer.could_fit(prepared.size()) {
            return false;
        }
        self.make_room(&mut state, prepared.size());
        if state.writer.push_message(index, kind, &prepared).is_err() {
            return false;
        }
        self.answered(state);
        true
    }

    /// A job of the batch was answered in a frame of its own.
    pub(crate) fn answered_alone(self: &Arc<Self>) {
        let state = self.state();
        self.answered(state);
    }

    /// The connection's shared-memory link, if it has one.
    pub(crate) fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    /// Sends the answers gathered so far.
    pub(crate) fn flush(&self) {
        self.send_held(self.state());
    }

    /// Sends the answers `state` holds, if any, once its lock is released.
    fn send_held(&self, mut state: MutexGuard<'_, State>) {
        if state.writer.answers() > 0 {
            let frame = state.writer.take();
            drop(state);
            let _ = self.outbox.send(frame);
        }
    }

    /// Whether every job of the batch has been answered (and sent).
    pub(crate) fn is_done(&self) -> bool {
        self.state().answered >= self.jobs
    }

    /// Sends what is gathered if an answer of `size` bytes would not fit
    /// behind it.
    fn make_room(&self, state: &mut State, size: usize) {
        if !state.writer.fits(size) && state.writer.answers() > 0 {
            let _ = self.outbox.send(state.writer.take());
        }
    }

    /// Counts an answer, and sends the frame when the batch is complete or
    /// the frame large; the first answer of a frame is handed to the
    /// ticker, which sends it at the latest.
    fn answered(self: &Arc<Self>, mut state: MutexGuard<'_, State>) {
        state.answered += 1;
        let complete = state.answered >= self.jobs;
        let held = state.writer.answers();
        if complete || state.writer.bytes() >= FLUSH_BYTES {
            self.send_held(state);
        } else if held == 1 {
            drop(state);
            self.ticker.watch(Arc::downgrade(self));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // The last sender of a batch whose receiver is gone: what it
        // answered still goes out.
        self.flush();
    }
}

/// Sends, about every [`FLUSH_AFTER`], the answers that collectors of one
/// connection hold. Its task runs only while some collector holds answers,
/// so an idle worker has no timer running; under load it costs one wake-up
/// per tick rather than one per frame.
pub(crate) struct Ticker {
    state: Mutex<TickerState>,
    /// The connection's runtime, whose timer drives the ticks.
    runtime: tokio::runtime::Handle,
}

#[derive(Default)]
struct TickerState {
    /// Collectors that held answers at their last look.
    watched: Vec<Weak<Collector>>,
    /// Whether the ticking task runs.
    running: bool,
}

impl Ticker {
    /// A ticker on `runtime` (the connection's, which has a timer: the
    /// handshake used it).
    pub(crate) fn new(runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            runtime,
        })
    }

    fn state(&self) -> MutexGuard<'_, TickerState> {
        lock(&self.state)
    }

    /// Sends what `collector` holds at the next tick.
    fn watch(self: &Arc<Self>, collector: Weak<Collector>) {
        let mut state = self.state();
        state.watched.push(collector);
        if !state.running {
            state.running = true;
            drop(state);
            let ticker = Arc::clone(self);
            self.runtime.spawn(async move { ticker.run().await });
        }
    }

    async fn run(&self) {
        loop {
            tokio::time::sleep(FLUSH_AFTER).await;
            let watched = {
                let mut state = self.state();
                if state.watched.is_empty() {
                    state.running = false;
                    return;
                }
                std::mem::take(&mut state.watched)
            };
            for collector in watched.iter().filter_map(Weak::upgrade) {
                collector.flush();
            }
        }
    }
}
