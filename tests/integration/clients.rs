//! Real drivers through the proxy: pgjdbc (Java), node-postgres, AWS's `redshift_connector`,
//! psycopg2 and asyncpg. Each test runs a small program from `tests/clients/` against a bed
//! and asserts what the program observed: one row of the table below per test (driver,
//! scenario, pool mode, upstream, expected output), plus pgjdbc's cancel, which talks to
//! its program while it runs.
//!
//! A test whose driver is not installed is skipped with a message, unless `CI` is set: CI
//! installs every driver (`.ci/run`), so there a missing one fails the test.

use redshift_iam_proxy::config::PoolMode;
use redshift_iam_proxy::testbed::{Bed, BedOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use Driver::{NodePg, Pgjdbc, PgjdbcVerifyFull, Python, PythonTrustingTheLocalCa};
use Expect::{CopyRoundTrip, Lines, LinesWithMd5};

/// One `#[tokio::test]` per row, named for its claim, so each case runs, fails and is
/// filtered on its own: `name: driver, "scenario", pool mode, upstream => expected;`.
macro_rules! driver_cases {
    ($($name:ident: $driver:expr, $scenario:literal, $mode:ident, $upstream:ident => $expect:expr;)+) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            check(Case {
                driver: $driver,
                scenario: $scenario,
                mode: PoolMode::$mode,
                upstream: Upstream::$upstream,
                expect: $expect,
            })
            .await;
        }
    )+};
}

const WHOAMI: &[&str] = &["user IAM:alice"];
const PREPARED_RESULTS: &str = "results 3:1 6:2 9:3 12:4 15:5 18:6 21:7 24:8 27:9 30:10";
const SERVER_PREPARED: &[&str] = &[PREPARED_RESULTS, "server_prepared true"];
const PAIR_RESULTS: &[&str] = &[
    PREPARED_RESULTS,
    "results v1-two:1001 v2-two:1002 v3-two:1003 v4-two:1004 v5-two:1005 v6-two:1006 \
     v7-two:1007 v8-two:1008 v9-two:1009 v10-two:1010",
];
const BATCH_RESULTS: &[&str] = &["inserted 100", "table 100 5050 100"];
/// node-postgres `cursor`: every row, their sum, and the last one with its `md5`.
const STREAM_RESULTS: &[&str] = &["rows 50000", "sum 1250025000", "last 50000 {md5}"];
const PARAMS_RESULTS: &[&str] = &[
    "results 0:! 2:v! 4:vv! 6:vvv! 8:vvvv! 10:vvvvv! 12:vvvvvv! 14:vvvvvvv! 16:vvvvvvvv! \
     18:vvvvvvvvv!",
];
const ASYNCPG_PREPARED_RESULTS: &[&str] = &["results 0 2 4 6 8 10 12 14 16 18"];

