//! `redshift-iam-proxy check` on the test bed: passes on a good setup, and fails with a
//! named fix on each broken one.

use crate::support::BIN;
use redshift_iam_proxy::testbed::{proxy_command, BedOptions, Parts, SECRET_KEY};
use std::path::Path;

/// Runs `check` with `config`; returns (exit code, stdout).
fn check(config: &str, secret: &str, extra: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let out = proxy_command(Path::new(BIN), dir.path())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .args(extra)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.code().unwrap_or(-1), stdout)
}

fn fail_line<'a>(out: &'a str, what: &str) -> &'a str {
    let start = out
        .lines()
        .position(|l| l.starts_with("FAIL") && l.contains(what))
        .unwrap_or_else(|| panic!("no FAIL line for {what}:\n{out}"));
    let rest = &out[out.lines().take(start).map(|l| l.len() + 1).sum::<usize>()..];
    let end = rest
        .match_indices("\nPASS")
        .chain(rest.match_indices("\nFAIL"))
        .chain(rest.match_indices("\ncheck:"))
        .map(|(i, _)| i)
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

const USERS: &str = r#"
[[users]]
client_user = "alice"
db_groups = ["analysts"]
[[users]]
client_user = "bob"
[[users]]
client_user = "*"
"#;

/// The test bed's parts with [`USERS`], denying the bed's key `denied` IAM actions.
async fn bed(denied: &[&str]) -> Parts {
    Parts::start(&BedOptions {
        users_toml: USERS.into(),
        denied_actions: denied.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_on_the_test_bed() {
    let parts = bed(&[]).await;
    let (code, out) = check(&parts.config_toml().unwrap(), SECRET_KEY, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("PASS  AWS identity")
            && out.contains("arn:aws:iam::123456789012:user/emulator"),
        "{out}"
    );
    assert!(out.contains("GetClusterCredentials as IAM:alice"), "{out}");
    assert!(out.contains("GetClusterCredentials as IAM:bob"), "{out}");
    assert!(out.contains("login as IAM:alice"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_join_group_as_the_fix_for_a_denied_group() {
    let parts = bed(&["redshift:JoinGroup"]).await;
    let (code, out) = check(&parts.config_toml().unwrap(), SECRET_KEY, &[]);
    assert_eq!(code, 1, "{out}");
    let line = fail_line(&out, "credentials for alice");
    assert!(
        line.contains("fix: allow redshift:JoinGroup on arn:aws:redshift:"),
        "{line}"
    );
    assert!(
        out.contains("PASS") && out.contains("GetClusterCredentials as IAM:bob"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_the_credentials_as_the_fix_for_a_bad_aws_secret() {
    let parts = bed(&[]).await;
    let (code, out) = check(
        &parts.config_toml().unwrap(),
        "not-the-secret",
        &["--first"],
    );
    assert_eq!(code, 1);
    assert!(
        fail_line(&out, "AWS identity").contains("fix: the AWS credentials were rejected"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_the_identifier_as_the_fix_for_an_unknown_cluster() {
    let parts = bed(&[]).await;
    let unknown = parts
        .config_toml_with("[cluster]\nidentifier = \"nosuch\"")
        .unwrap();
    let (code, out) = check(&unknown, SECRET_KEY, &[]);
    assert_eq!(code, 1);
    let line = fail_line(&out, "endpoint");
    assert!(
        line.contains("ClusterNotFound") && line.contains("fix:") && line.contains("identifier"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_sslrootcert_as_the_fix_for_an_untrusted_certificate() {
    let parts = bed(&[]).await;
    let untrusted: String = parts
        .config_toml()
        .unwrap()
        .lines()
        .filter(|l| !l.contains("sslrootcert"))
        .collect::<Vec<_>>()
        .join("\n");
    let (code, out) = check(&untrusted, SECRET_KEY, &["--first"]);
    assert_eq!(code, 1);
    assert!(
        fail_line(&out, "login as")
            .contains("fix: the cluster's certificate is not trusted: set sslrootcert"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_auto_create_as_the_fix_for_a_missing_database_user() {
    let parts = bed(&[]).await;
    let (code, out) = check(
        &parts.config_toml().unwrap(),
        SECRET_KEY,
        &["--user", "carol"],
    );
    assert_eq!(code, 1, "{out}");
    let line = fail_line(&out, "login as IAM:carol");
    assert!(line.contains("auto_create = true"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_get_cluster_credentials_as_the_fix_when_it_is_denied() {
    let parts = bed(&["redshift:GetClusterCredentials"]).await;
    let (code, out) = check(&parts.config_toml().unwrap(), SECRET_KEY, &["--first"]);
    assert_eq!(code, 1);
    assert!(
        fail_line(&out, "credentials for alice")
            .contains("fix: allow redshift:GetClusterCredentials"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_an_oidc_issuer_whose_keys_cannot_be_read() {
    let parts = bed(&[]).await;
    let unreachable = format!(
        "http://127.0.0.1:{}",
        redshift_iam_proxy::testbed::free_port().unwrap()
    );
    let config = parts
        .config_toml_with(&format!(
            "[client_auth]\n[[client_auth.oidc]]\nissuer = \"{unreachable}\"\naudience = \"proxy\"\n"
        ))
        .unwrap();
    let (code, out) = check(&config, SECRET_KEY, &[]);
    assert_eq!(code, 1, "{out}");
    let line = fail_line(&out, "OIDC issuer");
    assert!(line.contains("jwks_file"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_the_cluster_status() {
    let parts = bed(&[]).await;
    let (code, out) = check(&parts.config_toml().unwrap(), SECRET_KEY, &["--first"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("PASS")
            && l.contains("cluster status")
            && l.ends_with("available (Available)")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_resume_paused_as_the_fix_for_a_paused_cluster() {
    let parts = bed(&[]).await;
    parts.pause_cluster().await.unwrap();
    let (code, out) = check(&parts.config_toml().unwrap(), SECRET_KEY, &["--first"]);
    assert_eq!(code, 1, "{out}");
    let line = fail_line(&out, "cluster status");
    assert!(
        line.contains("paused (Unavailable)")
            && line.contains("fix: resume the cluster")
            && line.contains("resume_paused = true"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_probes_resume_cluster_without_changing_an_available_cluster() {
    let parts = bed(&[]).await;
    let config = parts
        .config_toml_with("[cluster]\nresume_paused = true")
        .unwrap();
    let (code, out) = check(&config, SECRET_KEY, &["--first"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("PASS")
            && l.contains("may resume the cluster")
            && l.contains("redshift:ResumeCluster allowed")),
        "{out}"
    );
    assert_eq!(
        parts.emu.cluster_status(parts.cluster_identifier()),
        Some(redshift_emulator::ClusterStatus::Available)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_names_resume_cluster_on_the_cluster_as_the_fix_when_it_is_denied() {
    let parts = bed(&["redshift:ResumeCluster"]).await;
    let config = parts
        .config_toml_with("[cluster]\nresume_paused = true")
        .unwrap();
    let (code, out) = check(&config, SECRET_KEY, &["--first"]);
    assert_eq!(code, 1, "{out}");
    let line = fail_line(&out, "may resume the cluster");
    assert!(
        line.contains(
            "fix: allow redshift:ResumeCluster on arn:aws:redshift:us-east-1:123456789012:cluster:testcluster for arn:aws:iam::123456789012:user/emulator"
        ),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_leaves_a_paused_cluster_paused_with_resume_paused() {
    let parts = bed(&[]).await;
    parts.pause_cluster().await.unwrap();
    let config = parts
        .config_toml_with("[cluster]\nresume_paused = true")
        .unwrap();
    let (code, out) = check(&config, SECRET_KEY, &["--first"]);
    assert_eq!(
        (
            code,
            parts.emu.call_count("ResumeCluster"),
            parts.emu.cluster_status(parts.cluster_identifier())
        ),
        (0, 0, Some(redshift_emulator::ClusterStatus::Paused)),
        "{out}"
    );
    assert!(
        out.contains("the first client login will resume it"),
        "{out}"
    );
}
