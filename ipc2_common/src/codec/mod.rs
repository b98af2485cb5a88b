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
//!
//! A job or reply whose message holds [`Blob`](crate::Blob)s placed in
//! shared memory ([`encode_frame_with_bodies`]) has the top bit of its kind
//! byte set, and its payload ends with the table of their handles:
//!
//! ```text
//! | message ... | handle 0 | ... | handle n-1 | n: u32 BE |
//! handle = owner u8 (0 sender's, 1 receiver's) | region u32 BE | offset u64 BE | len u64 BE
//! ```
//!
//! In the message, each such blob is the index of its handle. A
//! [`FrameCodec`] with a [`Link`] checks the handles before it hands the
//! frame out (its [`Frame::bodies`]), and takes the shared-memory control
//! frames (`RegionAttach`, `RegionDetach`, `BodyRelease`) itself.

use std::sync::Arc;

use bincode::Options;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Serialize, de::DeserializeOwned};
use tokio_util::codec::Decoder;

use crate::blob::{Decoding, Encoding};
use crate::error::CodecError;
use crate::protocol::{Frame, FrameKind};
use crate::shm::{self, Body, Control, Handle, Lent, Link, Owner, Side};

pub mod batch;

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
/// Kind-byte flag of a frame whose payload ends with a table of handles.
const WITH_BODIES: u8 = 0x80;
/// Bytes of one handle in the table.
const HANDLE_LEN: usize = 1 + 4 + 8 + 8;
/// Bytes of the table's count.
const COUNT_LEN: usize = 4;
/// Most handles one frame may carry.
const MAX_HANDLES: usize = 1 << 16;

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
    prepare(message, false, None)?.write_plain_frame(kind, id, max_frame_length)
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
    put_header_byte(buf, kind as u8, id);
}

fn put_header_byte(buf: &mut BytesMut, kind: u8, id: u64) {
    buf.put_u32(0); // patched by `finish_frame`
    buf.put_u8(kind);
    buf.put_u64(id);
}

/// Encodes a frame like [`encode_frame`], except that with `shared` (the
/// connection can pass descriptors) every [`Blob`](crate::Blob) in the
/// message of at least the threshold travels in shared memory: placed there
/// if it is not yet (one copy), named by a handle in the frame's table. On
/// a worker, `link` is its connection (a body the host lent may then be
/// passed back without a copy); on the host it is `None` (the worker is not
/// chosen yet). Returns the frame and the bodies it names, to lend to the
/// connection it goes to and keep until it is queued.
pub fn encode_frame_with_bodies<T: Serialize + ?Sized>(
    kind: FrameKind,
    id: u64,
    message: &T,
    max_frame_length: usize,
    shared: bool,
    link: Option<&Arc<Link>>,
) -> Result<(Bytes, Lent), CodecError> {
    prepare(message, shared, link)?.into_frame(kind, id, max_frame_length)
}

/// A message sized for encoding, its shared bodies (if any) already placed:
/// the first half of [`encode_frame_with_bodies`], so that a caller can
/// choose, knowing whether the message holds shared bodies, between a frame
/// of its own and a place in a batch ([`batch`]).
pub struct Prepared<'m, T: ?Sized> {
    message: &'m T,
    /// `None` when nothing travels in shared memory on this connection.
    encoding: Option<Encoding>,
    size: usize,
}

/// Sizes `message`, placing its large blobs in shared memory when `shared`
/// (see [`encode_frame_with_bodies`]).
pub fn prepare<'m, T: Serialize + ?Sized>(
    message: &'m T,
    shared: bool,
    link: Option<&Arc<Link>>,
) -> Result<Prepared<'m, T>, CodecError> {
    let (encoding, size) = if shared {
        let mut encoding = Encoding::new(shm::blob_threshold(), link);
        let size = encoding.run(|| bincode_options().serialized_size(message));
        (Some(encoding), size)
    } else {
        (None, bincode_options().serialized_size(message))
    };
    let size = size.map_err(|e| CodecError::Encode(e))?;
    Ok(Prepared {
        message,
        encoding,
        size: usize::try_from(size).unwrap_or(usize::MAX),
    })
}

