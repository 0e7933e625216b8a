//! End-to-end tests of the IAM-identity APIs through the real SDK clients: STS (`AssumeRole`,
//! `GetCallerIdentity`, and aws-config's `AssumeRoleProvider`), `GetClusterCredentialsWithIAM`,
//! `DescribeCustomDomainAssociations`, and Redshift Serverless (`GetCredentials`,
//! `GetWorkgroup`); plus raw requests signed for the wrong service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_redshift::operation::describe_custom_domain_associations::DescribeCustomDomainAssociationsError;
use aws_sdk_redshift::operation::get_cluster_credentials_with_iam::GetClusterCredentialsWithIAMError;
use aws_sdk_redshiftserverless::operation::get_credentials::GetCredentialsError;
use aws_sdk_redshiftserverless::operation::get_workgroup::GetWorkgroupError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::provision::fake::FakeCatalog;
use crate::provision::RoleProvisioner;
use crate::{
    sigv4, AccessKey, EmulatedCluster, EmulatedRole, EmulatedWorkgroup, Emulator, EmulatorConfig,
    Fault,
};

const AKID: &str = "AKIDALICE";
const SECRET: &str = "alice-secret";
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const ANALYST: &str = "arn:aws:iam::123456789012:role/analyst";
const OPEN: &str = "arn:aws:iam::123456789012:role/team/open";

/// Why: a running emulator with the fake catalogs of its cluster `c1` and workgroup `wg1`.
struct Bed {
    emu: Emulator,
    cluster: Arc<FakeCatalog>,
    workgroup: Arc<FakeCatalog>,
}

async fn start() -> Bed {
    let mut alice = AccessKey::new(AKID, SECRET);
    alice.arn = ALICE.into();
    let mut denied = AccessKey::new("AKIDDENY", "deny-secret");
    denied.arn = "arn:aws:iam::123456789012:user/mallory".into();
    denied.denied_actions = vec![
        "sts:AssumeRole".into(),
        "redshift:GetClusterCredentialsWithIAM".into(),
        "redshift-serverless:*".into(),
    ];
    let mut root = AccessKey::new("AKIDROOT", "root-secret");
    root.arn = "arn:aws:iam::123456789012:root".into();
    let config = EmulatorConfig {
        keys: vec![alice, denied, root],
        clusters: vec![EmulatedCluster {
            identifier: "c1".into(),
            host: "c1.example.internal".into(),
            port: 5439,
            admin: tokio_postgres::Config::new(),
        }],
        workgroups: vec![EmulatedWorkgroup {
            name: "wg1".into(),
            host: "wg1.example.internal".into(),
            port: 5440,
            admin: tokio_postgres::Config::new(),
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
        ..Default::default()
    };
    let cluster = Arc::new(FakeCatalog::with_roles(&["analysts", "readers"]));
    let workgroup = Arc::new(FakeCatalog::with_roles(&["analysts"]));
    let c: Arc<dyn RoleProvisioner> = cluster.clone();
    let w: Arc<dyn RoleProvisioner> = workgroup.clone();
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

/// SdkConfig pointed at the emulator with static credentials and the lean HTTPS client.
async fn sdk_config(emu: &Emulator, creds: Credentials) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emu.endpoint_url())
        .credentials_provider(creds)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        )
        .http_client(http)
        .load()
        .await
}

fn static_creds(akid: &str, secret: &str, token: Option<&str>) -> Credentials {
    Credentials::new(akid, secret, token.map(str::to_owned), None, "test")
}

