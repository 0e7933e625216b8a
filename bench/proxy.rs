//! Benchmark: the proxy against direct PostgreSQL (TLS) and PgBouncer (TLS upstream).
//!
//! Two groups of scenarios:
//! - relay, no pool: the proxy with `[pool] mode = "none"` (one server login per client,
//!   relayed byte for byte) against PgBouncer in session mode with a pool of 200 (so no
//!   client ever waits): the relay's own cost;
//! - pooled: the proxy in `transaction` or `session` mode against PgBouncer in the same
//!   mode, both with pools of [`POOL_SIZE`] servers and `max_prepared_statements = 200`.
//!
//! PgBouncer is the binary named by `BENCH_PGBOUNCER` (for example a 1.25 build made
//! outside this repository from a fetched source), else the system's (labelled with its
//! `--version`), else its column stays empty.
//!
//! `cargo bench --bench proxy` runs the full benchmark with the release binary;
//! `cargo test` runs the same program in a short smoke mode (no `--bench` argument),
//! so the script is exercised by CI and cannot rot.
//!
//! One process starts everything on 127.0.0.1: a private PostgreSQL (TLS, SCRAM),
//! the credential-API emulator, the proxy binary as a child process, and PgBouncer.
//! Every scenario alternates the three targets round-robin (rotating the order each
//! repetition) and reports the median, so machine drift hits all of them alike.
//! Results: a table on stdout and `bench/results/latest.json`.
//!
//! Environment knobs: `BENCH_REPS` (repetitions, default 3), `BENCH_SECS` (pgbench
//! seconds per run, default 5), `BENCH_COPY_MIB` (default 1024), `BENCH_SESSIONS`
//! (idle sessions for the memory figure, default 5000), `BENCH_STORM` (default 1000),
//! `BENCH_ONLY` (`relay` or `pooled`: one group only; results in `only-<group>.json`).

use futures_util::StreamExt;
use local_cluster::LocalPg;
use redshift_iam_proxy::testbed::{free_port, BedOptions, Parts, ProxyProcess};
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_redshift-iam-proxy");

/// The proxy binary under test: this tree's, or `BENCH_PROXY` (another build of the proxy,
/// e.g. an older commit's, to compare two builds in the same run conditions).
fn proxy_bin() -> PathBuf {
    std::env::var_os("BENCH_PROXY").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}
/// Password of the `bench` role used by the direct and PgBouncer targets.
const BENCH_PASSWORD: &str = "bench-password";
/// Identities of the cold storm.
const STORM_IDENTITIES: usize = 10;
/// Servers per pool, proxy and PgBouncer alike, in the pooled scenarios.
const POOL_SIZE: usize = 20;
/// Role whose logins the cluster-logins scenario counts (used by nothing else).
const LOGINS_ROLE: &str = "logins";
/// Client connections of the cluster-logins scenario.
const LOGINS_CLIENTS: usize = 300;

/// Why: the sizes of one run, full (`--bench`) or smoke (`cargo test`).
#[derive(Debug, Clone)]
struct Plan {
    full: bool,
    reps: usize,
    /// pgbench: `-T secs` in full mode, `-t` transactions per client in smoke mode.
    secs: u64,
    smoke_tx: u64,
    copy_bytes: u64,
    sessions: usize,
    storm: usize,
    /// Run the relay scenarios (with the cold storm and idle memory).
    relay: bool,
    /// Run the pooled scenarios.
    pooled: bool,
}

impl Plan {
    fn from_args() -> Plan {
        let full = std::env::args().any(|a| a == "--bench");
        let env = |k: &str, d: u64| -> u64 {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let only = std::env::var("BENCH_ONLY").unwrap_or_default();
        let (relay, pooled) = match only.as_str() {
            "" => (true, true),
            "relay" => (true, false),
            "pooled" => (false, true),
            other => panic!("BENCH_ONLY={other}: expected `relay` or `pooled`"),
        };
        if full {
            Plan {
                relay,
                pooled,
                full,
                reps: env("BENCH_REPS", 3) as usize,
                secs: env("BENCH_SECS", 5),
                smoke_tx: 0,
                copy_bytes: env("BENCH_COPY_MIB", 1024) << 20,
                sessions: env("BENCH_SESSIONS", 5000) as usize,
                storm: env("BENCH_STORM", 1000) as usize,
            }
        } else {
            Plan {
                relay,
                pooled,
                full,
                reps: 1,
                secs: 0,
                smoke_tx: 50,
                copy_bytes: 4 << 20,
                sessions: 50,
                storm: 50,
            }
        }
    }
}

/// Why: the three things a client can connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    Proxy,
    PgBouncer,
}

impl Target {
    const ALL: [Target; 3] = [Target::Direct, Target::Proxy, Target::PgBouncer];
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Proxy => "proxy",
            Target::PgBouncer => "pgbouncer",
        }
    }
}

/// Why: which proxy and PgBouncer setup a scenario runs against (direct is always direct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    /// Proxy `mode = "none"`; PgBouncer session mode, pool 200 (no waits).
    Relay,
    /// Proxy and PgBouncer in session mode, pools of [`POOL_SIZE`].
    Session,
    /// Proxy and PgBouncer in transaction mode, pools of [`POOL_SIZE`].
    Transaction,
}

impl Pooling {
    const POOLED: [Pooling; 2] = [Pooling::Session, Pooling::Transaction];
    /// The proxy's `[pool] mode`.
    fn proxy_mode(self) -> &'static str {
        match self {
            Pooling::Relay => "none",
            Pooling::Session => "session",
            Pooling::Transaction => "transaction",
        }
    }
    /// The table's label: how the proxy and PgBouncer were set up.
    fn label(self) -> String {
        match self {
            Pooling::Relay => "relay, no pool (pgbouncer: session, pool 200)".into(),
            Pooling::Session => format!("session pool of {POOL_SIZE}"),
            Pooling::Transaction => format!("transaction pool of {POOL_SIZE}"),
        }
    }
    /// PgBouncer's database name for this setup.
    fn bouncer_db(self) -> &'static str {
        match self {
            Pooling::Relay => "bench",
            Pooling::Session => "bench_session",
            Pooling::Transaction => "bench_txn",
        }
    }
}

