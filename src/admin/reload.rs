//! Reload without dropping sessions: SIGHUP and the console's `RELOAD` re-read the
//! configuration file. User mappings, client authentication (verifiers, admin users),
//! limits, pool sizes and timeouts (for pools created after the reload) and the log
//! filter take effect for new logins; open sessions keep running
//! with what they logged in with. A file that does not validate is refused and the old
//! configuration stays. Changes that need a restart are logged as such.

use crate::access::mapping::UserMap;
use crate::aws::credentials::CredentialRequest;
use crate::config::{Config, CredentialMode, UserRule};
use crate::context::live::LiveConfig;
use crate::context::Shared;
use std::sync::{Arc, OnceLock};

/// Applies a new log filter (set by the binary when `RUST_LOG` does not decide).
pub type LogFilterHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static LOG_FILTER_HOOK: OnceLock<LogFilterHook> = OnceLock::new();

/// Lets reloads change the log filter (the binary's subscriber owns it).
pub fn set_log_filter_hook(hook: LogFilterHook) {
    let _ = LOG_FILTER_HOOK.set(hook);
}

/// Re-reads the configuration file; `Ok` is a summary line, `Err` why it was refused.
pub fn reload(shared: &Shared) -> Result<String, String> {
    let Some(path) = shared.admin.config_path.get() else {
        return Err("this proxy was not started from a configuration file".into());
    };
    let mut new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            crate::base::events::reload("refused");
            // One line: TOML errors span several, and the key must be on the logged line.
            let why = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            tracing::warn!(error = %why, "configuration reload refused; the running configuration stays in force");
            return Err(why);
        }
    };
    let old = shared.admin.live();
    let restart = restart_only_changes(&old.config, &new);
    for key in &restart {
        tracing::warn!(key = %key, "configuration change needs a restart; the running value stays until then");
    }
    // Targets are fixed for the process: sessions index them.
    new.cluster = old.config.cluster.clone();
    new.listen = old.config.listen.clone();
    // Client certificate verification is part of the TLS setup made at start.
    let cert = crate::config::ClientAuthMethod::Cert;
    if (old.config.client_auth.method == cert) != (new.client_auth.method == cert)
        || old.config.client_auth.ca_file != new.client_auth.ca_file
    {
        tracing::warn!(key = "client_auth.method / client_auth.ca_file", "configuration change needs a restart (client certificates are verified by the TLS setup); the running value stays until then");
        new.client_auth.method = old.config.client_auth.method;
        new.client_auth.ca_file = old.config.client_auth.ca_file.clone();
    }
    // The merged result must hold too (e.g. "trust" with the running, exposed listener).
    if let Err(e) = new.validate() {
        crate::base::events::reload("refused");
        let why = format!("with the running listeners and targets: {e}");
        tracing::warn!(error = %why, "configuration reload refused; the running configuration stays in force");
        return Err(why);
    }
    let live = LiveConfig::new(new);
    shared
        .user_slots
        .set_max(live.config.limits.max_connections_per_user);
    let slots = shared
        .admin
        .resize_slots(live.config.limits.max_client_connections);
    if std::env::var_os("RUST_LOG").is_none() {
        if let Some(hook) = LOG_FILTER_HOOK.get() {
            let filter = live.config.log_filter.as_deref().unwrap_or("info");
            if let Err(e) = hook(filter) {
                tracing::warn!(error = %e, "log_filter not applied");
            }
        }
    }
    // Sizes and timeouts for pools created from now on.
    shared.pools.reload_settings(&live.config);
    let rules = live.config.users.clone();
    let dropped = shared.cache.retain(|req| mapping_exists(&rules, req));
    shared.admin.live.store(Arc::new(live));
    crate::base::events::reload("ok");
    let summary = format!(
        "configuration reloaded from {}: new logins use it, open sessions continue ({} cached credentials of removed mappings dropped; max_client_connections now {}; {} change(s) wait for a restart)",
        path.display(),
        dropped,
        slots,
        restart.len()
    );
    tracing::info!("{summary}");
    Ok(summary)
}

