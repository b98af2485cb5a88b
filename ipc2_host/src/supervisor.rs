//! The life of a worker: spawn, handshake, serve, exit, restart.
//!
//! Each slot of a `WorkerSet` has one supervisor task that loops:
//!
//! 1. spawn the worker binary with a fresh one-time secret;
//! 2. wait for the gate to hand over a connection carrying that secret (or
//!    for the process to exit, or for the connect deadline); check that the
//!    connecting process is the one spawned; answer `Welcome`;
//! 3. serve: read the worker's frames and resolve the jobs they answer;
//!    enforce job deadlines; ask the worker to exit once it has done
//!    `max_jobs_per_worker` jobs; until the connection closes, the process
//!    exits, a deadline passes (the worker is killed: its state is unknown)
//!    or the worker breaks the protocol (killed: it can no longer be
//!    trusted);
//! 4. reap the process; give the jobs it still held to other workers (when
//!    retries are on) or fail them with an error that names the worker and
//!    how it ended;
//! 5. start over, or stop when the set is shutting down.
//!
//! Restart policy, after the manner of OTP supervisors: a worker that dies
//! while running a job, is recycled, or is killed for a timeout is replaced
//! at once; those deaths are the job's doing. A failed start (spawn error,
//! exit before the handshake, connect deadline), a worker that dies idle,
//! and a protocol violation count as failures: the slot backs off
//! exponentially with jitter, and gives up after `restart_limit` failures
//! within the window. While no slot can serve, `send` fails fast.
//!
//! The first start of every slot is reported to `finish()`, which fails if
//! any slot cannot start.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipc2_common::codec::batch::BatchAnswers;
use ipc2_common::codec::{decode_message, encode_raw_frame};
use ipc2_common::connection::{BoxedReader, share_memory, write_frames};
use ipc2_common::liveness::LastHeard;
use ipc2_common::protocol::{
    ENV_MAX_FRAME_LENGTH, ENV_MAX_IN_FLIGHT, ENV_ROLE, ENV_SECRET, ENV_SOCKET,
};
use ipc2_common::shm::Side;
use ipc2_common::{
    CodecError, Frame, FrameKind, FrameReader, Heartbeat, Leaving, Outbox, PanicReport, Secret,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::dispatch::{Done, InFlight, JobKind};
use crate::error::{Error, ExitInfo};
use crate::responder::{FrameAnswers, Outcome, Reply};
use crate::shared::Shared;
use crate::spawner::WorkerProcess;
use crate::stats::WorkerState;
use crate::stream::StreamShared;

/// How long a worker whose connection closed gets to exit on its own before
/// it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Most answers taken from the read buffer and settled under one lock.
const ANSWER_BATCH: usize = 256;
/// How long replies already sent by a worker that exited are still read.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// A time that never comes, for timers that are switched off.
const FAR: Duration = Duration::from_secs(86_400 * 365);

/// A worker that passed its handshake.
struct Serving {
    process: WorkerProcess,
    reader: FrameReader<BoxedReader>,
    outbox: Outbox,
    wake: Arc<Notify>,
}

/// Why a serving worker stopped.
pub(crate) enum End {
    /// The connection closed.
    Closed,
    /// The process exited.
    Exited(ExitInfo),
    /// A job's deadline passed; the worker is to be killed.
    TimedOut,
    /// It sent something it must not; it is to be killed.
    Violation(Arc<CodecError>),
    /// Nothing arrived from a remote worker for this long.
    Silent(Duration),
}

/// Runs slot `slot` until the set stops it. The outcome of the first start
/// goes to `startup`.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    slot: usize,
    startup: mpsc::Sender<Result<(), Error>>,
) {
    let policy = &shared.config.restart;
    let mut startup = Some(startup);
    let mut failures: VecDeque<Instant> = VecDeque::new();
    while !shared.dispatch.stopping() {
        if startup.is_none() {
            shared
                .dispatch
                .set_state(slot, WorkerState::Restarting, None);
        }
        let failure = match start(&shared, slot).await {
            Ok(serving) => {
                if let Some(startup) = startup.take() {
                    let _ = startup.send(Ok(())).await;
                }
                serve(&shared, slot, serving).await
            }
            Err(error) => {
                if let Some(startup) = startup.take() {
                    let _ = startup.send(Err(error)).await;
                    return;
                }
                Some(error.to_string())
            }
        };
        let Some(reason) = failure else { continue };
        if shared.dispatch.stopping() {
            break;
        }
        let now = Instant::now();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|&at| now.duration_since(at) > policy.window)
        {
            failures.pop_front();
        }
        if failures.len() > policy.max_failures as usize {
            tracing::error!(
                worker = slot,
                failures = failures.len(),
                window = ?policy.window,
                %reason,
                "too many failed starts; this slot stops restarting"
            );
            shared
                .dispatch
                .set_state(slot, WorkerState::Failed, Some(reason));
            return;
        }
        let pause = policy.backoff(failures.len() as u32);
        tracing::warn!(worker = slot, ?pause, %reason, "worker failed; backing off");
        shared
            .dispatch
            .set_state(slot, WorkerState::BackingOff, Some(reason));
        tokio::time::sleep(pause).await;
    }
    shared.dispatch.set_state(slot, WorkerState::Stopped, None);
}

