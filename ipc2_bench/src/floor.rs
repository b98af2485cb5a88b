//! Floors: what the machine can do with no library at all, so that ipc2's
//! figures have something to be measured against.
//!
//! Each floor talks to a child that is this very executable re-run as
//! `ipc2_bench floor-echo <socket> <mode>`, over a blocking
//! `std::os::unix::net::UnixStream` (no tokio, no framing library):
//!
//! - `add16`: reads 16-byte messages `[u64 id][u32 a][u32 b]` and answers
//!   each with `[u64 id][u32 a+b][u32 0]`, all the replies to one read in one
//!   write (the hand-batched best case);
//! - `bytes`: writes back every byte it reads.
//!
//! The spawn floor starts and reaps bare processes.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use crate::proc::{ChildGuard, Result, pin_current_thread_to_cpu0, self_exe, socket_path};
use crate::report::Figures;
use crate::stats::{Budget, latency_percentiles, median, median_latency};
use crate::worker::NOOP_COMMAND;

/// Hidden subcommand that runs a floor's child.
pub const CHILD_COMMAND: &str = "floor-echo";
/// Size of one floor message.
const MESSAGE: usize = 16;
/// Messages in flight per child in the pipelined floor.
const PIPELINE_DEPTH: usize = 64;
/// Children in the pipelined floor.
const PIPELINE_CHILDREN: usize = 2;
/// Body size of the bulk floor (and the largest read of its child).
const BODY: usize = 1 << 20;
/// Body sizes of the bulk floors, with the key of each.
pub const BULK_SIZES: [(&str, usize); 3] =
    [("1mib", 1 << 20), ("16mib", 16 << 20), ("64mib", 64 << 20)];
/// Bodies in flight in the bulk floor.
const BODIES_IN_FLIGHT: usize = 4;
/// Bare processes per spawn-and-reap repetition.
pub const SPAWN_COUNT: usize = 4;
/// No floor socket operation should ever wait this long.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs every floor and records its figures (a failed floor becomes a note).
pub fn run(budget: &Budget, figures: &mut Figures) {
    for pinned in [false, true] {
        let tag = if pinned { "pinned" } else { "unpinned" };
        match ping_pong(budget, pinned) {
            Ok((p50, p99)) => {
                figures.set(format!("floor.rt.{tag}.p50_us"), p50);
                figures.set(format!("floor.rt.{tag}.p99_us"), p99);
            }
            Err(e) => figures.note(format!("floor ping-pong ({tag}) failed: {e}")),
        }
    }
    match pipelined(budget) {
        Ok(rate) => figures.set("floor.pipelined.jobs_per_s", rate),
        Err(e) => figures.note(format!("floor pipelined failed: {e}")),
    }
    for (name, size) in BULK_SIZES {
        match bulk(budget, size) {
            Ok(rate) => figures.set(format!("floor.bulk_{name}.mb_per_s"), rate),
            Err(e) => figures.note(format!("floor {name} bodies failed: {e}")),
        }
    }
    match self_exe().and_then(|exe| spawn_and_reap(budget, &exe, &[NOOP_COMMAND])) {
        Ok(ms) => figures.set("floor.spawn4.worker_noop_ms", ms),
        Err(e) => figures.note(format!("floor spawn (ipc2_bench noop) failed: {e}")),
    }
    match spawn_and_reap(budget, Path::new("/bin/true"), &[]) {
        Ok(ms) => figures.set("floor.spawn4.bin_true_ms", ms),
        Err(e) => figures.note(format!("floor spawn (/bin/true) failed: {e}")),
    }
}

/// Blocking 16-byte ping-pong with one child: median p50 and p99 round trip
/// in µs. Pinned: the measuring thread and the child both run on CPU 0.
/// Each repetition has a fresh child (the scheduler places it anew).
fn ping_pong(budget: &Budget, pinned: bool) -> Result<(f64, f64)> {
    let budget = *budget;
    // A thread of its own, so pinning it (and the children it starts, which
    // inherit its affinity) leaves the rest of the bench alone.
    std::thread::spawn(move || -> Result<(f64, f64)> {
        if pinned {
            pin_current_thread_to_cpu0()?;
        }
        let mut reps = Vec::new();
        let mut samples = Vec::with_capacity(budget.latency_samples);
        for _ in 0..budget.reps {
            let (_child, mut stream) = start_child("add16")?;
            let mut message = [0u8; MESSAGE];
            let mut reply = [0u8; MESSAGE];
            let mut round_trip = |id: u64| -> Result<()> {
                encode_add(&mut message, id);
                stream.write_all(&message)?;
                stream.read_exact(&mut reply)?;
                check_add(&reply, id)
            };
            let mut id = 0;
            for _ in 0..budget.latency_warmup {
                round_trip(id)?;
                id += 1;
            }
            samples.clear();
            for _ in 0..budget.latency_samples {
                let start = Instant::now();
                round_trip(id)?;
                samples.push(start.elapsed().as_secs_f64() * 1e6);
                id += 1;
            }
            reps.push(latency_percentiles(&mut samples));
        }
        Ok(median_latency(&reps))
    })
    .join()
    .map_err(|_| "ping-pong thread panicked")?
}

