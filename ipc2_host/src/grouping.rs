//! Which jobs of a batch share a frame.
//!
//! `send_batch` hands the pool many jobs at once. Sent one frame each, a
//! small job costs more in framing, routing and answering than in the
//! worker's own code; so jobs of a batch that are ready together go to a
//! worker in one `JobBatch` frame (the wire layout is in
//! `ipc2_common::codec::batch`), which the pool routes, tracks and times as
//! one job of that many jobs' weight, and the worker answers in
//! `ReplyBatch` frames. Each job still gets its own outcome.
//!
//! A frame holds at most half of `max_in_flight_per_worker` jobs (so a
//! worker always has the next frame while it answers one), and no more than
//! an even share of the batch for each worker (so a small batch still
//! spreads over all of them). Grouping is off where a frame of many jobs
//! would change what a job's failure means or how it is counted: with
//! retries (a frame cannot be partly sent again), with
//! `max_jobs_per_worker`, and with a bounded queue (whose places count
//! jobs). A job whose message holds shared bodies travels alone, in a frame
//! with their table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ipc2_common::CodecError;
use ipc2_common::codec::Prepared;
use ipc2_common::codec::batch::JobBatchWriter;
use ipc2_common::shm::Lent;
use serde::Serialize;

use crate::config::Config;
use crate::dispatch::{Job, JobKind};
use crate::error::Error;
use crate::responder::{Batch, Responder};

/// Most jobs in one frame.
const MAX_PER_FRAME: usize = 1024;

/// Puts a batch's jobs into `JobBatch` frames.
pub(crate) struct Grouper<'b> {
    batch: &'b Arc<Batch>,
    ids: &'b AtomicU64,
    per_frame: u32,
    max_frame_length: usize,
    timeout: Option<Duration>,
    /// The frame being filled: its jobs' first id, and their places in the
    /// batch.
    open: Option<(JobBatchWriter, u64, Vec<usize>)>,
}

impl<'b> Grouper<'b> {
    /// A grouper for a batch of `jobs` jobs under `config`, taking job ids
    /// from `ids`; `None` when jobs should travel one per frame.
    pub(crate) fn new(
        config: &Config,
        jobs: usize,
        batch: &'b Arc<Batch>,
        ids: &'b AtomicU64,
    ) -> Option<Self> {
        let slots = (config.worker_count + config.remote_slots).max(1);
        let per_frame = (config.max_in_flight / 2)
            .min(jobs.div_ceil(2 * slots))
            .min(MAX_PER_FRAME);
        let plain = config.max_attempts == 1
            && config.max_jobs_per_worker.is_none()
            && config.queue_capacity.is_none();
        (plain && per_frame >= 2).then_some(Self {
            batch,
            ids,
            per_frame: per_frame as u32,
            max_frame_length: config.max_frame_length,
            timeout: config.job_timeout,
            open: None,
        })
    }

    /// Most jobs in one frame, for this batch.
    pub(crate) fn per_frame(&self) -> usize {
        self.per_frame as usize
    }

    /// Adds the job at `place` in the batch to the open frame, moving a
    /// frame that is full into `ready`. Gives the message back when it must
    /// travel alone (it holds shared bodies, or is too large for a frame
    /// with others).
    pub(crate) fn add<'m, T: Serialize + ?Sized>(
        &mut self,
        place: usize,
        message: Prepared<'m, T>,
        ready: &mut Vec<Job>,
    ) -> Result<(), Prepared<'m, T>> {
        if message.has_bodies() {
            return Err(message);
        }
        if self
            .open
            .as_ref()
            .is_some_and(|(writer, _, _)| !writer.fits(message.size()))
        {
            self.close(ready);
        }
        let (per_frame, ids, max) = (self.per_frame, self.ids, self.max_frame_length);
        let (writer, _, places) = self.open.get_or_insert_with(|| {
            let first = ids.fetch_add(u64::from(per_frame), Ordering::Relaxed);
            let writer = JobBatchWriter::new(first, max);
            (writer, first, Vec::with_capacity(per_frame as usize))
        });
        if !writer.fits(message.size()) || writer.push(&message).is_err() {
            return Err(message);
        }
        places.push(place);
        let full = writer.count() >= per_frame;
        if full {
            self.close(ready);
        }
        Ok(())
    }

    /// Moves the open frame, if it holds any job, into `ready`.
    pub(crate) fn close(&mut self, ready: &mut Vec<Job>) {
        let Some((writer, first, places)) = self.open.take() else {
            return;
        };
        let members = writer.count();
        if members == 0 {
            return;
        }
        let reply = self.batch.members(places);
        match writer.finish() {
            Ok(frame) => ready.push(self.job(first, frame, members, reply)),
            // Cannot happen: every job was checked to fit.
            Err(_) => reply
                .fail(|| Error::Encode(CodecError::Malformed("a batch of jobs outgrew its frame"))),
        }
    }

    fn job(&self, id: u64, frame: Bytes, members: u32, reply: Responder) -> Job {
        Job {
            id,
            frame,
            lent: Lent::default(),
            kind: JobKind::Reply,
            members,
            timeout: self.timeout,
            attempts: 0,
            keep_frame: false,
            reply,
            holds_place: false,
        }
    }
}
