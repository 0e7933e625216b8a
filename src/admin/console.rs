//! The admin console: a client that connects with database `redshift_iam_proxy` as a
//! user in `[admin] users` (after the configured client authentication) talks to the
//! proxy itself, PgBouncer style. Simple query protocol only; results are ordinary
//! RowDescription/DataRow messages, so psql prints tables.
//!
//! Rows are composed with the `wire` helpers (text columns): the proxy already has
//! every message it needs there, and pulling in pgwire for five message types would
//! add a dependency for no behaviour.

use crate::base::stream::Stream;
use crate::cancel::CancelKey;
use crate::config::Config;
use crate::context::live::LiveConfig;
use crate::context::Shared;
use crate::wire;
use crate::wire::protocol::{frontend, sqlstate};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Every command, for the error that lists them.
pub const COMMANDS: &str = "SHOW POOLS | SHOW CLIENTS | SHOW SERVERS | SHOW STATS | SHOW TARGETS | SHOW CREDENTIALS | SHOW CONFIG | SHOW VERSION | RELOAD | PAUSE [pool] | RESUME [pool] | RECONNECT [pool] | KILL_CLIENT id";

/// One console connection.
pub struct Console<'a> {
    shared: &'a Arc<Shared>,
    live: Arc<LiveConfig>,
    stream: Stream,
    peer: SocketAddr,
    user: String,
    /// The verified principal of a token login.
    principal: Option<String>,
}

/// What one command answers.
enum Reply {
    Rows {
        columns: Vec<&'static str>,
        rows: Vec<Vec<Option<String>>>,
    },
    Done(String),
    Error(&'static str, String),
}

fn rows(columns: &[&'static str], rows: Vec<Vec<Option<String>>>) -> Reply {
    Reply::Rows {
        columns: columns.to_vec(),
        rows,
    }
}

fn s(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// "dbuser/dbname@target" → (dbuser, dbname).
fn split_label(label: &str) -> (String, String) {
    let (who, _) = label.rsplit_once('@').unwrap_or((label, ""));
    match who.split_once('/') {
        Some((u, d)) => (u.to_owned(), d.to_owned()),
        None => (who.to_owned(), String::new()),
    }
}

/// One console statement, parsed; [`Console::apply`] runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Show(Show),
    /// Drivers send these on connect; they change nothing here.
    Set,
    Reload,
    /// One pool (`dbuser/dbname@target`), or every pool.
    Pause(Option<String>),
    Resume(Option<String>),
    Reconnect(Option<String>),
    KillClient(u64),
}

/// What `SHOW` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Pools,
    Clients,
    Servers,
    Stats,
    Targets,
    Credentials,
    Config,
    Version,
}

/// A statement that is no command: the console answers `message` (SQLSTATE 42601) and
/// counts it under `counted_as`.
#[derive(Debug, PartialEq, Eq)]
struct NotACommand {
    counted_as: String,
    message: String,
}

impl Command {
    /// Parses one statement (no `;`): a verb in any case, then its argument, which may
    /// be quoted.
    fn parse(stmt: &str) -> Result<Command, NotACommand> {
        let verb = stmt
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let rest = stmt.trim_start().get(verb.len()..).unwrap_or("").trim();
        let arg = rest.trim_matches(|c| c == '"' || c == '\'');
        let arg = (!arg.is_empty()).then(|| arg.to_owned());
        let error = |counted_as: &str, message: String| NotACommand {
            counted_as: counted_as.to_owned(),
            message,
        };
        match verb.as_str() {
            "SHOW" => Show::parse(rest).map(Command::Show).ok_or_else(|| {
                error(
                    &format!("show_{}", rest.to_ascii_lowercase()),
                    format!("unknown admin console command \"SHOW {rest}\""),
                )
            }),
            "SET" => Ok(Command::Set),
            "RELOAD" => Ok(Command::Reload),
            "PAUSE" => Ok(Command::Pause(arg)),
            "RESUME" => Ok(Command::Resume(arg)),
            "RECONNECT" => Ok(Command::Reconnect(arg)),
            "KILL_CLIENT" => match arg.as_deref().and_then(|a| a.parse::<u64>().ok()) {
                Some(id) => Ok(Command::KillClient(id)),
                None => Err(error(
                    "kill_client",
                    "KILL_CLIENT needs a client id (see SHOW CLIENTS)".into(),
                )),
            },
            _ => Err(error(
                "unknown",
                format!("unknown admin console command {stmt:?}"),
            )),
        }
    }

