//! What a call to a fallible service method can fail with: the service's
//! own error or one of the pool's, side by side in one flat enum.
//!
//! A method of an `#[ipc2::service]` trait declared `-> Result<T, E>` gives
//! its caller `Result<T, CallError<E>>`. The worker's `Err(e)` arrives as
//! [`CallError::App`]; everything that can go wrong on the way (the worker
//! died, panicked, timed out, the queue was full, ...) is a variant of its
//! own with the same fields as the [`Error`] variant it comes from. Nothing
//! is nested and `E` needs no `From` conversion.
//!
//! [`Fallible`] is how the generated code finds `T` and `E` in a return type
//! written under any name (`Result<T, E>`, `io::Result<T>`, a crate's own
//! `type Result<T> = ..`): through the type system, not by reading tokens.

use std::sync::Arc;
use std::time::Duration;

use ipc2_common::CodecError;

use crate::error::{Error, ExitInfo};

/// Why a call of a service method declared `-> Result<T, E>` did not give
/// `Ok(T)`: the service's own error `E` ([`CallError::App`]), or one of the
/// pool's errors, each a variant of its own with the fields and meaning of
/// the [`Error`] variant of the same name.
///
/// ```
/// use ipc2_host::CallError;
///
/// #[derive(Debug)]
/// enum LookupError { Missing }
///
/// fn explain(outcome: Result<u32, CallError<LookupError>>) -> String {
///     match outcome {
///         Ok(value) => format!("got {value}"),
///         Err(CallError::App(LookupError::Missing)) => "no such key".to_owned(),
///         Err(error) if error.is_retryable() => "try again".to_owned(),
///         Err(CallError::Timeout { after, .. }) => format!("too slow ({after:?})"),
///         Err(_) => "the pool failed".to_owned(),
///     }
/// }
/// assert_eq!(explain(Err(CallError::App(LookupError::Missing))), "no such key");
/// assert_eq!(explain(Err(CallError::QueueFull { capacity: 8 })), "try again");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError<E> {
    /// The service's implementation returned `Err(e)`.
    #[error(transparent)]
    App(E),

    /// See [`Error::WorkerDied`].
    #[error(
        "worker {worker} (pid {pid}) {status} while running this call; the call may have \
         partly run. The pool is replacing the worker"
    )]
    WorkerDied {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitInfo,
    },

    /// See [`Error::WorkerLost`].
    #[error(
        "remote worker {worker} (pid {pid}, {peer}) was lost while running this call \
         ({reason}); the call may have partly run"
    )]
    WorkerLost {
        /// Slot of the worker.
        worker: usize,
        /// Its process id on its own machine.
        pid: u32,
        /// Its address and certificate name.
        peer: ipc2_common::RemotePeer,
        /// Workers the call was given to.
        attempts: u32,
        /// How the connection was lost.
        reason: String,
    },

    /// See [`Error::Protocol`].
    #[error(
        "worker {worker} (pid {pid}) broke the ipc2 protocol ({source}); it was killed and is \
         being replaced"
    )]
    Protocol {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// What was wrong with what it sent.
        #[source]
        source: Arc<CodecError>,
    },

    /// See [`Error::App`]: the worker failed the call with a message
    /// (`ReplySender::fail`) instead of answering it; a worker that serves
    /// the service's generated dispatch answers with typed errors instead
    /// ([`CallError::App`]).
    #[error("worker {worker} (pid {pid}) failed this call: {message}")]
    Failed {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The reason the worker gave.
        message: String,
    },

    /// See [`Error::Panicked`]: the service's implementation panicked.
    #[error(
        "worker {worker} (pid {pid}) panicked while running this call{}: {message}; the call \
         failed, the pool goes on",
        location.as_deref().map(|at| format!(" at {at}")).unwrap_or_default()
    )]
    Panicked {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The panic's message.
        message: String,
        /// Where it panicked (`file:line:column`), when the worker knew.
        location: Option<String>,
    },

    /// See [`Error::NoReply`].
    #[error("worker {worker} (pid {pid}) dropped this call's reply sender without replying")]
    NoReply {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
    },

    /// See [`Error::JobFailed`].
    #[error("worker {worker} (pid {pid}) could not handle this call: {reason}")]
    JobFailed {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// What the worker reported.
        reason: String,
    },

    /// See [`Error::Encode`].
    #[error("could not encode the call; it was not sent: {0}")]
    Encode(#[source] CodecError),

    /// See [`Error::Decode`].
    #[error(
        "the reply from worker {worker} (pid {pid}) could not be decoded: {source}; do the host \
         and the worker binary use the same service definition?"
    )]
    Decode {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The decoder's error.
        #[source]
        source: CodecError,
    },

    /// See [`Error::WrongReply`].
    #[error(
        "the worker answered `{service}::{method}` with the reply of `{got}`; the host and the \
         worker were built from different versions of the service: rebuild both"
    )]
    WrongReply {
        /// The service's trait.
        service: &'static str,
        /// The method called.
        method: &'static str,
        /// The method whose reply came back.
        got: &'static str,
    },

    /// See [`Error::Timeout`].
    #[error(
        "the call ran for more than {after:?} on worker {worker} (pid {pid}){}; raise the \
         timeout, or make the call finish sooner",
        if *killed { ", which was killed and is being replaced" } else { "" }
    )]
    Timeout {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The deadline that passed, counted from when the worker took the call.
        after: Duration,
        /// Whether the worker was killed for it.
        killed: bool,
    },

    /// See [`Error::RetriesExhausted`].
    #[error(
        "the call was tried on {attempts} workers and each died (last: worker {worker}, pid \
         {pid}, {status}); it probably crashes the worker itself"
    )]
    RetriesExhausted {
        /// Workers the call was given to.
        attempts: u32,
        /// Slot of the last worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitInfo,
    },

    /// See [`Error::NoWorkers`].
    #[error(
        "no worker can take calls ({given_up} slot(s) gave up restarting); last failure: \
         {reason}"
    )]
    NoWorkers {
        /// Slots that stopped trying after too many failed starts.
        given_up: usize,
        /// The most recent reason a worker could not start or serve.
        reason: String,
    },

    /// See [`Error::QueueFull`].
    #[error(
        "the job queue is full ({capacity} jobs waiting); retry later, or raise queue_capacity"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },

    /// See [`Error::ShuttingDown`].
    #[error("the WorkerSet is shutting down; the call was not run or did not finish in time")]
    ShuttingDown,

    /// See [`Error::Closed`].
    #[error("the WorkerSet has been shut down; no more calls are accepted")]
    Closed,

    /// A pool error that service calls do not produce (those of starting a
    /// pool, and of blocking calls), kept whole.
    #[error(transparent)]
    Other(Error),
}

