//! No orphans: dropping the set, or killing its host outright, leaves no
//! worker running, and dropping it removes its socket directory.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use test_common::binaries::worker_binary;
use test_common::pools::{behaviour_pool, eventually, seed_pool, within};
use test_common::process::{is_running, wait_all_gone};

#[tokio::test]
async fn drop_kills_workers_and_removes_the_socket_directory() {
    within(30, async {
        let workers = seed_pool(3).await;
        let pids = workers.worker_pids();
        assert_eq!(pids.len(), 3);
        assert!(pids.iter().all(|&pid| is_running(pid)));
        let dir = workers.socket_path().parent().unwrap().to_path_buf();
        assert!(dir.exists());
        drop(workers);
        assert!(!dir.exists(), "socket directory left behind");
        assert!(
            eventually(Duration::from_secs(5), || pids
                .iter()
                .all(|&pid| !is_running(pid)))
            .await,
            "workers still running after drop"
        );
    })
    .await;
}

#[tokio::test]
async fn clones_keep_the_pool_alive_until_the_last_one_drops() {
    within(30, async {
        let workers = behaviour_pool(1).await;
        let clone = workers.clone();
        let pids = workers.worker_pids();
        drop(workers);
        assert!(pids.iter().all(|&pid| is_running(pid)));
        assert_eq!(
            clone
                .send(test_common::behaviour::Request::Add(1, 1))
                .await
                .unwrap(),
            test_common::behaviour::Response::Sum(2)
        );
        drop(clone);
        assert!(
            eventually(Duration::from_secs(5), || pids
                .iter()
                .all(|&pid| !is_running(pid)))
            .await
        );
    })
    .await;
}

/// The host is killed with SIGKILL: no destructor runs, yet its workers die
/// within 2 s (the kernel's parent-death signal), and the socket directory
/// it could not remove is swept by the next set started in the same place.
#[test]
fn workers_die_with_a_host_killed_by_sigkill() {
    let parent = std::env::temp_dir().join(format!("ipc2-test-sigkill-{}", std::process::id()));
    std::fs::create_dir_all(&parent).unwrap();
    let mut host = Command::new(worker_binary("pool_holder"))
        .arg(worker_binary("behaviour_worker"))
        .arg("3")
        .arg(&parent)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = host.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let pids: Vec<u32> = loop {
        let line = match lines_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = host.kill();
                panic!("pool_holder did not report its workers within 30 s");
            }
        };
        if let Some(pids) = line.strip_prefix("pids: ") {
            break pids.split(' ').map(|pid| pid.parse().unwrap()).collect();
        }
    };
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&pid| is_running(pid)));

    host.kill().unwrap(); // SIGKILL
    host.wait().unwrap();
    assert!(
        wait_all_gone(&pids, Duration::from_secs(2)),
        "workers outlived their SIGKILLed host by more than 2 s"
    );

    // The dead host's directory is still there; the next set sweeps it.
    let stale: Vec<_> = std::fs::read_dir(&parent).unwrap().collect();
    assert_eq!(stale.len(), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let workers: test_common::pools::SeedPool = ipc2_host::workerset::WorkerSet::builder()
            .worker_count(1)
            .worker_path(worker_binary("worker_test"))
            .socket_parent(&parent)
            .finish()
            .await
            .unwrap();
        let own = workers.socket_path().parent().unwrap().to_path_buf();
        let left: Vec<_> = std::fs::read_dir(&parent)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(left, vec![own]);
    });
    drop(runtime);
    std::fs::remove_dir(&parent).unwrap();
}
