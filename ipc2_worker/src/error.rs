//! Errors a worker can meet: connecting to its host, replying, and serving
//! a service.

use std::ffi::OsString;
use std::path::PathBuf;

use ipc2_common::CodecError;

/// Why [`connect`](crate::connect()) failed.
#[derive(thiserror::Error)]
pub enum ConnectError {
    /// The environment a host gives its workers is missing: this process was
    /// not started by an ipc2 `WorkerSet`.
    #[error(
        "environment variable {variable} is not set: this binary is an ipc2 worker and must be \
         started by an ipc2_host WorkerSet, not by hand"
    )]
    NotUnderHost {
        /// The variable that was missing.
        variable: &'static str,
    },
    /// The host's environment variable is present but unusable.
    #[error("environment variable {variable} holds {value:?}, which is not valid: {reason}")]
    BadEnvironment {
        /// The variable.
        variable: &'static str,
        /// What it held.
        value: OsString,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host's socket could not be reached.
    #[error("could not connect to the host's socket at {}: {source}", address.display())]
    Connect {
        /// The socket address.
        address: PathBuf,
        /// The transport's error.
        #[source]
        source: std::io::Error,
    },
    /// A remote worker could not reach its host (TCP or TLS failed).
    #[error(
        "could not reach the host at {host}: {source}; check the address, that the host runs, \
         and that both sides trust each other's certificates"
    )]
    Dial {
        /// Where it dialled.
        host: String,
        /// The transport's error.
        #[source]
        source: std::io::Error,
    },
    /// The handshake could not be sent or its answer not read.
    #[error("handshake with the host failed: {0}")]
    Handshake(#[from] CodecError),
    /// The host closed the connection instead of welcoming this worker
    /// (wrong secret, handshake too late, or the pool is shutting down).
    #[error(
        "the host refused this worker's handshake (secret not accepted, deadline passed, or the \
         pool is shutting down)"
    )]
    Refused,
    /// The host did not answer the handshake in time.
    #[error("the host did not answer the handshake within {0:?}")]
    Timeout(std::time::Duration),
    /// The blocking worker was started inside a tokio runtime, whose thread
    /// it would block.
    #[error(
        "ipc2_worker::blocking::jobs() was called inside a tokio runtime, whose thread it would \
         block; use ipc2_worker::jobs().await in async code"
    )]
    InsideRuntime,
    /// The blocking worker's I/O thread could not be started.
    #[error("could not start the worker's I/O thread: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Why [`ReplySender::send`](crate::ReplySender::send) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The reply could not be encoded (or is larger than the frame limit);
    /// the host's caller receives an error instead.
    #[error("the reply could not be encoded: {0}")]
    Encode(#[source] CodecError),
    /// The connection to the host is gone; nobody will read the reply.
    #[error("the connection to the host is closed; the reply was not delivered")]
    Disconnected,
}

/// Why a [`StreamSender`](crate::StreamSender) could not send an item.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The host's caller dropped its stream: stop producing and end the job.
    #[error("the host's caller dropped this stream; stop producing items")]
    Cancelled,
    /// The item could not be encoded (or is larger than the frame limit).
    #[error("the item could not be encoded: {0}")]
    Encode(#[source] ipc2_common::CodecError),
    /// The connection to the host is gone.
    #[error("the connection to the host is closed; the item was not delivered")]
    Disconnected,
    /// The stream was already ended.
    #[error("the stream was already ended")]
    Ended,
    /// `send_blocking` was called on a thread of a current-thread tokio
    /// runtime, which it would stall (the host's credit may need this very
    /// thread to arrive).
    #[error(
        "send_blocking was called on a current-thread tokio runtime, which it would stall; use \
         send(..).await there, or call it from spawn_blocking or a thread of your own"
    )]
    WouldBlock,
}

impl From<ReplyError> for StreamError {
    fn from(error: ReplyError) -> Self {
        match error {
            ReplyError::Encode(error) => Self::Encode(error),
            ReplyError::Disconnected => Self::Disconnected,
        }
    }
}

/// Why a service's `serve()` (`#[ipc2::service]`) ended with an error.
#[derive(thiserror::Error)]
pub enum ServeError {
    /// The worker could not join its host.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection to the host broke while serving (the host sent
    /// something that is not a frame of this protocol, or the stream failed).
    #[error("the connection to the host failed while serving: {0}")]
    Connection(#[source] CodecError),
}

/// Shows the message, so that `main() -> Result<(), Box<dyn Error>>`, which
/// prints errors with `Debug`, prints something a person can act on.
impl std::fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Shows the message, as [`ConnectError`]'s `Debug` does.
impl std::fmt::Debug for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// What the host's caller is told of a reply that could not be encoded.
pub(crate) fn unencodable(error: &CodecError) -> String {
    format!("the worker could not encode its reply: {error}")
}

/// What the host's caller is told of a job that could not be decoded.
pub(crate) fn undecodable(error: &CodecError) -> String {
    format!("the worker could not decode the job: {error}")
}
