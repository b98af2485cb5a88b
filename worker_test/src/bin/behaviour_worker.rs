//! A worker that does what the test asks, including crashing, hanging and
//! dropping replies. Jobs run in their own tasks, so replies may leave out
//! of order. (`remote_behaviour_worker` is the same worker, dialling its host
//! over TLS.)

#[path = "../behaviour_worker.rs"]
mod behaviour;

use test_common::behaviour::{Request, Response};
use tokio::net::UnixStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = ipc2_worker::connect::<UnixStream, Request, Response>().await?;
    while let Some(job) = rx.recv().await {
        behaviour::handle(job).await;
    }
    Ok(())
}
