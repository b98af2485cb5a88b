//! The read side of a worker's connection, shared by everyone who waits on
//! the host.
//!
//! Two kinds of code wait for frames from the host: the receiver (for the
//! next job) and the stream senders of stream jobs (for credit: the host
//! grants room for more items as its caller consumes them). Whoever waits
//! drives the reader: it takes the reader if nobody holds it, reads one
//! frame, files it (jobs into a queue for `recv`, credit and cancellation
//! with their stream, pings answered at once) and wakes the others; if
//! someone else holds the reader, it waits for that one's progress. So a
//! stream producer running right in the worker's loop, where nobody calls
//! `recv`, still gets its credit, and no extra task or thread hop sits
//! between the socket and `recv`.
//!
//! On a remote worker's connection a watchdog bounds each read: when
//! nothing (not a byte) has arrived from the host for the heartbeat timeout,
//! the connection counts as lost (see `crate::remote`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use ipc2_common::connection::BoxedReader;
use ipc2_common::liveness::LastHeard;
use ipc2_common::protocol::parse_credit;
use ipc2_common::spin::{Spin, spin_then};
use ipc2_common::sync::lock;
use ipc2_common::{CodecError, Frame, FrameKind, FrameReader, Heartbeat, Outbox};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::job::send_raw;

/// A stream job's flow control, as the worker sees it.
#[derive(Debug, Default)]
pub(crate) struct Flow {
    /// Items the host has room for.
    pub(crate) credit: u64,
    /// The host's caller is gone.
    pub(crate) cancelled: bool,
}

/// What has been read and not yet taken.
#[derive(Debug, Default)]
pub(crate) struct Filed {
    /// Job frames (and batches of jobs) not yet handed out by `recv`, in
    /// the order they came.
    pub(crate) jobs: VecDeque<Frame>,
    /// Flow control of the stream jobs not yet ended.
    pub(crate) flows: HashMap<u64, Flow>,
    /// The host closed the connection or asked the worker to stop: no more
    /// frames will be read.
    pub(crate) finished: bool,
    /// Why reading stopped, if not cleanly.
    pub(crate) error: Option<CodecError>,
}

/// The connection's read half and what has been read from it.
pub(crate) struct Inbound {
    reader: tokio::sync::Mutex<FrameReader<BoxedReader>>,
    filed: Mutex<Filed>,
    /// A frame was filed, or the reader was put down.
    progress: Notify,
    /// Where pongs go.
    outbox: Outbox,
    /// The runtime the connection's I/O is registered with, for blocking
    /// callers on threads outside it.
    runtime: tokio::runtime::Handle,
    /// On a remote connection: the heartbeat, and when the host was last
    /// heard.
    watchdog: Option<(Heartbeat, LastHeard)>,
    /// On a connection whose reads poll the socket itself (the Unix
    /// socket): how long to spin before parking, while jobs come quickly.
    spin: Option<Spin>,
}

impl Inbound {
    /// Must be called inside the runtime the connection belongs to.
    pub(crate) fn new(reader: FrameReader<BoxedReader>, outbox: Outbox) -> Self {
        Self {
            reader: tokio::sync::Mutex::new(reader),
            filed: Mutex::default(),
            progress: Notify::new(),
            outbox,
            runtime: tokio::runtime::Handle::current(),
            watchdog: None,
            spin: None,
        }
    }

    /// Spins briefly before parking for the next frame while frames come
    /// quickly (see [`ipc2_common::spin`]); for connections whose reads
    /// poll the socket itself.
    pub(crate) fn with_spin(mut self, spin: bool) -> Self {
        self.spin = spin.then(Spin::for_this_machine);
        self
    }

    /// Bounds every read by the heartbeat's timeout, counted from when
    /// `heard` last saw a byte arrive.
    pub(crate) fn with_watchdog(mut self, watchdog: Option<(Heartbeat, LastHeard)>) -> Self {
        self.watchdog = watchdog;
        self
    }

