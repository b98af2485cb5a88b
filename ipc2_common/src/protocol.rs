//! The wire protocol between a host and its workers.
//!
//! A connection carries frames. Every frame has a [`FrameKind`], a job id and
//! a payload. Job ids let replies be matched to requests, so a worker may
//! answer jobs out of order. The life of a connection:
//!
//! 1. the worker sends [`FrameKind::Hello`] with a bincode [`Hello`] (protocol
//!    version, its pid and the one-time secret it was given);
//! 2. the host answers [`FrameKind::Welcome`] or closes the connection;
//! 3. the host sends [`FrameKind::Job`] / [`FrameKind::OneWayJob`] /
//!    [`FrameKind::StreamJob`], or several jobs at once in a
//!    [`FrameKind::JobBatch`]; the worker answers each job with exactly one of
//!    [`FrameKind::Reply`], [`FrameKind::Failed`], [`FrameKind::NoReply`],
//!    [`FrameKind::JobFailed`], [`FrameKind::Panicked`], (for one-way jobs)
//!    [`FrameKind::Ack`] or (for stream jobs, after any number of
//!    [`FrameKind::Item`]s within the credit the host grants with
//!    [`FrameKind::Credit`]) [`FrameKind::StreamEnd`]; the host may
//!    [`FrameKind::Cancel`] a stream job; answers to a batch's jobs travel
//!    together in [`FrameKind::ReplyBatch`] frames;
//! 4. the host may send [`FrameKind::Ping`] (answered by [`FrameKind::Pong`]
//!    when the worker next looks for a job) and [`FrameKind::Shutdown`],
//!    after which the worker's receiver ends;
//! 5. the worker's last frame is [`FrameKind::Leaving`], saying how many jobs
//!    its code took, so the host can give the others to another worker.
//!
//! On a transport that passes descriptors, either side may also send, at
//! any point after the handshake, the shared-memory frames of
//! [`crate::shm`]: `RegionAttach` (with the region's descriptor),
//! `RegionDetach` and `BodyRelease`, each in a kind of its direction. A job
//! or reply whose message holds shared bodies carries their handles in a
//! table after its payload (flagged in the kind byte; see [`crate::codec`]).
//! A remote worker (one the host did not spawn, over a network) sends the
//! same `Hello` with an all-zero secret: its identity is its certificate,
//! checked by the transport. Its `Welcome` carries [`Terms`]; from then on
//! both sides send heartbeats ([`FrameKind::HostHeartbeat`],
//! [`FrameKind::WorkerHeartbeat`]) so that each notices a dead link or a
//! frozen peer.
//!
//! The layout of a frame in bytes is the business of [`crate::codec`].

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::shm::Body;

/// Version of this protocol; a worker built against another version is refused.
pub const PROTOCOL_VERSION: u32 = 3;

/// Environment variable holding the path of the host's socket.
pub const ENV_SOCKET: &str = "IPC2_SOCKET";
/// Environment variable holding the worker's one-time secret, hex encoded.
pub const ENV_SECRET: &str = "IPC2_SECRET";
/// Environment variable holding the maximum frame length both sides enforce.
pub const ENV_MAX_FRAME_LENGTH: &str = "IPC2_MAX_FRAME_LENGTH";
/// Environment variable holding how many jobs the host may give a worker at
/// once (`max_in_flight_per_worker`), so the worker can tell whether its jobs
/// need to run concurrently. Absent means 1.
pub const ENV_MAX_IN_FLIGHT: &str = "IPC2_MAX_IN_FLIGHT";
/// Environment variable naming the worker role of a self-executing host (a
/// host whose own executable serves as its worker). Set only for those
/// spawns; a worker checks it first thing in `main`.
pub const ENV_ROLE: &str = "IPC2_ROLE";
/// Environment variable holding the body size from which blobs travel
/// through shared memory.
pub const ENV_BLOB_THRESHOLD: &str = "IPC2_BLOB_THRESHOLD";
/// Environment variable holding the bound on each side's shared memory.
pub const ENV_SHARED_MEMORY_LIMIT: &str = "IPC2_SHARED_MEMORY_LIMIT";

