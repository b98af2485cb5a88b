//! Large bodies through shared memory: `Blob` fields of every size, both
//! ways, concurrently on one worker's regions, and a sparse gibibyte.
//!
//! Every pool here uses the same settings: the threshold and the limit are
//! process-wide, and the tests of this file share a process.

use std::time::Duration;

use ipc2::Blob;
use ipc2_common::shm::{self, DEFAULT_BLOB_THRESHOLD};
use test_common::behaviour::{Request, Response};
use test_common::pools::{BehaviourPool, behaviour_builder, eventually, within};

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

/// A blob of `len` bytes whose content depends on `seed`.
fn patterned(len: usize, seed: u8) -> Blob {
    Blob::with_len(len, |bytes| {
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
    })
}

fn is_patterned(blob: &Blob, seed: u8) -> bool {
    blob.iter()
        .enumerate()
        .all(|(i, &byte)| byte == (i as u8).wrapping_mul(31).wrapping_add(seed))
}

fn blob_of(response: Result<Response, ipc2::host::Error>) -> Blob {
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
