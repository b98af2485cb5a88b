//! Passing file descriptors beside the byte stream: the optional capability
//! that lets large bodies travel through shared memory.
//!
//! A transport that can pass descriptors (a Unix socket, with
//! `SCM_RIGHTS`) hands out a [`Descriptors`] object next to its read and
//! write halves; one that cannot (TCP, TLS) simply has none, and bodies then
//! travel inline. For tokio's `UnixStream` this module provides halves of
//! its own: the read half receives with `recvmsg`, so descriptors that
//! arrive with the bytes are kept (in order) instead of being discarded by a
//! plain `read`, and the connection's writer task sends a descriptor with
//! `sendmsg` between two frames, never in the middle of one.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use crate::sync::lock;

/// Descriptors received with one read, at most. A peer never sends more
/// than one at a time; more is refused.
const MAX_PER_READ: usize = 4;
/// Descriptors received and not yet claimed by a frame, at most: a peer
/// that sends descriptors no frame uses cannot fill this process's table.
const MAX_PENDING: usize = 256;

/// Sends descriptors to the peer and hands out the ones it sent, in order.
pub trait Descriptors: Send + Sync + 'static {
    /// Writes some of `bytes` (at least one byte unless it fails) with `fds`
    /// attached to the first byte written. Called by the connection's writer
    /// only, between frames.
    fn poll_send_with(
        &self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>>;

    /// The oldest descriptor received and not taken yet.
    fn take_received(&self) -> Option<OwnedFd>;

    /// Keeps the socket registered for writing for good, as tokio's own
    /// sockets are, so that the peer reading a frame wakes this side's
    /// reactor. This module's socket halves do not by default: every read
    /// by the peer frees room to write, and a write registration turns
    /// each into a wake-up. That early, needless wake-up is a cheap warning
    /// on a host whose thread would otherwise sleep until the answer: with
    /// a few jobs in flight its answers are then read sooner (1 KiB echoes
    /// with 4 in flight 1.2-1.4x in A/B runs on the CI machine), at some
    /// cost when it is busy. Default: nothing.
    fn wake_on_peer_reads(&self) {}

    /// Takes the socket's reads off the reactor whenever its reader polls
    /// without a waker (spinning before it parks, see [`crate::spin`]), and
    /// puts them back when the reader next polls with a waker (to park). Registered, each frame the
    /// peer writes wakes a reactor thread, even while the reader is
    /// spinning on another thread and takes the frame itself (a worker
    /// whose loop runs on a multi-thread runtime's `block_on` thread): on a
    /// virtual machine that needless wake-up costs more than the frame.
    /// Default: nothing.
    fn unregister_while_spinning(&self) {}

    /// Reads only once the reactor reports the socket readable: no read
    /// is tried before the reader parks. That try catches bytes that came
    /// while this side was busy, where the peer runs on another CPU; on a
    /// single CPU the peer seldom runs before this side parks, and the try
    /// is an empty system call per wait. Default: nothing.
    fn read_only_when_reported(&self) {}
}

/// A Unix socket shared by its two halves and its [`Descriptors`], which
/// makes its own system calls (plain reads and writes, `sendmsg` and
/// `recvmsg`) and registers with tokio's reactor only to wait.
///
/// The socket is registered for reading only (and, with
/// [`Descriptors::unregister_while_spinning`], not while its reader
/// spins). A socket registered for writing too (as tokio's own are) has
/// its reactor woken every time the
/// peer *reads*, since each read frees room to write: one needless thread
/// wake-up per frame on each side, which on a virtual machine costs more
/// than the frame. Writes are tried directly instead; only a write that
/// would block registers a duplicate of the descriptor for writing
/// ([`Socket::writable`]), kept until a write goes through without waiting.
struct Socket {
    /// The read registration, of the socket's own descriptor: for good, or
    /// (with [`Descriptors::unregister_while_spinning`]) dropped while the
    /// reader spins and made again when it next polls with a waker.
    /// Declared before `stream`, so it is deregistered before the
    /// descriptor is closed.
    readable: Mutex<Option<AsyncFd<Registered>>>,
    /// The write registration, while writes are blocking (or for good,
    /// with [`Descriptors::wake_on_peer_reads`]).
    writable: Mutex<Option<AsyncFd<OwnedFd>>>,
    /// [`Descriptors::wake_on_peer_reads`] was called.
    keep_writable: AtomicBool,
    /// [`Descriptors::unregister_while_spinning`] was called.
    spinning_reader: AtomicBool,
    /// [`Descriptors::read_only_when_reported`] was called.
    reported_reads_only: AtomicBool,
    received: Mutex<VecDeque<OwnedFd>>,
    /// The runtime the connection was made in, whose reactor every
    /// registration goes to, whichever thread (in whichever runtime, or
    /// none) reads or writes.
    runtime: tokio::runtime::Handle,
    stream: StdUnixStream,
}

