//! A program that is its own worker (self-exec), for tests.
//!
//! `self_exec_host --jobs N` starts a pool of two workers running this very
//! executable, sends N jobs and prints one line per reply:
//! `reply: <worker pid> <role> <argument count>`. Its own command line is
//! parsed strictly (anything else exits with code 2), so a worker that ran
//! the host's `main` would be caught. With `IPC2_TEST_FORGET_RUN_IF_WORKER`
//! set, `main` skips `run_if_worker` (as a program with that bug would) and
//! its arguments, and sends one job.

use ipc2_host::Pool;
use ipc2_worker::Job;

fn main() {
    let forget = std::env::var_os("IPC2_TEST_FORGET_RUN_IF_WORKER").is_some();
    if !forget {
        ipc2_worker::run_if_worker(worker);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let jobs = match args.as_slice() {
        _ if forget => 1,
        [flag, count] if flag == "--jobs" => match count.parse::<u32>() {
            Ok(count) => count,
            Err(_) => usage(),
        },
        _ => usage(),
    };
    if let Err(error) = host(jobs) {
        eprintln!("self_exec_host: {error}");
        std::process::exit(3);
    }
}

fn usage() -> ! {
    eprintln!("usage: self_exec_host --jobs N");
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn worker() -> Result<(), ipc2_worker::ConnectError> {
    let mut jobs = ipc2_worker::jobs::<u32, (u32, String, usize)>().await?;
    while let Some(job) = jobs.recv().await {
        if let Job::Bidirectional { tx, .. } = job {
            let role = ipc2_worker::worker_role().unwrap_or_default();
            let _ = tx.send((std::process::id(), role, std::env::args().count()));
        }
    }
    Ok(())
}

#[tokio::main]
async fn host(jobs: u32) -> Result<(), ipc2_host::Error> {
    let workers: Pool<u32, (u32, String, usize)> =
        Pool::builder().worker_count(2).self_exec().finish().await?;
    println!("host: {}", std::process::id());
    for job in 0..jobs {
        let (pid, role, args) = workers.send(job).await?;
        println!("reply: {pid} {role} {args}");
    }
    Ok(())
}
