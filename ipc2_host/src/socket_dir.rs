//! The private directory the host's socket lives in.
//!
//! Each `WorkerSet` creates a fresh directory (mode 0700, so only its user
//! can reach the socket) named after the host's pid, and removes it when the
//! set goes away. A host killed by SIGKILL cannot clean up after itself, so
//! creating a new directory first sweeps away those left by hosts that no
//! longer run.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use ipc2_common::Secret;

const PREFIX: &str = "ipc2-";
const SOCKET_NAME: &str = "host.sock";

/// A private directory, removed with everything in it on drop.
#[derive(Debug)]
pub(crate) struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Creates a fresh private directory under `parent`.
    pub(crate) fn create(parent: &Path) -> io::Result<Self> {
        sweep_stale(parent);
        let nonce = &Secret::generate()?.to_hex()[..16];
        let path = parent.join(format!("{PREFIX}{}-{nonce}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path })
    }

    /// The socket's path inside the directory.
    pub(crate) fn socket_path(&self) -> PathBuf {
        self.path.join(SOCKET_NAME)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes `ipc2-<pid>-*` directories of this user whose host is gone.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let uid = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let ours = entry
            .metadata()
            .is_ok_and(|meta| meta.is_dir() && meta.uid() == uid);
        if ours && !process_exists(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn process_exists(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}
