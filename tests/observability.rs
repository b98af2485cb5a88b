//! Observability: worker output captured as `tracing` events, and the
//! lifecycle events (spawn, handshake, timeout, restart, shutdown).
//!
//! Its own test binary: `tracing` caches per call site whether anyone
//! listens, and a call site first reached by another test's thread (with no
//! subscriber) may stay silent for this test's thread-local subscriber.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc2_host::Error;
use ipc2_host::workerset::WorkerSet;
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{BehaviourPool, eventually, within};

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn worker_output_and_lifecycle_become_tracing_events() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    within(30, async {
        let workers: BehaviourPool = WorkerSet::builder()
            .worker_path(worker_binary("behaviour_worker"))
            .worker_count(1)
            .capture_output(true)
            .job_timeout(Duration::from_millis(200))
            .finish()
            .await
            .unwrap();
        let pid = match workers
            .send(Request::Print("hello from a worker".into()))
            .await
        {
            Ok(Response::Pid(pid)) => pid,
            other => panic!("expected a pid, got {other:?}"),
        };
        let line = |stream: &str| {
            captured.text().lines().any(|line| {
                line.contains("hello from a worker")
                    && line.contains("worker=0")
                    && line.contains(&format!("pid={pid}"))
                    && line.contains(&format!("stream=\"{stream}\""))
            })
        };
        assert!(eventually(Duration::from_secs(5), || line("stdout") && line("stderr")).await);
        let timed_out = workers.send(Request::Sleep(10_000)).await;
        assert!(
            matches!(timed_out, Err(Error::Timeout { .. })),
            "{timed_out:?}"
        );
        workers.shutdown(Duration::from_secs(5)).await;
    })
    .await;
    let text = captured.text();
    for event in [
        "worker spawned",
        "worker passed its handshake",
        "job timed out",
        "worker killed after a timeout",
        "WorkerSet shutting down",
        "WorkerSet shut down",
    ] {
        assert!(text.contains(event), "no {event:?} event in:\n{text}");
    }
}
