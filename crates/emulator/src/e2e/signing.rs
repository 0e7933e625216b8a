//! SigV4 and the HTTP surface: signature failures through the SDKs, each service's signing
//! name and error format over raw signed requests, and requests the SDKs never send.

use super::{call, creds, expect_failures_as, raw_http, signed_raw, want, Bed, Call, Clients, Who};

#[tokio::test]
async fn a_session_key_with_its_token_is_accepted() {
    let bed = Bed::start().await;
    let c = bed.clients(Who::Session).await;
    c.rs.describe_clusters().send().await.unwrap();
}

#[tokio::test]
async fn signature_failures() {
    let bed = Bed::start().await;
    let clients = |akid: &'static str, secret: &'static str, token, region: &'static str| {
        bed.clients_with(creds(akid, secret, token), region, false)
    };
    let describe = || -> Call { call(|c: &Clients| c.rs.describe_clusters().send()) };
    let workgroup =
        || -> Call { call(|c: &Clients| c.sl.get_workgroup().workgroup_name("wg1").send()) };
    let east = "us-east-1";
    expect_failures_as(vec![
        (
            "Redshift, wrong secret",
            clients("AKIDALICE", "wrong", None, east).await,
            describe(),
            want("SignatureDoesNotMatch"),
        ),
        (
            "Redshift, unknown key id",
            clients("AKIDNOPE", "alice-secret", None, east).await,
            describe(),
            want("InvalidClientTokenId"),
        ),
        (
            "Redshift, signed for another region",
            clients("AKIDALICE", "alice-secret", None, "eu-west-1").await,
            describe(),
            want("SignatureDoesNotMatch"),
        ),
        (
            "Redshift, session key without its token",
            clients("ASIATEST", "session-secret", None, east).await,
            describe(),
            want("InvalidClientTokenId"),
        ),
        (
            "Redshift, session key with a wrong token",
            clients("ASIATEST", "session-secret", Some("bad"), east).await,
            describe(),
            want("InvalidClientTokenId"),
        ),
        (
            "Serverless, wrong secret",
            clients("AKIDALICE", "wrong", None, east).await,
            workgroup(),
            want("InvalidSignatureException"),
        ),
        (
            "Serverless, unknown key id",
            clients("AKIDNOPE", "alice-secret", None, east).await,
            workgroup(),
            want("UnrecognizedClientException"),
        ),
    ])
    .await;
}

const FORM: &[(&str, &str)] = &[("content-type", "application/x-www-form-urlencoded")];
const JSON_GET_WORKGROUP: &[(&str, &str)] = &[
    ("content-type", "application/x-amz-json-1.1"),
    ("x-amz-target", "RedshiftServerless.GetWorkgroup"),
];
const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const REDSHIFT_BODY: &str = "Action=DescribeClusters&Version=2012-12-01";
const WORKGROUP_BODY: &str = r#"{"workgroupName":"wg1"}"#;

/// Why: one raw signed request and what its response must start with and contain.
struct RawCase {
    case: &'static str,
    signed_for: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: &'static str,
    contains: &'static [&'static str],
}

async fn expect_raw(bed: &Bed, table: &[RawCase]) {
    let mut wrong = Vec::new();
    for c in table {
        let r = signed_raw(&bed.emu, c.signed_for, c.headers, c.body).await;
        let missing: Vec<_> = c.contains.iter().filter(|f| !r.contains(**f)).collect();
        if !r.starts_with(c.status) || !missing.is_empty() {
            wrong.push(format!(
                "{}: expected {} containing {missing:?}, got:\n{r}",
                c.case, c.status
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn each_service_accepts_its_own_signing_name() {
    let bed = Bed::start().await;
    expect_raw(
        &bed,
        &[
            RawCase {
                case: "STS signed for sts",
                signed_for: "sts",
                headers: FORM,
                body: STS_BODY,
                status: "HTTP/1.1 200",
                contains: &[],
            },
            RawCase {
                case: "Redshift signed for redshift",
                signed_for: "redshift",
                headers: FORM,
                body: REDSHIFT_BODY,
                status: "HTTP/1.1 200",
                contains: &[],
            },
            RawCase {
                case: "Serverless signed for redshift-serverless",
                signed_for: "redshift-serverless",
                headers: JSON_GET_WORKGROUP,
                body: WORKGROUP_BODY,
                status: "HTTP/1.1 200",
                contains: &["application/x-amz-json-1.1"],
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_signing_name_is_refused_in_the_services_own_error_format() {
    let bed = Bed::start().await;
    expect_raw(
        &bed,
        &[
            RawCase {
                case: "STS signed for redshift",
                signed_for: "redshift",
                headers: FORM,
                body: STS_BODY,
                status: "HTTP/1.1 403",
                contains: &[
                    "<Code>SignatureDoesNotMatch</Code>",
                    "https://sts.amazonaws.com/doc/2011-06-15/",
                    "correct service: &apos;sts&apos;",
                ],
            },
            RawCase {
                case: "Redshift signed for sts",
                signed_for: "sts",
                headers: FORM,
                body: REDSHIFT_BODY,
                status: "HTTP/1.1 403",
                contains: &["correct service: &apos;redshift&apos;"],
            },
            RawCase {
                case: "Serverless signed for redshift",
                signed_for: "redshift",
                headers: JSON_GET_WORKGROUP,
                body: WORKGROUP_BODY,
                status: "HTTP/1.1 403",
                contains: &[
                    r#""__type":"InvalidSignatureException""#,
                    "correct service: 'redshift-serverless'",
                ],
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn malformed_serverless_requests_are_json_errors() {
    let bed = Bed::start().await;
    expect_raw(
        &bed,
        &[
            RawCase {
                case: "unknown operation",
                signed_for: "redshift-serverless",
                headers: &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", "RedshiftServerless.DeleteWorkgroup"),
                ],
                body: "{}",
                status: "HTTP/1.1 ",
                contains: &["UnknownOperationException"],
            },
            RawCase {
                case: "malformed JSON",
                signed_for: "redshift-serverless",
                headers: JSON_GET_WORKGROUP,
                body: "{nope",
                status: "HTTP/1.1 400",
                contains: &["SerializationException"],
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn requests_the_sdks_never_send_are_refused() {
    let bed = Bed::start().await;
    let cases: [(&str, &str, &str, &[&str]); 2] = [
        (
            "unsigned",
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 42\r\n\r\n\
             Action=DescribeClusters&Version=2012-12-01",
            "HTTP/1.1 403",
            &[
                "<Code>MissingAuthenticationToken</Code>",
                "<Type>Sender</Type>",
            ],
        ),
        (
            "body over the size limit",
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n",
            "HTTP/1.1 413",
            &[],
        ),
    ];
    for (case, request, status, contains) in cases {
        let r = raw_http(bed.emu.local_addr(), request).await;
        assert!(r.starts_with(status), "{case}: {r}");
        for fragment in contains {
            assert!(r.contains(fragment), "{case}: no {fragment} in {r}");
        }
    }
}

#[tokio::test]
async fn garbage_instead_of_http_gets_no_success() {
    let bed = Bed::start().await;
    let r = raw_http(bed.emu.local_addr(), "garbage\r\n\r\n").await;
    assert!(!r.contains("200 OK"), "{r}");
}
