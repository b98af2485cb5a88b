//! Request shapes on the host side: blocking calls from synchronous code,
//! detached replies (`submit`), and the streaming map (in order and as
//! completed).

use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ipc2_host::Error;
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{BehaviourPool, behaviour_builder, behaviour_pool, within};
use test_common::process::wait_until;

/// A behaviour pool built from synchronous code.
fn blocking_pool(count: usize) -> BehaviourPool {
    behaviour_builder()
        .worker_count(count)
        .finish_blocking()
        .expect("a blocking pool starts")
}

/// Joins `threads`, failing the test if they take longer than `seconds`.
fn join_within<T: Send + 'static>(
    seconds: u64,
    threads: Vec<std::thread::JoinHandle<T>>,
) -> Vec<T> {
    let finished = wait_until(Duration::from_secs(seconds), || {
        threads.iter().all(|thread| thread.is_finished())
    });
    assert!(finished, "threads did not finish within {seconds} s");
    threads
        .into_iter()
        .map(|thread| thread.join().expect("the thread panicked"))
        .collect()
}

/// The host's resident memory, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .expect("a VmRSS line in kB")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_inputs_stream_through_the_map_in_flat_memory() {
    within(120, async {
        let workers = behaviour_builder()
            .worker_count(4)
            .max_in_flight_per_worker(64)
            .finish()
            .await
            .unwrap();
        const INPUTS: u32 = 1_000_000;
        // Warm up: the pool's buffers and the allocator's arenas.
        let mut warm_up = workers.map((0..20_000).map(|i| Request::Add(i, 1))).window(512);
        while let Some(outcome) = warm_up.next().await {
            outcome.unwrap();
        }
        let before = rss_bytes();
        let started = Instant::now();
        let mut peak = before;
        let mut sums = workers.map((0..INPUTS).map(|i| Request::Add(i, 1))).window(512);
        let (mut expected, mut next_sample) = (1u32, 50_000);
        while let Some(outcome) = sums.next().await {
            assert_eq!(outcome.unwrap(), Response::Sum(expected));
            if expected == next_sample {
                peak = peak.max(rss_bytes());
                next_sample += 50_000;
            }
            expected += 1;
        }
        assert_eq!(expected - 1, INPUTS);
        let growth = peak.saturating_sub(before);
        println!(
            "{INPUTS} inputs through the map in {:.1?}; host RSS {} MiB before, peak growth {:.1} MiB",
            started.elapsed(),
            before / (1024 * 1024),
            growth as f64 / (1024.0 * 1024.0)
        );
        assert!(growth < 50 * 1024 * 1024, "RSS grew by {growth} bytes");
        assert_eq!(workers.stats().completed, u64::from(INPUTS) + 20_000);
    })
    .await;
}

#[test]
fn the_handles_can_move_between_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<BehaviourPool>();
    send::<ipc2_host::PendingReply<Response>>();
    send::<
        ipc2_host::Map<
            tokio::net::UnixListener,
            Response,
            Request,
            ipc2_host::map::FromIter<std::vec::IntoIter<Request>>,
        >,
    >();
    send::<
        ipc2_host::MapUnordered<
            tokio::net::UnixListener,
            Response,
            Request,
            ipc2_host::map::FromIter<std::vec::IntoIter<Request>>,
        >,
    >();
}

/// The message that identifies input `i` in its reply.
fn echo(i: usize) -> Request {
    Request::Echo(i.to_le_bytes().to_vec())
}

/// Checks that `outcome` is the reply to input `i` of `inputs_with_a_slow_head`.
fn check_reply(i: usize, outcome: Result<Response, Error>) {
    match (i, outcome.unwrap()) {
        (0, Response::Slept(_)) => {}
        (i, Response::Echo(bytes)) => assert_eq!(bytes, i.to_le_bytes(), "input {i}"),
        (i, other) => panic!("input {i} got {other:?}"),
    }
}

/// 200 messages, the first of which takes 400 ms.
fn inputs_with_a_slow_head() -> impl Iterator<Item = Request> {
    (0..200).map(|i| if i == 0 { Request::Sleep(400) } else { echo(i) })
}

