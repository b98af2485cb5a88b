//! Moving frames over a byte stream.
//!
//! [`FrameReader`] turns the read half of a connection into a sequence of
//! [`Frame`]s; [`write_frames`] drains a queue of encoded frames into the
//! write half, writing whatever is ready in one batch instead of one system
//! call per frame. Frames reach the writer through an [`Outbox`]. Host and
//! worker use the same pieces.
//!
//! On a connection that passes descriptors, [`share_memory`] gives both a
//! shared-memory [`Link`]: the reader's codec then takes in the peer's
//! regions and checks its handles, and the outbox queues the region
//! descriptors (each sent with `sendmsg` between two frames), the releases,
//! and lends each job's bodies to the connection it is queued on.

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::Notify;
use tokio_util::codec::Decoder;

use crate::codec::{FrameCodec, encode_control};
use crate::descriptors::Descriptors;
use crate::error::CodecError;
use crate::protocol::Frame;
use crate::shm::{Control, ControlSink, Lent, Link, Side};

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

impl<R> FrameReader<R> {
    /// The codec, e.g. to raise the frame limit after a handshake.
    pub fn codec_mut(&mut self) -> &mut FrameCodec {
        &mut self.codec
    }

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
/// it queued is on the wire ([`Outbox::flushed`]).
#[derive(Clone, Debug)]
pub struct Outbox(Arc<SenderHandle>);

/// The writer's end of an [`Outbox`].
#[derive(Debug)]
pub struct OutboxReceiver(Arc<Shared>);

/// Dropping the last one closes the outbox.
#[derive(Debug)]
struct SenderHandle(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// The connection's shared-memory link, once it has one.
    link: OnceLock<Weak<Link>>,
    /// Frames arrived in an empty queue, or the last sender left.
    ready: Notify,
    closed: AtomicBool,
    /// Set (under the queue's lock) when the writer stops.
    writer_gone: AtomicBool,
    unwritten: AtomicUsize,
    /// `unwritten` reached zero, or the writer stopped.
    changed: Notify,
}

/// Frames waiting for the writer, and the descriptors some of them carry.
#[derive(Debug, Default)]
struct Queue {
    frames: Vec<Bytes>,
    /// `(index in frames, descriptor)`, in order.
    fds: Vec<(usize, OwnedFd)>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn append(&mut self, other: &mut Queue) {
        let base = self.frames.len();
        self.fds
            .extend(other.fds.drain(..).map(|(index, fd)| (index + base, fd)));
        self.frames.append(&mut other.frames);
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.fds.clear();
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }
}

impl Outbox {
    /// A new outbox and the receiver to hand to [`write_frames`].
    pub fn channel() -> (Self, OutboxReceiver) {
        let shared = Arc::new(Shared::default());
        (
            Self(Arc::new(SenderHandle(Arc::clone(&shared)))),
            OutboxReceiver(shared),
        )
    }

    /// Queues an encoded frame. Fails (giving the frame back) when the writer
    /// has stopped.
    pub fn send(&self, frame: Bytes) -> Result<(), Bytes> {
        self.push(frame, None)
    }

    /// Queues an encoded frame whose message names the shared-memory bodies
    /// in `lent`: they are lent to this connection first (and stay taken
    /// until the peer releases them or the connection ends).
    pub fn send_lending(&self, frame: Bytes, lent: &Lent) -> Result<(), Bytes> {
        if !lent.is_empty()
            && let Some(link) = self.link()
        {
            link.lend(lent);
        }
        self.push(frame, None)
    }

    /// The connection's shared-memory link, if it passes descriptors.
    pub fn link(&self) -> Option<Arc<Link>> {
        self.0.0.link.get().and_then(Weak::upgrade)
    }

