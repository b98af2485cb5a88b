//! Several jobs, or several answers, in one frame.
//!
//! A batch's jobs that are ready together go to a worker in one
//! [`FrameKind::JobBatch`] frame, and the worker's answers come back
//! grouped in [`FrameKind::ReplyBatch`] frames: one frame, one table entry
//! and one wake-up for many jobs, where a frame per job spends more on the
//! frame than on the job. Payload layouts (integers big endian):
//!
//! ```text
//! JobBatch:   count u32 | count × (len u32 | message)
//! ReplyBatch: any number of (index u32 | kind u8 | len u32 | payload)
//! ```
//!
//! The jobs of a `JobBatch` have consecutive ids from the frame's id; an
//! answer names its job by its place in the batch. A message in a batch
//! never names shared bodies (those travel in frames of their own, with
//! their table of handles). Both layouts are checked whole before any of
//! their parts is used.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::{ENVELOPE_LEN, HEADER_LEN, LENGTH_LEN, Prepared, finish_frame, put_header, put_length};
use crate::error::CodecError;
use crate::protocol::FrameKind;

/// Bytes of a `JobBatch`'s count.
const COUNT_LEN: usize = 4;
/// Bytes before each job's message: its length.
const MEMBER_LEN: usize = 4;
/// Bytes before each answer's payload: index, kind and length.
const ANSWER_LEN: usize = 4 + 1 + 4;

/// Appends what `prefix` writes, then `message`, to `buf`: all of it, or
/// (on an error) nothing. A message with shared bodies, or one that does
/// not `fit`, is refused.
fn append<T: Serialize + ?Sized>(
    buf: &mut BytesMut,
    fits: bool,
    max_frame_length: usize,
    message: &Prepared<'_, T>,
    prefix: impl FnOnce(&mut BytesMut),
) -> Result<(), CodecError> {
    if message.has_bodies() || !fits {
        return Err(CodecError::FrameTooLarge {
            size: message.size() + ENVELOPE_LEN,
            max: max_frame_length,
        });
    }
    let before = buf.len();
    prefix(buf);
    message
        .write_plain(buf)
        .inspect_err(|_| buf.truncate(before))
}

/// Builds a [`FrameKind::JobBatch`] frame.
#[derive(Debug)]
pub struct JobBatchWriter {
    buf: BytesMut,
    count: u32,
    max_frame_length: usize,
}

impl JobBatchWriter {
    /// A batch whose first job has id `first_id`, for a connection whose
    /// frames may be `max_frame_length` long.
    pub fn new(first_id: u64, max_frame_length: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + COUNT_LEN + 64);
        put_header(&mut buf, FrameKind::JobBatch, first_id);
        buf.put_u32(0); // the count, patched by `finish`
        Self {
            buf,
            count: 0,
            max_frame_length,
        }
    }

    /// Jobs in the batch so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether a message of `size` bytes still fits in the frame.
    pub fn fits(&self, size: usize) -> bool {
        (self.buf.len() - LENGTH_LEN)
            .saturating_add(MEMBER_LEN)
            .saturating_add(size)
            <= self.max_frame_length
    }

    /// Appends a message that [has no shared bodies](Prepared::has_bodies)
    /// and [fits](Self::fits). On an error the batch is as it was.
    pub fn push<T: Serialize + ?Sized>(
        &mut self,
        message: &Prepared<'_, T>,
    ) -> Result<(), CodecError> {
        let fits = self.fits(message.size());
        append(&mut self.buf, fits, self.max_frame_length, message, |buf| {
            buf.put_u32(message.size() as u32);
        })?;
        self.count += 1;
        Ok(())
    }

    /// The frame.
    pub fn finish(mut self) -> Result<Bytes, CodecError> {
        self.buf[HEADER_LEN..HEADER_LEN + COUNT_LEN].copy_from_slice(&self.count.to_be_bytes());
        finish_frame(self.buf, self.max_frame_length)
    }
}

/// The messages of a [`FrameKind::JobBatch`] payload, in order: as slices
/// of the payload ([`next_message`](Self::next_message)), or as `Bytes` of
/// their own (the iterator).
#[derive(Debug)]
pub struct JobMembers {
    payload: Bytes,
    /// Where the next message's length is.
    at: usize,
    left: u32,
}

