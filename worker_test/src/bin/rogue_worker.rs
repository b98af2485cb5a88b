//! A worker that passes the handshake honestly, then answers every job with
//! bytes that are not a frame. The host must kill it and fail the job.

use ipc2_common::codec::encode_frame;
use ipc2_common::protocol::{ENV_SECRET, ENV_SOCKET};
use ipc2_common::{
    DEFAULT_MAX_FRAME_LENGTH, FrameCodec, FrameKind, FrameReader, Hello, PROTOCOL_VERSION, Secret,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let socket = std::env::var_os(ENV_SOCKET).ok_or("not started by a host")?;
    let secret = std::env::var(ENV_SECRET)?;
    let secret = Secret::from_hex(&secret).ok_or("bad secret")?;
    let (reader, mut writer) = UnixStream::connect(socket).await?.into_split();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        secret: *secret.as_bytes(),
    };
    writer
        .write_all(&encode_frame(FrameKind::Hello, 0, &hello, 1024)?)
        .await?;
    let mut reader = FrameReader::new(reader, FrameCodec::new(DEFAULT_MAX_FRAME_LENGTH));
    while let Some(frame) = reader.next().await? {
        if frame.kind == FrameKind::Job {
            // A length prefix far beyond any limit, then noise.
            writer.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await?;
        }
    }
    Ok(())
}
