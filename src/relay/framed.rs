//! The pooled relay: one client, the servers it borrows, message by message.
//!
//! Both directions are pumped in one task without blocking either (a slow reader never
//! stalls the other direction's progress). Client messages are framed; those the pool
//! must see are read (Query, Parse, Bind, Describe, Close, Execute, Sync, Terminate) and,
//! in transaction mode, named statements are renamed to their per-pool server names.
//! Server messages are framed so answers can be matched to requests ([`Tracker`]); rows
//! and COPY data stream through as they arrived.
//!
//! The relay only observes and rewrites; the decisions live elsewhere: what SQL does to
//! the session (`wire::sql`), how settings are carried (`pool::params`), statement
//! naming (`pool::prepared`), when a server may go (`pool::txn`), how it is cleaned
//! (`pool::reset`, through the guard's drop).

use super::Traffic;
use crate::cancel::{Attached, CancelKey};
use crate::config::PoolMode;
use crate::pool::guard::{Checkout, OnDrop};
use crate::pool::params::{self, ClientSettings};
use crate::pool::prepared::{ClientStatements, Statement};
use crate::pool::reset::Leftovers;
use crate::pool::server::{CloseReason, ServerConn};
use crate::pool::stats::PoolStats;
use crate::pool::txn::{Kind, Tracker};
use crate::pool::PoolHandle;
use crate::refusal::Refusal;
use crate::stream::Stream;
use crate::wire::sql::{self, Effect};
use crate::wire::{self, Bind, Frame, Framer, NamedTarget, Parse};
use bytes::{Buf, BytesMut};
use std::collections::{HashMap, HashSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;
use tokio_util::sync::CancellationToken;

/// Largest client message read whole (a Query or a Bind); COPY data streams.
pub const MAX_CLIENT_MESSAGE: usize = 256 * 1024 * 1024;
/// Stop reading a side while this much waits to be written to the other.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes read per poll.
const READ_CHUNK: usize = 16 * 1024;

/// How a pooled session ended.
#[derive(Debug)]
pub enum End {
    /// The client said Terminate.
    Terminated,
    /// The client closed (or its socket failed) without Terminate.
    ClientClosed(Option<std::io::Error>),
    /// The server failed or closed mid-session.
    ServerClosed(String),
    /// The proxy is shutting down and the drain time is over.
    Shutdown,
    /// The proxy refused to go on (no server in time, malformed input, limits).
    Refused(Refusal),
}

/// What the client's session holds, as the pool must know it.
#[derive(Default)]
pub struct ClientSession {
    pub settings: ClientSettings,
    /// Transaction mode: the client's named statements.
    statements: ClientStatements,
    /// Session mode: protocol statements the client named on its server.
    named: HashSet<String>,
    /// SQL-level PREPARE names.
    sql_prepared: HashSet<String>,
    /// Transaction mode: the client made state that cannot move; it keeps its server.
    pinned: Option<&'static str>,
    sticky: Option<&'static str>,
    called_procedure: bool,
    /// SET/RESET effects sent but not yet committed by a ReadyForQuery `I`.
    pending: Vec<Effect>,
    error_since_pending: bool,
    unnamed_effects: Vec<Effect>,
    portal_effects: HashMap<String, Vec<Effect>>,
}

impl ClientSession {
    pub fn new(settings: ClientSettings) -> Self {
        Self {
            settings,
            ..Default::default()
        }
    }

    fn leftovers(&self, settings_changed: bool) -> Leftovers {
        Leftovers {
            statements: self.named.iter().cloned().collect(),
            sql_prepared: self.sql_prepared.iter().cloned().collect(),
            sticky: self.sticky,
            called_procedure: self.called_procedure,
            settings_changed,
        }
    }
}

/// What the pump needs the async side to do.
enum Event {
    NeedServer,
    Release,
    Done(End),
}

/// One pooled client session after login.
pub struct Relay {
    mode: PoolMode,
    handle: PoolHandle,
    cancel: CancelKey,
    client: Stream,
    client_in: Framer,
    to_client: BytesMut,
    client_unflushed: bool,
    held: Option<Checkout>,
    to_server: BytesMut,
    server_unflushed: bool,
    tracker: Tracker,
    /// Client messages that arrived while no server was held.
    waiting: Vec<Frame>,
    waiting_bytes: usize,
    session: ClientSession,
    terminated: bool,
    /// The server's settings may differ from what the proxy tracked: reset it at release.
    uncertain: bool,
    traffic: Traffic,
}

impl Relay {
    /// A relay for a logged-in client; `held` is its server (session mode) or `None`.
    pub fn new(
        mode: PoolMode,
        handle: PoolHandle,
        cancel: CancelKey,
        client: Stream,
        client_leftover: BytesMut,
        held: Option<Checkout>,
        session: ClientSession,
    ) -> Relay {
        let mut client_in = Framer::new(MAX_CLIENT_MESSAGE, wire::client_streamable);
        client_in.buf_mut().extend_from_slice(&client_leftover);
        let mut r = Relay {
            mode,
            handle,
            cancel,
            client,
            client_in,
            to_client: BytesMut::new(),
            client_unflushed: false,
            held: None,
            to_server: BytesMut::new(),
            server_unflushed: false,
            tracker: Tracker::default(),
            waiting: Vec::new(),
            waiting_bytes: 0,
            session,
            terminated: false,
            uncertain: false,
            traffic: Traffic::default(),
        };
        if let Some(c) = held {
            r.attach(c);
        }
        r
    }

    /// Runs the session to its end; the server (if held) is reset/checked in or closed.
    pub async fn run(mut self, stop: CancellationToken) -> (Traffic, End) {
        // Messages the client pipelined behind its startup.
        if let Err(end) = self.process_client() {
            return self.finish(end).await;
        }
        loop {
            let event = tokio::select! {
                ev = poll_fn(|cx| self.poll_step(cx)) => ev,
                _ = stop.cancelled() => Event::Done(End::Shutdown),
            };
            match event {
                Event::NeedServer => {
                    let got = tokio::select! {
                        r = self.handle.checkout() => r,
                        _ = stop.cancelled() => return self.finish(End::Shutdown).await,
                    };
                    match got {
                        Ok(c) => {
                            self.attach(c);
                            let waiting = std::mem::take(&mut self.waiting);
                            self.waiting_bytes = 0;
                            for f in waiting {
                                if let Err(end) = self.on_client_frame(f) {
                                    return self.finish(end).await;
                                }
                            }
                        }
                        Err(r) => return self.finish(End::Refused(r)).await,
                    }
                }
                Event::Release => self.release(),
                Event::Done(end) => return self.finish(end).await,
            }
        }
    }

    /// Takes a server: points the cancel key at it and brings its settings to the client's.
    fn attach(&mut self, mut c: Checkout) {
        let s = c.server();
        if let Some((pid, secret)) = &s.backend_key {
            self.cancel.attach(Attached {
                target: s.upstream.clone(),
                upstream_pid: *pid,
                upstream_secret: secret.clone(),
                gate: Some(s.cancel_gate.clone()),
            });
        }
        self.tracker.reset(s.txn_status);
        let desired = self.session.settings.desired();
        if let Some(sql) = params::sync_sql(&desired, &s.applied, &s.params) {
            self.to_server.extend_from_slice(&wire::query(&sql));
            self.tracker.sent(Kind::Query, false, None);
        }
        s.applied = desired;
        PoolStats::add(&c.pool().stats.clients_active, 1);
        self.held = Some(c);
    }

    /// Hands the server back between transactions (transaction mode).
    fn release(&mut self) {
        self.cancel.detach();
        if let Some(mut c) = self.held.take() {
            c.pool()
                .stats
                .clients_active
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            c.server().framer.shrink_if_empty();
            if std::mem::take(&mut self.uncertain) {
                c.on_drop = OnDrop::Reset(Leftovers {
                    settings_changed: true,
                    ..Default::default()
                });
                drop(c);
            } else {
                c.release();
            }
        }
        self.to_server = BytesMut::new();
    }

    /// Ends the session: tells the client why (if it should hear), and decides what
    /// becomes of the server.
    async fn finish(mut self, end: End) -> (Traffic, End) {
        self.cancel.detach();
        if matches!(end, End::Terminated | End::ClientClosed(_)) {
            // A client that leaves before its first query leaves only the proxy's own
            // settings query in flight: let it finish so the server can be reused.
            self.settle_own_work().await;
        }
        if let Some(mut c) = self.held.take() {
            c.pool()
                .stats
                .clients_active
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let clean = self.tracker.settled()
                && self.to_server.is_empty()
                && c.server().framer.at_boundary()
                && !matches!(end, End::ServerClosed(_));
            let status = self.tracker.status();
            c.server().txn_status = status;
            c.on_drop = if !clean {
                OnDrop::Close(match end {
                    End::ServerClosed(_) => CloseReason::Broken,
                    End::Shutdown => CloseReason::Shutdown,
                    _ => CloseReason::ClientLeftMidQuery,
                })
            } else if self.mode == PoolMode::Session
                || self.session.pinned.is_some()
                || self.uncertain
                || status != b'I'
            {
                OnDrop::Reset(self.session.leftovers(self.uncertain))
            } else {
                OnDrop::CheckIn
            };
            drop(c);
        }
        let reply = match &end {
            End::Refused(r) => Some(wire::error_response(
                "FATAL",
                &r.code,
                &r.message,
                r.hint.as_deref(),
            )),
            End::ServerClosed(why) => Some(wire::error_response(
                "FATAL",
                "08006",
                &format!("the cluster closed the server connection: {why}"),
                None,
            )),
            End::Shutdown => Some(wire::error_response(
                "FATAL",
                "57P01",
                "terminating connection: the proxy is shutting down",
                None,
            )),
            _ => None,
        };
        if let Some(msg) = reply {
            self.to_client.extend_from_slice(&msg);
        }
        if !self.to_client.is_empty() && !matches!(end, End::ClientClosed(_)) {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let _ = self.client.write_all(&self.to_client).await;
                let _ = self.client.flush().await;
            })
            .await;
        }
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), self.client.shutdown()).await;
        let stats = &self.handle.pool.stats;
        PoolStats::add(&stats.bytes_in, self.traffic.client_to_server);
        PoolStats::add(&stats.bytes_out, self.traffic.server_to_client);
        (self.traffic, end)
    }

    /// Completes the proxy's own outstanding work on the held server (bounded).
    async fn settle_own_work(&mut self) {
        use tokio::io::AsyncReadExt;
        if self.tracker.settled() || !self.tracker.only_own_work() || self.held.is_none() {
            return;
        }
        let work = async {
            if let Some(h) = self.held.as_mut() {
                let s = h.server();
                s.stream.write_all(&self.to_server).await.ok()?;
                s.stream.flush().await.ok()?;
            }
            self.to_server.clear();
            while !self.tracker.settled() {
                let s = self.held.as_mut()?.server();
                let buf = s.framer.buf_mut();
                buf.reserve(READ_CHUNK);
                if s.stream.read_buf(buf).await.ok()? == 0 {
                    return None;
                }
                self.process_server().ok()?;
            }
            Some(())
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), work).await;
        self.to_client.clear();
    }

    /// Moves bytes both ways until something needs the async side.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        loop {
            let mut progress = false;
            // To the client.
            match write_some(
                cx,
                &mut self.client,
                &mut self.to_client,
                &mut self.client_unflushed,
            ) {
                Ok(p) => progress |= p,
                Err(e) => return Poll::Ready(Event::Done(End::ClientClosed(Some(e)))),
            }
            // To the server.
            if let Some(held) = self.held.as_mut() {
                let s = held.server();
                if let Err(e) = write_some(
                    cx,
                    &mut s.stream,
                    &mut self.to_server,
                    &mut self.server_unflushed,
                )
                .map(|p| progress |= p)
                {
                    return Poll::Ready(Event::Done(End::ServerClosed(e.to_string())));
                }
            }
            // From the server.
            if self.to_client.len() < HIGH_WATER {
                if let Some(held) = self.held.as_mut() {
                    let s = held.server();
                    let buf = s.framer.buf_mut();
                    buf.reserve(READ_CHUNK);
                    match poll_read_buf(Pin::new(&mut s.stream), cx, buf) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Event::Done(End::ServerClosed(
                                "connection closed".into(),
                            )))
                        }
                        Poll::Ready(Ok(_)) => {
                            progress = true;
                            if let Err(end) = self.process_server() {
                                return Poll::Ready(Event::Done(end));
                            }
                        }
                        Poll::Ready(Err(e)) => {
                            return Poll::Ready(Event::Done(End::ServerClosed(e.to_string())))
                        }
                        Poll::Pending => {}
                    }
                }
            }
            if self.may_release() {
                return Poll::Ready(Event::Release);
            }
            // From the client.
            let room = match self.held {
                Some(_) => self.to_server.len() < HIGH_WATER,
                None => self.waiting_bytes < HIGH_WATER,
            };
            if room && !self.terminated {
                let buf = self.client_in.buf_mut();
                buf.reserve(READ_CHUNK);
                match poll_read_buf(Pin::new(&mut self.client), cx, buf) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Event::Done(End::ClientClosed(None))),
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        if let Err(end) = self.process_client() {
                            return Poll::Ready(Event::Done(end));
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        return Poll::Ready(Event::Done(End::ClientClosed(Some(e))))
                    }
                    Poll::Pending => {}
                }
            }
            if self.terminated {
                return Poll::Ready(Event::Done(End::Terminated));
            }
            if self.held.is_none() && !self.waiting.is_empty() {
                return Poll::Ready(Event::NeedServer);
            }
            if self.may_release() {
                return Poll::Ready(Event::Release);
            }
            if !progress {
                if self.held.is_none() {
                    // Idle between transactions: keep no buffers.
                    self.client_in.shrink_if_empty();
                    if self.to_client.is_empty() {
                        self.to_client = BytesMut::new();
                    }
                }
                return Poll::Pending;
            }
        }
    }

    fn may_release(&mut self) -> bool {
        self.mode == PoolMode::Transaction
            && self.session.pinned.is_none()
            && self.to_server.is_empty()
            && self.tracker.may_release()
            && self
                .held
                .as_mut()
                .is_some_and(|h| h.server().framer.at_boundary())
    }

    fn process_client(&mut self) -> Result<(), End> {
        loop {
            let frame = match self.client_in.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(End::Refused(Refusal::new(
                        "08P01",
                        format!("invalid message from the client: {e}"),
                        None,
                    )))
                }
            };
            self.traffic.client_to_server += frame.raw().len() as u64;
            if self.held.is_none() {
                if frame.tag() == b'X' {
                    self.terminated = true;
                    return Ok(());
                }
                self.waiting_bytes += frame.raw().len();
                self.waiting.push(frame);
                continue;
            }
            self.on_client_frame(frame)?;
        }
    }

    /// One client message while a server is held.
    fn on_client_frame(&mut self, frame: Frame) -> Result<(), End> {
        let (tag, raw) = match frame {
            Frame::Piece { raw, .. } => {
                self.to_server.extend_from_slice(&raw);
                return Ok(());
            }
            Frame::Whole { tag, raw } => (tag, raw),
        };
        let body = wire::body(&raw);
        let bad = |e: wire::WireError| {
            End::Refused(Refusal::new(
                "08P01",
                format!("invalid message from the client: {e}"),
                None,
            ))
        };
        let txn = self.mode == PoolMode::Transaction;
        match tag {
            b'X' => {
                self.terminated = true;
                return Ok(());
            }
            b'Q' => {
                let text = wire::query_str(&body).map_err(bad)?;
                let effects = sql::classify(&text);
                self.note_effects(&effects, true);
                self.to_server.extend_from_slice(&raw);
                self.tracker.sent(Kind::Query, true, None);
                PoolStats::add(&self.handle.pool.stats.queries, 1);
            }
            b'P' => {
                let parse = Parse::decode(&body).map_err(bad)?;
                let effects = sql::classify(&parse.query);
                self.note_effects(&effects, false);
                if parse.name.is_empty() || !txn {
                    if parse.name.is_empty() {
                        self.session.unnamed_effects = effects;
                    } else {
                        self.session.named.insert(parse.name.clone());
                    }
                    self.to_server.extend_from_slice(&raw);
                    self.tracker.sent(Kind::Parse, true, None);
                } else {
                    let st = self
                        .session
                        .statements
                        .insert(parse, effects)
                        .map_err(|_| {
                            End::Refused(Refusal::new(
                                "54000",
                                format!(
                                "too many prepared statements ({} at most per client connection)",
                                crate::pool::prepared::MAX_CLIENT_STATEMENTS
                            ),
                                Some("close statements you no longer need"),
                            ))
                        })?;
                    let s = self.server()?;
                    if s.statements.touch(&st.server_name) {
                        self.tracker.answered_locally(wire::parse_complete());
                    } else {
                        self.prepare_on_server(&st, true)?;
                    }
                }
            }
            b'B' => {
                let bind = Bind::decode(&body).map_err(bad)?;
                let known = if txn && !bind.statement.is_empty() {
                    self.session.statements.get(&bind.statement)
                } else {
                    None
                };
                match known {
                    Some(st) => {
                        self.ensure_prepared(&st)?;
                        self.to_server
                            .extend_from_slice(&bind.encode_for(&st.server_name));
                        self.session
                            .portal_effects
                            .insert(bind.portal.clone(), st.effects.clone());
                    }
                    None => {
                        if bind.statement.is_empty() {
                            let e = self.session.unnamed_effects.clone();
                            self.session.portal_effects.insert(bind.portal.clone(), e);
                        }
                        self.to_server.extend_from_slice(&raw);
                    }
                }
                self.tracker.sent(Kind::Bind, true, None);
            }
            b'D' => {
                let t = NamedTarget::decode(&body).map_err(bad)?;
                let kind = if t.kind == b'S' {
                    Kind::DescribeStatement
                } else {
                    Kind::DescribePortal
                };
                let known = if txn && t.kind == b'S' && !t.name.is_empty() {
                    self.session.statements.get(&t.name)
                } else {
                    None
                };
                match known {
                    Some(st) => {
                        self.ensure_prepared(&st)?;
                        self.to_server
                            .extend_from_slice(&wire::describe(b'S', &st.server_name));
                    }
                    None => self.to_server.extend_from_slice(&raw),
                }
                self.tracker.sent(kind, true, None);
            }
            b'E' => {
                let mut b: &[u8] = &body;
                let portal = take_cstr(&mut b).map_err(bad)?;
                if let Some(effects) = self.session.portal_effects.get(&portal) {
                    let effects = effects.clone();
                    self.note_effects(&effects, true);
                }
                self.to_server.extend_from_slice(&raw);
                self.tracker.sent(Kind::Execute, true, None);
                PoolStats::add(&self.handle.pool.stats.queries, 1);
            }
            b'C' => {
                let t = NamedTarget::decode(&body).map_err(bad)?;
                if t.kind == b'S' && !t.name.is_empty() && txn {
                    // The server-side statement stays for other clients of the pool.
                    self.session.statements.remove(&t.name);
                    self.tracker.answered_locally(wire::close_complete());
                } else {
                    if t.kind == b'S' {
                        self.session.named.remove(&t.name);
                    }
                    self.to_server.extend_from_slice(&raw);
                    self.tracker.sent(Kind::Close, true, None);
                }
            }
            b'S' => {
                self.to_server.extend_from_slice(&raw);
                self.tracker.sent(Kind::Sync, true, None);
                self.session.portal_effects.retain(|k, _| !k.is_empty());
            }
            b'H' => {
                self.to_server.extend_from_slice(&raw);
                self.tracker.flushed();
            }
            b'F' => {
                self.to_server.extend_from_slice(&raw);
                self.tracker.sent(Kind::FunctionCall, true, None);
            }
            b'c' | b'f' => {
                self.to_server.extend_from_slice(&raw);
                self.tracker.copy_ended();
            }
            // COPY data and anything else: the server answers (or complains).
            _ => self.to_server.extend_from_slice(&raw),
        }
        self.tracker.drain_synthetic(&mut self.to_client);
        Ok(())
    }

    fn server(&mut self) -> Result<&mut ServerConn, End> {
        match self.held.as_mut() {
            Some(h) => Ok(h.server()),
            None => Err(End::ServerClosed("no server held".into())),
        }
    }

    /// Prepares `st` on the held server unless it has it (answer swallowed).
    fn ensure_prepared(&mut self, st: &Arc<Statement>) -> Result<(), End> {
        if self.server()?.statements.touch(&st.server_name) {
            return Ok(());
        }
        self.prepare_on_server(st, false)
    }

    fn prepare_on_server(&mut self, st: &Arc<Statement>, forward: bool) -> Result<(), End> {
        let evicted = self.server()?.statements.insert(&st.server_name);
        if let Some(old) = evicted {
            self.to_server.extend_from_slice(&wire::close(b'S', &old));
            self.tracker.sent(Kind::Close, false, None);
        }
        self.to_server
            .extend_from_slice(&st.parse.encode_as(&st.server_name));
        self.tracker
            .sent(Kind::Parse, forward, Some(st.server_name.clone()));
        Ok(())
    }

    /// Records what statements do to the session. `executed`: they run now (Query,
    /// Execute); otherwise they are only being prepared.
    fn note_effects(&mut self, effects: &[Effect], executed: bool) {
        let txn = self.mode == PoolMode::Transaction;
        for e in effects {
            match e {
                Effect::Sticky(why) if executed => {
                    self.session.sticky = Some(why);
                    self.pin(why);
                }
                Effect::Call if executed => {
                    self.session.called_procedure = true;
                    if self
                        .held
                        .as_ref()
                        .and_then(|h| h.server_ref())
                        .is_some_and(|s| s.redshift)
                    {
                        self.pin("CALL on Redshift");
                    }
                }
                Effect::Prepare { name } if executed => {
                    self.session.sql_prepared.insert(name.clone());
                    if txn {
                        self.pin("SQL PREPARE");
                    }
                }
                Effect::Deallocate { name } if executed => {
                    self.session.sql_prepared.remove(name);
                }
                Effect::DeallocateAll | Effect::DiscardAll if executed => {
                    self.session.sql_prepared.clear();
                    if let Some(h) = self.held.as_mut() {
                        h.server().statements.clear();
                    }
                    if matches!(e, Effect::DiscardAll) {
                        self.session.pending.push(Effect::ResetAll);
                    }
                }
                Effect::Set { .. } | Effect::Reset { .. } | Effect::ResetAll if executed => {
                    self.session.pending.push(e.clone());
                }
                _ => {}
            }
        }
    }

    fn pin(&mut self, why: &'static str) {
        if self.mode == PoolMode::Transaction && self.session.pinned.is_none() {
            tracing::debug!(pool = %self.handle.pool.label, reason = why, "client keeps its server until it disconnects");
            self.session.pinned = Some(why);
        }
    }

    fn process_server(&mut self) -> Result<(), End> {
        let Relay {
            held,
            tracker,
            to_client,
            session,
            traffic,
            uncertain,
            handle,
            ..
        } = self;
        let Some(held) = held.as_mut() else {
            return Ok(());
        };
        let s = held.server();
        loop {
            let frame = match s.framer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(End::ServerClosed(format!(
                        "malformed message from the cluster: {e}"
                    )))
                }
            };
            match frame {
                Frame::Piece { raw, .. } => {
                    if tracker.forwarding() {
                        traffic.server_to_client += raw.len() as u64;
                        to_client.extend_from_slice(&raw);
                    }
                }
                Frame::Whole { tag, raw } => {
                    let body = wire::body(&raw);
                    match tag {
                        b'S' => {
                            if let Ok((k, v)) = wire::parse_parameter_status(&body) {
                                s.params.insert(k, v);
                            }
                        }
                        b'E' if !session.pending.is_empty() => session.error_since_pending = true,
                        _ => {}
                    }
                    let v = tracker.on_server_message(tag, &body);
                    for name in &v.unprepared {
                        s.statements.remove(name);
                    }
                    if v.swallowed_error {
                        tracing::warn!(pool = %handle.pool.label, error = %wire::parse_error_fields(&body).message, "the proxy's settings query failed; the server will be reset");
                        *uncertain = true;
                    }
                    if v.forward {
                        traffic.server_to_client += raw.len() as u64;
                        to_client.extend_from_slice(&raw);
                    }
                    if tag == b'Z' {
                        let status = tracker.status();
                        s.txn_status = status;
                        if status == b'I' {
                            PoolStats::add(&handle.pool.stats.transactions, 1);
                            let effects = std::mem::take(&mut session.pending);
                            if std::mem::take(&mut session.error_since_pending) {
                                // Which of them took effect is unknown: clean the server later.
                                *uncertain |= !effects.is_empty();
                            } else {
                                for e in &effects {
                                    session.settings.apply(e);
                                    params::apply_to_server(&mut s.applied, e);
                                }
                            }
                        }
                    }
                    tracker.drain_synthetic(to_client);
                }
            }
        }
    }
}

fn take_cstr(b: &mut &[u8]) -> Result<String, wire::WireError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(wire::WireError::Malformed("unterminated string"))?;
    let s = String::from_utf8_lossy(&b[..end]).into_owned();
    *b = &b[end + 1..];
    Ok(s)
}

/// Writes what `w` takes now from `buf`, flushing when it empties; `Ok(true)` if progress.
fn write_some(
    cx: &mut Context<'_>,
    w: &mut Stream,
    buf: &mut BytesMut,
    unflushed: &mut bool,
) -> std::io::Result<bool> {
    let mut progress = false;
    while !buf.is_empty() {
        match Pin::new(&mut *w).poll_write(cx, buf) {
            Poll::Ready(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                *unflushed = true;
                progress = true;
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(progress),
        }
    }
    if *unflushed {
        match Pin::new(&mut *w).poll_flush(cx) {
            Poll::Ready(Ok(())) => *unflushed = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(progress)
}
