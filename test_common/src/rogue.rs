//! The honest part of a worker that misbehaves on purpose: connecting to
//! the host that spawned it and passing the handshake.

use std::sync::Arc;

use ipc2_common::codec::encode_frame;
use ipc2_common::connection::{BoxedReader, BoxedWriter};
use ipc2_common::descriptors::Descriptors;
use ipc2_common::protocol::{ENV_SECRET, ENV_SOCKET};
use ipc2_common::{
    Connection, DEFAULT_MAX_FRAME_LENGTH, FrameCodec, FrameKind, FrameReader, Hello,
    PROTOCOL_VERSION, Secret,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// A connection to the host, its handshake sent.
pub struct Joined {
    /// Frames from the host (the `Welcome` first).
    pub reader: FrameReader<BoxedReader>,
    /// Bytes to the host.
    pub writer: BoxedWriter,
    /// Descriptor passing on the connection.
    pub descriptors: Option<Arc<dyn Descriptors>>,
}

/// Connects to the host named in the environment and sends an honest
/// handshake.
pub async fn join_host() -> Result<Joined, Box<dyn std::error::Error>> {
    let socket = std::env::var_os(ENV_SOCKET).ok_or("not started by a host")?;
    let secret = std::env::var(ENV_SECRET)?;
    let secret = Secret::from_hex(&secret).ok_or("bad secret")?;
    let channel = UnixStream::connect(socket).await?.into_channel();
    let mut writer = channel.writer;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        secret: *secret.as_bytes(),
    };
    writer
        .write_all(&encode_frame(FrameKind::Hello, 0, &hello, 1024)?)
        .await?;
    Ok(Joined {
        reader: FrameReader::new(channel.reader, FrameCodec::new(DEFAULT_MAX_FRAME_LENGTH)),
        writer,
        descriptors: channel.descriptors,
    })
}
