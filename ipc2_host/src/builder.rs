//! Configuring and starting a [`WorkerSet`].
//!
//! [`WorkerSetBuilder::finish`] is where a set comes to life: it creates the
//! private socket directory, binds the server, starts the spawning thread,
//! the accept loop and one supervisor per worker, and returns once every
//! worker has connected and passed its handshake, or with the first reason
//! one could not. With [`WorkerSetBuilder::remote_workers`] it also starts a
//! second accept loop for workers on other machines, and one slot task per
//! remote slot (see `remote`).

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ipc2_common::protocol::{ENV_BLOB_THRESHOLD, ENV_ROLE, ENV_SHARED_MEMORY_LIMIT};
use ipc2_common::shm::{DEFAULT_BLOB_THRESHOLD, DEFAULT_SHARED_MEMORY_LIMIT};
use ipc2_common::{Connection, DEFAULT_MAX_FRAME_LENGTH, Heartbeat, Listener, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::{Config, RestartPolicy};
pub use crate::config::{
    DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEDICATED_IO_THREAD,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_RESTART_FAILURES, DEFAULT_RESTART_WINDOW, DEFAULT_ROLE,
    DEFAULT_STREAM_WINDOW, MAX_PENDING_HANDSHAKES,
};
use crate::dispatch::Dispatch;
use crate::error::Error;
use crate::gate::{Gate, Route};
use crate::io_thread::IoRuntime;
use crate::remote;
use crate::shared::Shared;
use crate::socket_dir::SocketDir;
use crate::spawner::Spawner;
use crate::supervisor::supervise;
use crate::workerset::{Inner, WorkerSet};

impl<S, W, H> WorkerSet<S, W, H> {
    /// A builder for a new set. The worker must be named: a binary with
    /// [`WorkerSetBuilder::worker_path`], or this very executable with
    /// [`WorkerSetBuilder::self_exec`].
    pub fn builder() -> WorkerSetBuilder<S, W, H> {
        WorkerSetBuilder::default()
    }
}

/// Builds a [`WorkerSet`]; get one from [`WorkerSet::builder`].
#[must_use = "a builder does nothing until `.finish().await`"]
pub struct WorkerSetBuilder<S, W, H> {
    worker_count: Option<usize>,
    worker_path: Option<PathBuf>,
    role: Option<String>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    max_frame_length: usize,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    socket_parent: Option<PathBuf>,
    job_timeout: Option<Duration>,
    kill_on_timeout: bool,
    max_attempts: u32,
    max_jobs_per_worker: Option<u64>,
    restart: RestartPolicy,
    capture_output: bool,
    max_in_flight: usize,
    queue_capacity: Option<usize>,
    stream_window: u32,
    dedicated_io_thread: bool,
    shared_memory: bool,
    blob_threshold: usize,
    shared_memory_limit: usize,
    remote: Option<RemoteSetup>,
    heartbeat: Heartbeat,
    wait_for_remote: usize,
    _types: PhantomData<fn(H) -> (S, W)>,
}

/// The accept loop of remote workers, type-erased so that the builder does
/// not carry the listener's type.
type AcceptLoop = Box<dyn FnOnce(Arc<Gate>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Remote workers to admit: their accept loop and how many at once.
struct RemoteSetup {
    accept: AcceptLoop,
    slots: usize,
}

impl fmt::Debug for RemoteSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteSetup")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Shows the settings given so far (message types need not implement
/// `Debug`).
impl<S, W, H> std::fmt::Debug for WorkerSetBuilder<S, W, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSetBuilder")
            .field("worker_count", &self.worker_count)
            .field("worker_path", &self.worker_path)
            .field("self_exec_role", &self.role)
            .field("args", &self.args)
            .field("envs", &self.envs)
            .field("max_frame_length", &self.max_frame_length)
            .field("job_timeout", &self.job_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_in_flight_per_worker", &self.max_in_flight)
            .field("queue_capacity", &self.queue_capacity)
            .field("remote_workers", &self.remote)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl<S, W, H> Default for WorkerSetBuilder<S, W, H> {
    fn default() -> Self {
        Self {
            worker_count: None,
            worker_path: None,
            role: None,
            args: Vec::new(),
            envs: Vec::new(),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            socket_parent: None,
            job_timeout: None,
            kill_on_timeout: true,
            max_attempts: 1,
            max_jobs_per_worker: None,
            restart: RestartPolicy {
                max_failures: DEFAULT_MAX_RESTART_FAILURES,
                window: DEFAULT_RESTART_WINDOW,
                backoff_min: DEFAULT_BACKOFF_MIN,
                backoff_max: DEFAULT_BACKOFF_MAX,
            },
            capture_output: false,
            max_in_flight: 1,
            queue_capacity: None,
            stream_window: DEFAULT_STREAM_WINDOW,
            dedicated_io_thread: DEFAULT_DEDICATED_IO_THREAD,
            shared_memory: true,
            blob_threshold: DEFAULT_BLOB_THRESHOLD,
            shared_memory_limit: DEFAULT_SHARED_MEMORY_LIMIT,
            remote: None,
            heartbeat: Heartbeat::default(),
            wait_for_remote: 0,
            _types: PhantomData,
        }
    }
}

impl<S, W, H> WorkerSetBuilder<S, W, H> {
    /// How many worker processes to run. Default: the number of CPU cores.
    pub fn worker_count(mut self, count: usize) -> Self {
        self.worker_count = Some(count);
        self
    }

    /// The worker binary to run (required). A relative path is resolved
    /// against the host's current directory.
    pub fn worker_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.worker_path = Some(path.into());
        self
    }

    /// Runs this very executable as the worker (self-exec): one binary is
    /// both host and worker. The worker's `main` must call
    /// `ipc2_worker::run_if_worker` first thing: in a worker process it runs
    /// the worker and exits, so the host's own code (command-line parsing,
    /// building a pool) never runs there. Workers get no command-line
    /// arguments (add some with [`arg`](Self::arg) if yours need them), and
    /// the role `"worker"` in their environment.
    ///
    /// On Linux the executable is started through `/proc/self/exe`, so it
    /// is the same program even if its file is replaced or moved meanwhile.
    pub fn self_exec(self) -> Self {
        self.self_exec_role(DEFAULT_ROLE)
    }

    /// Like [`self_exec`](Self::self_exec), with a role of your choosing, so
    /// that one executable can serve several kinds of workers: the worker
    /// reads it with `ipc2_worker::worker_role()`.
    pub fn self_exec_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Adds a command-line argument for every worker.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds command-line arguments for every worker.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for every worker (on top of the host's
    /// own environment, which workers inherit).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Largest frame (one encoded job or reply, plus 9 bytes) either side
    /// accepts. Default: [`DEFAULT_MAX_FRAME_LENGTH`] (16 MiB). Larger
    /// messages fail with an error naming both sizes.
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// How long a spawned worker has to connect and pass its handshake
    /// before it is killed. Default: [`DEFAULT_CONNECT_TIMEOUT`] (10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long any connection has, once accepted, to send its handshake.
    /// Default: [`DEFAULT_HANDSHAKE_TIMEOUT`] (5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Directory in which the set creates its private socket directory.
    /// Default: the system's temporary directory (`$TMPDIR` or `/tmp`).
    pub fn socket_parent(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket_parent = Some(path.into());
        self
    }

    /// Deadline for every job, counted from when a worker takes it (time in
    /// the queue does not count). A job past it fails with
    /// [`Error::Timeout`], and its worker is killed and replaced (see
    /// [`kill_on_timeout`](Self::kill_on_timeout)). Default: none. Override
    /// per job with [`WorkerSet::send_timeout`].
    pub fn job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = Some(timeout);
        self
    }

    /// Whether a worker whose job timed out is killed and replaced (default
    /// `true`: its state is unknown, and it may never finish). With `false`
    /// the caller still gets [`Error::Timeout`] at the deadline, the worker
    /// keeps running, and its late reply is discarded.
    pub fn kill_on_timeout(mut self, kill: bool) -> Self {
        self.kill_on_timeout = kill;
        self
    }

    /// How many workers a job may be given to when the worker holding it
    /// dies (default 1: at most once, the dead worker's jobs fail with
    /// [`Error::WorkerDied`]). Above 1 jobs are retried on another worker
    /// (at least once: make them idempotent); a job whose every worker died
    /// fails with [`Error::RetriesExhausted`]. Jobs that time out, get an
    /// answer, or meet a protocol violation are never retried.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Recycles each worker after it has been given this many jobs (like
    /// gunicorn's `max_requests` or Python's `max_tasks_per_child`): it
    /// finishes what it holds, is asked to exit (its `recv()` returns
    /// `None`), and is replaced. No job is lost or failed by it. Default:
    /// never.
    pub fn max_jobs_per_worker(mut self, jobs: u64) -> Self {
        self.max_jobs_per_worker = Some(jobs.max(1));
        self
    }

    /// When a slot gives up: after more than `max_failures` failed starts
    /// (or idle crashes, or protocol violations) within `window`. Crashes
    /// while running a job do not count. Default: 5 within 60 s.
    pub fn restart_limit(mut self, max_failures: u32, window: Duration) -> Self {
        self.restart.max_failures = max_failures;
        self.restart.window = window;
        self
    }

    /// Pause after a failed start: `min` doubling per failure up to `max`,
    /// each with ±50% jitter. Default: 50 ms to 5 s.
    pub fn restart_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.restart.backoff_min = min;
        self.restart.backoff_max = max.max(min);
        self
    }

    /// Capture the workers' stdout and stderr line by line as `tracing`
    /// events (target `ipc2::worker_output`, level INFO, fields `worker`,
    /// `pid`, `stream`) instead of letting them inherit the host's.
    /// Default: inherit.
    pub fn capture_output(mut self, capture: bool) -> Self {
        self.capture_output = capture;
        self
    }

    /// How many jobs each worker may hold at once (default 1: a job goes
    /// only to a worker that is not running one). Above 1 jobs go to the
    /// least-loaded worker and a worker's replies may come back in any
    /// order; the worker must run jobs concurrently (e.g. spawn a task per
    /// job) to benefit.
    pub fn max_in_flight_per_worker(mut self, jobs: usize) -> Self {
        self.max_in_flight = jobs.max(1);
        self
    }

    /// Bounds the queue of jobs waiting for a worker (default: unbounded).
    /// When it is full, `send` waits for room and
    /// [`try_send`](WorkerSet::try_send) fails at once with
    /// [`Error::QueueFull`]. Waiting costs no task and no file descriptor.
    pub fn queue_capacity(mut self, jobs: usize) -> Self {
        self.queue_capacity = Some(jobs.max(1));
        self
    }

    /// How many items of a stream job
    /// ([`send_stream`](WorkerSet::send_stream)) a worker may send ahead of
    /// the caller: the most that waits in the host's memory per stream. The
    /// worker waits when it is that far ahead. Default:
    /// [`DEFAULT_STREAM_WINDOW`] (16).
    pub fn stream_window(mut self, items: u32) -> Self {
        self.stream_window = items.max(1);
        self
    }

    /// Run the pool's own tasks (accept loop, one reader and one writer per
    /// worker) on a dedicated thread with a current-thread runtime, rather
    /// than on the runtime that calls `finish()`. Default:
    /// [`DEFAULT_DEDICATED_IO_THREAD`], chosen by `ipc2_bench` (see
    /// BENCHMARKS.md).
    pub fn dedicated_io_thread(mut self, dedicated: bool) -> Self {
        self.dedicated_io_thread = dedicated;
        self
    }

    /// Whether [`Blob`](ipc2_common::Blob)s of at least
    /// [`blob_threshold`](Self::blob_threshold) bytes travel through shared
    /// memory (default `true`; only on transports that pass descriptors:
    /// elsewhere they travel inline, with no change to the messages). With
    /// `false`, every blob is copied through the socket.
    pub fn shared_memory(mut self, enabled: bool) -> Self {
        self.shared_memory = enabled;
        self
    }

    /// Size from which a [`Blob`](ipc2_common::Blob) travels through shared
    /// memory rather than the socket. Default: [`DEFAULT_BLOB_THRESHOLD`]
    /// (16 KiB, measured with `ipc2_bench`). Process-wide, like the arena
    /// it applies to: the last set to `finish()` decides, for the host and
    /// its workers.
    pub fn blob_threshold(mut self, bytes: usize) -> Self {
        self.blob_threshold = bytes.max(1);
        self
    }

    /// Bound on the shared memory each process (the host, and each worker)
    /// makes for bodies, and maps of one peer's. When it is full,
    /// [`Blob::reserve`](ipc2_common::Blob::reserve) waits for bodies to be
    /// released, [`Blob::try_reserve`](ipc2_common::Blob::try_reserve)
    /// fails, and other blobs travel inline. Default:
    /// [`DEFAULT_SHARED_MEMORY_LIMIT`] (1 GiB). Process-wide, like
    /// [`blob_threshold`](Self::blob_threshold).
    pub fn shared_memory_limit(mut self, bytes: usize) -> Self {
        self.shared_memory_limit = bytes;
        self
    }

    /// Admits workers the set does not spawn: up to `slots` at once, that
    /// dial in through `listener` (for TLS over TCP,
    /// `ipc2_tls::TlsListener`), alongside the
    /// [`worker_count`](Self::worker_count) workers the set spawns (set that
    /// to 0 for remote workers only; no worker binary need be named then).
    /// They serve the same jobs. The set never starts, restarts or kills
    /// them: their platform does, and they reconnect on their own. When
    /// one's connection is lost (closed, reset, or silent past the
    /// [`heartbeat`](Self::heartbeat) timeout) the jobs it held fail with
    /// [`Error::WorkerLost`] naming its address, or are retried under
    /// [`max_attempts`](Self::max_attempts). A remote worker whose job times
    /// out is not disconnected (it cannot be killed from here): the job fails
    /// with `Timeout { killed: false }` and the worker takes no new job until
    /// it answers. While no worker can serve (every remote slot vacant, no
    /// spawned worker), sends fail at once with [`Error::NoWorkers`]. The
    /// listener must have been created inside a tokio runtime.
    pub fn remote_workers<L: Listener>(mut self, listener: L, slots: usize) -> Self {
        let accept: AcceptLoop =
            Box::new(move |gate: Arc<Gate>| Box::pin(gate.run(listener, Route::Remote)));
        self.remote = Some(RemoteSetup { accept, slots });
        self
    }

    /// How often the set and each remote worker send each other a
    /// heartbeat (`interval`), and how long either waits without hearing a
    /// byte before it drops the connection (`timeout`): a pulled cable, a
    /// half-open connection or a frozen peer is noticed within `timeout`.
    /// Remote workers learn both in their handshake. Default:
    /// [`DEFAULT_HEARTBEAT_INTERVAL`](ipc2_common::liveness::DEFAULT_HEARTBEAT_INTERVAL)
    /// (1 s) and
    /// [`DEFAULT_HEARTBEAT_TIMEOUT`](ipc2_common::liveness::DEFAULT_HEARTBEAT_TIMEOUT)
    /// (5 s). Spawned workers need none: the host learns of their death from
    /// the kernel.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        self.heartbeat = Heartbeat {
            interval,
            timeout: timeout.max(interval),
        };
        self
    }

    /// Makes [`finish`](WorkerSetBuilder::finish) wait until this many
    /// remote workers take jobs (within `connect_timeout`), or fail with
    /// [`Error::RemoteJoinTimeout`]. Default: 0 (remote workers join
    /// whenever they come).
    pub fn wait_for_remote_workers(mut self, count: usize) -> Self {
        self.wait_for_remote = count;
        self
    }

    fn config(self) -> Result<(Config, Option<RemoteSetup>), Error> {
        let worker_count = self.worker_count.unwrap_or_else(num_cpus::get);
        let remote_slots = self.remote.as_ref().map_or(0, |remote| remote.slots);
        let worker_path = match (self.worker_path, &self.role) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "worker_path and self_exec both name the worker; keep one",
                ));
            }
            (Some(path), None) => path,
            (None, Some(_)) => self_executable(),
            // Remote workers only: nothing is spawned.
            (None, None) if worker_count == 0 => PathBuf::new(),
            (None, None) => {
                return Err(Error::Config(
                    "no worker named: give worker_path(..), or self_exec() to run this executable",
                ));
            }
        };
        if self.role.is_some() && std::env::var_os(ENV_ROLE).is_some() {
            // This process is itself a self-exec worker that went on to run
            // the host's code: starting workers from here would start
            // workers without end.
            return Err(Error::Config(
                "this process is a self-exec worker (IPC2_ROLE is set) but is starting a pool of \
                 its own; call ipc2_worker::run_if_worker(..) first thing in main",
            ));
        }
        if worker_count == 0 && remote_slots == 0 {
            return Err(Error::Config(
                "worker_count must be at least 1 (or remote_workers be given slots)",
            ));
        }
        if self.wait_for_remote > remote_slots {
            return Err(Error::Config(
                "wait_for_remote_workers asks for more workers than remote_workers has slots",
            ));
        }
        if self.max_frame_length > u32::MAX as usize {
            return Err(Error::Config(
                "max_frame_length must fit in 32 bits (at most 4 GiB - 1)",
            ));
        }
        let config = Config {
            worker_count,
            worker_path,
            role: self.role,
            args: self.args,
            envs: self.envs,
            max_frame_length: self.max_frame_length,
            connect_timeout: self.connect_timeout,
            handshake_timeout: self.handshake_timeout,
            socket_parent: self.socket_parent.unwrap_or_else(std::env::temp_dir),
            job_timeout: self.job_timeout,
            kill_on_timeout: self.kill_on_timeout,
            max_attempts: self.max_attempts,
            max_jobs_per_worker: self.max_jobs_per_worker,
            restart: self.restart,
            capture_output: self.capture_output,
            max_in_flight: self.max_in_flight,
            queue_capacity: self.queue_capacity,
            stream_window: self.stream_window,
            dedicated_io_thread: self.dedicated_io_thread,
            shared_memory: self.shared_memory,
            blob_threshold: self.blob_threshold,
            shared_memory_limit: self.shared_memory_limit,
            remote_slots,
            heartbeat: self.heartbeat,
            wait_for_remote: self.wait_for_remote,
        };
        Ok((config, self.remote))
    }
}

