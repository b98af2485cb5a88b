//! The one table the bench prints: which figures it shows, in what unit, and
//! which ratio each is judged by.
//!
//! Measurements only record numbers under string keys in [`Figures`]; this
//! module alone decides how they are presented. Adding a measurement means
//! recording one more key and adding one [`Row`] below. A key that was not
//! measured (a part failed or was skipped) shows as `n/a`, and the reason
//! appears in the notes under the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::pool::RAW;
use crate::stats::Budget;

/// Every number the run measured, by key, plus notes about what failed.
#[derive(Default)]
pub struct Figures {
    values: BTreeMap<String, f64>,
    info: BTreeMap<String, String>,
    notes: Vec<String>,
    skipped: BTreeMap<&'static str, String>,
}

/// Prefix of the lines a child process prints to report a figure.
pub const FIGURE_LINE: &str = "figure";
/// Prefix of the lines a child process prints to add a note.
pub const NOTE_LINE: &str = "note";

impl Figures {
    /// Records a figure (NaN and infinities are dropped: not measured).
    pub fn set(&mut self, key: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.values.insert(key.into(), value);
        }
    }

    /// A recorded figure.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    /// Records a piece of context shown above the table (e.g. versions).
    pub fn info(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.info.insert(key.into(), value.into());
    }

    /// Records a note shown under the table (e.g. why a part failed).
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Marks a whole section as skipped; the table shows the reason as a row.
    pub fn skip(&mut self, section: &'static str, reason: impl Into<String>) {
        self.skipped.insert(section, reason.into());
    }

    /// The line a child prints for one figure; see [`Figures::absorb`].
    pub fn line(key: &str, value: f64) -> String {
        format!("{FIGURE_LINE} {key} {value}")
    }

    /// The line a child prints for a note; see [`Figures::absorb`].
    pub fn note_line(note: &str) -> String {
        format!("{NOTE_LINE} {}", note.replace('\n', " "))
    }

    /// Takes in the figures and notes a child printed with [`Figures::line`]
    /// and [`Figures::note_line`]; other lines are ignored.
    pub fn absorb(&mut self, output: &str) {
        for line in output.lines() {
            if let Some(note) = line
                .strip_prefix(NOTE_LINE)
                .and_then(|rest| rest.strip_prefix(' '))
            {
                self.note(note);
                continue;
            }
            let mut words = line.split_whitespace();
            let figure = match (words.next(), words.next(), words.next(), words.next()) {
                (Some(FIGURE_LINE), Some(key), Some(value), None) => {
                    value.parse().ok().map(|value| (key, value))
                }
                _ => None,
            };
            if let Some((key, value)) = figure {
                self.set(key, value);
            }
        }
    }
}

/// How a row's figure is judged: `numerator / denominator`, shown as
/// `<ratio>× <label>`, or in place of `{}` if the label has one.
struct Ratio {
    numerator: String,
    denominator: String,
    label: &'static str,
}

/// One line of the table, or a section heading (`key` empty).
struct Row {
    what: String,
    key: String,
    unit: &'static str,
    /// Displayed value = stored value × scale (e.g. MB/s stored, GB/s shown).
    scale: f64,
    ratios: Vec<Ratio>,
}

fn heading(title: &str) -> Row {
    Row {
        what: format!("**{title}**"),
        key: String::new(),
        unit: "",
        scale: 1.0,
        ratios: Vec::new(),
    }
}

fn row(what: impl Into<String>, key: impl Into<String>, unit: &'static str) -> Row {
    Row {
        what: what.into(),
        key: key.into(),
        unit,
        scale: 1.0,
        ratios: Vec::new(),
    }
}

