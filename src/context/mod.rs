//! The application context: what every connection shares (configuration as started and as
//! live, credential source and cache, targets, pools, cancel keys, client slots, the admin
//! state).
//!
//! Above the layers it holds (`config`, `client`, `aws`, `cluster`, `access`, `cancel`,
//! `pool`), below those that serve with it (`admin`, `session`, `app`). Nothing beneath
//! imports it: the connector, the pool and the login policy get the narrow handles they use.

pub mod admin;
pub mod live;
pub mod registry;

use crate::aws::cache::CredentialCache;
use crate::aws::credentials::SharedApi;
use crate::cancel::CancelRegistry;
use crate::client::limits::UserSlots;
use crate::cluster::connector::Connector;
use crate::cluster::Target;
use crate::pool::Pools;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything sessions share: configuration, caches, TLS and the cancel registry.
pub struct Shared {
    /// The configuration as started; the live one is `admin.live()` (see [`live`]).
    pub started: live::StartedConfig,
    pub api: SharedApi,
    pub cache: Arc<CredentialCache>,
    pub targets: Arc<Vec<Target>>,
    pub client_tls: Arc<rustls::ServerConfig>,
    pub cancels: Arc<CancelRegistry>,
    /// Fires when the drain time after a shutdown signal is over.
    pub hard_stop: CancellationToken,
    /// Open sessions per client user (`limits.max_connections_per_user`).
    pub user_slots: Arc<UserSlots>,
    /// Server connection pools (`[pool]`).
    pub pools: Arc<Pools>,
    /// Probes, live clients, pause state and the reloadable configuration (`[admin]`).
    pub admin: admin::Admin,
}

impl Shared {
    /// The connector's narrow handle on this context.
    pub fn connector(&self) -> Connector {
        let live = self.admin.live.clone();
        Connector {
            targets: self.targets.clone(),
            api: self.api.clone(),
            cache: self.cache.clone(),
            hold: Arc::new(move || Duration::from_secs(live.load().config.pool.outage_hold_secs)),
        }
    }
}
