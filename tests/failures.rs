//! Failure semantics: every job resolves, with an error that says what
//! happened, and the pool keeps serving.

use std::pin::pin;
use std::time::Duration;

use ipc2_common::CodecError;
use ipc2_host::Error;
use ipc2_host::workerset::WorkerSet;
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{behaviour_pool, eventually, pid_of, poll_once, within};
use test_common::process::{is_running, kill};
use tokio::net::UnixListener;

/// Polls `future` once, so a `send` has handed its job to the pool.
#[tokio::test]
async fn worker_killed_mid_job_fails_that_job_and_pool_recovers() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = pid_of(&workers).await;
        let mut job = pin!(workers.send(Request::Sleep(60_000)));
        poll_once(&mut job).await;
        kill(pid);
        match job.await {
            Err(Error::WorkerDied {
                worker,
                pid: died,
                status,
            }) => {
                assert_eq!(worker, 0);
                assert_eq!(died, pid);
                assert_eq!(status.signal(), Some(9));
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        // The slot is refilled by a new process and jobs flow again.
        for i in 0..5 {
            assert_eq!(
                workers.send(Request::Add(i, 1)).await.unwrap(),
                Response::Sum(i + 1)
            );
        }
        assert_ne!(pid_of(&workers).await, pid);
    })
    .await;
}

#[tokio::test]
async fn crashing_jobs_report_exit_code_and_signal() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        match workers.send(Request::Exit(7)).await {
            Err(Error::WorkerDied { status, .. }) => assert_eq!(status.code(), Some(7)),
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        match workers.send(Request::Abort).await {
            Err(error @ Error::WorkerDied { .. }) => {
                let Error::WorkerDied { status, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(status.signal(), Some(6));
                assert!(error.to_string().contains("killed by signal 6"), "{error}");
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        assert_eq!(
            workers.send(Request::Add(2, 3)).await.unwrap(),
            Response::Sum(5)
        );
    })
    .await;
}

#[tokio::test]
async fn dropped_reply_sender_is_an_error_not_a_hang() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = pid_of(&workers).await;
        match workers.send(Request::DropReply).await {
            Err(Error::NoReply { worker: 0, pid: p }) => assert_eq!(p, pid),
            other => panic!("expected NoReply, got {other:?}"),
        }
        // The worker is healthy and keeps its process.
        assert_eq!(pid_of(&workers).await, pid);
    })
    .await;
}

