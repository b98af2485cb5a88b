//! Ready-made pools for tests, and a time bound for test bodies.

use std::future::Future;
use std::time::Duration;

use ipc2_host::workerset::WorkerSet;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use crate::HostMessage;
use crate::behaviour::{Request, Response};
use crate::binaries::worker_binary;

/// A pool of the seed's worker.
pub type SeedPool = WorkerSet<UnixListener, u32, HostMessage>;
/// A pool of `behaviour_worker`.
pub type BehaviourPool = WorkerSet<UnixListener, Response, Request>;

/// Starts `count` workers of the `worker_test` package's binary `binary`.
pub async fn pool<W, H>(binary: &str, count: usize) -> WorkerSet<UnixListener, W, H>
where
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    match WorkerSet::builder()
        .worker_count(count)
        .worker_path(worker_binary(binary))
        .finish()
        .await
    {
        Ok(workers) => workers,
        Err(error) => panic!("a pool of {count} {binary} did not start: {error}"),
    }
}

/// Starts `count` seed workers.
pub async fn seed_pool(count: usize) -> SeedPool {
    pool("worker_test", count).await
}

/// Starts `count` behaviour workers.
pub async fn behaviour_pool(count: usize) -> BehaviourPool {
    pool("behaviour_worker", count).await
}

/// Runs `body`, failing the test if it takes longer than `seconds`.
pub async fn within<F: Future>(seconds: u64, body: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(seconds), body).await {
        Ok(output) => output,
        Err(_) => panic!("test body did not finish within {seconds} s"),
    }
}

/// Polls `condition` every 10 ms without blocking the runtime, until it
/// holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Jobs the pool's workers hold right now.
pub fn jobs_in_flight<W, H>(workers: &WorkerSet<UnixListener, W, H>) -> usize {
    workers.stats().workers.iter().map(|w| w.in_flight).sum()
}

/// Whether no worker slot of the pool has restarted its worker.
pub fn none_restarted<W, H>(workers: &WorkerSet<UnixListener, W, H>) -> bool {
    workers.stats().workers.iter().all(|w| w.restarts == 0)
}

/// A builder for a pool of `behaviour_worker`, to add options to.
pub fn behaviour_builder() -> ipc2_host::WorkerSetBuilder<UnixListener, Response, Request> {
    WorkerSet::builder().worker_path(worker_binary("behaviour_worker"))
}

/// The pid of the behaviour worker that answers a `Pid` job.
pub async fn pid_of(workers: &BehaviourPool) -> u32 {
    match workers.send(Request::Pid).await {
        Ok(Response::Pid(pid)) => pid,
        other => panic!("expected a pid, got {other:?}"),
    }
}

/// Polls `future` once, so that a `send` has handed its job to the pool;
/// panics if it is already done.
pub async fn poll_once<F: Future + Unpin>(future: &mut F) {
    tokio::select! {
        biased;
        _ = future => panic!("the job finished before the test expected"),
        _ = std::future::ready(()) => {}
    }
}
