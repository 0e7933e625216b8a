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

// ---- AWS-signed identity tokens, verified by the emulator's STS ----

use redshift_iam_proxy::client::identity::presign::presign;
use redshift_iam_proxy::testbed::Parts;
use std::time::{Duration, SystemTime};

const SERVER_ID: &str = "analytics-proxy";
const ALICE_KEY: (&str, &str) = ("AKIDALICE", "alice-secret");
const ROLE_KEY: (&str, &str) = ("ASIAROLE", "role-secret");
const ALICE_ARN: &str = "arn:aws:iam::123456789012:user/alice";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/analytics-reader";
const ROLE_SESSION_ARN: &str = "arn:aws:sts::123456789012:assumed-role/analytics-reader/Carol@Corp";

const AWS_RULES: &str = r#"
    [[users]]
    principal = "arn:aws:iam::123456789012:user/alice"
    db_user = "alice"
    [[users]]
    principal = "arn:aws:iam::123456789012:role/analytics-*"
    db_user = "{session_name}"
    auto_create = true
"#;

/// Token auth with the emulator as STS, two more principals' keys known to it.
fn aws_bed(rules: &str) -> BedOptions {
    BedOptions {
        proxy_toml: format!(
            "{}\n[client_auth]\nmethod = \"token\"\n[client_auth.aws_token]\nserver_id = \"{SERVER_ID}\"\nregion = \"us-east-1\"\n",
            redshift_iam_proxy::testbed::TEST_PROXY_TOML
        ),
        users_toml: rules.to_owned(),
        emulator: Box::new(|cfg, _| {
            for ((id, secret), arn) in [(ALICE_KEY, ALICE_ARN), (ROLE_KEY, ROLE_SESSION_ARN)] {
                let mut key = redshift_emulator::AccessKey::new(id, secret);
                key.arn = arn.to_owned();
                cfg.keys.push(key);
            }
            cfg.roles.push(redshift_emulator::EmulatedRole {
                arn: ROLE_ARN.into(),
                external_id: None,
                db_groups: vec![],
            });
        }),
        tweak: aws_tweak(),
        ..Default::default()
    }
}

/// Transaction pooling, and AWS tokens for `SERVER_ID` verified by the emulator's STS.
fn aws_tweak() -> redshift_iam_proxy::testbed::ConfigTweak {
    Box::new(|c| {
        c.pool.mode = PoolMode::Transaction;
        // Verification goes to the emulator's STS (http on loopback).
        let endpoint = c.aws.endpoint_url.clone();
        if let Some(t) = c.client_auth.aws_token.as_mut() {
            t.sts_endpoint = endpoint;
        }
    })
}

/// A token as `redshift-iam-proxy token` makes it, signed with `key` at `at`.
fn aws_token(parts: &Parts, key: (&str, &str), server_id: &str, at: SystemTime) -> String {
    let creds = aws_credential_types::Credentials::new(key.0, key.1, None, None, "test");
    presign(
        &parts.emu.endpoint_url(),
        "us-east-1",
        server_id,
        creds,
        Duration::from_secs(900),
        at,
    )
    .expect("presigned")
}

#[tokio::test]
async fn two_aws_principals_land_on_their_own_db_users_and_pools() {
    let bed = Bed::with(aws_bed(AWS_RULES)).await;
    let alice = login(
        &bed,
        "x",
        &aws_token(&bed, ALICE_KEY, SERVER_ID, SystemTime::now()),
    )
    .await
    .expect("alice's token");
    let carol = login(
        &bed,
        "alice",
        &aws_token(&bed, ROLE_KEY, SERVER_ID, SystemTime::now()),
    )
    .await
    .expect("the role session's token");
    assert_eq!(current_user(&alice).await, "IAM:alice");
    assert_eq!(
        current_user(&carol).await,
        "IAMA:carol@corp",
        "the typed name counts for nothing"
    );
    assert_eq!(bed.shared.clone().unwrap().pools.snapshot().len(), 2);
}

#[tokio::test]
async fn a_verified_aws_token_is_not_sent_to_sts_again_while_valid() {
    let bed = Bed::with(aws_bed(AWS_RULES)).await;
    let token = aws_token(&bed, ALICE_KEY, SERVER_ID, SystemTime::now());
    login(&bed, "x", &token).await.expect("first login");
    let calls = bed.emu.call_count("GetCallerIdentity");
    for _ in 0..5 {
        login(&bed, "x", &token).await.expect("cached");
    }
    assert_eq!(bed.emu.call_count("GetCallerIdentity"), calls);
}

