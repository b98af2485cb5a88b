//! [`Blob`]: a body of bytes that travels through shared memory when it is
//! large, and through the socket when it is small.
//!
//! Put a `Blob` anywhere in a message (a field, an enum variant, a vector of
//! them). When a frame is encoded on a connection that can pass descriptors,
//! every `Blob` of at least the threshold
//! ([`blob_threshold`](crate::shm::blob_threshold)) is placed in this
//! process's shared memory (made there in the first place by
//! [`Blob::with_len`], so no copy is needed; otherwise copied in once) and
//! only a small handle is written into the frame; the receiver reads the
//! bytes where they are. Smaller blobs, and every blob on a transport that
//! cannot pass descriptors, are written inline, like `serde_bytes`.
//!
//! serde has no way to pass context to `Serialize`, so the codec sets a
//! thread-local `Encoding` (or `Decoding`) around its serializer; a
//! `Blob` serialized anywhere else (JSON, a file) is written as plain bytes.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, EnumAccess, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shm::{self, Allocation, Body, Handle, Lent, Link, Refused};

/// A body of bytes for a message field: in shared memory when large, inline
/// when small. Derefs to `[u8]`; cloning it is cheap (reference counted).
///
/// ```
/// use ipc2_common::Blob;
///
/// // Filled in place: no copy on the way to the worker.
/// let image = Blob::with_len(4 << 20, |bytes| bytes.fill(0x7f));
/// assert_eq!(image.len(), 4 << 20);
/// assert!(image.iter().all(|&b| b == 0x7f));
///
/// // Or from bytes you already have (copied into shared memory when sent).
/// let small = Blob::from(vec![1, 2, 3]);
/// assert_eq!(&small[..], &[1, 2, 3]);
/// ```
#[derive(Clone, Default)]
pub struct Blob(Repr);

#[derive(Clone)]
enum Repr {
    Heap(Bytes),
    Shared(Body),
}

impl Default for Repr {
    fn default() -> Self {
        Self::Heap(Bytes::new())
    }
}

/// A blob being filled; [`freeze`](BlobMut::freeze) it to send it.
pub struct BlobMut(MutRepr);

enum MutRepr {
    Heap(Vec<u8>),
    Shared(Allocation),
}

/// [`Blob::try_reserve`] found this process's shared memory full.
#[derive(Debug, thiserror::Error)]
#[error(
    "no room for a {len}-byte body in this process's shared memory (limit {limit} bytes); wait \
     with `Blob::reserve`, or raise `shared_memory_limit` on the WorkerSet builder"
)]
pub struct BlobFull {
    /// The size asked for.
    pub len: usize,
    /// The limit in force.
    pub limit: usize,
}

impl Blob {
    /// An empty blob.
    pub fn new() -> Self {
        Self::default()
    }

    /// A blob of `len` bytes, zeroed, then filled by `fill` in place. At or
    /// above the threshold it is made in shared memory when there is room
    /// (and then crosses to the worker without a copy); otherwise on the
    /// heap. Never waits: see [`Blob::reserve`] for that.
    pub fn with_len(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let mut blob = match Self::try_reserve(len) {
            Ok(blob) => blob,
            Err(_) => BlobMut(MutRepr::Heap(vec![0; len])),
        };
        fill(&mut blob);
        blob.freeze()
    }

    /// A zeroed blob of `len` bytes to fill. At or above the threshold it is
    /// made in shared memory, waiting while this process's shared memory is
    /// at its limit (until bodies are released); a body that could never fit
    /// within the limit is made on the heap.
    pub async fn reserve(len: usize) -> BlobMut {
        let shared = match len >= shm::blob_threshold() {
            true => shm::wait_alloc(len).await,
            false => None,
        };
        match shared {
            Some(allocation) => BlobMut(MutRepr::Shared(allocation)),
            None => BlobMut(MutRepr::Heap(vec![0; len])),
        }
    }

    /// Like [`reserve`](Blob::reserve), but fails at once instead of
    /// waiting when shared memory is at its limit.
    pub fn try_reserve(len: usize) -> Result<BlobMut, BlobFull> {
        if len >= shm::blob_threshold() {
            match shm::try_alloc(len, true) {
                Ok(allocation) => return Ok(BlobMut(MutRepr::Shared(allocation))),
                Err(Refused::Full) => {
                    return Err(BlobFull {
                        len,
                        limit: shm::shared_memory_limit(),
                    });
                }
                Err(Refused::Never) => {}
            }
        }
        Ok(BlobMut(MutRepr::Heap(vec![0; len])))
    }

