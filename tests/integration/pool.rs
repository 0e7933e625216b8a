//! Connection pooling, end to end: real PostgreSQL, the SigV4-checking emulator, real
//! clients (tokio-postgres, psql). Each test states one behaviour a user relies on.

use crate::support::pooled;
use redshift_iam_proxy::config::PoolMode;
use redshift_iam_proxy::testbed::{connect, db_error, wait_for, Bed, BedOptions};
use std::collections::HashSet;

/// A session-mode pool of one server behind the Redshift-like front.
async fn redshift_like_session_pool_of_1() -> Bed {
    Bed::with(BedOptions {
        redshift_front: true,
        tweak: Box::new(|c| {
            c.pool.mode = PoolMode::Session;
            c.pool.size = 1;
        }),
        ..Default::default()
    })
    .await
}

async fn backend_pid(c: &tokio_postgres::Client) -> i32 {
    c.query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

async fn one_string(c: &tokio_postgres::Client, sql: &str) -> String {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Backends of the proxy's logins (users the emulator provisioned), from the cluster's view.
async fn cluster_logins(admin: &tokio_postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'IAM%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn twenty_sequential_clients_reuse_one_server_and_one_credential() {
    let bed = Bed::with(pooled(PoolMode::Session, 20, |_| {})).await;
    let mut pids = HashSet::new();
    for _ in 0..20 {
        // One after the other: each client has closed its connection before the next.
        let (c, conn) = tokio_postgres::connect(&bed.conninfo("alice"), tokio_postgres::NoTls)
            .await
            .expect("login");
        let conn = tokio::spawn(conn);
        pids.insert(backend_pid(&c).await);
        drop(c);
        let _ = conn.await;
    }
    assert!(pids.len() <= 2, "{} cluster connections", pids.len());
    assert_eq!(bed.get_credentials_calls(), 1);
}

#[tokio::test]
async fn mode_none_logs_in_once_per_client() {
    let bed = Bed::with(pooled(PoolMode::None, 20, |_| {})).await;
    let mut pids = HashSet::new();
    for _ in 0..3 {
        let c = bed.connect("alice").await.expect("login");
        pids.insert(backend_pid(&c).await);
    }
    assert_eq!(pids.len(), 3);
}

#[tokio::test]
async fn session_settings_do_not_leak_to_the_next_client() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |_| {})).await;
    let a = bed.connect("alice").await.unwrap();
    let pid = backend_pid(&a).await;
    a.batch_execute(
        "SET search_path TO pg_catalog; SET statement_timeout = 12345; SET application_name = 'leaky'",
    )
    .await
    .unwrap();
    drop(a);
    let b = bed.connect("alice").await.unwrap();
    assert_eq!(backend_pid(&b).await, pid, "the same server is reused");
    assert_eq!(
        one_string(&b, "SHOW search_path").await,
        "\"$user\", public"
    );
    assert_eq!(one_string(&b, "SHOW statement_timeout").await, "0");
    assert_eq!(one_string(&b, "SHOW application_name").await, "proxytest");
}

#[tokio::test]
async fn temp_tables_prepared_statements_and_cursors_do_not_leak_in_session_mode() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |_| {})).await;
    let a = bed.connect("alice").await.unwrap();
    let pid = backend_pid(&a).await;
    a.batch_execute(
        "CREATE TEMP TABLE mine (x int); PREPARE q AS SELECT 1; \
         BEGIN; DECLARE held CURSOR WITH HOLD FOR SELECT 1; COMMIT",
    )
    .await
    .unwrap();
    let _named = a.prepare("SELECT 42").await.unwrap();
    drop(a);
    let b = bed.connect("alice").await.unwrap();
    assert_eq!(backend_pid(&b).await, pid, "the same server is reused");
    let row = b
        .query_one(
            "SELECT (SELECT count(*) FROM pg_prepared_statements WHERE name = 'q' OR statement = 'SELECT 42'), \
             (SELECT count(*) FROM pg_cursors WHERE name = 'held'), \
             (SELECT count(*) FROM pg_class WHERE relname = 'mine' AND relpersistence = 't' AND pg_table_is_visible(oid))",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "prepared statements left");
    assert_eq!(row.get::<_, i64>(1), 0, "cursors left");
    assert_eq!(row.get::<_, i64>(2), 0, "temporary tables left");
}

#[tokio::test]
async fn client_gets_its_own_startup_parameters_on_a_pooled_server() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |_| {})).await;
    drop(bed.connect("alice").await.unwrap());
    let info = format!(
        "host=127.0.0.1 port={} user=alice dbname=postgres application_name=second options='' ",
        bed.proxy_addr.port()
    );
    let (c, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
        .await
        .unwrap();
    assert_eq!(conn.parameter("application_name"), Some("second"));
    tokio::spawn(conn);
    assert_eq!(one_string(&c, "SHOW application_name").await, "second");
}

