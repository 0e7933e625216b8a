//! The configuration file: its shape, its defaults, and the checks run at start.
//!
//! Every key is documented in `config.example.toml`. Loading fails with a message
//! naming the key when a value is out of range, so mistakes surface at start, not
//! at a client's first login.

pub mod scram;
pub mod settings;

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the proxy listens on (host:port). Loopback by default.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub aws: AwsConfig,
    /// The targets: `[cluster]` for one, `[[cluster]]` entries (each with a `name`) for several.
    #[serde(deserialize_with = "one_or_many")]
    pub cluster: Vec<ClusterConfig>,
    /// Mapping rules; the first whose `client_user` matches wins.
    #[serde(default)]
    pub users: Vec<UserRule>,
    #[serde(default)]
    pub client_tls: ClientTlsConfig,
    /// How clients prove who they are (needed before listening beyond loopback).
    #[serde(default)]
    pub client_auth: ClientAuthConfig,
    #[serde(default)]
    pub limits: Limits,
    /// Server connection pooling (`[pool]`).
    #[serde(default)]
    pub pool: PoolConfig,
    /// Operations: probes, metrics, the admin console, SIGTERM delay (`[admin]`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Log line format: `text` (default) or `json` (one object per line, same fields).
    #[serde(default)]
    pub log_format: LogFormat,
    /// Replicas that forward cancels to each other (`[peers]`, PgBouncer 1.19's peering).
    #[serde(default)]
    pub peers: PeersConfig,
    /// Log filter (tracing `EnvFilter` syntax, e.g. "info,redshift_iam_proxy=debug");
    /// `RUST_LOG`, when set, wins. Reloadable.
    pub log_filter: Option<String>,
}

/// `[admin]`: how operators watch and steer the proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// HTTP listener for `/metrics`, `/startup`, `/liveness`, `/readiness`; off when absent.
    pub listen: Option<String>,
    /// Client users allowed into the admin console (database `redshift_iam_proxy`).
    #[serde(default)]
    pub users: Vec<String>,
    /// After SIGTERM, keep accepting new clients this long (readiness already fails),
    /// so load balancers stop sending before the listener closes.
    #[serde(default)]
    pub min_sigterm_delay_secs: u64,
}

/// `[peers]`: behind a TCP load balancer a CancelRequest may land on another replica
/// than its session. With `addresses`, each replica puts its `peer_id` in the cancel keys
/// it hands out and forwards cancels for another replica's key to that peer. With `dns`,
/// a name resolving to every replica (a headless Service) is re-resolved periodically and
/// a client's cancel for a key no session here holds goes to every other replica found.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// This replica's id, 1..=255, or `"auto"` (the ordinal ending the host name, plus 1:
    /// StatefulSet pods); 0 or absent: none.
    #[serde(default)]
    pub peer_id: PeerIdSetting,
    /// Other replicas: peer id → their client listener (host:port).
    #[serde(default)]
    pub addresses: std::collections::BTreeMap<String, String>,
    /// `name:port`: a name resolving to every replica's address (a headless Service),
    /// and the port their client listeners use.
    pub dns: Option<String>,
    /// How often `dns` is resolved again (seconds, default 10).
    pub dns_refresh_secs: Option<u64>,
    /// A hosts(5)-style file (`address name…` lines) read before DNS at each resolution.
    pub hosts_file: Option<PathBuf>,
}

/// `[peers] peer_id` as written: a number or `"auto"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PeerIdSetting {
    Number(i64),
    Word(String),
}

impl Default for PeerIdSetting {
    fn default() -> Self {
        PeerIdSetting::Number(0)
    }
}

/// `[peers] peer_id` once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerId {
    /// A fixed id (0: none).
    Fixed(u8),
    /// Derived from the host name at start.
    Auto,
}

/// Default `[peers] dns_refresh_secs`.
pub const DEFAULT_DNS_REFRESH_SECS: u64 = 10;

impl PeersConfig {
    /// The peers as (id, address); ids are checked at validation.
    pub fn peer_list(&self) -> Vec<(u8, String)> {
        self.addresses
            .iter()
            .filter_map(|(k, v)| k.parse().ok().map(|id| (id, v.clone())))
            .collect()
    }

    /// `peer_id` (checked at validation; anything else reads as no id).
    pub fn id(&self) -> PeerId {
        match &self.peer_id {
            PeerIdSetting::Number(n) => PeerId::Fixed(u8::try_from(*n).unwrap_or(0)),
            PeerIdSetting::Word(w) if w == "auto" => PeerId::Auto,
            PeerIdSetting::Word(_) => PeerId::Fixed(0),
        }
    }

    /// `dns` split into the name (brackets of an IPv6 literal removed) and the port.
    pub fn dns_target(&self) -> Option<(String, u16)> {
        let (host, port) = self.dns.as_deref()?.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        (!host.is_empty()).then(|| (host.to_owned(), port))
    }

    /// `dns_refresh_secs` or its default.
    pub fn dns_refresh(&self) -> Duration {
        Duration::from_secs(self.dns_refresh_secs.unwrap_or(DEFAULT_DNS_REFRESH_SECS))
    }

