//! Hostile input: what a peer can make a host or a worker do by what it
//! sends, or by what it does not send.
//!
//! - **Fuzzing** (proptest, a fixed number of cases): fully random byte
//!   strings, random payloads in well-formed envelopes, and valid frames
//!   (made with `encode_frame` from `Hello`, `Request`, `Response`,
//!   `HostMessage` and `u32`) that are then flipped, truncated, cut, spliced,
//!   given rewritten length prefixes or lying length fields, go through the
//!   decode path both sides use: a [`FrameReader`] over a [`FrameCodec`]
//!   (read in random chunk sizes from memory), then `decode_message` of every
//!   frame's payload as each message type. Under the handshake limit and the
//!   default limit: nothing panics, every failure is a `CodecError` value,
//!   and a counting global allocator checks that no single allocation made
//!   while decoding is larger than what the input carried plus a constant.
//!   Unmutated frames must round-trip, so the harness is known to reach the
//!   payload decoder.
//! - **Hand-written cases**: a length prefix of `0xFFFF_FFFF`, a `Vec<u8>`
//!   length of 2^60 inside a small payload, a string longer than its payload,
//!   huge, overlong and chained varints.
//! - **Allocation bounds**: reading never allocates more than twice the
//!   bytes received plus 1 MiB, nor more than the frame limit plus 64 KiB
//!   (a length prefix announcing 16 MiB sets aside at most 1 MiB); decoding
//!   a payload allocates
//!   at most its size plus 4 KiB, except that a lying sequence length makes
//!   serde preallocate up to its 1 MiB cap.
//! - **Silent connections**: 1,000 connections that never speak (the host
//!   keeps at most 256 of them, dropping the oldest) do not stop
//!   a replacement worker from joining or jobs from flowing.
//! - **Stolen secrets**: a process of the same user that is not the one the
//!   set spawned, but presents a well-formed handshake with that worker's
//!   real one-time secret (read from its environment, as any same-user
//!   process can), is disconnected without a `Welcome`, whichever pid its
//!   `Hello` claims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ipc2_common::codec::{HEADER_LEN, decode_message, encode_frame, encode_raw_frame};
use ipc2_common::protocol::{ENV_SECRET, ENV_SOCKET, HANDSHAKE_MAX_FRAME_LENGTH};
use ipc2_common::{
    CodecError, DEFAULT_MAX_FRAME_LENGTH, FrameCodec, FrameKind, FrameReader, Hello,
    PROTOCOL_VERSION, Secret,
};
use ipc2_host::Error;
use ipc2_host::builder::MAX_PENDING_HANDSHAKES as MAX_PENDING;
use ipc2_host::workerset::WorkerSet;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use test_common::behaviour::{Request, Response};
use test_common::binaries::worker_binary;
use test_common::pools::{BehaviourPool, eventually, pid_of, within};
use test_common::process::{is_running, kill};
use test_common::stranger::closed_by_host;
use test_common::{HostMessage, WorkerMessage};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

// ---------------------------------------------------------------------------
// A global allocator that records the largest single allocation request made
// on the current thread while that thread has armed it.
// ---------------------------------------------------------------------------

struct LargestAllocation;

thread_local! {
    // `const` initialisers and no destructors: reading these never allocates,
    // so they are safe to use inside the allocator.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// touches only thread-local `Cell`s and never allocates.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its output with the largest single allocation it
/// requested on this thread (0 if none). Other threads are not counted.
fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|armed| armed.set(false));
        }
    }
    LARGEST.with(|largest| largest.set(0));
    ARMED.with(|armed| armed.set(true));
    let disarm = Disarm;
    let output = f();
    drop(disarm);
    (output, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------
// The decode path host and worker use, driven from memory.
// ---------------------------------------------------------------------------

/// Allowed on top of the input's length for framing: the reader's 8 KiB
/// buffer and its growth.
const SLACK: usize = 64 * 1024;
/// What a frame's length prefix alone may make the reader set aside: it
/// grows its buffer for a large frame by at least this much at a time (so a
/// 1 MiB body is read into one buffer), never by the whole announced size.
const GROWTH: usize = 1024 * 1024;
/// Allowed on top of a payload's length for decoding it: error values and
/// their messages.
const PAYLOAD_SLACK: usize = 4 * 1024;

/// The one allowance on top of a payload's size: serde preallocates a
/// sequence from its length field, capped at 1 MiB
/// (`serde::__private::size_hint::cautious`), and bincode 1.3.3 hands serde
/// the length without checking it against the bytes left. So decoding a type
/// with a `Vec` can allocate up to 1 MiB from a payload of ten bytes:
/// bounded, and below the default frame limit, but more than the payload.
/// `a_lying_sequence_length_preallocates_at_most_serdes_cap` pins it.
const SERDE_SEQUENCE_PREALLOCATION: usize = 1024 * 1024;

/// An in-memory stream that hands out at most `chunk` bytes per read, so
/// frames arrive in pieces as they may from a socket. Never pending.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

/// Drives a future that never waits (its reader is in memory) to completion.
fn poll_ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a read from memory was pending"),
    }
}

