//! End-to-end behaviour of the proxy with real clients, a real PostgreSQL cluster
//! and the SigV4-checking emulator that injects real role passwords.

use futures_util::{SinkExt, StreamExt};
use redshift_emulator::Fault;
use redshift_iam_proxy::testbed::{connect, db_error, wait_for, Bed, BedOptions};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn passwordless_login_gets_mapped_user_groups_and_tls_upstream() {
    let bed = Bed::start().await;
    let c = bed
        .connect("alice")
        .await
        .expect("alice logs in without a password");
    let row = c
        .query_one(
            "SELECT current_user::text, pg_has_role('analysts', 'member'), pg_has_role('sales', 'member'), \
             (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "IAM:alice");
    assert!(row.get::<_, bool>(1), "alice is in her configured group");
    assert!(!row.get::<_, bool>(2), "and not in others");
    assert!(row.get::<_, bool>(3), "the upstream connection uses TLS");
    assert_eq!(
        row.get::<_, String>(4),
        "proxytest",
        "startup parameters are forwarded"
    );
    assert_eq!(bed.get_credentials_calls(), 1);

    // A second login reuses the cached credential.
    let c2 = bed.connect("alice").await.unwrap();
    let u: String = c2
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(u, "IAM:alice");
    assert_eq!(bed.get_credentials_calls(), 1);

    // A different identity is a different cache key.
    let b = bed.connect("bob").await.unwrap();
    let row = b
        .query_one(
            "SELECT current_user::text, pg_has_role('analysts', 'member')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "IAM:bob");
    assert!(!row.get::<_, bool>(1));
    assert_eq!(bed.get_credentials_calls(), 2);
}

#[tokio::test]
async fn unmapped_user_is_refused_without_calling_aws() {
    let bed = Bed::with(BedOptions {
        users_toml: "[[users]]\nclient_user = \"alice\"\n".into(),
        ..Default::default()
    })
    .await;
    let err = bed.connect("mallory").await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "28000");
    assert!(msg.contains("\"mallory\""), "{msg}");
    assert_eq!(bed.emu.total_calls(), 0);
}

#[tokio::test]
async fn storm_of_cold_logins_makes_one_api_call() {
    let bed = Bed::start().await;
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let info = bed.conninfo("alice");
        tasks.push(tokio::spawn(async move {
            let c = connect(&info).await?;
            let u: String = c.query_one("SELECT current_user::text", &[]).await?.get(0);
            Ok::<_, tokio_postgres::Error>(u)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().expect("login in storm"), "IAM:alice");
    }
    assert_eq!(bed.get_credentials_calls(), 1);
}

#[tokio::test]
async fn extended_protocol_results_and_errors_are_relayed_and_the_session_goes_on() {
    let bed = Bed::start().await;
    let c = bed.connect("bob").await.unwrap();
    let stmt = c
        .prepare("SELECT $1::int + $2::int, repeat('x', $3)")
        .await
        .unwrap();
    for i in 0..50 {
        let row = c.query_one(&stmt, &[&i, &1i32, &(i * 100)]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        assert_eq!(row.get::<_, String>(1).len(), (i * 100) as usize);
    }
    // A result far larger than any buffer.
    let rows = c
        .query(
            "SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20000);
    // Errors inside the session are relayed, and the session goes on.
    let err = c.query_one("SELECT 1/0", &[]).await.unwrap_err();
    assert_eq!(db_error(&err).0, "22012");
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn copy_in_and_out_of_a_large_payload_is_byte_identical() {
    let bed = Bed::start().await;
    let c = bed.connect("bob").await.unwrap();
    // ~24 MiB of varied rows, sent in uneven chunks.
    let mut payload = Vec::new();
    for i in 0..200_000u32 {
        payload.extend_from_slice(
            format!("{i}\trow-{i}-{}\n", "z".repeat((i % 200) as usize)).as_bytes(),
        );
    }
    let sink = c.copy_in("COPY copy_target FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    for chunk in payload.chunks(65_521) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 200_000);
    let stream = c
        .copy_out("COPY (SELECT * FROM copy_target ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::with_capacity(payload.len());
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out.len(), payload.len());
    assert!(out == payload, "COPY round trip changed bytes");
}

#[tokio::test]
async fn cancel_request_reaches_the_right_backend() {
    let bed = Bed::start().await;
    let c = bed.connect("bob").await.unwrap();
    let token = c.cancel_token();
    let query =
        tokio::spawn(async move { c.query_one("SELECT pg_sleep(60)", &[]).await.map(|_| ()) });
    // Wait until the query is running on the cluster.
    let admin = bed.pg.admin().await.unwrap();
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
        .unwrap();
    assert_eq!(db_error(&result.unwrap_err()).0, "57014");
    // A forged key is ignored: another session keeps running.
    let c2 = bed.connect("bob").await.unwrap();
    let mut raw = TcpStream::connect(bed.proxy_addr).await.unwrap();
    raw.write_all(&redshift_iam_proxy::wire::cancel_request(
        12345,
        &[1, 2, 3, 4],
    ))
    .await
    .unwrap();
    let one: i32 = c2.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn cached_password_refused_by_cluster_is_minted_again_once() {
    let bed = Bed::start().await;
    // Held open, so the next client needs a new server login (not a pooled server).
    let _first = bed.connect("alice").await.unwrap();
    assert_eq!(bed.get_credentials_calls(), 1);
    // Someone rotates the password behind the proxy's back.
    let admin = bed.pg.admin().await.unwrap();
    admin
        .batch_execute("ALTER ROLE \"IAM:alice\" PASSWORD 'rotated-elsewhere'")
        .await
        .unwrap();
    let c = bed
        .connect("alice")
        .await
        .expect("proxy re-mints and logs in");
    let u: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(u, "IAM:alice");
    assert_eq!(bed.get_credentials_calls(), 2);
}

#[tokio::test]
async fn md5_and_cleartext_upstream_auth_log_in_as_the_iam_user() {
    let bed = Bed::start().await;
    for (user, expected) in [("md5user", "IAM:md5user"), ("plainuser", "IAM:plainuser")] {
        let c = bed
            .connect(user)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let u: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(u, expected);
    }
    // The md5 user's password really is stored as MD5 (so the MD5 path was exercised).
    let admin = bed.pg.admin().await.unwrap();
    let hash: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'IAM:md5user'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("md5"));
}

#[tokio::test]
async fn unknown_user_fails_at_login_unless_auto_created() {
    let bed = Bed::start().await;
    // carol has no database user and no AutoCreate: AWS mints, the cluster refuses.
    let err = bed.connect("carol").await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "28P01", "{msg}");
    assert!(msg.contains("IAM:carol"), "{msg}");
    // Trying again does not hammer AWS: a credential that never worked is not re-minted.
    for _ in 0..5 {
        assert_eq!(
            db_error(&bed.connect("carol").await.unwrap_err()).0,
            "28P01"
        );
    }
    assert_eq!(bed.get_credentials_calls(), 1);
    // "auto" maps to dave with AutoCreate: the user is created and logs in as IAMA:dave.
    let c = bed.connect("auto").await.unwrap();
    let u: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(u, "IAMA:dave");
}

#[tokio::test]
async fn aws_errors_reach_the_client_with_their_codes() {
    // Invalid DbUser (starts with a digit): InvalidParameterValue, 28000.
    let bed = Bed::start().await;
    let (code, msg) = db_error(&bed.connect("9lives").await.unwrap_err());
    assert_eq!(code, "28000");
    assert!(msg.contains("InvalidParameterValue"), "{msg}");

    // Permission missing for DbGroups: AccessDenied, 28000, with a hint.
    let bed = Bed::with(BedOptions {
        denied_actions: vec!["redshift:JoinGroup".into()],
        ..Default::default()
    })
    .await;
    let err = bed.connect("alice").await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "28000");
    assert!(
        msg.contains("AccessDenied") && msg.contains("redshift:JoinGroup"),
        "{msg}"
    );
    // bob needs no group: still fine on the same proxy.
    bed.connect("bob").await.expect("other users unaffected");

    // Unknown cluster: ClusterNotFound, 08001.
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| c.cluster[0].identifier = Some("nosuchcluster".into())),
        ..Default::default()
    })
    .await;
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(msg.contains("ClusterNotFound"), "{msg}");
}

#[tokio::test]
async fn throttling_is_retried_and_exhaustion_is_reported() {
    let bed = Bed::start().await;
    // Resolve the endpoint (DescribeClusters) first, so faults below hit GetClusterCredentials.
    drop(bed.connect("alice").await.unwrap());
    assert_eq!(bed.get_credentials_calls(), 1);
    assert_eq!(bed.emu.call_count("DescribeClusters"), 1);

    bed.emu.fail_next(2, Fault::Throttle);
    drop(bed.connect("bob").await.expect("throttling retried away"));
    assert_eq!(bed.get_credentials_calls(), 4);

    bed.emu.fail_next(10, Fault::Throttle);
    let (code, msg) = db_error(&bed.connect("md5user").await.unwrap_err());
    assert_eq!(code, "53300");
    assert!(
        msg.contains("Throttling") && msg.contains("Rate exceeded"),
        "{msg}"
    );
    // max_attempts = 3 in the test config.
    assert_eq!(bed.get_credentials_calls(), 7);

    // A 500 is retried too.
    bed.emu.clear_faults();
    bed.emu.fail_next(
        1,
        Fault::Error {
            status: 500,
            code: "InternalFailure".into(),
            message: "boom".into(),
        },
    );
    bed.connect("plainuser")
        .await
        .expect("transient 500 retried");
    assert_eq!(bed.get_credentials_calls(), 9);
}

#[tokio::test]
async fn hung_aws_endpoint_becomes_a_client_error_not_a_hang() {
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| c.aws.timeout_secs = 1),
        ..Default::default()
    })
    .await;
    bed.emu.fail_next(1, Fault::Hang);
    let started = std::time::Instant::now();
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(msg.contains("Timeout"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The proxy recovers once the endpoint answers again.
    bed.connect("bob").await.expect("recovered");
}

#[tokio::test]
async fn untrusted_or_wrong_host_certificates_are_refused() {
    // No sslrootcert: the test CA is not trusted.
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| c.cluster[0].sslrootcert = None),
        ..Default::default()
    })
    .await;
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(
        msg.contains("UnknownIssuer") && msg.contains("sslrootcert"),
        "{msg}"
    );

    // A trusted certificate for another name: verify-full refuses, verify-ca accepts.
    let mut bed = Bed::start().await;
    let (cert, key) = bed.pg.ca().issue(&["not-this-host.example"]).unwrap();
    let owner = std::fs::metadata(bed.pg.data_dir().join("server.key")).unwrap();
    std::fs::write(bed.pg.data_dir().join("server.crt"), cert).unwrap();
    std::fs::write(bed.pg.data_dir().join("server.key"), key).unwrap();
    {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::chown(
            bed.pg.data_dir().join("server.key"),
            Some(owner.uid()),
            Some(owner.gid()),
        )
        .unwrap();
        std::os::unix::fs::chown(
            bed.pg.data_dir().join("server.crt"),
            Some(owner.uid()),
            Some(owner.gid()),
        )
        .unwrap();
    }
    bed.pg
        .admin()
        .await
        .unwrap()
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(
        msg.contains("not valid for name") && msg.contains("cluster.host"),
        "{msg}"
    );
    // verify-ca checks the chain only, so the same certificate is accepted.
    bed.start_proxy(
        &BedOptions::default().users_toml,
        Box::new(|c| c.cluster[0].sslmode = redshift_iam_proxy::config::SslMode::VerifyCa),
    )
    .await;
    let c = bed
        .connect("bob")
        .await
        .expect("verify-ca accepts a trusted cert for another name");
    let ssl: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
}

