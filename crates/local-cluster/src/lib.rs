//! Throwaway local PostgreSQL clusters (TLS + SCRAM password auth), the stand-in
//! for Redshift in integration tests and the `demo` subcommand.
//!
//! `initdb` runs once per process into a template directory; every
//! [`LocalPg::start`] copies it (`cp -a`), writes fresh TLS material and config,
//! and runs `postgres -D` as a direct child that dies with us (PDEATHSIG).
//! When the process runs as root, initdb/postgres run as the `postgres` user.
//!
//! The proxy's test bed puts a Redshift-like front (TLS only, auth code 13,
//! `server_version` 8.0.2, Redshift's refusals) in front of one.
//!
//! A cluster can be stopped (fast shutdown) and started again on the same port and data
//! directory through a [`PgPower`] handle: how the credential-API emulator makes a paused
//! cluster refuse connections and a resumed one take them again.

mod ca;
mod server;
#[cfg(test)]
mod tests;

pub use ca::TestCa;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use server::{
    chmod, conf_quote, free_port, launch, log_tail, private_dir, run_checked, shutdown_child,
    shutdown_child_blocking, shutdown_child_fast, template, write_file,
};

/// Start attempts (each with a fresh port) when the chosen port was taken.
const PORT_ATTEMPTS: usize = 3;
/// Names the server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a local cluster could not be prepared, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    /// No PostgreSQL server installation was found.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin \
         or on PATH; install them with `apt-get install postgresql`"
    )]
    BinariesNotFound,
    /// Running as root, but there is no account to hand the server to.
    #[error(
        "running as root, but there is no `postgres` system user to run initdb/postgres as \
         (it comes with `apt-get install postgresql`)"
    )]
    NoPostgresUser,
    /// The `postgres` user lookup itself failed.
    #[error("looking up the `postgres` user: {0}")]
    UserLookup(#[source] nix::Error),
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Generating a certificate or key failed.
    #[error("generating test certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// A helper program (initdb, cp) failed.
    #[error("{program} failed ({status}):\n{output}")]
    Command {
        /// The program that failed.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr.
        output: String,
    },
    /// The server exited or never became ready.
    #[error("postgres did not start: {reason}\n--- last lines of the server log ---\n{tail}")]
    Start {
        /// What went wrong.
        reason: String,
        /// The server log file.
        log: PathBuf,
        /// The last lines of the server log.
        tail: String,
    },
    /// Connecting to the running cluster failed.
    #[error("connecting to the local cluster: {0}")]
    Connect(#[from] tokio_postgres::Error),
}

/// Builds an [`LocalPgError::Io`] mapper with a context message.
/// Wraps an I/O error with what was being done (also used by servers built on a cluster).
pub fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> LocalPgError {
    let context = context.into();
    move |source| LocalPgError::Io { context, source }
}

/// Knobs for one cluster; the defaults suit most tests.
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// pg_hba.conf lines placed before the default TLS/SCRAM lines.
    pub hba_extra: Vec<String>,
    /// `max_connections` (default 200).
    pub max_connections: u32,
    /// postgresql.conf lines appended after the generated settings.
    pub extra_conf: Vec<String>,
}

impl Default for LocalPgOptions {
    fn default() -> Self {
        LocalPgOptions {
            hba_extra: Vec::new(),
            max_connections: 200,
            extra_conf: Vec::new(),
        }
    }
}

/// Finds the PostgreSQL server binaries: the newest `/usr/lib/postgresql/*/bin`
/// holding `initdb` and `postgres`, else the first such directory on `PATH`.
pub fn find_bin_dir() -> Result<PathBuf, LocalPgError> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(|n| {
                n.split('.')
                    .map(|p| p.parse().ok())
                    .collect::<Option<Vec<u64>>>()
            }) else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_both(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|d| has_both(d)))
        .ok_or(LocalPgError::BinariesNotFound)
}

/// A running throwaway cluster; stopping or dropping it kills the server and deletes its files.
pub struct LocalPg {
    /// The postmaster, shared with [`PgPower`] handles.
    server: Arc<Server>,
    /// Socket dir holding data dir and log; `None` once removed.
    dir: Option<tempfile::TempDir>,
    /// World-readable directory holding `ca.crt`.
    ca_dir: Option<tempfile::TempDir>,
    /// Path of `dir` (the unix socket directory).
    socket_dir: PathBuf,
    /// The data directory.
    data_dir: PathBuf,
    /// Path of the CA certificate file.
    ca_cert_path: PathBuf,
    /// TCP port on 127.0.0.1.
    port: u16,
    /// The CA that signed the server certificate.
    ca: TestCa,
}

