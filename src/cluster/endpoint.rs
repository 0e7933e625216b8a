//! Where a target lives: from the configuration, or found with DescribeClusters /
//! GetWorkgroup, and which cluster a custom domain stands for (DescribeCustomDomainAssociations).
//! The lookups go through `RedshiftApi::call` (timeouts, retries, error classification).
//!
//! Looked-up endpoints are cached; after a failed TCP connect they are forgotten,
//! so a cluster that moved (resize, relocation) is found again by the next login.
//! With a custom domain, the proxy connects to that name and checks it in TLS.

use crate::aws::credentials::{RedshiftApi, SharedApi};
use crate::aws::error::{CredentialError, FailureKind};
use crate::base::refusal::Refusal;
use crate::cluster::tls;
use crate::cluster::upstream::UpstreamTarget;
use crate::config::{ClusterConfig, CredentialMode};
use crate::wire::protocol::sqlstate;
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
    /// Wakes the cluster when a login finds it paused (`resume_paused`).
    waker: crate::cluster::resume::Waker,
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
            waker: crate::cluster::resume::Waker::new(cluster),
        }
    }

    /// This target's paused-cluster waker (one per target, shared by all its logins).
    pub fn waker(&self) -> &crate::cluster::resume::Waker {
        &self.waker
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
        let id = cluster_for_domain(&self.api, domain).await?;
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
                    let hp = workgroup_endpoint(&self.api, wg).await?;
                    tracing::info!(workgroup = %wg, host = %hp.0, port = hp.1, "resolved workgroup endpoint with GetWorkgroup");
                    hp
                }
                (_, _, Some(id)) => {
                    let hp = describe_cluster_endpoint(&self.api, id).await?;
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

/// DescribeCustomDomainAssociations: the cluster behind a custom domain name.
async fn cluster_for_domain(api: &RedshiftApi, domain: &str) -> Result<String, CredentialError> {
    const OP: &str = "DescribeCustomDomainAssociations";
    let out = api
        .call(OP, || {
            api.redshift()
                .describe_custom_domain_associations()
                .custom_domain_name(domain)
                .send()
        })
        .await?;
    out.associations()
        .iter()
        .flat_map(|a| a.certificate_associations())
        .find_map(|ca| ca.cluster_identifier())
        .map(str::to_owned)
        .ok_or_else(|| CredentialError {
            kind: FailureKind::NotFound,
            operation: OP,
            code: "CustomDomainAssociationNotFoundFault".into(),
            message: format!("no cluster is associated with {domain:?}"),
        })
}

/// Serverless GetWorkgroup: the endpoint of a workgroup.
async fn workgroup_endpoint(
    api: &RedshiftApi,
    workgroup: &str,
) -> Result<(String, u16), CredentialError> {
    const OP: &str = "GetWorkgroup";
    let out = api
        .call(OP, || {
            api.serverless()
                .get_workgroup()
                .workgroup_name(workgroup)
                .send()
        })
        .await?;
    let endpoint = out
        .workgroup()
        .and_then(|w| w.endpoint())
        .ok_or_else(|| no_endpoint(OP, format!("workgroup {workgroup:?} has no endpoint yet")))?;
    endpoint_pair(OP, endpoint.address(), endpoint.port())
}

/// DescribeClusters: the endpoint host and port of one cluster.
async fn describe_cluster_endpoint(
    api: &RedshiftApi,
    identifier: &str,
) -> Result<(String, u16), CredentialError> {
    const OP: &str = "DescribeClusters";
    let cluster = api.describe_cluster(identifier).await?;
    let status = cluster.cluster_status().unwrap_or("unknown");
    let endpoint = cluster.endpoint().ok_or_else(|| {
        no_endpoint(
            OP,
            format!("cluster {identifier:?} has no endpoint yet (status {status})"),
        )
    })?;
    endpoint_pair(OP, endpoint.address(), endpoint.port())
}

/// A cluster or workgroup without an endpoint yet (still being created): worth retrying later.
fn no_endpoint(op: &'static str, message: String) -> CredentialError {
    CredentialError {
        kind: FailureKind::Unavailable,
        operation: op,
        code: "NoEndpoint".into(),
        message,
    }
}

/// The (host, port) of an endpoint in a `op` response.
fn endpoint_pair(
    op: &'static str,
    host: Option<&str>,
    port: Option<i32>,
) -> Result<(String, u16), CredentialError> {
    match (host, port) {
        (Some(host), Some(port)) => {
            let port = u16::try_from(port).map_err(|_| {
                CredentialError::other(op, "MalformedResponse", format!("port {port} out of range"))
            })?;
            Ok((host.to_owned(), port))
        }
        _ => Err(CredentialError::other(
            op,
            "MalformedResponse",
            "endpoint without address or port",
        )),
    }
}

impl From<EndpointError> for Refusal {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::Aws(c) => Refusal::new(c.sqlstate(), c.to_string(), c.hint()),
            other => Refusal::new(
                sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                other.to_string(),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_needs_a_host_and_a_port_in_range() {
        let ok = |h: &str, p: u16| Some((h.to_owned(), p));
        let cases = [
            (Some("h"), Some(5439), ok("h", 5439)),
            (Some("h"), Some(70_000), None),
            (Some("h"), Some(-1), None),
            (None, Some(5439), None),
            (Some("h"), None, None),
        ];
        for (host, port, want) in cases {
            assert_eq!(
                endpoint_pair("Op", host, port).ok(),
                want,
                "{host:?}:{port:?}"
            );
        }
    }
}
