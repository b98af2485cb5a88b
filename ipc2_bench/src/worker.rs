//! The worker the benchmark's pools run (`ipc2_bench worker`): answers `Add`
//! with the sum and echoes bodies back. It does as little as a worker can,
//! so the figures measure ipc2, not the job.
//!
//! It is this same executable rather than a second binary because
//! `cargo run -p ipc2_bench` builds only the binary it runs; one executable
//! is always complete. The spawn floor starts it too (`ipc2_bench noop`), so
//! cold start is compared with starting the very same program.
//!
//! It runs a current-thread tokio runtime: a worker handles one job at a
//! time, and a second runtime thread would only add cross-thread wake-ups on
//! a 2-core machine shared with the host.

use ipc2_worker::{Blob, Job};
use tokio::net::UnixStream;

use crate::messages::{BenchJob, BenchReply, BenchService};
use crate::proc::Result;

/// Hidden subcommand that runs the worker.
pub const WORKER_COMMAND: &str = "worker";
/// Hidden subcommand that runs the worker of [`BenchService`].
pub const SERVICE_WORKER_COMMAND: &str = "service-worker";
/// Hidden subcommand that exits at once (the bare-spawn floor).
pub const NOOP_COMMAND: &str = "noop";

/// Serves jobs until the host closes the connection.
pub fn run() -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

/// Serves [`BenchService`] calls, on the same runtime as [`run`], until the
/// host closes the connection.
pub fn run_service() -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(Adder.serve())?;
    Ok(())
}

/// The service's state: none.
struct Adder;

impl BenchService for Adder {
    fn add(&self, a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    async fn add_async(&self, a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

async fn serve() -> Result<()> {
    let mut rx = ipc2_worker::connect::<UnixStream, BenchJob, BenchReply>().await?;
    while let Some(job) = rx.recv().await {
        answer(job);
    }
    Ok(())
}

/// Hidden subcommand that runs the worker as a remote one, over TLS (its
/// settings in the environment, see `ipc2_tls::env`).
pub const REMOTE_WORKER_COMMAND: &str = "remote-worker";

/// Serves jobs from a host over TLS until killed (it redials when the
/// connection is lost, as a remote worker does).
pub fn run_remote() -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut rx = ipc2_tls::remote_jobs::<BenchJob, BenchReply>()?;
            while let Some(job) = rx.recv().await {
                answer(job);
            }
            Ok(())
        })
}

fn answer(job: Job<BenchJob, BenchReply>) {
    if let Job::Bidirectional { data, tx } = job {
        let _ = tx.send(match data {
            BenchJob::Add(a, b) => BenchReply::Sum(a.wrapping_add(b)),
            BenchJob::Echo(body) => BenchReply::Echo(body),
            BenchJob::EchoVec(bytes) => BenchReply::EchoVec(bytes),
            BenchJob::EchoBlob(blob) => BenchReply::Blob(blob),
            BenchJob::CopyBlob(blob) => BenchReply::Blob(Blob::copy_from_slice(&blob)),
        });
    }
}