/// The socket's descriptor as its read registration names it; the socket
/// keeps it open for as long as the registration lives.
struct Registered(RawFd);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The read half of a [`unix_channel`].
pub struct UnixReader(Arc<Socket>);
/// The write half of a [`unix_channel`].
pub struct UnixWriter(Arc<Socket>);

/// Splits `stream` into halves that keep received descriptors, and the
/// [`Descriptors`] of the connection. Must be called inside a tokio
/// runtime.
pub fn unix_channel(
    stream: UnixStream,
) -> io::Result<(UnixReader, UnixWriter, Arc<dyn Descriptors>)> {
    let stream = stream.into_std()?;
    let socket = Arc::new(Socket {
        readable: Mutex::new(None),
        writable: Mutex::new(None),
        keep_writable: AtomicBool::new(false),
        spinning_reader: AtomicBool::new(false),
        reported_reads_only: AtomicBool::new(false),
        received: Mutex::new(VecDeque::new()),
        runtime: tokio::runtime::Handle::current(),
        stream,
    });
    *lock(&socket.readable) = Some(socket.register_reads()?);
    Ok((
        UnixReader(Arc::clone(&socket)),
        UnixWriter(Arc::clone(&socket)),
        socket,
    ))
}

impl Socket {
    fn received(&self) -> MutexGuard<'_, VecDeque<OwnedFd>> {
        lock(&self.received)
    }

    /// Runs `io` until it does not block: a read each time the socket is
    /// ready for reading, and once more whenever the reactor says it is not
    /// (bytes may have arrived that it has not reported yet: it runs on
    /// another thread, or not at all while this one is busy; a reader that
    /// spins briefly before parking, see `ipc2_worker`'s inbound, only sees
    /// them this way), unless [`Descriptors::read_only_when_reported`] was
    /// called; a write at once, and again each time the socket has
    /// room, which needs a write registration only once the socket is full.
    /// `io` returns the bytes it moved and whether moving fewer than
    /// `wanted` means the socket is full (or drained): then, like tokio's
    /// own sockets, the readiness is cleared, and the next wait costs one
    /// system call instead of two. (A read that reads only what the reactor
    /// reports relies on that guess, as tokio's sockets do: on Linux a
    /// short `recvmsg` drains the socket unless it stopped after bytes that
    /// carried descriptors, and then the readiness is kept.)
    fn poll_io(
        &self,
        cx: &mut Context<'_>,
        write: bool,
        wanted: usize,
        mut io: impl FnMut(&StdUnixStream) -> io::Result<(usize, bool)>,
    ) -> Poll<io::Result<usize>> {
        let stream = &self.stream;
        if !write {
            let mut readable = lock(&self.readable);
            if self.spinning_reader.load(Ordering::Relaxed) && crate::spin::spinning() {
                // A reader spinning before it parks: while it catches every
                // frame this way, the peer's writes wake no reactor thread.
                readable.take();
                return once(io(stream));
            }
            let registration = match &mut *readable {
                Some(registration) => registration,
                empty => empty.insert(self.register_reads()?),
            };
            loop {
                let Poll::Ready(guard) = registration.poll_read_ready(cx) else {
                    // Not reported ready (the waker is registered): try
                    // once, unless told not to.
                    if self.reported_reads_only.load(Ordering::Relaxed) {
                        return Poll::Pending;
                    }
                    return once(io(stream));
                };
                if let Some(done) = retried(guard?, wanted, || io(stream)) {
                    return Poll::Ready(done);
                }
            }
        }
        match io(stream) {
            Ok((done, _)) => {
                if !self.keep_writable.load(Ordering::Relaxed) {
                    // Not blocked (any more): stop hearing of room to write.
                    lock(&self.writable).take();
                }
                return Poll::Ready(Ok(done));
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Poll::Ready(Err(error)),
        }
        let mut writable = lock(&self.writable);
        let registration = match &mut *writable {
            Some(registration) => registration,
            empty => empty.insert(self.register_writes()?),
        };
        loop {
            let guard = ready!(registration.poll_write_ready(cx))?;
            if let Some(done) = retried(guard, wanted, || io(stream)) {
                return Poll::Ready(done);
            }
        }
    }
}