impl std::fmt::Debug for LocalPg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPg")
            .field("pid", &self.pid())
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Why: the postmaster of one cluster and what it takes to start it again, shared by the
/// cluster and its [`PgPower`] handles.
struct Server {
    /// The postmaster; `None` while stopped.
    child: Mutex<Option<Child>>,
    /// The postmaster's pid (0 while stopped).
    pid: AtomicU32,
    /// Serializes stops and starts.
    op: tokio::sync::Mutex<()>,
    /// Set when the cluster is stopped for good (its files are going away): no more starts.
    retired: AtomicBool,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    log_path: PathBuf,
}

impl Server {
    fn take_child(&self) -> Option<Child> {
        let child = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.pid.store(0, Ordering::Relaxed);
        child
    }

    fn running(&self) -> bool {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

/// Why: stops and starts one cluster's server while its files stay (a paused and resumed
/// cluster), without owning the cluster: cheap to clone and hand to an emulator.
///
/// A start after the cluster was stopped or dropped for good fails. The server is a child of
/// the calling *thread* (PDEATHSIG): start it from a long-lived async context (a tokio worker
/// or the test's own thread), never from `spawn_blocking`.
#[derive(Clone)]
pub struct PgPower(Arc<Server>);

impl std::fmt::Debug for PgPower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPower")
            .field("port", &self.0.port)
            .field("running", &self.0.running())
            .finish()
    }
}

impl PgPower {
    /// Fast shutdown (SIGINT: sessions are ended, a checkpoint is written), waits for the server
    /// to exit; the data directory stays. Returns at once when it is not running.
    pub async fn stop(&self) {
        let _op = self.0.op.lock().await;
        if let Some(mut child) = self.0.take_child() {
            shutdown_child_fast(&mut child).await;
            tracing::debug!(
                port = self.0.port,
                "localpg: cluster stopped (fast shutdown)"
            );
        }
    }

    /// Starts the server again on the same port and data directory and waits until it
    /// accepts connections. Returns at once when it is running.
    pub async fn start(&self) -> Result<(), LocalPgError> {
        let _op = self.0.op.lock().await;
        if self.0.retired.load(Ordering::Acquire) {
            return Err(LocalPgError::Start {
                reason: "the cluster was stopped for good".into(),
                log: self.0.log_path.clone(),
                tail: String::new(),
            });
        }
        if self.0.running() {
            return Ok(());
        }
        let tpl = template().await?;
        let s = &self.0;
        let child = launch(tpl, &s.data_dir, &s.socket_dir, s.port, &s.log_path)
            .await
            .map_err(|(reason, _)| LocalPgError::Start {
                reason,
                tail: log_tail(&s.log_path),
                log: s.log_path.clone(),
            })?;
        let pid = child.id().unwrap_or(0);
        // Dropped while starting: the new server must not outlive its files.
        let orphan = {
            let mut slot = s.child.lock().unwrap_or_else(|p| p.into_inner());
            if s.retired.load(Ordering::Acquire) {
                Some(child)
            } else {
                *slot = Some(child);
                s.pid.store(pid, Ordering::Relaxed);
                None
            }
        };
        if let Some(mut child) = orphan {
            shutdown_child(&mut child).await;
            return Err(LocalPgError::Start {
                reason: "the cluster was stopped for good while starting".into(),
                log: s.log_path.clone(),
                tail: String::new(),
            });
        }
        tracing::debug!(port = s.port, pid, "localpg: cluster started again");
        Ok(())
    }

    /// Whether the server is running now.
    pub fn is_running(&self) -> bool {
        self.0.running()
    }

    /// The TCP port the server listens on when running.
    pub fn port(&self) -> u16 {
        self.0.port
    }
}

