//! End-to-end tests: the real AWS SDK clients (Redshift, Redshift Serverless, STS, aws-config's
//! `AssumeRoleProvider`) against a running emulator, raw HTTP for what the SDKs never send, and
//! real PostgreSQL logins with the passwords the emulator mints.
//!
//! Every test asserts one behaviour and is named after it. Families of cases that differ only
//! in data (validation errors, denied actions, unknown resources, faults) are tables of
//! `(case, caller, call, expected failure)` run by [`expect_failures`] against one emulator.
//! This module holds the shared bed: one emulator configuration with fake role catalogs
//! (no PostgreSQL) and the SDK clients of each configured identity.

mod faults;
mod lifecycle;
mod postgres;
mod presign;
mod redshift;
mod serverless;
mod signing;
mod sts;

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_redshift::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use futures_util::future::BoxFuture;
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::provision::fake::FakeCatalog;
use crate::provision::RoleProvisioner;
use crate::{
    sigv4, AccessKey, EmulatedCluster, EmulatedRole, EmulatedWorkgroup, Emulator, EmulatorConfig,
};

const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";
/// Assumable with `ExternalId` `ext-123`; its login joins `analysts` (`nogroup` does not exist).
const ANALYST: &str = "arn:aws:iam::123456789012:role/analyst";
/// Assumable without an external id; its login joins no group.
const OPEN: &str = "arn:aws:iam::123456789012:role/team/open";
/// Attempt timeout of every SDK client here (a hanging call fails after it).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why: the callers the bed's emulator knows, so a table row names who makes the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// `AKIDALICE`, IAM user `alice`, allowed everything.
    Alice,
    /// `AKIDDENY`, IAM user `mallory`, denied JoinGroup, CreateClusterUser, DescribeClusters,
    /// GetClusterCredentialsWithIAM, ResumeCluster, sts:AssumeRole and all of Redshift
    /// Serverless.
    Mallory,
    /// `ASIATEST`, a key that must come with session token `the-token`.
    Session,
    /// `AKIDROOT`, the account root (no IAM-mapped database user).
    Root,
}

impl Who {
    fn key(self) -> AccessKey {
        let (id, secret, arn) = match self {
            Who::Alice => ("AKIDALICE", "alice-secret", ALICE),
            Who::Mallory => ("AKIDDENY", "deny-secret", MALLORY),
            Who::Session => ("ASIATEST", "session-secret", crate::DEFAULT_KEY_ARN),
            Who::Root => ("AKIDROOT", "root-secret", "arn:aws:iam::123456789012:root"),
        };
        let mut key = AccessKey::new(id, secret);
        key.arn = arn.into();
        match self {
            Who::Mallory => {
                key.denied_actions = [
                    "redshift:JoinGroup",
                    "redshift:CreateClusterUser",
                    "redshift:DescribeClusters",
                    "redshift:GetClusterCredentialsWithIAM",
                    "redshift:ResumeCluster",
                    "sts:AssumeRole",
                    "redshift-serverless:*",
                ]
                .map(String::from)
                .to_vec();
            }
            Who::Session => key.session_token = Some("the-token".into()),
            Who::Alice | Who::Root => {}
        }
        key
    }

    fn creds(self) -> Credentials {
        let k = self.key();
        creds(
            &k.access_key_id,
            &k.secret_access_key,
            k.session_token.as_deref(),
        )
    }
}

fn creds(akid: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials::new(akid, secret, token.map(str::to_owned), None, "test")
}

/// Why: a running emulator with the fake role catalogs of cluster `c1` and workgroup `wg1`.
struct Bed {
    emu: Emulator,
    cluster: Arc<FakeCatalog>,
    workgroup: Arc<FakeCatalog>,
}