    fn validate(&self) -> Result<(), String> {
        let own = match (&self.peer_id, self.id()) {
            (PeerIdSetting::Number(n), PeerId::Fixed(id)) if i64::from(id) == *n => Some(id),
            (_, PeerId::Auto) => None,
            (PeerIdSetting::Number(n), _) => {
                return Err(format!(
                    "peers.peer_id = {n}: expected 1..=255 (0: none) or \"auto\""
                ))
            }
            (PeerIdSetting::Word(w), _) => {
                return Err(format!(
                    "peers.peer_id = {w:?}: expected 1..=255 (0: none) or \"auto\""
                ))
            }
        };
        for (k, addr) in &self.addresses {
            match k.parse::<u8>() {
                Ok(id) if id > 0 && Some(id) != own => {}
                _ => {
                    return Err(format!(
                        "peers.addresses.{k}: peer ids are 1..=255 and differ from peers.peer_id"
                    ))
                }
            }
            if !addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(format!(
                    "peers.addresses.{k} = {addr:?}: expected host:port"
                ));
            }
        }
        if !self.addresses.is_empty() && own == Some(0) {
            return Err(
                "peers.addresses needs peers.peer_id (1..=255 or \"auto\") for this replica".into(),
            );
        }
        if let Some(d) = &self.dns {
            if self.dns_target().is_none() {
                return Err(format!(
                    "peers.dns = {d:?}: expected name:port (a name resolving to every replica and their client port)"
                ));
            }
            if !self.addresses.is_empty() {
                return Err("peers.dns and peers.addresses: use one of them".into());
            }
        }
        if self.dns.is_none() {
            for (key, set) in [
                ("dns_refresh_secs", self.dns_refresh_secs.is_some()),
                ("hosts_file", self.hosts_file.is_some()),
            ] {
                if set {
                    return Err(format!("peers.{key} needs peers.dns"));
                }
            }
        }
        if self.dns_refresh_secs == Some(0) {
            return Err("peers.dns_refresh_secs = 0: expected at least 1".into());
        }
        Ok(())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable `key=value` lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How client sessions share server connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolMode {
    /// One server login per client connection, relayed byte for byte (no pooling).
    None,
    /// A client holds one pooled server from its first message to its Terminate.
    #[default]
    Session,
    /// A client holds a pooled server only while a transaction is open.
    Transaction,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::None => "none",
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        }
    }
}

/// `[pool]`: sizes, limits and timeouts of the server pools (one pool per target +
/// DbUser + DbName + groups + IAM identity + startup parameters that `SET` cannot change).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default)]
    pub mode: PoolMode,
    /// Server connections per pool.
    #[serde(default = "default_pool_size")]
    pub size: usize,
    /// Servers kept open (logged in) per pool; configured users are prewarmed at start.
    #[serde(default)]
    pub min_size: usize,
    /// Cap over all pools of one target (0 = none).
    #[serde(default)]
    pub max_server_connections: usize,
    /// A client waiting longer than this for a server gets SQLSTATE 53300.
    #[serde(default = "default_checkout_timeout")]
    pub checkout_timeout_secs: u64,
    /// Idle servers above `min_size` are closed after this.
    #[serde(default = "default_server_idle_timeout")]
    pub server_idle_timeout_secs: u64,
    /// A server is closed at its first check-in after this age.
    #[serde(default = "default_server_lifetime")]
    pub server_lifetime_secs: u64,
    /// A server idle for longer than this is checked (empty query) before it is handed out.
    #[serde(default = "default_server_check_delay")]
    pub server_check_delay_secs: u64,
    /// Protocol-level prepared statements kept per server in transaction mode (LRU).
    #[serde(default = "default_max_prepared")]
    pub max_prepared_statements: usize,
    /// Replaces the reset the proxy chooses (PostgreSQL: DISCARD ALL; Redshift: RESET ALL).
    pub reset_query: Option<String>,
    /// How long a login (and a client waiting for a server) is held and retried while the
    /// cluster cannot take logins (reboot, maintenance, resume); 0 = fail at once.
    #[serde(default = "default_outage_hold")]
    pub outage_hold_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            mode: PoolMode::default(),
            size: default_pool_size(),
            min_size: 0,
            max_server_connections: 0,
            checkout_timeout_secs: default_checkout_timeout(),
            server_idle_timeout_secs: default_server_idle_timeout(),
            server_lifetime_secs: default_server_lifetime(),
            server_check_delay_secs: default_server_check_delay(),
            max_prepared_statements: default_max_prepared(),
            reset_query: None,
            outage_hold_secs: default_outage_hold(),
        }
    }
}

fn default_outage_hold() -> u64 {
    120
}

fn default_pool_size() -> usize {
    20
}
fn default_checkout_timeout() -> u64 {
    30
}
fn default_server_idle_timeout() -> u64 {
    600
}
fn default_server_lifetime() -> u64 {
    3600
}
fn default_server_check_delay() -> u64 {
    30
}
fn default_max_prepared() -> usize {
    200
}

/// Client authentication settings (see `clientauth.rs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    #[serde(default)]
    pub method: ClientAuthMethod,
    /// Client user name → SCRAM-SHA-256 verifier (`redshift-iam-proxy hash-password`).
    #[serde(default)]
    pub scram_verifiers: std::collections::BTreeMap<String, String>,
    /// CA (PEM) that client certificates must chain to (`method = "cert"`).
    pub ca_file: Option<PathBuf>,
    /// Certificate common name → client user name; unmapped names must equal the user name.
    #[serde(default)]
    pub cert_users: std::collections::BTreeMap<String, String>,
    /// Explicit opt-in: listen beyond loopback with `method = "trust"`.
    #[serde(default)]
    pub allow_unauthenticated_network: bool,
    /// Accept AWS-signed identity tokens (`method = "token"`).
    pub aws_token: Option<AwsTokenConfig>,
    /// Accept JWTs of these OIDC issuers (`method = "token"`).
    #[serde(default)]
    pub oidc: Vec<OidcIssuerConfig>,
}

impl ClientAuthConfig {
    /// Whether identity tokens are accepted (from everyone with `method = "token"`, else
    /// from clients the method has nothing to go by: off loopback under `trust`, without a
    /// SCRAM verifier, without a certificate).
    pub fn accepts_tokens(&self) -> bool {
        self.aws_token.is_some() || !self.oidc.is_empty()
    }
}

/// `[client_auth.aws_token]`: presigned `sts:GetCallerIdentity` tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsTokenConfig {
    /// The audience a token must be signed for (its `x-redshift-iam-proxy-id` header).
    pub server_id: String,
    /// Where verification goes; default the STS endpoints of the region.
    pub sts_endpoint: Option<String>,
    /// Region of the STS endpoints tokens may name; default `[aws] region`.
    pub region: Option<String>,
}

/// `[[client_auth.oidc]]`: one issuer whose JWTs are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// `iss`, exactly; its discovery document is `ISSUER/.well-known/openid-configuration`.
    pub issuer: String,
    /// `aud` a token must carry.
    pub audience: String,
    /// Keys from this JWKS file instead of the issuer's discovery document.
    pub jwks_file: Option<PathBuf>,
    /// Signature algorithms accepted (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA).
    #[serde(default = "default_oidc_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_oidc_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