/// Spawns a worker and waits for its handshake.
async fn start(shared: &Shared, slot: usize) -> Result<Serving, Error> {
    let config = &shared.config;
    let spawn_error = |source| Error::Spawn {
        path: config.worker_path.clone(),
        source,
    };
    let secret = Secret::generate().map_err(spawn_error)?;
    let mut command = Command::new(&config.worker_path);
    command
        .args(&config.args)
        .envs(config.envs.iter().map(|(key, value)| (key, value)))
        .env(ENV_SOCKET, &shared.socket_path)
        .env(ENV_SECRET, secret.to_hex())
        .env(ENV_MAX_FRAME_LENGTH, config.max_frame_length.to_string())
        .env(ENV_MAX_IN_FLIGHT, config.max_in_flight.to_string())
        .stdin(std::process::Stdio::null());
    // A role only for self-exec workers; never one inherited from a host
    // that is itself a self-exec worker.
    match &config.role {
        Some(role) => command.env(ENV_ROLE, role),
        None => command.env_remove(ENV_ROLE),
    };
    if config.capture_output {
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    let admitted = shared.gate.expect(secret);
    let mut process = shared.spawner.spawn(command).await.map_err(spawn_error)?;
    let pid = process.pid();
    tracing::info!(worker = slot, pid, "worker spawned");
    if config.capture_output {
        let (stdout, stderr) = process.take_output();
        forward_output(slot, pid, "stdout", stdout);
        forward_output(slot, pid, "stderr", stderr);
    }

    let admitted = tokio::select! {
        admitted = tokio::time::timeout(config.connect_timeout, admitted) => admitted,
        status = process.wait() => {
            return Err(Error::ExitedBeforeConnect { worker: slot, pid, status });
        }
    };
    let Ok(Ok(admitted)) = admitted else {
        process.kill().await;
        return Err(Error::ConnectTimeout {
            worker: slot,
            pid,
            timeout: config.connect_timeout,
        });
    };
    // The connecting process (as the kernel says) and the pid its hello
    // claims must both be the process spawned with this secret.
    let impostor = [admitted.peer_pid, Some(admitted.hello.pid)]
        .into_iter()
        .flatten()
        .find(|&claimed| claimed != pid);
    if let Some(claimed) = impostor {
        process.kill().await;
        return Err(Error::HandshakeMismatch {
            worker: slot,
            pid,
            claimed,
        });
    }

    let descriptors = admitted.descriptors;
    match descriptors.as_ref() {
        Some(descriptors) if !ipc2_common::spin::one_cpu() => {
            // The host often sleeps until an answer: let the worker's
            // reading of a job wake it first (see `wake_on_peer_reads`), on
            // another CPU while the worker works. On a single CPU that
            // wake-up only takes the CPU from the worker (pinned round
            // trips 51-55k/s with it, 64-73k/s without). Only for an
            // admitted worker: a connection still in its handshake holds
            // one descriptor, no more.
            descriptors.wake_on_peer_reads();
        }
        // On a single CPU the worker answers only once the host parks, so a
        // read before parking finds nothing.
        Some(descriptors) => descriptors.read_only_when_reported(),
        None => {}
    }
    let (outbox, outgoing) = Outbox::channel_passing(admitted.writer, descriptors.clone());
    // A worker that holds one job at a time is sent one frame at a time:
    // nothing to gather into a larger write, so the job goes to the socket
    // from the thread that routed it (the one that read the previous
    // answer, or the caller's) instead of waking the writer task.
    outbox.direct_writes(config.max_in_flight == 1);
    tokio::spawn(write_frames(outgoing));
    if let Ok(welcome) = encode_raw_frame(FrameKind::Welcome, 0, &[], usize::MAX) {
        let _ = outbox.send(welcome);
    }
    let mut reader = admitted.reader;
    let limit = config.shared_memory_limit;
    share_memory(Side::Host, &outbox, &mut reader, descriptors, limit);
    let wake = Arc::new(Notify::new());
    shared
        .dispatch
        .worker_ready(slot, pid, outbox.clone(), Arc::clone(&wake));
    tracing::info!(worker = slot, pid, "worker passed its handshake and serves");
    Ok(Serving {
        process,
        reader,
        outbox,
        wake,
    })
}

/// Turns each line a worker writes into a `tracing` event tagged with the
/// worker's slot and pid.
fn forward_output(
    slot: usize,
    pid: u32,
    stream: &'static str,
    output: Option<impl AsyncRead + Unpin + Send + 'static>,
) {
    let Some(output) = output else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "ipc2::worker_output", worker = slot, pid, stream, "{line}");
        }
    });
}

