//! Login policy: from what a client sent at startup to what the proxy will do for it.
//!
//! Pure decisions, no I/O: which target (routing by database name or listener), which
//! Redshift identity (the user map), which database (the default-database rule), which
//! startup parameters go to the cluster and which protocol options are declined, and
//! what a login asks AWS for (`credential_request`: DbUser, DbGroups, role per API).
//! `pooled` adds what pooling needs: the credential request (the pool key) and the
//! split of startup parameters into session settings and fixed login parameters.

use crate::access::mapping::{Identity, UserMap};
use crate::aws::credentials::CredentialRequest;
use crate::base::refusal::Refusal;
use crate::client::identity::Principal;
use crate::cluster::connector::LoginSpec;
use crate::config::{ClusterConfig, Config, CredentialMode};
use crate::pool::params::{self, Settings};
use crate::wire::protocol::sqlstate;
use crate::wire::StartupParams;

/// What the proxy will do for one client login.
#[derive(Debug, Clone)]
pub struct LoginPlan {
    pub target: usize,
    pub database: String,
    pub identity: Identity,
    /// Startup parameters for the cluster (without user, database and `_pq_.*`).
    pub forwarded: StartupParams,
    /// Protocol options (`_pq_.*`) the proxy declines with NegotiateProtocolVersion.
    pub declined: Vec<String>,
    /// Startup parameters changed so stock drivers' logins succeed on Redshift (for a debug line).
    pub adapted: Vec<String>,
    /// The mapping rule's session defaults (`query_group`, `search_path`, …) the client did
    /// not send itself: applied on the server as if it had.
    pub defaults: Settings,
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
/// A client that proved who it is (`principal`) is mapped on that alone.
pub fn plan(
    config: &Config,
    users: &UserMap,
    fixed_target: Option<usize>,
    client_user: &str,
    principal: Option<&Principal>,
    requested: Option<&str>,
    params: &StartupParams,
) -> Result<LoginPlan, Refusal> {
    let (target, dbname) = match fixed_target {
        Some(i) => (i, requested),
        None => config
            .route(requested)
            .map_err(|msg| Refusal::new(sqlstate::INVALID_CATALOG_NAME, msg, None))?,
    };
    let mapped = match principal {
        Some(p) => users
            .resolve_principal(p)
            .map_err(|e| Refusal::new(sqlstate::INVALID_AUTHORIZATION_SPECIFICATION, e.0, None))?,
        None => users.resolve_name(client_user).ok_or_else(|| {
            Refusal::new(
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                format!("no [[users]] rule of the proxy matches user \"{client_user}\""),
                Some("add a [[users]] rule for this user (or client_user = \"*\")"),
            )
        })?,
    };
    let identity = mapped.identity;
    let named_target_only = requested.is_some() && dbname.is_none();
    let database = match dbname {
        Some(d) => d.to_owned(),
        None => default_database(
            config.cluster[target].default_database.as_deref(),
            (!named_target_only).then_some(client_user),
        ),
    };
    let mut forwarded = params.filtered(forwardable);
    // The rule's session defaults, as if the client had sent them (what it sent wins).
    let defaults: Settings = mapped
        .defaults
        .into_iter()
        .filter(|(k, _)| !forwarded.iter().any(|(f, _)| f.eq_ignore_ascii_case(k)))
        .collect();
    let adapted = crate::access::compat::adapt_startup_params(&mut forwarded)
        .iter()
        .map(ToString::to_string)
        .collect();
    // `_pq_.compression` (sent by Redshift's JDBC driver) is dropped silently.
    let declined = params
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("_pq_.") && *k != "_pq_.compression")
        .map(str::to_owned)
        .collect();
    Ok(LoginPlan {
        target,
        database,
        identity,
        forwarded,
        declined,
        adapted,
        defaults,
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

/// `pooled` once the ClusterIdentifier is known: the pool key's parts and the settings.
pub fn pooled_login(
    cluster: &ClusterConfig,
    plan: &LoginPlan,
    cluster_identifier: Option<String>,
) -> PooledLogin {
    let request = credential_request(
        cluster,
        plan.identity.clone(),
        cluster_identifier,
        &plan.database,
    );
    let (mut settings, fixed) = params::split_startup(&plan.forwarded);
    settings.extend(plan.defaults.clone());
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
    PooledLogin {
        target: plan.target,
        label: format!("{who}/{}@{}", plan.database, cluster.label()),
        spec: LoginSpec {
            request,
            database: plan.database.clone(),
            params: fixed,
        },
        settings,
    }
}

/// The login plan of `plan_for_prewarm`: no startup parameters, and the database a client
/// of this target gets without naming one; `None` if the rule does not map.
pub fn prewarm_plan(
    config: &Config,
    users: &UserMap,
    target: usize,
    client_user: &str,
) -> Option<LoginPlan> {
    let none = StartupParams::default();
    let mut plan = plan(config, users, Some(target), client_user, None, None, &none).ok()?;
    // With several targets, clients name theirs, so they get the target's database.
    let several = config.cluster.len() > 1;
    plan.database = default_database(
        config.cluster[target].default_database.as_deref(),
        (!several).then_some(client_user),
    );
    Some(plan)
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

    fn params(p: &[(&str, &str)]) -> StartupParams {
        p.iter().copied().collect()
    }

    /// `plan` with the database the client named read from its parameters, as the session does.
    fn plan_for(
        config: &Config,
        users: &UserMap,
        fixed_target: Option<usize>,
        client_user: &str,
        principal: Option<&Principal>,
        params: &StartupParams,
    ) -> Result<LoginPlan, Refusal> {
        plan(
            config,
            users,
            fixed_target,
            client_user,
            principal,
            params.database(),
            params,
        )
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
        let p = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
            &params(&[("database", "sales")]),
        )
        .unwrap();
        assert_eq!((p.target, p.database.as_str()), (0, "sales"));
    }

    #[test]
    fn no_database_means_the_client_user_name() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
            &StartupParams::default(),
        )
        .unwrap();
        assert_eq!(p.database, "alice");
    }

