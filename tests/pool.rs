//! Jobs flow: many tasks, many jobs, every answer right.

use std::collections::HashSet;

use test_common::HostMessage;
use test_common::behaviour::{Request, Response};
use test_common::pools::{behaviour_pool, seed_pool, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sends_from_eight_tasks_all_answered() {
    within(60, async {
        let workers = seed_pool(4).await;
        let mut tasks = Vec::new();
        for task in 0..8u32 {
            let workers = workers.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..125u32 {
                    let (a, b) = (task * 1000 + i, i);
                    let message = if i % 2 == 0 {
                        HostMessage::Add(a, b)
                    } else {
                        HostMessage::Sub(a, b)
                    };
                    let expected = if i % 2 == 0 { a + b } else { a - b };
                    assert_eq!(workers.send(message).await.unwrap(), expected);
                }
                125
            }));
        }
        let mut answered = 0;
        for task in tasks {
            answered += task.await.unwrap();
        }
        assert_eq!(answered, 1000);
    })
    .await;
}

#[tokio::test]
async fn jobs_spread_over_every_worker() {
    within(30, async {
        let workers = behaviour_pool(3).await;
        let expected: HashSet<u32> = workers.worker_pids().into_iter().collect();
        assert_eq!(expected.len(), 3);
        // Each worker takes one job at a time, so three slow jobs sent at
        // once must run on three different workers.
        let (a, b, c) = tokio::join!(
            workers.send(Request::Sleep(300)),
            workers.send(Request::Sleep(300)),
            workers.send(Request::Sleep(300))
        );
        let seen: HashSet<u32> = [a, b, c]
            .into_iter()
            .map(|reply| match reply.unwrap() {
                Response::Slept(pid) => pid,
                other => panic!("expected Slept, got {other:?}"),
            })
            .collect();
        assert_eq!(seen, expected);
    })
    .await;
}

#[tokio::test]
async fn one_way_jobs_are_taken_and_pool_keeps_serving() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        for _ in 0..10 {
            workers.send_unidirectional(Request::Pid).await.unwrap();
        }
        assert_eq!(
            workers.send(Request::Add(2, 2)).await.unwrap(),
            Response::Sum(4)
        );
    })
    .await;
}

#[tokio::test]
async fn large_bodies_round_trip() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let reply = workers.send(Request::Echo(body.clone())).await.unwrap();
        assert_eq!(reply, Response::Echo(body));
    })
    .await;
}

#[tokio::test]
async fn pool_names_request_then_reply_and_prints_with_debug() {
    within(30, async {
        // `Pool<Request, Reply>` is the seed's `WorkerSet<UnixListener, Reply,
        // Request>`: no transport to name, and the worker's order.
        let workers: ipc2::Pool<HostMessage, u32> = ipc2::Pool::builder()
            .worker_count(2)
            .worker_path(test_common::binaries::worker_binary("worker_test"))
            .finish()
            .await
            .unwrap();
        let seed: test_common::pools::SeedPool = workers.clone();
        assert_eq!(seed.send(HostMessage::Add(2, 3)).await.unwrap(), 5);
        let shown = format!("{workers:?}");
        assert!(
            shown.starts_with("WorkerSet { worker_count: 2, pids: [")
                && shown.contains("queued: 0"),
            "{shown}"
        );
        for pid in workers.worker_pids() {
            assert!(shown.contains(&pid.to_string()), "{shown}");
        }
    })
    .await;
}
