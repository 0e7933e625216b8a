//! Provisioning of minted credentials as real PostgreSQL login roles (our Redshift stand-in).
//!
//! The decision (what to create, grant, revoke) is a pure function of the request and a
//! catalog snapshot, so it is testable without a database; only [`PgProvisioner`] talks SQL.
//! Passwords are sent pre-hashed (SCRAM-SHA-256 or MD5 verifiers), so the clear password never
//! reaches the database connection, its logs, or ours.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::Rng;

/// Why: what one credentials call asks the database to look like afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProvisionRequest {
    /// GetClusterCredentials: `DbUser` as given (the role whose privileges the login inherits).
    /// `None` for the IAM-mapped APIs, whose login role stands alone and is created when
    /// missing, as Redshift creates IAM-mapped users automatically.
    pub(crate) base_role: Option<String>,
    /// `IAM:<DbUser>`, `IAMA:<DbUser>` or `IAMR:<role>`, the role clients log in as.
    pub(crate) login_role: String,
    pub(crate) auto_create: bool,
    pub(crate) groups: Vec<String>,
    /// Store the password as an MD5 hash instead of SCRAM-SHA-256.
    pub(crate) md5: bool,
    /// PostgreSQL timestamptz literal, e.g. `2019-12-27 19:44:51.001+00`.
    pub(crate) valid_until: String,
}

/// Why: the slice of the role catalog that decides what to change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RoleState {
    /// Which of base role, login role and requested groups exist.
    pub(crate) existing: HashSet<String>,
    /// Roles the login role is currently a member of.
    pub(crate) memberships: Vec<String>,
}

/// Why: one catalog change; carries a password verifier (hash), never the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Step {
    CreateRole {
        name: String,
        login: bool,
    },
    Grant {
        role: String,
        member: String,
    },
    Revoke {
        role: String,
        member: String,
    },
    SetPassword {
        role: String,
        verifier: String,
        valid_until: String,
    },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetPassword {
                role, valid_until, ..
            } => f
                .debug_struct("SetPassword")
                .field("role", role)
                .field("valid_until", valid_until)
                .finish_non_exhaustive(),
            Step::CreateRole { name, login } => f
                .debug_struct("CreateRole")
                .field("name", name)
                .field("login", login)
                .finish(),
            Step::Grant { role, member } => write!(f, "Grant({role} TO {member})"),
            Step::Revoke { role, member } => write!(f, "Revoke({role} FROM {member})"),
        }
    }
}

/// Why: tells the caller (and the log) whether a login role was provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Provisioned,
    /// The base role does not exist and AutoCreate is false: AWS still answers, login fails.
    NoBaseRole,
}

/// Why: the full decision for one request, made before touching the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) steps: Vec<Step>,
    pub(crate) skipped_groups: Vec<String>,
    pub(crate) outcome: Outcome,
}

/// Decides the changes: base role (auto-created if asked), login role, memberships (base role
/// plus the requested existing groups; the latest credential decides), password with expiry.
pub(crate) fn plan(req: &ProvisionRequest, state: &RoleState, verifier: String) -> Plan {
    let mut steps = Vec::new();
    if let Some(base) = &req.base_role {
        if !state.existing.contains(base) {
            if !req.auto_create {
                return Plan {
                    steps: Vec::new(),
                    skipped_groups: Vec::new(),
                    outcome: Outcome::NoBaseRole,
                };
            }
            steps.push(Step::CreateRole {
                name: base.clone(),
                login: false,
            });
        }
    }
    if !state.existing.contains(&req.login_role) {
        steps.push(Step::CreateRole {
            name: req.login_role.clone(),
            login: true,
        });
    }
    let mut wanted: Vec<String> = req.base_role.iter().cloned().collect();
    let mut skipped_groups = Vec::new();
    for g in &req.groups {
        if *g == req.login_role || wanted.contains(g) {
            continue;
        }
        if state.existing.contains(g) {
            wanted.push(g.clone());
        } else {
            skipped_groups.push(g.clone());
        }
    }
    for m in &state.memberships {
        if !wanted.contains(m) {
            steps.push(Step::Revoke {
                role: m.clone(),
                member: req.login_role.clone(),
            });
        }
    }
    for w in &wanted {
        if !state.memberships.contains(w) {
            steps.push(Step::Grant {
                role: w.clone(),
                member: req.login_role.clone(),
            });
        }
    }
    steps.push(Step::SetPassword {
        role: req.login_role.clone(),
        verifier,
        valid_until: req.valid_until.clone(),
    });
    Plan {
        steps,
        skipped_groups,
        outcome: Outcome::Provisioned,
    }
}

