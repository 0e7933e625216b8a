//! The proxy's own certificate authority, so clients that verify TLS can trust it.
//!
//! Clients such as AWS's `redshift_connector` (ssl=True by default), the Redshift
//! JDBC driver with `ssl=true` and psql with `sslmode=verify-full` check the
//! server's certificate. A certificate made afresh at every start cannot be
//! trusted once and for all, so without `[client_tls] cert_file` the proxy keeps a
//! CA in its state directory — made once, `ca.crt` (0644) beside `ca.key` (0600)
//! in a 0700 directory — and signs a new listener certificate with it at every
//! start. Users trust `ca.crt` once.
//!
//! Creation is safe against several proxies starting at once: every file is
//! written under a temporary name and published with a no-clobber link, so a file
//! is either complete or absent, and a file that exists is never replaced. A key
//! that exists but cannot be read or parsed is an error naming the file: replacing
//! it would silently break every client that trusts the old CA.

use crate::config::ClientTlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File name of the CA certificate users trust.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA's private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// Common-name prefix of the CA; a random suffix tells installations apart in trust stores.
const CA_NAME_PREFIX: &str = "redshift-iam-proxy local CA";
/// Lifetime of the CA certificate: long, since users install it by hand.
const CA_VALIDITY_DAYS: i64 = 3650;
/// Lifetime of a listener certificate, re-made at every start (397 days: the limit
/// some platforms put on server certificates).
const LEAF_VALIDITY_DAYS: i64 = 397;

/// Why the local CA cannot be used; each names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum LocalCaError {
    #[error("cannot place the local CA: neither XDG_STATE_HOME nor HOME is set; set [client_tls] state_dir (or cert_file and key_file, or local_ca = false)")]
    NoStateDir,
    #[error("cannot create the state directory {path} ([client_tls] state_dir): {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("local CA key {path} cannot be used: {reason}. It is never replaced automatically: restore it, or remove it together with {cert} to make a new CA (clients must then trust the new ca.crt)")]
    Key {
        path: PathBuf,
        cert: PathBuf,
        reason: String,
    },
    #[error("local CA certificate {path} cannot be used: {reason}. Remove it to have it re-made from {key}")]
    Cert {
        path: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("local CA certificate {path} exists without its key {key}; remove it to make a new CA (clients must then trust the new one)")]
    OrphanCert { path: PathBuf, key: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The state directory from the configuration, else from the environment
/// (`$XDG_STATE_HOME/redshift-iam-proxy`, else `$HOME/.local/state/redshift-iam-proxy`).
pub fn state_dir(cfg: &ClientTlsConfig) -> Result<PathBuf, LocalCaError> {
    if let Some(dir) = &cfg.state_dir {
        return Ok(dir.clone());
    }
    default_state_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
        .ok_or(LocalCaError::NoStateDir)
}

/// The XDG base-directory rule: `XDG_STATE_HOME` when set to an absolute path,
/// else `HOME/.local/state`; empty values count as unset.
pub fn default_state_dir(
    xdg_state_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let xdg = xdg_state_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        home.filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".local").join("state"))
    })?;
    Some(base.join("redshift-iam-proxy"))
}

/// Names the listener certificate is valid for: localhost, the loopback addresses,
/// and the host of every listen address (wildcards such as 0.0.0.0 name no host and
/// are skipped).
pub fn server_names<'a>(listen: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for addr in listen {
        let host = match addr.parse::<std::net::SocketAddr>() {
            Ok(sa) if sa.ip().is_unspecified() => continue,
            Ok(sa) => sa.ip().to_string(),
            Err(_) => addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        };
        if !host.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
            names.push(host);
        }
    }
    names
}

/// Ready-to-paste lines telling users how to trust `ca_cert` in common clients.
pub fn trust_hints(ca_cert: &Path) -> String {
    let ca = ca_cert.display();
    format!(
        "psql/libpq/psycopg: \"sslmode=verify-full sslrootcert={ca}\"; \
         redshift_connector (no sslrootcert; it trusts the system store): ssl=True, sslmode='verify-full' with SSL_CERT_FILE={ca} in its environment, or add {ca} to the system trust store; \
         Redshift JDBC: ssl=true;sslmode=verify-full;sslrootcert={ca}; \
         pgjdbc: sslmode=verify-full&sslrootcert={ca}; \
         node-postgres: ssl: {{ ca: fs.readFileSync('{ca}') }}"
    )
}

