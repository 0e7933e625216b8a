//! The mapping rules, one claim each.

use super::*;
use crate::client::identity::{AwsPrincipal, OidcPrincipal};
use serde_json::json;

fn rule(client: &str, db: Option<&str>, groups: &[&str]) -> UserRule {
    UserRule {
        client_user: client.into(),
        db_user: db.map(Into::into),
        db_groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

fn aws(arn: &str, session: Option<&str>, unique_id: &str) -> Principal {
    Principal::Aws(AwsPrincipal {
        arn: arn.into(),
        account: "123456789012".into(),
        unique_id: unique_id.into(),
        session_name: session.map(Into::into),
        name: arn.rsplit('/').next().unwrap_or_default().into(),
    })
}

fn k8s(namespace: &str, groups: &[&str]) -> Principal {
    Principal::Oidc(OidcPrincipal {
        issuer: "https://oidc.example".into(),
        subject: format!("system:serviceaccount:{namespace}:etl"),
        claims: json!({
            "sub": format!("system:serviceaccount:{namespace}:etl"),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": "etl"}},
            "groups": groups,
        }),
    })
}

#[test]
fn first_match_wins_and_wildcard_keeps_the_name() {
    let m = UserMap::new(vec![
        rule("alice", Some("alice_db"), &["sales", "analysts", "sales"]),
        rule("*", None, &[]),
    ]);
    let a = m.resolve("alice").unwrap();
    assert_eq!(a.db_user, "alice_db");
    assert_eq!(a.db_groups, vec!["analysts", "sales"]);
    assert_eq!(m.resolve("bob").unwrap().db_user, "bob");
}

#[test]
fn no_rule_means_no_identity() {
    let m = UserMap::new(vec![rule("alice", None, &[])]);
    assert_eq!(m.resolve("mallory"), None);
}

#[test]
fn a_typed_name_never_matches_a_principal_rule() {
    let m = UserMap::new(vec![UserRule {
        principal: Some("*".into()),
        ..Default::default()
    }]);
    assert_eq!(m.resolve("anyone"), None);
}

#[test]
fn an_assumed_role_maps_by_role_glob_and_templates_its_session_name() {
    let m = UserMap::new(vec![UserRule {
        principal: Some("arn:aws:iam::123456789012:role/analytics-*".into()),
        db_user: Some("{session_name}".into()),
        db_groups: vec!["analysts".into()],
        query_group: Some("dashboards".into()),
        ..Default::default()
    }]);
    let p = aws(
        "arn:aws:iam::123456789012:role/analytics-reader",
        Some("Alice@Corp.com"),
        "AROA1",
    );
    let got = m.resolve_principal(&p).expect("mapped");
    assert_eq!(got.identity.db_user, "alice@corp.com");
    assert_eq!(got.identity.db_groups, vec!["analysts"]);
    assert_eq!(
        got.defaults.get("query_group").map(String::as_str),
        Some("dashboards")
    );
    let other = aws("arn:aws:iam::123456789012:role/etl", Some("x"), "AROA2");
    assert!(m.resolve_principal(&other).is_err());
}

#[test]
fn a_rule_bound_to_a_unique_id_refuses_a_recreated_role_of_the_same_name() {
    let m = UserMap::new(vec![UserRule {
        unique_id: Some("AROAORIGINAL".into()),
        ..Default::default()
    }]);
    let arn = "arn:aws:iam::123456789012:role/etl";
    assert!(m
        .resolve_principal(&aws(arn, Some("s"), "AROAORIGINAL"))
        .is_ok());
    assert!(m
        .resolve_principal(&aws(arn, Some("s"), "AROARECREATED"))
        .is_err());
}

#[test]
fn a_kubernetes_service_account_maps_by_namespace_claim() {
    let m = UserMap::new(vec![UserRule {
        claims: [("kubernetes.io.namespace".to_owned(), "reporting".to_owned())].into(),
        db_user: Some("k8s_{claim:kubernetes.io.serviceaccount.name}".into()),
        ..Default::default()
    }]);
    let got = m.resolve_principal(&k8s("reporting", &[])).expect("mapped");
    assert_eq!(got.identity.db_user, "k8s_etl");
    assert!(m.resolve_principal(&k8s("billing", &[])).is_err());
}

#[test]
fn claim_groups_pass_only_through_the_allow_list() {
    let m = UserMap::new(vec![UserRule {
        principal: Some("*".into()),
        db_groups_from_claim: Some("groups".into()),
        allowed_db_groups: vec!["analysts".into(), "finance".into()],
        ..Default::default()
    }]);
    let ok = m
        .resolve_principal(&k8s("x", &["Finance"]))
        .expect("allowed");
    assert_eq!(ok.identity.db_groups, vec!["finance"]);
    let refused = m
        .resolve_principal(&k8s("x", &["finance", "admins"]))
        .expect_err("admins");
    assert!(refused.0.contains("\"admins\""), "{}", refused.0);
}

#[test]
fn db_user_names_are_made_acceptable_to_redshift() {
    assert_eq!(
        sanitize_db_user("system:serviceaccount:ns:etl"),
        "system_serviceaccount_ns_etl"
    );
    assert_eq!(sanitize_db_user("42abc"), "u_42abc");
    assert_eq!(sanitize_db_user(&"x".repeat(100)).len(), 64);
}

#[test]
fn globs_match_stars_and_question_marks() {
    assert!(glob_match(
        "arn:aws:iam::*:role/a-*",
        "arn:aws:iam::1:role/a-b"
    ));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "abbc"));
    assert!(glob_match("*", ""));
    assert!(!glob_match("abc", "abcd"));
}