/// Why: a PgBouncer child process that is killed when the bench ends.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why: everything running, plus how to reach each target.
struct Bed {
    /// The test bed's cluster and emulator.
    parts: Parts,
    dir: tempfile::TempDir,
    /// The relay proxy (`mode = "none"`).
    proxy: ProxyProcess,
    proxy_port: u16,
    /// The pooled proxies (session, transaction); dropped after the pooled scenarios.
    pooled_proxies: Vec<(Pooling, ProxyProcess, u16)>,
    /// PgBouncer for the relay scenarios (session mode, pool 200).
    bouncer: Option<(Daemon, u16)>,
    /// PgBouncer for the pooled scenarios (databases `bench_session`, `bench_txn`).
    pooled_bouncer: Option<(Daemon, u16)>,
    /// PgBouncer's `--version` (first line) and path, if one was found.
    bouncer_version: Option<String>,
}

/// Polls until `port` accepts TCP connections or the deadline passes.
fn wait_listening(port: u16, what: &str, log: &Path) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sets the soft limit of open files to the hard limit (children inherit it).
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).unwrap().0
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Bed {
    async fn start(plan: &Plan) -> Bed {
        let max_conn = if plan.full {
            plan.sessions.max(plan.storm) as u32 + 300
        } else {
            400
        };
        let mut setup_sql = format!(
            "CREATE ROLE bench LOGIN PASSWORD '{BENCH_PASSWORD}';
             CREATE ROLE {LOGINS_ROLE} LOGIN PASSWORD '{BENCH_PASSWORD}';
             CREATE UNLOGGED TABLE bulk_in (i bigint, t text);
             GRANT ALL ON bulk_in TO PUBLIC;"
        );
        for i in 0..STORM_IDENTITIES {
            write!(setup_sql, "CREATE ROLE storm{i};").unwrap();
        }
        let parts = Parts::start(&BedOptions {
            setup_sql,
            pg_max_connections: max_conn,
            pg_extra_conf: vec![
                "shared_buffers = '128MB'".into(),
                "max_wal_size = '4GB'".into(),
                // The cluster-logins scenario counts "connection authorized" lines.
                "log_connections = on".into(),
            ],
            ..BedOptions::for_load()
        })
        .await
        .unwrap_or_else(|e| panic!("bench bed: {e}"));
        let pg = &parts.pg;
        let admin = pg.admin().await.expect("admin");
        let out = Command::new("pgbench")
            .args(["-i", "-q", "-s", "1", "-h"])
            .arg(pg.socket_dir())
            .args(["-p", &pg.port().to_string(), "-U", "postgres", "postgres"])
            .output()
            .expect("pgbench -i");
        assert!(out.status.success(), "pgbench -i: {out:?}");
        admin
            .batch_execute(
                "GRANT SELECT, UPDATE, INSERT ON pgbench_accounts, pgbench_branches,
                 pgbench_tellers, pgbench_history TO PUBLIC;",
            )
            .await
            .expect("grants");

        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (proxy, proxy_port) = start_proxy(&parts, Pooling::Relay);
        let pooled_proxies = Pooling::POOLED
            .into_iter()
            .map(|p| {
                let (d, port) = start_proxy(&parts, p);
                (p, d, port)
            })
            .collect();
        let found = find_pgbouncer();
        let bouncer_version = found
            .as_ref()
            .map(|(bin, v)| format!("{v} ({})", bin.display()));
        let (bouncer, pooled_bouncer) = match &found {
            Some((bin, version)) => (
                Some(start_pgbouncer(bin, pg, dir.path(), false)),
                // Prepared statements in transaction mode came with PgBouncer 1.21.
                if has_prepared_statements(version) {
                    Some(start_pgbouncer(bin, pg, dir.path(), true))
                } else {
                    println!("{version} predates max_prepared_statements (1.21): pooled PgBouncer columns stay empty");
                    None
                },
            ),
            None => (None, None),
        };
        Bed {
            parts,
            dir,
            proxy,
            proxy_port,
            pooled_proxies,
            bouncer,
            pooled_bouncer,
            bouncer_version,
        }
    }

    /// The port of the proxy set up for `pooling`.
    fn proxy_port(&self, pooling: Pooling) -> Option<u16> {
        match pooling {
            Pooling::Relay => Some(self.proxy_port),
            _ => self
                .pooled_proxies
                .iter()
                .find(|(p, _, _)| *p == pooling)
                .map(|(_, _, port)| *port),
        }
    }

    /// The PgBouncer set up for `pooling`.
    fn bouncer(&self, pooling: Pooling) -> Option<&(Daemon, u16)> {
        match pooling {
            Pooling::Relay => self.bouncer.as_ref(),
            _ => self.pooled_bouncer.as_ref(),
        }
    }

    /// The pid of the process relaying for `t` (none for direct).
    fn relay_pid(&self, t: Target, pooling: Pooling) -> Option<u32> {
        match (t, pooling) {
            (Target::Direct, _) => None,
            (Target::Proxy, Pooling::Relay) => Some(self.proxy.pid()),
            (Target::Proxy, _) => self
                .pooled_proxies
                .iter()
                .find(|(p, _, _)| *p == pooling)
                .map(|(_, d, _)| d.pid()),
            (Target::PgBouncer, _) => self.bouncer(pooling).map(|(d, _)| d.pid()),
        }
    }

    fn conninfo(&self, t: Target, pooling: Pooling, user: &str) -> Option<String> {
        Some(match t {
            Target::Direct => format!(
                "host=localhost port={} user={user} password={BENCH_PASSWORD} dbname=postgres gssencmode=disable \
                 sslmode=verify-full sslrootcert={}",
                self.parts.pg.port(),
                self.parts.pg.ca_cert_path().display()
            ),
            Target::Proxy => format!(
                "host=127.0.0.1 port={} user={user} dbname=postgres sslmode=disable gssencmode=disable",
                self.proxy_port(pooling)?
            ),
            Target::PgBouncer => format!(
                "host=127.0.0.1 port={} user={user} dbname={} sslmode=disable gssencmode=disable",
                self.bouncer(pooling)?.1,
                pooling.bouncer_db()
            ),
        })
    }

    /// Restarts the relay proxy binary (fresh process, empty caches).
    fn restart_proxy(&mut self) {
        let (p, port) = start_proxy(&self.parts, Pooling::Relay);
        self.proxy = p;
        self.proxy_port = port;
    }
}

