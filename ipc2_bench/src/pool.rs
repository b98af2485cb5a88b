//! ipc2 itself, through its public API only, against the bench's own worker
//! (`ipc2_bench worker`).
//!
//! The measurements run in a child process (`ipc2_bench pool-suite`), for
//! two reasons: the pinned variant must pin the whole host to CPU 0 before
//! its tokio runtime exists (workers inherit the affinity), and the host's
//! RSS must be that of a process that has done nothing but run ipc2. The
//! child prints its figures as lines that [`Figures::absorb`] reads.
//!
//! Each figure is one small async function over a fresh pool, so that when
//! the API grows (more jobs in flight per worker, a batch API) only that
//! function changes. The round-trip and jobs/s loops take any [`Adder`]:
//! a raw `send` of `BenchJob::Add`, or the same job as a call through the
//! `#[ipc2::service]` client, so the two are measured by the same code.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipc2_host::{Blob, WorkerSet};
use tokio::net::UnixListener;
use tokio::task::JoinSet;

use crate::messages::{
    BenchJob, BenchReply, BenchServiceClient, BenchServiceRequest, BenchServiceResponse,
};
use crate::proc::{BoxError, Result, pin_current_thread_to_cpu0, run_captured, self_exe};
use crate::report::Figures;
use crate::stats::{Budget, latency_percentiles, median, median_latency, rss_mib};
use crate::worker::{SERVICE_WORKER_COMMAND, WORKER_COMMAND};
use serde_bytes::ByteBuf;

/// Hidden subcommand that runs the suite in a child.
pub const CHILD_COMMAND: &str = "pool-suite";
/// Worker counts of the jobs/s figures.
pub const WORKER_COUNTS: [usize; 3] = [1, 2, 4];
/// Jobs in flight per worker in the jobs/s figures (the pool's
/// `max_in_flight_per_worker`, with that many sending tasks per worker).
pub const CONCURRENCIES: [usize; 2] = [1, 64];
/// Jobs per `send_batch` call in the batch figure.
pub const BATCH_SIZE: usize = 10_000;
/// Workers in the batch figure.
const BATCH_WORKERS: usize = 2;
/// Jobs in flight per worker in the batch figure.
const BATCH_IN_FLIGHT: usize = 256;
/// Jobs in flight per worker in the batch figure whose frames hold 1,000
/// jobs (half of this), as `Pool.map(chunksize=1000)`'s messages do.
pub const CHUNK_IN_FLIGHT: usize = 2000;
/// Bodies in flight (concurrent sends) in the echo figures.
const ECHO_CONCURRENCY: usize = 4;
/// Workers in the cold-start and RSS figures.
const COLD_POOL: usize = 4;
/// Sizes of the shared-memory echo figures, with the key of each.
pub const BLOB_SIZES: [(&str, usize); 3] =
    [("1mib", 1 << 20), ("16mib", 16 << 20), ("64mib", 64 << 20)];
/// Sizes at which shared memory and the socket are compared, to choose the
/// default threshold.
pub const THRESHOLD_SIZES: [(&str, usize); 4] = [
    ("4kib", 4 << 10),
    ("16kib", 16 << 10),
    ("64kib", 64 << 10),
    ("256kib", 256 << 10),
];

/// How an echo figure's body travels.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Payload {
    /// A `serde_bytes::ByteBuf`: one byte string through the socket.
    Bytes,
    /// A plain `Vec<u8>`: serde's byte-by-byte sequence.
    Vec,
    /// A `Blob` echoed as it came.
    Blob,
    /// A `Blob` copied by the worker into a body of its own (and copied
    /// again by the host, whose next job is the worker's body).
    BlobCopy,
}

/// The pool every figure uses.
pub(crate) type Pool = WorkerSet<UnixListener, BenchReply, BenchJob>;

/// Key of a jobs/s figure.
pub fn jobs_key(workers: usize, concurrency: usize) -> String {
    format!("ipc2.jobs.w{workers}.c{concurrency}")
}

/// Key of a service-call jobs/s figure (2 workers × 64 in flight).
pub fn service_jobs_key(handler: Handler) -> String {
    format!("ipc2.service.jobs.w2.c64.{}", handler.name())
}

