//! A worker that passes the handshake honestly, then answers every job with
//! bytes that are not a frame. The host must kill it and fail the job.

use ipc2_common::FrameKind;
use tokio::io::AsyncWriteExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let test_common::rogue::Joined {
        mut reader,
        mut writer,
        ..
    } = test_common::rogue::join_host().await?;
    while let Some(frame) = reader.next().await? {
        if frame.kind == FrameKind::Job {
            // A length prefix far beyond any limit, then noise.
            writer.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await?;
        }
    }
    Ok(())
}
