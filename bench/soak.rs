//! Soak test (not in CI): mixed load through the release proxy for N minutes, reporting
//! the proxy's RSS, open file descriptors and tokio task counts at start and end.
//!
//! `cargo bench --bench soak -- --minutes 30`  (SOAK_MINUTES also works; default 30)
//! `--outage-every N`: restart the cluster (fast shutdown, 3 s down) every N seconds; errors
//! of statements caught by a restart (57P01/08006, the documented mid-transaction case) are
//! counted apart, and every other error is unexpected.
//!
//! Load: short sessions, long sessions with prepared statements, COPY in/out, cancels,
//! clients vanishing mid-query, logins the cluster refuses, and garbage packets, over 10
//! identities. Samples are taken idle before the load, under load each minute, and idle
//! after; the run fails if the idle-after figures are not flat against idle-before.

use futures_util::{SinkExt, StreamExt};
use redshift_iam_proxy::testbed::{BedOptions, Parts, ProxyProcess};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_redshift-iam-proxy");
const IDENTITIES: usize = 10;

/// Why: one reading of the proxy process, compared idle before and after the load.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: u64,
    tasks: u64,
    connections: u64,
}

/// Why: counters of what the load did, shared by the workers and printed at the end.
#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    queries: AtomicU64,
    copies: AtomicU64,
    cancels: AtomicU64,
    vanished: AtomicU64,
    refused: AtomicU64,
    garbage: AtomicU64,
    unexpected_errors: AtomicU64,
    /// Statements caught by a cluster restart (`--outage-every`).
    caught_by_outage: AtomicU64,
    outages: AtomicU64,
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The latest "stats" line the proxy logged: (alive_tasks, open_connections).
fn last_stats(lines: &[String]) -> (u64, u64) {
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("alive_tasks="))
        .map_or("", |l| l.as_str());
    let field = |k: &str| -> u64 {
        line.split(&format!("{k}="))
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("alive_tasks"), field("open_connections"))
}

