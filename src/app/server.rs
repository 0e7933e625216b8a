//! The listener and its lifecycle: accept, enforce the connection cap, drain on shutdown.
//!
//! Each connection runs in its own task, so a slow or silent socket never delays
//! another client. On shutdown the listener closes at once; open sessions get
//! `limits.drain_timeout_secs` to finish, then they are closed.

use crate::aws::cache::CredentialCache;
use crate::aws::credentials::{AwsIdentitySource, RedshiftApi};
use crate::base::stream::Stream;
use crate::cancel::CancelRegistry;
use crate::client::handshake as client;
use crate::client::limits::UserSlots;
use crate::cluster::endpoint::EndpointResolver;
use crate::cluster::tls;
use crate::cluster::Target;
use crate::config::{ClientAuthMethod, Config, PeerId};
use crate::context::admin::Admin;
use crate::context::live::StartedConfig;
use crate::context::Shared;
use crate::pool::Pools;
use crate::session;
use crate::wire::protocol::sqlstate;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// `[peers] peer_id = "auto"` found no ordinal in the host name.
    #[error("{0}")]
    PeerId(String),
}

/// A bound, ready proxy; `serve` runs it.
pub struct Proxy {
    /// The main listener (routes by database name) and one per target that asked for it.
    listeners: Vec<(TcpListener, Option<usize>)>,
    /// `[admin] listen`: probes and metrics.
    admin_listener: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Builds every shared part and binds the listeners.
    pub async fn bind(config: Config, identity: AwsIdentitySource) -> Result<Proxy, StartError> {
        let client_ca = match config.client_auth.method {
            ClientAuthMethod::Cert => config.client_auth.ca_file.as_deref(),
            _ => None,
        };
        let server_names = crate::client::localca::server_names(config.listen_addrs());
        let (client_tls, cert_source) =
            tls::client_side_config(&config.client_tls, &server_names, client_ca)?;
        log_client_cert(&cert_source);
        let api = Arc::new(RedshiftApi::new(&config.aws, identity).await);
        let pools = Pools::new(&config);
        let mut targets = Vec::new();
        for (i, c) in config.cluster.iter().enumerate() {
            let upstream_tls = tls::upstream_config(c.sslmode, c.sslrootcert.as_deref())?;
            targets.push(Target {
                endpoint: EndpointResolver::new(
                    c,
                    upstream_tls,
                    config.limits.connect_timeout(),
                    api.clone(),
                ),
                config: c.clone(),
                outage: pools.outage(i),
            });
        }
        let mut listeners = vec![(bind(&config.listen).await?, None)];
        for (i, c) in config.cluster.iter().enumerate() {
            if let Some(addr) = &c.listen {
                listeners.push((bind(addr).await?, Some(i)));
            }
        }
        let admin_listener = match &config.admin.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let admin = Admin::new(&config);
        let cancels = Arc::new(CancelRegistry::default());
        cancels.set_peer_id(peer_id(&config)?);
        // A started replica already knows its peers (`[peers] dns`).
        admin.peers.set_local(
            listeners
                .iter()
                .filter_map(|(l, _)| l.local_addr().ok())
                .collect(),
        );
        admin.peers.refresh(&config.peers).await;
        let shared = Arc::new(Shared {
            cache: Arc::new(CredentialCache::new(api.clone())),
            api,
            targets: Arc::new(targets),
            client_tls,
            cancels,
            hard_stop: CancellationToken::new(),
            user_slots: Arc::new(UserSlots::new(config.limits.max_connections_per_user)),
            pools: Arc::new(pools),
            admin,
            started: StartedConfig::new(config),
        });
        Ok(Proxy {
            listeners,
            admin_listener,
            shared,
        })
    }

