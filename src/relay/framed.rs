//! The pooled relay: one client, the servers it borrows, message by message.
//!
//! This is the byte pump (PgBouncer's `sbuf.c`): it reads both sockets without blocking
//! either direction, frames what arrives, hands each frame to the session's state machine
//! (`relay::machine`, where every decision lives) and writes what the machine wants sent.
//! It carries out the machine's events: take a server from the pool (a cancel or a
//! timeout ends that wait with an error for the waiting statement), hand it back, drop a
//! server that refused the client's settings. Rows, COPY data and Redshift's extended
//! RowDescription stream through as they arrived.

use super::machine::{Event, Lost, Machine, Phase};
use super::Traffic;
use crate::base::refusal::Refusal;
use crate::base::stream::Stream;
use crate::cancel::{Attached, CancelKey};
use crate::config::PoolMode;
use crate::pool::checkout::Stale;
use crate::pool::guard::Checkout;
use crate::pool::server::CloseReason;
use crate::pool::stats::PoolStats;
use crate::pool::PoolHandle;
use crate::wire::protocol::sqlstate;
use crate::wire::{self, Framer};
use bytes::{Buf, BytesMut};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::io::poll_read_buf;
use tokio_util::sync::CancellationToken;

/// Largest client message read whole (a Query or a Bind); COPY data streams.
pub const MAX_CLIENT_MESSAGE: usize = 256 * 1024 * 1024;
/// Stop reading a side while this much waits to be written to the other.
const HIGH_WATER: usize = 256 * 1024;
/// Bytes read per poll.
const READ_CHUNK: usize = 16 * 1024;
/// Servers tried for one statement whose settings a server refused.
const SETTINGS_ATTEMPTS: u32 = 2;
/// How often a client that closed its sending side, while answers are still owed to it,
/// is checked for having gone altogether (a write to a closed socket fails).
const CLIENT_PROBE: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// The proxy refused to go on (malformed input, limits, a session-mode failure).
    Refused(Refusal),
}

/// What the pump needs the async side to do.
enum Step {
    Machine(Event),
    /// The client closed its sending side with answers still owed: start probing it.
    HalfClosed,
    Done(End),
}

/// One pooled client session after login.
pub struct Relay {
    mode: PoolMode,
    handle: PoolHandle,
    cancel: CancelKey,
    client: Stream,
    client_in: Framer,
    client_unflushed: bool,
    /// The client closed its sending side: answers still owed are delivered first.
    client_eof: bool,
    held: Option<Checkout>,
    server_unflushed: bool,
    machine: Machine,
    /// Servers that refused the client's settings for the statement waiting now.
    settings_refusals: u32,
    /// Session mode: the server was lost with state that cannot move; the client's next
    /// message hears this and the session ends.
    lost: Option<String>,
    traffic: Traffic,
}

impl Relay {
    /// A relay for a logged-in client; `held` is its server (session mode) or `None`.
    pub fn new(
        handle: PoolHandle,
        cancel: CancelKey,
        client: Stream,
        client_leftover: BytesMut,
        held: Option<Checkout>,
        machine: Machine,
        mode: PoolMode,
    ) -> Result<Relay, Refusal> {
        let mut client_in = Framer::new(MAX_CLIENT_MESSAGE, wire::client_streamable);
        client_in.buf_mut().extend_from_slice(&client_leftover);
        let mut r = Relay {
            mode,
            handle,
            cancel,
            client,
            client_in,
            client_unflushed: false,
            client_eof: false,
            held: None,
            server_unflushed: false,
            machine,
            settings_refusals: 0,
            lost: None,
            traffic: Traffic::default(),
        };
        if let Some(c) = held {
            r.attach(c)?;
        }
        Ok(r)
    }

