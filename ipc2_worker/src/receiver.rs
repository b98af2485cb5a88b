//! Where a worker's jobs arrive.
//!
//! [`Receiver::recv`] reads the next frame from the host, decodes it into the
//! worker's message type and hands it out as a [`Job`]. A job that cannot be
//! decoded is answered with an error frame on the spot (the host's caller
//! learns why) and `recv` moves on to the next one.
//!
//! On a remote connection (see [`crate::remote`]) the receiver also sends
//! heartbeats and drops the connection when it has heard nothing from the
//! host for the heartbeat timeout.

use std::marker::PhantomData;

use ipc2_common::codec::{decode_message, encode_raw_frame};
use ipc2_common::connection::BoxedReader;
use ipc2_common::liveness::LastHeard;
use ipc2_common::{CodecError, Frame, FrameKind, FrameReader, Heartbeat, Outbox};
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::job::{Job, ReplySender, send_raw};

/// Yields the jobs the host sends to this worker.
pub struct Receiver<In, Out> {
    reader: FrameReader<BoxedReader>,
    outbox: Outbox,
    max_frame_length: usize,
    finished: bool,
    error: Option<CodecError>,
    /// On a remote connection: the heartbeat, when the host was last heard,
    /// and the task that sends this side's heartbeats.
    watchdog: Option<Watchdog>,
    _messages: PhantomData<fn() -> (In, Out)>,
}

struct Watchdog {
    heartbeat: Heartbeat,
    heard: LastHeard,
    beats: AbortHandle,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.beats.abort();
    }
}

impl<In: DeserializeOwned, Out> Receiver<In, Out> {
    pub(crate) fn new(
        reader: FrameReader<BoxedReader>,
        outbox: Outbox,
        max_frame_length: usize,
    ) -> Self {
        Self {
            reader,
            outbox,
            max_frame_length,
            finished: false,
            error: None,
            watchdog: None,
            _messages: PhantomData,
        }
    }

    /// Sends a heartbeat to the host every `heartbeat.interval` while this
    /// receiver lives, and ends the stream of jobs when nothing has arrived
    /// (as stamped on `heard`) for `heartbeat.timeout`.
    pub(crate) fn with_heartbeat(mut self, heartbeat: Heartbeat, heard: LastHeard) -> Self {
        let outbox = self.outbox.clone();
        let beats = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(heartbeat.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Ok(beat) = encode_raw_frame(FrameKind::WorkerHeartbeat, 0, &[], usize::MAX)
                else {
                    return;
                };
                if outbox.send(beat).is_err() {
                    return;
                }
            }
        });
        self.watchdog = Some(Watchdog {
            heartbeat,
            heard,
            beats: beats.abort_handle(),
        });
        self
    }

    /// The next frame. With a watchdog, fails once nothing has arrived for
    /// the heartbeat timeout; a caller that was away (busy with a job) gets
    /// at least one heartbeat interval for the host's next sign of life.
    async fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        let Some(watchdog) = &self.watchdog else {
            return self.reader.next().await;
        };
        let Heartbeat { interval, timeout } = watchdog.heartbeat;
        let heard = watchdog.heard.clone();
        let grace = Instant::now() + interval;
        loop {
            let deadline = heard.deadline(timeout).max(grace);
            match tokio::time::timeout_at(deadline, self.reader.next()).await {
                Ok(frame) => return frame,
                // Bytes of a large frame arrived meanwhile: keep reading.
                Err(_) if heard.deadline(timeout) > Instant::now() => continue,
                Err(_) => {
                    return Err(CodecError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("nothing heard from the host for {timeout:?}"),
                    )));
                }
            }
        }
    }

    /// The next job, or `None` once the host has closed the connection or
    /// asked this worker to shut down. Before returning `None` it waits until
    /// every reply sent so far has been written to the host.
    ///
    /// Cancel safe: dropping the future loses no job.
    pub async fn recv(&mut self) -> Option<Job<In, Out>> {
        while !self.finished {
            let frame = match self.next_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    self.error = Some(error);
                    break;
                }
            };
            match frame.kind {
                FrameKind::Job | FrameKind::OneWayJob => {
                    let data = match decode_message::<In>(&frame.payload) {
                        Ok(data) => data,
                        Err(error) => {
                            let message = format!("the worker could not decode the job: {error}");
                            send_raw(
                                &self.outbox,
                                FrameKind::JobFailed,
                                frame.id,
                                message.as_bytes(),
                            );
                            continue;
                        }
                    };
                    if frame.kind == FrameKind::OneWayJob {
                        send_raw(&self.outbox, FrameKind::Ack, frame.id, &[]);
                        return Some(Job::Unidirectional { data });
                    }
                    let tx = ReplySender::new(frame.id, self.outbox.clone(), self.max_frame_length);
                    return Some(Job::Bidirectional { data, tx });
                }
                FrameKind::Shutdown => break,
                FrameKind::HostHeartbeat => continue,
                other => {
                    self.error = Some(CodecError::UnexpectedKind(other as u8));
                    break;
                }
            }
        }
        self.finished = true;
        self.outbox.flushed().await;
        None
    }

    /// Why the stream of jobs ended, if it ended because of an error rather
    /// than a clean close or shutdown request from the host.
    pub fn error(&self) -> Option<&CodecError> {
        self.error.as_ref()
    }
}