impl Row {
    fn scaled(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    fn ratio(
        mut self,
        numerator: impl Into<String>,
        denominator: impl Into<String>,
        label: &'static str,
    ) -> Self {
        self.ratios.push(Ratio {
            numerator: numerator.into(),
            denominator: denominator.into(),
            label,
        });
        self
    }
}

/// Section names, for [`Figures::skip`].
pub const PYTHON_SECTION: &str = "Python peers";

/// The ipc2 figure every throughput ratio uses: 2 workers, 64 concurrent.
const IPC2_JOBS_2X64: &str = "ipc2.jobs.w2.c64";

fn rows() -> Vec<Row> {
    let mut rows = vec![
        heading("Floors (blocking std UnixStream, no library)"),
        row(
            "16 B ping-pong round trip p50, unpinned",
            "floor.rt.unpinned.p50_us",
            "µs",
        ),
        row(
            "16 B ping-pong round trip p99, unpinned",
            "floor.rt.unpinned.p99_us",
            "µs",
        ),
        row(
            "16 B ping-pong round trip p50, both on CPU 0",
            "floor.rt.pinned.p50_us",
            "µs",
        ),
        row(
            "16 B ping-pong round trip p99, both on CPU 0",
            "floor.rt.pinned.p99_us",
            "µs",
        ),
        row(
            "hand-batched pipeline: 2 children × 64 in flight, 16 B",
            "floor.pipelined.jobs_per_s",
            "jobs/s",
        ),
        row(
            "1 MiB echo: 1 child, 4 bodies in flight",
            "floor.bulk_1mib.mb_per_s",
            "GB/s",
        )
        .scaled(1e-3),
        row(
            "16 MiB echo: 1 child, 4 bodies in flight",
            "floor.bulk_16mib.mb_per_s",
            "GB/s",
        )
        .scaled(1e-3),
        row(
            "64 MiB echo: 1 child, 4 bodies in flight",
            "floor.bulk_64mib.mb_per_s",
            "GB/s",
        )
        .scaled(1e-3),
        row(
            "spawn + reap 4 × `ipc2_bench noop` (the worker's executable)",
            "floor.spawn4.worker_noop_ms",
            "ms",
        ),
        row(
            "spawn + reap 4 × `/bin/true`",
            "floor.spawn4.bin_true_ms",
            "ms",
        ),
        heading("ipc2"),
        row(
            "`send` round trip p50, 1 worker, 1 in flight, unpinned",
            "ipc2.rt.unpinned.p50_us",
            "µs",
        )
        .ratio(
            "ipc2.rt.unpinned.p50_us",
            "floor.rt.unpinned.p50_us",
            "floor p50 unpinned",
        ),
        row(
            "`send` round trip p99, 1 worker, 1 in flight, unpinned",
            "ipc2.rt.unpinned.p99_us",
            "µs",
        )
        .ratio(
            "ipc2.rt.unpinned.p99_us",
            "floor.rt.unpinned.p99_us",
            "floor p99 unpinned",
        ),
        row(
            "`send` round trip p50, host + worker on CPU 0",
            "ipc2.rt.pinned.p50_us",
            "µs",
        )
        .ratio(
            "ipc2.rt.pinned.p50_us",
            "floor.rt.pinned.p50_us",
            "floor p50 pinned",
        ),
        row(
            "`send` round trip p99, host + worker on CPU 0",
            "ipc2.rt.pinned.p99_us",
            "µs",
        )
        .ratio(
            "ipc2.rt.pinned.p99_us",
            "floor.rt.pinned.p99_us",
            "floor p99 pinned",
        ),
    ];
    for workers in crate::pool::WORKER_COUNTS {
        for concurrency in crate::pool::CONCURRENCIES {
            let plural = if workers == 1 { "" } else { "s" };
            let mut line = row(
                format!(
                    "Add jobs/s, {workers} worker{plural}, {concurrency} in flight per worker (`send` from {} tasks)",
                    concurrency * workers
                ),
                crate::pool::jobs_key(workers, concurrency),
                "jobs/s",
            );
            if crate::pool::jobs_key(workers, concurrency) == IPC2_JOBS_2X64 {
                line = line
                    .ratio(
                        IPC2_JOBS_2X64,
                        "floor.pipelined.jobs_per_s",
                        "hand-batched floor",
                    )
                    .ratio(
                        IPC2_JOBS_2X64,
                        "py.ppe_submit_all_jobs_per_s",
                        "PPE one submit per job",
                    );
            }
            rows.push(line);
        }
    }
    rows.extend([
        row(
            "Add jobs/s, 2 workers, 64 in flight per worker, host on a current-thread runtime",
            "ipc2.jobs.w2.c64.current_thread",
            "jobs/s",
        )
        .ratio(
            "ipc2.jobs.w2.c64.current_thread",
            IPC2_JOBS_2X64,
            "multi-thread host",
        ),
        row(
            "Add jobs/s, 2 workers, 64 in flight per worker, pool tasks on a dedicated thread",
            "ipc2.jobs.w2.c64.dedicated_io",
            "jobs/s",
        )
        .ratio(
            "ipc2.jobs.w2.c64.dedicated_io",
            IPC2_JOBS_2X64,
            "on the caller's runtime",
        ),
        row(
            "`send_batch` of 10,000 Add jobs, 2 workers, 256 in flight per worker",
            "ipc2.batch",
            "jobs/s",
        )
        .ratio(
            "ipc2.batch",
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "mp.Pool.map(chunksize=1000)",
        )
        .ratio(
            "ipc2.batch",
            "floor.pipelined.jobs_per_s",
            "hand-batched floor",
        ),
        row(
            "`send_batch` of 10,000 Add jobs, 2 workers, 2,000 in flight per worker (frames of 1,000 \
             jobs, as Python's chunks)",
            "ipc2.batch.chunk1000",
            "jobs/s",
        )
        .ratio(
            "ipc2.batch.chunk1000",
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "mp.Pool.map(chunksize=1000)",
        ),
        row(
            "`send_batch`, same as 256 in flight, host on a current-thread runtime",
            "ipc2.batch.current_thread",
            "jobs/s",
        )
        .ratio(
            "ipc2.batch.current_thread",
            "ipc2.batch",
            "multi-thread host",
        ),
        row(
            "echo 1 KiB bodies, 1 worker, 4 in flight",
            "ipc2.echo_1kib.mb_per_s",
            "MB/s",
        ),
        row(
            "echo 1 MiB bodies, 1 worker, 4 in flight",
            "ipc2.echo_1mib.mb_per_s",
            "MB/s",
        )
        .ratio(
            "ipc2.echo_1mib.mb_per_s",
            "floor.bulk_1mib.mb_per_s",
            "socket floor",
        ),
        row(
            "echo 1 MiB as plain `Vec<u8>` (serde seq), same setup",
            "ipc2.echo_1mib_vec.mb_per_s",
            "MB/s",
        )
        .ratio(
            "ipc2.echo_1mib_vec.mb_per_s",
            "floor.bulk_1mib.mb_per_s",
            "socket floor",
        ),
    ]);
    for (name, size) in crate::pool::BLOB_SIZES {
        let label = format!("{} MiB", size >> 20);
        for (kind, how) in [
            ("blob", "passed back as it came"),
            (
                "blob_copy",
                "worker writes a new body, host copies it for the next job",
            ),
        ] {
            let key = format!("ipc2.echo_{name}_{kind}.mb_per_s");
            rows.push(
                row(
                    format!("echo {label} `Blob`, {how}, 1 worker, 4 in flight"),
                    key.clone(),
                    "MB/s",
                )
                .ratio(key, format!("floor.bulk_{name}.mb_per_s"), "socket floor"),
            );
        }
    }
    for (name, size) in crate::pool::THRESHOLD_SIZES {
        let label = format!("{} KiB", size >> 10);
        let inline = format!("ipc2.echo_{name}_inline.mb_per_s");
        let shared = format!("ipc2.echo_{name}_shared.mb_per_s");
        rows.push(row(
            format!("echo {label} `Blob`, worker writes a new body, through the socket (threshold above it)"),
            inline.clone(),
            "MB/s",
        ));
        rows.push(
            row(
                format!("same, {label}, through shared memory (threshold at it)"),
                shared.clone(),
                "MB/s",
            )
            .ratio(shared, inline, "through the socket"),
        );
    }
    rows.extend([
        row(
            "cold start, pool of 4: `finish()` to ready",
            "ipc2.cold4.ready_ms",
            "ms",
        )
        .ratio(
            "ipc2.cold4.ready_ms",
            "floor.spawn4.worker_noop_ms",
            "spawn+reap 4 bare",
        )
        .ratio(
            "ipc2.cold4.ready_ms",
            "floor.spawn4.bin_true_ms",
            "4 × /bin/true",
        ),
        row(
            "cold start, pool of 4: `finish()` to first reply",
            "ipc2.cold4.first_reply_ms",
            "ms",
        )
        .ratio(
            "ipc2.cold4.first_reply_ms",
            "floor.spawn4.worker_noop_ms",
            "spawn+reap 4 bare",
        ),
        row(
            "host RSS, runtime only (before any pool)",
            "ipc2.rss.baseline_mib",
            "MiB",
        ),
        row(
            "host RSS, pool of 4 idle after start",
            "ipc2.rss.idle_mib",
            "MiB",
        ),
        row(
            "host RSS, pool of 4 under load (64 concurrent `send`s, peak)",
            "ipc2.rss.load_mib",
            "MiB",
        ),
        heading("ipc2 services (`#[ipc2::service]`, the same Add job as a typed call)"),
    ]);
    for (placement, key) in [
        ("unpinned", "unpinned"),
        ("host + worker on CPU 0", "pinned"),
    ] {
        for percentile in ["p50", "p99"] {
            rows.push(
                row(
                    format!(
                        "service call round trip {percentile}, plain handler, 1 worker, 1 in \
                         flight, {placement}"
                    ),
                    format!("ipc2.service.rt.{key}.{percentile}_us"),
                    "µs",
                )
                .ratio(
                    format!("ipc2.service.rt.{key}.{percentile}_us"),
                    format!("ipc2.service.rt.{key}{RAW}.{percentile}_us"),
                    "raw `send` measured alongside",
                ),
            );
        }
    }
    for (handler, what) in [
        (
            crate::pool::Handler::Plain,
            "plain handler (worker's blocking pool)",
        ),
        (
            crate::pool::Handler::Async,
            "async handler (starts in place, a task only if it waits)",
        ),
    ] {
        let key = crate::pool::service_jobs_key(handler);
        rows.push(
            row(
                format!("service calls/s, {what}, 2 workers, 64 in flight per worker"),
                key.clone(),
                "jobs/s",
            )
            .ratio(key.clone(), key + RAW, "raw `send` measured alongside"),
        );
    }
    rows.extend(seed_rows());
    rows.extend([
        heading(
            "ipc2, remote workers over TLS on loopback (ratios: the Unix socket above, same run)",
        ),
        row(
            "`send` round trip p50, 1 remote worker over TLS, 1 in flight",
            "ipc2.tls.rt.p50_us",
            "µs",
        )
        .ratio(
            "ipc2.tls.rt.p50_us",
            "ipc2.rt.unpinned.p50_us",
            "Unix socket p50",
        ),
        row(
            "`send` round trip p99, 1 remote worker over TLS, 1 in flight",
            "ipc2.tls.rt.p99_us",
            "µs",
        )
        .ratio(
            "ipc2.tls.rt.p99_us",
            "ipc2.rt.unpinned.p99_us",
            "Unix socket p99",
        ),
        row(
            "Add jobs/s, 2 remote workers over TLS, 64 in flight per worker",
            crate::remote::JOBS_KEY,
            "jobs/s",
        )
        .ratio(crate::remote::JOBS_KEY, IPC2_JOBS_2X64, "Unix socket"),
        heading(PYTHON_SECTION),
        row(
            "`ProcessPoolExecutor(2)` `submit().result()` p50",
            "py.ppe_submit_result_p50_us",
            "µs",
        )
        .ratio(
            "ipc2.rt.unpinned.p50_us",
            "py.ppe_submit_result_p50_us",
            "ipc2 send p50 ÷ this = {}",
        ),
        row(
            "`ProcessPoolExecutor(2)` `submit().result()` p99",
            "py.ppe_submit_result_p99_us",
            "µs",
        )
        .ratio(
            "ipc2.rt.unpinned.p99_us",
            "py.ppe_submit_result_p99_us",
            "ipc2 send p99 ÷ this = {}",
        ),
        row(
            "`ProcessPoolExecutor(2)`, one `submit` per job, then gather",
            "py.ppe_submit_all_jobs_per_s",
            "jobs/s",
        )
        .ratio(
            IPC2_JOBS_2X64,
            "py.ppe_submit_all_jobs_per_s",
            "ipc2 (2 workers × 64 in flight) ÷ this = {}",
        ),
        row(
            "`ProcessPoolExecutor(2).map(chunksize=1000)`",
            "py.ppe_map_chunk1000_jobs_per_s",
            "jobs/s",
        )
        .ratio(
            IPC2_JOBS_2X64,
            "py.ppe_map_chunk1000_jobs_per_s",
            "ipc2 (2 workers × 64 in flight) ÷ this = {}",
        ),
        row(
            "`multiprocessing.Pool(2).map(chunksize=1000)`",
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "jobs/s",
        )
        .ratio(
            IPC2_JOBS_2X64,
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "ipc2 (2 workers × 64 in flight) ÷ this = {}",
        ),
    ]);
    rows
}

/// The figures with the seed's worker as written (`worker_test`), where
/// issue 10's targets are judged.
fn seed_rows() -> Vec<Row> {
    let prefix = crate::seed::PREFIX;
    let two_by_one = crate::seed::jobs_key(2, 1);
    let two_by_64 = crate::seed::jobs_key(2, 64);
    let batch = format!("{prefix}.batch");
    let batch_defaults = format!("{prefix}.batch.defaults");
    let chunked = format!("{prefix}.batch.chunk1000");
    let mut rows = vec![heading(
        "ipc2 with the seed's worker as written (`worker_test`: `#[tokio::main]`, one job at a \
         time in its loop)",
    )];
    for (placement, key) in [
        ("unpinned", "unpinned"),
        ("host + worker on CPU 0", "pinned"),
    ] {
        for percentile in ["p50", "p99"] {
            let figure = format!("{prefix}.rt.{key}.{percentile}_us");
            let label: &'static str = match (key, percentile) {
                ("unpinned", "p50") => "floor p50 unpinned",
                ("unpinned", _) => "floor p99 unpinned",
                (_, "p50") => "floor p50 pinned",
                _ => "floor p99 pinned",
            };
            rows.push(
                row(
                    format!(
                        "`send` round trip {percentile}, 1 seed worker, 1 in flight, {placement}"
                    ),
                    figure.clone(),
                    "µs",
                )
                .ratio(
                    figure.clone(),
                    format!("floor.rt.{key}.{percentile}_us"),
                    label,
                )
                .ratio(
                    figure,
                    format!("ipc2.rt.{key}.{percentile}_us"),
                    "current-thread worker",
                ),
            );
        }
    }
    rows.extend([
        row(
            format!(
                "Add jobs/s, 2 seed workers, 1 in flight per worker (the defaults), `send` from {} \
                 tasks",
                crate::seed::CALLERS
            ),
            two_by_one.clone(),
            "jobs/s",
        )
        .ratio(
            two_by_one.clone(),
            "py.ppe_submit_all_jobs_per_s",
            "PPE one submit per job",
        )
        .ratio(
            two_by_one,
            "ipc2.jobs.w2.c1",
            "current-thread worker, 2 tasks",
        ),
        row(
            "Add jobs/s, 2 seed workers, 64 in flight per worker (`send` from 128 tasks)",
            two_by_64.clone(),
            "jobs/s",
        )
        .ratio(two_by_64.clone(), IPC2_JOBS_2X64, "current-thread worker")
        .ratio(
            two_by_64,
            "floor.pipelined.jobs_per_s",
            "hand-batched floor",
        ),
        row(
            "`send_batch` of 10,000 Add jobs, 2 seed workers, 1 in flight per worker (the \
             defaults: one job per frame)",
            batch_defaults.clone(),
            "jobs/s",
        )
        .ratio(
            batch_defaults.clone(),
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "mp.Pool.map(chunksize=1000)",
        )
        .ratio(
            batch_defaults,
            "py.ppe_submit_all_jobs_per_s",
            "PPE one submit per job",
        ),
        row(
            "`send_batch` of 10,000 Add jobs, 2 seed workers, 256 in flight per worker",
            batch.clone(),
            "jobs/s",
        )
        .ratio(
            batch.clone(),
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "mp.Pool.map(chunksize=1000)",
        )
        .ratio(batch, "ipc2.batch", "current-thread worker"),
        row(
            "`send_batch` of 10,000 Add jobs, 2 seed workers, 2,000 in flight per worker (frames \
             of 1,000 jobs, as Python's chunks)",
            chunked.clone(),
            "jobs/s",
        )
        .ratio(
            chunked.clone(),
            "py.mp_pool_map_chunk1000_jobs_per_s",
            "mp.Pool.map(chunksize=1000)",
        )
        .ratio(chunked, "ipc2.batch.chunk1000", "current-thread worker"),
    ]);
    rows
}