impl JobMembers {
    /// Checks the layout of `payload` whole: a count, then exactly that
    /// many length-prefixed messages and nothing after them.
    pub fn new(payload: Bytes) -> Result<Self, CodecError> {
        let malformed = || CodecError::Malformed("malformed batch of jobs");
        let count = payload
            .first_chunk::<COUNT_LEN>()
            .map(|count| u32::from_be_bytes(*count))
            .ok_or_else(malformed)?;
        let mut rest = &payload[COUNT_LEN..];
        for _ in 0..count {
            let len = rest
                .first_chunk::<MEMBER_LEN>()
                .map(|len| u32::from_be_bytes(*len) as usize)
                .ok_or_else(malformed)?;
            rest = rest
                .get(MEMBER_LEN..)
                .and_then(|rest| rest.get(len..))
                .ok_or_else(malformed)?;
        }
        if count == 0 || !rest.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            payload,
            at: COUNT_LEN,
            left: count,
        })
    }

    /// Messages not yet taken.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// The next message, as a slice of the payload (no reference counted
    /// per message).
    pub fn next_message(&mut self) -> Option<&[u8]> {
        let range = self.next_range()?;
        self.payload.get(range)
    }

    fn next_range(&mut self) -> Option<Range<usize>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The layout was checked whole in `new`.
        let len = self.payload.get(self.at..)?.first_chunk::<MEMBER_LEN>()?;
        let start = self.at + MEMBER_LEN;
        let end = start + u32::from_be_bytes(*len) as usize;
        self.at = end;
        Some(start..end)
    }
}

impl Iterator for JobMembers {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let range = self.next_range()?;
        Some(self.payload.slice(range))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for JobMembers {}

/// Builds a [`FrameKind::ReplyBatch`] frame.
#[derive(Debug)]
pub struct ReplyBatchWriter {
    buf: BytesMut,
    batch_id: u64,
    answers: usize,
    max_frame_length: usize,
}

impl ReplyBatchWriter {
    /// Answers to the jobs of batch `batch_id`.
    pub fn new(batch_id: u64, max_frame_length: usize) -> Self {
        let mut buf = BytesMut::with_capacity(HEADER_LEN + 256);
        put_header(&mut buf, FrameKind::ReplyBatch, batch_id);
        Self {
            buf,
            batch_id,
            answers: 0,
            max_frame_length,
        }
    }

    /// Answers in the frame so far.
    pub fn answers(&self) -> usize {
        self.answers
    }

    /// Bytes in the frame so far.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Whether an answer of `size` bytes fits in the frame now.
    pub fn fits(&self, size: usize) -> bool {
        (self.buf.len() - LENGTH_LEN)
            .saturating_add(ANSWER_LEN)
            .saturating_add(size)
            <= self.max_frame_length
    }

    /// Whether an answer of `size` bytes would fit even in an empty frame.
    pub fn could_fit(&self, size: usize) -> bool {
        ENVELOPE_LEN.saturating_add(ANSWER_LEN).saturating_add(size) <= self.max_frame_length
    }

    /// Appends the answer to job `index` of the batch: a frame kind that
    /// answers a job, and its payload. The caller checked that it
    /// [fits](Self::fits).
    pub fn push_raw(&mut self, index: u32, kind: FrameKind, payload: &[u8]) {
        self.buf.put_u32(index);
        self.buf.put_u8(kind as u8);
        self.buf.put_u32(payload.len() as u32);
        self.buf.extend_from_slice(payload);
        self.answers += 1;
    }

    /// Appends an answer of `kind` whose payload is a message that [has no
    /// shared bodies](Prepared::has_bodies) (a reply, a panic's report).
    /// Fails, leaving the frame as it was, when the message does not
    /// [fit](Self::fits).
    pub fn push_message<T: Serialize + ?Sized>(
        &mut self,
        index: u32,
        kind: FrameKind,
        message: &Prepared<'_, T>,
    ) -> Result<(), CodecError> {
        let fits = self.fits(message.size());
        append(&mut self.buf, fits, self.max_frame_length, message, |buf| {
            buf.put_u32(index);
            buf.put_u8(kind as u8);
            buf.put_u32(message.size() as u32);
        })?;
        self.answers += 1;
        Ok(())
    }