/// The client authentication method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthMethod {
    /// No client credential (loopback only unless opted in).
    #[default]
    Trust,
    /// SCRAM-SHA-256 against per-user verifiers.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// TLS client certificates signed by `ca_file`.
    Cert,
    /// Every client presents a token as its password: an AWS identity token or an OIDC JWT.
    Token,
}

/// How the proxy reaches the AWS APIs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// Region; else the SDK's region chain (AWS_REGION, profile, …).
    pub region: Option<String>,
    /// Named profile; else the SDK's default credential chain.
    pub profile: Option<String>,
    /// Endpoint override (e.g. a local emulator).
    pub endpoint_url: Option<String>,
    /// Time limit for one API call attempt.
    #[serde(default = "default_api_timeout")]
    pub timeout_secs: u64,
    /// Attempts for throttled or transient failures (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            profile: None,
            endpoint_url: None,
            timeout_secs: default_api_timeout(),
            max_attempts: default_max_attempts(),
        }
    }
}

/// One Redshift target (provisioned cluster or serverless workgroup) and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Target name, required with several `[[cluster]]` entries: clients pick the target
    /// with `database = "name"` or `database = "name/dbname"`.
    pub name: Option<String>,
    /// Which credential API mints passwords for this target.
    #[serde(default)]
    pub credentials: CredentialMode,
    /// ClusterIdentifier (provisioned clusters; optional with `custom_domain_name`).
    pub identifier: Option<String>,
    /// Serverless workgroup name (`credentials = "serverless"`).
    pub workgroup: Option<String>,
    /// Custom domain name (CNAME) of the cluster or workgroup; TLS checks this name.
    pub custom_domain_name: Option<String>,
    /// An extra listener that serves only this target (`database` is then the DbName as is).
    pub listen: Option<String>,
    /// Endpoint host; omitted: DescribeClusters / GetWorkgroup finds host and port.
    pub host: Option<String>,
    /// Endpoint port (default 5439 when `host` or `custom_domain_name` is set).
    pub port: Option<u16>,
    /// Lifetime requested for minted passwords, 900..=3600.
    #[serde(default = "default_duration")]
    pub duration_seconds: u32,
    #[serde(default)]
    pub sslmode: SslMode,
    /// Extra CA certificates (PEM) trusted beside the system and Mozilla roots.
    pub sslrootcert: Option<PathBuf>,
    /// Required together with `sslmode = "disable"`; for local test clusters only.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// DbName used when the client names no database (else: the client user name for a
    /// single target, as PostgreSQL does; "dev" when the database only names the target).
    pub default_database: Option<String>,
    /// Overrides `[pool] mode` for this target.
    pub pool_mode: Option<PoolMode>,
    /// Overrides `[pool] size` for this target.
    pub pool_size: Option<usize>,
    /// A login that finds the provisioned cluster `paused` (DescribeClusters) calls
    /// ResumeCluster once and is held until the cluster is `available` (needs
    /// `redshift:ResumeCluster`). Off: such a login fails at once, naming the paused cluster.
    #[serde(default)]
    pub resume_paused: bool,
    /// Longest a login is held while the cluster resumes (`resume_paused`).
    #[serde(default = "default_resume_hold")]
    pub resume_hold_secs: u64,
}

impl ClusterConfig {
    /// Name used in logs and messages.
    pub fn label(&self) -> &str {
        self.name
            .as_deref()
            .or(self.identifier.as_deref())
            .or(self.workgroup.as_deref())
            .or(self.custom_domain_name.as_deref())
            .unwrap_or("cluster")
    }

    /// True for the APIs where AWS derives the DbUser from the IAM identity.
    pub fn iam_mapped(&self) -> bool {
        self.credentials != CredentialMode::GetClusterCredentials
    }
}

/// The credential API used for a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialMode {
    /// GetClusterCredentials: DbUser, DbGroups and AutoCreate from `[[users]]`.
    #[default]
    GetClusterCredentials,
    /// GetClusterCredentialsWithIAM: the DbUser is the caller's IAM identity (`IAM:user`, `IAMR:role`).
    GetClusterCredentialsWithIam,
    /// Redshift Serverless GetCredentials for a workgroup.
    Serverless,
}

impl CredentialMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::GetClusterCredentials => "get-cluster-credentials",
            CredentialMode::GetClusterCredentialsWithIam => "get-cluster-credentials-with-iam",
            CredentialMode::Serverless => "serverless",
        }
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ClusterConfig>, D::Error> {
    use serde::de::Error;
    let value = toml::Value::deserialize(d)?;
    match value {
        toml::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                ClusterConfig::deserialize(item)
                    .map_err(|e| D::Error::custom(format!("cluster[{i}]: {e}")))
            })
            .collect(),
        v @ toml::Value::Table(_) => ClusterConfig::deserialize(v)
            .map(|c| vec![c])
            .map_err(|e| D::Error::custom(format!("cluster: {e}"))),
        _ => Err(D::Error::custom(
            "cluster must be a table ([cluster]) or an array of tables ([[cluster]])",
        )),
    }
}

/// TLS policy towards the cluster, with libpq's meanings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Require,
    VerifyCa,
    #[default]
    VerifyFull,
}

/// One mapping rule from a client user name to a Redshift identity.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRule {
    /// The user name the client sends, or `*` for any; empty on rules that match a
    /// verified principal instead.
    #[serde(default)]
    pub client_user: String,
    /// Glob over the verified principal: an AWS ARN (assumed roles: the role's ARN) or
    /// `ISSUER#SUBJECT` for OIDC tokens.
    pub principal: Option<String>,
    /// The AWS unique id (`AIDA…`, `AROA…`) the principal must have: a role deleted and
    /// re-created under the same name does not inherit the rule.
    pub unique_id: Option<String>,
    /// OIDC claims (dotted paths) and the globs their values must match.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
    /// DbGroups taken from this claim (a string or a list), only those in `allowed_db_groups`.
    pub db_groups_from_claim: Option<String>,
    /// The DbGroups a claim may select.
    #[serde(default)]
    pub allowed_db_groups: Vec<String>,
    /// Redshift WLM query group for this identity's sessions.
    pub query_group: Option<String>,
    /// Further per-identity session defaults (`search_path`, `statement_timeout`, `timezone`, …).
    #[serde(default)]
    pub session: std::collections::BTreeMap<String, String>,
    /// DbUser; default: the client user name. On principal rules also a template:
    /// `{session_name}`, `{role_name}`, `{account}`, `{subject}`, `{claim:PATH}`.
    pub db_user: Option<String>,
    /// DbGroups joined for sessions opened with the minted credential.
    #[serde(default)]
    pub db_groups: Vec<String>,
    /// AutoCreate: let Redshift create the user at first login.
    #[serde(default)]
    pub auto_create: bool,
    /// IAM role assumed (STS AssumeRole) for this user's credential calls; else the proxy's own identity.
    pub role_arn: Option<String>,
    /// ExternalId for the AssumeRole call.
    pub external_id: Option<String>,
    /// RoleSessionName (default "redshift-iam-proxy"); it appears in CloudTrail.
    pub session_name: Option<String>,
}

