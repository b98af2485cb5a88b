//! Strangers get nothing: only processes the set spawned, presenting their
//! one-time secret, become workers. Everyone else is disconnected, and jobs
//! keep flowing meanwhile.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ipc2_common::codec::encode_frame;
use ipc2_common::{FrameKind, Hello, PROTOCOL_VERSION, Secret};
use ipc2_host::workerset::WorkerSet;
use test_common::HostMessage;
use test_common::binaries::worker_binary;
use test_common::pools::{SeedPool, within};
use test_common::stranger::closed_by_host;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// A pool whose handshake deadline is long, so a prompt disconnect proves a
/// refusal rather than a timeout.
async fn patient_pool() -> SeedPool {
    WorkerSet::builder()
        .worker_count(2)
        .worker_path(worker_binary("worker_test"))
        .handshake_timeout(Duration::from_secs(60))
        .finish()
        .await
        .unwrap()
}

async fn jobs_still_flow(workers: &SeedPool) {
    for i in 0..20 {
        assert_eq!(workers.send(HostMessage::Add(i, i)).await.unwrap(), 2 * i);
    }
}

#[tokio::test]
async fn garbage_from_a_stranger_is_refused_while_jobs_flow() {
    within(30, async {
        let workers = patient_pool().await;
        let mut stranger = UnixStream::connect(workers.socket_path()).await.unwrap();
        stranger
            .write_all(b"GET / HTTP/1.1\r\nHost: ipc2\r\n\r\n")
            .await
            .unwrap();
        jobs_still_flow(&workers).await;
        assert!(closed_by_host(stranger).await.is_empty());
        jobs_still_flow(&workers).await;
    })
    .await;
}

#[tokio::test]
async fn wrong_secret_is_refused() {
    within(30, async {
        let workers = patient_pool().await;
        let mut stranger = UnixStream::connect(workers.socket_path()).await.unwrap();
        let hello = Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
            secret: *Secret::generate().unwrap().as_bytes(),
        };
        let frame = encode_frame(FrameKind::Hello, 0, &hello, 1024).unwrap();
        stranger.write_all(&frame).await.unwrap();
        assert!(closed_by_host(stranger).await.is_empty());
        jobs_still_flow(&workers).await;
    })
    .await;
}

#[tokio::test]
async fn oversized_and_truncated_handshakes_are_refused() {
    within(30, async {
        let workers = patient_pool().await;
        // A length prefix of 1 GiB: refused without buffering it.
        let mut huge = UnixStream::connect(workers.socket_path()).await.unwrap();
        huge.write_all(&(1u32 << 30).to_be_bytes()).await.unwrap();
        huge.write_all(&[0x10; 64]).await.unwrap();
        // Half a frame, then the stranger hangs up its write side.
        let mut half = UnixStream::connect(workers.socket_path()).await.unwrap();
        half.write_all(&[0, 0, 0, 50, 0x10, 0, 0]).await.unwrap();
        half.shutdown().await.unwrap();
        assert!(closed_by_host(huge).await.is_empty());
        assert!(closed_by_host(half).await.is_empty());
        jobs_still_flow(&workers).await;
    })
    .await;
}

#[tokio::test]
async fn silent_connections_are_dropped_at_the_handshake_deadline() {
    within(30, async {
        let workers: SeedPool = WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("worker_test"))
            .handshake_timeout(Duration::from_millis(200))
            .finish()
            .await
            .unwrap();
        let mut silent = Vec::new();
        for _ in 0..50 {
            silent.push(UnixStream::connect(workers.socket_path()).await.unwrap());
        }
        jobs_still_flow(&workers).await;
        for stream in silent {
            assert!(closed_by_host(stream).await.is_empty());
        }
    })
    .await;
}

#[tokio::test]
async fn socket_lives_in_a_private_directory() {
    within(30, async {
        let workers = patient_pool().await;
        let dir = workers.socket_path().parent().unwrap().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "socket directory mode {mode:o}");
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!("ipc2-{}-", std::process::id())));
    })
    .await;
}
