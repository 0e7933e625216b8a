//! Redshift provisioned: GetClusterCredentials, GetClusterCredentialsWithIAM, DescribeClusters
//! and DescribeCustomDomainAssociations through `aws-sdk-redshift`.

use aws_sdk_redshift::types::Cluster;

use super::{
    assert_expires_in, assumed, call, expect_failures, want, Bed, Clients, Who, ANALYST, MALLORY,
    OPEN,
};
use crate::provision::password_verifier;

/// GetClusterCredentials for `db_user` on `c1` as alice.
async fn gcc(
    bed: &Bed,
    db_user: &str,
) -> aws_sdk_redshift::operation::get_cluster_credentials::GetClusterCredentialsOutput {
    let c = bed.clients(Who::Alice).await;
    c.rs.get_cluster_credentials()
        .db_user(db_user)
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap()
}

/// GetClusterCredentials for alice in groups `sales` and `missing` for 1800 s.
async fn gcc_alice_in_groups(
    c: &Clients,
) -> aws_sdk_redshift::operation::get_cluster_credentials::GetClusterCredentialsOutput {
    c.rs.get_cluster_credentials()
        .db_user("alice")
        .db_name("dev")
        .cluster_identifier("c1")
        .duration_seconds(1800)
        .db_groups("sales")
        .db_groups("missing")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn get_cluster_credentials_returns_the_iam_prefixed_user_and_a_64_char_password() {
    let bed = Bed::start().await;
    let out = gcc(&bed, "alice").await;
    assert_eq!(out.db_user(), Some("IAM:alice"));
    assert_eq!(out.db_password().map(str::len), Some(64));
}

#[tokio::test]
async fn get_cluster_credentials_expire_after_duration_seconds() {
    let bed = Bed::start().await;
    let out = gcc_alice_in_groups(&bed.clients(Who::Alice).await).await;
    assert_expires_in("DurationSeconds=1800", out.expiration().unwrap(), 1800);
}

#[tokio::test]
async fn get_cluster_credentials_provision_a_scram_login_valid_until_a_utc_instant() {
    let bed = Bed::start().await;
    gcc(&bed, "alice").await;
    let role = bed.cluster.role("IAM:alice").unwrap();
    assert!(role.login);
    assert!(role.verifier.unwrap().starts_with("SCRAM-SHA-256$"));
    assert!(role.valid_until.unwrap().ends_with("+00"));
}

#[tokio::test]
async fn get_cluster_credentials_grant_the_base_role_and_the_db_groups_that_exist() {
    let bed = Bed::start().await;
    gcc_alice_in_groups(&bed.clients(Who::Alice).await).await;
    let role = bed.cluster.role("IAM:alice").unwrap();
    assert_eq!(
        role.member_of.into_iter().collect::<Vec<_>>(),
        ["alice", "sales"]
    );
}

#[tokio::test]
async fn a_later_credential_without_db_groups_drops_the_group_membership() {
    let bed = Bed::start().await;
    gcc_alice_in_groups(&bed.clients(Who::Alice).await).await;
    gcc(&bed, "alice").await;
    let role = bed.cluster.role("IAM:alice").unwrap();
    assert_eq!(role.member_of.into_iter().collect::<Vec<_>>(), ["alice"]);
}

#[tokio::test]
async fn every_credential_is_a_new_password() {
    let bed = Bed::start().await;
    let first = gcc(&bed, "alice").await;
    let second = gcc(&bed, "alice").await;
    assert_ne!(first.db_password(), second.db_password());
}

#[tokio::test]
async fn auto_create_makes_a_nologin_base_role_and_an_iama_login() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.get_cluster_credentials()
            .db_user("bob")
            .cluster_identifier("c1")
            .auto_create(true)
            .send()
            .await
            .unwrap();
    assert_eq!(out.db_user(), Some("IAMA:bob"));
    assert!(!bed.cluster.role("bob").unwrap().login);
    assert!(bed.cluster.role("IAMA:bob").unwrap().login);
}

#[tokio::test]
async fn unknown_db_user_without_auto_create_succeeds_but_provisions_nothing() {
    let bed = Bed::start().await;
    let out = gcc(&bed, "carol").await;
    assert_eq!(out.db_user(), Some("IAM:carol"));
    assert!(bed.cluster.role("IAM:carol").is_none());
}

#[tokio::test]
async fn md5_users_get_an_md5_verifier() {
    let bed = Bed::start().await;
    let out = gcc(&bed, "mdfive").await;
    assert_eq!(
        bed.cluster.role("IAM:mdfive").unwrap().verifier.unwrap(),
        password_verifier(out.db_password().unwrap(), "IAM:mdfive", true)
    );
}

#[tokio::test]
async fn get_cluster_credentials_by_custom_domain_name_resolve_its_cluster() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.get_cluster_credentials()
            .db_user("analysts")
            .custom_domain_name("db.example.com")
            .send()
            .await
            .unwrap();
    assert_eq!(out.db_user(), Some("IAM:analysts"));
    assert!(bed.cluster.role("IAM:analysts").unwrap().login);
}

