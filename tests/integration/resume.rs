//! Waking a paused cluster (issue 19 item 4), end to end: the emulator pauses the bed's
//! cluster (its PostgreSQL is stopped), a client logs in through the proxy, and with
//! `[cluster] resume_paused = true` the proxy resumes the cluster (ResumeCluster) and holds
//! the login until it is available; without it the login fails naming the paused cluster.

use redshift_emulator::ClusterStatus;
use redshift_iam_proxy::testbed::{db_error, Bed, BedOptions, Parts};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long the emulated cluster takes to resume in these tests.
const RESUME_DELAY: Duration = Duration::from_millis(1500);

/// A bed whose proxy has `resume_paused = resume` and `resume_hold_secs = hold`, its cluster
/// paused (PostgreSQL stopped) and taking [`RESUME_DELAY`] to resume.
async fn paused_bed(resume: bool, hold: u64, opts: BedOptions) -> Bed {
    let bed = Bed::with(BedOptions {
        tweak: Box::new(move |c| {
            c.cluster[0].resume_paused = resume;
            c.cluster[0].resume_hold_secs = hold;
        }),
        ..opts
    })
    .await;
    bed.emu.set_resume_delay(RESUME_DELAY);
    bed.pause_cluster().await.unwrap();
    bed
}

/// `current_user` of a client logged in through the proxy at `conninfo`.
async fn login(conninfo: String) -> Result<String, tokio_postgres::Error> {
    let client = redshift_iam_proxy::testbed::connect(&conninfo).await?;
    let row = client.query_one("SELECT current_user::text", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_to_a_paused_cluster_is_held_until_the_proxy_has_resumed_it() {
    let bed = paused_bed(true, 60, BedOptions::default()).await;
    let started = Instant::now();
    let user = login(bed.conninfo("bob")).await;
    let held = started.elapsed();
    assert_eq!(
        (
            user.map_err(|e| db_error(&e)),
            bed.emu.call_count("ResumeCluster"),
            bed.emu.cluster_status(bed.cluster_identifier()),
        ),
        (Ok("IAM:bob".to_owned()), 1, Some(ClusterStatus::Available))
    );
    assert!(held >= RESUME_DELAY, "held only {held:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pooling_a_login_to_a_paused_cluster_is_held_until_the_proxy_has_resumed_it() {
    let bed = Bed::with(BedOptions {
        tweak: Box::new(|c| {
            c.pool.mode = redshift_iam_proxy::config::PoolMode::None;
            c.cluster[0].resume_paused = true;
        }),
        ..Default::default()
    })
    .await;
    bed.emu.set_resume_delay(RESUME_DELAY);
    bed.pause_cluster().await.unwrap();
    assert_eq!(
        (
            login(bed.conninfo("alice")).await.map_err(|e| db_error(&e)),
            bed.emu.call_count("ResumeCluster")
        ),
        (Ok("IAM:alice".to_owned()), 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_logins_to_a_paused_cluster_resume_it_once() {
    let bed = paused_bed(true, 60, BedOptions::default()).await;
    let logins: Vec<_> = ["alice", "bob", "bob", "md5user", "plainuser"]
        .into_iter()
        .map(|u| tokio::spawn(login(bed.conninfo(u))))
        .collect();
    let mut users = Vec::new();
    for l in logins {
        users.push(l.await.unwrap().map_err(|e| db_error(&e)));
    }
    assert_eq!(
        (users, bed.emu.call_count("ResumeCluster")),
        (
            [
                "IAM:alice",
                "IAM:bob",
                "IAM:bob",
                "IAM:md5user",
                "IAM:plainuser"
            ]
            .map(|u| Ok(u.to_owned()))
            .to_vec(),
            1
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_resume_paused_off_a_login_to_a_paused_cluster_fails_naming_the_cluster_and_resume_paused(
) {
    let bed = paused_bed(false, 60, BedOptions::default()).await;
    let (code, message) = db_error(&login(bed.conninfo("bob")).await.unwrap_err());
    assert_eq!(
        (
            code.as_str(),
            bed.emu.call_count("ResumeCluster"),
            bed.emu.cluster_status(bed.cluster_identifier())
        ),
        ("57P03", 0, Some(ClusterStatus::Paused)),
        "{message}"
    );
    assert!(
        message.contains("\"testcluster\" is paused") && message.contains("resume_paused"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_longer_than_resume_hold_secs_fails_the_login_naming_the_setting() {
    let bed = paused_bed(true, 1, BedOptions::default()).await;
    bed.emu.set_resume_delay(Duration::from_secs(30));
    let started = Instant::now();
    let (code, message) = db_error(&login(bed.conninfo("bob")).await.unwrap_err());
    let took = started.elapsed();
    assert_eq!(code, "57P03", "{message}");
    assert!(
        message.contains("resume_hold_secs") && message.contains("resuming"),
        "{message}"
    );
    assert!(took < Duration::from_secs(10), "refused after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_resume_cluster_fails_the_login_naming_the_missing_permission() {
    let bed = paused_bed(
        true,
        60,
        BedOptions {
            denied_actions: vec!["redshift:ResumeCluster".into()],
            ..Default::default()
        },
    )
    .await;
    let (code, message) = db_error(&login(bed.conninfo("bob")).await.unwrap_err());
    assert_eq!(
        (
            code.as_str(),
            bed.emu.cluster_status(bed.cluster_identifier())
        ),
        ("57P03", Some(ClusterStatus::Paused)),
        "{message}"
    );
    assert!(
        message.contains("redshift:ResumeCluster") && message.contains("AccessDenied"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pools_own_logins_never_resume_a_paused_cluster() {
    let bed = paused_bed(
        true,
        60,
        BedOptions {
            proxy_toml: format!(
                "{}\n[pool]\nmin_size = 1\n",
                redshift_iam_proxy::testbed::TEST_PROXY_TOML
            ),
            ..Default::default()
        },
    )
    .await;
    // The bed paused the cluster after the proxy started: restart the proxy so that its
    // prewarm meets the paused cluster.
    let mut bed = bed;
    bed.start_proxy(
        redshift_iam_proxy::testbed::TEST_USERS_TOML,
        Box::new(|c| c.cluster[0].resume_paused = true),
    )
    .await;
    let shared = bed.shared.clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shared.admin.is_started() {
        assert!(Instant::now() < deadline, "prewarm did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            bed.emu.call_count("ResumeCluster"),
            bed.emu.cluster_status(bed.cluster_identifier())
        ),
        (0, Some(ClusterStatus::Paused))
    );
}

/// Why: a second proxy in this process on the same parts (another replica).
struct Replica {
    addr: std::net::SocketAddr,
    shared: std::sync::Arc<redshift_iam_proxy::context::Shared>,
    _stop: oneshot::Sender<()>,
}

async fn replica(parts: &Parts) -> Replica {
    let mut config = parts.config_with("").unwrap();
    config.cluster[0].resume_paused = true;
    let proxy = parts.bind_proxy(config).await.unwrap();
    let addr = proxy.local_addr().unwrap();
    let shared = proxy.shared();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(proxy.serve(async move {
        let _ = rx.await;
    }));
    Replica {
        addr,
        shared,
        _stop: tx,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_proxies_resuming_one_cluster_at_once_both_log_their_clients_in() {
    let parts = Parts::start(&BedOptions {
        cluster: "twins".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (a, b) = (replica(&parts).await, replica(&parts).await);
    parts.emu.set_resume_delay(RESUME_DELAY);
    parts.pause_cluster().await.unwrap();
    // Both proxies' ResumeCluster calls are answered together, so both saw the cluster
    // paused: one resumes it, the other gets InvalidClusterState.
    parts.emu.rendezvous("ResumeCluster", 2);
    // Different users: the emulator keeps only the newest password of a login role, so two
    // replicas minting for the same user would race on that, not on the resume.
    let conninfo = |r: &Replica, user: &str| {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            r.addr.port()
        )
    };
    let (first, second) = tokio::join!(login(conninfo(&a, "bob")), login(conninfo(&b, "alice")));
    let metrics = redshift_iam_proxy::admin::metrics::encode(&a.shared);
    let count = |outcome: &str| {
        let series = format!(
            "redshift_iam_proxy_cluster_resumes_requested_total{{target=\"twins\",outcome=\"{outcome}\"}} 1"
        );
        metrics.contains(&series)
    };
    assert_eq!(
        (
            first.map_err(|e| db_error(&e)),
            second.map_err(|e| db_error(&e)),
            parts.emu.call_count("ResumeCluster"),
            count("ok"),
            count("already_resuming"),
        ),
        (
            Ok("IAM:bob".to_owned()),
            Ok("IAM:alice".to_owned()),
            2,
            true,
            true
        ),
        "{metrics}"
    );
    drop(b);
}
