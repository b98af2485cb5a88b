//! The host's end: accept TCP connections and complete their TLS
//! handshakes, without letting any peer cost more than a bounded share.
//!
//! The TLS handshake is where a stranger is turned away (no certificate, or
//! one the CA did not sign, or not an allowed name), so it must not run in
//! the accept loop: a peer that opens a connection and stalls would block
//! every other. Each handshake runs in its own task under a deadline; at
//! most [`DEFAULT_MAX_PENDING`] run at once and past that the oldest is
//! dropped (a real worker completes its handshake within moments, so it is
//! never the oldest for long). [`TlsListener::accept`] yields connections
//! whose handshake succeeded; then ipc2's gate applies its own rules to the
//! ipc2 handshake.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use ipc2_common::Listener;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::Mutex;
use tokio::task::{AbortHandle, Id, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::config::HostTls;
use crate::connection::TlsConnection;
use crate::error::TlsError;
use crate::tcp::TcpOptions;

/// Default time a connection has to complete its TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of TLS handshakes in progress at once.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// Accepts mutually authenticated TLS connections from remote workers; give
/// it to `WorkerSetBuilder::remote_workers`.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    options: TcpOptions,
    handshake_timeout: Duration,
    max_pending: usize,
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("address", &self.tcp.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Handshakes in progress, oldest first.
#[derive(Default)]
struct Pending {
    tasks: JoinSet<Option<TlsConnection>>,
    order: VecDeque<(Id, AbortHandle)>,
}

impl TlsListener {
    /// Listens on `address` (e.g. `"0.0.0.0:7070"`). Must be called inside
    /// a tokio runtime.
    pub async fn bind(address: impl ToSocketAddrs, tls: HostTls) -> std::io::Result<Self> {
        Ok(Self::from_tokio(TcpListener::bind(address).await?, tls))
    }

    /// Listens on a socket bound elsewhere (by a test in a network
    /// namespace, or passed in by systemd socket activation). Must be called
    /// inside a tokio runtime.
    pub fn from_std(listener: std::net::TcpListener, tls: HostTls) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self::from_tokio(TcpListener::from_std(listener)?, tls))
    }

    fn from_tokio(tcp: TcpListener, tls: HostTls) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(tls.config),
            options: TcpOptions::default(),
            handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            max_pending: DEFAULT_MAX_PENDING,
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Listens where [`ENV_LISTEN`](crate::env::ENV_LISTEN) says, as the
    /// identity the `IPC2_TLS_*` variables name, admitting the names in
    /// [`ENV_ALLOWED_NAMES`](crate::env::ENV_ALLOWED_NAMES) (any, if unset).
    pub async fn from_env() -> Result<Self, TlsError> {
        let address = crate::env::required(crate::env::ENV_LISTEN)?;
        let names = crate::env::allowed_names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let tls = HostTls::new(&crate::env::identity()?, &names)?;
        Self::bind(&address, tls)
            .await
            .map_err(|source| TlsError::Listen { address, source })
    }

    /// TCP settings for accepted connections. Default: [`TcpOptions::default`].
    pub fn tcp_options(mut self, options: TcpOptions) -> Self {
        self.options = options;
        self
    }

    /// Time a connection has to complete its TLS handshake. Default:
    /// [`DEFAULT_TLS_HANDSHAKE_TIMEOUT`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// TLS handshakes in progress at once before the oldest is dropped.
    /// Default: [`DEFAULT_MAX_PENDING`].
    pub fn max_pending(mut self, handshakes: usize) -> Self {
        self.max_pending = handshakes.max(1);
        self
    }

    /// The address it listens on (with the port chosen, if it was 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Starts the handshake of a fresh TCP connection in its own task.
    fn start(&self, pending: &mut Pending, tcp: tokio::net::TcpStream) {
        if let Err(error) = self.options.apply(&tcp) {
            tracing::debug!(%error, "could not set TCP options on an accepted connection");
        }
        let accept = self.acceptor.accept(tcp);
        let timeout = self.handshake_timeout;
        let task = pending.tasks.spawn(async move {
            match tokio::time::timeout(timeout, accept).await {
                Ok(Ok(stream)) => TlsConnection::new(stream.into()).ok(),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "refused a TLS connection");
                    None
                }
                Err(_) => {
                    tracing::debug!("a TLS handshake passed its deadline");
                    None
                }
            }
        });
        pending.order.push_back((task.id(), task));
        while pending.order.len() > self.max_pending {
            if let Some((_, oldest)) = pending.order.pop_front() {
                tracing::debug!("too many TLS handshakes in progress; dropping the oldest");
                oldest.abort();
            }
        }
    }
}

impl Pending {
    fn forget(&mut self, id: Id) {
        if let Some(index) = self.order.iter().position(|(task, _)| *task == id) {
            self.order.remove(index);
        }
    }
}

impl Listener for TlsListener {
    type Connection = TlsConnection;

    /// The next connection whose TLS handshake succeeded. Handshakes run
    /// concurrently in their own tasks, so a slow peer delays nobody.
    async fn accept(&self) -> std::io::Result<TlsConnection> {
        let mut pending = self.pending.lock().await;
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => {
                    let (tcp, _) = accepted?;
                    self.start(&mut pending, tcp);
                }
                Some(done) = pending.tasks.join_next_with_id(), if !pending.tasks.is_empty() => {
                    match done {
                        Ok((id, connection)) => {
                            pending.forget(id);
                            if let Some(connection) = connection {
                                return Ok(connection);
                            }
                        }
                        Err(error) => pending.forget(error.id()),
                    }
                }
            }
        }
    }
}