/// Suffix of the raw `send` figure measured alongside a service figure
/// (same repetitions, taking turns), which the service figure is judged by.
pub const RAW: &str = ".raw";

/// Reports the service round trip and the raw one measured alongside it.
fn report_service_latency(placement: &str, latencies: Result<((f64, f64), (f64, f64))>) {
    let (raw, service) = split(latencies);
    let key = format!("ipc2.service.rt.{placement}");
    report(&(key.clone() + RAW), raw.map(latency_pair));
    report(&key, service.map(latency_pair));
}

/// A pair of figures, or the same error for both.
fn split<T>(pair: Result<(T, T)>) -> (Result<T>, Result<T>) {
    match pair {
        Ok((raw, service)) => (Ok(raw), Ok(service)),
        Err(error) => {
            let message = error.to_string();
            (Err(message.clone().into()), Err(message.into()))
        }
    }
}

/// Suffix of the figures measured on a current-thread host runtime.
pub const CURRENT_THREAD: &str = ".current_thread";
/// Suffix of the figures measured with the pool's tasks on a dedicated thread.
pub const DEDICATED_IO: &str = ".dedicated_io";

/// Runs the suite twice in child processes (unpinned: everything; pinned:
/// the round trip) and records what they report.
pub fn run(budget: &Budget, figures: &mut Figures) {
    let limit = if budget.quick {
        Duration::from_secs(90)
    } else {
        Duration::from_secs(600)
    };
    for variant in [None, Some("--pinned"), Some("--current-thread")] {
        let mut args = vec![CHILD_COMMAND];
        args.extend(budget.flag());
        args.extend(variant);
        match self_exe().and_then(|exe| run_captured(&exe, &args, limit)) {
            Ok(output) => figures.absorb(&output.stdout),
            Err(e) => figures.note(format!("ipc2 suite ({variant:?}) failed: {e}")),
        }
    }
}

/// The child: `pool-suite [--quick] [--pinned | --current-thread]`.
pub fn suite_child(args: &[String]) -> Result<()> {
    let pinned = args.iter().any(|a| a == "--pinned");
    let current_thread = args.iter().any(|a| a == "--current-thread");
    let budget = Budget::new(args.iter().any(|a| a == "--quick"));
    if pinned {
        // Before the runtime: its threads, the pool's spawner thread and the
        // workers it forks all inherit this thread's affinity.
        pin_current_thread_to_cpu0()?;
    }
    let exe = self_exe()?;
    let runtime = host_runtime(current_thread)?;
    runtime.block_on(async {
        if pinned {
            report(
                "ipc2.rt.pinned",
                send_latency(&budget, &exe).await.map(latency_pair),
            );
            report_service_latency("pinned", service_latency(&budget, &exe).await);
            crate::seed::measure(&budget, true).await;
            return;
        }
        if current_thread {
            let key = jobs_key(2, 64) + CURRENT_THREAD;
            let rate = jobs_per_second(&budget, &exe, 2, 64).await;
            report(&key, rate.map(|r| vec![("", r)]));
            let rate = batch_rate(&budget, &exe, BATCH_IN_FLIGHT).await;
            report(
                &format!("ipc2.batch{CURRENT_THREAD}"),
                rate.map(|r| vec![("", r)]),
            );
            return;
        }
        report("ipc2.rss", host_rss(&budget, &exe).await);
        report(
            "ipc2.rt.unpinned",
            send_latency(&budget, &exe).await.map(latency_pair),
        );
        report_service_latency("unpinned", service_latency(&budget, &exe).await);
        for workers in WORKER_COUNTS {
            for concurrency in CONCURRENCIES {
                let rate = jobs_per_second(&budget, &exe, workers, concurrency).await;
                report(&jobs_key(workers, concurrency), rate.map(|r| vec![("", r)]));
            }
        }
        for handler in [Handler::Plain, Handler::Async] {
            let rates = service_rate(&budget, &exe, handler).await;
            let (raw, service) = split(rates);
            report(
                &(service_jobs_key(handler) + RAW),
                raw.map(|r| vec![("", r)]),
            );
            report(&service_jobs_key(handler), service.map(|r| vec![("", r)]));
        }
        report(
            "ipc2.batch",
            batch_rate(&budget, &exe, BATCH_IN_FLIGHT)
                .await
                .map(|r| vec![("", r)]),
        );
        report(
            "ipc2.batch.chunk1000",
            batch_rate(&budget, &exe, CHUNK_IN_FLIGHT)
                .await
                .map(|r| vec![("", r)]),
        );
        let rate = dedicated_io_rate(&budget, &exe).await;
        report(
            &(jobs_key(2, 64) + DEDICATED_IO),
            rate.map(|r| vec![("", r)]),
        );
        for (key, size, payload) in [
            ("ipc2.echo_1kib", 1 << 10, Payload::Bytes),
            ("ipc2.echo_1mib", 1 << 20, Payload::Bytes),
            ("ipc2.echo_1mib_vec", 1 << 20, Payload::Vec),
        ] {
            let rate = echo_bandwidth(&budget, &exe, size, payload, None).await;
            report(key, rate.map(|r| vec![("mb_per_s", r)]));
        }
        for (name, size) in BLOB_SIZES {
            for (kind, payload) in [("blob", Payload::Blob), ("blob_copy", Payload::BlobCopy)] {
                let rate = echo_bandwidth(&budget, &exe, size, payload, None).await;
                report(
                    &format!("ipc2.echo_{name}_{kind}"),
                    rate.map(|r| vec![("mb_per_s", r)]),
                );
            }
        }
        for (name, size) in THRESHOLD_SIZES {
            // The same body through the socket (threshold above it) and
            // through shared memory (threshold below it).
            for (kind, threshold) in [("inline", size + 1), ("shared", size)] {
                let rate =
                    echo_bandwidth(&budget, &exe, size, Payload::BlobCopy, Some(threshold)).await;
                report(
                    &format!("ipc2.echo_{name}_{kind}"),
                    rate.map(|r| vec![("mb_per_s", r)]),
                );
            }
        }
        report("ipc2.cold4", cold_start(&budget, &exe).await);
        crate::seed::measure(&budget, false).await;
        crate::remote::measure(&budget, &exe).await;
    });
    Ok(())
}

