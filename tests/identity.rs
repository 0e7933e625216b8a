//! Clients prove who they are with a token as their password, and the proxy maps the
//! verified principal (never the name they typed) to a Redshift identity. Real parts: the
//! test bed's OIDC issuer (discovery + JWKS over HTTP), the emulator's STS for AWS tokens,
//! PostgreSQL, tokio-postgres and psql.

use redshift_iam_proxy::config::PoolMode;
use redshift_iam_proxy::testbed::{connect, db_error, Bed, BedOptions, OidcIssuer};
use serde_json::json;

const AUDIENCE: &str = "redshift-iam-proxy";

/// Token auth with one OIDC issuer and these `[[users]]` rules.
fn oidc_bed(issuer: &OidcIssuer, rules: &str, mode: PoolMode) -> BedOptions {
    BedOptions {
        proxy_toml: format!(
            "{}\n[client_auth]\nmethod = \"token\"\n[[client_auth.oidc]]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n",
            redshift_iam_proxy::testbed::TEST_PROXY_TOML,
            issuer.url
        ),
        users_toml: rules.to_owned(),
        tweak: Box::new(move |c| c.pool.mode = mode),
        ..Default::default()
    }
}

/// A rule mapping a Kubernetes namespace to a DbUser (created at first login).
const K8S_RULES: &str = r#"
    [[users]]
    claims = { "kubernetes.io.namespace" = "reporting" }
    db_user = "k8s_{claim:kubernetes.io.serviceaccount.name}"
    auto_create = true
    session = { search_path = "reporting_schema" }
    [[users]]
    principal = "*#alice@example.com"
    db_user = "alice"
"#;

/// A client of the bed whose password is `token` (the user name it types is ignored).
async fn login(
    bed: &Bed,
    typed_user: &str,
    token: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect(&format!(
        "host=127.0.0.1 port={} user={typed_user} dbname=postgres password={token}",
        bed.proxy_addr.port()
    ))
    .await
}

async fn current_user(c: &tokio_postgres::Client) -> String {
    c.query_one("SELECT current_user::text", &[])
        .await
        .expect("current_user")
        .get(0)
}

async fn refusal(bed: &Bed, token: &str) -> (String, String) {
    match login(bed, "whoever", token).await {
        Ok(_) => panic!("the token was accepted"),
        Err(e) => db_error(&e),
    }
}

#[tokio::test]
async fn a_kubernetes_service_account_token_maps_by_its_namespace() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction)).await;
    let token = issuer.service_account_token(AUDIENCE, "reporting", "etl");
    let c = login(&bed, "typed-anything", &token)
        .await
        .expect("token login");
    assert_eq!(current_user(&c).await, "IAMA:k8s_etl");
    let other = issuer.service_account_token(AUDIENCE, "billing", "etl");
    let (code, msg) = refusal(&bed, &other).await;
    assert_eq!(code, "28000");
    assert!(msg.contains("no [[users]] rule matches principal"), "{msg}");
}

#[tokio::test]
async fn a_rules_session_default_applies_on_the_server() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction)).await;
    let token = issuer.service_account_token(AUDIENCE, "reporting", "etl");
    let c = login(&bed, "x", &token).await.expect("token login");
    let path: String = c
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "reporting_schema");
}

#[tokio::test]
async fn two_subjects_land_on_their_own_db_users_and_pools() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Session)).await;
    let sa = login(
        &bed,
        "x",
        &issuer.service_account_token(AUDIENCE, "reporting", "etl"),
    )
    .await
    .expect("service account");
    let alice = login(
        &bed,
        "x",
        &issuer.mint(issuer.claims(AUDIENCE, "alice@example.com", 600)),
    )
    .await
    .expect("alice");
    assert_eq!(current_user(&sa).await, "IAMA:k8s_etl");
    assert_eq!(current_user(&alice).await, "IAM:alice");
    let shared = bed.shared.clone().unwrap();
    assert_eq!(shared.pools.snapshot().len(), 2, "one pool per identity");
}

#[tokio::test]
async fn keys_rotated_at_the_issuer_are_taken_without_a_restart() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction)).await;
    login(
        &bed,
        "x",
        &issuer.service_account_token(AUDIENCE, "reporting", "etl"),
    )
    .await
    .expect("first key");
    issuer.rotate().unwrap();
    login(
        &bed,
        "x",
        &issuer.service_account_token(AUDIENCE, "reporting", "etl"),
    )
    .await
    .expect("the rotated key");
}

#[tokio::test]
async fn every_bad_jwt_is_refused_with_28000_naming_its_fault() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction)).await;
    let good = issuer.claims(AUDIENCE, "alice@example.com", 600);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("alg none", issuer.mint_unsigned(&good), "algorithm"),
        ("HMAC", issuer.mint_hmac(&good, b"guessable"), "algorithm"),
        (
            "wrong iss",
            issuer.mint(with("iss", json!("https://elsewhere.example"))),
            "not configured",
        ),
        (
            "wrong aud",
            issuer.mint(with("aud", json!("someone-else"))),
            "aud",
        ),
        (
            "expired",
            issuer.mint(with("exp", json!(now - 3600))),
            "expired",
        ),
        (
            "future nbf",
            issuer.mint(with("nbf", json!(now + 3600))),
            "not valid yet",
        ),
        (
            "unknown kid",
            issuer.mint_with_unpublished_key(good.clone()),
            "has no key",
        ),
        (
            "oversized",
            format!("ey{}.x.y", "A".repeat(20_000)),
            "larger than",
        ),
    ];
    for (what, token, says) in cases {
        let (code, msg) = refusal(&bed, &token).await;
        assert_eq!(code, "28000", "{what}: {msg}");
        assert!(msg.contains(says), "{what}: {msg}");
    }
}

