//! A remote worker for the seed's jobs (`HostMessage` in, `u32` out): the
//! binary that `deploy/` runs under Kubernetes or systemd.
//!
//! It reads its settings from the environment (`ipc2_tls::env`): the host to
//! dial (`IPC2_HOST`), the name on the host's certificate
//! (`IPC2_SERVER_NAME`), and the PEM files of the CA, its certificate and
//! its key (`IPC2_TLS_CA`, `IPC2_TLS_CERT`, `IPC2_TLS_KEY`). It dials the
//! host over mutual TLS and redials with backoff whenever the connection is
//! lost; it runs until its platform stops it.

use ipc2_worker::Job;
use test_common::HostMessage;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut jobs = ipc2_tls::remote_jobs::<HostMessage, u32>()?;
    while let Some(job) = jobs.recv().await {
        if let Job::Bidirectional { data, tx } = job {
            let _ = tx.send(match data {
                HostMessage::Add(a, b) => a.wrapping_add(b),
                HostMessage::Sub(a, b) => a.wrapping_sub(b),
            });
        }
    }
    Ok(())
}
