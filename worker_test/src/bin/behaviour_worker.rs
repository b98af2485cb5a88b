//! A worker that does what the test asks, including crashing, hanging and
//! dropping replies. Jobs run in their own tasks, so replies may leave out
//! of order.
//!
//! Spawned by a pool, it joins over the pool's Unix socket. Started with
//! `IPC2_HOST` in its environment, it is a remote worker instead: it dials
//! that host over TLS (see `ipc2_tls::env`) and redials whenever the
//! connection is lost, with short pauses so that tests stay quick.

use std::time::Duration;

use ipc2_worker::Job;
use test_common::behaviour::{Request, Response};
use tokio::net::UnixStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(ipc2_tls::env::ENV_HOST).is_some() {
        let mut rx = ipc2_tls::remote_jobs::<Request, Response>()?
            .backoff(Duration::from_millis(50), Duration::from_millis(500))
            .connect_timeout(Duration::from_secs(2));
        while let Some(job) = rx.recv().await {
            handle(job);
        }
        return Ok(());
    }
    let mut rx = ipc2_worker::connect::<UnixStream, Request, Response>().await?;
    while let Some(job) = rx.recv().await {
        handle(job);
    }
    Ok(())
}

fn handle(job: Job<Request, Response>) {
    match job {
        Job::Bidirectional { data, tx } => match data {
            Request::Add(a, b) => {
                let _ = tx.send(Response::Sum(a.wrapping_add(b)));
            }
            Request::Echo(bytes) => {
                let _ = tx.send(Response::Echo(bytes));
            }
            Request::Sleep(ms) => {
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = tx.send(Response::Slept(std::process::id()));
                });
            }
            Request::Block(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = tx.send(Response::Slept(std::process::id()));
            }
            Request::Print(text) => {
                println!("{text}");
                eprintln!("{text}");
                let _ = tx.send(Response::Pid(std::process::id()));
            }
            Request::Pid => {
                let _ = tx.send(Response::Pid(std::process::id()));
            }
            Request::Exit(code) => std::process::exit(code),
            Request::Abort => std::process::abort(),
            Request::DropReply => drop(tx),
        },
        Job::Unidirectional { data } => {
            if let Request::Exit(code) = data {
                std::process::exit(code);
            }
        }
    }
}