/// Hidden subcommand for profilers: `pool-hot <jobs|batch|batch-1000|rtt|cold|seed|seed-rtt|seed-64|seed-batch|seed-batch-defaults|seed-batch-1000|service-plain|service-async> <seconds>
/// [--current-thread] [--dedicated-io]` (or `pool-hot <blob|blob-copy|bytes>
/// <seconds> <MiB, or KiB with a k suffix>`, 1 worker) runs one throughput scenario (2 workers) for that long
/// and prints its rate, e.g. under `perf record` or `valgrind --tool=callgrind`.
pub const HOT_COMMAND: &str = "pool-hot";

/// The profiling loop; see [`HOT_COMMAND`].
pub fn hot_child(args: &[String]) -> Result<()> {
    let scenario = args.first().map(String::as_str).unwrap_or("jobs");
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let window = Duration::from_secs_f64(seconds);
    let dedicated = args.iter().any(|a| a == "--dedicated-io");
    let runtime = host_runtime(args.iter().any(|a| a == "--current-thread"))?;
    let exe = self_exe()?;
    runtime.block_on(async {
        let rate = match scenario {
            "batch" => {
                let pool = hot_pool(&exe, BATCH_IN_FLIGHT, dedicated).await?;
                batch_loop(&pool, window).await?
            }
            "batch-1000" => {
                let pool = hot_pool(&exe, CHUNK_IN_FLIGHT, dedicated).await?;
                batch_loop(&pool, window).await?
            }
            "rtt" => {
                let pool = start_pool(&exe, 1).await?;
                add_loop(&pool, 1, window).await?
            }
            // The seed's worker as written: its defaults (2 x 1 in flight,
            // 64 callers), 64 in flight, and `send_batch`.
            "seed" => {
                let pool = crate::seed::hot_pool(1).await?;
                add_loop(&pool, crate::seed::CALLERS, window).await?
            }
            // Pools of COLD_POOL started and closed, per second.
            "cold" => {
                let start = Instant::now();
                let mut pools = 0u32;
                let mut starting = Duration::ZERO;
                while start.elapsed() < window {
                    let begun = Instant::now();
                    let pool = start_pool(&exe, COLD_POOL).await?;
                    starting += begun.elapsed();
                    close(pool).await?;
                    pools += 1;
                }
                // Pools started per second of starting alone.
                f64::from(pools) / starting.as_secs_f64()
            }
            "seed-rtt" => {
                let pool = crate::seed::start(1, 1).await?;
                add_loop(&pool, 1, window).await?
            }
            "seed-64" => {
                let pool = crate::seed::hot_pool(64).await?;
                add_loop(&pool, 128, window).await?
            }
            "seed-batch" => {
                let pool = crate::seed::hot_pool(BATCH_IN_FLIGHT).await?;
                batch_loop(&pool, window).await?
            }
            "seed-batch-defaults" => {
                let pool = crate::seed::hot_pool(1).await?;
                batch_loop(&pool, window).await?
            }
            "seed-batch-1000" => {
                let pool = crate::seed::hot_pool(CHUNK_IN_FLIGHT).await?;
                batch_loop(&pool, window).await?
            }
            "blob" | "blob-copy" | "bytes" => {
                let payload = match scenario {
                    "blob" => Payload::Blob,
                    "bytes" => Payload::Bytes,
                    _ => Payload::BlobCopy,
                };
                // In MiB, or in KiB with a `k` suffix.
                let size = match args.get(2).map(String::as_str).unwrap_or("16") {
                    kib if kib.ends_with('k') => kib
                        .trim_end_matches('k')
                        .parse()
                        .ok()
                        .map(|k: usize| k << 10),
                    mib => mib.parse().ok().map(|m: usize| m << 20),
                }
                .ok_or("size: MiB, or KiB with a k suffix")?;
                let pool = start_pool_with(&exe, 1, ECHO_CONCURRENCY).await?;
                echo_loop(&pool, size, payload, window).await? / size as f64
            }
            "service-plain" | "service-async" => {
                let handler = match scenario {
                    "service-plain" => Handler::Plain,
                    _ => Handler::Async,
                };
                let service = start_service(&exe, 2, 64, handler).await?;
                add_loop(&service, 128, window).await?
            }
            _ => {
                let pool = hot_pool(&exe, 64, dedicated).await?;
                add_loop(&pool, 128, window).await?
            }
        };
        println!("{scenario}: {rate:.0} jobs/s");
        Ok(())
    })
}

