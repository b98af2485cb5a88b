//! ipc2 as its users run it: the seed's worker as written, with the seed
//! host's defaults.
//!
//! The other ipc2 figures use the bench's own worker (`ipc2_bench worker`,
//! a current-thread runtime). Users run the seed's worker: `worker_test`,
//! whose `main` is the seed document's example verbatim (`#[tokio::main]`,
//! a multi-thread runtime, handling one job at a time in its loop). These
//! figures start that very binary (built in this profile by
//! `test_common::binaries` when missing), with the pool's defaults (one job
//! in flight per worker) unless the figure says otherwise, so that a speed
//! target is judged where users are.

use std::path::PathBuf;

use ipc2_host::WorkerSet;
use test_common::HostMessage;
use tokio::net::UnixListener;

use crate::pool::{
    Adder, BatchAdder, add_loop, batch_loop, each_pool, latency_pair, median_rate, report,
    round_trips,
};
use crate::proc::Result;
use crate::stats::{Budget, median_latency};

/// A pool of the seed's worker: replies `u32`, jobs `HostMessage`.
pub(crate) type SeedPool = WorkerSet<UnixListener, u32, HostMessage>;

/// Key prefix of these figures.
pub const PREFIX: &str = "ipc2.seed";
/// Tasks calling `send` in the seed-defaults throughput figure.
pub const CALLERS: usize = 64;

impl BatchAdder for SeedPool {
    async fn add_batch(&self, addends: Vec<u32>) -> Result<()> {
        let outcomes = self
            .send_batch(addends.iter().map(|&a| HostMessage::Add(a, 1)))
            .await;
        for (a, outcome) in addends.into_iter().zip(outcomes) {
            if outcome? != a + 1 {
                return Err(format!("Add({a}, 1) answered wrongly").into());
            }
        }
        Ok(())
    }
}

impl Adder for SeedPool {
    async fn add(&self, a: u32, b: u32) -> Result<()> {
        let sum = self.send(HostMessage::Add(a, b)).await?;
        if sum == a.wrapping_add(b) {
            Ok(())
        } else {
            Err(format!("Add({a}, {b}) answered {sum}").into())
        }
    }
}

/// The seed's worker binary, built if needed.
fn seed_worker() -> Result<PathBuf> {
    std::panic::catch_unwind(|| test_common::binaries::worker_binary("worker_test"))
        .map_err(|_| "could not build worker_test (the seed's worker)".into())
}

pub(crate) async fn start(workers: usize, in_flight: usize) -> Result<SeedPool> {
    Ok(WorkerSet::builder()
        .worker_count(workers)
        .worker_path(seed_worker()?)
        .max_in_flight_per_worker(in_flight)
        .finish()
        .await?)
}

/// Measures and reports the seed-worker figures: on a pinned host only the
/// round trip, otherwise everything.
pub async fn measure(budget: &Budget, pinned: bool) {
    if pinned {
        report(
            &format!("{PREFIX}.rt.pinned"),
            latency(budget).await.map(latency_pair),
        );
        return;
    }
    report(
        &format!("{PREFIX}.rt.unpinned"),
        latency(budget).await.map(latency_pair),
    );
    for (workers, in_flight, callers) in [(2, 1, CALLERS), (2, 64, 128)] {
        let rate = rate(budget, workers, in_flight, callers).await;
        report(&jobs_key(workers, in_flight), rate.map(|r| vec![("", r)]));
    }
    // With the defaults (one job per worker at a time) a batch's jobs
    // travel one per frame; beside it, the in-flight settings that let
    // them share frames.
    for (key, in_flight) in [("batch.defaults", 1), ("batch", 256)] {
        report(
            &format!("{PREFIX}.{key}"),
            batch_rate(budget, in_flight).await.map(|r| vec![("", r)]),
        );
    }
    report(
        &format!("{PREFIX}.batch.chunk1000"),
        batch_rate(budget, crate::pool::CHUNK_IN_FLIGHT)
            .await
            .map(|r| vec![("", r)]),
    );
}

/// Key of a seed-worker jobs/s figure.
pub fn jobs_key(workers: usize, in_flight: usize) -> String {
    format!("{PREFIX}.jobs.w{workers}.c{in_flight}")
}

async fn latency(budget: &Budget) -> Result<(f64, f64)> {
    let start = async || start(1, 1).await;
    let reps = each_pool(budget, start, async |pool| round_trips(budget, pool).await).await?;
    Ok(median_latency(&reps))
}

async fn rate(budget: &Budget, workers: usize, in_flight: usize, callers: usize) -> Result<f64> {
    let start = async || start(workers, in_flight).await;
    median_rate(budget, start, async |pool, window| {
        add_loop(pool, callers, window).await
    })
    .await
}

async fn batch_rate(budget: &Budget, in_flight: usize) -> Result<f64> {
    let start = async || start(2, in_flight).await;
    median_rate(budget, start, async |pool, window| {
        batch_loop(pool, window).await
    })
    .await
}

/// A pool for `pool-hot seed-*`: 2 seed workers with `in_flight` each.
pub(crate) async fn hot_pool(in_flight: usize) -> Result<SeedPool> {
    start(2, in_flight).await
}
