//! Starting worker processes so that they cannot outlive the host.
//!
//! On Linux every worker asks the kernel, between `fork` and `exec`, to be
//! sent SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), then checks that
//! the parent is still the host (closing the race where the host died before
//! the request). The kernel ties that signal to the *thread* that forked, not
//! the process, so forking from a runtime worker thread or a pooled blocking
//! thread would kill workers whenever the runtime retires that thread. All
//! forks therefore happen on one dedicated thread that lives exactly as long
//! as the `WorkerSet`.
//!
//! The spawner also remembers which pids are running so that dropping the set
//! can kill them synchronously, without waiting for tasks to be cancelled.

use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex, mpsc};

use ipc2_common::sync::lock;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::error::ExitInfo;

struct Request {
    command: Command,
    reply: oneshot::Sender<io::Result<Child>>,
}

type Registry = Arc<Mutex<HashSet<u32>>>;

/// Forks workers from a dedicated thread and tracks the ones still running.
pub(crate) struct Spawner {
    requests: mpsc::Sender<Request>,
    running: Registry,
}

impl Spawner {
    /// Starts the spawning thread. Children are registered with `runtime`
    /// so they can be awaited there.
    pub(crate) fn start(runtime: tokio::runtime::Handle) -> io::Result<Self> {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("ipc2-spawner".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                while let Ok(mut request) = incoming.recv() {
                    let _ = request.reply.send(request.command.spawn());
                }
            })?;
        Ok(Self {
            requests,
            running: Registry::default(),
        })
    }

    /// Spawns `command` (made to die with the host) on the spawning thread.
    pub(crate) async fn spawn(&self, mut command: Command) -> io::Result<WorkerProcess> {
        die_with_host(&mut command);
        command.kill_on_drop(true);
        let (reply, child) = oneshot::channel();
        let gone = || io::Error::other("the WorkerSet's spawner thread has stopped");
        self.requests
            .send(Request { command, reply })
            .map_err(|_| gone())?;
        let child = child.await.map_err(|_| gone())??;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("spawned worker has no pid"))?;
        lock(&self.running).insert(pid);
        Ok(WorkerProcess {
            child,
            pid,
            running: Arc::clone(&self.running),
        })
    }

    /// Sends SIGKILL to every worker process still running; returns how
    /// many it signalled.
    pub(crate) fn kill_all(&self) -> usize {
        lock(&self.running)
            .drain()
            .filter_map(|pid| rustix::process::Pid::from_raw(pid as i32))
            .filter(|&pid| {
                rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
            })
            .count()
    }
}

/// One running worker process.
pub(crate) struct WorkerProcess {
    child: Child,
    pid: u32,
    running: Registry,
}

impl WorkerProcess {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Its piped stdout and stderr, if they were piped and not taken yet.
    pub(crate) fn take_output(
        &mut self,
    ) -> (
        Option<tokio::process::ChildStdout>,
        Option<tokio::process::ChildStderr>,
    ) {
        (self.child.stdout.take(), self.child.stderr.take())
    }

    /// Waits for it to exit and reaps it. Cancel safe.
    pub(crate) async fn wait(&mut self) -> ExitInfo {
        let status = self.child.wait().await.ok();
        lock(&self.running).remove(&self.pid);
        ExitInfo(status)
    }

    /// Kills it and reaps it.
    pub(crate) async fn kill(&mut self) -> ExitInfo {
        let _ = self.child.start_kill();
        self.wait().await
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // `kill_on_drop` kills the child; stop tracking it.
        lock(&self.running).remove(&self.pid);
    }
}

#[cfg(target_os = "linux")]
fn die_with_host(command: &mut Command) {
    let host = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // two async-signal-safe system calls; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if rustix::process::getppid() != Some(host) {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_host(_command: &mut Command) {}