async fn hot_pool(exe: &Path, in_flight: usize, dedicated: bool) -> Result<Pool> {
    Ok(Pool::builder()
        .worker_count(2)
        .worker_path(exe)
        .arg(WORKER_COMMAND)
        .max_in_flight_per_worker(in_flight)
        .dedicated_io_thread(dedicated)
        .finish()
        .await?)
}

/// The host's runtime: tokio's default multi-thread one, as under
/// `#[tokio::main]`, or a current-thread one.
fn host_runtime(current_thread: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

/// Prints `prefix.name value` for each figure, or a note if it failed.
pub(crate) fn report(prefix: &str, figures: Result<Vec<(&'static str, f64)>>) {
    match figures {
        Ok(figures) => {
            for (name, value) in figures {
                let key = if name.is_empty() {
                    prefix.to_owned()
                } else {
                    format!("{prefix}.{name}")
                };
                println!("{}", Figures::line(&key, value));
            }
        }
        Err(e) => println!("{}", Figures::note_line(&format!("{prefix} failed: {e}"))),
    }
}

pub(crate) fn latency_pair((p50, p99): (f64, f64)) -> Vec<(&'static str, f64)> {
    vec![("p50_us", p50), ("p99_us", p99)]
}

async fn start_pool(exe: &Path, workers: usize) -> Result<Pool> {
    start_pool_with(exe, workers, 1).await
}

async fn start_pool_with(exe: &Path, workers: usize, in_flight: usize) -> Result<Pool> {
    Ok(Pool::builder()
        .worker_count(workers)
        .worker_path(exe)
        .arg(WORKER_COMMAND)
        .max_in_flight_per_worker(in_flight)
        .finish()
        .await?)
}

/// Checks an `Add(a, b)` reply.
fn check_sum(reply: BenchReply, a: u32, b: u32) -> Result<()> {
    match reply {
        BenchReply::Sum(sum) if sum == a.wrapping_add(b) => Ok(()),
        other => Err(format!("Add({a}, {b}) answered with {other:?}").into()),
    }
}

/// What the round-trip and jobs/s loops send their Add jobs through; each
/// `add` checks the sum it gets back.
pub(crate) trait Adder: Clone + Send + Sync + 'static {
    fn add(&self, a: u32, b: u32) -> impl Future<Output = Result<()>> + Send;
}

/// A raw `send` of [`BenchJob::Add`] to the bench's hand-written worker.
impl Adder for Pool {
    async fn add(&self, a: u32, b: u32) -> Result<()> {
        check_sum(self.send(BenchJob::Add(a, b)).await?, a, b)
    }
}

/// Which handler of `BenchService` the service figures call.
#[derive(Clone, Copy)]
pub enum Handler {
    /// `add`: a plain `fn`.
    Plain,
    /// `add_async`: an `async fn`.
    Async,
}

impl Handler {
    fn name(self) -> &'static str {
        match self {
            Handler::Plain => "plain",
            Handler::Async => "async",
        }
    }
}