/// What one try of `io` without waiting comes to: its bytes, or pending
/// if it would block.
fn once(tried: io::Result<(usize, bool)>) -> Poll<io::Result<usize>> {
    match tried {
        Ok((done, _)) => Poll::Ready(Ok(done)),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        Err(error) => Poll::Ready(Err(error)),
    }
}

/// Runs `io` now that `guard` says the socket is ready; `None` if it would
/// block after all (the readiness is then cleared, to wait for the next).
fn retried<T: AsRawFd>(
    mut guard: AsyncFdReadyGuard<'_, T>,
    wanted: usize,
    io: impl FnOnce() -> io::Result<(usize, bool)>,
) -> Option<io::Result<usize>> {
    match io() {
        Ok((done, short_is_final)) => {
            if short_is_final && done > 0 && done < wanted {
                guard.clear_ready();
            }
            Some(Ok(done))
        }
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            guard.clear_ready();
            None
        }
        Err(error) => Some(Err(error)),
    }
}

impl Socket {
    /// A registration of a duplicate of the socket's descriptor for
    /// writing only (one descriptor can be registered once per reactor, and
    /// the socket's own is registered for reading).
    fn register_writes(&self) -> io::Result<AsyncFd<OwnedFd>> {
        let duplicate = self.stream.as_fd().try_clone_to_owned()?;
        let _runtime = self.runtime.enter();
        // `AsyncFd::new` is deprecated (tokio 1.54) because a registered
        // descriptor could be closed behind the reactor's back; here the
        // `AsyncFd` owns its duplicate, so it is closed only after being
        // deregistered. Its replacement, `AsyncFd::register`, needs a newer
        // tokio than the minimum these crates support.
        #[allow(deprecated)]
        AsyncFd::with_interest(duplicate, Interest::WRITABLE)
    }

    /// A registration of the socket's own descriptor for reading (no
    /// duplicate: a connection holds one descriptor while it reads).
    fn register_reads(&self) -> io::Result<AsyncFd<Registered>> {
        // On the deprecation, see `register_writes`: the registration is a
        // field of this socket declared before the stream, so it is
        // deregistered before the descriptor is closed.
        let _runtime = self.runtime.enter();
        #[allow(deprecated)]
        AsyncFd::with_interest(Registered(self.stream.as_raw_fd()), Interest::READABLE)
    }
}

impl Descriptors for Socket {
    fn poll_send_with(
        &self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, true, bytes.len(), |stream| {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_READ))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "too many descriptors for one message",
                ));
            }
            let sent = rustix::net::sendmsg(
                stream,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            );
            Ok((sent?, true))
        })
    }

    fn take_received(&self) -> Option<OwnedFd> {
        self.received().pop_front()
    }

    fn unregister_while_spinning(&self) {
        self.spinning_reader.store(true, Ordering::Relaxed);
    }

    fn read_only_when_reported(&self) {
        self.reported_reads_only.store(true, Ordering::Relaxed);
    }

    fn wake_on_peer_reads(&self) {
        self.keep_writable.store(true, Ordering::Relaxed);
        let mut writable = lock(&self.writable);
        if writable.is_none() {
            // Without it the socket only loses the early wake-ups.
            *writable = self.register_writes().ok();
        }
    }
}

