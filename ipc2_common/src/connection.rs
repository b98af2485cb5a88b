//! Moving frames over a byte stream.
//!
//! [`FrameReader`] turns the read half of a connection into a sequence of
//! [`Frame`]s; [`write_frames`] drains a queue of encoded frames into the
//! write half, writing whatever is ready in one batch instead of one system
//! call per frame. Frames reach the writer through an [`Outbox`], which can
//! also be flushed synchronously by a process about to die (a worker whose
//! job panicked), so its last words reach the host. Host and worker use the
//! same pieces.

use std::fmt;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

use crate::codec::FrameCodec;
use crate::error::CodecError;
use crate::protocol::Frame;

/// Least free space offered to a read: enough to take many small frames at
/// once.
const READ_BUFFER: usize = 8 * 1024;
/// A frame being read may grow the buffer by up to this much before growth
/// is tied to the bytes already received: large enough that a 1 MiB body is
/// read into one buffer without regrowth copies, small enough that a length
/// prefix alone cannot make this side set aside the whole frame limit.
const GROWTH_FLOOR: usize = 1024 * 1024;
/// Below this many ready frames, a writer on a multi-thread runtime yields
/// once to let more arrive (see [`write_frames`]).
const WRITE_BATCH: usize = 256;
/// Most buffers handed to one vectored write (Linux allows 1024).
const MAX_IOVECS: usize = 512;

/// A read half of any transport, boxed so that the types holding it need not
/// be generic over the transport (a virtual call per read system call).
pub type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// A write half of any transport, boxed likewise.
pub type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Reads frames from a stream.
pub struct FrameReader<R> {
    reader: R,
    buffer: BytesMut,
    codec: FrameCodec,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `reader`, accepting frames up to the codec's limit.
    pub fn new(reader: R, codec: FrameCodec) -> Self {
        Self {
            reader,
            buffer: BytesMut::with_capacity(READ_BUFFER),
            codec,
        }
    }

    /// The codec, e.g. to raise the frame limit after a handshake.
    pub fn codec_mut(&mut self) -> &mut FrameCodec {
        &mut self.codec
    }

    /// The next frame; `Ok(None)` when the peer closed the stream cleanly
    /// between frames. A stream that ends inside a frame is
    /// [`CodecError::Truncated`].
    ///
    /// Cancel safe: a frame is never half-consumed by a dropped call.
    pub async fn next(&mut self) -> Result<Option<Frame>, CodecError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buffer)? {
                return Ok(Some(frame));
            }
            self.make_room();
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                return match self.buffer.len() {
                    0 => Ok(None),
                    buffered => Err(CodecError::Truncated { buffered }),
                };
            }
        }
    }
}

impl<R> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buffer.len())
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<R> FrameReader<R> {
    /// Collects `first` and the frames already buffered behind it (up to
    /// `max` in all) into `frames`, without reading: a burst of answers can
    /// then be settled together. A malformed frame in the buffer is left for
    /// the next [`FrameReader::next`] to report.
    pub fn take_ready<'a>(
        &mut self,
        first: Frame,
        frames: &'a mut Vec<Frame>,
        max: usize,
    ) -> &'a mut Vec<Frame> {
        frames.push(first);
        while frames.len() < max {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) | Err(_) => break,
            }
        }
        frames
    }

    /// Ensures the buffer has room for the next read without letting a peer
    /// make it allocate much more than it sends: a large frame grows the
    /// buffer geometrically with the bytes actually received (at most twice
    /// what has arrived, plus [`GROWTH_FLOOR`]), never past the frame's size,
    /// and in a fresh allocation of exactly that size (a plain `reserve`
    /// could double a large buffer past the frame limit).
    fn make_room(&mut self) {
        let buffered = self.buffer.len();
        let spare = self.buffer.capacity() - buffered;
        let missing = self.codec.missing(&self.buffer).unwrap_or(READ_BUFFER);
        if spare > 0 && spare >= missing.min(READ_BUFFER) {
            return;
        }
        let grow = missing.min(buffered.max(GROWTH_FLOOR)).max(READ_BUFFER);
        if buffered == 0 && grow == READ_BUFFER {
            // The common case: an empty buffer, small frames. `reserve`
            // takes the old allocation back when the frames cut from it are
            // gone, instead of allocating anew.
            self.buffer.reserve(READ_BUFFER);
            return;
        }
        let mut fresh = BytesMut::with_capacity(buffered + grow);
        fresh.extend_from_slice(&self.buffer);
        self.buffer = fresh;
    }
}

