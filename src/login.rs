//! Login policy: from what a client sent at startup to what the proxy will do for it.
//!
//! Pure decisions, no I/O: which target (routing by database name or listener), which
//! Redshift identity (the user map), which database (the default-database rule), which
//! startup parameters go to the cluster and which protocol options are declined, and
//! what a login asks AWS for (`credential_request`: DbUser, DbGroups, role per API).
//! `pooled` adds what pooling needs: the credential request (the pool key) and the
//! split of startup parameters into session settings and fixed login parameters.

use crate::config::{ClusterConfig, Config, CredentialMode};
use crate::connector::LoginSpec;
use crate::credentials::CredentialRequest;
use crate::mapping::{Identity, UserMap};
use crate::pool::params::{self, Settings};
use crate::refusal::Refusal;
use crate::session::Shared;

/// What the proxy will do for one client login.
#[derive(Debug, Clone)]
pub struct LoginPlan {
    pub target: usize,
    pub database: String,
    pub identity: Identity,
    /// Startup parameters for the cluster (without user, database and `_pq_.*`).
    pub forwarded: Vec<(String, String)>,
    /// Protocol options (`_pq_.*`) the proxy declines with NegotiateProtocolVersion.
    pub declined: Vec<String>,
    /// Startup parameters changed so stock drivers' logins succeed on Redshift (for a debug line).
    pub adapted: Vec<String>,
}

/// Parameters the client sent that are not forwarded upstream.
fn forwardable(key: &str) -> bool {
    !matches!(key, "user" | "database") && !key.starts_with("_pq_.")
}

/// The database when a login names none: the target's `default_database`, else the
/// client user name (PostgreSQL's rule), else "dev" when there is no user name to go by
/// (`client_user` is `None`: the client's database name only chose a target, or the login
/// is `check`'s, which stands for such a client). Sessions, prewarm and `check` all ask here.
pub fn default_database(config_default: Option<&str>, client_user: Option<&str>) -> String {
    match (config_default, client_user) {
        (Some(d), _) => d.to_owned(),
        (None, Some(user)) => user.to_owned(),
        (None, None) => "dev".to_owned(),
    }
}

/// What to ask AWS for `identity` on a target. DbUser, DbGroups and AutoCreate only exist
/// for GetClusterCredentials; the IAM-mapped APIs take the user from the (possibly
/// assumed) IAM identity.
pub fn credential_request(
    cluster: &ClusterConfig,
    identity: Identity,
    cluster_identifier: Option<String>,
    db_name: &str,
) -> CredentialRequest {
    let by_rules = cluster.credentials == CredentialMode::GetClusterCredentials;
    CredentialRequest {
        mode: cluster.credentials,
        cluster_identifier,
        workgroup: cluster.workgroup.clone(),
        custom_domain: cluster.custom_domain_name.clone(),
        role: identity.role,
        db_user: by_rules.then_some(identity.db_user),
        db_name: db_name.to_owned(),
        db_groups: if by_rules {
            identity.db_groups
        } else {
            Vec::new()
        },
        auto_create: by_rules && identity.auto_create,
        duration_seconds: cluster.duration_seconds,
    }
}

/// Decides target, identity, database and parameters; `Err` is what the client hears.
pub fn plan(
    config: &Config,
    users: &UserMap,
    fixed_target: Option<usize>,
    client_user: &str,
    params: &[(String, String)],
) -> Result<LoginPlan, Refusal> {
    let requested = params
        .iter()
        .find(|(k, _)| k == "database")
        .map(|(_, v)| v.as_str())
        .filter(|d| !d.is_empty());
    let (target, dbname) = match fixed_target {
        Some(i) => (i, requested),
        None => config
            .route(requested)
            .map_err(|msg| Refusal::new("3D000", msg, None))?,
    };
    let Some(identity) = users.resolve(client_user) else {
        return Err(Refusal::new(
            "28000",
            format!("no [[users]] rule of the proxy matches user \"{client_user}\""),
            Some("add a [[users]] rule for this user (or client_user = \"*\")"),
        ));
    };
    let named_target_only = requested.is_some() && dbname.is_none();
    let database = match dbname {
        Some(d) => d.to_owned(),
        None => default_database(
            config.cluster[target].default_database.as_deref(),
            (!named_target_only).then_some(client_user),
        ),
    };
    let mut forwarded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| forwardable(k))
        .cloned()
        .collect();
    let adapted = crate::compat::adapt_startup_params(&mut forwarded)
        .iter()
        .map(ToString::to_string)
        .collect();
    // `_pq_.compression` (sent by Redshift's JDBC driver) is dropped silently.
    let declined = params
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("_pq_.") && *k != "_pq_.compression")
        .cloned()
        .collect();
    Ok(LoginPlan {
        target,
        database,
        identity,
        forwarded,
        declined,
        adapted,
    })
}

/// A login through a pool: the pool key's parts and the client's session settings.
#[derive(Debug, Clone)]
pub struct PooledLogin {
    pub target: usize,
    /// How to log in a new server for this pool (fixed parameters only).
    pub spec: LoginSpec,
    /// The client's startup parameters that are applied with SET.
    pub settings: Settings,
    /// "dbuser/dbname@target" for logs and counters.
    pub label: String,
}

