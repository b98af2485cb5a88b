//! Errors of the shared layer: framing, encoding and the byte stream.
//!
//! Every error that input from the other side of a socket can cause ends up
//! here as a value; nothing in this crate panics on what it reads.

use std::io;

/// Boxed error of the message serializer, kept opaque so the wire format can
/// be swapped without changing this type.
pub type SerializerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong while reading, writing, encoding or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A frame announced (or would have) more bytes than the limit allows.
    /// Nothing was allocated for it.
    #[error(
        "frame of {size} bytes exceeds the maximum frame length of {max} bytes; \
         raise `max_frame_length` on the WorkerSet builder if messages this large are expected"
    )]
    FrameTooLarge {
        /// Size the frame announced or would have had.
        size: usize,
        /// The limit in force on this connection.
        max: usize,
    },
    /// The bytes do not form a valid frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// The frame's kind byte names no frame this side accepts.
    #[error("unexpected frame kind {0:#04x}")]
    UnexpectedKind(u8),
    /// The peer closed the stream part-way through a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes of it had arrived)")]
    Truncated {
        /// Bytes of the incomplete frame that were received.
        buffered: usize,
    },
    /// A message could not be serialized.
    #[error("could not encode message: {0}")]
    Encode(#[source] SerializerError),
    /// A message could not be deserialized into the expected type.
    #[error("could not decode message: {0}")]
    Decode(#[source] SerializerError),
    /// A shared-memory frame or handle broke the rules.
    #[error("shared memory: {0}")]
    Shm(#[from] crate::shm::ShmError),
    /// The underlying stream failed.
    #[error("I/O error on the ipc2 connection: {0}")]
    Io(#[from] io::Error),
}