    /// The `console_commands` metric's label (`SET` is not counted).
    fn counted_as(&self) -> Option<String> {
        Some(match self {
            Command::Show(what) => format!("show_{}", what.name()),
            Command::Set => return None,
            Command::Reload => "reload".into(),
            Command::Pause(_) => "pause".into(),
            Command::Resume(_) => "resume".into(),
            Command::Reconnect(_) => "reconnect".into(),
            Command::KillClient(_) => "kill_client".into(),
        })
    }
}

impl Show {
    fn parse(what: &str) -> Option<Show> {
        Some(match what.to_ascii_uppercase().as_str() {
            "POOLS" => Show::Pools,
            "CLIENTS" => Show::Clients,
            "SERVERS" => Show::Servers,
            "STATS" => Show::Stats,
            "TARGETS" => Show::Targets,
            "CREDENTIALS" => Show::Credentials,
            "CONFIG" => Show::Config,
            "VERSION" => Show::Version,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Show::Pools => "pools",
            Show::Clients => "clients",
            Show::Servers => "servers",
            Show::Stats => "stats",
            Show::Targets => "targets",
            Show::Credentials => "credentials",
            Show::Config => "config",
            Show::Version => "version",
        }
    }
}

impl<'a> Console<'a> {
    pub fn new(
        shared: &'a Arc<Shared>,
        live: &Arc<LiveConfig>,
        stream: Stream,
        peer: SocketAddr,
        user: &str,
        principal: Option<String>,
    ) -> Self {
        Console {
            shared,
            live: live.clone(),
            stream,
            peer,
            user: user.to_owned(),
            principal,
        }
    }

    /// Whether the client may use the console: its typed name is in `[admin] users`, or,
    /// when it proved who it is with a token, its principal matches an entry (a glob; the
    /// typed name of a token client counts for nothing).
    fn admitted(&self) -> bool {
        let users = &self.live.config.admin.users;
        match &self.principal {
            Some(p) => users
                .iter()
                .any(|u| crate::access::mapping::glob_match(u, p)),
            None => users.iter().any(|u| u == &self.user),
        }
    }

    /// Serves the console until the client leaves or the proxy stops.
    pub async fn run(mut self, leftover: BytesMut, _minor: u16) {
        if !self.admitted() {
            self.refuse().await;
            return;
        }
        let key = self.shared.cancels.register_attached(None);
        if self.stream.write_all(&self.greeting(&key)).await.is_err() {
            return;
        }
        tracing::info!(peer = %self.peer, user = %self.user, "admin console session opened");
        let mut reader = wire::MessageReader::with_buffered(1 << 20, leftover);
        let mut failed_extended = false;
        loop {
            let msg = tokio::select! {
                m = reader.read(&mut self.stream) => m,
                _ = self.shared.hard_stop.cancelled() => break,
            };
            let Ok(msg) = msg else { break };
            let mut out = BytesMut::new();
            match msg.tag {
                frontend::TERMINATE => break,
                frontend::QUERY => {
                    let sql = wire::parse_query(&msg.body).unwrap_or_default();
                    self.query(&sql, &mut out).await;
                    out.extend_from_slice(&wire::ready_for_query(wire::TxnStatus::Idle));
                }
                frontend::SYNC => {
                    failed_extended = false;
                    out.extend_from_slice(&wire::ready_for_query(wire::TxnStatus::Idle));
                }
                frontend::FLUSH => {}
                _ => {
                    // Extended protocol: one error, then skip until Sync.
                    if !failed_extended {
                        failed_extended = true;
                        out.extend_from_slice(&wire::error_response(
                            "ERROR",
                            sqlstate::FEATURE_NOT_SUPPORTED,
                            "the admin console speaks the simple query protocol only",
                            Some(COMMANDS),
                        ));
                    }
                }
            }
            if !out.is_empty() && self.stream.write_all(&out).await.is_err() {
                break;
            }
        }
        drop(key);
        tracing::info!(peer = %self.peer, user = %self.user, "admin console session closed");
    }