/// The same Add job as a call of `BenchService` through its generated
/// client, to `ipc2_bench service-worker`.
#[derive(Clone)]
struct ServiceAdder {
    client: BenchServiceClient,
    handler: Handler,
}

impl ServiceAdder {
    /// The pool, and no other handle on it.
    fn into_pool(self) -> WorkerSet<UnixListener, BenchServiceResponse, BenchServiceRequest> {
        self.client.pool().clone()
    }
}

impl Adder for ServiceAdder {
    async fn add(&self, a: u32, b: u32) -> Result<()> {
        let sum = match self.handler {
            Handler::Plain => self.client.add(a, b).await?,
            Handler::Async => self.client.add_async(a, b).await?,
        };
        if sum == a.wrapping_add(b) {
            Ok(())
        } else {
            Err(format!("add({a}, {b}) answered {sum}").into())
        }
    }
}

async fn start_service(
    exe: &Path,
    workers: usize,
    in_flight: usize,
    handler: Handler,
) -> Result<ServiceAdder> {
    let pool = WorkerSet::builder()
        .worker_count(workers)
        .worker_path(exe)
        .arg(SERVICE_WORKER_COMMAND)
        .max_in_flight_per_worker(in_flight)
        .finish()
        .await?;
    Ok(ServiceAdder {
        client: BenchServiceClient::new(pool),
        handler,
    })
}

/// `send` round trip with one job in flight on a 1-worker pool: median p50
/// and p99 in µs. A fresh pool per repetition (placement on CPUs varies
/// from pool to pool, and the median should cover that).
async fn send_latency(budget: &Budget, exe: &Path) -> Result<(f64, f64)> {
    let start = async || start_pool(exe, 1).await;
    let reps = each_pool(budget, start, async |pool| round_trips(budget, pool).await).await?;
    Ok(median_latency(&reps))
}

/// [`send_latency`] for the same job as a service call (plain handler),
/// and the raw `send` measured alongside: each repetition starts both pools
/// and measures them in turn (which goes first alternates), so both see the
/// same machine. Returns (raw, service).
async fn service_latency(budget: &Budget, exe: &Path) -> Result<((f64, f64), (f64, f64))> {
    let (mut raw, mut service) = (Vec::new(), Vec::new());
    for rep in 0..budget.reps {
        let pool = start_pool(exe, 1).await?;
        let adder = start_service(exe, 1, 1, Handler::Plain).await?;
        if rep % 2 == 0 {
            raw.push(round_trips(budget, &pool).await?);
            service.push(round_trips(budget, &adder).await?);
        } else {
            service.push(round_trips(budget, &adder).await?);
            raw.push(round_trips(budget, &pool).await?);
        }
        close(pool).await?;
        close(adder.into_pool()).await?;
    }
    Ok((median_latency(&raw), median_latency(&service)))
}

