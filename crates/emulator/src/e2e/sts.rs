//! STS: GetCallerIdentity and AssumeRole through `aws-sdk-sts`, and the temporary keys
//! AssumeRole mints.

use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{
    assert_expires_in, call, creds, expect_failures, want, Bed, Call, Clients, Who, ALICE, ANALYST,
    MALLORY, OPEN,
};

/// AssumeRole of the analyst role (external id `ext-123`) as alice, session `s1`.
async fn assume_analyst(bed: &Bed) -> AssumeRoleOutput {
    bed.clients(Who::Alice)
        .await
        .sts
        .assume_role()
        .role_arn(ANALYST)
        .role_session_name("s1")
        .external_id("ext-123")
        .send()
        .await
        .unwrap()
}

/// STS clients signing with the temporary key of `out`, with `token` as its session token.
async fn temporary_key_clients(bed: &Bed, out: &AssumeRoleOutput, token: Option<&str>) -> Clients {
    let c = out.credentials().unwrap();
    bed.clients_with(
        creds(c.access_key_id(), c.secret_access_key(), token),
        "us-east-1",
        false,
    )
    .await
}

#[tokio::test]
async fn get_caller_identity_returns_the_keys_arn_account_and_an_aida_user_id() {
    let bed = Bed::start().await;
    let me = bed
        .clients(Who::Alice)
        .await
        .sts
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(me.arn(), Some(ALICE));
    assert_eq!(me.account(), Some("123456789012"));
    assert!(me.user_id().unwrap().starts_with("AIDA"), "{me:?}");
}

#[tokio::test]
async fn assume_role_returns_the_assumed_role_user() {
    let bed = Bed::start().await;
    let out = assume_analyst(&bed).await;
    let user = out.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::123456789012:assumed-role/analyst/s1"
    );
    assert!(user.assumed_role_id().starts_with("AROA"), "{user:?}");
    assert!(user.assumed_role_id().ends_with(":s1"), "{user:?}");
}

#[tokio::test]
async fn assume_role_mints_an_asia_key_valid_for_an_hour_by_default() {
    let bed = Bed::start().await;
    let out = assume_analyst(&bed).await;
    let creds = out.credentials().unwrap();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(creds.access_key_id().len(), 20);
    assert_expires_in("default duration", creds.expiration(), 3600);
}

#[tokio::test]
async fn assume_role_duration_seconds_sets_the_expiration() {
    let bed = Bed::start().await;
    let out = bed
        .clients(Who::Alice)
        .await
        .sts
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
    assert_expires_in(
        "DurationSeconds=900",
        out.credentials().unwrap().expiration(),
        900,
    );
}

#[tokio::test]
async fn a_temporary_key_with_its_session_token_identifies_as_the_assumed_role() {
    let bed = Bed::start().await;
    let out = assume_analyst(&bed).await;
    let token = out.credentials().unwrap().session_token().to_owned();
    let temp = temporary_key_clients(&bed, &out, Some(&token)).await;
    let who = temp.sts.get_caller_identity().send().await.unwrap();
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/analyst/s1")
    );
    assert!(who.user_id().unwrap().ends_with(":s1"), "{who:?}");
}

#[tokio::test]
async fn a_temporary_key_without_its_session_token_is_an_invalid_client_token() {
    let bed = Bed::start().await;
    let out = assume_analyst(&bed).await;
    for (case, token) in [("no token", None), ("wrong token", Some("wrong"))] {
        let temp = temporary_key_clients(&bed, &out, token).await;
        let err = temp.sts.get_caller_identity().send().await.unwrap_err();
        assert_eq!(err.code(), Some("InvalidClientTokenId"), "{case}");
    }
}

#[tokio::test]
async fn assume_role_errors() {
    let bed = Bed::start().await;
    let assume = |role: &'static str, external_id: Option<&'static str>| -> Call {
        call(move |c: &Clients| {
            c.sts
                .assume_role()
                .role_arn(role)
                .role_session_name("s3")
                .set_external_id(external_id.map(str::to_owned))
                .send()
        })
    };
    let denied = |role: &str| {
        want("AccessDenied").says(format!(
            "User: {ALICE} is not authorized to perform: sts:AssumeRole on resource: {role}"
        ))
    };
    let invalid = |session: &'static str, duration: i32| -> Call {
        call(move |c: &Clients| {
            c.sts
                .assume_role()
                .role_arn(OPEN)
                .role_session_name(session)
                .duration_seconds(duration)
                .send()
        })
    };
    const NOBODY: &str = "arn:aws:iam::123456789012:role/nobody";
    expect_failures(
        &bed,
        vec![
            (
                "unknown role",
                Who::Alice,
                assume(NOBODY, None),
                denied(NOBODY),
            ),
            (
                "missing external id",
                Who::Alice,
                assume(ANALYST, None),
                denied(ANALYST),
            ),
            (
                "wrong external id",
                Who::Alice,
                assume(ANALYST, Some("wrong")),
                denied(ANALYST),
            ),
            (
                "caller denied sts:AssumeRole",
                Who::Mallory,
                assume(OPEN, None),
                want("AccessDenied").says(format!(
                    "User: {MALLORY} is not authorized to perform: sts:AssumeRole"
                )),
            ),
            (
                "RoleSessionName shorter than 2",
                Who::Alice,
                invalid("s", 3600),
                want("ValidationError"),
            ),
            (
                "RoleSessionName with a space",
                Who::Alice,
                invalid("bad name", 3600),
                want("ValidationError"),
            ),
            (
                "DurationSeconds below 900",
                Who::Alice,
                invalid("s4", 899),
                want("ValidationError"),
            ),
            (
                "DurationSeconds above 43200",
                Who::Alice,
                invalid("s4", 43201),
                want("ValidationError"),
            ),
        ],
    )
    .await;
}
