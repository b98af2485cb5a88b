//! This process's shared memory: regions pooled for reuse, bounded in
//! total, carved into bodies.
//!
//! There is one arena per process (a `Blob` is made before anyone knows
//! which connection it will travel on). A body takes a page-aligned range
//! of the first region with room (first fit); when none has room a region
//! is made, of at least [`REGION_MIN`] bytes, as long as the regions stay
//! within [`shared_memory_limit`]; past it, regions with nothing in them are
//! retired to make room, and if that is not enough the allocation fails (or
//! waits, for [`wait_alloc`]). Freed ranges go back to their region and are
//! reused, already faulted in. Every live connection that can pass
//! descriptors is sent each region once, when it is made or when the
//! connection opens, and told when it is retired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::link::Link;
use super::region::LocalRegion;
use crate::sync::lock;

/// Bodies at least this large travel through shared memory by default;
/// smaller ones are copied through the socket. Chosen with `ipc2_bench`'s
/// threshold rows (a new body each way, 1 worker, 4 in flight): shared
/// memory is level with the socket at 4 KiB, 2.3× faster at 16 KiB and
/// 6.5× at 64 KiB.
pub const DEFAULT_BLOB_THRESHOLD: usize = 16 * 1024;
/// Default bound on the shared memory one process makes for bodies (and on
/// what it maps of one peer's): 1 GiB.
pub const DEFAULT_SHARED_MEMORY_LIMIT: usize = 1 << 30;
/// Smallest region made.
const REGION_MIN: usize = 8 << 20;
/// Bodies start on page boundaries.
const PAGE: usize = 4096;
/// A region with nothing in it for this long is retired (unmapped here and
/// in every peer) the next time a body is made or freed, so that a burst of
/// large bodies does not keep its memory for good.
const IDLE_RETIRE: Duration = Duration::from_secs(10);

static THRESHOLD: AtomicUsize = AtomicUsize::new(DEFAULT_BLOB_THRESHOLD);
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_SHARED_MEMORY_LIMIT);
static ARENA: LazyLock<Arena> = LazyLock::new(|| Arena {
    state: Mutex::new(State::default()),
    room: Notify::new(),
});

/// Sets this process's body threshold (bodies smaller than it travel
/// inline; `usize::MAX` turns shared memory off) and the bound on its shared
/// memory. Process-wide: the host's builder calls it at `finish()`, and a
/// worker with what its host chose.
pub fn configure(threshold: usize, limit: usize) {
    THRESHOLD.store(threshold.max(1), Ordering::Relaxed);
    LIMIT.store(limit, Ordering::Relaxed);
}

/// Bodies at least this large travel through shared memory.
pub fn blob_threshold() -> usize {
    THRESHOLD.load(Ordering::Relaxed)
}

/// Bound on this process's shared memory for bodies.
pub fn shared_memory_limit() -> usize {
    LIMIT.load(Ordering::Relaxed)
}

/// What this process's arena holds now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Regions mapped.
    pub regions: usize,
    /// Their total size in bytes.
    pub mapped: usize,
    /// Bytes of them held by bodies (rounded up to pages).
    pub used: usize,
}

/// A snapshot of this process's arena.
pub fn usage() -> Usage {
    let state = ARENA.lock();
    Usage {
        regions: state.slots.len(),
        mapped: state.mapped,
        used: state.slots.iter().map(|slot| slot.used).sum(),
    }
}

struct Arena {
    state: Mutex<State>,
    /// Signalled whenever space is freed.
    room: Notify,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    mapped: usize,
    next_id: u32,
    /// Connections to send new regions to.
    peers: Vec<Weak<Link>>,
}

struct Slot {
    region: Arc<LocalRegion>,
    /// Free ranges `(offset, len)`, sorted, never adjacent.
    free: Vec<(usize, usize)>,
    used: usize,
    /// Bytes from here on were never handed out: still zero.
    touched: usize,
    /// Since when nothing is in it.
    idle_since: Option<Instant>,
}

