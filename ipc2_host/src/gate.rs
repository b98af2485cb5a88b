//! Who may join: the socket's accept loop and the handshake check.
//!
//! Every accepted connection gets its own short-lived task, so a peer that
//! connects and never speaks delays nobody. Before it can become a worker a
//! connection must, within the handshake deadline:
//!
//! 1. come from this user (peer credentials, where the transport has them);
//! 2. send one small `Hello` frame (at most
//!    [`HANDSHAKE_MAX_FRAME_LENGTH`](ipc2_common::protocol::HANDSHAKE_MAX_FRAME_LENGTH)
//!    bytes) of this protocol version;
//! 3. present a one-time secret the set is waiting for.
//!
//! Anything else closes the connection and leaves the pool untouched. At
//! most [`MAX_PENDING_HANDSHAKES`](crate::config::MAX_PENDING_HANDSHAKES)
//! connections wait for their handshake at once; past
//! that the oldest is dropped, so a flood of silent strangers cannot use up
//! the host's file descriptors (a real worker speaks within moments of
//! connecting, so it is never the oldest for long). A connection that passes
//! is handed to the supervisor of the worker whose secret it presented,
//! which checks that the connecting process is the one it spawned.
//!
//! Remote workers arrive through a second listener (see `remote`), whose
//! transport has already checked their certificate. They pass the same
//! rules except the secret (theirs is all zeros), and are handed to any
//! remote slot that waits for a worker; with none vacant, they are refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipc2_common::codec::decode_message;
use ipc2_common::connection::{BoxedReader, BoxedWriter};
use ipc2_common::descriptors::Descriptors;
use ipc2_common::liveness::{Heard, LastHeard};
use ipc2_common::protocol::HANDSHAKE_MAX_FRAME_LENGTH;
use ipc2_common::sync::lock;
use ipc2_common::{
    Connection, FrameCodec, FrameKind, FrameReader, Hello, Listener, PROTOCOL_VERSION, RemotePeer,
    Secret,
};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::config::MAX_PENDING_HANDSHAKES as MAX_PENDING;

/// A connection that passed the gate.
pub(crate) struct Admitted {
    pub(crate) hello: Hello,
    pub(crate) peer_pid: Option<u32>,
    pub(crate) reader: FrameReader<BoxedReader>,
    pub(crate) writer: BoxedWriter,
    /// Descriptor passing, if the transport has it (for shared memory).
    pub(crate) descriptors: Option<Arc<dyn Descriptors>>,
    /// A remote worker's address and name, and when it last sent a byte.
    pub(crate) remote: Option<(RemotePeer, LastHeard)>,
}

/// Which rule admits the connections of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Spawned workers: the one-time secret names the slot.
    Secret,
    /// Remote workers: any vacant remote slot takes them.
    Remote,
}

/// The secrets the set waits for, and the rules of admission.
pub(crate) struct Gate {
    expected: Mutex<Vec<(Secret, oneshot::Sender<Admitted>)>>,
    /// Remote slots waiting for a worker, first come first served.
    vacancies: Mutex<VecDeque<oneshot::Sender<Admitted>>>,
    /// Connections still in their handshake, oldest first.
    pending: Mutex<VecDeque<(u64, AbortHandle)>>,
    next_connection: AtomicU64,
    uid: u32,
    handshake_timeout: Duration,
    max_frame_length: usize,
}

impl Gate {
    pub(crate) fn new(handshake_timeout: Duration, max_frame_length: usize) -> Self {
        Self {
            expected: Mutex::new(Vec::new()),
            vacancies: Mutex::new(VecDeque::new()),
            pending: Mutex::new(VecDeque::new()),
            next_connection: AtomicU64::new(0),
            uid: rustix::process::geteuid().as_raw(),
            handshake_timeout,
            max_frame_length,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Secret, oneshot::Sender<Admitted>)>> {
        lock(&self.expected)
    }

    fn pending(&self) -> MutexGuard<'_, VecDeque<(u64, AbortHandle)>> {
        lock(&self.pending)
    }

    /// Waits for a connection presenting `secret`. Dropping the receiver
    /// withdraws the secret at the next admission attempt.
    pub(crate) fn expect(&self, secret: Secret) -> oneshot::Receiver<Admitted> {
        let (tx, rx) = oneshot::channel();
        let mut expected = self.lock();
        expected.retain(|(_, waiter)| !waiter.is_closed());
        expected.push((secret, tx));
        rx
    }