impl<T: Serialize + ?Sized> Prepared<'_, T> {
    /// Whether the message names bodies in shared memory (then it needs a
    /// frame of its own, with their table).
    pub fn has_bodies(&self) -> bool {
        self.encoding
            .as_ref()
            .is_some_and(|encoding| !encoding.handles.is_empty())
    }

    /// Bytes of the encoded message, without a table of handles.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The frame, and the bodies it names (to lend to the connection it
    /// goes to).
    pub fn into_frame(
        mut self,
        kind: FrameKind,
        id: u64,
        max_frame_length: usize,
    ) -> Result<(Bytes, Lent), CodecError> {
        let Some(mut encoding) = self
            .encoding
            .take()
            .filter(|encoding| !encoding.handles.is_empty())
        else {
            let frame = self.write_plain_frame(kind, id, max_frame_length)?;
            return Ok((frame, Lent::default()));
        };
        let handles = encoding.handles.len();
        let payload = self.size.saturating_add(handles * HANDLE_LEN + COUNT_LEN);
        if payload > max_frame_length.saturating_sub(ENVELOPE_LEN) || handles > MAX_HANDLES {
            return Err(CodecError::FrameTooLarge {
                size: payload.saturating_add(ENVELOPE_LEN),
                max: max_frame_length,
            });
        }
        let mut buf = BytesMut::with_capacity(HEADER_LEN + payload);
        put_header_byte(&mut buf, kind as u8 | WITH_BODIES, id);
        let mut writer = buf.writer();
        encoding.start_writing();
        encoding
            .run(|| bincode_options().serialize_into(&mut writer, self.message))
            .map_err(|e| CodecError::Encode(e))?;
        if !encoding.complete() {
            return Err(CodecError::Encode(
                "the message serialized fewer Blobs than when it was sized".into(),
            ));
        }
        let mut buf = writer.into_inner();
        for handle in &encoding.handles {
            buf.put_u8(match handle.owner {
                Owner::Sender => 0,
                Owner::Receiver => 1,
            });
            buf.put_u32(handle.region);
            buf.put_u64(handle.offset);
            buf.put_u64(handle.len);
        }
        buf.put_u32(handles as u32);
        let frame = finish_frame(buf, max_frame_length)?;
        Ok((frame, std::mem::take(&mut encoding.lent)))
    }

    /// A frame of the message with every blob inline.
    fn write_plain_frame(
        &self,
        kind: FrameKind,
        id: u64,
        max_frame_length: usize,
    ) -> Result<Bytes, CodecError> {
        if self.size > max_frame_length.saturating_sub(ENVELOPE_LEN) {
            return Err(CodecError::FrameTooLarge {
                size: self.size.saturating_add(ENVELOPE_LEN),
                max: max_frame_length,
            });
        }
        let mut buf = BytesMut::with_capacity(HEADER_LEN + self.size);
        put_header(&mut buf, kind, id);
        self.write_plain(&mut buf)?;
        finish_frame(buf, max_frame_length)
    }

    /// Appends the message to `buf`, every blob inline (what it is when it
    /// [has no bodies](Self::has_bodies)).
    fn write_plain(&self, buf: &mut BytesMut) -> Result<(), CodecError> {
        let mut writer = buf.writer();
        bincode_options()
            .serialize_into(&mut writer, self.message)
            .map_err(|e| CodecError::Encode(e))
    }
}

/// Encodes a shared-memory control frame sent by `side`.
pub fn encode_control(side: Side, control: Control) -> Bytes {
    use FrameKind::*;
    let host = side == Side::Host;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 20);
    match control {
        Control::Attach { region, len } => {
            put_header(
                &mut buf,
                if host {
                    RegionAttach
                } else {
                    WorkerRegionAttach
                },
                0,
            );
            buf.put_u32(region);
            buf.put_u64(len);
        }
        Control::Detach { region } => {
            put_header(
                &mut buf,
                if host {
                    RegionDetach
                } else {
                    WorkerRegionDetach
                },
                0,
            );
            buf.put_u32(region);
        }
        Control::Release {
            region,
            offset,
            len,
        } => {
            put_header(
                &mut buf,
                if host { BodyRelease } else { WorkerBodyRelease },
                0,
            );
            buf.put_u32(region);
            buf.put_u64(offset);
            buf.put_u64(len);
        }
    }
    put_length(&mut buf);
    buf.freeze()
}