driver_cases! {
    // pgjdbc: `ClientCheck.java` as alice, with more URL parameters.
    pgjdbc_logs_in_without_a_password:
        Pgjdbc(""), "whoami", Session, Postgres => Lines(WHOAMI);
    pgjdbc_prepared_statement_past_prepare_threshold_is_server_prepared_and_returns_its_rows:
        Pgjdbc(""), "prepared", Session, Postgres => Lines(SERVER_PREPARED);
    pgjdbc_prepared_statement_with_prepare_threshold_1_is_server_prepared_and_returns_its_rows:
        Pgjdbc("&prepareThreshold=1"), "prepared", Session, Postgres => Lines(SERVER_PREPARED);
    pgjdbc_prepared_statement_past_prepare_threshold_is_server_prepared_and_returns_its_rows_in_transaction_mode:
        Pgjdbc(""), "prepared", Transaction, Postgres => Lines(SERVER_PREPARED);
    pgjdbc_prepared_statement_with_prepare_threshold_1_is_server_prepared_and_returns_its_rows_in_transaction_mode:
        Pgjdbc("&prepareThreshold=1"), "prepared", Transaction, Postgres => Lines(SERVER_PREPARED);
    pgjdbc_two_connections_with_the_same_statement_names_get_their_own_results_in_transaction_mode:
        Pgjdbc("&prepareThreshold=1"), "prepared_pair", Transaction, Postgres => Lines(PAIR_RESULTS);
    pgjdbc_two_connections_with_the_same_statement_names_get_their_own_results_past_prepare_threshold_in_transaction_mode:
        Pgjdbc(""), "prepared_pair", Transaction, Postgres => Lines(PAIR_RESULTS);
    pgjdbc_fetch_size_reads_every_row_in_transaction_mode:
        Pgjdbc(""), "fetch", Transaction, Postgres => Lines(&["rows 5000 12502500"]);
    pgjdbc_batch_insert_inserts_every_row:
        Pgjdbc(""), "batch", Session, Postgres => Lines(BATCH_RESULTS);
    pgjdbc_batch_insert_inserts_every_row_in_transaction_mode:
        Pgjdbc(""), "batch", Transaction, Postgres => Lines(BATCH_RESULTS);
    pgjdbc_sslmode_require_logs_in:
        Pgjdbc("&sslmode=require"), "whoami", Session, Postgres => Lines(WHOAMI);
    pgjdbc_sslmode_verify_full_logs_in_trusting_the_local_ca:
        PgjdbcVerifyFull, "whoami", Session, Postgres => Lines(WHOAMI);
    // assumeMinServerVersion=9.0 makes pgjdbc send extra_float_digits=3 at startup, which
    // Redshift refuses; the proxy adapts it.
    pgjdbc_with_extra_float_digits_3_logs_in_through_the_redshift_like_front:
        Pgjdbc("&assumeMinServerVersion=9.0"), "whoami", Session, RedshiftFront => Lines(WHOAMI);

    // node-postgres: `check.js` as this user.
    node_pg_logs_in_without_a_password:
        NodePg("alice"), "whoami", Session, Postgres => Lines(WHOAMI);
    node_pg_pool_runs_ten_clients_concurrently:
        NodePg("bob"), "pool", Session, Postgres
        => Lines(&["clients 10", "squares 0 1 4 9 16 25 36 49 64 81", "backends 10"]);
    node_pg_query_stream_reads_50000_rows:
        NodePg("bob"), "cursor", Session, Postgres => LinesWithMd5(STREAM_RESULTS, "50000");
    node_pg_query_stream_reads_50000_rows_in_transaction_mode:
        NodePg("bob"), "cursor", Transaction, Postgres => LinesWithMd5(STREAM_RESULTS, "50000");
    node_pg_copy_streams_round_trip_is_byte_identical:
        NodePg("bob"), "copy", Session, Postgres => CopyRoundTrip;
    node_pg_copy_streams_round_trip_is_byte_identical_in_transaction_mode:
        NodePg("bob"), "copy", Transaction, Postgres => CopyRoundTrip;
    // 4 clients × 10 rounds of round * 10 + client: 40 distinct values from 0 to 93.
    node_pg_named_queries_return_each_clients_values_in_transaction_mode:
        NodePg("bob"), "named", Transaction, Postgres => Lines(&["results 40 0 93 40"]);

    // Python drivers: `check.py` as alice; redshift_connector verifies TLS against the
    // local CA (`SSL_CERT_FILE`) unless its scenario is `plain`.
    redshift_connector_logs_in_verifying_the_local_ca_through_the_redshift_like_front:
        PythonTrustingTheLocalCa("redshift_connector"), "whoami", Session, RedshiftFront
        => Lines(WHOAMI);
    redshift_connector_without_ssl_logs_in_on_loopback_through_the_redshift_like_front:
        Python("redshift_connector"), "plain", Session, RedshiftFront => Lines(WHOAMI);
    redshift_connector_parametrised_query_returns_its_parameters_through_the_redshift_like_front:
        PythonTrustingTheLocalCa("redshift_connector"), "params", Session, RedshiftFront
        => Lines(PARAMS_RESULTS);
    redshift_connector_parametrised_query_returns_its_parameters_in_transaction_mode:
        PythonTrustingTheLocalCa("redshift_connector"), "params", Transaction, RedshiftFront
        => Lines(PARAMS_RESULTS);
    redshift_connector_fetches_5000_rows_through_the_redshift_like_front:
        PythonTrustingTheLocalCa("redshift_connector"), "rows", Session, RedshiftFront
        => LinesWithMd5(&["rows 5000 12502500 {md5}"], "5000");
    psycopg2_logs_in_without_a_password:
        Python("psycopg2"), "whoami", Session, Postgres => Lines(WHOAMI);
    psycopg2_parametrised_query_returns_its_parameters:
        Python("psycopg2"), "params", Session, Postgres => Lines(&["result 42 it's"]);
    asyncpg_with_extra_float_digits_3_logs_in_through_the_redshift_like_front_with_2:
        Python("asyncpg"), "float_digits", Session, RedshiftFront
        => Lines(&["user IAM:alice", "extra_float_digits 2"]);
    asyncpg_prepared_statement_returns_its_rows_through_the_redshift_like_front:
        Python("asyncpg"), "prepared", Session, RedshiftFront => Lines(ASYNCPG_PREPARED_RESULTS);
    asyncpg_prepared_statement_returns_its_rows_in_transaction_mode:
        Python("asyncpg"), "prepared", Transaction, RedshiftFront => Lines(ASYNCPG_PREPARED_RESULTS);
}

