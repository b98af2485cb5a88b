//! The behaviour worker's requests, served by a worker without async:
//! `ipc2_worker::blocking::jobs()` and plain threads. Requests it does not
//! serve are failed with a reason.

use std::time::Duration;

use ipc2_worker::{Job, ReplySender, StreamSender};
use test_common::behaviour::{Request, Response};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for job in ipc2_worker::blocking::jobs::<Request, Response>()? {
        let Job::Bidirectional { data, tx } = job else {
            continue;
        };
        match data {
            Request::Add(a, b) => tx.reply(Response::Sum(a.wrapping_add(b)))?,
            Request::Pid => tx.reply(Response::Pid(std::process::id()))?,
            Request::Sleep(ms) => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    let _ = tx.reply(Response::Slept(std::process::id()));
                });
            }
            Request::Fail(reason) => tx.fail(reason),
            Request::DropReply => drop(tx),
            Request::Exit(code) => std::process::exit(code),
            Request::Panic(message) => {
                let _ = tx.reply(handler_that_panics(&message));
            }
            Request::PanicInTask(message) => {
                std::thread::spawn(move || {
                    let _ = tx.reply(handler_that_panics(&message));
                });
            }
            Request::Count(n) => {
                std::thread::spawn(move || count(tx, n));
            }
            Request::CountInline(n) => count(tx, n),
            other => tx.fail(format!("blocking_worker does not serve {other:?}")),
        }
    }
    Ok(())
}

/// Answers a stream job with `Sum(0)` .. `Sum(n - 1)`, waiting for the
/// host's credit with `send_blocking`.
fn count(tx: ReplySender<Response>, n: u32) {
    let mut stream: StreamSender<Response> = match tx.into_stream() {
        Ok(stream) => stream,
        Err(tx) => return tx.fail("not a stream job"),
    };
    for i in 0..n {
        if stream.send_blocking(Response::Sum(i)).is_err() {
            return;
        }
    }
    let _ = stream.finish();
}

/// A job handler with a bug: it panics on the input it is given.
fn handler_that_panics(message: &str) -> Response {
    panic!("{message}")
}