/// Waits for the next stats line (they come every second) and reads everything.
async fn sample(proxy: &ProxyProcess) -> Sample {
    let stats_lines = || {
        proxy
            .log_lines()
            .iter()
            .filter(|l| l.contains("alive_tasks="))
            .count()
    };
    let before = stats_lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_lines() == before {
        assert!(Instant::now() < deadline, "no stats line from the proxy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (tasks, connections) = last_stats(&proxy.log_lines());
    let pid = proxy.pid();
    Sample {
        rss_kib: status_field(pid, "VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        tasks,
        connections,
    }
}

async fn connect(port: u16, user: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    redshift_iam_proxy::testbed::connect(&format!(
        "host=127.0.0.1 port={port} user={user} dbname=postgres application_name=soak"
    ))
    .await
}

fn pick(n: u64) -> String {
    format!("user{}", n as usize % IDENTITIES)
}

/// Runs one kind of load until `until`.
async fn worker(kind: usize, id: u64, port: u16, until: Instant, tally: Arc<Tally>, outages: bool) {
    let mut n = id * 7919;
    while Instant::now() < until {
        n += 1;
        let r: Result<(), tokio_postgres::Error> = async {
            match kind {
                // Short sessions.
                0 => {
                    let c = connect(port, &pick(n)).await?;
                    for _ in 0..3 {
                        c.query_one("SELECT current_user::text, now()", &[]).await?;
                        tally.queries.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Long sessions with prepared statements.
                1 => {
                    let c = connect(port, &pick(n)).await?;
                    let stmt = c.prepare("SELECT $1::int * 2, md5($1::text)").await?;
                    for i in 0..500i32 {
                        c.query_one(&stmt, &[&i]).await?;
                        tally.queries.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // COPY in and out.
                2 => {
                    let c = connect(port, &pick(n)).await?;
                    let sink = c.copy_in("COPY soak_copy FROM STDIN").await?;
                    futures_util::pin_mut!(sink);
                    let chunk = bytes::Bytes::from(
                        "1\tsoak soak soak soak soak soak soak soak\n".repeat(20_000),
                    );
                    sink.send(chunk).await?;
                    sink.finish().await?;
                    let out = c
                        .copy_out("COPY (SELECT * FROM soak_copy LIMIT 20000) TO STDOUT")
                        .await?;
                    futures_util::pin_mut!(out);
                    while let Some(b) = out.next().await {
                        b?;
                    }
                    c.batch_execute("TRUNCATE soak_copy").await?;
                    tally.copies.fetch_add(1, Ordering::Relaxed);
                }
                // Cancels.
                3 => {
                    let c = connect(port, &pick(n)).await?;
                    let token = c.cancel_token();
                    let q = tokio::spawn(async move {
                        c.query_one("SELECT pg_sleep(10)", &[]).await.map(|_| ())
                    });
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    token.cancel_query(tokio_postgres::NoTls).await?;
                    let _ = q.await;
                    tally.cancels.fetch_add(1, Ordering::Relaxed);
                }
                // Clients vanishing mid-query.
                4 => {
                    let c = connect(port, &pick(n)).await?;
                    let q = tokio::spawn(async move {
                        c.query_one("SELECT pg_sleep(5)", &[]).await.map(|_| ())
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    q.abort();
                    tally.vanished.fetch_add(1, Ordering::Relaxed);
                }
                // Logins the cluster refuses (no such database user), and garbage.
                _ => {
                    if connect(port, "nobody").await.is_err() {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = s.write_all(&[0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1]).await;
                        tally.garbage.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Ok(())
        }
        .await;
        tally.sessions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = r {
            // Cancelled queries (57014) are expected; with outages, so are statements a
            // restart caught mid-flight (and a session-mode connection with state it lost).
            let code = e.as_db_error().map(|d| d.code().code().to_owned());
            let caught =
                outages && (matches!(code.as_deref(), Some("57P01" | "08006")) || e.is_closed());
            if caught {
                tally.caught_by_outage.fetch_add(1, Ordering::Relaxed);
            } else if code.as_deref() != Some("57014") {
                tally.unexpected_errors.fetch_add(1, Ordering::Relaxed);
                if tally.unexpected_errors.load(Ordering::Relaxed) <= 5 {
                    eprintln!("soak: unexpected error in worker kind {kind}: {e}");
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes: f64 = args
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| std::env::var("SOAK_MINUTES").ok())
        .and_then(|m| m.parse().ok())
        .unwrap_or(30.0);
    // Pool mode under test: none | session | transaction (default session).
    let pool_mode = args
        .iter()
        .position(|a| a == "--pool-mode")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "session".into());
    let outage_every: Option<u64> = args
        .iter()
        .position(|a| a == "--outage-every")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let setup_sql = (0..IDENTITIES)
        .map(|i| format!("CREATE ROLE user{i};"))
        .chain([
            "CREATE UNLOGGED TABLE soak_copy (id int, t text); GRANT ALL ON soak_copy TO PUBLIC;"
                .into(),
        ])
        .collect();
    let parts = Parts::start(&BedOptions {
        setup_sql,
        pg_max_connections: 300,
        pg_extra_conf: vec!["client_connection_check_interval = '200ms'".into()],
        ..BedOptions::for_load()
    })
    .await
    .unwrap_or_else(|e| panic!("soak bed: {e}"));
    let admin = parts.pg.admin().await.expect("admin");
    let proxy = parts
        .start_binary(
            Path::new(BIN),
            &format!(
                "[limits]\nstats_interval_secs = 1\n\
                 [pool]\nmode = \"{pool_mode}\"\nserver_idle_timeout_secs = 5\ncheckout_timeout_secs = 60\n"
            ),
            Some("warn,redshift_iam_proxy::stats=info"),
        )
        .unwrap_or_else(|e| panic!("soak proxy: {e}"));
    let port = proxy.addr.port();
    let pid = proxy.pid();
    // Ready when it accepts a login.
    let deadline = Instant::now() + Duration::from_secs(30);
    while connect(port, "user0").await.is_err() {
        assert!(Instant::now() < deadline, "proxy did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let servers = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'IAM%'",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(-1)
    };
    // Idle: the readiness login's pooled server has been reaped.
    let deadline = Instant::now() + Duration::from_secs(30);
    while servers().await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let idle_before = sample(&proxy).await;
    let servers_before = servers().await;
    println!("soak: {minutes} minutes of mixed load, pool mode {pool_mode}, on 127.0.0.1:{port} (proxy pid {pid})");
    println!(
        "{:>8} {:>10} {:>6} {:>7} {:>12}",
        "minute", "rss KiB", "fds", "tasks", "connections"
    );
    let show = |label: &str, s: &Sample| {
        println!(
            "{label:>8} {:>10} {:>6} {:>7} {:>12}",
            s.rss_kib, s.fds, s.tasks, s.connections
        );
    };
    show("idle", &idle_before);

    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    let tally = Arc::new(Tally::default());
    let mut workers = Vec::new();
    let plan = [(0usize, 8u64), (1, 4), (2, 1), (3, 1), (4, 1), (5, 1)];
    for (kind, count) in plan {
        for id in 0..count {
            workers.push(tokio::spawn(worker(
                kind,
                id + kind as u64 * 100,
                port,
                until,
                tally.clone(),
                outage_every.is_some(),
            )));
        }
    }
    if let Some(every) = outage_every {
        let power = parts.pg.power();
        let tally = tally.clone();
        workers.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(every)).await;
                if Instant::now() + Duration::from_secs(5) >= until {
                    break;
                }
                power.stop().await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                if let Err(e) = power.start().await {
                    eprintln!("soak: the cluster did not start again: {e}");
                    break;
                }
                tally.outages.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut under_load = Vec::new();
    let mut minute = 1u64;
    while Instant::now() < until {
        let next = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(next.min(until).into()).await;
        if Instant::now() >= until {
            break;
        }
        let s = sample(&proxy).await;
        show(&minute.to_string(), &s);
        under_load.push(s);
        minute += 1;
    }
    for w in workers {
        let _ = w.await;
    }
    // Idle again: every client connection gone, and pooled servers closed after
    // server_idle_timeout_secs (5 s here) — then the proxy holds what it held before.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut servers_after = servers().await;
    while servers_after > servers_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        servers_after = servers().await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let idle_after = loop {
        let s = sample(&proxy).await;
        if s.connections == 0 || Instant::now() > deadline {
            break s;
        }
    };
    show("idle", &idle_after);
    println!("cluster connections: {servers_before} before, {servers_after} after the load (idle timeout 5 s)");
    let t = &tally;
    println!(
        "load: {} sessions, {} queries, {} COPY rounds, {} cancels, {} vanished clients, {} refused logins, {} garbage packets, {} cluster restarts, {} statements caught by one, {} unexpected errors",
        t.sessions.load(Ordering::Relaxed),
        t.queries.load(Ordering::Relaxed),
        t.copies.load(Ordering::Relaxed),
        t.cancels.load(Ordering::Relaxed),
        t.vanished.load(Ordering::Relaxed),
        t.refused.load(Ordering::Relaxed),
        t.garbage.load(Ordering::Relaxed),
        t.outages.load(Ordering::Relaxed),
        t.caught_by_outage.load(Ordering::Relaxed),
        t.unexpected_errors.load(Ordering::Relaxed),
    );
    println!(
        "credential calls: {} GetClusterCredentials for {IDENTITIES} identities (+1 refused user)",
        parts.emu.call_count("GetClusterCredentials")
    );
    let flat = idle_after.fds <= idle_before.fds + 2
        && idle_after.tasks <= idle_before.tasks + 2
        && idle_after.connections == 0
        && servers_after <= servers_before
        && idle_after.rss_kib <= idle_before.rss_kib + idle_before.rss_kib / 2 + 16 * 1024;
    let load_flat = match (under_load.first(), under_load.last()) {
        (Some(a), Some(b)) => b.rss_kib <= a.rss_kib + a.rss_kib / 4 + 8 * 1024,
        _ => true,
    };
    println!(
        "verdict: idle fds {} -> {}, tasks {} -> {}, RSS {} -> {} KiB; under load RSS first/last minute {:?} -> {:?}: {}",
        idle_before.fds,
        idle_after.fds,
        idle_before.tasks,
        idle_after.tasks,
        idle_before.rss_kib,
        idle_after.rss_kib,
        under_load.first().map(|s| s.rss_kib),
        under_load.last().map(|s| s.rss_kib),
        if flat && load_flat { "FLAT" } else { "GROWING" }
    );
    drop(proxy);
    let unexpected = t.unexpected_errors.load(Ordering::Relaxed);
    if outage_every.is_some() && unexpected > 0 {
        println!("outages: {unexpected} unexpected client errors");
        std::process::exit(1);
    }
    if !(flat && load_flat) {
        std::process::exit(1);
    }
}
