//! Every error a user of the host side can see.
//!
//! Each names what failed, which worker (slot and pid) where one is
//! involved, and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use ipc2_common::{CodecError, RemotePeer};

/// How a worker process ended, as far as the host could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitInfo(pub Option<ExitStatus>);

impl ExitInfo {
    /// The exit code, if the worker exited normally.
    pub fn code(&self) -> Option<i32> {
        self.0.and_then(|status| status.code())
    }

    /// The signal that killed the worker, if one did.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.0.and_then(|status| status.signal())
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code(), self.signal()) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            _ => f.write_str("exit status unknown"),
        }
    }
}

/// What went wrong with a `WorkerSet` or one of its jobs.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given an unusable configuration.
    #[error("invalid WorkerSet configuration: {0}")]
    Config(&'static str),

    /// The private directory for the socket could not be created.
    #[error("could not create a private socket directory in {}: {source}", parent.display())]
    SocketDir {
        /// Where it was to be created.
        parent: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },

    /// The host's socket could not be bound.
    #[error("could not bind the host socket at {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },

    /// The worker binary could not be started (missing, not executable, ...).
    #[error(
        "could not start worker binary {}: {source}; check that worker_path points to a built, \
         executable file",
        path.display()
    )]
    Spawn {
        /// The worker binary.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },

    /// A freshly spawned worker exited before passing its handshake.
    #[error(
        "worker {worker} (pid {pid}) {status} before connecting to the host; check its stderr, \
         and that its main calls ipc2_worker::connect()"
    )]
    ExitedBeforeConnect {
        /// Slot of the worker in the set (0-based, stable across restarts).
        worker: usize,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitInfo,
    },

    /// A freshly spawned worker did not pass its handshake in time; it was
    /// killed.
    #[error(
        "worker {worker} (pid {pid}) did not connect and pass the handshake within {timeout:?}; \
         it was killed. Check that its main calls ipc2_worker::connect(), or raise \
         connect_timeout"
    )]
    ConnectTimeout {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The deadline that passed.
        timeout: Duration,
    },

    /// A connection presented this worker's secret but came from another
    /// process; the worker was killed.
    #[error(
        "a connection presented the secret of worker {worker} (pid {pid}) but came from pid \
         {claimed}; the worker was killed as compromised"
    )]
    HandshakeMismatch {
        /// Slot of the worker.
        worker: usize,
        /// The process the host spawned.
        pid: u32,
        /// The process that connected.
        claimed: u32,
    },

    /// The worker running this job died before answering. The job may have
    /// partly run. The worker is being replaced.
    #[error(
        "worker {worker} (pid {pid}) {status} while running this job; the job may have partly \
         run. The pool is replacing the worker"
    )]
    WorkerDied {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitInfo,
    },

    /// The connection to a remote worker (one the set did not spawn) was
    /// lost while it held this job: closed, reset, or silent for longer than
    /// the heartbeat timeout. The job may have partly run. The set does not
    /// restart remote workers (their platform does); they reconnect.
    #[error(
        "remote worker {worker} (pid {pid}, {peer}) was lost while running this job ({reason}){}; \
         the job may have partly run. Retry if it is idempotent, or set max_attempts",
        if *attempts > 1 { format!(" after {attempts} attempts") } else { String::new() }
    )]
    WorkerLost {
        /// Slot of the worker.
        worker: usize,
        /// Its process id on its own machine, as it said in its handshake.
        pid: u32,
        /// Its address and certificate name.
        peer: RemotePeer,
        /// Workers the job was given to.
        attempts: u32,
        /// How the connection was lost.
        reason: String,
    },

    /// No remote worker joined in time: `finish()` was asked to wait for
    /// some (`wait_for_remote_workers`).
    #[error(
        "only {joined} of {expected} remote workers joined within {timeout:?}; check that they \
         run, reach the host's address, and present a certificate its CA signed"
    )]
    RemoteJoinTimeout {
        /// Remote workers `finish()` waited for.
        expected: usize,
        /// Remote workers serving when it gave up.
        joined: usize,
        /// How long it waited (`connect_timeout`).
        timeout: Duration,
    },

    /// The worker broke the protocol (malformed or unexpected frame). It can
    /// no longer be trusted: it was killed and is being replaced.
    #[error(
        "worker {worker} (pid {pid}) broke the ipc2 protocol ({source}); it was killed and is \
         being replaced"
    )]
    Protocol {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// What was wrong with what it sent (shared by every job it held).
        #[source]
        source: Arc<CodecError>,
    },

    /// The worker's code failed the job with a reason of the application's
    /// (`tx.fail(reason)` in the worker): the job ran and was refused, not
    /// crashed. The worker goes on serving.
    #[error("worker {worker} (pid {pid}) failed this job: {message}")]
    App {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The reason the worker gave.
        message: String,
    },

    /// The job's handler panicked in the worker. If the panic ended the
    /// worker process, it is being replaced (at once: a job's panic never
    /// counts against the restart limit); otherwise it keeps serving.
    #[error(
        "worker {worker} (pid {pid}) panicked while running this job{}: {message}; the job \
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

    /// The worker dropped the job's reply sender without replying.
    #[error(
        "worker {worker} (pid {pid}) dropped this job's reply sender without replying; make the \
         worker answer every Job::Bidirectional with tx.send(..)"
    )]
    NoReply {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
    },

    /// The worker library could not handle the job (it could not decode the
    /// job, or could not encode the reply).
    #[error("worker {worker} (pid {pid}) could not handle this job: {reason}")]
    JobFailed {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// What the worker reported.
        reason: String,
    },

    /// The job could not be encoded (or is larger than the frame limit). It
    /// was never sent.
    #[error("could not encode the job; it was not sent: {0}")]
    Encode(#[source] CodecError),

    /// The reply arrived but could not be decoded into the expected type.
    #[error(
        "the reply from worker {worker} (pid {pid}) could not be decoded: {source}; do the host \
         and the worker binary use the same message types?"
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

    /// A service call (`#[ipc2::service]`) was answered with the reply of
    /// another method: the host and the worker disagree on the service.
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

    /// The job ran past its deadline. Unless `kill_on_timeout(false)` was
    /// set, the worker (whose state is now unknown) was killed and is being
    /// replaced.
    #[error(
        "the job ran for more than {after:?} on worker {worker} (pid {pid}){}; raise the \
         timeout, or make the job finish sooner",
        if *killed { ", which was killed and is being replaced" } else { "" }
    )]
    Timeout {
        /// Slot of the worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// The deadline that passed, counted from when the worker took the job.
        after: Duration,
        /// Whether the worker was killed for it.
        killed: bool,
    },

    /// The job's worker died on every attempt (`max_attempts`): it is likely
    /// the job itself that kills workers.
    #[error(
        "the job was tried on {attempts} workers and each died (last: worker {worker}, pid \
         {pid}, {status}); it probably crashes the worker itself"
    )]
    RetriesExhausted {
        /// Workers the job was given to.
        attempts: u32,
        /// Slot of the last worker.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitInfo,
    },

    /// No worker can serve: every slot is backing off after failed starts or
    /// has stopped trying. Sends fail at once until a worker starts again.
    #[error(
        "no worker can take jobs ({given_up} slot(s) gave up restarting); last failure: \
         {reason}"
    )]
    NoWorkers {
        /// Slots that stopped trying after too many failed starts.
        given_up: usize,
        /// The most recent reason a worker could not start or serve.
        reason: String,
    },

    /// `try_send` found the bounded queue full; the job was not sent.
    #[error(
        "the job queue is full ({capacity} jobs waiting); retry later, use send() to wait for \
         room, or raise queue_capacity"
    )]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },

    /// The set is shutting down: it takes no new jobs, or the shutdown's
    /// deadline passed before this job finished.
    #[error("the WorkerSet is shutting down; the job was not run or did not finish in time")]
    ShuttingDown,

    /// The set is gone; the job was not (or no longer) run.
    #[error("the WorkerSet has been shut down; no more jobs are accepted")]
    Closed,

    /// A blocking call (`send_blocking`, `finish_blocking`,
    /// `PendingReply::wait`, a map's `blocking()`, ...) was made on a
    /// current-thread tokio runtime (including its `spawn_blocking`
    /// threads, which tokio does not let a library tell apart). Nothing was
    /// done.
    #[error(
        "{call} blocks its thread, but was called on a current-thread tokio runtime: that would \
         stop the runtime's only thread, which may be the one driving the pool (a deadlock). \
         Use the async method with .await there (send, finish, shutdown, awaiting the \
         PendingReply, the map's next), or call it from a thread outside the runtime or on a \
         multi-thread runtime"
    )]
    BlockingInRuntime {
        /// The blocking method that was called.
        call: &'static str,
    },
}

/// Shows the message, so that `main() -> Result<(), Box<dyn Error>>`, which
/// prints errors with `Debug`, prints something a person can act on.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