/// Where a connection's outgoing frames wait for the writer task.
///
/// Cheap to clone (one reference count); every clone feeds the same
/// [`write_frames`] task, which ends once every clone is gone and all their
/// frames are written. Frames queue in a plain vector behind a short lock:
/// the writer swaps the whole vector out in one step, and only the frame
/// that finds the queue empty wakes it. Besides queueing, the outbox counts
/// frames not yet written so that a side about to stop can wait until what
/// it queued is on the wire ([`Outbox::flushed`]), or, when no task can run
/// any more, write it from the calling thread ([`Outbox::flush_blocking`]).
#[derive(Clone)]
pub struct Outbox(Arc<SenderHandle>);

/// The writer's end of an [`Outbox`], to hand to [`write_frames`].
pub struct OutboxReceiver(Arc<Shared>);

/// Dropping the last one closes the outbox.
struct SenderHandle(Arc<Shared>);

struct Shared {
    queue: Mutex<Vec<Bytes>>,
    /// Frames arrived in an empty queue, or the last sender left.
    ready: Notify,
    closed: AtomicBool,
    /// Set (under the queue's lock) when the writer stops.
    writer_gone: AtomicBool,
    unwritten: AtomicUsize,
    /// `unwritten` reached zero, or the writer stopped.
    changed: Notify,
    /// The write half while nobody writes to it. Whoever writes takes it
    /// first (the writer task, or a synchronous flush) and puts it back
    /// after, so frames go out whole and in order.
    sink: Mutex<Option<BoxedWriter>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Vec<Bytes>> {
        lock(&self.queue)
    }

    /// Frames were written: count them off, and wake whoever waits for the
    /// queue to be flushed.
    fn written(&self, frames: usize) {
        if frames > 0 && self.unwritten.fetch_sub(frames, Ordering::AcqRel) == frames {
            self.changed.notify_waiters();
        }
    }

    /// The writer stopped for good: later frames are refused, queued ones
    /// dropped, and the write half closed.
    fn writer_stopped(&self) {
        {
            let mut queue = self.queue();
            self.writer_gone.store(true, Ordering::Release);
            queue.clear();
        }
        drop(lock(&self.sink).take());
        self.changed.notify_waiters();
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.0.0;
        f.debug_struct("Outbox")
            .field("unwritten", &shared.unwritten.load(Ordering::Relaxed))
            .field("writer_gone", &shared.writer_gone.load(Ordering::Relaxed))
            .finish()
    }
}

impl fmt::Debug for OutboxReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxReceiver").finish_non_exhaustive()
    }
}