/// JWT signature algorithms an issuer may use: public-key ones only.
const OIDC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl UserRule {
    /// Whether the rule matches a verified principal (token auth) rather than a typed name.
    pub fn matches_principal(&self) -> bool {
        self.principal.is_some() || self.unique_id.is_some() || !self.claims.is_empty()
    }
}

/// A `db_user` template: names in braces are principal fields the mapping knows.
fn check_template(key: &str, template: &str) -> Result<(), ConfigError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(ConfigError::Invalid(format!(
                "{key} = {template:?}: unclosed {{"
            )));
        };
        let field = &rest[open + 1..open + close];
        let known = matches!(field, "session_name" | "role_name" | "account" | "subject")
            || field.strip_prefix("claim:").is_some_and(|p| !p.is_empty());
        if !known {
            return Err(ConfigError::Invalid(format!(
                "{key} = {template:?}: unknown field {{{field}}} (session_name, role_name, account, subject, claim:PATH)"
            )));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

/// TLS offered to clients (answering SSLRequest).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate chain; omitted: a certificate signed by the local CA (or, with
    /// `local_ca = false`, a self-signed one) is made at start.
    pub cert_file: Option<PathBuf>,
    /// PEM private key matching `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Keep a CA in `state_dir` and sign the listener certificate with it, so clients
    /// that verify TLS can trust `ca.crt` once; false: a new self-signed certificate
    /// at every start. Not used when `cert_file` is set.
    #[serde(default = "default_local_ca")]
    pub local_ca: bool,
    /// Where the local CA lives (`ca.crt`, `ca.key`); default
    /// `$XDG_STATE_HOME/redshift-iam-proxy`, else `$HOME/.local/state/redshift-iam-proxy`.
    pub state_dir: Option<PathBuf>,
}

impl Default for ClientTlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            local_ca: default_local_ca(),
            state_dir: None,
        }
    }
}

fn default_local_ca() -> bool {
    true
}

/// Resource limits and timeouts that keep one client from hurting others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Open client connections at once; further ones get SQLSTATE 53300.
    #[serde(default = "default_max_clients")]
    pub max_client_connections: usize,
    /// Time from accept to a relayed session (client startup + credentials + upstream login).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Largest startup packet accepted from a client.
    #[serde(default = "default_max_startup")]
    pub max_startup_packet_bytes: usize,
    /// Time from the client's startup packet to a relayed session (credential call,
    /// upstream connect and login together); beyond it the client gets 08001.
    #[serde(default = "default_login_timeout")]
    pub login_timeout_secs: u64,
    /// Time allowed for TCP connect plus TLS handshake to the cluster.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds between "stats" log lines (open sessions, tasks, cached credentials); 0 = off.
    #[serde(default = "default_stats_interval")]
    pub stats_interval_secs: u64,
    /// Open sessions per client user name; further ones get 53300 (unset: no limit).
    pub max_connections_per_user: Option<usize>,
    /// On SIGTERM/SIGINT, how long open sessions may run before they are closed.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_client_connections: default_max_clients(),
            handshake_timeout_secs: default_handshake_timeout(),
            max_startup_packet_bytes: default_max_startup(),
            login_timeout_secs: default_login_timeout(),
            max_connections_per_user: None,
            stats_interval_secs: default_stats_interval(),
            connect_timeout_secs: default_connect_timeout(),
            drain_timeout_secs: default_drain_timeout(),
        }
    }
}

