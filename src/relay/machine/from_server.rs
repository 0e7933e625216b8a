//! Server answers: which client message (or which work of the proxy's own) each belongs
//! to, whether the client hears it, and what it means for the bookkeeping.

use super::queue::{Entry, Kind, Own, Sent};
use super::{Machine, Phase};
use crate::base::refusal::Refusal;
use crate::pool::params;
use crate::pool::tracked::{Tracked, UnnamedOnServer};
use crate::wire::protocol::{backend, sqlstate};
use crate::wire::sql::Effect;
use crate::wire::{self, Frame, TxnStatus};
use bytes::Bytes;

/// What PostgreSQL says when DDL changed the result of a prepared statement's plan.
const STALE_PLAN: &str = "cached plan must not change result type";

impl Machine {
    /// One message (or piece of a large one) from the held server.
    pub fn on_server(&mut self, frame: Frame, srv: &mut Tracked) -> Result<(), Refusal> {
        match frame {
            Frame::Piece { raw, .. } => {
                if self.forwarding() {
                    self.to_client.extend_from_slice(&raw);
                } else if self.read_back.is_some() {
                    // No settings row is this large: the read-back cannot be trusted.
                    self.own_error = Some("a settings row too large to read".into());
                }
            }
            Frame::Whole { tag, raw } => {
                self.on_server_message(tag, raw, srv)?;
                self.drain_local(srv);
                if self.phase == Phase::Waiting {
                    // Maybe the answer the waiting messages need came: try them again.
                    self.phase = Phase::Ready;
                    self.replay_backlog(srv)?;
                }
            }
        }
        Ok(())
    }

    /// Whether answers arriving now go to the client.
    fn forwarding(&mut self) -> bool {
        self.queue.head().is_none_or(|s| s.own.is_none())
    }

    fn on_server_message(&mut self, tag: u8, raw: Bytes, srv: &mut Tracked) -> Result<(), Refusal> {
        let body = wire::body(&raw);
        match tag {
            backend::PARAMETER_STATUS => self.report(&raw, &body, srv),
            // Notifications always reach the client.
            backend::NOTIFICATION_RESPONSE => self.to_client.extend_from_slice(&raw),
            backend::NOTICE_RESPONSE => {
                if self.forwarding() {
                    self.to_client.extend_from_slice(&raw);
                }
            }
            backend::READY_FOR_QUERY => self.ready(&raw, &body, srv)?,
            backend::ERROR_RESPONSE => self.error(&raw, &body, srv),
            _ => self.answer(tag, &raw, &body, srv),
        }
        Ok(())
    }

    /// A message that answers (part of) the head message.
    fn answer(&mut self, tag: u8, raw: &Bytes, body: &[u8], srv: &mut Tracked) {
        let Some(head) = self.queue.head() else {
            // Nothing expected: pass it on rather than lose it.
            self.to_client.extend_from_slice(raw);
            return;
        };
        let (kind, own) = (head.kind, head.own);
        let done = match (tag, kind) {
            (backend::PARSE_COMPLETE, Kind::Parse)
            | (backend::BIND_COMPLETE, Kind::Bind)
            | (backend::CLOSE_COMPLETE, Kind::Close)
            | (
                backend::ROW_DESCRIPTION | backend::NO_DATA,
                Kind::DescribeStatement | Kind::DescribePortal,
            )
            | (backend::EMPTY_QUERY_RESPONSE | backend::PORTAL_SUSPENDED, Kind::Execute) => true,
            (backend::COMMAND_COMPLETE, Kind::Execute) => {
                self.command_complete(body, srv);
                true
            }
            (backend::COMMAND_COMPLETE, Kind::Query | Kind::FunctionCall) => {
                if own.is_none() {
                    self.command_complete(body, srv);
                }
                false
            }
            (backend::DATA_ROW, _) if own == Some(Own::ReadBack) => {
                self.read_back_row(body);
                false
            }
            (backend::COPY_IN_RESPONSE, _) => {
                self.queue.copy_in_started();
                false
            }
            _ => false,
        };
        if own.is_none() {
            self.to_client.extend_from_slice(raw);
        }
        if done {
            self.queue.pop();
        }
    }

    fn read_back_row(&mut self, body: &[u8]) {
        if let Some(rows) = self.read_back.as_mut() {
            if let Err(e) = params::add_read_back_row(rows, body) {
                self.own_error = Some(e.to_string());
            }
        }
    }

