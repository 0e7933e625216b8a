//! End-to-end tests: the real AWS SDK (`aws-sdk-redshift`) against the emulator, plus raw HTTP
//! requests for what the SDK never sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_redshift::config::retry::RetryConfig;
use aws_sdk_redshift::config::timeout::TimeoutConfig;
use aws_sdk_redshift::error::ProvideErrorMetadata;
use aws_sdk_redshift::operation::describe_clusters::DescribeClustersError;
use aws_sdk_redshift::operation::get_cluster_credentials::GetClusterCredentialsError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::provision::fake::FakeCatalog;
use crate::provision::{password_verifier, RoleProvisioner};
use crate::{AccessKey, EmulatedCluster, Emulator, EmulatorConfig, Fault};

const AKID: &str = "AKIDTEST";
const SECRET: &str = "test-secret";

fn config(keys: Vec<AccessKey>) -> EmulatorConfig {
    EmulatorConfig {
        region: "us-east-1".into(),
        keys,
        clusters: vec![EmulatedCluster {
            identifier: "c1".into(),
            host: "db.example.internal".into(),
            port: 5439,
            admin: tokio_postgres::Config::new(),
        }],
        md5_users: vec!["IAM:mdfive".into()],
        ..Default::default()
    }
}

fn default_keys() -> Vec<AccessKey> {
    let mut denied = AccessKey::new("AKIDDENY", "deny-secret");
    denied.denied_actions = vec![
        "redshift:JoinGroup".into(),
        "redshift:CreateClusterUser".into(),
        "redshift:DescribeClusters".into(),
    ];
    let mut session = AccessKey::new("ASIATEST", "session-secret");
    session.session_token = Some("the-token".into());
    vec![AccessKey::new(AKID, SECRET), denied, session]
}

async fn start(catalog: Arc<FakeCatalog>) -> Emulator {
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let p: Arc<dyn RoleProvisioner> = catalog;
    Emulator::start_with(config(default_keys()), bind, vec![("c1".into(), p)])
        .await
        .unwrap()
}

fn client_with(
    emu: &Emulator,
    akid: &str,
    secret: &str,
    token: Option<&str>,
    region: &str,
    retries: bool,
) -> aws_sdk_redshift::Client {
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
    let conf = aws_sdk_redshift::Config::builder()
        .behavior_version(aws_sdk_redshift::config::BehaviorVersion::latest())
        .region(aws_sdk_redshift::config::Region::new(region.to_owned()))
        .endpoint_url(emu.endpoint_url())
        .credentials_provider(aws_credential_types::Credentials::new(
            akid,
            secret,
            token.map(str::to_owned),
            None,
            "test",
        ))
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(2))
                .build(),
        )
        .http_client(http)
        .build();
    aws_sdk_redshift::Client::from_conf(conf)
}

fn client(emu: &Emulator) -> aws_sdk_redshift::Client {
    client_with(emu, AKID, SECRET, None, "us-east-1", false)
}

#[tokio::test]
async fn get_cluster_credentials_provisions_login_role() {
    let catalog = Arc::new(FakeCatalog::with_roles(&["alice", "sales"]));
    let emu = start(catalog.clone()).await;
    let c = client(&emu);

    let before = std::time::SystemTime::now();
    let out = c
        .get_cluster_credentials()
        .db_user("alice")
        .db_name("dev")
        .cluster_identifier("c1")
        .duration_seconds(1800)
        .db_groups("sales")
        .db_groups("missing")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
    let password = out.db_password().unwrap().to_owned();
    assert_eq!(password.len(), 64);
    let exp = out.expiration().unwrap();
    let secs_ahead = exp.secs()
        - before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
    assert!((1799..=1802).contains(&secs_ahead), "{secs_ahead}");

    let role = catalog.role("IAM:alice").unwrap();
    assert!(role.login);
    assert!(role.verifier.unwrap().starts_with("SCRAM-SHA-256$"));
    assert!(role.valid_until.unwrap().ends_with("+00"));
    assert_eq!(
        role.member_of.into_iter().collect::<Vec<_>>(),
        vec!["alice".to_string(), "sales".to_string()]
    );

    // A later credential without groups drops the group membership.
    let out2 = c
        .get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_ne!(out2.db_password(), Some(password.as_str()));
    let role = catalog.role("IAM:alice").unwrap();
    assert_eq!(role.member_of.len(), 1);
    assert_eq!(emu.call_count("GetClusterCredentials"), 2);
    assert_eq!(emu.total_calls(), 2);
    emu.shutdown().await;
}

