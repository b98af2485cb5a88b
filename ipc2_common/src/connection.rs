//! Moving frames over a byte stream.
//!
//! [`FrameReader`] turns the read half of a connection into a sequence of
//! [`Frame`]s; [`write_frames`] drains a queue of encoded frames into the
//! write half, writing whatever is ready in one batch instead of one system
//! call per frame. Frames reach the writer through an [`Outbox`], which can
//! also be flushed synchronously by a process about to die (a worker whose
//! job panicked), so its last words reach the host. Host and worker use the
//! same pieces.
//!
//! On a connection that passes descriptors, [`share_memory`] gives both a
//! shared-memory [`Link`]: the reader's codec then takes in the peer's
//! regions and checks its handles, and the outbox queues the region
//! descriptors (each sent with `sendmsg`, between two frames), the releases,
//! and lends each job's bodies to the connection it is queued on.

use std::fmt;
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

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
use crate::sync::lock;

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
/// Largest frame a sender writes itself (see [`Outbox::direct_writes`]):
/// a larger one goes to the writer task, whose wake-up costs little beside
/// copying it, so that a sender (the host's, under its routing lock) never
/// spends long in a write, and a write that would block is rare.
const DIRECT_MAX: usize = 64 * 1024;
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

impl<R> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buffer.len())
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl<R> FrameReader<R> {
    /// The codec, e.g. to raise the frame limit after a handshake.
    pub fn codec_mut(&mut self) -> &mut FrameCodec {
        &mut self.codec
    }

    /// The next frame if it is already buffered whole, without reading: a
    /// burst that arrived in one read can be filed together. A malformed
    /// frame is left for the next [`FrameReader::next`] to report.
    pub fn next_buffered(&mut self) -> Option<Frame> {
        self.codec.decode(&mut self.buffer).ok().flatten()
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
            let Some(frame) = self.next_buffered() else {
                break;
            };
            frames.push(frame);
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
    queue: Mutex<Queue>,
    /// Passes the descriptors some frames carry, if the transport can.
    descriptors: Option<Arc<dyn Descriptors>>,
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
    /// The write half while nobody writes to it. Whoever writes takes it
    /// first (the writer task, a synchronous flush, or a sender writing
    /// directly) and puts it back after, so frames go out whole and in
    /// order.
    sink: Mutex<Option<BoxedWriter>>,
    /// Whether a frame that finds the queue empty is written by its sender
    /// right away when nobody else is writing (see
    /// [`Outbox::direct_writes`]).
    direct: AtomicBool,
    /// More frames are about to follow (see [`Outbox::more_coming`]): leave
    /// them to the writer task, which writes them together.
    more_coming: AtomicBool,
    /// Who said so: frames it queues meanwhile are held (see
    /// [`Outbox::more_coming`]). [`Holder::NOBODY`] when nobody did.
    holder: AtomicHolder,
    /// Queued frames are held: no writer has been woken for them, and
    /// only a later frame or [`Outbox::release`] sends them.
    held: AtomicBool,
}

/// Code that queues frames: a thread, and the task on it (none for a
/// runtime's `block_on`). Frames the receiving loop of a worker queues
/// between two jobs read together may be held; those of other tasks never
/// are, so a task that answers while the loop computes is not held up.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Holder {
    /// The thread's number (see `THREAD_NUMBER`), 0 for nobody.
    thread: u64,
    /// The task's id as a number, 0 outside a task.
    task: u64,
}

/// The number the next thread that queues a frame gets.
static NEXT_THREAD_NUMBER: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's number: never reused, and cheaper to read than a
    /// `ThreadId` (which clones the thread's handle).
    static THREAD_NUMBER: u64 = NEXT_THREAD_NUMBER.fetch_add(1, Ordering::Relaxed);
}

impl Holder {
    const NOBODY: Self = Self { thread: 0, task: 0 };

    fn current() -> Self {
        Self {
            thread: THREAD_NUMBER.with(|number| *number),
            task: tokio::task::try_id().map_or(0, |id| {
                // `Id` offers no number, but hashes as one.
                let mut number = TaskNumber(0);
                std::hash::Hash::hash(&id, &mut number);
                number.0
            }),
        }
    }
}

/// Takes the number a task id hashes as (any other input is folded in).
struct TaskNumber(u64);

impl std::hash::Hasher for TaskNumber {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, number: u64) {
        self.0 = number;
    }
}