/// Serves jobs until the worker stops, then settles what it still held.
/// Returns the reason if this end counts as a failure for the restart policy.
async fn serve(shared: &Shared, slot: usize, serving: Serving) -> Option<String> {
    let Serving {
        mut process,
        reader,
        outbox,
        wake,
    } = serving;
    let pid = process.pid();
    let mut link = Link {
        reader,
        outbox,
        wake,
    };
    let vigil = Vigil {
        exited: process.wait(),
        kill_on_timeout: shared.config.kill_on_timeout,
        heartbeat: None,
    };
    let (end, mut watch) = serve_link(shared, slot, pid, &mut link, vigil).await;
    let Link {
        mut reader, outbox, ..
    } = link;
    let (mut frames, mut done) = (Vec::new(), Vec::new());

    shared.dispatch.stop_routing(slot);
    let status = match &end {
        End::Exited(status) => {
            // Collect replies the worker wrote before it died.
            let _ = tokio::time::timeout(DRAIN_GRACE, async {
                while let Ok(Some(frame)) = reader.next().await {
                    let ready = reader.take_ready(frame, &mut frames, ANSWER_BATCH);
                    if answer(shared, slot, pid, ready, &mut done, &mut watch, &outbox).is_err() {
                        break;
                    }
                }
            })
            .await;
            *status
        }
        End::Closed => match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
            Ok(status) => status,
            Err(_) => process.kill().await,
        },
        End::TimedOut | End::Violation(_) | End::Silent(_) => process.kill().await,
    };
    drop((reader, outbox));

    let held = shared.dispatch.worker_gone(slot);
    let job_caused = !held.is_empty();
    let died_of_a_job_panic =
        watch.job_panicked && (watch.leaving_in_panic || status.code() == Some(PANIC_EXIT_CODE));
    for held in held {
        settle(shared, slot, pid, &end, held, |attempts| {
            died(slot, pid, status, attempts)
        });
    }
    match &end {
        End::Violation(source) => {
            tracing::warn!(worker = slot, pid, %source, "worker broke the protocol and was killed");
            Some(format!(
                "worker {slot} (pid {pid}) broke the protocol: {source}"
            ))
        }
        End::TimedOut => {
            tracing::info!(worker = slot, pid, %status, "worker killed after a timeout; restarting");
            None
        }
        _ if watch.retiring => {
            tracing::info!(worker = slot, pid, %status, "worker retired; replacing it");
            None
        }
        _ if died_of_a_job_panic => {
            tracing::warn!(worker = slot, pid, %status, "a job's panic ended the worker; restarting");
            None
        }
        _ if job_caused || shared.dispatch.stopping() => {
            tracing::warn!(worker = slot, pid, %status, "worker exited while running a job; restarting");
            None
        }
        _ => {
            tracing::warn!(worker = slot, pid, %status, "worker exited while idle");
            Some(format!("worker {slot} (pid {pid}) {status} while idle"))
        }
    }
}