    fn push(&self, frame: Bytes, fd: Option<OwnedFd>) -> Result<(), Bytes> {
        let shared = &self.0.0;
        let mut queue = shared.queue();
        if shared.writer_gone.load(Ordering::Acquire) {
            return Err(frame);
        }
        shared.unwritten.fetch_add(1, Ordering::AcqRel);
        let was_empty = queue.is_empty();
        if let Some(fd) = fd {
            let index = queue.frames.len();
            queue.fds.push((index, fd));
        }
        queue.frames.push(frame);
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
}

impl ControlSink for Outbox {
    fn send_control(&self, side: Side, control: Control, fd: Option<OwnedFd>) {
        let _ = self.push(encode_control(side, control), fd);
    }
}

/// Gives the connection of `outbox` and `reader` shared memory, if
/// `descriptors` lets it pass descriptors: a [`Link`] that `reader`'s codec
/// checks the peer's frames against and `outbox` lends bodies to. This
/// process's regions are queued for the peer at once. The peer may map at
/// most `limit` bytes of its regions here. Call it after the handshake.
pub fn share_memory<R>(
    side: Side,
    outbox: &Outbox,
    reader: &mut FrameReader<R>,
    descriptors: Option<Arc<dyn Descriptors>>,
    limit: usize,
) {
    let Some(descriptors) = descriptors else {
        return;
    };
    let link = Link::open(side, descriptors, Arc::new(outbox.clone()), limit);
    let _ = outbox.0.0.link.set(Arc::downgrade(&link));
    reader.codec_mut().set_link(link);
}

/// Writes every frame queued in the outbox to `writer` until all senders
/// are gone and their frames written, then shuts the write side down.
/// Frames that are ready together go out in one vectored write: one system
/// call for the batch, and no copy of any frame, however large.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    outbox: OutboxReceiver,
    writer: W,
) -> std::io::Result<()> {
    write_frames_passing(outbox, writer, None).await
}

/// [`write_frames`] on a connection that passes descriptors: a frame queued
/// with one is sent with `sendmsg` through `descriptors`, between frames.
pub async fn write_frames_passing<W: AsyncWrite + Unpin>(
    outbox: OutboxReceiver,
    mut writer: W,
    descriptors: Option<Arc<dyn Descriptors>>,
) -> std::io::Result<()> {
    let shared = outbox.0;
    // A multi-thread runtime runs a freshly woken task next (its "LIFO
    // slot"), so this task, woken by the first frame, would write it alone
    // before the tasks about to queue more get to run: one system call per
    // frame. There, yield once to let them queue theirs into this write. A
    // current-thread runtime already runs it after them, and a yield would
    // only cost an extra turn of its I/O driver.
    let coalesce = tokio::runtime::Handle::try_current()
        .is_ok_and(|runtime| runtime.runtime_flavor() == RuntimeFlavor::MultiThread);
    let mut ready = Queue::default();
    let result = async {
        loop {
            loop {
                let arrived = shared.ready.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                std::mem::swap(&mut *shared.queue(), &mut ready);
                if !ready.is_empty() {
                    break;
                }
                if shared.closed.load(Ordering::Acquire) {
                    return writer.shutdown().await;
                }
                arrived.await;
            }
            if coalesce && ready.frames.len() < WRITE_BATCH {
                tokio::task::yield_now().await;
                ready.append(&mut shared.queue());
            }
            write_queue(&mut writer, &mut ready, descriptors.as_deref()).await?;
            let written = ready.frames.len();
            ready.clear();
            if shared.unwritten.fetch_sub(written, Ordering::AcqRel) == written {
                shared.changed.notify_waiters();
            }
        }
    }
    .await;
    {
        let mut queue = shared.queue();
        shared.writer_gone.store(true, Ordering::Release);
        queue.clear();
    }
    shared.changed.notify_waiters();
    result
}

/// Writes the frames of `queue`, each that carries a descriptor on its own
/// with the descriptor attached, the rest in vectored batches.
async fn write_queue<W: AsyncWrite + Unpin>(
    writer: &mut W,
    queue: &mut Queue,
    descriptors: Option<&dyn Descriptors>,
) -> std::io::Result<()> {
    let mut start = 0;
    for (index, fd) in queue.fds.drain(..) {
        for frames in queue.frames[start..index].chunks(MAX_IOVECS) {
            write_all_vectored(writer, frames).await?;
        }
        let frame = &queue.frames[index];
        let mut sent = 0;
        if let Some(descriptors) = descriptors {
            let fds = [fd.as_fd()];
            sent = std::future::poll_fn(|cx| descriptors.poll_send_with(cx, frame, &fds)).await?;
            if sent == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
        }
        writer.write_all(&frame[sent..]).await?;
        start = index + 1;
    }
    for frames in queue.frames[start..].chunks(MAX_IOVECS) {
        write_all_vectored(writer, frames).await?;
    }
    Ok(())
}

/// Writes all of `frames` with as few vectored writes as the stream allows.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frames: &[Bytes],
) -> std::io::Result<()> {
    if let [frame] = frames {
        return writer.write_all(frame).await;
    }
    let mut slices: Vec<IoSlice<'_>> = frames.iter().map(|frame| IoSlice::new(frame)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        let written = writer.write_vectored(remaining).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut remaining, written);
    }
    Ok(())
}
