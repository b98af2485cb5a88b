//! Bounded waits on processes and paths, for tests that check that nothing
//! is left behind.

use std::path::Path;
use std::time::{Duration, Instant};

/// Whether `pid` is a running process (a zombie, already dead and waiting to
/// be reaped, does not count).
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until none of `pids` is running.
pub fn wait_all_gone(pids: &[u32], timeout: Duration) -> bool {
    wait_until(timeout, || pids.iter().all(|&pid| !is_running(pid)))
}

/// Waits until `path` no longer exists.
pub fn wait_path_gone(path: &Path, timeout: Duration) -> bool {
    wait_until(timeout, || !path.exists())
}

/// Sends SIGKILL to `pid`; panics if that fails.
pub fn kill(pid: u32) {
    let Some(process) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        panic!("not a pid: {pid}");
    };
    if let Err(error) = rustix::process::kill_process(process, rustix::process::Signal::KILL) {
        panic!("could not kill {pid}: {error}");
    }
}
