//! `#[ipc2::service]` end to end: the traits of `test_common::services`
//! served by `service_worker` processes and called through the generated
//! clients.

use std::time::Duration;

use bytes::Bytes;
use ipc2::CallError;
use ipc2::host::Error;
use test_common::binaries::example_binary;
use test_common::pools::within;
use test_common::services::bank::{BankClient, BankError};
use test_common::services::{ProbeClient, YourServiceClient, service_pool};

#[tokio::test]
async fn seed_service_round_trips_bytes_and_a_missing_key_gives_none() {
    within(30, async {
        let store = YourServiceClient::new(service_pool("your_service", 1, 1).await);
        let body = Bytes::from_static(b"\x00hello\xffworld");
        store.set("greeting".into(), body.clone()).await.unwrap();
        assert_eq!(store.get("greeting".into()).await.unwrap(), Some(body));
        assert_eq!(store.get("missing".into()).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn app_errors_come_back_as_their_own_variant() {
    within(30, async {
        let bank = BankClient::new(service_pool("bank", 1, 1).await);
        bank.open("alice".into()).await.unwrap();
        // Declared `-> Result<u64>` (the module's alias).
        assert_eq!(bank.deposit("alice".into(), 100).await.unwrap(), 100);
        match bank.deposit("bob".into(), 5).await {
            Err(CallError::App(BankError::UnknownAccount(name))) => assert_eq!(name, "bob"),
            other => panic!("expected UnknownAccount, got {other:?}"),
        }
        // Declared `-> std::result::Result<u64, BankError>`, async.
        let error = bank.withdraw("alice".into(), 150).await.unwrap_err();
        assert!(!error.is_retryable());
        assert_eq!(error.to_string(), "cannot take 150 from a balance of 100");
        assert_eq!(
            error.into_app(),
            Some(BankError::Insufficient {
                balance: 100,
                wanted: 150
            })
        );
        assert_eq!(bank.withdraw("alice".into(), 30).await.unwrap(), 70);
        // Not a Result: the pool's own error type.
        let balance: Result<Option<u64>, Error> = bank.balance("alice".into()).await;
        assert_eq!(balance.unwrap(), Some(70));
        assert_eq!(bank.balance("carol".into()).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn one_way_calls_run_without_a_reply() {
    within(30, async {
        let bank = BankClient::new(service_pool("bank", 1, 1).await);
        bank.note("opened".into()).await.unwrap();
        bank.note("closed".into()).await.unwrap();
        // One worker takes its calls in order, so the notes are in.
        assert_eq!(bank.journal().await.unwrap(), ["opened", "closed"]);
    })
    .await;
}

#[tokio::test]
async fn calls_from_many_tasks_all_get_their_own_answers() {
    within(60, async {
        // 16 in flight: plain handlers run on the blocking pool, concurrently.
        let store = YourServiceClient::new(service_pool("your_service", 1, 16).await);
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..64 {
            let store = store.clone();
            tasks.spawn(async move {
                for round in 0..10 {
                    let key = format!("{task}/{round}");
                    let value = Bytes::from(format!("value of {key}"));
                    store.set(key.clone(), value.clone()).await.unwrap();
                    assert_eq!(store.get(key).await.unwrap(), Some(value));
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn async_handlers_of_one_worker_run_concurrently() {
    within(30, all_meet(8, false)).await;
}

#[tokio::test]
async fn plain_handlers_run_concurrently_above_one_in_flight() {
    within(30, all_meet(4, true)).await;
}

/// Makes `n` calls of `meet` (or `meet_blocking`) at once on one worker
/// given `n` jobs at a time: each returns only when all `n` are running in
/// the worker together, and answers how many arrived.
async fn all_meet(n: usize, blocking: bool) {
    let probe = ProbeClient::new(service_pool("probe", 1, n).await);
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let probe = probe.clone();
            tokio::spawn(async move {
                match blocking {
                    true => probe.meet_blocking(n).await,
                    false => probe.meet(n).await,
                }
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), n);
    }
}

#[tokio::test]
async fn a_handler_panic_fails_that_call_with_the_panic() {
    within(30, async {
        // One job at a time: the plain handler runs in the receive loop.
        let probe = ProbeClient::new(service_pool("probe", 1, 1).await);
        let pid = probe.pid().await.unwrap();
        match probe.panic("plain handler gave up".into()).await {
            Err(Error::Panicked {
                pid: panicked,
                message,
                location,
                ..
            }) => {
                assert_eq!(panicked, pid);
                assert_eq!(message, "plain handler gave up");
                assert!(location.is_some_and(|at| at.contains("service_worker.rs")));
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        for wait_first in [false, true] {
            match probe
                .panic_async("async handler gave up".into(), wait_first)
                .await
            {
                Err(CallError::Panicked { message, .. }) => {
                    assert_eq!(message, "async handler gave up");
                }
                other => panic!("expected CallError::Panicked, got {other:?}"),
            }
        }
        // The worker survived both and goes on serving.
        assert_eq!(probe.pid().await.unwrap(), pid);

        // Several in flight: the plain handler runs on the blocking pool.
        let probe = ProbeClient::new(service_pool("probe", 1, 4).await);
        let pid = probe.pid().await.unwrap();
        match probe.panic("blocking pool".into()).await {
            Err(Error::Panicked { message, .. }) => assert_eq!(message, "blocking pool"),
            other => panic!("expected Panicked, got {other:?}"),
        }
        assert_eq!(probe.pid().await.unwrap(), pid);
    })
    .await;
}

#[tokio::test]
async fn a_call_past_its_deadline_times_out_and_the_pool_recovers() {
    within(30, async {
        let probe = ProbeClient::new(service_pool("probe", 1, 1).await);
        let pid = probe.pid().await.unwrap();
        let hurried = probe.with_timeout(Duration::from_millis(200));
        match hurried.sleep(60_000).await {
            Err(Error::Timeout { after, killed, .. }) => {
                assert_eq!(after, Duration::from_millis(200));
                assert!(killed);
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
        // Its worker was replaced; the same client (deadline and all) works.
        assert_ne!(hurried.pid().await.unwrap(), pid);
        assert!(hurried.sleep(1).await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_reply_of_another_method_is_an_error_not_a_panic() {
    within(30, async {
        // This worker answers everything with `set`'s reply.
        let store = YourServiceClient::new(service_pool("wrong", 1, 1).await);
        match store.get("key".into()).await {
            Err(Error::WrongReply {
                service,
                method,
                got,
            }) => assert_eq!((service, method, got), ("YourService", "get", "set")),
            other => panic!("expected WrongReply, got {other:?}"),
        }
        assert!(store.set("key".into(), Bytes::new()).await.is_ok());
    })
    .await;
}

#[test]
fn service_example_runs() {
    let output = std::process::Command::new(example_binary("service"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("hello -> Some(b\"world\")"), "{stdout}");
}
