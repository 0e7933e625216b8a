//! Tests for the throwaway cluster: admin over the socket, TLS + SCRAM over TCP, cleanup.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::*;

/// Runs psql against the cluster over TCP; returns (success, stdout, stderr).
async fn psql(pg: &LocalPg, user: &str, password: &str, sslmode: &str) -> (bool, String, String) {
    let conninfo = format!(
        "host={} port={} user={user} dbname=postgres sslmode={sslmode} sslrootcert={} connect_timeout=5",
        pg.host(),
        pg.port(),
        pg.ca_cert_path().display()
    );
    let out = Command::new("/usr/bin/psql")
        .args(["-X", "-tA", &conninfo, "-c"])
        .arg("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        .env("PGPASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// True if a process with this pid exists.
fn alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn tls_scram_login_and_stop() {
    let t = Instant::now();
    let pg = LocalPg::start(LocalPgOptions {
        max_connections: 50,
        extra_conf: vec!["work_mem = '8MB'".into()],
        ..Default::default()
    })
    .await
    .expect("start");
    eprintln!("start took {:?}", t.elapsed());

    let admin = pg.admin().await.expect("admin");
    let row = admin.query_one("show max_connections", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "50");
    let row = admin.query_one("show work_mem", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "8MB");
    admin
        .batch_execute("create role alice login password 's3cret pw'")
        .await
        .unwrap();

    let (ok, out, err) = psql(&pg, "alice", "s3cret pw", "verify-full").await;
    assert!(ok, "verify-full login failed: {err}");
    assert_eq!(out, "t");

    let (ok, _, err) = psql(&pg, "alice", "wrong", "verify-full").await;
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");

    let (ok, _, err) = psql(&pg, "alice", "s3cret pw", "disable").await;
    assert!(!ok, "plaintext TCP must be refused");
    assert!(err.contains("pg_hba.conf rejects"), "{err}");

    assert!(pg.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let mode = std::fs::metadata(pg.ca_cert_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o444, 0o444, "ca.crt must be world-readable");

    let (pid, data, socket, ca_path) = (
        pg.pid(),
        pg.data_dir().to_path_buf(),
        pg.socket_dir().to_path_buf(),
        pg.ca_cert_path().to_path_buf(),
    );
    assert!(alive(pid));
    drop(admin);
    let t = Instant::now();
    pg.stop().await;
    eprintln!("stop took {:?}", t.elapsed());
    assert!(!alive(pid), "postgres still running");
    assert!(!data.exists() && !socket.exists() && !ca_path.exists());
}

#[tokio::test]
async fn two_clusters_and_drop() {
    let (a, b) = tokio::join!(
        LocalPg::start(LocalPgOptions::default()),
        LocalPg::start(LocalPgOptions::default())
    );
    let (a, b) = (a.expect("start a"), b.expect("start b"));
    assert_ne!(a.port(), b.port());
    assert_ne!(a.socket_dir(), b.socket_dir());
    for pg in [&a, &b] {
        let c = pg.admin().await.expect("admin");
        let row = c.query_one("select 1::int4", &[]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
    }
    let (pid, dir) = (a.pid(), a.socket_dir().to_path_buf());
    drop(a);
    assert!(!alive(pid), "postgres still running after drop");
    assert!(!dir.exists());
    b.stop().await;

    // The template exists by now: this is the cost of one more cluster.
    let t = Instant::now();
    let c = LocalPg::start(LocalPgOptions::default())
        .await
        .expect("start c");
    eprintln!("warm start took {:?}", t.elapsed());
    c.stop().await;
}

#[tokio::test]
async fn a_stopped_cluster_refuses_connections_and_starts_again_with_its_data() {
    let pg = LocalPg::start(LocalPgOptions::default())
        .await
        .expect("start");
    pg.admin()
        .await
        .unwrap()
        .batch_execute("create table kept (x int); insert into kept values (7)")
        .await
        .unwrap();
    let power = pg.power();
    let first = pg.pid();
    power.stop().await;
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", pg.port())).await;
    assert_eq!(
        (power.is_running(), alive(first), pg.pid(), refused.is_err()),
        (false, false, 0, true)
    );
    power.start().await.expect("start again");
    let row = pg
        .admin()
        .await
        .unwrap()
        .query_one("select x from kept", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), power.is_running()), (7, true));
    pg.stop().await;
}

#[tokio::test]
async fn a_cluster_stopped_for_good_cannot_be_started_again() {
    let pg = LocalPg::start(LocalPgOptions::default())
        .await
        .expect("start");
    let power = pg.power();
    pg.stop().await;
    assert!(power.start().await.is_err());
}

#[tokio::test]
async fn bad_config_reports_log_tail() {
    let err = LocalPg::start(LocalPgOptions {
        extra_conf: vec!["no_such_setting = 1".into()],
        ..Default::default()
    })
    .await
    .expect_err("must fail");
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("no_such_setting"), "{msg}");
}

#[tokio::test]
async fn taken_port_is_retried_then_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = LocalPg::start(LocalPgOptions {
        // Overrides the picked port, so every attempt collides.
        extra_conf: vec![format!("port = {port}")],
        ..Default::default()
    })
    .await
    .expect_err("must fail");
    let LocalPgError::Start { tail, .. } = &err else {
        panic!("unexpected error: {err}");
    };
    let attempts = tail.matches("could not create any TCP/IP sockets").count();
    assert_eq!(attempts, PORT_ATTEMPTS, "{err}");
}

#[test]
fn ca_issues_leaf_certs() {
    let ca = TestCa::new().unwrap();
    let (cert, key) = ca.issue(&["proxy.test", "10.0.0.1"]).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.contains("PRIVATE KEY"));
    assert_ne!(cert, ca.cert_pem);
}

#[test]
fn finds_binaries() {
    let bin = find_bin_dir().expect("postgres installed");
    assert!(bin.join("initdb").is_file());
}