/// Keys whose new value only a restart applies.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |key: &str, a: String, b: String| {
        if a != b {
            out.push(key.to_owned());
        }
    };
    check("listen", old.listen.clone(), new.listen.clone());
    check(
        "cluster",
        format!("{:?}", old.cluster),
        format!("{:?}", new.cluster),
    );
    check("aws", format!("{:?}", old.aws), format!("{:?}", new.aws));
    check(
        "pool.mode",
        format!("{:?}", old.pool.mode),
        format!("{:?}", new.pool.mode),
    );
    check(
        "pool.max_server_connections",
        old.pool.max_server_connections.to_string(),
        new.pool.max_server_connections.to_string(),
    );
    check(
        "client_tls",
        format!("{:?}", old.client_tls),
        format!("{:?}", new.client_tls),
    );
    check(
        "peers",
        format!("{:?}", old.peers),
        format!("{:?}", new.peers),
    );
    check(
        "admin.listen",
        format!("{:?}", old.admin.listen),
        format!("{:?}", new.admin.listen),
    );
    check(
        "admin.min_sigterm_delay_secs",
        old.admin.min_sigterm_delay_secs.to_string(),
        new.admin.min_sigterm_delay_secs.to_string(),
    );
    check(
        "log_format",
        format!("{:?}", old.log_format),
        format!("{:?}", new.log_format),
    );
    check(
        "limits.drain_timeout_secs",
        old.limits.drain_timeout_secs.to_string(),
        new.limits.drain_timeout_secs.to_string(),
    );
    check(
        "limits.stats_interval_secs",
        old.limits.stats_interval_secs.to_string(),
        new.limits.stats_interval_secs.to_string(),
    );
    check(
        "limits.connect_timeout_secs",
        old.limits.connect_timeout_secs.to_string(),
        new.limits.connect_timeout_secs.to_string(),
    );
    out
}

/// True when some rule of `rules` still asks AWS for exactly this request's identity.
fn mapping_exists(rules: &[UserRule], req: &CredentialRequest) -> bool {
    rules.iter().any(|r| {
        let name = if r.client_user == "*" {
            req.db_user.clone().unwrap_or_default()
        } else {
            r.client_user.clone()
        };
        let Some(id) = UserMap::new(vec![r.clone()]).resolve(&name) else {
            return false;
        };
        if id.role != req.role {
            return false;
        }
        match req.mode {
            CredentialMode::GetClusterCredentials => {
                req.db_user.as_deref() == Some(id.db_user.as_str())
                    && id.db_groups == req.db_groups
                    && id.auto_create == req.auto_create
            }
            _ => true,
        }
    })
}

/// Installs the SIGHUP handler now and reloads on every SIGHUP for the process's life.
/// Call from within the runtime.
pub fn install_sighup(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload with the console's RELOAD");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            // Outcomes are logged inside.
            let _ = reload(&shared);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(db_user: &str, groups: &[&str]) -> CredentialRequest {
        CredentialRequest {
            mode: CredentialMode::GetClusterCredentials,
            cluster_identifier: Some("c".into()),
            workgroup: None,
            custom_domain: None,
            role: None,
            db_user: Some(db_user.into()),
            db_name: "dev".into(),
            db_groups: groups.iter().map(|g| g.to_string()).collect(),
            auto_create: false,
            duration_seconds: 900,
        }
    }

    #[test]
    fn credentials_of_removed_or_changed_mappings_are_not_kept() {
        let c = Config::from_toml(
            "[cluster]\nidentifier=\"c\"\n[[users]]\nclient_user=\"alice\"\ndb_groups=[\"analysts\"]\n",
        )
        .unwrap();
        assert!(mapping_exists(&c.users, &req("alice", &["analysts"])));
        assert!(!mapping_exists(&c.users, &req("alice", &["sales"])));
        assert!(!mapping_exists(&c.users, &req("bob", &[])));
        let any = Config::from_toml("[cluster]\nidentifier=\"c\"\n[[users]]\nclient_user=\"*\"\n")
            .unwrap();
        assert!(mapping_exists(&any.users, &req("bob", &[])));
    }
}