impl<E> CallError<E> {
    /// The service's own error, if that is what this is.
    pub fn into_app(self) -> Option<E> {
        match self {
            CallError::App(error) => Some(error),
            _ => None,
        }
    }

    /// Whether sending the same call again may succeed: its worker died
    /// ([`WorkerDied`](Self::WorkerDied)) or was lost
    /// ([`WorkerLost`](Self::WorkerLost)), it ran past its deadline
    /// ([`Timeout`](Self::Timeout)), the queue was full
    /// ([`QueueFull`](Self::QueueFull)) or no worker could take it for now
    /// ([`NoWorkers`](Self::NoWorkers)). A call that died or timed out may
    /// have partly run: retry only calls that are safe to repeat. The
    /// service's own errors are not retryable here; the service decides.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallError::WorkerDied { .. }
                | CallError::WorkerLost { .. }
                | CallError::Timeout { .. }
                | CallError::QueueFull { .. }
                | CallError::NoWorkers { .. }
        )
    }
}

/// Every pool error becomes the call error of the same name.
impl<E> From<Error> for CallError<E> {
    fn from(error: Error) -> Self {
        match error {
            Error::WorkerDied {
                worker,
                pid,
                status,
            } => CallError::WorkerDied {
                worker,
                pid,
                status,
            },
            Error::WorkerLost {
                worker,
                pid,
                peer,
                attempts,
                reason,
            } => CallError::WorkerLost {
                worker,
                pid,
                peer,
                attempts,
                reason,
            },
            Error::Protocol {
                worker,
                pid,
                source,
            } => CallError::Protocol {
                worker,
                pid,
                source,
            },
            Error::App {
                worker,
                pid,
                message,
            } => CallError::Failed {
                worker,
                pid,
                message,
            },
            Error::Panicked {
                worker,
                pid,
                message,
                location,
            } => CallError::Panicked {
                worker,
                pid,
                message,
                location,
            },
            Error::NoReply { worker, pid } => CallError::NoReply { worker, pid },
            Error::JobFailed {
                worker,
                pid,
                reason,
            } => CallError::JobFailed {
                worker,
                pid,
                reason,
            },
            Error::Encode(source) => CallError::Encode(source),
            Error::Decode {
                worker,
                pid,
                source,
            } => CallError::Decode {
                worker,
                pid,
                source,
            },
            Error::WrongReply {
                service,
                method,
                got,
            } => CallError::WrongReply {
                service,
                method,
                got,
            },
            Error::Timeout {
                worker,
                pid,
                after,
                killed,
            } => CallError::Timeout {
                worker,
                pid,
                after,
                killed,
            },
            Error::RetriesExhausted {
                attempts,
                worker,
                pid,
                status,
            } => CallError::RetriesExhausted {
                attempts,
                worker,
                pid,
                status,
            },
            Error::NoWorkers { given_up, reason } => CallError::NoWorkers { given_up, reason },
            Error::QueueFull { capacity } => CallError::QueueFull { capacity },
            Error::ShuttingDown => CallError::ShuttingDown,
            Error::Closed => CallError::Closed,
            other @ (Error::Config(_)
            | Error::SocketDir { .. }
            | Error::Bind { .. }
            | Error::Spawn { .. }
            | Error::ExitedBeforeConnect { .. }
            | Error::ConnectTimeout { .. }
            | Error::HandshakeMismatch { .. }
            | Error::BlockingInRuntime { .. }
            | Error::RemoteJoinTimeout { .. }) => CallError::Other(other),
        }
    }
}

