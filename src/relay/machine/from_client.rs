//! Client messages on a ready server: what is forwarded (renamed in transaction mode),
//! what the proxy sends before it (a statement the server lacks, the client's unnamed
//! statement), and what the proxy answers itself.

use super::client::{unnamed_token, Statement, Unnamed, MAX_CLIENT_STATEMENTS};
use super::queue::{Change, Kind, Own, Reply, Sent};
use super::Machine;
use crate::base::refusal::Refusal;
use crate::pool::params;
use crate::pool::tracked::{Presence, Tracked, UnnamedOnServer};
use crate::wire::protocol::{frontend, sqlstate, target};
use crate::wire::sql::{self, Effect};
use crate::wire::{self, Bind, Execute, Frame, NamedTarget, Parse, TxnStatus};
use std::sync::Arc;

/// The proxy's own statement names start so; a client name that does too is never sent
/// to the server as is.
const SERVER_PREFIX: &str = "rip_";

/// PostgreSQL's words for a statement refused in a failed transaction (25P02).
pub(super) const IN_FAILED_MESSAGE: &str =
    "current transaction is aborted, commands ignored until end of transaction block";

fn malformed(e: wire::WireError) -> Refusal {
    Refusal::new(
        sqlstate::PROTOCOL_VIOLATION,
        format!("invalid message from the client: {e}"),
        None,
    )
}

impl Machine {
    /// One client message while the server is ready.
    pub(super) fn on_client_ready(
        &mut self,
        frame: Frame,
        srv: &mut Tracked,
    ) -> Result<(), Refusal> {
        let (tag, raw) = match frame {
            Frame::Piece { raw, .. } => {
                if !self.skipping {
                    self.to_server.extend_from_slice(&raw);
                }
                return Ok(());
            }
            Frame::Whole { tag, raw } => (tag, raw),
        };
        if self.skipping && tag != frontend::SYNC && tag != frontend::TERMINATE {
            // The server discards these too (an earlier message of the batch failed).
            return Ok(());
        }
        let frame = Frame::Whole { tag, raw };
        if self.txn() && self.waits_for_earlier_group(&frame) {
            self.wait_with(frame);
            return Ok(());
        }
        let Frame::Whole { tag, raw } = frame else {
            return Ok(());
        };
        let body = wire::body(&raw);
        match tag {
            frontend::TERMINATE => self.terminated = true,
            frontend::QUERY => self.query(&raw, &body, srv)?,
            frontend::PARSE => self.parse(&raw, &body, srv)?,
            frontend::BIND => self.bind(&raw, &body, srv)?,
            frontend::EXECUTE => self.execute(&raw, &body, srv)?,
            frontend::DESCRIBE => self.describe(&raw, &body, srv)?,
            frontend::CLOSE => self.close(&raw, &body, srv)?,
            frontend::SYNC => self.sync(&raw, srv),
            frontend::FLUSH => {
                self.to_server.extend_from_slice(&raw);
                self.queue.flushed();
            }
            frontend::FUNCTION_CALL => {
                self.client.settings_may_change();
                self.send(&raw, Sent::client(Kind::FunctionCall));
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                self.to_server.extend_from_slice(&raw);
                self.queue.copy_ended();
            }
            // COPY data and anything else: the server answers (or complains).
            _ => self.to_server.extend_from_slice(&raw),
        }
        self.drain_local(srv);
        Ok(())
    }

    fn send(&mut self, bytes: &[u8], mut sent: Sent) {
        sent.group = self.group;
        self.to_server.extend_from_slice(bytes);
        self.queue.push(sent);
    }

    fn local(&mut self, reply: bytes::BytesMut, undo: Vec<Change>) {
        self.queue.push_local(Reply::Bytes(reply), undo, true);
    }

    /// Answers the client's current message with an ERROR as PostgreSQL would; the rest of
    /// its batch is dropped up to the Sync, as the server would skip it.
    fn local_error(&mut self, code: &str, message: &str) {
        self.local(
            wire::error_response("ERROR", code, message, None),
            Vec::new(),
        );
        self.skipping = true;
    }

    /// Puts the client's message back until the earlier groups are answered.
    fn wait_for_answers(&mut self, raw: &[u8]) {
        self.wait_with(Frame::Whole {
            tag: raw[0],
            raw: bytes::Bytes::copy_from_slice(raw),
        });
    }