    /// Tells a client not in `[admin] users` so, and closes.
    async fn refuse(mut self) {
        tracing::info!(peer = %self.peer, user = %self.user, "admin console refused: user not in [admin] users");
        crate::base::events::login_refused(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION);
        crate::client::handshake::reject(
            &mut self.stream,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            &format!(
                "user \"{}\" may not use the admin console (database \"{}\"): not in [admin] users",
                self.user,
                super::CONSOLE_DATABASE
            ),
            None,
        )
        .await;
    }

    /// AuthenticationOk, the ParameterStatus values drivers expect, BackendKeyData, ReadyForQuery.
    fn greeting(&self, key: &CancelKey) -> BytesMut {
        let mut out = wire::auth_request(0, &[]);
        let version = format!("{}/redshift-iam-proxy", env!("CARGO_PKG_VERSION"));
        for (k, v) in [
            ("server_version", version.as_str()),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("is_superuser", "off"),
            ("application_name", ""),
        ] {
            out.extend_from_slice(&wire::parameter_status(k, v));
        }
        out.extend_from_slice(&wire::backend_key_data(key.pid, &key.secret));
        out.extend_from_slice(&wire::ready_for_query(wire::TxnStatus::Idle));
        out
    }

    /// Runs every statement of one Query message.
    async fn query(&mut self, sql: &str, out: &mut BytesMut) {
        let statements: Vec<&str> = sql
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if statements.is_empty() {
            out.extend_from_slice(&wire::empty_query_response());
            return;
        }
        for stmt in statements {
            let reply = self.command(stmt).await;
            match reply {
                Reply::Rows { columns, rows } => {
                    out.extend_from_slice(&wire::row_description(&columns));
                    for r in &rows {
                        let vals: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
                        out.extend_from_slice(&wire::data_row(&vals));
                    }
                    out.extend_from_slice(&wire::command_complete(&format!("SHOW {}", rows.len())));
                }
                Reply::Done(tag) => out.extend_from_slice(&wire::command_complete(&tag)),
                Reply::Error(code, msg) => {
                    out.extend_from_slice(&wire::error_response(
                        "ERROR",
                        code,
                        &msg,
                        Some(COMMANDS),
                    ));
                    // Like a server: the rest of the message is skipped after an error.
                    return;
                }
            }
        }
    }

    /// Parses one statement and runs it; every command but `SET` is counted, even one
    /// that fails.
    async fn command(&mut self, stmt: &str) -> Reply {
        let counted = |v: &str| crate::base::events::console_command(v);
        match Command::parse(stmt) {
            Ok(cmd) => {
                if let Some(verb) = cmd.counted_as() {
                    counted(&verb);
                }
                self.apply(cmd).await
            }
            Err(e) => {
                counted(&e.counted_as);
                Reply::Error(sqlstate::SYNTAX_ERROR, e.message)
            }
        }
    }

    /// Runs one parsed command.
    async fn apply(&self, cmd: Command) -> Reply {
        match cmd {
            Command::Show(what) => self.show(what),
            Command::Set => Reply::Done("SET".into()),
            Command::Reload => self.reload(),
            Command::Pause(pool) => self.pause(pool).await,
            Command::Resume(pool) => self.resume(pool),
            Command::Reconnect(pool) => self.reconnect(pool),
            Command::KillClient(id) => self.kill_client(id),
        }
    }

