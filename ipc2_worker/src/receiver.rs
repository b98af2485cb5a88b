//! Where a worker's jobs arrive.
//!
//! [`Receiver::recv`] takes the next job frame the host sent (reading the
//! connection itself when nothing is waiting; see the `inbound` module),
//! decodes it into the worker's message type and hands it out as a
//! [`Job`]. A job that cannot be decoded is answered with an error frame on
//! the spot (the host's caller learns why) and `recv` moves on to the next.
//!
//! The receiver counts the jobs it hands out. When it is dropped (the
//! worker's loop ended, or a panic unwinds through it) it tells the host
//! that count in a `Leaving` frame, so jobs the host sent that the worker's
//! code never took go to another worker instead of failing with this one.
//! A panic is about to end the process then: the receiver writes what is
//! queued (the panicking job's report among it) from the dying thread, as
//! the runtime's writer task may never run again.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ipc2_common::codec::{decode_message_with_bodies, encode_frame};
use ipc2_common::{CodecError, FrameKind, Leaving, Outbox};
use serde::de::DeserializeOwned;

use crate::inbound::Inbound;
use crate::job::{Job, ReplySender, send_raw};

/// How long a worker that a panic is taking down may spend writing its last
/// frames to the host.
const FLUSH_ON_PANIC: Duration = Duration::from_secs(2);

/// Yields the jobs the host sends to this worker.
pub struct Receiver<In, Out> {
    inbound: Arc<Inbound>,
    outbox: Outbox,
    max_frame_length: usize,
    max_in_flight: usize,
    /// Why the stream of jobs ended, once it has, if not cleanly.
    error: Option<CodecError>,
    /// Job frames handled so far, in the order the host sent them.
    yielded: u64,
    _messages: PhantomData<fn() -> (In, Out)>,
}

impl<In: DeserializeOwned, Out> Receiver<In, Out> {
    pub(crate) fn new(inbound: Arc<Inbound>, outbox: Outbox, max_frame_length: usize) -> Self {
        Self {
            inbound,
            outbox,
            max_frame_length,
            max_in_flight: 1,
            error: None,
            yielded: 0,
            _messages: PhantomData,
        }
    }

    pub(crate) fn with_max_in_flight(mut self, jobs: usize) -> Self {
        self.max_in_flight = jobs;
        self
    }

    /// How many jobs the host may give this worker at once (the pool's
    /// `max_in_flight_per_worker`). Above 1, a worker that wants to use
    /// them runs jobs concurrently (e.g. moves each `tx` into its own task).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The next job, or `None` once the host has closed the connection or
    /// asked this worker to shut down. Before returning `None` it waits until
    /// every reply sent so far has been written to the host.
    ///
    /// Cancel safe: dropping the future loses no job.
    pub async fn recv(&mut self) -> Option<Job<In, Out>> {
        loop {
            self.inbound.drive(|filed| !filed.jobs.is_empty()).await;
            let frame = {
                let mut filed = self.inbound.filed();
                let frame = filed.jobs.pop_front();
                if frame.is_none() {
                    self.error = filed.error.take();
                }
                // This job's answer goes out with those of the jobs behind
                // it, or alone and at once if it is the last.
                self.outbox.more_coming(!filed.jobs.is_empty());
                frame
            };
            let Some(frame) = frame else { break };
            self.yielded += 1;
            let data = match decode_message_with_bodies::<In>(&frame.payload, frame.bodies) {
                Ok(data) => data,
                Err(error) => {
                    let message = format!("the worker could not decode the job: {error}");
                    let reason = message.as_bytes();
                    send_raw(&self.outbox, FrameKind::JobFailed, frame.id, reason);
                    if frame.kind == FrameKind::StreamJob {
                        self.inbound.filed().flows.remove(&frame.id);
                    }
                    continue;
                }
            };
            if frame.kind == FrameKind::OneWayJob {
                send_raw(&self.outbox, FrameKind::Ack, frame.id, &[]);
                return Some(Job::Unidirectional { data });
            }
            let stream = (frame.kind == FrameKind::StreamJob).then(|| Arc::clone(&self.inbound));
            let tx = ReplySender::new(frame.id, self.outbox.clone(), self.max_frame_length, stream);
            return Some(Job::Bidirectional { data, tx });
        }
        self.outbox.flushed().await;
        None
    }

    /// Why the stream of jobs ended, if it ended because of an error rather
    /// than a clean close or shutdown request from the host.
    pub fn error(&self) -> Option<&CodecError> {
        self.error.as_ref()
    }

    /// [`error`](Self::error), taken out.
    pub(crate) fn take_error(&mut self) -> Option<CodecError> {
        self.error.take()
    }
}

impl<In, Out> Receiver<In, Out> {
    /// The outbox replies go through (for the blocking worker, which flushes
    /// it before its runtime stops).
    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl<In, Out> Drop for Receiver<In, Out> {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let leaving = Leaving {
            yielded: self.yielded,
            panicking,
        };
        if let Ok(frame) = encode_frame(FrameKind::Leaving, 0, &leaving, usize::MAX) {
            let _ = self.outbox.send(frame);
        }
        if panicking {
            self.outbox.flush_blocking(FLUSH_ON_PANIC);
        }
    }
}

impl<In, Out> std::fmt::Debug for Receiver<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("jobs_taken", &self.yielded)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}
