//! Joining the host: read the environment the host prepared, connect to its
//! socket and pass the handshake.
//!
//! A host that spawns a worker puts four variables in its environment: the
//! socket's path, a one-time secret, the maximum frame length and how many
//! jobs it may hand the worker at once. The worker
//! connects, sends a `Hello` frame (protocol version, its pid, the secret)
//! and waits for the host's `Welcome`; only then do jobs flow.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipc2_common::codec::encode_frame;
use ipc2_common::connection::{BoxedReader, BoxedWriter, share_memory, write_frames};
use ipc2_common::descriptors::Descriptors;
use ipc2_common::liveness::LastHeard;
use ipc2_common::protocol::{
    ENV_BLOB_THRESHOLD, ENV_MAX_FRAME_LENGTH, ENV_MAX_IN_FLIGHT, ENV_SECRET,
    ENV_SHARED_MEMORY_LIMIT, ENV_SOCKET,
};
use ipc2_common::shm::{self, Side};
use ipc2_common::{
    Client, DEFAULT_MAX_FRAME_LENGTH, Frame, FrameCodec, FrameKind, FrameReader, Heartbeat, Hello,
    Outbox, PROTOCOL_VERSION, Secret,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::ConnectError;
use crate::inbound::Inbound;
use crate::receiver::Receiver;

/// How long a worker waits for the host to answer its handshake.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the host that spawned this process and returns the receiver
/// of its jobs.
///
/// Type parameters: `C` is the transport (`tokio::net::UnixStream` by
/// default strategy), `In` the host→worker message, `Out` the worker→host
/// reply. Must be called inside a tokio runtime; the connection's writer runs
/// as a task on it.
///
/// Fails with [`ConnectError::NotUnderHost`] when the process was not started
/// by a `WorkerSet`.
pub async fn connect<C, In, Out>() -> Result<Receiver<In, Out>, ConnectError>
where
    C: Client,
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    let address = PathBuf::from(env_var(ENV_SOCKET)?);
    crate::panic::install_hook();
    let secret_value = env_var(ENV_SECRET)?;
    let secret = secret_value
        .to_str()
        .and_then(Secret::from_hex)
        .ok_or_else(|| ConnectError::BadEnvironment {
            variable: ENV_SECRET,
            value: secret_value.clone(),
            reason: "expected 64 hexadecimal digits",
        })?;
    let max_frame_length = env_number(ENV_MAX_FRAME_LENGTH, "expected a whole number of bytes")?
        .unwrap_or(DEFAULT_MAX_FRAME_LENGTH);
    let max_in_flight = env_number(ENV_MAX_IN_FLIGHT, "expected a whole number of jobs")?
        .unwrap_or(1)
        .max(1);
    let threshold = env_number(ENV_BLOB_THRESHOLD, "expected a whole number of bytes")?
        .unwrap_or_else(shm::blob_threshold);
    let limit = env_number(ENV_SHARED_MEMORY_LIMIT, "expected a whole number of bytes")?
        .unwrap_or_else(shm::shared_memory_limit);
    shm::configure(threshold, limit);

    let connection = C::connect(&address)
        .await
        .map_err(|source| ConnectError::Connect {
            address: address.clone(),
            source,
        })?;
    let channel = connection.into_channel();
    let (reader, writer, _welcome) = handshake(
        channel.reader,
        channel.writer,
        *secret.as_bytes(),
        max_frame_length,
    )
    .await?;
    let shared_memory = Some((channel.descriptors, limit)).filter(|(fds, _)| fds.is_some());
    let (receiver, _) = start(reader, writer, max_frame_length, shared_memory, None);
    Ok(receiver.with_max_in_flight(max_in_flight))
}

