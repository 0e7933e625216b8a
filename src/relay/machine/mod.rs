//! The pooled client session as a pure state machine: client messages and server answers
//! in; bytes for each side and events (need a server, release it, its settings failed) out.
//! No sockets and no waiting: the relay (`relay/framed.rs`) pumps bytes and carries out the
//! events, as PgBouncer splits its byte pump (`sbuf.c`) from the decisions (`client.c`,
//! `server.c`).
//!
//! The rules it keeps, in transaction mode, so that each client sees its own session:
//! - **The server is the source of truth for settings.** After a transaction that may have
//!   changed them, they are read back from the server before it is released; what is
//!   replayed elsewhere is those name/value pairs, as quoted literals.
//! - **Every move is verified.** On a server it just took, the client's settings are
//!   applied first, and the client's own messages wait until the server said yes; if it
//!   says no, that server is dropped and the client's statement never runs there.
//! - **Effects count when they happen.** Statement bookkeeping is assumed when sent and
//!   undone if the server fails or skips the message (errors skip to Sync); PREPARE,
//!   DEALLOCATE ALL and DISCARD ALL count at their CommandComplete.
//! - **Names are the client's.** Named statements are prepared under per-pool names
//!   (`rip_…`), duplicates and unknown names get PostgreSQL's own errors with the client's
//!   name, and the unnamed statement is prepared again (or closed) before a Bind that needs
//!   it, so it is never someone else's.

mod client;
mod from_client;
mod from_server;
mod queue;

pub use client::{server_name, ClientState, Statement, Unnamed, MAX_CLIENT_STATEMENTS};

use crate::base::refusal::Refusal;
use crate::config::PoolMode;
use crate::pool::params;
use crate::pool::reset::Leftovers;
use crate::pool::tracked::{Tracked, UnnamedOnServer};
use crate::wire::protocol::{frontend, sqlstate};
use crate::wire::{self, Frame, TxnStatus};
use bytes::{Bytes, BytesMut};
use queue::{Change, Kind, Own, Queue, Reply, Sent};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What becomes of a session whose server connection was lost.
#[derive(Debug, PartialEq, Eq)]
pub enum Lost {
    /// It goes on; its next statement gets a new server.
    GoesOn,
    /// It ends now (the server's FATAL tells the client why).
    EndsNow,
    /// It ends at the client's next message, with this reason.
    EndsAtNextMessage(String),
}

/// Where the session stands with its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No server held (transaction mode, between transactions).
    NoServer,
    /// A server was just taken and the client's settings are being applied: the
    /// client's messages wait.
    Syncing,
    /// The server carries the client's session: messages flow.
    Ready,
    /// A client message names a statement whose Parse an earlier Sync group has not
    /// answered yet: it and what follows wait for that answer.
    Waiting,
}

/// What the relay must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Client messages wait for a server.
    NeedServer,
    /// The server may go back to the pool.
    Release,
    /// The server refused the client's settings: drop it, the client's messages did not run.
    SyncFailed(String),
}

/// Settings a batch `RESET`: the client's startup values of them are put back at its end.
#[derive(Debug, Default)]
struct PendingRestore {
    /// `RESET ALL` (or `DISCARD ALL`).
    all: bool,
    names: std::collections::BTreeSet<String>,
}

/// Counters the relay adds to the pool's statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub queries: u64,
    pub transactions: u64,
}

/// Largest total of client messages held while the session has no ready server.
pub const MAX_BACKLOG: usize = 256 * 1024;

