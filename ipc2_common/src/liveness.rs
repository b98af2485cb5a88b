//! Knowing that the peer at the other end of a network link is still there.
//!
//! Over a Unix socket the host learns of a dead worker from the kernel (the
//! process exits, the socket closes). Over a network nothing may arrive at
//! all: a cable is pulled, a machine freezes, a firewall drops the
//! connection silently. So both sides of a remote connection send a
//! heartbeat every [`Heartbeat::interval`], and each drops the connection
//! when it has heard *nothing* (not a byte) for [`Heartbeat::timeout`].
//! Counting bytes rather than frames means a large frame that takes a while
//! to arrive keeps the link alive.
//!
//! [`Heard`] wraps a connection's read half and stamps a shared
//! [`LastHeard`] whenever bytes arrive; the side's watchdog reads it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

/// Default time between heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// Default silence after which a remote peer counts as gone.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often heartbeats go out, and how much silence ends a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time between two heartbeats from one side.
    pub interval: Duration,
    /// Silence (no byte at all) after which the peer counts as gone.
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            interval: DEFAULT_HEARTBEAT_INTERVAL,
            timeout: DEFAULT_HEARTBEAT_TIMEOUT,
        }
    }
}

/// When bytes last arrived on a connection. Cheap to clone; all clones share
/// one timestamp.
#[derive(Clone, Debug)]
pub struct LastHeard {
    since: Instant,
    /// Milliseconds after `since` of the last arrival.
    at: Arc<AtomicU64>,
}

impl LastHeard {
    /// A timestamp that says "heard just now".
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            at: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records an arrival now.
    pub fn touch(&self) {
        let elapsed = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at.fetch_max(elapsed, Ordering::Relaxed);
    }

    /// When bytes last arrived.
    pub fn get(&self) -> Instant {
        self.since + Duration::from_millis(self.at.load(Ordering::Relaxed))
    }

    /// When the peer counts as gone unless something arrives first.
    pub fn deadline(&self, timeout: Duration) -> Instant {
        self.get() + timeout
    }
}

impl Default for LastHeard {
    fn default() -> Self {
        Self::new()
    }
}

/// A read half that stamps a [`LastHeard`] whenever bytes arrive.
pub struct Heard<R> {
    inner: R,
    last: LastHeard,
}

impl<R> Heard<R> {
    /// Wraps `inner`; arrivals are stamped on `last`.
    pub fn new(inner: R, last: LastHeard) -> Self {
        Self { inner, last }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Heard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.touch();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn arrivals_move_the_deadline() {
        let last = LastHeard::new();
        let first = last.get();
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut rx = Heard::new(rx, last.clone());
        // Time must pass between the two stamps for the test to mean anything.
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        rx.read_exact(&mut byte).await.unwrap();
        assert!(last.get() >= first + Duration::from_millis(20));
    }
}
