//! The proxy against a Redshift-like front (TLS only, auth code 13 with the drivers' nonce,
//! `server_version` 8.0.2, Redshift's refusals) in front of a real PostgreSQL cluster.

use redshift_iam_proxy::base::stream::Stream;
use redshift_iam_proxy::cluster::upstream::{self, UpstreamTarget};
use redshift_iam_proxy::config::SslMode;
use redshift_iam_proxy::testbed::RedshiftFront;
use redshift_iam_proxy::testbed::{db_error, wait_for, Bed, BedOptions};
use redshift_iam_proxy::wire::{self, AuthRequest, ErrorFields, Message, MessageReader};
use rustls::pki_types::ServerName;
use secrecy::SecretString;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn front_bed() -> Bed {
    Bed::with(BedOptions {
        redshift_front: true,
        ..Default::default()
    })
    .await
}

fn front(bed: &Bed) -> &RedshiftFront {
    bed.front.as_ref().expect("the bed has a front")
}

/// A TLS connection to the front, verified with the cluster's CA, before any startup message.
async fn tls_to_front(bed: &Bed) -> Stream {
    let front = front(bed);
    let target = UpstreamTarget {
        host: front.host().into(),
        port: front.port(),
        tls: redshift_iam_proxy::cluster::tls::upstream_config(
            SslMode::VerifyFull,
            Some(bed.pg.ca_cert_path()),
        )
        .expect("TLS config"),
        server_name: ServerName::try_from("localhost").expect("name"),
        connect_timeout: Duration::from_secs(10),
    };
    upstream::connect(&target).await.expect("TLS to the front")
}

/// Sends a StartupMessage and returns the first message the front answers with.
async fn startup(
    stream: &mut Stream,
    reader: &mut MessageReader,
    params: &[(&str, &str)],
) -> Message {
    stream
        .write_all(&wire::startup_message(params))
        .await
        .expect("send startup");
    reader.read(stream).await.expect("front answers")
}

/// The newest password the emulator minted for `login_role`, minting one by logging in
/// through the proxy as `client_user`.
async fn minted_password(bed: &Bed, client_user: &str, login_role: &str) -> SecretString {
    drop(
        bed.connect(client_user)
            .await
            .expect("login mints a password"),
    );
    (bed.emu.password_lookup())(login_role).expect("a password was minted")
}

/// A hand-written code-13 login to the front as `IAM:alice` with the right password, the
/// given client nonce and extra startup parameters; returns the connection and the front's
/// answer to the digest.
async fn code13_login(
    bed: &Bed,
    client_nonce: &[u8],
    extra_params: &[(&str, &str)],
) -> (Stream, MessageReader, Message) {
    let password = minted_password(bed, "alice", "IAM:alice").await;
    let mut stream = tls_to_front(bed).await;
    let mut reader = MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE);
    let mut params = vec![("user", "IAM:alice"), ("database", "postgres")];
    params.extend_from_slice(extra_params);
    let mut request = startup(&mut stream, &mut reader, &params).await;
    if request.tag == b'v' {
        // NegotiateProtocolVersion declining `_pq_.*` options comes first.
        request = reader.read(&mut stream).await.expect("auth request");
    }
    assert_eq!(request.tag, b'R');
    let AuthRequest::RedshiftDigest {
        algorithm: 0,
        salt,
        server_nonce,
    } = wire::parse_auth_request(&request.body).expect("auth request")
    else {
        panic!("the front asks for code 13 with SHA-256");
    };
    let digest = upstream::redshift_digest(&password, &salt, &server_nonce, client_nonce);
    stream
        .write_all(&wire::redshift_digest_response(&digest, client_nonce))
        .await
        .expect("send digest");
    let answer = reader
        .read(&mut stream)
        .await
        .expect("front answers the digest");
    (stream, reader, answer)
}

async fn code13_login_with_nonce(bed: &Bed, client_nonce: &[u8]) -> Message {
    code13_login(bed, client_nonce, &[]).await.2
}

