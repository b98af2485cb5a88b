//! TLS over TCP for ipc2: workers on other machines, admitted by mutual TLS.
//!
//! A host that outgrows one machine keeps its `WorkerSet` and adds workers
//! that dial in from elsewhere. Both sides present certificates signed by
//! one CA: the host admits a worker only with such a client certificate
//! (and, if configured, one of the allowed names), and the worker talks only
//! to a host whose certificate is valid for the name it dials. Machines and
//! restarts belong to the platform that runs the workers (a Kubernetes
//! Deployment, a systemd unit; see `deploy/`); ipc2 connects them and
//! supervises their jobs.
//!
//! The host:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ipc2_host::WorkerSet;
//! use ipc2_tls::{HostTls, Identity, TlsListener};
//! use std::path::Path;
//! use std::time::Duration;
//!
//! let identity = Identity::from_files(
//!     Path::new("/etc/ipc2/tls/ca.crt"),
//!     Path::new("/etc/ipc2/tls/tls.crt"),
//!     Path::new("/etc/ipc2/tls/tls.key"),
//! )?;
//! let listener = TlsListener::bind("0.0.0.0:7070", HostTls::new(&identity, &[])?).await?;
//! let workers: WorkerSet<tokio::net::UnixListener, u32, (u32, u32)> = WorkerSet::builder()
//!     .worker_count(0)                      // no local workers: remote ones only
//!     .remote_workers(listener, 16)         // up to 16 at once
//!     .heartbeat(Duration::from_secs(1), Duration::from_secs(5))
//!     .max_attempts(2)                      // a lost worker's job runs again elsewhere
//!     .finish()
//!     .await?;
//! let sum = workers.send((6, 7)).await?;
//! # Ok(()) }
//! ```
//!
//! A worker (its settings from the environment, see [`mod@env`]):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ipc2_worker::Job;
//!
//! let mut jobs = ipc2_tls::remote_jobs::<(u32, u32), u32>()?;
//! while let Some(job) = jobs.recv().await {
//!     if let Job::Bidirectional { data: (a, b), tx } = job {
//!         let _ = tx.send(a + b);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! - [`config`]: certificates and keys ([`Identity`]), the host's and the
//!   worker's TLS settings ([`HostTls`], [`WorkerTls`]).
//! - [`listener`]: [`TlsListener`], the host's end (an `ipc2_common::Listener`).
//! - [`connector`]: [`TlsConnector`], the worker's end (an `ipc2_common::Connector`).
//! - [`connection`]: [`TlsConnection`], a connection either end holds.
//! - [`tcp`]: keepalive, `TCP_USER_TIMEOUT` and `TCP_NODELAY`.
//! - [`mod@env`]: the environment variables of a remote worker and its host.
//! - `dev` (feature `dev-ca`): a throwaway CA for development and tests.
//! - [`error`]: what can go wrong setting TLS up.
//!
//! This crate is separate so that pools of local workers never compile
//! rustls.

#![warn(missing_docs)]

pub mod config;
pub mod connection;
pub mod connector;
#[cfg(feature = "dev-ca")]
pub mod dev;
pub mod env;
pub mod error;
pub mod listener;
pub mod tcp;

pub use config::{HostTls, Identity, WorkerTls};
pub use connection::TlsConnection;
pub use connector::TlsConnector;
pub use error::TlsError;
pub use listener::TlsListener;
pub use tcp::TcpOptions;

use ipc2_worker::RemoteReceiver;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The jobs of a remote worker configured by the environment ([`mod@env`]):
/// dials [`env::ENV_HOST`] over TLS with the certificate the `IPC2_TLS_*`
/// variables name, and redials whenever the connection is lost. Fails at
/// once only if the configuration is unusable; the host need not be up yet.
pub fn remote_jobs<In, Out>() -> Result<RemoteReceiver<TlsConnector, In, Out>, TlsError>
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    Ok(RemoteReceiver::new(TlsConnector::from_env()?))
}