/// This executable, as a path that names the same program even if its
/// file is replaced or moved while the pool runs (Linux), or as the path
/// it was started from.
fn self_executable() -> PathBuf {
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        return proc_self;
    }
    std::env::current_exe().unwrap_or(proc_self)
}

impl<S, W, H> WorkerSetBuilder<S, W, H>
where
    S: Server,
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    /// Starts the workers. Resolves once every worker has connected and
    /// passed its handshake; otherwise fails with the first reason one could
    /// not (binary missing or not executable, worker exited before
    /// connecting, connect deadline passed), after cleaning up whatever was
    /// started. Must be called inside a tokio runtime.
    pub async fn finish(self) -> Result<WorkerSet<S, W, H>, Error> {
        let (mut config, remote) = self.config()?;
        // Blobs go to shared memory before dispatch picks a worker, so only
        // when every worker can map it: a spawned one, on a transport that
        // passes descriptors. With remote workers, blobs travel inline.
        config.shared_memory &=
            <S::Connection as Connection>::PASSES_DESCRIPTORS && config.remote_slots == 0;
        let threshold = match config.shared_memory {
            true => config.blob_threshold,
            false => usize::MAX,
        };
        ipc2_common::shm::configure(threshold, config.shared_memory_limit);
        config.envs.extend([
            (ENV_BLOB_THRESHOLD.into(), threshold.to_string().into()),
            (
                ENV_SHARED_MEMORY_LIMIT.into(),
                config.shared_memory_limit.to_string().into(),
            ),
        ]);
        let socket_dir =
            SocketDir::create(&config.socket_parent).map_err(|source| Error::SocketDir {
                parent: config.socket_parent.clone(),
                source,
            })?;
        let socket_path = socket_dir.socket_path();
        let runtime = match config.dedicated_io_thread {
            true => IoRuntime::dedicated().map_err(|source| Error::Spawn {
                path: config.worker_path.clone(),
                source,
            })?,
            false => IoRuntime::caller(),
        };
        // The listener and the children register with the runtime their
        // tasks run on.
        let listener = {
            let _runtime = runtime.handle().enter();
            S::bind(&socket_path).map_err(|source| Error::Bind {
                path: socket_path.clone(),
                source,
            })?
        };
        let spawner = Spawner::start(runtime.handle().clone()).map_err(|source| Error::Spawn {
            path: config.worker_path.clone(),
            source,
        })?;
        let gate = Arc::new(Gate::new(config.handshake_timeout, config.max_frame_length));
        let shared = Arc::new(Shared {
            dispatch: Dispatch::new(
                config.worker_count + config.remote_slots,
                config.max_in_flight,
                config.max_jobs_per_worker,
                config.queue_capacity,
            ),
            counters: Default::default(),
            gate: Arc::clone(&gate),
            spawner,
            socket_path,
            next_job_id: Default::default(),
            config,
        });

        let tasks = runtime.handle();
        let local = Arc::clone(&gate).run(listener, Route::Secret);
        let gate_task = match remote {
            // One task accepts on both listeners, so one abort stops both.
            Some(remote) => tasks.spawn(async move {
                tokio::join!(local, (remote.accept)(gate));
            }),
            None => tasks.spawn(local),
        };
        let count = shared.config.worker_count;
        let remote_slots = count..count + shared.config.remote_slots;
        let watched = (Arc::clone(&shared), remote_slots.clone());
        let (started, mut startups) = mpsc::channel(count.max(1));
        let (joined, mut joins) = mpsc::channel(remote_slots.len().max(1));
        let mut supervisors: Vec<_> = (0..count)
            .map(|slot| {
                let task = supervise(Arc::clone(&shared), slot, started.clone());
                tasks.spawn(task.instrument(tracing::info_span!("ipc2_worker_slot", slot)))
            })
            .collect();
        supervisors.extend(remote_slots.map(|slot| {
            let task = remote::run_slot(Arc::clone(&shared), slot, joined.clone());
            tasks.spawn(task.instrument(tracing::info_span!("ipc2_remote_slot", slot)))
        }));
        drop((started, joined));
        let (wait_for_remote, connect_timeout) =
            (shared.config.wait_for_remote, shared.config.connect_timeout);
        // From here on, dropping `inner` tears everything down.
        let inner = Inner::new(shared, gate_task, supervisors, socket_dir, runtime);
        for _ in 0..count {
            match startups.recv().await {
                Some(Ok(())) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(Error::Closed),
            }
        }
        if wait_for_remote > 0 {
            // Only then: a set may be finished where no tokio timer runs.
            // Each join is a cue to count the remote workers serving now,
            // not one more: a worker that joined, left and came back (or
            // was replaced) meanwhile must not count twice.
            let (shared, slots) = watched;
            let serving = || shared.dispatch.serving(slots.clone());
            let waited = tokio::time::timeout(connect_timeout, async {
                while serving() < wait_for_remote && joins.recv().await.is_some() {}
            })
            .await;
            if waited.is_err() {
                return Err(Error::RemoteJoinTimeout {
                    expected: wait_for_remote,
                    joined: serving(),
                    timeout: connect_timeout,
                });
            }
        }
        Ok(WorkerSet::from_inner(inner))
    }
}
