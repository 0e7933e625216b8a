//! One pool: its idle servers, its count, the clients waiting, and the limits.
//!
//! Checkout takes the most recently used idle server (few servers stay warm), opens a
//! new one while the pool is below `size` and the target below
//! `max_server_connections`, or queues the client. A server checked in goes straight to
//! the longest-waiting client (no herd of wake-ups); a server closed gives its slot to
//! a waiting client, who then logs in itself, so a cluster that refuses logins gives
//! every waiting client its error instead of a hang. Waits end at
//! `checkout_timeout_secs` with SQLSTATE 53300.

use super::server::{CloseReason, ServerConn, Slot};
use super::slot::SlotOwner;
use super::stats::PoolStats;
use crate::base::refusal::Refusal;
use crate::base::sync::lock;
use crate::cluster::connector::Opened;
use crate::config::PoolMode;
use crate::wire::protocol::sqlstate;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// The limits and timeouts of one pool (from `[pool]` and the target's overrides).
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub mode: PoolMode,
    pub size: usize,
    pub min_size: usize,
    pub checkout_timeout: Duration,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub check_delay: Duration,
    pub max_prepared: usize,
    pub reset_query: Option<String>,
    /// Time allowed to open (log in) one server.
    pub login_timeout: Duration,
    /// How long logins and waiting clients are held through a cluster outage.
    pub outage_hold: Duration,
}

/// Server count of one target across its pools (`max_server_connections`).
#[derive(Debug, Default)]
pub struct TargetSlots {
    used: AtomicUsize,
    /// 0 = no cap.
    pub cap: usize,
    notify: Notify,
    /// The target's outage state: clients wait for a server as long as a login is held.
    pub outage: Arc<crate::cluster::outage::Outage>,
}

