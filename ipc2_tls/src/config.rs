//! Who the two sides are and whom they trust: certificates and keys in,
//! rustls configurations out.
//!
//! Both sides hold an [`Identity`]: the CA certificate they trust, their own
//! certificate chain, and its private key (PEM). The host
//! ([`HostTls`]) admits a worker only if its client certificate chains to
//! that CA and, optionally, names one of the allowed names; the worker
//! ([`WorkerTls`]) connects only to a host whose certificate chains to the
//! same CA and is valid for the name it dials. TLS 1.3 only (both ends are
//! ipc2), with rustls on the `ring` provider, which builds with a C
//! compiler alone.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme, version,
};

use crate::error::TlsError;

/// One side's certificates, as PEM text: the CA it trusts, its own
/// certificate (chain), and its private key.
#[derive(Clone)]
pub struct Identity {
    /// The CA certificate(s) the other side's certificate must chain to.
    pub ca: Vec<u8>,
    /// This side's certificate, then any intermediates.
    pub cert: Vec<u8>,
    /// This side's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identity { .. }")
    }
}

impl Identity {
    /// Reads the three PEM files (as Kubernetes mounts a TLS Secret, or as
    /// a systemd unit's credentials).
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(Self {
            ca: read("the CA certificate", ca)?,
            cert: read("the certificate", cert)?,
            key: read("the private key", key)?,
        })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certificates(&self.ca, "the CA certificate")? {
            roots.add(cert)?;
        }
        Ok(roots)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        certificates(&self.cert, "the certificate")
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| TlsError::Pem {
            what: "the private key",
            reason: error.to_string(),
        })
    }
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            reason: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The host's side: its certificate, and which workers it admits.
#[derive(Clone)]
pub struct HostTls {
    pub(crate) config: Arc<ServerConfig>,
}

impl fmt::Debug for HostTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostTls { .. }")
    }
}

impl HostTls {
    /// Admits any worker whose client certificate chains to `identity.ca`;
    /// with `allowed_names` not empty, only those whose certificate is valid
    /// for one of these DNS names. Presents `identity.cert`.
    pub fn new(identity: &Identity, allowed_names: &[&str]) -> Result<Self, TlsError> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(identity.roots()?),
            provider.clone(),
        )
        .build()
        .map_err(|error| TlsError::Verifier(error.to_string()))?;
        let verifier: Arc<dyn ClientCertVerifier> = match allowed_names {
            [] => verifier,
            names => Arc::new(AllowedNames {
                inner: verifier,
                names: names.iter().map(|name| name.to_string()).collect(),
            }),
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.chain()?, identity.private_key()?)?;
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// A worker's side: its client certificate, and the CA the host's
/// certificate must chain to.
#[derive(Clone)]
pub struct WorkerTls {
    pub(crate) config: Arc<ClientConfig>,
}

impl fmt::Debug for WorkerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkerTls { .. }")
    }
}

impl WorkerTls {
    /// Trusts hosts whose certificate chains to `identity.ca`; presents
    /// `identity.cert` as its client certificate.
    pub fn new(identity: &Identity) -> Result<Self, TlsError> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&version::TLS13])?
            .with_root_certificates(identity.roots()?)
            .with_client_auth_cert(identity.chain()?, identity.private_key()?)?;
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// The first DNS name a certificate is valid for, if it names one.
pub(crate) fn first_dns_name(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    cert.valid_dns_names().next().map(str::to_owned)
}

/// A client-certificate verifier that also requires one of a set of names.
#[derive(Debug)]
struct AllowedNames {
    inner: Arc<dyn ClientCertVerifier>,
    names: Vec<String>,
}

impl ClientCertVerifier for AllowedNames {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, tokio_rustls::rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| CertificateError::BadEncoding)?;
        if cert
            .valid_dns_names()
            .any(|name| self.names.iter().any(|allowed| allowed == name))
        {
            Ok(verified)
        } else {
            Err(CertificateError::NotValidForName.into())
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