/// The proxy binary with `[pool] mode` set for `pooling` (pools of [`POOL_SIZE`]).
fn start_proxy(parts: &Parts, pooling: Pooling) -> (ProxyProcess, u16) {
    let mode = pooling.proxy_mode();
    let fragment = format!(
        "[limits]\nmax_client_connections = 20000\nlogin_timeout_secs = 120\n\
         [pool]\nmode = \"{mode}\"\nsize = {POOL_SIZE}\n"
    );
    let proxy = parts
        .start_binary(&proxy_bin(), &fragment, Some("warn"))
        .unwrap_or_else(|e| panic!("start the proxy binary ({mode}): {e}"));
    let port = proxy.addr.port();
    (proxy, port)
}

/// The PgBouncer to compare with: `BENCH_PGBOUNCER`, else the system's; with the first
/// line of its `--version`.
fn find_pgbouncer() -> Option<(PathBuf, String)> {
    let chosen = std::env::var_os("BENCH_PGBOUNCER").map(PathBuf::from);
    let bin = chosen
        .into_iter()
        .chain([
            PathBuf::from("/usr/sbin/pgbouncer"),
            PathBuf::from("/usr/bin/pgbouncer"),
        ])
        .find(|p| p.is_file())?;
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let out = Command::new(&bin).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("PgBouncer (unknown version)")
        .trim()
        .to_string();
    Some((bin, version))
}

/// Whether a `PgBouncer X.Y.Z` version line is 1.21 or newer.
fn has_prepared_statements(version: &str) -> bool {
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    matches!(numbers.as_slice(), [major, minor] if (*major, *minor) >= (1, 21))
}

/// PgBouncer with verify-full TLS to the same PostgreSQL. Not `pooled`: database `bench`
/// in session mode with a pool of 200 (the relay comparison). `pooled`: databases
/// `bench_session` and `bench_txn` with pools of [`POOL_SIZE`] and
/// `max_prepared_statements = 200`.
fn start_pgbouncer(bin: &Path, pg: &LocalPg, dir: &Path, pooled: bool) -> (Daemon, u16) {
    let port = free_port().expect("free port");
    let name = if pooled {
        "pgbouncer-pooled"
    } else {
        "pgbouncer"
    };
    // PgBouncer logs in to PostgreSQL with these passwords (SCRAM); clients use trust.
    let users = dir.join("userlist.txt");
    std::fs::write(
        &users,
        format!("\"bench\" \"{BENCH_PASSWORD}\"\n\"{LOGINS_ROLE}\" \"{BENCH_PASSWORD}\"\n"),
    )
    .unwrap();
    let server = format!("host=localhost port={} dbname=postgres", pg.port());
    let (databases, pooling) = if pooled {
        (
            format!(
                "bench_session = {server} pool_mode=session pool_size={POOL_SIZE}\n\
                 bench_txn = {server} pool_mode=transaction pool_size={POOL_SIZE}\n"
            ),
            format!(
                "pool_mode = session\ndefault_pool_size = {POOL_SIZE}\nmax_prepared_statements = 200\n"
            ),
        )
    } else {
        (
            format!("bench = {server}\n"),
            "pool_mode = session\ndefault_pool_size = 200\n".to_string(),
        )
    };
    let ini = dir.join(format!("{name}.ini"));
    std::fs::write(
        &ini,
        format!(
            "[databases]\n{databases}\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {users}\n{pooling}\
             max_client_conn = 20000\nmax_db_connections = 0\n\
             server_tls_sslmode = verify-full\nserver_tls_ca_file = {ca}\n\
             ignore_startup_parameters = extra_float_digits\n",
            users = users.display(),
            ca = pg.ca_cert_path().display(),
        ),
    )
    .unwrap();
    let log = dir.join(format!("{name}.log"));
    let mut cmd = Command::new(bin);
    cmd.arg(&ini)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if is_root() {
        // PgBouncer refuses to run as root.
        use std::os::unix::process::CommandExt;
        let pg_user = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("postgres user");
        cmd.uid(pg_user.uid.as_raw()).gid(pg_user.gid.as_raw());
    }
    let d = Daemon {
        child: cmd.spawn().expect("start pgbouncer"),
        log,
    };
    wait_listening(port, "pgbouncer", &d.log);
    (d, port)
}

