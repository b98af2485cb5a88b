//! What `behaviour_worker` and `remote_behaviour_worker` do with a job:
//! what the test asks, including crashing, hanging and dropping replies.
//! Included by both binaries (`#[path]`), so they behave the same. Its name
//! keeps panic locations in `behaviour_worker.rs`, as tests/panics.rs
//! expects.

use std::time::Duration;

use ipc2_worker::{Blob, Job, ReplySender, StreamSender};
use test_common::behaviour::{Request, Response};

/// Blobs kept until the worker exits (`Request::Hold`).
static HELD: std::sync::Mutex<Vec<Blob>> = std::sync::Mutex::new(Vec::new());

/// Does what the job asks.
pub async fn handle(job: Job<Request, Response>) {
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
            Request::Fail(reason) => tx.fail(reason),
            Request::Count(n) => {
                tokio::spawn(async move { count(tx, n).await });
            }
            Request::CountInline(n) => count(tx, n).await,
            Request::CountThenExit(n) => {
                let mut stream = stream_of(tx);
                for i in 0..n {
                    let _ = stream.send(Response::Sum(i)).await;
                }
                std::process::exit(9);
            }
            Request::CountUntilCancelled(marker) => {
                tokio::spawn(async move {
                    let mut stream = stream_of(tx);
                    let mut i = 0;
                    while stream.send(Response::Sum(i)).await.is_ok() {
                        i += 1;
                    }
                    if stream.is_cancelled() {
                        let _ = std::fs::write(marker, i.to_string());
                    }
                });
            }
            Request::EchoBlob(blob) => {
                let _ = tx.send(Response::Blob(blob));
            }
            Request::CopyBlob(blob) => {
                let _ = tx.send(Response::Blob(Blob::copy_from_slice(&blob)));
            }
            Request::MakeBlob(len, marks) => {
                let blob = Blob::with_len(len as usize, |bytes| {
                    for (offset, byte) in marks {
                        if let Some(slot) = bytes.get_mut(offset as usize) {
                            *slot = byte;
                        }
                    }
                });
                let _ = tx.send(Response::Blob(blob));
            }
            Request::Probe(blob, offsets) => {
                let bytes = offsets
                    .iter()
                    .map(|&offset| blob.get(offset as usize).copied().unwrap_or(0))
                    .collect();
                let _ = tx.send(Response::Bytes(bytes));
            }
            Request::Hold(blob) => {
                HELD.lock().unwrap_or_else(|e| e.into_inner()).push(blob);
                let _ = tx.send(Response::Pid(std::process::id()));
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

/// The stream sender of a stream job (the test asked for one).
fn stream_of(tx: ReplySender<Response>) -> StreamSender<Response> {
    match tx.into_stream() {
        Ok(stream) => stream,
        Err(tx) => panic!("job {tx:?} is not a stream job"),
    }
}

/// Answers a stream job with `Sum(0)` .. `Sum(n - 1)`.
async fn count(tx: ReplySender<Response>, n: u32) {
    let mut stream = stream_of(tx);
    for i in 0..n {
        if stream.send(Response::Sum(i)).await.is_err() {
            return;
        }
    }
    let _ = stream.finish();
}

/// A job handler with a bug: it panics on the input it is given.
fn handler_that_panics(message: &str) -> Response {
    panic!("{message}")
}
