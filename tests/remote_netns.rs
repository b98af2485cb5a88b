//! One machine that behaves like three: a host in one network namespace,
//! remote workers in two others, joined by veth pairs. Jobs flow; a link is
//! cut mid-job (`ip link set down`) and that job fails within the heartbeat
//! timeout, naming the lost worker, while the pool keeps serving on the
//! other; the link restored, the worker returns on its own.
//!
//! The namespaces are made by the test (it must run as root with `ip`, from
//! iproute2) and removed by a guard however the test ends. Where that is
//! not permitted, the test says so on stderr and runs the same scenario on
//! loopback, cutting the worker off by freezing it (SIGSTOP) instead.
//! `IPC2_TEST_NETNS=off` forces that fallback.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use ipc2_host::Error;
use ipc2_tls::TlsListener;
use test_common::behaviour::{Request, Response};
use test_common::pools::{BehaviourPool, eventually, within};
use test_common::remote::{RemoteWorker, both_answer, jobs_flow, remote_builder, serving_remote};
use test_common::tls::TestPki;

/// Prefix of every namespace this test makes (then the test's pid).
const PREFIX: &str = "ipc2t";

/// Says something on the real stderr, past the test harness's capture.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "remote_netns: {text}");
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("`ip` could not run: {error}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// Network namespaces of this test; deleted (with their veth ends) on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn add(&mut self, name: String) -> Result<(), String> {
        ip(&["netns", "add", &name])?;
        self.names.push(name);
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Removes namespaces left by runs of this test that were killed.
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: u32 = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        if pid != 0 && !test_common::process::is_running(pid) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A host namespace and two worker namespaces, each worker joined to the
/// host by its own veth pair: 10.213.1.0/24 for `a`, 10.213.2.0/24 for `b`.
struct Lab {
    namespaces: Namespaces,
    host: String,
    workers: [String; 2],
    /// The host's end of each worker's link.
    host_ends: [String; 2],
}

impl Lab {
    fn build() -> Result<Self, String> {
        if std::env::var_os("IPC2_TEST_NETNS").is_some_and(|value| value == "off") {
            return Err("IPC2_TEST_NETNS=off".into());
        }
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root".into());
        }
        remove_stale();
        let pid = std::process::id();
        let mut namespaces = Namespaces { names: Vec::new() };
        let host = format!("{PREFIX}{pid}h");
        let workers = [format!("{PREFIX}{pid}a"), format!("{PREFIX}{pid}b")];
        namespaces.add(host.clone())?;
        let mut host_ends = Vec::new();
        for (index, worker) in workers.iter().enumerate() {
            namespaces.add(worker.clone())?;
            let net = index + 1;
            let (host_end, worker_end) = (format!("i2h{pid}{net}"), format!("i2w{pid}{net}"));
            ip(&[
                "link",
                "add",
                &host_end,
                "type",
                "veth",
                "peer",
                "name",
                &worker_end,
            ])?;
            ip(&["link", "set", &host_end, "netns", &host])?;
            ip(&["link", "set", &worker_end, "netns", worker])?;
            let host_address = format!("10.213.{net}.1/24");
            let worker_address = format!("10.213.{net}.2/24");
            ip(&["-n", &host, "addr", "add", &host_address, "dev", &host_end])?;
            ip(&[
                "-n",
                worker,
                "addr",
                "add",
                &worker_address,
                "dev",
                &worker_end,
            ])?;
            ip(&["-n", &host, "link", "set", &host_end, "up"])?;
            ip(&["-n", worker, "link", "set", &worker_end, "up"])?;
            ip(&["-n", worker, "link", "set", "lo", "up"])?;
            host_ends.push(host_end);
        }
        ip(&["-n", &host, "link", "set", "lo", "up"])?;
        let host_ends = [host_ends[0].clone(), host_ends[1].clone()];
        Ok(Self {
            namespaces,
            host,
            workers,
            host_ends,
        })
    }

    /// A TCP listener inside the host namespace (bound from a thread that
    /// moved there; the socket stays in it).
    fn listen(&self) -> Result<std::net::TcpListener, String> {
        let path = format!("/run/netns/{}", self.host);
        std::thread::spawn(move || -> Result<std::net::TcpListener, String> {
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&file),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(|e| format!("setns into {path}: {e}"))?;
            std::net::TcpListener::bind("0.0.0.0:0").map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
    }

    /// Takes worker `index`'s link down, or brings it back up.
    fn link(&self, index: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&[
            "-n",
            &self.host,
            "link",
            "set",
            &self.host_ends[index],
            state,
        ])
        .expect("change a link's state");
    }
}

/// Where the scenario runs.
enum Place {
    Lab(Lab),
    Loopback,
}