/// Renders one step as SQL (identifiers and literals quoted).
pub(crate) fn render(step: &Step) -> String {
    match step {
        Step::CreateRole { name, login: true } => {
            format!("CREATE ROLE {} LOGIN", quote_ident(name))
        }
        Step::CreateRole { name, login: false } => {
            format!("CREATE ROLE {} NOLOGIN", quote_ident(name))
        }
        Step::Grant { role, member } => {
            format!("GRANT {} TO {}", quote_ident(role), quote_ident(member))
        }
        Step::Revoke { role, member } => {
            format!("REVOKE {} FROM {}", quote_ident(role), quote_ident(member))
        }
        Step::SetPassword {
            role,
            verifier,
            valid_until,
        } => format!(
            "ALTER ROLE {} WITH LOGIN PASSWORD {} VALID UNTIL {}",
            quote_ident(role),
            quote_literal(verifier),
            quote_literal(valid_until)
        ),
    }
}

/// Quotes an SQL identifier (embedded double quotes doubled).
pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes an SQL string literal like PostgreSQL's `quote_literal` (E'' form if backslashes).
pub(crate) fn quote_literal(s: &str) -> String {
    let body = s.replace('\'', "''");
    if s.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// Password alphabet: base64-like, never needs SQL escaping.
const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// Length of minted passwords.
pub(crate) const PASSWORD_LEN: usize = 64;

/// A fresh random password from a CSPRNG.
pub(crate) fn generate_password() -> String {
    let mut rng = rand::thread_rng();
    (0..PASSWORD_LEN)
        .map(|_| char::from(PASSWORD_ALPHABET[rng.gen_range(0..PASSWORD_ALPHABET.len())]))
        .collect()
}

/// The value stored in `pg_authid.rolpassword` for this password (MD5 salts with the role name).
pub(crate) fn password_verifier(password: &str, login_role: &str, md5: bool) -> String {
    if md5 {
        postgres_protocol::password::md5(password.as_bytes(), login_role)
    } else {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    }
}

/// Why: lets the server provision through PostgreSQL in production and through an in-memory
/// catalog in tests.
pub(crate) trait RoleProvisioner: Send + Sync {
    fn provision<'a>(
        &'a self,
        req: &'a ProvisionRequest,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Outcome, String>>;
}

/// Advisory lock key serializing provisioning across emulators/clusters sharing one server.
const ADVISORY_LOCK_KEY: i64 = 0x5245_4453_4849_4654; // "REDSHIFT"

/// Why: one cluster's superuser connection, created lazily, reconnected after errors, and held
/// behind a mutex so that cluster's provisioning is serialized.
pub(crate) struct PgProvisioner {
    cluster: String,
    config: tokio_postgres::Config,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PgProvisioner {
    pub(crate) fn new(cluster: String, config: tokio_postgres::Config) -> Self {
        PgProvisioner {
            cluster,
            config,
            client: tokio::sync::Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<tokio_postgres::Client, String> {
        let fut = self.config.connect(tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| "timed out connecting to the admin database".to_owned())?
            .map_err(|e| format!("connecting to the admin database: {e}"))?;
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(%cluster, error = %e, "emulator admin connection failed");
            }
        });
        Ok(client)
    }

    async fn provision_locked(
        &self,
        req: &ProvisionRequest,
        verifier: &str,
    ) -> Result<Outcome, String> {
        let mut guard = self.client.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let client = match guard.take() {
                Some(c) if !c.is_closed() => c,
                _ => self.connect().await?,
            };
            let mut client = client;
            let result = apply(&mut client, &self.cluster, req, verifier).await;
            let closed = client.is_closed();
            if !closed {
                *guard = Some(client);
            }
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(e) if closed && attempt < 2 => {
                    tracing::warn!(cluster = %self.cluster, error = %e, "admin connection lost; reconnecting");
                }
                Err(e) => return Err(format!("provisioning failed: {e}")),
            }
        }
    }
}

impl RoleProvisioner for PgProvisioner {
    fn provision<'a>(
        &'a self,
        req: &'a ProvisionRequest,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Outcome, String>> {
        Box::pin(async move {
            let verifier = password_verifier(password, &req.login_role, req.md5);
            self.provision_locked(req, &verifier).await
        })
    }
}

