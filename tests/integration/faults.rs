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
async fn without_an_outage_hold_a_cluster_closing_mid_handshake_is_a_connection_error_until_it_recovers(
) {
    let bed = Bed::with(BedOptions {
        faultline: true,
        tweak: Box::new(|c| c.pool.outage_hold_secs = 0),
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
async fn a_session_whose_idle_server_is_terminated_goes_on_with_a_new_server() {
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
    wait_for(
        &admin,
        &format!("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {pid}"),
        "the backend to end",
    )
    .await;
    let new_pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("the idle session goes on")
        .get(0);
    assert_ne!(new_pid, pid);
    let one: i32 = survivor.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
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

// ---- Cluster outages: logins held, clients carried over a restart ----

/// Polls `done` until it holds (a deadline, never a fixed sleep as synchronisation).
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn held_now(bed: &Bed) -> usize {
    bed.shared.as_ref().unwrap().targets[0]
        .outage
        .held_now
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Polls `login` until the proxy holds it; it must not end during the outage.
async fn until_held<F>(bed: &Bed, login: std::pin::Pin<&mut F>)
where
    F: std::future::Future<Output = Result<tokio_postgres::Client, tokio_postgres::Error>>,
{
    tokio::select! {
        r = login => panic!("the login ended during the outage: {:?}", r.err()),
        () = until("the login to be held", || held_now(bed) >= 1) => {}
    }
}

#[tokio::test]
async fn a_login_during_a_cluster_outage_is_held_and_succeeds_when_the_cluster_returns() {
    let bed = Bed::with(BedOptions {
        faultline: true,
        ..Default::default()
    })
    .await;
    let line = bed.faultline.as_ref().unwrap();
    line.set(Mode::CloseImmediately);
    let login = bed.connect("bob");
    tokio::pin!(login);
    until_held(&bed, login.as_mut()).await;
    line.set(Mode::Forward);
    let client = login
        .await
        .expect("held login succeeds once the cluster is back");
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn an_outage_longer_than_the_hold_ends_the_login_with_08001_naming_the_outage() {
    let bed = Bed::with(BedOptions {
        faultline: true,
        tweak: Box::new(|c| c.pool.outage_hold_secs = 1),
        ..Default::default()
    })
    .await;
    bed.faultline.as_ref().unwrap().set(Mode::CloseImmediately);
    let (code, msg) = db_error(&bed.connect("bob").await.unwrap_err());
    assert_eq!(code, "08001");
    assert!(msg.contains("unavailable (outage"), "{msg}");
    assert!(msg.contains("held 1 s"), "{msg}");
}

fn pool_mode(mode: redshift_iam_proxy::config::PoolMode) -> BedOptions {
    BedOptions {
        tweak: Box::new(move |c| {
            c.pool.mode = mode;
            c.pool.size = 2;
        }),
        ..Default::default()
    }
}

/// Restarts the test cluster (fast shutdown, as a reboot does) and waits until it is up.
async fn restart_cluster(bed: &mut Bed) {
    let power = bed.pg.power();
    power.stop().await;
    power.start().await.expect("cluster starts again");
}

#[tokio::test]
async fn a_transaction_pool_client_idle_during_a_cluster_restart_sees_no_error() {
    use redshift_iam_proxy::config::PoolMode;
    let mut bed = Bed::with(pool_mode(PoolMode::Transaction)).await;
    let client = bed.connect("bob").await.unwrap();
    client
        .batch_execute("SET search_path TO public, pg_catalog")
        .await
        .unwrap();
    let shared = bed.shared.clone().unwrap();
    until("the client to hand its server back", || {
        shared.pools.snapshot().iter().all(|(p, _)| {
            p.stats
                .clients_active
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
        })
    })
    .await;
    restart_cluster(&mut bed).await;
    let path: String = client
        .query_one("SHOW search_path", &[])
        .await
        .expect("the next statement runs on a new server")
        .get(0);
    assert_eq!(path, "public, pg_catalog");
}

#[tokio::test]
async fn a_session_pool_client_idle_during_a_cluster_restart_sees_no_error() {
    use redshift_iam_proxy::config::PoolMode;
    let mut bed = Bed::with(pool_mode(PoolMode::Session)).await;
    let client = bed.connect("bob").await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    restart_cluster(&mut bed).await;
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("re-attached to a new server")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn a_session_pool_client_with_a_temporary_table_hears_the_restart_at_its_next_query() {
    use redshift_iam_proxy::config::PoolMode;
    let mut bed = Bed::with(pool_mode(PoolMode::Session)).await;
    let client = bed.connect("bob").await.unwrap();
    client
        .batch_execute("CREATE TEMP TABLE t (a int)")
        .await
        .unwrap();
    restart_cluster(&mut bed).await;
    let err = client.query_one("SELECT 1", &[]).await.unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "08006", "{msg}");
    assert!(msg.contains("temporary table"), "{msg}");
}

#[tokio::test]
async fn a_transaction_pool_client_mid_query_during_a_restart_gets_one_error_and_goes_on() {
    use redshift_iam_proxy::config::PoolMode;
    let mut bed = Bed::with(pool_mode(PoolMode::Transaction)).await;
    let client = std::sync::Arc::new(bed.connect("bob").await.unwrap());
    let admin = bed.pg.admin().await.unwrap();
    let c = client.clone();
    let sleeping = tokio::spawn(async move { c.batch_execute("SELECT pg_sleep(60)").await });
    wait_for(
        &admin,
        "SELECT count(*) = 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'",
        "the statement to run",
    )
    .await;
    drop(admin);
    restart_cluster(&mut bed).await;
    let err = sleeping.await.unwrap().unwrap_err();
    let (code, msg) = db_error(&err);
    assert_eq!(code, "57P01", "{msg}");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("the connection stays usable")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test]
async fn operators_see_a_held_login_and_the_outage_in_the_metrics() {
    let bed = Bed::with(BedOptions {
        faultline: true,
        ..Default::default()
    })
    .await;
    let line = bed.faultline.as_ref().unwrap();
    line.set(Mode::CloseImmediately);
    let login = bed.connect("bob");
    tokio::pin!(login);
    until_held(&bed, login.as_mut()).await;
    let shared = bed.shared.as_ref().unwrap();
    let text = redshift_iam_proxy::admin::metrics::encode(shared);
    assert!(
        text.contains("redshift_iam_proxy_cluster_logins_held{target=\"testcluster\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("redshift_iam_proxy_cluster_in_outage{target=\"testcluster\"} 1"),
        "{text}"
    );
    line.set(Mode::Forward);
    login.await.expect("held login succeeds");
}

#[tokio::test]
async fn twenty_transaction_pool_clients_ride_through_a_cluster_restart_without_a_login_storm() {
    use redshift_iam_proxy::config::PoolMode;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const CLIENTS: usize = 20;
    const SIZE: u64 = 4;
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| {
            c.pool.mode = PoolMode::Transaction;
            c.pool.size = SIZE as usize;
        }),
        ..Default::default()
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..CLIENTS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let client = bed.connect("bob").await.unwrap();
        let (stop, restarted, progress) = (stop.clone(), restarted.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match client
                    .batch_execute("BEGIN; SELECT pg_sleep(0.01); COMMIT")
                    .await
                {
                    Ok(()) if restarted.load(Ordering::SeqCst) => {
                        progress[i].fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(()) => {}
                    Err(e) => errors.push(db_error(&e).0),
                }
                // A pause between transactions: most clients are idle at any moment.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            errors
        }));
    }
    let shared = bed.shared.clone().unwrap();
    let pool_logins = || -> u64 {
        shared
            .pools
            .snapshot()
            .iter()
            .map(|(p, _)| p.stats.servers_opened.load(Ordering::Relaxed))
            .sum()
    };
    until("every pool server to be in use", || pool_logins() >= SIZE).await;
    let before = pool_logins();
    let power = bed.pg.power();
    power.stop().await;
    // A new client's first statement during the outage is held and runs after it.
    let held = async {
        let c = bed.connect("bob").await?;
        c.query_one("SELECT 1", &[]).await
    };
    tokio::pin!(held);
    tokio::select! {
        r = &mut held => panic!("a statement during the outage ended: {:?}", r.err()),
        () = tokio::time::sleep(std::time::Duration::from_secs(3)) => {}
    }
    power.start().await.expect("cluster starts again");
    restarted.store(true, Ordering::SeqCst);
    held.await.expect("the held statement runs");
    until("every client to run transactions after the restart", || {
        progress.iter().all(|p| p.load(Ordering::SeqCst) >= 3)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let errors = tokio::time::timeout(std::time::Duration::from_secs(20), t)
            .await
            .expect("no client hangs")
            .unwrap();
        assert!(
            errors.len() <= 1,
            "a client heard more than one error: {errors:?}"
        );
        assert!(
            errors.iter().all(|c| c == "57P01" || c == "08006"),
            "only a transaction caught by the restart fails: {errors:?}"
        );
    }
    let logins_after = pool_logins() - before;
    assert!(
        logins_after <= SIZE + 2,
        "{logins_after} server logins after the restart for a pool of {SIZE}"
    );
}