#[tokio::test]
async fn auto_create_md5_and_missing_user() {
    let catalog = Arc::new(FakeCatalog::with_roles(&["mdfive"]));
    let emu = start(catalog.clone()).await;
    let c = client(&emu);

    let out = c
        .get_cluster_credentials()
        .db_user("bob")
        .cluster_identifier("c1")
        .auto_create(true)
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMA:bob"));
    assert!(!catalog.role("bob").unwrap().login);
    assert!(catalog.role("IAMA:bob").unwrap().login);

    // Missing user without AutoCreate: the call succeeds, nothing is provisioned.
    let out = c
        .get_cluster_credentials()
        .db_user("carol")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAM:carol"));
    assert!(catalog.role("IAM:carol").is_none());

    let out = c
        .get_cluster_credentials()
        .db_user("mdfive")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    let pw = out.db_password().unwrap();
    assert_eq!(
        catalog.role("IAM:mdfive").unwrap().verifier.unwrap(),
        password_verifier(pw, "IAM:mdfive", true)
    );
}

#[tokio::test]
async fn describe_clusters_and_errors() {
    let emu = start(Arc::new(FakeCatalog::default())).await;
    let c = client(&emu);

    let out = c
        .describe_clusters()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    let cluster = &out.clusters()[0];
    assert_eq!(cluster.cluster_identifier(), Some("c1"));
    assert_eq!(cluster.cluster_status(), Some("available"));
    let ep = cluster.endpoint().unwrap();
    assert_eq!(
        (ep.address(), ep.port()),
        (Some("db.example.internal"), Some(5439))
    );
    assert_eq!(
        c.describe_clusters().send().await.unwrap().clusters().len(),
        1
    );

    let err = c
        .describe_clusters()
        .cluster_identifier("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeClustersError::ClusterNotFoundFault(_)),
        "{err:?}"
    );

    let err = c
        .get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetClusterCredentialsError::ClusterNotFoundFault(_)),
        "{err:?}"
    );
    assert_eq!(err.message(), Some("Cluster nope not found."));

    for (user, duration) in [("select", 900), ("alice", 100), ("9lives", 900)] {
        let err = c
            .get_cluster_credentials()
            .db_user(user)
            .cluster_identifier("c1")
            .duration_seconds(duration)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some("InvalidParameterValue"),
            "{user} {duration}"
        );
    }

    let err = c
        .get_cluster_credentials()
        .db_user("alice")
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("CustomDomainAssociationNotFoundFault"));
    assert_eq!(emu.call_count("DescribeClusters"), 3);
    assert_eq!(emu.call_count("GetClusterCredentials"), 5);
}

#[tokio::test]
async fn permissions() {
    let emu = start(Arc::new(FakeCatalog::with_roles(&["alice"]))).await;
    let c = client_with(&emu, "AKIDDENY", "deny-secret", None, "us-east-1", false);
    c.get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    let err = c
        .get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .db_groups("sales")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(
        err.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/emulator is not authorized to perform: \
             redshift:JoinGroup on resource: arn:aws:redshift:us-east-1:123456789012:dbgroup:c1/sales"
        )
    );
    let err = c
        .get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .auto_create(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    let err = c.describe_clusters().send().await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
}

