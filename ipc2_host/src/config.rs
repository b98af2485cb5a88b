//! A set's settings: what the builder collects and the pool's tasks read.
//!
//! [`Config`] is fixed when `finish()` starts the pool and shared read-only
//! by the handle, the supervisors and the gate; the defaults live here too,
//! next to the policy they parameterise. Keeping them apart from the builder
//! lets every part of the pool read its settings without depending on how
//! they were gathered.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ipc2_common::Heartbeat;

/// Default number of stream items a worker may send ahead of its caller.
pub const DEFAULT_STREAM_WINDOW: u32 = 16;
/// The role `self_exec()` gives workers.
pub const DEFAULT_ROLE: &str = "worker";
/// Default time a spawned worker has to connect and pass its handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection has to send its handshake after connecting.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Whether a pool's own tasks run on a dedicated thread by default.
pub const DEFAULT_DEDICATED_IO_THREAD: bool = false;
/// Connections that may be waiting for their handshake at once; past that
/// the oldest is dropped, so silent strangers cannot use up the host's file
/// descriptors.
pub const MAX_PENDING_HANDSHAKES: usize = 256;
/// Default restart limit: a slot gives up after more than this many failed
/// starts within [`DEFAULT_RESTART_WINDOW`].
pub const DEFAULT_MAX_RESTART_FAILURES: u32 = 5;
/// Default window of the restart limit.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);
/// Default first pause after a failed start; it doubles per failure.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Default longest pause between failed starts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// When a slot stops restarting, and how long it waits between tries.
#[derive(Clone, Debug)]
pub(crate) struct RestartPolicy {
    pub(crate) max_failures: u32,
    pub(crate) window: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

impl RestartPolicy {
    /// Pause after the `failures`-th failure in the window: exponential, with
    /// jitter of ±50% so that slots failing together do not retry together.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let base = self
            .backoff_min
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        let mut random = [0u8; 2];
        let _ = rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty());
        let factor = 0.5 + f64::from(u16::from_le_bytes(random)) / f64::from(u16::MAX);
        base.mul_f64(factor)
    }
}

/// Settings of a set, fixed at `finish()`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) worker_count: usize,
    pub(crate) worker_path: PathBuf,
    /// The role a self-executing host gives its workers; `None` when the
    /// worker is a binary of its own.
    pub(crate) role: Option<String>,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(OsString, OsString)>,
    pub(crate) max_frame_length: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) socket_parent: PathBuf,
    pub(crate) job_timeout: Option<Duration>,
    pub(crate) kill_on_timeout: bool,
    pub(crate) max_attempts: u32,
    pub(crate) max_jobs_per_worker: Option<u64>,
    pub(crate) restart: RestartPolicy,
    pub(crate) capture_output: bool,
    pub(crate) max_in_flight: usize,
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) stream_window: u32,
    pub(crate) dedicated_io_thread: bool,
    /// Jobs place large blobs in shared memory (enabled, and the transport
    /// passes descriptors).
    pub(crate) shared_memory: bool,
    pub(crate) blob_threshold: usize,
    pub(crate) shared_memory_limit: usize,
    /// Slots for remote workers, after the `worker_count` spawned ones.
    pub(crate) remote_slots: usize,
    pub(crate) heartbeat: Heartbeat,
    /// Remote workers `finish()` waits for.
    pub(crate) wait_for_remote: usize,
}
