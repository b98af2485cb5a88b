//! The host side of `#[ipc2::service]`: what a generated client runs on.
//!
//! The macro writes, per method, only the request it sends and the response
//! variant it expects; sending, deadlines, one-way calls, telling a wrong
//! reply from a right one and splitting a `Result` into the caller's
//! `CallError` live here, once, in plain generic code.

use std::fmt;
use std::time::Duration;

use ipc2_common::Server;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use crate::call_error::{CallError, Fallible};
use crate::error::Error;
use crate::workerset::WorkerSet;

/// A request or response enum of a service: which service and method a
/// message belongs to. `#[ipc2::service]` implements it for the enums it
/// generates.
pub trait ServiceMessage {
    /// The name of the service's trait.
    const SERVICE: &'static str;
    /// The name of the method this message calls or answers.
    fn method(&self) -> &'static str;
}

/// The client every `#[ipc2::service]` client wraps: a pool of workers that
/// answer `Req` with `Resp`, and the deadline of its calls.
pub struct ServiceClient<Req, Resp, S = UnixListener> {
    pool: WorkerSet<S, Resp, Req>,
    timeout: Option<Duration>,
}

impl<Req, Resp, S> Clone for ServiceClient<Req, Resp, S> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            timeout: self.timeout,
        }
    }
}

impl<Req, Resp: ServiceMessage, S> fmt::Debug for ServiceClient<Req, Resp, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &Resp::SERVICE)
            .field("workers", &self.pool.worker_count())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<Req, Resp, S> ServiceClient<Req, Resp, S> {
    /// A client of the workers of `pool`, with the pool's own deadline.
    pub fn new(pool: WorkerSet<S, Resp, Req>) -> Self {
        Self {
            pool,
            timeout: None,
        }
    }

    /// The pool the calls go to.
    pub fn pool(&self) -> &WorkerSet<S, Resp, Req> {
        &self.pool
    }

    /// A client of the same pool whose calls have `timeout` as deadline
    /// (`WorkerSet::send_timeout`).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self {
            pool: self.pool.clone(),
            timeout: Some(timeout),
        }
    }
}

impl<Req, Resp, S> ServiceClient<Req, Resp, S>
where
    S: Server,
    Req: Serialize + Send + 'static,
    Resp: ServiceMessage + DeserializeOwned + Send + 'static,
{
    /// Sends `request` (a call of `method`) and takes the value out of its
    /// reply with `unpack`, which gives back any reply that is not the
    /// method's: that is [`Error::WrongReply`], never a panic.
    pub async fn call<T>(
        &self,
        method: &'static str,
        request: Req,
        unpack: fn(Resp) -> Result<T, Resp>,
    ) -> Result<T, Error> {
        let reply = match self.timeout {
            Some(timeout) => self.pool.send_timeout(request, timeout).await?,
            None => self.pool.send(request).await?,
        };
        unpack(reply).map_err(|other| Error::WrongReply {
            service: Resp::SERVICE,
            method,
            got: other.method(),
        })
    }

    /// [`call`](Self::call) for a method that returns a `Result`: the
    /// service's `Err(e)` becomes [`CallError::App`], the pool's errors the
    /// other variants.
    pub async fn call_fallible<R: Fallible>(
        &self,
        method: &'static str,
        request: Req,
        unpack: fn(Resp) -> Result<R, Resp>,
    ) -> Result<R::Ok, CallError<R::Err>> {
        match self.call(method, request, unpack).await {
            Ok(outcome) => outcome.into_result().map_err(CallError::App),
            Err(error) => Err(error.into()),
        }
    }

    /// Sends `request` as a one-way call (`WorkerSet::send_unidirectional`).
    pub async fn notify(&self, request: Req) -> Result<(), Error> {
        self.pool.send_unidirectional(request).await
    }
}