/// Why an allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not now: the limit is reached.
    Full,
    /// Never: larger than the limit, or the system refused a region.
    Never,
}

impl Arena {
    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn alloc(&self, len: usize, zeroed: bool) -> Result<Allocation, Refused> {
        let size = len.checked_next_multiple_of(PAGE).ok_or(Refused::Never)?;
        let limit = shared_memory_limit();
        if len == 0 || size > limit {
            return Err(Refused::Never);
        }
        let mut state = self.lock();
        state.retire_idle();
        let hit = state
            .slots
            .iter_mut()
            .enumerate()
            .find_map(|(index, slot)| slot.take(size).map(|offset| (index, offset)));
        let (index, offset) = match hit {
            Some(hit) => hit,
            None => {
                let region_len = size
                    .next_power_of_two()
                    .max(REGION_MIN)
                    .min(limit)
                    .max(size);
                state.make_room(region_len, limit)?;
                let id = state.next_id;
                let region = LocalRegion::create(id, region_len).map_err(|_| Refused::Never)?;
                state.next_id = state.next_id.wrapping_add(1);
                state.mapped += region_len;
                let region = Arc::new(region);
                state.peers.retain(|peer| match peer.upgrade() {
                    Some(link) => {
                        link.send_attach(&region);
                        true
                    }
                    None => false,
                });
                let mut slot = Slot {
                    free: vec![(0, region_len)],
                    region,
                    used: 0,
                    touched: 0,
                    idle_since: None,
                };
                let offset = slot.take(size).ok_or(Refused::Never)?;
                state.slots.push(slot);
                (state.slots.len() - 1, offset)
            }
        };
        let slot = &mut state.slots[index];
        let dirty = match zeroed {
            true => slot.touched.saturating_sub(offset).min(len),
            false => 0,
        };
        slot.touched = slot.touched.max(offset + size);
        let mut allocation = Allocation {
            region: Arc::clone(&slot.region),
            offset,
            len,
            size,
        };
        drop(state);
        // Reused space still holds an earlier body: zero it (outside the lock).
        allocation.as_mut_slice()[..dirty].fill(0);
        Ok(allocation)
    }

    fn free(&self, region: u32, offset: usize, size: usize) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.iter_mut().find(|slot| slot.region.id == region) {
            slot.give_back(offset, size);
            if slot.used == 0 {
                slot.idle_since = Some(Instant::now());
            }
        }
        state.retire_idle();
        drop(state);
        self.room.notify_waiters();
    }
}

impl State {
    /// Retires empty regions until `len` more bytes fit within `limit`.
    fn make_room(&mut self, len: usize, limit: usize) -> Result<(), Refused> {
        while self.mapped + len > limit {
            let Some(index) = self.slots.iter().position(|slot| slot.used == 0) else {
                return Err(Refused::Full);
            };
            self.retire(index);
        }
        Ok(())
    }

    /// Retires the regions that have been empty for [`IDLE_RETIRE`].
    fn retire_idle(&mut self) {
        let now = Instant::now();
        let idle = |slot: &Slot| {
            slot.used == 0
                && slot
                    .idle_since
                    .is_some_and(|since| now.duration_since(since) >= IDLE_RETIRE)
        };
        while let Some(index) = self.slots.iter().position(idle) {
            self.retire(index);
        }
    }

    /// Unmaps an empty region, here and in every peer.
    fn retire(&mut self, index: usize) {
        let slot = self.slots.swap_remove(index);
        self.mapped -= slot.region.map.len();
        for link in self.peers.iter().filter_map(Weak::upgrade) {
            link.send_detach(slot.region.id);
        }
    }
}