/// One repetition of a round-trip figure: p50 and p99 in µs of
/// `latency_samples` Add jobs one after the other, after a warm-up.
pub(crate) async fn round_trips<A: Adder>(budget: &Budget, adder: &A) -> Result<(f64, f64)> {
    let budget = *budget;
    let adder = adder.clone();
    // Measured from a runtime task, where an application's sends run.
    tokio::spawn(async move {
        let mut n = 0u32;
        for _ in 0..budget.latency_warmup {
            adder.add(n, 1).await?;
            n = n.wrapping_add(1);
        }
        let mut samples = Vec::with_capacity(budget.latency_samples);
        for _ in 0..budget.latency_samples {
            let start = Instant::now();
            adder.add(n, 1).await?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
            n = n.wrapping_add(1);
        }
        Ok::<_, BoxError>(latency_percentiles(&mut samples))
    })
    .await?
}

/// Add jobs/s with `in_flight` jobs in flight per worker on a pool of
/// `workers` (`in_flight × workers` tasks each looping `send`): median over
/// repetitions, each on a fresh pool after a warm-up.
async fn jobs_per_second(
    budget: &Budget,
    exe: &Path,
    workers: usize,
    in_flight: usize,
) -> Result<f64> {
    let start = async || start_pool_with(exe, workers, in_flight).await;
    let callers = in_flight * workers;
    median_rate(budget, start, async |pool, window| {
        add_loop(pool, callers, window).await
    })
    .await
}

/// Add calls/s of `BenchService` at 2 workers × 64 in flight, and raw
/// `send`s of the same job measured alongside (fresh pools of both per
/// repetition, measured in turn, which goes first alternating): medians,
/// (raw, service). With more than one job in flight, plain handlers run on
/// the worker's blocking pool; async ones start in place.
async fn service_rate(budget: &Budget, exe: &Path, handler: Handler) -> Result<(f64, f64)> {
    let (mut raw, mut service) = (Vec::new(), Vec::new());
    for rep in 0..budget.reps {
        let pool = start_pool_with(exe, 2, 64).await?;
        let adder = start_service(exe, 2, 64, handler).await?;
        add_loop(&pool, 128, budget.warmup).await?;
        add_loop(&adder, 128, budget.warmup).await?;
        if rep % 2 == 0 {
            raw.push(add_loop(&pool, 128, budget.window).await?);
            service.push(add_loop(&adder, 128, budget.window).await?);
        } else {
            service.push(add_loop(&adder, 128, budget.window).await?);
            raw.push(add_loop(&pool, 128, budget.window).await?);
        }
        close(pool).await?;
        close(adder.into_pool()).await?;
    }
    Ok((median(raw), median(service)))
}

/// Add jobs/s at 2 workers × 64 in flight with the pool's own tasks on a
/// dedicated thread (`dedicated_io_thread(true)`): median over repetitions.
async fn dedicated_io_rate(budget: &Budget, exe: &Path) -> Result<f64> {
    let start = async || hot_pool(exe, 64, true).await;
    median_rate(budget, start, async |pool, window| {
        add_loop(pool, 128, window).await
    })
    .await
}

/// Add jobs/s through `send_batch` ([`BATCH_SIZE`] jobs a call) on
/// [`BATCH_WORKERS`] workers: median over repetitions.
async fn batch_rate(budget: &Budget, exe: &Path, in_flight: usize) -> Result<f64> {
    let start = async || start_pool_with(exe, BATCH_WORKERS, in_flight).await;
    median_rate(budget, start, async |pool, window| {
        batch_loop(pool, window).await
    })
    .await
}

/// A pool whose `send_batch` the batch figures drive.
pub(crate) trait BatchAdder {
    /// Sends `Add(a, 1)` for each `a` of `addends` in one `send_batch`, and
    /// checks every sum.
    fn add_batch(&self, addends: Vec<u32>) -> impl Future<Output = Result<()>>;
}

impl BatchAdder for Pool {
    async fn add_batch(&self, addends: Vec<u32>) -> Result<()> {
        let outcomes = self
            .send_batch(addends.iter().map(|&a| BenchJob::Add(a, 1)))
            .await;
        for (a, outcome) in addends.into_iter().zip(outcomes) {
            check_sum(outcome?, a, 1)?;
        }
        Ok(())
    }
}

