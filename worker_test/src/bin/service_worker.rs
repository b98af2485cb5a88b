//! Serves one of `test_common::services`, chosen by the first argument:
//! `your_service` (the norpc seed's key-value store), `bank`, `probe`, or
//! `wrong` (a hand-written loop that answers every seed request with the
//! reply of `set`, as a worker built from another version of the service
//! might).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use ipc2::worker::Job;
use test_common::services::bank::{Bank, BankError, Result};
use test_common::services::{Probe, YourService, YourServiceRequest, YourServiceResponse};
use tokio::net::UnixStream;

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("your_service") => Store::default().serve().await?,
        Some("bank") => Vault::default().serve().await?,
        Some("probe") => Lab::default().serve().await?,
        Some("wrong") => answer_wrongly().await?,
        other => return Err(format!("unknown service {other:?}").into()),
    }
    Ok(())
}

/// The seed's store: a map behind a lock, shared by concurrent calls.
#[derive(Default)]
struct Store {
    map: Mutex<HashMap<String, Bytes>>,
}

impl YourService for Store {
    fn get(&self, key: String) -> Option<Bytes> {
        lock(&self.map).get(&key).cloned()
    }

    fn set(&self, key: String, val: Bytes) {
        lock(&self.map).insert(key, val);
    }
}

#[derive(Default)]
struct Vault {
    accounts: Mutex<HashMap<String, u64>>,
    journal: Mutex<Vec<String>>,
}

impl Bank for Vault {
    fn open(&self, account: String) {
        lock(&self.accounts).entry(account).or_insert(0);
    }

    fn deposit(&self, account: String, amount: u64) -> Result<u64> {
        let mut accounts = lock(&self.accounts);
        let balance = accounts
            .get_mut(&account)
            .ok_or(BankError::UnknownAccount(account))?;
        *balance += amount;
        Ok(*balance)
    }

    async fn withdraw(&self, account: String, amount: u64) -> Result<u64> {
        let mut accounts = lock(&self.accounts);
        let balance = accounts
            .get_mut(&account)
            .ok_or(BankError::UnknownAccount(account))?;
        if *balance < amount {
            return Err(BankError::Insufficient {
                balance: *balance,
                wanted: amount,
            });
        }
        *balance -= amount;
        Ok(*balance)
    }

    fn balance(&self, account: String) -> Option<u64> {
        lock(&self.accounts).get(&account).copied()
    }

    fn note(&self, line: String) {
        lock(&self.journal).push(line);
    }

    fn journal(&self) -> Vec<String> {
        lock(&self.journal).clone()
    }
}

/// Counts the calls of `meet` (async: a watch channel everyone waits on)
/// and of `meet_blocking` (a counter and a condition variable).
struct Lab {
    met: tokio::sync::watch::Sender<usize>,
    met_blocking: (Mutex<usize>, Condvar),
}

impl Default for Lab {
    fn default() -> Self {
        Self {
            met: tokio::sync::watch::Sender::new(0),
            met_blocking: (Mutex::new(0), Condvar::new()),
        }
    }
}

/// How long `meet` waits for the others before giving up.
const MEET_LIMIT: Duration = Duration::from_secs(10);

impl Probe for Lab {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    async fn sleep(&self, ms: u64) -> u32 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        std::process::id()
    }

    async fn meet(&self, n: usize) -> usize {
        let mut met = self.met.subscribe();
        self.met.send_modify(|count| *count += 1);
        let _ = tokio::time::timeout(MEET_LIMIT, met.wait_for(|count| *count >= n)).await;
        *self.met.borrow()
    }

    fn meet_blocking(&self, n: usize) -> usize {
        let (count, arrived) = &self.met_blocking;
        let mut count = lock(count);
        *count += 1;
        arrived.notify_all();
        let (count, _) = arrived
            .wait_timeout_while(count, MEET_LIMIT, |count| *count < n)
            .unwrap_or_else(PoisonError::into_inner);
        *count
    }

    fn panic(&self, message: String) -> u32 {
        panic!("{message}")
    }

    async fn panic_async(
        &self,
        message: String,
        wait_first: bool,
    ) -> std::result::Result<u32, String> {
        if wait_first {
            tokio::task::yield_now().await;
        }
        panic!("{message}")
    }
}

/// Answers every request with `set`'s reply, whatever it asked.
async fn answer_wrongly() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut jobs =
        ipc2::worker::connect::<UnixStream, YourServiceRequest, YourServiceResponse>().await?;
    while let Some(job) = jobs.recv().await {
        if let Job::Bidirectional { tx, .. } = job {
            let _ = tx.send(YourServiceResponse::Set(()));
        }
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
