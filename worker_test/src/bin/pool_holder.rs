//! A host that starts a pool of behaviour workers, prints their pids on one
//! line (`pids: 1 2 3`), then waits forever. Tests kill it with SIGKILL and
//! check that its workers die with it.
//!
//! Usage: `pool_holder <path to behaviour_worker> [worker count] [socket parent dir]`.

use std::io::Write;

use ipc2_host::workerset::WorkerSet;
use test_common::behaviour::{Request, Response};
use tokio::net::UnixListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let worker = args
        .next()
        .ok_or("usage: pool_holder <worker path> [count]")?;
    let count: usize = args.next().and_then(|arg| arg.parse().ok()).unwrap_or(2);
    let mut builder = WorkerSet::builder().worker_count(count).worker_path(worker);
    if let Some(parent) = args.next() {
        builder = builder.socket_parent(parent);
    }
    let workers: WorkerSet<UnixListener, Response, Request> = builder.finish().await?;
    let pids: Vec<String> = workers.worker_pids().iter().map(u32::to_string).collect();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "socket: {}", workers.socket_path().display())?;
    writeln!(stdout, "pids: {}", pids.join(" "))?;
    stdout.flush()?;
    drop(stdout);
    std::future::pending::<()>().await;
    Ok(())
}