/// The control message of a control frame sent by the other side than
/// `receiver`, `None` if `kind` is not one.
fn decode_control(
    receiver: Side,
    kind: FrameKind,
    mut payload: &[u8],
) -> Option<Result<Control, CodecError>> {
    use FrameKind::*;
    let from_host = match kind {
        RegionAttach | RegionDetach | BodyRelease => true,
        WorkerRegionAttach | WorkerRegionDetach | WorkerBodyRelease => false,
        _ => return None,
    };
    if from_host == (receiver == Side::Host) {
        return Some(Err(CodecError::UnexpectedKind(kind as u8)));
    }
    let (expected, control) = match kind {
        RegionAttach | WorkerRegionAttach => (12, 0),
        RegionDetach | WorkerRegionDetach => (4, 1),
        _ => (20, 2),
    };
    if payload.len() != expected {
        return Some(Err(CodecError::Malformed(
            "shared-memory control frame of the wrong length",
        )));
    }
    let region = payload.get_u32();
    Some(Ok(match control {
        0 => Control::Attach {
            region,
            len: payload.get_u64(),
        },
        1 => Control::Detach { region },
        _ => Control::Release {
            region,
            offset: payload.get_u64(),
            len: payload.get_u64(),
        },
    }))
}

/// Splits a payload flagged [`WITH_BODIES`] into its message and handles.
fn split_table(mut payload: Bytes) -> Result<(Bytes, Vec<Handle>), CodecError> {
    let malformed = || CodecError::Malformed("malformed table of shared-memory handles");
    let count = payload
        .len()
        .checked_sub(COUNT_LEN)
        .map(|at| u32::from_be_bytes(payload[at..].try_into().unwrap_or_default()) as usize)
        .ok_or_else(malformed)?;
    let table = count
        .checked_mul(HANDLE_LEN)
        .and_then(|len| len.checked_add(COUNT_LEN))
        .filter(|&len| count > 0 && count <= MAX_HANDLES && len <= payload.len())
        .ok_or_else(malformed)?;
    let mut entries = payload.split_off(payload.len() - table);
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        let owner = match entries.get_u8() {
            0 => Owner::Sender,
            1 => Owner::Receiver,
            _ => return Err(malformed()),
        };
        handles.push(Handle {
            owner,
            region: entries.get_u32(),
            offset: entries.get_u64(),
            len: entries.get_u64(),
        });
    }
    Ok((payload, handles))
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
    u32::try_from(length).map_err(|_| too_large)?;
    put_length(&mut buf);
    Ok(buf.freeze())
}

/// Writes the length prefix of the frame that fills `buf` (within the
/// limit: its writer checked every part it added).
fn put_length(buf: &mut BytesMut) {
    let length = (buf.len() - LENGTH_LEN) as u32;
    buf[..LENGTH_LEN].copy_from_slice(&length.to_be_bytes());
}

/// Decodes a message from a frame's payload. The whole payload must be
/// consumed, and no more than its length may be read or allocated.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    bincode_options()
        .with_limit(payload.len() as u64)
        .deserialize(payload)
        .map_err(|e| CodecError::Decode(e))
}

/// Decodes a message like [`decode_message`], giving each shared
/// [`Blob`](crate::Blob) in it its body from `bodies` (a frame's
/// [`Frame::bodies`]); inline blobs are cut from `payload` without a copy.
/// Bodies the message does not use are released.
pub fn decode_message_with_bodies<T: DeserializeOwned>(
    payload: &Bytes,
    bodies: Vec<Body>,
) -> Result<T, CodecError> {
    Decoding::run(payload, bodies, || decode_message(payload))
}

/// Splits a byte stream into [`Frame`]s, refusing any frame longer than its
/// limit before buffering it.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_frame_length: usize,
    link: Option<Arc<Link>>,
}

impl FrameCodec {
    /// A codec that accepts frames of at most `max_frame_length` bytes
    /// (counted after the length prefix).
    pub fn new(max_frame_length: usize) -> Self {
        Self {
            max_frame_length,
            link: None,
        }
    }

    /// Accepts shared-memory frames from now on, checked against `link`.
    pub fn set_link(&mut self, link: Arc<Link>) {
        self.link = Some(link);
    }