/// A [`Holder`] that can be read and changed without a lock: only the
/// holder itself sets it, and a reader that is not the holder never
/// matches, whatever it reads.
#[derive(Default)]
struct AtomicHolder {
    thread: AtomicU64,
    task: AtomicU64,
}

impl AtomicHolder {
    fn is(&self, holder: Holder) -> bool {
        self.thread.load(Ordering::Relaxed) == holder.thread
            && self.task.load(Ordering::Relaxed) == holder.task
    }

    fn set(&self, holder: Holder) {
        self.thread.store(holder.thread, Ordering::Relaxed);
        self.task.store(holder.task, Ordering::Relaxed);
    }
}

/// Frames waiting for the writer, and the descriptors some of them carry.
#[derive(Default)]
struct Queue {
    frames: Vec<Bytes>,
    /// `(index in frames, descriptor)`, in order.
    fds: Vec<(usize, OwnedFd)>,
}

impl Queue {
    fn clear(&mut self) {
        self.frames.clear();
        self.fds.clear();
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
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
        Self::channel_passing(writer, None)
    }

    /// [`Outbox::channel`] on a connection that passes descriptors with
    /// `descriptors`: a frame queued with one is sent with it attached.
    pub fn channel_passing(
        writer: BoxedWriter,
        descriptors: Option<Arc<dyn Descriptors>>,
    ) -> (Self, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            descriptors,
            link: OnceLock::new(),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            writer_gone: AtomicBool::new(false),
            unwritten: AtomicUsize::new(0),
            changed: Notify::new(),
            sink: Mutex::new(Some(writer)),
            direct: AtomicBool::new(false),
            more_coming: AtomicBool::new(false),
            holder: AtomicHolder::default(),
            held: AtomicBool::new(false),
        });
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
        if !lent.is_empty() {
            if let Some(link) = self.link() {
                link.lend(lent);
            }
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
        let was_empty = queue.frames.is_empty();
        let small = frame.len() <= DIRECT_MAX;
        let has_fd = fd.is_some();
        if let Some(fd) = fd {
            let index = queue.frames.len();
            queue.fds.push((index, fd));
        }
        queue.frames.push(frame);
        let writes_directly = shared.direct.load(Ordering::Relaxed);
        let coming = shared.more_coming.load(Ordering::Relaxed);
        if writes_directly && coming && small && !has_fd && self.held_here() {
            // Goes out with the frames that follow it (see `more_coming`).
            shared.held.store(true, Ordering::Relaxed);
            return Ok(());
        }
        // Frames held so far now go with this one, whoever writes it.
        let was_held = shared.held.swap(false, Ordering::Relaxed);
        drop(queue);
        // Written here and now (with any frames queued before it) when
        // senders write directly and no more are coming; otherwise the
        // writer task, woken by the first frame of a batch, takes them.
        let direct = small && writes_directly && !coming;
        // A direct write that left frames (the socket was full, or someone
        // else was writing) wakes the writer task even if the queue was not
        // empty: its earlier wake-up may already have found the queue taken
        // by this write, and gone back to sleep. So does a frame behind held
        // ones, for which no wake-up is pending.
        if !(direct && self.try_write_now()) && (was_empty || direct || was_held) {
            shared.ready.notify_one();
        }
        Ok(())
    }

    /// Whether the caller is the code that said more frames are coming.
    fn held_here(&self) -> bool {
        self.0.0.holder.is(Holder::current())
    }

    /// Sends the frames [`more_coming`](Self::more_coming) held, from this
    /// thread if nobody else is writing and the socket takes them, else
    /// through the writer task. Whoever waits for the peer calls this first.
    pub fn release(&self) {
        let shared = &self.0.0;
        if !shared.held.swap(false, Ordering::Relaxed) {
            return;
        }
        if !self.try_write_now() {
            shared.ready.notify_one();
        }
    }

    /// Says whether more frames are about to follow this one (a worker
    /// that has more jobs already read, whose answers come next): then,
    /// even with [`direct_writes`](Self::direct_writes), frames go out
    /// together, rather than one system call each. Those that the caller
    /// (this thread and task) queues itself, of at most 64 KiB and without
    /// descriptors, are held: they go out with the first frame it queues
    /// after `more_coming(false)`, or at [`release`](Self::release), from
    /// its own thread, so that a worker answering in its receiving loop
    /// wakes no writer task (on a multi-thread runtime, another thread)
    /// per batch. Other frames go to the writer task, with any held ones.
    pub fn more_coming(&self, more: bool) {
        let shared = &self.0.0;
        shared.more_coming.store(more, Ordering::Relaxed);
        let holder = match more {
            true => Holder::current(),
            false => Holder::NOBODY,
        };
        if !shared.holder.is(holder) {
            shared.holder.set(holder);
        }
    }

    /// Lets senders write their frames themselves: a frame (of at most
    /// 64 KiB) queued while nothing else is queued or being written, and
    /// no more are coming ([`more_coming`](Self::more_coming)), goes to the
    /// socket from the sender's own thread at once (one non-blocking write), instead of
    /// waking the writer task, which takes over only when the socket does
    /// not take it all. That saves a task wake-up, and often a thread's,
    /// per frame when frames come one at a time (a worker answering one
    /// job at a time); under load frames queue for the writer task, to be
    /// written together as before.
    pub fn direct_writes(&self, enabled: bool) {
        self.0.0.direct.store(enabled, Ordering::Relaxed);
    }

    /// Writes what is queued from this thread if nobody else is writing,
    /// without blocking; returns whether all of it went out. What the
    /// socket did not take goes back to the head of the queue, for the
    /// writer task.
    fn try_write_now(&self) -> bool {
        let shared = &self.0.0;
        let Some(mut writer) = shared.sink.try_lock().ok().and_then(|mut sink| sink.take()) else {
            return false;
        };
        let mut queue = std::mem::take(&mut *shared.queue());
        let written = if queue.fds.is_empty() {
            let mut cx = Context::from_waker(Waker::noop());
            let mut batches = Batches::new(&queue, None);
            match batches.poll_write(&mut writer, &mut cx) {
                Poll::Ready(Ok(())) => None,
                // Left for the writer task, which also meets any error.
                Poll::Ready(Err(_)) | Poll::Pending => Some((batches.done, batches.offset)),
            }
        } else {
            // Descriptors go with the writer task's `sendmsg`.
            Some((0, 0))
        };
        let all = written.is_none();
        let (done, offset) = written.unwrap_or((queue.frames.len(), 0));
        if !all {
            let mut rest: Vec<Bytes> = queue.frames.drain(done..).collect();
            if let Some(first) = rest.first_mut().filter(|_| offset > 0) {
                *first = first.slice(offset..);
            }
            let fds: Vec<(usize, OwnedFd)> = queue
                .fds
                .drain(..)
                .map(|(index, fd)| (index - done, fd))
                .collect();
            let mut pending = shared.queue();
            let behind = rest.len();
            pending.frames.splice(0..0, rest);
            for (index, _) in &mut pending.fds {
                *index += behind;
            }
            pending.fds.splice(0..0, fds);
        }
        *lock(&shared.sink) = Some(writer);
        shared.written(done);
        all
    }

    /// Resolves once every frame queued so far has been written, or the
    /// writer has stopped.
    pub async fn flushed(&self) {
        self.release();
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
        let queue = std::mem::take(&mut *shared.queue());
        let mut cx = Context::from_waker(Waker::noop());
        let mut batches = Batches::new(&queue, shared.descriptors.as_deref());
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
        shared.written(queue.frames.len());
        true
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
    let mut ready = Queue::default();
    loop {
        loop {
            let arrived = shared.ready.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let queued = shared.queue().frames.len();
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
        let mut batches = Batches::new(&ready, shared.descriptors.as_deref());
        let result = std::future::poll_fn(|cx| batches.poll_write(&mut writer, cx)).await;
        *lock(&shared.sink) = Some(writer);
        result?;
        shared.written(ready.frames.len());
        ready.clear();
    }
}

/// Frames being written with as few vectored writes as the stream allows
/// (at most [`MAX_IOVECS`] buffers per call): the one write loop behind both
/// the writer task and [`Outbox::flush_blocking`]. A frame that carries a
/// descriptor starts a write of its own, with the descriptor attached.
struct Batches<'a> {
    frames: &'a [Bytes],
    fds: &'a [(usize, OwnedFd)],
    descriptors: Option<&'a dyn Descriptors>,
    /// Frames fully written.
    done: usize,
    /// Bytes of the next frame already written.
    offset: usize,
    /// Descriptors sent.
    sent: usize,
}

