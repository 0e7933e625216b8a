//! Safe defaults for exposed deployments: refusal without client auth, SCRAM client
//! logins, certificate mapping, and per-user connection caps.

use crate::support::BIN;
use local_cluster::TestCa;
use redshift_iam_proxy::client::auth::ScramVerifier;
use redshift_iam_proxy::config::ClientAuthMethod;
use redshift_iam_proxy::testbed::{connect, db_error, Bed, BedOptions};
use std::process::Command;

#[test]
fn exposed_listener_without_client_auth_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        "listen = \"0.0.0.0:0\"\n[cluster]\nidentifier = \"c\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("allow_unauthenticated_network"),
        "{err}"
    );
}

#[test]
fn hash_password_makes_a_verifier_the_config_accepts() {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let verifier = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    assert!(!verifier.contains("correct horse"));
    verifier.parse::<ScramVerifier>().unwrap();
}

fn scram_bed_options() -> BedOptions {
    BedOptions {
        tweak: Box::new(|c| {
            c.client_auth.method = ClientAuthMethod::ScramSha256;
            c.client_auth
                .scram_verifiers
                .insert("alice".into(), ScramVerifier::hash("alice-pw"));
            c.client_auth
                .scram_verifiers
                .insert("bob".into(), ScramVerifier::hash("bob-pw"));
        }),
        ..Default::default()
    }
}

async fn login(
    bed: &Bed,
    user: &str,
    password: Option<&str>,
) -> Result<String, tokio_postgres::Error> {
    let mut info = bed.conninfo(user);
    if let Some(p) = password {
        info.push_str(&format!(" password={p}"));
    }
    let c = connect(&info).await?;
    Ok(c.query_one("SELECT current_user::text", &[]).await?.get(0))
}

// Multi-threaded: psql runs as a blocking child process beside the in-process proxy.
#[tokio::test(flavor = "multi_thread")]
async fn scram_client_login_needs_the_right_password_else_28p01() {
    let bed = Bed::with(scram_bed_options()).await;
    assert_eq!(
        login(&bed, "alice", Some("alice-pw")).await.unwrap(),
        "IAM:alice"
    );
    for (user, pw) in [
        ("alice", "bob-pw"),
        ("bob", "wrong"),
        ("mallory", "anything"),
    ] {
        let err = login(&bed, user, Some(pw)).await.unwrap_err();
        let (code, msg) = db_error(&err);
        assert_eq!(code, "28P01", "{user}: {msg}");
        assert!(msg.contains(user), "{msg}");
    }
    // No password at all: the client cannot answer the SCRAM request.
    assert!(login(&bed, "alice", None).await.is_err());
    // Failed client logins never reach AWS.
    assert_eq!(bed.get_credentials_calls(), 1);
    // psql too, over TLS.
    let out = Command::new("psql")
        .args(["-w", "-X", "-At", "-c", "SELECT current_user"])
        .arg(format!(
            "host=127.0.0.1 port={} user=bob dbname=postgres sslmode=require",
            bed.proxy_addr.port()
        ))
        .env("PGPASSWORD", "bob-pw")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "IAM:bob");
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_are_mapped_to_users() {
    let client_ca = TestCa::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("clients-ca.crt");
    std::fs::write(&ca_path, &client_ca.cert_pem).unwrap();
    let ca_for_config = ca_path.clone();
    let bed = Bed::with(BedOptions {
        tweak: Box::new(move |c| {
            c.client_auth.method = ClientAuthMethod::Cert;
            c.client_auth.ca_file = Some(ca_for_config);
            c.client_auth
                .cert_users
                .insert("alice-laptop".into(), "alice".into());
        }),
        ..Default::default()
    })
    .await;
    let write_cert = |file: &str, name: &str, ca: &TestCa| {
        let (cert, key) = ca.issue(&[name]).unwrap();
        let (cp, kp) = (
            dir.path().join(format!("{file}.crt")),
            dir.path().join(format!("{file}.key")),
        );
        std::fs::write(&cp, cert).unwrap();
        std::fs::write(&kp, key).unwrap();
        std::fs::set_permissions(&kp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        (cp, kp)
    };
    let psql = |user: &str, cert: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut conn = format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres sslmode=require",
            bed.proxy_addr.port()
        );
        if let Some((c, k)) = cert {
            conn.push_str(&format!(" sslcert={} sslkey={}", c.display(), k.display()));
        }
        let out = Command::new("psql")
            .args(["-w", "-X", "-At", "-c", "SELECT current_user"])
            .arg(conn)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let laptop = write_cert("laptop", "alice-laptop", &client_ca);
    let bob = write_cert("bob", "bob", &client_ca);
    let rogue = write_cert("rogue", "bob", &TestCa::new().unwrap());
    // The mapped certificate logs in as alice; bob's own CN logs in as bob.
    assert_eq!(psql("alice", Some(&laptop)).1, "IAM:alice");
    let r = psql("bob", Some(&bob));
    assert_eq!(r.1, "IAM:bob", "{}", r.2);
    // A certificate for someone else, none at all, or one from another CA: refused.
    let (ok, _, err) = psql("bob", Some(&laptop));
    assert!(
        !ok && err.contains("does not allow logging in as user \"bob\""),
        "{err}"
    );
    let (ok, _, err) = psql("alice", None);
    assert!(!ok && err.contains("client certificate"), "{err}");
    let (ok, _, _) = psql("bob", Some(&rogue));
    assert!(!ok, "a certificate from an untrusted CA must not log in");
}

#[tokio::test]
async fn a_users_session_over_its_cap_is_refused_with_53300_until_one_ends() {
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| c.limits.max_connections_per_user = Some(1)),
        ..Default::default()
    })
    .await;
    let first = bed.connect("alice").await.unwrap();
    let (code, msg) = db_error(&bed.connect("alice").await.unwrap_err());
    assert_eq!(code, "53300");
    assert!(msg.contains("alice"), "{msg}");
    bed.connect("bob")
        .await
        .expect("other users have their own cap");
    drop(first);
    // The slot frees when the session ends.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while bed.connect("alice").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::task::yield_now().await;
    }
}
