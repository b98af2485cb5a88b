//! A worker that passes the handshake honestly and adds numbers correctly,
//! but breaks the rules of batches of answers in the way `ROGUE_MODE` names:
//! `duplicate` (answers a job twice), `out_of_range` (answers a job the
//! batch does not have), `garbage` (a batch of answers that does not parse)
//! or `wrong_kind` (an answer of a kind that answers no job). The host must
//! kill it, and every job must still be answered exactly once.

use ipc2_common::FrameKind;
use ipc2_common::codec::batch::{JobMembers, ReplyBatchWriter};
use ipc2_common::codec::{decode_message, encode_frame, encode_raw_frame, prepare};
use test_common::behaviour::{Request, Response};
use tokio::io::AsyncWriteExt;

/// The correct answer to a job.
fn answer(message: &[u8]) -> Response {
    match decode_message::<Request>(message) {
        Ok(Request::Add(a, b)) => Response::Sum(a.wrapping_add(b)),
        _ => Response::Pid(std::process::id()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::var("ROGUE_MODE").unwrap_or_default();
    let test_common::rogue::Joined {
        mut reader,
        mut writer,
        ..
    } = test_common::rogue::join_host().await?;
    while let Some(frame) = reader.next().await? {
        match frame.kind {
            FrameKind::Job => {
                let reply =
                    encode_frame(FrameKind::Reply, frame.id, &answer(&frame.payload), 1024)?;
                writer.write_all(&reply).await?;
            }
            FrameKind::JobBatch => {
                let members: Vec<_> = JobMembers::new(frame.payload)?.collect();
                let count = members.len() as u32;
                let mut answers = ReplyBatchWriter::new(frame.id, 1 << 20);
                // The broken answer first, so that the jobs behind it are
                // still unanswered when the host notices.
                match mode.as_str() {
                    "duplicate" => {
                        let reply = answer(&members[0]);
                        for _ in 0..2 {
                            let prepared = prepare(&reply, false, None)?;
                            answers.push_message(0, FrameKind::Reply, &prepared)?;
                        }
                    }
                    "out_of_range" => answers.push_raw(count, FrameKind::NoReply, &[]),
                    "wrong_kind" => answers.push_raw(0, FrameKind::Job, &[]),
                    _ => {}
                }
                for (index, message) in members.iter().enumerate().skip(1) {
                    let reply = answer(message);
                    let prepared = prepare(&reply, false, None)?;
                    answers.push_message(index as u32, FrameKind::Reply, &prepared)?;
                }
                let frame = match mode.as_str() {
                    "garbage" => encode_raw_frame(
                        FrameKind::ReplyBatch,
                        frame.id,
                        &[0, 0, 0, 0, FrameKind::Reply as u8, 0xff, 0xff, 0xff, 0xff],
                        1024,
                    )?,
                    _ => answers.take(),
                };
                writer.write_all(&frame).await?;
            }
            _ => {}
        }
    }
    Ok(())
}