    #[test]
    fn default_database_wins_over_the_user_name() {
        let c = cfg("[cluster]\nidentifier = \"c\"\ndefault_database = \"dev\"");
        let p = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
            &StartupParams::default(),
        )
        .unwrap();
        assert_eq!(p.database, "dev");
    }

    #[test]
    fn unknown_target_is_refused_with_3d000() {
        let c = cfg("[[cluster]]\nname = \"a\"\nidentifier = \"c\"\n[[cluster]]\nname = \"b\"\nidentifier = \"d\"");
        let e = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
            &params(&[("database", "zz")]),
        )
        .unwrap_err();
        assert_eq!(e.code, "3D000");
    }

    #[test]
    fn unmapped_user_is_refused_with_28000_and_a_hint() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let e = plan_for(
            &c,
            &users(&c),
            None,
            "mallory",
            None,
            &StartupParams::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, "28000");
        assert!(e.message.contains("\"mallory\"") && e.hint.is_some());
    }

    #[test]
    fn user_database_and_protocol_options_are_not_forwarded() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
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
        let p = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
            &params(&[("extra_float_digits", "3")]),
        )
        .unwrap();
        assert_eq!(p.forwarded, params(&[("extra_float_digits", "2")]));
        assert_eq!(p.adapted.len(), 1);
    }

    const TWO_TARGETS: &str = "[[cluster]]\nname = \"a\"\nidentifier = \"c\"\n\
         [[cluster]]\nname = \"b\"\nidentifier = \"d\"\ndefault_database = \"sales\"";

    /// Alice's rule with every mapping field set.
    const ALICE_FULL: &str = "[cluster]\nidentifier = \"c\"\n[[users]]\nclient_user = \"alice\"\n\
         db_user = \"alice_db\"\ndb_groups = [\"b\", \"a\", \"b\"]\nauto_create = true\n\
         role_arn = \"arn:aws:iam::1:role/Analyst\"\n";

    fn plan_with(c: &Config, fixed: Option<usize>, p: &[(&str, &str)]) -> LoginPlan {
        plan_for(c, &users(c), fixed, "alice", None, &params(p)).unwrap()
    }

    #[test]
    fn a_database_name_routes_to_a_target_and_a_dbname() {
        let c = cfg(TWO_TARGETS);
        // database parameter -> (target, database)
        let cases = [
            ("a/x", (0, "x")),
            ("b/x/y", (1, "x/y")),
            ("a", (0, "dev")),
            ("a/", (0, "dev")),
            ("b", (1, "sales")),
            ("b/", (1, "sales")),
        ];
        for (database, (target, dbname)) in cases {
            let p = plan_with(&c, None, &[("database", database)]);
            assert_eq!(
                (p.target, p.database.as_str()),
                (target, dbname),
                "{database}"
            );
        }
    }

    #[test]
    fn several_targets_refuse_a_login_without_a_database_with_3d000() {
        let c = cfg(TWO_TARGETS);
        let e = plan_for(
            &c,
            &users(&c),
            None,
            "alice",
            None,
            &StartupParams::default(),
        )
        .unwrap_err();
        assert_eq!(e.code, "3D000");
    }

    #[test]
    fn a_targets_own_listener_takes_the_database_name_as_given() {
        let c = cfg(TWO_TARGETS);
        let p = plan_with(&c, Some(1), &[("database", "a/x")]);
        assert_eq!((p.target, p.database.as_str()), (1, "a/x"));
    }

    #[test]
    fn a_targets_own_listener_without_a_database_uses_its_default_database() {
        let c = cfg(TWO_TARGETS);
        assert_eq!(plan_with(&c, Some(1), &[]).database, "sales");
        assert_eq!(plan_with(&c, Some(0), &[]).database, "alice");
    }

    #[test]
    fn an_empty_database_name_is_no_database_name() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        assert_eq!(plan_with(&c, None, &[("database", "")]).database, "alice");
    }

    #[test]
    fn the_plan_carries_the_matching_rules_identity() {
        let c = Config::from_toml(ALICE_FULL).unwrap();
        let id = plan_with(&c, None, &[]).identity;
        assert_eq!(
            (id.db_user.as_str(), id.db_groups, id.auto_create),
            ("alice_db", vec!["a".to_owned(), "b".to_owned()], true)
        );
        assert_eq!(
            id.role.map(|r| r.arn),
            Some("arn:aws:iam::1:role/Analyst".to_owned())
        );
    }

    #[test]
    fn only_get_cluster_credentials_asks_for_db_user_groups_and_auto_create() {
        let c = Config::from_toml(ALICE_FULL).unwrap();
        let identity = plan_with(&c, None, &[]).identity;
        // mode -> (DbUser, DbGroups, AutoCreate) in the request
        let cases = [
            (
                CredentialMode::GetClusterCredentials,
                (Some("alice_db"), vec!["a", "b"], true),
            ),
            (
                CredentialMode::GetClusterCredentialsWithIam,
                (None, vec![], false),
            ),
            (CredentialMode::Serverless, (None, vec![], false)),
        ];
        for (mode, (db_user, groups, auto_create)) in cases {
            let mut cluster = c.cluster[0].clone();
            cluster.credentials = mode;
            let r = credential_request(&cluster, identity.clone(), None, "dev");
            assert_eq!(
                (r.db_user.as_deref(), r.db_groups, r.auto_create),
                (
                    db_user,
                    groups.iter().map(|g| g.to_string()).collect(),
                    auto_create
                ),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn every_credential_mode_acts_as_the_rules_role() {
        let c = Config::from_toml(ALICE_FULL).unwrap();
        let identity = plan_with(&c, None, &[]).identity;
        for mode in [
            CredentialMode::GetClusterCredentials,
            CredentialMode::GetClusterCredentialsWithIam,
            CredentialMode::Serverless,
        ] {
            let mut cluster = c.cluster[0].clone();
            cluster.credentials = mode;
            let r = credential_request(&cluster, identity.clone(), None, "dev");
            assert_eq!(r.role, identity.role, "{mode:?}");
        }
    }

    #[test]
    fn the_credential_request_names_the_target_and_the_planned_database() {
        let c = cfg("[cluster]\nidentifier = \"c\"\ncustom_domain_name = \"db.example.com\"\nduration_seconds = 1800");
        let p = plan_with(&c, None, &[("database", "sales")]);
        let r = pooled_login(&c.cluster[0], &p, Some("c".into()))
            .spec
            .request;
        assert_eq!(
            (
                r.cluster_identifier.as_deref(),
                r.custom_domain.as_deref(),
                r.db_name.as_str(),
                r.duration_seconds
            ),
            (Some("c"), Some("db.example.com"), "sales", 1800)
        );
    }

    /// Where one startup parameter ends up in a pooled login.
    #[derive(Debug, PartialEq)]
    enum Lands {
        /// Applied per client with SET (not in the pool key), with this value.
        Setting(String),
        /// Sent at server login: part of the pool key.
        PoolKey,
        /// Neither sent nor declined.
        Dropped,
        /// Declined with NegotiateProtocolVersion.
        Declined,
    }

    fn lands(key: &str, value: &str) -> Lands {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = plan_with(&c, None, &[(key, value)]);
        if p.declined.iter().any(|d| d == key) {
            return Lands::Declined;
        }
        let login = pooled_login(&c.cluster[0], &p, None);
        if let Some(v) = login.settings.get(&key.to_ascii_lowercase()) {
            return Lands::Setting(v.clone());
        }
        if login.spec.params.iter().any(|(k, _)| k == key) {
            return Lands::PoolKey;
        }
        Lands::Dropped
    }

    #[test]
    fn each_startup_parameter_is_a_setting_a_pool_key_part_or_not_forwarded() {
        let setting = |v: &str| Lands::Setting(v.to_owned());
        let cases = [
            ("application_name", "bi", setting("bi")),
            ("DateStyle", "ISO", setting("ISO")),
            ("search_path", "s", setting("s")),
            ("extra_float_digits", "3", setting("2")),
            ("options", "-c work_mem=1MB", Lands::PoolKey),
            ("client_protocol_version", "2", Lands::PoolKey),
            ("driver_version", "2.1.0", Lands::PoolKey),
            ("plugin_name", "x", Lands::PoolKey),
            ("some_unknown_parameter", "1", Lands::PoolKey),
            ("replication", "false", Lands::Dropped),
            ("user", "alice", Lands::Dropped),
            ("database", "dev", Lands::Dropped),
            ("_pq_.compression", "on", Lands::Dropped),
            ("_pq_.other", "1", Lands::Declined),
        ];
        for (key, value, want) in cases {
            assert_eq!(lands(key, value), want, "{key} = {value}");
        }
    }

    #[test]
    fn clients_differing_only_in_settings_share_a_pool_key() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let key = |p: &[(&str, &str)]| {
            let login = pooled_login(&c.cluster[0], &plan_with(&c, None, p), None);
            (login.spec.request, login.spec.database, login.spec.params)
        };
        assert_eq!(
            key(&[("application_name", "a"), ("options", "-c x=1")]),
            key(&[
                ("application_name", "b"),
                ("TimeZone", "UTC"),
                ("options", "-c x=1")
            ])
        );
    }

    #[test]
    fn pool_key_parameters_do_not_depend_on_their_order() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let fixed = |p: &[(&str, &str)]| {
            pooled_login(&c.cluster[0], &plan_with(&c, None, p), None)
                .spec
                .params
        };
        assert_eq!(
            fixed(&[("options", "o"), ("driver_version", "1")]),
            fixed(&[("driver_version", "1"), ("options", "o")])
        );
    }

    #[test]
    fn the_pool_label_names_who_the_database_and_the_target() {
        let c = Config::from_toml(ALICE_FULL).unwrap();
        let p = plan_with(&c, None, &[("database", "dev")]);
        let no_role = LoginPlan {
            identity: Identity {
                role: None,
                ..p.identity.clone()
            },
            ..p.clone()
        };
        let iam = |mut cluster: ClusterConfig| {
            cluster.credentials = CredentialMode::GetClusterCredentialsWithIam;
            cluster
        };
        // (cluster, plan) -> label
        let cases = [
            (c.cluster[0].clone(), &p, "alice_db/dev@c"),
            (iam(c.cluster[0].clone()), &p, "Analyst/dev@c"),
            (iam(c.cluster[0].clone()), &no_role, "iam/dev@c"),
        ];
        for (cluster, plan, want) in cases {
            assert_eq!(pooled_login(&cluster, plan, None).label, want);
        }
    }

    #[test]
    fn prewarm_logs_in_to_the_database_a_client_without_one_gets() {
        // (configuration, target) -> database
        let cases = [
            ("[cluster]\nidentifier = \"c\"", 0, "alice"),
            (
                "[cluster]\nidentifier = \"c\"\ndefault_database = \"sales\"",
                0,
                "sales",
            ),
            (TWO_TARGETS, 0, "dev"),
            (TWO_TARGETS, 1, "sales"),
        ];
        for (toml, target, want) in cases {
            let c = cfg(toml);
            let p = prewarm_plan(&c, &users(&c), target, "alice").unwrap();
            assert_eq!((p.target, p.database.as_str()), (target, want), "{toml}");
        }
    }

    #[test]
    fn prewarm_sends_no_startup_parameters() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        let p = prewarm_plan(&c, &users(&c), 0, "alice").unwrap();
        assert!(p.forwarded.is_empty() && p.declined.is_empty());
    }

    #[test]
    fn prewarm_of_an_unmapped_user_is_none() {
        let c = cfg("[cluster]\nidentifier = \"c\"");
        assert!(prewarm_plan(&c, &users(&c), 0, "mallory").is_none());
    }
}
