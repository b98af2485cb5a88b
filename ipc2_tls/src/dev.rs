//! A throwaway certificate authority, for development, tests and
//! benchmarks (feature `dev-ca`): certificates made on the spot with
//! rcgen, so that no key ever needs to be committed. Production
//! certificates come from your own CA (or cert-manager, Vault, ...).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::config::Identity;
use crate::error::TlsError;

/// A CA made in memory, which issues [`Identity`]s for any DNS name.
pub struct DevCa {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DevCa { .. }")
    }
}

fn failed(error: rcgen::Error) -> TlsError {
    TlsError::Pem {
        what: "a development certificate",
        reason: error.to_string(),
    }
}

impl DevCa {
    /// A fresh CA with a new key.
    pub fn new() -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ipc2 development CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&key).map_err(failed)?;
        Ok(Self {
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate and key for DNS name `name`, usable by a host and by a
    /// worker, that trusts this CA.
    pub fn identity(&self, name: &str) -> Result<Identity, TlsError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(Identity {
            ca: self.ca_pem.clone().into_bytes(),
            cert: cert.pem().into_bytes(),
            key: key.serialize_pem().into_bytes(),
        })
    }
}

impl Identity {
    /// Writes the three PEM files into `dir` as `ca.crt`, `tls.crt` and
    /// `tls.key` (the names a Kubernetes TLS Secret uses); returns their
    /// paths in that order.
    pub fn write_to(&self, dir: &std::path::Path) -> std::io::Result<[std::path::PathBuf; 3]> {
        let paths = [dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key")];
        for (path, pem) in paths.iter().zip([&self.ca, &self.cert, &self.key]) {
            std::fs::write(path, pem)?;
        }
        Ok(paths)
    }
}
