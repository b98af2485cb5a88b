//! A TLS connection between a host and a remote worker, as ipc2's
//! [`Connection`] trait sees it.

use ipc2_common::{Connection, RemotePeer};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

use crate::config::first_dns_name;

/// A TLS stream over TCP whose handshake has completed, with the peer it
/// reached (address, and the first DNS name of its verified certificate).
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: RemotePeer,
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl TlsConnection {
    /// Wraps a stream whose handshake has completed.
    pub(crate) fn new(stream: TlsStream<TcpStream>) -> std::io::Result<Self> {
        let (tcp, session) = stream.get_ref();
        let address = tcp.peer_addr()?;
        let name = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(first_dns_name);
        Ok(Self {
            stream,
            peer: RemotePeer { address, name },
        })
    }

    /// Who is on the other end.
    pub fn peer(&self) -> &RemotePeer {
        &self.peer
    }
}

impl Connection for TlsConnection {
    type Reader = ReadHalf<TlsStream<TcpStream>>;
    type Writer = WriteHalf<TlsStream<TcpStream>>;

    fn into_split(self) -> (Self::Reader, Self::Writer) {
        // TLS reads and writes share one session state, so the halves share
        // the stream behind a lock (taken per poll, never held across one).
        tokio::io::split(self.stream)
    }

    fn remote_peer(&self) -> Option<RemotePeer> {
        Some(self.peer.clone())
    }
}