/// The bed's emulator configuration; `clusters`/`workgroups` point at `(host, port, admin)`.
fn config(
    cluster: (&str, u16, tokio_postgres::Config),
    workgroup: (&str, u16, tokio_postgres::Config),
) -> EmulatorConfig {
    EmulatorConfig {
        keys: [Who::Alice, Who::Mallory, Who::Session, Who::Root]
            .map(Who::key)
            .to_vec(),
        clusters: vec![EmulatedCluster {
            identifier: "c1".into(),
            host: cluster.0.into(),
            port: cluster.1,
            admin: cluster.2,
        }],
        workgroups: vec![EmulatedWorkgroup {
            name: "wg1".into(),
            host: workgroup.0.into(),
            port: workgroup.1,
            admin: workgroup.2,
        }],
        roles: vec![
            EmulatedRole {
                arn: ANALYST.into(),
                external_id: Some("ext-123".into()),
                db_groups: vec!["analysts".into(), "nogroup".into()],
            },
            EmulatedRole {
                arn: OPEN.into(),
                external_id: None,
                db_groups: vec![],
            },
        ],
        custom_domains: vec![
            ("db.example.com".into(), "c1".into()),
            ("wg.example.com".into(), "wg1".into()),
        ],
        md5_users: vec!["IAM:mdfive".into()],
        ..Default::default()
    }
}

impl Bed {
    /// Cluster `c1` at `c1.example.internal:5439` has roles alice, sales, mdfive, analysts and
    /// readers; workgroup `wg1` at `wg1.example.internal:5440` has analysts.
    async fn start() -> Bed {
        let cluster = Arc::new(FakeCatalog::with_roles(&[
            "alice", "sales", "mdfive", "analysts", "readers",
        ]));
        let workgroup = Arc::new(FakeCatalog::with_roles(&["analysts"]));
        let c: Arc<dyn RoleProvisioner> = cluster.clone();
        let w: Arc<dyn RoleProvisioner> = workgroup.clone();
        let config = config(
            ("c1.example.internal", 5439, tokio_postgres::Config::new()),
            ("wg1.example.internal", 5440, tokio_postgres::Config::new()),
        );
        let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
        let emu = Emulator::start_with(config, bind, vec![("c1".into(), c), ("wg1".into(), w)])
            .await
            .unwrap();
        Bed {
            emu,
            cluster,
            workgroup,
        }
    }

    async fn sdk(&self, who: Who) -> SdkConfig {
        sdk_config(&self.emu, who.creds(), "us-east-1", false).await
    }

    async fn clients(&self, who: Who) -> Clients {
        Clients::new(&self.sdk(who).await)
    }

    /// Clients signing with `creds` for `region`, with the SDK's standard retry if `retries`.
    async fn clients_with(&self, creds: Credentials, region: &str, retries: bool) -> Clients {
        Clients::new(&sdk_config(&self.emu, creds, region, retries).await)
    }
}

/// An SdkConfig pointed at the emulator with static credentials and the lean HTTPS client.
async fn sdk_config(emu: &Emulator, creds: Credentials, region: &str, retries: bool) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let retry = if retries {
        RetryConfig::standard()
    } else {
        RetryConfig::disabled()
    };
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(emu.endpoint_url())
        .credentials_provider(creds)
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        )
        .http_client(http)
        .load()
        .await
}

/// The base config with credentials from aws-config's `AssumeRoleProvider`.
async fn assumed(base: &SdkConfig, role: &str, external_id: Option<&str>) -> SdkConfig {
    let mut b = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("proxy-session")
        .configure(base);
    if let Some(e) = external_id {
        b = b.external_id(e);
    }
    let provider = b.build().await;
    base.to_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// Why: the three service clients of one identity, handed to every table row's call.
#[derive(Clone)]
struct Clients {
    rs: aws_sdk_redshift::Client,
    sts: aws_sdk_sts::Client,
    sl: aws_sdk_redshiftserverless::Client,
}

impl Clients {
    fn new(config: &SdkConfig) -> Clients {
        Clients {
            rs: aws_sdk_redshift::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            sl: aws_sdk_redshiftserverless::Client::new(config),
        }
    }
}

/// Asserts `t` lies `secs` seconds from now (give or take the call's own duration).
fn assert_expires_in(what: &str, t: &aws_smithy_types::DateTime, secs: i64) {
    let ahead = t.secs() - time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (secs - 5..=secs + 1).contains(&ahead),
        "{what}: expires in {ahead} s, expected {secs} s"
    );
}

