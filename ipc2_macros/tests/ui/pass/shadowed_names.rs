//! Everything a user may have in scope that the generated code must not
//! pick up: a `Result` alias, and their own `Option`, `Box`, `Send`, `Sync`,
//! `Future`, `Arc` and `serde`. And every form a method may take.
#![deny(warnings)]

mod shadows {
    pub mod serde {}
    #[allow(dead_code)]
    pub struct Option;
    #[allow(dead_code)]
    pub struct Box;
    #[allow(dead_code)]
    pub trait Send {}
    #[allow(dead_code)]
    pub trait Sync {}
    #[allow(dead_code)]
    pub trait Future {}
    #[allow(dead_code)]
    pub struct Arc;
}

#[derive(::serde::Serialize, ::serde::Deserialize, Debug)]
pub enum LedgerError {
    Unknown,
}

pub type Result<T> = std::result::Result<T, LedgerError>;

pub mod ledger {
    #[allow(unused_imports)]
    use crate::shadows::{Arc, Box, Future, Option, Send, Sync, serde};
    use crate::{LedgerError, Result};

    /// A ledger.
    #[ipc2::service]
    pub trait Ledger {
        /// The alias form: the caller gets `CallError<LedgerError>`.
        fn balance(&self, account: String) -> Result<u64>;
        /// The two-argument form, async.
        async fn take(&self, account: String, amount: u64) -> std::result::Result<u64, LedgerError>;
        /// No receiver, no result.
        fn touch(account: String);
        /// One way.
        #[ipc2(oneway)]
        async fn log(line: String);
        /// A raw identifier and no arguments.
        fn r#type() -> (u8, std::option::Option<String>);
    }

    pub struct Books;

    impl Ledger for Books {
        fn balance(&self, _account: String) -> Result<u64> {
            Err(LedgerError::Unknown)
        }
        async fn take(&self, _account: String, amount: u64) -> Result<u64> {
            Ok(amount)
        }
        fn touch(&self, _account: String) {}
        async fn log(&self, _line: String) {}
        fn r#type(&self) -> (u8, std::option::Option<String>) {
            (0, None)
        }
    }
}

use ledger::{Books, Ledger, LedgerClient};

#[allow(dead_code)]
async fn call(client: LedgerClient) {
    let balance: std::result::Result<u64, ipc2::CallError<LedgerError>> =
        client.balance("a".into()).await;
    let _ = balance.map_err(|error| error.into_app());
    let _: std::result::Result<u64, ipc2::CallError<LedgerError>> =
        client.with_timeout(std::time::Duration::from_secs(1)).take("a".into(), 1).await;
    let _: std::result::Result<(), ipc2::host::Error> = client.touch("a".into()).await;
    let _: std::result::Result<(), ipc2::host::Error> = client.log("x".into()).await;
    let _: std::result::Result<(u8, Option<String>), ipc2::host::Error> = client.r#type().await;
}

fn main() {
    let _serve = Books.serve();
}
