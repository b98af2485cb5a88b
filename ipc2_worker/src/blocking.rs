//! A worker without async: jobs as an iterator.
//!
//! For workers whose code is plain blocking Rust (a native library, CPU
//! work, no tokio of their own): [`jobs`] connects to the host and returns
//! [`Jobs`], an `Iterator` of the same [`Job`]s the async receiver yields.
//! Answer each with `tx.send(reply)` (or `tx.reply(..)`), fail it with
//! `tx.fail(reason)`, or drop `tx` (the host's caller then gets `NoReply`);
//! the sender may be moved to another thread and used from there. The
//! iteration ends when the host closes the connection or asks the worker to
//! stop.
//!
//! ```no_run
//! use ipc2_worker::Job;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     for job in ipc2_worker::blocking::jobs::<String, String>()? {
//!         if let Job::Bidirectional { data, tx } = job {
//!             tx.reply(format!("Hello, {data}!"))?;
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! The connection's I/O runs on a small runtime thread of the library's
//! own; the caller's threads only block. (That is also why stream senders
//! of a blocking worker can wait for credit from any thread with
//! `send_blocking`.)

use std::time::Duration;

use ipc2_common::Client;
use ipc2_common::runtime_thread::RuntimeThread;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ConnectError;
use crate::job::Job;
use crate::receiver::Receiver;

/// How long dropping [`Jobs`] waits for replies already sent to reach the
/// host.
const FLUSH_ON_DROP: Duration = Duration::from_secs(5);

/// Connects to the host over its Unix socket (the default transport) and
/// returns the jobs it sends, as an iterator; the blocking twin of
/// [`jobs`](crate::jobs()). Type parameters: the job (`Request`), then the
/// `Reply`. Must not be called inside a tokio runtime (it would block it):
/// that is [`ConnectError::InsideRuntime`].
pub fn jobs<Request, Reply>() -> Result<Jobs<Request, Reply>, ConnectError>
where
    Request: DeserializeOwned + Send + 'static,
    Reply: Serialize + Send + 'static,
{
    connect::<tokio::net::UnixStream, Request, Reply>()
}

/// [`jobs`] over the transport `C`: the blocking twin of
/// [`connect`](crate::connect()).
pub fn connect<C, Request, Reply>() -> Result<Jobs<Request, Reply>, ConnectError>
where
    C: Client,
    Request: DeserializeOwned + Send + 'static,
    Reply: Serialize + Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(ConnectError::InsideRuntime);
    }
    let io = RuntimeThread::start("ipc2-worker-io", || ()).map_err(ConnectError::Runtime)?;
    let receiver = io
        .handle()
        .block_on(crate::connect::connect::<C, Request, Reply>())?;
    Ok(Jobs {
        receiver: Some(receiver),
        io,
    })
}

/// The jobs the host sends this worker, as an iterator; from [`jobs`].
pub struct Jobs<In, Out> {
    /// `None` only while dropping.
    receiver: Option<Receiver<In, Out>>,
    io: RuntimeThread,
}

impl<In: DeserializeOwned, Out> Jobs<In, Out> {
    /// Why the jobs ended, if it was because of an error rather than the
    /// host closing the connection or asking the worker to stop.
    pub fn error(&self) -> Option<&ipc2_common::CodecError> {
        self.receiver.as_ref().and_then(Receiver::error)
    }
}

impl<In: DeserializeOwned, Out> Iterator for Jobs<In, Out> {
    type Item = Job<In, Out>;

    /// Blocks until the next job arrives; `None` once the host closed the
    /// connection or asked this worker to stop (replies already sent are
    /// written first).
    fn next(&mut self) -> Option<Job<In, Out>> {
        let receiver = self.receiver.as_mut()?;
        self.io.handle().block_on(receiver.recv())
    }
}

impl<In, Out> Drop for Jobs<In, Out> {
    fn drop(&mut self) {
        let Some(receiver) = self.receiver.take() else {
            return;
        };
        let outbox = receiver.outbox().clone();
        // Says goodbye (and, if a panic is unwinding, writes its report).
        drop(receiver);
        if !std::thread::panicking() {
            // Replies and the goodbye go out before the runtime stops.
            let _ = self
                .io
                .handle()
                .block_on(async { tokio::time::timeout(FLUSH_ON_DROP, outbox.flushed()).await });
        }
    }
}

impl<In, Out> std::fmt::Debug for Jobs<In, Out> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}