fn error_fields(msg: &Message) -> ErrorFields {
    assert_eq!(msg.tag, b'E', "expected an ErrorResponse");
    wire::parse_error_fields(&msg.body)
}

#[tokio::test]
async fn passwordless_client_logs_in_through_code13_as_the_iam_user() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    let user: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(user, "IAM:alice");
    assert_eq!(
        front(&bed).logins_accepted(),
        1,
        "the login went through the front"
    );
}

#[tokio::test]
async fn client_sees_server_version_8_0_2() {
    let bed = front_bed().await;
    let (_client, conn) = tokio_postgres::connect(&bed.conninfo("alice"), tokio_postgres::NoTls)
        .await
        .expect("alice logs in");
    assert_eq!(conn.parameter("server_version"), Some("8.0.2"));
}

#[tokio::test]
async fn code13_login_with_ms_nonce_is_accepted() {
    let bed = front_bed().await;
    let nonce = upstream::client_nonce_now();
    let answer = code13_login_with_nonce(&bed, nonce.as_bytes()).await;
    assert_eq!(
        (answer.tag, wire::parse_auth_request(&answer.body).ok()),
        (b'R', Some(AuthRequest::Ok))
    );
}

#[tokio::test]
async fn code13_login_with_random_byte_nonce_is_refused_with_28p01() {
    let bed = front_bed().await;
    let nonce: [u8; 32] = rand::random();
    let answer = code13_login_with_nonce(&bed, &nonce).await;
    let f = error_fields(&answer);
    assert_eq!(
        (
            f.code.as_str(),
            f.message.as_str(),
            front(&bed).logins_refused_bad_nonce()
        ),
        (
            "28P01",
            "password authentication failed for user \"IAM:alice\"",
            1
        )
    );
}

#[tokio::test]
async fn drivers_redshift_only_startup_parameters_do_not_stop_the_login() {
    let bed = front_bed().await;
    let nonce = upstream::client_nonce_now();
    let driver_params = [
        ("client_protocol_version", "2"),
        ("driver_version", "2.1.0"),
        ("os_version", "Linux"),
        ("plugin_name", "none"),
        ("_pq_.compression", "off"),
    ];
    let (mut stream, mut reader, _) = code13_login(&bed, nonce.as_bytes(), &driver_params).await;
    let mut tags = Vec::new();
    while !matches!(tags.last(), Some(b'Z' | b'E')) {
        let msg = reader.read(&mut stream).await.expect("startup messages");
        tags.push(msg.tag);
    }
    assert_eq!(
        tags.last(),
        Some(&b'Z'),
        "startup ends in ReadyForQuery: {tags:?}"
    );
}

#[tokio::test]
async fn extra_float_digits_3_is_refused_with_22023_and_redshifts_message() {
    let bed = front_bed().await;
    let mut stream = tls_to_front(&bed).await;
    let mut reader = MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE);
    let answer = startup(
        &mut stream,
        &mut reader,
        &[("user", "IAM:alice"), ("extra_float_digits", "3")],
    )
    .await;
    let f = error_fields(&answer);
    assert_eq!(
        (f.code.as_str(), f.message.as_str()),
        (
            "22023",
            "3 is outside the valid range for parameter \"extra_float_digits\" (-15 .. 2)"
        )
    );
}

#[tokio::test]
async fn plaintext_startup_is_refused_with_28000() {
    let bed = front_bed().await;
    let mut tcp = TcpStream::connect(("127.0.0.1", front(&bed).port()))
        .await
        .expect("TCP to the front");
    tcp.write_all(&wire::startup_message(&[("user", "IAM:alice")]))
        .await
        .expect("send startup");
    let answer = MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE)
        .read(&mut tcp)
        .await
        .expect("front answers");
    assert_eq!(error_fields(&answer).code, "28000");
}

/// The SQLSTATE a simple query through the proxy and the front fails with.
async fn refused_code(sql: &str) -> String {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    let err = c.batch_execute(sql).await.expect_err("refused");
    db_error(&err).0
}

#[tokio::test]
async fn discard_all_is_refused_with_42601() {
    assert_eq!(refused_code("DISCARD ALL").await, "42601");
}