    /// Puts `frame` back at the head of the waiting messages; the server's next answers
    /// let it through again.
    fn wait_with(&mut self, frame: Frame) {
        self.backlog_bytes += frame.raw().len();
        self.backlog.push_front(frame);
        self.phase = super::Phase::Waiting;
    }

    /// Whether a frame using `st` must wait: the server lacks it, and whether it can be
    /// prepared there depends on an earlier group still in flight failing the open block.
    fn waits_for_block_outcome(&mut self, st: &Statement, srv: &mut Tracked) -> bool {
        !self.status_settled()
            && self.status != TxnStatus::Idle
            && self.presence(&st.server_name, srv) != Presence::Present
    }

    fn query(&mut self, raw: &[u8], body: &[u8], srv: &mut Tracked) -> Result<(), Refusal> {
        let text = wire::Query::decode(body).map_err(malformed)?.text;
        self.counts.queries += 1;
        let mut undo = Vec::new();
        if self.txn() {
            if let Some(name) = sql::single_deallocate(&text) {
                if let Some(was) = self.client.statements.remove(&name) {
                    // PgBouncer 1.22+ answers this for its renamed statements too.
                    let undo = vec![Change::ClientStatement {
                        name,
                        was: Some(was),
                    }];
                    self.queue.push_local(Reply::Deallocate, undo, false);
                    return Ok(());
                }
            }
            // A simple Query drops the unnamed statement, the client's and the server's
            // (unless the server skips it, after an extended error earlier in its batch).
            undo.push(Change::ClientUnnamed(self.client.unnamed.take()));
            undo.push(Change::ServerUnnamed(std::mem::replace(
                &mut srv.unnamed,
                UnnamedOnServer::Empty,
            )));
        }
        let effects = sql::classify(&text);
        self.note_effects(&effects, srv);
        self.note_resets(&effects);
        let mut sent = Sent::client(Kind::Query).undo(undo);
        sent.tags = effects;
        self.send(raw, sent);
        self.group += 1;
        // A batch a simple Query ends is committed with it: put startup values back now.
        self.restore_startup(srv);
        Ok(())
    }

    /// Records what executing statements with `effects` does to the session, as it is sent.
    fn note_effects(&mut self, effects: &[Effect], srv: &Tracked) {
        for e in effects {
            if e.touches_settings() {
                self.client.settings_may_change();
            }
            match e {
                Effect::Sticky(why) => {
                    self.client.sticky = Some(why);
                    self.pin(why);
                }
                Effect::Call => {
                    self.client.called_procedure = true;
                    if srv.redshift {
                        self.pin("CALL on Redshift");
                    }
                }
                Effect::Custom(name) => {
                    self.client.custom.insert(name.clone());
                }
                _ => {}
            }
        }
    }

