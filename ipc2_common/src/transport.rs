//! How bytes get between host and worker: the [`Server`] and [`Client`]
//! traits, and their instance forms [`Listener`] and [`Connector`].
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
//!
//! A transport that needs more than an address to get going (TLS over TCP
//! needs certificates) is built by its own constructor and then used through
//! the instance traits: a [`Listener`] is any value that accepts connections
//! (every [`Server`] is one), a [`Connector`] any value that opens them. The
//! host admits remote workers through a `Listener`; a remote worker
//! reconnects through a `Connector`.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
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

/// A peer on another machine: its network address and, when its certificate
/// proved one, its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemotePeer {
    /// The peer's address and port, as this side sees them.
    pub address: SocketAddr,
    /// The first DNS name of the peer's verified certificate, if any.
    pub name: Option<String>,
}

impl fmt::Display for RemotePeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} at {}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
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

    /// The peer's network address and verified name, for transports that
    /// reach other machines. Default: `None` (a local transport).
    fn remote_peer(&self) -> Option<RemotePeer> {
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

/// Anything that accepts connections: what the host's accept loop needs.
pub trait Listener: Send + Sync + Sized + 'static {
    /// The connections it accepts.
    type Connection: Connection;

    /// Waits for the next connection. A transport with a handshake of its
    /// own (TLS) returns only connections that completed it; it must not let
    /// one slow peer hold up the others.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send;
}

/// The host side of a transport the host binds itself, at a path in its
/// private socket directory.
pub trait Server: Listener {
    /// Binds `address`. Must be called inside a tokio runtime.
    fn bind(address: &Path) -> io::Result<Self>;
}

/// The worker side of a transport: connects to the host's address.
pub trait Client: Connection {
    /// Connects to `address`.
    fn connect(address: &Path) -> impl Future<Output = io::Result<Self>> + Send;
}

/// Anything that opens connections to one host, again and again: what a
/// remote worker reconnects with.
pub trait Connector: Send + Sync + 'static {
    /// The connections it opens.
    type Connection: Connection;

    /// Opens a new connection (including any handshake of the transport's
    /// own).
    fn connect(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send;

    /// Where it connects to, for messages.
    fn describe(&self) -> String;
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

impl Listener for UnixListener {
    type Connection = UnixStream;

    async fn accept(&self) -> io::Result<UnixStream> {
        UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

impl Server for UnixListener {
    fn bind(address: &Path) -> io::Result<Self> {
        UnixListener::bind(address)
    }
}

impl Client for UnixStream {
    async fn connect(address: &Path) -> io::Result<Self> {
        UnixStream::connect(address).await
    }
}
