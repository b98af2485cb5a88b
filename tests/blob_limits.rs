//! Shared memory is bounded: a worker that never releases the bodies it was
//! sent fills this process's limit, after which `try_reserve` fails,
//! `reserve` waits and other blobs travel inline; when the worker dies, its
//! bodies are freed and the waiting `reserve` goes through.
//!
//! The limit is process-wide, so this file runs alone in its process.

use std::time::Duration;

use ipc2::Blob;
use ipc2_common::shm;
use test_common::behaviour::{Request, Response};
use test_common::pools::{behaviour_builder, eventually, pid_of, within};

const LIMIT: usize = 64 << 20;
const BODY: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_a_worker_never_releases_are_bounded_and_freed_when_it_dies() {
    within(120, async {
        let workers = behaviour_builder()
            .worker_count(1)
            .shared_memory_limit(LIMIT)
            .restart_backoff(Duration::from_millis(10), Duration::from_millis(50))
            .finish()
            .await
            .expect("a pool of one behaviour worker starts");
        let hoarder = pid_of(&workers).await;
        // The worker keeps every body it is sent: the host cannot reuse them.
        for _ in 0..LIMIT / BODY {
            let body = Blob::with_len(BODY, |bytes| bytes.fill(1));
            assert!(body.is_shared());
            let held = workers.send(Request::Hold(body)).await;
            assert!(matches!(held, Ok(Response::Pid(pid)) if pid == hoarder));
        }
        assert_eq!(shm::usage().used, LIMIT);
        assert!(shm::usage().mapped <= LIMIT);
        // Full: `try_reserve` fails at once, `with_len` falls back to the
        // heap, and such a body still travels (inline).
        let full = Blob::try_reserve(BODY).expect_err("shared memory is full");
        assert!(full.to_string().contains("no room"));
        let inline = Blob::with_len(BODY, |bytes| bytes.fill(2));
        assert!(!inline.is_shared());
        match workers.send(Request::EchoBlob(inline)).await {
            Ok(Response::Blob(echoed)) => assert!(echoed.iter().all(|&b| b == 2)),
            other => panic!("expected the inline body back, got {other:?}"),
        }
        // `reserve` waits for room...
        let waiting = tokio::spawn(Blob::reserve(BODY));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...which comes when the hoarder dies: its loans go with it.
        test_common::process::kill(hoarder);
        let reserved = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("reserve got room once the hoarder died")
            .expect("the reserving task did not panic");
        assert!(reserved.freeze().is_shared());
        assert!(eventually(Duration::from_secs(10), || shm::usage().used == 0).await);
        // The replacement worker (started after a short backoff: an idle
        // death counts as a failure) serves shared bodies again.
        let replaced = eventually(Duration::from_secs(10), || {
            workers.worker_pids().iter().any(|&pid| pid != hoarder)
        });
        assert!(replaced.await, "the hoarder was replaced");
        let fresh = Blob::with_len(BODY, |bytes| bytes.fill(3));
        match workers.send(Request::EchoBlob(fresh)).await {
            Ok(Response::Blob(echoed)) => {
                assert!(echoed.is_shared() && echoed.iter().all(|&b| b == 3))
            }
            other => panic!("expected the body back, got {other:?}"),
        }
        workers.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
