//! The worker library against a host played by hand: the environment
//! contract, the handshake, out-of-order replies, and the end of `recv()`.

use std::process::{Command, Stdio};
use std::time::Duration;

use ipc2_common::codec::{decode_message, encode_frame, encode_raw_frame};
use ipc2_common::protocol::{ENV_SECRET, ENV_SOCKET};
use ipc2_common::{Frame, FrameCodec, FrameKind, FrameReader, Hello, Secret};
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::within;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// A directory removed on drop.
struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A host played by hand: one listener, one admitted worker process.
struct ManualHost {
    _dir: DirGuard,
    worker: tokio::process::Child,
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl ManualHost {
    /// Spawns `binary` with the host's environment, checks its handshake and
    /// welcomes it.
    async fn admit(binary: &str, name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ipc2-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("host.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let secret = Secret::generate().unwrap();
        let worker = tokio::process::Command::new(worker_binary(binary))
            .env(ENV_SOCKET, &socket)
            .env(ENV_SECRET, secret.to_hex())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let mut reader = FrameReader::new(reader, FrameCodec::new(1 << 20));
        let hello = reader.next().await.unwrap().unwrap();
        assert_eq!(hello.kind, FrameKind::Hello);
        let hello: Hello = decode_message(&hello.payload).unwrap();
        assert!(secret.matches(&hello.secret));
        assert_eq!(Some(hello.pid), worker.id());
        let welcome = encode_raw_frame(FrameKind::Welcome, 0, &[], 1024).unwrap();
        writer.write_all(&welcome).await.unwrap();
        Self {
            _dir: DirGuard(dir),
            worker,
            reader,
            writer,
        }
    }

    async fn send(&mut self, id: u64, request: &Request) {
        let frame = encode_frame(FrameKind::Job, id, request, 1 << 20).unwrap();
        self.writer.write_all(&frame).await.unwrap();
    }

    async fn next(&mut self) -> Frame {
        self.reader.next().await.unwrap().unwrap()
    }

    /// Closes the connection; returns the worker process.
    fn hang_up(self) -> (tokio::process::Child, DirGuard) {
        (self.worker, self._dir)
    }
}

#[test]
fn worker_started_by_hand_explains_itself() {
    let output = Command::new(worker_binary("behaviour_worker"))
        .env_remove(ENV_SOCKET)
        .env_remove(ENV_SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("must be started by an ipc2_host WorkerSet"),
        "stderr: {stderr}"
    );
}

/// The worker's `recv()` returns `None` when the host hangs up, so its main
/// returns and it exits cleanly.
#[tokio::test]
async fn recv_ends_when_the_connection_closes() {
    within(30, async {
        let host = ManualHost::admit("worker_test", "hangup").await;
        let (mut worker, _dir) = host.hang_up();
        let status = worker.wait().await.unwrap();
        assert!(status.success(), "worker ended with {status}");
    })
    .await;
}

/// Replies leave in the order jobs finish, not the order they came in, and
/// carry the job id they answer.
#[tokio::test]
async fn replies_may_come_back_out_of_order() {
    within(30, async {
        let mut host = ManualHost::admit("behaviour_worker", "order").await;
        host.send(1, &Request::Sleep(300)).await;
        host.send(2, &Request::Add(2, 3)).await;
        let first = host.next().await;
        assert_eq!((first.kind, first.id), (FrameKind::Reply, 2));
        assert_eq!(
            decode_message::<Response>(&first.payload).unwrap(),
            Response::Sum(5)
        );
        let second = host.next().await;
        assert_eq!((second.kind, second.id), (FrameKind::Reply, 1));
        assert!(matches!(
            decode_message::<Response>(&second.payload).unwrap(),
            Response::Slept(_)
        ));
        // A dropped sender is reported for its own job id.
        host.send(3, &Request::DropReply).await;
        let third = host.next().await;
        assert_eq!((third.kind, third.id), (FrameKind::NoReply, 3));
        let _ = tokio::time::timeout(Duration::from_secs(1), host.worker.kill()).await;
    })
    .await;
}
