//! The cluster side: where a target is (`endpoint`), verified TLS to it (`tls`), one
//! logged-in server (`upstream` speaks the login, `connector` adds the credential and the
//! outage hold), outages (`outage`) and paused clusters (`resume`).
//!
//! May import: `base`, `config`, `client` (the local CA for `tls`), `aws`.

pub mod connector;
pub mod endpoint;
pub mod outage;
pub mod resume;
pub mod tls;
pub mod upstream;

use crate::config::ClusterConfig;
use endpoint::EndpointResolver;
use std::sync::Arc;

/// One configured target with its endpoint resolver.
pub struct Target {
    pub config: ClusterConfig,
    pub endpoint: EndpointResolver,
    /// Whether the cluster is in an outage, and the holds it causes (shared with the pools).
    pub outage: Arc<outage::Outage>,
}
