//! One region of shared memory: a `memfd` of fixed size, sealed so that no
//! one can shrink (or grow) it, mapped `MAP_SHARED`.
//!
//! A mapping whose file shrinks under it raises `SIGBUS` on the next touch
//! past the new end. This process's regions are sealed before any peer sees
//! them, and a peer's region is mapped only after checking that it carries
//! the shrink seal and is at least as large as claimed: then no peer can
//! crash this process through a region.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::ShmError;

/// This process's regions up to this size are faulted in when made
/// (`MAP_POPULATE`): one system call instead of a page fault per 4 KiB on
/// first use. Larger ones (a sparse gibibyte) are faulted in as they are
/// touched, and so are a peer's regions (a new worker maps all its host's
/// regions, most of which it may never read).
const POPULATE_UP_TO: usize = 256 << 20;

/// An `mmap`ed range, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory; who may write through it is decided by
// the types that hand out slices of it (an `Allocation` is owned by one
// writer until it is frozen).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map(fd: impl AsFd, len: usize, writable: bool) -> io::Result<Self> {
        let prot = match writable {
            true => ProtFlags::READ | ProtFlags::WRITE,
            false => ProtFlags::READ,
        };
        let flags = match writable && len <= POPULATE_UP_TO {
            true => MapFlags::SHARED | MapFlags::POPULATE,
            false => MapFlags::SHARED,
        };
        // SAFETY: a fresh mapping at an address of the kernel's choosing;
        // it overlaps nothing Rust knows about.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0)? };
        let ptr = NonNull::new(ptr.cast()).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(Self { ptr, len })
    }

    /// The start of the mapping.
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Its length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: this mapping was made by `map` and nothing borrows it any
        // more (every slice of it holds an `Arc` of its region).
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A region of this process: writable here, read by peers.
#[derive(Debug)]
pub(crate) struct LocalRegion {
    pub(crate) id: u32,
    fd: OwnedFd,
    pub(crate) map: Mapping,
}

impl LocalRegion {
    /// A new region of `len` bytes (zeroed, as the kernel hands them out).
    pub(crate) fn create(id: u32, len: usize) -> io::Result<Self> {
        let fd = rustix::fs::memfd_create(
            "ipc2-bodies",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = Mapping::map(&fd, len, true)?;
        Ok(Self { id, fd, map })
    }

    /// A descriptor of the region to send to a peer.
    pub(crate) fn share(&self) -> io::Result<OwnedFd> {
        Ok(rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?)
    }
}

/// A peer's region, mapped read-only once it passed the checks.
#[derive(Debug)]
pub(crate) struct PeerRegion {
    pub(crate) map: Mapping,
}

impl PeerRegion {
    /// Checks `fd` (a memfd sealed against shrinking, at least `len` bytes)
    /// and maps it. The descriptor is closed afterwards: the mapping keeps
    /// the memory alive.
    pub(crate) fn map(region: u32, fd: OwnedFd, len: u64) -> Result<Self, ShmError> {
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|_| ShmError::Unsealed { region })?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(ShmError::Unsealed { region });
        }
        let actual = rustix::fs::fstat(&fd)
            .map(|stat| stat.st_size as u64)
            .map_err(|e| ShmError::Map {
                region,
                source: e.into(),
            })?;
        let size = usize::try_from(len).ok().filter(|&size| size > 0);
        let Some(size) = size.filter(|_| actual >= len) else {
            return Err(ShmError::WrongSize {
                region,
                claimed: len,
                actual,
            });
        };
        let map =
            Mapping::map(&fd, size, false).map_err(|source| ShmError::Map { region, source })?;
        Ok(Self { map })
    }
}
