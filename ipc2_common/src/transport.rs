//! How bytes get between host and worker: the [`Server`] and [`Client`]
//! traits.
//!
//! The host is generic over a [`Server`] (it binds an address and accepts
//! connections), the worker over a [`Client`] (it connects to that address).
//! Both yield [`Connection`]s that split into a read and a write half, and may
//! report who is on the other end. The default strategy, implemented here, is
//! tokio's `UnixListener` / `UnixStream`.
//!
//! A connection may also be able to pass file descriptors
//! ([`Connection::into_channel`] returns [`Descriptors`] for it): then bodies
//! above the threshold travel through shared memory. A transport that cannot
//! (TCP, TLS) keeps the default, and the same messages travel inline.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{UnixListener, UnixStream, unix};

use crate::connection::{BoxedReader, BoxedWriter};
use crate::descriptors::{Descriptors, unix_channel};

/// Who is on the other end of a connection, as the operating system says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's user id.
    pub uid: u32,
    /// The peer's process id, where the platform reports it.
    pub pid: Option<u32>,
}

/// A bidirectional byte stream between host and worker.
pub trait Connection: Send + Sized + 'static {
    /// The read half.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The write half.
    type Writer: AsyncWrite + Unpin + Send + 'static;

    /// Whether [`into_channel`](Connection::into_channel) gives descriptor
    /// passing: then the host puts large bodies in shared memory before it
    /// knows which worker gets them. Default: `false`.
    const PASSES_DESCRIPTORS: bool = false;

    /// Splits the stream so reading and writing can happen in different tasks.
    fn into_split(self) -> (Self::Reader, Self::Writer);

    /// The peer's credentials, if the transport can tell. The host refuses
    /// connections from other users, and from processes it did not spawn.
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        None
    }

    /// Splits the stream into boxed halves, with the means to pass file
    /// descriptors if the transport has them. The default has none: bodies
    /// then travel inline, with no change to user code.
    fn into_channel(self) -> Channel {
        let (reader, writer) = self.into_split();
        Channel {
            reader: Box::new(reader),
            writer: Box::new(writer),
            descriptors: None,
        }
    }
}

/// A connection split for ipc2's own use: see [`Connection::into_channel`].
pub struct Channel {
    /// The read half.
    pub reader: BoxedReader,
    /// The write half.
    pub writer: BoxedWriter,
    /// Descriptor passing, where the transport can.
    pub descriptors: Option<Arc<dyn Descriptors>>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("descriptors", &self.descriptors.is_some())
            .finish_non_exhaustive()
    }
}

/// The host side of a transport: binds an address and accepts connections.
pub trait Server: Send + Sync + Sized + 'static {
    /// The connections it accepts.
    type Connection: Connection;

    /// Binds `address`. Must be called inside a tokio runtime.
    fn bind(address: &Path) -> io::Result<Self>;

    /// Waits for the next connection.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send;
}

/// The worker side of a transport: connects to the host's address.
pub trait Client: Connection {
    /// Connects to `address`.
    fn connect(address: &Path) -> impl Future<Output = io::Result<Self>> + Send;
}

impl Connection for UnixStream {
    type Reader = unix::OwnedReadHalf;
    type Writer = unix::OwnedWriteHalf;
    const PASSES_DESCRIPTORS: bool = true;

    fn into_split(self) -> (Self::Reader, Self::Writer) {
        UnixStream::into_split(self)
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        let cred = self.peer_cred().ok()?;
        Some(PeerCredentials {
            uid: cred.uid(),
            pid: cred.pid().and_then(|pid| u32::try_from(pid).ok()),
        })
    }

    fn into_channel(self) -> Channel {
        match unix_channel(self) {
            Ok((reader, writer, descriptors)) => Channel {
                reader: Box::new(reader),
                writer: Box::new(writer),
                descriptors: Some(descriptors),
            },
            // The socket could not be moved to a reactor registration of
            // our own (it is gone with the error): the connection reads as
            // closed, and its handshake fails.
            Err(_) => Channel {
                reader: Box::new(tokio::io::empty()),
                writer: Box::new(tokio::io::sink()),
                descriptors: None,
            },
        }
    }
}

impl Server for UnixListener {
    type Connection = UnixStream;

    fn bind(address: &Path) -> io::Result<Self> {
        UnixListener::bind(address)
    }

    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Client for UnixStream {
    async fn connect(address: &Path) -> io::Result<Self> {
        UnixStream::connect(address).await
    }
}