impl LocalPg {
    /// Starts a fresh cluster and waits until it accepts connections.
    ///
    /// The server is a child of the calling *thread* (PDEATHSIG): call this from
    /// a long-lived async context, never from `spawn_blocking`.
    pub async fn start(opts: LocalPgOptions) -> Result<LocalPg, LocalPgError> {
        let started = Instant::now();
        let tpl = template().await?;
        let who = tpl.who;
        let dir = private_dir("localpg-", who)?;
        let socket_dir = dir.path().to_path_buf();
        let data_dir = socket_dir.join("data");
        run_checked(
            Command::new("cp").arg("-a").arg(&tpl.data).arg(&data_dir),
            "cp -a",
        )
        .await?;

        let ca = TestCa::new()?;
        let (crt, key) = ca.issue(&SERVER_NAMES)?;
        write_file(&data_dir.join("server.crt"), &crt, 0o644, who)?;
        write_file(&data_dir.join("server.key"), &key, 0o600, who)?;

        let ca_dir = tempfile::Builder::new()
            .prefix("localpg-ca-")
            .tempdir_in("/tmp")
            .map_err(io_ctx("creating the CA directory under /tmp"))?;
        chmod(ca_dir.path(), 0o755)?;
        let ca_cert_path = ca_dir.path().join("ca.crt");
        write_file(&ca_cert_path, &ca.cert_pem, 0o644, None)?;

        let mut hba = String::from("local all all trust\n");
        for line in &opts.hba_extra {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str(
            "hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n\
             host all all all reject\n",
        );
        write_file(&data_dir.join("pg_hba.conf"), &hba, 0o600, who)?;

        let conf_path = data_dir.join("postgresql.conf");
        let base_conf = std::fs::read_to_string(&conf_path)
            .map_err(io_ctx(format!("reading {}", conf_path.display())))?;
        let log_path = socket_dir.join("postgres.log");

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let mut conf = base_conf.clone();
            conf.push_str(&format!(
                "\n# localpg\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
                 unix_socket_directories = {}\nssl = on\n\
                 ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                 password_encryption = 'scram-sha-256'\nmax_connections = {}\n\
                 fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                 shared_buffers = '32MB'\nlogging_collector = off\n\
                 log_destination = 'stderr'\nlog_min_messages = warning\n",
                conf_quote(&socket_dir.to_string_lossy()),
                opts.max_connections,
            ));
            for line in &opts.extra_conf {
                conf.push_str(line);
                conf.push('\n');
            }
            write_file(&conf_path, &conf, 0o600, who)?;

            match launch(tpl, &data_dir, &socket_dir, port, &log_path).await {
                Ok(child) => {
                    let pid = child.id().unwrap_or(0);
                    tracing::debug!(port, pid, elapsed = ?started.elapsed(), "localpg: cluster ready");
                    let server = Arc::new(Server {
                        child: Mutex::new(Some(child)),
                        pid: AtomicU32::new(pid),
                        op: tokio::sync::Mutex::new(()),
                        retired: AtomicBool::new(false),
                        data_dir: data_dir.clone(),
                        socket_dir: socket_dir.clone(),
                        port,
                        log_path: log_path.clone(),
                    });
                    return Ok(LocalPg {
                        server,
                        dir: Some(dir),
                        ca_dir: Some(ca_dir),
                        socket_dir,
                        data_dir,
                        ca_cert_path,
                        port,
                        ca,
                    });
                }
                Err((reason, port_taken)) if port_taken && attempt < PORT_ATTEMPTS => {
                    tracing::warn!(port, "localpg: port taken, retrying: {reason}");
                }
                Err((reason, _)) => {
                    return Err(LocalPgError::Start {
                        reason,
                        tail: log_tail(&log_path),
                        log: log_path,
                    })
                }
            }
        }
    }

    /// The postmaster's pid (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.server.pid.load(Ordering::Relaxed)
    }

    /// A handle that stops (fast shutdown) and starts this cluster's server, keeping its
    /// files: a paused cluster.
    pub fn power(&self) -> PgPower {
        PgPower(self.server.clone())
    }

    /// Host name for TCP clients; the server certificate is valid for it.
    pub fn host(&self) -> &str {
        "localhost"
    }

    /// TCP port (listening on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Unix socket directory (trust auth).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// The same CA certificate, as a world-readable file.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert_path
    }

    /// The CA that signed the server certificate (can issue more).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Superuser `postgres`, database `postgres`, over the unix socket.
    pub fn admin_config(&self) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .application_name("localpg-admin")
            .connect_timeout(Duration::from_secs(5));
        cfg
    }

    /// Connects as admin and spawns the connection task.
    pub async fn admin(&self) -> Result<tokio_postgres::Client, LocalPgError> {
        let (client, conn) = self.admin_config().connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("localpg: admin connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// The server log file (stderr of postgres).
    pub fn log_path(&self) -> PathBuf {
        self.socket_dir.join("postgres.log")
    }

    /// Immediate shutdown, waits for the server to exit, removes all files.
    pub async fn stop(mut self) {
        self.server.retired.store(true, Ordering::Release);
        let _op = self.server.op.lock().await;
        if let Some(mut child) = self.server.take_child() {
            shutdown_child(&mut child).await;
        }
        for dir in [self.dir.take(), self.ca_dir.take()].into_iter().flatten() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                tracing::warn!("localpg: removing {}: {e}", path.display());
            }
        }
    }
}

impl Drop for LocalPg {
    fn drop(&mut self) {
        self.server.retired.store(true, Ordering::Release);
        if let Some(mut child) = self.server.take_child() {
            shutdown_child_blocking(&mut child);
        }
        // The TempDirs remove themselves when the fields drop.
    }
}