async fn alice_config(emu: &Emulator) -> SdkConfig {
    sdk_config(emu, static_creds(AKID, SECRET, None)).await
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

fn secs(t: &aws_smithy_types::DateTime) -> i64 {
    t.secs()
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn sts_caller_identity_and_assume_role() {
    let bed = start().await;
    let emu = &bed.emu;
    let base = alice_config(emu).await;
    let sts = aws_sdk_sts::Client::new(&base);

    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.arn(), Some(ALICE));
    assert_eq!(me.account(), Some("123456789012"));
    assert!(me.user_id().unwrap().starts_with("AIDA"));

    let out = sts
        .assume_role()
        .role_arn(ANALYST)
        .role_session_name("s1")
        .external_id("ext-123")
        .send()
        .await
        .unwrap();
    let user = out.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::123456789012:assumed-role/analyst/s1"
    );
    assert!(user.assumed_role_id().starts_with("AROA"));
    assert!(user.assumed_role_id().ends_with(":s1"));
    let creds = out.credentials().unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(creds.access_key_id().len(), 20);
    let ahead = secs(creds.expiration()) - now_secs();
    assert!((3590..=3601).contains(&ahead), "{ahead}");

    // The temporary key works, with its session token only.
    let temp = sdk_config(
        emu,
        static_creds(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token()),
        ),
    )
    .await;
    let who = aws_sdk_sts::Client::new(&temp)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/analyst/s1")
    );
    assert!(who.user_id().unwrap().ends_with(":s1"));
    for token in [None, Some("wrong")] {
        let c = sdk_config(
            emu,
            static_creds(creds.access_key_id(), creds.secret_access_key(), token),
        )
        .await;
        let err = aws_sdk_sts::Client::new(&c)
            .get_caller_identity()
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("InvalidClientTokenId"), "{token:?}");
    }

    // A role without an external id, with a custom duration.
    let out = sts
        .assume_role()
        .role_arn(OPEN)
        .role_session_name("s2")
        .duration_seconds(900)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::123456789012:assumed-role/open/s2"
    );
    let ahead = secs(out.credentials().unwrap().expiration()) - now_secs();
    assert!((890..=901).contains(&ahead), "{ahead}");

    // Unknown role, missing or wrong external id: AccessDenied.
    for (role, ext) in [
        ("arn:aws:iam::123456789012:role/nobody", None),
        (ANALYST, None),
        (ANALYST, Some("wrong")),
    ] {
        let err = sts
            .assume_role()
            .role_arn(role)
            .role_session_name("s3")
            .set_external_id(ext.map(str::to_owned))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("AccessDenied"), "{role} {ext:?}");
        assert_eq!(
            err.message(),
            Some(format!(
                "User: {ALICE} is not authorized to perform: sts:AssumeRole on resource: {role}"
            ))
            .as_deref()
        );
    }
    // Parameter validation.
    for (session, duration) in [("s", 3600), ("bad name", 3600), ("s4", 899), ("s4", 43201)] {
        let err = sts
            .assume_role()
            .role_arn(OPEN)
            .role_session_name(session)
            .duration_seconds(duration)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("ValidationError"), "{session} {duration}");
    }
    // Denied by the caller's policy.
    let denied = sdk_config(emu, static_creds("AKIDDENY", "deny-secret", None)).await;
    let err = aws_sdk_sts::Client::new(&denied)
        .assume_role()
        .role_arn(OPEN)
        .role_session_name("s5")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));

    assert_eq!(emu.call_count("AssumeRole"), 10);
    assert_eq!(emu.call_count("GetCallerIdentity"), 4);
    emu.fail_next_action("AssumeRole", 1, Fault::Throttle);
    let err = sts.get_caller_identity().send().await;
    assert!(err.is_ok(), "a fault for AssumeRole is not taken by others");
    let err = sts
        .assume_role()
        .role_arn(OPEN)
        .role_session_name("s6")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
    emu.fail_next(1, Fault::Throttle);
    let err = sts.get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
    assert_eq!(err.message(), Some("Rate exceeded"));
}