    /// The main listener's address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].0.local_addr()
    }

    /// Every listener's address with the target it serves (`None`: routes by database name).
    pub fn listener_addrs(&self) -> Vec<(Option<String>, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|(l, t)| {
                let label = t.map(|i| self.shared.targets[i].config.label().to_owned());
                l.local_addr().ok().map(|a| (label, a))
            })
            .collect()
    }

    /// The `[admin] listen` address, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The file SIGHUP and the console's RELOAD re-read (the binary sets it). The SIGHUP
    /// handler is installed here, before the caller says it is listening, so an early
    /// SIGHUP reloads instead of killing the process.
    pub fn set_config_path(&self, path: std::path::PathBuf) {
        let _ = self.shared.admin.config_path.set(path);
        crate::admin::reload::install_sighup(self.shared.clone());
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts until `shutdown` completes, then drains open sessions.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Proxy {
            listeners,
            admin_listener,
            shared,
        } = self;
        let limits = shared.started.config.limits.clone();
        let slots = Arc::new(Semaphore::new(limits.max_client_connections));
        shared.admin.set_slots(slots.clone());
        let tracker = TaskTracker::new();
        let stop_accepting = CancellationToken::new();
        let stop_admin = CancellationToken::new();
        if let Some(l) = admin_listener {
            spawn_admin(l, &shared, &stop_admin);
        }
        let mut accept_loops = Vec::new();
        for (listener, target) in listeners {
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                target,
                shared.clone(),
                slots.clone(),
                tracker.clone(),
                stop_accepting.clone(),
            )));
        }
        let background = Background::start(&shared, &tracker, limits.stats_interval_secs);
        shutdown.await;
        start_draining(&shared).await;
        stop_accepting.cancel();
        background.stop_for_shutdown();
        // Idle servers go now; servers in use finish with their clients (drain).
        shared.pools.close_all();
        for l in accept_loops {
            let _ = l.await;
        }
        background.discovery.abort();
        drain(&shared, &tracker).await;
        stop_admin.cancel();
        tracing::info!("shutdown complete");
    }
}

/// Serves `[admin] listen` (probes and metrics) until `stop`.
fn spawn_admin(l: TcpListener, shared: &Arc<Shared>, stop: &CancellationToken) {
    if let Ok(addr) = l.local_addr() {
        tracing::info!(%addr, "admin HTTP listening (/startup /liveness /readiness /metrics)");
    }
    tokio::spawn(crate::admin::http::serve(l, shared.clone(), stop.clone()));
}

/// The tasks that run beside the listeners while the proxy serves.
struct Background {
    stats: Option<tokio::task::JoinHandle<()>>,
    maintenance: tokio::task::JoinHandle<()>,
    discovery: tokio::task::JoinHandle<()>,
    prewarm: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Periodic stats (unless `stats_interval_secs` is 0), pool maintenance, peer
    /// discovery, and the prewarm that marks the proxy started.
    fn start(shared: &Arc<Shared>, tracker: &TaskTracker, stats_interval_secs: u64) -> Self {
        let stats = (stats_interval_secs > 0).then(|| {
            tokio::spawn(log_stats(
                shared.clone(),
                tracker.clone(),
                stats_interval_secs,
            ))
        });
        let maintenance = tokio::spawn(shared.pools.clone().maintain(shared.connector()));
        let discovery = {
            let s = shared.clone();
            tokio::spawn(async move {
                crate::cancel::peers::discover(&s.started.config.peers, &s.admin.peers).await
            })
        };
        let prewarm = {
            let shared = shared.clone();
            tokio::spawn(async move {
                // Finished or failed (even a panic): the proxy has started either way.
                let _ = tokio::spawn(super::prewarm::prewarm(shared.clone())).await;
                shared.admin.mark_started();
                tracing::info!("started: listeners up, prewarm done");
            })
        };
        Background {
            stats,
            maintenance,
            discovery,
            prewarm,
        }
    }

    /// Stops the stats, the prewarm and pool maintenance (peer discovery stops once the
    /// listeners have closed).
    fn stop_for_shutdown(&self) {
        if let Some(s) = &self.stats {
            s.abort();
        }
        self.prewarm.abort();
        self.maintenance.abort();
    }
}