/// Runs a command, panicking with its output if it fails; returns stdout.
async fn run(cmd: &mut tokio::process::Command, what: &str) -> String {
    let out = cmd.output().await.expect(what);
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `key` in pgbench output.
fn parse_after(out: &str, key: &str) -> f64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}` in pgbench output:\n{out}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Why: one row of the result table: a median per target, and which way is better.
struct Row {
    name: String,
    pooling: Pooling,
    unit: &'static str,
    higher_is_better: bool,
    values: Vec<(Target, f64)>,
}

impl Row {
    fn get(&self, t: Target) -> Option<f64> {
        self.values.iter().find(|(x, _)| *x == t).map(|(_, v)| *v)
    }
}

/// Runs `measure` for every available target, `reps` times round-robin, and keeps the medians.
#[allow(clippy::too_many_arguments)]
async fn round_robin<F, Fut>(
    bed: &Bed,
    plan: &Plan,
    pooling: Pooling,
    name: &str,
    unit: &'static str,
    higher_is_better: bool,
    mut measure: F,
) -> Row
where
    F: FnMut(Target, String) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let targets: Vec<Target> = Target::ALL
        .into_iter()
        .filter(|t| bed.conninfo(*t, pooling, "bench").is_some())
        .collect();
    let mut samples: Vec<(Target, Vec<f64>)> = targets.iter().map(|t| (*t, vec![])).collect();
    for rep in 0..plan.reps {
        for k in 0..targets.len() {
            let t = targets[(k + rep) % targets.len()];
            let v = measure(t, bed.conninfo(t, pooling, "bench").unwrap()).await;
            samples.iter_mut().find(|(x, _)| *x == t).unwrap().1.push(v);
        }
    }
    let row = Row {
        name: name.into(),
        pooling,
        unit,
        higher_is_better,
        values: samples.into_iter().map(|(t, v)| (t, median(v))).collect(),
    };
    eprintln!(
        "  {name} [{}]: {}",
        pooling.label(),
        row.values
            .iter()
            .map(|(t, v)| format!("{} {v:.2} {unit}", t.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    row
}

fn pgbench(plan: &Plan, conninfo: &str, extra: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("pgbench");
    c.args(["-n", "-S"]).args(extra);
    if plan.full {
        c.args(["-T", &plan.secs.to_string()]);
    } else if !extra.contains(&"-t") {
        c.args(["-t", &plan.smoke_tx.to_string()]);
    }
    c.arg(conninfo);
    c
}

/// Busy CPU ticks of the whole machine (all CPUs), from /proc/stat.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    // user nice system idle iowait irq softirq steal
    f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
}

/// CPU ticks (user, system) a process has used, from /proc/PID/stat.
fn process_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    (f[11].parse().unwrap(), f[12].parse().unwrap())
}

/// Microseconds per clock tick (`getconf CLK_TCK` is 100 on Linux).
const US_PER_TICK: f64 = 10_000.0;

/// Why: CPU spent per transaction in one pgbench run: whole machine, and the relay process (user, system).
type CpuSample = (Target, f64, Option<(f64, f64)>);

async fn throughput(
    bed: &Bed,
    plan: &Plan,
    pooling: Pooling,
    clients: u32,
    prepared: bool,
) -> Vec<Row> {
    let name = format!(
        "pgbench -S -c {clients}{}",
        if prepared { " -M prepared" } else { "" }
    );
    let jobs = clients.min(2).to_string();
    let c = clients.to_string();
    let cpu: std::rc::Rc<std::cell::RefCell<Vec<CpuSample>>> = Default::default();
    let row = round_robin(bed, plan, pooling, &name, "tps", true, |t, ci| {
        let mut args = vec!["-c", c.as_str(), "-j", jobs.as_str()];
        if prepared {
            args.extend(["-M", "prepared"]);
        }
        let mut cmd = pgbench(plan, &ci, &args);
        let name = name.clone();
        let pid = bed.relay_pid(t, pooling);
        let cpu = cpu.clone();
        async move {
            let (m0, p0) = (machine_busy_ticks(), pid.map(process_ticks));
            let out = run(&mut cmd, &name).await;
            let (m1, p1) = (machine_busy_ticks(), pid.map(process_ticks));
            let txns: f64 = out
                .lines()
                .find_map(|l| l.strip_prefix("number of transactions actually processed:"))
                .and_then(|v| v.trim().split('/').next()?.parse().ok())
                .unwrap_or_else(|| panic!("no transaction count in pgbench output:\n{out}"));
            // pgbench's -T clock includes its logins: 64 TLS+SCRAM logins on a loaded machine
            // can take the whole run.
            assert!(
                txns > 0.0,
                "{name} against {}: no transaction completed (machine overloaded? raise BENCH_SECS):\n{out}",
                t.name()
            );
            let per = |ticks: u64| ticks as f64 * US_PER_TICK / txns.max(1.0);
            let relay = match (p0, p1) {
                (Some((u0, s0)), Some((u1, s1))) => Some((per(u1 - u0), per(s1 - s0))),
                _ => None,
            };
            cpu.borrow_mut().push((t, per(m1 - m0), relay));
            parse_after(&out, "tps =")
        }
    })
    .await;
    let mut rows = vec![row];
    let samples = cpu.borrow();
    let med = |t: Target, f: &dyn Fn(&CpuSample) -> Option<f64>| -> Option<(Target, f64)> {
        let v: Vec<f64> = samples.iter().filter(|s| s.0 == t).filter_map(f).collect();
        (!v.is_empty()).then(|| (t, median(v)))
    };
    let make = |label: &str, f: &dyn Fn(&CpuSample) -> Option<f64>| Row {
        name: format!("{name}: {label}"),
        pooling,
        unit: "us/tx",
        higher_is_better: false,
        values: Target::ALL.into_iter().filter_map(|t| med(t, f)).collect(),
    };
    if pooling == Pooling::Relay && clients == 8 && !prepared {
        rows.push(make("CPU, whole machine", &|s| Some(s.1)));
        rows.push(make("CPU, relay process user", &|s| s.2.map(|r| r.0)));
        rows.push(make("CPU, relay process system", &|s| s.2.map(|r| r.1)));
    }
    if pooling == Pooling::Transaction {
        rows.push(make("CPU, whole machine", &|s| Some(s.1)));
        rows.push(make("CPU, pooler process user+system", &|s| {
            s.2.map(|r| r.0 + r.1)
        }));
    }
    for r in &rows[1..] {
        eprintln!(
            "  {}: {}",
            r.name,
            r.values
                .iter()
                .map(|(t, v)| format!("{} {v:.2} us/tx", t.name()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    rows
}

/// Average connection time of `pgbench -C -c 1` (a new client connection per transaction).
async fn connect_cost(bed: &Bed, plan: &Plan, pooling: Pooling) -> Row {
    round_robin(
        bed,
        plan,
        pooling,
        "pgbench -C -c 1 (connect)",
        "ms",
        false,
        |_, ci| {
            // Smoke mode: a few connections are enough (the debug proxy's SCRAM is slow).
            let tx = (plan.smoke_tx / 5).to_string();
            let mut args = vec!["-C", "-c", "1", "-j", "1"];
            if !plan.full {
                args.extend(["-t", tx.as_str()]);
            }
            let mut cmd = pgbench(plan, &ci, &args);
            async move {
                let out = run(&mut cmd, "pgbench -C").await;
                parse_after(&out, "average connection time =")
            }
        },
    )
    .await
}

/// "connection authorized" lines of `role` (or its `IAM:` login role) in the server log.
fn logins_in_log(pg: &LocalPg, role: &str) -> usize {
    let log = std::fs::read_to_string(pg.log_path()).unwrap_or_default();
    let plain = format!("connection authorized: user={role} ");
    let iam = format!("connection authorized: user=IAM:{role} ");
    log.lines()
        .filter(|l| l.contains(&plain) || l.contains(&iam))
        .count()
}

/// Cluster logins for [`LOGINS_CLIENTS`] client connections (`pgbench -C -c 10 -t 30`) in
/// transaction mode, each target starting with no server for [`LOGINS_ROLE`].
async fn cluster_logins(bed: &Bed) -> Row {
    let pooling = Pooling::Transaction;
    let mut values = vec![];
    for t in Target::ALL {
        let Some(ci) = bed.conninfo(t, pooling, LOGINS_ROLE) else {
            continue;
        };
        let before = logins_in_log(&bed.parts.pg, LOGINS_ROLE);
        let mut cmd = tokio::process::Command::new("pgbench");
        cmd.args(["-n", "-S", "-C", "-c", "10", "-j", "2", "-t"])
            .arg((LOGINS_CLIENTS / 10).to_string())
            .arg(ci);
        let out = run(&mut cmd, "pgbench -C (cluster logins)").await;
        let done: usize = out
            .lines()
            .find_map(|l| l.strip_prefix("number of transactions actually processed:"))
            .and_then(|v| v.trim().split('/').next()?.parse().ok())
            .unwrap_or(0);
        assert_eq!(done, LOGINS_CLIENTS, "pgbench output:\n{out}");
        // The log is written by the backends before they answer; give stragglers a moment.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let n = logins_in_log(&bed.parts.pg, LOGINS_ROLE) - before;
        values.push((t, n as f64));
    }
    let row = Row {
        // pgbench opens one more connection before the run (scale check): direct shows 301.
        name: format!(
            "pgbench -C -c 10 -t {} ({LOGINS_CLIENTS}+1 client connections): cluster logins",
            LOGINS_CLIENTS / 10
        ),
        pooling,
        unit: "logins",
        higher_is_better: false,
        values,
    };
    eprintln!(
        "  {}: {}",
        row.name,
        row.values
            .iter()
            .map(|(t, v)| format!("{} {v}", t.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    row
}

fn copy_rows(bytes: u64) -> u64 {
    // Each row is `<i>\t<100 x's>\n`: about 108 bytes.
    (bytes / 108).max(1)
}

