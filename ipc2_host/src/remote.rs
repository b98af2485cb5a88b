//! Remote workers: slots that wait for a worker to dial in, serve it with
//! the same loop as a spawned worker, and wait again when it goes.
//!
//! The set starts and kills nothing here: the platform that runs remote
//! workers (Kubernetes, systemd) starts and restarts them, and they
//! reconnect on their own. What the host does is what it does for its own
//! workers: route jobs to them, enforce deadlines, and, when a connection is
//! lost (closed, reset, or silent past the heartbeat timeout), settle the
//! jobs it held: another attempt under `max_attempts`, or
//! [`Error::WorkerLost`] naming the peer.
//!
//! Where a remote slot differs from a spawned one:
//! - admission: a remote worker's identity is its certificate, checked by
//!   the transport before the gate sees the connection; the gate then
//!   applies its usual rules to the handshake (pending bound, deadline,
//!   size), and hands the connection to the longest-vacant remote slot;
//! - its `Welcome` carries the [`Terms`] of the connection (frame limit,
//!   heartbeats), and both sides send heartbeats from then on;
//! - a job past its deadline fails with `Timeout { killed: false }`: the
//!   worker cannot be killed from here, so it keeps the connection and takes
//!   no new job until it answers;
//! - it never counts towards the restart limit: nothing is restarted.

use std::sync::Arc;

use ipc2_common::codec::encode_frame;
use ipc2_common::connection::write_frames;
use ipc2_common::{FrameKind, Outbox, RemotePeer, Terms};
use tokio::sync::{Notify, mpsc};

use crate::error::Error;
use crate::gate::Admitted;
use crate::shared::Shared;
use crate::stats::WorkerState;
use crate::supervisor::{End, Link, Vigil, serve_link, settle};

/// Runs remote slot `slot` until the set stops: waits for a worker, serves
/// it, and waits again. Each worker that joins is reported on `joined`.
pub(crate) async fn run_slot(shared: Arc<Shared>, slot: usize, joined: mpsc::Sender<()>) {
    while !shared.dispatch.stopping() {
        shared.dispatch.set_state(slot, WorkerState::Vacant, None);
        let vacancy = shared.gate.vacancy();
        let admitted = tokio::select! {
            admitted = vacancy => admitted,
            () = shared.dispatch.until_stopping() => break,
        };
        let Ok(admitted) = admitted else { break };
        serve(&shared, slot, admitted, &joined).await;
    }
    shared.dispatch.set_state(slot, WorkerState::Stopped, None);
}

/// Serves one remote worker (reported on `joined` once it takes jobs) until
/// its connection is lost, then settles the jobs it held.
async fn serve(shared: &Shared, slot: usize, admitted: Admitted, joined: &mpsc::Sender<()>) {
    let Some((peer, heard)) = admitted.remote else {
        return;
    };
    let pid = admitted.hello.pid;
    let config = &shared.config;
    let terms = Terms {
        max_frame_length: config.max_frame_length as u64,
        max_in_flight: config.max_in_flight as u64,
        heartbeat_interval: config.heartbeat.interval,
        heartbeat_timeout: config.heartbeat.timeout,
    };
    let Ok(welcome) = encode_frame(FrameKind::Welcome, 0, &terms, usize::MAX) else {
        return;
    };
    let (outbox, outgoing) = Outbox::channel(admitted.writer);
    tokio::spawn(write_frames(outgoing));
    let _ = outbox.send(welcome);
    let wake = Arc::new(Notify::new());
    shared.dispatch.set_peer(slot, peer.clone());
    shared
        .dispatch
        .worker_ready(slot, pid, outbox.clone(), Arc::clone(&wake));
    tracing::info!(worker = slot, pid, %peer, "remote worker joined");
    let _ = joined.try_send(());

    let mut link = Link {
        reader: admitted.reader,
        outbox,
        wake,
    };
    let vigil = Vigil {
        exited: std::future::pending(),
        kill_on_timeout: false,
        heartbeat: Some((config.heartbeat, heard)),
    };
    let (end, _) = serve_link(shared, slot, pid, &mut link, vigil).await;
    shared.dispatch.stop_routing(slot);
    // Closing our side: the writer flushes and shuts the connection down.
    drop(link);

    let reason = lost_because(&end);
    tracing::warn!(worker = slot, pid, %peer, %reason, "remote worker left");
    for held in shared.dispatch.worker_gone(slot) {
        settle(shared, slot, pid, &end, held, |attempts| {
            lost(slot, pid, &peer, attempts, &reason)
        });
    }
}

/// How a remote connection ended, in words.
fn lost_because(end: &End) -> String {
    match end {
        End::Closed => "the connection closed".into(),
        End::Silent(timeout) => format!("nothing heard from it for {timeout:?}"),
        End::Violation(source) => format!("it broke the protocol: {source}"),
        End::TimedOut | End::Exited(_) => "the connection ended".into(),
    }
}

fn lost(slot: usize, pid: u32, peer: &RemotePeer, attempts: u32, reason: &str) -> Error {
    Error::WorkerLost {
        worker: slot,
        pid,
        peer: peer.clone(),
        attempts,
        reason: reason.to_owned(),
    }
}
