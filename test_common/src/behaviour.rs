//! Messages for `behaviour_worker`: a worker that does what the test asks,
//! including the things a worker should not do.

use serde::{Deserialize, Serialize};

/// What the behaviour worker is asked to do.
#[derive(Debug, Deserialize, Serialize)]
pub enum Request {
    /// Add two numbers and reply with [`Response::Sum`].
    Add(u32, u32),
    /// Reply with the same bytes. (`serde_bytes` encodes them as one block
    /// rather than element by element: how large bodies should travel.)
    Echo(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Sleep this many milliseconds (without blocking the runtime), then
    /// reply [`Response::Slept`] with the worker's pid.
    Sleep(u64),
    /// Block the worker's receive loop for this many milliseconds (it reads
    /// nothing meanwhile, not even a shutdown request), then reply
    /// [`Response::Slept`].
    Block(u64),
    /// Write the text as a line to stdout and to stderr, then reply
    /// [`Response::Pid`].
    Print(String),
    /// Reply with the worker's pid.
    Pid,
    /// Exit the process at once with this code, without replying.
    Exit(i32),
    /// Abort the process (SIGABRT) without replying.
    Abort,
    /// Drop the reply sender without replying.
    DropReply,
    /// Panic with this message right in the receive loop, as the seed's
    /// worker would: the panic unwinds out of `main` and ends the process.
    Panic(String),
    /// Panic with this message inside a task spawned for the job (holding
    /// its reply sender); the worker survives.
    PanicInTask(String),
    /// Fail the job with this reason (`tx.fail`): an application failure.
    Fail(String),
    /// A stream job: answer with items `Sum(0)` .. `Sum(n - 1)`, produced
    /// in a task of its own, then end the stream.
    Count(u32),
    /// The same, produced right in the receive loop, where nobody calls
    /// `recv` while it runs (its credit must still arrive).
    CountInline(u32),
    /// A stream job: send `n` items, then exit the process at once (code 9;
    /// items still queued in the worker may be lost with it).
    CountThenExit(u32),
    /// A stream job: send items until the host cancels the stream, then
    /// create the file at this path (the test's sign the worker saw it).
    CountUntilCancelled(String),
}

/// What the behaviour worker answers.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum Response {
    /// The sum.
    Sum(u32),
    /// The echoed bytes.
    Echo(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Done sleeping; the pid of the worker that slept.
    Slept(u32),
    /// The worker's pid.
    Pid(u32),
}
