//! Remote workers over TLS on loopback: they join with a certificate the
//! host's CA signed, serve the same jobs, show their address in stats, are
//! noticed when they freeze, and come back to a restarted host. Strangers
//! without a valid certificate, plain-TCP clients and slowloris connections
//! get nothing and hold nothing up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc2_common::Connector;
use ipc2_common::codec::encode_frame;
use ipc2_common::{FrameCodec, FrameKind, FrameReader};
use ipc2_host::{Error, WorkerState};
use ipc2_tls::{Identity, TlsConnector, TlsListener, WorkerTls};
use test_common::behaviour::{Request, Response};
use test_common::pools::{BehaviourPool, behaviour_builder, eventually, pid_of, within};
use test_common::remote::{
    RemoteWorker, both_answer, jobs_flow, loopback_listener, remote_builder, serving_remote,
};
use test_common::tls::{HOST_NAME, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn remote_workers_serve_beside_spawned_ones_and_show_their_address() {
    within(60, async {
        let pki = TestPki::new();
        let listener = loopback_listener(&pki, &[]).await;
        let address = listener.local_addr().unwrap().to_string();
        let a = RemoteWorker::start(&pki, "worker-a.test", &address, &[]);
        let b = RemoteWorker::start(&pki, "worker-b.test", &address, &[]);
        let workers: BehaviourPool = behaviour_builder()
            .worker_count(1)
            .remote_workers(listener, 2)
            .wait_for_remote_workers(2)
            .finish()
            .await
            .unwrap();
        let mut names = serving_remote(&workers, 2, 10).await;
        names.sort();
        assert_eq!(names, ["worker-a.test", "worker-b.test"]);
        let stats = workers.stats();
        println!("stats: {:?}", stats.workers);
        let local = &stats.workers[0];
        assert!(local.peer.is_none() && local.pid.is_some());
        for remote in &stats.workers[1..] {
            let peer = remote.peer.as_ref().unwrap();
            assert!(peer.address.ip().is_loopback(), "{peer}");
        }
        // worker_pids() lists only the processes the set spawned.
        assert_eq!(workers.worker_pids(), vec![local.pid.unwrap()]);
        both_answer(&workers, [a.pid(), b.pid()]).await;
        jobs_flow(&workers).await;
        let report = workers.shutdown(Duration::from_secs(10)).await;
        assert_eq!(report.killed, 0, "{report:?}");
    })
    .await;
}

/// A valid ipc2 handshake (a remote worker's secret is not checked: its
/// certificate is its identity).
fn hello_frame() -> bytes::Bytes {
    let hello = ipc2_common::Hello {
        version: ipc2_common::PROTOCOL_VERSION,
        pid: std::process::id(),
        secret: [0; 32],
    };
    encode_frame(FrameKind::Hello, 0, &hello, 1024).unwrap()
}

/// Connects with `tls` (if any) and offers a valid ipc2 handshake; returns
/// what the host sent back before it closed the connection.
async fn offer(address: &str, tls: Option<WorkerTls>) -> Vec<u8> {
    let frame = hello_frame();
    let mut received = Vec::new();
    let exchange = async {
        match tls {
            None => {
                let mut tcp = TcpStream::connect(address).await.unwrap();
                let _ = tcp.write_all(&frame).await;
                let _ = tcp.read_to_end(&mut received).await;
            }
            Some(tls) => {
                let connector = TlsConnector::new(address, HOST_NAME, tls).unwrap();
                // TLS 1.3: the host checks the client certificate after the
                // client thinks the handshake is done, so the refusal shows
                // on the first read.
                if let Ok(connection) = connector.connect().await {
                    let (mut reader, mut writer) = ipc2_common::Connection::into_split(connection);
                    let _ = writer.write_all(&frame).await;
                    let _ = reader.read_to_end(&mut received).await;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the host kept a stranger's connection open");
    received
}

/// A worker's connection as far as the host's `Welcome`: connects with
/// `tls`, says hello, and returns the connection once the host took it as
/// a worker.
async fn join(
    address: &str,
    tls: WorkerTls,
) -> (
    FrameReader<impl tokio::io::AsyncRead + Unpin>,
    impl tokio::io::AsyncWrite + Unpin,
) {
    let frame = hello_frame();
    let connection = TlsConnector::new(address, HOST_NAME, tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (reader, mut writer) = ipc2_common::Connection::into_split(connection);
    writer.write_all(&frame).await.unwrap();
    let mut reader = FrameReader::new(reader, FrameCodec::new(1 << 20));
    let welcome = reader.next().await.unwrap().unwrap();
    assert_eq!(welcome.kind, FrameKind::Welcome);
    (reader, writer)
}

#[tokio::test]
async fn a_worker_that_joins_twice_counts_once_for_wait_for_remote_workers() {
    within(60, async {
        let pki = TestPki::new();
        let listener = loopback_listener(&pki, &[]).await;
        let address = listener.local_addr().unwrap().to_string();
        let finishing = remote_builder(listener, 2)
            .heartbeat(Duration::from_millis(100), Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(3))
            .wait_for_remote_workers(2)
            .finish();
        let joining = async {
            // One worker joins, leaves (the host closing its side shows
            // the host saw it go), and joins again while `finish` waits.
            let (mut reader, mut writer) = join(&address, pki.worker("worker-a.test")).await;
            writer.shutdown().await.unwrap();
            while let Ok(Some(_)) = reader.next().await {}
            join(&address, pki.worker("worker-a.test")).await
        };
        let (finished, _connection) = tokio::join!(finishing, joining);
        let finished: Result<BehaviourPool, Error> = finished;
        match finished.err() {
            Some(Error::RemoteJoinTimeout {
                expected: 2,
                joined: 1,
                ..
            }) => {}
            other => panic!("expected a join timeout with 1 of 2 joined, got {other:?}"),
        }
    })
    .await;
}

/// A TLS client that presents no certificate at all.
async fn offer_without_certificate(address: &str, pki: &TestPki) -> bool {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring, version};
    let identity: Identity = pki.identity("anonymous");
    let mut roots = RootCertStore::empty();
    for cert in tokio_rustls::rustls::pki_types::pem::PemObject::pem_slice_iter(&identity.ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(HOST_NAME).unwrap();
    let tcp = TcpStream::connect(address).await.unwrap();
    let refused = async {
        let Ok(mut stream) = connector.connect(name, tcp).await else {
            return true;
        };
        let _ = stream.write_all(b"\0\0\0\x09\x10\0\0\0\0\0\0\0\0").await;
        let mut buf = Vec::new();
        matches!(stream.read_to_end(&mut buf).await, Err(_) | Ok(0))
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the host kept an anonymous connection open")
}

#[tokio::test]
async fn strangers_without_a_valid_certificate_get_nothing() {
    within(60, async {
        let pki = TestPki::new();
        let other_ca = TestPki::new();
        let listener = loopback_listener(&pki, &["worker-a.test"]).await;
        let address = listener.local_addr().unwrap().to_string();
        let workers: BehaviourPool = remote_builder(listener, 2).finish().await.unwrap();

        // Plain TCP speaking ipc2, a certificate from another CA, a valid
        // certificate with a name the host does not allow, no certificate.
        // Plain TCP gets at most a TLS alert record (content type 0x15).
        let plain = offer(&address, None).await;
        println!("a plain-TCP client received {plain:02x?}");
        assert!(plain.is_empty() || plain[0] == 0x15, "{plain:02x?}");
        assert!(
            offer(&address, Some(other_ca.worker("worker-a.test")))
                .await
                .is_empty()
        );
        assert!(
            offer(&address, Some(pki.worker("worker-z.test")))
                .await
                .is_empty()
        );
        assert!(offer_without_certificate(&address, &pki).await);
        assert!(
            workers
                .stats()
                .workers
                .iter()
                .all(|w| w.state == WorkerState::Vacant)
        );
        // With no worker, jobs fail at once rather than wait.
        assert!(matches!(
            workers.send(Request::Pid).await,
            Err(Error::NoWorkers { .. })
        ));

        let a = RemoteWorker::start(&pki, "worker-a.test", &address, &[]);
        assert_eq!(serving_remote(&workers, 1, 10).await, ["worker-a.test"]);
        assert_eq!(pid_of(&workers).await, a.pid());
    })
    .await;
}

#[tokio::test]
async fn slowloris_and_silent_connections_cost_nothing() {
    within(60, async {
        let pki = TestPki::new();
        let listener = loopback_listener(&pki, &[])
            .await
            .handshake_timeout(Duration::from_millis(500))
            .max_pending(64);
        let address = listener.local_addr().unwrap().to_string();
        let workers: BehaviourPool = remote_builder(listener, 1).finish().await.unwrap();
        // 300 connections that never finish a TLS handshake: silent ones,
        // and ones that trickle the first bytes of a ClientHello.
        let mut strangers = Vec::new();
        for index in 0..300 {
            let mut tcp = TcpStream::connect(&address).await.unwrap();
            if index % 2 == 0 {
                tcp.write_all(&[0x16, 0x03]).await.unwrap();
            }
            strangers.push(tcp);
        }
        let started = Instant::now();
        let a = RemoteWorker::start(&pki, "worker-a.test", &address, &[]);
        serving_remote(&workers, 1, 10).await;
        println!(
            "a worker joined past 300 stalled handshakes in {:?}",
            started.elapsed()
        );
        assert_eq!(pid_of(&workers).await, a.pid());
        jobs_flow(&workers).await;
        // Every stranger is let go: dropped as the oldest, or at the deadline.
        for mut stranger in strangers {
            let mut buf = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(10), stranger.read_to_end(&mut buf)).await;
            assert!(closed.is_ok(), "a stalled handshake was kept open");
        }
        jobs_flow(&workers).await;
    })
    .await;
}

/// Two remote workers; one is frozen (SIGSTOP) while the pool holds a job
/// for each. Returns the pool, the workers, and the outcomes of the jobs.
async fn freeze_one(
    max_attempts: u32,
) -> (
    BehaviourPool,
    [RemoteWorker; 2],
    Vec<Result<Response, Error>>,
    Duration,
) {
    let pki = TestPki::new();
    let listener = loopback_listener(&pki, &[]).await;
    let address = listener.local_addr().unwrap().to_string();
    let a = RemoteWorker::start(&pki, "worker-a.test", &address, &[]);
    let b = RemoteWorker::start(&pki, "worker-b.test", &address, &[]);
    let workers: BehaviourPool = remote_builder(listener, 2)
        .max_attempts(max_attempts)
        .wait_for_remote_workers(2)
        .finish()
        .await
        .unwrap();
    a.freeze(true);
    let started = Instant::now();
    // One job goes to each worker (each may hold one); the frozen one never
    // answers: its link falls silent.
    let outcomes = workers
        .send_batch([Request::Sleep(200), Request::Sleep(200)])
        .await;
    let elapsed = started.elapsed();
    drop(pki);
    (workers, [a, b], outcomes, elapsed)
}

#[tokio::test]
async fn a_frozen_remote_worker_fails_its_job_with_worker_lost() {
    within(60, async {
        let (workers, [a, b], outcomes, elapsed) = freeze_one(1).await;
        println!("outcomes after {elapsed:?}: {outcomes:?}");
        let lost: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
        assert_eq!(lost.len(), 1, "{outcomes:?}");
        match lost[0] {
            Err(Error::WorkerLost {
                peer,
                attempts: 1,
                reason,
                ..
            }) => {
                assert_eq!(peer.name.as_deref(), Some("worker-a.test"));
                assert!(reason.contains("nothing heard"), "{reason}");
            }
            other => panic!("expected WorkerLost, got {other:?}"),
        }
        assert!(
            outcomes
                .iter()
                .any(|o| o.as_ref().ok() == Some(&Response::Slept(b.pid())))
        );
        assert_eq!(workers.stats().failed.worker_lost, 1);
        // The pool keeps serving on the other worker meanwhile.
        jobs_flow(&workers).await;
        // Thawed, the worker finds its connection gone and joins again.
        a.freeze(false);
        serving_remote(&workers, 2, 10).await;
        both_answer(&workers, [a.pid(), b.pid()]).await;
    })
    .await;
}

#[tokio::test]
async fn a_frozen_remote_workers_job_is_retried_under_max_attempts() {
    within(60, async {
        let (workers, [a, b], outcomes, elapsed) = freeze_one(2).await;
        println!("outcomes after {elapsed:?}: {outcomes:?}");
        assert_eq!(outcomes.len(), 2);
        for outcome in &outcomes {
            assert_eq!(outcome.as_ref().ok(), Some(&Response::Slept(b.pid())));
        }
        assert_eq!(workers.stats().failed.total(), 0);
        a.freeze(false);
        serving_remote(&workers, 2, 10).await;
    })
    .await;
}

#[tokio::test]
async fn remote_workers_join_a_restarted_host() {
    within(60, async {
        let pki = TestPki::new();
        let listener = loopback_listener(&pki, &[]).await;
        let address = listener.local_addr().unwrap();
        let a = RemoteWorker::start(&pki, "worker-a.test", &address.to_string(), &[]);
        let first: BehaviourPool = remote_builder(listener, 1)
            .wait_for_remote_workers(1)
            .finish()
            .await
            .unwrap();
        assert_eq!(pid_of(&first).await, a.pid());
        let started = Instant::now();
        let report = first.shutdown(Duration::from_secs(10)).await;
        println!(
            "first host shut down in {:?}: {report:?}",
            started.elapsed()
        );
        assert_eq!(report.killed, 0);
        drop(first);
        assert!(eventually(Duration::from_secs(5), || a_is_alive(&a)).await);

        // A new host on the same address: the same worker process joins it.
        // The old listener closes as its task is dropped: retry briefly.
        let mut listener = None;
        for _ in 0..100 {
            match TlsListener::bind(address, pki.host(&[])).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let listener = listener.expect("bind the restarted host's address");
        let second: BehaviourPool = remote_builder(listener, 1)
            .wait_for_remote_workers(1)
            .finish()
            .await
            .unwrap();
        assert_eq!(pid_of(&second).await, a.pid());
        jobs_flow(&second).await;
    })
    .await;
}

fn a_is_alive(worker: &RemoteWorker) -> bool {
    test_common::process::is_running(worker.pid())
}