#[tokio::test]
async fn assume_role_provider_then_get_cluster_credentials_with_iam() {
    let bed = start().await;
    let emu = &bed.emu;
    let base = alice_config(emu).await;
    let analyst = assumed(&base, ANALYST, Some("ext-123")).await;
    let rs = aws_sdk_redshift::Client::new(&analyst);

    let out = rs
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .db_name("dev")
        .duration_seconds(3600)
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:analyst"));
    assert_eq!(out.db_password().unwrap().len(), 64);
    let exp = out.expiration().unwrap();
    let ahead = secs(exp) - now_secs();
    assert!((3590..=3601).contains(&ahead), "{ahead}");
    assert_eq!(secs(out.next_refresh_time().unwrap()), secs(exp) - 300);
    let role = bed.cluster.role("IAMR:analyst").unwrap();
    assert!(role.login);
    assert!(role.verifier.unwrap().starts_with("SCRAM-SHA-256$"));
    assert!(role.valid_until.unwrap().ends_with("+00"));
    // The role's groups that exist; "nogroup" is skipped.
    assert_eq!(
        role.member_of.into_iter().collect::<Vec<_>>(),
        vec!["analysts".to_string()]
    );
    // The provider's credentials came from one AssumeRole call (cached by the provider).
    rs.get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(emu.call_count("AssumeRole"), 1);
    assert_eq!(emu.call_count("GetClusterCredentialsWithIAM"), 2);

    // An IAM user maps to IAM:NAME, without groups; default duration 900 s.
    let c = aws_sdk_redshift::Client::new(&base);
    let out = c
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
    let ahead = secs(out.expiration().unwrap()) - now_secs();
    assert!((890..=901).contains(&ahead), "{ahead}");
    let role = bed.cluster.role("IAM:alice").unwrap();
    assert!(role.login && role.member_of.is_empty());

    // A role without groups: its login is created with none.
    let open = assumed(&base, OPEN, None).await;
    let out = aws_sdk_redshift::Client::new(&open)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:open"));

    // Errors.
    let err = c
        .get_cluster_credentials_with_iam()
        .cluster_identifier("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            GetClusterCredentialsWithIAMError::ClusterNotFoundFault(_)
        ),
        "{err:?}"
    );
    let err = c
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .duration_seconds(3601)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let denied = sdk_config(emu, static_creds("AKIDDENY", "deny-secret", None)).await;
    let err = aws_sdk_redshift::Client::new(&denied)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .db_name("dev")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    assert_eq!(
        err.message(),
        Some(
            "User: arn:aws:iam::123456789012:user/mallory is not authorized to perform: \
             redshift:GetClusterCredentialsWithIAM on resource: \
             arn:aws:redshift:us-east-1:123456789012:dbname:c1/dev"
        )
    );
    let root = sdk_config(emu, static_creds("AKIDROOT", "root-secret", None)).await;
    let err = aws_sdk_redshift::Client::new(&root)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(
            err,
            GetClusterCredentialsWithIAMError::UnsupportedOperationFault(_)
        ),
        "{err:?}"
    );
    // The AssumeRoleProvider surfaces a wrong external id as a credentials error.
    let wrong = assumed(&base, ANALYST, Some("wrong")).await;
    let err = aws_sdk_redshift::Client::new(&wrong)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap_err();
    assert!(format!("{:?}", err).contains("AccessDenied"), "{err:?}");
}

