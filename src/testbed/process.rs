//! The proxy binary run against a bed, as an operator runs it: a config file, the bed's
//! AWS key in the environment and nothing from the user's AWS files.

use super::{BedError, ACCESS_KEY, SECRET_KEY};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The line the proxy logs (at info) once it accepts clients, with `addr=`.
pub const LISTENING: &str = "redshift-iam-proxy listening";
/// The line the proxy logs (at info) once its admin HTTP listener is bound, with `addr=`.
pub const ADMIN_BOUND: &str = "admin HTTP bound";

/// `bin` (the proxy binary) with the bed's AWS key in the environment and the user's AWS
/// files and instance metadata out of reach; `scratch` holds nothing but is named as the
/// AWS config and credentials files.
pub fn proxy_command(bin: &Path, scratch: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", scratch.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", scratch.join("none"));
    cmd
}

/// Why: a test or benchmark that needs the real binary (signals, exit codes, logs, RSS)
/// gets it started, ready and killed on drop in one place.
pub struct ProxyProcess {
    child: Child,
    /// The address clients connect to.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    path: PathBuf,
    /// Holds the config file (and names the absent AWS files) while the process runs.
    _dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Writes `config_toml` to a file and runs `bin --config FILE` with `RUST_LOG=rust_log`
    /// (`None`: unset, so the config's `log_filter` decides), collecting stderr lines.
    /// Ready once the `listening` line names the address, or (for a fixed `listen` port,
    /// when that line is filtered out) once the port accepts connections.
    pub fn start(bin: &Path, config_toml: &str, rust_log: Option<&str>) -> Result<Self, BedError> {
        let dir =
            tempfile::tempdir().map_err(|e| BedError::new("make a temporary directory", e))?;
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, config_toml)
            .map_err(|e| BedError::new(format!("write {}", path.display()), e))?;
        let fixed: Option<SocketAddr> = config_toml
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("listen")?.as_str()?.parse().ok())
            .filter(|a: &SocketAddr| a.port() != 0);
        let mut cmd = proxy_command(bin, dir.path());
        match rust_log {
            Some(l) => cmd.env("RUST_LOG", l),
            None => cmd.env_remove("RUST_LOG"),
        };
        let mut child = cmd
            .arg("--config")
            .arg(&path)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| BedError::new(format!("run {}", bin.display()), e))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = sink.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        let mut proc = ProxyProcess {
            child,
            addr: ([127, 0, 0, 1], 0).into(),
            log,
            path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        proc.addr = loop {
            if let Some(addr) = proc.logged_addr(LISTENING) {
                break addr;
            }
            if let Some(addr) = fixed {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    break addr;
                }
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                return Err(BedError::msg(format!(
                    "the proxy exited ({status}) before listening: {}",
                    proc.log_text()
                )));
            }
            if Instant::now() > deadline {
                return Err(BedError::msg(format!(
                    "the proxy did not listen within 30 s: {}",
                    proc.log_text()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(proc)
    }

    /// The address in the first log line containing `marker` (`addr=…` or `"addr":"…"`).
    pub fn logged_addr(&self, marker: &str) -> Option<SocketAddr> {
        let lines = self.log.lock().ok()?;
        let line = lines.iter().find(|l| l.contains(marker))?;
        let addr = match line.split("addr=").nth(1) {
            Some(a) => a.split_whitespace().next()?,
            // JSON log lines.
            None => line.split("\"addr\":\"").nth(1)?.split('"').next()?,
        };
        addr.parse().ok()
    }

    /// Waits (up to 30 s) for the address a log line with `marker` names; panics naming
    /// the marker (test helper).
    pub fn wait_logged_addr(&self, marker: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(a) = self.logged_addr(marker) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {marker:?}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// libpq-style connection string to the proxy (no password, no TLS).
    pub fn conninfo(&self, user: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db}",
            self.addr.port()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The config file the proxy reads (rewrite it, then SIGHUP, to reload).
    pub fn config_path(&self) -> &Path {
        &self.path
    }

    /// Everything the proxy logged so far, one line each.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        self.log_lines().join("\n")
    }

    /// Waits (up to 15 s) for a log line containing every needle; panics naming them.
    pub async fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(l) = self
                .log_lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needles:?}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The exit status if the proxy has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits for the proxy to exit; panics if it has not within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "proxy did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