#[tokio::test]
async fn the_map_yields_in_input_order_or_as_completed() {
    within(60, async {
        let workers = behaviour_pool(2).await;

        let mut ordered = workers.map(inputs_with_a_slow_head()).window(16);
        let mut seen = 0;
        while let Some(outcome) = ordered.next().await {
            check_reply(seen, outcome);
            seen += 1;
        }
        assert_eq!(seen, 200);

        let mut completed = workers
            .map(inputs_with_a_slow_head())
            .unordered()
            .window(16);
        let mut order = Vec::new();
        while let Some((i, outcome)) = completed.next().await {
            check_reply(i, outcome);
            order.push(i);
        }
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..200).collect::<Vec<_>>(),
            "each input exactly once"
        );
        // The slow head held back nothing: the other worker went on.
        let head = order.iter().position(|&i| i == 0).unwrap();
        println!("unordered: the 400 ms head came out at position {head} of 200");
        assert!(head > 0, "{order:?}");
        assert_eq!(workers.stats().completed, 400);
    })
    .await;
}

#[tokio::test]
async fn the_map_reads_its_input_lazily_within_the_window() {
    within(30, async {
        let workers = behaviour_pool(2).await;
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&pulled);
        let inputs = (0..1000u32).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut sums = workers.map(inputs.map(|i| Request::Add(i, i)));
        assert_eq!(
            pulled.load(Ordering::Relaxed),
            0,
            "nothing read before asked"
        );
        assert_eq!(sums.next().await.unwrap().unwrap(), Response::Sum(0));
        // The default window is twice the worker count: 4 jobs, plus the
        // one read after the first outcome was taken.
        let read = pulled.load(Ordering::Relaxed);
        println!("after the first outcome, {read} of 1000 inputs were read");
        assert!(read <= 5, "{read} inputs read");
        let mut rest = 1;
        while let Some(outcome) = sums.next().await {
            assert_eq!(outcome.unwrap(), Response::Sum(2 * rest));
            rest += 1;
        }
        assert_eq!(rest, 1000);
    })
    .await;
}

/// Messages arriving on a channel, as a `futures_core::Stream`.
struct Arrivals(tokio::sync::mpsc::Receiver<Request>);

impl futures_core::Stream for Arrivals {
    type Item = Request;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Request>> {
        self.0.poll_recv(context)
    }
}

#[tokio::test]
async fn the_map_runs_a_stream_as_its_messages_arrive() {
    within(30, async {
        let workers = behaviour_pool(2).await;
        let (arrive, arrivals) = tokio::sync::mpsc::channel(1);
        let mut completed = workers.map_stream(Arrivals(arrivals)).unordered();
        let producer = tokio::spawn(async move {
            for i in 0..50 {
                arrive.send(Request::Add(i, 100)).await.unwrap();
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        let mut sums = Vec::new();
        while let Some((i, outcome)) = completed.next().await {
            assert_eq!(outcome.unwrap(), Response::Sum(i as u32 + 100));
            sums.push(i);
        }
        producer.await.unwrap();
        sums.sort_unstable();
        assert_eq!(sums, (0..50).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test]
async fn dropping_a_map_cancels_the_jobs_not_yet_started() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = workers.worker_pids()[0];
        {
            let inputs = [Request::Sleep(300), Request::Exit(1), Request::Exit(1)];
            let mut map = workers.map(inputs).window(3);
            // Submits the window: the sleep runs, the exits queue.
            assert!(
                tokio::time::timeout(Duration::from_millis(50), map.next())
                    .await
                    .is_err()
            );
            assert_eq!(workers.stats().queued, 2);
        }
        // Had the queued exits been sent, this worker would be gone.
        assert!(matches!(
            workers.send(Request::Pid).await,
            Ok(Response::Pid(p)) if p == pid
        ));
        let stats = workers.stats();
        assert_eq!((stats.queued, stats.workers[0].jobs_done), (0, 2));
    })
    .await;
}

#[test]
fn a_blocking_map_iterates_from_synchronous_code() {
    let workers = blocking_pool(2);
    let sums: Vec<Response> = workers
        .map((0..100).map(|i| Request::Add(i, 1)))
        .blocking()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sums, (1..=100).map(Response::Sum).collect::<Vec<_>>());
    let mut indices: Vec<usize> = workers
        .map((0..100).map(echo))
        .unordered()
        .blocking()
        .unwrap()
        .map(|(i, outcome)| {
            assert_eq!(outcome.unwrap(), Response::Echo(i.to_le_bytes().to_vec()));
            i
        })
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..100).collect::<Vec<_>>());
}