/// A connection that passed its handshake: where its answers are read and
/// its jobs written.
pub(crate) struct Link {
    pub(crate) reader: FrameReader<BoxedReader>,
    pub(crate) outbox: Outbox,
    /// Woken when a job with a deadline is given to the worker.
    pub(crate) wake: Arc<Notify>,
}

/// What a serving loop watches besides the connection.
pub(crate) struct Vigil<F> {
    /// Resolves if the worker's process exits (never, for a remote worker).
    pub(crate) exited: F,
    /// Whether a timed-out job ends the connection (its worker is then
    /// killed) or leaves the worker to finish it.
    pub(crate) kill_on_timeout: bool,
    /// Heartbeats to send, and the silence that ends the connection.
    pub(crate) heartbeat: Option<(Heartbeat, LastHeard)>,
}

/// Serves jobs on `link` until it ends: reads the worker's answers and
/// resolves their jobs, enforces job deadlines, asks the worker to retire
/// after `max_jobs_per_worker` jobs, and (with a heartbeat) sends heartbeats
/// and watches for silence. Returns why it ended and what the worker said
/// about itself; the caller settles what the worker still holds.
pub(crate) async fn serve_link(
    shared: &Shared,
    slot: usize,
    pid: u32,
    link: &mut Link,
    vigil: Vigil<impl Future<Output = ExitInfo>>,
) -> (End, Watch) {
    let Link {
        reader,
        outbox,
        wake,
    } = link;
    let Vigil {
        exited,
        kill_on_timeout,
        heartbeat,
    } = vigil;
    tokio::pin!(exited);
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut watch = Watch::default();
    let mut frames = Vec::with_capacity(ANSWER_BATCH);
    let mut done = Vec::with_capacity(ANSWER_BATCH);
    let beat = heartbeat.as_ref().map(|(beat, _)| *beat);
    let mut ticker = tokio::time::interval(beat.map_or(FAR, |beat| beat.interval));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence = tokio::time::sleep_until(silence_deadline(&heartbeat));
    tokio::pin!(silence);

    let end = loop {
        tokio::select! {
            // Deadlines first: a worker that keeps the reader busy with
            // answers must not postpone another job's timeout.
            biased;
            () = timer.as_mut(), if armed.is_some() => {
                let kill = kill_on_timeout;
                let (expired, next) = shared.dispatch.expire(slot, Instant::now(), !kill);
                let kill = kill && !expired.is_empty();
                for held in expired {
                    let after = held.job.timeout.unwrap_or_default();
                    tracing::warn!(worker = slot, pid, ?after, killed = kill, "job timed out");
                    held.job.reply.fail(|| Error::Timeout { worker: slot, pid, after, killed: kill });
                }
                armed = None;
                if kill {
                    break End::TimedOut;
                }
                rearm(timer.as_mut(), &mut armed, next);
            }
            () = silence.as_mut(), if heartbeat.is_some() => {
                let deadline = silence_deadline(&heartbeat);
                if deadline <= Instant::now() {
                    break End::Silent(beat.map(|beat| beat.timeout).unwrap_or_default());
                }
                silence.as_mut().reset(deadline);
            }
            _ = ticker.tick(), if heartbeat.is_some() => {
                if let Ok(beat) = encode_raw_frame(FrameKind::HostHeartbeat, 0, &[], usize::MAX) {
                    let _ = outbox.send(beat);
                }
            }
            frame = reader.next() => match frame {
                Ok(Some(frame)) => {
                    let ready = reader.take_ready(frame, &mut frames, ANSWER_BATCH);
                    if heartbeat.is_some() {
                        ready.retain(|frame| frame.kind != FrameKind::WorkerHeartbeat);
                        if ready.is_empty() {
                            continue;
                        }
                    }
                    match answer(shared, slot, pid, ready, &mut done, &mut watch, outbox) {
                        Ok(next) => {
                            if next.retire && !watch.retiring {
                                watch.retiring = true;
                                tracing::info!(worker = slot, pid, "worker reached max_jobs_per_worker; retiring it");
                                if let Ok(shutdown) = encode_raw_frame(FrameKind::Shutdown, 0, &[], usize::MAX) {
                                    let _ = outbox.send(shutdown);
                                }
                            }
                            rearm(timer.as_mut(), &mut armed, next.deadline);
                        }
                        Err(violation) => break End::Violation(violation),
                    }
                }
                // A worker that dies mid-write leaves a reset or a truncated
                // frame: that is an exit, not a protocol violation.
                Ok(None) | Err(CodecError::Io(_) | CodecError::Truncated { .. }) => break End::Closed,
                Err(violation) => break End::Violation(Arc::new(violation)),
            },
            status = exited.as_mut() => break End::Exited(status),
            () = wake.notified() => rearm(timer.as_mut(), &mut armed, shared.dispatch.next_deadline(slot)),
        }
    };
    (end, watch)
}