#[tokio::test]
async fn a_key_denied_join_group_still_gets_credentials_without_db_groups() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Mallory).await;
    let out =
        c.rs.get_cluster_credentials()
            .db_user("alice")
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
}

#[tokio::test]
async fn get_cluster_credentials_errors() {
    let bed = Bed::start().await;
    let gcc = |user: &'static str, duration: i32| {
        call(move |c: &Clients| {
            c.rs.get_cluster_credentials()
                .db_user(user)
                .cluster_identifier("c1")
                .duration_seconds(duration)
                .send()
        })
    };
    expect_failures(
        &bed,
        vec![
            (
                "reserved word as DbUser",
                Who::Alice,
                gcc("select", 900),
                want("InvalidParameterValue"),
            ),
            (
                "DbUser starting with a digit",
                Who::Alice,
                gcc("9lives", 900),
                want("InvalidParameterValue"),
            ),
            (
                "DurationSeconds below 900",
                Who::Alice,
                gcc("alice", 100),
                want("InvalidParameterValue"),
            ),
            (
                "unknown cluster",
                Who::Alice,
                call(|c| {
                    c.rs.get_cluster_credentials()
                        .db_user("alice")
                        .cluster_identifier("nope")
                        .send()
                }),
                want("ClusterNotFound")
                    .typed("ClusterNotFoundFault")
                    .says("Cluster nope not found."),
            ),
            (
                "unknown custom domain",
                Who::Alice,
                call(|c| {
                    c.rs.get_cluster_credentials()
                        .db_user("alice")
                        .custom_domain_name("nope.example.com")
                        .send()
                }),
                want("CustomDomainAssociationNotFoundFault"),
            ),
            (
                "DbGroups denied redshift:JoinGroup",
                Who::Mallory,
                call(|c| {
                    c.rs.get_cluster_credentials()
                        .db_user("alice")
                        .cluster_identifier("c1")
                        .db_groups("sales")
                        .send()
                }),
                want("AccessDenied").says(format!(
                    "User: {MALLORY} is not authorized to perform: redshift:JoinGroup on \
                     resource: arn:aws:redshift:us-east-1:123456789012:dbgroup:c1/sales"
                )),
            ),
            (
                "AutoCreate denied redshift:CreateClusterUser",
                Who::Mallory,
                call(|c| {
                    c.rs.get_cluster_credentials()
                        .db_user("alice")
                        .cluster_identifier("c1")
                        .auto_create(true)
                        .send()
                }),
                want("AccessDenied").says("redshift:CreateClusterUser"),
            ),
        ],
    )
    .await;
}

fn only_cluster(clusters: &[Cluster]) -> &Cluster {
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    &clusters[0]
}

#[tokio::test]
async fn describe_clusters_reports_an_available_cluster_and_its_endpoint() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.describe_clusters()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    let cluster = only_cluster(out.clusters());
    assert_eq!(cluster.cluster_identifier(), Some("c1"));
    assert_eq!(cluster.cluster_status(), Some("available"));
    let ep = cluster.endpoint().unwrap();
    assert_eq!(
        (ep.address(), ep.port()),
        (Some("c1.example.internal"), Some(5439))
    );
}

#[tokio::test]
async fn describe_clusters_without_an_identifier_lists_every_cluster() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out = c.rs.describe_clusters().send().await.unwrap();
    assert_eq!(
        only_cluster(out.clusters()).cluster_identifier(),
        Some("c1")
    );
}

