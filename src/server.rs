//! The listener and its lifecycle: accept, enforce the connection cap, drain on shutdown.
//!
//! Each connection runs in its own task, so a slow or silent socket never delays
//! another client. On shutdown the listener closes at once; open sessions get
//! `limits.drain_timeout_secs` to finish, then they are closed.

use crate::cache::CredentialCache;
use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::credentials::{AwsIdentitySource, RedshiftApi};
use crate::endpoint::EndpointResolver;
use crate::mapping::UserMap;
use crate::session::{self, Shared};
use crate::{client, stream::Stream, tls};
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
}

/// A bound, ready proxy; `serve` runs it.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Builds every shared part and binds the listener.
    pub async fn bind(config: Config, identity: AwsIdentitySource) -> Result<Proxy, StartError> {
        let upstream_tls = tls::upstream_config(
            config.cluster.sslmode,
            config.cluster.sslrootcert.as_deref(),
        )?;
        let client_tls = tls::client_side_config(&config.client_tls)?;
        let api = Arc::new(RedshiftApi::new(&config.aws, identity).await);
        let endpoint = EndpointResolver::new(
            &config.cluster,
            upstream_tls,
            config.limits.connect_timeout(),
            api.clone(),
        );
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;
        let shared = Arc::new(Shared {
            users: UserMap::new(config.users.clone()),
            cache: CredentialCache::new(api),
            endpoint,
            client_tls,
            cancels: Arc::new(CancelRegistry::default()),
            hard_stop: CancellationToken::new(),
            config,
        });
        Ok(Proxy { listener, shared })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Accepts until `shutdown` completes, then drains open sessions.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Proxy { listener, shared } = self;
        let limits = shared.config.limits.clone();
        let slots = Arc::new(Semaphore::new(limits.max_client_connections));
        let tracker = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
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
                    tracker.spawn(async move {
                        session::run(shared, tcp, peer).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    tracing::warn!(%peer, max = limits.max_client_connections, "connection limit reached; refusing");
                    tracker.spawn(async move {
                        let mut s = Stream::Plain(tcp);
                        client::reject(
                            &mut s,
                            "53300",
                            "sorry, too many clients already (proxy limit max_client_connections)",
                            None,
                        )
                        .await;
                    });
                }
            }
        }
        drop(listener);
        tracker.close();
        let open = tracker.len();
        tracing::info!(
            open_sessions = open,
            drain_secs = limits.drain_timeout_secs,
            "shutting down: listener closed, draining sessions"
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
        tracing::info!("shutdown complete");
    }
}
