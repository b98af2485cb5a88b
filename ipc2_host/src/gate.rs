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
//! Anything else closes the connection and leaves the pool untouched. A
//! connection that passes is handed to the supervisor of the worker whose
//! secret it presented, which checks that the connecting process is the one
//! it spawned.

use std::sync::Mutex;
use std::time::Duration;

use ipc2_common::codec::decode_message;
use ipc2_common::protocol::HANDSHAKE_MAX_FRAME_LENGTH;
use ipc2_common::{
    Connection, FrameCodec, FrameKind, FrameReader, Hello, PROTOCOL_VERSION, Secret, Server,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// Read half of an admitted connection.
pub(crate) type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// Write half of an admitted connection.
pub(crate) type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection that passed the gate.
pub(crate) struct Admitted {
    pub(crate) hello: Hello,
    pub(crate) peer_pid: Option<u32>,
    pub(crate) reader: FrameReader<BoxedReader>,
    pub(crate) writer: BoxedWriter,
}

/// The secrets the set waits for, and the rules of admission.
pub(crate) struct Gate {
    expected: Mutex<Vec<(Secret, oneshot::Sender<Admitted>)>>,
    uid: u32,
    handshake_timeout: Duration,
    max_frame_length: usize,
}

impl Gate {
    pub(crate) fn new(handshake_timeout: Duration, max_frame_length: usize) -> Self {
        Self {
            expected: Mutex::new(Vec::new()),
            uid: rustix::process::geteuid().as_raw(),
            handshake_timeout,
            max_frame_length,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Secret, oneshot::Sender<Admitted>)>> {
        self.expected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Accepts connections forever, each checked in its own task.
    pub(crate) async fn run<S: Server>(self: std::sync::Arc<Self>, listener: S) {
        loop {
            match listener.accept().await {
                Ok(connection) => {
                    tokio::spawn(std::sync::Arc::clone(&self).admit(connection));
                }
                // Out of descriptors or a connection reset before accept:
                // pause briefly rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn admit<C: Connection>(self: std::sync::Arc<Self>, connection: C) {
        let credentials = connection.peer_credentials();
        if credentials.is_some_and(|credentials| credentials.uid != self.uid) {
            return;
        }
        let (reader, writer) = connection.into_split();
        let reader: BoxedReader = Box::new(reader);
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
        let Some(waiter) = self.redeem(&hello.secret) else {
            return;
        };
        reader
            .codec_mut()
            .set_max_frame_length(self.max_frame_length);
        let _ = waiter.send(Admitted {
            hello,
            peer_pid: credentials.and_then(|credentials| credentials.pid),
            reader,
            writer: Box::new(writer),
        });
    }
}
