//! Frame layout and message encoding: the one place that knows the wire format.
//!
//! A frame on the wire is
//!
//! ```text
//! +----------------+---------+----------------+-------------------+
//! | length: u32 BE | kind u8 | job id: u64 BE | payload ...       |
//! +----------------+---------+----------------+-------------------+
//!                  |<------------------ length ------------------>|
//! ```
//!
//! The length is checked against the connection's maximum before a byte of
//! the frame is buffered, so a peer cannot make this side allocate more than
//! the limit. Payloads are bincode 1.3.3 (varint integers, little endian),
//! decoded with a byte limit equal to the payload's size, so no length field
//! inside a payload can request more memory than the frame carried. Swapping
//! the serializer means changing [`encode_frame`] and [`decode_message`] only.

use bincode::Options;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::Decoder;

use crate::error::CodecError;
use crate::protocol::{Frame, FrameKind};

/// Default maximum frame length: 16 MiB. Both sides enforce it; configure it
/// with `max_frame_length` on the host's builder (workers learn it from the
/// host through their environment).
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix.
const LENGTH_LEN: usize = 4;
/// Bytes of kind and job id, counted in the length.
const ENVELOPE_LEN: usize = 1 + 8;
/// Bytes before the payload.
pub const HEADER_LEN: usize = LENGTH_LEN + ENVELOPE_LEN;

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Encodes a frame whose payload is `message`, serialized in place after the
/// header into a buffer sized for it up front: one allocation, no
/// intermediate copy, whatever the message's size.
///
/// Fails with [`CodecError::FrameTooLarge`] when the encoded frame would be
/// longer than `max_frame_length`.
pub fn encode_frame<T: Serialize + ?Sized>(
    kind: FrameKind,
    id: u64,
    message: &T,
    max_frame_length: usize,
) -> Result<Bytes, CodecError> {
    let size = bincode_options()
        .serialized_size(message)
        .map_err(|e| CodecError::Encode(e))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size > max_frame_length.saturating_sub(HEADER_LEN - LENGTH_LEN) {
        return Err(CodecError::FrameTooLarge {
            size: size.saturating_add(HEADER_LEN - LENGTH_LEN),
            max: max_frame_length,
        });
    }
    let mut buf = BytesMut::with_capacity(HEADER_LEN + size);
    put_header(&mut buf, kind, id);
    let mut writer = buf.writer();
    bincode_options()
        .serialize_into(&mut writer, message)
        .map_err(|e| CodecError::Encode(e))?;
    finish_frame(writer.into_inner(), max_frame_length)
}

/// Encodes a frame whose payload is the given bytes.
pub fn encode_raw_frame(
    kind: FrameKind,
    id: u64,
    payload: &[u8],
    max_frame_length: usize,
) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    put_header(&mut buf, kind, id);
    buf.extend_from_slice(payload);
    finish_frame(buf, max_frame_length)
}

fn put_header(buf: &mut BytesMut, kind: FrameKind, id: u64) {
    buf.put_u32(0); // patched by `finish_frame`
    buf.put_u8(kind as u8);
    buf.put_u64(id);
}

fn finish_frame(mut buf: BytesMut, max_frame_length: usize) -> Result<Bytes, CodecError> {
    let length = buf.len() - LENGTH_LEN;
    let too_large = CodecError::FrameTooLarge {
        size: length,
        max: max_frame_length,
    };
    if length > max_frame_length {
        return Err(too_large);
    }
    let length = u32::try_from(length).map_err(|_| too_large)?;
    buf[..LENGTH_LEN].copy_from_slice(&length.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a message from a frame's payload. The whole payload must be
/// consumed, and no more than its length may be read or allocated.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    bincode_options()
        .with_limit(payload.len() as u64)
        .deserialize(payload)
        .map_err(|e| CodecError::Decode(e))
}

/// Splits a byte stream into [`Frame`]s, refusing any frame longer than its
/// limit before buffering it.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_frame_length: usize,
}

