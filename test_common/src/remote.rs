//! Remote workers for tests: `remote_behaviour_worker` processes started
//! by the test (as a platform would), dialling a pool over TLS.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use ipc2_host::workerset::WorkerSet;
use ipc2_host::{WorkerSetBuilder, WorkerState};
use ipc2_tls::TlsListener;
use tokio::net::UnixListener;

use crate::behaviour::{Request, Response};
use crate::binaries::remote_worker_binary;
use crate::pools::{BehaviourPool, eventually};
use crate::tls::TestPki;

/// A remote worker process; killed when dropped.
pub struct RemoteWorker {
    child: std::process::Child,
    /// The name on its certificate.
    pub name: String,
}

impl RemoteWorker {
    /// Starts `remote_behaviour_worker` as remote worker `name`, dialling `host`
    /// with a certificate from `pki`; `prefix` (e.g. `ip netns exec ns`)
    /// runs it elsewhere.
    pub fn start(pki: &TestPki, name: &str, host: &str, prefix: &[&str]) -> Self {
        let binary = remote_worker_binary();
        Self::spawn(&binary, pki.worker_env(name, host), prefix, name)
    }

    /// Starts `binary` with `env` as remote worker `name` (`prefix` as in
    /// [`start`](Self::start)).
    pub fn spawn<K, V>(
        binary: &std::path::Path,
        env: impl IntoIterator<Item = (K, V)>,
        prefix: &[&str],
        name: &str,
    ) -> Self
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut command = match prefix {
            [] => std::process::Command::new(binary),
            [program, args @ ..] => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(binary);
                command
            }
        };
        command.envs(env);
        // SAFETY: between fork and exec, only an async-signal-safe system
        // call: the worker dies with the test, however the test ends.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = command.spawn().expect("start a remote worker");
        Self {
            child,
            name: name.to_owned(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) it.
    pub fn freeze(&self, frozen: bool) {
        let signal = match frozen {
            true => rustix::process::Signal::STOP,
            false => rustix::process::Signal::CONT,
        };
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the remote worker");
    }
}

impl Drop for RemoteWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A builder for a pool of remote behaviour workers only: `slots` remote
/// slots on `listener`, short heartbeats (100 ms, silence of 600 ms).
pub fn remote_builder(
    listener: TlsListener,
    slots: usize,
) -> WorkerSetBuilder<UnixListener, Response, Request> {
    WorkerSet::builder()
        .worker_count(0)
        .remote_workers(listener, slots)
        .heartbeat(Duration::from_millis(100), Duration::from_millis(600))
        .connect_timeout(Duration::from_secs(20))
}

/// A TLS listener on a free loopback port, for `pki`'s host certificate.
pub async fn loopback_listener(pki: &TestPki, allowed: &[&str]) -> TlsListener {
    TlsListener::bind("127.0.0.1:0", pki.host(allowed))
        .await
        .expect("listen on loopback")
}

/// Waits (up to `seconds`) until `count` remote workers serve; returns the
/// names on their certificates.
pub async fn serving_remote(workers: &BehaviourPool, count: usize, seconds: u64) -> Vec<String> {
    let serving = |workers: &BehaviourPool| {
        workers
            .stats()
            .workers
            .into_iter()
            .filter(|worker| worker.state == WorkerState::Serving)
            .filter_map(|worker| worker.peer.and_then(|peer| peer.name))
            .collect::<Vec<_>>()
    };
    let reached = eventually(Duration::from_secs(seconds), || {
        serving(workers).len() == count
    })
    .await;
    let names = serving(workers);
    assert!(
        reached,
        "expected {count} remote workers serving within {seconds} s, found {names:?}"
    );
    names
}

/// Twenty `Add` jobs, each answered correctly.
pub async fn jobs_flow(workers: &BehaviourPool) {
    for i in 0..20 {
        let sum = workers.send(Request::Add(i, i)).await;
        assert_eq!(sum.ok(), Some(Response::Sum(2 * i)));
    }
}

/// Sends one concurrent job per slot until both `pids` have answered (at
/// most 100 rounds): concurrent jobs spread over the workers with room.
pub async fn both_answer(workers: &BehaviourPool, pids: [u32; 2]) {
    let mut seen = [false; 2];
    let slots = workers.stats().workers.len();
    for _ in 0..100 {
        let jobs = (0..slots).map(|_| Request::Sleep(20));
        for outcome in workers.send_batch(jobs).await {
            let Ok(Response::Slept(pid)) = outcome else {
                panic!("expected Slept, got {outcome:?}");
            };
            for (index, expected) in pids.iter().enumerate() {
                seen[index] |= pid == *expected;
            }
        }
        if seen == [true; 2] {
            return;
        }
    }
    panic!("not every worker answered: {pids:?} {seen:?}");
}