/// Why: an SDK call's failure reduced to what the tables compare: the AWS error code and
/// message, and the SDK's typed error variant.
#[derive(Debug)]
struct Failure {
    code: Option<String>,
    message: Option<String>,
    /// `ClusterNotFoundFault`, `Unhandled`, ...; or the `SdkError` kind when no service error.
    variant: String,
}

fn failure<E, R>(e: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + Debug,
    R: Debug,
{
    let debug = match e.as_service_error() {
        Some(service) => format!("{service:?}"),
        None => format!("{e:?}"),
    };
    Failure {
        code: e.code().map(str::to_owned),
        message: e.message().map(str::to_owned),
        variant: debug
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Why: the failure a table row expects: a code, optionally the SDK's typed variant and a
/// fragment of the message.
#[derive(Debug, Clone)]
struct Want {
    code: &'static str,
    typed: Option<&'static str>,
    says: String,
}

fn want(code: &'static str) -> Want {
    Want {
        code,
        typed: None,
        says: String::new(),
    }
}

impl Want {
    fn typed(self, variant: &'static str) -> Want {
        Want {
            typed: Some(variant),
            ..self
        }
    }

    fn says(self, fragment: impl Into<String>) -> Want {
        Want {
            says: fragment.into(),
            ..self
        }
    }

    /// What is wrong with `got`, or `None` when it is what this expects.
    fn mismatch(&self, got: &Failure) -> Option<String> {
        let code_ok = got.code.as_deref() == Some(self.code);
        let typed_ok = self.typed.is_none_or(|t| got.variant == t);
        let says_ok = got
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&self.says));
        (!(code_ok && typed_ok && says_ok)).then(|| format!("expected {self:?}, got {got:?}"))
    }
}

/// Why: one table row's SDK call, type-erased so rows of different operations share a table.
type Call = Box<dyn Fn(&Clients) -> BoxFuture<'static, Result<(), Failure>> + Send + Sync>;

/// Wraps `f` (typically `|c| c.rs.some_operation()...send()`) as a table row's [`Call`].
fn call<F, Fut, O, E, R>(f: F) -> Call
where
    F: Fn(&Clients) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, SdkError<E, R>>> + Send + 'static,
    E: ProvideErrorMetadata + Debug + 'static,
    R: Debug + 'static,
{
    Box::new(move |c| {
        let fut = f(c);
        Box::pin(async move { fut.await.map(|_| ()).map_err(failure) })
    })
}

/// Runs every row as its caller against `bed` (see [`expect_failures_as`]).
async fn expect_failures(bed: &Bed, table: Vec<(&str, Who, Call, Want)>) {
    let mut rows = Vec::new();
    for (case, who, call, want) in table {
        rows.push((case, bed.clients(who).await, call, want));
    }
    expect_failures_as(rows).await;
}

/// Runs every row with its clients and fails once, listing every row (by case name) whose
/// call succeeded or failed differently.
async fn expect_failures_as(table: Vec<(&str, Clients, Call, Want)>) {
    let mut wrong = Vec::new();
    for (case, clients, call, want) in table {
        match call(&clients).await {
            Ok(()) => wrong.push(format!("{case}: succeeded; expected {want:?}")),
            Err(got) => {
                if let Some(m) = want.mismatch(&got) {
                    wrong.push(format!("{case}: {m}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Sends raw bytes and returns everything the server answers before closing.
async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `body` as a POST signed by alice's key for `service`, with `extra` headers; returns
/// the raw response.
async fn signed_raw(emu: &Emulator, service: &str, extra: &[(&str, &str)], body: &str) -> String {
    let amz_date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        HeaderValue::from_str(&emu.local_addr().to_string()).unwrap(),
    );
    headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).unwrap());
    for (k, v) in extra {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    names.sort();
    let auth = sigv4::sign_for_test(
        &sigv4::SignedParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &headers,
            body: body.as_bytes(),
        },
        &Who::Alice.key(),
        "us-east-1",
        service,
        &names,
    );
    let mut req = String::from("POST / HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap()));
    }
    req.push_str(&format!(
        "Authorization: {auth}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    raw_http(emu.local_addr(), &req).await
}