#[tokio::test(flavor = "multi_thread")]
async fn pgjdbc_statement_cancel_stops_pg_sleep_with_57014() {
    pgjdbc_cancel(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pgjdbc_statement_cancel_stops_pg_sleep_with_57014_in_transaction_mode() {
    pgjdbc_cancel(PoolMode::Transaction).await;
}

// ---------------------------------------------------------------------------------------
// One case of the table

/// Why: one row of the table: a driver program, its scenario, the bed, what it must print.
struct Case {
    driver: Driver,
    /// The scenario the program runs (its first argument after the driver).
    scenario: &'static str,
    mode: PoolMode,
    upstream: Upstream,
    expect: Expect,
}

/// Why: which program a case runs and how it reaches the proxy.
enum Driver {
    /// pgjdbc as alice at 127.0.0.1, with these URL parameters (`&…`).
    Pgjdbc(&'static str),
    /// pgjdbc as alice at `localhost` with `sslmode=verify-full`, trusting the local CA.
    PgjdbcVerifyFull,
    /// node-postgres as this user.
    NodePg(&'static str),
    /// This Python driver module (redshift_connector, psycopg2, asyncpg), default TLS trust.
    Python(&'static str),
    /// This Python driver module, trusting the local CA only (`SSL_CERT_FILE`).
    PythonTrustingTheLocalCa(&'static str),
}

/// Why: what the proxy talks to: the cluster, or the Redshift-like front before it.
enum Upstream {
    Postgres,
    RedshiftFront,
}

/// Why: what the program must print.
enum Expect {
    /// Exactly these stdout lines.
    Lines(&'static [&'static str]),
    /// These lines, `{md5}` being the cluster's `md5()` of the given text.
    LinesWithMd5(&'static [&'static str], &'static str),
    /// `copied_in 20000`, then what was sent and what came back: the same bytes.
    CopyRoundTrip,
}

/// Runs one case: skips when its driver is missing (before starting a bed), else runs the
/// program against a fresh bed and asserts its output.
async fn check(case: Case) {
    let tool = match case.driver {
        Pgjdbc(_) | PgjdbcVerifyFull => pgjdbc(),
        NodePg(_) => node(),
        Python(module) | PythonTrustingTheLocalCa(module) => python(module),
    };
    let Some(tool) = tool else {
        return;
    };
    let bed = Bed::with(bed_options(
        case.mode,
        matches!(case.upstream, Upstream::RedshiftFront),
    ))
    .await;
    let scenario = case.scenario;
    let out = match case.driver {
        Pgjdbc(params) => pgjdbc_run(&bed, &tool, scenario, params).await,
        PgjdbcVerifyFull => {
            let extra = format!(
                "&sslmode=verify-full&sslrootcert={}",
                local_ca(&bed).display()
            );
            let url = jdbc_url(&bed, "localhost", "alice", &extra);
            run(java_command(&tool, scenario, &url)).await
        }
        NodePg(user) => node_run(&bed, &tool, scenario, user).await,
        Python(module) => python_run(&bed, &tool, module, scenario, &[]).await,
        PythonTrustingTheLocalCa(module) => {
            let ca = local_ca(&bed);
            let env = [("SSL_CERT_FILE", ca.as_path())];
            python_run(&bed, &tool, module, scenario, &env).await
        }
    };
    match case.expect {
        Lines(want) => assert_eq!(lines(&out), want),
        LinesWithMd5(want, of) => {
            let admin = bed.pg.admin().await.expect("admin");
            let md5: String = admin
                .query_one("SELECT md5($1::text)", &[&of])
                .await
                .expect("md5")
                .get(0);
            let want: Vec<String> = want.iter().map(|l| l.replace("{md5}", &md5)).collect();
            assert_eq!(lines(&out), want);
        }
        CopyRoundTrip => {
            let lines = lines(&out);
            assert_eq!(lines.len(), 3, "{out}");
            let sent = lines[1].strip_prefix("sent ").expect("sent line");
            assert_eq!(
                (lines[0], lines[2].strip_prefix("received ")),
                ("copied_in 20000", Some(sent))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running the programs

/// How long one driver program may run before the test fails (a hang is a failure).
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `Ok(tool)` when the driver is usable; `None` (skip) when it is absent outside CI.
fn available<T: Clone>(tool: &Result<T, String>) -> Option<T> {
    match tool {
        Ok(t) => Some(t.clone()),
        Err(why) if in_ci() => panic!("CI is set but a client driver is missing: {why}"),
        Err(why) => {
            eprintln!("skipping: {why} (CI installs it: see .ci/run)");
            None
        }
    }
}

/// Runs a program to completion within `PROGRAM_TIMEOUT`; its stdout, or a panic with both
/// streams when it failed.
async fn run(mut cmd: Command) -> String {
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let what = format!("{cmd:?}");
    let out = tokio::time::timeout(PROGRAM_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {PROGRAM_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The stdout lines of a program, for one equality assertion.
fn lines(stdout: &str) -> Vec<&str> {
    stdout.lines().map(str::trim).collect()
}

/// Whether `program --version`-like probing succeeds.
fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn bed_options(mode: PoolMode, redshift_front: bool) -> BedOptions {
    BedOptions {
        tweak: Box::new(move |c| {
            c.pool.mode = mode;
            // One server per pool: in transaction mode every client's statements run on the
            // server the other clients use too.
            if mode == PoolMode::Transaction {
                c.pool.size = 1;
            }
        }),
        redshift_front,
        ..Default::default()
    }
}

/// The local CA clients verify the proxy's listener certificate with.
fn local_ca(bed: &Bed) -> PathBuf {
    bed.config
        .client_tls
        .state_dir
        .as_ref()
        .expect("the bed sets a state_dir")
        .join("ca.crt")
}

// ---------------------------------------------------------------------------------------
// pgjdbc

/// `ClientCheck.java` compiled once per test run (cached by source hash under the target dir).
fn pgjdbc() -> Option<PathBuf> {
    static CLASSES: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    available(CLASSES.get_or_init(compile_client_check))
}

fn compile_client_check() -> Result<PathBuf, String> {
    if !Path::new(PGJDBC_JAR).is_file() {
        return Err(format!(
            "pgjdbc ({PGJDBC_JAR}, apt libpostgresql-jdbc-java) is not installed"
        ));
    }
    if !runs("javac", &["-version"]) || !runs("java", &["-version"]) {
        return Err("javac/java (apt default-jdk-headless) is not installed".into());
    }
    use std::hash::{Hash, Hasher};
    let source = clients_dir().join("java/ClientCheck.java");
    let text = std::fs::read(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("clients-java-{:016x}", hasher.finish()));
    if out.join("ClientCheck.class").is_file() {
        return Ok(out);
    }
    // Compile next to it and rename, so concurrent test runs never see half a directory.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).map_err(|e| e.to_string())?;
    let status = std::process::Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(tmp.path())
        .args(["-cp", PGJDBC_JAR])
        .arg(&source)
        .status()
        .map_err(|e| format!("javac: {e}"))?;
    assert!(status.success(), "javac {} failed", source.display());
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, &out).is_err() {
        // Another run got there first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(out)
}

fn java_command(classes: &Path, scenario: &str, url: &str) -> Command {
    let mut cmd = Command::new("java");
    cmd.args(["-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp"])
        .arg(format!("{}:{PGJDBC_JAR}", classes.display()))
        .args(["ClientCheck", scenario, url]);
    cmd
}

/// `jdbc:postgresql://HOST:PORT/postgres?user=USER&…extra` (no password anywhere).
fn jdbc_url(bed: &Bed, host: &str, user: &str, extra: &str) -> String {
    format!(
        "jdbc:postgresql://{host}:{}/postgres?user={user}&ApplicationName=clients{extra}",
        bed.proxy_addr.port()
    )
}

async fn pgjdbc_run(bed: &Bed, classes: &Path, scenario: &str, extra: &str) -> String {
    let url = jdbc_url(bed, "127.0.0.1", "alice", extra);
    run(java_command(classes, scenario, &url)).await
}

/// `Statement.cancel()` on `pg_sleep(30)` once it runs: 57014, and the connection goes on.
async fn pgjdbc_cancel(mode: PoolMode) {
    let Some(classes) = pgjdbc() else {
        return;
    };
    let bed = Bed::with(bed_options(mode, false)).await;
    let url = jdbc_url(&bed, "127.0.0.1", "bob", "");
    let mut cmd = java_command(&classes, "cancel", &url);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("java starts");
    // Cancel only once the query runs on the cluster (bounded poll, no sleeps).
    let admin = bed.pg.admin().await.expect("admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'",
                &[],
            )
            .await
            .expect("admin query")
            .get(0);
        if running == 1 {
            break;
        }
        if let Some(status) = child.try_wait().expect("java status") {
            let out = child.wait_with_output().await.expect("java output");
            panic!(
                "java ended ({status}) before its query ran:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pg_sleep(30) never showed as active"
        );
        tokio::task::yield_now().await;
    }
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"cancel\n").await.expect("tell java");
    drop(stdin);
    // Well under pg_sleep's 30 s: only a cancel ends it this early.
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the cancel took effect well before pg_sleep(30) ended")
        .expect("java output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        lines(&stdout),
        ["sqlstate 57014", "after 1"],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// node-postgres

/// `node` and `tests/clients/node/node_modules` (`npm ci` there).
fn node() -> Option<PathBuf> {
    static NODE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    available(NODE.get_or_init(|| {
        let dir = clients_dir().join("node");
        if !runs("node", &["--version"]) {
            return Err("node (apt nodejs) is not installed".into());
        }
        for module in ["pg", "pg-query-stream", "pg-copy-streams"] {
            if !dir.join("node_modules").join(module).is_dir() {
                return Err(format!(
                    "{module} is not installed (npm ci in {})",
                    dir.display()
                ));
            }
        }
        Ok(dir)
    }))
}

async fn node_run(bed: &Bed, dir: &Path, scenario: &str, user: &str) -> String {
    let config = format!(
        r#"{{"host":"127.0.0.1","port":{},"user":"{user}","database":"postgres","application_name":"clients"}}"#,
        bed.proxy_addr.port()
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(dir)
        .arg("check.js")
        .args([scenario, &config])
        .env_remove("PGPASSWORD");
    run(cmd).await
}

// ---------------------------------------------------------------------------------------
// Python drivers: redshift_connector, asyncpg (PyPI, in tests/clients/python/.venv) and
// psycopg2 (Debian python3-psycopg2, seen by the venv through --system-site-packages).

/// A Python interpreter that can import `module`: the venv `.ci/run` makes, else `python3`
/// (Debian's for python3-psycopg2).
fn python_with(module: &str) -> Result<PathBuf, String> {
    let venv = clients_dir().join("python/.venv/bin/python");
    let candidates = [venv, "python3".into(), "/usr/bin/python3".into()];
    candidates
        .into_iter()
        .find(|python| {
            std::process::Command::new(python)
                .args(["-c", &format!("import {module}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or_else(|| format!("the Python module {module} is not installed"))
}

fn python(module: &'static str) -> Option<PathBuf> {
    static REDSHIFT_CONNECTOR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static ASYNCPG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static PSYCOPG2: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match module {
        "redshift_connector" => &REDSHIFT_CONNECTOR,
        "asyncpg" => &ASYNCPG,
        "psycopg2" => &PSYCOPG2,
        other => panic!("no driver {other}"),
    };
    available(cell.get_or_init(|| python_with(module)))
}

async fn python_run(
    bed: &Bed,
    python: &Path,
    driver: &str,
    scenario: &str,
    env: &[(&str, &Path)],
) -> String {
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("python/check.py"))
        .args([driver, scenario, &bed.proxy_addr.port().to_string()])
        .env_remove("PGPASSWORD")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd).await
}
