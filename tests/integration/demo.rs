//! The one-command demo, driven as a newcomer would: start it, log in as both users
//! with psql, see different group memberships, stop it, and find nothing left behind.

use crate::support::BIN;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn psql(port: u16, user: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-w", "-X", "-At", "-c", sql])
        .arg(format!("host=127.0.0.1 port={port} user={user} dbname=dev"))
        .env_remove("PGPASSWORD")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn demo_serves_its_printed_psql_lines_and_removes_its_cluster_on_exit() {
    let mut child = Command::new(BIN)
        .args(["demo", "--port", "0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log_sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log_sink.lock().unwrap().push_str(&line);
            log_sink.lock().unwrap().push('\n');
        }
        drop(tx2);
    });
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !banner.contains("Press Ctrl-C") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                banner.push_str(&line);
                banner.push('\n');
            }
            Err(_) => panic!("demo did not start: {banner}\n{}", log.lock().unwrap()),
        }
    }
    let port: u16 = banner
        .split("port=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let data_dir: PathBuf = banner
        .split("data directory ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap()
        .trim()
        .into();
    assert!(data_dir.exists());
    assert!(
        !processes_mentioning(data_dir.to_str().unwrap()).is_empty(),
        "postgres runs from the data dir"
    );

    // The printed psql lines work, with no password.
    let (ok, out, err) = psql(port, "alice", "SELECT current_user, pg_has_role('analysts','member'), pg_has_role('engineers','member'), count(*) FROM sales.orders GROUP BY 1");
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:alice|t|f|4");
    let (ok, out, err) = psql(port, "bob", "SELECT current_user, pg_has_role('analysts','member'), pg_has_role('engineers','member'), count(*) FROM ops.deployments GROUP BY 1");
    assert!(ok, "{err}");
    assert_eq!(out, "IAM:bob|f|t|2");
    let (ok, _, err) = psql(port, "alice", "SELECT * FROM ops.deployments");
    assert!(!ok && err.contains("permission denied"), "{err}");
    let (ok, _, err) = psql(port, "carol", "SELECT 1");
    assert!(!ok && err.contains("carol"), "{err}");
    // The log explains the logins: first minted, then a pooled server reused (no login
    // at all; the stderr reader may lag).
    let cached_line = "alice logged in as IAM:alice (pooled server, no login)";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains(cached_line) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = log.lock().unwrap().clone();
    assert!(
        text.contains("alice logged in as IAM:alice (new credential from GetClusterCredentials)"),
        "{text}"
    );
    assert!(text.contains(cached_line), "{text}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!data_dir.exists(), "data directory left behind");
    if let Some(parent) = data_dir.parent() {
        assert!(!parent.exists(), "cluster directory left behind");
    }
    assert!(
        processes_mentioning(data_dir.to_str().unwrap()).is_empty(),
        "processes left behind"
    );
}