/// When the peer counts as silent unless it sends something first; far
/// away without a heartbeat.
fn silence_deadline(heartbeat: &Option<(Heartbeat, LastHeard)>) -> Instant {
    match heartbeat {
        Some((beat, heard)) => heard.deadline(beat.timeout),
        None => Instant::now() + FAR,
    }
}

/// Points the deadline timer at `next` (disarmed when `None`).
fn rearm(
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    armed: &mut Option<Instant>,
    next: Option<Instant>,
) {
    if next != *armed {
        if let Some(deadline) = next {
            timer.reset(deadline);
        }
        *armed = next;
    }
}

/// What to do after a frame was answered.
struct Next {
    deadline: Option<Instant>,
    retire: bool,
}

/// What a worker process has said about itself, for routing and for the
/// restart policy.
#[derive(Default)]
pub(crate) struct Watch {
    /// It reached `max_jobs_per_worker` and was asked to exit.
    retiring: bool,
    /// One of its jobs panicked.
    job_panicked: bool,
    /// It said it was leaving because a panic was unwinding through its
    /// loop: if it dies now, the job's panic killed it.
    leaving_in_panic: bool,
    /// The ping it was sent after its last job panic, while it gets no new
    /// job; its pong means it survived.
    ping: Option<u64>,
    pings_sent: u64,
}

/// Exit code of a Rust program whose `main` panicked.
const PANIC_EXIT_CODE: i32 = 101;

