//! Chaos: 20,000 jobs from 16 tasks against workers that crash, hang, reply
//! late or not at all, at random. Every send resolves once, with the right
//! answer or the right typed error; the tallies match the pool's own
//! statistics; the pool ends healthy; after shutdown nothing is left.

use std::collections::HashSet;
use std::time::Duration;

use ipc2_host::workerset::WorkerSet;
use ipc2_host::{Error, FailureCounts, WorkerState};
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{BehaviourPool, eventually, within};
use test_common::process::is_running;

const TASKS: u64 = 16;
const JOBS_PER_TASK: u64 = 1250;
const TIMEOUT: Duration = Duration::from_millis(300);

/// What a task saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    died: u64,
    timed_out: u64,
    no_reply: u64,
    pids: HashSet<u32>,
}

/// A small deterministic generator (xorshift), one per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn run_task(workers: BehaviourPool, seed: u64) -> Tally {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut tally = Tally::default();
    for _ in 0..JOBS_PER_TASK {
        let roll = rng.next() % 10_000;
        let (a, b) = (
            (rng.next() % 1_000_000) as u32,
            (rng.next() % 1_000_000) as u32,
        );
        if roll < 30 {
            // Crash: exit with a code, or abort.
            let (request, code, signal) = if roll < 20 {
                (
                    Request::Exit(40 + (roll % 10) as i32),
                    Some(40 + (roll % 10) as i32),
                    None,
                )
            } else {
                (Request::Abort, None, Some(6))
            };
            match workers.send(request).await {
                Err(Error::WorkerDied { status, pid, .. }) => {
                    assert_eq!((status.code(), status.signal()), (code, signal));
                    tally.pids.insert(pid);
                    tally.died += 1;
                }
                other => panic!("crash job: expected WorkerDied, got {other:?}"),
            }
        } else if roll < 50 {
            // Hang: never answers within the deadline.
            match workers.send(Request::Sleep(60_000)).await {
                Err(Error::Timeout {
                    killed: true,
                    after,
                    pid,
                    ..
                }) => {
                    assert_eq!(after, TIMEOUT);
                    tally.pids.insert(pid);
                    tally.timed_out += 1;
                }
                other => panic!("hanging job: expected Timeout, got {other:?}"),
            }
        } else if roll < 100 {
            // No reply at all.
            match workers.send(Request::DropReply).await {
                Err(Error::NoReply { .. }) => tally.no_reply += 1,
                other => panic!("dropped reply: expected NoReply, got {other:?}"),
            }
        } else if roll < 250 {
            // A late reply, well within the deadline.
            match workers.send(Request::Sleep(1 + roll % 20)).await {
                Ok(Response::Slept(pid)) => {
                    tally.pids.insert(pid);
                    tally.ok += 1;
                }
                other => panic!("late reply: expected Slept, got {other:?}"),
            }
        } else {
            let expected = Response::Sum(a.wrapping_add(b));
            match workers.send(Request::Add(a, b)).await {
                Ok(reply) => {
                    assert_eq!(reply, expected);
                    tally.ok += 1;
                }
                other => panic!("add: expected {expected:?}, got {other:?}"),
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_jobs_against_misbehaving_workers() {
    within(120, async {
        let workers: BehaviourPool = WorkerSet::builder()
            .worker_path(worker_binary("behaviour_worker"))
            .worker_count(4)
            .job_timeout(TIMEOUT)
            .finish()
            .await
            .unwrap();
        let dir = workers.socket_path().parent().unwrap().to_path_buf();
        let tasks: Vec<_> = (0..TASKS)
            .map(|seed| tokio::spawn(run_task(workers.clone(), seed)))
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            let tally = task.await.unwrap();
            total.ok += tally.ok;
            total.died += tally.died;
            total.timed_out += tally.timed_out;
            total.no_reply += tally.no_reply;
            total.pids.extend(tally.pids);
        }
        let resolved = total.ok + total.died + total.timed_out + total.no_reply;
        assert_eq!(resolved, TASKS * JOBS_PER_TASK);
        assert!(total.died > 0 && total.timed_out > 0 && total.no_reply > 0);

        let stats = workers.stats();
        assert_eq!(stats.completed, total.ok);
        let mut expected = FailureCounts::default();
        expected.worker_died = total.died;
        expected.timed_out = total.timed_out;
        expected.no_reply = total.no_reply;
        assert_eq!(stats.failed, expected);
        assert_eq!(stats.queued, 0);
        let restarts: u64 = stats.workers.iter().map(|w| w.restarts).sum();
        assert!(restarts >= total.died + total.timed_out);

        // Healthy at the end: every slot serves again.
        assert!(
            eventually(Duration::from_secs(10), || {
                workers.stats().workers.iter().all(|w| w.state == WorkerState::Serving)
            })
            .await,
            "{:?}",
            workers.stats().workers
        );
        for i in 0..8 {
            assert_eq!(workers.send(Request::Add(i, i)).await.unwrap(), Response::Sum(2 * i));
        }
        total.pids.extend(workers.worker_pids());

        let report = workers.shutdown(Duration::from_secs(10)).await;
        assert_eq!((report.cancelled, report.killed), (0, 0));
        assert!(!dir.exists(), "socket directory left after shutdown");
        let pids: Vec<u32> = total.pids.into_iter().collect();
        assert!(
            eventually(Duration::from_secs(5), || pids.iter().all(|&pid| !is_running(pid))).await,
            "worker processes left after shutdown"
        );
        println!(
            "chaos: {resolved} jobs, {} ok, {} worker deaths, {} timeouts, {} no-replies, {restarts} restarts",
            total.ok, total.died, total.timed_out, total.no_reply
        );
    })
    .await;
}