/// The message types a host or worker decodes from a payload.
#[derive(Clone, Copy, Debug)]
enum Type {
    Hello,
    Request,
    Response,
    HostMessage,
    U32,
    WorkerMessage,
    String,
    Bytes,
}

const TYPES: [Type; 8] = [
    Type::Hello,
    Type::Request,
    Type::Response,
    Type::HostMessage,
    Type::U32,
    Type::WorkerMessage,
    Type::String,
    Type::Bytes,
];

impl Type {
    /// Decodes `payload` as this type, re-encoding what it decoded.
    fn decode(self, payload: &[u8]) -> Result<Vec<u8>, CodecError> {
        fn again<T: serde::Serialize>(message: &T) -> Vec<u8> {
            match encode_frame(FrameKind::Reply, 0, message, usize::MAX) {
                Ok(frame) => frame[HEADER_LEN..].to_vec(),
                Err(error) => panic!("a decoded message did not encode again: {error}"),
            }
        }
        Ok(match self {
            Type::Hello => again(&decode_message::<Hello>(payload)?),
            Type::Request => again(&decode_message::<Request>(payload)?),
            Type::Response => again(&decode_message::<Response>(payload)?),
            Type::HostMessage => again(&decode_message::<HostMessage>(payload)?),
            Type::U32 => again(&decode_message::<u32>(payload)?),
            Type::WorkerMessage => again(&decode_message::<WorkerMessage>(payload)?),
            Type::String => again(&decode_message::<String>(payload)?),
            Type::Bytes => again(&decode_message::<Vec<u8>>(payload)?),
        })
    }

    /// Known over-allocation (1) applies to types holding a sequence.
    fn allowance(self) -> usize {
        match self {
            Type::Request | Type::Response | Type::Bytes => SERDE_SEQUENCE_PREALLOCATION,
            _ => 0,
        }
    }
}

/// What decoding one input did.
struct Decoded {
    /// Each frame's kind, id and payload, in order.
    frames: Vec<(FrameKind, u64, Vec<u8>)>,
    /// How reading ended: `None` at a clean end of stream.
    error: Option<CodecError>,
}

/// Reads `input` (in `chunk`-byte reads) as a peer with a limit of
/// `max_frame_length` would, decodes every frame's payload as every message
/// type, and checks every allocation bound on the way.
fn decode_like_a_peer(
    input: &[u8],
    max_frame_length: usize,
    chunk: usize,
) -> Result<Decoded, TestCaseError> {
    let chunked = Chunked { data: input, chunk };
    let (mut reader, mut framing_peak) =
        largest_allocation_during(|| FrameReader::new(chunked, FrameCodec::new(max_frame_length)));
    let mut frames = Vec::new();
    let error = loop {
        let (next, peak) = largest_allocation_during(|| poll_ready(reader.next()));
        framing_peak = framing_peak.max(peak);
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(error) => break Some(error),
        };
        prop_assert!(
            frame.payload.len() + HEADER_LEN - 4 <= max_frame_length,
            "a frame of {} bytes passed a limit of {max_frame_length}",
            frame.payload.len() + HEADER_LEN - 4,
        );
        for ty in TYPES {
            let (result, peak) = largest_allocation_during(|| ty.decode(&frame.payload));
            let bound = frame.payload.len() + PAYLOAD_SLACK + ty.allowance();
            prop_assert!(
                peak <= bound,
                "decoding a {}-byte payload as {ty:?} allocated {peak} bytes at once (bound {bound})",
                frame.payload.len(),
            );
            if let Err(error) = result {
                prop_assert!(
                    matches!(error, CodecError::Decode(_)),
                    "decoding as {ty:?} failed with {error:?}"
                );
                prop_assert!(!error.to_string().is_empty());
            }
        }
        frames.push((frame.kind, frame.id, frame.payload.to_vec()));
    };
    if let Some(error) = &error {
        prop_assert!(
            matches!(
                error,
                CodecError::FrameTooLarge { .. }
                    | CodecError::Malformed(_)
                    | CodecError::UnexpectedKind(_)
                    | CodecError::Truncated { .. }
            ),
            "reading failed with {error:?}"
        );
        prop_assert!(!error.to_string().is_empty());
    }
    // The reader grows its buffer geometrically with what has arrived: at
    // most twice the bytes received, plus one growth step.
    let carried = 2 * input.len();
    prop_assert!(
        framing_peak <= carried + GROWTH + SLACK,
        "reading {} bytes (limit {max_frame_length}, chunks of {chunk}) allocated {framing_peak} bytes at once",
        input.len(),
    );
    prop_assert!(
        framing_peak <= max_frame_length + SLACK,
        "reading allocated {framing_peak} bytes at once, over the limit of {max_frame_length}",
    );
    Ok(Decoded { frames, error })
}

