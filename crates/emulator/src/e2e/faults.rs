//! The test-control surface: injected faults, delays, call counters and shutdown.

use std::time::{Duration, Instant};

use aws_sdk_redshift::error::SdkError;

use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{call, creds, raw_http, signed_raw, want, Bed, Call, Clients, Who};
use crate::Fault;

/// GetClusterCredentials for alice on `c1`.
fn gcc() -> Call {
    call(|c: &Clients| {
        c.rs.get_cluster_credentials()
            .db_user("alice")
            .cluster_identifier("c1")
            .send()
    })
}

fn error_503() -> Fault {
    Fault::Error {
        status: 503,
        code: "ServiceUnavailable".into(),
        message: "try later".into(),
    }
}

#[tokio::test]
async fn an_injected_fault_fails_exactly_the_next_call_in_the_services_format() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    let table = [
        (
            "Throttle, Redshift",
            Fault::Throttle,
            gcc(),
            want("Throttling").says("Rate exceeded"),
        ),
        (
            "Throttle, STS",
            Fault::Throttle,
            call(|c: &Clients| c.sts.get_caller_identity().send()),
            want("Throttling").says("Rate exceeded"),
        ),
        (
            "Throttle, Serverless",
            Fault::Throttle,
            call(|c: &Clients| c.sl.get_credentials().workgroup_name("wg1").send()),
            want("ThrottlingException").says("Rate exceeded"),
        ),
        (
            "Error 503",
            error_503(),
            gcc(),
            want("ServiceUnavailable").says("try later"),
        ),
    ];
    for (case, fault, call, want) in table {
        bed.emu.fail_next(1, fault);
        match call(&c).await {
            Ok(()) => panic!("{case}: the faulted call succeeded"),
            Err(got) => assert!(want.mismatch(&got).is_none(), "{case}: {got:?}"),
        }
        if let Err(e) = call(&c).await {
            panic!("{case}: the call after the fault failed: {e:?}");
        }
    }
}

/// GetClusterCredentials for alice on `c1` that must fail; the SDK's error, transport kinds
/// included.
async fn gcc_transport_error(
    c: &Clients,
) -> SdkError<aws_sdk_redshift::operation::get_cluster_credentials::GetClusterCredentialsError> {
    c.rs.get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_disconnect_fault_closes_the_connection_unanswered() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    bed.emu.fail_next(1, Fault::Disconnect);
    let err = gcc_transport_error(&c).await;
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_hang_fault_lasts_until_the_clients_attempt_timeout() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    bed.emu.fail_next(1, Fault::Hang);
    let t = Instant::now();
    let err = gcc_transport_error(&c).await;
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(t.elapsed() >= super::ATTEMPT_TIMEOUT, "{:?}", t.elapsed());
}

#[tokio::test]
async fn shutdown_releases_hanging_calls() {
    let bed = Bed::start().await;
    bed.emu.fail_next(1, Fault::Hang);
    let addr = bed.emu.local_addr();
    let raw =
        tokio::spawn(async move { raw_http(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    bed.emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(raw);
}

#[tokio::test]
async fn the_sdks_standard_retry_recovers_from_one_throttle() {
    let bed = Bed::start().await;
    let retrying = bed
        .clients_with(Who::Alice.creds(), "us-east-1", true)
        .await;
    bed.emu.fail_next(1, Fault::Throttle);
    retrying
        .rs
        .get_cluster_credentials()
        .db_user("alice")
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
    assert_eq!(bed.emu.call_count("GetClusterCredentials"), 2);
}

#[tokio::test]
async fn set_delay_delays_every_answer() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    bed.emu.set_delay(Duration::from_millis(300));
    let t = Instant::now();
    gcc()(&c).await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn clear_faults_drops_queued_faults() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    bed.emu.fail_next(3, Fault::Throttle);
    bed.emu.clear_faults();
    gcc()(&c).await.unwrap();
}

#[tokio::test]
async fn a_fault_for_one_action_is_not_taken_by_other_actions() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    bed.emu.fail_next_action("AssumeRole", 1, Fault::Throttle);
    c.sts.get_caller_identity().send().await.unwrap();
    let err = c
        .sts
        .assume_role()
        .role_arn(super::OPEN)
        .role_session_name("s6")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
}

#[tokio::test]
async fn a_failed_signature_does_not_consume_an_injected_fault() {
    let bed = Bed::start().await;
    let bad = bed
        .clients_with(creds("AKIDALICE", "wrong", None), "us-east-1", false)
        .await;
    bed.emu.fail_next(1, Fault::Throttle);
    let err = bad.rs.describe_clusters().send().await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    let c = bed.clients(Who::Alice).await;
    let err = c.rs.describe_clusters().send().await.unwrap_err();
    assert_eq!(err.code(), Some("Throttling"));
}

#[tokio::test]
async fn a_client_can_fall_back_from_a_failing_custom_domain_to_the_cluster_identifier() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    bed.emu.fail_next_action(
        "GetClusterCredentialsWithIAM",
        1,
        Fault::Error {
            status: 400,
            code: "UnsupportedOperation".into(),
            message: "custom domain unavailable".into(),
        },
    );
    c.rs.describe_custom_domain_associations()
        .custom_domain_name("db.example.com")
        .send()
        .await
        .unwrap();
    let err =
        c.rs.get_cluster_credentials_with_iam()
            .custom_domain_name("db.example.com")
            .send()
            .await
            .unwrap_err();
    assert_eq!(err.code(), Some("UnsupportedOperation"));
    c.rs.get_cluster_credentials_with_iam()
        .cluster_identifier("c1")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn call_count_counts_requests_per_action_and_total_calls_all_requests() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Alice).await;
    gcc()(&c).await.unwrap();
    gcc()(&c).await.unwrap();
    c.rs.describe_clusters().send().await.unwrap();
    let counts = (
        bed.emu.call_count("GetClusterCredentials"),
        bed.emu.call_count("DescribeClusters"),
        bed.emu.call_count("AssumeRole"),
        bed.emu.total_calls(),
    );
    assert_eq!(counts, (2, 1, 0, 3));
}

#[tokio::test]
async fn call_count_includes_failed_calls() {
    let bed = Bed::start().await;
    let addr = bed.emu.local_addr();
    // Bad signature, unsigned, invalid parameters, and a Serverless operation that does not
    // exist (counted under its X-Amz-Target name).
    let bad = bed
        .clients_with(creds("AKIDALICE", "wrong", None), "us-east-1", false)
        .await;
    bad.rs.describe_clusters().send().await.unwrap_err();
    raw_http(
        addr,
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 42\r\n\r\n\
         Action=DescribeClusters&Version=2012-12-01",
    )
    .await;
    let c = bed.clients(Who::Alice).await;
    c.sl.get_workgroup()
        .workgroup_name("WG_1")
        .send()
        .await
        .unwrap_err();
    let unknown = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "RedshiftServerless.DeleteWorkgroup"),
    ];
    signed_raw(&bed.emu, "redshift-serverless", &unknown, "{}").await;
    let counts = (
        bed.emu.call_count("DescribeClusters"),
        bed.emu.call_count("GetWorkgroup"),
        bed.emu.call_count("DeleteWorkgroup"),
    );
    assert_eq!(counts, (2, 1, 1));
}