/// Resolves the jobs a worker's frames answer (drained from `frames`),
/// taking them from the routing table under one lock. `Err` if a frame
/// breaks the protocol; the frames before it are still answered.
///
/// Frames that are not answers are dealt with first, so that no job is
/// routed to a worker that just said it is leaving or whose job just
/// panicked (it may be about to die): a `Panicked` answer suspends routing
/// to the worker and pings it; its `Pong` resumes routing; `Leaving` stops
/// routing for good and takes back the jobs it never started.
fn answer(
    shared: &Shared,
    slot: usize,
    pid: u32,
    frames: &mut Vec<Frame>,
    done: &mut Vec<Done>,
    watch: &mut Watch,
    outbox: &Outbox,
) -> Result<Next, Arc<CodecError>> {
    let mut leaving = None;
    let mut pong = None;
    let mut panicked = false;
    let mut violation = None;
    let items: Vec<Frame> = frames
        .extract_if(.., |frame| frame.kind == FrameKind::Item)
        .collect();
    // Answers to the jobs of `JobBatch` frames, per frame.
    let mut batches: Vec<(u64, BatchAnswers)> = Vec::new();
    frames.retain(|frame| match frame.kind {
        FrameKind::Leaving => {
            match decode_message::<Leaving>(&frame.payload) {
                Ok(farewell) => leaving = Some(farewell),
                Err(error) => violation = Some(Arc::new(error)),
            }
            false
        }
        FrameKind::Pong => {
            pong = Some(frame.id);
            false
        }
        FrameKind::ReplyBatch => {
            match BatchAnswers::new(frame.payload.clone()) {
                Ok(answers) => {
                    panicked |= answers.any_panicked();
                    batches.push((frame.id, answers));
                }
                Err(error) => violation = Some(Arc::new(error)),
            }
            false
        }
        kind => {
            panicked |= kind == FrameKind::Panicked;
            true
        }
    });
    // Items before the answers: a stream's end follows its items.
    if !items.is_empty() && shared.dispatch.items(slot, items) {
        violation.get_or_insert_with(|| {
            Arc::new(CodecError::Malformed(
                "stream item for a job this worker does not hold as a stream",
            ))
        });
    }
    watch.job_panicked |= panicked;
    if leaving.is_some() {
        shared.dispatch.stop_routing(slot);
    } else if panicked {
        shared.dispatch.suspend(slot);
        watch.pings_sent += 1;
        watch.ping = Some(watch.pings_sent);
        if let Ok(ping) = encode_raw_frame(FrameKind::Ping, watch.pings_sent, &[], usize::MAX) {
            let _ = outbox.send(ping);
        }
    } else if pong.is_some() && pong == watch.ping {
        watch.ping = None;
        shared.dispatch.resume(slot);
    }

    let mut completed = match frames.is_empty() {
        true => None,
        false => Some(
            shared
                .dispatch
                .complete(slot, frames.iter().map(|frame| frame.id), done),
        ),
    };
    let mut unknown = completed.as_ref().is_some_and(|c| c.unknown);
    for (frame, answered) in frames.drain(..).zip(done.drain(..)) {
        let held = match answered {
            Done::Whole(held) => held,
            // A late answer to a job that already timed out: discard it.
            Done::Late => continue,
            // A job of a batch answered in a frame of its own.
            Done::Member { batch, index } => {
                let outcome = outcome_of(slot, pid, frame, JobKind::Reply, None, &mut violation);
                let answers = FrameAnswers::one(slot, pid, index, outcome);
                let next = shared.dispatch.complete_batch(slot, batch, answers);
                unknown |= next.unknown;
                completed = Some(next);
                continue;
            }
        };
        let InFlight { job, .. } = held;
        let outcome = outcome_of(
            slot,
            pid,
            frame,
            job.kind,
            job.reply.as_stream(),
            &mut violation,
        );
        job.reply.send(outcome);
    }
    frames.clear();
    for (batch, answers) in batches {
        // Read before any lock is taken; replies are decoded by the caller.
        let answers = FrameAnswers::read(slot, pid, batch, &answers, |frame| {
            outcome_of(slot, pid, frame, JobKind::Reply, None, &mut violation)
        });
        let next = shared.dispatch.complete_batch(slot, batch, answers);
        unknown |= next.unknown;
        completed = Some(next);
    }
    if unknown {
        violation.get_or_insert_with(|| {
            Arc::new(CodecError::Malformed(
                "answer for a job this worker does not hold",
            ))
        });
    }
    if let Some(farewell) = leaving {
        watch.leaving_in_panic |= farewell.panicking;
        for job in shared.dispatch.leaving(slot, farewell.yielded) {
            shared.dispatch.requeue(job);
        }
    }
    match violation {
        Some(violation) => Err(violation),
        None => Ok(Next {
            deadline: match &completed {
                Some(completed) => completed.next_deadline,
                None => shared.dispatch.next_deadline(slot),
            },
            retire: completed.is_some_and(|completed| completed.retire),
        }),
    }
}