/// The CA, loaded or made, ready to sign listener certificates.
///
/// Holds the signing key in memory for the proxy's lifetime; `Debug` shows paths only.
pub struct LocalCa {
    cert_path: PathBuf,
    key_path: PathBuf,
    /// The CA as rcgen's issuer (same subject and key identifier as `ca.crt`).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA from `dir`, making the directory (0700), key (0600) and certificate
    /// (0644) when they do not exist yet. Existing files are never replaced.
    pub fn open_or_create(dir: &Path) -> Result<LocalCa, LocalCaError> {
        create_private_dir(dir)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => parse_key(&pem, &key_path, &cert_path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if cert_path.exists() {
                    return Err(LocalCaError::OrphanCert {
                        path: cert_path,
                        key: key_path,
                    });
                }
                let fresh = KeyPair::generate()?;
                match publish(dir, &key_path, fresh.serialize_pem().as_bytes(), 0o600)? {
                    true => fresh,
                    // Another proxy published its key first: use that one.
                    false => {
                        let pem = std::fs::read_to_string(&key_path)
                            .map_err(|e| key_error(&key_path, &cert_path, e.to_string()))?;
                        parse_key(&pem, &key_path, &cert_path)?
                    }
                }
            }
            Err(e) => return Err(key_error(&key_path, &cert_path, e.to_string())),
        };
        warn_if_loose(&key_path);
        let common_name = match std::fs::read(&cert_path) {
            Ok(pem) => check_cert(&pem, &key, &cert_path, &key_path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = format!("{CA_NAME_PREFIX} {:08x}", rand::random::<u32>());
                let mut params = ca_params(&name)?;
                let now = time::OffsetDateTime::now_utc();
                params.not_before = now - time::Duration::days(1);
                params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
                let cert = params.self_signed(&key)?;
                if publish(dir, &cert_path, cert.pem().as_bytes(), 0o644)? {
                    tracing::info!(path = %cert_path.display(), "made a new local CA");
                    name
                } else {
                    // Another proxy made the certificate for this key first: use theirs.
                    let pem = std::fs::read(&cert_path).map_err(|e| LocalCaError::Cert {
                        path: cert_path.clone(),
                        key: key_path.clone(),
                        reason: e.to_string(),
                    })?;
                    check_cert(&pem, &key, &cert_path, &key_path)?
                }
            }
            Err(e) => {
                return Err(LocalCaError::Cert {
                    path: cert_path,
                    key: key_path,
                    reason: e.to_string(),
                })
            }
        };
        // Same subject, key usages and key identifier as the stored certificate, so
        // leaves name it as their issuer exactly.
        let issuer = ca_params(&common_name)?.self_signed(&key)?;
        Ok(LocalCa {
            cert_path,
            key_path,
            issuer,
            key,
        })
    }

    /// The CA certificate clients should trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// A new listener certificate and key for `names` (DNS names or IP addresses),
    /// signed by this CA; the chain holds the leaf only (clients have the CA).
    pub fn issue_server_cert(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), LocalCaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("localhost", String::as_str),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(LEAF_VALIDITY_DAYS);
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone()], key_der))
    }
}

/// The parameters of the CA certificate; everything but the validity must be the
/// same at creation and when re-deriving the issuer from a stored certificate.
fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn key_error(key: &Path, cert: &Path, reason: String) -> LocalCaError {
    LocalCaError::Key {
        path: key.to_owned(),
        cert: cert.to_owned(),
        reason,
    }
}

fn parse_key(pem: &str, key: &Path, cert: &Path) -> Result<KeyPair, LocalCaError> {
    // rcgen's message says what is wrong with the PEM, never its content.
    KeyPair::from_pem(pem)
        .map_err(|e| key_error(key, cert, format!("not a usable private key ({e})")))
}

/// Checks that the stored certificate is a current CA certificate for `key`, and
/// returns its common name.
fn check_cert(
    pem: &[u8],
    key: &KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<String, LocalCaError> {
    let bad = |reason: String| LocalCaError::Cert {
        path: cert_path.to_owned(),
        key: key_path.to_owned(),
        reason,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| bad(format!("not a PEM certificate ({e})")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| bad(format!("not an X.509 certificate ({e})")))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(bad(format!(
            "it does not belong to the key {}",
            key_path.display()
        )));
    }
    if !cert.validity().is_valid() {
        return Err(bad(format!(
            "it is not valid now (valid {} to {})",
            cert.validity().not_before,
            cert.validity().not_after
        )));
    }
    let name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| bad("it has no common name".into()))?;
    Ok(name.to_owned())
}

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is left as it is.
fn create_private_dir(dir: &Path) -> Result<(), LocalCaError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| LocalCaError::Dir {
            path: dir.to_owned(),
            source,
        })
}

/// Writes `bytes` to `path` atomically without replacing an existing file: written to
/// a temporary file in `dir`, synced, then linked. `Ok(false)`: `path` already existed.
fn publish(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> Result<bool, LocalCaError> {
    use std::os::unix::fs::PermissionsExt;
    let write_err = |source: std::io::Error| LocalCaError::Write {
        path: path.to_owned(),
        source,
    };
    // Created with mode 0600 by tempfile, so a key is never readable by others, even briefly.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_err)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(write_err(e.error)),
    }
}

