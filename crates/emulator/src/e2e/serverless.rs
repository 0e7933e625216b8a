//! Redshift Serverless: GetWorkgroup and GetCredentials through `aws-sdk-redshiftserverless`
//! (JSON 1.1).

use aws_sdk_redshiftserverless::types::WorkgroupStatus;

use super::{
    assert_expires_in, assumed, call, expect_failures, want, Bed, Call, Clients, Who, ANALYST,
};

#[tokio::test]
async fn get_workgroup_reports_an_available_workgroup_its_endpoint_arn_and_domain() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.sl.get_workgroup()
            .workgroup_name("wg1")
            .send()
            .await
            .unwrap();
    let wg = out.workgroup().unwrap();
    assert_eq!(wg.workgroup_name(), Some("wg1"));
    assert_eq!(wg.status(), Some(&WorkgroupStatus::Available));
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
}

#[tokio::test]
async fn get_credentials_for_an_iam_user_returns_iam_name_for_900_s() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.sl.get_credentials()
            .workgroup_name("wg1")
            .db_name("dev")
            .send()
            .await
            .unwrap();
    assert_eq!(out.db_user(), Some("IAM:alice"));
    assert_eq!(out.db_password().map(str::len), Some(64));
    let exp = out.expiration().unwrap();
    assert_expires_in("default duration", exp, 900);
    assert_eq!(out.next_refresh_time().unwrap().secs(), exp.secs() - 300);
}

#[tokio::test]
async fn get_credentials_provision_the_workgroup_not_the_cluster() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    c.sl.get_credentials()
        .workgroup_name("wg1")
        .send()
        .await
        .unwrap();
    assert!(bed.workgroup.role("IAM:alice").unwrap().login);
    assert!(bed.cluster.role("IAM:alice").is_none());
}

#[tokio::test]
async fn get_credentials_for_an_assumed_role_by_custom_domain_join_the_role_groups() {
    let bed = Bed::start().await;
    let analyst = assumed(&bed.sdk(Who::Alice).await, ANALYST, Some("ext-123")).await;
    let out = aws_sdk_redshiftserverless::Client::new(&analyst)
        .get_credentials()
        .custom_domain_name("wg.example.com")
        .duration_seconds(3600)
        .send()
        .await
        .unwrap();
    assert_eq!(out.db_user(), Some("IAMR:analyst"));
    assert_expires_in("DurationSeconds=3600", out.expiration().unwrap(), 3600);
    let role = bed.workgroup.role("IAMR:analyst").unwrap();
    assert_eq!(role.member_of.into_iter().collect::<Vec<_>>(), ["analysts"]);
}

#[tokio::test]
async fn get_workgroup_errors() {
    let bed = Bed::start().await;
    let get = |name: &'static str| -> Call {
        call(move |c: &Clients| c.sl.get_workgroup().workgroup_name(name).send())
    };
    expect_failures(
        &bed,
        vec![
            (
                "unknown workgroup",
                Who::Alice,
                get("nope"),
                want("ResourceNotFoundException").typed("ResourceNotFoundException"),
            ),
            (
                "invalid workgroup name",
                Who::Alice,
                get("WG_1"),
                want("ValidationException").typed("ValidationException"),
            ),
            (
                "denied redshift-serverless:*",
                Who::Mallory,
                get("wg1"),
                want("AccessDeniedException").says("redshift-serverless:GetWorkgroup"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn get_credentials_errors() {
    let bed = Bed::start().await;
    let get = |name: &'static str, duration: i32| -> Call {
        call(move |c: &Clients| {
            c.sl.get_credentials()
                .workgroup_name(name)
                .duration_seconds(duration)
                .send()
        })
    };
    let invalid = want("ValidationException").typed("ValidationException");
    expect_failures(
        &bed,
        vec![
            (
                "unknown workgroup",
                Who::Alice,
                call(|c| c.sl.get_credentials().workgroup_name("nope").send()),
                want("ResourceNotFoundException")
                    .typed("ResourceNotFoundException")
                    .says("Workgroup nope does not exist."),
            ),
            (
                "custom domain of a cluster, not a workgroup",
                Who::Alice,
                call(|c| {
                    c.sl.get_credentials()
                        .custom_domain_name("db.example.com")
                        .send()
                }),
                want("ResourceNotFoundException").typed("ResourceNotFoundException"),
            ),
            (
                "workgroup name too short",
                Who::Alice,
                get("ab", 900),
                invalid.clone(),
            ),
            (
                "workgroup name with capitals",
                Who::Alice,
                get("Wg1", 900),
                invalid.clone(),
            ),
            (
                "durationSeconds below 900",
                Who::Alice,
                get("wg1", 899),
                invalid.clone(),
            ),
            (
                "durationSeconds above 3600",
                Who::Alice,
                get("wg1", 3601),
                invalid,
            ),
            (
                "neither workgroup nor custom domain",
                Who::Alice,
                call(|c| c.sl.get_credentials().send()),
                want("ValidationException"),
            ),
            (
                "denied redshift-serverless:*",
                Who::Mallory,
                get("wg1", 900),
                want("AccessDeniedException").says("redshift-serverless:GetCredentials"),
            ),
        ],
    )
    .await;
}