    /// A blob holding a copy of `bytes` (in shared memory if it is large
    /// and there is room).
    pub fn copy_from_slice(bytes: &[u8]) -> Self {
        match copied_to_shared(bytes) {
            Some(body) => Self(Repr::Shared(body)),
            None => Self(Repr::Heap(Bytes::copy_from_slice(bytes))),
        }
    }

    /// Whether the bytes are in shared memory (this process's or a peer's).
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared(_))
    }
}

impl BlobMut {
    /// The finished blob.
    pub fn freeze(self) -> Blob {
        Blob(match self.0 {
            MutRepr::Heap(bytes) => Repr::Heap(bytes.into()),
            MutRepr::Shared(allocation) => Repr::Shared(Body::local(allocation)),
        })
    }
}

impl Deref for Blob {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Heap(bytes) => bytes,
            Repr::Shared(body) => body.as_slice(),
        }
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Deref for BlobMut {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            MutRepr::Heap(bytes) => bytes,
            MutRepr::Shared(allocation) => allocation.as_slice(),
        }
    }
}

impl DerefMut for BlobMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.0 {
            MutRepr::Heap(bytes) => bytes,
            MutRepr::Shared(allocation) => allocation.as_mut_slice(),
        }
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Self {
        Self(Repr::Heap(bytes.into()))
    }
}

impl From<Bytes> for Blob {
    fn from(bytes: Bytes) -> Self {
        Self(Repr::Heap(bytes))
    }
}

impl From<&[u8]> for Blob {
    fn from(bytes: &[u8]) -> Self {
        Self::copy_from_slice(bytes)
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Blob {}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = if self.is_shared() { "shared" } else { "inline" };
        write!(f, "Blob({} bytes, {place})", self.len())
    }
}

impl std::fmt::Debug for BlobMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobMut({} bytes)", self.len())
    }
}

/// A copy of `bytes` in this process's shared memory, if they reach the
/// threshold and there is room.
fn copied_to_shared(bytes: &[u8]) -> Option<Body> {
    if bytes.len() < shm::blob_threshold() {
        return None;
    }
    let mut allocation = shm::try_alloc(bytes.len(), false).ok()?;
    shm::copy_into(allocation.as_mut_slice(), bytes);
    Some(Body::local(allocation))
}

thread_local! {
    /// The encoding in force on this thread (set by `Encoding::run` for the
    /// length of one serializer pass), or null.
    static ENCODING: Cell<*mut Encoding> = const { Cell::new(std::ptr::null_mut()) };
    static DECODING: RefCell<Option<Decoding>> = const { RefCell::new(None) };
}

/// What the blobs of one frame being encoded become. The codec runs the
/// serializer twice (sizing, then writing): blobs are placed in the first
/// pass and each is written in the second as the first pass decided.
pub(crate) struct Encoding {
    threshold: usize,
    /// The connection's link (only compared, never followed).
    link: *const Link,
    /// Per blob, in visiting order: its bytes (to recognise it in the
    /// writing pass) and its index in the table, if it is shared.
    placed: Vec<(usize, usize, Option<u32>)>,
    cursor: usize,
    writing: bool,
    /// The frame's table of handles.
    pub(crate) handles: Vec<Handle>,
    /// The bodies the handles name.
    pub(crate) lent: Lent,
}

impl Encoding {
    /// Places blobs of at least `threshold` bytes in shared memory, for a
    /// frame on `link` (`None`: on the host, before the worker is chosen).
    pub(crate) fn new(threshold: usize, link: Option<&Arc<Link>>) -> Self {
        Self {
            threshold,
            link: link.map_or(std::ptr::null(), Arc::as_ptr),
            placed: Vec::new(),
            cursor: 0,
            writing: false,
            handles: Vec::new(),
            lent: Lent::default(),
        }
    }