impl TargetSlots {
    pub fn new(cap: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            cap,
            notify: Notify::new(),
            outage: Arc::default(),
        }
    }

    fn try_acquire(&self) -> bool {
        if self.cap == 0 {
            self.used.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.cap).then_some(u + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// What a waiting client is handed.
enum Handoff {
    /// An idle server, ready to use (boxed: it is large, and handoffs are rare).
    Server(Box<ServerConn>),
    /// Room for one more server: the client logs it in.
    Slot(Slot),
}

/// Mutable state behind the pool's lock.
#[derive(Default)]
struct State {
    idle: Vec<ServerConn>,
    /// Servers counted against `size`: idle, checked out and being opened.
    total: usize,
    waiters: VecDeque<oneshot::Sender<Handoff>>,
    /// Servers on their way back (being reset, or waiting for a cancel to land).
    returning: usize,
    closed: bool,
    /// Servers created before this instant are closed at check-in (RECONNECT).
    reconnect_before: Option<Instant>,
}

/// A snapshot of a pool's servers and clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolCounts {
    pub total: usize,
    pub idle: usize,
    pub opening: usize,
    pub active: usize,
    pub waiting: usize,
}

/// One pool of interchangeable servers (same target, identity, database and fixed
/// startup parameters).
pub struct Pool {
    /// "db_user/db_name@target" for logs and counters (low cardinality, no secrets).
    pub label: String,
    pub settings: PoolSettings,
    pub target: Arc<TargetSlots>,
    pub target_index: usize,
    state: Mutex<State>,
    opening: AtomicUsize,
    pub stats: PoolStats,
    /// ParameterStatus values and DbUser of this pool's first login, before any client
    /// setting: what a transaction-mode login reports without taking a server.
    base: Mutex<Option<Arc<LoginBase>>>,
    /// Proxy-named statements whose plans went stale on some server (after DDL): every
    /// server prepares them again before their next use.
    invalidations: Mutex<Invalidations>,
}

/// Stale statement names, numbered: a server remembers how many it has taken in.
#[derive(Debug, Default)]
struct Invalidations {
    /// Number of the first name kept (older ones were forgotten).
    base: u64,
    names: Vec<String>,
}

/// Names kept before the oldest are forgotten (servers that missed them drop every plan).
const MAX_INVALIDATIONS: usize = 4096;

/// What a server must do about stale statements since it last looked.
#[derive(Debug, PartialEq, Eq)]
pub enum Stale {
    /// These names (possibly none).
    Names(Vec<String>),
    /// It missed some: treat every statement as stale.
    All,
}

/// What every server of a pool reports right after its login.
#[derive(Debug)]
pub struct LoginBase {
    pub params: std::collections::BTreeMap<String, String>,
    pub db_user: String,
}

impl Pool {
    pub fn new(
        label: String,
        settings: PoolSettings,
        target: Arc<TargetSlots>,
        target_index: usize,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            label,
            settings,
            target,
            target_index,
            state: Mutex::new(State::default()),
            opening: AtomicUsize::new(0),
            stats: PoolStats::default(),
            base: Mutex::new(None),
            invalidations: Mutex::new(Invalidations::default()),
        })
    }

    /// A proxy-named statement's plan went stale on a server (after DDL).
    pub fn invalidate(&self, name: String) {
        let mut inv = lock(&self.invalidations);
        if inv.names.len() >= MAX_INVALIDATIONS {
            inv.base += inv.names.len() as u64;
            inv.names.clear();
        }
        inv.names.push(name);
    }

    /// What a server that has taken in `epoch` invalidations must mark stale, and the
    /// epoch it reaches.
    pub fn invalidations_since(&self, epoch: u64) -> (Stale, u64) {
        let inv = lock(&self.invalidations);
        let now = inv.base + inv.names.len() as u64;
        if epoch == now {
            return (Stale::Names(Vec::new()), now);
        }
        if epoch < inv.base {
            return (Stale::All, now);
        }
        let from = (epoch - inv.base) as usize;
        (
            Stale::Names(inv.names[from.min(inv.names.len())..].to_vec()),
            now,
        )
    }

    fn refuse_timeout(&self) -> Refusal {
        Refusal::new(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!(
                "no server connection became free within {} s in pool {} (pool size {}; pool.checkout_timeout_secs)",
                self.settings.checkout_timeout.as_secs(),
                self.label,
                self.settings.size
            ),
            Some("raise pool.size (or [[cluster]] pool_size / pool.max_server_connections), or use pool.mode = \"transaction\" so clients hold servers only during transactions"),
        )
    }

    /// A server for one client: idle, newly opened, or handed over after a wait.
    /// `open` logs in a new server; `evict` closes an idle server of another pool of
    /// the same target and says whether it did (room under `max_server_connections`).
    pub async fn checkout<F, Fut>(
        self: &Arc<Self>,
        open: F,
        evict: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<ServerConn, Refusal>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Opened, Refusal>>,
    {
        let started = Instant::now();
        let mut deadline = started + self.settings.checkout_timeout;
        loop {
            // While the cluster is in an outage, waiting clients are held as long as logins.
            if self.target.outage.active() {
                deadline = deadline.max(started + self.settings.outage_hold);
            }
            let Some(handoff) = self.handoff(deadline, evict).await? else {
                continue;
            };
            match handoff {
                Handoff::Server(s) => {
                    if let Some(s) = self.usable(*s).await {
                        self.stats.checkout(started.elapsed());
                        return Ok(s);
                    }
                }
                Handoff::Slot(slot) => return self.open_new(slot, &open, started).await,
            }
        }
    }

    /// An idle server or a slot to open one: at once, or after waiting until `deadline`
    /// for a server checked in or a slot freed; `None` to look again.
    async fn handoff(
        self: &Arc<Self>,
        deadline: Instant,
        evict: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Option<Handoff>, Refusal> {
        match self.next_step()? {
            Step::Ready(h) => Ok(Some(h)),
            Step::TargetFull => {
                if evict() {
                    return Ok(None);
                }
                let notified = self.target.notify.notified();
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.refuse_target_full());
                }
                // Bounded slices: a slot freed between the check and this wait is seen soon.
                let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
                Ok(None)
            }
            Step::Wait(rx) => self.wait_in_line(rx, deadline).await,
        }
    }

    /// Waits in the pool's queue until `deadline` for a server or a slot.
    async fn wait_in_line(
        &self,
        mut rx: oneshot::Receiver<Handoff>,
        deadline: Instant,
    ) -> Result<Option<Handoff>, Refusal> {
        PoolStats::add(&self.stats.clients_waiting, 1);
        let left = deadline.saturating_duration_since(Instant::now());
        let got = tokio::time::timeout(left, &mut rx).await;
        self.stats.clients_waiting.fetch_sub(1, Ordering::Relaxed);
        match got {
            Ok(Ok(h)) => Ok(Some(h)),
            Ok(Err(_)) => {
                if Instant::now() >= deadline {
                    return Err(self.refuse_timeout());
                }
                Ok(None)
            }
            Err(_) => {
                // Something handed over just as time ran out is still ours.
                rx.close();
                match rx.try_recv() {
                    Ok(h) => Ok(Some(h)),
                    Err(_) => Err(self.refuse_timeout()),
                }
            }
        }
    }

    /// The idle server `s` if it may be used: not past its lifetime, not closed, and
    /// answering a ping when it sat idle past `check_delay`. A server that is not is
    /// counted closed and dropped.
    async fn usable(&self, mut s: ServerConn) -> Option<ServerConn> {
        if s.age() >= self.settings.lifetime {
            self.stats.closed(CloseReason::Lifetime);
            return None;
        }
        if !s.looks_alive() {
            tracing::info!(pool = %self.label, server = s.id, "idle server found closed; replacing it");
            self.stats.closed(CloseReason::Broken);
            return None;
        }
        if s.idle_for() >= self.settings.check_delay && !s.ping(Duration::from_secs(5)).await {
            tracing::info!(pool = %self.label, server = s.id, "idle server failed its check; replacing it");
            self.stats.closed(CloseReason::Broken);
            return None;
        }
        Some(s)
    }

    /// Logs in a new server into `slot` with `open` (which bounds each attempt and holds
    /// the login through an outage).
    async fn open_new<F, Fut>(
        &self,
        slot: Slot,
        open: &F,
        started: Instant,
    ) -> Result<ServerConn, Refusal>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Opened, Refusal>>,
    {
        self.opening.fetch_add(1, Ordering::Relaxed);
        let opened = open().await;
        self.opening.fetch_sub(1, Ordering::Relaxed);
        match opened {
            Ok(o) => {
                PoolStats::add(&self.stats.servers_opened, 1);
                self.stats.checkout(started.elapsed());
                let s = ServerConn::new(o, slot, self.settings.max_prepared);
                self.remember_base(&s);
                Ok(s)
            }
            Err(e) => {
                PoolStats::add(&self.stats.logins_failed, 1);
                drop(slot);
                Err(e)
            }
        }
    }

    fn refuse_target_full(&self) -> Refusal {
        Refusal::new(
            sqlstate::TOO_MANY_CONNECTIONS,
            format!(
                "no server connection became free within {} s: the target's cap of {} server connections (pool.max_server_connections) is in use by other pools",
                self.settings.checkout_timeout.as_secs(),
                self.target.cap
            ),
            Some("raise pool.max_server_connections, or lower pool.size so pools share the cluster"),
        )
    }

    fn next_step(self: &Arc<Self>) -> Result<Step, Refusal> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(Refusal::new(
                sqlstate::ADMIN_SHUTDOWN,
                "the proxy is shutting down",
                Some("reconnect; another replica or the restarted proxy will serve you"),
            ));
        }
        if let Some(s) = st.idle.pop() {
            return Ok(Step::Ready(Handoff::Server(Box::new(s))));
        }
        // A server being reset is back in a moment; a new login takes far longer.
        let live_waiters = st.waiters.iter().filter(|w| !w.is_closed()).count();
        if st.returning > live_waiters {
            let (tx, rx) = oneshot::channel();
            st.waiters.push_back(tx);
            return Ok(Step::Wait(rx));
        }
        if st.total < self.settings.size {
            if self.target.try_acquire() {
                st.total += 1;
                return Ok(Step::Ready(Handoff::Slot(Slot { pool: self.clone() })));
            }
            return Ok(Step::TargetFull);
        }
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back(tx);
        Ok(Step::Wait(rx))
    }

    /// A checked-out server starts its way back (reset, cancel gate): waiting clients
    /// wait for it rather than log in a new one.
    pub fn returning_started(&self) {
        lock(&self.state).returning += 1;
    }

    /// A returning server is back ([`Pool::check_in`]) or closed (`None`).
    pub fn returning_done(self: &Arc<Self>, server: Option<ServerConn>) {
        {
            let mut st = lock(&self.state);
            st.returning = st.returning.saturating_sub(1);
        }
        if let Some(s) = server {
            self.check_in(s);
        }
    }

    /// Returns a clean, idle server: to the longest-waiting client, else to the idle list.
    pub fn check_in(self: &Arc<Self>, mut server: ServerConn) {
        server.last_used = Instant::now();
        if server.age() >= self.settings.lifetime {
            self.stats.closed(CloseReason::Lifetime);
            tokio::spawn(server.terminate());
            return;
        }
        loop {
            let waiter = {
                let mut st = lock(&self.state);
                if st.closed {
                    None
                } else if st.reconnect_before.is_some_and(|t| server.created < t) {
                    drop(st);
                    self.stats.closed(CloseReason::Reconnect);
                    tokio::spawn(server.terminate());
                    return;
                } else {
                    let mut found = None;
                    while let Some(w) = st.waiters.pop_front() {
                        if !w.is_closed() {
                            found = Some(w);
                            break;
                        }
                    }
                    match found {
                        Some(w) => Some(w),
                        None => {
                            st.idle.push(server);
                            return;
                        }
                    }
                }
            };
            let Some(w) = waiter else {
                self.stats.closed(CloseReason::Shutdown);
                tokio::spawn(server.terminate());
                return;
            };
            match w.send(Handoff::Server(Box::new(server))) {
                Ok(()) => return,
                Err(Handoff::Server(s)) => server = *s,
                Err(Handoff::Slot(_)) => return,
            }
        }
    }

    /// A server's slot was given back (the server was dropped): let a waiter open one.
    fn slot_freed_now(self: &Arc<Self>) {
        let waiter = {
            let mut st = lock(&self.state);
            st.total = st.total.saturating_sub(1);
            self.target.release();
            let mut found = None;
            if !st.closed {
                while let Some(w) = st.waiters.pop_front() {
                    if !w.is_closed() {
                        found = Some(w);
                        break;
                    }
                }
            }
            match found {
                Some(w) if self.target.try_acquire() => {
                    st.total += 1;
                    Some(w)
                }
                Some(w) => {
                    st.waiters.push_front(w);
                    None
                }
                None => None,
            }
        };
        if let Some(w) = waiter {
            // If the waiter is gone, the returned slot drops here and frees itself again.
            let _ = w.send(Handoff::Slot(Slot { pool: self.clone() }));
        }
    }

    /// Closes idle servers that outlived `idle_timeout` (keeping `min_size` servers) or
    /// their lifetime; returns how many more servers `min_size` wants.
    pub fn reap(&self) -> usize {
        let mut expired = Vec::new();
        let want = {
            let mut st = lock(&self.state);
            let mut keep = Vec::with_capacity(st.idle.len());
            let mut total = st.total;
            // Oldest-used first, so the warm ones stay.
            st.idle.sort_by_key(|s| std::cmp::Reverse(s.idle_for()));
            for s in st.idle.drain(..) {
                let reason = if s.age() >= self.settings.lifetime {
                    Some(CloseReason::Lifetime)
                } else if s.idle_for() >= self.settings.idle_timeout
                    && total > self.settings.min_size
                {
                    Some(CloseReason::Idle)
                } else {
                    None
                };
                match reason {
                    Some(r) => {
                        total -= 1;
                        expired.push((s, r));
                    }
                    None => keep.push(s),
                }
            }
            // Most recently used last (checkout pops from the end).
            keep.reverse();
            st.idle = keep;
            if st.closed {
                0
            } else {
                self.settings.min_size.saturating_sub(total)
            }
        };
        for (s, r) in expired {
            self.stats.closed(r);
            tokio::spawn(s.terminate());
        }
        want
    }

    /// Takes one idle server out to be closed (another pool of the target needs room).
    pub fn take_idle_for_eviction(&self) -> Option<ServerConn> {
        let mut st = lock(&self.state);
        if st.idle.is_empty() {
            return None;
        }
        // The least recently used.
        let s = st.idle.remove(0);
        drop(st);
        self.stats.closed(CloseReason::Evicted);
        Some(s)
    }

    /// Opens one server into the idle list (prewarm, `min_size`); `false` if at capacity.
    pub async fn open_idle<F, Fut>(self: &Arc<Self>, open: F) -> Result<bool, Refusal>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Opened, Refusal>>,
    {
        let slot = {
            let mut st = lock(&self.state);
            if st.closed || st.total >= self.settings.size || !self.target.try_acquire() {
                return Ok(false);
            }
            st.total += 1;
            Slot { pool: self.clone() }
        };
        self.opening.fetch_add(1, Ordering::Relaxed);
        let opened = tokio::time::timeout(self.settings.login_timeout, open()).await;
        self.opening.fetch_sub(1, Ordering::Relaxed);
        match opened {
            Ok(Ok(o)) => {
                PoolStats::add(&self.stats.servers_opened, 1);
                let s = ServerConn::new(o, slot, self.settings.max_prepared);
                self.remember_base(&s);
                self.check_in(s);
                Ok(true)
            }
            Ok(Err(e)) => {
                PoolStats::add(&self.stats.logins_failed, 1);
                Err(e)
            }
            Err(_) => {
                PoolStats::add(&self.stats.logins_failed, 1);
                Err(Refusal::new(
                    sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                    "prewarm login timed out",
                    None,
                ))
            }
        }
    }

    /// Closes every idle server and refuses new checkouts (shutdown).
    pub fn close(&self) {
        let idle = {
            let mut st = lock(&self.state);
            st.closed = true;
            st.waiters.clear();
            std::mem::take(&mut st.idle)
        };
        for s in idle {
            self.stats.closed(CloseReason::Shutdown);
            tokio::spawn(s.terminate());
        }
    }

    /// Closes idle servers now and checked-out ones at check-in (admin RECONNECT).
    pub fn reconnect(&self) {
        let idle = {
            let mut st = lock(&self.state);
            st.reconnect_before = Some(Instant::now());
            std::mem::take(&mut st.idle)
        };
        for s in idle {
            self.stats.closed(CloseReason::Reconnect);
            tokio::spawn(s.terminate());
        }
    }

    pub fn counts(&self) -> PoolCounts {
        let st = lock(&self.state);
        let opening = self.opening.load(Ordering::Relaxed);
        PoolCounts {
            total: st.total,
            idle: st.idle.len(),
            opening,
            active: st.total.saturating_sub(st.idle.len() + opening),
            waiting: st.waiters.iter().filter(|w| !w.is_closed()).count(),
        }
    }

    /// True when the pool holds no server and nobody uses it (it may be dropped).
    pub fn is_unused(&self) -> bool {
        let st = lock(&self.state);
        st.total == 0
            && st.waiters.iter().all(|w| w.is_closed())
            && self.stats.clients_active.load(Ordering::Relaxed) == 0
    }

    /// Records the first login's parameters (see [`LoginBase`]).
    fn remember_base(&self, s: &ServerConn) {
        let mut base = lock(&self.base);
        if base.is_none() {
            *base = Some(Arc::new(LoginBase {
                params: s.params().clone(),
                db_user: s.db_user.clone(),
            }));
        }
    }

    /// The pool's login parameters, once a server has logged in.
    pub fn base(&self) -> Option<Arc<LoginBase>> {
        lock(&self.base).clone()
    }

    /// Idle servers for the admin console: (id, DbUser, age, idle for).
    pub fn idle_servers(&self) -> Vec<(u64, String, Duration, Duration)> {
        lock(&self.state)
            .idle
            .iter()
            .map(|s| {
                (
                    s.id,
                    s.db_user.clone(),
                    s.created.elapsed(),
                    s.last_used.elapsed(),
                )
            })
            .collect()
    }
}

/// What checkout does next, decided under the lock.
enum Step {
    Ready(Handoff),
    TargetFull,
    Wait(oneshot::Receiver<Handoff>),
}

impl SlotOwner for Pool {
    fn slot_freed(self: Arc<Self>) {
        self.slot_freed_now();
    }
}