impl Outbox {
    /// A new outbox writing to `writer`, and the receiver to hand to
    /// [`write_frames`].
    pub fn channel(writer: BoxedWriter) -> (Self, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
            unwritten: AtomicUsize::new(0),
            changed: Notify::new(),
            sink: Mutex::new(Some(writer)),
        });
        (
            Self(Arc::new(SenderHandle(Arc::clone(&shared)))),
            OutboxReceiver(shared),
        )
    }

    /// Queues an encoded frame. Fails (giving the frame back) when the writer
    /// has stopped.
    pub fn send(&self, frame: Bytes) -> Result<(), Bytes> {
        let shared = &self.0.0;
        let mut queue = shared.queue();
        if shared.writer_gone.load(Ordering::Acquire) {
            return Err(frame);
        }
        shared.unwritten.fetch_add(1, Ordering::AcqRel);
        let was_empty = queue.is_empty();
        queue.push(frame);
        drop(queue);
        if was_empty {
            shared.ready.notify_one();
        }
        Ok(())
    }

    /// Resolves once every frame queued so far has been written, or the
    /// writer has stopped.
    pub async fn flushed(&self) {
        let shared = &self.0.0;
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if shared.unwritten.load(Ordering::Acquire) == 0
                || shared.writer_gone.load(Ordering::Acquire)
            {
                return;
            }
            changed.await;
        }
    }

    /// Writes every queued frame from the calling thread, blocking it for at
    /// most `timeout`; returns whether they all went out.
    ///
    /// For a process about to die, whose runtime may never run the writer
    /// task again (a panic unwinding out of a worker's `main`). It waits for
    /// the writer task to finish a write it has begun, then polls the write
    /// half directly. Past the deadline (the peer stopped reading, or the
    /// writer task cannot finish without this thread), the write half is
    /// closed rather than left holding half a frame.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let shared = &self.0.0;
        let deadline = Instant::now() + timeout;
        let mut writer = loop {
            if let Some(writer) = lock(&shared.sink).take() {
                break writer;
            }
            if shared.writer_gone.load(Ordering::Acquire) || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let frames = std::mem::take(&mut *shared.queue());
        let mut cx = Context::from_waker(Waker::noop());
        let mut batches = Batches::new(&frames);
        let done = loop {
            match batches.poll_write(&mut writer, &mut cx) {
                Poll::Ready(result) => break result.is_ok(),
                Poll::Pending if Instant::now() >= deadline => break false,
                Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if !done {
            drop(writer);
            shared.writer_stopped();
            return false;
        }
        *lock(&shared.sink) = Some(writer);
        shared.written(frames.len());
        true
    }
}

/// Writes every frame queued in the outbox until all senders are gone and
/// their frames written, then shuts the write side down. Frames that are
/// ready together go out in one vectored write: one system call for the
/// batch, and no copy of any frame, however large.
pub async fn write_frames(outbox: OutboxReceiver) -> std::io::Result<()> {
    let shared = outbox.0;
    // However this task ends (an error, or cancelled with its runtime), later
    // frames must be refused rather than queued for nobody.
    struct Stopped<'a>(&'a Shared);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.writer_stopped();
        }
    }
    let _stopped = Stopped(&shared);
    // A multi-thread runtime runs a freshly woken task next (its "LIFO
    // slot"), so this task, woken by the first frame, would write it alone
    // before the tasks about to queue more get to run: one system call per
    // frame. There, yield once to let them queue theirs into this write. A
    // current-thread runtime already runs it after them, and a yield would
    // only cost an extra turn of its I/O driver.
    let coalesce = tokio::runtime::Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
    let mut ready: Vec<Bytes> = Vec::new();
    loop {
        loop {
            let arrived = shared.ready.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let queued = shared.queue().len();
            if queued > 0 {
                if coalesce && queued < WRITE_BATCH {
                    tokio::task::yield_now().await;
                }
                break;
            }
            if shared.closed.load(Ordering::Acquire) {
                let Some(mut writer) = lock(&shared.sink).take() else {
                    return Ok(());
                };
                return writer.shutdown().await;
            }
            arrived.await;
        }
        // A synchronous flush may hold the write half for a moment.
        let Some(mut writer) = lock(&shared.sink).take() else {
            tokio::task::yield_now().await;
            continue;
        };
        std::mem::swap(&mut *shared.queue(), &mut ready);
        let mut batches = Batches::new(&ready);
        let result = std::future::poll_fn(|cx| batches.poll_write(&mut writer, cx)).await;
        *lock(&shared.sink) = Some(writer);
        result?;
        shared.written(ready.len());
        ready.clear();
    }
}

/// Frames being written with as few vectored writes as the stream allows
/// (at most [`MAX_IOVECS`] buffers per call): the one write loop behind both
/// the writer task and [`Outbox::flush_blocking`].
struct Batches<'a> {
    frames: &'a [Bytes],
    /// Frames fully written.
    done: usize,
    /// Bytes of the next frame already written.
    offset: usize,
}

impl<'a> Batches<'a> {
    fn new(frames: &'a [Bytes]) -> Self {
        Self {
            frames,
            done: 0,
            offset: 0,
        }
    }

    /// Writes until every frame is out (`Ready(Ok)`), the stream fails, or
    /// it would block (`Pending`, with `cx`'s waker registered).
    fn poll_write(
        &mut self,
        writer: &mut BoxedWriter,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.done < self.frames.len() {
            let pending = &self.frames[self.done..self.frames.len().min(self.done + MAX_IOVECS)];
            let mut slices: Vec<IoSlice<'_>> = pending.iter().map(|f| IoSlice::new(f)).collect();
            let mut remaining = &mut slices[..];
            IoSlice::advance_slices(&mut remaining, self.offset);
            let written = match Pin::new(&mut *writer).poll_write_vectored(cx, remaining) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            };
            // Advance over whole frames, then into the next one.
            let mut left = self.offset + written;
            while let Some(frame) = self.frames.get(self.done) {
                if left < frame.len() {
                    break;
                }
                left -= frame.len();
                self.done += 1;
            }
            self.offset = left;
        }
        Pin::new(&mut *writer).poll_flush(cx)
    }
}