    fn show(&self, what: Show) -> Reply {
        match what {
            Show::Pools => self.show_pools(),
            Show::Clients => self.show_clients(),
            Show::Servers => self.show_servers(),
            Show::Stats => self.show_stats(),
            Show::Targets => self.show_targets(),
            Show::Credentials => self.show_credentials(),
            Show::Config => self.show_config(),
            Show::Version => rows(
                &["version"],
                vec![vec![s(format!(
                    "redshift-iam-proxy {}",
                    env!("CARGO_PKG_VERSION")
                ))]],
            ),
        }
    }

    /// RELOAD: re-reads the configuration file.
    fn reload(&self) -> Reply {
        match super::reload::reload(self.shared) {
            Ok(summary) => {
                tracing::info!(user = %self.user, "{summary}");
                Reply::Done("RELOAD".into())
            }
            Err(e) => Reply::Error(sqlstate::CONFIG_FILE_ERROR, format!("reload refused: {e}")),
        }
    }

    /// PAUSE: holds new checkouts of `pool` (or every pool), and returns once its
    /// servers are released, as PgBouncer does.
    async fn pause(&self, pool: Option<String>) -> Reply {
        let shared = self.shared;
        if let Some(p) = &pool {
            if !self.pool_exists(p) {
                return self.unknown_pool(p);
            }
        }
        shared.admin.pause.pause(pool.as_deref());
        tracing::info!(user = %self.user, pool = pool.as_deref().unwrap_or("*"), "PAUSE: holding new checkouts, waiting for servers to be released");
        loop {
            let busy: usize = shared
                .pools
                .snapshot()
                .iter()
                .filter(|(p, _)| pool.as_deref().is_none_or(|a| a == p.label))
                .map(|(_, c)| c.active + c.opening)
                .sum();
            if busy == 0 {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = shared.hard_stop.cancelled() => break,
            }
        }
        Reply::Done("PAUSE".into())
    }

    /// RESUME: lets `pool` (or every pool) check out servers again.
    fn resume(&self, pool: Option<String>) -> Reply {
        if self.shared.admin.pause.resume(pool.as_deref()) {
            tracing::info!(user = %self.user, pool = pool.as_deref().unwrap_or("*"), "RESUME");
            Reply::Done("RESUME".into())
        } else {
            Reply::Error(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("{} is not paused", pool.as_deref().unwrap_or("the proxy")),
            )
        }
    }

    /// RECONNECT: replaces the servers of `pool` (or every pool).
    fn reconnect(&self, pool: Option<String>) -> Reply {
        let pools = &self.shared.pools;
        match &pool {
            None => pools.reconnect_all(),
            Some(p) => match pools.snapshot().into_iter().find(|(x, _)| &x.label == p) {
                Some((found, _)) => found.reconnect(),
                None => return self.unknown_pool(p),
            },
        }
        tracing::info!(user = %self.user, pool = pool.as_deref().unwrap_or("*"), "RECONNECT: servers are replaced (idle now, busy at check-in)");
        Reply::Done("RECONNECT".into())
    }

    /// KILL_CLIENT: closes one client's session.
    fn kill_client(&self, id: u64) -> Reply {
        if self.shared.admin.clients.kill(id) {
            tracing::info!(user = %self.user, client = id, "KILL_CLIENT");
            Reply::Done("KILL_CLIENT".into())
        } else {
            Reply::Error(
                sqlstate::UNDEFINED_OBJECT,
                format!("no client with id {id} (see SHOW CLIENTS)"),
            )
        }
    }

    fn pool_exists(&self, label: &str) -> bool {
        self.shared
            .pools
            .snapshot()
            .iter()
            .any(|(p, _)| p.label == label)
    }

