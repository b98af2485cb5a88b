//! One executable as both host and worker (self-exec).
//!
//! A host built with `WorkerSetBuilder::self_exec()` starts its own
//! executable as each worker, with the worker's role in the environment.
//! Such a program calls [`run_if_worker`] first thing in `main`: in a worker
//! process it runs the worker and exits, so nothing of the host's `main`
//! (command-line parsing, starting a pool) ever runs there; in the host it
//! returns at once.
//!
//! ```no_run
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     ipc2_worker::run_if_worker(worker); // never returns in a worker
//!     // ... the host: parse arguments, build a pool with `.self_exec()` ...
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn worker() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut jobs = ipc2_worker::jobs::<String, usize>().await?;
//!     while let Some(job) = jobs.recv().await {
//!         if let ipc2_worker::Job::Bidirectional { data, tx } = job {
//!             let _ = tx.send(data.len());
//!         }
//!     }
//!     Ok(())
//! }
//! ```

use std::fmt::Display;

use ipc2_common::protocol::ENV_ROLE;

/// The role this process was started in by a self-executing host
/// (`"worker"`, or the name given to `self_exec_role`), or `None` when it
/// was not started as a self-exec worker.
///
/// Use it to choose among several kinds of workers in one executable; for
/// one kind, [`run_if_worker`] is all you need.
pub fn worker_role() -> Option<String> {
    std::env::var_os(ENV_ROLE).map(|role| role.to_string_lossy().into_owned())
}

/// If this process is a self-exec worker, runs `worker` and exits the
/// process (code 0 when it returns `Ok`, 1 with the error on stderr when
/// it returns `Err`); otherwise returns at once.
///
/// Call it first thing in `main`, before anything else runs (in particular
/// before a tokio runtime starts: write `main` as a plain `fn` and put
/// `#[tokio::main]` on the worker and host functions). A worker process
/// then never runs the host's code.
pub fn run_if_worker<F, E>(worker: F)
where
    F: FnOnce() -> Result<(), E>,
    E: Display,
{
    let Some(role) = worker_role() else {
        return;
    };
    let code = match worker() {
        Ok(()) => 0,
        Err(error) => {
            eprintln!(
                "ipc2 worker (role {role}, pid {}): {error}",
                std::process::id()
            );
            1
        }
    };
    std::process::exit(code);
}
