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

/// CPU time (user + system, in clock ticks) `pid` has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is field 3, utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The worker spins briefly before parking while jobs come quickly; once
/// they stop, it must park: an idle pool costs no CPU.
#[tokio::test]
async fn seed_workers_use_no_cpu_once_jobs_stop() {
    within(60, async {
        let workers = std::sync::Arc::new(seed_pool(2).await);
        // A burst at the pool's defaults, the load that makes workers spin.
        let callers: Vec<_> = (0..64u32)
            .map(|caller| {
                let workers = std::sync::Arc::clone(&workers);
                tokio::spawn(async move {
                    for i in 0..50 {
                        let sum = workers.send(HostMessage::Add(caller, i)).await.unwrap();
                        assert_eq!(sum, caller + i);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
        let pids = workers.worker_pids();
        assert_eq!(pids.len(), 2);
        let before: u64 = pids.iter().map(|&pid| cpu_ticks(pid)).sum();
        // The observation window: nothing happens in it, by design.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after: u64 = pids.iter().map(|&pid| cpu_ticks(pid)).sum();
        // Clock ticks are usually 10 ms: 2 workers x 2 s idle may use a
        // few (timers, the runtime's housekeeping), never a spinning CPU's
        // ~200 per second.
        assert!(
            after - before <= 10,
            "idle workers used {} clock ticks of CPU in 2 s",
            after - before
        );
    })
    .await;
}