    /// Notes the `RESET`s among `effects`: the client's startup values of those settings
    /// are put back at the end of the batch (a private session resets to those, a pooled
    /// server to its login's).
    fn note_resets(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Reset(n) if self.client.startup.contains_key(n) => {
                    self.pending_restore.names.insert(n.clone());
                }
                Effect::ResetAll | Effect::DiscardAll => self.pending_restore.all = true,
                _ => {}
            }
        }
    }

    /// Sends the statement that puts startup values back after the `RESET`s noted, if any:
    /// as an extended-protocol batch of its own under names no client uses, so the client's
    /// unnamed statement and portals stay as they were; its answers are swallowed, and the
    /// client's ReadyForQuery waits for it.
    fn restore_startup(&mut self, _srv: &mut Tracked) {
        let pending = std::mem::take(&mut self.pending_restore);
        if !pending.all && pending.names.is_empty() {
            return;
        }
        let names = (!pending.all).then_some(&pending.names);
        let Some(sql) = params::restore_startup_sql(params::startup_to_restore(
            &self.client.startup,
            names,
            &self.login_defaults,
        )) else {
            return;
        };
        self.restores += 1;
        let name = format!("{SERVER_PREFIX}restore_{}", self.restores);
        let parse = Parse {
            name: name.clone(),
            query: sql,
            query_raw: None,
            param_types: bytes::Bytes::from_static(&[0, 0]),
        };
        let own = |kind| Sent::own(kind, Own::RestoreStartup);
        self.send(&parse.encode_as(&name), own(Kind::Parse));
        let bind = Bind {
            portal: name.clone(),
            statement: name.clone(),
            rest: bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0]),
        };
        self.send(&bind.encode_for(&name), own(Kind::Bind));
        self.send(&wire::execute(&name, 0), own(Kind::Execute));
        self.send(&wire::close(target::PORTAL, &name), own(Kind::Close));
        self.send(&wire::close(target::STATEMENT, &name), own(Kind::Close));
        self.send(&wire::sync(), own(Kind::Sync));
        self.group += 1;
    }

    fn parse(&mut self, raw: &[u8], body: &[u8], srv: &mut Tracked) -> Result<(), Refusal> {
        let parse = Parse::decode(body).map_err(malformed)?;
        if parse.name.is_empty() {
            return self.parse_unnamed(raw, parse, srv);
        }
        let name = parse.name.clone();
        if self.client.has_statement(&name) {
            return self.parse_duplicate(raw, &parse, srv);
        }
        if self.client.statements.len() >= MAX_CLIENT_STATEMENTS {
            return Err(Refusal::new(
                sqlstate::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "too many prepared statements ({MAX_CLIENT_STATEMENTS} at most per client connection)"
                ),
                Some("close statements you no longer need"),
            ));
        }
        let effects = sql::classify(&parse.query);
        let st = Statement::new(parse, effects, self.client.fingerprint);
        self.client.statements.insert(name.clone(), st.clone());
        self.created_now(&name);
        let undo = vec![Change::ClientStatement {
            name: name.clone(),
            was: None,
        }];
        if !self.txn() {
            self.send(raw, Sent::client(Kind::Parse).undo(undo));
            return Ok(());
        }
        match self.presence(&st.server_name, srv) {
            // PostgreSQL takes a Parse that ends a transaction in any state (and its
            // meaning cannot change).
            Presence::Present if sql::ends_transaction(&st.parse.query) => {
                self.local(wire::parse_complete(), undo)
            }
            // A Parse means the schema as it is now: the shared statement, perhaps parsed
            // before DDL another session ran, is parsed again (in the same round trip).
            Presence::Present if self.status_settled() && self.status != TxnStatus::Failed => {
                self.close_server_statement(&st.server_name, Presence::Present, srv);
                self.prepare(&st, None, undo, srv);
            }
            // The transaction failed, or an earlier group still in flight may fail it: a copy
            // under a name of the client's own goes to the server, which answers as it must.
            Presence::Present => {
                let private = Statement::new(
                    st.parse.clone(),
                    st.effects.clone(),
                    unnamed_token() | (1 << 63),
                );
                self.client.statements.insert(name, private.clone());
                self.prepare(&private, None, undo, srv);
            }
            Presence::Stale => {
                self.close_stale(&st.server_name, srv);
                self.prepare(&st, None, undo, srv);
            }
            Presence::Absent => self.prepare(&st, None, undo, srv),
        }
        Ok(())
    }

    /// Whether the held server has `name`.
    fn presence(&mut self, name: &str, srv: &mut Tracked) -> Presence {
        srv.statements.touch(name)
    }

    /// Whether `frame` names a statement a Parse of an earlier, still unanswered Sync group
    /// made (the client's own, or the proxy's on the server): whether it exists depends on
    /// that group's outcome (an error before the Parse makes the server skip it), so the
    /// frame waits for the answer.
    pub(super) fn waits_for_earlier_group(&self, frame: &Frame) -> bool {
        if self.created.is_empty() {
            return false;
        }
        let Frame::Whole { tag, raw } = frame else {
            return false;
        };
        let body = wire::body(raw);
        let name = match *tag {
            frontend::BIND => Bind::decode(&body).map(|b| b.statement).ok(),
            frontend::DESCRIBE => NamedTarget::decode(&body)
                .ok()
                .filter(|t| t.kind == target::STATEMENT)
                .map(|t| t.name),
            frontend::PARSE => Parse::decode(&body).map(|p| p.name).ok(),
            _ => None,
        };
        let Some(name) = name else {
            return false;
        };
        self.created_in_unanswered_group(&name)
            || self
                .client
                .statements
                .get(&name)
                .is_some_and(|st| self.created_in_unanswered_group(&st.server_name))
    }

    /// A Parse of a name the client holds: PostgreSQL answers 42P05 and keeps the first.
    /// The server says so itself (in the client's transaction), about the client's name.
    fn parse_duplicate(
        &mut self,
        raw: &[u8],
        parse: &Parse,
        srv: &mut Tracked,
    ) -> Result<(), Refusal> {
        let existing = self.client.statement(&parse.name);
        match existing {
            Some(st) if self.txn() => {
                let present = self.presence(&st.server_name, srv) == Presence::Present;
                if present {
                    // The server checks it in PostgreSQL's order (syntax, analysis, failed
                    // transaction, then the duplicate name) against the statement it holds.
                    let mut sent = Sent::client(Kind::Parse);
                    sent.rename = Some((st.server_name.clone(), parse.name.clone()));
                    self.send(&parse.encode_as(&st.server_name), sent);
                } else if !self.status_settled() {
                    // Whether the transaction failed decides the answer: wait for it.
                    self.wait_for_answers(raw);
                } else if self.status == TxnStatus::Failed && sql::ends_transaction(&parse.query) {
                    // Taken in a failed transaction, so the name is what PostgreSQL refuses.
                    self.local_error(
                        sqlstate::DUPLICATE_PREPARED_STATEMENT,
                        &format!("prepared statement \"{}\" already exists", parse.name),
                    );
                } else {
                    self.parse_duplicate_elsewhere(parse);
                }
            }
            // The server has the name itself (session mode, or an SQL PREPARE).
            _ => self.send(raw, Sent::client(Kind::Parse)),
        }
        Ok(())
    }

    /// A duplicate Parse where the server lacks the client's statement: the new text goes
    /// to the server under a throwaway name, so its errors (syntax, analysis, a failed
    /// transaction) come in PostgreSQL's order; if it is taken, it is closed and a message
    /// made to fail stands for PostgreSQL's 42P05 (the server then skips the rest of the
    /// batch, as PostgreSQL would).
    fn parse_duplicate_elsewhere(&mut self, parse: &Parse) {
        let throwaway = format!("{SERVER_PREFIX}dup_{}", unnamed_token());
        let rename = Some((throwaway.clone(), parse.name.clone()));
        let mut sent = Sent::own(Kind::Parse, Own::Close);
        sent.rename = rename.clone();
        self.send(&parse.encode_as(&throwaway), sent);
        let close = Sent::own(Kind::Close, Own::Close);
        self.send(&wire::close(target::STATEMENT, &throwaway), close);
        let mut fail = Sent::own(Kind::Parse, Own::Duplicate);
        fail.rename = rename;
        let failing = Parse {
            name: format!("{throwaway}_x"),
            query: "rip duplicate".to_owned(),
            query_raw: None,
            param_types: bytes::Bytes::from_static(&[0, 0]),
        };
        self.send(&failing.encode_as(&failing.name), fail);
    }

    fn parse_unnamed(
        &mut self,
        raw: &[u8],
        parse: Parse,
        srv: &mut Tracked,
    ) -> Result<(), Refusal> {
        if self.txn() && self.status != TxnStatus::Failed {
            if let Some(name) = sql::single_deallocate(&parse.query) {
                if self.client.statements.contains_key(&name) {
                    let was = self.client.unnamed.replace(Unnamed::Deallocate(name));
                    self.local(wire::parse_complete(), vec![Change::ClientUnnamed(was)]);
                    return Ok(());
                }
            }
        }
        let effects = sql::classify(&parse.query);
        let token = unnamed_token();
        let statement = Statement::new(parse, effects, self.client.fingerprint);
        let was = self
            .client
            .unnamed
            .replace(Unnamed::Prepared { token, statement });
        let was_server = std::mem::replace(&mut srv.unnamed, UnnamedOnServer::Of(token));
        self.created_now("");
        let mut sent = Sent::client(Kind::Parse).undo(vec![
            Change::ClientUnnamed(was),
            Change::ServerUnnamed(was_server),
        ]);
        sent.stmt = Some(String::new());
        // A failed Parse still dropped the statement before it, on the server and for the client.
        sent.on_error = Some(vec![
            Change::ClientUnnamed(None),
            Change::ServerUnnamed(UnnamedOnServer::Empty),
        ]);
        self.send(raw, sent);
        Ok(())
    }

    /// Prepares `st` on the server under its pool name: the client's own Parse (`own`
    /// `None`, answer forwarded) or the proxy's (answer swallowed, error forwarded).
    fn prepare(
        &mut self,
        st: &Arc<Statement>,
        own: Option<Own>,
        mut undo: Vec<Change>,
        srv: &mut Tracked,
    ) {
        let name = &st.server_name;
        if let Some(old) = srv.statements.insert(name) {
            let close = Sent::own(Kind::Close, Own::Close).undo(vec![Change::ServerStatement {
                name: old.clone(),
                was: Presence::Present,
            }]);
            self.send(&wire::close(target::STATEMENT, &old), close);
        }
        undo.push(Change::ServerStatement {
            name: name.clone(),
            was: Presence::Absent,
        });
        let mut sent = Sent::client(Kind::Parse).undo(undo);
        sent.own = own;
        sent.stmt = Some(name.clone());
        // Its error is the client's to hear, about the statement as the client named it.
        sent.rename = Some((name.clone(), st.parse.name.clone()));
        self.created_now(name);
        self.send(&st.parse.encode_as(name), sent);
    }

    /// Closes a statement whose plan went stale, so it can be prepared again.
    fn close_stale(&mut self, name: &str, srv: &mut Tracked) {
        self.close_server_statement(name, Presence::Stale, srv);
    }

    /// Closes the server's statement `name` (which was `was`).
    fn close_server_statement(&mut self, name: &str, was: Presence, srv: &mut Tracked) {
        srv.statements.remove(name);
        let close = Sent::own(Kind::Close, Own::Close).undo(vec![Change::ServerStatement {
            name: name.to_owned(),
            was,
        }]);
        self.send(&wire::close(target::STATEMENT, name), close);
    }

    /// Whether `st` is missing on the held server while its transaction failed (and it
    /// does not end the transaction): it cannot be prepared there now.
    fn lacks_in_failed_transaction(&mut self, st: &Arc<Statement>, srv: &mut Tracked) -> bool {
        self.status_settled()
            && self.status == TxnStatus::Failed
            && !sql::ends_transaction(&st.parse.query)
            && self.presence(&st.server_name, srv) != Presence::Present
    }

    /// Prepares `st` on the held server unless it has it (transaction mode).
    fn ensure_prepared(&mut self, st: &Arc<Statement>, srv: &mut Tracked) {
        match self.presence(&st.server_name, srv) {
            Presence::Present => {}
            Presence::Stale => {
                self.close_stale(&st.server_name, srv);
                self.prepare(st, Some(Own::Prepare), Vec::new(), srv);
            }
            Presence::Absent => self.prepare(st, Some(Own::Prepare), Vec::new(), srv),
        }
    }

    /// Makes the server's unnamed statement the client's (prepared again), or none at all.
    fn ensure_unnamed(&mut self, srv: &mut Tracked) {
        match self.client.unnamed.clone() {
            Some(Unnamed::Prepared { token, statement }) => {
                if srv.unnamed == UnnamedOnServer::Of(token) {
                    return;
                }
                self.created_now("");
                let was = std::mem::replace(&mut srv.unnamed, UnnamedOnServer::Of(token));
                let mut sent =
                    Sent::own(Kind::Parse, Own::Prepare).undo(vec![Change::ServerUnnamed(was)]);
                sent.on_error = Some(vec![Change::ServerUnnamed(UnnamedOnServer::Empty)]);
                sent.stmt = Some(String::new());
                self.send(&statement.parse.encode_as(""), sent);
            }
            _ => {
                if srv.unnamed == UnnamedOnServer::Empty {
                    return;
                }
                let was = std::mem::replace(&mut srv.unnamed, UnnamedOnServer::Empty);
                let sent =
                    Sent::own(Kind::Close, Own::Close).undo(vec![Change::ServerUnnamed(was)]);
                self.send(&wire::close(target::STATEMENT, ""), sent);
            }
        }
    }

    /// How to say a statement name the client does not hold to the server: as is, unless
    /// it could be one of the proxy's own (then a name the server cannot have).
    fn unknown_name(name: &str) -> Option<(String, String)> {
        name.starts_with(SERVER_PREFIX)
            .then(|| (format!("{name}_"), name.to_owned()))
    }

    fn bind(&mut self, raw: &[u8], body: &bytes::Bytes, srv: &mut Tracked) -> Result<(), Refusal> {
        let bind = Bind::decode(body).map_err(malformed)?;
        let portal = bind.portal.clone();
        if !self.txn() {
            let st = self.session_statement(&bind.statement);
            self.note_portal(&portal, st);
            self.send(raw, Sent::client(Kind::Bind));
            return Ok(());
        }
        if !self.client.local_portals.is_empty() {
            self.client.local_portals.remove(&portal);
        }
        if bind.statement.is_empty() {
            if let Some(Unnamed::Deallocate(name)) = &self.client.unnamed {
                let was = self
                    .client
                    .local_portals
                    .insert(portal.clone(), name.clone());
                self.local(
                    wire::bind_complete(),
                    vec![Change::LocalPortal { name: portal, was }],
                );
                return Ok(());
            }
            self.ensure_unnamed(srv);
            let st = match &self.client.unnamed {
                Some(Unnamed::Prepared { statement, .. }) => Some(statement.clone()),
                _ => None,
            };
            self.note_portal(&portal, st);
            self.send(raw, Sent::client(Kind::Bind));
            return Ok(());
        }
        match self.client.statement(&bind.statement) {
            // Whether it can be prepared here depends on whether an earlier group still in
            // flight fails the transaction block: wait for it.
            Some(st) if self.waits_for_block_outcome(&st, srv) => self.wait_for_answers(raw),
            Some(st) if self.lacks_in_failed_transaction(&st, srv) => {
                // It cannot be prepared here now; PostgreSQL checks the parameter count
                // before it refuses the Bind for the failed transaction.
                let wanted = st
                    .parse
                    .param_count()
                    .max(sql::highest_parameter(&st.parse.query));
                let supplied = bind.param_count().unwrap_or(0);
                if supplied != wanted {
                    self.local_error(
                        sqlstate::PROTOCOL_VIOLATION,
                        &format!(
                            "bind message supplies {} parameters, but prepared statement \"{}\" requires {wanted}",
                            supplied, bind.statement
                        ),
                    );
                } else {
                    self.local_error(sqlstate::IN_FAILED_SQL_TRANSACTION, IN_FAILED_MESSAGE);
                }
            }
            Some(st) => {
                self.ensure_prepared(&st, srv);
                let mut sent = Sent::client(Kind::Bind);
                sent.stmt = Some(st.server_name.clone());
                sent.rename = Some((st.server_name.clone(), bind.statement.clone()));
                self.send(&bind.encode_for(&st.server_name), sent);
                self.note_portal(&portal, Some(st));
            }
            None => {
                self.note_portal(&portal, None);
                match Self::unknown_name(&bind.statement) {
                    Some((said, name)) => {
                        let mut sent = Sent::client(Kind::Bind);
                        sent.rename = Some((said.clone(), name));
                        self.send(&bind.encode_for(&said), sent);
                    }
                    None => self.send(raw, Sent::client(Kind::Bind)),
                }
            }
        }
        Ok(())
    }

    /// Session mode: the client's statement of that name (its effects count at Execute).
    fn session_statement(&self, name: &str) -> Option<Arc<Statement>> {
        if name.is_empty() {
            match &self.client.unnamed {
                Some(Unnamed::Prepared { statement, .. }) => Some(statement.clone()),
                _ => None,
            }
        } else {
            self.client.statements.get(name).cloned()
        }
    }

    /// Remembers which statement a portal runs, when executing it has effects.
    fn note_portal(&mut self, portal: &str, st: Option<Arc<Statement>>) {
        match st {
            Some(st) if !st.effects.is_empty() => {
                self.client.portal_effects.insert(portal.to_owned(), st);
            }
            _ => {
                if !self.client.portal_effects.is_empty() {
                    self.client.portal_effects.remove(portal);
                }
            }
        }
    }

    fn execute(&mut self, raw: &[u8], body: &[u8], srv: &mut Tracked) -> Result<(), Refusal> {
        let ex = Execute::decode(body).map_err(malformed)?;
        if let Some(name) = self.client.local_portals.get(&ex.portal).cloned() {
            let was = self.client.statements.remove(&name);
            self.local(
                wire::command_complete("DEALLOCATE"),
                vec![Change::ClientStatement { name, was }],
            );
            return Ok(());
        }
        self.counts.queries += 1;
        let effects = self
            .client
            .portal_effects
            .get(&ex.portal)
            .map(|st| st.effects.clone())
            .unwrap_or_default();
        let mut sent = Sent::client(Kind::Execute);
        if !effects.is_empty() {
            self.note_effects(&effects, srv);
            self.note_resets(&effects);
            sent.tags = effects;
        }
        self.send(raw, sent);
        Ok(())
    }

    fn describe(&mut self, raw: &[u8], body: &[u8], srv: &mut Tracked) -> Result<(), Refusal> {
        let t = NamedTarget::decode(body).map_err(malformed)?;
        if t.kind == target::PORTAL {
            if self.client.local_portals.contains_key(&t.name) {
                self.local(wire::no_data(), Vec::new());
            } else {
                self.send(raw, Sent::client(Kind::DescribePortal));
            }
            return Ok(());
        }
        if !self.txn() {
            self.send(raw, Sent::client(Kind::DescribeStatement));
            return Ok(());
        }
        if t.name.is_empty() {
            if let Some(Unnamed::Deallocate(_)) = self.client.unnamed {
                let mut reply = wire::no_parameters();
                reply.extend_from_slice(&wire::no_data());
                self.local(reply, Vec::new());
                return Ok(());
            }
            self.ensure_unnamed(srv);
            self.send(raw, Sent::client(Kind::DescribeStatement));
            return Ok(());
        }
        let (said, rename) = match self.client.statement(&t.name) {
            Some(st) if self.waits_for_block_outcome(&st, srv) => {
                self.wait_for_answers(raw);
                return Ok(());
            }
            Some(st) if self.lacks_in_failed_transaction(&st, srv) => {
                // It cannot be prepared here now: answered as PostgreSQL would, which
                // describes parameters (when all were declared) and statements without rows.
                let declared = st.parse.param_count();
                if sql::may_return_rows(&st.parse.query)
                    || sql::highest_parameter(&st.parse.query) > declared
                    || st
                        .parse
                        .param_types
                        .get(2..)
                        .unwrap_or_default()
                        .chunks(4)
                        .any(|oid| oid == [0, 0, 0, 0])
                {
                    self.local_error(sqlstate::IN_FAILED_SQL_TRANSACTION, IN_FAILED_MESSAGE);
                } else {
                    let mut reply = wire::parameter_description(&st.parse.param_types);
                    reply.extend_from_slice(&wire::no_data());
                    self.local(reply, Vec::new());
                }
                return Ok(());
            }
            Some(st) => {
                self.ensure_prepared(&st, srv);
                let said = st.server_name.clone();
                (said.clone(), Some((said, t.name.clone())))
            }
            None => match Self::unknown_name(&t.name) {
                Some((said, name)) => (said.clone(), Some((said, name))),
                None => (t.name.clone(), None),
            },
        };
        let mut sent = Sent::client(Kind::DescribeStatement);
        sent.rename = rename;
        self.send(&wire::describe(target::STATEMENT, &said), sent);
        Ok(())
    }

    fn close(&mut self, raw: &[u8], body: &[u8], srv: &mut Tracked) -> Result<(), Refusal> {
        let t = NamedTarget::decode(body).map_err(malformed)?;
        let _ = srv;
        if t.kind == target::PORTAL {
            if let Some(was) = self.client.local_portals.remove(&t.name) {
                let undo = vec![Change::LocalPortal {
                    name: t.name,
                    was: Some(was),
                }];
                self.local(wire::close_complete(), undo);
            } else {
                self.send(raw, Sent::client(Kind::Close));
            }
            return Ok(());
        }
        if t.name.is_empty() {
            let was = self.client.unnamed.take();
            let undo = vec![Change::ClientUnnamed(was)];
            if self.txn() {
                // The server's unnamed statement is left; it is closed or replaced before
                // any Bind of this client needs it.
                self.local(wire::close_complete(), undo);
            } else {
                self.send(raw, Sent::client(Kind::Close).undo(undo));
            }
            return Ok(());
        }
        if self.client.sql_prepared.remove(&t.name) {
            // An SQL-prepared statement lives on the (pinned) server under its own name.
            self.send(raw, Sent::client(Kind::Close));
            return Ok(());
        }
        let was = self.client.statements.remove(&t.name);
        let undo = vec![Change::ClientStatement { name: t.name, was }];
        if self.txn() {
            // The server-side statement stays for the pool's other clients; closing a name
            // the client does not hold is no error in PostgreSQL either.
            self.local(wire::close_complete(), undo);
        } else {
            self.send(raw, Sent::client(Kind::Close).undo(undo));
        }
        Ok(())
    }

    fn sync(&mut self, raw: &[u8], srv: &mut Tracked) {
        self.skipping = false;
        self.send(raw, Sent::client(Kind::Sync));
        self.group += 1;
        self.restore_startup(srv);
    }
}
