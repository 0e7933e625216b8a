//! Cluster state through `aws-sdk-redshift`: PauseCluster, ResumeCluster and RebootCluster
//! move cluster `c1` through `pausing`/`paused`, `resuming` and `rebooting` back to
//! `available`, DescribeClusters reports each state, and the wrong starting state, an unknown
//! cluster, a denied action and a bad signature get AWS's errors.

use std::time::{Duration, Instant};

use aws_sdk_redshift::types::Cluster;

use super::{call, creds, expect_failures, expect_failures_as, want, Bed, Clients, Who, MALLORY};
use crate::ClusterStatus;

/// Bound on waiting for a state change in these tests.
const WITHIN: Duration = Duration::from_secs(10);

/// `(ClusterStatus, ClusterAvailabilityStatus)` of `c1` as DescribeClusters reports it.
async fn described(c: &Clients) -> (String, String) {
    let out =
        c.rs.describe_clusters()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    let cluster: &Cluster = &out.clusters()[0];
    (
        cluster.cluster_status().unwrap_or_default().to_owned(),
        cluster
            .cluster_availability_status()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Pauses `c1` through the API and waits until it is `paused`.
async fn paused_bed() -> (Bed, Clients) {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    c.rs.pause_cluster()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Paused, WITHIN)
        .await
        .unwrap();
    (bed, c)
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test]
async fn a_cluster_starts_available_for_queries() {
    let bed = Bed::start().await;
    assert_eq!(
        described(&bed.clients(Who::Alice).await).await,
        pair("available", "Available")
    );
}

#[tokio::test]
async fn pause_cluster_answers_pausing_and_describe_clusters_then_reports_paused_and_unavailable() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.pause_cluster()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    let answered = out
        .cluster()
        .and_then(|c| c.cluster_status())
        .map(str::to_owned);
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Paused, WITHIN)
        .await
        .unwrap();
    assert_eq!(
        (answered.as_deref(), described(&c).await),
        (Some("pausing"), pair("paused", "Unavailable"))
    );
}

#[tokio::test]
async fn a_resumed_cluster_is_resuming_for_the_resume_delay_then_available() {
    let (bed, c) = paused_bed().await;
    bed.emu.set_resume_delay(Duration::from_millis(400));
    let started = Instant::now();
    let out =
        c.rs.resume_cluster()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    let answered = out
        .cluster()
        .and_then(|c| c.cluster_status())
        .map(str::to_owned);
    let during = described(&c).await;
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Available, WITHIN)
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        (answered.as_deref(), during, described(&c).await),
        (
            Some("resuming"),
            pair("resuming", "Unavailable"),
            pair("available", "Available")
        )
    );
    assert!(
        took >= Duration::from_millis(400),
        "available after {took:?}"
    );
}

#[tokio::test]
async fn a_rebooted_cluster_is_rebooting_then_available() {
    let bed = Bed::start().await;
    bed.emu.set_resume_delay(Duration::from_millis(300));
    let c = bed.clients(Who::Alice).await;
    let out =
        c.rs.reboot_cluster()
            .cluster_identifier("c1")
            .send()
            .await
            .unwrap();
    let answered = out
        .cluster()
        .and_then(|c| c.cluster_status())
        .map(str::to_owned);
    let during = described(&c).await;
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Available, WITHIN)
        .await
        .unwrap();
    assert_eq!(
        (answered.as_deref(), during),
        (Some("rebooting"), pair("rebooting", "Unavailable"))
    );
}

#[tokio::test]
async fn state_change_errors() {
    let (bed, _) = paused_bed().await;
    let resume = |id: &'static str| {
        call(move |c: &Clients| c.rs.resume_cluster().cluster_identifier(id).send())
    };
    let rows = vec![
        (
            "pausing a paused cluster",
            bed.clients(Who::Alice).await,
            call(|c| c.rs.pause_cluster().cluster_identifier("c1").send()),
            want("InvalidClusterState")
                .typed("InvalidClusterStateFault")
                .says("cluster c1 is paused"),
        ),
        (
            "rebooting a paused cluster",
            bed.clients(Who::Alice).await,
            call(|c| c.rs.reboot_cluster().cluster_identifier("c1").send()),
            want("InvalidClusterState").typed("InvalidClusterStateFault"),
        ),
        (
            "resuming an unknown cluster",
            bed.clients(Who::Alice).await,
            resume("nope"),
            want("ClusterNotFound")
                .typed("ClusterNotFoundFault")
                .says("Cluster nope not found."),
        ),
        (
            "resuming denied redshift:ResumeCluster",
            bed.clients(Who::Mallory).await,
            resume("c1"),
            want("AccessDenied").says(format!(
                "User: {MALLORY} is not authorized to perform: redshift:ResumeCluster on \
                 resource: arn:aws:redshift:us-east-1:123456789012:cluster:c1"
            )),
        ),
        (
            "resuming with a wrong secret",
            bed.clients_with(
                creds("AKIDALICE", "not-the-secret", None),
                "us-east-1",
                false,
            )
            .await,
            resume("c1"),
            want("SignatureDoesNotMatch"),
        ),
    ];
    expect_failures_as(rows).await;
    // None of them changed anything.
    assert_eq!(bed.emu.cluster_status("c1"), Some(ClusterStatus::Paused));
}

#[tokio::test]
async fn resuming_an_available_cluster_is_invalid_cluster_state() {
    let bed = Bed::start().await;
    expect_failures(
        &bed,
        vec![(
            "resuming an available cluster",
            Who::Alice,
            call(|c| c.rs.resume_cluster().cluster_identifier("c1").send()),
            want("InvalidClusterState")
                .typed("InvalidClusterStateFault")
                .says("ResumeCluster needs a cluster that is paused; cluster c1 is available."),
        )],
    )
    .await;
}

#[tokio::test]
async fn of_concurrent_resumes_one_succeeds_and_the_others_get_invalid_cluster_state() {
    let (bed, _) = paused_bed().await;
    bed.emu.rendezvous("ResumeCluster", 3);
    let mut calls = Vec::new();
    for _ in 0..3 {
        let c = bed.clients(Who::Alice).await;
        calls.push(tokio::spawn(async move {
            c.rs.resume_cluster()
                .cluster_identifier("c1")
                .send()
                .await
                .map(|_| "ok".to_owned())
                .map_err(|e| {
                    aws_sdk_redshift::error::ProvideErrorMetadata::code(&e)
                        .unwrap_or_default()
                        .to_owned()
                })
        }));
    }
    let mut outcomes = Vec::new();
    for c in calls {
        outcomes.push(match c.await.unwrap() {
            Ok(s) | Err(s) => s,
        });
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        ["InvalidClusterState", "InvalidClusterState", "ok"]
    );
}

#[tokio::test]
async fn credentials_minted_while_paused_are_provisioned_when_the_cluster_resumes() {
    let (bed, c) = paused_bed().await;
    c.rs.get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    let while_paused = bed.cluster.role("IAM:alice").is_some();
    bed.emu.resume_cluster("c1").unwrap();
    bed.emu
        .wait_cluster_status("c1", ClusterStatus::Available, WITHIN)
        .await
        .unwrap();
    let verifier = bed.cluster.role("IAM:alice").and_then(|r| r.verifier);
    assert_eq!(
        (
            while_paused,
            verifier.is_some_and(|v| v.starts_with("SCRAM-SHA-256$"))
        ),
        (false, true)
    );
}
