//! Services (`#[ipc2::service]`) the service tests and `service_worker`
//! share: the norpc seed's key-value service as the seed writes it, a bank
//! whose calls fail with its own errors, and a probe that makes calls
//! overlap, panic and overrun deadlines.
//!
//! Each worker has its own state: tests that read back what they wrote use
//! a pool of one worker.

use bytes::Bytes;
use ipc2::host::WorkerSet;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use crate::binaries::worker_binary;

/// Starts `count` `service_worker`s serving `service` (its first argument),
/// each given up to `in_flight` calls at once.
pub async fn service_pool<W, H>(
    service: &str,
    count: usize,
    in_flight: usize,
) -> WorkerSet<UnixListener, W, H>
where
    W: DeserializeOwned + Send + 'static,
    H: Serialize + Send + 'static,
{
    match WorkerSet::builder()
        .worker_count(count)
        .worker_path(worker_binary("service_worker"))
        .arg(service)
        .max_in_flight_per_worker(in_flight)
        .finish()
        .await
    {
        Ok(workers) => workers,
        Err(error) => panic!("a pool of {count} service_worker {service} did not start: {error}"),
    }
}

/// The norpc seed's service, word for word (made `pub` to be shared; the
/// seed documents neither method).
#[allow(missing_docs)]
#[ipc2::service]
pub trait YourService {
    fn get(key: String) -> Option<Bytes>;
    fn set(key: String, val: Bytes);
}

/// A bank: a service with errors of its own, declared with this module's
/// `Result<T>` alias (as many crates have one) and with the two-argument
/// `std::result::Result`.
pub mod bank {
    use serde::{Deserialize, Serialize};

    /// Why a bank call failed: the service's own error.
    #[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum BankError {
        /// No account has this name.
        UnknownAccount(String),
        /// The account holds less than was asked for.
        Insufficient {
            /// What it holds.
            balance: u64,
            /// What was asked for.
            wanted: u64,
        },
    }

    impl std::fmt::Display for BankError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                BankError::UnknownAccount(name) => write!(f, "no account named {name:?}"),
                BankError::Insufficient { balance, wanted } => {
                    write!(f, "cannot take {wanted} from a balance of {balance}")
                }
            }
        }
    }

    impl std::error::Error for BankError {}

    /// This module's own `Result`, which shadows std's here.
    pub type Result<T> = std::result::Result<T, BankError>;

    /// Accounts and a journal, in one worker's memory.
    #[ipc2::service]
    pub trait Bank {
        /// Opens an account with a balance of 0 (again: no change).
        fn open(&self, account: String);
        /// Adds `amount` to an account; returns the new balance.
        fn deposit(&self, account: String, amount: u64) -> Result<u64>;
        /// Takes `amount` out of an account; returns the new balance.
        async fn withdraw(
            &self,
            account: String,
            amount: u64,
        ) -> std::result::Result<u64, BankError>;
        /// The balance of an account, if it exists.
        fn balance(account: String) -> Option<u64>;
        /// Adds a line to the journal; the caller does not wait for it.
        #[ipc2(oneway)]
        fn note(&self, line: String);
        /// The journal so far.
        fn journal() -> Vec<String>;
    }
}

/// Calls that show how a worker runs them: concurrently, panicking, too
/// slowly.
#[ipc2::service]
pub trait Probe {
    /// The worker's pid.
    fn pid() -> u32;
    /// Sleeps `ms` milliseconds without blocking, then answers the pid.
    async fn sleep(ms: u64) -> u32;
    /// Returns once `n` calls of `meet` have arrived at this worker, all
    /// waiting together (so it only returns if `n` run at once), or after
    /// 10 s; answers how many had arrived.
    async fn meet(n: usize) -> usize;
    /// [`Probe::meet`] for plain (blocking) handlers.
    fn meet_blocking(n: usize) -> usize;
    /// Panics with `message` in a plain handler.
    fn panic(message: String) -> u32;
    /// Panics with `message` in an async handler: at once (in the worker's
    /// receive loop, where an async handler starts), or after waiting once
    /// (in the task it then goes on in).
    async fn panic_async(message: String, wait_first: bool) -> Result<u32, String>;
}
