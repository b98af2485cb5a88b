//! Shared memory for large bodies: where a [`Blob`](crate::blob::Blob)'s
//! bytes live when they are too large to copy through the socket.
//!
//! - `region` (private): one `memfd`, sealed against shrinking and mapped;
//!   a peer's region, checked before it is mapped.
//! - `arena` (private): this process's regions, pooled and bounded, and
//!   the allocator that carves bodies out of them.
//! - [`link`]: what one connection knows about shared memory: the peer's
//!   regions it has mapped, and which of this process's bodies the peer holds.
//! - [`body`]: a body in shared memory, this process's or a peer's.
//! - `copy` (private): how bytes are copied into a region (large bodies
//!   with streaming stores).
//!
//! The protocol, in short: each process writes only into its own regions.
//! A region's descriptor is sent to a peer once (`SCM_RIGHTS`, in a
//! `RegionAttach` frame), when the region is made or when the peer connects;
//! after that a frame names a body by `(region, offset, length)`. The peer
//! maps the region read-only, checks every handle against what it mapped and
//! what it lent, and sends `BodyRelease` when it drops the body; only then
//! is the space reused. A connection that ends takes all its loans with it.

mod arena;
pub mod body;
mod copy;
pub mod link;
mod region;

use std::io;

pub(crate) use arena::{Allocation, Refused, try_alloc, wait_alloc};
pub use arena::{
    DEFAULT_BLOB_THRESHOLD, DEFAULT_SHARED_MEMORY_LIMIT, Usage, blob_threshold, configure,
    shared_memory_limit, usage,
};
pub use body::{Body, Lent};
pub(crate) use copy::copy_into;
pub use link::{Control, ControlSink, Link, Side};

/// Which process's region a [`Handle`] names, from the receiver's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The sender's own region (the receiver mapped it from a `RegionAttach`).
    Sender,
    /// The receiver's region: a body the receiver lent, passed back.
    Receiver,
}

/// Where a body lies in shared memory: what crosses the socket instead of
/// the body's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle {
    /// Whose region.
    pub owner: Owner,
    /// The region's id (unique within its owner's process).
    pub region: u32,
    /// Byte offset of the body in the region.
    pub offset: u64,
    /// Length of the body in bytes.
    pub len: u64,
}

/// A peer's shared-memory frame that breaks the rules: a protocol violation
/// on that connection (the host kills such a worker).
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A handle or frame names a region the peer never attached.
    #[error("shared-memory region {region} was never attached by the peer")]
    UnknownRegion {
        /// The region.
        region: u32,
    },
    /// A handle reaches past the end of its region.
    #[error(
        "shared-memory handle for {len} bytes at offset {offset} of region {region} reaches past \
         its end ({size} bytes)"
    )]
    OutOfBounds {
        /// The region.
        region: u32,
        /// The handle's offset.
        offset: u64,
        /// The handle's length.
        len: u64,
        /// The region's size.
        size: usize,
    },
    /// A handle names this process's memory that was not lent to the peer
    /// (it would read another job's body).
    #[error(
        "shared-memory handle names {len} bytes at offset {offset} of this side's region \
         {region}, which were not lent to the peer"
    )]
    NotLent {
        /// The region.
        region: u32,
        /// The handle's offset.
        offset: u64,
        /// The handle's length.
        len: u64,
    },
    /// The peer released a body it does not hold.
    #[error(
        "the peer released {len} bytes at offset {offset} of region {region}, which it does not hold"
    )]
    UnknownRelease {
        /// The region.
        region: u32,
        /// The offset.
        offset: u64,
        /// The length.
        len: u64,
    },
    /// A `RegionAttach` frame arrived without its descriptor.
    #[error("region {region} was attached without a file descriptor")]
    MissingDescriptor {
        /// The region.
        region: u32,
    },
    /// A region id was attached twice.
    #[error("region {region} was attached twice")]
    DuplicateRegion {
        /// The region.
        region: u32,
    },
    /// The descriptor is not a memfd sealed against shrinking: the peer
    /// could truncate it and crash this process with `SIGBUS`.
    #[error("region {region} is not a memfd sealed against shrinking; refused")]
    Unsealed {
        /// The region.
        region: u32,
    },
    /// The region is smaller than it claims.
    #[error("region {region} claims {claimed} bytes but holds {actual}")]
    WrongSize {
        /// The region.
        region: u32,
        /// What the frame said.
        claimed: u64,
        /// What the descriptor holds.
        actual: u64,
    },
    /// The peer's regions would exceed this side's limit.
    #[error(
        "the peer's shared memory would exceed {limit} bytes (raise `shared_memory_limit` on the \
         WorkerSet builder if bodies this large are expected)"
    )]
    OverLimit {
        /// The limit.
        limit: usize,
    },
    /// The region could not be mapped.
    #[error("could not map region {region}: {source}")]
    Map {
        /// The region.
        region: u32,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}
