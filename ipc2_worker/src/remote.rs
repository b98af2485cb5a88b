//! A worker on another machine: it dials the host itself, and dials again
//! whenever the connection is lost.
//!
//! A spawned worker learns everything from the environment its host gave
//! it, and its life ends with its connection. A remote worker is started by
//! its platform (a Kubernetes Deployment, a systemd unit), outlives any one
//! connection, and may start before its host. [`RemoteReceiver::recv`]
//! therefore connects on first use, and when a connection is lost (closed,
//! reset, silent for the heartbeat timeout, or the host asked its workers
//! to leave), connects again with exponential backoff and jitter, then goes
//! on yielding jobs: a restarted host gets its remote workers back without
//! anyone touching them. Jobs the lost connection carried are the host's to
//! fail or retry; a reply sent for one of them fails with
//! [`ReplyError::Disconnected`](crate::ReplyError::Disconnected).
//!
//! The transport is any [`Connector`]; `ipc2_tls::TlsConnector` is TLS over
//! TCP with a client certificate (and `ipc2_tls::remote_jobs` builds both
//! from the environment).

use std::hash::BuildHasher;
use std::time::Duration;

use ipc2_common::codec::{decode_message, encode_raw_frame};
use ipc2_common::connection::{BoxedReader, BoxedWriter};
use ipc2_common::liveness::{Heard, LastHeard};
use ipc2_common::{
    Connection, Connector, DEFAULT_MAX_FRAME_LENGTH, FrameKind, Heartbeat, Outbox, Terms,
};
use serde::de::DeserializeOwned;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::connect::{handshake, start};
use crate::error::ConnectError;
use crate::job::Job;
use crate::receiver::Receiver;

/// Default first pause after a failed connection attempt; it doubles per
/// failure.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Default longest pause between connection attempts.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Default time one connection attempt (with its handshakes) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Yields the jobs a host sends to this remote worker, across reconnections.
pub struct RemoteReceiver<C, In, Out> {
    connector: C,
    current: Option<Connected<In, Out>>,
    backoff_min: Duration,
    backoff_max: Duration,
    connect_timeout: Duration,
    give_up_after: Option<Duration>,
    last_error: Option<ConnectError>,
    connections: u64,
}