impl Limits {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

fn default_listen() -> String {
    "127.0.0.1:5439".into()
}
fn default_api_timeout() -> u64 {
    10
}
fn default_max_attempts() -> u32 {
    5
}
fn default_duration() -> u32 {
    900
}
fn default_resume_hold() -> u64 {
    600
}
fn default_max_clients() -> usize {
    1000
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_max_startup() -> usize {
    10_000
}
fn default_stats_interval() -> u64 {
    60
}
fn default_login_timeout() -> u64 {
    30
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_drain_timeout() -> u64 {
    30
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates configuration text (used by tests and the demo).
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            source: Box::new(source),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and combinations that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.cluster.is_empty() {
            return bad("at least one [cluster] is required".into());
        }
        let several = self.cluster.len() > 1;
        let mut names = std::collections::HashSet::new();
        for (i, c) in self.cluster.iter().enumerate() {
            let key = if several {
                format!("cluster[{i}]")
            } else {
                "cluster".to_owned()
            };
            c.validate(&key, several)?;
            if let Some(n) = &c.name {
                if !names.insert(n.as_str()) {
                    return bad(format!("{key}.name = {n:?} is used twice"));
                }
            }
        }
        let all_iam_mapped = self.cluster.iter().all(ClusterConfig::iam_mapped);
        for (i, u) in self.users.iter().enumerate() {
            self.validate_rule_match(i, u)?;
            if let Some(db_user) = &u.db_user {
                if u.matches_principal() && db_user.contains('{') {
                    check_template(&format!("users[{i}].db_user"), db_user)?;
                } else {
                    check_name(&format!("users[{i}].db_user"), db_user, false)?;
                }
            }
            for g in &u.db_groups {
                check_name(&format!("users[{i}].db_groups"), g, true)?;
            }
            if all_iam_mapped && (u.db_user.is_some() || !u.db_groups.is_empty() || u.auto_create) {
                return bad(format!(
                    "users[{i}] sets db_user/db_groups/auto_create, which do not apply with credentials = \"{}\": \
                     AWS derives the database user from the IAM identity (IAM:user, IAMR:role) and groups from its tags; \
                     use role_arn to choose the identity",
                    self.cluster[0].credentials.as_str()
                ));
            }
            if u.role_arn.is_none() && (u.external_id.is_some() || u.session_name.is_some()) {
                return bad(format!(
                    "users[{i}].external_id and session_name need role_arn"
                ));
            }
            if let Some(arn) = &u.role_arn {
                if !arn.starts_with("arn:") || !arn.contains(":role/") {
                    return bad(format!("users[{i}].role_arn = {arn:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"));
                }
            }
        }
        self.validate_client_auth()?;
        match (&self.client_tls.cert_file, &self.client_tls.key_file) {
            (Some(_), None) | (None, Some(_)) => {
                return bad("client_tls.cert_file and client_tls.key_file go together".into())
            }
            _ => {}
        }
        let l = &self.limits;
        if l.max_client_connections == 0 {
            return bad("limits.max_client_connections must be at least 1".into());
        }
        if l.handshake_timeout_secs == 0 || l.connect_timeout_secs == 0 || l.login_timeout_secs == 0
        {
            return bad("limits timeouts must be at least 1 second".into());
        }
        if !(64..=1_048_576).contains(&l.max_startup_packet_bytes) {
            return bad("limits.max_startup_packet_bytes must be within 64..=1048576".into());
        }
        if self.aws.timeout_secs == 0 || self.aws.max_attempts == 0 {
            return bad("aws.timeout_secs and aws.max_attempts must be at least 1".into());
        }
        self.validate_pool()
    }

    fn validate_pool(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let p = &self.pool;
        if p.size == 0 {
            return bad("pool.size must be at least 1".into());
        }
        if p.min_size > p.size {
            return bad(format!(
                "pool.min_size = {} is larger than pool.size = {}",
                p.min_size, p.size
            ));
        }
        if p.checkout_timeout_secs == 0 {
            return bad("pool.checkout_timeout_secs must be at least 1".into());
        }
        if p.server_lifetime_secs == 0 || p.server_idle_timeout_secs == 0 {
            return bad(
                "pool.server_lifetime_secs and pool.server_idle_timeout_secs must be at least 1"
                    .into(),
            );
        }
        if p.max_prepared_statements == 0 {
            return bad("pool.max_prepared_statements must be at least 1".into());
        }
        if p.reset_query
            .as_deref()
            .is_some_and(|q| q.trim().is_empty())
        {
            return bad("pool.reset_query must not be empty (omit it for the default)".into());
        }
        for (i, c) in self.cluster.iter().enumerate() {
            if c.pool_size == Some(0) {
                return bad(format!("cluster[{i}].pool_size must be at least 1"));
            }
            if p.max_server_connections > 0 && self.pool_size(i) > p.max_server_connections {
                tracing::debug!(
                    target_index = i,
                    "pool size above max_server_connections; the cap wins"
                );
            }
        }
        Ok(())
    }

    /// The pool mode of target `i` (`[[cluster]] pool_mode` or `[pool] mode`).
    pub fn pool_mode(&self, i: usize) -> PoolMode {
        self.cluster
            .get(i)
            .and_then(|c| c.pool_mode)
            .unwrap_or(self.pool.mode)
    }

    /// The pool size of target `i` (`[[cluster]] pool_size` or `[pool] size`).
    pub fn pool_size(&self, i: usize) -> usize {
        self.cluster
            .get(i)
            .and_then(|c| c.pool_size)
            .unwrap_or(self.pool.size)
    }

    /// The target a client reaches through the main listener with `database`,
    /// and the DbName to use there; `Err` names the known targets.
    pub fn route<'a>(
        &'a self,
        database: Option<&'a str>,
    ) -> Result<(usize, Option<&'a str>), String> {
        if self.cluster.len() == 1 {
            return Ok((0, database));
        }
        let Some(db) = database else {
            return Err(self.route_help("no database given"));
        };
        let (target, dbname) = match db.split_once('/') {
            Some((t, d)) => (t, Some(d).filter(|d| !d.is_empty())),
            None => (db, None),
        };
        match self
            .cluster
            .iter()
            .position(|c| c.name.as_deref() == Some(target))
        {
            Some(i) => Ok((i, dbname)),
            None => Err(self.route_help(&format!("no target named {target:?}"))),
        }
    }

    fn route_help(&self, why: &str) -> String {
        let names: Vec<&str> = self
            .cluster
            .iter()
            .filter_map(|c| c.name.as_deref())
            .collect();
        format!(
            "{why}: this proxy serves several targets; connect with database \"TARGET\" or \"TARGET/DBNAME\" (targets: {})",
            names.join(", ")
        )
    }

    /// Every address the proxy listens on.
    pub fn listen_addrs(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.listen.as_str())
            .chain(self.cluster.iter().filter_map(|c| c.listen.as_deref()))
    }

