//! Command-line entry for `redshift-iam-proxy emulator`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::{
    AccessKey, EmulatedCluster, EmulatedRole, EmulatedWorkgroup, Emulator, EmulatorConfig, Fault,
};

/// Default access key id accepted when no `--access-key` is given.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
/// Default secret for [`DEFAULT_ACCESS_KEY_ID`].
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "emulator-secret";

/// Why: `--cluster ID=HOST:PORT`, one emulated cluster's identifier and database endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub identifier: String,
    pub host: String,
    pub port: u16,
}

impl FromStr for ClusterSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, endpoint) = s
            .split_once('=')
            .ok_or_else(|| format!("expected ID=HOST:PORT, got '{s}'"))?;
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| format!("expected ID=HOST:PORT, got '{s}'"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if id.is_empty() || host.is_empty() {
            return Err(format!("expected ID=HOST:PORT, got '{s}'"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("invalid port in '{s}'"))?;
        Ok(ClusterSpec {
            identifier: id.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

/// `--role ARN[:EXTERNAL_ID][=GROUP,GROUP…]`: a role ARN has exactly six `:`-separated fields,
/// so a seventh field is the external ID; groups follow the last `=` (an external ID therefore
/// cannot contain `=`).
fn parse_role(s: &str) -> Result<EmulatedRole, String> {
    let usage = || format!("expected ARN[:EXTERNAL_ID][=GROUP,...], got '{s}'");
    let (spec, groups) = match s.rsplit_once('=') {
        Some((spec, groups)) => (spec, groups),
        None => (s, ""),
    };
    let fields: Vec<&str> = spec.splitn(7, ':').collect();
    if fields.len() < 6 || fields[0] != "arn" || !fields[5].starts_with("role/") {
        return Err(usage());
    }
    let arn = fields[..6].join(":");
    let external_id = fields.get(6).map(|e| (*e).to_owned());
    if external_id.as_deref() == Some("") {
        return Err(usage());
    }
    let db_groups = groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(EmulatedRole {
        arn,
        external_id,
        db_groups,
    })
}

/// `--custom-domain DOMAIN=ID`.
fn parse_custom_domain(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((d, id)) if !d.is_empty() && !id.is_empty() => Ok((d.to_owned(), id.to_owned())),
        _ => Err(format!(
            "expected DOMAIN=CLUSTER_ID_OR_WORKGROUP, got '{s}'"
        )),
    }
}

/// Why: one `--access-key`: the key, and the identity given with it (`=ARN`), if any; keys
/// without one get `--key-arn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeySpec {
    pub key: AccessKey,
    pub arn: Option<String>,
}

/// `--access-key ID:SECRET[:SESSION_TOKEN][=ARN]`. The identity starts at the first `=arn:`
/// (a session token may contain `=`, never `:`, and an ARN always starts with `arn:`).
fn parse_access_key(s: &str) -> Result<AccessKeySpec, String> {
    let usage = || {
        format!(
            "expected ID:SECRET, ID:SECRET:SESSION_TOKEN, optionally followed by =ARN, got '{s}'"
        )
    };
    let (key, arn) = match s.find("=arn:") {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    if let Some(arn) = arn {
        if arn.split(':').count() < 6 || arn.ends_with(':') || arn.ends_with('/') {
            return Err(format!("'{arn}' is not an ARN; {}", usage()));
        }
    }
    let mut parts = key.splitn(3, ':');
    let (Some(id), Some(secret)) = (parts.next(), parts.next()) else {
        return Err(usage());
    };
    if id.is_empty() || secret.is_empty() {
        return Err(usage());
    }
    let mut key = AccessKey::new(id, secret);
    key.session_token = parts.next().filter(|t| !t.is_empty()).map(str::to_owned);
    Ok(AccessKeySpec {
        key,
        arn: arn.map(str::to_owned),
    })
}

fn parse_conninfo(s: &str) -> Result<tokio_postgres::Config, String> {
    tokio_postgres::Config::from_str(s).map_err(|e| format!("invalid conninfo: {e}"))
}

/// Runs a local emulator of the Redshift credential APIs, so tests and demos need no AWS account.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Region clients must sign for.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Accepted access key, ID:SECRET or ID:SECRET:SESSION_TOKEN, optionally followed by
    /// =ARN, the identity behind this key (IAM user or assumed role; default --key-arn)
    /// (repeatable).
    #[arg(
        long = "access-key",
        value_name = "ID:SECRET[:TOKEN][=ARN]",
        value_parser = parse_access_key,
        default_value = "AKIDEXAMPLE:emulator-secret"
    )]
    pub access_keys: Vec<AccessKeySpec>,
    /// Identity (IAM user ARN) behind every --access-key not given its own =ARN; decides the
    /// IAM:NAME DbUser of GetClusterCredentialsWithIAM / GetCredentials and what
    /// GetCallerIdentity answers.
    #[arg(
        long,
        value_name = "ARN",
        default_value = crate::DEFAULT_KEY_ARN
    )]
    pub key_arn: String,
    /// Role AssumeRole accepts, ARN[:EXTERNAL_ID][=GROUP,...]; the groups are what its IAMR:
    /// login joins (repeatable).
    #[arg(long = "role", value_name = "ARN[:EXTERNAL_ID][=GROUPS]", value_parser = parse_role)]
    pub roles: Vec<EmulatedRole>,
    /// Emulated cluster ID=HOST:PORT, the PostgreSQL server that stands in for it (repeatable).
    #[arg(long = "cluster", value_name = "ID=HOST:PORT")]
    pub clusters: Vec<ClusterSpec>,
    /// Emulated Redshift Serverless workgroup NAME=HOST:PORT (repeatable).
    #[arg(long = "workgroup", value_name = "NAME=HOST:PORT")]
    pub workgroups: Vec<ClusterSpec>,
    /// Custom domain name associated with a cluster or workgroup, DOMAIN=ID (repeatable).
    #[arg(long = "custom-domain", value_name = "DOMAIN=ID", value_parser = parse_custom_domain)]
    pub custom_domains: Vec<(String, String)>,
    /// libpq-style conninfo of a superuser used to provision roles on every cluster/workgroup
    /// (default per cluster: "host=HOST port=PORT user=postgres dbname=postgres").
    #[arg(long, value_name = "CONNINFO", value_parser = parse_conninfo)]
    pub admin: Option<tokio_postgres::Config>,
    /// Login role (IAM:name) or DbUser whose password is stored as MD5 (repeatable).
    #[arg(long = "md5-user", value_name = "NAME")]
    pub md5_users: Vec<String>,
    /// Delay every answer by this many milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub delay_ms: u64,
    /// Answer the first N calls with Throttling ("Rate exceeded").
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub throttle_first: usize,
    /// Milliseconds ResumeCluster (and RebootCluster) take before a cluster is available again.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub resume_delay_ms: u64,
    /// Cluster that starts paused (DescribeClusters says `paused` until ResumeCluster; the
    /// standalone emulator does not stop or start the database itself) (repeatable).
    #[arg(long = "paused", value_name = "ID")]
    pub paused: Vec<String>,
}