fn warn_if_loose(key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %key.display(),
                "the local CA key is readable by group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names() -> Vec<String> {
        server_names(["127.0.0.1:5439"])
    }

    /// Verifies `leaf` for `name` against the CA file, as a client with `sslrootcert` would.
    fn verifies(ca_file: &Path, leaf: &CertificateDer<'_>, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca_file).unwrap();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                leaf,
                &[],
                &rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .is_ok()
    }
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_leaf_from_a_new_ca_verifies_against_its_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(&dir.path().join("state")).unwrap();
        let (chain, _) = ca.issue_server_cert(&names()).unwrap();
        assert!(verifies(ca.cert_path(), &chain[0], "localhost"));
    }

    #[test]
    fn a_leaf_from_a_reloaded_ca_verifies_against_the_stored_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::open_or_create(dir.path()).unwrap();
        let reloaded = LocalCa::open_or_create(dir.path()).unwrap();
        let (chain, _) = reloaded.issue_server_cert(&names()).unwrap();
        assert!(verifies(reloaded.cert_path(), &chain[0], "127.0.0.1"));
    }

    #[test]
    fn a_leaf_is_not_valid_for_other_names() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(dir.path()).unwrap();
        let (chain, _) = ca.issue_server_cert(&names()).unwrap();
        assert!(!verifies(ca.cert_path(), &chain[0], "example.com"));
    }

    #[test]
    fn the_state_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        LocalCa::open_or_create(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn the_ca_certificate_is_world_readable() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(ca.cert_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::open_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let e = LocalCa::open_or_create(dir.path()).unwrap_err().to_string();
        assert!(e.contains(CA_CERT_FILE) && e.contains(CA_KEY_FILE), "{e}");
    }

    #[test]
    fn a_missing_certificate_is_remade_from_the_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        LocalCa::open_or_create(dir.path()).unwrap();
        let key_before = std::fs::read(dir.path().join(CA_KEY_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        LocalCa::open_or_create(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(CA_KEY_FILE)).unwrap(),
            key_before
        );
    }

    #[test]
    fn a_certificate_of_another_key_is_an_error_naming_it() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        LocalCa::open_or_create(one.path()).unwrap();
        LocalCa::open_or_create(two.path()).unwrap();
        std::fs::copy(two.path().join(CA_CERT_FILE), one.path().join(CA_CERT_FILE)).unwrap();
        let e = LocalCa::open_or_create(one.path()).unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
    }

    #[test]
    fn proxies_starting_at_once_share_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, start) = (dir.path().to_owned(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let ca = LocalCa::open_or_create(&dir).unwrap();
                    ca.issue_server_cert(&names()).unwrap().0.remove(0)
                })
            })
            .collect();
        for t in threads {
            let leaf = t.join().unwrap();
            assert!(verifies(&dir.path().join(CA_CERT_FILE), &leaf, "localhost"));
        }
    }

    #[test]
    fn server_names_include_loopback_and_listen_hosts_but_not_wildcards() {
        let n = server_names([
            "0.0.0.0:5439",
            "db.internal:5440",
            "[::]:1",
            "10.1.2.3:5441",
        ]);
        assert_eq!(
            n,
            ["localhost", "127.0.0.1", "::1", "db.internal", "10.1.2.3"]
        );
    }

    #[test]
    fn server_names_are_not_repeated() {
        let n = server_names(["127.0.0.1:5439", "localhost:5440", "[::1]:5441"]);
        assert_eq!(n, ["localhost", "127.0.0.1", "::1"]);
    }

    /// One row of the XDG rule: (claim, XDG_STATE_HOME, HOME, expected).
    type StateDirCase = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );

    const STATE_DIRS: &[StateDirCase] = &[
        (
            "XDG_STATE_HOME wins",
            Some("/x"),
            Some("/h"),
            Some("/x/redshift-iam-proxy"),
        ),
        (
            "HOME is the fallback",
            None,
            Some("/h"),
            Some("/h/.local/state/redshift-iam-proxy"),
        ),
        (
            "a relative XDG_STATE_HOME is ignored, as the XDG spec says",
            Some("rel"),
            Some("/h"),
            Some("/h/.local/state/redshift-iam-proxy"),
        ),
        ("an empty HOME counts as unset", None, Some(""), None),
        ("neither set gives none", None, None, None),
    ];

    #[test]
    fn default_state_dir_follows_the_xdg_rule() {
        for (claim, xdg, home, want) in STATE_DIRS {
            let got = default_state_dir(xdg.map(Into::into), home.map(Into::into));
            assert_eq!(got, want.map(PathBuf::from), "{claim}");
        }
    }
}