impl AsyncRead for UnixReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0;
        // SAFETY: the kernel only writes into the buffer, and only the bytes
        // it reports written are marked initialized below (the same cast
        // tokio's own socket reads make).
        let unfilled = unsafe { &mut *(buf.unfilled_mut() as *mut [MaybeUninit<u8>] as *mut [u8]) };
        let wanted = unfilled.len();
        let mut fds = Vec::new();
        let mut truncated = false;
        let read = ready!(socket.poll_io(cx, false, wanted, |stream| {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_READ))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let message = rustix::net::recvmsg(
                stream,
                &mut [IoSliceMut::new(unfilled)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            for ancillary in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = ancillary {
                    fds.extend(rights);
                }
            }
            truncated = message.flags.contains(ReturnFlags::CTRUNC);
            // On Linux a short `recvmsg` means the socket is drained, unless
            // it stopped early after bytes that carried descriptors (it
            // does, to keep them with their bytes) with more data waiting.
            let drained = cfg!(target_os = "linux") && fds.is_empty();
            Ok((message.bytes, drained))
        }))?;
        if !fds.is_empty() {
            let mut received = socket.received();
            if received.len() + fds.len() > MAX_PENDING {
                return Poll::Ready(Err(refused("more descriptors than frames that use them")));
            }
            received.extend(fds);
        }
        if truncated {
            return Poll::Ready(Err(refused("too many descriptors in one message")));
        }
        // SAFETY: `recvmsg` wrote `read` bytes at the start of the unfilled
        // part.
        unsafe { buf.assume_init(read) };
        buf.advance(read);
        Poll::Ready(Ok(()))
    }
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("peer sent {what}"))
}

