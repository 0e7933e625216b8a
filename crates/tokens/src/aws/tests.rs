//! Every check a token passes before STS is asked, one refusal each.

use super::*;
use crate::presign::presign;
use std::time::{Duration, UNIX_EPOCH};

const SIGNED_AT: u64 = 1_780_000_000;

fn at(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs as i64).expect("time")
}

fn endpoints() -> Endpoints {
    Endpoints::new("eu-west-1", None).expect("endpoints")
}

fn creds() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
}

/// A token presigned by the real aws-sigv4 signer for `endpoint`.
fn token_for(endpoint: &str, expires: u64) -> String {
    presign(
        endpoint,
        "eu-west-1",
        "analytics-proxy",
        creds(),
        Duration::from_secs(expires),
        UNIX_EPOCH + Duration::from_secs(SIGNED_AT),
    )
    .expect("presigned")
}

fn good() -> String {
    token_for("https://sts.eu-west-1.amazonaws.com", 900)
}

/// The URL inside a token.
fn url_of(token: &str) -> String {
    let b64 = token.strip_prefix(PREFIX).expect("prefix");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("base64");
    String::from_utf8(raw).expect("utf-8")
}

fn token_of(url: &str) -> String {
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

fn outcome(token: &str) -> &'static str {
    match parse(token, &endpoints(), at(SIGNED_AT + 10)) {
        Ok(_) => "ok",
        Err(e) => e.outcome,
    }
}

#[test]
fn a_token_from_the_token_command_passes_and_is_rebuilt_with_the_same_parameters() {
    let t = good();
    let p = parse(&t, &endpoints(), at(SIGNED_AT + 10)).expect("valid");
    assert!(
        p.url
            .starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&"),
        "{}",
        p.url
    );
    assert_eq!(p.expires_at, at(SIGNED_AT + 900));
    let original: std::collections::BTreeMap<String, String> = url::Url::parse(&url_of(&t))
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    let rebuilt: std::collections::BTreeMap<String, String> = url::Url::parse(&p.url)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(original, rebuilt);
}

#[test]
fn every_tampering_before_sts_is_refused_with_its_cause() {
    let url = url_of(&good());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a host the client chose",
            url.replace("sts.eu-west-1.amazonaws.com", "evil.example.com"),
            "wrong_endpoint",
        ),
        (
            "another region's STS",
            url.replace("eu-west-1.amazonaws.com", "us-east-1.amazonaws.com"),
            "wrong_endpoint",
        ),
        (
            "plain http",
            url.replace("https://", "http://"),
            "wrong_endpoint",
        ),
        ("a path", url.replace(".com/?", ".com/x?"), "wrong_endpoint"),
        (
            "user info",
            url.replace("https://", "https://me@"),
            "wrong_endpoint",
        ),
        (
            "another action",
            url.replace("Action=GetCallerIdentity", "Action=AssumeRole"),
            "wrong_action",
        ),
        (
            "an extra parameter",
            format!("{url}&RoleArn=x"),
            "malformed",
        ),
        (
            "a duplicated parameter",
            format!("{url}&Action=GetCallerIdentity"),
            "malformed",
        ),
        (
            "no audience header signed",
            url.replace("host%3Bx-redshift-iam-proxy-id", "host"),
            "wrong_audience",
        ),
        (
            "no signature",
            url.replace("X-Amz-Signature=", "X-Amz-Nothing="),
            "malformed",
        ),
    ];
    for (what, tampered, want) in cases {
        assert_eq!(outcome(&token_of(&tampered)), want, "{what}: {tampered}");
    }
}

#[test]
fn an_expired_token_is_refused() {
    let t = good();
    let e = parse(&t, &endpoints(), at(SIGNED_AT + 901)).expect_err("expired");
    assert_eq!(e.outcome, "expired");
}

#[test]
fn a_token_valid_longer_than_15_minutes_is_refused() {
    let t = token_for("https://sts.eu-west-1.amazonaws.com", 3600);
    assert_eq!(outcome(&t), "malformed");
}

#[test]
fn a_token_dated_in_the_future_is_refused() {
    let t = good();
    let e = parse(&t, &endpoints(), at(SIGNED_AT - 3600)).expect_err("future");
    assert_eq!(e.outcome, "malformed");
}

#[test]
fn a_token_over_the_size_limit_is_refused_unread() {
    let t = format!("{PREFIX}{}", "A".repeat(crate::MAX_TOKEN_BYTES));
    assert_eq!(outcome(&t), "too_large");
}

#[test]
fn garbage_never_panics() {
    for t in [
        "aws-v1.",
        "aws-v1.!!!",
        "aws-v1.aGk",
        "aws-v1.aHR0cHM6Ly8",
        "x",
    ] {
        let _ = parse(t, &endpoints(), at(SIGNED_AT));
    }
}

#[test]
fn the_configured_endpoint_replaces_the_regional_ones() {
    let e = Endpoints::new("eu-west-1", Some("http://127.0.0.1:4566")).expect("loopback http");
    let t = token_for("http://127.0.0.1:4566", 900);
    assert!(parse(&t, &e, at(SIGNED_AT + 1)).is_ok());
    assert_eq!(
        parse(&good(), &e, at(SIGNED_AT + 1)).map_err(|e| e.outcome),
        Err("wrong_endpoint")
    );
    assert!(Endpoints::new("eu-west-1", Some("http://sts.example.com")).is_err());
}

#[test]
fn assumed_roles_are_named_by_their_role_and_session() {
    let p = principal(
        "arn:aws:sts::123456789012:assumed-role/analytics-reader/alice@corp",
        "123456789012",
        "AROAEXAMPLEID:alice@corp",
    )
    .expect("principal");
    assert_eq!(p.arn, "arn:aws:iam::123456789012:role/analytics-reader");
    assert_eq!(p.session_name.as_deref(), Some("alice@corp"));
    assert_eq!(p.unique_id, "AROAEXAMPLEID");
    assert_eq!(p.name, "analytics-reader");
    let u = principal(
        "arn:aws:iam::123456789012:user/ops/bob",
        "123456789012",
        "AIDAEXAMPLE",
    )
    .expect("user");
    assert_eq!((u.name.as_str(), u.session_name), ("bob", None));
    assert!(principal("arn:aws:iam::999:user/x", "123456789012", "AIDA").is_err());
}