#[tokio::test]
async fn unreachable_cluster_is_a_connection_error_once_the_outage_hold_ends() {
    let free_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bed = Bed::with(BedOptions {
        tweak: Box::new(move |c| {
            c.cluster[0].host = Some("127.0.0.1".into());
            c.cluster[0].port = Some(free_port);
            c.pool.outage_hold_secs = 1;
        }),
        ..Default::default()
    })
    .await;
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(msg.contains("cannot connect"), "{msg}");
    assert!(msg.contains("pool.outage_hold_secs"), "{msg}");
}

/// Reads one backend message (tag, body) from a raw socket.
async fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let tag = s.read_u8().await.ok()?;
    let len = s.read_i32().await.ok()?;
    let mut body = vec![0; (len - 4) as usize];
    s.read_exact(&mut body).await.ok()?;
    Some((tag, body))
}

#[tokio::test]
async fn garbage_and_oversized_startup_packets_close_only_that_connection() {
    let bed = Bed::start().await;
    let mut junk = TcpStream::connect(bed.proxy_addr).await.unwrap();
    junk.write_all(&[0, 0, 0, 12, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4])
        .await
        .unwrap();
    let (tag, body) = read_message(&mut junk).await.expect("an error response");
    assert_eq!(tag, b'E');
    assert!(String::from_utf8_lossy(&body).contains("protocol"));

    let mut big = TcpStream::connect(bed.proxy_addr).await.unwrap();
    big.write_all(&1_000_000i32.to_be_bytes()).await.unwrap();
    big.write_all(&196_608i32.to_be_bytes()).await.unwrap();
    let (tag, body) = read_message(&mut big).await.expect("an error response");
    assert_eq!(tag, b'E');
    let text = String::from_utf8_lossy(&body).to_string();
    assert!(text.contains("08P01") && text.contains("exceeds"), "{text}");

    let mut negative = TcpStream::connect(bed.proxy_addr).await.unwrap();
    negative.write_all(&(-1i32).to_be_bytes()).await.unwrap();
    assert_eq!(read_message(&mut negative).await.map(|m| m.0), Some(b'E'));

    // The proxy is unharmed.
    bed.connect("bob").await.expect("others still served");
}