/// Two children, 64 messages in flight each, replies read and new messages
/// written in batches: median jobs/s over repetitions (fresh children each,
/// warmed up first).
fn pipelined(budget: &Budget) -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..budget.reps {
        let mut children = Vec::new();
        for _ in 0..PIPELINE_CHILDREN {
            children.push(start_child("add16")?);
        }
        pipeline_round(&mut children, budget.warmup)?;
        rates.push(pipeline_round(&mut children, budget.window)?);
    }
    Ok(median(rates))
}

/// Runs [`pipeline_window`] on every child at once; returns total jobs/s.
fn pipeline_round(children: &mut [(ChildGuard, UnixStream)], window: Duration) -> Result<f64> {
    let barrier = Arc::new(Barrier::new(children.len()));
    std::thread::scope(|scope| -> Result<f64> {
        let runs: Vec<_> = children
            .iter_mut()
            .map(|(_, stream)| {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    barrier.wait();
                    pipeline_window(stream, window)
                })
            })
            .collect();
        let mut total = 0.0;
        for run in runs {
            total += run.join().map_err(|_| "pipeline thread panicked")??;
        }
        Ok(total)
    })
}

/// Keeps [`PIPELINE_DEPTH`] messages in flight on `stream` for `window`:
/// each read's complete replies are answered with as many new messages in
/// one write. Returns jobs/s counted up to the end of the window, after
/// draining what is still in flight.
fn pipeline_window(stream: &mut UnixStream, window: Duration) -> Result<f64> {
    let mut next_id = 0u64;
    let mut outgoing = Vec::with_capacity(PIPELINE_DEPTH * MESSAGE);
    let mut queue = |outgoing: &mut Vec<u8>, count: usize| {
        outgoing.clear();
        for _ in 0..count {
            let mut message = [0u8; MESSAGE];
            encode_add(&mut message, next_id);
            outgoing.extend_from_slice(&message);
            next_id += 1;
        }
    };
    let start = Instant::now();
    let end = start + window;
    queue(&mut outgoing, PIPELINE_DEPTH);
    stream.write_all(&outgoing)?;
    let mut in_flight = PIPELINE_DEPTH;
    let mut expected = 0u64;
    let mut done = 0u64;
    let mut counted: Option<(u64, Duration)> = None;
    let mut buffer = vec![0u8; 2 * PIPELINE_DEPTH * MESSAGE];
    let mut filled = 0;
    while in_flight > 0 {
        let n = stream.read(&mut buffer[filled..])?;
        if n == 0 {
            return Err("floor child closed the connection".into());
        }
        filled += n;
        let complete = filled / MESSAGE;
        for reply in buffer[..complete * MESSAGE].chunks_exact(MESSAGE) {
            check_add(reply, expected)?;
            expected += 1;
        }
        buffer.copy_within(complete * MESSAGE..filled, 0);
        filled -= complete * MESSAGE;
        done += complete as u64;
        in_flight -= complete;
        let now = Instant::now();
        if now < end {
            queue(&mut outgoing, complete);
            stream.write_all(&outgoing)?;
            in_flight += complete;
        } else if counted.is_none() {
            counted = Some((done, now - start));
        }
    }
    let (jobs, elapsed) = counted.unwrap_or((done, start.elapsed()));
    Ok(jobs as f64 / elapsed.as_secs_f64())
}

/// One child echoing bodies of `size` bytes, 4 in flight: median MB/s of
/// bodies echoed (counted once, not per direction); a fresh child per
/// repetition, warmed up first.
fn bulk(budget: &Budget, size: usize) -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..budget.reps {
        let (_child, stream) = start_child("bytes")?;
        bulk_window(&stream, size, budget.warmup)?;
        rates.push(bulk_window(&stream, size, budget.window)?);
    }
    Ok(median(rates) / 1e6)
}

/// A writer thread sends one body per token; the reader hands out a token
/// per body received until the window ends, then reads what it already
/// allowed. Returns bytes/s counted up to the end of the window.
fn bulk_window(stream: &UnixStream, size: usize, window: Duration) -> Result<f64> {
    let mut writer = stream.try_clone()?;
    let mut reader = stream.try_clone()?;
    let (tokens, allowed) = mpsc::channel::<()>();
    let sender = std::thread::spawn(move || -> Result<()> {
        let body = vec![0x5a_u8; size];
        for () in allowed {
            writer.write_all(&body)?;
        }
        Ok(())
    });
    let start = Instant::now();
    let end = start + window;
    let mut issued = 0usize;
    for _ in 0..BODIES_IN_FLIGHT {
        tokens.send(()).map_err(|_| "bulk writer stopped")?;
        issued += 1;
    }
    let mut body = vec![0u8; size];
    let mut received = 0usize;
    let mut counted: Option<(usize, Duration)> = None;
    let result = (|| -> Result<()> {
        while received < issued {
            reader.read_exact(&mut body)?;
            received += 1;
            let now = Instant::now();
            if now < end {
                tokens.send(()).map_err(|_| "bulk writer stopped")?;
                issued += 1;
            } else if counted.is_none() {
                counted = Some((received, now - start));
            }
        }
        Ok(())
    })();
    drop(tokens);
    sender.join().map_err(|_| "bulk writer panicked")??;
    result?;
    if body.iter().any(|&b| b != 0x5a) {
        return Err("bulk floor: echoed body differs".into());
    }
    let (bodies, elapsed) = counted.unwrap_or((received, start.elapsed()));
    Ok((bodies * size) as f64 / elapsed.as_secs_f64())
}