    /// Waits for a remote worker to take this slot. Dropping the receiver
    /// withdraws the offer.
    pub(crate) fn vacancy(&self) -> oneshot::Receiver<Admitted> {
        let (tx, rx) = oneshot::channel();
        let mut vacancies = lock(&self.vacancies);
        vacancies.retain(|waiter| !waiter.is_closed());
        vacancies.push_back(tx);
        rx
    }

    /// The longest-waiting remote slot still waiting.
    fn vacant(&self) -> Option<oneshot::Sender<Admitted>> {
        let mut vacancies = lock(&self.vacancies);
        while let Some(waiter) = vacancies.pop_front() {
            if !waiter.is_closed() {
                return Some(waiter);
            }
        }
        None
    }

    /// Takes the waiter for `presented`, comparing every expected secret in
    /// constant time.
    fn redeem(&self, presented: &[u8; 32]) -> Option<oneshot::Sender<Admitted>> {
        let mut expected = self.lock();
        // No early exit: every secret is compared, whichever one matches.
        let position = expected
            .iter()
            .enumerate()
            .fold(None, |found, (index, (secret, _))| {
                let hit = secret.matches(presented);
                found.or(hit.then_some(index))
            });
        position.map(|index| expected.swap_remove(index).1)
    }

    /// Accepts connections forever, each checked in its own task and
    /// admitted by `route`'s rule.
    pub(crate) async fn run<L: Listener>(self: Arc<Self>, listener: L, route: Route) {
        loop {
            match listener.accept().await {
                Ok(connection) => {
                    let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
                    let task = tokio::spawn(Arc::clone(&self).admit(connection, id, route));
                    if task.is_finished() {
                        continue;
                    }
                    let evicted = {
                        let mut pending = self.pending();
                        pending.push_back((id, task.abort_handle()));
                        let excess = pending.len().saturating_sub(MAX_PENDING);
                        pending.drain(..excess).collect::<Vec<_>>()
                    };
                    // Aborted outside the lock: an aborted task's guard
                    // takes it to remove itself.
                    for (_, oldest) in evicted {
                        tracing::debug!(
                            "too many connections in their handshake; dropping the oldest"
                        );
                        oldest.abort();
                    }
                }
                // Out of descriptors or a connection reset before accept:
                // pause briefly rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn admit<C: Connection>(self: Arc<Self>, connection: C, id: u64, route: Route) {
        let _pending = Pending { gate: &self, id };
        let credentials = connection.peer_credentials();
        if credentials.is_some_and(|credentials| credentials.uid != self.uid) {
            tracing::warn!(
                uid = credentials.map(|c| c.uid),
                "refused a connection from another user"
            );
            return;
        }
        let remote = match route {
            Route::Secret => None,
            Route::Remote => match connection.remote_peer() {
                Some(peer) => Some((peer, LastHeard::new())),
                None => {
                    tracing::warn!("refused a remote connection whose transport names no peer");
                    return;
                }
            },
        };
        let channel = connection.into_channel();
        let reader: BoxedReader = match &remote {
            Some((_, heard)) => Box::new(Heard::new(channel.reader, heard.clone())),
            None => channel.reader,
        };
        let writer = channel.writer;
        let mut reader = FrameReader::new(reader, FrameCodec::new(HANDSHAKE_MAX_FRAME_LENGTH));
        let Ok(Ok(Some(frame))) = tokio::time::timeout(self.handshake_timeout, reader.next()).await
        else {
            return;
        };
        if frame.kind != FrameKind::Hello {
            return;
        }
        let Ok(hello) = decode_message::<Hello>(&frame.payload) else {
            return;
        };
        if hello.version != PROTOCOL_VERSION {
            return;
        }
        let waiter = match route {
            Route::Secret => self.redeem(&hello.secret),
            Route::Remote => self.vacant(),
        };
        let Some(waiter) = waiter else {
            if route == Route::Remote {
                tracing::warn!(peer = ?remote.as_ref().map(|(peer, _)| peer.to_string()),
                    "refused a remote worker: every remote slot is taken");
            }
            return;
        };
        reader
            .codec_mut()
            .set_max_frame_length(self.max_frame_length);
        let _ = waiter.send(Admitted {
            hello,
            peer_pid: credentials.and_then(|credentials| credentials.pid),
            reader,
            writer,
            descriptors: channel.descriptors,
            remote,
        });
    }
}

/// Removes a connection from the pending list however its handshake ends.
struct Pending<'a> {
    gate: &'a Gate,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let mut pending = self.gate.pending();
        if let Some(index) = pending.iter().position(|(id, _)| *id == self.id) {
            pending.remove(index);
        }
    }
}
