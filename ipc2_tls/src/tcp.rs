//! Socket options that let the kernel notice a dead peer too.
//!
//! ipc2's heartbeats notice a silent peer within their timeout whatever the
//! kernel does. These options make the kernel agree: `TCP_NODELAY` (a
//! request must not wait for Nagle's algorithm), keepalive probes on an idle
//! connection, and `TCP_USER_TIMEOUT`, which drops a connection whose sent
//! data stays unacknowledged that long instead of retransmitting for
//! fifteen minutes, so a writer blocked on a dead link fails as well.

use std::time::Duration;

use tokio::net::TcpStream;

/// Default idle time before the first keepalive probe.
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Default time between keepalive probes.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Default unanswered probes before the kernel drops the connection.
pub const DEFAULT_KEEPALIVE_PROBES: u32 = 5;
/// Default `TCP_USER_TIMEOUT`.
pub const DEFAULT_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP settings applied to every connection of a listener or connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpOptions {
    /// Idle time before the first keepalive probe.
    pub keepalive_idle: Duration,
    /// Time between keepalive probes.
    pub keepalive_interval: Duration,
    /// Unanswered probes before the connection is dropped.
    pub keepalive_probes: u32,
    /// How long sent data may stay unacknowledged (`TCP_USER_TIMEOUT`).
    pub user_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            keepalive_idle: DEFAULT_KEEPALIVE_IDLE,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_probes: DEFAULT_KEEPALIVE_PROBES,
            user_timeout: DEFAULT_USER_TIMEOUT,
        }
    }
}

impl TcpOptions {
    /// Options whose keepalive and user timeout give up on a dead peer
    /// within about `timeout`.
    pub fn within(timeout: Duration) -> Self {
        let probes = DEFAULT_KEEPALIVE_PROBES;
        let interval = (timeout / (probes + 1)).max(Duration::from_secs(1));
        Self {
            keepalive_idle: interval,
            keepalive_interval: interval,
            keepalive_probes: probes,
            user_timeout: timeout.max(Duration::from_secs(1)),
        }
    }

    /// Applies the options (and `TCP_NODELAY`) to `stream`.
    pub fn apply(&self, stream: &TcpStream) -> std::io::Result<()> {
        use rustix::net::sockopt;
        stream.set_nodelay(true)?;
        sockopt::set_socket_keepalive(stream, true)?;
        // The kernel counts these in whole seconds (at least one).
        let seconds = |d: Duration| d.max(Duration::from_secs(1));
        sockopt::set_tcp_keepidle(stream, seconds(self.keepalive_idle))?;
        sockopt::set_tcp_keepintvl(stream, seconds(self.keepalive_interval))?;
        sockopt::set_tcp_keepcnt(stream, self.keepalive_probes.max(1))?;
        let millis = u32::try_from(self.user_timeout.as_millis()).unwrap_or(u32::MAX);
        sockopt::set_tcp_user_timeout(stream, millis)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::sockopt;

    #[tokio::test]
    async fn the_kernel_is_told_to_give_up_on_a_dead_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let options = TcpOptions::within(Duration::from_secs(6));
        options.apply(&stream).unwrap();
        assert!(sockopt::tcp_nodelay(&stream).unwrap());
        assert!(sockopt::socket_keepalive(&stream).unwrap());
        assert_eq!(
            sockopt::tcp_keepidle(&stream).unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(
            sockopt::tcp_keepintvl(&stream).unwrap(),
            Duration::from_secs(1)
        );
        assert_eq!(
            sockopt::tcp_keepcnt(&stream).unwrap(),
            DEFAULT_KEEPALIVE_PROBES
        );
        assert_eq!(sockopt::tcp_user_timeout(&stream).unwrap(), 6_000);
    }
}
