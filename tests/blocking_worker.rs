//! A worker written without async (`ipc2_worker::blocking::jobs`) serves
//! the same jobs, answers, failures, panics and streams as an async one.

use ipc2_host::Error;
use ipc2_host::workerset::WorkerSet;
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{BehaviourPool, pid_of, within};

async fn blocking_pool(count: usize) -> BehaviourPool {
    WorkerSet::builder()
        .worker_count(count)
        .worker_path(worker_binary("blocking_worker"))
        .stream_window(4)
        .finish()
        .await
        .expect("a pool of blocking workers")
}

#[tokio::test]
async fn a_blocking_worker_replies_fails_and_drops_like_an_async_one() {
    within(30, async {
        let workers = blocking_pool(2).await;
        let pid = pid_of(&workers).await;
        let sums = workers
            .send_batch((0..100).map(|i| Request::Add(i, i)))
            .await;
        for (i, sum) in sums.into_iter().enumerate() {
            assert_eq!(sum.unwrap(), Response::Sum(2 * i as u32));
        }
        // Replies from other threads, overlapping.
        let (a, b) = tokio::join!(
            workers.send(Request::Sleep(200)),
            workers.send(Request::Sleep(100))
        );
        assert!(matches!(a.unwrap(), Response::Slept(_)));
        assert!(matches!(b.unwrap(), Response::Slept(_)));
        match workers.send(Request::Fail("bad input".into())).await {
            Err(Error::App { message, .. }) => assert_eq!(message, "bad input"),
            other => panic!("expected App, got {other:?}"),
        }
        assert!(matches!(
            workers.send(Request::DropReply).await,
            Err(Error::NoReply { .. })
        ));
        assert!(workers.worker_pids().contains(&pid));
    })
    .await;
}

#[tokio::test]
async fn a_blocking_workers_panics_fail_their_jobs_with_the_message() {
    within(30, async {
        let workers = blocking_pool(1).await;
        let pid = pid_of(&workers).await;
        // In a thread of its own: the worker survives.
        match workers
            .send(Request::PanicInTask("in a thread".into()))
            .await
        {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, "in a thread"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        assert_eq!(pid_of(&workers).await, pid);
        // In the loop: the panic ends the process, its report still arrives.
        match workers.send(Request::Panic("in the loop".into())).await {
            Err(Error::Panicked {
                message, location, ..
            }) => {
                assert_eq!(message, "in the loop");
                assert!(location.unwrap().contains("blocking_worker.rs"));
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        assert_ne!(pid_of(&workers).await, pid);
        assert_eq!(workers.stats().workers[0].restarts, 1);
    })
    .await;
}

#[tokio::test]
async fn a_blocking_worker_streams_with_credit_from_any_thread() {
    within(60, async {
        let workers = blocking_pool(1).await;
        for request in [Request::Count(500), Request::CountInline(500)] {
            let mut stream = workers.send_stream(request);
            let mut next = 0;
            while let Some(item) = stream.next().await {
                assert_eq!(item.unwrap(), Response::Sum(next));
                assert!(stream.buffered() <= 4);
                next += 1;
            }
            assert_eq!(next, 500);
        }
    })
    .await;
}