/// The limits a peer reads with: a stranger's before the handshake, and the
/// default after it.
const LIMITS: [usize; 2] = [HANDSHAKE_MAX_FRAME_LENGTH, DEFAULT_MAX_FRAME_LENGTH];

fn check_every_limit(input: &[u8], chunk: usize) -> Result<(), TestCaseError> {
    for limit in LIMITS {
        decode_like_a_peer(input, limit, chunk)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------

const KINDS: [FrameKind; 9] = [
    FrameKind::Job,
    FrameKind::OneWayJob,
    FrameKind::Welcome,
    FrameKind::Shutdown,
    FrameKind::Hello,
    FrameKind::Reply,
    FrameKind::NoReply,
    FrameKind::JobFailed,
    FrameKind::Ack,
];

fn frame_kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(KINDS.as_slice())
}

/// Reads of 1 to 64 bytes, or everything at once.
fn chunk_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 1usize..=64]
}

/// A valid frame of one of the message types, and that type.
fn valid_frame() -> impl Strategy<Value = (Vec<u8>, Type)> {
    fn framed<T: serde::Serialize>((kind, id): (FrameKind, u64), message: &T) -> Vec<u8> {
        match encode_frame(kind, id, message, DEFAULT_MAX_FRAME_LENGTH) {
            Ok(frame) => frame.to_vec(),
            Err(error) => panic!("a valid message did not encode: {error}"),
        }
    }
    let envelope = || (frame_kind(), any::<u64>());
    let bytes = || prop::collection::vec(any::<u8>(), 0..300);
    let hello = (envelope(), any::<u32>(), any::<u32>(), any::<[u8; 32]>()).prop_map(
        |(envelope, version, pid, secret)| {
            let hello = Hello {
                version,
                pid,
                secret,
            };
            (framed(envelope, &hello), Type::Hello)
        },
    );
    let request = (
        envelope(),
        0u8..7,
        any::<u32>(),
        any::<u32>(),
        bytes(),
        any::<i32>(),
    )
        .prop_map(|(envelope, which, a, b, bytes, code)| {
            let request = match which {
                0 => Request::Add(a, b),
                1 => Request::Echo(bytes),
                2 => Request::Sleep(u64::from(a) << 32 | u64::from(b)),
                3 => Request::Pid,
                4 => Request::Exit(code),
                5 => Request::Abort,
                _ => Request::DropReply,
            };
            (framed(envelope, &request), Type::Request)
        });
    let response =
        (envelope(), 0u8..4, any::<u32>(), bytes()).prop_map(|(envelope, which, n, bytes)| {
            let response = match which {
                0 => Response::Sum(n),
                1 => Response::Echo(bytes),
                2 => Response::Slept(n),
                _ => Response::Pid(n),
            };
            (framed(envelope, &response), Type::Response)
        });
    let host = (envelope(), any::<bool>(), any::<u32>(), any::<u32>()).prop_map(
        |(envelope, add, a, b)| {
            let message = if add {
                HostMessage::Add(a, b)
            } else {
                HostMessage::Sub(a, b)
            };
            (framed(envelope, &message), Type::HostMessage)
        },
    );
    let number =
        (envelope(), any::<u32>()).prop_map(|(envelope, n)| (framed(envelope, &n), Type::U32));
    prop_oneof![hello, request, response, host, number]
}

/// Bytes that make a length field or varint lie.
fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
    fn marked(marker: u8, value: &[u8]) -> Vec<u8> {
        std::iter::once(marker)
            .chain(value.iter().copied())
            .collect()
    }
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        Just(marked(0xfb, &u16::MAX.to_le_bytes())),
        Just(marked(0xfc, &u32::MAX.to_le_bytes())),
        Just(marked(0xfd, &u64::MAX.to_le_bytes())),
        Just(marked(0xfd, &(1u64 << 60).to_le_bytes())),
        Just(marked(0xfd, &(1u64 << 20).to_le_bytes())),
        Just(marked(0xfe, &u128::MAX.to_le_bytes())),
        Just(vec![0xff]),
        Just(vec![0xfd; 64]),
    ]
}