#[test]
fn blocking_and_async_hosts_share_one_pool_from_eight_threads() {
    let workers = behaviour_builder()
        .worker_count(4)
        .finish_blocking()
        .expect("a blocking pool starts");
    let threads = (0..8u32)
        .map(|thread| {
            let workers = workers.clone();
            std::thread::spawn(move || {
                let answer = |i: u32, reply: Result<Response, Error>| {
                    assert_eq!(reply.unwrap(), Response::Sum(thread * 1000 + 2 * i));
                };
                if thread % 2 == 0 {
                    // A synchronous host: no runtime on this thread.
                    for i in 0..100 {
                        answer(i, workers.send_blocking(Request::Add(thread * 1000 + i, i)));
                    }
                } else {
                    // An async host with a runtime of its own.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        for i in 0..100 {
                            answer(i, workers.send(Request::Add(thread * 1000 + i, i)).await);
                        }
                    });
                }
                100
            })
        })
        .collect();
    let answered: u32 = join_within(60, threads).into_iter().sum();
    assert_eq!(answered, 800);
    assert_eq!(workers.stats().completed, 800);
    let pids = workers.worker_pids();
    let report = workers.shutdown_blocking(Duration::from_secs(10)).unwrap();
    assert_eq!(report.killed, 0);
    assert!(test_common::process::wait_all_gone(
        &pids,
        Duration::from_secs(5)
    ));
}

/// Checks that a blocking call was refused, with a message that names it
/// and says what to use instead.
fn refused<T>(outcome: Result<T, Error>, call: &str) {
    match outcome {
        Err(error @ Error::BlockingInRuntime { .. }) => {
            let message = error.to_string();
            assert!(message.contains(call), "{message}");
            assert!(message.contains(".await"), "{message}");
        }
        Err(other) => panic!("{call}: expected BlockingInRuntime, got {other}"),
        Ok(_) => panic!("{call} blocked a current-thread runtime"),
    }
}

