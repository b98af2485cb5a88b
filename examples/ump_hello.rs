//! The ump seed's example (`shared/seeds/ump.txt`), ported to processes: a
//! server that greets its client, and a client that asks from plain
//! synchronous code. No `async` and no `#[tokio::main]` on either side: the
//! server is a worker process (this same executable), the client a
//! one-worker pool.
//!
//! Run: `cargo run --example ump_hello`.

use ipc2::Pool;
use ipc2::worker::Job;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // In the worker process, serve; in the host, go on.
    ipc2::worker::run_if_worker(server);

    let client: Pool<String, String> = Pool::builder()
        .worker_count(1)
        .self_exec()
        .finish_blocking()?;
    let msg = String::from("Client");
    println!("Client sending '{msg}'");
    let reply = client.send_blocking(msg)?;
    println!("Client received reply '{reply}'");
    println!("Client done");
    // Let the server finish: its loop ends when the pool asks it to stop.
    client.shutdown_blocking(std::time::Duration::from_secs(5))?;
    Ok(())
}

/// The server: waits for a message, replies with a greeting.
fn server() -> Result<(), Box<dyn std::error::Error>> {
    println!("Server waiting for message ..");
    for job in ipc2::worker::blocking::jobs::<String, String>()? {
        let Job::Bidirectional { data, tx } = job else {
            continue;
        };
        println!("Server received: '{data}'");
        let reply = format!("Hello, {data}!");
        println!("Server replying '{reply}'");
        tx.reply(reply)?;
    }
    println!("Server done");
    Ok(())
}
