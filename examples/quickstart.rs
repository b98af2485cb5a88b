//! A real pool, end to end: builds the seed's worker binary if needed,
//! starts four workers, sends them jobs from many tasks at once, and shows
//! what a crashed worker looks like to the caller.
//!
//! Run from anywhere in the workspace: `cargo run --example quickstart`.

use std::error::Error;
use std::time::Instant;

use ipc2_host::workerset::WorkerSet;
use test_common::HostMessage;
use test_common::behaviour::{Request, Response};
use tokio::net::UnixListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // 1. The seed's worker: add and subtract. (`worker_binary` runs
    // `cargo build -p worker_test` the first time, so it stays out of the
    // start-up time.)
    let worker = test_common::binaries::worker_binary("worker_test");
    let started = Instant::now();
    let workers: WorkerSet<UnixListener, u32, HostMessage> = WorkerSet::builder()
        .worker_count(4)
        .worker_path(worker)
        .finish()
        .await?;
    println!(
        "started {} workers in {:?}: pids {:?}",
        workers.worker_count(),
        started.elapsed(),
        workers.worker_pids()
    );
    println!("6 + 7 = {}", workers.send(HostMessage::Add(6, 7)).await?);
    println!("9 - 4 = {}", workers.send(HostMessage::Sub(9, 4)).await?);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let workers = workers.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = 0u64;
            for i in 0..1000u32 {
                total += u64::from(workers.send(HostMessage::Add(task, i)).await?);
            }
            Ok::<u64, ipc2_host::Error>(total)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    println!(
        "8 tasks x 1000 jobs answered in {:?} (sum of replies {total})",
        started.elapsed()
    );
    drop(workers);

    // 2. A worker that crashes: the caller gets an error, the pool heals.
    let workers: WorkerSet<UnixListener, Response, Request> = WorkerSet::builder()
        .worker_count(1)
        .worker_path(test_common::binaries::worker_binary("behaviour_worker"))
        .finish()
        .await?;
    match workers.send(Request::Exit(3)).await {
        Ok(reply) => println!("unexpected reply {reply:?}"),
        Err(error) => println!("crashing job -> error: {error}"),
    }
    println!("next job -> {:?}", workers.send(Request::Add(1, 2)).await?);
    Ok(())
}