/// One pooled client session.
pub struct Machine {
    mode: PoolMode,
    pub client: ClientState,
    queue: Queue,
    phase: Phase,
    /// Client messages that arrived while no server was ready.
    backlog: VecDeque<Frame>,
    backlog_bytes: usize,
    /// An extended batch failed and its Sync has not come yet: the client's messages up to
    /// it are dropped, as the server drops them.
    skipping: bool,
    /// Last ReadyForQuery status (Idle while no server is held).
    status: TxnStatus,
    /// `RESET`s sent since the last batch ended: their startup values go back at its end.
    pending_restore: PendingRestore,
    /// Startup restores sent (their statement names are numbered).
    restores: u64,
    /// The Sync group being sent: a Sync or a simple Query ends one.
    group: u64,
    /// Every group up to this one is answered (its ReadyForQuery arrived).
    answered: u64,
    /// Statement names (the client's, the unnamed `""`, and the proxy's `rip_…` on the
    /// server) a Parse made in a group not answered yet, with that group: whether they
    /// exist depends on its outcome.
    created: std::collections::HashMap<String, u64>,
    /// Rows of the settings read-back in flight.
    read_back: Option<params::Settings>,
    /// The error of the proxy's own simple query in flight.
    own_error: Option<String>,
    /// The client's ReadyForQuery, held until the startup values behind it are restored.
    stashed_ready: Option<bytes::Bytes>,
    sync_failed: Option<String>,
    /// ParameterStatus values every server of the pool logs in with.
    login_defaults: Arc<BTreeMap<String, String>>,
    /// Bytes for the server and for the client, in order.
    pub to_server: BytesMut,
    pub to_client: BytesMut,
    /// The client sent Terminate.
    pub terminated: bool,
    /// The server sent a FATAL (it closes next; the client already knows why).
    pub server_fatal: Option<Bytes>,
    /// Session mode: the client's statements must be prepared again on the next server
    /// (its server was lost).
    rebuild_statements: bool,
    /// Proxy-named statements whose plans went stale (the pool invalidates them).
    pub invalidated: Vec<String>,
    counts: Counts,
}

impl Machine {
    /// A session whose client logged in with `client`'s startup settings and reports.
    pub fn new(
        mode: PoolMode,
        client: ClientState,
        login_defaults: Arc<BTreeMap<String, String>>,
    ) -> Machine {
        Machine {
            mode,
            client,
            queue: Queue::default(),
            phase: Phase::NoServer,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            skipping: false,
            status: TxnStatus::Idle,
            pending_restore: PendingRestore::default(),
            restores: 0,
            group: 1,
            answered: 0,
            created: std::collections::HashMap::new(),
            read_back: None,
            own_error: None,
            stashed_ready: None,
            sync_failed: None,
            login_defaults,
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            terminated: false,
            server_fatal: None,
            rebuild_statements: false,
            invalidated: Vec::new(),
            counts: Counts::default(),
        }
    }

