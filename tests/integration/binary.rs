//! The released binary as an operator runs it: CLI, psql over TLS, SIGTERM drain,
//! and logs at trace level that never contain a secret.

use crate::support::BIN;
use redshift_iam_proxy::testbed::{connect, db_error, BedOptions, Parts, ProxyProcess, SECRET_KEY};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The test bed's parts and the proxy binary in front of them, logging at trace level;
/// `fragment` is merged over the bed's proxy config.
async fn binary_on_bed(fragment: &str) -> (Parts, ProxyProcess) {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let proxy = parts
        .start_binary(Path::new(BIN), fragment, Some("trace"))
        .unwrap();
    (parts, proxy)
}

fn sigterm(proxy: &ProxyProcess) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

#[test]
fn help_names_the_config_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--config"));
}

#[test]
fn version_prints_the_package_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn no_config_is_a_usage_error() {
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no config is a usage error");
}

#[test]
fn invalid_config_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[cluster]\nidentifier = \"c\"\nduration_seconds = 10\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duration_seconds"));
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_logs_of_psql_logins_over_tls_have_audit_lines_and_no_secret() {
    let (parts, proxy) = binary_on_bed("").await;
    let port = proxy.addr.port();
    let out = tokio::process::Command::new("psql")
        .arg("-w")
        .arg("-Atc")
        .arg("SELECT current_user, pg_has_role('analysts','member')")
        .arg(format!(
            "host=127.0.0.1 port={port} user=alice dbname=postgres sslmode=require"
        ))
        .env_remove("PGPASSWORD")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "IAM:alice|t");
    // A failing login too, so error paths are logged.
    let out = tokio::process::Command::new("psql")
        .arg("-w")
        .arg("-Atc")
        .arg("SELECT 1")
        .arg(format!(
            "host=127.0.0.1 port={port} user=carol dbname=postgres sslmode=require"
        ))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IAM:carol"), "{stderr}");

    // One audit line per session, with who, as whom, where, and how much. A session's
    // line is written when its task ends, which may be just after the client exits.
    let audit_lines = || -> Vec<String> {
        proxy
            .log_lines()
            .into_iter()
            .filter(|l| l.contains("redshift_iam_proxy::audit"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_lines().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let audit = audit_lines();
    assert_eq!(audit.len(), 2, "{audit:?}");
    let alice = audit
        .iter()
        .find(|l| l.contains("client_user=alice"))
        .expect("alice's audit line");
    for field in [
        "application_name=psql",
        "iam_identity=proxy",
        "db_user=IAM:alice",
        "target=testcluster",
        "database=postgres",
        "client_tls=true",
        "outcome=closed",
        "start=",
        "end=",
    ] {
        assert!(alice.contains(field), "{field} missing: {alice}");
    }
    let bytes = |name: &str| -> u64 {
        alice
            .split(&format!("{name}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(bytes("bytes_in") > 0 && bytes("bytes_out") > 0, "{alice}");
    let carol = audit
        .iter()
        .find(|l| l.contains("client_user=carol"))
        .expect("carol's audit line");
    assert!(carol.contains("outcome=refused 28P01"), "{carol}");

    let passwords = parts.emu.issued_passwords();
    assert!(passwords.len() >= 2);
    let log = proxy.log_text();
    assert!(log.contains("session established"), "trace log captured");
    for p in &passwords {
        assert!(
            !log.contains(p.as_str()),
            "a minted password leaked into the log"
        );
    }
    assert!(
        !log.contains(SECRET_KEY),
        "the AWS secret leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_accepting_and_drains_open_sessions() {
    let (_parts, mut proxy) = binary_on_bed("").await;
    let client = connect(&proxy.conninfo("bob", "postgres")).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    sigterm(&proxy);
    // The listener closes...
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(proxy.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still open after SIGTERM"
        );
        tokio::task::yield_now().await;
    }
    // ...while the open session keeps working,
    let n: i64 = client
        .query_one("SELECT count(*) FROM generate_series(1, 1000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    assert!(
        proxy.try_wait().is_none(),
        "exited before the session ended"
    );
    // and once it ends, the proxy exits 0.
    drop(client);
    let status = proxy.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_outliving_the_drain_timeout_are_closed() {
    let (_parts, mut proxy) = binary_on_bed("[limits]\ndrain_timeout_secs = 1").await;
    let client = connect(&proxy.conninfo("bob", "postgres")).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    sigterm(&proxy);
    let status = proxy.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    let err = client.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_closed() || db_error(&err).0.is_empty(), "{err}");
}
