//! Cancel keys: the proxy gives each client its own BackendKeyData and remembers
//! which upstream session (and upstream key) it stands for, so a CancelRequest
//! arriving on a new connection can be forwarded to the right cluster backend.

use crate::sync::lock;
use crate::upstream::{self, UpstreamTarget};
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a cancel for one client key must go.
struct Entry {
    secret: [u8; 4],
    target: Arc<UpstreamTarget>,
    upstream_pid: i32,
    upstream_secret: Vec<u8>,
}

/// All live sessions' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    entries: Mutex<HashMap<i32, Entry>>,
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

impl CancelRegistry {
    /// Registers an upstream key and returns the proxy's own key for the client.
    pub fn register(
        self: &Arc<Self>,
        target: Arc<UpstreamTarget>,
        upstream_pid: i32,
        upstream_secret: Vec<u8>,
    ) -> CancelKey {
        let mut rng = rand::thread_rng();
        let mut entries = lock(&self.entries);
        let pid = loop {
            let pid = rng.gen_range(1..i32::MAX);
            if !entries.contains_key(&pid) {
                break pid;
            }
        };
        let secret: [u8; 4] = rng.gen();
        entries.insert(
            pid,
            Entry {
                secret,
                target,
                upstream_pid,
                upstream_secret,
            },
        );
        CancelKey {
            registry: self.clone(),
            pid,
            secret,
        }
    }

    /// Forwards a client's cancel if the key matches a live session; unknown keys are ignored, as PostgreSQL does.
    pub async fn cancel(&self, pid: i32, secret: &[u8]) {
        let found = {
            let entries = lock(&self.entries);
            entries
                .get(&pid)
                .filter(|e| e.secret.as_slice() == secret)
                .map(|e| (e.target.clone(), e.upstream_pid, e.upstream_secret.clone()))
        };
        match found {
            Some((target, upid, usecret)) => {
                if let Err(e) = upstream::send_cancel(&target, upid, &usecret).await {
                    tracing::warn!(error = %e, "forwarding cancel request failed");
                } else {
                    tracing::info!(pid, "cancel request forwarded");
                }
            }
            None => tracing::debug!(pid, "cancel request for an unknown key ignored"),
        }
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
