//! `send_batch` sends jobs that are ready together in one frame
//! (`JobBatch`), and the worker answers them together (`ReplyBatch`); each
//! job still gets its own outcome, whatever it does to its worker, and a
//! worker that breaks the rules of batches is killed without any job being
//! answered twice.

use std::time::Duration;

use ipc2_host::{Blob, Error};
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{
    BehaviourPool, behaviour_builder, eventually, jobs_in_flight, none_restarted, within,
};

/// A pool whose batches travel in frames of several jobs: `workers`
/// workers with `in_flight` jobs each.
async fn grouping_pool(workers: usize, in_flight: usize) -> BehaviourPool {
    behaviour_builder()
        .worker_count(workers)
        .max_in_flight_per_worker(in_flight)
        .finish()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_job_of_a_grouped_batch_gets_its_own_outcome() {
    within(60, async {
        let workers = grouping_pool(2, 64).await;
        let request = |i: u32| match i % 50 {
            7 => Request::Fail(format!("no {i}")),
            13 => Request::DropReply,
            21 => Request::PanicInTask(format!("bug {i}")),
            33 => Request::Sleep(2),
            _ => Request::Add(i, 1),
        };
        for round in 0..3 {
            let outcomes = workers.send_batch((0..600).map(request)).await;
            assert_eq!(outcomes.len(), 600);
            for (i, outcome) in outcomes.into_iter().enumerate() {
                let i = i as u32;
                match (i % 50, outcome) {
                    (7, Err(Error::App { message, .. })) => assert_eq!(message, format!("no {i}")),
                    (13, Err(Error::NoReply { .. })) => {}
                    (21, Err(Error::Panicked { message, .. })) => {
                        assert_eq!(message, format!("bug {i}"));
                    }
                    (33, Ok(Response::Slept(_))) => {}
                    (_, Ok(Response::Sum(sum))) => assert_eq!(sum, i + 1),
                    (_, other) => panic!("round {round}, job {i}: {other:?}"),
                }
            }
        }
        // Panics in tasks leave their worker serving.
        assert!(none_restarted(&workers));
    })
    .await;
}

#[tokio::test]
async fn a_frame_of_a_single_job_is_answered_like_the_others() {
    // 60 s, as the others here: the first test of a fresh checkout also
    // waits for the test workers to build.
    within(60, async {
        // Frames of 4 jobs: 4, 4, then 1.
        let workers = grouping_pool(1, 8).await;
        for round in 0..3 {
            let outcomes = workers.send_batch((0..9).map(|i| Request::Add(i, 1))).await;
            for (i, outcome) in outcomes.into_iter().enumerate() {
                match outcome {
                    Ok(Response::Sum(sum)) => assert_eq!(sum, i as u32 + 1),
                    other => panic!("round {round}, job {i}: {other:?}"),
                }
            }
        }
        assert!(none_restarted(&workers));
    })
    .await;
}

#[tokio::test]
async fn a_worker_that_dies_inside_a_grouped_batch_fails_only_jobs_it_had_not_answered() {
    within(60, async {
        let workers = grouping_pool(1, 64).await;
        let requests = (0..41u32).map(|i| match i {
            20 => Request::Exit(3),
            _ => Request::Add(i, 1),
        });
        let outcomes = workers.send_batch(requests).await;
        assert_eq!(outcomes.len(), 41);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(Response::Sum(sum)) => assert_eq!(sum, i as u32 + 1),
                Err(Error::WorkerDied { .. }) => {}
                other => panic!("job {i}: {other:?}"),
            }
        }
        // A replacement serves the next batch whole.
        assert!(eventually(Duration::from_secs(10), || workers.worker_pids().len() == 1).await);
        let outcomes = workers
            .send_batch((0..100).map(|i| Request::Add(i, i)))
            .await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.unwrap(), Response::Sum(2 * i as u32));
        }
    })
    .await;
}