impl Slot {
    /// First fit: the offset of `size` free bytes, now taken.
    fn take(&mut self, size: usize) -> Option<usize> {
        let index = self.free.iter().position(|&(_, len)| len >= size)?;
        let (offset, len) = self.free[index];
        if len == size {
            self.free.remove(index);
        } else {
            self.free[index] = (offset + size, len - size);
        }
        self.used += size;
        self.idle_since = None;
        Some(offset)
    }

    /// Returns a range, merging it with its free neighbours.
    fn give_back(&mut self, offset: usize, size: usize) {
        self.used -= size;
        let index = self.free.partition_point(|&(start, _)| start < offset);
        let mut range = (offset, size);
        let next = self.free.get(index).copied();
        if let Some((_, next_len)) = next.filter(|&(next, _)| offset + size == next) {
            range.1 += next_len;
            self.free.remove(index);
        }
        if index > 0 {
            let (previous, previous_len) = self.free[index - 1];
            if previous + previous_len == offset {
                self.free[index - 1].1 += range.1;
                return;
            }
        }
        self.free.insert(index, range);
    }
}

/// A body's range in one of this process's regions, given back when
/// dropped.
#[derive(Debug)]
pub(crate) struct Allocation {
    region: Arc<LocalRegion>,
    offset: usize,
    len: usize,
    size: usize,
}

impl Allocation {
    pub(crate) fn region(&self) -> u32 {
        self.region.id
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `offset + len` lies within the region (the allocator
        // handed out that range), which lives as long as `self`; writers
        // need `&mut self`.
        unsafe { std::slice::from_raw_parts(self.region.map.ptr().add(self.offset), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the range belongs to this allocation
        // alone, and `&mut self` makes this the only borrow of it.
        unsafe { std::slice::from_raw_parts_mut(self.region.map.ptr().add(self.offset), self.len) }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        ARENA.free(self.region.id, self.offset, self.size);
    }
}

/// `len` bytes of shared memory (zeroed, or as an earlier body left them
/// when the caller overwrites them all), or at once the reason why not.
pub(crate) fn try_alloc(len: usize, zeroed: bool) -> Result<Allocation, Refused> {
    ARENA.alloc(len, zeroed)
}

/// `len` zeroed bytes of shared memory, waiting for room while the limit is
/// reached; `None` if they could never fit.
pub(crate) async fn wait_alloc(len: usize) -> Option<Allocation> {
    loop {
        let freed = ARENA.room.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        match ARENA.alloc(len, true) {
            Ok(allocation) => return Some(allocation),
            Err(Refused::Never) => return None,
            Err(Refused::Full) => freed.await,
        }
    }
}

/// Sends `link` every region there is, and every region made from now on
/// until it is gone.
pub(crate) fn register(link: &Arc<Link>) {
    let mut state = ARENA.lock();
    state.peers.retain(|peer| peer.strong_count() > 0);
    for slot in &state.slots {
        link.send_attach(&slot.region);
    }
    state.peers.push(Arc::downgrade(link));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_ranges_merge_with_their_neighbours() {
        let region = LocalRegion::create(u32::MAX, 16 * PAGE).expect("a memfd region");
        let mut slot = Slot {
            region: Arc::new(region),
            free: vec![(0, 16 * PAGE)],
            used: 0,
            touched: 0,
            idle_since: None,
        };
        let a = slot.take(4 * PAGE).unwrap();
        let b = slot.take(4 * PAGE).unwrap();
        let c = slot.take(4 * PAGE).unwrap();
        assert_eq!((a, b, c), (0, 4 * PAGE, 8 * PAGE));
        assert_eq!(slot.take(8 * PAGE), None);
        slot.give_back(a, 4 * PAGE);
        slot.give_back(c, 4 * PAGE);
        assert_eq!(slot.free, vec![(0, 4 * PAGE), (8 * PAGE, 8 * PAGE)]);
        slot.give_back(b, 4 * PAGE);
        assert_eq!(slot.free, vec![(0, 16 * PAGE)]);
        assert_eq!(slot.used, 0);
    }
}