async fn copy_out(bed: &Bed, plan: &Plan, file: &Path) -> Row {
    let rows = copy_rows(plan.copy_bytes);
    let query = format!("SELECT i, repeat('x', 100) FROM generate_series(1, {rows}) i");
    let sql = format!("COPY ({query}) TO STDOUT");
    // The input of the COPY IN scenario: the same bytes, once, straight from PostgreSQL.
    let direct = bed
        .conninfo(Target::Direct, Pooling::Relay, "bench")
        .unwrap();
    run(
        tokio::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &direct, "-c"])
            .arg(format!("\\copy ({query}) to '{}'", file.display())),
        "psql copy to file",
    )
    .await;
    let bytes = std::fs::metadata(file).unwrap().len() as f64;
    round_robin(
        bed,
        plan,
        Pooling::Relay,
        "COPY out",
        "MiB/s",
        true,
        |_, ci| {
            let sql = sql.clone();
            async move {
                let t = Instant::now();
                run(
                    tokio::process::Command::new("psql")
                        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &ci, "-c", &sql])
                        .stdout(Stdio::null()),
                    "psql COPY out",
                )
                .await;
                bytes / (1 << 20) as f64 / t.elapsed().as_secs_f64()
            }
        },
    )
    .await
}

async fn copy_in(bed: &Bed, plan: &Plan, file: &Path) -> Row {
    let bytes = std::fs::metadata(file).unwrap().len() as f64;
    let admin = bed.parts.pg.admin().await.unwrap();
    let admin = &admin;
    round_robin(
        bed,
        plan,
        Pooling::Relay,
        "COPY in",
        "MiB/s",
        true,
        |_, ci| async move {
            admin.batch_execute("TRUNCATE bulk_in").await.unwrap();
            let t = Instant::now();
            run(
                tokio::process::Command::new("psql")
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &ci, "-c"])
                    .arg("COPY bulk_in FROM STDIN")
                    .stdin(std::fs::File::open(file).unwrap()),
                "psql COPY in",
            )
            .await;
            bytes / (1 << 20) as f64 / t.elapsed().as_secs_f64()
        },
    )
    .await
}

/// A tokio-postgres session through the proxy (plaintext, no password).
async fn proxy_session(port: u16, user: &str) -> tokio_postgres::Client {
    redshift_iam_proxy::testbed::connect(&format!(
        "host=127.0.0.1 port={port} user={user} dbname=postgres connect_timeout=120"
    ))
    .await
    .unwrap_or_else(|e| panic!("login as {user} through the proxy: {e}"))
}