impl AsyncWrite for UnixWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_io(cx, true, buf.len(), |mut stream| {
            Ok((stream.write(buf)?, true))
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let wanted = bufs.iter().map(|buf| buf.len()).sum();
        self.0.poll_io(cx, true, wanted, |mut stream| {
            Ok((stream.write_vectored(bufs)?, true))
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.0.stream.shutdown(Shutdown::Write) {
            // Already closed by the peer: nothing left to shut.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::spin::{Spin, spin_then, spinning};

    /// Both ends' halves of a socket pair: ours (reader, writer,
    /// descriptors) and theirs.
    type Halves = (UnixReader, UnixWriter, Arc<dyn Descriptors>);

    fn connected() -> (Halves, Halves) {
        let (ours, theirs) = UnixStream::pair().expect("a socket pair");
        let ours = unix_channel(ours).expect("our halves");
        let theirs = unix_channel(theirs).expect("their halves");
        (ours, theirs)
    }

    /// `future`'s output, failing the test unless it is ready (woken)
    /// within 10 s. Not `tokio::time::timeout`: that polls the future once
    /// more when its time is up, which would hide a lost wake-up whenever
    /// the bytes are there by then.
    async fn woken<T>(future: impl Future<Output = T>) -> T {
        tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_secs(10)) => panic!("not woken within 10 s"),
            output = future => output,
        }
    }

    /// Polls `read` once, so that it parks (nothing to read yet), has
    /// another task write `bytes` with `writer`, and returns what the read
    /// read once woken.
    async fn read_after_parking(
        read: impl Future<Output = io::Result<usize>>,
        mut writer: UnixWriter,
        bytes: &'static [u8],
    ) -> usize {
        let mut read = std::pin::pin!(read);
        let parked =
            std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx).is_pending())).await;
        assert!(parked, "the read found bytes before any were written");
        let writing = tokio::spawn(async move { writer.write_all(bytes).await });
        let read = woken(read).await.expect("a read");
        woken(writing)
            .await
            .expect("the writing task")
            .expect("a write");
        read
    }

    /// A reader whose reads leave the reactor while it spins still parks
    /// and wakes like any other once the spin runs out.
    #[tokio::test]
    async fn a_reader_unregistered_while_spinning_is_woken_after_it_parks() {
        let ((mut reader, _writer, descriptors), (_their_reader, mut their_writer, _)) =
            connected();
        descriptors.unregister_while_spinning();
        let spin = Spin::default();
        // The last wait was short: the next one spins.
        spin.observe(Duration::ZERO);
        assert!(!spin.budget().is_zero());
        let mut buf = [0u8; 8];

        // Bytes already there are read while spinning.
        their_writer.write_all(b"1").await.expect("a write");
        let read = woken(spin_then(&spin, reader.read(&mut buf))).await;
        assert_eq!(read.expect("a read"), 1);
        assert!(!spinning(), "the spin is over once its read is");

        // Bytes that come after the spin ran out wake the parked reader.
        let read = spin_then(&spin, reader.read(&mut buf));
        assert_eq!(read_after_parking(read, their_writer, b"2").await, 1);
        assert_eq!(&buf[..1], b"2");
    }

    /// A reader that reads only what the reactor reports still gets bytes
    /// that were there before it asked, and bytes that come while it waits.
    #[tokio::test]
    async fn a_reader_that_reads_only_when_reported_misses_nothing() {
        let ((mut reader, _writer, descriptors), (_their_reader, mut their_writer, _)) =
            connected();
        descriptors.read_only_when_reported();
        let mut buf = [0u8; 8];

        their_writer.write_all(b"1").await.expect("a write");
        assert_eq!(woken(reader.read(&mut buf)).await.expect("a read"), 1);
        assert_eq!(&buf[..1], b"1");

        let read = reader.read(&mut buf);
        assert_eq!(read_after_parking(read, their_writer, b"2").await, 1);
        assert_eq!(&buf[..1], b"2");
    }

    /// A read that stops early after bytes carrying a descriptor (the
    /// kernel keeps descriptors with their bytes) keeps the readiness, so a
    /// reader that reads only what the reactor reports still gets the bytes
    /// queued behind them without a new report.
    #[tokio::test]
    async fn bytes_behind_a_descriptor_are_read_without_a_new_report() {
        let ((mut reader, _writer, descriptors), (_their_reader, mut their_writer, theirs)) =
            connected();
        descriptors.read_only_when_reported();
        let (passed, _kept) = StdUnixStream::pair().expect("a descriptor to pass");
        let sent =
            std::future::poll_fn(|cx| theirs.poll_send_with(cx, b"1", &[passed.as_fd()])).await;
        assert_eq!(sent.expect("a send with a descriptor"), 1);
        their_writer.write_all(b"23").await.expect("a write");

        let mut buf = [0u8; 8];
        assert_eq!(woken(reader.read(&mut buf)).await.expect("a read"), 1);
        assert!(descriptors.take_received().is_some(), "the descriptor came");
        assert_eq!(woken(reader.read(&mut buf)).await.expect("a read"), 2);
        assert_eq!(&buf[..2], b"23");
    }

    /// A write that would block, made on a thread outside any runtime (a
    /// blocking caller's, writing its job itself), registers with the
    /// connection's runtime instead of panicking for want of one.
    #[test]
    fn a_blocked_write_outside_any_runtime_waits_on_the_connections_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (ours, theirs) = StdUnixStream::pair().expect("a socket pair");
        ours.set_nonblocking(true).expect("non-blocking");
        let (_reader, mut writer, _descriptors) = runtime
            .block_on(async { unix_channel(UnixStream::from_std(ours)?) })
            .expect("our halves");
        let chunk = vec![0u8; 64 * 1024];
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut written = 0;
        let blocked = loop {
            match Pin::new(&mut writer).poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(bytes)) => written += bytes,
                Poll::Ready(Err(error)) => panic!("the write failed: {error}"),
                Poll::Pending => break true,
            }
            if written > 64 << 20 {
                break false;
            }
        };
        assert!(blocked, "the socket never filled");
        drop(theirs);
    }
}
