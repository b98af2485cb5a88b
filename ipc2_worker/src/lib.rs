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
//! - [`blocking`]: a worker without async: jobs as an iterator.
//! - [`receiver`]: where jobs arrive ([`Receiver::recv`]).
//! - [`remote`]: a worker on another machine, which dials its host and
//!   redials when the connection is lost ([`RemoteReceiver`]).
//! - [`self_exec`]: one executable as host and worker ([`run_if_worker`]).
//! - [`job`]: a job and the [`ReplySender`] that answers it.
//! - [`stream`]: answering a job with a stream of items ([`StreamSender`]).
//! - `inbound` (private): the connection's read side, driven by whoever waits.
//! - `panic` (private): a panicking handler's report, sent as its job's answer.
//! - [`service`]: the worker side of `#[ipc2::service]`: one call that
//!   connects and answers every call with the service's implementation.
//! - [`error`]: what can go wrong.

#![warn(missing_docs)]

mod batch;
pub mod blocking;
pub mod connect;
pub mod error;
mod inbound;
pub mod job;
mod panic;
pub mod receiver;
pub mod remote;
pub mod self_exec;
pub mod service;
pub mod stream;

pub use connect::{connect, jobs};
pub use error::{ConnectError, ReplyError, ServeError, StreamError};
pub use ipc2_common::{Blob, BlobFull, BlobMut};
pub use job::{Job, ReplySender};
pub use receiver::Receiver;
pub use remote::RemoteReceiver;
pub use self_exec::{run_if_worker, worker_role};
pub use stream::StreamSender;