#[tokio::test]
async fn signature_failures_through_sdk() {
    let emu = start(Arc::new(FakeCatalog::with_roles(&["alice"]))).await;
    let cases = [
        (AKID, "wrong", None, "us-east-1", "SignatureDoesNotMatch"),
        (
            "AKIDNOPE",
            SECRET,
            None,
            "us-east-1",
            "InvalidClientTokenId",
        ),
        (AKID, SECRET, None, "eu-west-1", "SignatureDoesNotMatch"),
        (
            "ASIATEST",
            "session-secret",
            None,
            "us-east-1",
            "InvalidClientTokenId",
        ),
        (
            "ASIATEST",
            "session-secret",
            Some("bad"),
            "us-east-1",
            "InvalidClientTokenId",
        ),
    ];
    for (akid, secret, token, region, code) in cases {
        let c = client_with(&emu, akid, secret, token, region, false);
        let err = c.describe_clusters().send().await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{akid} {secret} {region}");
    }
    let c = client_with(
        &emu,
        "ASIATEST",
        "session-secret",
        Some("the-token"),
        "us-east-1",
        false,
    );
    c.describe_clusters().send().await.unwrap();
    // Failed signatures are counted but consume no injected fault.
    assert_eq!(emu.call_count("DescribeClusters"), 6);
}

#[tokio::test]
async fn injected_faults() {
    let emu = start(Arc::new(FakeCatalog::with_roles(&["alice"]))).await;
    let c = client(&emu);
    let gcc = || {
        c.get_cluster_credentials()
            .db_user("alice")
            .cluster_identifier("c1")
            .send()
    };

    emu.fail_next(1, Fault::Throttle);
    let err = gcc().await.unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(err.message(), Some("Rate exceeded"));
    gcc().await.unwrap();

    // The SDK's standard retry recovers from one throttle: two calls reach the emulator.
    let retrying = client_with(&emu, AKID, SECRET, None, "us-east-1", true);
    emu.fail_next(1, Fault::Throttle);
    let before = emu.call_count("GetClusterCredentials");
    retrying
        .get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(emu.call_count("GetClusterCredentials"), before + 2);

    emu.fail_next(
        1,
        Fault::Error {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: "try later".into(),
        },
    );
    let err = gcc().await.unwrap_err();
    assert_eq!(err.code(), Some("ServiceUnavailable"));

    emu.fail_next(1, Fault::Disconnect);
    let err = gcc().await.unwrap_err();
    assert!(
        matches!(
            err,
            aws_sdk_redshift::error::SdkError::DispatchFailure(_)
                | aws_sdk_redshift::error::SdkError::ResponseError(_)
        ),
        "{err:?}"
    );

    emu.fail_next(1, Fault::Hang);
    let t = Instant::now();
    let err = gcc().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_redshift::error::SdkError::TimeoutError(_)),
        "{err:?}"
    );
    assert!(t.elapsed() >= Duration::from_secs(2));

    emu.set_delay(Duration::from_millis(300));
    let t = Instant::now();
    gcc().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));

    // clear_faults drops queued faults: the next call succeeds (retries are off here).
    emu.fail_next(3, Fault::Throttle);
    emu.clear_faults();
    gcc().await.unwrap();

    // A hanging call is released when the emulator stops.
    emu.fail_next(1, Fault::Hang);
    let raw = tokio::spawn(raw_http(
        emu.local_addr(),
        "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(2));
    drop(raw);
}

/// Sends raw bytes and returns everything the server answers before closing.
async fn raw_http(addr: SocketAddr, request: &'static str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn raw_http_errors() {
    let emu = start(Arc::new(FakeCatalog::default())).await;
    let resp = raw_http(
        emu.local_addr(),
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 42\r\n\r\nAction=DescribeClusters&Version=2012-12-01",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("<Code>MissingAuthenticationToken</Code>"),
        "{resp}"
    );
    assert!(resp.contains("<Type>Sender</Type>"), "{resp}");

    let resp = raw_http(
        emu.local_addr(),
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    let resp = raw_http(emu.local_addr(), "garbage\r\n\r\n").await;
    assert!(!resp.contains("200 OK"));
    assert_eq!(emu.call_count("DescribeClusters"), 1);
}
