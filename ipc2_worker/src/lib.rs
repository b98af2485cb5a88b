//! Worker side of ipc2: connect to the host that spawned this process and
//! receive typed jobs.
//!
//! ```no_run
//! use ipc2_worker::Job;
//! use tokio::net::UnixStream;
//!
//! # #[derive(serde::Deserialize)] enum HostMessage { Add(u32, u32) }
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut rx = ipc2_worker::connect::<UnixStream, HostMessage, u32>().await?;
//!     while let Some(job) = rx.recv().await {
//!         match job {
//!             Job::Bidirectional { data: HostMessage::Add(a, b), tx } => {
//!                 let _ = tx.send(a + b);
//!             }
//!             Job::Unidirectional { .. } => {}
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! - [`connect`](mod@connect): the handshake with the host.
//! - [`receiver`]: where jobs arrive ([`Receiver::recv`]).
//! - [`self_exec`]: one executable as host and worker ([`run_if_worker`]).
//! - [`job`]: a job and the [`ReplySender`] that answers it.
//! - `panic` (private): a panicking handler's report, sent as its job's answer.
//! - [`service`]: the worker side of `#[ipc2::service]`: one call that
//!   connects and answers every call with the service's implementation.
//! - [`error`]: what can go wrong.

#![warn(missing_docs)]

pub mod connect;
pub mod error;
pub mod job;
mod panic;
pub mod receiver;
pub mod self_exec;
pub mod service;

pub use connect::{connect, jobs};
pub use error::{ConnectError, ReplyError, ServeError};
pub use job::{Job, ReplySender};
pub use receiver::Receiver;
pub use self_exec::{run_if_worker, worker_role};
