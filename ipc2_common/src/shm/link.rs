//! What one connection knows about shared memory: the peer's regions it
//! has mapped, and which of this process's bodies the peer holds.
//!
//! Every handle a peer sends is checked here before anything reads memory
//! through it: a body in the peer's region must lie within a region the
//! peer attached (and this side mapped after checking its seals and size);
//! a body in this side's region must be one this side lent to this very
//! peer and the peer has not released. Anything else is a [`ShmError`], a
//! protocol violation on the connection. When the connection goes, so do
//! its loans: bodies lent to a dead peer are freed with it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};

use super::arena::{self, Allocation};
use super::body::{Body, Lent};
use super::region::{LocalRegion, PeerRegion};
use super::{Handle, Owner, ShmError};
use crate::descriptors::Descriptors;
use crate::sync::lock;

/// Which end of the connection this process is (frames carry the sender's
/// direction in their kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The host, which spawned the worker.
    Host,
    /// The worker.
    Worker,
}

/// A shared-memory control message between two processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// A region of the sender's, `len` bytes: its descriptor comes with it.
    Attach {
        /// The region's id.
        region: u32,
        /// Its size.
        len: u64,
    },
    /// The sender retired a region (none of it is lent any more).
    Detach {
        /// The region's id.
        region: u32,
    },
    /// The sender dropped a body the receiver lent it.
    Release {
        /// The receiver's region.
        region: u32,
        /// The body's offset.
        offset: u64,
        /// The body's length.
        len: u64,
    },
}

/// Where a link queues its control messages: the connection's outbox.
pub trait ControlSink: Send + Sync + 'static {
    /// Queues `control` (with `fd` attached, for [`Control::Attach`]) after
    /// every frame queued before it.
    fn send_control(&self, side: Side, control: Control, fd: Option<OwnedFd>);
}

/// A body lent to the peer: `(region, offset, len)`.
pub(crate) type Key = (u32, u64, u64);

/// The shared-memory state of one connection.
pub struct Link {
    side: Side,
    descriptors: Arc<dyn Descriptors>,
    sink: Arc<dyn ControlSink>,
    /// Bound on the peer's regions mapped at once.
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    regions: HashMap<u32, Arc<PeerRegion>>,
    mapped: usize,
    loans: HashMap<Key, (Arc<Allocation>, u32)>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Link")
            .field("side", &self.side)
            .field("peer_regions", &state.regions.len())
            .field("loans", &state.loans.len())
            .finish()
    }
}

impl Link {
    /// The link of a connection that passes descriptors with
    /// `descriptors` and queues frames into `sink`. This process's regions
    /// are sent to the peer at once and as they are made. The peer may map
    /// at most `limit` bytes of its own regions here.
    pub fn open(
        side: Side,
        descriptors: Arc<dyn Descriptors>,
        sink: Arc<dyn ControlSink>,
        limit: usize,
    ) -> Arc<Self> {
        let link = Arc::new(Self {
            side,
            descriptors,
            sink,
            limit,
            state: Mutex::new(State::default()),
        });
        arena::register(&link);
        link
    }

    /// This process's end of the connection.
    pub fn side(&self) -> Side {
        self.side
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn send_attach(&self, region: &LocalRegion) {
        // Without a descriptor to send (out of descriptors), the peer never
        // learns of the region and refuses bodies in it: their jobs fail.
        if let Ok(fd) = region.share() {
            let len = region.map.len() as u64;
            let attach = Control::Attach {
                region: region.id,
                len,
            };
            self.sink.send_control(self.side, attach, Some(fd));
        }
    }

    pub(crate) fn send_detach(&self, region: u32) {
        self.sink
            .send_control(self.side, Control::Detach { region }, None);
    }

    pub(crate) fn send_release(&self, (region, offset, len): Key) {
        let release = Control::Release {
            region,
            offset,
            len,
        };
        self.sink.send_control(self.side, release, None);
    }

    /// Records that the peer is about to be sent the bodies in `lent`: their
    /// space stays taken until it releases each, or the connection ends.
    pub fn lend(&self, lent: &Lent) {
        let mut state = self.lock();
        for (key, allocation) in lent.local() {
            state
                .loans
                .entry(key)
                .and_modify(|(_, count)| *count += 1)
                .or_insert_with(|| (Arc::clone(allocation), 1));
        }
    }

    /// Takes in a control message from the peer.
    pub fn receive(&self, control: Control) -> Result<(), ShmError> {
        match control {
            Control::Attach { region, len } => {
                let fd = self
                    .descriptors
                    .take_received()
                    .ok_or(ShmError::MissingDescriptor { region })?;
                let mut state = self.lock();
                if state.regions.contains_key(&region) {
                    return Err(ShmError::DuplicateRegion { region });
                }
                let size = usize::try_from(len).unwrap_or(usize::MAX);
                if state.mapped.saturating_add(size) > self.limit {
                    return Err(ShmError::OverLimit { limit: self.limit });
                }
                let mapped = PeerRegion::map(region, fd, len)?;
                state.mapped += size;
                state.regions.insert(region, Arc::new(mapped));
                Ok(())
            }
            Control::Detach { region } => {
                let mut state = self.lock();
                let gone = state
                    .regions
                    .remove(&region)
                    .ok_or(ShmError::UnknownRegion { region })?;
                state.mapped -= gone.map.len();
                drop(state);
                // Bodies still read from it keep the mapping until dropped.
                drop(gone);
                Ok(())
            }
            Control::Release {
                region,
                offset,
                len,
            } => {
                let key = (region, offset, len);
                let mut state = self.lock();
                let unknown = ShmError::UnknownRelease {
                    region,
                    offset,
                    len,
                };
                let (_, count) = state.loans.get_mut(&key).ok_or(unknown)?;
                *count -= 1;
                let freed = match *count {
                    0 => state.loans.remove(&key),
                    _ => None,
                };
                drop(state);
                // The space is reused once the last holder drops it.
                drop(freed);
                Ok(())
            }
        }
    }

    /// Turns the handles of a frame from the peer into bodies, checking each.
    pub fn resolve(self: &Arc<Self>, handles: &[Handle]) -> Result<Vec<Body>, ShmError> {
        let state = self.lock();
        handles
            .iter()
            .map(|handle| {
                let Handle {
                    owner,
                    region,
                    offset,
                    len,
                } = *handle;
                match owner {
                    Owner::Sender => {
                        let mapped = state
                            .regions
                            .get(&region)
                            .ok_or(ShmError::UnknownRegion { region })?;
                        let size = mapped.map.len();
                        let fits = offset
                            .checked_add(len)
                            .is_some_and(|end| end <= size as u64);
                        if !fits {
                            return Err(ShmError::OutOfBounds {
                                region,
                                offset,
                                len,
                                size,
                            });
                        }
                        Ok(Body::remote(
                            Arc::clone(mapped),
                            offset as usize,
                            len as usize,
                            Arc::downgrade(self),
                            (region, offset, len),
                        ))
                    }
                    Owner::Receiver => state
                        .loans
                        .get(&(region, offset, len))
                        .map(|(allocation, _)| Body::shared_local(Arc::clone(allocation)))
                        .ok_or(ShmError::NotLent {
                            region,
                            offset,
                            len,
                        }),
                }
            })
            .collect()
    }
}
