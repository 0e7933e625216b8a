//! Where the cluster lives: from the configuration, or found with DescribeClusters.
//!
//! The looked-up endpoint is cached; after a failed TCP connect it is forgotten,
//! so a cluster that moved (resize, relocation) is found again by the next login.

use crate::config::ClusterConfig;
use crate::credentials::{CredentialError, SharedApi};
use crate::tls;
use crate::upstream::UpstreamTarget;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Resolves and caches the cluster endpoint, with the TLS settings attached.
pub struct EndpointResolver {
    identifier: String,
    fixed: Option<(String, u16)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    api: SharedApi,
    cached: Mutex<Option<Arc<UpstreamTarget>>>,
}

/// Why no endpoint could be had.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Aws(#[from] CredentialError),
    #[error("cluster host {0:?} is not a valid TLS server name")]
    BadName(String),
}

impl EndpointResolver {
    pub fn new(
        cluster: &ClusterConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        api: SharedApi,
    ) -> Self {
        Self {
            identifier: cluster.identifier.clone(),
            fixed: cluster
                .host
                .clone()
                .map(|h| (h, cluster.port.unwrap_or(5439))),
            tls,
            connect_timeout,
            api,
            cached: Mutex::new(None),
        }
    }

    /// The upstream target; one DescribeClusters call at a time.
    pub async fn target(&self) -> Result<Arc<UpstreamTarget>, EndpointError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref() {
            return Ok(t.clone());
        }
        let (host, port) = match &self.fixed {
            Some(hp) => hp.clone(),
            None => {
                let hp = self.api.describe_cluster_endpoint(&self.identifier).await?;
                tracing::info!(cluster = %self.identifier, host = %hp.0, port = hp.1, "resolved cluster endpoint with DescribeClusters");
                hp
            }
        };
        let server_name =
            tls::server_name(&host).map_err(|_| EndpointError::BadName(host.clone()))?;
        let target = Arc::new(UpstreamTarget {
            host,
            port,
            tls: self.tls.clone(),
            server_name,
            connect_timeout: self.connect_timeout,
        });
        *cached = Some(target.clone());
        Ok(target)
    }

    /// Forgets a looked-up endpoint after a connect failure.
    pub async fn forget(&self, failed: &Arc<UpstreamTarget>) {
        if self.fixed.is_some() {
            return;
        }
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *cached = None;
        }
    }
}
