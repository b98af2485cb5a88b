//! `ipc2`: easy inter-process communication for Rust.
//!
//! This page is the project's README, whose examples are this crate's
//! doctests. The crate itself re-exports the three crates that make up the
//! project:
//!
//! - [`host`] (`ipc2_host`): build a [`host::workerset::WorkerSet`] that spawns,
//!   supervises and restarts worker processes and sends them typed jobs.
//! - [`worker`] (`ipc2_worker`): inside a worker binary, [`worker::connect`](fn@worker::connect) to
//!   the host and receive [`worker::Job`]s.
//! - [`common`] (`ipc2_common`): the wire protocol, the frame codec and the
//!   `Server`/`Client` transport traits both sides share.
//! - `tls` (`ipc2_tls`, feature `tls`): workers on other machines, over TCP
//!   with mutual TLS.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use ipc2_common as common;
pub use ipc2_host as host;
pub use ipc2_host::Pool;
#[cfg(feature = "tls")]
pub use ipc2_tls as tls;
pub use ipc2_worker as worker;
