//! `redshift-iam-proxy check`: proves a configuration works before clients depend on it.
//!
//! It resolves the AWS identity (STS GetCallerIdentity), each target's endpoint, reports a
//! provisioned cluster's status (DescribeClusters) and, with `resume_paused`, whether the
//! identity may call ResumeCluster, mints a credential for each configured user (through the
//! same code the proxy uses, bypassing the cache), opens one upstream login over TLS per
//! target, and prints one line per step with the fix for each failure.
//!
//! The ResumeCluster permission is probed by calling it on a cluster that is not paused:
//! IAM is evaluated first, so a denied identity gets AccessDenied and an allowed one
//! InvalidClusterState, and nothing changes. A paused cluster is not probed (the call would
//! resume it). Serverless workgroups need no call: they resume on the first connection.

use crate::access::login;
use crate::access::mapping::UserMap;
use crate::aws::credentials::{AwsIdentitySource, DbCredential, RedshiftApi, RoleSpec};
use crate::aws::error::{CredentialError, FailureKind};
use crate::cluster::endpoint::{EndpointError, EndpointResolver};
use crate::cluster::resume;
use crate::cluster::tls;
use crate::cluster::upstream::{self, UpstreamError};
use crate::config::{ClusterConfig, Config, CredentialMode};
use std::sync::Arc;

