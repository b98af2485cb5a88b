//! `behaviour_worker` as a remote worker: it dials the host named by
//! `IPC2_HOST` over TLS (see `ipc2_tls::env`) and redials whenever the
//! connection is lost, with short pauses so that tests stay quick. Built
//! only with the `remote` feature (by `test_common::binaries::
//! remote_worker_binary`), so the other test binaries never build rustls.

#[path = "../behaviour_worker.rs"]
mod behaviour;

use std::time::Duration;

use test_common::behaviour::{Request, Response};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = ipc2_tls::remote_jobs::<Request, Response>()?
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .connect_timeout(Duration::from_secs(2));
    while let Some(job) = rx.recv().await {
        behaviour::handle(job).await;
    }
    Ok(())
}