impl EmulatorArgs {
    /// The emulator configuration these options describe.
    pub fn to_config(&self) -> EmulatorConfig {
        let admin = |c: &ClusterSpec| {
            self.admin.clone().unwrap_or_else(|| {
                let mut cfg = tokio_postgres::Config::new();
                cfg.host(&c.host)
                    .port(c.port)
                    .user("postgres")
                    .dbname("postgres");
                cfg
            })
        };
        let clusters = self
            .clusters
            .iter()
            .map(|c| EmulatedCluster {
                identifier: c.identifier.clone(),
                host: c.host.clone(),
                port: c.port,
                admin: admin(c),
            })
            .collect();
        let workgroups = self
            .workgroups
            .iter()
            .map(|w| EmulatedWorkgroup {
                name: w.identifier.clone(),
                host: w.host.clone(),
                port: w.port,
                admin: admin(w),
            })
            .collect();
        let keys = self
            .access_keys
            .iter()
            .map(|k| AccessKey {
                arn: k.arn.clone().unwrap_or_else(|| self.key_arn.clone()),
                ..k.key.clone()
            })
            .collect();
        EmulatorConfig {
            region: self.region.clone(),
            keys,
            clusters,
            md5_users: self.md5_users.clone(),
            roles: self.roles.clone(),
            workgroups,
            custom_domains: self.custom_domains.clone(),
            resume_delay: Duration::from_millis(self.resume_delay_ms),
            paused_clusters: self.paused.clone(),
        }
    }
}

