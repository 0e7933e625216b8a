//! The local CA: clients that verify TLS (psql `sslmode=verify-full`) trust the
//! proxy through one `ca.crt` that outlives restarts, while the listener
//! certificate is made afresh at each start.

use crate::support::BIN;
use local_cluster::TestCa;
use redshift_iam_proxy::testbed::{proxy_command, Bed, BedOptions, ProxyProcess, LISTENING};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A bed whose proxy keeps its local CA in `state`.
async fn bed_with_state(state: &Path) -> Bed {
    let state = state.to_owned();
    Bed::with(BedOptions {
        tweak: Box::new(move |c| c.client_tls.state_dir = Some(state)),
        ..Default::default()
    })
    .await
}

/// Restarts the bed's proxy with the same state directory.
async fn restart(bed: &mut Bed, state: &Path) {
    let state = state.to_owned();
    bed.start_proxy(
        &BedOptions::default().users_toml,
        Box::new(move |c| c.client_tls.state_dir = Some(state)),
    )
    .await;
}

/// psql with `sslmode=verify-full` to `host`, trusting `rootcert`: (success, stdout, stderr).
async fn psql_verify_full(port: u16, host: &str, rootcert: &Path) -> (bool, String, String) {
    let out = tokio::process::Command::new("psql")
        .args(["-w", "-X", "-At", "-c", "SELECT current_user"])
        .arg(format!(
            "host={host} port={port} user=alice dbname=postgres sslmode=verify-full sslrootcert={}",
            rootcert.display()
        ))
        .env_remove("PGPASSWORD")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The certificate the proxy presents after SSLRequest, verified against `rootcert` for "localhost".
async fn served_leaf(addr: SocketAddr, rootcert: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(rootcert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A config for the binary with `[client_tls]` lines; no AWS call happens before a login.
fn config(client_tls: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n[aws]\nregion = \"us-east-1\"\n[cluster]\nidentifier = \"c\"\n[client_tls]\n{client_tls}\n"
    )
}

/// [`config`] written to `dir/proxy.toml`.
fn write_config(dir: &Path, client_tls: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    std::fs::write(&path, config(client_tls)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_verify_full_logs_in_trusting_the_local_ca() {
    let dir = tempfile::tempdir().unwrap();
    let bed = bed_with_state(dir.path()).await;
    let (ok, out, err) = psql_verify_full(
        bed.proxy_addr.port(),
        "localhost",
        &dir.path().join("ca.crt"),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_verify_full_to_127_0_0_1_logs_in_trusting_the_local_ca() {
    let dir = tempfile::tempdir().unwrap();
    let bed = bed_with_state(dir.path()).await;
    let (ok, out, err) = psql_verify_full(
        bed.proxy_addr.port(),
        "127.0.0.1",
        &dir.path().join("ca.crt"),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_verify_full_to_a_configured_listen_host_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_owned();
    // 127.0.0.2 is loopback too, but not among the names every certificate carries.
    let bed = Bed::with(BedOptions {
        tweak: Box::new(move |c| {
            c.listen = "127.0.0.2:0".into();
            c.client_tls.state_dir = Some(state);
        }),
        ..Default::default()
    })
    .await;
    let (ok, out, err) = psql_verify_full(
        bed.proxy_addr.port(),
        "127.0.0.2",
        &dir.path().join("ca.crt"),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_the_ca_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = bed_with_state(dir.path()).await;
    let before = std::fs::read(dir.path().join("ca.crt")).unwrap();
    restart(&mut bed, dir.path()).await;
    assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_verify_full_still_logs_in_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut bed = bed_with_state(dir.path()).await;
    restart(&mut bed, dir.path()).await;
    let (ok, out, err) = psql_verify_full(
        bed.proxy_addr.port(),
        "localhost",
        &dir.path().join("ca.crt"),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_presents_a_new_listener_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let mut bed = bed_with_state(dir.path()).await;
    let first = served_leaf(bed.proxy_addr, &ca).await;
    restart(&mut bed, dir.path()).await;
    let second = served_leaf(bed.proxy_addr, &ca).await;
    assert_ne!(first, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ca_key_file_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let _bed = bed_with_state(dir.path()).await;
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_directory_made_for_the_ca_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _bed = bed_with_state(&state).await;
    assert_eq!(mode(&state), 0o700);
}

/// A bed whose proxy has `[client_tls] cert_file`/`key_file` from its own CA, and a state dir.
async fn bed_with_cert_files(dir: &Path) -> (Bed, PathBuf) {
    let ca = TestCa::new().unwrap();
    let (cert, key) = ca.issue(&["localhost"]).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("own-ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let state = dir.join("state");
    let bed = Bed::with(BedOptions {
        tweak: Box::new(move |c| {
            c.client_tls.cert_file = Some(cert_path);
            c.client_tls.key_file = Some(key_path);
            c.client_tls.state_dir = Some(state);
        }),
        ..Default::default()
    })
    .await;
    (bed, ca_path)
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_cert_files_are_presented_instead_of_the_local_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (bed, own_ca) = bed_with_cert_files(dir.path()).await;
    let (ok, out, err) = psql_verify_full(bed.proxy_addr.port(), "localhost", &own_ca).await;
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_local_ca_is_made_when_cert_files_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let _bed = bed_with_cert_files(dir.path()).await;
    assert!(!dir.path().join("state").exists());
}

#[test]
fn a_corrupt_ca_key_is_a_start_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let key = state.join("ca.key");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let config = write_config(dir.path(), &format!("state_dir = \"{}\"", state.display()));
    let out = proxy_command(Path::new(BIN), dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&key.display().to_string()), "{err}");
}

#[test]
fn a_corrupt_ca_key_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let key = state.join("ca.key");
    std::fs::write(&key, "garbage").unwrap();
    let config = write_config(dir.path(), &format!("state_dir = \"{}\"", state.display()));
    let out = proxy_command(Path::new(BIN), dir.path())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "garbage");
}

#[test]
fn ca_path_prints_the_ca_certificate_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = write_config(dir.path(), &format!("state_dir = \"{}\"", state.display()));
    let out = Command::new(BIN)
        .arg("ca-path")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim(), state.join("ca.crt").display().to_string());
    assert!(state.join("ca.crt").is_file());
}

#[test]
fn ca_path_without_a_config_uses_xdg_state_home() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("ca-path")
        .env("XDG_STATE_HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        dir.path()
            .join("redshift-iam-proxy")
            .join("ca.crt")
            .display()
            .to_string()
    );
}

#[test]
fn no_state_directory_is_a_start_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = proxy_command(Path::new(BIN), dir.path())
        .arg("--config")
        .arg(&config)
        .env_remove("HOME")
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state_dir"), "{err}");
}

#[test]
fn the_start_log_names_the_ca_to_trust() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let proxy = ProxyProcess::start(
        Path::new(BIN),
        &config(&format!("state_dir = \"{}\"", state.display())),
        Some("info"),
    )
    .unwrap();
    // Lines up to "listening": the CA hint is logged while binding, before it.
    let lines: Vec<String> = proxy
        .log_lines()
        .into_iter()
        .take_while(|l| !l.contains(LISTENING))
        .collect();
    let hint = format!("sslrootcert={}", state.join("ca.crt").display());
    assert!(lines.iter().any(|l| l.contains(&hint)), "{lines:#?}");
}
