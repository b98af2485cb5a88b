//! A handler that panics fails its own job, with the panic's message and
//! location, and never the pool: a worker a panic kills is replaced at once
//! without counting against the restart limit, and one that survives a
//! panic in a job's task keeps serving.

use ipc2_host::{Error, WorkerState};
use test_common::behaviour::{Request, Response};
use test_common::pools::{behaviour_pool, pid_of, within};

/// The job's error must be `Panicked` with this message, at a location in
/// the worker's source.
fn assert_panicked(outcome: Result<Response, Error>, expected: &str) {
    match outcome {
        Err(Error::Panicked {
            message, location, ..
        }) => {
            assert_eq!(message, expected);
            let location = location.expect("the panic's location");
            assert!(
                location.contains("behaviour_worker.rs:"),
                "unexpected location {location}"
            );
        }
        other => panic!("expected Panicked({expected}), got {other:?}"),
    }
}

#[tokio::test]
async fn a_panic_in_the_receive_loop_fails_its_job_and_the_worker_is_replaced() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = pid_of(&workers).await;
        let outcome = workers.send(Request::Panic("bad input 7".into())).await;
        let error = outcome.as_ref().err().map(ToString::to_string);
        assert_panicked(outcome, "bad input 7");
        let error = error.unwrap_or_default();
        assert!(
            error.contains("panicked while running this job at") && error.contains("bad input 7"),
            "{error}"
        );
        assert_eq!(
            workers.send(Request::Add(2, 2)).await.unwrap(),
            Response::Sum(4)
        );
        assert_ne!(pid_of(&workers).await, pid, "the panic ended the worker");
        let stats = workers.stats();
        assert_eq!(stats.failed.panicked, 1);
        assert_eq!(stats.workers[0].state, WorkerState::Serving);
    })
    .await;
}

#[tokio::test]
async fn a_panic_in_a_jobs_task_fails_that_job_and_the_worker_keeps_serving() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = pid_of(&workers).await;
        for round in 0..3 {
            let message = format!("task panic {round}");
            assert_panicked(
                workers.send(Request::PanicInTask(message.clone())).await,
                &message,
            );
            assert_eq!(pid_of(&workers).await, pid, "the worker survived");
        }
        assert_eq!(workers.stats().workers[0].restarts, 0);
    })
    .await;
}

#[tokio::test]
async fn eighty_panicking_jobs_among_360_good_ones_never_take_the_pool_down() {
    within(120, async {
        // Default policies: restart limit 5 in 60 s. Panics must not count.
        let workers = behaviour_pool(2).await;
        let mut tasks = Vec::new();
        for task in 0..8u32 {
            let workers = workers.clone();
            tasks.push(tokio::spawn(async move {
                let (mut good, mut panics) = (0, 0);
                for i in 0..55u32 {
                    let n = task * 55 + i;
                    match n % 11 {
                        0 => {
                            let message = format!("inline panic {n}");
                            assert_panicked(
                                workers.send(Request::Panic(message.clone())).await,
                                &message,
                            );
                            panics += 1;
                        }
                        5 => {
                            let message = format!("task panic {n}");
                            assert_panicked(
                                workers.send(Request::PanicInTask(message.clone())).await,
                                &message,
                            );
                            panics += 1;
                        }
                        _ => {
                            let reply = workers.send(Request::Add(n, 1)).await;
                            assert_eq!(reply.unwrap(), Response::Sum(n + 1), "job {n}");
                            good += 1;
                        }
                    }
                }
                (good, panics)
            }));
        }
        let (mut good, mut panics) = (0, 0);
        for task in tasks {
            let (g, p) = task.await.unwrap();
            good += g;
            panics += p;
        }
        assert_eq!((good, panics), (360, 80));
        let stats = workers.stats();
        assert_eq!(stats.completed, 360);
        assert_eq!(stats.failed.panicked, 80);
        assert_eq!(stats.failed.total(), 80, "{:?}", stats.failed);
        for worker in &stats.workers {
            assert_eq!(worker.state, WorkerState::Serving, "{stats:?}");
        }
        assert_eq!(
            workers.send(Request::Add(1, 1)).await.unwrap(),
            Response::Sum(2)
        );
    })
    .await;
}

#[tokio::test]
async fn jobs_a_panicking_worker_never_started_go_to_its_replacement() {
    within(30, async {
        // One worker takes four jobs at once. The first panics in the receive
        // loop before the worker's code takes the others: with retries on,
        // they are run by the replacement (never twice: it never ran them).
        let workers = test_common::pools::behaviour_builder()
            .worker_count(1)
            .max_in_flight_per_worker(4)
            .max_attempts(2)
            .finish()
            .await
            .unwrap();
        let pid = pid_of(&workers).await;
        let jobs = vec![
            Request::Panic("first".into()),
            Request::Add(1, 1),
            Request::Add(2, 2),
            Request::Add(3, 3),
        ];
        let mut outcomes = workers.send_batch(jobs).await.into_iter();
        assert_panicked(outcomes.next().unwrap(), "first");
        let sums: Vec<_> = outcomes.map(Result::unwrap).collect();
        assert_eq!(sums, [Response::Sum(2), Response::Sum(4), Response::Sum(6)]);
        assert_ne!(pid_of(&workers).await, pid);
        assert_eq!(workers.stats().failed.total(), 1);
    })
    .await;
}
