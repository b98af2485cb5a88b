//! Supervision: job timeouts, restart policy, retries, recycling, graceful
//! shutdown, statistics.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::Duration;

use ipc2_host::workerset::WorkerSet;
use ipc2_host::{Error, WorkerState};
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{
    BehaviourPool, behaviour_builder as builder, behaviour_pool, eventually, jobs_in_flight,
    pid_of, poll_once, within,
};
use test_common::process::{is_running, kill};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ipc2-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A builder for a worker that starts only while `flag` exists (it runs
/// `/bin/sh`, which execs the behaviour worker or exits with code 3).
fn flaky_builder(
    flag: &Path,
) -> ipc2_host::WorkerSetBuilder<tokio::net::UnixListener, Response, Request> {
    let script = format!(
        "if [ -e '{}' ]; then exec '{}'; fi; exit 3",
        flag.display(),
        worker_binary("behaviour_worker").display()
    );
    WorkerSet::builder()
        .worker_path("/bin/sh")
        .args(["-c", &script])
        .worker_count(1)
}

/// A one-worker pool whose worker starts while a flag file exists, with the
/// given restart limit (per minute) and backoff (`min` up to 5 × `min`);
/// then the flag is removed and the worker killed, so every restart fails.
async fn broken_after_start(
    name: &str,
    max_failures: u32,
    backoff: Duration,
) -> (Scratch, BehaviourPool) {
    let scratch = Scratch::new(name);
    let flag = scratch.0.join("flag");
    std::fs::write(&flag, b"").unwrap();
    let workers = flaky_builder(&flag)
        .restart_limit(max_failures, Duration::from_secs(60))
        .restart_backoff(backoff, backoff * 5)
        .finish()
        .await
        .unwrap();
    std::fs::remove_file(&flag).unwrap();
    kill(workers.worker_pids()[0]);
    (scratch, workers)
}

#[tokio::test]
async fn timed_out_job_fails_and_its_worker_is_replaced_while_others_serve() {
    within(30, async {
        let workers = builder()
            .worker_count(2)
            .job_timeout(Duration::from_millis(300))
            .finish()
            .await
            .unwrap();
        let before: HashSet<u32> = workers.worker_pids().into_iter().collect();
        let hang = workers.send(Request::Sleep(60_000));
        let others = async {
            for i in 0..20 {
                assert_eq!(
                    workers.send(Request::Add(i, 1)).await.unwrap(),
                    Response::Sum(i + 1)
                );
            }
        };
        let (hang, ()) = tokio::join!(hang, others);
        match hang {
            Err(error @ Error::Timeout { .. }) => {
                let Error::Timeout {
                    pid, after, killed, ..
                } = &error
                else {
                    unreachable!()
                };
                assert_eq!(*after, Duration::from_millis(300));
                assert!(*killed);
                assert!(before.contains(pid));
                assert!(eventually(Duration::from_secs(5), || !is_running(*pid)).await);
                assert!(error.to_string().contains("killed"), "{error}");
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(
            eventually(Duration::from_secs(10), || workers.worker_pids().len() == 2).await,
            "the killed worker was not replaced"
        );
        assert_eq!(workers.stats().failed.timed_out, 1);
        assert_eq!(
            workers
                .stats()
                .workers
                .iter()
                .map(|w| w.restarts)
                .sum::<u64>(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn per_call_timeout_overrides_the_default() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        assert!(matches!(
            workers
                .send_timeout(Request::Sleep(60_000), Duration::from_millis(200))
                .await,
            Err(Error::Timeout { .. })
        ));
        let quick = workers
            .send_timeout(Request::Sleep(10), Duration::from_secs(10))
            .await;
        assert!(matches!(quick, Ok(Response::Slept(_))), "{quick:?}");
    })
    .await;
}

#[tokio::test]
async fn without_kill_on_timeout_the_worker_lives_and_its_late_reply_is_dropped() {
    within(30, async {
        let workers = builder()
            .worker_count(1)
            .job_timeout(Duration::from_millis(200))
            .kill_on_timeout(false)
            .finish()
            .await
            .unwrap();
        let pid = pid_of(&workers).await;
        match workers.send(Request::Sleep(600)).await {
            Err(Error::Timeout { killed, .. }) => assert!(!killed),
            other => panic!("expected Timeout, got {other:?}"),
        }
        // The late reply of the sleeper must not answer this job.
        assert_eq!(
            workers.send(Request::Add(20, 22)).await.unwrap(),
            Response::Sum(42)
        );
        assert_eq!(pid_of(&workers).await, pid);
    })
    .await;
}

#[tokio::test]
async fn failed_starts_back_off_then_the_slot_gives_up_and_sends_fail_fast() {
    within(30, async {
        let (_scratch, workers) = broken_after_start("give-up", 2, Duration::from_millis(10)).await;
        let gave_up = eventually(Duration::from_secs(10), || {
            workers.stats().workers[0].state == WorkerState::Failed
        })
        .await;
        assert!(
            gave_up,
            "slot state: {:?}",
            workers.stats().workers[0].state
        );
        match workers.send(Request::Add(1, 1)).await {
            Err(error @ Error::NoWorkers { given_up: 1, .. }) => {
                assert!(error.to_string().contains("exited with code 3"), "{error}");
            }
            other => panic!("expected NoWorkers, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn sends_fail_fast_while_no_worker_can_start_and_recover_when_one_can() {
    within(30, async {
        let (scratch, workers) =
            broken_after_start("recover", 10_000, Duration::from_millis(20)).await;
        let flag = scratch.0.join("flag");
        let failing = eventually(Duration::from_secs(10), || {
            workers.stats().workers[0].state == WorkerState::BackingOff
        })
        .await;
        assert!(failing);
        // Queued or not, the send resolves at once with NoWorkers.
        let result = tokio::time::timeout(Duration::from_secs(5), workers.send(Request::Add(1, 1)))
            .await
            .expect("send must fail fast, not wait");
        assert!(
            matches!(result, Err(Error::NoWorkers { given_up: 0, .. })),
            "{result:?}"
        );

        std::fs::write(&flag, b"").unwrap();
        let mut recovered = false;
        for _ in 0..100 {
            if let Ok(reply) = workers.send(Request::Add(2, 2)).await {
                assert_eq!(reply, Response::Sum(4));
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(recovered, "the pool did not recover");
    })
    .await;
}

#[tokio::test]
async fn crashes_during_jobs_restart_at_once_and_never_exhaust_the_limit() {
    within(30, async {
        let workers = builder()
            .worker_count(1)
            .restart_limit(1, Duration::from_secs(60))
            .restart_backoff(Duration::from_secs(10), Duration::from_secs(10))
            .finish()
            .await
            .unwrap();
        // Ten job-caused crashes: with a limit of one counted failure and a
        // 10 s backoff this would give up or take 100 s if they counted.
        for _ in 0..10 {
            assert!(matches!(
                workers.send(Request::Exit(1)).await,
                Err(Error::WorkerDied { .. })
            ));
        }
        assert_eq!(
            workers.send(Request::Add(1, 2)).await.unwrap(),
            Response::Sum(3)
        );
        let stats = workers.stats();
        assert_eq!(stats.workers[0].state, WorkerState::Serving);
        assert_eq!(stats.workers[0].restarts, 10);
        assert_eq!(stats.failed.worker_died, 10);
    })
    .await;
}

#[tokio::test]
async fn retries_rescue_a_job_whose_worker_was_killed() {
    within(30, async {
        let workers = builder()
            .worker_count(1)
            .max_attempts(3)
            .finish()
            .await
            .unwrap();
        let first = workers.worker_pids()[0];
        let mut job = pin!(workers.send(Request::Sleep(500)));
        poll_once(&mut job).await;
        kill(first);
        match job.await.unwrap() {
            Response::Slept(pid) => assert_ne!(pid, first),
            other => panic!("expected Slept, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn poison_job_fails_with_its_own_error_after_max_attempts() {
    within(30, async {
        let workers = builder()
            .worker_count(2)
            .max_attempts(3)
            .finish()
            .await
            .unwrap();
        match workers.send(Request::Exit(5)).await {
            Err(Error::RetriesExhausted {
                attempts, status, ..
            }) => {
                assert_eq!(attempts, 3);
                assert_eq!(status.code(), Some(5));
            }
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        assert_eq!(
            workers.send(Request::Add(3, 4)).await.unwrap(),
            Response::Sum(7)
        );
        assert_eq!(workers.stats().failed.retries_exhausted, 1);
    })
    .await;
}

#[tokio::test]
async fn workers_are_recycled_after_max_jobs_without_losing_any() {
    within(30, async {
        let workers = builder()
            .worker_count(1)
            .max_jobs_per_worker(3)
            .finish()
            .await
            .unwrap();
        let mut pids = Vec::new();
        for _ in 0..9 {
            pids.push(pid_of(&workers).await);
        }
        for chunk in pids.chunks(3) {
            assert!(chunk.iter().all(|pid| *pid == chunk[0]), "{pids:?}");
        }
        let distinct: HashSet<_> = pids.iter().collect();
        assert_eq!(distinct.len(), 3, "{pids:?}");

        // Concurrent load across recycling: nothing fails.
        let mut tasks = Vec::new();
        for task in 0..4u32 {
            let workers = workers.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..10 {
                    assert_eq!(
                        workers.send(Request::Add(task, i)).await.unwrap(),
                        Response::Sum(task + i)
                    );
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(workers.stats().failed.total(), 0);
        assert!(workers.stats().workers[0].restarts >= 15);
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_queued_and_running_jobs() {
    within(30, async {
        let workers = behaviour_pool(2).await;
        let pids = workers.worker_pids();
        let dir = workers.socket_path().parent().unwrap().to_path_buf();
        let jobs: Vec<_> = (0..6)
            .map(|_| {
                let workers = workers.clone();
                // Long enough that all six are queued or running together
                // even on a loaded machine.
                tokio::spawn(async move { workers.send(Request::Sleep(1_000)).await })
            })
            .collect();
        // Wait until all six are queued or running.
        assert!(
            eventually(Duration::from_secs(5), || {
                let stats = workers.stats();
                stats.queued + stats.workers.iter().map(|w| w.in_flight).sum::<usize>() == 6
            })
            .await
        );
        let shutdown = workers.shutdown(Duration::from_secs(20));
        let late = async {
            tokio::task::yield_now().await;
            workers.send(Request::Add(1, 1)).await
        };
        let (report, late) = tokio::join!(shutdown, late);
        assert!(matches!(late, Err(Error::ShuttingDown)), "{late:?}");
        assert_eq!(
            (report.finished, report.cancelled, report.killed),
            (6, 0, 0)
        );
        for job in jobs {
            assert!(matches!(job.await.unwrap(), Ok(Response::Slept(_))));
        }
        assert!(
            pids.iter().all(|&pid| !is_running(pid)) || {
                eventually(Duration::from_secs(5), || {
                    pids.iter().all(|&pid| !is_running(pid))
                })
                .await
            }
        );
        assert!(matches!(
            workers.send(Request::Add(1, 1)).await,
            Err(Error::Closed)
        ));
        drop(workers);
        assert!(!dir.exists());
    })
    .await;
}

#[tokio::test]
async fn shutdown_deadline_cancels_what_is_left_and_kills_stragglers() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = workers.worker_pids()[0];
        let blocked = {
            let workers = workers.clone();
            tokio::spawn(async move { workers.send(Request::Block(10_000)).await })
        };
        let queued = {
            let workers = workers.clone();
            tokio::spawn(async move { workers.send(Request::Add(1, 1)).await })
        };
        assert!(eventually(Duration::from_secs(5), || workers.stats().queued == 1).await);
        let report = workers.shutdown(Duration::from_millis(300)).await;
        assert_eq!(
            (report.finished, report.cancelled, report.killed),
            (0, 2, 1)
        );
        assert!(matches!(blocked.await.unwrap(), Err(Error::ShuttingDown)));
        assert!(matches!(queued.await.unwrap(), Err(Error::ShuttingDown)));
        assert!(eventually(Duration::from_secs(5), || !is_running(pid)).await);
    })
    .await;
}

#[tokio::test]
async fn a_drain_whose_last_job_times_out_ends_then_not_at_its_deadline() {
    within(60, async {
        let workers = builder()
            .worker_count(1)
            .job_timeout(Duration::from_millis(300))
            .kill_on_timeout(false)
            .finish()
            .await
            .unwrap();
        let sleeper = {
            let workers = workers.clone();
            tokio::spawn(async move { workers.send(Request::Sleep(60_000)).await })
        };
        assert!(
            eventually(Duration::from_secs(10), || {
                jobs_in_flight(&workers) == 1
            })
            .await
        );
        let started = std::time::Instant::now();
        let report = workers.shutdown(Duration::from_secs(30)).await;
        assert!(matches!(
            sleeper.await.unwrap(),
            Err(Error::Timeout { killed: false, .. })
        ));
        // Nothing was left to wait for once the job timed out.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(report.cancelled, 0);
    })
    .await;
}

#[tokio::test]
async fn stats_count_every_outcome() {
    within(30, async {
        let workers = behaviour_pool(2).await;
        for i in 0..10 {
            workers.send(Request::Add(i, i)).await.unwrap();
        }
        assert!(workers.send(Request::DropReply).await.is_err());
        assert!(workers.send(Request::Exit(2)).await.is_err());
        assert!(eventually(Duration::from_secs(10), || workers.worker_pids().len() == 2).await);
        let stats = workers.stats();
        assert_eq!(stats.completed, 10);
        assert_eq!(stats.failed.no_reply, 1);
        assert_eq!(stats.failed.worker_died, 1);
        assert_eq!(stats.failed.total(), 2);
        assert_eq!(stats.queued, 0);
        assert_eq!(stats.workers.len(), 2);
        assert_eq!(stats.workers.iter().map(|w| w.jobs_done).sum::<u64>(), 11);
        assert_eq!(stats.workers.iter().map(|w| w.restarts).sum::<u64>(), 1);
        assert!(
            stats
                .workers
                .iter()
                .all(|w| w.in_flight == 0 && w.pid.is_some())
        );
    })
    .await;
}