/// Reads the catalog, plans, and applies the plan in one transaction.
async fn apply(
    client: &mut tokio_postgres::Client,
    cluster: &str,
    req: &ProvisionRequest,
    verifier: &str,
) -> Result<Outcome, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_catalog.pg_advisory_xact_lock($1)",
        &[&ADVISORY_LOCK_KEY],
    )
    .await?;
    let mut names: Vec<String> = req.base_role.iter().cloned().collect();
    names.push(req.login_role.clone());
    names.extend(req.groups.iter().cloned());
    let rows = tx
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname::text = ANY($1::text[])",
            &[&names],
        )
        .await?;
    let mut state = RoleState::default();
    for row in rows {
        state.existing.insert(row.try_get::<_, String>(0)?);
    }
    let rows = tx
        .query(
            "SELECT r.rolname::text FROM pg_catalog.pg_auth_members m \
             JOIN pg_catalog.pg_roles r ON r.oid = m.roleid \
             JOIN pg_catalog.pg_roles u ON u.oid = m.member \
             WHERE u.rolname::text = $1 ORDER BY 1",
            &[&req.login_role],
        )
        .await?;
    for row in rows {
        state.memberships.push(row.try_get::<_, String>(0)?);
    }
    let plan = plan(req, &state, verifier.to_owned());
    for g in &plan.skipped_groups {
        tracing::warn!(%cluster, group = %g, login_role = %req.login_role, "DbGroup role does not exist; skipped");
    }
    if req.md5 && plan.outcome == Outcome::Provisioned {
        // The verifier is already MD5; this also makes PostgreSQL keep it as such. SET LOCAL
        // reverts at the end of the transaction (the RESET).
        tx.batch_execute("SET LOCAL password_encryption = 'md5'")
            .await?;
    }
    for step in &plan.steps {
        tx.batch_execute(&render(step)).await?;
    }
    tx.commit().await?;
    Ok(plan.outcome)
}