    fn txn(&self) -> bool {
        self.mode == PoolMode::Transaction
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn status(&self) -> TxnStatus {
        self.status
    }

    /// Bytes of client messages waiting for a ready server.
    pub fn backlog_bytes(&self) -> usize {
        self.backlog_bytes
    }

    /// The counters since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// A server was taken: apply the client's settings (in session mode only what its
    /// login left, its application_name), then let the waiting messages through once the
    /// server agreed.
    pub fn attach(&mut self, srv: &mut Tracked) -> Result<(), Refusal> {
        self.queue.reset();
        self.status = srv.txn;
        self.skipping = false;
        self.created.clear();
        // Every group before the next one was answered (on the previous server).
        self.answered = self.group - 1;
        self.pending_restore = PendingRestore::default();
        self.stashed_ready = None;
        self.read_back = None;
        self.own_error = None;
        self.phase = Phase::Ready;
        let desired = &self.client.settings;
        if let Some(sql) = params::sync_sql(desired, &srv.settings, &srv.params) {
            let verify = params::sync_can_fail(desired, &srv.settings, &srv.params);
            self.to_server.extend_from_slice(&wire::query(&sql));
            let mut sent = Sent::own(Kind::Query, Own::Sync);
            sent.group = self.group;
            self.group += 1;
            self.queue.push(sent);
            srv.settings = desired.clone();
            // A simple query drops the server's unnamed statement.
            srv.unnamed = UnnamedOnServer::Empty;
            if verify {
                self.phase = Phase::Syncing;
                return Ok(());
            }
        }
        if std::mem::take(&mut self.rebuild_statements) {
            self.prepare_again();
        }
        self.replay_backlog(srv)
    }

    /// The server was handed back or dropped.
    pub fn detach(&mut self) {
        self.phase = Phase::NoServer;
        self.queue.reset();
        self.status = TxnStatus::Idle;
        self.sync_failed = None;
        self.client.transaction_ended();
    }

    /// Runs the client messages that waited for a ready server.
    fn replay_backlog(&mut self, srv: &mut Tracked) -> Result<(), Refusal> {
        while self.phase == Phase::Ready {
            let Some(frame) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_bytes -= frame.raw().len();
            self.on_client_ready(frame, srv)?;
        }
        Ok(())
    }

    /// One message from the client; `srv` is the held server, if any.
    pub fn on_client(&mut self, frame: Frame, srv: Option<&mut Tracked>) -> Result<(), Refusal> {
        match srv {
            Some(srv) if self.phase == Phase::Ready && self.backlog.is_empty() => {
                self.on_client_ready(frame, srv)
            }
            _ => {
                self.backlog_bytes += frame.raw().len();
                self.backlog.push_back(frame);
                Ok(())
            }
        }
    }

    /// What the relay must do now, if anything. `server_idle`: the held server's bytes are
    /// all written and read up to a message boundary.
    pub fn event(&mut self, srv: Option<&mut Tracked>, server_idle: bool) -> Option<Event> {
        if let Some(why) = self.sync_failed.take() {
            return Some(Event::SyncFailed(why));
        }
        let Some(srv) = srv else {
            self.answer_without_server();
            let needs = !self.backlog.is_empty() && !self.terminated;
            return needs.then_some(Event::NeedServer);
        };
        let releasable = self.txn()
            && self.client.pinned.is_none()
            && self.phase == Phase::Ready
            && self.backlog.is_empty()
            && !self.skipping
            && self.queue.settled()
            && self.status == TxnStatus::Idle
            && self.to_server.is_empty()
            && server_idle;
        if !releasable {
            return None;
        }
        if self.client.settings_dirty {
            self.read_settings_back(srv);
            return None;
        }
        Some(Event::Release)
    }

    /// Asks the server for the session's settings before it is released.
    fn read_settings_back(&mut self, srv: &mut Tracked) {
        self.client.settings_dirty = false;
        let named = self.client.custom.iter().chain(self.client.startup.keys());
        let sql = params::read_back_sql(named, srv.redshift);
        self.to_server.extend_from_slice(&wire::query(&sql));
        let mut sent = Sent::own(Kind::Query, Own::ReadBack);
        sent.group = self.group;
        self.group += 1;
        self.queue.push(sent);
        // A simple query drops the server's unnamed statement.
        srv.unnamed = UnnamedOnServer::Empty;
        self.read_back = Some(params::Settings::new());
    }

    /// Without a server: answers what needs none (a DEALLOCATE of a protocol statement,
    /// the rest of a batch that already failed) and takes a Terminate.
    fn answer_without_server(&mut self) {
        while let Some(frame) = self.backlog.front() {
            let tag = frame.tag();
            if tag == frontend::TERMINATE {
                self.terminated = true;
                return;
            }
            if self.skipping {
                if tag == frontend::SYNC {
                    self.skipping = false;
                    self.to_client
                        .extend_from_slice(&wire::ready_for_query(TxnStatus::Idle));
                }
                self.pop_backlog();
                continue;
            }
            let Some(name) = self.deallocate_of_own_statement(frame) else {
                return;
            };
            self.pop_backlog();
            self.client.statements.remove(&name);
            self.to_client
                .extend_from_slice(&wire::command_complete("DEALLOCATE"));
            self.to_client
                .extend_from_slice(&wire::ready_for_query(TxnStatus::Idle));
        }
    }

    /// The statement a simple-query `DEALLOCATE` names, when the proxy answers it itself.
    fn deallocate_of_own_statement(&self, frame: &Frame) -> Option<String> {
        let Frame::Whole { tag, raw } = frame else {
            return None;
        };
        if *tag != frontend::QUERY || !self.txn() {
            return None;
        }
        let text = wire::Query::decode(&wire::body(raw)).ok()?.text;
        let name = wire::sql::single_deallocate(&text)?;
        self.client.statements.contains_key(&name).then_some(name)
    }

    fn pop_backlog(&mut self) -> Option<Frame> {
        let f = self.backlog.pop_front()?;
        self.backlog_bytes -= f.raw().len();
        Some(f)
    }

    /// The client's first waiting statement cannot get a server: it gets `code` as an
    /// ERROR (its connection stays usable), the rest keep waiting.
    pub fn fail_waiting(&mut self, code: &str, message: &str, hint: Option<&str>) {
        self.to_client
            .extend_from_slice(&wire::error_response("ERROR", code, message, hint));
        while let Some(frame) = self.pop_backlog() {
            match frame.tag() {
                frontend::QUERY | frontend::FUNCTION_CALL => {
                    self.to_client
                        .extend_from_slice(&wire::ready_for_query(TxnStatus::Idle));
                    return;
                }
                frontend::SYNC => {
                    self.to_client
                        .extend_from_slice(&wire::ready_for_query(TxnStatus::Idle));
                    return;
                }
                frontend::TERMINATE => {
                    self.terminated = true;
                    return;
                }
                _ => {}
            }
        }
        // An extended batch without its Sync yet: the rest of it is dropped as it comes.
        self.skipping = true;
    }

    /// The held server's connection is gone (a restart, failover, a terminated backend).
    /// In transaction mode the session goes on unless the client holds state only that
    /// server had (a temporary table, …); a client with work in flight hears one ERROR per
    /// answer it waits for (its transaction is gone). In session mode an idle client goes
    /// on with a new server (its prepared statements are prepared again there) unless it
    /// had state the proxy cannot rebuild: then its next message hears why and the session
    /// ends. Otherwise the session ends now with the server's FATAL.
    pub fn server_lost(&mut self, why: &str) -> Lost {
        if self.status == TxnStatus::Idle && !self.queue.unsynced() {
            // Only Closes and Syncs in flight (a driver dropping a statement): answered here
            // as the server would have.
            if let Some(kinds) = self.queue.answerable_without_server() {
                for k in kinds {
                    self.to_client.extend_from_slice(&match k {
                        Kind::Close => wire::close_complete(),
                        _ => wire::ready_for_query(TxnStatus::Idle),
                    });
                }
                self.queue.reset();
            }
        }
        let (readies, open_batch) = self.queue.owed_to_client();
        let busy = readies > 0 || open_batch || self.status != TxnStatus::Idle;
        // A committed change of settings not read back yet (or its read-back) died with the
        // server: what the session's settings are is unknown, so it cannot go on faithfully.
        let settings_unknown = self.read_back.is_some()
            || (self.client.settings_dirty && self.status == TxnStatus::Idle);
        match self.mode {
            PoolMode::Transaction if self.client.pinned.is_none() && settings_unknown => {
                self.forget_server();
                return Lost::EndsAtNextMessage(format!(
                    "the server connection was lost ({why}) before the proxy could read this session's settings back; reconnect"
                ));
            }
            PoolMode::Transaction if self.client.pinned.is_none() => {}
            PoolMode::Session if !busy && self.backlog.is_empty() => {
                if let Some(state) = self.unmovable_state() {
                    self.forget_server();
                    return Lost::EndsAtNextMessage(format!(
                        "the server connection was lost ({why}) and this session had state the proxy cannot rebuild on a new server ({state}); reconnect"
                    ));
                }
                self.forget_server();
                self.rebuild_statements = !self.client.statements.is_empty();
                return Lost::GoesOn;
            }
            _ => return Lost::EndsNow,
        }
        let (code, message) = match self.server_fatal.take() {
            Some(raw) => {
                let f = wire::parse_error_fields(&wire::body(&raw));
                (
                    f.code,
                    format!("the server connection was lost: {}", f.message),
                )
            }
            None => (
                sqlstate::CONNECTION_FAILURE.to_owned(),
                format!("the server connection was lost: {why}"),
            ),
        };
        let hint = "the cluster closed it (restart, failover or maintenance); the open transaction was rolled back; this connection goes on: run the transaction again";
        let error = wire::error_response("ERROR", &code, &message, Some(hint));
        for _ in 0..readies {
            self.to_client.extend_from_slice(&error);
            self.to_client
                .extend_from_slice(&wire::ready_for_query(TxnStatus::Idle));
        }
        if open_batch {
            self.to_client.extend_from_slice(&error);
        }
        self.forget_server();
        // The batch's Sync (still to come) gets its ReadyForQuery without a server.
        self.skipping = open_batch;
        // Settings changed in the lost transaction were rolled back with it.
        self.client.settings_dirty = false;
        Lost::GoesOn
    }

    /// Drops everything that belonged to the lost server's connection.
    fn forget_server(&mut self) {
        self.server_fatal = None;
        self.to_server.clear();
        self.pending_restore = PendingRestore::default();
        self.stashed_ready = None;
        self.read_back = None;
        self.own_error = None;
        self.detach();
    }

    /// Session mode, a new server after the last was lost: the client's statements are
    /// prepared again under its names (a failure leaves that statement missing, as the
    /// client will hear when it uses it).
    fn prepare_again(&mut self) {
        let own = |kind| Sent::own(kind, Own::RestoreStartup);
        let parses: Vec<bytes::BytesMut> = self
            .client
            .statements
            .iter()
            .map(|(name, st)| st.parse.encode_as(name))
            .collect();
        for p in parses {
            self.to_server.extend_from_slice(&p);
            self.queue.push(own(Kind::Parse));
        }
        self.to_server.extend_from_slice(&wire::sync());
        let mut sync = own(Kind::Sync);
        sync.group = self.group;
        self.group += 1;
        self.queue.push(sync);
    }

    /// Session state that lives only on the server the client had.
    fn unmovable_state(&self) -> Option<&'static str> {
        let c = &self.client;
        c.sticky
            .or(c.pinned)
            .or(c.called_procedure.then_some("a procedure call"))
            .or(c.settings_dirty.then_some("settings it changed"))
            .or((!c.sql_prepared.is_empty()).then_some("SQL PREPARE statements"))
    }

