//! Process plumbing: the initdb template, file ownership, spawning and stopping postgres.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{find_bin_dir, io_ctx, LocalPgError};

/// How many lines of the server log an error message carries.
const LOG_TAIL_LINES: usize = 30;
/// Overall time a server gets to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Interval between readiness probes.
const READY_POLL: Duration = Duration::from_millis(50);
/// Time a server gets to exit after SIGQUIT before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// The account (uid, gid) servers run as; `None` means the current user.
pub(super) type RunAs = Option<(u32, u32)>;

/// Decides who runs initdb/postgres: `postgres` when we are root, else us.
fn run_as() -> Result<RunAs, LocalPgError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("postgres")
        .map_err(LocalPgError::UserLookup)?
        .ok_or(LocalPgError::NoPostgresUser)?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// Hands a path to the server's account (no-op when not root).
fn chown(path: &Path, who: RunAs) -> Result<(), LocalPgError> {
    match who {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(io_ctx(format!("chown {}", path.display()))),
        None => Ok(()),
    }
}

/// Sets a path's permission bits.
pub(super) fn chmod(path: &Path, mode: u32) -> Result<(), LocalPgError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_ctx(format!("chmod {}", path.display())))
}

/// Writes a file with the given mode, owned by the server's account.
pub(super) fn write_file(
    path: &Path,
    contents: &str,
    mode: u32,
    who: RunAs,
) -> Result<(), LocalPgError> {
    std::fs::write(path, contents).map_err(io_ctx(format!("writing {}", path.display())))?;
    chmod(path, mode)?;
    chown(path, who)
}

/// Creates a 0700 directory under /tmp (short paths keep the unix socket
/// path under its length limit) owned by the server's account.
pub(super) fn private_dir(prefix: &str, who: RunAs) -> Result<tempfile::TempDir, LocalPgError> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .map_err(io_ctx("creating a directory under /tmp"))?;
    chmod(dir.path(), 0o700)?;
    chown(dir.path(), who)?;
    Ok(dir)
}

/// Runs a helper program to completion, failing with its output.
pub(super) async fn run_checked(cmd: &mut Command, program: &str) -> Result<(), LocalPgError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io_ctx(format!("running {program}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(LocalPgError::Command {
        program: program.to_string(),
        status: out.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// The initdb'd data directory every cluster of this process is copied from.
pub(super) struct Template {
    /// Keeps the directory alive; removed at exit by [`remove_template`].
    _dir: tempfile::TempDir,
    /// The template data directory.
    pub(super) data: PathBuf,
    /// Where `postgres` lives.
    pub(super) bin_dir: PathBuf,
    /// Who runs the servers.
    pub(super) who: RunAs,
}

/// The per-process template, made on first use.
static TEMPLATE: tokio::sync::OnceCell<Template> = tokio::sync::OnceCell::const_new();
/// The template's path, for the exit-time cleanup.
static TEMPLATE_PATH: OnceLock<PathBuf> = OnceLock::new();

/// `atexit` handler: statics are never dropped, so remove the template here.
extern "C" fn remove_template() {
    if let Some(path) = TEMPLATE_PATH.get() {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Returns the template, running initdb on first use.
pub(super) async fn template() -> Result<&'static Template, LocalPgError> {
    TEMPLATE.get_or_try_init(make_template).await
}

/// Runs initdb into a fresh directory.
async fn make_template() -> Result<Template, LocalPgError> {
    let bin_dir = find_bin_dir()?;
    let who = run_as()?;
    let dir = private_dir("localpg-template-", who)?;
    let data = dir.path().join("data");
    let mut cmd = Command::new(bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "--no-sync"])
        .env("LC_ALL", "C")
        .current_dir(dir.path());
    if let Some((uid, gid)) = who {
        cmd.uid(uid).gid(gid);
    }
    let started = Instant::now();
    run_checked(&mut cmd, "initdb").await?;
    tracing::debug!(elapsed = ?started.elapsed(), path = %data.display(), "localpg: template ready");
    if TEMPLATE_PATH.set(dir.path().to_path_buf()).is_ok() {
        // SAFETY: atexit only records a function pointer; the handler is a
        // plain `extern "C" fn` that cannot unwind.
        unsafe {
            nix::libc::atexit(remove_template);
        }
    }
    Ok(Template {
        _dir: dir,
        data,
        bin_dir,
        who,
    })
}

/// Picks a currently free TCP port on 127.0.0.1.
pub(super) fn free_port() -> Result<u16, LocalPgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(io_ctx("binding 127.0.0.1:0 to pick a port"))?;
    let addr = listener
        .local_addr()
        .map_err(io_ctx("reading the picked port"))?;
    Ok(addr.port())
}

/// Quotes a postgresql.conf string value.
pub(super) fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Reads the last [`LOG_TAIL_LINES`] lines of a log file.
pub(super) fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(could not read log: {e})"),
    }
}

