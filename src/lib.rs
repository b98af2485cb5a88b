//! `ipc2`: easy inter-process communication for Rust.
//!
//! This page is the project's README, whose examples are this crate's
//! doctests. The crate itself re-exports the crates that make up the
//! project:
//!
//! - [`host`] (`ipc2_host`): build a [`host::workerset::WorkerSet`] that spawns,
//!   supervises and restarts worker processes and sends them typed jobs.
//! - [`worker`] (`ipc2_worker`): inside a worker binary, [`worker::connect`](fn@worker::connect) to
//!   the host and receive [`worker::Job`]s.
//! - [`common`] (`ipc2_common`): the wire protocol, the frame codec and the
//!   `Server`/`Client` transport traits both sides share.
//! - [`service`] (`ipc2_macros`): `#[ipc2::service]` turns a trait into typed
//!   request and response enums, a host client and a worker loop; calls of
//!   methods that return `Result<T, E>` fail with [`CallError<E>`].
//! - `tls` (`ipc2_tls`, feature `tls`): workers on other machines, over TCP
//!   with mutual TLS.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use ipc2_common as common;
pub use ipc2_host as host;
pub use ipc2_host::{CallError, Pool};
pub use ipc2_macros::service;
#[cfg(feature = "tls")]
pub use ipc2_tls as tls;
pub use ipc2_worker as worker;

/// A message field for large bodies: through shared memory when large,
/// inline when small (see [`common::blob`]).
pub use ipc2_common::{Blob, BlobFull, BlobMut};

/// What the code `#[ipc2::service]` generates refers to, by paths that do
/// not depend on the user's imports or dependencies. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use ::serde;
    pub use ipc2_common::Server;
    pub use ipc2_host::service::{ServiceClient, ServiceMessage};
    pub use ipc2_host::{CallError, Error, Fallible, Pool, WorkerSet};
    pub use ipc2_worker::service::{Dispatch, Runner, serve};
    pub use ipc2_worker::{ReplySender, ServeError};
    pub use tokio::net::UnixListener;
}