#[tokio::test]
async fn every_bad_aws_token_is_refused_naming_its_fault() {
    let bed = Bed::with(aws_bed(AWS_RULES)).await;
    let now = SystemTime::now();
    let good = aws_token(&bed, ALICE_KEY, SERVER_ID, now);
    let url = {
        use base64::Engine;
        let b64 = good.strip_prefix("aws-v1.").unwrap();
        String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    let retoken = |u: String| {
        use base64::Engine;
        format!(
            "aws-v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(u)
        )
    };
    let port = bed
        .emu
        .endpoint_url()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let tampered_sig = {
        let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
        let flipped = if &url[at..at + 1] == "0" { "1" } else { "0" };
        format!("{}{flipped}{}", &url[..at], &url[at + 1..])
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "expired",
            aws_token(&bed, ALICE_KEY, SERVER_ID, now - Duration::from_secs(1200)),
            "28000",
            "expired",
        ),
        (
            "another server id",
            aws_token(&bed, ALICE_KEY, "other-proxy", now),
            "28000",
            "another server id",
        ),
        (
            "host not STS",
            retoken(url.replace(&format!("127.0.0.1:{port}"), "169.254.169.254")),
            "28000",
            "not an STS endpoint",
        ),
        (
            "extra parameter",
            retoken(format!("{url}&RoleArn=x")),
            "28000",
            "not allowed",
        ),
        (
            "duplicated parameter",
            retoken(format!("{url}&Version=2011-06-15")),
            "28000",
            "twice",
        ),
        (
            "another action",
            retoken(url.replace("GetCallerIdentity", "AssumeRole")),
            "28000",
            "GetCallerIdentity",
        ),
        (
            "tampered signature",
            retoken(tampered_sig),
            "28000",
            "signature",
        ),
        (
            "oversized",
            format!("aws-v1.{}", "A".repeat(20_000)),
            "28000",
            "larger than",
        ),
    ];
    for (what, token, code, says) in cases {
        let (c, msg) = refusal(&bed, &token).await;
        assert_eq!(c, code, "{what}: {msg}");
        assert!(msg.contains(says), "{what}: {msg}");
    }
}

/// Fresh role-session credentials from the emulator's STS AssumeRole.
async fn assume_role(bed: &Bed, session: &str) -> aws_credential_types::Credentials {
    use redshift_iam_proxy::testbed::{ACCESS_KEY, SECRET_KEY};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(bed.emu.endpoint_url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "bed",
        ))
        .load()
        .await;
    let out = aws_sdk_sts::Client::new(&config)
        .assume_role()
        .role_arn(ROLE_ARN)
        .role_session_name(session)
        .send()
        .await
        .expect("AssumeRole");
    let c = out.credentials().expect("credentials");
    aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "assumed",
    )
}

fn aws_token_from(bed: &Bed, creds: aws_credential_types::Credentials) -> String {
    presign(
        &bed.emu.endpoint_url(),
        "us-east-1",
        SERVER_ID,
        creds,
        Duration::from_secs(900),
        SystemTime::now(),
    )
    .expect("presigned")
}

#[tokio::test]
async fn a_rule_bound_to_a_unique_id_refuses_the_role_once_it_is_recreated() {
    let mut bed = Bed::with(aws_bed(AWS_RULES)).await;
    let id = bed.emu.unique_id(ROLE_ARN).expect("role id");
    let rules = format!(
        "[[users]]\nunique_id = \"{id}\"\ndb_user = \"{{session_name}}\"\nauto_create = true\n"
    );
    bed.start_proxy(&rules, aws_tweak()).await;
    let before = assume_role(&bed, "before").await;
    let c = login(&bed, "x", &aws_token_from(&bed, before))
        .await
        .expect("a session of the role as bound");
    assert_eq!(current_user(&c).await, "IAMA:before");
    bed.emu.recreate_role(ROLE_ARN).expect("recreated");
    let after = assume_role(&bed, "after").await;
    let (code, msg) = refusal(&bed, &aws_token_from(&bed, after)).await;
    assert_eq!(code, "28000", "{msg}");
    assert!(msg.contains("no [[users]] rule"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_logs_in_with_the_token_command_and_no_log_line_holds_the_token() {
    let parts = Parts::start(&aws_bed(AWS_RULES)).await.unwrap();
    let endpoint = parts.emu.endpoint_url();
    let fragment = format!(
        "[client_auth]\nmethod = \"token\"\n[client_auth.aws_token]\nserver_id = \"{SERVER_ID}\"\nsts_endpoint = \"{endpoint}\"\n[pool]\nmode = \"transaction\"\n{AWS_RULES}"
    );
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_redshift-iam-proxy"));
    let proxy = parts
        .start_binary(bin, &fragment, Some("trace"))
        .expect("proxy binary");
    let made = tokio::process::Command::new(bin)
        .args([
            "token",
            "--server-id",
            SERVER_ID,
            "--region",
            "us-east-1",
            "--endpoint-url",
            &endpoint,
        ])
        .env("AWS_ACCESS_KEY_ID", ALICE_KEY.0)
        .env("AWS_SECRET_ACCESS_KEY", ALICE_KEY.1)
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("token command");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8(made.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let out = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-w",
            "-A",
            "-t",
            "-c",
            "SELECT current_user",
            &proxy.conninfo("whoever", "postgres"),
        ])
        .env("PGPASSWORD", &token)
        .output()
        .await
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "IAM:alice");
    let log = proxy.log_text();
    assert!(
        log.contains("client proved its identity"),
        "the trace log ran"
    );
    let signature = token_signature(&token);
    for secret in [
        token.as_str(),
        token.trim_start_matches("aws-v1."),
        signature.as_str(),
        ALICE_KEY.1,
    ] {
        assert!(!log.contains(secret), "a token or secret is in the log");
    }
}

/// The X-Amz-Signature inside an AWS token.
fn token_signature(token: &str) -> String {
    use base64::Engine;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_start_matches("aws-v1."))
        .expect("base64");
    let url = String::from_utf8(url).expect("utf-8");
    url.split("X-Amz-Signature=")
        .nth(1)
        .unwrap_or_default()
        .split('&')
        .next()
        .unwrap_or_default()
        .to_owned()
}
