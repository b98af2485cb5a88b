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
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, Shutdown,
};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

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
}

/// A tokio `UnixStream` shared by its two halves and its [`Descriptors`].
struct Socket {
    stream: UnixStream,
    received: Mutex<VecDeque<OwnedFd>>,
}

/// The read half of a [`unix_channel`].
pub struct UnixReader(Arc<Socket>);
/// The write half of a [`unix_channel`].
pub struct UnixWriter(Arc<Socket>);

/// Splits `stream` into halves that keep received descriptors, and the
/// [`Descriptors`] of the connection.
pub fn unix_channel(stream: UnixStream) -> (UnixReader, UnixWriter, Arc<dyn Descriptors>) {
    let socket = Arc::new(Socket {
        stream,
        received: Mutex::new(VecDeque::new()),
    });
    (
        UnixReader(Arc::clone(&socket)),
        UnixWriter(Arc::clone(&socket)),
        socket,
    )
}

impl Socket {
    fn received(&self) -> std::sync::MutexGuard<'_, VecDeque<OwnedFd>> {
        self.received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Descriptors for Socket {
    fn poll_send_with(
        &self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            let sent = self.stream.try_io(Interest::WRITABLE, || {
                let mut space =
                    [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_READ))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                if !control.push(SendAncillaryMessage::ScmRights(fds)) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "too many descriptors for one message",
                    ));
                }
                rustix::net::sendmsg(
                    &self.stream,
                    &[IoSlice::new(bytes)],
                    &mut control,
                    SendFlags::NOSIGNAL,
                )
                .map_err(io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn take_received(&self) -> Option<OwnedFd> {
        self.received().pop_front()
    }
}

impl AsyncRead for UnixReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let socket = &self.0;
        loop {
            ready!(socket.stream.poll_read_ready(cx))?;
            // SAFETY: the kernel only writes into the buffer, and only the
            // bytes it reports written are marked initialized below (the
            // same cast tokio's own socket reads make).
            let unfilled =
                unsafe { &mut *(buf.unfilled_mut() as *mut [MaybeUninit<u8>] as *mut [u8]) };
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PER_READ))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let read = socket.stream.try_io(Interest::READABLE, || {
                rustix::net::recvmsg(
                    &socket.stream,
                    &mut [IoSliceMut::new(unfilled)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)
            });
            let message = match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
                Ok(message) => message,
            };
            let mut fds = Vec::new();
            for ancillary in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = ancillary {
                    fds.extend(rights);
                }
            }
            if !fds.is_empty() {
                let mut received = socket.received();
                if received.len() + fds.len() > MAX_PENDING {
                    return Poll::Ready(Err(refused("more descriptors than frames that use them")));
                }
                received.extend(fds);
            }
            if message.flags.contains(ReturnFlags::CTRUNC) {
                return Poll::Ready(Err(refused("too many descriptors in one message")));
            }
            // SAFETY: `recvmsg` wrote `message.bytes` bytes at the start of
            // the unfilled part.
            unsafe { buf.assume_init(message.bytes) };
            buf.advance(message.bytes);
            return Poll::Ready(Ok(()));
        }
    }
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("peer sent {what}"))
}

impl UnixWriter {
    fn poll_with(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.stream.poll_write_ready(cx))?;
            match write(&self.0.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }
}

impl AsyncWrite for UnixWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_with(cx, |stream| stream.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_with(cx, |stream| stream.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(
            match rustix::net::shutdown(self.0.stream.as_fd(), Shutdown::Write) {
                // Already closed by the peer: nothing left to shut.
                Ok(()) | Err(rustix::io::Errno::NOTCONN) => Ok(()),
                Err(e) => Err(e.into()),
            },
        )
    }
}