/// Resolves the credential request and splits the startup parameters.
pub async fn pooled(shared: &Shared, plan: &LoginPlan) -> Result<PooledLogin, Refusal> {
    let target = &shared.targets[plan.target];
    let request = credential_request(
        &target.config,
        plan.identity.clone(),
        target.endpoint.cluster_identifier().await?,
        &plan.database,
    );
    let (settings, fixed) = params::split_startup(&plan.forwarded);
    let who = request
        .db_user
        .clone()
        .or_else(|| {
            request
                .role
                .as_ref()
                .map(|r| r.arn.rsplit('/').next().unwrap_or("role").to_owned())
        })
        .unwrap_or_else(|| "iam".to_owned());
    Ok(PooledLogin {
        target: plan.target,
        label: format!("{who}/{}@{}", plan.database, target.config.label()),
        spec: LoginSpec {
            request,
            database: plan.database.clone(),
            params: fixed,
        },
        settings,
    })
}

/// The pooled login a `[[users]]` rule's client would make with no startup options
/// (prewarm); `None` if the rule does not map.
pub async fn plan_for_prewarm(
    shared: &Shared,
    target: usize,
    client_user: &str,
) -> Option<PooledLogin> {
    let several = shared.targets.len() > 1;
    let mut plan = plan(
        &shared.config,
        &shared.users,
        Some(target),
        client_user,
        &[],
    )
    .ok()?;
    // With several targets, clients name theirs, so they get the target's database.
    plan.database = default_database(
        shared.targets[target].config.default_database.as_deref(),
        (!several).then_some(client_user),
    );
    pooled(shared, &plan).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::from_toml(&format!(
            "{extra}\n[[users]]\nclient_user = \"alice\"\ndb_groups = [\"g\"]\n"
        ))
        .unwrap()
    }

    fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn users(c: &Config) -> UserMap {
        UserMap::new(c.users.clone())
    }

    #[test]
    fn default_database_is_the_configured_one_else_the_user_name_else_dev() {
        // (target's default_database, client user to go by) -> database
        let cases = [
            (Some("sales"), Some("alice"), "sales"),
            (Some("sales"), None, "sales"),
            (None, Some("alice"), "alice"),
            (None, None, "dev"),
        ];
        for (configured, user, want) in cases {
            assert_eq!(
                default_database(configured, user),
                want,
                "{configured:?} {user:?}"
            );
        }
    }

    #[test]
    fn single_target_uses_the_database_as_dbname() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan(
            &c,
            &users(&c),
            None,
            "alice",
            &params(&[("database", "sales")]),
        )
        .unwrap();
        assert_eq!((p.target, p.database.as_str()), (0, "sales"));
    }

    #[test]
    fn no_database_means_the_client_user_name() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan(&c, &users(&c), None, "alice", &[]).unwrap();
        assert_eq!(p.database, "alice");
    }

    #[test]
    fn default_database_wins_over_the_user_name() {
        let c = cfg("[cluster]\nidentifier = \"c\"\ndefault_database = \"dev\"");
        let p = plan(&c, &users(&c), None, "alice", &[]).unwrap();
        assert_eq!(p.database, "dev");
    }

    #[test]
    fn a_target_name_alone_means_its_default_database() {
        let c = cfg("[[cluster]]\nname = \"a\"\nidentifier = \"c\"\n[[cluster]]\nname = \"b\"\nidentifier = \"d\"");
        let p = plan(&c, &users(&c), None, "alice", &params(&[("database", "b")])).unwrap();
        assert_eq!((p.target, p.database.as_str()), (1, "dev"));
        let p = plan(
            &c,
            &users(&c),
            None,
            "alice",
            &params(&[("database", "a/x")]),
        )
        .unwrap();
        assert_eq!((p.target, p.database.as_str()), (0, "x"));
    }

    #[test]
    fn unknown_target_is_refused_with_3d000() {
        let c = cfg("[[cluster]]\nname = \"a\"\nidentifier = \"c\"\n[[cluster]]\nname = \"b\"\nidentifier = \"d\"");
        let e = plan(
            &c,
            &users(&c),
            None,
            "alice",
            &params(&[("database", "zz")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "3D000");
    }

    #[test]
    fn unmapped_user_is_refused_with_28000_and_a_hint() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let e = plan(&c, &users(&c), None, "mallory", &[]).unwrap_err();
        assert_eq!(e.code, "28000");
        assert!(e.message.contains("\"mallory\"") && e.hint.is_some());
    }

    #[test]
    fn user_database_and_protocol_options_are_not_forwarded() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan(
            &c,
            &users(&c),
            None,
            "alice",
            &params(&[
                ("user", "alice"),
                ("database", "d"),
                ("application_name", "x"),
                ("_pq_.compression", "on"),
                ("_pq_.other", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(p.forwarded, params(&[("application_name", "x")]));
        assert_eq!(p.declined, vec!["_pq_.other".to_owned()]);
    }

    #[test]
    fn stock_drivers_extra_float_digits_is_adapted_for_redshift() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan(
            &c,
            &users(&c),
            None,
            "alice",
            &params(&[("extra_float_digits", "3")]),
        )
        .unwrap();
        assert_eq!(p.forwarded, params(&[("extra_float_digits", "2")]));
        assert_eq!(p.adapted.len(), 1);
    }
}