/// Flags of the check subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// Only check the first user rule of each target (faster on large configs).
    #[arg(long)]
    pub first: bool,
    /// Client user names to check (repeatable); default: every non-wildcard [[users]] rule.
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct CheckLine {
    pub ok: bool,
    pub what: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl CheckLine {
    fn pass(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            what: what.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(what: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            ok: false,
            what: what.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Each OIDC issuer's keys can be read (discovery document and JWKS, or the JWKS file).
async fn token_issuers(config: &Config) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let Ok(Some(tls)) = tls::upstream_config(crate::config::SslMode::VerifyFull, None) else {
        return lines;
    };
    let timeout = std::time::Duration::from_secs(config.aws.timeout_secs);
    for c in &config.client_auth.oidc {
        let what = format!("OIDC issuer {}", c.issuer);
        match crate::client::identity::oidc::Issuer::new(c, crate::client::identity::client(tls.clone(), timeout))
            .keys_available()
            .await
        {
            Ok(n) => lines.push(CheckLine::pass(what, format!("{n} signing keys"))),
            Err(e) => lines.push(CheckLine::fail(
                what,
                e.message,
                "check the issuer URL (its /.well-known/openid-configuration must be reachable from the proxy), or set jwks_file",
            )),
        }
    }
    lines
}

/// Runs every check; the lines come back in order.
pub async fn run(config: &Config, identity: AwsIdentitySource, args: &CheckArgs) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let api = Arc::new(RedshiftApi::new(&config.aws, identity).await);
    let (line, caller) = aws_identity(&api).await;
    lines.push(line);
    lines.extend(token_issuers(config).await);
    let mut names: Vec<String> = if args.users.is_empty() {
        config
            .users
            .iter()
            .map(|u| u.client_user.clone())
            .filter(|u| u != "*" && !u.is_empty())
            .collect()
    } else {
        args.users.clone()
    };
    if args.first {
        names.truncate(1);
    }
    let checks = Checks {
        config,
        api,
        caller,
        users: UserMap::new(config.users.clone()),
        names,
    };
    for c in &config.cluster {
        checks.target(c, &mut lines).await;
    }
    lines
}

/// Who the proxy is (STS GetCallerIdentity): the line, and the name fixes give it (its
/// ARN, or words when it is unknown).
async fn aws_identity(api: &RedshiftApi) -> (CheckLine, String) {
    match api.caller_identity(None).await {
        Ok(arn) => (CheckLine::pass("AWS identity", arn.clone()), arn),
        Err(e) => {
            let fix = match e.kind {
                FailureKind::Denied => "the AWS credentials were rejected: check AWS_PROFILE / aws.profile, the access key, or the instance role".to_owned(),
                _ => aws_fix(&e, "the proxy"),
            };
            (
                CheckLine::fail("AWS identity", e.to_string(), fix),
                "the proxy's AWS identity".to_owned(),
            )
        }
    }
}

/// What the checks of every target share.
struct Checks<'a> {
    config: &'a Config,
    api: Arc<RedshiftApi>,
    /// The proxy's identity, as fixes name it.
    caller: String,
    users: UserMap,
    /// The client users checked at each target.
    names: Vec<String>,
}

impl Checks<'_> {
    /// One target: its endpoint, its cluster's status, each user's credential, and one
    /// login (with the first credential minted, unless the cluster is paused).
    async fn target(&self, c: &ClusterConfig, lines: &mut Vec<CheckLine>) {
        let label = c.label();
        let Some((cluster_identifier, target)) = self.endpoint(c, lines).await else {
            return;
        };
        let mut paused = false;
        if let (
            CredentialMode::GetClusterCredentials | CredentialMode::GetClusterCredentialsWithIam,
            Some(id),
        ) = (c.credentials, cluster_identifier.as_deref())
        {
            let (state_lines, is_paused) = cluster_state(&self.api, c, id, &self.caller).await;
            lines.extend(state_lines);
            paused = is_paused;
        }
        let db_name = login_database(c);
        // A paused cluster takes no logins: its status line says so (and what to do).
        let mut login_done = paused;
        if self.names.is_empty() {
            lines.push(CheckLine::fail(
                format!("[{label}] credentials"),
                "no user to check",
                "add a [[users]] rule with a client_user, or pass --user NAME for a wildcard rule",
            ));
        }
        for name in &self.names {
            let minted = self
                .credential(c, name, cluster_identifier.clone(), &db_name, lines)
                .await;
            let Some(cred) = minted else {
                continue;
            };
            if login_done {
                continue;
            }
            login_done = true;
            lines.push(try_login(c, &target, &cred, &db_name).await);
        }
    }

    /// The target's TLS setup and endpoint: its cluster identifier (provisioned) and
    /// where to connect; `None` after a failure line.
    async fn endpoint(
        &self,
        c: &ClusterConfig,
        lines: &mut Vec<CheckLine>,
    ) -> Option<(Option<String>, Arc<upstream::UpstreamTarget>)> {
        let label = c.label();
        let upstream_tls = match tls::upstream_config(c.sslmode, c.sslrootcert.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                lines.push(CheckLine::fail(
                    format!("[{label}] TLS setup"),
                    e.to_string(),
                    "fix sslrootcert (a readable PEM file with the CA certificate)",
                ));
                return None;
            }
        };
        let endpoint = EndpointResolver::new(
            c,
            upstream_tls,
            self.config.limits.connect_timeout(),
            self.api.clone(),
        );
        let cluster_identifier = match endpoint.cluster_identifier().await {
            Ok(id) => id,
            Err(e) => {
                lines.push(endpoint_failure(label, e, &self.caller));
                return None;
            }
        };
        match endpoint.target().await {
            Ok(t) => {
                lines.push(CheckLine::pass(
                    format!("[{label}] endpoint"),
                    format!("{}:{} ({})", t.host, t.port, c.credentials.as_str()),
                ));
                Some((cluster_identifier, t))
            }
            Err(e) => {
                lines.push(endpoint_failure(label, e, &self.caller));
                None
            }
        }
    }

    /// One client user's credential at the target: its rule, the role it assumes, the
    /// minted login; `None` after a failure line.
    async fn credential(
        &self,
        c: &ClusterConfig,
        name: &str,
        cluster_identifier: Option<String>,
        db_name: &str,
        lines: &mut Vec<CheckLine>,
    ) -> Option<DbCredential> {
        let label = c.label();
        let Some(identity) = self.users.resolve(name) else {
            lines.push(CheckLine::fail(
                format!("[{label}] user {name}"),
                "no [[users]] rule matches",
                "add a [[users]] rule for it",
            ));
            return None;
        };
        let as_whom = match &identity.role {
            Some(role) => self.assume_role(label, name, role, lines).await?,
            None => self.caller.clone(),
        };
        let req = login::credential_request(c, identity, cluster_identifier, db_name);
        match self.api.mint(&req).await {
            Ok(cred) => {
                lines.push(CheckLine::pass(
                    format!("[{label}] credentials for {name}"),
                    format!("{} as {}", req.operation(), cred.db_user),
                ));
                Some(cred)
            }
            Err(e) => {
                lines.push(CheckLine::fail(
                    format!("[{label}] credentials for {name}"),
                    e.to_string(),
                    aws_fix(&e, &as_whom),
                ));
                None
            }
        }
    }

    /// A user rule's role, assumed: its ARN as STS reports it; `None` after a failure line.
    async fn assume_role(
        &self,
        label: &str,
        name: &str,
        role: &RoleSpec,
        lines: &mut Vec<CheckLine>,
    ) -> Option<String> {
        let what = format!("[{label}] assume role for {name}");
        match self.api.caller_identity(Some(role)).await {
            Ok(arn) => {
                lines.push(CheckLine::pass(what, arn.clone()));
                Some(arn)
            }
            Err(e) => {
                lines.push(CheckLine::fail(
                    what,
                    e.to_string(),
                    format!(
                        "let {} assume {} (sts:AssumeRole in its policy and the role's trust policy{})",
                        self.caller,
                        role.arn,
                        if role.external_id.is_some() { ", with the configured external_id" } else { "" }
                    ),
                ));
                None
            }
        }
    }
}

