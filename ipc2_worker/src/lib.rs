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
//! - [`remote`]: a worker on another machine, which dials its host and
//!   redials when the connection is lost ([`RemoteReceiver`]).
//! - [`job`]: a job and the [`ReplySender`] that answers it.
//! - [`error`]: what can go wrong.

#![warn(missing_docs)]

pub mod connect;
pub mod error;
pub mod job;
pub mod receiver;
pub mod remote;

pub use connect::connect;
pub use error::{ConnectError, ReplyError};
pub use job::{Job, ReplySender};
pub use receiver::Receiver;
pub use remote::RemoteReceiver;