    /// The next frame. With a watchdog, fails once nothing has arrived for
    /// the heartbeat timeout; a caller that was away (busy with a job) gives
    /// the host at least one heartbeat interval to show it is alive.
    async fn next_frame(
        &self,
        reader: &mut FrameReader<BoxedReader>,
    ) -> Result<Option<Frame>, CodecError> {
        let Some((Heartbeat { interval, timeout }, heard)) = &self.watchdog else {
            return match &self.spin {
                Some(spin) => spin_then(spin, reader.next()).await,
                None => reader.next().await,
            };
        };
        let grace = Instant::now() + *interval;
        loop {
            let deadline = heard.deadline(*timeout).max(grace);
            match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(frame) => return frame,
                // Bytes of a large frame arrived meanwhile: keep reading.
                Err(_) if heard.deadline(*timeout) > Instant::now() => continue,
                Err(_) => {
                    return Err(CodecError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("nothing heard from the host for {timeout:?}"),
                    )));
                }
            }
        }
    }

    /// The runtime the connection's I/O is registered with.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// What has been read and not yet taken.
    pub(crate) fn filed(&self) -> MutexGuard<'_, Filed> {
        lock(&self.filed)
    }

    /// Reads and files frames until `done` holds or no more frames will
    /// come; returns whether it had to (rather than `done` holding at
    /// once). Cancel safe: a frame is never half-read, and a reader put
    /// down by a dropped call wakes the others.
    pub(crate) async fn drive(&self, mut done: impl FnMut(&mut Filed) -> bool) -> bool {
        // The common case under load: what the caller waits for was filed
        // with an earlier frame. Checked before registering for progress,
        // which costs two more lock round trips.
        {
            let mut filed = self.filed();
            if done(&mut filed) || filed.finished {
                return false;
            }
        }
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            {
                let mut filed = self.filed();
                if done(&mut filed) || filed.finished {
                    return true;
                }
            }
            // About to wait for the host: answers held until now go first.
            self.outbox.release();
            let Ok(reader) = self.reader.try_lock() else {
                progress.await;
                continue;
            };
            let mut reading = Reading {
                reader: Some(reader),
                progress: &self.progress,
            };
            let Some(reader) = reading.reader.as_mut() else {
                return true;
            };
            let frame = self.next_frame(reader).await;
            // Filed before the reader is put down (which wakes the others),
            // so whoever wakes sees the frame's effect and does not take
            // the reader to wait for a frame that has already come. Frames
            // that arrived with it are filed too: the receiver then knows
            // more jobs are waiting (and their answers can go out together).
            self.file(frame);
            let mut frames = 1;
            while let Some(next) = reader.next_buffered() {
                self.file(Ok(Some(next)));
                frames += 1;
            }
            if let Some(spin) = &self.spin {
                spin.frames(frames);
            }
            drop(reading);
        }
    }

    /// Files what the reader returned.
    fn file(&self, frame: Result<Option<Frame>, CodecError>) {
        let mut filed = self.filed();
        match frame {
            Ok(Some(frame)) => match frame.kind {
                FrameKind::Job | FrameKind::OneWayJob | FrameKind::JobBatch => {
                    filed.jobs.push_back(frame);
                }
                FrameKind::StreamJob => {
                    filed.flows.insert(frame.id, Flow::default());
                    filed.jobs.push_back(frame);
                }
                FrameKind::Credit => match parse_credit(&frame.payload) {
                    // Credit for a stream that already ended is stale, not wrong.
                    Some(items) => {
                        if let Some(flow) = filed.flows.get_mut(&frame.id) {
                            flow.credit += u64::from(items);
                        }
                    }
                    None => stop(&mut filed, CodecError::Malformed("credit is not a u32")),
                },
                FrameKind::Cancel => {
                    if let Some(flow) = filed.flows.get_mut(&frame.id) {
                        flow.cancelled = true;
                    }
                }
                FrameKind::Ping => {
                    // A pong is never held back with answers.
                    send_raw(&self.outbox, FrameKind::Pong, frame.id, &[]);
                    self.outbox.release();
                }
                FrameKind::Shutdown => filed.finished = true,
                FrameKind::HostHeartbeat => {}
                other => stop(&mut filed, CodecError::UnexpectedKind(other as u8)),
            },
            Ok(None) => filed.finished = true,
            Err(error) => stop(&mut filed, error),
        }
    }

    /// Wakes everyone waiting, e.g. after a stream ended or changed.
    pub(crate) fn wake_all(&self) {
        self.progress.notify_waiters();
    }
}

fn stop(filed: &mut Filed, error: CodecError) {
    filed.error.get_or_insert(error);
    filed.finished = true;
}

/// The reader, held by whoever drives it; putting it down (also when the
/// driving call is dropped) wakes the others, so one of them takes over.
struct Reading<'a> {
    reader: Option<tokio::sync::MutexGuard<'a, FrameReader<BoxedReader>>>,
    progress: &'a Notify,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        drop(self.reader.take());
        self.progress.notify_waiters();
    }
}