/// Sends batches of [`BATCH_SIZE`] Add jobs until `window` ends; returns
/// jobs/s. Addends stay below 1,000, so that no sum overflows.
pub(crate) async fn batch_loop(pool: &impl BatchAdder, window: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut jobs = 0u64;
    let mut first = 0u32;
    while start.elapsed() < window {
        let addends = (0..BATCH_SIZE as u32)
            .map(|i| first.wrapping_add(i) % 1000)
            .collect();
        pool.add_batch(addends).await?;
        first = first.wrapping_add(BATCH_SIZE as u32);
        jobs += BATCH_SIZE as u64;
    }
    Ok(jobs as f64 / start.elapsed().as_secs_f64())
}

/// `concurrency` tasks send Add jobs until `window` ends; returns jobs/s.
pub(crate) async fn add_loop<A: Adder>(
    adder: &A,
    concurrency: usize,
    window: Duration,
) -> Result<f64> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = JoinSet::new();
    for task in 0..concurrency as u32 {
        let adder = adder.clone();
        tasks.spawn(async move {
            let mut n = 0u32;
            while Instant::now() < deadline {
                adder.add(task, n).await?;
                n += 1;
            }
            Ok::<_, BoxError>(u64::from(n))
        });
    }
    let mut jobs = 0;
    while let Some(done) = tasks.join_next().await {
        jobs += done??;
    }
    Ok(jobs as f64 / start.elapsed().as_secs_f64())
}

/// Echo bodies of `size` bytes through 1 worker with
/// [`ECHO_CONCURRENCY`] concurrent sends: median MB/s of bodies echoed
/// (counted once), a fresh pool per repetition. `threshold` overrides the
/// pool's blob threshold.
async fn echo_bandwidth(
    budget: &Budget,
    exe: &Path,
    size: usize,
    payload: Payload,
    threshold: Option<usize>,
) -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..budget.reps {
        let mut builder = Pool::builder()
            .worker_count(1)
            .worker_path(exe)
            .arg(WORKER_COMMAND)
            .max_in_flight_per_worker(ECHO_CONCURRENCY);
        if let Some(threshold) = threshold {
            builder = builder.blob_threshold(threshold);
        }
        let pool = builder.finish().await?;
        // Warm up until each sender has made a few round trips, however
        // large the body: the worker's regions are made (and faulted in) on
        // its first bodies, and a steady pool reuses them.
        for _ in 0..3 {
            echo_loop(&pool, size, payload, Duration::ZERO).await?;
        }
        echo_loop(&pool, size, payload, budget.warmup).await?;
        rates.push(echo_loop(&pool, size, payload, budget.window).await?);
        close(pool).await?;
    }
    Ok(median(rates) / 1e6)
}

/// Each task owns one body and sends it back and forth (the echoed body
/// is the next job's), so no copy is made outside ipc2. Returns bytes/s.
async fn echo_loop(pool: &Pool, size: usize, payload: Payload, window: Duration) -> Result<f64> {
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = JoinSet::new();
    for task in 0..ECHO_CONCURRENCY {
        let pool = pool.clone();
        tasks.spawn(async move {
            let blob_body = matches!(payload, Payload::Blob | Payload::BlobCopy);
            let mut body = if blob_body {
                Vec::new()
            } else {
                vec![task as u8; size]
            };
            let mut blob = match blob_body {
                true => Blob::with_len(size, |bytes| bytes.fill(task as u8)),
                false => Blob::new(),
            };
            let mut bodies = 0u64;
            // At least one round trip, even with a window of zero.
            while bodies == 0 || Instant::now() < deadline {
                let job = match payload {
                    Payload::Vec => BenchJob::EchoVec(body),
                    Payload::Bytes => BenchJob::Echo(ByteBuf::from(body)),
                    Payload::Blob => BenchJob::EchoBlob(blob),
                    Payload::BlobCopy => BenchJob::CopyBlob(blob),
                };
                (body, blob) = match pool.send(job).await? {
                    BenchReply::EchoVec(bytes) if bytes.len() == size => (bytes, Blob::new()),
                    BenchReply::Echo(bytes) if bytes.len() == size => {
                        (bytes.into_vec(), Blob::new())
                    }
                    BenchReply::Blob(blob) if blob.len() == size => (Vec::new(), blob),
                    other => return Err(format!("echo answered with {other:?}").into()),
                };
                bodies += 1;
            }
            if blob.first().is_some_and(|&byte| byte != task as u8) {
                return Err("echoed blob differs".into());
            }
            Ok::<_, BoxError>(bodies)
        });
    }
    let mut bodies = 0;
    while let Some(done) = tasks.join_next().await {
        bodies += done??;
    }
    Ok((bodies * size as u64) as f64 / start.elapsed().as_secs_f64())
}

