//! What can go wrong setting up TLS: reading certificates and keys, and
//! building the configuration from them.

use std::path::PathBuf;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("could not read {what} from {}: {source}", path.display())]
    Read {
        /// What the file was to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// PEM text held nothing usable of the kind expected.
    #[error("{what}: {reason}; expected PEM text (-----BEGIN ...-----)")]
    Pem {
        /// What the text was to hold.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the certificates, key or settings.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
    /// The client-certificate verifier could not be built from the CA.
    #[error("could not build the client-certificate verifier from the CA: {0}")]
    Verifier(String),
    /// A host name is not valid for TLS.
    #[error("{0:?} is not a valid DNS name or IP address for TLS")]
    BadName(String),
    /// An environment variable this configuration needs is missing or
    /// unusable.
    #[error("environment variable {variable}: {reason}")]
    Env {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The listening socket could not be set up.
    #[error("could not listen on {address}: {source}")]
    Listen {
        /// The address.
        address: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}