    fn unknown_pool(&self, label: &str) -> Reply {
        let known: Vec<String> = self
            .shared
            .pools
            .snapshot()
            .into_iter()
            .map(|(p, _)| p.label.clone())
            .collect();
        Reply::Error(
            sqlstate::UNDEFINED_OBJECT,
            format!(
                "no pool {label:?} (pools are named dbuser/dbname@target; open now: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        )
    }

    fn show_pools(&self) -> Reply {
        let mut out = Vec::new();
        let mut snap = self.shared.pools.snapshot();
        snap.sort_by(|a, b| a.0.label.cmp(&b.0.label));
        for (p, c) in snap {
            let (user, db) = split_label(&p.label);
            let st = &p.stats;
            let max_us = crate::pool::stats::PoolStats::get(&st.max_wait_us);
            out.push(vec![
                s(&db),
                s(&user),
                s(&p.label),
                s(self.target_label(p.target_index)),
                s(crate::pool::stats::PoolStats::get(&st.clients_active)),
                s(c.waiting),
                s(c.active),
                s(c.idle),
                s(c.opening),
                s(c.total),
                s(p.settings.size),
                s(max_us / 1_000_000),
                s(max_us % 1_000_000),
                s(p.settings.mode.as_str()),
                s(if self.shared.admin.pause.is_paused(&p.label) {
                    "yes"
                } else {
                    "no"
                }),
            ]);
        }
        rows(
            &[
                "database",
                "user",
                "pool",
                "target",
                "cl_active",
                "cl_waiting",
                "sv_active",
                "sv_idle",
                "sv_login",
                "sv_total",
                "pool_size",
                "maxwait",
                "maxwait_us",
                "pool_mode",
                "paused",
            ],
            out,
        )
    }

    fn target_label(&self, i: usize) -> String {
        self.shared
            .targets
            .get(i)
            .map_or_else(String::new, |t| t.config.label().to_owned())
    }

    fn show_clients(&self) -> Reply {
        let now = SystemTime::now();
        let out = self
            .shared
            .admin
            .clients
            .list()
            .into_iter()
            .map(|c| {
                let i = c.info();
                vec![
                    s(c.id),
                    s(&c.user),
                    s(&c.database),
                    s(&i.db_user),
                    s(&i.target),
                    s(&i.pool),
                    s(i.state),
                    s(c.addr.ip()),
                    s(c.addr.port()),
                    s(rfc3339(c.connected_at)),
                    s(now
                        .duration_since(c.connected_at)
                        .map_or(0, |d| d.as_secs())),
                    s(if c.tls { "yes" } else { "no" }),
                    s(&c.application_name),
                    i.server_id.map(|x| x.to_string()),
                    s(&c.principal),
                ]
            })
            .collect();
        rows(
            &[
                "id",
                "user",
                "database",
                "db_user",
                "target",
                "pool",
                "state",
                "addr",
                "port",
                "connect_time",
                "age_secs",
                "tls",
                "application_name",
                "server_id",
                "principal",
            ],
            out,
        )
    }

    fn show_servers(&self) -> Reply {
        let mut out = Vec::new();
        let mut snap = self.shared.pools.snapshot();
        snap.sort_by(|a, b| a.0.label.cmp(&b.0.label));
        for (p, _) in &snap {
            let (_, db) = split_label(&p.label);
            for (id, db_user, age, idle) in p.idle_servers() {
                out.push(vec![
                    s(id),
                    s(&db_user),
                    s(&db),
                    s(&p.label),
                    s("idle"),
                    s(age.as_secs()),
                    s(idle.as_secs()),
                    None,
                ]);
            }
        }
        for c in self.shared.admin.clients.list() {
            let i = c.info();
            if let Some(id) = i.server_id {
                let (_, db) = split_label(&i.pool);
                out.push(vec![
                    s(id),
                    s(&i.db_user),
                    s(&db),
                    s(&i.pool),
                    s("active"),
                    None,
                    None,
                    s(c.id),
                ]);
            }
        }
        rows(
            &[
                "id",
                "user",
                "database",
                "pool",
                "state",
                "age_secs",
                "idle_secs",
                "client_id",
            ],
            out,
        )
    }

    fn show_stats(&self) -> Reply {
        use crate::pool::stats::{PoolStats, CLOSE_REASONS};
        let mut out = Vec::new();
        let mut snap = self.shared.pools.snapshot();
        snap.sort_by(|a, b| a.0.label.cmp(&b.0.label));
        for (p, _) in snap {
            let (user, db) = split_label(&p.label);
            let st = &p.stats;
            let closed: Vec<String> = CLOSE_REASONS
                .iter()
                .filter(|r| st.closed_count(**r) > 0)
                .map(|r| format!("{}={}", r.as_str(), st.closed_count(*r)))
                .collect();
            out.push(vec![
                s(&db),
                s(&user),
                s(&p.label),
                s(PoolStats::get(&st.transactions)),
                s(PoolStats::get(&st.queries)),
                s(PoolStats::get(&st.bytes_in)),
                s(PoolStats::get(&st.bytes_out)),
                s(PoolStats::get(&st.wait_us_total)),
                s(PoolStats::get(&st.max_wait_us)),
                s(PoolStats::get(&st.checkouts)),
                s(PoolStats::get(&st.waits)),
                s(PoolStats::get(&st.servers_opened)),
                s(PoolStats::get(&st.logins_failed)),
                s(PoolStats::get(&st.resets)),
                s(PoolStats::get(&st.resets_failed)),
                s(closed.join(" ")),
            ]);
        }
        rows(
            &[
                "database",
                "user",
                "pool",
                "total_xact_count",
                "total_query_count",
                "total_received",
                "total_sent",
                "total_wait_time",
                "max_wait_time",
                "total_checkouts",
                "total_waits",
                "servers_opened",
                "logins_failed",
                "resets",
                "resets_failed",
                "servers_closed",
            ],
            out,
        )
    }

    /// Per target: whether the cluster is in an outage, and the logins it held.
    fn show_targets(&self) -> Reply {
        use std::sync::atomic::Ordering::Relaxed;
        let out = self
            .shared
            .targets
            .iter()
            .map(|t| {
                let o = &t.outage;
                let state = match o.since() {
                    Some(since) => format!("outage for {} s", since.elapsed().as_secs()),
                    None => "ok".to_owned(),
                };
                vec![
                    s(t.config.label()),
                    s(state),
                    s(o.held_now.load(Relaxed)),
                    s(o.held_ok.load(Relaxed)),
                    s(o.held_failed.load(Relaxed)),
                    s(format!(
                        "{:.1}",
                        o.longest_hold_ms.load(Relaxed) as f64 / 1e3
                    )),
                    s(o.outages.load(Relaxed)),
                ]
            })
            .collect();
        rows(
            &[
                "target",
                "state",
                "logins_held",
                "holds_ended_in_login",
                "holds_ended_in_error",
                "longest_hold_secs",
                "outages",
            ],
            out,
        )
    }

    fn show_credentials(&self) -> Reply {
        let mut entries = self.shared.cache.entries();
        entries.sort_by_key(|e| e.expiration);
        let out = entries
            .into_iter()
            .map(|e| {
                let r = &e.request;
                let target = r
                    .workgroup
                    .clone()
                    .or_else(|| r.cluster_identifier.clone())
                    .or_else(|| r.custom_domain.clone())
                    .unwrap_or_default();
                let key = format!(
                    "{}:{}/{}{}{}",
                    r.operation(),
                    target,
                    r.db_name,
                    if r.db_groups.is_empty() {
                        String::new()
                    } else {
                        format!(" groups={}", r.db_groups.join(","))
                    },
                    r.role
                        .as_ref()
                        .map_or_else(String::new, |x| format!(" role={}", x.arn)),
                );
                vec![
                    s(key),
                    s(r.db_user.as_deref().unwrap_or("")),
                    s(&e.db_user),
                    s(rfc3339(e.expiration)),
                    s(e.expires_in_secs),
                    s(e.age.as_secs()),
                    s(e.hits),
                ]
            })
            .collect();
        rows(
            &[
                "key",
                "requested_db_user",
                "db_user",
                "expiration",
                "expires_in_secs",
                "age_secs",
                "hits",
            ],
            out,
        )
    }

    /// Every setting with its value and how a change takes effect.
    fn show_config(&self) -> Reply {
        let live = self.shared.admin.live();
        let c = &live.config;
        let path = self
            .shared
            .admin
            .config_path
            .get()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut kv: Vec<Setting> = vec![("config_file".into(), path, "restart")];
        kv.extend(process_settings(c));
        kv.extend(client_auth_settings(c));
        kv.extend(pool_settings(c));
        kv.extend(limit_settings(c));
        kv.extend(admin_settings(c));
        kv.extend(cluster_settings(c));
        rows(
            &["key", "value", "changeable"],
            kv.into_iter()
                .map(|(k, v, ch)| vec![s(k), s(v), s(ch)])
                .collect(),
        )
    }
}

/// One SHOW CONFIG row: key, value, and how a change takes effect.
type Setting = (String, String, &'static str);

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

/// The listener, logging and `[aws]`.
fn process_settings(c: &Config) -> Vec<Setting> {
    vec![
        ("listen".into(), c.listen.clone(), "restart"),
        (
            "log_format".into(),
            format!("{:?}", c.log_format).to_lowercase(),
            "restart",
        ),
        ("log_filter".into(), opt(&c.log_filter), "reload"),
        ("aws.region".into(), opt(&c.aws.region), "restart"),
        ("aws.profile".into(), opt(&c.aws.profile), "restart"),
        (
            "aws.endpoint_url".into(),
            opt(&c.aws.endpoint_url),
            "restart",
        ),
        (
            "aws.timeout_secs".into(),
            c.aws.timeout_secs.to_string(),
            "restart",
        ),
        (
            "aws.max_attempts".into(),
            c.aws.max_attempts.to_string(),
            "restart",
        ),
    ]
}

/// `[client_auth]` (no secret shown) and the user rules.
fn client_auth_settings(c: &Config) -> Vec<Setting> {
    vec![
        (
            "client_auth.method".into(),
            format!("{:?}", c.client_auth.method).to_lowercase(),
            "reload",
        ),
        (
            "client_auth.scram_verifiers".into(),
            format!(
                "({} users; verifiers not shown)",
                c.client_auth.scram_verifiers.len()
            ),
            "reload",
        ),
        (
            "client_auth.aws_token.server_id".into(),
            c.client_auth
                .aws_token
                .as_ref()
                .map_or_else(String::new, |t| t.server_id.clone()),
            "reload",
        ),
        (
            "client_auth.oidc".into(),
            c.client_auth
                .oidc
                .iter()
                .map(|o| o.issuer.as_str())
                .collect::<Vec<_>>()
                .join(","),
            "reload",
        ),
        ("users".into(), format!("{} rules", c.users.len()), "reload"),
    ]
}

/// `[pool]`.
fn pool_settings(c: &Config) -> Vec<Setting> {
    vec![
        ("pool.mode".into(), c.pool.mode.as_str().into(), "restart"),
        (
            "pool.size".into(),
            c.pool.size.to_string(),
            "reload (new pools)",
        ),
        (
            "pool.min_size".into(),
            c.pool.min_size.to_string(),
            "reload (new pools)",
        ),
        (
            "pool.checkout_timeout_secs".into(),
            c.pool.checkout_timeout_secs.to_string(),
            "reload (new pools)",
        ),
    ]
}

/// `[limits]`.
fn limit_settings(c: &Config) -> Vec<Setting> {
    vec![
        (
            "limits.max_client_connections".into(),
            c.limits.max_client_connections.to_string(),
            "reload",
        ),
        (
            "limits.max_connections_per_user".into(),
            c.limits
                .max_connections_per_user
                .map_or_else(String::new, |v| v.to_string()),
            "reload",
        ),
        (
            "limits.handshake_timeout_secs".into(),
            c.limits.handshake_timeout_secs.to_string(),
            "reload",
        ),
        (
            "limits.login_timeout_secs".into(),
            c.limits.login_timeout_secs.to_string(),
            "reload",
        ),
        (
            "limits.drain_timeout_secs".into(),
            c.limits.drain_timeout_secs.to_string(),
            "restart",
        ),
    ]
}

/// `[admin]`.
fn admin_settings(c: &Config) -> Vec<Setting> {
    vec![
        ("admin.listen".into(), opt(&c.admin.listen), "restart"),
        ("admin.users".into(), c.admin.users.join(","), "reload"),
        (
            "admin.min_sigterm_delay_secs".into(),
            c.admin.min_sigterm_delay_secs.to_string(),
            "restart",
        ),
    ]
}

/// Each `[[cluster]]`: its label and credential mode.
fn cluster_settings(c: &Config) -> Vec<Setting> {
    c.cluster
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                format!("cluster[{i}]"),
                format!("{} ({})", t.label(), t.credentials.as_str()),
                "restart",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(stmt: &str) -> Command {
        Command::parse(stmt).unwrap()
    }

    fn refused(stmt: &str) -> NotACommand {
        Command::parse(stmt).unwrap_err()
    }

    #[test]
    fn verbs_and_what_show_shows_are_case_insensitive() {
        assert_eq!(parsed("show Pools"), Command::Show(Show::Pools));
    }

    #[test]
    fn every_command_the_error_lists_parses() {
        for stmt in COMMANDS.split(" | ") {
            let stmt = stmt.replace("[pool]", "a/b@c").replace("id", "7");
            assert!(Command::parse(&stmt).is_ok(), "{stmt}");
        }
    }

    #[test]
    fn a_pool_argument_may_be_quoted() {
        assert_eq!(
            parsed("PAUSE \"alice/dev@c\""),
            Command::Pause(Some("alice/dev@c".into()))
        );
        assert_eq!(
            parsed("resume 'alice/dev@c'"),
            Command::Resume(Some("alice/dev@c".into()))
        );
    }

    #[test]
    fn a_command_without_a_pool_means_every_pool() {
        assert_eq!(parsed("RECONNECT"), Command::Reconnect(None));
        assert_eq!(parsed("PAUSE ''"), Command::Pause(None));
    }

    #[test]
    fn kill_client_takes_a_numeric_id() {
        assert_eq!(parsed("KILL_CLIENT 42"), Command::KillClient(42));
    }

    #[test]
    fn kill_client_without_a_numeric_id_is_refused_and_still_counted() {
        assert_eq!(
            refused("KILL_CLIENT bob"),
            NotACommand {
                counted_as: "kill_client".into(),
                message: "KILL_CLIENT needs a client id (see SHOW CLIENTS)".into(),
            }
        );
    }

    #[test]
    fn an_unknown_show_is_counted_under_its_own_name_and_quoted_as_typed() {
        assert_eq!(
            refused("SHOW Lists"),
            NotACommand {
                counted_as: "show_lists".into(),
                message: "unknown admin console command \"SHOW Lists\"".into(),
            }
        );
    }

    #[test]
    fn an_unknown_verb_is_counted_as_unknown_and_quoted_whole() {
        assert_eq!(
            refused("DROP TABLE x"),
            NotACommand {
                counted_as: "unknown".into(),
                message: "unknown admin console command \"DROP TABLE x\"".into(),
            }
        );
    }

    #[test]
    fn set_is_accepted_whatever_it_sets() {
        assert_eq!(parsed("SET application_name = 'psql'"), Command::Set);
    }

    #[test]
    fn set_is_not_counted() {
        assert_eq!(Command::Set.counted_as(), None);
    }

    #[test]
    fn a_command_is_counted_under_its_lowercase_verb() {
        assert_eq!(
            parsed("SHOW CONFIG").counted_as().as_deref(),
            Some("show_config")
        );
        assert_eq!(
            parsed("kill_client 1").counted_as().as_deref(),
            Some("kill_client")
        );
    }
}
