//! Server connection pools, one per identity.
//!
//! A pool is keyed by everything that makes two server logins interchangeable: target,
//! the credential request (DbUser, DbName, DbGroups, AutoCreate, IAM identity, API) and
//! the startup parameters `SET` cannot change (`client_protocol_version`, `options`, …).
//! Two clients share a server only if all of these are equal; identities never mix.
//!
//! Rooms: `checkout` (one pool: idle list, waits, limits, reaping), `server` (one server
//! connection), `tracked` (what the proxy knows of a server's session: statements,
//! settings, transaction status), `guard` (a checked-out server whose drop decides its
//! fate from that state), `reset`, `params` (session settings: sync and read-back SQL),
//! `stats`. The client side of the pooled session is `relay::machine`.

pub mod checkout;
pub mod guard;
pub mod params;
pub mod pause;
pub mod reset;
pub mod server;
pub mod slot;
pub mod stats;
pub mod tracked;

use crate::aws::credentials::CredentialRequest;
use crate::base::refusal::Refusal;
use crate::base::sync::lock;
use crate::cluster::connector::{self, Connector, LoginSpec};
use crate::config::{Config, PoolMode};
use checkout::{Pool, PoolCounts, PoolSettings, TargetSlots};
use guard::Checkout;
use pause::Pause;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What makes two server logins interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub target: usize,
    pub request: CredentialRequest,
    /// Startup parameters sent to the server at login (sorted), e.g. `client_protocol_version`.
    pub fixed: crate::wire::StartupParams,
}

/// Every pool of the proxy, and the per-target server caps.
pub struct Pools {
    pools: Mutex<HashMap<PoolKey, Arc<Pool>>>,
    targets: Vec<Arc<TargetSlots>>,
    settings: Vec<PoolSettings>,
    /// Settings from a configuration reload, used for pools created after it (admin).
    reloaded: Mutex<Option<Vec<PoolSettings>>>,
}

impl Pools {
    pub fn new(config: &Config) -> Pools {
        let p = &config.pool;
        let settings = (0..config.cluster.len())
            .map(|i| pool_settings(config, i, config.pool_mode(i)))
            .collect();
        Pools {
            pools: Mutex::new(HashMap::new()),
            targets: (0..config.cluster.len())
                .map(|_| Arc::new(TargetSlots::new(p.max_server_connections)))
                .collect(),
            settings,
            reloaded: Mutex::new(None),
        }
    }

    /// The outage state of target `i` (shared with its sessions).
    pub fn outage(&self, target: usize) -> Arc<crate::cluster::outage::Outage> {
        self.targets
            .get(target)
            .map(|t| t.outage.clone())
            .unwrap_or_default()
    }

    /// The pool mode of target `i`.
    pub fn mode(&self, target: usize) -> PoolMode {
        self.settings.get(target).map_or(PoolMode::None, |s| s.mode)
    }

    /// The pool for `key`, created on first use.
    pub fn get(&self, key: &PoolKey, label: impl FnOnce() -> String) -> Arc<Pool> {
        let mut pools = lock(&self.pools);
        if let Some(p) = pools.get(key) {
            return p.clone();
        }
        let p = Pool::new(
            label(),
            self.settings_for(key.target),
            self.targets[key.target].clone(),
            key.target,
        );
        pools.insert(key.clone(), p.clone());
        p
    }

    /// Closes one idle server of another pool of `target` to make room; true if it did.
    pub fn evict_idle(&self, target: usize, except: &Arc<Pool>) -> bool {
        let candidates: Vec<Arc<Pool>> = lock(&self.pools)
            .values()
            .filter(|p| p.target_index == target && !Arc::ptr_eq(p, except))
            .cloned()
            .collect();
        for p in candidates {
            if let Some(s) = p.take_idle_for_eviction() {
                tracing::debug!(from = %p.label, for_pool = %except.label, "closing an idle server to make room (pool.max_server_connections)");
                tokio::spawn(s.terminate());
                return true;
            }
        }
        false
    }

    /// Shutdown: idle servers close now, checked-out ones at check-in.
    pub fn close_all(&self) {
        for p in lock(&self.pools).values() {
            p.close();
        }
    }

    /// RECONNECT: servers are replaced (idle ones now, busy ones at check-in).
    pub fn reconnect_all(&self) {
        for p in lock(&self.pools).values() {
            p.reconnect();
        }
    }

    /// Every pool with its counts.
    pub fn snapshot(&self) -> Vec<(Arc<Pool>, PoolCounts)> {
        let pools: Vec<Arc<Pool>> = lock(&self.pools).values().cloned().collect();
        pools
            .into_iter()
            .map(|p| {
                let c = p.counts();
                (p, c)
            })
            .collect()
    }

    /// Servers open to `target` over all its pools.
    pub fn target_servers(&self, target: usize) -> usize {
        self.targets.get(target).map_or(0, |t| t.used())
    }

