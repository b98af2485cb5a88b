//! Throughput features: several jobs in flight per worker, a bounded queue
//! with back-pressure, the batch API, and large bodies.

use std::collections::HashSet;
use std::pin::pin;
use std::time::Duration;

use ipc2_host::Error;
use test_common::behaviour::{Request, Response};
use test_common::pools::{
    BehaviourPool, behaviour_builder as builder, behaviour_pool, eventually, poll_once, within,
};

/// Polls `future` once; panics if it is already done.
fn in_flight(workers: &BehaviourPool) -> Vec<usize> {
    workers
        .stats()
        .workers
        .iter()
        .map(|w| w.in_flight)
        .collect()
}

#[tokio::test]
async fn several_jobs_in_flight_go_to_the_least_loaded_worker() {
    within(30, async {
        let workers = builder()
            .worker_count(2)
            .max_in_flight_per_worker(4)
            .finish()
            .await
            .unwrap();
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let workers = workers.clone();
                // Long enough that all four are in flight together even on
                // a loaded machine.
                tokio::spawn(async move { workers.send(Request::Sleep(2_000)).await })
            })
            .collect();
        // Least-loaded first: two each, not four on one.
        assert!(
            eventually(Duration::from_secs(5), || in_flight(&workers) == [2, 2]).await,
            "{:?}",
            in_flight(&workers)
        );
        let mut pids = HashSet::new();
        for job in jobs {
            match job.await.unwrap() {
                Ok(Response::Slept(pid)) => pids.insert(pid),
                other => panic!("expected Slept, got {other:?}"),
            };
        }
        assert_eq!(pids.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn replies_from_one_worker_may_overtake_each_other() {
    within(30, async {
        let workers = builder()
            .worker_count(1)
            .max_in_flight_per_worker(2)
            .finish()
            .await
            .unwrap();
        let mut slow = pin!(workers.send(Request::Sleep(60_000)));
        poll_once(&mut slow).await;
        // The quick job shares the worker with the slow one and is answered
        // first.
        assert_eq!(
            workers.send(Request::Add(1, 2)).await.unwrap(),
            Response::Sum(3)
        );
        assert_eq!(in_flight(&workers), [1]);
    })
    .await;
}

#[tokio::test]
async fn a_full_queue_makes_send_wait_and_try_send_fail() {
    within(30, async {
        let workers = builder()
            .worker_count(1)
            .queue_capacity(2)
            .finish()
            .await
            .unwrap();
        // Busy long enough for the two tasks below to queue behind it even on
        // a loaded machine.
        let mut busy = pin!(workers.send(Request::Sleep(2_000)));
        poll_once(&mut busy).await;
        let queued: Vec<_> = (0..2)
            .map(|i| {
                let workers = workers.clone();
                tokio::spawn(async move { workers.send(Request::Add(i, i)).await })
            })
            .collect();
        assert!(eventually(Duration::from_secs(5), || workers.stats().queued == 2).await);
        match workers.try_send(Request::Add(9, 9)).await {
            Err(error @ Error::QueueFull { capacity: 2 }) => {
                assert!(error.to_string().contains("queue is full"), "{error}")
            }
            other => panic!("expected QueueFull, got {other:?}"),
        }
        // `send` waits for room instead.
        let mut waiting = pin!(workers.send(Request::Add(20, 22)));
        poll_once(&mut waiting).await;
        assert_eq!(workers.stats().queued, 2);
        assert!(matches!(busy.await, Ok(Response::Slept(_))));
        for (i, job) in queued.into_iter().enumerate() {
            let i = i as u32;
            assert_eq!(job.await.unwrap().unwrap(), Response::Sum(2 * i));
        }
        assert_eq!(waiting.await.unwrap(), Response::Sum(42));
        // Places come back: the queue is usable again.
        assert_eq!(
            workers.try_send(Request::Add(1, 1)).await.unwrap(),
            Response::Sum(2)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_returns_every_outcome_in_order() {
    within(60, async {
        let workers = builder()
            .worker_count(2)
            .max_in_flight_per_worker(16)
            .queue_capacity(100)
            .finish()
            .await
            .unwrap();
        let outcomes = workers
            .send_batch((0..10_000u32).map(|i| Request::Add(i, 1)))
            .await;
        assert_eq!(outcomes.len(), 10_000);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.unwrap(), Response::Sum(i as u32 + 1));
        }
        // A failing job fails alone.
        let outcomes = workers
            .send_batch([Request::Add(1, 1), Request::DropReply, Request::Add(2, 2)])
            .await;
        assert!(matches!(outcomes[0], Ok(Response::Sum(2))));
        assert!(matches!(outcomes[1], Err(Error::NoReply { .. })));
        assert!(matches!(outcomes[2], Ok(Response::Sum(4))));
        assert_eq!(workers.stats().completed, 10_002);
        assert_eq!(workers.send_batch(Vec::new()).await.len(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_batch_never_sends_its_queued_jobs() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = workers.worker_pids()[0];
        {
            let mut batch =
                pin!(
                    workers.send_batch([Request::Sleep(200), Request::Exit(1), Request::Exit(1),])
                );
            poll_once(&mut batch).await;
        }
        // Had the queued exits been sent, this worker would be gone.
        assert!(matches!(
            workers.send(Request::Pid).await,
            Ok(Response::Pid(p)) if p == pid
        ));
    })
    .await;
}

#[tokio::test]
async fn large_bodies_travel_both_ways() {
    within(60, async {
        let workers = builder()
            .worker_count(1)
            .max_frame_length(80 * 1024 * 1024)
            .finish()
            .await
            .unwrap();
        for size in [1024 * 1024, 64 * 1024 * 1024] {
            let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let reply = workers.send(Request::Echo(body.clone())).await.unwrap();
            assert!(
                reply == Response::Echo(body),
                "a {size}-byte body came back changed"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_pool_on_a_dedicated_io_thread_serves_and_cleans_up() {
    within(30, async {
        let workers = builder()
            .worker_count(2)
            .max_in_flight_per_worker(4)
            .dedicated_io_thread(true)
            .job_timeout(Duration::from_secs(20))
            .finish()
            .await
            .unwrap();
        let outcomes = workers
            .send_batch((0..200u32).map(|i| Request::Add(i, i)))
            .await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.unwrap(), Response::Sum(2 * i as u32));
        }
        assert!(matches!(
            workers.send(Request::Exit(4)).await,
            Err(Error::WorkerDied { .. })
        ));
        assert!(eventually(Duration::from_secs(10), || workers.worker_pids().len() == 2).await);
        let pids = workers.worker_pids();
        let dir = workers.socket_path().parent().unwrap().to_path_buf();
        drop(workers);
        assert!(!dir.exists());
        assert!(
            eventually(Duration::from_secs(5), || pids
                .iter()
                .all(|&pid| !test_common::process::is_running(pid)))
            .await
        );
    })
    .await;
}
