//! TLS configuration for both sides: what we present to clients and how we verify the cluster.
//!
//! Upstream trust follows libpq's `sslmode` meanings:
//! - `verify-full`: chain to a trusted root *and* the host name must match (default);
//! - `verify-ca`: chain to a trusted root, any name;
//! - `require`: encrypted, certificate not checked — unless `sslrootcert` is given,
//!   in which case (as in libpq) it behaves like `verify-ca`.
//!
//! Trusted roots are the Mozilla set (webpki-roots), the system store, and `sslrootcert`.

use crate::config::{ClientTlsConfig, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use std::path::Path;
use std::sync::Arc;

/// A TLS setup problem found at start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] TlsError),
    #[error("generating the self-signed client-side certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no trusted root certificates available")]
    NoRoots,
    #[error(transparent)]
    LocalCa(#[from] crate::client::localca::LocalCaError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for connections to the cluster, or `None` for plaintext.
pub fn upstream_config(
    mode: SslMode,
    rootcert: Option<&Path>,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsSetupError> {
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, rootcert) {
        (SslMode::Disable, _) => return Ok(None),
        (SslMode::Require, None) => Arc::new(NoVerification(provider())),
        (SslMode::VerifyFull, _) => webpki_verifier(rootcert)?,
        (SslMode::VerifyCa | SslMode::Require, _) => {
            Arc::new(IgnoreHostname(webpki_verifier(rootcert)?))
        }
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

fn webpki_verifier(rootcert: Option<&Path>) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "loaded system trust store");
    if let Some(path) = rootcert {
        let certs = read_certs(path)?;
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsSetupError::File {
                path: path.display().to_string(),
                reason: format!("no usable CA certificate in it ({ignored} rejected)"),
            });
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsSetupError::Rustls(TlsError::General(e.to_string())))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file_err = |reason: String| TlsSetupError::File {
        path: path.display().to_string(),
        reason,
    };
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect();
    let certs = certs.map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Where the certificate presented to clients comes from (for the start-up log).
///
/// Returned beside the rustls configuration so the caller can tell users which CA
/// to trust without knowing how the certificate was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertSource {
    /// `[client_tls] cert_file` / `key_file`.
    Files,
    /// Signed by the local CA whose certificate is at this path.
    LocalCa(std::path::PathBuf),
    /// Self-signed at this start (`local_ca = false`): clients cannot verify it.
    SelfSigned,
}

/// The rustls server configuration answering clients' SSLRequest; with `client_ca`,
/// client certificates are requested and must chain to it (whether one is required is
/// decided per session, so a client without one gets a PostgreSQL error, not a TLS alert).
///
/// The certificate: `cert_file`/`key_file` when configured; else one signed by the
/// local CA for `server_names` (see `localca`); else (`local_ca = false`) self-signed.
pub fn client_side_config(
    cfg: &ClientTlsConfig,
    server_names: &[String],
    client_ca: Option<&Path>,
) -> Result<(Arc<rustls::ServerConfig>, ClientCertSource), TlsSetupError> {
    let (certs, key, source) = match (&cfg.cert_file, &cfg.key_file) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::File {
                path: key.display().to_string(),
                reason: e.to_string(),
            })?;
            (certs, key, ClientCertSource::Files)
        }
        _ if cfg.local_ca => {
            let ca = crate::client::localca::LocalCa::open_or_create(
                &crate::client::localca::state_dir(cfg)?,
            )?;
            let (certs, key) = ca.issue_server_cert(server_names)?;
            (
                certs,
                key,
                ClientCertSource::LocalCa(ca.cert_path().to_owned()),
            )
        }
        _ => {
            let generated = rcgen::generate_simple_self_signed(server_names.to_vec())?;
            let key = PrivateKeyDer::try_from(generated.key_pair.serialize_der())
                .map_err(|e| TlsSetupError::Rustls(TlsError::General(e.to_owned())))?;
            (
                vec![generated.cert.der().clone()],
                key,
                ClientCertSource::SelfSigned,
            )
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(read_certs(path)?);
            if added == 0 {
                return Err(TlsSetupError::File {
                    path: path.display().to_string(),
                    reason: "no usable CA certificate in it".into(),
                });
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsSetupError::Rustls(TlsError::General(e.to_string())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok((Arc::new(builder.with_single_cert(certs, key)?), source))
}

/// The name the cluster's certificate must carry (DNS name or IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(host.to_owned()).map_err(|e| {
        TlsSetupError::Rustls(TlsError::General(format!(
            "invalid host name {host:?}: {e}"
        )))
    })
}

/// `verify-ca`: the full chain check, but a name mismatch is accepted.
#[derive(Debug)]
struct IgnoreHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` without a root file: encryption without authentication (libpq's meaning).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