/// Why: what the cold storm measured.
struct Storm {
    logins: usize,
    api_calls: u64,
    p50_ms: f64,
    p99_ms: f64,
    wall_ms: f64,
}

/// `n` concurrent first logins over `STORM_IDENTITIES` identities, all released at once.
async fn cold_storm(bed: &Bed, n: usize) -> Storm {
    let before = bed.parts.emu.call_count("GetClusterCredentials");
    let port = bed.proxy_port;
    let gate = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let t = Instant::now();
            let c = proxy_session(port, &format!("storm{}", i % STORM_IDENTITIES)).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            (ms, c)
        }));
    }
    gate.wait().await;
    let t = Instant::now();
    let mut times = Vec::with_capacity(n);
    let mut held = Vec::with_capacity(n);
    for task in tasks {
        let (ms, c) = task.await.unwrap();
        times.push(ms);
        held.push(c);
    }
    let wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(held);
    times.sort_by(|a, b| a.total_cmp(b));
    Storm {
        logins: n,
        api_calls: bed.parts.emu.call_count("GetClusterCredentials") - before,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        wall_ms,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemAvailable")
}

/// Why: what the idle-session memory test measured.
struct Memory {
    wanted: usize,
    sessions: usize,
    baseline_kib: u64,
    loaded_kib: u64,
    stopped_because: Option<String>,
}

impl Memory {
    fn per_session_kib(&self) -> f64 {
        (self.loaded_kib as f64 - self.baseline_kib as f64) / self.sessions.max(1) as f64
    }
}

/// Proxy RSS with `n` idle relayed sessions (each has run one query), from a fresh proxy.
async fn idle_memory(bed: &mut Bed, n: usize) -> Memory {
    bed.restart_proxy();
    let port = bed.proxy_port;
    let warm = proxy_session(port, "bench").await;
    warm.simple_query("SELECT 1").await.unwrap();
    drop(warm);
    // Let the warm-up session end before taking the baseline.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut baseline = rss_kib(bed.proxy.pid());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = rss_kib(bed.proxy.pid());
        if now == baseline {
            break;
        }
        baseline = now;
    }
    let mut held = Vec::with_capacity(n);
    let mut stopped_because = None;
    while held.len() < n {
        let avail = mem_available_kib();
        if avail < 3 << 20 {
            stopped_because = Some(format!(
                "MemAvailable fell to {} MiB with {} PostgreSQL backends open",
                avail >> 10,
                held.len()
            ));
            break;
        }
        let batch = (n - held.len()).min(250);
        let mut opened: Vec<tokio_postgres::Client> = futures_util::stream::iter(0..batch)
            .map(|_| async move {
                let c = proxy_session(port, "bench").await;
                c.simple_query("SELECT 1").await.unwrap();
                c
            })
            .buffer_unordered(16)
            .collect()
            .await;
        held.append(&mut opened);
    }
    let loaded = rss_kib(bed.proxy.pid());
    let m = Memory {
        wanted: n,
        sessions: held.len(),
        baseline_kib: baseline,
        loaded_kib: loaded,
        stopped_because,
    };
    drop(held);
    m
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        }
        _ => "-".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// Why: how far a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Met,
    /// Missed the target, but within the acceptable floor.
    Floor,
    Missed,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::Floor => "floor only",
            Status::Missed => "MISSED",
        }
    }
}

/// Why: one acceptance target and whether this run met it.
struct Check {
    what: String,
    status: Status,
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.4}"),
        _ => "null".into(),
    }
}