impl FrameCodec {
    /// A codec that accepts frames of at most `max_frame_length` bytes
    /// (counted after the length prefix).
    pub fn new(max_frame_length: usize) -> Self {
        Self { max_frame_length }
    }

    /// Bytes still missing from the frame at the start of `src`, once its
    /// length prefix has arrived; `None` before that.
    pub fn missing(&self, src: &[u8]) -> Option<usize> {
        let length = u32::from_be_bytes(*src.first_chunk::<LENGTH_LEN>()?) as usize;
        Some((LENGTH_LEN + length).saturating_sub(src.len()))
    }

    /// Changes the limit, e.g. after a handshake has succeeded.
    pub fn set_max_frame_length(&mut self, max_frame_length: usize) {
        self.max_frame_length = max_frame_length;
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LENGTH)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(prefix) = src.first_chunk::<LENGTH_LEN>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*prefix) as usize;
        if length > self.max_frame_length {
            return Err(CodecError::FrameTooLarge {
                size: length,
                max: self.max_frame_length,
            });
        }
        if length < ENVELOPE_LEN {
            return Err(CodecError::Malformed(
                "frame is shorter than its kind and job id",
            ));
        }
        let total = LENGTH_LEN + length;
        if src.len() < total {
            // Nothing is reserved here: the reader grows its buffer with the
            // bytes that actually arrive (see `FrameReader`), so a length
            // prefix alone allocates nothing.
            return Ok(None);
        }
        let kind_byte = src[LENGTH_LEN];
        let kind = FrameKind::from_byte(kind_byte).ok_or(CodecError::UnexpectedKind(kind_byte))?;
        src.advance(LENGTH_LEN + 1);
        let id = src.get_u64();
        let payload = src.split_to(length - ENVELOPE_LEN).freeze();
        Ok(Some(Frame { kind, id, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, bytes: &[u8]) -> Result<Vec<Frame>, CodecError> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            frames.push(frame);
        }
        Ok(frames)
    }

    #[test]
    fn round_trip() {
        let frame = encode_frame(FrameKind::Job, 42, &(6u32, 7u32), 1024).unwrap();
        let frames = decode_all(&mut FrameCodec::new(1024), &frame).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].kind, FrameKind::Job);
        assert_eq!(frames[0].id, 42);
        let (a, b): (u32, u32) = decode_message(&frames[0].payload).unwrap();
        assert_eq!((a, b), (6, 7));
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut bytes = (u32::MAX).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 0, 0]);
        let err = decode_all(&mut FrameCodec::new(1024), &bytes).unwrap_err();
        match err {
            CodecError::FrameTooLarge { size, max } => {
                assert_eq!(size, u32::MAX as usize);
                assert_eq!(max, 1024);
            }
            other => panic!("unexpected error {other:?}"),
        }
        let message = CodecError::FrameTooLarge { size: 5, max: 4 }.to_string();
        assert!(message.contains('5') && message.contains('4'));
    }

    #[test]
    fn oversized_encode_is_refused() {
        let err = encode_frame(FrameKind::Reply, 1, &vec![0u8; 100], 50).unwrap_err();
        assert!(matches!(err, CodecError::FrameTooLarge { max: 50, .. }));
    }

    #[test]
    fn unknown_kind_and_short_frames_are_errors() {
        let bad_kind = [0, 0, 0, 9, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode_all(&mut FrameCodec::new(64), &bad_kind),
            Err(CodecError::UnexpectedKind(0x7f))
        ));
        let short = [0, 0, 0, 2, 1, 0];
        assert!(matches!(
            decode_all(&mut FrameCodec::new(64), &short),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn inner_length_fields_are_checked_against_the_payload() {
        // A `Vec<u8>` claiming 2^60 elements inside a 9-byte payload (0xfd
        // announces an 8-byte varint). The allocation bound itself is
        // checked with a counting allocator in tests/hostile.rs.
        let mut payload = vec![0xfd_u8];
        payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let err = decode_message::<Vec<u8>>(&payload).unwrap_err();
        assert!(matches!(err, CodecError::Decode(_)));
    }
}