    /// Reaps idle/old servers, tops pools up to `min_size`, forgets unused pools.
    async fn maintain_once(&self, connector: &Connector) {
        let pools: Vec<(PoolKey, Arc<Pool>)> = lock(&self.pools)
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        for (key, pool) in pools {
            let want = pool.reap();
            for _ in 0..want {
                let spec = spec_for(&key);
                let opened = pool
                    .open_idle(|| async move {
                        let target = &connector.targets[spec.0];
                        connector::open(connector, target, &spec.1).await
                    })
                    .await;
                match opened {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(pool = %pool.label, error = %e.message, "could not open a server to keep pool.min_size");
                        break;
                    }
                }
            }
            if pool.settings.min_size == 0 && pool.is_unused() {
                let mut map = lock(&self.pools);
                if map
                    .get(&key)
                    .is_some_and(|p| Arc::ptr_eq(p, &pool) && p.is_unused())
                {
                    map.remove(&key);
                }
            }
        }
    }

    /// Runs maintenance every second until the task is aborted.
    pub async fn maintain(self: Arc<Self>, connector: Connector) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.maintain_once(&connector).await;
        }
    }
}

impl Pools {
    /// Reload: sizes and timeouts of `config` for pools created from now on. The pool
    /// mode stays (sessions were planned with it); existing pools keep theirs until
    /// maintenance retires them.
    pub fn reload_settings(&self, config: &Config) {
        let new = self
            .settings
            .iter()
            .enumerate()
            .map(|(i, old)| pool_settings(config, i, old.mode))
            .collect();
        *lock(&self.reloaded) = Some(new);
    }

    /// The settings a new pool of `target` gets (reloaded ones first).
    fn settings_for(&self, target: usize) -> PoolSettings {
        lock(&self.reloaded)
            .as_ref()
            .and_then(|r| r.get(target).cloned())
            .unwrap_or_else(|| self.settings[target].clone())
    }
}

/// The pool settings of target `i` from `config` (the mode is given: it cannot change
/// while the proxy runs).
fn pool_settings(config: &Config, i: usize, mode: PoolMode) -> PoolSettings {
    let p = &config.pool;
    PoolSettings {
        mode,
        size: config.pool_size(i),
        min_size: p.min_size.min(config.pool_size(i)),
        checkout_timeout: Duration::from_secs(p.checkout_timeout_secs),
        idle_timeout: Duration::from_secs(p.server_idle_timeout_secs),
        lifetime: Duration::from_secs(p.server_lifetime_secs),
        check_delay: Duration::from_secs(p.server_check_delay_secs),
        max_prepared: p.max_prepared_statements,
        reset_query: p.reset_query.clone(),
        login_timeout: config.limits.login_timeout(),
        outage_hold: Duration::from_secs(p.outage_hold_secs),
    }
}

/// Target index and login spec of a pool key (for maintenance logins).
fn spec_for(key: &PoolKey) -> (usize, LoginSpec) {
    (
        key.target,
        LoginSpec {
            request: key.request.clone(),
            database: key.request.db_name.clone(),
            params: key.fixed.clone(),
        },
    )
}

/// A client's way into its pool: which pool, and how to log in a new server for it.
#[derive(Clone)]
pub struct PoolHandle {
    pub connector: Connector,
    pub pools: Arc<Pools>,
    /// Admin PAUSE holds new checkouts (PgBouncer semantics).
    pub pause: Arc<Pause>,
    pub pool: Arc<Pool>,
    pub spec: Arc<LoginSpec>,
    pub target: usize,
}

impl PoolHandle {
    /// The pool of servers logged in to `target` as `spec` (created on first use; `label`
    /// names it in logs and counters).
    pub fn new(
        pools: &Arc<Pools>,
        pause: &Arc<Pause>,
        connector: Connector,
        target: usize,
        spec: &LoginSpec,
        label: &str,
    ) -> PoolHandle {
        let key = PoolKey {
            target,
            request: spec.request.clone(),
            fixed: spec.params.clone(),
        };
        let pool = pools.get(&key, || label.to_owned());
        PoolHandle {
            pool,
            spec: Arc::new(spec.clone()),
            target,
            connector,
            pools: pools.clone(),
            pause: pause.clone(),
        }
    }

    /// A server for this client (see [`Pool::checkout`]).
    pub async fn checkout(&self) -> Result<Checkout, Refusal> {
        // Admin PAUSE holds new checkouts (PgBouncer semantics).
        self.pause.wait_resumed(&self.pool.label).await;
        let open = || {
            let connector = self.connector.clone();
            let spec = self.spec.clone();
            let t = self.target;
            let attempt = self.pool.settings.login_timeout;
            // A client's login: it may wake a paused cluster (`resume_paused`).
            async move {
                crate::cluster::resume::client_login(connector::open_held(
                    &connector,
                    &connector.targets[t],
                    &spec,
                    attempt,
                ))
                .await
            }
        };
        let pools = self.pools.clone();
        let pool = self.pool.clone();
        let t = self.target;
        let evict_fn = move || pools.evict_idle(t, &pool);
        let server = self.pool.checkout(open, &evict_fn).await?;
        Ok(Checkout::new(self.pool.clone(), server))
    }
}