    /// The frame, leaving this writer empty for more answers to the same
    /// batch.
    pub fn take(&mut self) -> Bytes {
        put_length(&mut self.buf);
        let frame = self.buf.split().freeze();
        self.buf.reserve(HEADER_LEN + 256);
        put_header(&mut self.buf, FrameKind::ReplyBatch, self.batch_id);
        self.answers = 0;
        frame
    }
}

/// One answer of a [`FrameKind::ReplyBatch`]: where its payload lies in
/// the frame's ([`BatchAnswers::payload`]), so that reading a frame of many
/// answers neither copies nor counts a reference per answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchAnswer {
    /// The job's place in its batch.
    pub index: u32,
    /// What the answer is: `Reply`, `NoReply`, `JobFailed`, `Failed` or
    /// `Panicked`.
    pub kind: FrameKind,
    /// Its payload (as in a frame of that kind): this range of the frame's.
    pub payload: Range<usize>,
}

/// The answers of a [`FrameKind::ReplyBatch`] payload, checked whole.
#[derive(Debug)]
pub struct BatchAnswers {
    payload: Bytes,
    panicked: bool,
    count: usize,
}

impl BatchAnswers {
    /// Checks the layout of `payload` whole: every answer of a kind that
    /// answers a job, within the payload, nothing left over.
    pub fn new(payload: Bytes) -> Result<Self, CodecError> {
        let mut panicked = false;
        let mut count = 0;
        for answer in Answers::new(&payload) {
            let answer = answer?;
            panicked |= answer.kind == FrameKind::Panicked;
            count += 1;
        }
        Ok(Self {
            payload,
            panicked,
            count,
        })
    }

    /// Whether any answer reports a panic.
    pub fn any_panicked(&self) -> bool {
        self.panicked
    }

    /// How many answers the frame holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the frame holds no answer.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The frame's payload, which the answers' ranges index.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The answers, in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchAnswer> + '_ {
        // The layout was checked whole in `new`: every answer reads.
        Answers::new(&self.payload).map_while(Result::ok)
    }
}

/// Reads the answers of a `ReplyBatch` payload one by one, checking each.
struct Answers<'a> {
    payload: &'a [u8],
    at: usize,
}

impl<'a> Answers<'a> {
    fn new(payload: &'a [u8]) -> Self {
        Self { payload, at: 0 }
    }
}

