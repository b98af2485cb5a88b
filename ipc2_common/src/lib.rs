//! Functionality that both `ipc2_host` and `ipc2_worker` need.
//!
//! As a user of ipc2 you rarely touch this crate directly: it is the contract
//! between the two sides of a pool.
//!
//! - [`protocol`]: what travels on the wire (frame kinds, job ids, the
//!   handshake) and the environment variables a host hands to its workers.
//! - [`codec`]: how a frame is laid out in bytes and how messages are encoded
//!   (bincode 1.3.3; the only module that knows the wire format).
//! - [`connection`]: reading frames from and writing frames to a byte stream.
//! - [`liveness`]: heartbeat settings, and noticing a silent network peer.
//! - [`transport`]: the [`Server`] and [`Client`] traits, implemented for
//!   tokio's `UnixListener` and `UnixStream`, and their instance forms
//!   [`Listener`] and [`Connector`] for transports built with more than an
//!   address (TLS over TCP, in the `ipc2_tls` crate).
//! - [`descriptors`]: passing file descriptors beside the byte stream, for
//!   transports that can.
//! - [`blob`]: [`Blob`], a message field for large bodies.
//! - [`shm`]: the shared memory large bodies travel through.
//! - [`spin`]: a short, adaptive spin before a reader parks.
//! - [`secret`]: the one-time secret a worker presents in its handshake.
//! - [`runtime_thread`]: a thread running a tokio runtime, for code that is
//!   not async.
//! - [`error`]: the errors of all of the above.

#![warn(missing_docs)]

pub mod blob;
pub mod codec;
pub mod connection;
pub mod descriptors;
pub mod error;
pub mod liveness;
pub mod protocol;
pub mod runtime_thread;
pub mod secret;
pub mod shm;
pub mod spin;
pub mod sync;
pub mod transport;

pub use blob::{Blob, BlobFull, BlobMut};
pub use codec::{DEFAULT_MAX_FRAME_LENGTH, FrameCodec};
pub use connection::{FrameReader, Outbox};
pub use error::CodecError;
pub use liveness::Heartbeat;
pub use protocol::{Frame, FrameKind, Hello, Leaving, PROTOCOL_VERSION, PanicReport, Terms};
pub use secret::Secret;
pub use transport::{
    Channel, Client, Connection, Connector, Listener, PeerCredentials, RemotePeer, Server,
};
