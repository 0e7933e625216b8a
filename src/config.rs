//! The configuration file: its shape, its defaults, and the checks run at start.
//!
//! Every key is documented in `config.example.toml`. Loading fails with a message
//! naming the key when a value is out of range, so mistakes surface at start, not
//! at a client's first login.

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
    pub cluster: ClusterConfig,
    /// Mapping rules; the first whose `client_user` matches wins.
    #[serde(default)]
    pub users: Vec<UserRule>,
    #[serde(default)]
    pub client_tls: ClientTlsConfig,
    #[serde(default)]
    pub limits: Limits,
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

/// The Redshift cluster behind the proxy and how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// ClusterIdentifier passed to GetClusterCredentials.
    pub identifier: String,
    /// Endpoint host; omitted: DescribeClusters finds host and port.
    pub host: Option<String>,
    /// Endpoint port (default 5439 when `host` is set).
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
    /// DbName used when the client sends no `database` (PostgreSQL would use the user name).
    pub default_database: Option<String>,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRule {
    /// The user name the client sends, or `*` for any.
    pub client_user: String,
    /// DbUser; default: the client user name.
    pub db_user: Option<String>,
    /// DbGroups joined for sessions opened with the minted credential.
    #[serde(default)]
    pub db_groups: Vec<String>,
    /// AutoCreate: let Redshift create the user at first login.
    #[serde(default)]
    pub auto_create: bool,
}

/// TLS offered to clients (answering SSLRequest).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// PEM certificate chain; omitted: a self-signed certificate is made at start.
    pub cert_file: Option<PathBuf>,
    /// PEM private key matching `cert_file`.
    pub key_file: Option<PathBuf>,
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
fn default_max_clients() -> usize {
    1000
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_max_startup() -> usize {
    10_000
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
        let c = &self.cluster;
        if c.identifier.is_empty() {
            return bad("cluster.identifier must not be empty".into());
        }
        if !(900..=3600).contains(&c.duration_seconds) {
            return bad(format!(
                "cluster.duration_seconds = {} is outside 900..=3600 (the range GetClusterCredentials accepts)",
                c.duration_seconds
            ));
        }
        if c.sslmode == SslMode::Disable && !c.allow_plaintext {
            return bad(
                "cluster.sslmode = \"disable\" sends credentials in clear text and Redshift refuses IAM passwords without TLS; \
                 set cluster.allow_plaintext = true only for a local test cluster"
                    .into(),
            );
        }
        if c.port.is_some() && c.host.is_none() {
            return bad("cluster.port is set without cluster.host".into());
        }
        if let Some(db) = &c.default_database {
            check_name("cluster.default_database", db, false)?;
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.client_user.is_empty() {
                return bad(format!("users[{i}].client_user must not be empty"));
            }
            if let Some(db_user) = &u.db_user {
                check_name(&format!("users[{i}].db_user"), db_user, false)?;
            }
            for g in &u.db_groups {
                check_name(&format!("users[{i}].db_groups"), g, true)?;
            }
        }
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
        Ok(())
    }

    pub fn api_timeout(&self) -> Duration {
        Duration::from_secs(self.aws.timeout_secs)
    }
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
        assert_eq!(c.cluster.sslmode, SslMode::VerifyFull);
        assert_eq!(c.cluster.duration_seconds, 900);
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
    fn example_config_is_valid() {
        let text = include_str!("../config.example.toml");
        Config::from_toml(text).unwrap();
    }
}
