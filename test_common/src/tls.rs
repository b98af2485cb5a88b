//! Certificates for tests, made on the spot by `ipc2_tls::dev::DevCa` (no
//! key is ever committed): a CA, a host certificate, worker certificates, and the files
//! and environment a remote worker reads them from.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ipc2_tls::dev::DevCa;
use ipc2_tls::env::{ENV_HOST, ENV_SERVER_NAME, ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY};
use ipc2_tls::{HostTls, Identity, WorkerTls};

/// The DNS name on the host certificates of [`TestPki`].
pub const HOST_NAME: &str = "ipc2-host.test";

/// A throwaway certificate authority, and a private directory for the PEM
/// files of the identities it issues (removed on drop).
pub struct TestPki {
    ca: DevCa,
    dir: PathBuf,
}

impl TestPki {
    /// A fresh CA.
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ipc2-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        Self {
            ca: DevCa::new().expect("make a CA"),
            dir,
        }
    }

    /// A certificate for `name` (a DNS name) signed by this CA, valid for
    /// both ends of a connection, with this CA as the one to trust.
    pub fn identity(&self, name: &str) -> Identity {
        self.ca.identity(name).expect("issue a certificate")
    }

    /// The host's TLS settings ([`HOST_NAME`]), admitting `allowed` names
    /// (any, when empty).
    pub fn host(&self, allowed: &[&str]) -> HostTls {
        HostTls::new(&self.identity(HOST_NAME), allowed).expect("host TLS settings")
    }

    /// A worker's TLS settings, for a certificate naming `name`.
    pub fn worker(&self, name: &str) -> WorkerTls {
        WorkerTls::new(&self.identity(name)).expect("worker TLS settings")
    }

    /// Writes `name`'s identity to PEM files; returns the CA, certificate
    /// and key paths.
    pub fn files(&self, name: &str) -> [PathBuf; 3] {
        let identity = self.identity(name);
        let path = |suffix: &str| self.dir.join(format!("{name}.{suffix}"));
        let paths = [path("ca.pem"), path("crt.pem"), path("key.pem")];
        for (path, pem) in paths
            .iter()
            .zip([&identity.ca, &identity.cert, &identity.key])
        {
            std::fs::write(path, pem).expect("write a PEM file");
        }
        paths
    }

    /// The environment of a remote worker named `name` that dials `host`.
    pub fn worker_env(&self, name: &str, host: &str) -> Vec<(&'static str, String)> {
        let [ca, cert, key] = self.files(name);
        let text = |path: &Path| path.display().to_string();
        vec![
            (ENV_HOST, host.to_owned()),
            (ENV_SERVER_NAME, HOST_NAME.to_owned()),
            (ENV_TLS_CA, text(&ca)),
            (ENV_TLS_CERT, text(&cert)),
            (ENV_TLS_KEY, text(&key)),
        ]
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