    /// Checks that a client that closed its sending side still reads: a ParameterStatus it
    /// already knows (harmless; clients take them at any time) makes a socket the client
    /// closed altogether fail its next write, so its server does not stay busy for nobody.
    pub fn probe_client(&mut self) {
        const PROBED: &str = "client_encoding";
        if let Some(v) = self.client.reported.get(PROBED) {
            self.to_client
                .extend_from_slice(&wire::parameter_status(PROBED, v));
        }
    }

    /// Whether the client is still owed answers: a ReadyForQuery the server will send, or
    /// waiting messages that will bring one (after the client closed its sending side,
    /// the session lasts until these are delivered).
    pub fn owes_answers(&self) -> bool {
        self.queue.awaits_ready()
            || self.backlog.iter().any(|f| {
                matches!(
                    f.tag(),
                    frontend::QUERY | frontend::SYNC | frontend::FUNCTION_CALL
                )
            })
    }

    /// Everything the held server still owes is the proxy's own work.
    pub fn only_own_work(&self) -> bool {
        self.backlog.is_empty() && self.queue.only_own_work()
    }

    /// No answer outstanding and no extended batch open on the held server.
    pub fn settled(&self) -> bool {
        self.queue.settled()
    }

    /// Whether the server must be reset (not just checked in) when the client is done.
    pub fn needs_reset(&self) -> bool {
        self.mode == PoolMode::Session
            || self.client.pinned.is_some()
            || self.status != TxnStatus::Idle
    }

