//! Large bodies through shared memory: `Blob` fields of every size, both
//! ways, concurrently on one worker's regions, and a sparse gibibyte.
//!
//! Every pool here uses the same settings: the threshold and the limit are
//! process-wide, and the tests of this file share a process.

use std::time::Duration;

use ipc2::Blob;
use ipc2::host::Error;
use ipc2_common::shm::DEFAULT_BLOB_THRESHOLD;
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{BehaviourPool, behaviour_builder, within};
use tokio::task::JoinSet;

const THRESHOLD: usize = DEFAULT_BLOB_THRESHOLD;
const LIMIT: usize = 3 << 30;

async fn blob_pool(workers: usize, in_flight: usize) -> BehaviourPool {
    behaviour_builder()
        .worker_count(workers)
        .max_in_flight_per_worker(in_flight)
        .blob_threshold(THRESHOLD)
        .shared_memory_limit(LIMIT)
        .finish()
        .await
        .expect("a pool of behaviour workers starts")
}

/// 4 KiB of bytes that depend on `seed` (and differ from every other seed's).
fn pattern(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// A blob of `len` bytes: the pattern of `seed`, repeated.
fn patterned(len: usize, seed: u8) -> Blob {
    let pattern = pattern(seed);
    Blob::with_len(len, |bytes| {
        for chunk in bytes.chunks_mut(pattern.len()) {
            chunk.copy_from_slice(&pattern[..chunk.len()]);
        }
    })
}

fn is_patterned(blob: &Blob, seed: u8) -> bool {
    let pattern = pattern(seed);
    blob.chunks(pattern.len())
        .all(|chunk| chunk == &pattern[..chunk.len()])
}

fn blob_of(response: Result<Response, Error>) -> Blob {
    match response {
        Ok(Response::Blob(blob)) => blob,
        other => panic!("expected a blob, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_of_every_size_travel_both_ways() {
    within(120, async {
        let workers = blob_pool(1, 1).await;
        for (len, seed) in [
            (0, 1),
            (THRESHOLD - 1, 2),
            (THRESHOLD, 3),
            (THRESHOLD + 1, 4),
            (64 << 20, 5),
        ] {
            let shared = len >= THRESHOLD;
            let blob = patterned(len, seed);
            assert_eq!(
                blob.is_shared(),
                shared,
                "{len}-byte blob made in shared memory"
            );
            // Passed back as it came: the host gets its own body again.
            let echoed = blob_of(workers.send(Request::EchoBlob(blob)).await);
            assert_eq!(echoed.len(), len);
            assert!(is_patterned(&echoed, seed), "{len}-byte echo differs");
            assert_eq!(
                echoed.is_shared(),
                shared,
                "{len}-byte echo in shared memory"
            );
            // A new body made by the worker, in the worker's region.
            let copied = blob_of(workers.send(Request::CopyBlob(echoed)).await);
            assert_eq!(copied.len(), len);
            assert!(is_patterned(&copied, seed), "{len}-byte copy differs");
            assert_eq!(
                copied.is_shared(),
                shared,
                "{len}-byte copy in shared memory"
            );
        }
        // A heap blob above the threshold is copied in once when sent.
        let heap = Blob::from(vec![9u8; 3 * THRESHOLD]);
        assert!(!heap.is_shared());
        let echoed = blob_of(workers.send(Request::EchoBlob(heap)).await);
        assert!(echoed.is_shared() && echoed.iter().all(|&b| b == 9));
        workers.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_share_one_workers_regions() {
    within(120, async {
        let workers = blob_pool(1, 8).await;
        let mut jobs = JoinSet::new();
        for job in 0..32u8 {
            let workers = workers.clone();
            jobs.spawn(async move {
                let len = THRESHOLD + usize::from(job) * 50_000;
                let blob = patterned(len, job);
                let request = match job % 2 {
                    0 => Request::EchoBlob(blob),
                    _ => Request::CopyBlob(blob),
                };
                let answer = blob_of(workers.send(request).await);
                assert_eq!(answer.len(), len, "job {job}");
                assert!(
                    is_patterned(&answer, job),
                    "job {job} got another job's bytes"
                );
            });
        }
        while let Some(done) = jobs.join_next().await {
            done.expect("a job's checks passed");
        }
        workers.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

/// Available memory in bytes, from `/proc/meminfo`.
fn available_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_gibibyte_travels_both_ways() {
    const GIB: u64 = 1 << 30;
    // Sparse: only the marked pages are ever touched, but leave room in
    // case the system backs more of them.
    if available_memory().is_none_or(|available| available < 4 * GIB) {
        println!("skipped: a_sparse_gibibyte_travels_both_ways needs 4 GiB of available memory");
        return;
    }
    within(120, async {
        let workers = blob_pool(1, 1).await;
        let marks: Vec<(u64, u8)> = vec![(0, 1), (12_345_678, 2), (GIB / 2, 3), (GIB - 1, 4)];
        let offsets: Vec<u64> = marks.iter().map(|&(offset, _)| offset).collect();
        let expected: Vec<u8> = marks.iter().map(|&(_, byte)| byte).collect();
        let host_made = Blob::with_len(GIB as usize, |bytes| {
            for &(offset, byte) in &marks {
                bytes[offset as usize] = byte;
            }
        });
        assert!(host_made.is_shared());
        match workers
            .send(Request::Probe(host_made, offsets.clone()))
            .await
        {
            Ok(Response::Bytes(bytes)) => assert_eq!(bytes, expected),
            other => panic!("expected the marked bytes, got {other:?}"),
        }
        let worker_made = blob_of(workers.send(Request::MakeBlob(GIB, marks.clone())).await);
        assert_eq!(worker_made.len() as u64, GIB);
        assert!(worker_made.is_shared());
        let seen: Vec<u8> = offsets
            .iter()
            .map(|&offset| worker_made[offset as usize])
            .collect();
        assert_eq!(seen, expected);
        workers.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_breaks_the_shared_memory_rules_is_killed_and_its_job_fails() {
    within(120, async {
        for (mode, says) in [
            ("forge-region", "never attached"),
            ("out-of-bounds", "past its end"),
            ("not-lent", "not lent"),
            ("truncate", "sealed"),
            ("release-unknown", "does not hold"),
        ] {
            let workers: BehaviourPool = ipc2::host::WorkerSet::builder()
                .worker_count(1)
                .worker_path(worker_binary("shm_rogue_worker"))
                .arg(mode)
                .blob_threshold(THRESHOLD)
                .shared_memory_limit(LIMIT)
                .finish()
                .await
                .expect("the rogue passes its handshake");
            let rogue = workers.worker_pids();
            let outcome = workers
                .send(Request::EchoBlob(patterned(2 * THRESHOLD, 9)))
                .await;
            match outcome {
                Err(Error::Protocol { source, .. }) => assert!(
                    source.to_string().contains(says),
                    "{mode}: the error says {source}"
                ),
                other => panic!("{mode}: expected a protocol error, got {other:?}"),
            }
            // The worker was killed, and the host still serves.
            assert!(
                test_common::process::wait_all_gone(&rogue, Duration::from_secs(10)),
                "{mode}: the rogue is still running"
            );
            drop(workers);
        }
    })
    .await;
}
