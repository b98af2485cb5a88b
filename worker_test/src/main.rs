// The seed's worker example (`shared/seeds/ipc2.md`), as written. The seed
// imports `WorkerMessage` without using it; the attribute keeps
// `clippy -D warnings` quiet about that, and `rustfmt::skip` keeps the
// seed's text byte for byte.
#![allow(unused_imports)]

#[rustfmt::skip]
use ipc2_worker::Job;
#[rustfmt::skip]
use test_common::HostMessage;
#[rustfmt::skip]
use test_common::WorkerMessage;
#[rustfmt::skip]
use tokio::net::UnixStream;

#[rustfmt::skip]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = ipc2_worker::connect::<
        /* Type of client to use for IPC */ UnixStream,
        /* Type of host->worker message */ HostMessage,
        /* Type of worker->host message */ u32
    >().await?;

    while let Some(job) = rx.recv().await {
        match job {
            Job::Bidirectional { data, tx } => {
                let _ = tx.send(match data {
                    HostMessage::Add(a, b) => a + b,
                    HostMessage::Sub(a, b) => a - b
                });
            },
            Job::Unidirectional { .. } => unreachable!()
        };
    }

    Ok(())
}