#[tokio::test]
async fn silent_sockets_are_timed_out_and_never_delay_others() {
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| c.limits.handshake_timeout_secs = 1),
        ..Default::default()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(bed.proxy_addr).await.unwrap());
    }
    // Others log in while the silent sockets sit there.
    let c = bed
        .connect("bob")
        .await
        .expect("not delayed by silent sockets");
    drop(c);
    // And the silent ones get closed by the handshake timeout.
    for mut s in silent {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("closed by the proxy")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
}

#[tokio::test]
async fn connection_cap_refuses_with_53300() {
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| c.limits.max_client_connections = 2),
        ..Default::default()
    })
    .await;
    let c1 = bed.connect("bob").await.unwrap();
    let c2 = bed.connect("bob").await.unwrap();
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "53300", "{msg}");
    drop(c1);
    // A slot frees up once a session ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match bed.connect("bob").await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(db_error(&e).0, "53300");
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::task::yield_now().await;
            }
        }
    }
    drop(c2);
}

#[tokio::test]
async fn protocol_options_are_declined_and_ssl_is_answered() {
    let bed = Bed::start().await;
    // SSLRequest is answered with 'S' (TLS available to clients).
    let mut s = TcpStream::connect(bed.proxy_addr).await.unwrap();
    s.write_all(&redshift_iam_proxy::wire::ssl_request())
        .await
        .unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'S');
    // GSSENCRequest gets 'N', then a plain startup with an unknown _pq_ option works.
    let mut s = TcpStream::connect(bed.proxy_addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N');
    s.write_all(&redshift_iam_proxy::wire::startup_message(&[
        ("user", "bob"),
        ("database", "postgres"),
        ("_pq_.compression", "lz4"),
        ("_pq_.unknown_option", "1"),
    ]))
    .await
    .unwrap();
    let (tag, body) = read_message(&mut s).await.unwrap();
    assert_eq!(tag, b'v', "NegotiateProtocolVersion first");
    let text = String::from_utf8_lossy(&body).to_string();
    assert!(
        text.contains("_pq_.unknown_option") && !text.contains("compression"),
        "{text}"
    );
    let (tag, _) = read_message(&mut s).await.unwrap();
    assert_eq!(tag, b'R');
    let mut saw_key = false;
    loop {
        let (tag, _) = read_message(&mut s).await.unwrap();
        saw_key |= tag == b'K';
        if tag == b'Z' {
            break;
        }
    }
    assert!(saw_key, "client receives BackendKeyData");
}

#[tokio::test]
async fn a_cluster_refusing_tls_is_an_error_never_a_plaintext_fallback() {
    // With ssl = off the server answers SSLRequest with 'N'.
    let bed = Bed::with(BedOptions {
        pg_extra_conf: vec!["ssl = off".into()],
        ..Default::default()
    })
    .await;
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(
        msg.contains("refused TLS") && msg.contains("never falls back to plaintext"),
        "{msg}"
    );
    assert_eq!(
        bed.get_credentials_calls(),
        1,
        "credentials were minted but never sent in clear"
    );
}