/// What every reader needs to know to read the table right.
const READING: &[&str] = &[
    "`N× label`: this row's figure divided by the named one (for times, \
     above 1 is slower; for rates, below 1 is slower).",
    "Floors use blocking std `UnixStream`s between this executable and a \
     copy of itself; every repetition starts fresh children or a fresh pool.",
    "ipc2 host: tokio multi-thread runtime with default threads (1 when \
     pinned to CPU 0); worker: `ipc2_bench worker`, a current-thread runtime.",
    "Spawn + reap counts process exit and reaping; a pool's cold start ends \
     when the workers serve, so it can come out below the spawn floor.",
    "MB/s and GB/s count each echoed body once (10^6 / 10^9 bytes).",
    "Service rows are judged by raw `send`s of the same job to the bench's \
     hand-written worker, measured in the same repetitions (the two take \
     turns on fresh pools), not by the ipc2 rows above, measured earlier.",
];

/// The whole report: context lines, the table, notes.
pub fn render(figures: &Figures, budget: &Budget, elapsed: Duration) -> String {
    let mut out = String::new();
    let mode = if budget.quick { "quick" } else { "full" };
    let _ = writeln!(out, "# ipc2 benchmark ({mode} run)\n");
    let _ = writeln!(
        out,
        "{} CPUs, Linux {}; {} repetitions per figure (median), {:?} windows, \
         {} round trips per latency repetition; run took {:.1} s.",
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        budget.reps,
        budget.window,
        budget.latency_samples,
        elapsed.as_secs_f64()
    );
    for (key, value) in &figures.info {
        let _ = writeln!(out, "{key}: {value}.");
    }
    out.push('\n');
    let _ = writeln!(out, "| what | figure | unit | ratio |");
    let _ = writeln!(out, "| --- | ---: | --- | --- |");
    let mut section_skipped = false;
    for row in rows() {
        if row.key.is_empty() {
            let title = row.what.trim_matches('*');
            let _ = writeln!(out, "| {} | | | |", row.what);
            section_skipped = false;
            if let Some(reason) = figures.skipped.get(title) {
                let _ = writeln!(out, "| (skipped) | n/a | | {reason} |");
                section_skipped = true;
            }
            continue;
        }
        if section_skipped {
            continue;
        }
        let figure = figures
            .get(&row.key)
            .map_or_else(|| "n/a".to_owned(), |v| format_number(v * row.scale));
        let ratios: Vec<String> = row
            .ratios
            .iter()
            .filter_map(|ratio| {
                let value = figures.get(&ratio.numerator)? / figures.get(&ratio.denominator)?;
                let value = format_ratio(value);
                Some(if ratio.label.contains("{}") {
                    ratio.label.replace("{}", &value)
                } else {
                    format!("{value}× {}", ratio.label)
                })
            })
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.what,
            figure,
            row.unit,
            ratios.join("; ")
        );
    }
    out.push_str("\nHow to read it:\n");
    for line in READING {
        let _ = writeln!(out, "- {line}");
    }
    if !figures.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &figures.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

/// Three or four significant digits; thousands separated by commas.
fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let digits = format!("{:.0}", magnitude);
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if value < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn format_ratio(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 0.1 || value <= 0.0 {
        format!("{value:.2}")
    } else {
        // Two significant digits, however small.
        let decimals = (1.0 - value.log10().floor()) as usize;
        format!("{value:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_readable() {
        assert_eq!(format_number(1_234_567.4), "1,234,567");
        assert_eq!(format_number(123.4), "123");
        assert_eq!(format_number(12.34), "12.3");
        assert_eq!(format_number(1.234), "1.23");
        assert_eq!(format_ratio(0.0123), "0.012");
        assert_eq!(format_ratio(0.00116), "0.0012");
        assert_eq!(format_ratio(2.144), "2.14");
    }

    #[test]
    fn children_report_figures_by_line() {
        let mut figures = Figures::default();
        figures.absorb(&format!("noise\n{}\n", Figures::line("a.b", 2.5)));
        assert_eq!(figures.get("a.b"), Some(2.5));
        assert_eq!(figures.get("noise"), None);
    }
}
