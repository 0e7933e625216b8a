//! Operations: what an operator sees and steers without reading logs.
//!
//! - `http`: the `[admin] listen` server (`/startup`, `/liveness`, `/readiness`, `/metrics`);
//! - `metrics`: Prometheus families (prometheus-client) and the per-scrape pool view;
//! - `console`: the PgBouncer-like console (database `redshift_iam_proxy`);
//! - `registry`: live clients, for `SHOW CLIENTS` and `KILL_CLIENT`;
//! - `reload`: SIGHUP / `RELOAD` re-reading the configuration;
//! - `pause`: `PAUSE` / `RESUME` holding new checkouts;
//! - `peers`: cancels forwarded between replicas (`[peers]`), replicas found by DNS.

pub mod console;
pub mod http;
pub mod metrics;
pub mod pause;
pub mod peers;
pub mod registry;
pub mod reload;

use crate::clientauth::ScramVerifier;
use crate::config::Config;
use crate::mapping::UserMap;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::sync::Semaphore;

/// The database name that reaches the admin console instead of a cluster.
pub const CONSOLE_DATABASE: &str = "redshift_iam_proxy";

/// The parts of the configuration a reload may swap; sessions read one snapshot at login,
/// so a session never sees half of an old and half of a new file.
pub struct Live {
    pub config: Config,
    pub users: UserMap,
    /// SCRAM verifiers per client user (`[client_auth] method = "scram-sha-256"`).
    pub verifiers: HashMap<String, ScramVerifier>,
    /// Identity-token verifiers (`[client_auth.aws_token]`, `[[client_auth.oidc]]`), when
    /// any is configured; their caches last until the next reload.
    pub tokens: Option<Arc<crate::identity::Verifiers>>,
}

impl Live {
    /// Builds the reloadable view of a validated configuration.
    pub fn new(config: Config) -> Live {
        // Parsed at validation already; unparsable entries cannot reach here.
        let verifiers = config
            .client_auth
            .scram_verifiers
            .iter()
            .filter_map(|(u, v)| v.parse().ok().map(|v| (u.clone(), v)))
            .collect();
        Live {
            users: UserMap::new(config.users.clone()),
            verifiers,
            tokens: token_verifiers(&config),
            config,
        }
    }
}

/// The token verifiers of `config`, if it accepts tokens (HTTPS to STS and issuers with
/// the public trust roots).
fn token_verifiers(config: &Config) -> Option<Arc<crate::identity::Verifiers>> {
    let auth = &config.client_auth;
    if auth.aws_token.is_none() && auth.oidc.is_empty() {
        return None;
    }
    let tls = match crate::tls::upstream_config(crate::config::SslMode::VerifyFull, None) {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "no TLS trust roots for verifying identity tokens; tokens are refused");
            return None;
        }
    };
    let timeout = std::time::Duration::from_secs(config.aws.timeout_secs);
    match crate::identity::Verifiers::new(auth, config.aws.region.as_deref(), tls, timeout) {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            tracing::error!(error = %e, "identity token verification is not available; tokens are refused");
            None
        }
    }
}

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
    pub pause: pause::Pause,
    pub clients: registry::Clients,
    /// The other replicas `[peers] dns` finds.
    pub peers: peers::Peers,
    pub live: ArcSwap<Live>,
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
            pause: pause::Pause::default(),
            clients: registry::Clients::default(),
            peers: peers::Peers::default(),
            live: ArcSwap::from_pointee(Live::new(config.clone())),
            config_path: OnceLock::new(),
            started_at: SystemTime::now(),
        }
    }

    /// The configuration in force now (a snapshot; cheap).
    pub fn live(&self) -> Arc<Live> {
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