fn report(
    plan: &Plan,
    bouncer: Option<&str>,
    rows: &[Row],
    storm: Option<&Storm>,
    mem: Option<&Memory>,
    checks: &[Check],
) -> (String, String) {
    let mut t = String::new();
    writeln!(
        t,
        "pgbouncer: {}\n",
        bouncer.unwrap_or("not found (column empty)")
    )
    .unwrap();
    writeln!(
        t,
        "| scenario | pooling | unit | direct | proxy | pgbouncer | proxy/direct | proxy/pgbouncer |"
    )
    .unwrap();
    writeln!(t, "|---|---|---|---:|---:|---:|---:|---:|").unwrap();
    for r in rows {
        let (d, p, b) = (
            r.get(Target::Direct),
            r.get(Target::Proxy),
            r.get(Target::PgBouncer),
        );
        writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.pooling.label(),
            r.unit,
            fmt_num(d),
            fmt_num(p),
            fmt_num(b),
            fmt_num(ratio(p, d)),
            fmt_num(ratio(p, b)),
        )
        .unwrap();
    }
    t.push('\n');
    if let Some(storm) = storm {
        writeln!(
            t,
            "cold storm (relay, no pool): {} concurrent first logins over {STORM_IDENTITIES} identities: \
             {} GetClusterCredentials calls, login p50 {:.1} ms, p99 {:.1} ms, all in {:.0} ms",
            storm.logins, storm.api_calls, storm.p50_ms, storm.p99_ms, storm.wall_ms
        )
        .unwrap();
    }
    if let Some(mem) = mem {
        writeln!(
        t,
        "idle memory (relay, no pool): {} relayed sessions (wanted {}): proxy RSS {} KiB -> {} KiB, {:.1} KiB per session{}",
        mem.sessions,
        mem.wanted,
        mem.baseline_kib,
        mem.loaded_kib,
        mem.per_session_kib(),
        mem.stopped_because
            .as_ref()
            .map(|s| format!(" (stopped: {s})"))
            .unwrap_or_default()
    )
    .unwrap();
    }
    for c in checks {
        writeln!(t, "[{}] {}", c.status.word(), c.what).unwrap();
    }

    let mut j = String::from("{\n");
    writeln!(
        j,
        "  \"mode\": \"{}\",\n  \"reps\": {},\n  \"pgbench_secs\": {},\n  \"copy_bytes\": {},\n  \
         \"pool_size\": {POOL_SIZE},\n  \"pgbouncer\": {},",
        if plan.full { "full" } else { "smoke" },
        plan.reps,
        plan.secs,
        plan.copy_bytes,
        bouncer
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "null".into())
    )
    .unwrap();
    j.push_str("  \"scenarios\": [\n");
    for (i, r) in rows.iter().enumerate() {
        let (d, p, b) = (
            r.get(Target::Direct),
            r.get(Target::Proxy),
            r.get(Target::PgBouncer),
        );
        writeln!(
            j,
            "    {{\"name\": \"{}\", \"pooling\": \"{}\", \"proxy_pool_mode\": \"{}\", \"unit\": \"{}\", \
             \"higher_is_better\": {}, \"direct\": {}, \"proxy\": {}, \"pgbouncer\": {}, \
             \"proxy_over_direct\": {}, \"proxy_over_pgbouncer\": {}}}{}",
            r.name,
            r.pooling.label(),
            r.pooling.proxy_mode(),
            r.unit,
            r.higher_is_better,
            json_num(d),
            json_num(p),
            json_num(b),
            json_num(ratio(p, d)),
            json_num(ratio(p, b)),
            if i + 1 < rows.len() { "," } else { "" }
        )
        .unwrap();
    }
    j.push_str("  ],\n");
    if let Some(storm) = storm {
        writeln!(
        j,
        "  \"cold_storm\": {{\"logins\": {}, \"identities\": {STORM_IDENTITIES}, \"get_cluster_credentials_calls\": {}, \
         \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"wall_ms\": {:.1}}},",
        storm.logins, storm.api_calls, storm.p50_ms, storm.p99_ms, storm.wall_ms
    )
    .unwrap();
    }
    if let Some(mem) = mem {
        writeln!(
        j,
        "  \"idle_memory\": {{\"wanted\": {}, \"sessions\": {}, \"baseline_kib\": {}, \"loaded_kib\": {}, \
         \"per_session_kib\": {:.3}, \"stopped_because\": {}}},",
        mem.wanted,
        mem.sessions,
        mem.baseline_kib,
        mem.loaded_kib,
        mem.per_session_kib(),
        mem.stopped_because
            .as_ref()
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "null".into())
    )
    .unwrap();
    }
    j.push_str("  \"targets\": [\n");
    for (i, c) in checks.iter().enumerate() {
        writeln!(
            j,
            "    {{\"what\": {:?}, \"met\": {}, \"status\": \"{}\"}}{}",
            c.what,
            c.status == Status::Met,
            c.status.word(),
            if i + 1 < checks.len() { "," } else { "" }
        )
        .unwrap();
    }
    j.push_str("  ]\n}\n");
    (t, j)
}

fn checks(rows: &[Row], storm: Option<&Storm>, mem: Option<&Memory>) -> Vec<Check> {
    let mut v = vec![];
    if let (Some(storm), Some(mem)) = (storm, mem) {
        v.extend(relay_checks(rows, storm, mem));
    }
    if rows.iter().any(|r| r.pooling != Pooling::Relay) {
        v.extend(pooled_checks(rows));
    }
    v
}

fn relay_checks(rows: &[Row], storm: &Storm, mem: &Memory) -> Vec<Check> {
    let row = |n: &str, pooling: Pooling| {
        rows.iter()
            .find(|r| r.name == n && r.pooling == pooling)
            .unwrap()
    };
    let p = |r: &Row| r.get(Target::Proxy);
    let d = |r: &Row| r.get(Target::Direct);
    let b = |r: &Row| r.get(Target::PgBouncer);
    let ge = |x: Option<f64>, y: Option<f64>, k: f64| match (x, y) {
        (Some(x), Some(y)) => x >= k * y,
        _ => false,
    };
    let met = |ok: bool| if ok { Status::Met } else { Status::Missed };
    let tp8 = row("pgbench -S -c 8", Pooling::Relay);
    let conn = row("pgbench -C -c 1 (connect)", Pooling::Relay);
    let mut v = vec![
        Check {
            what: "relay throughput at 8 clients >= 0.95x direct".into(),
            status: met(ge(p(tp8), d(tp8), 0.95)),
        },
        Check {
            what: "relay throughput at 8 clients >= 1.3x PgBouncer".into(),
            status: met(ge(p(tp8), b(tp8), 1.3)),
        },
        Check {
            what: "warm-cache connect time <= direct + 1 ms".into(),
            status: met(matches!((p(conn), d(conn)), (Some(x), Some(y)) if x <= y + 1.0)),
        },
        Check {
            what: format!(
                "exactly one GetClusterCredentials call per identity in the cold storm ({}/{STORM_IDENTITIES})",
                storm.api_calls
            ),
            status: met(storm.api_calls == STORM_IDENTITIES as u64),
        },
        Check {
            what: format!(
                "idle session <= 64 KiB of proxy memory ({:.1} KiB)",
                mem.per_session_kib()
            ),
            status: met(mem.per_session_kib() <= 64.0),
        },
    ];
    for n in ["COPY out", "COPY in"] {
        let r = row(n, Pooling::Relay);
        v.push(Check {
            what: format!("bulk {n} >= 0.95x direct"),
            status: met(ge(p(r), d(r), 0.95)),
        });
    }
    v
}

