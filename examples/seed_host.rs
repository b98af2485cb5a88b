// The seed's host example (`shared/seeds/ipc2.md`), as written
// (`rustfmt::skip` keeps its text byte for byte). It expects the worker at
// ./target/debug/worker_test: run it from the workspace root after
// `cargo build -p worker_test`, or use `cargo run --example quickstart`,
// which builds the worker itself.

#[rustfmt::skip]
use ipc2_host::workerset::WorkerSet;
#[rustfmt::skip]
use tokio::net::UnixListener;
#[rustfmt::skip]
use test_common::HostMessage;
#[rustfmt::skip]
use std::error::Error;

#[rustfmt::skip]
type MyWorkerSet = WorkerSet<
    /* Type of server to use for IPC */ UnixListener,
    /* Type of worker->host message */ u32,
    /* Type of host->worker message */ HostMessage
>;

#[rustfmt::skip]
#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let workers: MyWorkerSet = WorkerSet::builder()
        .worker_count(4)
        .worker_path("./target/debug/worker_test")
        .finish()
        .await?;

    // Let the worker process add two numbers together
    // And receive a `u32` in response.
    let resp: u32 = workers.send(HostMessage::Add(6, 7)).await?;

    println!("Result -> {}", resp);

    Ok(())
}
