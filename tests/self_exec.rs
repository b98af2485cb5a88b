//! One executable as host and worker: the quickstart example, a program
//! whose workers must never run its host code, and the guard against a
//! program that forgets `run_if_worker`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use test_common::binaries::{example_binary, worker_binary};
use test_common::process::wait_until;

/// Runs `command` to completion within `seconds`, killing it past that.
fn run(mut command: Command, seconds: u64) -> Output {
    let mut child = command
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = wait_until(Duration::from_secs(seconds), || {
        child.try_wait().unwrap().is_some()
    });
    if !finished {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    assert!(finished, "{command:?} did not exit within {seconds} s");
    output
}

#[test]
fn quickstart_example_runs_a_self_exec_pool_end_to_end() {
    let output = run(Command::new(example_binary("quickstart")), 60);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "quickstart failed: {stdout}");
    for expected in [
        "started 4 workers",
        "6 + 7 = 13",
        "9 - 4 = 5",
        "(sum of replies 4024000)",
        "1 / 0 -> error: worker",
        "panicked while running this job at examples/quickstart.rs:",
        "attempt to divide by zero",
        "8 / 2 = 4",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn the_ump_example_greets_its_client_without_async() {
    let output = run(Command::new(example_binary("ump_hello")), 60);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "ump_hello failed: {stdout}");
    // The host's lines, in order; the worker's (it shares stdout) in between.
    let host: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Client")).collect();
    assert_eq!(
        host,
        [
            "Client sending 'Client'",
            "Client received reply 'Hello, Client!'",
            "Client done"
        ]
    );
    for line in [
        "Server waiting for message ..",
        "Server received: 'Client'",
        "Server replying 'Hello, Client!'",
        "Server done",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn self_exec_workers_never_run_the_hosts_main() {
    let mut command = Command::new(worker_binary("self_exec_host"));
    command.args(["--jobs", "6"]);
    let output = run(command, 30);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let host: u32 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .and_then(|pid| pid.parse().ok())
        .expect("the host's pid");
    let replies: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("reply: "))
        .collect();
    assert_eq!(replies.len(), 6, "{stdout}");
    for reply in replies {
        let fields: Vec<&str> = reply["reply: ".len()..].split(' ').collect();
        let pid: u32 = fields[0].parse().unwrap();
        assert_ne!(pid, host, "a job ran in the host");
        // The worker's role, and no command-line arguments beyond argv[0]:
        // the host's strict argument parsing never saw a worker's run.
        assert_eq!(&fields[1..], ["worker", "1"], "{reply}");
    }
}

#[test]
fn a_program_that_forgets_run_if_worker_fails_to_start_instead_of_forking_without_end() {
    let mut command = Command::new(worker_binary("self_exec_host"));
    command
        .args(["--jobs", "1"])
        .env("IPC2_TEST_FORGET_RUN_IF_WORKER", "1");
    let output = run(command, 30);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Each worker, running the host's code, refuses to start a pool of its
    // own and exits; the host's `finish()` reports that.
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("IPC2_ROLE is set"), "{stderr}");
    assert!(stderr.contains("before connecting to the host"), "{stderr}");
}