    /// The client is done with its server: settings it may have changed since they were
    /// last read back make the server's settings unknown (it is reset before reuse).
    pub fn leaving(&mut self, srv: &mut Tracked) {
        if self.client.settings_dirty {
            srv.settings_known = false;
        }
    }

    /// What the client left on its server, for the reset.
    pub fn leftovers(&self, srv: &Tracked) -> Leftovers {
        Leftovers {
            statements: if self.txn() {
                Vec::new()
            } else {
                self.client.statements.keys().cloned().collect()
            },
            sql_prepared: self.client.sql_prepared.iter().cloned().collect(),
            sticky: self.client.sticky,
            called_procedure: self.client.called_procedure,
            settings_changed: !srv.settings_known,
        }
    }

    /// Applies one bookkeeping change (an undo, or what an error means).
    fn apply(&mut self, change: Change, srv: &mut Tracked) {
        match change {
            Change::ClientStatement { name, was } => match was {
                Some(st) => {
                    self.client.statements.insert(name, st);
                }
                None => {
                    self.client.statements.remove(&name);
                }
            },
            Change::ClientUnnamed(u) => self.client.unnamed = u,
            Change::LocalPortal { name, was } => match was {
                Some(st) => {
                    self.client.local_portals.insert(name, st);
                }
                None => {
                    self.client.local_portals.remove(&name);
                }
            },
            Change::ServerStatement { name, was } => {
                use crate::pool::tracked::Presence;
                match was {
                    Presence::Absent => srv.statements.remove(&name),
                    Presence::Present => srv.statements.restore(&name, false),
                    Presence::Stale => srv.statements.restore(&name, true),
                }
            }
            Change::ServerUnnamed(u) => srv.unnamed = u,
        }
    }