    /// Effects that count once the server completed the statement of that tag.
    fn command_complete(&mut self, body: &[u8], srv: &mut Tracked) {
        let Ok(tag) = wire::command_tag(body) else {
            return;
        };
        let Some(head) = self.queue.head_mut() else {
            return;
        };
        let taken = match tag.as_str() {
            "PREPARE" => take_effect(&mut head.tags, |e| matches!(e, Effect::Prepare { .. })),
            "DEALLOCATE" => take_effect(&mut head.tags, |e| matches!(e, Effect::Deallocate { .. })),
            "DEALLOCATE ALL" => take_effect(&mut head.tags, |e| *e == Effect::DeallocateAll),
            "DISCARD ALL" => take_effect(&mut head.tags, |e| *e == Effect::DiscardAll),
            _ => None,
        };
        match taken {
            Some(Effect::Prepare { name }) => {
                self.client.sql_prepared.insert(name);
                self.pin("SQL PREPARE");
            }
            Some(Effect::Deallocate { name }) => {
                self.client.sql_prepared.remove(&name);
                self.client.statements.remove(&name);
            }
            Some(e @ (Effect::DeallocateAll | Effect::DiscardAll)) => {
                self.client.sql_prepared.clear();
                self.client.statements.clear();
                srv.statements.clear();
                if e == Effect::DiscardAll {
                    self.client.unnamed = None;
                    srv.unnamed = UnnamedOnServer::Unknown;
                }
            }
            _ => {}
        }
    }

    /// Whether `error` says a custom setting the client named is undefined (its `SET`
    /// failed); that name is then no longer read back.
    fn forget_undefined_custom(&mut self, error: &str) -> bool {
        let Some(name) = error
            .strip_prefix("unrecognized configuration parameter \"")
            .and_then(|r| r.strip_suffix('"'))
        else {
            return false;
        };
        self.client.custom.remove(&name.to_ascii_lowercase())
    }

    fn error(&mut self, raw: &Bytes, body: &[u8], srv: &mut Tracked) {
        let fields = wire::parse_error_fields(body);
        if matches!(fields.severity.as_str(), "FATAL" | "PANIC") {
            // The server ends its session; whether the client's ends too is the relay's
            // call (see `server_lost`): the client hears this reason, and only this.
            self.server_fatal = Some(raw.clone());
            return;
        }
        let Some(head) = self.queue.head() else {
            self.to_client.extend_from_slice(raw);
            return;
        };
        if head.kind.simple() || head.kind == Kind::Sync {
            // ReadyForQuery ends it (a Sync's error: the implicit commit failed).
            match head.own {
                Some(_) => self.own_error = Some(fields.message),
                None => self.to_client.extend_from_slice(raw),
            }
            return;
        }
        let Some(Entry::Sent(failed)) = self.queue.pop() else {
            return;
        };
        self.extended_failed(failed, raw, body, &fields, srv);
    }

    /// An extended-protocol message failed: the client hears why (about its own names),
    /// and everything up to the next Sync is skipped, by the server and here.
    fn extended_failed(
        &mut self,
        failed: Sent,
        raw: &Bytes,
        body: &[u8],
        fields: &wire::ErrorFields,
        srv: &mut Tracked,
    ) {
        if let Some(name) = failed.stmt.as_ref().filter(|n| !n.is_empty()) {
            if fields.code == sqlstate::FEATURE_NOT_SUPPORTED && fields.message.contains(STALE_PLAN)
            {
                srv.statements.mark_stale(name);
                self.invalidated.push(name.clone());
            }
        }
        match (&failed.rename, failed.own) {
            // The startup restore's own batch: its failure is the proxy's to handle.
            (_, Some(Own::RestoreStartup)) => self.own_error = Some(fields.message.clone()),
            (Some((_, name)), Some(Own::Duplicate)) => {
                self.to_client.extend_from_slice(&wire::error_response(
                    "ERROR",
                    sqlstate::DUPLICATE_PREPARED_STATEMENT,
                    &format!("prepared statement \"{name}\" already exists"),
                    None,
                ));
            }
            (Some((said, name)), _) => self.to_client.extend_from_slice(&wire::rename_in_error(
                backend::ERROR_RESPONSE,
                body,
                said,
                name,
            )),
            (None, _) => self.to_client.extend_from_slice(raw),
        }
        let mut skipped = Vec::new();
        let sync_queued = self.queue.skip_to_sync(&mut skipped);
        self.undo(skipped, srv);
        let Sent { undo, on_error, .. } = failed;
        self.undo(on_error.unwrap_or(undo), srv);
        if !sync_queued {
            self.skipping = true;
        }
    }

