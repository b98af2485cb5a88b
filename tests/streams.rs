//! Jobs answered with a stream of items, flow-controlled by credit, and
//! jobs a worker fails with a reason of its own.

use std::time::Duration;

use ipc2_host::Error;
use test_common::behaviour::{Request, Response};
use test_common::pools::{behaviour_builder, behaviour_pool, eventually, pid_of, within};

/// Collects a stream's items until it ends; returns them and the error it
/// ended with, if any.
async fn collect(mut stream: ipc2_host::ReplyStream<Response>) -> (Vec<Response>, Option<Error>) {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(item) => items.push(item),
            Err(error) => {
                assert!(stream.next().await.is_none(), "items after the end");
                return (items, Some(error));
            }
        }
    }
    (items, None)
}

fn sums(range: std::ops::Range<u32>) -> Vec<Response> {
    range.map(Response::Sum).collect()
}

#[tokio::test]
async fn a_stream_job_delivers_every_item_in_order_then_ends() {
    within(60, async {
        let workers = behaviour_pool(2).await;
        let (items, error) = collect(workers.send_stream(Request::Count(1000))).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(items, sums(0..1000));
        // A stream job answered with one reply is a stream of one item.
        let (items, error) = collect(workers.send_stream(Request::Add(2, 3))).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(items, [Response::Sum(5)]);
        assert_eq!(workers.stats().completed, 2);
    })
    .await;
}

#[tokio::test]
async fn a_stream_produced_inside_the_receive_loop_still_gets_its_credit() {
    within(60, async {
        // The producer runs where the worker would call `recv`: the credit
        // the host grants as the caller reads must reach it all the same.
        let workers = behaviour_builder()
            .worker_count(1)
            .stream_window(4)
            .finish()
            .await
            .unwrap();
        let (items, error) = collect(workers.send_stream(Request::CountInline(200))).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(items, sums(0..200));
        assert_eq!(
            workers.send(Request::Add(1, 1)).await.unwrap(),
            Response::Sum(2)
        );
    })
    .await;
}

#[tokio::test]
async fn a_hundred_thousand_items_consumed_slowly_keep_the_hosts_buffer_within_the_window() {
    within(120, async {
        let workers = behaviour_builder()
            .worker_count(1)
            .stream_window(16)
            .finish()
            .await
            .unwrap();
        let mut stream = workers.send_stream(Request::Count(100_000));
        let mut next = 0;
        let mut most_buffered = 0;
        while let Some(item) = stream.next().await {
            assert_eq!(item.unwrap(), Response::Sum(next));
            next += 1;
            most_buffered = most_buffered.max(stream.buffered());
            if next % 1000 == 0 {
                // A slow consumer: the worker must wait for it.
                tokio::time::sleep(Duration::from_millis(2)).await;
                most_buffered = most_buffered.max(stream.buffered());
            }
        }
        assert_eq!(next, 100_000);
        assert!(most_buffered <= 16, "{most_buffered} items buffered");
        println!("most items buffered at once: {most_buffered} (window 16)");
    })
    .await;
}

#[tokio::test]
async fn a_worker_dying_mid_stream_ends_the_stream_with_its_error() {
    within(60, async {
        let workers = behaviour_pool(1).await;
        let (items, error) = collect(workers.send_stream(Request::CountThenExit(10))).await;
        // Items the worker had not written when it exited are lost with it;
        // those that came are in order.
        assert_eq!(items, sums(0..items.len() as u32));
        match error {
            Some(Error::WorkerDied { status, .. }) => assert_eq!(status.code(), Some(9)),
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        assert_eq!(
            workers.send(Request::Add(2, 2)).await.unwrap(),
            Response::Sum(4)
        );
    })
    .await;
}

#[tokio::test]
async fn dropping_a_stream_cancels_its_job_and_the_worker_sees_it() {
    within(60, async {
        let workers = behaviour_pool(1).await;
        let marker = std::env::temp_dir().join(format!("ipc2-cancel-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let mut stream =
            workers.send_stream(Request::CountUntilCancelled(marker.display().to_string()));
        for i in 0..5 {
            assert_eq!(stream.next().await.unwrap().unwrap(), Response::Sum(i));
        }
        drop(stream);
        assert!(
            eventually(Duration::from_secs(10), || marker.exists()).await,
            "the worker never saw the cancellation"
        );
        let produced: u32 = std::fs::read_to_string(&marker).unwrap().parse().unwrap();
        std::fs::remove_file(&marker).unwrap();
        // The worker ran ahead of the caller by at most its window.
        assert!(produced <= 5 + 16, "{produced} items produced");
        // The one worker is free again.
        assert_eq!(
            workers.send(Request::Add(3, 3)).await.unwrap(),
            Response::Sum(6)
        );
    })
    .await;
}

#[tokio::test]
async fn a_job_the_worker_fails_reaches_its_caller_as_an_app_error() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = pid_of(&workers).await;
        match workers.send(Request::Fail("no such key: k7".into())).await {
            Err(error @ Error::App { .. }) => {
                let Error::App {
                    message, pid: by, ..
                } = &error
                else {
                    unreachable!()
                };
                assert_eq!(message, "no such key: k7");
                assert_eq!(*by, pid);
                assert!(error.to_string().contains("failed this job: no such key"));
            }
            other => panic!("expected App, got {other:?}"),
        }
        // A stream job may fail too.
        let (items, error) = collect(workers.send_stream(Request::Fail("nope".into()))).await;
        assert!(items.is_empty());
        assert!(matches!(error, Some(Error::App { message, .. }) if message == "nope"));
        // The worker goes on serving.
        assert_eq!(pid_of(&workers).await, pid);
        assert_eq!(workers.stats().failed.app, 2);
    })
    .await;
}