/// Sends this worker's `Hello` (with `secret`) and waits for the host's
/// `Welcome`, which it returns.
pub(crate) async fn handshake<W: AsyncWrite + Unpin + Send + 'static>(
    reader: BoxedReader,
    mut writer: W,
    secret: [u8; 32],
    max_frame_length: usize,
) -> Result<(FrameReader<BoxedReader>, W, Frame), ConnectError> {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        secret,
    };
    let frame = encode_frame(FrameKind::Hello, 0, &hello, max_frame_length)?;
    writer
        .write_all(&frame)
        .await
        .map_err(ipc2_common::CodecError::from)?;

    let mut reader = FrameReader::new(reader, FrameCodec::new(max_frame_length));
    match tokio::time::timeout(WELCOME_TIMEOUT, reader.next()).await {
        Err(_) => Err(ConnectError::Timeout(WELCOME_TIMEOUT)),
        Ok(Ok(Some(frame))) if frame.kind == FrameKind::Welcome => Ok((reader, writer, frame)),
        Ok(Ok(_)) => Err(ConnectError::Refused),
        Ok(Err(error)) => Err(ConnectError::Handshake(error)),
    }
}

/// Starts the connection's writer task and returns the receiver of its
/// jobs, and the connection's outbox. With `shared_memory` (the
/// transport's descriptor passing, and the most of the host's regions to
/// map), large bodies travel through shared memory. With `watchdog`,
/// reading fails once nothing has arrived for the heartbeat's timeout.
pub(crate) fn start<In, Out>(
    mut reader: FrameReader<BoxedReader>,
    writer: BoxedWriter,
    max_frame_length: usize,
    shared_memory: Option<(Option<Arc<dyn Descriptors>>, usize)>,
    watchdog: Option<(Heartbeat, LastHeard)>,
) -> (Receiver<In, Out>, Outbox)
where
    In: DeserializeOwned,
{
    let (descriptors, limit) = shared_memory.unwrap_or((None, 0));
    // The Unix socket (the one that passes descriptors) reads eagerly, so a
    // brief spin before parking sees bytes as soon as they arrive.
    let descriptors_passed = descriptors.is_some();
    if let Some(descriptors) = &descriptors {
        descriptors.unregister_while_spinning();
    }
    let (outbox, outgoing) = Outbox::channel_passing(writer, descriptors.clone());
    // A worker answers as its jobs finish, often one at a time: each answer
    // goes straight to the socket unless the writer task is busy.
    outbox.direct_writes(true);
    tokio::spawn(write_frames(outgoing));
    share_memory(Side::Worker, &outbox, &mut reader, descriptors, limit);
    let spin = descriptors_passed;
    let inbound = Arc::new(
        Inbound::new(reader, outbox.clone())
            .with_watchdog(watchdog)
            .with_spin(spin),
    );
    (
        Receiver::new(inbound, outbox.clone(), max_frame_length),
        outbox,
    )
}

/// An optional whole number from the host's environment; `reason` says
/// what was expected if it is not one.
fn env_number(variable: &'static str, reason: &'static str) -> Result<Option<usize>, ConnectError> {
    let Some(value) = std::env::var_os(variable) else {
        return Ok(None);
    };
    match value.to_str().and_then(|text| text.parse::<usize>().ok()) {
        Some(number) => Ok(Some(number)),
        None => Err(ConnectError::BadEnvironment {
            variable,
            value,
            reason,
        }),
    }
}

/// Connects over the default transport, the host's Unix socket: the
/// common case of [`connect`], without naming the transport. Type
/// parameters: the job (`Request`) the host sends, then the `Reply` it gets
/// back (the same order as the host's `Pool<Request, Reply>`).
pub async fn jobs<Request, Reply>() -> Result<Receiver<Request, Reply>, ConnectError>
where
    Request: DeserializeOwned + Send + 'static,
    Reply: Serialize + Send + 'static,
{
    connect::<tokio::net::UnixStream, Request, Reply>().await
}

fn env_var(variable: &'static str) -> Result<OsString, ConnectError> {
    std::env::var_os(variable).ok_or(ConnectError::NotUnderHost { variable })
}