#[tokio::test]
async fn jobs_answered_before_a_hung_job_of_their_frame_are_not_lost_with_it() {
    within(60, async {
        let workers = behaviour_builder()
            .worker_count(1)
            .max_in_flight_per_worker(64)
            .job_timeout(Duration::from_millis(1500))
            .finish()
            .await
            .unwrap();
        // Frames of 11 jobs: the hang is the last of the first frame.
        let requests = (0..21u32).map(|i| match i {
            10 => Request::Block(5_000),
            _ => Request::Add(i, 1),
        });
        let outcomes = workers.send_batch(requests).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match (i, outcome) {
                (0..10, Ok(Response::Sum(sum))) => assert_eq!(sum, i as u32 + 1),
                (10, Err(Error::Timeout { .. })) => {}
                // Sent with the hung job, they waited behind it.
                (11.., Err(Error::Timeout { .. } | Error::WorkerDied { .. })) => {}
                (_, other) => panic!("job {i}: {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn shared_bodies_in_a_grouped_batch_travel_as_they_do_alone() {
    within(60, async {
        let workers = grouping_pool(2, 16).await;
        let len = 1 << 20;
        let sent = Blob::with_len(len, |bytes| bytes.fill(7));
        let requests = (0..60u64).map(|i| match i % 3 {
            // Replies with a body of the worker's, in shared memory.
            0 => Request::MakeBlob(len as u64, vec![(0, i as u8), (len as u64 - 1, 1)]),
            // A job whose message holds a shared body travels alone.
            1 => Request::Probe(sent.clone(), vec![0, len as u64 - 1]),
            _ => Request::Add(i as u32, 1),
        });
        let outcomes = workers.send_batch(requests).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match (i % 3, outcome.unwrap()) {
                (0, Response::Blob(blob)) => {
                    assert!(blob.is_shared());
                    assert_eq!((blob.len(), blob[0], blob[len - 1]), (len, i as u8, 1));
                }
                (1, Response::Bytes(bytes)) => assert_eq!(bytes, vec![7, 7]),
                (_, Response::Sum(sum)) => assert_eq!(sum, i as u32 + 1),
                (_, other) => panic!("job {i}: {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_worker_that_breaks_the_rules_of_batches_is_killed_and_no_job_is_answered_twice() {
    within(60, async {
        for mode in ["duplicate", "out_of_range", "garbage", "wrong_kind"] {
            let workers = behaviour_builder()
                .worker_path(worker_binary("batch_rogue_worker"))
                .env("ROGUE_MODE", mode)
                .max_in_flight_per_worker(8)
                .finish()
                .await
                .unwrap();
            let outcomes = workers.send_batch((0..8).map(|i| Request::Add(i, 1))).await;
            assert_eq!(outcomes.len(), 8);
            let mut violations = 0;
            for (i, outcome) in outcomes.into_iter().enumerate() {
                match outcome {
                    Ok(Response::Sum(sum)) => assert_eq!(sum, i as u32 + 1, "{mode}"),
                    Err(Error::Protocol { .. }) => violations += 1,
                    other => panic!("{mode}, job {i}: {other:?}"),
                }
            }
            assert!(violations > 0, "{mode}: the rogue was not caught");
        }
    })
    .await;
}

#[tokio::test]
async fn a_reply_too_large_to_share_a_frame_of_answers_goes_alone() {
    within(60, async {
        let limit = 4096;
        // An echo whose reply fits a frame of its own, but not a frame of
        // answers (which adds its own header and the answer's).
        let size = |n: usize| {
            ipc2_common::codec::prepare(&Request::Echo(vec![7; n]), false, None)
                .unwrap()
                .size()
        };
        let n = (0..limit).find(|&n| size(n) == limit - 17).unwrap();
        let workers = behaviour_builder()
            .worker_count(1)
            .max_in_flight_per_worker(8)
            .max_frame_length(limit)
            .shared_memory(false)
            .finish()
            .await
            .unwrap();
        assert!(matches!(
            workers.send(Request::Echo(vec![7; n])).await,
            Ok(Response::Echo(bytes)) if bytes.len() == n
        ));
        let requests = vec![
            Request::Add(1, 1),
            Request::Add(2, 1),
            Request::Echo(vec![7; n]),
            Request::Add(3, 1),
        ];
        let outcomes = workers.send_batch(requests).await;
        assert!(matches!(outcomes[0], Ok(Response::Sum(2))));
        assert!(matches!(outcomes[1], Ok(Response::Sum(3))));
        assert!(matches!(&outcomes[2], Ok(Response::Echo(bytes)) if bytes.len() == n));
        assert!(matches!(outcomes[3], Ok(Response::Sum(4))));
    })
    .await;
}

#[tokio::test]
async fn a_shutdown_counts_the_jobs_of_a_frame_one_by_one() {
    within(60, async {
        let workers = grouping_pool(1, 8).await;
        let batch = workers.clone();
        let task = tokio::spawn(async move {
            batch
                .send_batch((0..8).map(|_| Request::Sleep(60_000)))
                .await
        });
        // Two frames of 4 jobs, both held by the worker.
        assert!(
            eventually(Duration::from_secs(10), || {
                jobs_in_flight(&workers) == 8
            })
            .await
        );
        let report = workers.shutdown(Duration::from_millis(300)).await;
        let outcomes = task.await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Err(Error::ShuttingDown)))
        );
        assert_eq!((report.finished, report.cancelled), (0, 8));
    })
    .await;
}
