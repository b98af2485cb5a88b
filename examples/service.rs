//! A typed service in one file: the norpc seed's trait under
//! `#[ipc2::service]`, a worker state that implements it, and a host that
//! calls it through the generated client. This executable is both host and
//! worker (self-exec). Run: `cargo run --example service`.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

#[ipc2::service]
trait YourService {
    fn get(key: String) -> Option<Bytes>;
    fn set(key: String, val: Bytes);
}

/// The worker's state, shared by the calls it serves.
#[derive(Default)]
struct Store(Mutex<HashMap<String, Bytes>>);

impl YourService for Store {
    fn get(&self, key: String) -> Option<Bytes> {
        self.0.lock().unwrap().get(&key).cloned()
    }
    fn set(&self, key: String, val: Bytes) {
        self.0.lock().unwrap().insert(key, val);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    ipc2::worker::run_if_worker(worker); // in a worker: serve, then exit
    host()
}

#[tokio::main]
async fn worker() -> Result<(), ipc2::worker::ServeError> {
    Store::default().serve().await
}

#[tokio::main]
async fn host() -> Result<(), Box<dyn std::error::Error>> {
    let pool = ipc2::Pool::builder()
        .worker_count(1)
        .self_exec()
        .finish()
        .await?;
    let store = YourServiceClient::new(pool);
    store.set("hello".into(), Bytes::from("world")).await?;
    println!("hello -> {:?}", store.get("hello".into()).await?);
    println!("nothing -> {:?}", store.get("nothing".into()).await?);
    Ok(())
}