#[tokio::test]
async fn transaction_mode_never_mixes_identities_and_caps_servers_per_pool() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 3, |c| {
        c.limits.max_client_connections = 200;
    }))
    .await;
    let mut tasks = Vec::new();
    for n in 0..60 {
        let user = if n % 2 == 0 { "alice" } else { "bob" };
        let info = bed.conninfo(user);
        tasks.push(tokio::spawn(async move {
            let c = connect(&info).await?;
            let mut seen = Vec::new();
            for _ in 0..10 {
                let row = c
                    .query_one("SELECT current_user::text, pg_backend_pid()", &[])
                    .await?;
                seen.push((row.get::<_, String>(0), row.get::<_, i32>(1)));
            }
            Ok::<_, tokio_postgres::Error>((user, seen))
        }));
    }
    let mut pids: HashSet<i32> = HashSet::new();
    for t in tasks {
        let (user, seen) = t.await.unwrap().expect("client in the crowd");
        for (current, pid) in seen {
            assert_eq!(current, format!("IAM:{user}"), "identities never mix");
            pids.insert(pid);
        }
    }
    assert!(pids.len() <= 6, "{} cluster connections", pids.len());
}

#[tokio::test]
async fn protocol_prepared_statements_work_for_16_clients_on_a_pool_of_2() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 2, |_| {})).await;
    let mut tasks = Vec::new();
    for n in 0..16i32 {
        let info = bed.conninfo("bob");
        tasks.push(tokio::spawn(async move {
            let c = connect(&info).await?;
            // Same statement names (s0, s1…) in every client, different texts.
            let add = c.prepare(&format!("SELECT $1::int + {n}")).await?;
            let mul = c.prepare("SELECT $1::int * 2").await?;
            for i in 0..20i32 {
                let a: i32 = c.query_one(&add, &[&i]).await?.get(0);
                let m: i32 = c.query_one(&mul, &[&i]).await?.get(0);
                assert_eq!((a, m), (i + n, i * 2));
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("prepared statements through the pool");
    }
}

#[tokio::test]
async fn each_clients_settings_stay_its_own_on_a_pool_of_1() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let a = bed.connect("alice").await.unwrap();
    let b = bed.connect("alice").await.unwrap();
    a.batch_execute("SET search_path TO a_schema")
        .await
        .unwrap();
    b.batch_execute("SET statement_timeout = 4321")
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(backend_pid(&a).await, backend_pid(&b).await, "one server");
        assert_eq!(one_string(&a, "SHOW search_path").await, "a_schema");
        assert_eq!(one_string(&a, "SHOW statement_timeout").await, "0");
        assert_eq!(
            one_string(&b, "SHOW search_path").await,
            "\"$user\", public"
        );
        assert_eq!(one_string(&b, "SHOW statement_timeout").await, "4321ms");
    }
    b.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(one_string(&b, "SHOW statement_timeout").await, "0");
}

#[tokio::test]
async fn cancel_in_transaction_mode_hits_only_the_asking_clients_query() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 2, |_| {})).await;
    let admin = bed.pg.admin().await.unwrap();
    let a = bed.connect("alice").await.unwrap();
    let b = bed.connect("alice").await.unwrap();
    let token = a.cancel_token();
    let slow_a = tokio::spawn(async move { a.batch_execute("SELECT pg_sleep(30)").await });
    let slow_b = tokio::spawn(async move {
        b.query_one("SELECT pg_sleep(1.5)::text || 'done'", &[])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    wait_for(
        &admin,
        "SELECT count(*) = 2 FROM pg_stat_activity WHERE query LIKE '%pg_sleep(%' AND state = 'active' AND pid <> pg_backend_pid()",
        "both queries running",
    )
    .await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel sent");
    let err = slow_a.await.unwrap().unwrap_err();
    assert_eq!(db_error(&err).0, "57014");
    assert_eq!(slow_b.await.unwrap().expect("b unharmed"), "done");
}

#[tokio::test]
async fn waiting_past_checkout_timeout_gets_53300_and_the_pool_recovers() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |c| {
        c.pool.checkout_timeout_secs = 1;
    }))
    .await;
    let holder = bed.connect("alice").await.unwrap();
    let err = bed.connect("alice").await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "53300");
    assert!(
        msg.contains("alice/postgres@") && msg.contains("pool size 1"),
        "{msg}"
    );
    drop(holder);
    let again = bed
        .connect("alice")
        .await
        .expect("a freed server serves the next client");
    assert_eq!(
        one_string(&again, "SELECT current_user::text").await,
        "IAM:alice"
    );
}