/// A return type that is a `Result`, under whatever name it is written:
/// `Result<T, E>`, `std::result::Result<T, E>`, `io::Result<T>`, or a
/// crate's own `type Result<T> = std::result::Result<T, MyError>`.
///
/// `#[ipc2::service]` treats a method whose return type is written as a
/// path ending in `Result` as fallible, and asks this trait for its `T` and
/// `E`, so aliases resolve as the compiler resolves them. It is implemented
/// for `std::result::Result` only.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is named `Result` but is not `std::result::Result<T, E>`",
    label = "#[ipc2::service] treats a return type named `Result` as fallible",
    note = "return `std::result::Result<T, E>` (or an alias of it), or give the type another name"
)]
pub trait Fallible {
    /// What a success carries.
    type Ok;
    /// The service's own error.
    type Err;
    /// The value as a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T, E> Fallible for Result<T, E> {
    type Ok = T;
    type Err = E;

    fn into_result(self) -> Result<T, E> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("account {0} is unknown")]
    struct Unknown(u32);

    #[test]
    fn app_errors_show_as_themselves() {
        let error: CallError<Unknown> = CallError::App(Unknown(7));
        assert_eq!(error.to_string(), "account 7 is unknown");
        assert!(!error.is_retryable());
        assert!(matches!(error.into_app(), Some(Unknown(7))));
    }

    #[test]
    fn pool_errors_keep_their_variant_and_fields() {
        let error: CallError<Unknown> = Error::Timeout {
            worker: 1,
            pid: 42,
            after: Duration::from_millis(5),
            killed: true,
        }
        .into();
        assert!(matches!(
            error,
            CallError::Timeout {
                worker: 1,
                pid: 42,
                killed: true,
                ..
            }
        ));
        assert!(error.is_retryable());
        assert!(error.to_string().contains("pid 42"), "{error}");
        assert!(error.into_app().is_none());

        let closed: CallError<Unknown> = Error::Closed.into();
        assert!(matches!(closed, CallError::Closed));
        assert!(!closed.is_retryable());
    }

    #[test]
    fn call_errors_are_std_errors_when_the_app_error_is() {
        fn boxed(error: CallError<Unknown>) -> Box<dyn std::error::Error> {
            Box::new(error)
        }
        assert_eq!(
            boxed(CallError::App(Unknown(3))).to_string(),
            "account 3 is unknown"
        );
        let shutting_down = boxed(Error::ShuttingDown.into());
        assert!(shutting_down.to_string().contains("shutting down"));
    }
}