#[tokio::test]
async fn a_blocking_call_on_a_current_thread_runtime_fails_fast() {
    within(30, async {
        refused(
            behaviour_builder().worker_count(1).finish_blocking(),
            "finish_blocking",
        );
        let workers = behaviour_pool(1).await;
        let message = workers.send_blocking(Request::Pid).map(drop);
        println!("send_blocking here: {}", message.as_ref().unwrap_err());
        refused(message, "send_blocking");
        refused(workers.submit(Request::Pid).wait(), "PendingReply::wait");
        refused(
            workers.map([Request::Pid]).blocking().map(drop),
            "Map::blocking",
        );
        refused(
            workers.map([Request::Pid]).unordered().blocking().map(drop),
            "MapUnordered::blocking",
        );
        refused(
            workers.shutdown_blocking(Duration::from_secs(1)),
            "shutdown_blocking",
        );
        // Nothing was sent, the pool was left as it was and serves on.
        assert_eq!(workers.stats().completed, 0);
        assert!(matches!(
            workers.send(Request::Pid).await,
            Ok(Response::Pid(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_on_a_multi_thread_runtime_works() {
    within(30, async {
        // In a task of the runtime (inside block_in_place) ...
        let workers = behaviour_builder()
            .worker_count(2)
            .finish_blocking()
            .unwrap();
        assert_eq!(
            workers.send_blocking(Request::Add(1, 2)).unwrap(),
            Response::Sum(3)
        );
        assert_eq!(
            workers.submit(Request::Add(2, 2)).wait().unwrap(),
            Response::Sum(4)
        );
        // ... and on its blocking threads.
        let clone = workers.clone();
        let sums = tokio::task::spawn_blocking(move || {
            clone
                .map((0..10).map(|i| Request::Add(i, i)))
                .blocking()
                .unwrap()
                .map(Result::unwrap)
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        assert_eq!(
            sums,
            (0..10).map(|i| Response::Sum(2 * i)).collect::<Vec<_>>()
        );
        // A pool of this runtime's own serves blocking callers too.
        let pool = behaviour_pool(1).await;
        assert!(matches!(
            pool.send_blocking(Request::Pid),
            Ok(Response::Pid(_))
        ));
        assert!(workers.shutdown_blocking(Duration::from_secs(5)).is_ok());
    })
    .await;
}

#[test]
fn submit_is_waited_from_synchronous_code() {
    let workers = blocking_pool(2);
    let slow = workers.submit(Request::Sleep(200));
    let quick = workers.submit(Request::Add(2, 3));
    println!("{quick:?} {slow:?}");
    // Both were handed to a worker before anything waited.
    let in_flight: usize = workers.stats().workers.iter().map(|w| w.in_flight).sum();
    assert_eq!(in_flight, 2);
    assert_eq!(quick.wait().unwrap(), Response::Sum(5));
    assert!(matches!(slow.wait().unwrap(), Response::Slept(_)));
    assert_eq!(workers.stats().completed, 2);
}

#[tokio::test]
async fn submit_is_awaited_from_async_code() {
    within(30, async {
        let workers = behaviour_pool(2).await;
        let pending: Vec<_> = (0..20)
            .map(|i| workers.submit(Request::Add(i, i)))
            .collect();
        // Every job was handed over before anything was awaited.
        let stats = workers.stats();
        assert_eq!(
            stats.queued + stats.workers.iter().map(|w| w.in_flight).sum::<usize>(),
            20
        );
        for (i, reply) in pending.into_iter().enumerate() {
            assert_eq!(reply.await.unwrap(), Response::Sum(2 * i as u32));
        }
        assert_eq!(workers.stats().completed, 20);
        let failing = workers.submit(Request::DropReply);
        assert!(matches!(failing.await, Err(Error::NoReply { .. })));
        assert_eq!(workers.stats().failed.no_reply, 1);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_submit_never_runs_its_queued_job() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let pid = workers.worker_pids()[0];
        let busy = workers.submit(Request::Sleep(300));
        let cancelled = workers.submit(Request::Exit(1));
        assert_eq!(workers.stats().queued, 1);
        drop(cancelled);
        assert!(matches!(busy.await, Ok(Response::Slept(p)) if p == pid));
        // Had the queued exit been sent, this worker would be gone.
        assert!(matches!(
            workers.send(Request::Pid).await,
            Ok(Response::Pid(p)) if p == pid
        ));
        let stats = workers.stats();
        assert_eq!((stats.queued, stats.workers[0].jobs_done), (0, 2));
        assert_eq!((stats.completed, stats.failed.total()), (2, 0));
    })
    .await;
}

#[tokio::test]
async fn submit_to_a_full_bounded_queue_resolves_to_queue_full() {
    within(30, async {
        let workers = behaviour_builder()
            .worker_count(1)
            .queue_capacity(1)
            .finish()
            .await
            .unwrap();
        let running = workers.submit(Request::Sleep(200));
        let queued = workers.submit(Request::Add(1, 1));
        let refused = workers.submit(Request::Add(2, 2));
        assert!(matches!(
            refused.await,
            Err(Error::QueueFull { capacity: 1 })
        ));
        assert!(matches!(running.await, Ok(Response::Slept(_))));
        assert_eq!(queued.await.unwrap(), Response::Sum(2));
        let stats = workers.stats();
        assert_eq!((stats.completed, stats.failed.no_workers), (2, 1));
    })
    .await;
}

#[tokio::test]
async fn a_map_waits_for_room_in_a_bounded_queue() {
    within(30, async {
        let workers = behaviour_builder()
            .worker_count(1)
            .queue_capacity(2)
            .finish()
            .await
            .unwrap();
        let mut sums = workers.map((0..50).map(|i| Request::Add(i, 1))).window(10);
        let mut next = 1;
        while let Some(outcome) = sums.next().await {
            assert!(workers.stats().queued <= 2);
            assert_eq!(outcome.unwrap(), Response::Sum(next));
            next += 1;
        }
        assert_eq!(next, 51);
        // The map gave back every place it took.
        let busy = workers.submit(Request::Sleep(100));
        let (a, b) = (workers.submit(Request::Pid), workers.submit(Request::Pid));
        assert!(matches!(
            workers.submit(Request::Pid).await,
            Err(Error::QueueFull { .. })
        ));
        assert!(busy.await.is_ok() && a.await.is_ok() && b.await.is_ok());
    })
    .await;
}

#[test]
fn a_synchronous_main_builds_and_uses_a_pool() {
    let mut child = Command::new(worker_binary("blocking_host"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    assert!(finished, "blocking_host did not exit within 60 s");
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "6 + 7 = 13",
        "submitted 3 jobs; replies 2 4 6",
        "map: 1000 sums, total 500500",
        "shut down: 0 workers killed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
