//! Where a target lives: from the configuration, or found with DescribeClusters /
//! GetWorkgroup, and which cluster a custom domain stands for.
//!
//! Looked-up endpoints are cached; after a failed TCP connect they are forgotten,
//! so a cluster that moved (resize, relocation) is found again by the next login.
//! With a custom domain, the proxy connects to that name and checks it in TLS.

use crate::aws_error::CredentialError;
use crate::config::{ClusterConfig, CredentialMode};
use crate::credentials::SharedApi;
use crate::tls;
use crate::upstream::UpstreamTarget;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Resolves and caches one target's endpoint, with the TLS settings attached.
pub struct EndpointResolver {
    cluster: ClusterConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    api: SharedApi,
    cached: Mutex<Option<Arc<UpstreamTarget>>>,
    /// ClusterIdentifier found through DescribeCustomDomainAssociations.
    domain_cluster: Mutex<Option<String>>,
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
            cluster: cluster.clone(),
            tls,
            connect_timeout,
            api,
            cached: Mutex::new(None),
            domain_cluster: Mutex::new(None),
        }
    }

    /// The ClusterIdentifier to use: configured, or looked up from the custom domain
    /// (`None` for serverless targets).
    pub async fn cluster_identifier(&self) -> Result<Option<String>, EndpointError> {
        if self.cluster.credentials == CredentialMode::Serverless {
            return Ok(None);
        }
        if let Some(id) = &self.cluster.identifier {
            return Ok(Some(id.clone()));
        }
        let Some(domain) = &self.cluster.custom_domain_name else {
            return Ok(None);
        };
        let mut cached = self.domain_cluster.lock().await;
        if let Some(id) = cached.as_ref() {
            return Ok(Some(id.clone()));
        }
        let id = self.api.cluster_for_domain(domain).await?;
        tracing::info!(domain = %domain, cluster = %id, "resolved custom domain with DescribeCustomDomainAssociations");
        *cached = Some(id.clone());
        Ok(Some(id))
    }

    /// The upstream target; one lookup at a time.
    pub async fn target(&self) -> Result<Arc<UpstreamTarget>, EndpointError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref() {
            return Ok(t.clone());
        }
        let c = &self.cluster;
        let (host, port) = match (&c.host, &c.custom_domain_name) {
            (Some(h), _) => (h.clone(), c.port.unwrap_or(5439)),
            // The custom domain is the name clients (and TLS) use.
            (None, Some(domain)) => (domain.clone(), c.port.unwrap_or(5439)),
            (None, None) => match (c.credentials, &c.workgroup, &c.identifier) {
                (CredentialMode::Serverless, Some(wg), _) => {
                    let hp = self.api.workgroup_endpoint(wg).await?;
                    tracing::info!(workgroup = %wg, host = %hp.0, port = hp.1, "resolved workgroup endpoint with GetWorkgroup");
                    hp
                }
                (_, _, Some(id)) => {
                    let hp = self.api.describe_cluster_endpoint(id).await?;
                    tracing::info!(cluster = %id, host = %hp.0, port = hp.1, "resolved cluster endpoint with DescribeClusters");
                    hp
                }
                _ => {
                    return Err(EndpointError::BadName(
                        "(no host, identifier or workgroup)".into(),
                    ))
                }
            },
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
        if self.cluster.host.is_some() || self.cluster.custom_domain_name.is_some() {
            return;
        }
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, failed)) {
            *cached = None;
        }
    }
}