/// Maximum length of a frame before the handshake has succeeded: a stranger
/// cannot make the host buffer more than this.
pub const HANDSHAKE_MAX_FRAME_LENGTH: usize = 1024;

/// What a frame means. The discriminant is the kind byte on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Host → worker: a job that expects a reply. Payload: the message.
    Job = 0x01,
    /// Host → worker: a job that expects no reply (answered by `Ack`).
    OneWayJob = 0x02,
    /// Host → worker: the handshake was accepted.
    Welcome = 0x03,
    /// Host → worker: finish up; no more jobs will come.
    Shutdown = 0x04,
    /// Host → worker: answer with [`FrameKind::Pong`] (same id) when you
    /// next look for a job. Sent after a job panicked, to learn whether the
    /// worker survived before giving it more work.
    Ping = 0x05,
    /// Host → worker: a job answered by a stream of [`FrameKind::Item`]s,
    /// then [`FrameKind::StreamEnd`] (or one of the other answers). Payload:
    /// the message. The worker may send only as many items as the host has
    /// granted with [`FrameKind::Credit`].
    StreamJob = 0x06,
    /// Host → worker: the caller made room for more items of stream job
    /// `id`. Payload: how many, a big-endian `u32`.
    Credit = 0x07,
    /// Host → worker: the caller of stream job `id` is gone; stop producing
    /// and end the job.
    Cancel = 0x08,
    /// Host → worker: several jobs that expect a reply, in one frame (a
    /// batch's jobs that were ready together). Their ids are consecutive,
    /// from the frame's id. Payload: `count: u32 BE`, then per job
    /// `len: u32 BE` and its message (never shared bodies). The worker
    /// answers them in [`FrameKind::ReplyBatch`]es, or any of them with a
    /// frame of its own (a reply that holds shared bodies).
    JobBatch = 0x09,
    /// Host → worker: a body the worker lent was dropped. Payload: region
    /// (u32), offset and length (u64), big endian.
    BodyRelease = 0x0d,
    /// Host → worker: a region of the host's was retired. Payload: region
    /// (u32).
    RegionDetach = 0x0e,
    /// Host → worker: a region of the host's; its descriptor comes with the
    /// frame (`SCM_RIGHTS`). Payload: region (u32), size (u64).
    RegionAttach = 0x0f,
    /// Host → worker: the host is alive (remote workers only). No payload.
    HostHeartbeat = 0x0c,
    /// Worker → host: the handshake. Payload: a bincode [`Hello`].
    Hello = 0x10,
    /// Worker → host: the reply to job `id`. Payload: the message.
    Reply = 0x11,
    /// Worker → host: job `id` was dropped without a reply.
    NoReply = 0x12,
    /// Worker → host: job `id` failed inside the worker library (for example
    /// it could not be decoded). Payload: a UTF-8 description.
    JobFailed = 0x13,
    /// Worker → host: one-way job `id` was handed to the worker's code.
    Ack = 0x14,
    /// Worker → host: the handler of job `id` panicked. Payload: a bincode
    /// [`PanicReport`].
    Panicked = 0x15,
    /// Worker → host: the worker's receiver is gone (its loop ended, or a
    /// panic is unwinding through it); no more jobs will be taken. Payload: a
    /// bincode [`Leaving`]. Always the last frame of a connection.
    Leaving = 0x16,
    /// Worker → host: the answer to [`FrameKind::Ping`] `id`.
    Pong = 0x17,
    /// Worker → host: the worker's code failed job `id` (an application
    /// failure, not a crash). Payload: the reason, UTF-8.
    Failed = 0x18,
    /// Worker → host: one item of stream job `id`. Payload: the message.
    Item = 0x19,
    /// Worker → host: stream job `id` ended normally after its items.
    StreamEnd = 0x1a,
    /// Worker → host: answers to jobs of [`FrameKind::JobBatch`] `id`, in
    /// any order and any grouping. Payload: per answer `index: u32 BE`
    /// (the job's place in the batch), its kind byte (one of the answers
    /// to a job: `Reply`, `NoReply`, `JobFailed`, `Failed`, `Panicked`),
    /// `len: u32 BE` and that answer's payload.
    ReplyBatch = 0x1b,
    /// Worker → host: as [`FrameKind::BodyRelease`].
    WorkerBodyRelease = 0x2d,
    /// Worker → host: as [`FrameKind::RegionDetach`].
    WorkerRegionDetach = 0x2e,
    /// Worker → host: as [`FrameKind::RegionAttach`].
    WorkerRegionAttach = 0x2f,
    /// Worker → host: the worker is alive (remote workers only). No payload.
    WorkerHeartbeat = 0x2c,
}

