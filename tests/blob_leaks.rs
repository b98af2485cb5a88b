//! 10,000 jobs with shared bodies, with crashes, timeouts and cancelled
//! sends mixed in, leave this process with the descriptors, shared memory
//! and mappings it had before: every way a job ends gives its bodies back.
//!
//! Counts the whole process's descriptors, so this file runs alone in its
//! process.

use std::time::Duration;

use ipc2::Blob;
use ipc2::host::Error;
use ipc2_common::shm;
use test_common::behaviour::{Request, Response};
use test_common::pools::{BehaviourPool, behaviour_builder, eventually, poll_once, within};
use tokio::task::JoinSet;

const JOBS: usize = 10_000;
const CONCURRENT: usize = 16;

/// Open descriptors of this process.
fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// Mappings of shared-memory regions in this process, and their total size.
fn mappings() -> (usize, u64) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter(|line| line.contains("ipc2-bodies"))
        .filter_map(|line| {
            let (start, end) = line.split_whitespace().next()?.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            let end = u64::from_str_radix(end, 16).ok()?;
            Some(end - start)
        })
        .fold((0, 0), |(count, total), size| (count + 1, total + size))
}

/// What a job of number `n` asks.
fn request(n: usize) -> (Request, Option<Duration>) {
    let body = || Blob::with_len(64 * 1024 + (n % 50) * 3000, |bytes| bytes.fill(n as u8));
    match n % 1000 {
        // A crash, with other jobs' bodies in flight on the same worker.
        7 => (Request::Exit(3), None),
        // A timeout: the worker is killed.
        500 => (Request::Sleep(10_000), Some(Duration::from_millis(100))),
        _ if n.is_multiple_of(2) => (Request::EchoBlob(body()), None),
        _ => (Request::CopyBlob(body()), None),
    }
}

async fn run(workers: &BehaviourPool, n: usize) {
    let (request, timeout) = request(n);
    if n.is_multiple_of(97) {
        // Cancelled: the caller goes away once the job is handed over.
        let mut send = Box::pin(workers.send(request));
        poll_once(&mut send).await;
        return;
    }
    let outcome = match timeout {
        Some(timeout) => workers.send_timeout(request, timeout).await,
        None => workers.send(request).await,
    };
    match outcome {
        Ok(Response::Blob(blob)) => assert!(blob.iter().all(|&b| b == n as u8), "job {n}"),
        Ok(other) => panic!("job {n} answered {other:?}"),
        // Crashes and timeouts fail the jobs they hit, and those sharing
        // the worker.
        Err(Error::WorkerDied { .. } | Error::Timeout { .. }) => {}
        Err(other) => panic!("job {n} failed: {other}"),
    }
}

async fn batch(workers: &BehaviourPool, first: usize, count: usize) {
    let mut jobs = JoinSet::new();
    for chunk in (first..first + count)
        .collect::<Vec<_>>()
        .chunks(CONCURRENT)
    {
        for &n in chunk {
            let workers = workers.clone();
            jobs.spawn(async move { run(&workers, n).await });
        }
        while let Some(done) = jobs.join_next().await {
            done.expect("a job's checks passed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_with_crashes_and_timeouts_leak_nothing() {
    within(300, async {
        let workers = behaviour_builder()
            .worker_count(2)
            .max_in_flight_per_worker(4)
            .restart_backoff(Duration::from_millis(5), Duration::from_millis(20))
            .finish()
            .await
            .expect("a pool of behaviour workers starts");
        // Warm up (regions made, both workers' regions mapped), then count.
        batch(&workers, 1, 200).await;
        // A warm-up job whose caller left (every 97th) may still hold its
        // body in a worker: count from a pool that holds none.
        assert!(eventually(Duration::from_secs(20), || shm::usage().used == 0).await);
        let (fds, maps, usage) = (descriptors(), mappings(), shm::usage());
        batch(&workers, 1_000_000, JOBS).await;
        // Make sure both (possibly new) workers have made bodies again.
        batch(&workers, 2_000_001, 200).await;
        let settled = eventually(Duration::from_secs(20), || {
            descriptors() <= fds && mappings().1 <= maps.1 && shm::usage() == usage
        })
        .await;
        assert!(
            settled,
            "before: {fds} descriptors, mappings {maps:?}, {usage:?}; after: {} descriptors, \
             mappings {:?}, {:?}",
            descriptors(),
            mappings(),
            shm::usage()
        );
        let stats = workers.stats();
        let restarts: u64 = stats.workers.iter().map(|worker| worker.restarts).sum();
        println!(
            "{fds} descriptors, mappings {maps:?}, {usage:?}; {restarts} restarts, failures {:?}",
            stats.failed
        );
        assert!(restarts >= 20, "crashes and timeouts replaced workers");
        workers.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}
