//! The IAM-mapped credential sources end to end: GetClusterCredentialsWithIAM (own identity
//! and per-user assumed roles), Redshift Serverless GetCredentials, and custom domain names.
//! Every login is real: the emulator provisions the password AWS would return for that identity.

use redshift_emulator::{EmulatedRole, EmulatedWorkgroup, Fault};
use redshift_iam_proxy::config::CredentialMode;
use redshift_iam_proxy::testbed::{connect, db_error, Bed, BedOptions};

const ANALYST: &str = "arn:aws:iam::123456789012:role/analyst";
const ETL: &str = "arn:aws:iam::123456789012:role/etl";

async fn whoami(
    bed: &Bed,
    user: &str,
    database: &str,
) -> Result<(String, bool), tokio_postgres::Error> {
    let info = format!(
        "host=127.0.0.1 port={} user={user} dbname={database}",
        bed.proxy_addr.port()
    );
    let c = connect(&info).await?;
    let row = c
        .query_one(
            "SELECT current_user::text, pg_has_role('analysts', 'member')",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

fn iam_users() -> String {
    format!(
        r#"
        [[users]]
        client_user = "analyst"
        role_arn = "{ANALYST}"
        session_name = "proxy-analyst"
        [[users]]
        client_user = "etl"
        role_arn = "{ETL}"
        external_id = "ext-123"
        [[users]]
        client_user = "intruder"
        role_arn = "{ETL}"
        external_id = "wrong"
        [[users]]
        client_user = "*"
        "#
    )
}

fn roles(cfg: &mut redshift_emulator::EmulatorConfig) {
    cfg.roles = vec![
        EmulatedRole {
            arn: ANALYST.into(),
            external_id: None,
            db_groups: vec!["analysts".into()],
        },
        EmulatedRole {
            arn: ETL.into(),
            external_id: Some("ext-123".into()),
            db_groups: vec![],
        },
    ];
}

#[tokio::test]
async fn with_iam_logs_in_as_the_caller_identity_and_assumed_roles() {
    let bed = Bed::with(BedOptions {
        users_toml: iam_users(),
        emulator: Box::new(|cfg, _| roles(cfg)),
        tweak: Box::new(|c| {
            c.cluster[0].credentials = CredentialMode::GetClusterCredentialsWithIam
        }),
        ..Default::default()
    })
    .await;
    // The proxy's own identity (an IAM user) maps to IAM:<user name>.
    assert_eq!(
        whoami(&bed, "anyone", "postgres").await.unwrap(),
        ("IAM:emulator".into(), false)
    );
    // Per-user roles: IAMR:<role>, with the role's groups.
    assert_eq!(
        whoami(&bed, "analyst", "postgres").await.unwrap(),
        ("IAMR:analyst".into(), true)
    );
    assert_eq!(
        whoami(&bed, "etl", "postgres").await.unwrap(),
        ("IAMR:etl".into(), false)
    );
    assert_eq!(bed.emu.call_count("GetClusterCredentialsWithIAM"), 3);
    assert_eq!(bed.emu.call_count("AssumeRole"), 2);
    // The cache key includes the identity: repeated logins make no calls.
    assert_eq!(
        whoami(&bed, "analyst", "postgres").await.unwrap().0,
        "IAMR:analyst"
    );
    assert_eq!(
        whoami(&bed, "someone-else", "postgres").await.unwrap().0,
        "IAM:emulator"
    );
    assert_eq!(bed.emu.call_count("GetClusterCredentialsWithIAM"), 3);
    assert_eq!(bed.emu.call_count("AssumeRole"), 2);
    // A role that cannot be assumed (wrong external id) is refused with AWS's code.
    let (code, msg) = db_error(&whoami(&bed, "intruder", "postgres").await.unwrap_err());
    assert_eq!(code, "28000", "{msg}");
    assert!(msg.contains("AccessDenied"), "{msg}");
}

#[tokio::test]
async fn serverless_workgroup_is_found_with_get_workgroup_and_logged_into() {
    let bed = Bed::with(BedOptions {
        users_toml: iam_users(),
        emulator: Box::new(|cfg, pg| {
            roles(cfg);
            cfg.workgroups = vec![EmulatedWorkgroup {
                name: "wg-analytics".into(),
                host: pg.host().into(),
                port: pg.port(),
                admin: pg.admin_config(),
            }];
        }),
        tweak: Box::new(|c| {
            c.cluster[0].credentials = CredentialMode::Serverless;
            c.cluster[0].identifier = None;
            c.cluster[0].workgroup = Some("wg-analytics".into());
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(
        whoami(&bed, "anyone", "postgres").await.unwrap().0,
        "IAM:emulator"
    );
    assert_eq!(
        whoami(&bed, "analyst", "postgres").await.unwrap(),
        ("IAMR:analyst".into(), true)
    );
    assert_eq!(bed.emu.call_count("GetWorkgroup"), 1);
    assert_eq!(bed.emu.call_count("GetCredentials"), 2);
    assert_eq!(bed.emu.call_count("GetClusterCredentials"), 0);
}

#[tokio::test]
async fn custom_domain_is_resolved_checked_in_tls_and_falls_back_once() {
    let bed = Bed::with(BedOptions {
        emulator: Box::new(|cfg, _| {
            cfg.custom_domains = vec![(
                "localhost".into(),
                redshift_iam_proxy::testbed::CLUSTER.into(),
            )]
        }),
        tweak: Box::new(|c| {
            c.cluster[0].identifier = None;
            c.cluster[0].custom_domain_name = Some("localhost".into());
        }),
        pg_port_in_config: true,
        ..Default::default()
    })
    .await;
    assert_eq!(whoami(&bed, "bob", "postgres").await.unwrap().0, "IAM:bob");
    assert_eq!(bed.emu.call_count("DescribeCustomDomainAssociations"), 1);
    assert_eq!(bed.get_credentials_calls(), 1);
    // The custom-domain call fails: the proxy falls back to the ClusterIdentifier once.
    bed.emu.fail_next(
        1,
        Fault::Error {
            status: 400,
            code: "InvalidParameterValue".into(),
            message: "custom domain unavailable".into(),
        },
    );
    assert_eq!(
        whoami(&bed, "alice", "postgres").await.unwrap(),
        ("IAM:alice".into(), true)
    );
    assert_eq!(bed.get_credentials_calls(), 3);
}
