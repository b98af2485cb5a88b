//! A real pool, end to end, in one file: this executable is both the host
//! and its workers (self-exec). It starts four workers, sends them jobs from
//! many tasks at once, and shows what a job whose handler panics looks like
//! to its caller: a typed error with the panic's message, while the pool
//! replaces the worker and goes on.
//!
//! Run: `cargo run --example quickstart`.

use std::error::Error;
use std::time::Instant;

use ipc2::Pool;
use ipc2::worker::Job;
use serde::{Deserialize, Serialize};

/// What the host asks of a worker.
#[derive(Serialize, Deserialize)]
enum Task {
    Add(u32, u32),
    Sub(u32, u32),
    Div(u32, u32),
}

fn main() -> Result<(), Box<dyn Error>> {
    // In a worker process (the pool below runs this same executable), serve
    // jobs, then exit; in the host, return at once and go on.
    ipc2::worker::run_if_worker(worker);
    host()
}

/// The worker: answers each job with a number.
#[tokio::main]
async fn worker() -> Result<(), Box<dyn Error>> {
    let mut jobs = ipc2::worker::jobs::<Task, u32>().await?;
    while let Some(job) = jobs.recv().await {
        if let Job::Bidirectional { data, tx } = job {
            let _ = tx.send(match data {
                Task::Add(a, b) => a + b,
                Task::Sub(a, b) => a - b,
                // Panics when b is 0, as code with a bug would.
                Task::Div(a, b) => a / b,
            });
        }
    }
    Ok(())
}

#[tokio::main]
async fn host() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let workers: Pool<Task, u32> = Pool::builder().worker_count(4).self_exec().finish().await?;
    println!(
        "started {} workers in {:?}: pids {:?}",
        workers.worker_count(),
        started.elapsed(),
        workers.worker_pids()
    );
    println!("6 + 7 = {}", workers.send(Task::Add(6, 7)).await?);
    println!("9 - 4 = {}", workers.send(Task::Sub(9, 4)).await?);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let workers = workers.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = 0u64;
            for i in 0..1000u32 {
                total += u64::from(workers.send(Task::Add(task, i)).await?);
            }
            Ok::<u64, ipc2::host::Error>(total)
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

    // A handler that panics fails its own job, with the panic's message;
    // the worker it ended is replaced and the pool goes on.
    match workers.send(Task::Div(1, 0)).await {
        Ok(reply) => println!("1 / 0 = {reply}?"),
        Err(error) => println!("1 / 0 -> error: {error}"),
    }
    println!("8 / 2 = {}", workers.send(Task::Div(8, 2)).await?);
    println!("{workers:?}");
    Ok(())
}
