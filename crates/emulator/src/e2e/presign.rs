//! AWS-signed identity tokens: `sts:GetCallerIdentity` presigned with the real `aws-sigv4`
//! crate (SigV4 query-string form, with the server-id header signed), sent as a GET by a hyper
//! client the way the proxy sends a client's token to STS, and answered in STS's JSON.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

use super::{creds, Bed, Who, ALICE, ANALYST, MALLORY};
use crate::Emulator;

/// The extra header an identity token signs: the proxy's server id.
const PROXY_ID: &str = "x-redshift-iam-proxy-id";
const GET_CALLER_IDENTITY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// What SigV4 leaves unencoded in query values.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why: how a test presigns a token: whose credentials, scope, clock, lifetime, action and
/// server id (the defaults are a good token of alice's).
#[derive(Clone)]
struct Token {
    creds: Credentials,
    region: &'static str,
    service: &'static str,
    signed_at: SystemTime,
    expires_in: Duration,
    /// The operation's query (`Action=…&Version=…`), signed as sent.
    action: &'static str,
    proxy_id: &'static str,
}

impl Token {
    fn of(creds: Credentials) -> Token {
        Token {
            creds,
            region: "us-east-1",
            service: "sts",
            signed_at: SystemTime::now(),
            expires_in: Duration::from_secs(60),
            action: GET_CALLER_IDENTITY,
            proxy_id: "proxy-1",
        }
    }

    /// The presigned query (the operation's parameters, then `X-Amz-…`) for `emu`'s endpoint,
    /// made by aws-sigv4 exactly as a client's token tool would.
    fn presign(&self, emu: &Emulator) -> String {
        let identity = self.creds.clone().into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(self.expires_in);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(self.signed_at)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let url = format!("{}/?{}", emu.endpoint_url(), self.action);
        let headers = [(PROXY_ID, self.proxy_id)];
        let request =
            SignableRequest::new("GET", url, headers.into_iter(), SignableBody::Bytes(&[]))
                .unwrap();
        let (instructions, _signature) = sign(request, &params).unwrap().into_parts();
        let (_headers, auth) = instructions.into_parts();
        let mut query = self.action.to_owned();
        for (name, value) in auth {
            query.push_str(&format!(
                "&{name}={}",
                percent_encode(value.as_bytes(), UNRESERVED)
            ));
        }
        query
    }
}

/// Why: an answer of the emulator, reduced to what the tests compare.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// `(Arn, Account, UserId)` of a JSON GetCallerIdentity answer.
    fn identity(&self) -> (String, String, String) {
        assert_eq!(
            (self.status, self.content_type.as_str()),
            (200, "application/json"),
            "{self:?}"
        );
        let v = self.json();
        let result = &v["GetCallerIdentityResponse"]["GetCallerIdentityResult"];
        let field = |name: &str| result[name].as_str().unwrap_or_default().to_owned();
        assert!(
            v["GetCallerIdentityResponse"]["ResponseMetadata"]["RequestId"].is_string(),
            "{self:?}"
        );
        (field("Arn"), field("Account"), field("UserId"))
    }
}