/// One upstream login with a minted credential, over the target's TLS.
async fn try_login(
    c: &ClusterConfig,
    target: &upstream::UpstreamTarget,
    cred: &DbCredential,
    db_name: &str,
) -> CheckLine {
    let label = c.label();
    let by_rules = c.credentials == CredentialMode::GetClusterCredentials;
    let what = format!("[{label}] login as {}", cred.db_user);
    let result = match upstream::connect(target).await {
        Ok(stream) => upstream::login(
            stream,
            &cred.db_user,
            &cred.password,
            db_name,
            &Default::default(),
        )
        .await
        .map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => CheckLine::pass(
            what,
            format!("{}:{} over TLS ({:?})", target.host, target.port, c.sslmode),
        ),
        Err(e) => {
            let fix = upstream_fix(&e, &cred.db_user, by_rules);
            CheckLine::fail(what, e.to_string(), fix)
        }
    }
}

/// The status line of a provisioned cluster and, with `resume_paused`, the ResumeCluster
/// permission line; true when the cluster is paused (or pausing).
async fn cluster_state(
    api: &RedshiftApi,
    c: &ClusterConfig,
    id: &str,
    caller: &str,
) -> (Vec<CheckLine>, bool) {
    let label = c.label();
    let what = format!("[{label}] cluster status");
    let mut lines = Vec::new();
    let state = match resume::describe(api, id).await {
        Ok(s) => s,
        Err(e) if c.resume_paused => {
            lines.push(CheckLine::fail(
                what,
                e.to_string(),
                format!("{} (resume_paused needs it)", aws_fix(&e, caller)),
            ));
            return (lines, false);
        }
        Err(e) => {
            lines.push(CheckLine::pass(
                what,
                format!("unknown ({}: {}; DescribeClusters is needed only with resume_paused = true or without host)", e.operation, e.code),
            ));
            return (lines, false);
        }
    };
    let shown = match &state.availability {
        Some(a) => format!("{} ({a})", state.status),
        None => state.status.clone(),
    };
    let paused = matches!(state.status.as_str(), "paused" | "pausing");
    lines.push(match (paused, c.resume_paused) {
        (false, _) => CheckLine::pass(what, shown),
        (true, true) => CheckLine::pass(
            what,
            format!("{shown}: the first client login will resume it (resume_paused = true); login not tried"),
        ),
        (true, false) => CheckLine::fail(
            what,
            format!("{shown}: clients cannot log in"),
            format!(
                "resume the cluster (aws redshift resume-cluster --cluster-identifier {id}), or set resume_paused = true in [cluster] to resume it at the first login"
            ),
        ),
    });
    if c.resume_paused {
        lines.push(resume_permission(api, c, id, caller, &state.status, paused).await);
    }
    (lines, paused)
}

/// With `resume_paused`: whether the identity may call ResumeCluster, probed on a cluster
/// that is not paused (IAM answers first: AccessDenied, or InvalidClusterState).
async fn resume_permission(
    api: &RedshiftApi,
    c: &ClusterConfig,
    id: &str,
    caller: &str,
    status: &str,
    paused: bool,
) -> CheckLine {
    let what = format!("[{}] may resume the cluster", c.label());
    if paused {
        return CheckLine::pass(
            what,
            "not probed: the cluster is paused, and calling ResumeCluster would resume it",
        );
    }
    match resume::resume(api, id).await {
        Ok(false) => CheckLine::pass(
            what,
            format!("redshift:ResumeCluster allowed for {caller} (probed: InvalidClusterState on a cluster that is {status})"),
        ),
        Ok(true) => CheckLine::pass(
            what,
            "redshift:ResumeCluster allowed: the cluster was paused meanwhile and is resuming now",
        ),
        Err(e) => CheckLine::fail(what, e.to_string(), aws_fix(&e, caller)),
    }
}

/// The database `check` logs in to: the one a client naming only this target gets.
fn login_database(cluster: &ClusterConfig) -> String {
    login::default_database(cluster.default_database.as_deref(), None)
}

/// Prints the report; true when every line passed.
pub fn print(lines: &[CheckLine]) -> bool {
    let width = lines.iter().map(|l| l.what.len()).max().unwrap_or(0);
    for l in lines {
        println!(
            "{}  {:width$}  {}",
            if l.ok { "PASS" } else { "FAIL" },
            l.what,
            l.detail
        );
        if let Some(fix) = &l.fix {
            println!("      fix: {fix}");
        }
    }
    let passed = lines.iter().filter(|l| l.ok).count();
    println!("check: {passed} of {} checks passed", lines.len());
    passed == lines.len()
}

fn endpoint_failure(label: &str, e: EndpointError, caller: &str) -> CheckLine {
    match e {
        EndpointError::Aws(c) => CheckLine::fail(
            format!("[{label}] endpoint"),
            c.to_string(),
            aws_fix(&c, caller),
        ),
        other => CheckLine::fail(
            format!("[{label}] endpoint"),
            other.to_string(),
            "set host to the cluster's DNS name",
        ),
    }
}