    fn ready(&mut self, raw: &Bytes, body: &[u8], srv: &mut Tracked) -> Result<(), Refusal> {
        let status = TxnStatus::from_ready_body(body).map_err(|e| {
            Refusal::new(
                sqlstate::CONNECTION_FAILURE,
                format!("malformed message from the cluster: {e}"),
                None,
            )
        })?;
        self.status = status;
        srv.txn = status;
        let answered = self.pop_answered(srv);
        if let Some(s) = &answered {
            self.group_answered(s.group);
        }
        match answered.and_then(|s| s.own) {
            Some(own) => self.own_done(own, srv)?,
            None => {
                if self.queue.head_is_own(Own::RestoreStartup) {
                    self.stashed_ready = Some(raw.clone());
                } else {
                    self.to_client.extend_from_slice(raw);
                }
            }
        }
        if status == TxnStatus::Idle {
            // Portals end with the transaction; the map of their effects is kept until the
            // server is released (messages already sent may still name a portal).
            self.counts.transactions += 1;
        }
        Ok(())
    }

    /// Takes the Sync or simple query a ReadyForQuery answers (anything before it was
    /// skipped by the server).
    fn pop_answered(&mut self, srv: &mut Tracked) -> Option<Sent> {
        let mut skipped = Vec::new();
        let answered = loop {
            match self.queue.pop() {
                Some(Entry::Sent(s)) if s.kind == Kind::Sync || s.kind.simple() => break Some(s),
                Some(Entry::Sent(s)) => skipped.extend(s.undo),
                Some(Entry::Local { undo, .. }) => skipped.extend(undo),
                Some(Entry::CopyEnd) => {}
                None => break None,
            }
        };
        self.undo(skipped, srv);
        answered
    }

    /// The proxy's own simple query finished (its ReadyForQuery is swallowed).
    fn own_done(&mut self, own: Own, srv: &mut Tracked) -> Result<(), Refusal> {
        let error = self.own_error.take();
        match own {
            Own::Sync => match error {
                // An unverified sync (a plain application_name) cannot fail; if it did, the
                // client's statements already went on: only the server is suspect.
                Some(e) if self.phase == Phase::Ready => {
                    tracing::warn!(error = %e, "applying the session's settings failed; the server will be reset");
                    srv.settings_known = false;
                }
                Some(e) => {
                    srv.settings_known = false;
                    self.sync_failed = Some(e);
                }
                None => {
                    self.phase = Phase::Ready;
                    self.replay_backlog(srv)?;
                }
            },
            Own::ReadBack => {
                let rows = self.read_back.take();
                match (error, rows) {
                    (None, Some(rows)) => {
                        srv.settings = rows.clone();
                        self.client.settings_read_back(rows);
                    }
                    (Some(e), _) if self.forget_undefined_custom(&e) => {
                        // Redshift reads custom settings one by one and fails on one the
                        // session never got (its SET failed): it is forgotten, and the settings
                        // are read again before the server is released.
                        self.client.settings_dirty = true;
                    }
                    (e, _) => {
                        // Which settings the session has is unknown: it keeps this server,
                        // where they are, rather than lose them (and the server is reset
                        // when the client leaves).
                        tracing::warn!(error = ?e, "reading the session's settings back failed; the client keeps its server");
                        srv.settings_known = false;
                        self.pin("settings could not be read back");
                    }
                }
            }
            Own::RestoreStartup => {
                if let Some(e) = error {
                    if self.status != TxnStatus::Failed {
                        tracing::warn!(error = %e, "restoring startup settings after RESET failed; the server will be reset");
                        srv.settings_known = false;
                    }
                }
                if let Some(ready) = self.stashed_ready.take() {
                    self.to_client.extend_from_slice(&ready);
                }
            }
            Own::Prepare | Own::Close | Own::Duplicate => {}
        }
        Ok(())
    }
}

/// Removes and returns the first effect matching `f`.
fn take_effect(tags: &mut Vec<Effect>, f: impl Fn(&Effect) -> bool) -> Option<Effect> {
    let i = tags.iter().position(f)?;
    Some(tags.remove(i))
}
