//! The worker's end: dial the host, verify its certificate, present ours.

use std::sync::Arc;

use ipc2_common::Connector;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::config::WorkerTls;
use crate::connection::TlsConnection;
use crate::error::TlsError;
use crate::tcp::TcpOptions;

/// Opens mutually authenticated TLS connections to one host; give it to
/// `ipc2_worker::RemoteReceiver::new` (or use [`remote_jobs`](crate::remote_jobs)).
#[derive(Clone)]
pub struct TlsConnector {
    address: String,
    server_name: ServerName<'static>,
    connector: tokio_rustls::TlsConnector,
    options: TcpOptions,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Dials `address` (`host:port`; a DNS name is resolved anew on every
    /// attempt, so a Service or a moved host is found again) and accepts
    /// the host only if its certificate is valid for `server_name` (a DNS
    /// name or an IP address).
    pub fn new(
        address: impl Into<String>,
        server_name: &str,
        tls: WorkerTls,
    ) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::BadName(server_name.to_owned()))?;
        Ok(Self {
            address: address.into(),
            server_name,
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&tls.config)),
            options: TcpOptions::default(),
        })
    }

    /// Dials the host [`ENV_HOST`](crate::env::ENV_HOST) names, expecting
    /// the name in [`ENV_SERVER_NAME`](crate::env::ENV_SERVER_NAME) (default:
    /// the host part of the address), as the identity the `IPC2_TLS_*`
    /// variables name.
    pub fn from_env() -> Result<Self, TlsError> {
        let address = crate::env::required(crate::env::ENV_HOST)?;
        let server_name = match std::env::var(crate::env::ENV_SERVER_NAME) {
            Ok(name) if !name.is_empty() => name,
            _ => host_part(&address).to_owned(),
        };
        Self::new(
            address,
            &server_name,
            WorkerTls::new(&crate::env::identity()?)?,
        )
    }

    /// TCP settings for its connections. Default: [`TcpOptions::default`].
    pub fn tcp_options(mut self, options: TcpOptions) -> Self {
        self.options = options;
        self
    }
}

/// `host` of `host:port` (`[v6]:port` too).
fn host_part(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Connector for TlsConnector {
    type Connection = TlsConnection;

    async fn connect(&self) -> std::io::Result<TlsConnection> {
        let tcp = TcpStream::connect(&self.address).await?;
        self.options.apply(&tcp)?;
        let stream = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await?;
        TlsConnection::new(stream.into())
    }

    fn describe(&self) -> String {
        self.address.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::host_part;

    #[test]
    fn host_part_of_addresses() {
        assert_eq!(
            host_part("ipc2-host.default.svc:7070"),
            "ipc2-host.default.svc"
        );
        assert_eq!(host_part("10.0.0.1:7070"), "10.0.0.1");
        assert_eq!(host_part("[::1]:7070"), "::1");
    }
}
