//! A worker that passes the handshake honestly, then answers every job with
//! a shared-memory frame that breaks the rules, as its first argument says:
//!
//! - `forge-region`: a body in a region it never attached;
//! - `out-of-bounds`: a body past the end of its own region;
//! - `not-lent`: a body in the host's memory the host never lent it;
//! - `truncate`: attaches a region it did not seal, truncates it, and
//!   names a body in it (the host must refuse the region, not crash on it);
//! - `release-unknown`: releases a body the host never lent it.
//!
//! The host must fail the job with a protocol error and kill the worker.

use std::os::fd::AsFd;

use ipc2_common::codec::encode_frame_with_bodies;
use ipc2_common::connection::{share_memory, write_frames};
use ipc2_common::protocol::ENV_BLOB_THRESHOLD;
use ipc2_common::shm::{self, Control, ControlSink, Side};
use ipc2_common::{Blob, FrameKind, Outbox};
use test_common::behaviour::Response;
use test_common::rogue::{Joined, join_host};

/// Bytes of one handle at the end of a frame's table, and of its count.
const HANDLE_LEN: usize = 21;
const COUNT_LEN: usize = 4;
/// The region id the rogue pretends to own.
const FAKE_REGION: u32 = 0x00de_ad00;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let threshold: usize = std::env::var(ENV_BLOB_THRESHOLD)?.parse()?;
    shm::configure(threshold, 1 << 30);
    let Joined {
        mut reader,
        writer,
        descriptors,
    } = join_host().await?;
    reader.next().await?.ok_or("no welcome")?;
    let (outbox, outgoing) = Outbox::channel_passing(writer, descriptors.clone());
    tokio::spawn(write_frames(outgoing));
    share_memory(Side::Worker, &outbox, &mut reader, descriptors, usize::MAX);
    let link = outbox.link().ok_or("no shared memory on this connection")?;
    while let Some(frame) = reader.next().await? {
        if frame.kind != FrameKind::Job {
            continue;
        }
        // A well-formed reply naming one body of the rogue's own, then
        // its handle rewritten.
        let body = Blob::with_len(threshold.max(4096), |bytes| bytes.fill(7));
        let reply = Response::Blob(body);
        let (frame, lent) = encode_frame_with_bodies(
            FrameKind::Reply,
            frame.id,
            &reply,
            usize::MAX,
            true,
            Some(&link),
        )?;
        let mut frame = frame.to_vec();
        let handle = frame.len() - COUNT_LEN - HANDLE_LEN;
        let (owner, region, offset) = (handle, handle + 1, handle + 5);
        match mode.as_str() {
            "forge-region" => frame[region..region + 4].copy_from_slice(&FAKE_REGION.to_be_bytes()),
            "out-of-bounds" => {
                frame[offset..offset + 8].copy_from_slice(&(1u64 << 40).to_be_bytes())
            }
            "not-lent" => {
                frame[owner] = 1;
                frame[region..region + 4].copy_from_slice(&0u32.to_be_bytes());
                frame[offset..offset + 8].copy_from_slice(&0u64.to_be_bytes());
            }
            "truncate" => {
                let fd = rustix::fs::memfd_create("rogue", rustix::fs::MemfdFlags::CLOEXEC)?;
                rustix::fs::ftruncate(&fd, 1 << 20)?;
                let shared = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)?;
                let attach = Control::Attach {
                    region: FAKE_REGION,
                    len: 1 << 20,
                };
                outbox.send_control(Side::Worker, attach, Some(shared));
                outbox.flushed().await;
                rustix::fs::ftruncate(&fd, 0)?;
                frame[region..region + 4].copy_from_slice(&FAKE_REGION.to_be_bytes());
            }
            "release-unknown" => {
                let release = Control::Release {
                    region: 0,
                    offset: 0,
                    len: 1,
                };
                outbox.send_control(Side::Worker, release, None);
            }
            other => return Err(format!("unknown mode {other:?}").into()),
        }
        let _ = outbox.send_lending(frame.into(), &lent);
    }
    Ok(())
}