/// A length prefix a hostile peer might send.
fn hostile_length() -> impl Strategy<Value = u32> {
    let handshake = HANDSHAKE_MAX_FRAME_LENGTH as u32;
    let default = DEFAULT_MAX_FRAME_LENGTH as u32;
    prop_oneof![
        Just(0),
        Just(u32::MAX),
        0u32..(HEADER_LEN as u32 + 4),
        0u32..4096,
        Just(handshake),
        Just(handshake + 1),
        Just(default),
        Just(default + 1),
        Just(1 << 31),
        any::<u32>(),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip { at: Index, mask: u8 },
    /// Cut the input short.
    Truncate { at: Index },
    /// Replace the length prefix of one of the original frames.
    RewriteLength { frame: Index, length: u32 },
    /// Insert bytes.
    Insert { at: Index, bytes: Vec<u8> },
    /// Overwrite bytes in place.
    Overwrite { at: Index, bytes: Vec<u8> },
    /// Remove a run of bytes.
    Remove { at: Index, len: usize },
    /// Repeat a run of bytes.
    Duplicate { at: Index, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<Index>(), hostile_length())
            .prop_map(|(frame, length)| Mutation::RewriteLength { frame, length }),
        2 => (any::<Index>(), nasty_bytes()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<Index>(), nasty_bytes())
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        1 => (any::<Index>(), 1usize..32).prop_map(|(at, len)| Mutation::Remove { at, len }),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

/// Applies `mutation` to `bytes`; `frame_starts` are where the original
/// frames began.
fn mutate(bytes: &mut Vec<u8>, frame_starts: &[usize], mutation: &Mutation) {
    let position = |at: &Index, len: usize| if len == 0 { 0 } else { at.index(len) };
    match mutation {
        Mutation::Flip { at, mask } => {
            if !bytes.is_empty() {
                let i = position(at, bytes.len());
                bytes[i] ^= mask;
            }
        }
        Mutation::Truncate { at } => {
            let len = bytes.len();
            bytes.truncate(position(at, len));
        }
        Mutation::RewriteLength { frame, length } => {
            let start = frame_starts[position(frame, frame_starts.len())];
            if start + 4 <= bytes.len() {
                bytes[start..start + 4].copy_from_slice(&length.to_be_bytes());
            }
        }
        Mutation::Insert { at, bytes: new } => {
            let i = position(at, bytes.len() + 1);
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Overwrite { at, bytes: new } => {
            let i = position(at, bytes.len() + 1);
            let end = (i + new.len()).min(bytes.len());
            bytes.splice(i..end, new.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let i = position(at, bytes.len() + 1);
            let end = (i + len).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Duplicate { at, len } => {
            let i = position(at, bytes.len() + 1);
            let end = (i + len).min(bytes.len());
            let run = bytes[i..end].to_vec();
            bytes.splice(end..end, run);
        }
    }
}

/// One to four valid frames back to back, then mutated.
fn mutated_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(valid_frame(), 1..=4),
        prop::collection::vec(mutation(), 1..=4),
    )
        .prop_map(|(frames, mutations)| {
            let mut bytes = Vec::new();
            let mut starts = Vec::new();
            for (frame, _) in frames {
                starts.push(bytes.len());
                bytes.extend_from_slice(&frame);
            }
            for mutation in &mutations {
                mutate(&mut bytes, &starts, mutation);
            }
            bytes
        })
}

/// A valid frame whose payload is mutated and then framed again with a
/// correct length prefix, so the damage reaches the payload decoder.
fn mutated_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        valid_frame(),
        prop::collection::vec(mutation(), 1..=4),
        frame_kind(),
    )
        .prop_map(|((frame, _), mutations, kind)| {
            let mut payload = frame[HEADER_LEN..].to_vec();
            for mutation in &mutations {
                mutate(&mut payload, &[0], mutation);
            }
            raw_frame(kind, 7, &payload)
        })
}

fn raw_frame(kind: FrameKind, id: u64, payload: &[u8]) -> Vec<u8> {
    match encode_raw_frame(kind, id, payload, usize::MAX) {
        Ok(frame) => frame.to_vec(),
        Err(error) => panic!("a raw frame did not encode: {error}"),
    }
}

fn fuzz_config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        // Shrunk failures are printed; nothing is written to the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(fuzz_config())]

    /// (a) Fully random bytes, bare or as the payload of a well-formed
    /// envelope.
    #[test]
    fn random_bytes_are_decode_errors_not_panics_or_big_allocations(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        kind in frame_kind(),
        envelope in any::<bool>(),
        chunk in chunk_size(),
    ) {
        let input = if envelope { raw_frame(kind, 1, &bytes) } else { bytes };
        check_every_limit(&input, chunk)?;
    }

    /// (b) Valid frames, mutated: in the stream (lengths, boundaries,
    /// kinds) or in the payload behind a correct envelope.
    #[test]
    fn mutated_frames_are_decode_errors_not_panics_or_big_allocations(
        input in prop_oneof![mutated_stream(), mutated_payload()],
        chunk in chunk_size(),
    ) {
        check_every_limit(&input, chunk)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..fuzz_config() })]

    /// The control for the fuzzing: unmutated frames come through the same
    /// path whole, and each payload decodes to what was encoded.
    #[test]
    fn valid_frames_round_trip_through_the_same_path(
        frames in prop::collection::vec(valid_frame(), 1..=4),
        chunk in chunk_size(),
    ) {
        let input: Vec<u8> = frames.iter().flat_map(|(frame, _)| frame.iter().copied()).collect();
        let decoded = decode_like_a_peer(&input, DEFAULT_MAX_FRAME_LENGTH, chunk)?;
        prop_assert!(decoded.error.is_none(), "valid frames failed: {:?}", decoded.error);
        prop_assert_eq!(decoded.frames.len(), frames.len());
        for ((frame, ty), (kind, id, payload)) in frames.iter().zip(&decoded.frames) {
            prop_assert_eq!(frame[4], *kind as u8);
            prop_assert_eq!(&frame[5..HEADER_LEN], &id.to_be_bytes());
            prop_assert_eq!(&frame[HEADER_LEN..], payload.as_slice());
            match ty.decode(payload) {
                Ok(again) => prop_assert_eq!(&again, payload),
                Err(error) => prop_assert!(false, "a valid {:?} did not decode: {}", ty, error),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Hand-written cases.
// ---------------------------------------------------------------------------

fn run(input: &[u8], max_frame_length: usize) -> Decoded {
    match decode_like_a_peer(input, max_frame_length, usize::MAX) {
        Ok(decoded) => decoded,
        Err(failure) => panic!("{failure}"),
    }
}

/// The varint bincode writes for `value` with the given marker byte.
fn varint(marker: u8, value: &[u8]) -> Vec<u8> {
    std::iter::once(marker)
        .chain(value.iter().copied())
        .collect()
}

#[test]
fn allocation_counter_sees_this_threads_allocations_and_no_others() {
    let (kept, largest) = largest_allocation_during(|| Vec::<u8>::with_capacity(3 << 20));
    assert!(largest >= 3 << 20, "counted {largest}");
    drop(kept);
    let ((), largest) = largest_allocation_during(|| {
        let other = std::thread::spawn(|| Vec::<u8>::with_capacity(5 << 20).capacity());
        assert!(matches!(other.join(), Ok(capacity) if capacity >= 5 << 20));
    });
    assert!(largest < 5 << 20, "another thread's allocation was counted");
    let (_, largest) = largest_allocation_during(|| 1 + 1);
    assert_eq!(largest, 0);
    drop(Vec::<u8>::with_capacity(7 << 20)); // not armed: not counted
    let (_, largest) = largest_allocation_during(|| ());
    assert_eq!(largest, 0);
}

#[test]
fn length_prefix_of_u32_max_is_refused_before_buffering() {
    let mut hostile = u32::MAX.to_be_bytes().to_vec();
    hostile.extend_from_slice(&[0x11; 32]);
    // Alone, and after a valid frame.
    let mut after_valid = raw_frame(FrameKind::Reply, 1, &[3]);
    after_valid.extend_from_slice(&hostile);
    for limit in LIMITS {
        for (input, frames_before) in [(&hostile, 0), (&after_valid, 1)] {
            let decoded = run(input, limit);
            assert_eq!(decoded.frames.len(), frames_before);
            match decoded.error {
                Some(CodecError::FrameTooLarge { size, max }) => {
                    assert_eq!(size, u32::MAX as usize);
                    assert_eq!(max, limit);
                }
                other => panic!("expected FrameTooLarge, got {other:?}"),
            }
        }
    }
}

#[test]
fn vec_length_of_2_pow_60_in_a_small_payload_is_an_error() {
    let length = varint(0xfd, &(1u64 << 60).to_le_bytes());
    let bytes = length.clone();
    let mut echo_request = vec![1]; // Request::Echo
    echo_request.extend_from_slice(&length);
    echo_request.extend_from_slice(b"abc");
    let mut echo_response = vec![1]; // Response::Echo
    echo_response.extend_from_slice(&length);
    for (payload, ty) in [
        (&bytes, Type::Bytes),
        (&echo_request, Type::Request),
        (&echo_response, Type::Response),
    ] {
        assert!(
            matches!(ty.decode(payload), Err(CodecError::Decode(_))),
            "{ty:?} accepted a 2^60-element vector"
        );
        // Through the reader too, with the bound and its known allowance.
        let decoded = run(
            &raw_frame(FrameKind::Reply, 1, payload),
            DEFAULT_MAX_FRAME_LENGTH,
        );
        assert_eq!(decoded.frames.len(), 1);
    }
}

#[test]
fn string_length_beyond_the_payload_is_an_error() {
    for length in [
        varint(0xfb, &1000u16.to_le_bytes()),
        varint(0xfc, &u32::MAX.to_le_bytes()),
        varint(0xfd, &(1u64 << 60).to_le_bytes()),
        vec![200], // one-byte length, still longer than what follows
    ] {
        let mut string = length.clone();
        string.extend_from_slice(b"not that long");
        let mut failed = vec![1]; // WorkerMessage::Failed(String)
        failed.extend_from_slice(&string);
        for (payload, ty) in [(&string, Type::String), (&failed, Type::WorkerMessage)] {
            let (result, largest) = largest_allocation_during(|| ty.decode(payload));
            assert!(
                matches!(result, Err(CodecError::Decode(_))),
                "{ty:?} accepted {payload:?}"
            );
            assert!(
                largest <= payload.len() + PAYLOAD_SLACK,
                "a {}-byte payload allocated {largest} bytes",
                payload.len()
            );
        }
    }
}

#[test]
fn huge_overlong_and_chained_varints_are_errors() {
    let mut cases: Vec<(Vec<u8>, Type)> = vec![
        // A u32 that does not fit: u64 and u128 markers with big values.
        (varint(0xfd, &u64::MAX.to_le_bytes()), Type::U32),
        (varint(0xfe, &u128::MAX.to_le_bytes()), Type::U32),
        // The reserved marker, and markers with their value cut off.
        (vec![0xff], Type::U32),
        (vec![0xfc, 1, 2], Type::U32),
        (vec![0xfe], Type::U32),
        // An enum variant index far out of range.
        (varint(0xfc, &u32::MAX.to_le_bytes()), Type::Request),
        (varint(0xfd, &u64::MAX.to_le_bytes()), Type::HostMessage),
        // A 128-bit version in a Hello.
        (varint(0xfe, &u128::MAX.to_le_bytes()), Type::Hello),
        // 100,000 length markers in a row.
        (vec![0xfd; 100_000], Type::Bytes),
        (vec![0xfd; 100_000], Type::Response),
    ];
    // Nested lying lengths: Echo, whose vector claims 2^20 elements that are
    // not there.
    let mut nested = vec![1];
    nested.extend_from_slice(&varint(0xfd, &(1u64 << 20).to_le_bytes()));
    nested.extend_from_slice(&[0xfd; 1000]);
    cases.push((nested, Type::Request));
    for (payload, ty) in &cases {
        let (result, largest) = largest_allocation_during(|| ty.decode(payload));
        assert!(
            matches!(result, Err(CodecError::Decode(_))),
            "{ty:?} accepted {:?}",
            &payload[..payload.len().min(20)]
        );
        let bound = payload.len() + PAYLOAD_SLACK + ty.allowance();
        assert!(largest <= bound, "{largest} > {bound}");
        // And as every type, through the reader, under both limits.
        if payload.len() + HEADER_LEN - 4 <= HANDSHAKE_MAX_FRAME_LENGTH {
            run(
                &raw_frame(FrameKind::Hello, 0, payload),
                HANDSHAKE_MAX_FRAME_LENGTH,
            );
        }
        run(
            &raw_frame(FrameKind::Reply, 9, payload),
            DEFAULT_MAX_FRAME_LENGTH,
        );
    }
    // Overlong encodings of small numbers must not panic, whatever they
    // decode to.
    for overlong in [
        varint(0xfb, &5u16.to_le_bytes()),
        varint(0xfd, &5u64.to_le_bytes()),
    ] {
        for ty in TYPES {
            let _ = ty.decode(&overlong);
        }
    }
}

// ---------------------------------------------------------------------------
// Allocation bounds of specific attacks.
// ---------------------------------------------------------------------------

#[test]
fn an_announced_frame_is_not_allocated_before_it_arrives() {
    // Four bytes announcing a frame of exactly the default limit.
    let input = (DEFAULT_MAX_FRAME_LENGTH as u32).to_be_bytes();
    let reader = FrameReader::new(
        Chunked {
            data: &input,
            chunk: usize::MAX,
        },
        FrameCodec::new(DEFAULT_MAX_FRAME_LENGTH),
    );
    let mut reader = reader;
    let (result, largest) = largest_allocation_during(|| poll_ready(reader.next()));
    assert!(matches!(result, Err(CodecError::Truncated { buffered: 4 })));
    assert!(
        largest <= input.len() + GROWTH + SLACK,
        "4 bytes made the reader allocate {largest} bytes at once"
    );
}

#[test]
fn a_lying_sequence_length_preallocates_at_most_serdes_cap() {
    let mut payload = vec![1]; // Request::Echo
    payload.extend_from_slice(&varint(0xfd, &(1u64 << 60).to_le_bytes()));
    let (result, largest) = largest_allocation_during(|| decode_message::<Request>(&payload));
    assert!(result.is_err());
    assert!(
        largest <= payload.len() + PAYLOAD_SLACK + SERDE_SEQUENCE_PREALLOCATION,
        "a {}-byte payload made decode_message allocate {largest} bytes at once",
        payload.len()
    );
}

#[test]
fn reading_frames_never_allocates_more_than_the_limit() {
    // A frame of almost the limit (16 MiB), then one announcing the limit.
    let mut input = raw_frame(FrameKind::Reply, 1, &vec![0u8; 16_000_000]);
    input.extend_from_slice(&(DEFAULT_MAX_FRAME_LENGTH as u32).to_be_bytes());
    input.extend_from_slice(&[FrameKind::Reply as u8; 64]);
    let mut reader = FrameReader::new(
        Chunked {
            data: &input,
            chunk: 64 * 1024,
        },
        FrameCodec::new(DEFAULT_MAX_FRAME_LENGTH),
    );
    let mut largest = 0;
    loop {
        let (next, peak) = largest_allocation_during(|| poll_ready(reader.next()));
        largest = largest.max(peak);
        match next {
            Ok(Some(frame)) => drop(frame), // handled and dropped, as the host does
            Ok(None) | Err(_) => break,
        }
    }
    assert!(
        largest <= DEFAULT_MAX_FRAME_LENGTH + SLACK,
        "reading allocated {largest} bytes at once with a limit of {DEFAULT_MAX_FRAME_LENGTH}"
    );
}

// ---------------------------------------------------------------------------
// Silent connections.
// ---------------------------------------------------------------------------

const SILENT: usize = 1000;

/// Raises the soft limit on open files to the hard limit if it is below
/// `needed`; panics if the hard limit is too low for the test.
fn ensure_open_file_limit(needed: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|current| current >= needed) {
        return;
    }
    if let Some(maximum) = limit.maximum {
        assert!(
            maximum >= needed,
            "this test needs {needed} open files; the hard limit is {maximum}"
        );
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if let Err(error) = setrlimit(Resource::Nofile, raised) {
        panic!("could not raise the open file limit to {needed}: {error}");
    }
}

/// Descriptors this process has open.
fn open_descriptors() -> usize {
    match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries.count(),
        Err(error) => panic!("cannot list /proc/self/fd: {error}"),
    }
}

async fn connect(path: &Path) -> UnixStream {
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return stream,
            // The accept backlog is full: the gate is behind; let it run.
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::task::yield_now().await;
            }
            Err(error) => panic!("could not connect to {}: {error}", path.display()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_silent_connections_do_not_stop_workers_joining_or_jobs_flowing() {
    // Ours and the host's end of each connection, and room for the rest.
    ensure_open_file_limit(2 * SILENT as u64 + 512);
    within(60, async {
        let workers: BehaviourPool = match WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("behaviour_worker"))
            // Longer than this test: the silent connections stay open.
            .handshake_timeout(Duration::from_secs(120))
            .finish()
            .await
        {
            Ok(workers) => workers,
            Err(error) => panic!("the pool did not start: {error}"),
        };
        let before = open_descriptors();
        let mut silent = Vec::with_capacity(SILENT);
        for _ in 0..SILENT {
            silent.push(connect(workers.socket_path()).await);
        }
        // The host accepts them all (none is left in the backlog) but keeps
        // at most 256 waiting for a handshake: it drops the oldest, so the
        // crowd cannot use up its descriptors.
        let closed_by_host = |stream: &UnixStream| {
            let mut buf = [0u8; 16];
            match stream.try_read(&mut buf) {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => false,
                Ok(0) | Err(_) => true,
                Ok(_) => panic!("the host sent a silent connection data"),
            }
        };
        let bounded = eventually(Duration::from_secs(20), || {
            silent
                .iter()
                .filter(|stream| !closed_by_host(stream))
                .count()
                <= MAX_PENDING
        })
        .await;
        assert!(
            bounded,
            "the host kept more than {MAX_PENDING} silent connections"
        );
        assert!(
            open_descriptors() <= before + SILENT + MAX_PENDING + 64,
            "the host holds {} descriptors, {before} before",
            open_descriptors()
        );

        // Kill the worker: its replacement must join past the crowd.
        let old = pid_of(&workers).await;
        kill(old);
        let replaced = eventually(
            Duration::from_secs(30),
            || matches!(workers.worker_pids().as_slice(), [new] if *new != old && is_running(*new)),
        )
        .await;
        assert!(
            replaced,
            "no replacement joined; pids now {:?}",
            workers.worker_pids()
        );
        let new = pid_of(&workers).await;
        assert_ne!(new, old);
        assert_eq!(workers.worker_pids(), [new]);

        // Jobs flow through the replacement.
        let jobs: Vec<_> = (0..100u32)
            .map(|i| {
                let workers = workers.clone();
                tokio::spawn(async move { (i, workers.send(Request::Add(i, 2 * i)).await) })
            })
            .collect();
        for job in jobs {
            match job.await {
                Ok((i, Ok(Response::Sum(sum)))) => assert_eq!(sum, 3 * i),
                Ok((i, other)) => panic!("job {i} answered {other:?}"),
                Err(error) => panic!("a job's task failed: {error}"),
            }
        }

        // The newest are still waiting, untouched.
        assert!(!closed_by_host(&silent[SILENT - 1]));
        drop(silent);
    })
    .await;
}

// ---------------------------------------------------------------------------
// Stolen secrets.
// ---------------------------------------------------------------------------

/// Environment variable that marks the process one test spawned.
const MARKER: &str = "IPC2_HOSTILE_TEST_MARKER";

/// A spawned worker that has not connected yet, as a same-user process sees
/// it in /proc.
struct Pending {
    pid: u32,
    socket: PathBuf,
    secret: [u8; 32],
}

/// The child of this process whose environment holds `MARKER=marker`.
fn find_pending(marker: &str) -> Option<Pending> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the parenthesised name: state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent != Some(me) {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<(&[u8], &[u8])> = environ
            .split(|&byte| byte == 0)
            .filter_map(|var| {
                let eq = var.iter().position(|&byte| byte == b'=')?;
                Some((&var[..eq], &var[eq + 1..]))
            })
            .collect();
        let get = |name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name.as_bytes())
                .map(|(_, value)| *value)
        };
        if get(MARKER) != Some(marker.as_bytes()) {
            continue;
        }
        let socket = PathBuf::from(std::ffi::OsStr::from_bytes(get(ENV_SOCKET)?));
        let secret = Secret::from_hex(std::str::from_utf8(get(ENV_SECRET)?).ok()?)?;
        return Some(Pending {
            pid,
            socket,
            secret: *secret.as_bytes(),
        });
    }
    None
}