#[tokio::test]
async fn max_server_connections_caps_the_cluster_across_pools() {
    let bed = Bed::with(pooled(PoolMode::Session, 5, |c| {
        c.pool.max_server_connections = 2;
        c.pool.checkout_timeout_secs = 1;
    }))
    .await;
    let admin = bed.pg.admin().await.unwrap();
    let a1 = bed.connect("alice").await.unwrap();
    drop(bed.connect("bob").await.unwrap());
    // Bob's idle server is closed to make room for alice's second.
    let a2 = bed
        .connect("alice")
        .await
        .expect("room made from an idle server");
    assert!(cluster_logins(&admin).await <= 2);
    let err = bed.connect("bob").await.unwrap_err();
    assert_eq!(db_error(&err).0, "53300");
    assert!(cluster_logins(&admin).await <= 2);
    drop((a1, a2));
}

#[tokio::test]
async fn a_server_killed_while_idle_is_replaced_unnoticed() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |_| {})).await;
    let admin = bed.pg.admin().await.unwrap();
    let a = bed.connect("alice").await.unwrap();
    let pid = backend_pid(&a).await;
    drop(a);
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    wait_for(
        &admin,
        &format!("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {pid}"),
        "the backend to exit",
    )
    .await;
    let b = bed
        .connect("alice")
        .await
        .expect("replaced without an error");
    assert_ne!(backend_pid(&b).await, pid);
}

#[tokio::test]
async fn a_pooled_server_is_reused_after_its_password_rotated() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |_| {})).await;
    let admin = bed.pg.admin().await.unwrap();
    let a = bed.connect("alice").await.unwrap();
    let pid = backend_pid(&a).await;
    drop(a);
    admin
        .batch_execute("ALTER ROLE \"IAM:alice\" PASSWORD 'rotated-elsewhere'")
        .await
        .unwrap();
    let b = bed
        .connect("alice")
        .await
        .expect("pooled server still good");
    assert_eq!(backend_pid(&b).await, pid);
    assert_eq!(bed.get_credentials_calls(), 1);
}

#[tokio::test]
async fn temp_table_in_transaction_mode_keeps_the_client_on_its_server() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 2, |_| {})).await;
    let a = bed.connect("alice").await.unwrap();
    a.batch_execute("CREATE TEMP TABLE scratch AS SELECT 7 AS v")
        .await
        .unwrap();
    let other = bed.connect("alice").await.unwrap();
    for _ in 0..5 {
        let v: i32 = a
            .query_one("SELECT v FROM scratch", &[])
            .await
            .expect("the temp table is still there")
            .get(0);
        assert_eq!(v, 7);
        let seen: i64 = other
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't' AND pg_table_is_visible(oid)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(seen, 0, "another client never sees it");
    }
}

#[tokio::test]
async fn prewarmed_pool_serves_the_first_client_without_aws_or_login() {
    let bed = Bed::with(BedOptions {
        users_toml: "[[users]]\nclient_user = \"alice\"\ndb_groups = [\"analysts\"]\n".into(),
        tweak: Box::new(|c| {
            c.pool.mode = PoolMode::Session;
            c.pool.min_size = 1;
        }),
        ..Default::default()
    })
    .await;
    let admin = bed.pg.admin().await.unwrap();
    wait_for(
        &admin,
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE usename = 'IAM:alice'",
        "the prewarmed server",
    )
    .await;
    let warm_pid: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'IAM:alice'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let calls = bed.get_credentials_calls();
    assert_eq!(calls, 1, "one credential minted at start");
    let c = bed.connect("alice").await.unwrap();
    assert_eq!(backend_pid(&c).await, warm_pid, "no new cluster login");
    assert_eq!(bed.get_credentials_calls(), calls, "no AWS call");
}

#[tokio::test]
async fn psql_keeps_its_session_settings_across_commands_in_transaction_mode() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let out = tokio::process::Command::new("psql")
        .arg(bed.conninfo("alice"))
        .args([
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SET search_path TO pg_catalog",
            "-c",
            "SHOW search_path",
            "-c",
            "BEGIN",
            "-c",
            "SELECT current_user",
            "-c",
            "COMMIT",
        ])
        .output()
        .await
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["pg_catalog", "IAM:alice"]
    );
}