    /// What a `[[users]]` rule matches on: the name a client types, or a verified principal.
    fn validate_rule_match(&self, i: usize, u: &UserRule) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        match (u.client_user.is_empty(), u.matches_principal()) {
            (true, false) => {
                return bad(format!(
                    "users[{i}] needs client_user, or principal / unique_id / claims"
                ))
            }
            (false, true) => {
                return bad(format!(
                    "users[{i}] sets client_user and principal/unique_id/claims: a rule matches either the \
                     name a client types or a verified principal, not both"
                ))
            }
            _ => {}
        }
        if u.matches_principal() && !self.client_auth.accepts_tokens() {
            return bad(format!(
                "users[{i}] matches a verified principal, which needs [client_auth.aws_token] or [[client_auth.oidc]]"
            ));
        }
        if u.db_groups_from_claim.is_some() && u.allowed_db_groups.is_empty() {
            return bad(format!(
                "users[{i}].db_groups_from_claim needs allowed_db_groups (a client must never pick arbitrary groups)"
            ));
        }
        for g in &u.allowed_db_groups {
            check_name(&format!("users[{i}].allowed_db_groups"), g, true)?;
        }
        for key in u.session.keys() {
            if !settings::is_settable(key) || *key != key.to_ascii_lowercase() {
                return bad(format!(
                    "users[{i}].session.{key} is not a session setting the proxy applies \
                     (lower-case names such as search_path, statement_timeout, timezone, datestyle, application_name)"
                ));
            }
        }
        Ok(())
    }

    fn validate_client_auth(&self) -> Result<(), ConfigError> {
        let a = &self.client_auth;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        match a.method {
            ClientAuthMethod::Trust => {
                if let Some(exposed) = self.listen_addrs().find(|l| !is_loopback(l)) {
                    // With tokens accepted, clients off loopback must present one.
                    if !a.allow_unauthenticated_network && !a.accepts_tokens() {
                        return bad(format!(
                            "listen = {exposed:?} is not a loopback address, and with [client_auth] method = \"trust\" anyone who \
                             reaches it logs in as the mapped users. Set [client_auth] method = \"scram-sha-256\" or \"cert\", or, \
                             if the network itself is trusted, [client_auth] allow_unauthenticated_network = true"
                        ));
                    }
                }
            }
            ClientAuthMethod::ScramSha256 => {
                if a.scram_verifiers.is_empty() {
                    return bad("[client_auth] method = \"scram-sha-256\" needs scram_verifiers (make them with `redshift-iam-proxy hash-password`)".into());
                }
                for (user, v) in &a.scram_verifiers {
                    if let Err(e) = v.parse::<scram::ScramVerifier>() {
                        return bad(format!("client_auth.scram_verifiers.{user}: {e}"));
                    }
                }
            }
            ClientAuthMethod::Cert => {
                if a.ca_file.is_none() {
                    return bad("[client_auth] method = \"cert\" needs ca_file (the CA that signs client certificates)".into());
                }
            }
            ClientAuthMethod::Token => self.validate_tokens()?,
        }
        if a.method != ClientAuthMethod::Token && a.accepts_tokens() {
            self.validate_tokens()?;
        }
        self.validate_admin()?;
        if self.limits.max_connections_per_user == Some(0) {
            return bad(
                "limits.max_connections_per_user must be at least 1 (omit it for no limit)".into(),
            );
        }
        Ok(())
    }

    /// `method = "token"`: at least one token kind, each well formed.
    fn validate_tokens(&self) -> Result<(), ConfigError> {
        let a = &self.client_auth;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if a.aws_token.is_none() && a.oidc.is_empty() {
            return bad("[client_auth] method = \"token\" needs [client_auth.aws_token] or [[client_auth.oidc]]".into());
        }
        if let Some(t) = &a.aws_token {
            let printable = |s: &str| s.bytes().all(|b| (33..127).contains(&b));
            if t.server_id.is_empty() || t.server_id.len() > 128 || !printable(&t.server_id) {
                return bad("client_auth.aws_token.server_id must be 1..128 printable characters without spaces".into());
            }
            let region = t.region.as_deref().or(self.aws.region.as_deref());
            if t.sts_endpoint.is_none() && region.is_none() {
                return bad("[client_auth.aws_token] needs a region: [aws] region or client_auth.aws_token.region".into());
            }
            if let Err(e) = redshift_tokens::aws::Endpoints::new(
                region.unwrap_or("us-east-1"),
                t.sts_endpoint.as_deref(),
            ) {
                return bad(format!("client_auth.aws_token: {e}"));
            }
        }
        for (i, o) in a.oidc.iter().enumerate() {
            let key = format!("client_auth.oidc[{i}]");
            if o.audience.is_empty() {
                return bad(format!("{key}.audience must not be empty"));
            }
            let url = url::Url::parse(&o.issuer)
                .map_err(|e| ConfigError::Invalid(format!("{key}.issuer {:?}: {e}", o.issuer)))?;
            let loopback = url
                .host_str()
                .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]");
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return bad(format!(
                    "{key}.issuer must be an https URL (http only on loopback)"
                ));
            }
            if o.algorithms.is_empty() {
                return bad(format!("{key}.algorithms must not be empty"));
            }
            for alg in &o.algorithms {
                if !OIDC_ALGORITHMS.contains(&alg.as_str()) {
                    return bad(format!(
                        "{key}.algorithms: {alg:?} is not accepted (public-key algorithms only: {}; never none or HMAC)",
                        OIDC_ALGORITHMS.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    /// `[admin]` and the log keys.
    fn validate_admin(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some(l) = &self.admin.listen {
            let port_ok = l
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return bad(format!("admin.listen = {l:?}: expected host:port"));
            }
        }
        for (i, u) in self.admin.users.iter().enumerate() {
            if u.is_empty() || u == "*" {
                return bad(format!(
                    "admin.users[{i}] = {u:?}: name a client user (no wildcard)"
                ));
            }
        }
        self.peers.validate().map_err(ConfigError::Invalid)?;
        if let Some(f) = &self.log_filter {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(f) {
                return bad(format!("log_filter = {f:?}: {e}"));
            }
        }
        Ok(())
    }

    /// The SIGTERM delay (`admin.min_sigterm_delay_secs`).
    pub fn min_sigterm_delay(&self) -> Duration {
        Duration::from_secs(self.admin.min_sigterm_delay_secs)
    }

    /// Warnings about secrets in files that others can read.
    pub fn secret_file_warnings(&self, config_path: &Path) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let loose = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o077 != 0)
                .unwrap_or(false)
        };
        let mut out = Vec::new();
        if !self.client_auth.scram_verifiers.is_empty() && loose(config_path) {
            out.push(format!(
                "{} holds SCRAM verifiers and is readable by group or others; chmod 600 it",
                config_path.display()
            ));
        }
        if let Some(key) = &self.client_tls.key_file {
            if loose(key) {
                out.push(format!(
                    "{} (client_tls.key_file) is readable by group or others; chmod 600 it",
                    key.display()
                ));
            }
        }
        out
    }

    pub fn api_timeout(&self) -> Duration {
        Duration::from_secs(self.aws.timeout_secs)
    }
}