/// Starts the emulator, prints its endpoint URL on one line, and serves until `shutdown`.
pub async fn run(
    args: EmulatorArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let emu = Emulator::start(args.to_config(), SocketAddr::new(args.bind, args.port)).await?;
    if args.delay_ms > 0 {
        emu.set_delay(Duration::from_millis(args.delay_ms));
    }
    if args.throttle_first > 0 {
        emu.fail_next(args.throttle_first, Fault::Throttle);
    }
    println!("{}", emu.endpoint_url());
    shutdown.await;
    emu.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Why: a minimal parser wrapping the subcommand options for tests.
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    fn parse(args: &[&str]) -> Result<EmulatorArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.args)
    }

    /// The configuration of a command line using every option.
    fn full_config() -> EmulatorConfig {
        parse(&[
            "--port",
            "0",
            "--access-key",
            "AK1:s1",
            "--access-key",
            "AK2:s2:tok",
            "--access-key",
            "AK3:s3=arn:aws:iam::123456789012:user/bob",
            "--access-key",
            "ASIA4:s4:tok/en==+=arn:aws:sts::123456789012:assumed-role/analyst/s1",
            "--cluster",
            "c1=localhost:5432",
            "--cluster",
            "c2=[::1]:5433",
            "--admin",
            "host=/tmp user=postgres",
            "--md5-user",
            "IAM:bob",
            "--delay-ms",
            "5",
            "--throttle-first",
            "2",
            "--key-arn",
            "arn:aws:iam::123456789012:user/ci",
            "--role",
            "arn:aws:iam::123456789012:role/analyst:ext-1=analysts,readers",
            "--role",
            "arn:aws:iam::123456789012:role/path/plain",
            "--workgroup",
            "wg1=localhost:5440",
            "--custom-domain",
            "db.example.com=c1",
            "--resume-delay-ms",
            "1500",
            "--paused",
            "c2",
        ])
        .unwrap()
        .to_config()
    }

    #[test]
    fn defaults_serve_127_0_0_1_8080_in_us_east_1_for_the_default_key() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.bind.to_string(), "127.0.0.1");
        assert_eq!(a.port, 8080);
        assert_eq!(a.region, "us-east-1");
        assert_eq!(
            a.access_keys,
            vec![AccessKeySpec {
                key: AccessKey::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY),
                arn: None,
            }]
        );
        assert!(a.clusters.is_empty());
        assert_eq!(
            a.to_config().keys[0].arn,
            "arn:aws:iam::123456789012:user/emulator"
        );
    }

    #[test]
    fn access_keys_are_repeatable_and_may_carry_a_session_token() {
        let cfg = full_config();
        assert_eq!(cfg.keys.len(), 4);
        assert_eq!(cfg.keys[1].session_token.as_deref(), Some("tok"));
    }

    #[test]
    fn an_access_key_has_its_own_identity_or_else_key_arn() {
        let keys: Vec<(String, String, Option<String>)> = full_config()
            .keys
            .into_iter()
            .map(|k| (k.access_key_id, k.arn, k.session_token))
            .collect();
        let ci = "arn:aws:iam::123456789012:user/ci";
        assert_eq!(
            keys,
            vec![
                ("AK1".into(), ci.into(), None),
                ("AK2".into(), ci.into(), Some("tok".into())),
                (
                    "AK3".into(),
                    "arn:aws:iam::123456789012:user/bob".into(),
                    None
                ),
                (
                    "ASIA4".into(),
                    "arn:aws:sts::123456789012:assumed-role/analyst/s1".into(),
                    Some("tok/en==+".into())
                ),
            ]
        );
    }

    #[test]
    fn cluster_endpoints_may_be_bracketed_ipv6() {
        let cfg = full_config();
        assert_eq!(cfg.clusters[1].host, "::1");
        assert_eq!(cfg.clusters[1].port, 5433);
    }

    #[test]
    fn admin_conninfo_provisions_clusters_and_workgroups() {
        let cfg = full_config();
        assert_eq!(cfg.clusters[0].admin.get_user(), Some("postgres"));
        assert_eq!(cfg.workgroups[0].admin.get_user(), Some("postgres"));
    }

    #[test]
    fn md5_users_are_passed_through() {
        assert_eq!(full_config().md5_users, vec!["IAM:bob"]);
    }

    #[test]
    fn roles_carry_an_optional_external_id_and_groups() {
        assert_eq!(
            full_config().roles,
            vec![
                EmulatedRole {
                    arn: "arn:aws:iam::123456789012:role/analyst".into(),
                    external_id: Some("ext-1".into()),
                    db_groups: vec!["analysts".into(), "readers".into()],
                },
                EmulatedRole {
                    arn: "arn:aws:iam::123456789012:role/path/plain".into(),
                    external_id: None,
                    db_groups: vec![],
                },
            ]
        );
    }

    #[test]
    fn workgroups_and_custom_domains_are_configured() {
        let cfg = full_config();
        assert_eq!(cfg.workgroups[0].name, "wg1");
        assert_eq!(cfg.workgroups[0].port, 5440);
        assert_eq!(
            cfg.custom_domains,
            vec![("db.example.com".to_string(), "c1".to_string())]
        );
    }

    #[test]
    fn a_cluster_may_start_paused_with_a_resume_delay() {
        let cfg = full_config();
        assert_eq!(
            (cfg.paused_clusters, cfg.resume_delay),
            (vec!["c2".to_string()], Duration::from_millis(1500))
        );
    }

    #[test]
    fn malformed_options_are_rejected() {
        for (case, option, value) in [
            ("role that is not an ARN", "--role", "analyst"),
            (
                "user ARN as a role",
                "--role",
                "arn:aws:iam::123456789012:user/x",
            ),
            (
                "empty external id",
                "--role",
                "arn:aws:iam::123456789012:role/a:",
            ),
            ("custom domain without id", "--custom-domain", "nodomain"),
            ("cluster without endpoint", "--cluster", "c1"),
            ("access key without secret", "--access-key", "nosecret"),
            (
                "access key identity that is not an ARN",
                "--access-key",
                "AK:s=arn:aws:iam",
            ),
            (
                "access key with an identity but no secret",
                "--access-key",
                "AK=arn:aws:iam::123456789012:user/x",
            ),
            ("unterminated conninfo", "--admin", "host='unterminated"),
        ] {
            assert!(parse(&[option, value]).is_err(), "{case}");
        }
    }

    #[tokio::test]
    async fn run_serves_until_the_shutdown_future_completes() {
        run(parse(&["--port", "0"]).unwrap(), async {})
            .await
            .unwrap();
    }
}
