//! A body in shared memory: in one of this process's regions, or in a
//! region a peer attached.
//!
//! A peer's body is read where the peer wrote it. Dropping the last handle
//! to it tells the peer (`BodyRelease`), which may then reuse the space.
//! The peer can still write to its own memory while this side reads it:
//! the bytes may change, but nothing can make reading them crash (the
//! region is sealed against shrinking and every handle was bounds-checked).

use std::sync::{Arc, Weak};

use super::arena::Allocation;
use super::link::{Key, Link};
use super::region::PeerRegion;
use super::{Handle, Owner};

/// A body in shared memory. Cloning it is cheap (a reference count).
#[derive(Clone)]
pub struct Body(Repr);

#[derive(Clone)]
enum Repr {
    Local(Arc<Allocation>),
    Remote(Arc<RemoteSlice>),
}

/// A body in a peer's region.
struct RemoteSlice {
    region: Arc<PeerRegion>,
    offset: usize,
    len: usize,
    link: Weak<Link>,
    key: Key,
}

impl Drop for RemoteSlice {
    fn drop(&mut self) {
        if let Some(link) = self.link.upgrade() {
            link.send_release(self.key);
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whose, len) = match &self.0 {
            Repr::Local(allocation) => ("local", allocation.len()),
            Repr::Remote(slice) => ("peer's", slice.len),
        };
        write!(f, "Body({len} bytes, {whose} shared memory)")
    }
}

impl Body {
    pub(crate) fn local(allocation: Allocation) -> Self {
        Self(Repr::Local(Arc::new(allocation)))
    }

    pub(crate) fn shared_local(allocation: Arc<Allocation>) -> Self {
        Self(Repr::Local(allocation))
    }

    pub(crate) fn remote(
        region: Arc<PeerRegion>,
        offset: usize,
        len: usize,
        link: Weak<Link>,
        key: Key,
    ) -> Self {
        Self(Repr::Remote(Arc::new(RemoteSlice {
            region,
            offset,
            len,
            link,
            key,
        })))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Local(allocation) => allocation.as_slice(),
            // SAFETY: `offset + len` was checked against the region's size
            // when the handle was resolved; the mapping lives as long as
            // `slice.region`, and the region is sealed against shrinking.
            Repr::Remote(slice) => unsafe {
                std::slice::from_raw_parts(slice.region.map.ptr().add(slice.offset), slice.len)
            },
        }
    }

    /// How a frame on the connection of `link` (null: not known yet) names
    /// this body, or `None` if that peer cannot see it (a body of another
    /// peer's): it must be copied.
    pub(crate) fn handle_for(&self, link: *const Link) -> Option<Handle> {
        match &self.0 {
            Repr::Local(allocation) => Some(Handle {
                owner: Owner::Sender,
                region: allocation.region(),
                offset: allocation.offset() as u64,
                len: allocation.len() as u64,
            }),
            Repr::Remote(slice) => {
                let own_peer = !link.is_null() && std::ptr::eq(slice.link.as_ptr(), link);
                own_peer.then(|| {
                    let (region, offset, len) = slice.key;
                    Handle {
                        owner: Owner::Receiver,
                        region,
                        offset,
                        len,
                    }
                })
            }
        }
    }
}

/// The bodies a frame names, kept alive until the frame is on its way; its
/// own bodies are lent to the connection it goes to
/// ([`Link::lend`]).
///
/// One pointer wide, and empty without allocating, as it is for most jobs:
/// it travels with every job through the queue and the in-flight table.
#[derive(Clone, Default)]
#[allow(clippy::box_collection)] // one pointer rather than a `Vec`'s three
pub struct Lent(Option<Box<Vec<Body>>>);

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lent({} bodies)", self.bodies().len())
    }
}

impl Lent {
    /// Whether the frame names no body of this process's.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn bodies(&self) -> &[Body] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Keeps `body` with the frame.
    pub(crate) fn push(&mut self, body: Body) {
        self.0.get_or_insert_with(Box::default).push(body);
    }

    /// This process's bodies among them, with their loan keys.
    pub(crate) fn local(&self) -> impl Iterator<Item = (Key, &Arc<Allocation>)> {
        self.bodies().iter().filter_map(|body| match &body.0 {
            Repr::Local(allocation) => Some((
                (
                    allocation.region(),
                    allocation.offset() as u64,
                    allocation.len() as u64,
                ),
                allocation,
            )),
            Repr::Remote(_) => None,
        })
    }
}