    /// Applies changes made in order, last first (undo).
    fn undo(&mut self, changes: Vec<Change>, srv: &mut Tracked) {
        for c in changes.into_iter().rev() {
            self.apply(c, srv);
        }
    }

    /// Sends what the proxy answers itself once it is due (in order with the server's).
    fn drain_local(&mut self, srv: &mut Tracked) {
        while let Some((reply, undo)) = self.queue.pop_local() {
            match reply {
                Reply::Bytes(b) => self.to_client.extend_from_slice(&b),
                Reply::Deallocate if self.status == TxnStatus::Failed => {
                    self.undo(undo, srv);
                    self.to_client.extend_from_slice(&wire::error_response(
                        "ERROR",
                        sqlstate::IN_FAILED_SQL_TRANSACTION,
                        from_client::IN_FAILED_MESSAGE,
                        None,
                    ));
                    self.to_client
                        .extend_from_slice(&wire::ready_for_query(self.status));
                }
                Reply::Deallocate => {
                    self.to_client
                        .extend_from_slice(&wire::command_complete("DEALLOCATE"));
                    self.to_client
                        .extend_from_slice(&wire::ready_for_query(self.status));
                }
            }
        }
    }

    /// Keeps the client in step with a ParameterStatus: it hears a value only when it
    /// differs from what it was last told (whoever's statement changed it).
    fn report(&mut self, raw: &[u8], body: &[u8], srv: &mut Tracked) {
        let Ok((name, value)) = wire::parse_parameter_status(body) else {
            return;
        };
        srv.params.insert(name.clone(), value.clone());
        if self.client.reported.get(&name) != Some(&value) {
            self.to_client.extend_from_slice(raw);
            self.client.reported.insert(name, value);
        }
    }

    /// Marks `name` as made by a Parse of the group being sent.
    fn created_now(&mut self, name: &str) {
        self.created.insert(name.to_owned(), self.group);
    }

    /// Whether every earlier group was answered, so `status` is the state the next message
    /// meets on the server.
    fn status_settled(&self) -> bool {
        self.answered + 1 >= self.group
    }

    /// Whether `name` was made by a Parse of an earlier group still unanswered.
    fn created_in_unanswered_group(&self, name: &str) -> bool {
        self.created
            .get(name)
            .is_some_and(|g| *g > self.answered && *g < self.group)
    }

    /// Groups up to `group` are answered: what their Parses made is settled.
    fn group_answered(&mut self, group: u64) {
        if group > self.answered {
            self.answered = group;
            let answered = self.answered;
            self.created.retain(|_, g| *g > answered);
        }
    }

    fn pin(&mut self, why: &'static str) {
        if self.txn() && self.client.pinned.is_none() {
            tracing::debug!(reason = why, "client keeps its server until it disconnects");
            self.client.pinned = Some(why);
        }
    }
}

#[cfg(test)]
mod tests;