/// A binary that stays alive and never connects.
fn never_connects() -> &'static Path {
    ["/bin/sleep", "/usr/bin/sleep"]
        .into_iter()
        .map(Path::new)
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no sleep binary"))
}

/// A same-user process reads a spawned worker's secret from its environment
/// before the worker connects, and presents it in a well-formed `Hello`,
/// claiming `claim(spawned pid)` as its pid.
async fn impostor_with_a_stolen_secret_is_refused(name: &str, claim: fn(u32) -> u32) {
    let marker = format!("{}-{name}", std::process::id());
    let start = WorkerSet::<UnixListener, Response, Request>::builder()
        .worker_count(1)
        .worker_path(never_connects())
        .arg("30")
        .env(MARKER, &marker)
        .connect_timeout(Duration::from_secs(30))
        .handshake_timeout(Duration::from_secs(30))
        .finish();
    let impostor = async {
        let mut pending = None;
        let found = eventually(Duration::from_secs(10), || {
            pending = find_pending(&marker);
            pending.is_some()
        })
        .await;
        let Some(pending) = pending.filter(|_| found) else {
            panic!("the spawned worker did not show up in /proc");
        };
        let mut stream = match UnixStream::connect(&pending.socket).await {
            Ok(stream) => stream,
            Err(error) => panic!("could not connect: {error}"),
        };
        let hello = Hello {
            version: PROTOCOL_VERSION,
            pid: claim(pending.pid),
            secret: pending.secret,
        };
        let frame = match encode_frame(FrameKind::Hello, 0, &hello, HANDSHAKE_MAX_FRAME_LENGTH) {
            Ok(frame) => frame,
            Err(error) => panic!("{error}"),
        };
        if let Err(error) = stream.write_all(&frame).await {
            panic!("could not send the handshake: {error}");
        }
        let welcome = closed_by_host(stream).await;
        assert!(welcome.is_empty(), "the impostor was answered {welcome:?}");
        pending.pid
    };
    let (started, spawned) = tokio::join!(start, impostor);
    match started {
        Err(Error::HandshakeMismatch {
            worker,
            pid,
            claimed,
        }) => {
            assert_eq!(worker, 0);
            assert_eq!(pid, spawned);
            assert_eq!(claimed, std::process::id());
        }
        Err(other) => panic!("expected HandshakeMismatch, got {other}"),
        Ok(_) => panic!("the set started with an impostor as its worker"),
    }
    let gone = eventually(Duration::from_secs(10), || !is_running(spawned)).await;
    assert!(
        gone,
        "the spawned process {spawned} outlived the failed start"
    );
}

#[tokio::test]
async fn impostor_with_a_stolen_secret_and_the_workers_pid_is_refused() {
    within(
        60,
        impostor_with_a_stolen_secret_is_refused("lying", |spawned| spawned),
    )
    .await;
}

#[tokio::test]
async fn impostor_with_a_stolen_secret_and_its_own_pid_is_refused() {
    within(
        60,
        impostor_with_a_stolen_secret_is_refused("honest", |_| std::process::id()),
    )
    .await;
}
