//! Configuring and starting a [`WorkerSet`].
//!
//! [`WorkerSetBuilder::finish`] is where a set comes to life: it creates the
//! private socket directory, binds the server, starts the spawning thread,
//! the accept loop and one supervisor per worker, and returns once every
//! worker has connected and passed its handshake, or with the first reason
//! one could not.

use std::ffi::OsString;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipc2_common::{DEFAULT_MAX_FRAME_LENGTH, Server};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::dispatch::Dispatch;
use crate::error::Error;
use crate::gate::Gate;
use crate::socket_dir::SocketDir;
use crate::spawner::Spawner;
use crate::supervisor::supervise;
use crate::workerset::{Inner, Shared, WorkerSet};

/// Default time a spawned worker has to connect and pass its handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a connection has to send its handshake after connecting.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a set, fixed at `finish()`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) worker_count: usize,
    pub(crate) worker_path: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) envs: Vec<(OsString, OsString)>,
    pub(crate) max_frame_length: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) socket_parent: PathBuf,
}

/// Builds a [`WorkerSet`]; get one from [`WorkerSet::builder`].
#[must_use = "a builder does nothing until `.finish().await`"]
pub struct WorkerSetBuilder<S, W, H> {
    worker_count: Option<usize>,
    worker_path: Option<PathBuf>,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    max_frame_length: usize,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    socket_parent: Option<PathBuf>,
    _types: PhantomData<fn(H) -> (S, W)>,
}

impl<S, W, H> Default for WorkerSetBuilder<S, W, H> {
    fn default() -> Self {
        Self {
            worker_count: None,
            worker_path: None,
            args: Vec::new(),
            envs: Vec::new(),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            socket_parent: None,
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

    fn config(self) -> Result<Config, Error> {
        let worker_path = self
            .worker_path
            .ok_or(Error::Config("worker_path is required"))?;
        let worker_count = self.worker_count.unwrap_or_else(num_cpus::get);
        if worker_count == 0 {
            return Err(Error::Config("worker_count must be at least 1"));
        }
        if self.max_frame_length > u32::MAX as usize {
            return Err(Error::Config(
                "max_frame_length must fit in 32 bits (at most 4 GiB - 1)",
            ));
        }
        Ok(Config {
            worker_count,
            worker_path,
            args: self.args,
            envs: self.envs,
            max_frame_length: self.max_frame_length,
            connect_timeout: self.connect_timeout,
            handshake_timeout: self.handshake_timeout,
            socket_parent: self.socket_parent.unwrap_or_else(std::env::temp_dir),
        })
    }
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
        let config = self.config()?;
        let socket_dir =
            SocketDir::create(&config.socket_parent).map_err(|source| Error::SocketDir {
                parent: config.socket_parent.clone(),
                source,
            })?;
        let socket_path = socket_dir.socket_path();
        let listener = S::bind(&socket_path).map_err(|source| Error::Bind {
            path: socket_path.clone(),
            source,
        })?;
        let spawner = Spawner::start().map_err(|source| Error::Spawn {
            path: config.worker_path.clone(),
            source,
        })?;
        let gate = Arc::new(Gate::new(config.handshake_timeout, config.max_frame_length));
        let shared = Arc::new(Shared {
            dispatch: Dispatch::new(config.worker_count, 1),
            gate: Arc::clone(&gate),
            spawner,
            socket_path,
            next_job_id: Default::default(),
            config,
        });

        let mut tasks = vec![tokio::spawn(gate.run(listener)).abort_handle()];
        let count = shared.config.worker_count;
        let (started, mut startups) = mpsc::channel(count);
        for slot in 0..count {
            let task = supervise(Arc::clone(&shared), slot, started.clone());
            tasks.push(tokio::spawn(task).abort_handle());
        }
        drop(started);
        // From here on, dropping `inner` tears everything down.
        let inner = Inner::new(shared, tasks, socket_dir);
        for _ in 0..count {
            match startups.recv().await {
                Some(Ok(())) => {}
                Some(Err(error)) => return Err(error),
                None => return Err(Error::Closed),
            }
        }
        Ok(WorkerSet::from_inner(inner))
    }
}
