//! Cancel keys: the proxy gives each client its own BackendKeyData and remembers
//! which server session (and server key) it stands for *right now*, so a CancelRequest
//! arriving on a new connection reaches the query of the client that asked.
//!
//! With pooling a client's server changes (transaction mode) or is shared over time, so
//! a key is attached to a server only while the client holds it. A cancel being
//! forwarded holds the server's gate; a server is not handed to another client until
//! every cancel aimed at it has been delivered, so a late cancel never hits someone
//! else's query (PgBouncer #717). A client whose statement waits for a server has no
//! server to cancel on: its cancel ends the wait instead (the statement fails with 57014).

pub mod peers;

use crate::base::sync::lock;
use crate::cluster::upstream::{self, UpstreamTarget};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, RwLock};

/// The server a client key currently stands for.
#[derive(Clone)]
pub struct Attached {
    pub target: Arc<UpstreamTarget>,
    pub upstream_pid: i32,
    pub upstream_secret: Vec<u8>,
    /// Held (read) while a cancel is forwarded; check-in takes it (write).
    pub gate: Option<Arc<RwLock<()>>>,
}

/// Where a cancel for one client key must go.
struct Entry {
    secret: [u8; 4],
    attached: Option<Attached>,
    /// The client's statement waits for a server: a cancel wakes this.
    waiting: Option<Arc<Notify>>,
}

/// All live sessions' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
    /// `[peers] peer_id`, put in the top bits of every key handed out (0: no peering).
    peer_id: std::sync::atomic::AtomicU8,
}

/// Keys of a peering replica carry its id in bits 23..31 of the (positive) pid.
pub const PEER_SHIFT: u32 = 23;

/// The replica that handed out `pid` (0: none).
pub fn peer_of(pid: i32) -> u8 {
    ((pid as u32) >> PEER_SHIFT) as u8
}

/// Keeps a key registered for as long as its session lives.
pub struct CancelKey {
    registry: Arc<CancelRegistry>,
    pub pid: i32,
    pub secret: [u8; 4],
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        lock(&self.registry.entries).remove(&self.pid);
    }
}

impl CancelKey {
    /// Points the key at the server the client now holds.
    pub fn attach(&self, a: Attached) {
        if let Some(e) = lock(&self.registry.entries).get_mut(&self.pid) {
            e.attached = Some(a);
        }
    }

    /// The client no longer holds a server: cancels are ignored until the next attach.
    pub fn detach(&self) {
        if let Some(e) = lock(&self.registry.entries).get_mut(&self.pid) {
            e.attached = None;
        }
    }

    /// The client's statement starts waiting for a server: a cancel for this key now
    /// notifies the returned handle (a fresh one per wait, so a cancel that came too late
    /// for one wait never ends the next).
    pub fn wait_for_server(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        if let Some(e) = lock(&self.registry.entries).get_mut(&self.pid) {
            e.waiting = Some(notify.clone());
        }
        notify
    }

    /// The wait for a server is over (a server came, or the wait ended).
    pub fn stop_waiting(&self) {
        if let Some(e) = lock(&self.registry.entries).get_mut(&self.pid) {
            e.waiting = None;
        }
    }
}

/// Where a cancel request goes.
enum Target {
    Server(Attached, Option<tokio::sync::OwnedRwLockReadGuard<()>>),
    Wait(Arc<Notify>),
}

impl CancelRegistry {
    /// Registers an upstream key and returns the proxy's own key for the client.
    pub fn register(
        self: &Arc<Self>,
        target: Arc<UpstreamTarget>,
        upstream_pid: i32,
        upstream_secret: Vec<u8>,
    ) -> CancelKey {
        self.register_attached(Some(Attached {
            target,
            upstream_pid,
            upstream_secret,
            gate: None,
        }))
    }

    /// Registers a client key, attached to a server or not yet.
    pub fn register_attached(self: &Arc<Self>, attached: Option<Attached>) -> CancelKey {
        let mut rng = rand::thread_rng();
        let mut entries = lock(&self.entries);
        let peer = i32::from(self.peer_id.load(std::sync::atomic::Ordering::Relaxed));
        let pid = loop {
            let pid = if peer == 0 {
                rng.gen_range(1..i32::MAX)
            } else {
                (peer << PEER_SHIFT) | rng.gen_range(1..(1 << PEER_SHIFT))
            };
            if !entries.contains_key(&pid) {
                break pid;
            }
        };
        let secret: [u8; 4] = rng.gen();
        entries.insert(
            pid,
            Entry {
                secret,
                attached,
                waiting: None,
            },
        );
        CancelKey {
            registry: self.clone(),
            pid,
            secret,
        }
    }

    /// Forwards a client's cancel if the key matches a session holding a server, or ends
    /// the wait of a session whose statement waits for one; idle sessions are ignored, as
    /// PostgreSQL does. Returns once the cancel was delivered; `false` when no session
    /// here has the key (nothing was counted or logged: the caller decides).
    pub async fn cancel(&self, pid: i32, secret: &[u8]) -> bool {
        let found = {
            let entries = lock(&self.entries);
            let Some(e) = entries
                .get(&pid)
                // Constant time: the secret is what makes a cancel legitimate.
                .filter(|e| bool::from(e.secret.as_slice().ct_eq(secret)))
            else {
                return false;
            };
            match (&e.attached, &e.waiting) {
                // Taken while the registry lock is held: a server being checked in
                // (detached first) can no longer be reached by this cancel.
                (Some(a), _) => match &a.gate {
                    Some(g) => g
                        .clone()
                        .try_read_owned()
                        .ok()
                        .map(|guard| Target::Server(a.clone(), Some(guard))),
                    None => Some(Target::Server(a.clone(), None)),
                },
                (None, Some(w)) => Some(Target::Wait(w.clone())),
                (None, None) => None,
            }
        };
        match found {
            Some(Target::Server(a, _guard)) => {
                match upstream::send_cancel(&a.target, a.upstream_pid, &a.upstream_secret).await {
                    Err(e) => {
                        crate::base::events::cancel("failed");
                        tracing::warn!(error = %e, "forwarding cancel request failed")
                    }
                    Ok(()) => {
                        crate::base::events::cancel("forwarded");
                        tracing::info!(pid, "cancel request forwarded")
                    }
                }
            }
            Some(Target::Wait(w)) => {
                w.notify_one();
                crate::base::events::cancel("ended_wait");
                tracing::info!(pid, "cancel request ended a wait for a server");
            }
            None => {
                crate::base::events::cancel("ignored");
                tracing::debug!(pid, "cancel request for an idle session ignored")
            }
        }
        true
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Sets this replica's `[peers] peer_id` for keys handed out from now on.
    pub fn set_peer_id(&self, id: u8) {
        self.peer_id.store(id, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn peer_id(&self) -> u8 {
        self.peer_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