/// Sends SIGQUIT (immediate shutdown) to a process, ignoring "already gone".
fn sigquit(child: &Child) {
    signal(child, Signal::SIGQUIT);
}

/// Sends `sig` to a process, ignoring "already gone".
fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Fast shutdown of a server child (SIGINT: sessions ended, checkpoint written), bounded
/// wait, then the immediate shutdown of [`shutdown_child`].
pub(super) async fn shutdown_child_fast(child: &mut Child) {
    signal(child, Signal::SIGINT);
    if tokio::time::timeout(STOP_DEADLINE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "localpg: postgres ignored SIGINT for {STOP_DEADLINE:?}; shutting it down immediately"
        );
        shutdown_child(child).await;
    }
}

/// Blocking variant of [`shutdown_child`] for `Drop`: polls for the exit.
pub(super) fn shutdown_child_blocking(child: &mut Child) {
    sigquit(child);
    let deadline = Instant::now() + STOP_DEADLINE;
    let mut killed = false;
    loop {
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return,
        }
        if Instant::now() >= deadline {
            if killed {
                return;
            }
            tracing::warn!("localpg: postgres ignored SIGQUIT for {STOP_DEADLINE:?}; killing it");
            let _ = child.start_kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Immediate shutdown of a server child: SIGQUIT, bounded wait, then SIGKILL.
pub(super) async fn shutdown_child(child: &mut Child) {
    sigquit(child);
    if tokio::time::timeout(STOP_DEADLINE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("localpg: postgres ignored SIGQUIT for {STOP_DEADLINE:?}; killing it");
        let _ = child.kill().await;
    }
}

/// Spawns postgres and waits for readiness; on failure returns the reason and
/// whether the port was taken (worth retrying with another port).
pub(super) async fn launch(
    tpl: &Template,
    data_dir: &Path,
    socket_dir: &Path,
    port: u16,
    log_path: &Path,
) -> Result<Child, (String, bool)> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| (format!("opening {}: {e}", log_path.display()), false))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_out = log
        .try_clone()
        .map_err(|e| (format!("duplicating the log handle: {e}"), false))?;

    let mut cmd = Command::new(tpl.bin_dir.join("postgres"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-c", "log_destination=stderr"])
        .current_dir(socket_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_out))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if let Some((uid, gid)) = tpl.who {
        cmd.uid(uid).gid(gid);
    }
    let parent = std::process::id();
    // SAFETY: runs in the forked child before exec (after the uid switch, which
    // would clear PDEATHSIG); it only makes async-signal-safe syscalls (prctl,
    // getppid) and builds errors from raw errno without allocating.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT).map_err(io::Error::from)?;
            // The parent may have died before prctl: then no signal would come.
            if u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
    // Spawned here, on the caller's thread (PDEATHSIG follows the thread).
    let mut child = cmd
        .spawn()
        .map_err(|e| (format!("spawning postgres: {e}"), false))?;

    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(socket_dir)
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(2));
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let new_log = std::fs::read(log_path)
                    .ok()
                    .and_then(|b| b.get(log_start as usize..).map(|s| s.to_vec()))
                    .unwrap_or_default();
                let new_log = String::from_utf8_lossy(&new_log);
                let port_taken = new_log.contains("Address already in use")
                    || new_log.contains("could not create any TCP/IP sockets");
                return Err((
                    format!("postgres exited ({status}) before accepting connections"),
                    port_taken,
                ));
            }
            Ok(None) => {}
            Err(e) => {
                shutdown_child(&mut child).await;
                return Err((format!("waiting for postgres: {e}"), false));
            }
        }
        if let Ok((client, conn)) = cfg.connect(tokio_postgres::NoTls).await {
            // Polling the connection lets the dropped client send Terminate.
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
            return Ok(child);
        }
        if Instant::now() >= deadline {
            shutdown_child(&mut child).await;
            return Err((
                format!("not accepting connections after {READY_DEADLINE:?}"),
                false,
            ));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}