#[tokio::test]
async fn custom_domains_and_fallback() {
    let bed = start().await;
    let emu = &bed.emu;
    let base = alice_config(emu).await;
    let c = aws_sdk_redshift::Client::new(&base);

    let out = c
        .describe_custom_domain_associations()
        .custom_domain_name("DB.example.com")
        .send()
        .await
        .unwrap();
    let assoc = &out.associations()[0];
    assert!(assoc
        .custom_domain_certificate_arn()
        .unwrap()
        .starts_with("arn:aws:acm:us-east-1:123456789012:certificate/"));
    assert!(assoc.custom_domain_certificate_expiry_date().is_some());
    let cert = &assoc.certificate_associations()[0];
    assert_eq!(cert.custom_domain_name(), Some("db.example.com"));
    assert_eq!(cert.cluster_identifier(), Some("c1"));
    // Without a filter: the cluster associations only (not the workgroup's).
    let all = c
        .describe_custom_domain_associations()
        .send()
        .await
        .unwrap();
    assert_eq!(all.associations().len(), 1);

    let err = c
        .describe_custom_domain_associations()
        .custom_domain_name("nope.example.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("CustomDomainAssociationNotFoundFault"));
    assert!(
        matches!(
            err.into_service_error(),
            DescribeCustomDomainAssociationsError::CustomDomainAssociationNotFoundFault(_)
        ),
        "typed error"
    );

    // Credentials by custom domain name, both APIs.
    let out = c
        .get_cluster_credentials()
        .db_user("analysts")
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAM:analysts"));
    let out = c
        .get_cluster_credentials_with_iam()
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
    for domain in ["nope.example.com", "wg.example.com"] {
        let err = c
            .get_cluster_credentials_with_iam()
            .custom_domain_name(domain)
            .send()
            .await
            .unwrap_err();
        let code = if domain.starts_with("nope") {
            "CustomDomainAssociationNotFoundFault"
        } else {
            "ClusterNotFound"
        };
        assert_eq!(err.code(), Some(code), "{domain}");
    }

    // A client's "fall back to ClusterIdentifier once": fail only the credentials call.
    emu.fail_next_action(
        "GetClusterCredentialsWithIAM",
        1,
        Fault::Error {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "custom domain unavailable".into(),
        },
    );
    c.describe_custom_domain_associations()
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap();
    let err = c
        .get_cluster_credentials_with_iam()
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnsupportedOperation"));
    c.get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(emu.call_count("DescribeCustomDomainAssociations"), 4);
    assert_eq!(emu.call_count("GetClusterCredentialsWithIAM"), 5);
    assert_eq!(emu.call_count("GetClusterCredentials"), 1);
}

#[tokio::test]
async fn serverless_get_credentials_and_get_workgroup() {
    let bed = start().await;
    let emu = &bed.emu;
    let base = alice_config(emu).await;
    let sl = aws_sdk_redshiftserverless::Client::new(&base);

    let out = sl
        .get_workgroup()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap();
    let wg = out.workgroup().unwrap();
    assert_eq!(wg.workgroup_name(), Some("wg1"));
    assert_eq!(
        wg.status(),
        Some(&aws_sdk_redshiftserverless::types::WorkgroupStatus::Available)
    );
    let ep = wg.endpoint().unwrap();
    assert_eq!(
        (ep.address(), ep.port()),
        (Some("wg1.example.internal"), Some(5440))
    );
    assert!(wg
        .workgroup_arn()
        .unwrap()
        .starts_with("arn:aws:redshift-serverless:us-east-1:123456789012:workgroup/"));
    assert_eq!(wg.custom_domain_name(), Some("wg.example.com"));

    let out = sl
        .get_credentials()
        .workgroup_name("wg1")
        .db_name("dev")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
    assert_eq!(out.db_password().unwrap().len(), 64);
    let exp = secs(out.expiration().unwrap());
    let ahead = exp - now_secs();
    assert!((890..=901).contains(&ahead), "{ahead}");
    assert_eq!(secs(out.next_refresh_time().unwrap()), exp - 300);
    assert!(bed.workgroup.role("IAM:alice").unwrap().login);
    assert!(bed.cluster.role("IAM:alice").is_none());

    // Through an assumed role, by custom domain, for an hour.
    let analyst = assumed(&base, ANALYST, Some("ext-123")).await;
    let out = aws_sdk_redshiftserverless::Client::new(&analyst)
        .get_credentials()
        .custom_domain_name("wg.example.com")
        .duration_seconds(3600)
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:analyst"));
    let ahead = secs(out.expiration().unwrap()) - now_secs();
    assert!((3590..=3601).contains(&ahead), "{ahead}");
    let role = bed.workgroup.role("IAMR:analyst").unwrap();
    assert_eq!(
        role.member_of.into_iter().collect::<Vec<_>>(),
        vec!["analysts".to_string()]
    );

    // Errors.
    let err = sl
        .get_workgroup()
        .workgroup_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetWorkgroupError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    let err = sl
        .get_workgroup()
        .workgroup_name("WG_1")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetWorkgroupError::ValidationException(_)),
        "{err:?}"
    );
    let err = sl
        .get_credentials()
        .workgroup_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetCredentialsError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    assert_eq!(err.message(), Some("Workgroup nope does not exist."));
    let err = sl
        .get_credentials()
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, GetCredentialsError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    for (name, duration) in [("ab", 900), ("Wg1", 900), ("wg1", 899), ("wg1", 3601)] {
        let err = sl
            .get_credentials()
            .workgroup_name(name)
            .duration_seconds(duration)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            matches!(err, GetCredentialsError::ValidationException(_)),
            "{name} {duration}: {err:?}"
        );
    }
    let err = sl.get_credentials().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    let denied = sdk_config(emu, static_creds("AKIDDENY", "deny-secret", None)).await;
    let dc = aws_sdk_redshiftserverless::Client::new(&denied);
    let err = dc
        .get_credentials()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err
        .message()
        .unwrap()
        .contains("redshift-serverless:GetCredentials"));
    let err = dc
        .get_workgroup()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));

    // Signature errors and faults come back as JSON 1.1 errors.
    let bad = sdk_config(emu, static_creds(AKID, "wrong", None)).await;
    let err = aws_sdk_redshiftserverless::Client::new(&bad)
        .get_workgroup()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    let unknown = sdk_config(emu, static_creds("AKIDNOPE", SECRET, None)).await;
    let err = aws_sdk_redshiftserverless::Client::new(&unknown)
        .get_workgroup()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    emu.fail_next(1, Fault::Throttle);
    let err = sl
        .get_credentials()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
    assert_eq!(err.message(), Some("Rate exceeded"));

    assert_eq!(emu.call_count("GetWorkgroup"), 6);
    assert_eq!(emu.call_count("GetCredentials"), 11);
}