#[tokio::test]
async fn deallocate_all_is_refused_with_42601() {
    assert_eq!(refused_code("DEALLOCATE ALL").await, "42601");
}

#[tokio::test]
async fn close_all_is_refused_with_42601() {
    assert_eq!(refused_code("CLOSE ALL").await, "42601");
}

#[tokio::test]
async fn listen_is_refused_with_0a000() {
    assert_eq!(refused_code("LISTEN chan").await, "0A000");
}

#[tokio::test]
async fn pg_advisory_unlock_all_is_refused_with_0a000() {
    assert_eq!(
        refused_code("SELECT pg_advisory_unlock_all()").await,
        "0A000"
    );
}

#[tokio::test]
async fn discard_all_over_the_extended_protocol_is_refused_with_42601() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    let err = c.execute("DISCARD ALL", &[]).await.expect_err("refused");
    assert_eq!(db_error(&err).0, "42601");
}

#[tokio::test]
async fn session_stays_usable_after_a_refused_statement() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    c.batch_execute("DISCARD ALL").await.expect_err("refused");
    c.execute("DEALLOCATE ALL", &[]).await.expect_err("refused");
    let one: i32 = c.query_one("SELECT 1", &[]).await.expect("query").get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn refusal_pipelined_between_queries_is_answered_in_order() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    let (before, refused, after) = tokio::join!(
        c.query_one("SELECT 1", &[]),
        c.simple_query("DISCARD ALL"),
        c.query_one("SELECT 2", &[]),
    );
    let (before, after): (i32, i32) = (
        before.expect("first query").get(0),
        after.expect("last query").get(0),
    );
    assert_eq!(
        (before, db_error(&refused.expect_err("refused")).0, after),
        (1, "42601".into(), 2)
    );
}

#[tokio::test]
async fn multi_statement_query_with_a_refused_statement_runs_none_of_it() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    c.batch_execute("CREATE TEMP TABLE before_refusal (x int); DISCARD ALL")
        .await
        .expect_err("refused");
    let exists: bool = c
        .query_one(
            "SELECT to_regclass('pg_temp.before_refusal') IS NOT NULL",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(!exists);
}

#[tokio::test]
async fn reset_all_is_relayed_and_restores_the_defaults() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    c.batch_execute("SET statement_timeout = '5min'; RESET ALL")
        .await
        .expect("RESET ALL runs");
    let timeout: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(timeout, "0");
}

#[tokio::test]
async fn deallocate_of_a_named_statement_is_not_refused() {
    let bed = front_bed().await;
    let c = bed.connect("alice").await.expect("alice logs in");
    c.batch_execute("PREPARE p AS SELECT 1; DEALLOCATE p")
        .await
        .expect("DEALLOCATE p runs");
}

#[tokio::test]
async fn cancel_through_the_proxy_reaches_the_query_behind_the_front() {
    let bed = front_bed().await;
    let c = bed.connect("bob").await.expect("bob logs in");
    let token = c.cancel_token();
    let query =
        tokio::spawn(async move { c.query_one("SELECT pg_sleep(60)", &[]).await.map(|_| ()) });
    let admin = bed.pg.admin().await.expect("admin");
    wait_for(
        &admin,
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'",
        "the query to run",
    )
    .await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent through the proxy");
    let result = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .expect("cancel took effect")
        .expect("task");
    assert_eq!(db_error(&result.expect_err("cancelled")).0, "57014");
}

#[tokio::test]
async fn the_first_statement_after_a_serverless_resume_is_cancelled_for_the_proxy_not_the_client() {
    let bed = front_bed().await;
    front(&bed).resume_artefact_for_next_sessions(1);
    let client = bed.connect("bob").await.unwrap();
    let rows = client
        .query("SELECT id FROM generate_series(1, 3) AS id", &[])
        .await
        .expect("the client's first statement runs");
    assert_eq!(rows.len(), 3);
    assert_eq!(front(&bed).resume_artefacts_sent(), 1);
}