/// Median time to start [`SPAWN_COUNT`] processes of `program` and reap
/// them all, in ms.
pub fn spawn_and_reap(budget: &Budget, program: &Path, args: &[&str]) -> Result<f64> {
    let mut times = Vec::new();
    for rep in 0..budget.spawn_reps + 2 {
        let start = Instant::now();
        let mut children = Vec::with_capacity(SPAWN_COUNT);
        for _ in 0..SPAWN_COUNT {
            children.push(ChildGuard::spawn(
                Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null()),
            )?);
        }
        for child in &mut children {
            let status = child.wait_timeout(IO_TIMEOUT)?;
            if !status.success() {
                return Err(format!("{} exited with {status}", program.display()).into());
            }
        }
        // The first two are warm-up (page cache, dynamic loader).
        if rep >= 2 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(times))
}

/// Starts `ipc2_bench floor-echo <socket> <mode>` and accepts its
/// connection (bounded: the child must connect within [`IO_TIMEOUT`]).
fn start_child(mode: &str) -> Result<(ChildGuard, UnixStream)> {
    let path = socket_path("floor");
    let listener = UnixListener::bind(&path)?;
    listener.set_nonblocking(true)?;
    let mut child = ChildGuard::spawn(
        Command::new(self_exe()?)
            .arg(CHILD_COMMAND)
            .arg(&path)
            .arg(mode)
            .stdin(Stdio::null()),
    );
    let accepted = (|| -> Result<UnixStream> {
        let child = child
            .as_mut()
            .map_err(|e| format!("spawn floor child: {e}"))?;
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match listener.accept() {
                Ok((stream, _)) => return Ok(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(status) = child.try_wait()? {
                return Err(format!("floor child exited before connecting: {status}").into());
            }
            if Instant::now() >= deadline {
                return Err("floor child did not connect in time".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })();
    let _ = std::fs::remove_file(&path);
    let stream = accepted?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok((child?, stream))
}

/// The child: `floor-echo <socket> <add16|bytes>`. Serves until the parent
/// closes the connection.
pub fn serve_child(args: &[String]) -> Result<()> {
    let [path, mode] = args else {
        return Err("usage: ipc2_bench floor-echo <socket> <add16|bytes>".into());
    };
    let mut stream = UnixStream::connect(path)?;
    match mode.as_str() {
        "add16" => serve_add16(&mut stream),
        "bytes" => serve_bytes(&mut stream),
        other => Err(format!("unknown floor mode {other:?}").into()),
    }
}

fn serve_add16(stream: &mut UnixStream) -> Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut filled = 0;
    let mut replies = Vec::with_capacity(buffer.len());
    loop {
        let n = stream.read(&mut buffer[filled..])?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let complete = filled / MESSAGE;
        replies.clear();
        for message in buffer[..complete * MESSAGE].chunks_exact(MESSAGE) {
            let a = u32::from_le_bytes(message[8..12].try_into()?);
            let b = u32::from_le_bytes(message[12..16].try_into()?);
            replies.extend_from_slice(&message[..8]);
            replies.extend_from_slice(&a.wrapping_add(b).to_le_bytes());
            replies.extend_from_slice(&0u32.to_le_bytes());
        }
        buffer.copy_within(complete * MESSAGE..filled, 0);
        filled -= complete * MESSAGE;
        stream.write_all(&replies)?;
    }
}

fn serve_bytes(stream: &mut UnixStream) -> Result<()> {
    let mut buffer = vec![0u8; BODY];
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buffer[..n])?;
    }
}

/// `[u64 id][u32 id as a][u32 1]`.
fn encode_add(message: &mut [u8; MESSAGE], id: u64) {
    message[..8].copy_from_slice(&id.to_le_bytes());
    message[8..12].copy_from_slice(&(id as u32).to_le_bytes());
    message[12..].copy_from_slice(&1u32.to_le_bytes());
}

/// Checks a reply answers message `id` with `id + 1`.
fn check_add(reply: &[u8], id: u64) -> Result<()> {
    let got_id = u64::from_le_bytes(reply[..8].try_into()?);
    let sum = u32::from_le_bytes(reply[8..12].try_into()?);
    if got_id != id || sum != (id as u32).wrapping_add(1) {
        return Err(format!("floor reply {got_id}/{sum} does not answer job {id}").into());
    }
    Ok(())
}
