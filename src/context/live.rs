//! The two configurations, named by how long they hold.
//!
//! - [`StartedConfig`]: the file as the proxy started with it. What cannot change while
//!   it runs reads this one: listeners, targets and their pool mode, prewarm rules, peers.
//! - [`LiveConfig`]: the reloadable values (SIGHUP, `RELOAD`). A session reads one snapshot
//!   at login (`Admin::live()`), so it never sees half of an old and half of a new file;
//!   limits, mapping rules, client authentication and hold times read this one.

use crate::access::mapping::UserMap;
use crate::client::auth::ScramVerifier;
use crate::config::Config;
use std::collections::HashMap;
use std::sync::Arc;

/// The configuration as started (see the module header for who reads it).
pub struct StartedConfig {
    pub config: Config,
    pub users: UserMap,
}

impl StartedConfig {
    pub fn new(config: Config) -> StartedConfig {
        StartedConfig {
            users: UserMap::new(config.users.clone()),
            config,
        }
    }
}

/// The parts of the configuration a reload may swap; sessions read one snapshot at login,
/// so a session never sees half of an old and half of a new file.
pub struct LiveConfig {
    pub config: Config,
    pub users: UserMap,
    /// SCRAM verifiers per client user (`[client_auth] method = "scram-sha-256"`).
    pub verifiers: HashMap<String, ScramVerifier>,
    /// Identity-token verifiers (`[client_auth.aws_token]`, `[[client_auth.oidc]]`), when
    /// any is configured; their caches last until the next reload.
    pub tokens: Option<Arc<crate::client::identity::Verifiers>>,
}

impl LiveConfig {
    /// Builds the reloadable view of a validated configuration.
    pub fn new(config: Config) -> LiveConfig {
        // Parsed at validation already; unparsable entries cannot reach here.
        let verifiers = config
            .client_auth
            .scram_verifiers
            .iter()
            .filter_map(|(u, v)| v.parse().ok().map(|v| (u.clone(), v)))
            .collect();
        LiveConfig {
            users: UserMap::new(config.users.clone()),
            verifiers,
            tokens: token_verifiers(&config),
            config,
        }
    }
}

/// The token verifiers of `config`, if it accepts tokens (HTTPS to STS and issuers with
/// the public trust roots).
fn token_verifiers(config: &Config) -> Option<Arc<crate::client::identity::Verifiers>> {
    let auth = &config.client_auth;
    if auth.aws_token.is_none() && auth.oidc.is_empty() {
        return None;
    }
    let tls = match crate::cluster::tls::upstream_config(crate::config::SslMode::VerifyFull, None) {
        Ok(Some(t)) => t,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(error = %e, "no TLS trust roots for verifying identity tokens; tokens are refused");
            return None;
        }
    };
    let timeout = std::time::Duration::from_secs(config.aws.timeout_secs);
    match crate::client::identity::Verifiers::new(auth, config.aws.region.as_deref(), tls, timeout)
    {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            tracing::error!(error = %e, "identity token verification is not available; tokens are refused");
            None
        }
    }
}