impl Iterator for Answers<'_> {
    type Item = Result<BatchAnswer, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self
            .payload
            .get(self.at..)
            .filter(|rest| !rest.is_empty())?;
        let malformed = || CodecError::Malformed("malformed batch of answers");
        let read = (|| {
            let header = rest.first_chunk::<ANSWER_LEN>().ok_or_else(malformed)?;
            let index = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let kind_byte = header[4];
            let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) as usize;
            let kind = FrameKind::from_byte(kind_byte)
                .filter(|kind| {
                    matches!(
                        kind,
                        FrameKind::Reply
                            | FrameKind::NoReply
                            | FrameKind::JobFailed
                            | FrameKind::Failed
                            | FrameKind::Panicked
                    )
                })
                .ok_or(CodecError::UnexpectedKind(kind_byte))?;
            let start = self.at + ANSWER_LEN;
            let end = start
                .checked_add(len)
                .filter(|&end| end <= self.payload.len());
            let end = end.ok_or_else(malformed)?;
            Ok(BatchAnswer {
                index,
                kind,
                payload: start..end,
            })
        })();
        match &read {
            Ok(answer) => self.at = answer.payload.end,
            // Nothing more is read after a malformed answer.
            Err(_) => self.at = self.payload.len(),
        }
        Some(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{FrameCodec, decode_message, prepare};
    use tokio_util::codec::Decoder;

    fn one_frame(bytes: &[u8]) -> crate::Frame {
        let mut buf = BytesMut::from(bytes);
        FrameCodec::new(1 << 20).decode(&mut buf).unwrap().unwrap()
    }

    #[test]
    fn jobs_round_trip_in_order() {
        let mut writer = JobBatchWriter::new(40, 1 << 20);
        for n in 0..3u32 {
            writer
                .push(&prepare(&(n, "x"), false, None).unwrap())
                .unwrap();
        }
        let frame = one_frame(&writer.finish().unwrap());
        assert_eq!((frame.kind, frame.id), (FrameKind::JobBatch, 40));
        let members = JobMembers::new(frame.payload.clone()).unwrap();
        assert_eq!(members.left(), 3);
        let decoded: Vec<(u32, String)> = members.map(|m| decode_message(&m).unwrap()).collect();
        assert_eq!(decoded[2], (2, "x".to_owned()));
        // The same, as slices of the payload.
        let mut members = JobMembers::new(frame.payload).unwrap();
        let mut sliced = Vec::new();
        while let Some(message) = members.next_message() {
            sliced.push(decode_message::<(u32, String)>(message).unwrap());
        }
        assert_eq!((sliced, members.left()), (decoded, 0));
    }

    #[test]
    fn a_job_that_does_not_fit_is_refused_and_leaves_the_batch_whole() {
        let mut writer = JobBatchWriter::new(1, 64);
        writer.push(&prepare(&7u8, false, None).unwrap()).unwrap();
        let big = vec![0u8; 100];
        assert!(writer.push(&prepare(&big, false, None).unwrap()).is_err());
        assert_eq!(writer.count(), 1);
        let frame = one_frame(&writer.finish().unwrap());
        assert_eq!(JobMembers::new(frame.payload).unwrap().count(), 1);
    }

    #[test]
    fn malformed_job_batches_are_refused() {
        for payload in [
            &[][..],
            &[0, 0, 0, 0],                // no jobs
            &[0, 0, 0, 2, 0, 0, 0, 1, 9], // one job of two
            &[0, 0, 0, 1, 0, 0, 0, 9, 1], // longer than the payload
            &[0, 0, 0, 1, 0, 0, 0, 0, 5], // bytes left over
            &[0xff, 0xff, 0xff, 0xff],    // a count the payload cannot hold
        ] {
            assert!(
                JobMembers::new(Bytes::copy_from_slice(payload)).is_err(),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn answers_round_trip_and_the_writer_starts_again() {
        let mut writer = ReplyBatchWriter::new(9, 1 << 20);
        writer
            .push_message(2, FrameKind::Reply, &prepare(&5u64, false, None).unwrap())
            .unwrap();
        writer.push_raw(0, FrameKind::Failed, b"no");
        let frame = one_frame(&writer.take());
        assert_eq!((frame.kind, frame.id), (FrameKind::ReplyBatch, 9));
        let batch = BatchAnswers::new(frame.payload).unwrap();
        let answers: Vec<_> = batch.iter().collect();
        assert_eq!((batch.len(), answers.len()), (2, 2));
        assert_eq!((answers[0].index, answers[0].kind), (2, FrameKind::Reply));
        let payload = |n: usize| &batch.payload()[answers[n].payload.clone()];
        assert_eq!(decode_message::<u64>(payload(0)).unwrap(), 5);
        assert_eq!(payload(1), b"no");
        assert_eq!(writer.answers(), 0);
        writer.push_raw(1, FrameKind::NoReply, &[]);
        let frame = one_frame(&writer.take());
        assert_eq!(frame.id, 9);
        let answers = BatchAnswers::new(frame.payload).unwrap();
        assert!(!answers.any_panicked());
        assert_eq!(answers.iter().map(|a| a.index).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn malformed_answers_are_refused() {
        let job_kind = [0, 0, 0, 0, FrameKind::Job as u8, 0, 0, 0, 0];
        assert!(matches!(
            BatchAnswers::new(Bytes::copy_from_slice(&job_kind)),
            Err(CodecError::UnexpectedKind(_))
        ));
        let long = [0, 0, 0, 0, FrameKind::Reply as u8, 0, 0, 0, 5, 1];
        assert!(BatchAnswers::new(Bytes::copy_from_slice(&long)).is_err());
        assert!(BatchAnswers::new(Bytes::copy_from_slice(&[0, 0, 1])).is_err());
    }
}