/// In-memory role catalog applying the same plans, for tests without PostgreSQL.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;

    /// Why: a test double of one role in `pg_authid`.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct FakeRole {
        pub(crate) login: bool,
        pub(crate) verifier: Option<String>,
        pub(crate) valid_until: Option<String>,
        pub(crate) member_of: BTreeSet<String>,
    }

    /// Why: a test double of a cluster's role catalog.
    #[derive(Debug, Default)]
    pub(crate) struct FakeCatalog {
        pub(crate) roles: Mutex<HashMap<String, FakeRole>>,
    }

    impl FakeCatalog {
        pub(crate) fn with_roles(names: &[&str]) -> Self {
            let c = FakeCatalog::default();
            if let Ok(mut roles) = c.roles.lock() {
                for n in names {
                    roles.insert((*n).to_owned(), FakeRole::default());
                }
            }
            c
        }

        pub(crate) fn role(&self, name: &str) -> Option<FakeRole> {
            self.roles.lock().ok()?.get(name).cloned()
        }
    }

    impl RoleProvisioner for FakeCatalog {
        fn provision<'a>(
            &'a self,
            req: &'a ProvisionRequest,
            password: &'a str,
        ) -> BoxFuture<'a, Result<Outcome, String>> {
            Box::pin(async move {
                let verifier = password_verifier(password, &req.login_role, req.md5);
                let mut roles = self.roles.lock().map_err(|e| e.to_string())?;
                let mut state = RoleState::default();
                for n in req
                    .base_role
                    .iter()
                    .chain(std::iter::once(&req.login_role))
                    .chain(req.groups.iter())
                {
                    if roles.contains_key(n) {
                        state.existing.insert(n.clone());
                    }
                }
                if let Some(r) = roles.get(&req.login_role) {
                    state.memberships = r.member_of.iter().cloned().collect();
                }
                let plan = plan(req, &state, verifier);
                for step in plan.steps {
                    match step {
                        Step::CreateRole { name, login } => {
                            roles.insert(
                                name,
                                FakeRole {
                                    login,
                                    ..FakeRole::default()
                                },
                            );
                        }
                        Step::Grant { role, member } => {
                            roles.entry(member).or_default().member_of.insert(role);
                        }
                        Step::Revoke { role, member } => {
                            roles.entry(member).or_default().member_of.remove(&role);
                        }
                        Step::SetPassword {
                            role,
                            verifier,
                            valid_until,
                        } => {
                            let r = roles.entry(role).or_default();
                            r.login = true;
                            r.verifier = Some(verifier);
                            r.valid_until = Some(valid_until);
                        }
                    }
                }
                Ok(plan.outcome)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auto_create: bool, groups: &[&str]) -> ProvisionRequest {
        let prefix = if auto_create { "IAMA:" } else { "IAM:" };
        ProvisionRequest {
            base_role: Some("alice".into()),
            login_role: format!("{prefix}alice"),
            auto_create,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            md5: false,
            valid_until: "2030-01-01 00:00:00.000+00".into(),
        }
    }

    fn state(existing: &[&str], memberships: &[&str]) -> RoleState {
        RoleState {
            existing: existing.iter().map(|s| s.to_string()).collect(),
            memberships: memberships.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The request for the `IAMR:analyst` login of an assumed role in `groups`.
    fn iam_mapped(groups: &[&str]) -> ProvisionRequest {
        ProvisionRequest {
            base_role: None,
            login_role: "IAMR:analyst".into(),
            auto_create: false,
            groups: groups.iter().map(|s| s.to_string()).collect(),
            md5: false,
            valid_until: "2030-01-01 00:00:00.000+00".into(),
        }
    }

    fn sql(p: &Plan) -> Vec<String> {
        p.steps.iter().map(render).collect()
    }

    #[test]
    fn an_existing_base_role_gets_a_login_that_is_granted_it_with_a_password() {
        let p = plan(&req(false, &[]), &state(&["alice"], &[]), "V".into());
        assert_eq!(p.outcome, Outcome::Provisioned);
        assert_eq!(
            sql(&p),
            vec![
                "CREATE ROLE \"IAM:alice\" LOGIN",
                "GRANT \"alice\" TO \"IAM:alice\"",
                "ALTER ROLE \"IAM:alice\" WITH LOGIN PASSWORD 'V' VALID UNTIL '2030-01-01 00:00:00.000+00'",
            ]
        );
    }

    #[test]
    fn a_later_credential_only_sets_the_password() {
        let p = plan(
            &req(false, &[]),
            &state(&["alice", "IAM:alice"], &["alice"]),
            "V".into(),
        );
        assert_eq!(p.steps.len(), 1);
    }

    #[test]
    fn a_missing_base_role_without_auto_create_provisions_nothing() {
        let p = plan(&req(false, &["g"]), &state(&["g"], &[]), "V".into());
        assert_eq!(p.outcome, Outcome::NoBaseRole);
        assert!(p.steps.is_empty());
    }

    #[test]
    fn auto_create_creates_a_nologin_base_role_and_its_iama_login() {
        let p = plan(&req(true, &[]), &state(&[], &[]), "V".into());
        assert_eq!(
            sql(&p)[..3],
            [
                "CREATE ROLE \"alice\" NOLOGIN",
                "CREATE ROLE \"IAMA:alice\" LOGIN",
                "GRANT \"alice\" TO \"IAMA:alice\"",
            ]
        );
    }

    #[test]
    fn groups_follow_the_latest_credential_and_missing_groups_are_skipped() {
        let p = plan(
            &req(false, &["sales", "nogroup", "alice"]),
            &state(&["alice", "IAM:alice", "sales"], &["alice", "finance"]),
            "V".into(),
        );
        assert_eq!(p.skipped_groups, vec!["nogroup"]);
        assert_eq!(
            sql(&p)[..2],
            [
                "REVOKE \"finance\" FROM \"IAM:alice\"",
                "GRANT \"sales\" TO \"IAM:alice\"",
            ]
        );
    }

    #[test]
    fn an_iam_mapped_login_needs_no_base_role() {
        let p = plan(
            &iam_mapped(&["analysts", "nogroup"]),
            &state(&["analysts"], &[]),
            "V".into(),
        );
        assert_eq!(p.outcome, Outcome::Provisioned);
        assert_eq!(p.skipped_groups, vec!["nogroup"]);
        assert_eq!(
            sql(&p),
            vec![
                "CREATE ROLE \"IAMR:analyst\" LOGIN",
                "GRANT \"analysts\" TO \"IAMR:analyst\"",
                "ALTER ROLE \"IAMR:analyst\" WITH LOGIN PASSWORD 'V' VALID UNTIL '2030-01-01 00:00:00.000+00'",
            ]
        );
    }

    #[test]
    fn an_existing_iam_mapped_login_loses_groups_its_role_no_longer_has() {
        let p = plan(
            &iam_mapped(&[]),
            &state(&["IAMR:analyst"], &["analysts"]),
            "V".into(),
        );
        assert_eq!(sql(&p)[..1], ["REVOKE \"analysts\" FROM \"IAMR:analyst\""]);
        assert_eq!(p.steps.len(), 2);
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        for (case, quoted, expected) in [
            ("identifier with a quote", quote_ident("a\"b"), "\"a\"\"b\""),
            ("literal with a quote", quote_literal("it's"), "'it''s'"),
            (
                "literal with a backslash",
                quote_literal("a\\b'"),
                "E'a\\\\b'''",
            ),
        ] {
            assert_eq!(quoted, expected, "{case}");
        }
    }

    #[test]
    fn generated_passwords_are_random_and_need_no_quoting() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| PASSWORD_ALPHABET.contains(&c)));
        assert_eq!(quote_literal(&a), format!("'{a}'"));
    }

    #[test]
    fn verifiers_are_md5_or_scram_sha_256() {
        let md5 = password_verifier("pw", "IAM:alice", true);
        assert!(md5.starts_with("md5") && md5.len() == 35);
        assert!(password_verifier("pw", "IAM:alice", false).starts_with("SCRAM-SHA-256$"));
    }

    #[test]
    fn a_steps_debug_never_shows_the_verifier() {
        let s = Step::SetPassword {
            role: "r".into(),
            verifier: "SECRETHASH".into(),
            valid_until: "t".into(),
        };
        assert!(!format!("{s:?}").contains("SECRETHASH"));
    }
}
