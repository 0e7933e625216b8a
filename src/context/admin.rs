//! The state the operator steers and probes read: lifecycle flags (started, draining),
//! the client slots, PAUSE, the live clients, the replicas found, and the live
//! (reloadable) configuration.

use super::live::LiveConfig;
use super::registry;
use crate::cancel::peers;
use crate::config::Config;
use crate::pool::pause;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::sync::Semaphore;

/// Lifecycle flags, the live configuration and the admin registries of one proxy.
pub struct Admin {
    /// Listeners bound and prewarm finished (or failed): `/startup` turns 200.
    started: AtomicBool,
    /// A shutdown signal arrived: readiness fails from here on.
    draining: AtomicBool,
    /// The client connection slots (`limits.max_client_connections`), set when serving.
    slots: OnceLock<Arc<Semaphore>>,
    /// The semaphore's size now (it changes with a reload of `max_client_connections`).
    slots_max: AtomicUsize,
    pub pause: Arc<pause::Pause>,
    pub clients: registry::Clients,
    /// The other replicas `[peers] dns` finds.
    pub peers: peers::Peers,
    pub live: Arc<ArcSwap<LiveConfig>>,
    /// The file SIGHUP and `RELOAD` re-read (`None`: in-process beds without a file).
    pub config_path: OnceLock<PathBuf>,
    pub started_at: SystemTime,
}

/// What `/readiness` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

impl Admin {
    pub fn new(config: &Config) -> Admin {
        Admin {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            slots: OnceLock::new(),
            slots_max: AtomicUsize::new(config.limits.max_client_connections),
            pause: Arc::default(),
            clients: registry::Clients::default(),
            peers: peers::Peers::default(),
            live: Arc::new(ArcSwap::from_pointee(LiveConfig::new(config.clone()))),
            config_path: OnceLock::new(),
            started_at: SystemTime::now(),
        }
    }

    /// The configuration in force now (a snapshot; cheap).
    pub fn live(&self) -> Arc<LiveConfig> {
        self.live.load_full()
    }

    pub fn set_slots(&self, slots: Arc<Semaphore>) {
        let _ = self.slots.set(slots);
    }

    /// Resizes the client slots to `max` (reload); returns the size in force.
    pub fn resize_slots(&self, max: usize) -> usize {
        let Some(s) = self.slots.get() else {
            self.slots_max.store(max, Ordering::SeqCst);
            return max;
        };
        let old = self.slots_max.load(Ordering::SeqCst);
        let now = if max > old {
            s.add_permits(max - old);
            max
        } else {
            // Only free slots can be taken away; busy ones stay until their clients leave.
            old - s.forget_permits(old - max)
        };
        self.slots_max.store(now, Ordering::SeqCst);
        now
    }

    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub fn mark_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Client connections open now (taken slots).
    pub fn open_clients(&self) -> usize {
        let max = self.slots_max.load(Ordering::SeqCst);
        self.slots
            .get()
            .map_or(0, |s| max.saturating_sub(s.available_permits()))
    }

    /// Cloud SQL Auth Proxy semantics: not ready while starting, draining, paused or full.
    pub fn readiness(&self) -> Readiness {
        if !self.is_started() {
            return Readiness::NotReady("starting: listeners or prewarm not done yet".into());
        }
        if self.is_draining() {
            return Readiness::NotReady("draining: shutdown signal received".into());
        }
        if self.pause.all_paused() {
            return Readiness::NotReady("paused: PAUSE from the admin console".into());
        }
        if let Some(s) = self.slots.get() {
            if s.available_permits() == 0 {
                return Readiness::NotReady(format!(
                    "full: limits.max_client_connections = {} reached",
                    self.slots_max.load(Ordering::SeqCst)
                ));
            }
        }
        Readiness::Ready
    }
}