    /// Runs `f` (a serializer pass) with this encoding in force.
    pub(crate) fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Puts back the outer encoding however `f` ends.
        struct Restore(*mut Encoding);
        impl Drop for Restore {
            fn drop(&mut self) {
                ENCODING.with(|cell| cell.set(self.0));
            }
        }
        let _restore = Restore(ENCODING.with(|cell| cell.replace(self as *mut Encoding)));
        f()
    }

    /// Switches from the sizing pass to the writing pass.
    pub(crate) fn start_writing(&mut self) {
        self.writing = true;
        self.cursor = 0;
    }

    /// Whether the writing pass met every blob of the sizing pass.
    pub(crate) fn complete(&self) -> bool {
        self.cursor == self.placed.len()
    }

    fn place(&mut self, blob: &Blob) -> Result<Option<u32>, &'static str> {
        let identity = (blob.as_ptr() as usize, blob.len());
        if self.writing {
            let &(pointer, len, index) = self
                .placed
                .get(self.cursor)
                .ok_or("a Blob was serialized more often than when the message was sized")?;
            if (pointer, len) != identity {
                return Err("a Blob was serialized differently than when the message was sized");
            }
            self.cursor += 1;
            return Ok(index);
        }
        let index = self.decide(blob);
        self.placed.push((identity.0, identity.1, index));
        Ok(index)
    }

    fn decide(&mut self, blob: &Blob) -> Option<u32> {
        if blob.len() < self.threshold {
            return None;
        }
        let link = self.link;
        let body = match &blob.0 {
            Repr::Shared(body) if body.handle_for(link).is_some() => body.clone(),
            // On the heap, or a peer's body this frame's receiver cannot
            // see: copy it into shared memory once, or send it inline.
            _ => copied_to_shared(blob)?,
        };
        let handle = body.handle_for(link)?;
        let index = u32::try_from(self.handles.len()).ok()?;
        self.handles.push(handle);
        self.lent.push(body);
        Some(index)
    }
}

/// The bodies a frame being decoded brought, and its payload (inline blobs
/// are cut from it without a copy).
pub(crate) struct Decoding {
    payload: Bytes,
    bodies: Vec<Option<Body>>,
}

impl Decoding {
    pub(crate) fn run<R>(payload: &Bytes, bodies: Vec<Body>, f: impl FnOnce() -> R) -> R {
        if bodies.is_empty() {
            // Nothing shared: small inline blobs are copied out instead.
            return f();
        }
        let decoding = Self {
            payload: payload.clone(),
            bodies: bodies.into_iter().map(Some).collect(),
        };
        let outer = DECODING.with(|cell| cell.replace(Some(decoding)));
        let result = f();
        DECODING.with(|cell| cell.replace(outer));
        result
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoding = ENCODING.with(Cell::get);
        // SAFETY: a non-null pointer was set by `Encoding::run` from a
        // `&mut Encoding` that nothing else uses until `run` returns and
        // restores the previous pointer; serializers on this thread call
        // this one blob at a time, and `place` serializes nothing itself.
        let placed = (!encoding.is_null()).then(|| unsafe { &mut *encoding }.place(self));
        match placed {
            None | Some(Ok(None)) => {
                serializer.serialize_newtype_variant("Blob", 0, "Inline", &Inline(self))
            }
            Some(Ok(Some(index))) => {
                serializer.serialize_newtype_variant("Blob", 1, "Shared", &index)
            }
            Some(Err(message)) => Err(serde::ser::Error::custom(message)),
        }
    }
}

/// A blob's bytes, serialized as one byte string.
struct Inline<'a>(&'a [u8]);

impl Serialize for Inline<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

#[derive(Deserialize)]
#[serde(variant_identifier)]
enum Tag {
    Inline,
    Shared,
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_enum("Blob", &["Inline", "Shared"], BlobVisitor)
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an ipc2 Blob")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Blob, A::Error> {
        match data.variant()? {
            (Tag::Inline, variant) => variant.newtype_variant_seed(InlineSeed),
            (Tag::Shared, variant) => {
                let index: u32 = variant.newtype_variant()?;
                let body = DECODING.with(|cell| {
                    cell.borrow_mut()
                        .as_mut()
                        .and_then(|decoding| decoding.bodies.get_mut(index as usize)?.take())
                });
                body.map(|body| Blob(Repr::Shared(body))).ok_or_else(|| {
                    de::Error::custom(format_args!(
                        "the message names shared body {index}, which its frame does not carry"
                    ))
                })
            }
        }
    }
}

struct InlineSeed;

impl<'de> DeserializeSeed<'de> for InlineSeed {
    type Value = Blob;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Blob, D::Error> {
        deserializer.deserialize_bytes(InlineVisitor)
    }
}

struct InlineVisitor;

impl<'de> Visitor<'de> for InlineVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, bytes: &'de [u8]) -> Result<Blob, E> {
        // Cut from the frame's own buffer when it comes from there.
        let cut = DECODING.with(|cell| {
            let decoding = cell.borrow();
            let payload = &decoding.as_ref()?.payload;
            let within = payload.as_ptr_range();
            let range = bytes.as_ptr_range();
            (within.start <= range.start && range.end <= within.end)
                .then(|| payload.slice_ref(bytes))
        });
        Ok(cut.map_or_else(|| Blob::from(bytes.to_vec()), Blob::from))
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Blob, E> {
        Ok(Blob::from(bytes.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob::from(bytes))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element()? {
            bytes.push(byte);
        }
        Ok(Blob::from(bytes))
    }
}
