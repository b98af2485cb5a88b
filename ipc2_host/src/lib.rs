//! Host side of ipc2: spawn worker processes, keep them alive, and send them
//! typed jobs.
//!
//! ```no_run
//! use ipc2_host::workerset::WorkerSet;
//! use tokio::net::UnixListener;
//!
//! # #[derive(serde::Serialize)] enum HostMessage { Add(u32, u32) }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let workers: WorkerSet<UnixListener, u32, HostMessage> = WorkerSet::builder()
//!     .worker_count(4)
//!     .worker_path("./target/debug/worker_test")
//!     .finish()
//!     .await?;
//! let sum: u32 = workers.send(HostMessage::Add(6, 7)).await?;
//! # Ok(()) }
//! ```
//!
//! Where things happen:
//! - [`workerset`]: the [`WorkerSet`] handle users hold, and its teardown.
//! - [`builder`]: configuration and startup ([`WorkerSetBuilder::finish`]).
//! - `blocking` (private): using a pool from synchronous code
//!   ([`WorkerSetBuilder::finish_blocking`], [`WorkerSet::send_blocking`]):
//!   the rules for when a thread may block.
//! - [`pending`]: detached replies ([`WorkerSet::submit`] and
//!   [`PendingReply`]).
//! - [`map`]: results as they complete ([`WorkerSet::map`]: a bounded,
//!   streaming map, in order or as completed).
//! - `config` (private): a set's settings and their defaults.
//! - `shared` (private): the state the handle and the pool's tasks share.
//! - [`error`]: every error a caller can see.
//! - [`call_error`]: [`CallError`], what a call of a fallible
//!   `#[ipc2::service]` method fails with: the service's own error or the
//!   pool's, side by side.
//! - [`service`]: what a `#[ipc2::service]` client runs on.
//! - [`stats`]: snapshots of a set, and the report of a graceful shutdown.
//! - [`stream`]: jobs answered with a stream of items ([`ReplyStream`]).
//! - `dispatch` (private): where a job waits for a worker, and how replies
//!   find their caller.
//! - `supervisor` (private): the life of one worker slot: spawn, handshake,
//!   serve, exit, restart.
//! - `spawner` (private): the thread that forks workers, so they die with
//!   the host.
//! - `responder` (private): how a job's outcome reaches its caller, alone
//!   or as part of a batch.
//! - `io_thread` (private): where the pool's own tasks run.
//! - `gate` (private): the socket's accept loop and the handshake check.
//! - `remote` (private): slots served by workers on other machines, which
//!   dial in (see [`WorkerSetBuilder::remote_workers`]).
//! - `socket_dir` (private): the private directory the socket lives in.

#![warn(missing_docs)]

mod blocking;
pub mod builder;
pub mod call_error;
mod config;
mod dispatch;
pub mod error;
mod gate;
mod grouping;
mod io_thread;
pub mod map;
pub mod pending;
mod remote;
mod responder;
pub mod service;
mod shared;
mod socket_dir;
mod spawner;
pub mod stats;
pub mod stream;
mod supervisor;
pub mod workerset;

pub use builder::WorkerSetBuilder;
pub use call_error::{CallError, Fallible};
pub use error::{Error, ExitInfo};
pub use ipc2_common::{Blob, BlobFull, BlobMut};
pub use ipc2_common::{Heartbeat, RemotePeer};
pub use map::{Map, MapUnordered};
pub use pending::PendingReply;
pub use stats::{FailureCounts, ShutdownReport, Stats, WorkerState, WorkerStats};
pub use stream::ReplyStream;
pub use workerset::{Pool, WorkerSet};