impl ClusterConfig {
    fn validate(&self, key: &str, several: bool) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if several {
            match &self.name {
                None => {
                    return bad(format!(
                        "{key}.name is required when there are several [[cluster]] entries"
                    ))
                }
                Some(n)
                    if n.is_empty()
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    return bad(format!("{key}.name = {n:?}: use letters, digits, _ and -"))
                }
                _ => {}
            }
        }
        match self.credentials {
            CredentialMode::Serverless => {
                let Some(wg) = &self.workgroup else {
                    return bad(format!(
                        "{key}.workgroup is required with credentials = \"serverless\""
                    ));
                };
                let ok = (3..=64).contains(&wg.len())
                    && wg
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !ok {
                    return bad(format!(
                        "{key}.workgroup = {wg:?}: 3 to 64 of a-z, 0-9 and -"
                    ));
                }
                if self.identifier.is_some() {
                    return bad(format!(
                        "{key}.identifier does not apply to a serverless workgroup"
                    ));
                }
            }
            _ => {
                if self.workgroup.is_some() {
                    return bad(format!(
                        "{key}.workgroup needs credentials = \"serverless\""
                    ));
                }
                match (&self.identifier, &self.custom_domain_name) {
                    (Some(id), _) if id.is_empty() => {
                        return bad(format!("{key}.identifier must not be empty"))
                    }
                    (None, None) => {
                        return bad(format!(
                            "{key}.identifier (or custom_domain_name) is required"
                        ))
                    }
                    _ => {}
                }
            }
        }
        if !(900..=3600).contains(&self.duration_seconds) {
            return bad(format!(
                "{key}.duration_seconds = {} is outside 900..=3600 (the range the credential APIs accept)",
                self.duration_seconds
            ));
        }
        if self.sslmode == SslMode::Disable && !self.allow_plaintext {
            return bad(format!(
                "{key}.sslmode = \"disable\" sends credentials in clear text and Redshift refuses IAM passwords without TLS; \
                 set {key}.allow_plaintext = true only for a local test cluster"
            ));
        }
        if self.port.is_some() && self.host.is_none() && self.custom_domain_name.is_none() {
            return bad(format!("{key}.port is set without {key}.host"));
        }
        if let Some(db) = &self.default_database {
            check_name(&format!("{key}.default_database"), db, false)?;
        }
        if self.resume_paused && self.credentials == CredentialMode::Serverless {
            return bad(format!(
                "{key}.resume_paused applies to provisioned clusters: a Serverless workgroup resumes by itself on the first connection"
            ));
        }
        if self.resume_hold_secs == 0 {
            return bad(format!("{key}.resume_hold_secs must be at least 1"));
        }
        Ok(())
    }
}

/// True for loopback listen addresses (127.0.0.0/8, ::1, localhost).
fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    let host = listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen);
    host.eq_ignore_ascii_case("localhost")
}