#[tokio::test]
async fn describe_errors() {
    let bed = Bed::start().await;
    expect_failures(
        &bed,
        vec![
            (
                "unknown cluster",
                Who::Alice,
                call(|c| c.rs.describe_clusters().cluster_identifier("nope").send()),
                want("ClusterNotFound").typed("ClusterNotFoundFault"),
            ),
            (
                "denied redshift:DescribeClusters",
                Who::Mallory,
                call(|c| c.rs.describe_clusters().send()),
                want("AccessDenied").says("redshift:DescribeClusters"),
            ),
            (
                "unknown custom domain association",
                Who::Alice,
                call(|c| {
                    c.rs.describe_custom_domain_associations()
                        .custom_domain_name("nope.example.com")
                        .send()
                }),
                want("CustomDomainAssociationNotFoundFault")
                    .typed("CustomDomainAssociationNotFoundFault"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn with_iam_for_an_assumed_role_returns_its_iamr_login_for_the_duration() {
    let bed = Bed::start().await;
    let analyst = assumed(&bed.sdk(Who::Alice).await, ANALYST, Some("ext-123")).await;
    let out = aws_sdk_redshift::Client::new(&analyst)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .db_name("dev")
        .duration_seconds(3600)
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:analyst"));
    assert_eq!(out.db_password().map(str::len), Some(64));
    let exp = out.expiration().unwrap();
    assert_expires_in("DurationSeconds=3600", exp, 3600);
    assert_eq!(out.next_refresh_time().unwrap().secs(), exp.secs() - 300);
}

#[tokio::test]
async fn with_iam_provisions_the_role_login_with_the_role_groups_that_exist() {
    let bed = Bed::start().await;
    let analyst = assumed(&bed.sdk(Who::Alice).await, ANALYST, Some("ext-123")).await;
    aws_sdk_redshift::Client::new(&analyst)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    let role = bed.cluster.role("IAMR:analyst").unwrap();
    assert!(role.login);
    assert!(role.verifier.unwrap().starts_with("SCRAM-SHA-256$"));
    assert!(role.valid_until.unwrap().ends_with("+00"));
    // "nogroup" does not exist and is skipped.
    assert_eq!(role.member_of.into_iter().collect::<Vec<_>>(), ["analysts"]);
}

#[tokio::test]
async fn the_assume_role_provider_assumes_once_for_several_calls() {
    let bed = Bed::start().await;
    let analyst = assumed(&bed.sdk(Who::Alice).await, ANALYST, Some("ext-123")).await;
    let rs = aws_sdk_redshift::Client::new(&analyst);
    for _ in 0..2 {
        rs.get_cluster_credentials_with_iam()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    }
    assert_eq!(bed.emu.call_count("AssumeRole"), 1);
    assert_eq!(bed.emu.call_count("GetClusterCredentialsWithIAM"), 2);
}

#[tokio::test]
async fn with_iam_for_an_iam_user_returns_iam_name_without_groups_for_900_s() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.get_cluster_credentials_with_iam()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
    assert_expires_in("default duration", out.expiration().unwrap(), 900);
    let role = bed.cluster.role("IAM:alice").unwrap();
    assert!(role.login && role.member_of.is_empty(), "{role:?}");
}

#[tokio::test]
async fn with_iam_for_a_role_without_groups_returns_its_iamr_login() {
    let bed = Bed::start().await;
    let open = assumed(&bed.sdk(Who::Alice).await, OPEN, None).await;
    let out = aws_sdk_redshift::Client::new(&open)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:open"));
    assert!(bed.cluster.role("IAMR:open").unwrap().member_of.is_empty());
}

#[tokio::test]
async fn with_iam_by_custom_domain_name_resolves_its_cluster() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.get_cluster_credentials_with_iam()
            .custom_domain_name("db.example.com")
            .send()
            .await
            .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
}

#[tokio::test]
async fn get_cluster_credentials_with_iam_errors() {
    let bed = Bed::start().await;
    let on_cluster = |id: &'static str| {
        call(move |c: &Clients| {
            c.rs.get_cluster_credentials_with_iam()
                .cluster_identifier(id)
                .send()
        })
    };
    let on_domain = |domain: &'static str| {
        call(move |c: &Clients| {
            c.rs.get_cluster_credentials_with_iam()
                .custom_domain_name(domain)
                .send()
        })
    };
    expect_failures(
        &bed,
        vec![
            (
                "unknown cluster",
                Who::Alice,
                on_cluster("nope"),
                want("ClusterNotFound").typed("ClusterNotFoundFault"),
            ),
            (
                "DurationSeconds above 3600",
                Who::Alice,
                call(|c| {
                    c.rs.get_cluster_credentials_with_iam()
                        .cluster_identifier("c1")
                        .duration_seconds(3601)
                        .send()
                }),
                want("InvalidParameterValue"),
            ),
            (
                "denied redshift:GetClusterCredentialsWithIAM",
                Who::Mallory,
                call(|c| {
                    c.rs.get_cluster_credentials_with_iam()
                        .cluster_identifier("c1")
                        .db_name("dev")
                        .send()
                }),
                want("AccessDenied").says(format!(
                    "User: {MALLORY} is not authorized to perform: \
                     redshift:GetClusterCredentialsWithIAM on resource: \
                     arn:aws:redshift:us-east-1:123456789012:dbname:c1/dev"
                )),
            ),
            (
                "account root has no IAM-mapped user",
                Who::Root,
                on_cluster("c1"),
                want("UnsupportedOperation").typed("UnsupportedOperationFault"),
            ),
            (
                "unknown custom domain",
                Who::Alice,
                on_domain("nope.example.com"),
                want("CustomDomainAssociationNotFoundFault"),
            ),
            (
                "custom domain of a workgroup, not a cluster",
                Who::Alice,
                on_domain("wg.example.com"),
                want("ClusterNotFound"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_assume_role_provider_surfaces_a_wrong_external_id_as_access_denied() {
    let bed = Bed::start().await;
    let wrong = assumed(&bed.sdk(Who::Alice).await, ANALYST, Some("wrong")).await;
    let err = aws_sdk_redshift::Client::new(&wrong)
        .get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("AccessDenied"), "{err:?}");
}

#[tokio::test]
async fn describe_custom_domain_associations_matches_the_domain_case_insensitively() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.describe_custom_domain_associations()
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
}

#[tokio::test]
async fn describe_custom_domain_associations_without_a_filter_lists_cluster_domains_only() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let all =
        c.rs.describe_custom_domain_associations()
            .send()
            .await
            .unwrap();
    assert_eq!(all.associations().len(), 1, "{all:?}");
}
