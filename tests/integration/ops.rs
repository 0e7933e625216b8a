//! Operating the proxy (issue 12), end to end with the binary: probes, /metrics parsed
//! with a Prometheus text parser, every console command through psql, SIGHUP reload,
//! and no secret in any metric, console row or log line.

use crate::support::BIN;
use redshift_iam_proxy::testbed::{
    connect, free_port, wait_for, BedOptions, Parts, ProxyProcess, ADMIN_BOUND, SECRET_KEY,
};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `[admin]` table the tests add (after the bed's `[[users]]`).
const ADMIN: &str = "\n[admin]\nlisten = \"127.0.0.1:0\"\nusers = [\"ops\"]\n";

/// Why: the proxy binary on the test bed, plus its admin address and console.
struct Running {
    proc: ProxyProcess,
    admin: SocketAddr,
}

impl Deref for Running {
    type Target = ProxyProcess;
    fn deref(&self) -> &ProxyProcess {
        &self.proc
    }
}

impl Running {
    fn start(config: &str) -> Running {
        Self::start_with_rust_log(config, Some("trace"))
    }

    /// `rust_log: None` leaves RUST_LOG unset, so the config's `log_filter` decides.
    fn start_with_rust_log(config: &str, rust_log: Option<&str>) -> Running {
        let proc = ProxyProcess::start(Path::new(BIN), config, rust_log).unwrap();
        let admin = proc.wait_logged_addr(ADMIN_BOUND);
        Running { proc, admin }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig).unwrap();
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// Polls `path` until it answers `status` (bounded).
    async fn wait_status(&self, path: &str, status: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (s, body) = self.get(path).await;
            if s == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} stayed {s} ({body}), wanted {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one console command through psql; unaligned output lines.
    async fn console(&self, sql: &str) -> Result<Vec<String>, String> {
        psql(&self.conninfo("ops", "redshift_iam_proxy"), sql).await
    }
}

/// A minimal HTTP/1.1 GET (Connection: close): status and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// psql -A (unaligned, `|` separated); Err is psql's stderr.
async fn psql(conninfo: &str, sql: &str) -> Result<Vec<String>, String> {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-w", "-A", "-c", sql, conninfo])
        .env_remove("PGPASSWORD")
        .output()
        .await
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The test bed's parts and their proxy config with `fragment` merged over it (before the
/// `admin` lines, which are appended).
async fn bed_config(fragment: &str, admin: &str) -> (String, Parts) {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let toml = format!("{}{admin}", parts.config_toml_with(fragment).unwrap());
    (toml, parts)
}

fn parse_metrics(body: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// Sum of a metric's samples whose labels include every `(key, value)`.
fn metric_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_follow_start_pause_and_drain() {
    let (toml, _parts) = bed_config("", &format!("{ADMIN}min_sigterm_delay_secs = 2\n")).await;
    let proxy = Running::start(&toml);
    let body = proxy.wait_status("/startup", 200).await;
    assert!(body.contains("started"), "{body}");
    assert_eq!(proxy.get("/liveness").await.0, 200);
    let body = proxy.wait_status("/readiness", 200).await;
    assert!(body.contains("ready"), "{body}");

    // PAUSE: not ready (and says why); RESUME: ready again.
    proxy.console("PAUSE").await.unwrap();
    let (s, body) = proxy.get("/readiness").await;
    assert_eq!(s, 503);
    assert!(body.contains("paused"), "{body}");
    proxy.console("RESUME").await.unwrap();
    proxy.wait_status("/readiness", 200).await;

    // An open session keeps the drain going, so the probes can be watched during it.
    let client = connect(&proxy.conninfo("bob", "postgres")).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    let body = proxy.wait_status("/readiness", 503).await;
    assert!(body.contains("draining"), "{body}");
    assert_eq!(proxy.get("/liveness").await.0, 200, "alive while draining");
    // min_sigterm_delay_secs: new clients are still accepted for a while.
    let late = connect(&proxy.conninfo("bob", "postgres"))
        .await
        .expect("a new client during the SIGTERM delay is accepted");
    late.query_one("SELECT 1", &[]).await.unwrap();
}

#[test]
fn a_new_proxy_is_not_started_nor_ready() {
    let c =
        redshift_iam_proxy::config::Config::from_toml("[cluster]\nidentifier = \"c\"\n").unwrap();
    let admin = redshift_iam_proxy::context::admin::Admin::new(&c);
    assert!(!admin.is_started());
    match admin.readiness() {
        redshift_iam_proxy::context::admin::Readiness::NotReady(why) => {
            assert!(why.contains("starting"))
        }
        r => panic!("{r:?}"),
    }
    admin.mark_started();
    assert_eq!(
        admin.readiness(),
        redshift_iam_proxy::context::admin::Readiness::Ready
    );
    admin.mark_draining();
    assert!(
        matches!(admin.readiness(), redshift_iam_proxy::context::admin::Readiness::NotReady(w) if w.contains("draining"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_and_counters_move_after_logins() {
    let (toml, parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    proxy.wait_status("/startup", 200).await;
    for user in ["alice", "alice", "bob"] {
        let out = psql(&proxy.conninfo(user, "postgres"), "SELECT 1").await;
        assert!(out.is_ok(), "{out:?}");
    }
    assert!(psql(&proxy.conninfo("carol", "postgres"), "SELECT 1")
        .await
        .is_err());
    // Session-end counters land when the session task ends, just after psql exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scrape = loop {
        let (status, body) = proxy.get("/metrics").await;
        assert_eq!(status, 200);
        let scrape = parse_metrics(&body);
        let bytes = metric_sum(&scrape, "redshift_iam_proxy_session_bytes_total", &[]);
        if bytes > 0.0
            && metric_sum(
                &scrape,
                "redshift_iam_proxy_logins_total",
                &[("outcome", "ok")],
            ) >= 3.0
            && metric_sum(
                &scrape,
                "redshift_iam_proxy_pool_servers",
                &[("state", "idle")],
            ) >= 1.0
        {
            break scrape;
        }
        assert!(Instant::now() < deadline, "counters did not move: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let m = |name: &str, labels: &[(&str, &str)]| metric_sum(&scrape, name, labels);
    assert_eq!(
        m(
            "redshift_iam_proxy_logins_total",
            &[("outcome", "ok"), ("target", "testcluster")]
        ),
        3.0
    );
    assert!(
        m(
            "redshift_iam_proxy_logins_total",
            &[("outcome", "refused_28P01")]
        ) >= 1.0
    );
    assert!(
        m(
            "redshift_iam_proxy_login_duration_seconds_count",
            &[("target", "testcluster")]
        ) >= 3.0
    );
    assert!(
        m(
            "redshift_iam_proxy_credential_calls_total",
            &[("api", "GetClusterCredentials"), ("outcome", "ok")]
        ) >= 2.0
    );
    assert!(
        m(
            "redshift_iam_proxy_credential_cache_lookups_total",
            &[("result", "miss")]
        ) >= 2.0
    );
    assert!(
        m(
            "redshift_iam_proxy_upstream_login_duration_seconds_count",
            &[]
        ) >= 2.0
    );
    assert!(m("redshift_iam_proxy_credential_cache_entries", &[]) >= 2.0);
    let expiry = m("redshift_iam_proxy_credential_oldest_expiry_seconds", &[]);
    assert!(expiry > 60.0 && expiry <= 3600.0, "{expiry}");
    assert!(m("redshift_iam_proxy_pool_checkouts_total", &[]) >= 3.0);
    assert!(m("redshift_iam_proxy_pool_servers", &[("state", "idle")]) >= 1.0);
    assert!(
        m(
            "redshift_iam_proxy_pool_servers_opened_total",
            &[("pool", "alice/postgres@testcluster")]
        ) >= 1.0
    );
    assert_eq!(m("redshift_iam_proxy_started", &[]), 1.0);
    assert_eq!(
        m(
            "redshift_iam_proxy_client_connections_open",
            &[("listener", "main")]
        ),
        0.0
    );
    // Labels stay low-cardinality: no client address anywhere.
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !v.contains("127.0.0.1"),
                "{} has an address in {k}",
                s.metric
            );
        }
    }
    drop(parts);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_console_command_answers_through_psql() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    proxy.wait_status("/startup", 200).await;
    // A session to look at: alice holds a server (session mode).
    let alice = connect(&proxy.conninfo("alice", "postgres")).await.unwrap();
    alice.query_one("SELECT 1", &[]).await.unwrap();
    psql(&proxy.conninfo("bob", "postgres"), "SELECT 1")
        .await
        .unwrap();
    let pool = "alice/postgres@testcluster";

    let header = |out: &[String]| out.first().cloned().unwrap_or_default();
    let pools = proxy.console("SHOW POOLS").await.unwrap();
    assert!(
        header(&pools)
            .starts_with("database|user|pool|target|cl_active|cl_waiting|sv_active|sv_idle"),
        "{pools:?}"
    );
    assert!(
        pools
            .iter()
            .any(|l| l.starts_with(&format!("postgres|alice|{pool}|testcluster|1|0|1|"))),
        "{pools:?}"
    );

    let clients = proxy.console("SHOW CLIENTS").await.unwrap();
    assert!(
        header(&clients).starts_with("id|user|database|db_user|target|pool|state"),
        "{clients:?}"
    );
    let alice_row = clients
        .iter()
        .find(|l| l.contains("|alice|"))
        .expect("alice listed")
        .clone();
    assert!(
        alice_row.contains("|IAM:alice|testcluster|alice/postgres@testcluster|active|"),
        "{alice_row}"
    );

    // bob's server is checked in (after its reset) just after psql exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    let servers = loop {
        let servers = proxy.console("SHOW SERVERS").await.unwrap();
        if servers
            .iter()
            .any(|l| l.contains("bob/postgres@testcluster|idle|"))
        {
            break servers;
        }
        assert!(Instant::now() < deadline, "{servers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        header(&servers).starts_with("id|user|database|pool|state"),
        "{servers:?}"
    );
    assert!(
        servers
            .iter()
            .any(|l| l.contains(&format!("|{pool}|active|"))),
        "{servers:?}"
    );
    assert!(
        servers
            .iter()
            .any(|l| l.contains("bob/postgres@testcluster|idle|")),
        "{servers:?}"
    );

    let stats = proxy.console("SHOW STATS").await.unwrap();
    assert!(
        header(&stats).contains("total_xact_count|total_query_count|total_received|total_sent"),
        "{stats:?}"
    );
    assert!(stats.iter().any(|l| l.contains(pool)), "{stats:?}");

    let creds = proxy.console("SHOW CREDENTIALS").await.unwrap();
    assert!(
        header(&creds)
            .starts_with("key|requested_db_user|db_user|expiration|expires_in_secs|age_secs|hits"),
        "{creds:?}"
    );
    assert!(
        creds.iter().any(|l| l.contains(
            "GetClusterCredentials:testcluster/postgres groups=analysts|alice|IAM:alice|"
        )),
        "{creds:?}"
    );

    let config = proxy.console("SHOW CONFIG").await.unwrap();
    assert!(
        config.iter().any(|l| l.starts_with("admin.users|ops|")),
        "{config:?}"
    );
    let version = proxy.console("SHOW VERSION").await.unwrap();
    assert!(
        version
            .iter()
            .any(|l| l == &format!("redshift-iam-proxy {}", env!("CARGO_PKG_VERSION"))),
        "{version:?}"
    );

    assert!(proxy.console("RELOAD").await.is_ok());
    proxy
        .console("PAUSE \"bob/postgres@testcluster\"")
        .await
        .unwrap();
    proxy
        .console("RESUME \"bob/postgres@testcluster\"")
        .await
        .unwrap();
    proxy.console("RECONNECT").await.unwrap();
    // The idle server of bob's pool is replaced now.
    let servers = proxy.console("SHOW SERVERS").await.unwrap();
    assert!(!servers.iter().any(|l| l.contains("|idle|")), "{servers:?}");

    // Drivers' harmless SETs are accepted, several statements in one query too.
    proxy
        .console("SET application_name = 'x'; SET extra_float_digits = 3")
        .await
        .unwrap();

    // KILL_CLIENT closes alice's session.
    let id = alice_row.split('|').next().unwrap().to_owned();
    proxy.console(&format!("KILL_CLIENT {id}")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alice.query_one("SELECT 1", &[]).await.is_ok() {
        assert!(Instant::now() < deadline, "killed client still works");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Anything else: an error that lists the commands.
    let err = proxy.console("DROP TABLE x").await.unwrap_err();
    assert!(
        err.contains("SHOW POOLS") && err.contains("KILL_CLIENT"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn console_is_refused_to_users_not_in_admin_users() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    let err = psql(&proxy.conninfo("alice", "redshift_iam_proxy"), "SHOW POOLS")
        .await
        .unwrap_err();
    assert!(err.contains("not in [admin] users"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_new_checkouts_until_resume() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    proxy.console("PAUSE").await.unwrap();
    let conninfo = proxy.conninfo("bob", "postgres");
    let held = tokio::spawn(async move { psql(&conninfo, "SELECT 42").await });
    // The login waits in the pause (it shows in SHOW CLIENTS as logging in).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let clients = proxy.console("SHOW CLIENTS").await.unwrap();
        if clients
            .iter()
            .any(|l| l.contains("|bob|") && l.contains("|login|"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{clients:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!held.is_finished(), "checkout went through a pause");
    proxy.console("RESUME").await.unwrap();
    let out = held.await.unwrap().unwrap();
    assert!(out.iter().any(|l| l == "42"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_changes_db_groups_for_the_next_login_and_open_sessions_keep_working() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    let member = |group: &'static str| {
        let c = proxy.conninfo("alice", "postgres");
        async move {
            psql(&c, &format!("SELECT pg_has_role('{group}','member')"))
                .await
                .unwrap()
                .get(1)
                .cloned()
                .unwrap_or_default()
        }
    };
    assert_eq!(member("analysts").await, "t");
    let open = connect(&proxy.conninfo("alice", "postgres")).await.unwrap();
    open.query_one("SELECT 1", &[]).await.unwrap();

    std::fs::write(
        proxy.config_path(),
        toml.replace("db_groups = [\"analysts\"]", "db_groups = [\"sales\"]"),
    )
    .unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    proxy.wait_log(&["configuration reloaded"]).await;
    assert_eq!(
        member("sales").await,
        "t",
        "the next login has the new group"
    );
    let n: i32 = open.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(n, 7, "the open session keeps working");
    // The credential of the old mapping is gone from the cache.
    let creds = proxy.console("SHOW CREDENTIALS").await.unwrap();
    assert!(
        !creds.iter().any(|l| l.contains("groups=analysts")),
        "{creds:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_on_sighup_is_refused_and_the_old_config_stays() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    std::fs::write(proxy.config_path(), format!("bogus_key = 1\n{toml}")).unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    let line = proxy.wait_log(&["configuration reload refused"]).await;
    assert!(
        line.contains("bogus_key"),
        "the log line names the key: {line}"
    );
    let out = psql(
        &proxy.conninfo("alice", "postgres"),
        "SELECT pg_has_role('analysts','member')",
    )
    .await
    .unwrap();
    assert_eq!(out.get(1).map(String::as_str), Some("t"));
    let err = proxy.console("RELOAD").await.unwrap_err();
    assert!(err.contains("reload refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_metrics_console_rows_or_logs() {
    let (toml, parts) = bed_config("log_format = \"json\"", ADMIN).await;
    let proxy = Running::start(&toml);
    for user in ["alice", "bob"] {
        psql(&proxy.conninfo(user, "postgres"), "SELECT 1")
            .await
            .unwrap();
    }
    let mut seen = String::new();
    for cmd in [
        "SHOW POOLS",
        "SHOW CLIENTS",
        "SHOW SERVERS",
        "SHOW STATS",
        "SHOW CREDENTIALS",
        "SHOW CONFIG",
    ] {
        seen.push_str(&proxy.console(cmd).await.unwrap().join("\n"));
    }
    seen.push_str(&proxy.get("/metrics").await.1);
    seen.push_str(&proxy.log_text());
    // JSON log lines: one object per line.
    let json_lines = proxy
        .log_lines()
        .iter()
        .filter(|l| l.starts_with('{'))
        .count();
    assert!(json_lines > 5, "log_format = json writes JSON lines");
    let passwords = parts.emu.issued_passwords();
    assert!(passwords.len() >= 2);
    for p in &passwords {
        assert!(!seen.contains(p.as_str()), "a minted password leaked");
    }
    assert!(!seen.contains(SECRET_KEY), "the AWS secret leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_sent_to_another_replica_reaches_the_query() {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let (port_a, port_b) = (free_port().unwrap(), free_port().unwrap());
    let config = |me: u16, id: u8, other_id: u8, other: u16| {
        let peers = format!(
            "listen = \"127.0.0.1:{me}\"\n[peers]\npeer_id = {id}\naddresses = {{ \"{other_id}\" = \"127.0.0.1:{other}\" }}\n"
        );
        parts.config_toml_with(&peers).unwrap() + ADMIN
    };
    let a = Running::start(&config(port_a, 1, 2, port_b));
    let b = Running::start(&config(port_b, 2, 1, port_a));
    let client = connect(&a.conninfo("bob", "postgres")).await.unwrap();
    let token = client.cancel_token();
    let query = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(60)").await });
    // Wait until the query runs on the cluster.
    let pg = parts.pg.admin().await.unwrap();
    wait_for(
        &pg,
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60)%'",
        "the query to run",
    )
    .await;
    // The cancel goes to replica B, which did not issue the key.
    let to_b = tokio::net::TcpStream::connect(b.addr).await.unwrap();
    token
        .cancel_query_raw(to_b, tokio_postgres::NoTls)
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .expect("the cancel reached the query")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
    b.wait_log(&["cancel request forwarded to peer"]).await;
}

/// The name the DNS-discovery tests resolve through `[peers] hosts_file` (`.invalid`
/// never resolves in DNS; the file always lists it, so no query leaves the host).
const REPLICAS: &str = "replicas.invalid";

/// A `[peers] hosts_file` listing `REPLICAS` at `ips`; rewritten whole (a rename), so a
/// replica never reads half a file.
struct HostsFile {
    dir: tempfile::TempDir,
}

impl HostsFile {
    fn new(ips: &[&str]) -> HostsFile {
        let h = HostsFile {
            dir: tempfile::tempdir().unwrap(),
        };
        h.set(ips);
        h
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("hosts")
    }

    fn set(&self, ips: &[&str]) {
        let text: String = ips.iter().map(|ip| format!("{ip} {REPLICAS}\n")).collect();
        let tmp = self.dir.path().join("hosts.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path()).unwrap();
    }
}

/// A replica listening on `ip:port` that finds its peers as `REPLICAS:port`, re-resolved
/// every second.
fn dns_replica(parts: &Parts, ip: &str, port: u16, hosts: &HostsFile) -> Running {
    let fragment = format!(
        "listen = \"{ip}:{port}\"\n[peers]\ndns = \"{REPLICAS}:{port}\"\ndns_refresh_secs = 1\nhosts_file = {:?}\n",
        hosts.path().display().to_string()
    );
    Running::start(&(parts.config_toml_with(&fragment).unwrap() + ADMIN))
}

/// Polls `/metrics` until `redshift_iam_proxy_peers` reads `n` (bounded).
async fn wait_peers(r: &Running, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = r.get("/metrics").await;
        let seen = metric_sum(&parse_metrics(&body), "redshift_iam_proxy_peers", &[]);
        if seen == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redshift_iam_proxy_peers stayed {seen}, wanted {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `SELECT pg_sleep(secs)` through `runs_on`, sends its cancel to `cancel_to` once
/// the query runs on the cluster, and returns how the query ended.
async fn query_cancelled_through(
    parts: &Parts,
    runs_on: &Running,
    cancel_to: SocketAddr,
    secs: u32,
) -> Result<(), tokio_postgres::Error> {
    let conninfo = format!(
        "host={} port={} user=bob dbname=postgres",
        runs_on.addr.ip(),
        runs_on.addr.port()
    );
    let client = connect(&conninfo).await.unwrap();
    let token = client.cancel_token();
    let sql = format!("SELECT pg_sleep({secs})");
    let query = {
        let sql = sql.clone();
        tokio::spawn(async move { client.simple_query(&sql).await.map(|_| ()) })
    };
    let pg = parts.pg.admin().await.unwrap();
    wait_for(
        &pg,
        &format!(
            "SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'active' AND query = '{sql}'"
        ),
        "the query to run",
    )
    .await;
    // The cancel connection closes once the replica handled it (forwarding included).
    let to = tokio::net::TcpStream::connect(cancel_to).await.unwrap();
    token
        .cancel_query_raw(to, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .expect("the query ended")
        .unwrap()
}

fn assert_cancelled(r: Result<(), tokio_postgres::Error>) {
    let err = r.expect_err("the query was cancelled");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_sent_to_either_replica_found_by_dns_reaches_the_query_on_the_other() {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let port = free_port().unwrap();
    let hosts = HostsFile::new(&["127.0.0.2", "127.0.0.3"]);
    let a = dns_replica(&parts, "127.0.0.2", port, &hosts);
    let b = dns_replica(&parts, "127.0.0.3", port, &hosts);
    assert_cancelled(query_cancelled_through(&parts, &a, b.addr, 60).await);
    assert_cancelled(query_cancelled_through(&parts, &b, a.addr, 60).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_passed_on_by_a_replica_found_by_dns_is_not_passed_on_again() {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let port = free_port().unwrap();
    let hosts = HostsFile::new(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let a = dns_replica(&parts, "127.0.0.2", port, &hosts);
    let b = dns_replica(&parts, "127.0.0.3", port, &hosts);
    let c = dns_replica(&parts, "127.0.0.4", port, &hosts);
    // B passes the cancel on to A and C; C does not hold the key and came to it from B.
    assert_cancelled(query_cancelled_through(&parts, &a, b.addr, 60).await);
    let (_, body) = c.get("/metrics").await;
    let scrape = parse_metrics(&body);
    let cancels = |outcome| {
        metric_sum(
            &scrape,
            "redshift_iam_proxy_cancels_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (cancels("ignored"), cancels("forwarded_to_peer")),
        (1.0, 0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_arriving_in_the_dns_answer_gets_cancels_without_a_restart() {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let port = free_port().unwrap();
    let hosts = HostsFile::new(&["127.0.0.2"]);
    let a = dns_replica(&parts, "127.0.0.2", port, &hosts);
    let b = dns_replica(&parts, "127.0.0.3", port, &hosts);
    wait_peers(&a, 0.0).await;
    hosts.set(&["127.0.0.2", "127.0.0.3"]);
    wait_peers(&a, 1.0).await;
    assert_cancelled(query_cancelled_through(&parts, &b, a.addr, 60).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_leaving_the_dns_answer_is_sent_no_more_cancels_without_a_restart() {
    let parts = Parts::start(&BedOptions::default()).await.unwrap();
    let port = free_port().unwrap();
    let hosts = HostsFile::new(&["127.0.0.2", "127.0.0.3"]);
    let a = dns_replica(&parts, "127.0.0.2", port, &hosts);
    let b = dns_replica(&parts, "127.0.0.3", port, &hosts);
    wait_peers(&a, 1.0).await;
    hosts.set(&["127.0.0.2"]);
    wait_peers(&a, 0.0).await;
    // A handled (and did not pass on) the cancel before the 3 s query could end.
    query_cancelled_through(&parts, &b, a.addr, 3)
        .await
        .expect("the query on the replica that left ran to its end");
}

#[tokio::test(flavor = "multi_thread")]
async fn reloaded_pool_size_applies_to_pools_created_after_the_reload() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    psql(&proxy.conninfo("alice", "postgres"), "SELECT 1")
        .await
        .unwrap();
    std::fs::write(proxy.config_path(), format!("{toml}\n[pool]\nsize = 3\n")).unwrap();
    proxy.console("RELOAD").await.unwrap();
    psql(&proxy.conninfo("bob", "postgres"), "SELECT 1")
        .await
        .unwrap();
    let pools = proxy.console("SHOW POOLS").await.unwrap();
    let size_of = |label: &str| {
        pools
            .iter()
            .find(|l| l.contains(&format!("|{label}|")))
            .and_then(|l| l.split('|').nth(10))
            .map(str::to_owned)
    };
    assert_eq!(
        size_of("bob/postgres@testcluster").as_deref(),
        Some("3"),
        "{pools:?}"
    );
    assert_eq!(
        size_of("alice/postgres@testcluster").as_deref(),
        Some("20"),
        "{pools:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_at_max_client_connections() {
    let (toml, _parts) = bed_config("[limits]\nmax_client_connections = 1", ADMIN).await;
    let proxy = Running::start(&toml);
    proxy.wait_status("/readiness", 200).await;
    let client = connect(&proxy.conninfo("bob", "postgres")).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    let body = proxy.wait_status("/readiness", 503).await;
    assert!(body.contains("max_client_connections"), "{body}");
    drop(client);
    proxy.wait_status("/readiness", 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_credential_calls_are_counted_by_api_and_outcome() {
    use redshift_emulator::Fault;
    // The binary's own /metrics: event counters are process-wide, and other tests in this
    // test process log in (some throttled) through in-process proxies at the same time.
    let (toml, parts) = bed_config("", ADMIN).await;
    let proxy = Running::start(&toml);
    proxy.wait_status("/startup", 200).await;
    let scrape = || async {
        let (status, body) = proxy.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        parse_metrics(&body)
    };
    let calls = |s: &prometheus_parse::Scrape, outcome: &str| {
        metric_sum(
            s,
            "redshift_iam_proxy_credential_calls_total",
            &[("api", "GetClusterCredentials"), ("outcome", outcome)],
        )
    };
    drop(connect(&proxy.conninfo("alice", "postgres")).await.unwrap());
    let before = scrape().await;
    parts.emu.fail_next(2, Fault::Throttle);
    drop(
        connect(&proxy.conninfo("bob", "postgres"))
            .await
            .expect("throttling retried away"),
    );
    let after = scrape().await;
    // Compare deltas: the first login's call is counted before.
    assert_eq!(
        calls(&after, "throttled") - calls(&before, "throttled"),
        2.0
    );
    assert_eq!(calls(&after, "ok") - calls(&before, "ok"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_and_readiness_wait_for_prewarm() {
    use redshift_emulator::Fault;
    let (toml, parts) = bed_config("[aws]\ntimeout_secs = 2\n[pool]\nmin_size = 1", ADMIN).await;
    // The first AWS call hangs for one attempt (2 s), so prewarm takes a while.
    parts.emu.fail_next(1, Fault::Hang);
    let proxy = Running::start(&toml);
    let (status, body) = proxy.get("/startup").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting"), "{body}");
    let (status, body) = proxy.get("/readiness").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting"), "{body}");
    proxy.wait_status("/startup", 200).await;
    proxy.wait_status("/readiness", 200).await;
    proxy.wait_log(&["prewarmed"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_changes_the_log_filter() {
    let (toml, _parts) = bed_config(
        "log_filter = \"info,redshift_iam_proxy::admin::console=warn\"",
        ADMIN,
    )
    .await;
    let proxy = Running::start_with_rust_log(&toml, None);
    proxy.console("SHOW VERSION").await.unwrap();
    std::fs::write(
        proxy.config_path(),
        toml.replace("admin::console=warn", "admin::console=info"),
    )
    .unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    // Lines arrive in order: once the reload's line is read, the first console's are too.
    proxy.wait_log(&["configuration reloaded"]).await;
    assert!(
        !proxy.log_text().contains("admin console session opened"),
        "filtered out before the reload"
    );
    proxy.console("SHOW VERSION").await.unwrap();
    proxy.wait_log(&["admin console session opened"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_would_expose_trust_on_the_running_listener_is_refused() {
    let (toml, _parts) = bed_config("", ADMIN).await;
    let exposed = toml.replacen("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"", 1);
    let proxy = Running::start(&format!(
        "{exposed}\n[client_auth]\nmethod = \"scram-sha-256\"\nscram_verifiers = {{ ops = \"{}\" }}\n",
        redshift_iam_proxy::client::auth::ScramVerifier::hash("pw")
    ));
    // The new file is valid alone (loopback + trust), but the listener stays 0.0.0.0.
    std::fs::write(proxy.config_path(), &toml).unwrap();
    proxy.signal(nix::sys::signal::Signal::SIGHUP);
    let line = proxy.wait_log(&["configuration reload refused"]).await;
    assert!(line.contains("not a loopback address"), "{line}");
}