#[tokio::test]
async fn reset_on_a_redshift_like_server_reuses_it_clean() {
    let bed = redshift_like_session_pool_of_1().await;
    let front = bed.front.as_ref().expect("front");
    let a = bed.connect("alice").await.unwrap();
    let pid = backend_pid(&a).await;
    a.batch_execute("SET search_path TO pg_catalog; PREPARE q AS SELECT 1")
        .await
        .unwrap();
    let _named = a.prepare("SELECT 42").await.unwrap();
    drop(a);
    let b = bed.connect("alice").await.unwrap();
    assert_eq!(backend_pid(&b).await, pid, "reused, not closed");
    assert_eq!(
        one_string(&b, "SHOW search_path").await,
        "\"$user\", public"
    );
    let left: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE name IN ('q', 's0')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "prepared statements removed");
    assert_eq!(
        front.statements_refused(),
        0,
        "nothing Redshift refuses was sent"
    );
}

#[tokio::test]
async fn temp_table_on_a_redshift_like_server_closes_it_instead_of_reuse() {
    let bed = redshift_like_session_pool_of_1().await;
    let a = bed.connect("alice").await.unwrap();
    let pid = backend_pid(&a).await;
    a.batch_execute("CREATE TEMP TABLE t (x int)")
        .await
        .unwrap();
    drop(a);
    let b = bed.connect("alice").await.unwrap();
    assert_ne!(
        backend_pid(&b).await,
        pid,
        "a server with a temp table is not reused"
    );
    let n: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 't' AND relpersistence = 't' AND pg_table_is_visible(oid)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_cluster_refusing_logins_gives_every_waiting_client_its_error() {
    let bed = Bed::with(pooled(PoolMode::Session, 1, |_| {})).await;
    let admin = bed.pg.admin().await.unwrap();
    // Like a cluster at its connection limit: every new login is refused.
    admin
        .batch_execute("ALTER DATABASE postgres CONNECTION LIMIT 0")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let info = bed.conninfo("alice");
        tasks.push(tokio::spawn(async move {
            tokio_postgres::connect(&info, tokio_postgres::NoTls)
                .await
                .map(|_| ())
        }));
    }
    for t in tasks {
        let err = t.await.unwrap().expect_err("the cluster refuses");
        let (code, msg) = db_error(&err);
        assert_eq!(code, "53300");
        assert!(
            msg.contains("too many connections"),
            "the cluster's own reason, not a pool timeout: {msg}"
        );
    }
}

#[tokio::test]
async fn shutdown_closes_idle_pooled_servers() {
    let mut bed = Bed::with(pooled(PoolMode::Session, 5, |_| {})).await;
    let admin = bed.pg.admin().await.unwrap();
    let (a, b) = (
        bed.connect("alice").await.unwrap(),
        bed.connect("bob").await.unwrap(),
    );
    drop((a, b));
    wait_for(
        &admin,
        "SELECT count(*) = 2 FROM pg_stat_activity WHERE usename LIKE 'IAM%' AND state = 'idle'",
        "two idle pooled servers",
    )
    .await;
    bed.stop_proxy().await;
    wait_for(
        &admin,
        "SELECT count(*) = 0 FROM pg_stat_activity WHERE usename LIKE 'IAM%'",
        "pooled servers closed",
    )
    .await;
}

#[tokio::test]
async fn copy_in_and_out_work_in_transaction_mode_and_release_the_server() {
    use futures_util::{SinkExt, StreamExt};
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let c = bed.connect("bob").await.unwrap();
    let other = bed.connect("bob").await.unwrap();
    let rows = "1\tone\n2\ttwo\n".repeat(5_000);
    let sink = c
        .copy_in("COPY copy_target FROM STDIN")
        .await
        .expect("COPY IN starts");
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(rows.clone())).await.unwrap();
    assert_eq!(sink.finish().await.expect("COPY IN ends"), 10_000);
    let out = c
        .copy_out("COPY (SELECT * FROM copy_target ORDER BY id) TO STDOUT")
        .await
        .expect("COPY OUT starts");
    futures_util::pin_mut!(out);
    let mut got = 0usize;
    while let Some(b) = out.next().await {
        got += b.expect("COPY OUT data").len();
    }
    assert_eq!(got, rows.len());
    // The single server was released after each COPY: another client gets it.
    let n: i64 = other
        .query_one("SELECT count(*) FROM copy_target", &[])
        .await
        .expect("the server is free again")
        .get(0);
    assert_eq!(n, 10_000);
}

#[tokio::test]
async fn transaction_mode_logs_a_client_in_while_every_server_is_busy() {
    let bed = Bed::with(pooled(PoolMode::Transaction, 1, |_| {})).await;
    let a = bed.connect("alice").await.unwrap();
    a.batch_execute("BEGIN").await.unwrap();
    // The only server is inside a's transaction; b's login needs none.
    let b = bed
        .connect("alice")
        .await
        .expect("login answered from the pool");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(one_string(&b, "SHOW application_name").await, "proxytest");
}