/// Readiness fails from now on; clients are still accepted for `admin.min_sigterm_delay_secs`.
async fn start_draining(shared: &Shared) {
    shared.admin.mark_draining();
    let delay = shared.started.config.min_sigterm_delay();
    if !delay.is_zero() {
        tracing::info!(
            delay_secs = delay.as_secs(),
            "readiness now fails; still accepting clients for admin.min_sigterm_delay_secs"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Gives open sessions `limits.drain_timeout_secs` to finish, then closes the rest.
async fn drain(shared: &Shared, tracker: &TaskTracker) {
    let limits = &shared.started.config.limits;
    tracker.close();
    let open = tracker.len();
    tracing::info!(
        open_sessions = open,
        drain_secs = limits.drain_timeout_secs,
        "shutting down: listeners closed, draining sessions"
    );
    if tokio::time::timeout(limits.drain_timeout(), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open_sessions = tracker.len(),
            "drain time over; closing the remaining sessions"
        );
        shared.hard_stop.cancel();
        tracker.wait().await;
    }
}

/// This replica's `[peers] peer_id` (`"auto"`: from the host name's ordinal).
fn peer_id(config: &Config) -> Result<u8, StartError> {
    match config.peers.id() {
        PeerId::Fixed(id) => Ok(id),
        PeerId::Auto => {
            let host = crate::cancel::peers::host_name().unwrap_or_default();
            let id = crate::cancel::peers::auto_peer_id(&host).map_err(StartError::PeerId)?;
            tracing::info!(peer_id = id, host = %host, "peers.peer_id from the host name's ordinal");
            Ok(id)
        }
    }
}

/// Tells the operator which CA clients that verify TLS must trust, with ready-to-paste lines.
fn log_client_cert(source: &tls::ClientCertSource) {
    match source {
        tls::ClientCertSource::Files => {
            tracing::info!("client TLS: [client_tls] cert_file; clients trust the CA that signed it")
        }
        tls::ClientCertSource::LocalCa(ca) => tracing::info!(
            ca = %ca.display(),
            "client TLS: listener certificate signed by the local CA; clients that verify TLS trust {}. {}",
            ca.display(),
            crate::client::localca::trust_hints(ca)
        ),
        tls::ClientCertSource::SelfSigned => tracing::info!(
            "client TLS: self-signed certificate made at this start (local_ca = false); only sslmode=require clients can use it"
        ),
    }
}

/// Logs the proxy's vital counts periodically (target `redshift_iam_proxy::stats`).
async fn log_stats(shared: Arc<Shared>, tracker: TaskTracker, every_secs: u64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        tracing::info!(
            target: "redshift_iam_proxy::stats",
            open_connections = tracker.len(),
            alive_tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks(),
            cached_credentials = shared.cache.len(),
            cancel_keys = shared.cancels.len(),
            "stats"
        );
        for (pool, c) in shared.pools.snapshot() {
            use crate::pool::stats::PoolStats;
            let st = &pool.stats;
            tracing::info!(
                target: "redshift_iam_proxy::stats",
                pool = %pool.label,
                mode = pool.settings.mode.as_str(),
                servers = c.total,
                servers_idle = c.idle,
                servers_active = c.active,
                servers_opening = c.opening,
                clients_waiting = c.waiting,
                clients_active = PoolStats::get(&st.clients_active),
                checkouts = PoolStats::get(&st.checkouts),
                max_wait_us = PoolStats::get(&st.max_wait_us),
                transactions = PoolStats::get(&st.transactions),
                queries = PoolStats::get(&st.queries),
                resets = PoolStats::get(&st.resets),
                resets_failed = PoolStats::get(&st.resets_failed),
                "pool stats"
            );
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Accepts on one listener until `stop`; the listener closes when this returns.
async fn accept_loop(
    listener: TcpListener,
    target: Option<usize>,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let listener_label = target.map_or_else(
        || "main".to_owned(),
        |i| shared.targets[i].config.label().to_owned(),
    );
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let shared = shared.clone();
                let open = crate::base::events::OpenClient::new(&listener_label);
                tracker.spawn(async move {
                    session::run(shared, tcp, peer, target).await;
                    drop(open);
                    drop(permit);
                });
            }
            Err(_) => {
                let max = shared.admin.live().config.limits.max_client_connections;
                crate::base::events::login_refused(sqlstate::TOO_MANY_CONNECTIONS);
                tracing::warn!(%peer, max, "connection limit reached; refusing");
                tracker.spawn(async move {
                    let mut s = Stream::Plain(tcp);
                    client::reject(
                        &mut s,
                        sqlstate::TOO_MANY_CONNECTIONS,
                        "sorry, too many clients already (proxy limit max_client_connections)",
                        None,
                    )
                    .await;
                });
            }
        }
    }
}
