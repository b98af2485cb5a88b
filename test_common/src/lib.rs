//! Shared pieces for ipc2's tests, examples and test workers.
//!
//! - [`HostMessage`] / [`WorkerMessage`]: the seed's message types, exactly.
//! - [`behaviour`]: requests that make the test worker misbehave on purpose
//!   (sleep, crash, drop the reply, ...).
//! - [`binaries`]: finds (and builds if needed) the worker binaries.
//! - [`process`]: bounded waits on processes and paths, via `/proc`.
//! - [`pools`]: ready-made pools of the test workers, and a time bound for
//!   async test bodies.
//! - [`stranger`]: what a process that is not a worker sees on the socket.
//! - [`services`]: `#[ipc2::service]` traits for the service tests.
//! - [`rogue`]: the honest handshake of workers that misbehave on purpose.
//! - `tls` (feature `remote`): certificates made on the spot for TLS tests.
//! - `remote` (feature `remote`): remote worker processes and pools that
//!   admit them.

#![warn(missing_docs)]

pub mod behaviour;
pub mod binaries;
pub mod pools;
pub mod process;
#[cfg(feature = "remote")]
pub mod remote;
pub mod rogue;
pub mod services;
pub mod stranger;
#[cfg(feature = "remote")]
pub mod tls;

use serde::{Deserialize, Serialize};

/// The seed's host → worker message. The seed's worker matches it
/// exhaustively, so it has exactly these two variants.
#[derive(Deserialize, Serialize)]
pub enum HostMessage {
    /// Add the two numbers.
    Add(u32, u32),
    /// Subtract the second number from the first.
    Sub(u32, u32),
}

/// A worker → host message, imported by the seed's worker example.
#[derive(Deserialize, Serialize)]
pub enum WorkerMessage {
    /// A computed value.
    Value(u32),
    /// A failure, described.
    Failed(String),
}