/// Sends `body` signed by `key` for `service` with the given headers; returns the raw response.
async fn signed_raw(emu: &Emulator, service: &str, extra: &[(&str, &str)], body: &str) -> String {
    let key = {
        let mut k = AccessKey::new(AKID, SECRET);
        k.arn = ALICE.into();
        k
    };
    let host = emu.local_addr().to_string();
    let amz_date = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_str(&host).unwrap());
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
        &key,
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
    let mut s = tokio::net::TcpStream::connect(emu.local_addr())
        .await
        .unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn each_service_checks_its_own_signing_name() {
    let bed = start().await;
    let emu = &bed.emu;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "RedshiftServerless.GetWorkgroup"),
    ];
    let sts_body = "Action=GetCallerIdentity&Version=2011-06-15";
    let rs_body = "Action=DescribeClusters&Version=2012-12-01";
    let wg_body = r#"{"workgroupName":"wg1"}"#;

    // The right signing names pass.
    assert!(signed_raw(emu, "sts", &form, sts_body)
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(signed_raw(emu, "redshift", &form, rs_body)
        .await
        .starts_with("HTTP/1.1 200"));
    let ok = signed_raw(emu, "redshift-serverless", &json, wg_body).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("application/x-amz-json-1.1"), "{ok}");

    // Wrong ones are refused, in each service's own error format.
    let r = signed_raw(emu, "redshift", &form, sts_body).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("<Code>SignatureDoesNotMatch</Code>"), "{r}");
    assert!(
        r.contains("https://sts.amazonaws.com/doc/2011-06-15/"),
        "{r}"
    );
    assert!(r.contains("correct service: &apos;sts&apos;"), "{r}");
    let r = signed_raw(emu, "sts", &form, rs_body).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("correct service: &apos;redshift&apos;"), "{r}");
    let r = signed_raw(emu, "redshift", &json, wg_body).await;
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains(r#""__type":"InvalidSignatureException""#), "{r}");
    assert!(r.contains("correct service: 'redshift-serverless'"), "{r}");

    // Unknown Serverless operations and malformed JSON.
    let unknown = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "RedshiftServerless.DeleteWorkgroup"),
    ];
    let r = signed_raw(emu, "redshift-serverless", &unknown, "{}").await;
    assert!(r.contains("UnknownOperationException"), "{r}");
    let r = signed_raw(emu, "redshift-serverless", &json, "{nope").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("SerializationException"), "{r}");
    assert_eq!(emu.call_count("GetWorkgroup"), 3);
    assert_eq!(emu.call_count("DeleteWorkgroup"), 1);
}

/// Logs in over TCP (plaintext, SCRAM) and returns `session_user` and membership of `group`.
async fn login(
    pg: &local_cluster::LocalPg,
    user: &str,
    password: &str,
    group: &str,
) -> Result<(String, bool), tokio_postgres::Error> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password)
        .dbname("postgres");
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT session_user::text, pg_has_role(session_user, $1, 'MEMBER')",
            &[&group],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn iam_mapped_logins_on_real_postgres() {
    let pg = local_cluster::LocalPg::start(local_cluster::LocalPgOptions {
        hba_extra: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    pg.admin()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE analysts")
        .await
        .unwrap();
    let mut alice = AccessKey::new(AKID, SECRET);
    alice.arn = ALICE.into();
    let config = EmulatorConfig {
        keys: vec![alice],
        clusters: vec![EmulatedCluster {
            identifier: "c1".into(),
            host: pg.host().into(),
            port: pg.port(),
            admin: pg.admin_config(),
        }],
        workgroups: vec![EmulatedWorkgroup {
            name: "wg1".into(),
            host: pg.host().into(),
            port: pg.port(),
            admin: pg.admin_config(),
        }],
        roles: vec![EmulatedRole {
            arn: ANALYST.into(),
            external_id: None,
            db_groups: vec!["analysts".into(), "nogroup".into()],
        }],
        ..Default::default()
    };
    let emu = Emulator::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let base = alice_config(&emu).await;
    let analyst = assumed(&base, ANALYST, None).await;

    let out = aws_sdk_redshiftserverless::Client::new(&analyst)
        .get_credentials()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap();
    let first = out.db_password().unwrap().to_owned();
    let (who, member) = login(&pg, "IAMR:analyst", &first, "analysts")
        .await
        .unwrap();
    assert_eq!((who.as_str(), member), ("IAMR:analyst", true));

    // A new credential replaces the password; the old one stops working.
    let out = aws_sdk_redshift::Client::new(&analyst)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:analyst"));
    login(&pg, "IAMR:analyst", out.db_password().unwrap(), "analysts")
        .await
        .unwrap();
    assert!(login(&pg, "IAMR:analyst", &first, "analysts")
        .await
        .is_err());

    let out = aws_sdk_redshift::Client::new(&base)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    let (who, member) = login(&pg, "IAM:alice", out.db_password().unwrap(), "analysts")
        .await
        .unwrap();
    assert_eq!((who.as_str(), member), ("IAM:alice", false));
    let row = pg
        .admin()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ('IAM:alice', 'IAMR:analyst') \
             AND rolcanlogin AND rolvaliduntil > now() + interval '10 minutes'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    emu.shutdown().await;
    pg.stop().await;
}
