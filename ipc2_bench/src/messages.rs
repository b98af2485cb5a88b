//! What the benchmark's pools and their worker (this same executable, run
//! as `ipc2_bench worker`) say to each other. Defined here rather than taken
//! from the test crates, so the bench is self-contained.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Host → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum BenchJob {
    /// Add two numbers; the trivial job every throughput figure uses.
    Add(u32, u32),
    /// Echo a body encoded as one byte string (`serde_bytes`: how bulk data
    /// should travel).
    Echo(ByteBuf),
    /// Echo a plain `Vec<u8>`, which serde encodes byte by byte: what a user
    /// gets without thinking about it.
    EchoVec(Vec<u8>),
}

/// The same Add job as [`BenchJob::Add`], as a service (`#[ipc2::service]`):
/// a request of the same bytes on the wire, answered by the generated
/// dispatch instead of a hand-written match.
#[ipc2::service]
pub trait BenchService {
    /// The sum (wrapping), from a plain handler.
    fn add(a: u32, b: u32) -> u32;
    /// The sum (wrapping), from an async handler.
    async fn add_async(a: u32, b: u32) -> u32;
}

/// Worker → host.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum BenchReply {
    /// The sum (wrapping).
    Sum(u32),
    /// The body of an [`BenchJob::Echo`].
    Echo(ByteBuf),
    /// The body of an [`BenchJob::EchoVec`].
    EchoVec(Vec<u8>),
}