/// The IAM action an operation needs.
fn action_of(operation: &str) -> &'static str {
    match operation {
        "GetClusterCredentials" => "redshift:GetClusterCredentials",
        "GetClusterCredentialsWithIAM" => "redshift:GetClusterCredentialsWithIAM",
        "GetCredentials" => "redshift-serverless:GetCredentials",
        "DescribeClusters" => "redshift:DescribeClusters (or set host/port in the config)",
        "GetWorkgroup" => "redshift-serverless:GetWorkgroup (or set host/port in the config)",
        "DescribeCustomDomainAssociations" => {
            "redshift:DescribeCustomDomainAssociations (or set identifier)"
        }
        "GetCallerIdentity" => "sts:GetCallerIdentity",
        "ResumeCluster" => "redshift:ResumeCluster (on the cluster's ARN)",
        _ => "the action named in the message",
    }
}

/// The fix for a failed AWS call.
fn aws_fix(e: &CredentialError, who: &str) -> String {
    match e.kind {
        FailureKind::Denied => {
            // AWS names the missing action: "... not authorized to perform: redshift:JoinGroup on resource: ..."
            let named = e
                .message
                .split("perform: ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_owned);
            let resource = e.message.split("on resource: ").nth(1).map(|r| r.trim().to_owned());
            match (named, resource) {
                (Some(action), Some(res)) => format!("allow {action} on {res} for {who}"),
                (Some(action), None) => format!("allow {action} for {who}"),
                _ => format!("allow {} for {who}", action_of(e.operation)),
            }
        }
        FailureKind::NotFound => format!(
            "{} found nothing: check cluster.identifier / workgroup / custom_domain_name and aws.region",
            e.operation
        ),
        FailureKind::Invalid => "AWS refused a parameter: check db_user / default_database names (letters, digits, _ + . @ -, starting with a letter) and duration_seconds".into(),
        FailureKind::Throttled => "AWS is throttling this account's calls; retry later".into(),
        FailureKind::Timeout | FailureKind::Unavailable => {
            "the AWS endpoint did not answer: check network access (VPC endpoint, proxy) or aws.endpoint_url".into()
        }
        FailureKind::Other if e.message.contains("credentials") => {
            "no usable AWS credentials: set AWS_PROFILE or aws.profile, environment keys, or an instance/task role".into()
        }
        FailureKind::Other => "see the message".into(),
    }
}

/// The fix for a failed upstream connect or login.
fn upstream_fix(e: &UpstreamError, db_user: &str, by_rules: bool) -> String {
    match e {
        UpstreamError::Tls { reason, .. } if reason.contains("UnknownIssuer") || reason.contains("not signed by a trusted CA") => {
            "the cluster's certificate is not trusted: set sslrootcert to the CA bundle that signed it".into()
        }
        UpstreamError::Tls { reason, .. } if reason.contains("not valid for name") => {
            "the certificate does not name the host: connect with the name on the certificate (host / custom_domain_name), or use sslmode = \"verify-ca\"".into()
        }
        UpstreamError::Tls { .. } | UpstreamError::TlsRefused { .. } => "TLS to the cluster failed: check sslmode and sslrootcert".into(),
        UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. } => {
            "cannot reach the cluster: check security groups, VPC routing and host/port".into()
        }
        UpstreamError::AuthFailed(_) if by_rules => format!(
            "the database refused {db_user}: create the database user in Redshift, or set auto_create = true (needs redshift:CreateClusterUser)"
        ),
        UpstreamError::AuthFailed(_) => format!("the database refused {db_user}: check that IAM identity's access to the database"),
        UpstreamError::Server(f) if f.code == crate::wire::protocol::sqlstate::INVALID_CATALOG_NAME => "the database does not exist: set default_database".into(),
        _ => "see the message".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::mapping::UserMap;

    #[test]
    fn check_logs_in_where_a_client_naming_only_the_target_lands() {
        for default in ["", "default_database = \"sales\"\n"] {
            let c = Config::from_toml(&format!(
                "[[cluster]]\nname = \"a\"\nidentifier = \"c\"\n{default}\
                 [[cluster]]\nname = \"b\"\nidentifier = \"d\"\n{default}\
                 [[users]]\nclient_user = \"alice\"\n"
            ))
            .unwrap();
            let params: crate::wire::StartupParams = [("database", "b")].into_iter().collect();
            let plan = login::plan(
                &c,
                &UserMap::new(c.users.clone()),
                None,
                "alice",
                None,
                params.database(),
                &params,
            )
            .unwrap();
            assert_eq!(login_database(&c.cluster[1]), plan.database, "{default:?}");
        }
    }
}