#[tokio::test]
async fn a_cut_link_fails_its_job_within_the_heartbeat_timeout_and_the_worker_returns() {
    within(120, async {
        let pki = TestPki::new();
        let place = match Lab::build() {
            Ok(lab) => {
                say("network namespaces: host and two workers in namespaces of their own, joined by veth pairs");
                Place::Lab(lab)
            }
            Err(reason) => {
                say(&format!(
                    "network namespaces not permitted here ({reason}); FALLING BACK to loopback, \
                     where a link cut is simulated by freezing the worker (SIGSTOP)"
                ));
                Place::Loopback
            }
        };
        let (listener, hosts, prefixes) = match &place {
            Place::Lab(lab) => {
                let listener = lab.listen().expect("listen in the host namespace");
                let port = listener.local_addr().unwrap().port();
                let listener = TlsListener::from_std(listener, pki.host(&[])).unwrap();
                let hosts = [format!("10.213.1.1:{port}"), format!("10.213.2.1:{port}")];
                let prefixes = lab
                    .workers
                    .clone()
                    .map(|ns| vec!["ip".to_string(), "netns".into(), "exec".into(), ns]);
                (listener, hosts, prefixes)
            }
            Place::Loopback => {
                let listener = TlsListener::bind("127.0.0.1:0", pki.host(&[])).await.unwrap();
                let host = listener.local_addr().unwrap().to_string();
                (listener, [host.clone(), host], [Vec::new(), Vec::new()])
            }
        };
        let start = |index: usize, name: &str| {
            let prefix: Vec<&str> = prefixes[index].iter().map(String::as_str).collect();
            RemoteWorker::start(&pki, name, &hosts[index], &prefix)
        };
        let a = start(0, "worker-a.test");
        let b = start(1, "worker-b.test");
        let workers: BehaviourPool = remote_builder(listener, 2)
            .max_in_flight_per_worker(4)
            .wait_for_remote_workers(2)
            .finish()
            .await
            .unwrap();

        // Jobs flow to both.
        serving_remote(&workers, 2, 10).await;
        both_answer(&workers, [a.pid(), b.pid()]).await;
        let peers: Vec<String> = workers
            .stats()
            .workers
            .iter()
            .filter_map(|w| w.peer.as_ref().map(ToString::to_string))
            .collect();
        say(&format!("remote workers: {peers:?}"));
        if let Place::Lab(_) = &place {
            assert!(peers.iter().any(|p| p.contains("worker-a.test at 10.213.1.2:")));
            assert!(peers.iter().any(|p| p.contains("worker-b.test at 10.213.2.2:")));
        }

        // A job on each worker; then b's link is cut mid-job.
        let jobs: Vec<_> = (0..2)
            .map(|_| {
                let workers = workers.clone();
                tokio::spawn(async move {
                    let outcome = workers.send(Request::Sleep(2_000)).await;
                    (Instant::now(), outcome)
                })
            })
            .collect();
        let both_busy = eventually(Duration::from_secs(10), || {
            workers.stats().workers.iter().all(|w| w.in_flight == 1)
        })
        .await;
        assert!(both_busy, "each worker should hold one job");
        let cut = Instant::now();
        match &place {
            Place::Lab(lab) => lab.link(1, false),
            Place::Loopback => b.freeze(true),
        }
        let mut outcomes = Vec::new();
        for job in jobs {
            let (done, outcome) = job.await.unwrap();
            outcomes.push((done.duration_since(cut), outcome));
        }
        say(&format!("after the cut: {outcomes:?}"));
        let lost: Vec<_> = outcomes.iter().filter(|(_, o)| o.is_err()).collect();
        assert_eq!(lost.len(), 1, "{outcomes:?}");
        let (after, outcome) = lost[0];
        match outcome {
            Err(Error::WorkerLost { peer, .. }) => {
                assert_eq!(peer.name.as_deref(), Some("worker-b.test"))
            }
            other => panic!("expected WorkerLost, got {other:?}"),
        }
        // Its job would have taken 2 s: the failure came from the heartbeat
        // (timeout 600 ms), not from the job.
        assert!(*after < Duration::from_millis(1_900), "noticed only after {after:?}");
        assert!(outcomes
            .iter()
            .any(|(_, o)| matches!(o, Ok(Response::Slept(pid)) if *pid == a.pid())));

        // The pool keeps serving on the other worker meanwhile.
        jobs_flow(&workers).await;
        assert_eq!(serving_remote(&workers, 1, 5).await, ["worker-a.test"]);

        // Link restored: the worker returns by itself.
        let restored = Instant::now();
        match &place {
            Place::Lab(lab) => lab.link(1, true),
            Place::Loopback => b.freeze(false),
        }
        serving_remote(&workers, 2, 20).await;
        say(&format!("worker b rejoined {:?} after the link came back", restored.elapsed()));
        both_answer(&workers, [a.pid(), b.pid()]).await;

        drop((a, b));
        drop(workers);
        if let Place::Lab(lab) = place {
            let names = lab.namespaces.names.clone();
            drop(lab);
            let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
            let left = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(names.iter().all(|n| !left.contains(n.as_str())), "left behind: {left}");
        }
    })
    .await;
}