/// Pool of [`COLD_POOL`] from `finish()` to ready, and to the first reply:
/// median ms. The first start is a warm-up; each pool is torn down (its
/// workers gone) before the next starts.
async fn cold_start(budget: &Budget, exe: &Path) -> Result<Vec<(&'static str, f64)>> {
    let mut ready = Vec::new();
    let mut first_reply = Vec::new();
    for rep in 0..=budget.spawn_reps {
        let start = Instant::now();
        let pool = start_pool(exe, COLD_POOL).await?;
        let started = start.elapsed();
        check_sum(pool.send(BenchJob::Add(2, 3)).await?, 2, 3)?;
        let answered = start.elapsed();
        close(pool).await?;
        if rep > 0 {
            ready.push(started.as_secs_f64() * 1e3);
            first_reply.push(answered.as_secs_f64() * 1e3);
        }
    }
    Ok(vec![
        ("ready_ms", median(ready)),
        ("first_reply_ms", median(first_reply)),
    ])
}

/// Host RSS: with only the runtime, with an idle pool of [`COLD_POOL`]
/// just started, and the peak while 64 tasks send to it. Measured first,
/// in a process that has done nothing else.
async fn host_rss(budget: &Budget, exe: &Path) -> Result<Vec<(&'static str, f64)>> {
    let baseline = rss_mib();
    let pool = start_pool(exe, COLD_POOL).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_mib();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        let limit = Instant::now() + budget.window * 4 + Duration::from_secs(5);
        tokio::spawn(async move {
            let mut peak = rss_mib();
            while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(5)).await;
                peak = peak.max(rss_mib());
            }
            peak
        })
    };
    let load = add_loop(&pool, 64, budget.window).await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.await?;
    load?;
    close(pool).await?;
    Ok(vec![
        ("baseline_mib", baseline),
        ("idle_mib", idle),
        ("load_mib", peak),
    ])
}

/// Runs `measure` on `budget.reps` fresh pools that `start` makes, one
/// after the other, closing each after it (placement on CPUs varies from
/// pool to pool, and the median of a figure should cover that); returns
/// what each repetition measured.
pub(crate) async fn each_pool<W, H, T>(
    budget: &Budget,
    start: impl AsyncFn() -> Result<WorkerSet<UnixListener, W, H>>,
    measure: impl AsyncFn(&WorkerSet<UnixListener, W, H>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut reps = Vec::with_capacity(budget.reps);
    for _ in 0..budget.reps {
        let pool = start().await?;
        reps.push(measure(&pool).await?);
        close(pool).await?;
    }
    Ok(reps)
}

/// The median rate over fresh pools ([`each_pool`]): on each, `run` for
/// the budget's warm-up, then for its window, whose rate counts.
pub(crate) async fn median_rate<W, H>(
    budget: &Budget,
    start: impl AsyncFn() -> Result<WorkerSet<UnixListener, W, H>>,
    run: impl AsyncFn(&WorkerSet<UnixListener, W, H>, Duration) -> Result<f64>,
) -> Result<f64> {
    let rates = each_pool(budget, start, async |pool| {
        run(pool, budget.warmup).await?;
        run(pool, budget.window).await
    });
    Ok(median(rates.await?))
}

/// Drops `pool` and waits (at most 5 s) until its workers are gone, so
/// that one measurement's teardown does not run into the next.
async fn close<W, H>(pool: WorkerSet<UnixListener, W, H>) -> Result<()> {
    let pids = pool.worker_pids();
    drop(pool);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| is_running(pid)) {
        if Instant::now() >= deadline {
            return Err(
                format!("workers {pids:?} still running 5 s after the pool was dropped").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    match std::fs::read_to_string(path) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