impl<C, In, Out> RemoteReceiver<C, In, Out>
where
    C: Connector,
    In: DeserializeOwned + Send + 'static,
    Out: serde::Serialize + Send + 'static,
{
    /// A receiver that connects through `connector` when first asked for a
    /// job. Nothing is dialled yet.
    pub fn new(connector: C) -> Self {
        Self {
            connector,
            current: None,
            backoff_min: DEFAULT_RECONNECT_MIN,
            backoff_max: DEFAULT_RECONNECT_MAX,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            give_up_after: None,
            last_error: None,
            connections: 0,
        }
    }

    /// Pause after a failed or lost connection: `min`, doubling per failure
    /// up to `max`, each with ±50% jitter so that many workers do not all
    /// dial a restarted host at once. Default: 100 ms to 5 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// Time one attempt (TCP, TLS and ipc2 handshakes) may take. Default:
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Makes [`recv`](Self::recv) return `None` once it has failed to
    /// connect for this long. Default: never (the platform stops the worker).
    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = Some(after);
        self
    }

    /// Whether a connection to the host is up.
    pub fn is_connected(&self) -> bool {
        self.current.is_some()
    }

    /// How many connections to a host have passed their handshake so far.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    /// Why the last connection attempt failed, if it did.
    pub fn last_error(&self) -> Option<&ConnectError> {
        self.last_error.as_ref()
    }

    /// The next job, connecting (again) as needed. Returns `None` only with
    /// [`give_up_after`](Self::give_up_after), once that long has passed
    /// without a connection.
    ///
    /// Cancel safe, like [`Receiver::recv`].
    pub async fn recv(&mut self) -> Option<Job<In, Out>> {
        let mut failures = 0u32;
        loop {
            if let Some(Connected { receiver, .. }) = &mut self.current {
                if let Some(job) = receiver.recv().await {
                    return Some(job);
                }
                match receiver.error() {
                    Some(error) => tracing::warn!(host = %self.connector.describe(), %error,
                        "lost the connection to the host; reconnecting"),
                    None => tracing::info!(host = %self.connector.describe(),
                        "the host closed the connection; reconnecting"),
                }
                self.current = None;
                // The host may be going away: do not dial it straight back.
                failures = 1;
                tokio::time::sleep(self.pause(failures)).await;
            }
            let started = Instant::now();
            loop {
                match tokio::time::timeout(self.connect_timeout, self.join()).await {
                    Ok(Ok(receiver)) => {
                        self.connections += 1;
                        self.last_error = None;
                        tracing::info!(host = %self.connector.describe(), "joined the host");
                        self.current = Some(receiver);
                        break;
                    }
                    Ok(Err(error)) => self.last_error = Some(error),
                    Err(_) => self.last_error = Some(ConnectError::Timeout(self.connect_timeout)),
                }
                failures = failures.saturating_add(1);
                if let Some(error) = &self.last_error {
                    tracing::warn!(host = %self.connector.describe(), %error, "could not join the host");
                }
                if self
                    .give_up_after
                    .is_some_and(|after| started.elapsed() >= after)
                {
                    return None;
                }
                tokio::time::sleep(self.pause(failures)).await;
            }
        }
    }

    /// One connection attempt: connect, hand over the `Hello`, and take the
    /// host's terms from its `Welcome`.
    async fn join(&self) -> Result<Connected<In, Out>, ConnectError> {
        crate::panic::install_hook();
        let connection = self
            .connector
            .connect()
            .await
            .map_err(|source| ConnectError::Dial {
                host: self.connector.describe(),
                source,
            })?;
        let heard = LastHeard::new();
        let (reader, writer) = connection.into_split();
        let reader: BoxedReader = Box::new(Heard::new(reader, heard.clone()));
        // Remote workers have no secret: the certificate is their identity.
        let (mut reader, writer, welcome) =
            handshake(reader, writer, [0; 32], DEFAULT_MAX_FRAME_LENGTH).await?;
        let terms: Terms = decode_message(&welcome.payload)?;
        let max_frame_length = usize::try_from(terms.max_frame_length).unwrap_or(usize::MAX);
        reader.codec_mut().set_max_frame_length(max_frame_length);
        let heartbeat = Heartbeat {
            interval: terms.heartbeat_interval,
            timeout: terms.heartbeat_timeout,
        };
        let writer: BoxedWriter = Box::new(writer);
        let (receiver, outbox) = start(
            reader,
            writer,
            max_frame_length,
            None,
            Some((heartbeat, heard)),
        );
        let receiver =
            receiver.with_max_in_flight(usize::try_from(terms.max_in_flight).unwrap_or(usize::MAX));
        let beats = tokio::spawn(beat(outbox, heartbeat.interval)).abort_handle();
        Ok(Connected {
            receiver,
            _beats: Beats(beats),
        })
    }

    /// Pause after the `failures`-th failure in a row: exponential, ±50%.
    fn pause(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let base = self
            .backoff_min
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        // A randomly keyed hasher is randomness enough for jitter.
        let random = std::collections::hash_map::RandomState::new().hash_one(failures);
        base.mul_f64(0.5 + (random % 1000) as f64 / 1000.0)
    }
}

/// A connection that passed its handshake, and the task that sends its
/// heartbeats.
struct Connected<In, Out> {
    receiver: Receiver<In, Out>,
    _beats: Beats,
}

/// Stops the heartbeats when the connection is dropped.
struct Beats(AbortHandle);

impl Drop for Beats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends a heartbeat every `interval` until the connection's writer stops.
async fn beat(outbox: Outbox, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Ok(frame) = encode_raw_frame(FrameKind::WorkerHeartbeat, 0, &[], usize::MAX) else {
            return;
        };
        if outbox.send(frame).is_err() {
            return;
        }
    }
}