impl<'a> Batches<'a> {
    fn new(queue: &'a Queue, descriptors: Option<&'a dyn Descriptors>) -> Self {
        Self {
            frames: &queue.frames,
            // Without descriptor passing they cannot go: dropped (closed).
            fds: if descriptors.is_some() {
                &queue.fds
            } else {
                &[]
            },
            descriptors,
            done: 0,
            offset: 0,
            sent: 0,
        }
    }

    /// Sends the start of frame `done` with the next descriptor attached.
    fn poll_send_descriptor(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (Some(descriptors), Some((_, fd))) = (self.descriptors, self.fds.get(self.sent)) else {
            return Poll::Ready(Ok(()));
        };
        let frame = &self.frames[self.done];
        let written = ready!(descriptors.poll_send_with(cx, frame, &[fd.as_fd()]))?;
        if written == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        self.sent += 1;
        self.offset = written;
        if written == frame.len() {
            self.done += 1;
            self.offset = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes until every frame is out (`Ready(Ok)`), the stream fails, or
    /// it would block (`Pending`, with `cx`'s waker registered).
    fn poll_write(
        &mut self,
        writer: &mut BoxedWriter,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.done < self.frames.len() {
            let next_fd = self.fds.get(self.sent).map(|&(index, _)| index);
            if next_fd == Some(self.done) && self.offset == 0 {
                ready!(self.poll_send_descriptor(cx))?;
                continue;
            }
            let end = self.frames.len().min(self.done + MAX_IOVECS).min(
                next_fd
                    .filter(|&index| index > self.done)
                    .unwrap_or(usize::MAX),
            );
            let pending = &self.frames[self.done..end];
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;

    /// An outbox whose senders write directly, its writer task running,
    /// and the peer's end.
    fn direct_outbox() -> (Outbox, DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let (outbox, receiver) = Outbox::channel(Box::new(ours));
        outbox.direct_writes(true);
        tokio::spawn(write_frames(receiver));
        (outbox, theirs)
    }

    /// [`direct_outbox`] with its writer task parked, waiting to be woken
    /// (a writer that is already running takes whatever is queued).
    async fn parked_direct_outbox() -> (Outbox, DuplexStream) {
        let parts = direct_outbox();
        writer_runs().await;
        parts
    }

    /// What the peer can read now, without waiting.
    fn arrived(peer: &mut DuplexStream) -> Vec<u8> {
        let mut buf = [0; 64];
        let mut read = tokio::io::ReadBuf::new(&mut buf);
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(peer).poll_read(&mut cx, &mut read) {
            Poll::Ready(Ok(())) => read.filled().to_vec(),
            Poll::Ready(Err(error)) => panic!("{error}"),
            Poll::Pending => Vec::new(),
        }
    }

    /// Lets the writer task run (on the test's current-thread runtime).
    async fn writer_runs() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn frames_the_caller_queues_while_more_come_are_held_then_go_together() {
        let (outbox, mut peer) = parked_direct_outbox().await;
        outbox.more_coming(true);
        outbox.send(Bytes::from_static(b"one ")).unwrap();
        outbox.send(Bytes::from_static(b"two ")).unwrap();
        writer_runs().await;
        assert!(arrived(&mut peer).is_empty(), "held frames were written");
        outbox.more_coming(false);
        outbox.send(Bytes::from_static(b"three")).unwrap();
        // Written by `send` itself, before any task ran.
        assert_eq!(arrived(&mut peer), b"one two three");
    }

    #[tokio::test]
    async fn release_sends_what_is_held() {
        let (outbox, mut peer) = parked_direct_outbox().await;
        outbox.more_coming(true);
        outbox.send(Bytes::from_static(b"held")).unwrap();
        outbox.release();
        assert_eq!(arrived(&mut peer), b"held");
        // `flushed` releases too.
        outbox.send(Bytes::from_static(b" again")).unwrap();
        tokio::time::timeout(Duration::from_secs(10), outbox.flushed())
            .await
            .expect("flushed");
        assert_eq!(arrived(&mut peer), b" again");
    }

    #[tokio::test]
    async fn another_task_s_frame_is_not_held_and_takes_held_ones_along() {
        let (outbox, mut peer) = parked_direct_outbox().await;
        outbox.more_coming(true);
        outbox.send(Bytes::from_static(b"held ")).unwrap();
        let other = outbox.clone();
        tokio::spawn(async move { other.send(Bytes::from_static(b"other")).unwrap() })
            .await
            .unwrap();
        writer_runs().await;
        assert_eq!(arrived(&mut peer), b"held other");
    }
}
