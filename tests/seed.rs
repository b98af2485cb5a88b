//! The seed document's examples, run as written.

use std::process::Command;
use std::time::Duration;

use test_common::HostMessage;
use test_common::binaries::{example_binary, worker_binary};
use test_common::pools::{seed_pool, within};

/// `examples/seed_host.rs` is the seed's host verbatim; it looks for the
/// worker at `./target/debug/worker_test`, so run it from a directory where
/// that path leads to the seed's worker binary.
#[test]
fn seed_host_example_prints_the_sum() {
    let worker = worker_binary("worker_test");
    let host = example_binary("seed_host");
    let dir = std::env::temp_dir().join(format!("ipc2-seed-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    let link = dir.join("target/debug/worker_test");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&worker, &link).unwrap();

    let mut child = Command::new(&host)
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let finished = test_common::process::wait_until(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(finished, "seed host did not exit within 30 s");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "seed host failed: {stdout}");
    assert_eq!(stdout.trim(), "Result -> 13");
}

#[tokio::test]
async fn seed_worker_adds_and_subtracts() {
    within(30, async {
        let workers = seed_pool(2).await;
        assert_eq!(workers.send(HostMessage::Add(6, 7)).await.unwrap(), 13);
        assert_eq!(workers.send(HostMessage::Sub(9, 4)).await.unwrap(), 5);
    })
    .await;
}
