//! Fault injection: AWS and the cluster misbehaving, clients vanishing, and a large
//! mixed storm. For each fault the client sees a clear error (or a clean close), the
//! proxy stays up, and it recovers by itself once the fault is gone.

use redshift_emulator::Emulator;
use redshift_iam_proxy::testbed::faultline::Mode;
use redshift_iam_proxy::testbed::{db_error, free_port, wait_for, Bed, BedOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `SELECT` that is true once `role` has exactly `n` backends matching `filter`.
fn backends_are(role: &str, filter: &str, n: i64) -> String {
    format!("SELECT count(*) = {n} FROM pg_stat_activity WHERE usename = '{role}' AND {filter}")
}

#[tokio::test]
async fn aws_endpoint_refusing_connections_is_08001_until_it_comes_back() {
    // Reserve a port for the emulator, but do not start it yet.
    let port = free_port().unwrap();
    let bed = Bed::with(BedOptions {
        tweak: Box::new(move |c| {
            c.aws.endpoint_url = Some(format!("http://127.0.0.1:{port}"));
            c.cluster[0].host = Some("localhost".into());
        }),
        pg_port_in_config: true,
        ..Default::default()
    })
    .await;
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(msg.contains("EndpointUnreachable"), "{msg}");
    // The endpoint comes back (the same emulator setup, now on that port).
    let emu = Emulator::start(bed.emulator_config(), ([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    bed.connect("bob")
        .await
        .expect("recovered once AWS answers");
    assert_eq!(emu.call_count("GetClusterCredentials"), 1);
}

#[tokio::test]
async fn cluster_closing_mid_handshake_is_a_connection_error_until_it_recovers() {
    let bed = Bed::with(BedOptions {
        faultline: true,
        ..Default::default()
    })
    .await;
    let line = bed.faultline.as_ref().unwrap();
    // Held open, so the next clients need new cluster logins (not a pooled server).
    let _first = bed.connect("bob").await.expect("through the forwarder");

    line.set(Mode::CloseAfterFirstRead);
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert!(code == "08006" || code == "08001", "{code}: {msg}");
    line.set(Mode::CloseImmediately);
    let (code, msg) = db_error(&bed.connect("alice").await.unwrap_err());
    assert!(code == "08006" || code == "08001", "{code}: {msg}");

    line.set(Mode::Forward);
    let c = bed.connect("alice").await.expect("recovered");
    let u: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(u, "IAM:alice");
}

#[tokio::test]
async fn cluster_dying_mid_session_ends_only_that_session() {
    let bed = Bed::start().await;
    let victim = bed.connect("bob").await.unwrap();
    let survivor = bed.connect("alice").await.unwrap();
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let admin = bed.pg.admin().await.unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // The victim's client sees the cluster's error (or a closed connection)...
    let err = victim.query_one("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_closed() || db_error(&err).0 == "57P01", "{err}");
    // ...while the other session and new logins carry on.
    let one: i32 = survivor.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    bed.connect("bob").await.expect("new logins work");
}

#[tokio::test]
async fn client_vanishing_mid_handshake_or_mid_query_leaks_nothing() {
    let bed = Bed::with(BedOptions {
        // Lets PostgreSQL notice a closed connection during pg_sleep.
        pg_extra_conf: vec!["client_connection_check_interval = '100ms'".into()],
        ..Default::default()
    })
    .await;
    // Mid-handshake: a startup packet, then gone before the proxy answers.
    for _ in 0..5 {
        let mut s = TcpStream::connect(bed.proxy_addr).await.unwrap();
        s.write_all(&redshift_iam_proxy::wire::startup_message(&[
            ("user", "bob"),
            ("database", "postgres"),
        ]))
        .await
        .unwrap();
        drop(s);
    }
    // Half a startup packet, then gone.
    let mut s = TcpStream::connect(bed.proxy_addr).await.unwrap();
    s.write_all(&[0, 0, 0, 40, 0, 3]).await.unwrap();
    drop(s);
    // A login the proxy finished before noticing the client had gone leaves its server in
    // the pool, idle and reusable; nothing stays logging in or busy for a vanished client.
    // (A server the pool keeps for reuse is idle.)
    let admin = bed.pg.admin().await.unwrap();
    wait_for(
        &admin,
        &backends_are("IAM:bob", "state IS DISTINCT FROM 'idle'", 0),
        "no upstream session left busy by vanished clients",
    )
    .await;

    // Mid-query: the client sends a long query over the raw protocol and disappears.
    let mut s = TcpStream::connect(bed.proxy_addr).await.unwrap();
    s.write_all(&redshift_iam_proxy::wire::startup_message(&[
        ("user", "alice"),
        ("database", "postgres"),
    ]))
    .await
    .unwrap();
    // Read messages until ReadyForQuery.
    loop {
        let tag = s.read_u8().await.expect("proxy closed during login");
        let len = s.read_i32().await.unwrap();
        let mut body = vec![0u8; (len - 4) as usize];
        s.read_exact(&mut body).await.unwrap();
        assert_ne!(
            tag,
            b'E',
            "login failed: {}",
            String::from_utf8_lossy(&body)
        );
        if tag == b'Z' {
            break;
        }
    }
    let q = b"SELECT pg_sleep(60)\0";
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((q.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(q);
    s.write_all(&msg).await.unwrap();
    wait_for(
        &admin,
        &backends_are("IAM:alice", "true", 1),
        "the query runs",
    )
    .await;
    drop(s);
    wait_for(
        &admin,
        &backends_are("IAM:alice", "true", 0),
        "the upstream session ends with the client",
    )
    .await;
    // The proxy is unharmed.
    bed.connect("alice").await.expect("still serving");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_logins_of_mixed_identities_all_log_in_as_themselves() {
    const IDENTITIES: usize = 10;
    const LOGINS: usize = 1000;
    let bed = Bed::with(BedOptions {
        pg_max_connections: 1100,
        tweak: Box::new(|c| {
            // A thousand sessions held at once, each its own login: no pooling.
            c.pool.mode = redshift_iam_proxy::config::PoolMode::None;
            c.limits.max_client_connections = 2000;
            c.limits.login_timeout_secs = 120;
            c.limits.handshake_timeout_secs = 120;
        }),
        ..Default::default()
    })
    .await;
    let admin = bed.pg.admin().await.unwrap();
    for i in 0..IDENTITIES {
        admin
            .batch_execute(&format!("CREATE ROLE user{i}"))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for n in 0..LOGINS {
        let user = format!("user{}", n % IDENTITIES);
        let info = bed.conninfo(&user);
        tasks.push(tokio::spawn(async move {
            let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls).await?;
            let conn = tokio::spawn(conn);
            let u: String = c.query_one("SELECT current_user::text", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>((user, u, c, conn))
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        let (user, current, client, conn) = t.await.unwrap().expect("login in the storm");
        assert_eq!(current, format!("IAM:{user}"));
        held.push((client, conn));
    }
    assert_eq!(held.len(), LOGINS);
    assert_eq!(
        bed.get_credentials_calls(),
        IDENTITIES as u64,
        "one API call per identity"
    );
    drop(held);
}