    /// The connection's shared-memory link, if it has one.
    pub fn link(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
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
        loop {
            let Some((mut frame, kind_byte)) = self.split_frame(src)? else {
                return Ok(None);
            };
            let control = self.link.as_ref().and_then(|link| {
                Some((
                    link,
                    decode_control(link.side(), frame.kind, &frame.payload)?,
                ))
            });
            if let Some((link, control)) = control {
                link.receive(control?)?;
                continue;
            }
            if kind_byte & WITH_BODIES != 0 {
                // Without descriptors, this side knows no such kind.
                let link = self
                    .link
                    .as_ref()
                    .ok_or(CodecError::UnexpectedKind(kind_byte))?;
                if !matches!(
                    frame.kind,
                    FrameKind::Job | FrameKind::OneWayJob | FrameKind::Reply
                ) {
                    return Err(CodecError::Malformed(
                        "shared bodies in a frame that carries no message",
                    ));
                }
                let (message, handles) = split_table(std::mem::take(&mut frame.payload))?;
                frame.payload = message;
                frame.bodies = link.resolve(&handles)?;
            }
            return Ok(Some(frame));
        }
    }
}

impl FrameCodec {
    /// The next frame in `src` as it is on the wire, and its kind byte (with
    /// the flag of a table of handles).
    fn split_frame(&self, src: &mut BytesMut) -> Result<Option<(Frame, u8)>, CodecError> {
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
        let kind = FrameKind::from_byte(kind_byte & !WITH_BODIES)
            .ok_or(CodecError::UnexpectedKind(kind_byte))?;
        src.advance(LENGTH_LEN + 1);
        let id = src.get_u64();
        let payload = src.split_to(length - ENVELOPE_LEN).freeze();
        let frame = Frame {
            kind,
            id,
            payload,
            bodies: Vec::new(),
        };
        Ok(Some((frame, kind_byte)))
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

    #[test]
    fn control_frames_round_trip_in_their_direction_only() {
        let release = Control::Release {
            region: 3,
            offset: 4096,
            len: 70_000,
        };
        let frame = encode_control(Side::Worker, release);
        let frames = decode_all(&mut FrameCodec::new(1024), &frame).unwrap();
        let [frame] = &frames[..] else {
            panic!("one frame expected")
        };
        assert_eq!(frame.kind, FrameKind::WorkerBodyRelease);
        let decoded = decode_control(Side::Host, frame.kind, &frame.payload);
        assert_eq!(decoded.unwrap().unwrap(), release);
        // A host never receives host frames.
        let wrong = decode_control(Side::Worker, frame.kind, &frame.payload);
        assert!(matches!(wrong, Some(Err(CodecError::UnexpectedKind(_)))));
    }

    #[test]
    fn handle_tables_are_checked_before_use() {
        // Flagged frames need a connection that passes descriptors.
        let mut frame = encode_frame(FrameKind::Reply, 1, &(1u8, 2u8), 1024)
            .unwrap()
            .to_vec();
        frame[LENGTH_LEN] |= WITH_BODIES;
        let err = decode_all(&mut FrameCodec::new(1024), &frame).unwrap_err();
        assert!(matches!(err, CodecError::UnexpectedKind(0x91)));
        // Counts the payload cannot hold, and unknown owners, are malformed.
        let mut payload = Bytes::from_static(&[0, 0, 0, 9]);
        assert!(split_table(payload.clone()).is_err());
        payload = Bytes::from_static(&[0, 0, 0, 0]);
        assert!(split_table(payload).is_err());
        let mut entry = vec![7u8];
        entry.extend_from_slice(&[0; HANDLE_LEN - 1]);
        entry.extend_from_slice(&1u32.to_be_bytes());
        assert!(split_table(Bytes::from(entry.clone())).is_err());
        entry[0] = 1;
        let (message, handles) = split_table(Bytes::from(entry)).unwrap();
        assert!(message.is_empty());
        assert_eq!(handles[0].owner, Owner::Receiver);
    }

    #[test]
    fn blobs_outside_a_shared_frame_travel_inline() {
        let blob = crate::Blob::from(vec![5u8; 100_000]);
        let frame = encode_frame(FrameKind::Job, 1, &blob, 1 << 20).unwrap();
        let frames = decode_all(&mut FrameCodec::new(1 << 20), &frame).unwrap();
        let back: crate::Blob = decode_message(&frames[0].payload).unwrap();
        assert_eq!(back, blob);
        // A shared blob needs its frame's bodies.
        let shared_index = [1u8, 0];
        assert!(decode_message::<crate::Blob>(&shared_index).is_err());
    }
}
