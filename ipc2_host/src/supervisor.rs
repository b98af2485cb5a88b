//! The life of a worker: spawn, handshake, serve, exit, restart.
//!
//! Each slot of a `WorkerSet` has one supervisor task that loops forever:
//!
//! 1. spawn the worker binary with a fresh one-time secret;
//! 2. wait for the gate to hand over a connection carrying that secret (or
//!    for the process to exit, or for the connect deadline); check that the
//!    connecting process is the one spawned; answer `Welcome`;
//! 3. serve: read the worker's frames and resolve the jobs they answer,
//!    until the connection closes, the process exits, or the worker breaks
//!    the protocol (then it is killed: it can no longer be trusted);
//! 4. reap the process and fail the jobs it still held with an error that
//!    names the worker and how it ended;
//! 5. start over. A worker that served and then died is replaced at once; a
//!    worker that fails to start is retried with exponential backoff.
//!
//! The first start of every slot is reported to `finish()`, which fails if
//! any slot cannot start.

use std::sync::Arc;
use std::time::Duration;

use ipc2_common::codec::encode_raw_frame;
use ipc2_common::connection::write_frames;
use ipc2_common::protocol::{ENV_MAX_FRAME_LENGTH, ENV_SECRET, ENV_SOCKET};
use ipc2_common::{CodecError, FrameKind, FrameReader, Outbox, Secret};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::dispatch::Reply;
use crate::error::Error;
use crate::gate::BoxedReader;
use crate::spawner::WorkerProcess;
use crate::workerset::Shared;

/// How long a worker whose connection closed gets to exit on its own before
/// it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long replies already sent by a worker that exited are still read.
const DRAIN_GRACE: Duration = Duration::from_millis(500);
/// First and longest pause between failed starts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A worker that passed its handshake.
struct Serving {
    process: WorkerProcess,
    reader: FrameReader<BoxedReader>,
}

/// Why a serving worker stopped.
enum Ended {
    /// The connection closed or the process exited.
    Exited,
    /// It sent something it must not; it was killed.
    Violation(Arc<CodecError>),
}

/// Runs slot `slot` until the task is aborted. The outcome of the first
/// start goes to `startup`.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    slot: usize,
    startup: mpsc::Sender<Result<(), Error>>,
) {
    let mut startup = Some(startup);
    let mut failed_starts: u32 = 0;
    loop {
        match start(&shared, slot).await {
            Ok(serving) => {
                failed_starts = 0;
                if let Some(startup) = startup.take() {
                    let _ = startup.send(Ok(())).await;
                }
                serve(&shared, slot, serving).await;
            }
            Err(error) => {
                if let Some(startup) = startup.take() {
                    let _ = startup.send(Err(error)).await;
                    return;
                }
                failed_starts = failed_starts.saturating_add(1);
                tokio::time::sleep(backoff(failed_starts)).await;
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(BACKOFF_MAX)
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
        .stdin(std::process::Stdio::null());
    let admitted = shared.gate.expect(secret);
    let mut process = shared.spawner.spawn(command).await.map_err(spawn_error)?;
    let pid = process.pid();

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
    let claimed = admitted.peer_pid.unwrap_or(admitted.hello.pid);
    if admitted.hello.pid != pid || claimed != pid {
        process.kill().await;
        return Err(Error::HandshakeMismatch {
            worker: slot,
            pid,
            claimed: if claimed != pid {
                claimed
            } else {
                admitted.hello.pid
            },
        });
    }

    let (outbox, outgoing) = Outbox::channel();
    tokio::spawn(write_frames(outgoing, admitted.writer));
    if let Ok(welcome) = encode_raw_frame(FrameKind::Welcome, 0, &[], usize::MAX) {
        let _ = outbox.send(welcome);
    }
    shared.dispatch.worker_ready(slot, pid, outbox);
    Ok(Serving {
        process,
        reader: admitted.reader,
    })
}

/// Serves jobs until the worker stops, then fails what it still held.
async fn serve(shared: &Shared, slot: usize, serving: Serving) {
    let Serving {
        mut process,
        mut reader,
    } = serving;
    let pid = process.pid();
    let ended = tokio::select! {
        result = read_replies(shared, slot, pid, &mut reader) => Some(result),
        _ = process.wait() => None,
    };
    let (ended, status) = match ended {
        // The process exited first: collect replies it wrote before dying.
        None => {
            let drained =
                tokio::time::timeout(DRAIN_GRACE, read_replies(shared, slot, pid, &mut reader))
                    .await;
            let ended = match drained {
                Ok(Err(violation)) => Ended::Violation(violation),
                _ => Ended::Exited,
            };
            (ended, process.wait().await)
        }
        Some(Ok(())) => {
            let status = match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
                Ok(status) => status,
                Err(_) => process.kill().await,
            };
            (Ended::Exited, status)
        }
        Some(Err(violation)) => (Ended::Violation(violation), process.kill().await),
    };
    drop(reader);
    for reply in shared.dispatch.worker_gone(slot) {
        let error = match &ended {
            Ended::Violation(source) => Error::Protocol {
                worker: slot,
                pid,
                source: Arc::clone(source),
            },
            Ended::Exited => Error::WorkerDied {
                worker: slot,
                pid,
                status,
            },
        };
        let _ = reply.send(Err(error));
    }
}

/// Reads the worker's frames and resolves the jobs they answer. Returns
/// `Ok` when the connection is gone, `Err` when the worker breaks the
/// protocol.
async fn read_replies(
    shared: &Shared,
    slot: usize,
    pid: u32,
    reader: &mut FrameReader<BoxedReader>,
) -> Result<(), Arc<CodecError>> {
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            // A worker that dies mid-write leaves a reset or a truncated
            // frame: that is an exit, reported with its status, not a
            // protocol violation.
            Ok(None) | Err(CodecError::Io(_) | CodecError::Truncated { .. }) => return Ok(()),
            Err(violation) => return Err(Arc::new(violation)),
        };
        let Some(job) = shared.dispatch.complete(slot, frame.id) else {
            return Err(Arc::new(CodecError::Malformed(
                "answer for a job this worker does not hold",
            )));
        };
        let outcome = match (frame.kind, job.one_way) {
            (FrameKind::Reply, false) | (FrameKind::Ack, true) => Ok(Reply {
                worker: slot,
                pid,
                payload: frame.payload,
            }),
            (FrameKind::NoReply, false) => Err(Error::NoReply { worker: slot, pid }),
            (FrameKind::JobFailed, _) => Err(Error::JobFailed {
                worker: slot,
                pid,
                reason: String::from_utf8_lossy(&frame.payload).into_owned(),
            }),
            (kind, _) => {
                let violation = Arc::new(CodecError::UnexpectedKind(kind as u8));
                let _ = job.reply.send(Err(Error::Protocol {
                    worker: slot,
                    pid,
                    source: Arc::clone(&violation),
                }));
                return Err(violation);
            }
        };
        let _ = job.reply.send(outcome);
    }
}
