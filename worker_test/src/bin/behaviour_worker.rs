//! A worker that does what the test asks, including crashing, hanging and
//! dropping replies. Jobs run in their own tasks, so replies may leave out
//! of order.

use std::time::Duration;

use ipc2_worker::Job;
use test_common::behaviour::{Request, Response};
use tokio::net::UnixStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = ipc2_worker::connect::<UnixStream, Request, Response>().await?;
    while let Some(job) = rx.recv().await {
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
                Request::Panic(message) => {
                    let _ = tx.send(handler_that_panics(&message));
                }
                Request::PanicInTask(message) => {
                    tokio::spawn(async move {
                        tokio::task::yield_now().await;
                        let _ = tx.send(handler_that_panics(&message));
                    });
                }
            },
            Job::Unidirectional { data } => {
                if let Request::Exit(code) = data {
                    std::process::exit(code);
                }
            }
        }
    }
    Ok(())
}

/// A job handler with a bug: it panics on the input it is given.
fn handler_that_panics(message: &str) -> Response {
    panic!("{message}")
}
