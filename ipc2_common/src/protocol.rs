//! The wire protocol between a host and its workers.
//!
//! A connection carries frames. Every frame has a [`FrameKind`], a job id and
//! a payload. Job ids let replies be matched to requests, so a worker may
//! answer jobs out of order. The life of a connection:
//!
//! 1. the worker sends [`FrameKind::Hello`] with a bincode [`Hello`] (protocol
//!    version, its pid and the one-time secret it was given);
//! 2. the host answers [`FrameKind::Welcome`] or closes the connection;
//! 3. the host sends [`FrameKind::Job`] / [`FrameKind::OneWayJob`]; the worker
//!    answers each with exactly one of [`FrameKind::Reply`],
//!    [`FrameKind::NoReply`], [`FrameKind::JobFailed`] or (for one-way jobs)
//!    [`FrameKind::Ack`];
//! 4. the host may send [`FrameKind::Shutdown`], after which the worker's
//!    receiver ends.
//!
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

/// Version of this protocol; a worker built against another version is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// Environment variable holding the path of the host's socket.
pub const ENV_SOCKET: &str = "IPC2_SOCKET";
/// Environment variable holding the worker's one-time secret, hex encoded.
pub const ENV_SECRET: &str = "IPC2_SECRET";
/// Environment variable holding the maximum frame length both sides enforce.
pub const ENV_MAX_FRAME_LENGTH: &str = "IPC2_MAX_FRAME_LENGTH";

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
    /// Host → worker: the host is alive (remote workers only). No payload.
    HostHeartbeat = 0x0f,
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
    /// Worker → host: the worker is alive (remote workers only). No payload.
    WorkerHeartbeat = 0x2f,
}

impl FrameKind {
    /// The kind for a kind byte, if it names one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::Job,
            0x02 => Self::OneWayJob,
            0x03 => Self::Welcome,
            0x04 => Self::Shutdown,
            0x0f => Self::HostHeartbeat,
            0x10 => Self::Hello,
            0x11 => Self::Reply,
            0x12 => Self::NoReply,
            0x13 => Self::JobFailed,
            0x14 => Self::Ack,
            0x2f => Self::WorkerHeartbeat,
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

/// What a host tells a remote worker in the payload of its `Welcome` (a
/// spawned worker's `Welcome` is empty: its environment told it everything).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The maximum frame length both sides enforce from now on.
    pub max_frame_length: u64,
    /// How often each side sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// How long either side waits without hearing a byte from the other
    /// before it drops the connection.
    pub heartbeat_timeout: Duration,
}
