//! Child processes the bench starts: finding its binaries, pinning to CPU 0,
//! and making sure no child outlives its measurement or runs unbounded.
//!
//! Every child is held in a [`ChildGuard`] (killed and reaped on drop), and
//! every wait on a child has a deadline.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::{CpuSet, sched_setaffinity};

/// The bench's error type: every failure ends up as a note in the report.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`BoxError`].
pub type Result<T> = std::result::Result<T, BoxError>;

/// Restricts the calling thread to CPU 0. Threads and processes it creates
/// afterwards inherit the restriction.
pub fn pin_current_thread_to_cpu0() -> io::Result<()> {
    let mut cpus = CpuSet::new();
    cpus.set(0);
    sched_setaffinity(None, &cpus).map_err(io::Error::from)
}

/// This executable (re-run with a hidden subcommand for children).
pub fn self_exe() -> Result<PathBuf> {
    Ok(std::env::current_exe()?)
}

/// A fresh socket path in the temporary directory (removed if present).
pub fn socket_path(tag: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("ipc2_bench.{}.{tag}.{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// A child that is killed and reaped when dropped.
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Spawns `command`.
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command.spawn().map(Self)
    }

    /// The child, e.g. to take its pipes.
    pub fn child(&mut self) -> &mut Child {
        &mut self.0
    }

    /// Whether the child has exited (and how).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.0.try_wait()
    }

    /// Waits at most `timeout` for the child to exit; kills it if it has not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return Err(format!("child did not finish within {timeout:?}; killed").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What a finished child wrote.
pub struct Captured {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `program args` to completion within `timeout`, capturing its output.
/// Fails (with the end of its stderr) if it cannot start, runs too long or
/// exits unsuccessfully.
pub fn run_captured(program: &Path, args: &[&str], timeout: Duration) -> Result<Captured> {
    let mut child = ChildGuard::spawn(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| format!("could not start {}: {e}", program.display()))?;
    let stdout = drain(child.child().stdout.take());
    let stderr = drain(child.child().stderr.take());
    let status = child.wait_timeout(timeout);
    let captured = Captured {
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    let status = status.map_err(|e| format!("{}: {e}", program.display()))?;
    if status.success() {
        Ok(captured)
    } else {
        let tail: Vec<&str> = captured.stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!(
            "{} {args:?} failed ({status}): {}",
            program.display(),
            tail.join(" | ")
        )
        .into())
    }
}

/// Reads a pipe to the end on a thread, so neither pipe can fill and stall
/// the child.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