impl FrameKind {
    /// The kind for a kind byte, if it names one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::Job,
            0x02 => Self::OneWayJob,
            0x03 => Self::Welcome,
            0x04 => Self::Shutdown,
            0x05 => Self::Ping,
            0x06 => Self::StreamJob,
            0x07 => Self::Credit,
            0x08 => Self::Cancel,
            0x09 => Self::JobBatch,
            0x0c => Self::HostHeartbeat,
            0x10 => Self::Hello,
            0x11 => Self::Reply,
            0x12 => Self::NoReply,
            0x13 => Self::JobFailed,
            0x14 => Self::Ack,
            0x15 => Self::Panicked,
            0x16 => Self::Leaving,
            0x17 => Self::Pong,
            0x18 => Self::Failed,
            0x19 => Self::Item,
            0x1a => Self::StreamEnd,
            0x1b => Self::ReplyBatch,
            0x0d => Self::BodyRelease,
            0x0e => Self::RegionDetach,
            0x0f => Self::RegionAttach,
            0x2d => Self::WorkerBodyRelease,
            0x2e => Self::WorkerRegionDetach,
            0x2f => Self::WorkerRegionAttach,
            0x2c => Self::WorkerHeartbeat,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// What the frame means.
    pub kind: FrameKind,
    /// The job it belongs to (0 for frames that belong to no job).
    pub id: u64,
    /// The encoded message, or kind-specific bytes.
    pub payload: Bytes,
    /// The shared-memory bodies the message names, checked and in order
    /// (empty for most frames).
    pub bodies: Vec<Body>,
}

/// The worker's handshake.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the worker library.
    pub version: u32,
    /// The worker's process id, checked against the process the host spawned.
    pub pid: u32,
    /// The one-time secret from [`ENV_SECRET`].
    pub secret: [u8; 32],
}

/// Longest panic message a worker sends; longer ones are cut (at a character
/// boundary) so a report always fits a frame.
pub const MAX_PANIC_MESSAGE: usize = 4096;

/// What a worker reports when a job's handler panicked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PanicReport {
    /// The panic's message (its payload, when that is a string).
    pub message: String,
    /// Where it panicked, as `file:line:column`, when known.
    pub location: Option<String>,
}

/// A worker's farewell: the last frame it sends.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Leaving {
    /// Jobs its code took (each job of a `JobBatch` counts, as do `Job`
    /// and `OneWayJob` frames, in the order they were sent); any job sent
    /// after those was never started.
    pub yielded: u64,
    /// Whether a panic is taking the worker down.
    pub panicking: bool,
}

/// Longest failure reason a worker sends with [`FrameKind::Failed`]; longer
/// ones are cut (at a character boundary).
pub const MAX_FAIL_REASON: usize = 64 * 1024;

/// Encodes a [`FrameKind::Credit`] payload.
pub fn credit_payload(items: u32) -> [u8; 4] {
    items.to_be_bytes()
}

/// Decodes a [`FrameKind::Credit`] payload; `None` if it is not exactly a
/// `u32`.
pub fn parse_credit(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.try_into().ok()?))
}

/// What a host tells a remote worker in the payload of its `Welcome` (a
/// spawned worker's `Welcome` is empty: its environment told it everything).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The maximum frame length both sides enforce from now on.
    pub max_frame_length: u64,
    /// Jobs the host may give this worker at once.
    pub max_in_flight: u64,
    /// How often each side sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long either side waits without hearing a byte from the other
    /// before it drops the connection.
    pub heartbeat_timeout: Duration,
}
