//! A synchronous host: a plain `fn main`, no `#[tokio::main]` and no
//! runtime of its own, builds a pool of the seed's worker with
//! `finish_blocking` and uses every blocking call: `send_blocking`,
//! `submit` + `wait`, a blocking map and `shutdown_blocking`. It prints one
//! line per step for `tests/shapes.rs`.

use std::time::Duration;

use ipc2_host::Pool;
use test_common::HostMessage;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    assert!(tokio::runtime::Handle::try_current().is_err());
    // The seed's worker, built next to this executable.
    let worker = std::env::current_exe()?.with_file_name("worker_test");
    let workers: Pool<HostMessage, u32> = Pool::builder()
        .worker_count(2)
        .worker_path(worker)
        .finish_blocking()?;
    println!("6 + 7 = {}", workers.send_blocking(HostMessage::Add(6, 7))?);

    let pending: Vec<_> = (1..=3)
        .map(|i| workers.submit(HostMessage::Add(i, i)))
        .collect();
    let mut replies = Vec::new();
    for reply in pending {
        replies.push(reply.wait()?.to_string());
    }
    println!("submitted 3 jobs; replies {}", replies.join(" "));

    let (mut count, mut total) = (0, 0);
    for sum in workers
        .map((0..1000).map(|i| HostMessage::Add(i, 1)))
        .blocking()?
    {
        count += 1;
        total += sum?;
    }
    println!("map: {count} sums, total {total}");

    let report = workers.shutdown_blocking(Duration::from_secs(5))?;
    println!("shut down: {} workers killed", report.killed);
    Ok(())
}