fn pooled_checks(rows: &[Row]) -> Vec<Check> {
    let row = |n: &str, pooling: Pooling| {
        rows.iter()
            .find(|r| r.name == n && r.pooling == pooling)
            .unwrap()
    };
    let p = |r: &Row| r.get(Target::Proxy);
    let b = |r: &Row| r.get(Target::PgBouncer);
    let met = |ok: bool| if ok { Status::Met } else { Status::Missed };
    let mut v = vec![];
    // Pooled targets against PgBouncer: (row, pooling, target ratio, floor ratio).
    let show = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}x"));
    for (n, pooling) in [
        ("pgbench -S -c 64", Pooling::Transaction),
        ("pgbench -S -c 64 -M prepared", Pooling::Transaction),
    ] {
        let r = row(n, pooling);
        let k = ratio(p(r), b(r));
        v.push(Check {
            what: format!(
                "{n}, {}: >= 1.2x PgBouncer (floor 1.0x): {}",
                pooling.label(),
                show(k)
            ),
            status: match k {
                Some(k) if k >= 1.2 => Status::Met,
                Some(k) if k >= 1.0 => Status::Floor,
                _ => Status::Missed,
            },
        });
    }
    let cpu = row(
        "pgbench -S -c 64: CPU, pooler process user+system",
        Pooling::Transaction,
    );
    let k = ratio(p(cpu), b(cpu));
    v.push(Check {
        what: format!(
            "pooler CPU per transaction, {}: <= 0.8x PgBouncer (floor 1.0x): {}",
            Pooling::Transaction.label(),
            show(k)
        ),
        status: match k {
            Some(k) if k <= 0.8 => Status::Met,
            Some(k) if k <= 1.0 => Status::Floor,
            _ => Status::Missed,
        },
    });
    let conn = row("pgbench -C -c 1 (connect)", Pooling::Session);
    let k = ratio(p(conn), b(conn));
    v.push(Check {
        what: format!(
            "connect time, {}: <= PgBouncer (floor 1.5x): {}",
            Pooling::Session.label(),
            show(k)
        ),
        status: match k {
            Some(k) if k <= 1.0 => Status::Met,
            Some(k) if k <= 1.5 => Status::Floor,
            _ => Status::Missed,
        },
    });
    let logins = rows
        .iter()
        .find(|r| r.unit == "logins")
        .and_then(|r| r.get(Target::Proxy));
    v.push(Check {
        what: format!(
            "{LOGINS_CLIENTS} client connections, {}: <= 8 cluster logins ({})",
            Pooling::Transaction.label(),
            fmt_num(logins)
        ),
        status: met(logins.is_some_and(|n| n <= 8.0)),
    });
    v
}

fn main() {
    let plan = Plan::from_args();
    let nofile = raise_nofile();
    eprintln!(
        "bench mode: {} (proxy binary {}, open-file limit {nofile})",
        if plan.full { "full" } else { "smoke" },
        proxy_bin().display()
    );
    if plan.full {
        assert!(
            nofile as usize > 2 * plan.sessions + 1000,
            "RLIMIT_NOFILE {nofile} is too low for {} sessions",
            plan.sessions
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Everything runs in the main thread's block_on, so child processes (PDEATHSIG) live as long as we do.
    rt.block_on(async move {
        let started = Instant::now();
        let mut bed = Bed::start(&plan).await;
        match &bed.bouncer_version {
            Some(v) => eprintln!("pgbouncer: {v}"),
            None => eprintln!(
                "pgbouncer not installed: its column stays empty (apt-get install pgbouncer)"
            ),
        }
        // Warm the proxy's credential cache for `bench`.
        proxy_session(bed.proxy_port, "bench")
            .await
            .simple_query("SELECT 1")
            .await
            .unwrap();

        let mut rows = Vec::new();
        let mut storm = None;
        let mut mem = None;
        if plan.relay {
            // Relay, no pool: what these scenarios measured before pooling (the proxy's
            // own relay cost, one server login per client).
            for (c, prepared) in [(1, false), (8, false), (64, false), (8, true)] {
                rows.extend(throughput(&bed, &plan, Pooling::Relay, c, prepared).await);
            }
            rows.push(connect_cost(&bed, &plan, Pooling::Relay).await);
            let data = bed.dir.path().join("copy.tsv");
            rows.push(copy_out(&bed, &plan, &data).await);
            rows.push(copy_in(&bed, &plan, &data).await);
            let _ = std::fs::remove_file(&data);
        }
        if plan.pooled {
            // Pooled: the proxy against PgBouncer in the same mode, pools of POOL_SIZE.
            for prepared in [false, true] {
                rows.extend(throughput(&bed, &plan, Pooling::Transaction, 64, prepared).await);
            }
            rows.push(connect_cost(&bed, &plan, Pooling::Session).await);
            rows.push(cluster_logins(&bed).await);
        }
        // The pooled servers would only crowd the cluster during the storm and idle sessions.
        bed.pooled_proxies.clear();
        bed.pooled_bouncer = None;
        if plan.relay {
            let s = cold_storm(&bed, plan.storm).await;
            eprintln!(
                "  cold storm: {} calls, p50 {:.1} ms, p99 {:.1} ms",
                s.api_calls, s.p50_ms, s.p99_ms
            );
            storm = Some(s);
            let m = idle_memory(&mut bed, plan.sessions).await;
            eprintln!("  idle memory: {:.1} KiB/session", m.per_session_kib());
            mem = Some(m);
        }

        let checks = checks(&rows, storm.as_ref(), mem.as_ref());
        let (table, json) = report(
            &plan,
            bed.bouncer_version.as_deref(),
            &rows,
            storm.as_ref(),
            mem.as_ref(),
            &checks,
        );
        if !plan.full {
            println!("\nsmoke mode (debug build, tiny sizes): figures only show that every scenario runs");
        }
        println!("\n{table}");
        println!("(total {:.0} s)", started.elapsed().as_secs_f64());
        let name = match (plan.relay, plan.pooled, plan.full) {
            (true, false, _) => "only-relay.json",
            (false, true, _) => "only-pooled.json",
            (_, _, true) => "latest.json",
            _ => "smoke.json",
        };
        let out = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("bench/results")
            .join(name);
        std::fs::write(&out, &json).unwrap();
        println!("wrote {}", out.display());
        // Smoke mode checks only what must hold anywhere: the script works end to end.
        if let Some(storm) = &storm {
            assert_eq!(
                storm.api_calls, STORM_IDENTITIES as u64,
                "single flight per identity"
            );
        }
        if let Some(mem) = &mem {
            assert_eq!(mem.sessions, mem.wanted);
        }
        drop(bed);
    });
}
