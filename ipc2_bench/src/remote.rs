//! ipc2 with remote workers over TLS on loopback, measured in the same run
//! as the Unix-socket figures: what the network transport itself costs per
//! job (encryption, TCP, heartbeats), before any real network's latency.
//!
//! The remote workers are this executable (`ipc2_bench remote-worker`),
//! started by the bench as a platform would start them, dialling the
//! pool's `TlsListener` on 127.0.0.1 with certificates made for the run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ipc2_tls::dev::DevCa;
use ipc2_tls::env::{ENV_HOST, ENV_SERVER_NAME, ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY};
use ipc2_tls::{HostTls, TlsListener};

use crate::pool::{Pool, add_loop, latency_pair, report, round_trips};
use crate::proc::{ChildGuard, Result};
use crate::stats::{Budget, median, median_latency};
use crate::worker::REMOTE_WORKER_COMMAND;

/// Key of the remote round-trip figures.
pub const RT_KEY: &str = "ipc2.tls.rt";
/// Key of the remote jobs/s figure (2 workers, 64 in flight each).
pub const JOBS_KEY: &str = "ipc2.tls.jobs.w2.c64";
/// The name on the host's certificate.
const HOST_NAME: &str = "ipc2-bench-host";

/// Measures and reports the remote figures.
pub async fn measure(budget: &Budget, exe: &Path) {
    let dir = std::env::temp_dir().join(format!("ipc2_bench.tls.{}", std::process::id()));
    report(
        RT_KEY,
        round_trip(budget, exe, &dir).await.map(latency_pair),
    );
    let rate = jobs_per_second(budget, exe, &dir).await;
    report(JOBS_KEY, rate.map(|rate| vec![("", rate)]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `send` round trip, 1 remote worker, 1 in flight: median p50 and p99.
async fn round_trip(budget: &Budget, exe: &Path, dir: &Path) -> Result<(f64, f64)> {
    let mut reps = Vec::new();
    for _ in 0..budget.reps {
        let remote = RemotePool::start(exe, dir, 1, 1).await?;
        reps.push(round_trips(budget, &remote.pool).await?);
    }
    Ok(median_latency(&reps))
}

/// Add jobs/s, 2 remote workers × 64 in flight.
async fn jobs_per_second(budget: &Budget, exe: &Path, dir: &Path) -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..budget.reps {
        let remote = RemotePool::start(exe, dir, 2, 64).await?;
        add_loop(&remote.pool, 128, budget.warmup).await?;
        rates.push(add_loop(&remote.pool, 128, budget.window).await?);
    }
    Ok(median(rates))
}

/// A pool of remote workers only, and the worker processes (killed on drop).
struct RemotePool {
    pool: Pool,
    _workers: Vec<ChildGuard>,
}

impl RemotePool {
    async fn start(exe: &Path, dir: &Path, workers: usize, in_flight: usize) -> Result<Self> {
        let ca = DevCa::new()?;
        let tls = HostTls::new(&ca.identity(HOST_NAME)?, &[])?;
        let listener = TlsListener::bind("127.0.0.1:0", tls).await?;
        let address = listener.local_addr()?.to_string();
        let mut children = Vec::new();
        for index in 0..workers {
            let files = dir.join(format!("worker{index}"));
            std::fs::create_dir_all(&files)?;
            let [ca_file, cert, key] = ca.identity(&format!("worker{index}"))?.write_to(&files)?;
            children.push(ChildGuard::spawn(
                Command::new(exe)
                    .arg(REMOTE_WORKER_COMMAND)
                    .env(ENV_HOST, &address)
                    .env(ENV_SERVER_NAME, HOST_NAME)
                    .env(ENV_TLS_CA, &ca_file)
                    .env(ENV_TLS_CERT, &cert)
                    .env(ENV_TLS_KEY, &key),
            )?);
        }
        let pool = Pool::builder()
            .worker_count(0)
            .remote_workers(listener, workers)
            .wait_for_remote_workers(workers)
            .max_in_flight_per_worker(in_flight)
            .connect_timeout(Duration::from_secs(20))
            .finish()
            .await?;
        Ok(Self {
            pool,
            _workers: children,
        })
    }
}