/// Redshift's rules for DbUser/DbName/DbGroup names (groups are lowercase only).
fn check_name(key: &str, name: &str, lowercase_only: bool) -> Result<(), ConfigError> {
    let ok_char = |c: char| {
        c.is_ascii_digit()
            || matches!(c, '_' | '+' | '.' | '@' | '-')
            || if lowercase_only {
                c.is_ascii_lowercase()
            } else {
                c.is_ascii_alphabetic()
            }
    };
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if name.is_empty() || name.len() > 64 || !first_ok || !name.chars().all(ok_char) {
        return Err(ConfigError::Invalid(format!(
            "{key} = {name:?}: must be 1 to 64 {}letters, digits or _ + . @ -, starting with a letter",
            if lowercase_only { "lowercase " } else { "" }
        )));
    }
    if name.eq_ignore_ascii_case("public") {
        return Err(ConfigError::Invalid(format!(
            "{key} = {name:?}: PUBLIC is reserved"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[cluster]\nidentifier = \"c1\"\n";

    #[test]
    fn defaults_are_safe() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.listen, "127.0.0.1:5439");
        assert_eq!(c.cluster[0].sslmode, SslMode::VerifyFull);
        assert_eq!(c.cluster[0].duration_seconds, 900);
        assert_eq!(
            c.cluster[0].credentials,
            CredentialMode::GetClusterCredentials
        );
        assert_eq!(c.limits.handshake_timeout_secs, 10);
        assert_eq!(c.aws.timeout_secs, 10);
    }

    #[test]
    fn rejects_out_of_range_and_unknown_keys() {
        let e =
            Config::from_toml("[cluster]\nidentifier=\"c\"\nduration_seconds=60\n").unwrap_err();
        assert!(e.to_string().contains("duration_seconds"), "{e}");
        let e =
            Config::from_toml("[cluster]\nidentifier=\"c\"\nsslmode=\"disable\"\n").unwrap_err();
        assert!(e.to_string().contains("allow_plaintext"), "{e}");
        assert!(Config::from_toml("[cluster]\nidentifier=\"c\"\nbogus=1\n").is_err());
        let e = Config::from_toml(
            "[cluster]\nidentifier=\"c\"\n[[users]]\nclient_user=\"a\"\ndb_groups=[\"Analysts\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("lowercase"), "{e}");
    }

    #[test]
    fn credential_modes_are_checked() {
        let e = Config::from_toml("[cluster]\ncredentials=\"serverless\"\n").unwrap_err();
        assert!(e.to_string().contains("workgroup is required"), "{e}");
        let e =
            Config::from_toml("[cluster]\ncredentials=\"serverless\"\nworkgroup=\"Bad_Name\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("a-z, 0-9"), "{e}");
        Config::from_toml("[cluster]\ncredentials=\"serverless\"\nworkgroup=\"wg-1\"\n").unwrap();
        let e = Config::from_toml("[cluster]\nduration_seconds=900\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("identifier (or custom_domain_name) is required"),
            "{e}"
        );
        Config::from_toml("[cluster]\ncustom_domain_name=\"db.example.com\"\n").unwrap();
        // db_user/db_groups do not apply when AWS derives the user from the IAM identity.
        let e = Config::from_toml(
            "[cluster]\ncredentials=\"get-cluster-credentials-with-iam\"\nidentifier=\"c\"\n[[users]]\nclient_user=\"a\"\ndb_groups=[\"x\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("do not apply"), "{e}");
        let e = Config::from_toml(
            "[cluster]\nidentifier=\"c\"\n[[users]]\nclient_user=\"a\"\nrole_arn=\"analyst\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("role ARN"), "{e}");
    }

    #[test]
    fn several_targets_need_names_and_route_by_database() {
        let e = Config::from_toml("[[cluster]]\nidentifier=\"a\"\n[[cluster]]\nidentifier=\"b\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("name is required"), "{e}");
        let c = Config::from_toml(
            "[[cluster]]\nname=\"prod\"\nidentifier=\"a\"\n[[cluster]]\nname=\"lake\"\ncredentials=\"serverless\"\nworkgroup=\"lake-wg\"\n",
        )
        .unwrap();
        assert_eq!(c.route(Some("prod")).unwrap(), (0, None));
        assert_eq!(c.route(Some("lake/sales")).unwrap(), (1, Some("sales")));
        let e = c.route(Some("nope")).unwrap_err();
        assert!(e.contains("prod, lake"), "{e}");
        assert!(c.route(None).is_err());
        // One target: the database is the DbName, whatever it is.
        let one = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(one.route(Some("x/y")).unwrap(), (0, Some("x/y")));
    }

    #[test]
    fn exposed_listener_needs_client_auth_or_an_explicit_opt_in() {
        let base = "listen = \"0.0.0.0:5439\"\n[cluster]\nidentifier = \"c\"\n";
        let e = Config::from_toml(base).unwrap_err();
        assert!(e.to_string().contains("not a loopback address"), "{e}");
        Config::from_toml(&format!(
            "{base}[client_auth]\nallow_unauthenticated_network = true\n"
        ))
        .unwrap();
        let v = scram::ScramVerifier::hash("pw");
        Config::from_toml(&format!(
            "{base}[client_auth]\nmethod = \"scram-sha-256\"\nscram_verifiers = {{ alice = \"{v}\" }}\n"
        ))
        .unwrap();
        let e = Config::from_toml(&format!("{base}[client_auth]\nmethod = \"scram-sha-256\"\nscram_verifiers = {{ alice = \"pw\" }}\n"))
            .unwrap_err();
        assert!(e.to_string().contains("hash-password"), "{e}");
        let e =
            Config::from_toml(&format!("{base}[client_auth]\nmethod = \"cert\"\n")).unwrap_err();
        assert!(e.to_string().contains("ca_file"), "{e}");
        // Loopback in all its spellings needs nothing.
        for l in ["127.0.0.1:1", "[::1]:1", "localhost:1", "127.0.0.2:1"] {
            Config::from_toml(&format!(
                "listen = \"{l}\"\n[cluster]\nidentifier = \"c\"\n"
            ))
            .unwrap();
        }
        // A target's own listener counts too.
        let e = Config::from_toml("[cluster]\nidentifier = \"c\"\nlisten = \"10.1.2.3:5440\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("10.1.2.3"), "{e}");
    }

    #[test]
    fn admin_section_is_checked_and_unknown_keys_stay_errors() {
        let c = Config::from_toml(&format!(
            "log_format = \"json\"\n{MINIMAL}[admin]\nlisten = \"127.0.0.1:9187\"\nusers = [\"ops\"]\nmin_sigterm_delay_secs = 5\n"
        ))
        .unwrap();
        assert_eq!(c.admin.users, ["ops"]);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(c.admin.listen.is_some());
        let e =
            Config::from_toml(&format!("{MINIMAL}[admin]\nlisten = \"nowhere\"\n")).unwrap_err();
        assert!(e.to_string().contains("admin.listen"), "{e}");
        assert!(Config::from_toml(&format!("{MINIMAL}[admin]\nbogus = 1\n")).is_err());
        let e = Config::from_toml(&format!("log_filter = \"info,=[\"\n{MINIMAL}")).unwrap_err();
        assert!(e.to_string().contains("log_filter"), "{e}");
    }

    #[test]
    fn peers_need_an_own_id_and_distinct_peer_ids() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}[peers]\npeer_id = 1\naddresses = {{ \"2\" = \"10.0.0.2:5439\" }}\n"
        ))
        .unwrap();
        assert_eq!(c.peers.peer_list(), vec![(2, "10.0.0.2:5439".to_owned())]);
        for bad in [
            "peer_id = 1\naddresses = { \"1\" = \"h:1\" }",
            "addresses = { \"2\" = \"h:1\" }",
            "peer_id = 1\naddresses = { \"x\" = \"h:1\" }",
            "peer_id = 1\naddresses = { \"2\" = \"nope\" }",
        ] {
            let e = Config::from_toml(&format!("{MINIMAL}[peers]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains("peers."), "{e}");
        }
    }

    #[test]
    fn peers_dns_is_a_name_and_port_with_a_refresh_and_an_optional_hosts_file() {
        let c = Config::from_toml(&format!(
            "{MINIMAL}[peers]\ndns = \"proxy-peers:5439\"\ndns_refresh_secs = 3\nhosts_file = \"/tmp/hosts\"\n"
        ))
        .unwrap();
        assert_eq!(c.peers.dns_target(), Some(("proxy-peers".into(), 5439)));
        assert_eq!(c.peers.dns_refresh(), Duration::from_secs(3));
        assert_eq!(c.peers.id(), PeerId::Fixed(0));
        let c = Config::from_toml(&format!(
            "{MINIMAL}[peers]\ndns = \"[::1]:5439\"\npeer_id = \"auto\"\n"
        ))
        .unwrap();
        assert_eq!(c.peers.dns_target(), Some(("::1".into(), 5439)));
        assert_eq!(c.peers.dns_refresh(), Duration::from_secs(10));
        assert_eq!(c.peers.id(), PeerId::Auto);
    }

    #[test]
    fn bad_peers_dns_settings_are_refused_naming_the_key() {
        for (bad, key) in [
            ("dns = \"proxy-peers\"", "peers.dns"),
            ("dns = \"proxy-peers:0\"", "peers.dns"),
            ("dns = \":5439\"", "peers.dns"),
            (
                "dns = \"p:1\"\npeer_id = 1\naddresses = { \"2\" = \"h:1\" }",
                "peers.dns and peers.addresses",
            ),
            (
                "dns = \"p:1\"\ndns_refresh_secs = 0",
                "peers.dns_refresh_secs",
            ),
            ("dns_refresh_secs = 5", "peers.dns_refresh_secs"),
            ("hosts_file = \"/etc/hosts\"", "peers.hosts_file"),
            ("peer_id = 256", "peers.peer_id"),
            ("peer_id = -1", "peers.peer_id"),
            ("peer_id = \"first\"", "peers.peer_id"),
        ] {
            let e = Config::from_toml(&format!("{MINIMAL}[peers]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../config.example.toml");
        Config::from_toml(text).unwrap();
    }
}