#[tokio::test]
async fn missing_binary_fails_finish() {
    within(30, async {
        let result: Result<test_common::pools::BehaviourPool, _> = WorkerSet::builder()
            .worker_count(2)
            .worker_path("/nonexistent/ipc2/worker")
            .finish()
            .await;
        match result {
            Err(Error::Spawn { path, source }) => {
                assert_eq!(path, std::path::Path::new("/nonexistent/ipc2/worker"));
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            Err(other) => panic!("expected Spawn, got {other:?}"),
            Ok(_) => panic!("finish succeeded without a binary"),
        }
    })
    .await;
}

#[tokio::test]
async fn non_executable_binary_fails_finish() {
    within(30, async {
        let file = std::env::temp_dir().join(format!("ipc2-not-exec-{}", std::process::id()));
        std::fs::write(&file, b"not a program").unwrap();
        let result: Result<test_common::pools::BehaviourPool, _> = WorkerSet::builder()
            .worker_count(1)
            .worker_path(&file)
            .finish()
            .await;
        std::fs::remove_file(&file).unwrap();
        match result {
            Err(Error::Spawn { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied)
            }
            Err(other) => panic!("expected Spawn, got {other:?}"),
            Ok(_) => panic!("finish succeeded with a non-executable file"),
        }
    })
    .await;
}

#[tokio::test]
async fn worker_exiting_before_connecting_fails_finish_with_its_status() {
    within(30, async {
        let parent = tempdir("exits-early");
        let result: Result<test_common::pools::BehaviourPool, _> = WorkerSet::builder()
            .worker_count(2)
            .worker_path("/bin/sh")
            .args(["-c", "exit 3"])
            .socket_parent(&parent)
            .finish()
            .await;
        match result {
            Err(error @ Error::ExitedBeforeConnect { .. }) => {
                let Error::ExitedBeforeConnect { status, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(status.code(), Some(3));
                assert!(error.to_string().contains("exited with code 3"), "{error}");
            }
            Err(other) => panic!("expected ExitedBeforeConnect, got {other:?}"),
            Ok(_) => panic!("finish succeeded"),
        }
        // The failed start left nothing behind.
        assert_eq!(std::fs::read_dir(&parent).unwrap().count(), 0);
        std::fs::remove_dir(&parent).unwrap();
    })
    .await;
}

#[tokio::test]
async fn worker_that_never_connects_is_killed_at_the_deadline() {
    within(30, async {
        let result: Result<test_common::pools::BehaviourPool, _> = WorkerSet::builder()
            .worker_count(1)
            .worker_path("/bin/sleep")
            .arg("30")
            .connect_timeout(Duration::from_millis(300))
            .finish()
            .await;
        match result {
            Err(Error::ConnectTimeout { pid, timeout, .. }) => {
                assert_eq!(timeout, Duration::from_millis(300));
                assert!(eventually(Duration::from_secs(5), || !is_running(pid)).await);
            }
            Err(other) => panic!("expected ConnectTimeout, got {other:?}"),
            Ok(_) => panic!("finish succeeded"),
        }
    })
    .await;
}

#[tokio::test]
async fn oversized_job_is_refused_before_sending() {
    within(30, async {
        let workers: test_common::pools::BehaviourPool = WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("behaviour_worker"))
            .max_frame_length(1024)
            .finish()
            .await
            .unwrap();
        match workers.send(Request::Echo(vec![0; 4096])).await {
            Err(Error::Encode(CodecError::FrameTooLarge { size, max })) => {
                assert_eq!(max, 1024);
                assert!(size > 4096);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert_eq!(
            workers.send(Request::Echo(vec![1; 100])).await.unwrap(),
            Response::Echo(vec![1; 100])
        );
    })
    .await;
}

#[tokio::test]
async fn undecodable_reply_and_job_are_typed_errors() {
    within(30, async {
        // The host expects a type the worker does not send.
        let workers: WorkerSet<UnixListener, Vec<u64>, Request> = WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("behaviour_worker"))
            .finish()
            .await
            .unwrap();
        assert!(matches!(
            workers.send(Request::Add(1, 2)).await,
            Err(Error::Decode { worker: 0, .. })
        ));
        // The host sends a type the worker cannot decode (variant 200).
        let workers: WorkerSet<UnixListener, Response, u32> = WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("behaviour_worker"))
            .finish()
            .await
            .unwrap();
        match workers.send(200).await {
            Err(Error::JobFailed { reason, .. }) => {
                assert!(reason.contains("could not decode"), "{reason}")
            }
            other => panic!("expected JobFailed, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn worker_sending_garbage_is_killed_and_replaced() {
    within(30, async {
        let workers: test_common::pools::BehaviourPool = WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("rogue_worker"))
            .finish()
            .await
            .unwrap();
        let rogue = workers.worker_pids();
        assert_eq!(rogue.len(), 1);
        match workers.send(Request::Add(1, 1)).await {
            Err(error @ Error::Protocol { .. }) => {
                let Error::Protocol { pid, source, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(*pid, rogue[0]);
                assert!(matches!(**source, CodecError::FrameTooLarge { .. }));
                assert!(error.to_string().contains("was killed"), "{error}");
            }
            other => panic!("expected Protocol, got {other:?}"),
        }
        assert!(eventually(Duration::from_secs(5), || !is_running(rogue[0])).await);
        let replaced = eventually(Duration::from_secs(10), || {
            workers
                .worker_pids()
                .first()
                .is_some_and(|pid| *pid != rogue[0] && is_running(*pid))
        })
        .await;
        assert!(replaced, "the rogue worker was not replaced");
    })
    .await;
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ipc2-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn reply_to_an_abandoned_job_is_discarded() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        {
            let mut job = pin!(workers.send(Request::Sleep(200)));
            poll_once(&mut job).await;
        } // the caller gives up; the worker still answers later
        for i in 0..5 {
            assert_eq!(
                workers.send(Request::Add(i, 10)).await.unwrap(),
                Response::Sum(i + 10)
            );
        }
    })
    .await;
}

#[tokio::test]
async fn queued_job_whose_caller_is_gone_is_never_sent() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = pid_of(&workers).await;
        let mut busy = pin!(workers.send(Request::Sleep(300)));
        poll_once(&mut busy).await;
        {
            // Queued behind the sleeper, then abandoned: had it been sent,
            // it would have killed the worker.
            let mut fatal = pin!(workers.send(Request::Exit(9)));
            poll_once(&mut fatal).await;
        }
        assert!(matches!(busy.await.unwrap(), Response::Slept(p) if p == pid));
        assert_eq!(pid_of(&workers).await, pid);
    })
    .await;
}