    /// Runs the session to its end; the server (if held) is reset/checked in or closed.
    pub async fn run(mut self, stop: CancellationToken) -> (Traffic, End) {
        // Messages the client pipelined behind its startup.
        if let Err(end) = self.process_client() {
            return self.finish(end).await;
        }
        let mut probe = tokio::time::interval(CLIENT_PROBE);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let half_closed = self.client_eof;
            let step = tokio::select! {
                s = poll_fn(|cx| self.poll_step(cx)) => s,
                _ = stop.cancelled() => Step::Done(End::Shutdown),
                _ = probe.tick(), if half_closed => {
                    self.machine.probe_client();
                    continue;
                }
            };
            let outcome = match step {
                Step::Machine(Event::NeedServer) => match self.lost.take() {
                    Some(reason) => Err(End::Refused(Refusal::new(
                        sqlstate::CONNECTION_FAILURE,
                        reason,
                        None,
                    ))),
                    None => self.take_server(&stop).await,
                },
                Step::Machine(Event::Release) => {
                    self.release();
                    Ok(())
                }
                Step::Machine(Event::SyncFailed(why)) if self.mode == PoolMode::Session => {
                    Err(End::Refused(Refusal::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("the cluster refused this session's settings: {why}"),
                        None,
                    )))
                }
                Step::Machine(Event::SyncFailed(why)) => {
                    self.settings_refused(why);
                    Ok(())
                }
                Step::HalfClosed => Ok(()),
                Step::Done(End::ServerClosed(why)) => self.server_lost(why),
                Step::Done(end) => Err(end),
            };
            if let Err(end) = outcome {
                return self.finish(end).await;
            }
        }
    }

    /// Waits for a server for the waiting statement. A cancel of that statement or a pool
    /// that cannot serve it in time ends the wait with an ERROR for the statement only.
    async fn take_server(&mut self, stop: &CancellationToken) -> Result<(), End> {
        let cancelled = self.cancel.wait_for_server();
        let got = tokio::select! {
            r = self.handle.checkout() => Some(r),
            _ = cancelled.notified() => None,
            _ = stop.cancelled() => return Err(End::Shutdown),
        };
        self.cancel.stop_waiting();
        match got {
            Some(Ok(c)) => self.attach(c).map_err(End::Refused),
            Some(Err(r)) if r.code == sqlstate::ADMIN_SHUTDOWN => Err(End::Refused(r)),
            Some(Err(r)) => {
                self.machine
                    .fail_waiting(&r.code, &r.message, r.hint.as_deref());
                Ok(())
            }
            None => {
                self.machine.fail_waiting(
                    sqlstate::QUERY_CANCELED,
                    "canceling statement due to user request",
                    None,
                );
                Ok(())
            }
        }
    }

    /// Takes a server: points the cancel key at it, takes in the pool's statement
    /// invalidations, and lets the machine bring its settings to the client's.
    fn attach(&mut self, mut c: Checkout) -> Result<(), Refusal> {
        let pool = c.pool().clone();
        let s = c.server();
        let (stale, epoch) = pool.invalidations_since(s.tracked.epoch);
        match stale {
            Stale::All => s.tracked.statements.mark_all_stale(),
            Stale::Names(names) => {
                for n in names {
                    s.tracked.statements.mark_stale(&n);
                }
            }
        }
        s.tracked.epoch = epoch;
        if let Some((pid, secret)) = &s.backend_key {
            self.cancel.attach(Attached {
                target: s.upstream.clone(),
                upstream_pid: *pid,
                upstream_secret: secret.clone(),
                gate: Some(s.cancel_gate.clone()),
            });
        }
        PoolStats::add(&pool.stats.clients_active, 1);
        let result = self.machine.attach(&mut s.tracked);
        self.held = Some(c);
        result
    }

    /// The held server's connection ended: the session goes on with a new server for its
    /// next statement where the machine says it can (see `Machine::server_lost`).
    fn server_lost(&mut self, why: String) -> Result<(), End> {
        if self.held.is_none() {
            return Err(End::ServerClosed(why));
        }
        let lost = self.machine.server_lost(&why);
        tracing::debug!(pool = %self.handle.pool.label, cause = %why, outcome = ?lost, "server connection lost");
        match lost {
            Lost::GoesOn => {}
            Lost::EndsNow => return Err(End::ServerClosed(why)),
            Lost::EndsAtNextMessage(reason) => self.lost = Some(reason),
        }
        tracing::info!(pool = %self.handle.pool.label, cause = %why, "server connection lost; the client goes on with a new server");
        self.cancel.detach();
        self.settings_refusals = 0;
        if let Some(c) = self.held.take() {
            c.pool()
                .stats
                .clients_active
                .fetch_sub(1, Ordering::Relaxed);
            c.close(CloseReason::Broken);
        }
        self.server_unflushed = false;
        Ok(())
    }

    /// Hands the server back between transactions (transaction mode).
    fn release(&mut self) {
        self.cancel.detach();
        self.settings_refusals = 0;
        if let Some(mut c) = self.held.take() {
            c.pool()
                .stats
                .clients_active
                .fetch_sub(1, Ordering::Relaxed);
            c.server().framer.shrink_if_empty();
            c.release();
        }
        self.machine.detach();
    }

    /// The server refused the client's settings: it is closed, and the waiting statement
    /// tries another server, or fails if servers keep refusing.
    fn settings_refused(&mut self, why: String) {
        tracing::warn!(pool = %self.handle.pool.label, error = %why, "a server refused the session's settings; trying another");
        self.cancel.detach();
        if let Some(c) = self.held.take() {
            c.pool()
                .stats
                .clients_active
                .fetch_sub(1, Ordering::Relaxed);
            c.close(CloseReason::SettingsRefused);
        }
        self.machine.to_server.clear();
        self.machine.detach();
        self.settings_refusals += 1;
        if self.settings_refusals >= SETTINGS_ATTEMPTS {
            self.settings_refusals = 0;
            self.machine.fail_waiting(
                sqlstate::INVALID_PARAMETER_VALUE,
                &format!("the cluster refused this session's settings: {why}"),
                Some("the statement did not run; RESET the setting or reconnect"),
            );
        }
    }

    /// Ends the session: tells the client why (if it should hear), and decides what
    /// becomes of the server.
    async fn finish(mut self, end: End) -> (Traffic, End) {
        self.cancel.detach();
        if matches!(end, End::Terminated | End::ClientClosed(_)) {
            // A client that leaves while only the proxy's own statements (settings) are in
            // flight: let them finish so the server can be reused.
            self.settle_own_work().await;
        }
        self.flush_counts();
        if let Some(mut c) = self.held.take() {
            c.pool()
                .stats
                .clients_active
                .fetch_sub(1, Ordering::Relaxed);
            let s = c.server();
            self.machine.leaving(&mut s.tracked);
            let clean = self.machine.settled()
                && self.machine.to_server.is_empty()
                && s.framer.at_boundary()
                && !matches!(end, End::ServerClosed(_));
            if !clean {
                c.close(match end {
                    End::ServerClosed(_) => CloseReason::Broken,
                    End::Shutdown => CloseReason::Shutdown,
                    _ => CloseReason::ClientLeftMidQuery,
                });
            } else if self.machine.needs_reset() {
                let left = self.machine.leftovers(&s.tracked);
                c.leave(left);
            } else {
                c.release();
            }
        }
        let reply = match &end {
            End::Refused(r) => Some(wire::error_response(
                "FATAL",
                &r.code,
                &r.message,
                r.hint.as_deref(),
            )),
            // The server's own FATAL already told the client why.
            End::ServerClosed(_) if self.machine.server_fatal.is_some() => self
                .machine
                .server_fatal
                .take()
                .map(|raw| BytesMut::from(&raw[..])),
            End::ServerClosed(why) => Some(wire::error_response(
                "FATAL",
                sqlstate::CONNECTION_FAILURE,
                &format!("the cluster closed the server connection: {why}"),
                None,
            )),
            End::Shutdown => Some(wire::error_response(
                "FATAL",
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection: the proxy is shutting down",
                None,
            )),
            _ => None,
        };
        if let Some(msg) = reply {
            self.machine.to_client.extend_from_slice(&msg);
        }
        let deliver = !self.machine.to_client.is_empty()
            && !matches!(end, End::ClientClosed(Some(_)) | End::Terminated);
        if deliver {
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                let _ = self.client.write_all(&self.machine.to_client).await;
                let _ = self.client.flush().await;
            })
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.client.shutdown()).await;
        let stats = &self.handle.pool.stats;
        PoolStats::add(&stats.bytes_in, self.traffic.client_to_server);
        PoolStats::add(&stats.bytes_out, self.traffic.server_to_client);
        (self.traffic, end)
    }

    /// Completes the proxy's own outstanding work on the held server (bounded).
    async fn settle_own_work(&mut self) {
        use tokio::io::AsyncReadExt;
        if self.machine.settled() || !self.machine.only_own_work() || self.held.is_none() {
            return;
        }
        let work = async {
            if let Some(h) = self.held.as_mut() {
                let s = h.server();
                s.stream.write_all(&self.machine.to_server).await.ok()?;
                s.stream.flush().await.ok()?;
            }
            self.machine.to_server.clear();
            while !self.machine.settled() {
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
        let _ = tokio::time::timeout(Duration::from_secs(1), work).await;
        self.machine.to_client.clear();
    }

    /// Moves bytes both ways until something needs the async side.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        loop {
            let mut progress = false;
            match self.write_both(cx) {
                Ok(p) => progress |= p,
                Err(end) => return Poll::Ready(Step::Done(end)),
            }
            match self.read_server(cx) {
                Ok(p) => progress |= p,
                Err(end) => return Poll::Ready(Step::Done(end)),
            }
            if let Some(ev) = self.machine_event() {
                return Poll::Ready(Step::Machine(ev));
            }
            let was_open = !self.client_eof;
            match self.read_client(cx) {
                Ok(p) => progress |= p,
                Err(end) => return Poll::Ready(Step::Done(end)),
            }
            if was_open && self.client_eof && self.machine.owes_answers() {
                return Poll::Ready(Step::HalfClosed);
            }
            if self.machine.terminated {
                return Poll::Ready(Step::Done(End::Terminated));
            }
            if let Some(ev) = self.machine_event() {
                return Poll::Ready(Step::Machine(ev));
            }
            if self.client_eof && !self.machine.owes_answers() && self.machine.to_client.is_empty()
            {
                return Poll::Ready(Step::Done(End::ClientClosed(None)));
            }
            if !progress {
                if self.held.is_none() {
                    // Idle between transactions: keep no buffers.
                    self.client_in.shrink_if_empty();
                    if self.machine.to_client.is_empty() {
                        self.machine.to_client = BytesMut::new();
                    }
                }
                return Poll::Pending;
            }
        }
    }

    /// Writes what waits for the client and for the server; `Ok(true)` if anything moved.
    fn write_both(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        let mut progress = write_some(
            cx,
            &mut self.client,
            &mut self.machine.to_client,
            &mut self.client_unflushed,
        )
        .map_err(|e| End::ClientClosed(Some(e)))?;
        if let Some(held) = self.held.as_mut() {
            let s = held.server();
            progress |= write_some(
                cx,
                &mut s.stream,
                &mut self.machine.to_server,
                &mut self.server_unflushed,
            )
            .map_err(|e| End::ServerClosed(e.to_string()))?;
        }
        Ok(progress)
    }

    fn read_server(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        if self.machine.to_client.len() >= HIGH_WATER {
            return Ok(false);
        }
        let Some(held) = self.held.as_mut() else {
            return Ok(false);
        };
        let s = held.server();
        let buf = s.framer.buf_mut();
        buf.reserve(READ_CHUNK);
        match poll_read_buf(Pin::new(&mut s.stream), cx, buf) {
            Poll::Ready(Ok(0)) => Err(End::ServerClosed("connection closed".into())),
            Poll::Ready(Ok(_)) => {
                self.process_server()?;
                Ok(true)
            }
            Poll::Ready(Err(e)) => Err(End::ServerClosed(e.to_string())),
            Poll::Pending => Ok(false),
        }
    }

    fn read_client(&mut self, cx: &mut Context<'_>) -> Result<bool, End> {
        let room = match self.machine.phase() {
            Phase::Ready if self.held.is_some() => self.machine.to_server.len() < HIGH_WATER,
            _ => self.machine.backlog_bytes() < HIGH_WATER,
        };
        // A server that sent FATAL is going away: the client's next messages wait for its
        // end, so they go to the next server rather than into a dead one.
        let server_leaving = self.held.is_some() && self.machine.server_fatal.is_some();
        if !room || self.client_eof || self.machine.terminated || server_leaving {
            return Ok(false);
        }
        let buf = self.client_in.buf_mut();
        buf.reserve(READ_CHUNK);
        match poll_read_buf(Pin::new(&mut self.client), cx, buf) {
            Poll::Ready(Ok(0)) => {
                self.client_eof = true;
                Ok(true)
            }
            Poll::Ready(Ok(_)) => {
                self.process_client()?;
                Ok(true)
            }
            Poll::Ready(Err(e)) => Err(End::ClientClosed(Some(e))),
            Poll::Pending => Ok(false),
        }
    }

    /// What the machine wants done now (and its counters, the pool's invalidations).
    fn machine_event(&mut self) -> Option<Event> {
        self.flush_counts();
        let held = self.held.as_mut().map(|h| h.server());
        let (tracked, idle) = match held {
            Some(s) => {
                let idle = s.framer.at_boundary() && !self.server_unflushed;
                (Some(&mut s.tracked), idle)
            }
            None => (None, true),
        };
        let ev = self.machine.event(tracked, idle);
        if self.mode == PoolMode::Session {
            // A session-mode client keeps its server; the machine never hands it back (it
            // needs one again only after its server was lost).
            let lost = self.held.is_none();
            return ev.filter(|e| match e {
                Event::Release => false,
                Event::NeedServer => lost,
                _ => true,
            });
        }
        ev
    }

    fn flush_counts(&mut self) {
        let counts = self.machine.take_counts();
        let stats = &self.handle.pool.stats;
        if counts.queries > 0 {
            PoolStats::add(&stats.queries, counts.queries);
        }
        if counts.transactions > 0 {
            PoolStats::add(&stats.transactions, counts.transactions);
        }
        for name in self.machine.invalidated.drain(..) {
            self.handle.pool.invalidate(name);
        }
    }

    fn process_client(&mut self) -> Result<(), End> {
        loop {
            let frame = match self.client_in.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(End::Refused(Refusal::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        format!("invalid message from the client: {e}"),
                        None,
                    )))
                }
            };
            self.traffic.client_to_server += frame.raw().len() as u64;
            let server = self.held.as_mut().map(|h| &mut h.server().tracked);
            self.machine
                .on_client(frame, server)
                .map_err(End::Refused)?;
        }
    }

    fn process_server(&mut self) -> Result<(), End> {
        let Some(held) = self.held.as_mut() else {
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
            let before = self.machine.to_client.len();
            self.machine
                .on_server(frame, &mut s.tracked)
                .map_err(|r| End::ServerClosed(r.message))?;
            self.traffic.server_to_client += (self.machine.to_client.len() - before) as u64;
        }
    }
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