#[tokio::test]
async fn an_unknown_key_id_makes_one_refresh_of_the_issuers_keys() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction)).await;
    login(
        &bed,
        "x",
        &issuer.service_account_token(AUDIENCE, "reporting", "etl"),
    )
    .await
    .expect("login");
    let before = issuer.jwks_fetches();
    let forged =
        issuer.mint_with_unpublished_key(issuer.claims(AUDIENCE, "alice@example.com", 600));
    for _ in 0..5 {
        refusal(&bed, &forged).await;
    }
    assert_eq!(
        issuer.jwks_fetches() - before,
        1,
        "refreshes are rate-limited"
    );
}

#[tokio::test]
async fn a_claim_selected_group_outside_the_allow_list_is_refused() {
    let issuer = OidcIssuer::start().await.unwrap();
    let rules = r#"
        [[users]]
        principal = "*"
        db_user = "alice"
        db_groups_from_claim = "groups"
        allowed_db_groups = ["analysts"]
    "#;
    let bed = Bed::with(oidc_bed(&issuer, rules, PoolMode::Transaction)).await;
    let mut claims = issuer.claims(AUDIENCE, "alice@example.com", 600);
    claims["groups"] = json!(["analysts"]);
    login(&bed, "x", &issuer.mint(claims.clone()))
        .await
        .expect("allowed group");
    claims["groups"] = json!(["analysts", "superusers"]);
    let (code, msg) = refusal(&bed, &issuer.mint(claims)).await;
    assert_eq!(code, "28000");
    assert!(msg.contains("superusers"), "{msg}");
}

#[tokio::test]
async fn a_password_that_is_no_token_is_refused() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction)).await;
    let (code, msg) = refusal(&bed, "hunter2").await;
    assert_eq!(code, "28000");
    assert!(msg.contains("neither"), "{msg}");
}

#[tokio::test]
async fn the_verified_principal_shows_in_show_clients() {
    let issuer = OidcIssuer::start().await.unwrap();
    let mut opts = oidc_bed(&issuer, K8S_RULES, PoolMode::Transaction);
    // A token client gets into the console by its principal, never by the name it types.
    opts.users_toml
        .push_str("\n[admin]\nusers = [\"*#alice@example.com\"]\n");
    let bed = Bed::with(opts).await;
    let token = issuer.mint(issuer.claims(AUDIENCE, "alice@example.com", 600));
    let _held = login(&bed, "x", &token).await.expect("login");
    let console = connect(&format!(
        "host=127.0.0.1 port={} user=alice dbname=redshift_iam_proxy password={token}",
        bed.proxy_addr.port()
    ))
    .await
    .expect("console");
    let rows = console
        .simple_query("SHOW CLIENTS")
        .await
        .expect("SHOW CLIENTS");
    let principals: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("principal").map(str::to_owned),
            _ => None,
        })
        .collect();
    let want = format!("{}#alice@example.com", issuer.url);
    assert!(principals.contains(&want), "{principals:?}");
}

async fn show(c: &tokio_postgres::Client, what: &str) -> String {
    let rows = c.simple_query(&format!("SHOW {what}")).await.expect("SHOW");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}

const DASHBOARD_RULES: &str = r#"
    [[users]]
    principal = "*#alice@example.com"
    db_user = "alice"
    query_group = "dashboards"
"#;

#[tokio::test]
async fn a_query_group_rule_routes_the_session_through_the_redshift_front() {
    let issuer = OidcIssuer::start().await.unwrap();
    let mut opts = oidc_bed(&issuer, DASHBOARD_RULES, PoolMode::Transaction);
    opts.redshift_front = true;
    let bed = Bed::with(opts).await;
    let token = issuer.mint(issuer.claims(AUDIENCE, "alice@example.com", 600));
    let c = login(&bed, "x", &token).await.expect("login");
    assert_eq!(show(&c, "query_group").await, "dashboards");
    c.batch_execute("SET query_group TO 'adhoc'")
        .await
        .expect("own SET");
    assert_eq!(
        show(&c, "query_group").await,
        "adhoc",
        "the client can still set its own"
    );
}

#[tokio::test]
async fn a_rules_session_default_applies_in_mode_none_too() {
    let issuer = OidcIssuer::start().await.unwrap();
    let bed = Bed::with(oidc_bed(&issuer, K8S_RULES, PoolMode::None)).await;
    let token = issuer.service_account_token(AUDIENCE, "reporting", "etl");
    let c = login(&bed, "x", &token).await.expect("token login");
    assert_eq!(show(&c, "search_path").await, "reporting_schema");
}