/// The outcome an answer frame gives a job of `kind` (whose stream, for a
/// stream job, is `stream`). An answer that does not fit the job breaks the
/// protocol: the job fails with [`Error::Protocol`] and the first such
/// violation is kept in `violation`.
fn outcome_of(
    slot: usize,
    pid: u32,
    frame: Frame,
    kind: JobKind,
    stream: Option<&Arc<StreamShared>>,
    violation: &mut Option<Arc<CodecError>>,
) -> Outcome {
    let ended = Reply {
        worker: slot,
        pid,
        payload: Bytes::new(),
        bodies: Vec::new(),
    };
    match (frame.kind, kind) {
        (FrameKind::Reply, JobKind::Reply) => Ok(Reply {
            payload: frame.payload,
            bodies: frame.bodies,
            ..ended
        }),
        (FrameKind::Ack, JobKind::OneWay) | (FrameKind::StreamEnd, JobKind::Stream) => Ok(ended),
        // A stream job answered with a single reply: a stream of one.
        (FrameKind::Reply, JobKind::Stream) => {
            if let Some(stream) = stream {
                stream.push(frame.payload);
            }
            Ok(ended)
        }
        (FrameKind::Failed, _) => Err(Error::App {
            worker: slot,
            pid,
            message: String::from_utf8_lossy(&frame.payload).into_owned(),
        }),
        (FrameKind::NoReply, JobKind::Reply | JobKind::Stream) => {
            Err(Error::NoReply { worker: slot, pid })
        }
        (FrameKind::JobFailed, _) => Err(Error::JobFailed {
            worker: slot,
            pid,
            reason: String::from_utf8_lossy(&frame.payload).into_owned(),
        }),
        (FrameKind::Panicked, JobKind::Reply | JobKind::Stream) => {
            match decode_message::<PanicReport>(&frame.payload) {
                Ok(report) => Err(Error::Panicked {
                    worker: slot,
                    pid,
                    message: report.message,
                    location: report.location,
                }),
                Err(error) => Err(protocol_error(slot, pid, Arc::new(error), violation)),
            }
        }
        (kind, _) => {
            let source = Arc::new(CodecError::UnexpectedKind(kind as u8));
            Err(protocol_error(slot, pid, source, violation))
        }
    }
}

/// The error for a job whose answer broke the protocol; the first such
/// violation is kept as the reason the worker is killed.
fn protocol_error(
    slot: usize,
    pid: u32,
    source: Arc<CodecError>,
    violation: &mut Option<Arc<CodecError>>,
) -> Error {
    violation.get_or_insert_with(|| Arc::clone(&source));
    Error::Protocol {
        worker: slot,
        pid,
        source,
    }
}

/// Settles a job held by a worker that is gone: another attempt if retries
/// allow, otherwise an error saying how the worker ended (`gone`, given the
/// attempts made).
pub(crate) fn settle(
    shared: &Shared,
    slot: usize,
    pid: u32,
    end: &End,
    held: InFlight,
    gone: impl Fn(u32) -> Error,
) {
    let job = held.job;
    if let End::Violation(source) = end {
        return job.reply.fail(|| Error::Protocol {
            worker: slot,
            pid,
            source: Arc::clone(source),
        });
    }
    if job.attempts < shared.config.max_attempts {
        return shared.dispatch.requeue(job);
    }
    let attempts = job.attempts;
    job.reply.fail(|| gone(attempts));
}

/// The error of a job whose spawned worker died on its last attempt.
fn died(slot: usize, pid: u32, status: ExitInfo, attempts: u32) -> Error {
    match attempts {
        0 | 1 => Error::WorkerDied {
            worker: slot,
            pid,
            status,
        },
        _ => Error::RetriesExhausted {
            attempts,
            worker: slot,
            pid,
            status,
        },
    }
}
