//! The environment a remote worker (and a host that admits them) reads:
//! where to dial or listen, and where the certificates are.
//!
//! These names are the contract with the deployment files in `deploy/`
//! (a Kubernetes Deployment and a systemd unit set them); a test checks that
//! the files name exactly these.

use std::path::PathBuf;

use crate::config::Identity;
use crate::error::TlsError;

/// Worker: the host's address to dial, `host:port`.
pub const ENV_HOST: &str = "IPC2_HOST";
/// Worker: the name the host's certificate must be valid for (default: the
/// host part of [`ENV_HOST`]).
pub const ENV_SERVER_NAME: &str = "IPC2_SERVER_NAME";
/// Both: path of the CA certificate (PEM) the other side must chain to.
pub const ENV_TLS_CA: &str = "IPC2_TLS_CA";
/// Both: path of this side's certificate (PEM).
pub const ENV_TLS_CERT: &str = "IPC2_TLS_CERT";
/// Both: path of this side's private key (PEM).
pub const ENV_TLS_KEY: &str = "IPC2_TLS_KEY";
/// Host: the address to listen on for remote workers, `ip:port`.
pub const ENV_LISTEN: &str = "IPC2_LISTEN";
/// Host: comma-separated DNS names a worker's certificate must be valid
/// for one of (unset or empty: any certificate the CA signed).
pub const ENV_ALLOWED_NAMES: &str = "IPC2_ALLOWED_NAMES";

/// Every variable a remote worker reads.
pub const WORKER_VARIABLES: [&str; 5] = [
    ENV_HOST,
    ENV_SERVER_NAME,
    ENV_TLS_CA,
    ENV_TLS_CERT,
    ENV_TLS_KEY,
];

pub(crate) fn required(variable: &'static str) -> Result<String, TlsError> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(value),
        Ok(_) => Err(TlsError::Env {
            variable,
            reason: "is empty".into(),
        }),
        Err(error) => Err(TlsError::Env {
            variable,
            reason: error.to_string(),
        }),
    }
}

/// The identity the three `IPC2_TLS_*` variables name.
pub fn identity() -> Result<Identity, TlsError> {
    let path = |variable| required(variable).map(PathBuf::from);
    Identity::from_files(
        &path(ENV_TLS_CA)?,
        &path(ENV_TLS_CERT)?,
        &path(ENV_TLS_KEY)?,
    )
}

pub(crate) fn allowed_names() -> Vec<String> {
    std::env::var(ENV_ALLOWED_NAMES)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}