/// Sends `GET /?{query}` with the server-id header (and `Accept: application/json` if
/// `json`), as the proxy rebuilds a client's token, over a hyper HTTP/1.1 connection.
async fn send(emu: &Emulator, query: &str, proxy_id: &str, json: bool) -> Answer {
    let stream = tokio::net::TcpStream::connect(emu.local_addr())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = hyper::Request::get(format!("/?{query}"))
        .header("host", emu.local_addr().to_string())
        .header(PROXY_ID, proxy_id);
    if json {
        request = request.header("accept", "application/json");
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Presigns `token` and sends it as the proxy would (JSON asked for).
async fn present(emu: &Emulator, token: &Token) -> Answer {
    send(emu, &token.presign(emu), token.proxy_id, true).await
}

/// AssumeRole of the analyst role as alice, session `s1`, through aws-sdk-sts.
async fn assume_analyst(bed: &Bed) -> AssumeRoleOutput {
    bed.clients(Who::Alice)
        .await
        .sts
        .assume_role()
        .role_arn(ANALYST)
        .role_session_name("s1")
        .external_id("ext-123")
        .send()
        .await
        .unwrap()
}

/// The temporary credentials of `out`, session token included.
fn temporary(out: &AssumeRoleOutput) -> Credentials {
    let c = out.credentials().unwrap();
    creds(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token()),
    )
}

#[tokio::test]
async fn a_presigned_get_caller_identity_answers_the_signers_identity_in_json() {
    let bed = Bed::start().await;
    let mut seen = Vec::new();
    for (case, who, arn) in [
        ("IAM user alice", Who::Alice, ALICE),
        ("IAM user mallory", Who::Mallory, MALLORY),
        (
            "key with a session token",
            Who::Session,
            crate::DEFAULT_KEY_ARN,
        ),
    ] {
        let (got_arn, account, user_id) =
            present(&bed.emu, &Token::of(who.creds())).await.identity();
        assert_eq!(
            (got_arn.as_str(), account.as_str(), Some(user_id.clone())),
            (arn, "123456789012", bed.emu.unique_id(arn)),
            "{case}"
        );
        assert!(user_id.starts_with("AIDA"), "{case}: {user_id}");
        seen.push(user_id);
    }
    assert_ne!(seen[0], seen[1], "two users, two unique ids");
}

#[tokio::test]
async fn a_presigned_get_caller_identity_with_assumed_role_keys_answers_the_assumed_role() {
    let bed = Bed::start().await;
    let out = assume_analyst(&bed).await;
    let (arn, account, user_id) = present(&bed.emu, &Token::of(temporary(&out)))
        .await
        .identity();
    let role_id = bed.emu.unique_id(ANALYST).unwrap();
    assert_eq!(
        (arn.as_str(), account.as_str(), user_id),
        (
            "arn:aws:sts::123456789012:assumed-role/analyst/s1",
            "123456789012",
            format!("{role_id}:s1")
        )
    );
    assert!(role_id.starts_with("AROA"), "{role_id}");
    assert_eq!(
        out.assumed_role_user().unwrap().assumed_role_id(),
        format!("{role_id}:s1"),
        "AssumeRole and GetCallerIdentity agree"
    );
}

#[tokio::test]
async fn a_re_created_role_has_a_new_unique_id_and_old_sessions_keep_theirs() {
    let bed = Bed::start().await;
    let before = assume_analyst(&bed).await;
    let old_id = bed.emu.unique_id(ANALYST).unwrap();
    let new_id = bed.emu.recreate_role(ANALYST).unwrap();
    assert_ne!(old_id, new_id);
    assert_eq!(bed.emu.unique_id(ANALYST), Some(new_id.clone()));
    let after = assume_analyst(&bed).await;
    let user_id = |out: AssumeRoleOutput| {
        let emu = &bed.emu;
        async move { present(emu, &Token::of(temporary(&out))).await.identity().2 }
    };
    assert_eq!(
        (user_id(before).await, user_id(after).await),
        (format!("{old_id}:s1"), format!("{new_id}:s1"))
    );
}

#[tokio::test]
async fn a_re_created_user_has_a_new_unique_id() {
    let bed = Bed::start().await;
    let old_id = present(&bed.emu, &Token::of(Who::Alice.creds()))
        .await
        .identity()
        .2;
    let new_id = bed.emu.recreate_user(ALICE).unwrap();
    let now = present(&bed.emu, &Token::of(Who::Alice.creds()))
        .await
        .identity()
        .2;
    assert_eq!((now == new_id, old_id == new_id), (true, false));
    assert_eq!(bed.emu.recreate_user(ANALYST), None, "a role is not a user");
}

#[tokio::test]
async fn a_presigned_request_lives_15_minutes_whatever_x_amz_expires_says() {
    let bed = Bed::start().await;
    let token = Token {
        signed_at: SystemTime::now() - Duration::from_secs(10 * 60),
        expires_in: Duration::from_secs(60),
        ..Token::of(Who::Alice.creds())
    };
    let (arn, _, _) = present(&bed.emu, &token).await.identity();
    assert_eq!(
        arn, ALICE,
        "STS ignores X-Amz-Expires: the proxy must bound tokens itself"
    );
}

#[tokio::test]
async fn without_accept_json_the_answer_is_sts_xml() {
    let bed = Bed::start().await;
    let token = Token::of(Who::Alice.creds());
    let a = send(&bed.emu, &token.presign(&bed.emu), token.proxy_id, false).await;
    assert_eq!(
        (a.status, a.content_type.as_str()),
        (200, "text/xml"),
        "{a:?}"
    );
    for fragment in [
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">",
        &format!("<Arn>{ALICE}</Arn>"),
    ] {
        assert!(a.body.contains(fragment), "no {fragment} in {}", a.body);
    }
}

#[tokio::test]
async fn refused_identity_tokens_get_stss_json_errors() {
    let bed = Bed::start().await;
    let alice = || Token::of(Who::Alice.creds());
    let minutes_ago = |m: u64| SystemTime::now() - Duration::from_secs(m * 60);
    // (case, token, server id sent, status, code, message fragment)
    let table: Vec<(&str, Token, &str, u16, &str, &str)> = vec![
        (
            "wrong secret",
            Token::of(creds("AKIDALICE", "wrong", None)),
            "proxy-1",
            403,
            "SignatureDoesNotMatch",
            "does not match",
        ),
        (
            "unknown key id",
            Token::of(creds("AKIDNOPE", "alice-secret", None)),
            "proxy-1",
            403,
            "InvalidClientTokenId",
            "",
        ),
        (
            "session key presigned without its token",
            Token::of(creds("ASIATEST", "session-secret", None)),
            "proxy-1",
            403,
            "InvalidClientTokenId",
            "",
        ),
        (
            "sent to another server id than signed",
            alice(),
            "proxy-2",
            403,
            "SignatureDoesNotMatch",
            "does not match",
        ),
        (
            "signed for another region",
            Token {
                region: "eu-west-1",
                ..alice()
            },
            "proxy-1",
            403,
            "SignatureDoesNotMatch",
            "'us-east-1'",
        ),
        (
            "signed for another service",
            Token {
                service: "iam",
                ..alice()
            },
            "proxy-1",
            403,
            "SignatureDoesNotMatch",
            "'sts'",
        ),
        (
            "signed 16 minutes ago (X-Amz-Expires 3600)",
            Token {
                signed_at: minutes_ago(16),
                expires_in: Duration::from_secs(3600),
                ..alice()
            },
            "proxy-1",
            403,
            "SignatureDoesNotMatch",
            "Signature expired",
        ),
        (
            "presigned AssumeRole",
            Token {
                action: "Action=AssumeRole&Version=2011-06-15&RoleArn=\
                         arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fteam%2Fopen\
                         &RoleSessionName=s9",
                ..alice()
            },
            "proxy-1",
            400,
            "InvalidAction",
            "by query-string authentication: the emulator serves GetCallerIdentity only",
        ),
    ];
    let mut wrong = Vec::new();
    for (case, token, sent_id, status, code, fragment) in table {
        let a = send(&bed.emu, &token.presign(&bed.emu), sent_id, true).await;
        let v: Value = serde_json::from_str(&a.body).unwrap_or_default();
        let ok = a.status == status
            && a.content_type == "application/json"
            && v["Error"]["Code"] == code
            && v["Error"]["Type"] == "Sender"
            && v["Error"]["Message"]
                .as_str()
                .is_some_and(|m| m.contains(fragment))
            && v["RequestId"].is_string();
        if !ok {
            wrong.push(format!(
                "{case}: expected {status} {code} ({fragment}), got {a:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn a_repeated_parameter_is_refused() {
    let bed = Bed::start().await;
    let token = Token::of(Who::Alice.creds());
    let query = format!("{}&Action=GetCallerIdentity", token.presign(&bed.emu));
    let a = send(&bed.emu, &query, token.proxy_id, true).await;
    assert_eq!(
        (a.status, a.json()["Error"]["Code"].as_str()),
        (400, Some("InvalidQueryParameter")),
        "{a:?}"
    );
}
