//! AWS-signed identity tokens: `aws-v1.` + base64url (no padding) of a presigned
//! `sts:GetCallerIdentity` URL whose signature covers the header
//! `x-redshift-iam-proxy-id: <server id>`.
//!
//! A third party cannot check a SigV4 signature (it needs the secret key): STS does, when
//! the proxy sends it the request. Everything that could make that request do something
//! else is checked first, and the request is **rebuilt** from parsed, allow-listed fields,
//! never forwarded as received (Vault's CVE-2020-16250 was forwarding a validated request
//! that another AWS endpoint reflected):
//! - scheme `https`, path `/`, no user info, host only an STS endpoint of the configured
//!   region (regional, FIPS, dual-stack, and the global one in the `aws` partition) or the
//!   configured `sts_endpoint` — never a host the client chose;
//! - only `Action=GetCallerIdentity`, `Version=2011-06-15` and the `X-Amz-*` signing
//!   parameters, each once;
//! - signed headers exactly `host;x-redshift-iam-proxy-id`; the proxy sends its own
//!   `server_id` as that header, so a token made for another deployment fails STS's check;
//! - `X-Amz-Expires` at most 900 s and not past, `X-Amz-Date` not in the future.
//!
//! A verified token is cached until it expires; failures are remembered briefly, and STS
//! calls are bounded in number, so bad tokens cannot be amplified into an STS flood.

use super::HttpClient;
use super::{AwsPrincipal, Principal, Token, TokenError};
use crate::config::AwsTokenConfig;
use crate::sync::lock;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore};

/// What every token starts with.
pub const PREFIX: &str = "aws-v1.";
/// The signed header that names the deployment a token is for.
pub const AUDIENCE_HEADER: &str = "x-redshift-iam-proxy-id";
/// The longest a token may live (`X-Amz-Expires`), as aws-iam-authenticator allows.
pub const MAX_EXPIRES_SECS: i64 = 900;
/// Clock difference tolerated for `X-Amz-Date` in the future.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);
/// STS calls in flight at once.
const MAX_STS_CALLS: usize = 8;
/// How long a refused token is refused without asking STS again.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Tokens remembered (verified or refused); expired ones go first.
const MAX_CACHED: usize = 10_000;

const STS_VERSION: &str = "2011-06-15";
const SIGNED_HEADERS: &str = "host;x-redshift-iam-proxy-id";

/// Where a token may send the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `https`, or `http` for a configured endpoint on loopback (tests, emulators).
    scheme: String,
    /// Allowed `host[:port]` authorities.
    hosts: Vec<String>,
}

impl Endpoints {
    /// The STS endpoints of `region` (`sts_endpoint` replaces them all).
    pub fn new(region: &str, sts_endpoint: Option<&str>) -> Result<Endpoints, String> {
        if let Some(e) = sts_endpoint {
            let url = url::Url::parse(e).map_err(|err| format!("sts_endpoint {e:?}: {err}"))?;
            let host = url
                .host_str()
                .ok_or_else(|| format!("sts_endpoint {e:?} has no host"))?;
            let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1")
                || host.starts_with("127.");
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(format!(
                    "sts_endpoint {e:?} must be https (http only on loopback)"
                ));
            }
            let authority = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_owned(),
            };
            return Ok(Endpoints {
                scheme: url.scheme().to_owned(),
                hosts: vec![authority],
            });
        }
        let (suffix, global) = if region.starts_with("cn-") {
            ("amazonaws.com.cn", None)
        } else if region.starts_with("us-gov-") || region.starts_with("us-iso") {
            ("amazonaws.com", None)
        } else {
            ("amazonaws.com", Some("sts.amazonaws.com".to_owned()))
        };
        let mut hosts = vec![
            format!("sts.{region}.{suffix}"),
            format!("sts-fips.{region}.{suffix}"),
            format!("sts.{region}.api.aws"),
        ];
        hosts.extend(global);
        Ok(Endpoints {
            scheme: "https".into(),
            hosts,
        })
    }
}

/// A token's request, checked and taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// `scheme://authority/?query` rebuilt from the allow-listed parameters.
    pub url: String,
    /// When the signature expires.
    pub expires_at: OffsetDateTime,
}

/// Parses and checks a token (pure: no I/O). `now` is the current time.
pub fn parse(
    token: &str,
    endpoints: &Endpoints,
    now: OffsetDateTime,
) -> Result<Presigned, TokenError> {
    let bad = |outcome, m: &str| {
        Err(TokenError::refused(
            outcome,
            format!("AWS identity token refused: {m}"),
        ))
    };
    if token.len() > super::MAX_TOKEN_BYTES {
        return bad("too_large", "it is larger than 16 KiB");
    }
    let Some(b64) = token.strip_prefix(PREFIX) else {
        return bad("malformed", "it does not start with aws-v1.");
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| {
            TokenError::refused("malformed", "AWS identity token refused: not base64url")
        })?;
    let text = String::from_utf8(raw)
        .map_err(|_| TokenError::refused("malformed", "AWS identity token refused: not a URL"))?;
    let url = url::Url::parse(&text)
        .map_err(|_| TokenError::refused("malformed", "AWS identity token refused: not a URL"))?;
    if url.scheme() != endpoints.scheme {
        return bad(
            "wrong_endpoint",
            &format!("scheme {:?} (only {})", url.scheme(), endpoints.scheme),
        );
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return bad("wrong_endpoint", "the URL carries user info or a fragment");
    }
    let host = url.host_str().unwrap_or_default();
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    if !endpoints
        .hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&authority))
    {
        return bad(
            "wrong_endpoint",
            &format!(
                "host {authority:?} is not an STS endpoint this proxy accepts ({})",
                endpoints.hosts.join(", ")
            ),
        );
    }
    if url.path() != "/" {
        return bad("wrong_endpoint", "the path is not /");
    }
    let params = allowed_params(&url)?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("Action") != Some("GetCallerIdentity") {
        return bad("wrong_action", "only Action=GetCallerIdentity is accepted");
    }
    if get("Version") != Some(STS_VERSION) {
        return bad("malformed", "Version is not 2011-06-15");
    }
    if get("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return bad("malformed", "X-Amz-Algorithm is not AWS4-HMAC-SHA256");
    }
    for required in ["X-Amz-Credential", "X-Amz-Signature"] {
        if get(required).is_none_or(str::is_empty) {
            return bad("malformed", &format!("{required} is missing"));
        }
    }
    if get("X-Amz-SignedHeaders")
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some(SIGNED_HEADERS)
    {
        return bad(
            "wrong_audience",
            &format!("the signed headers must be exactly {SIGNED_HEADERS} (make tokens with `redshift-iam-proxy token --server-id …`)"),
        );
    }
    let expires_at = expiry(get("X-Amz-Date"), get("X-Amz-Expires"), now)?;
    Ok(Presigned {
        url: format!(
            "{}://{authority}/?{}",
            endpoints.scheme,
            canonical_query(&params)
        ),
        expires_at,
    })
}

/// The query parameters, each allowed and at most once.
fn allowed_params(url: &url::Url) -> Result<Vec<(String, String)>, TokenError> {
    const ALLOWED: &[&str] = &[
        "Action",
        "Version",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    ];
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        if !ALLOWED.contains(&k.as_ref()) {
            return Err(TokenError::refused(
                "malformed",
                format!("AWS identity token refused: query parameter {k:?} is not allowed"),
            ));
        }
        if params.iter().any(|(n, _)| *n == k) {
            return Err(TokenError::refused(
                "malformed",
                format!("AWS identity token refused: query parameter {k:?} appears twice"),
            ));
        }
        params.push((k.into_owned(), v.into_owned()));
    }
    Ok(params)
}

/// When the signature expires; refused when expired, too long-lived or dated ahead.
fn expiry(
    date: Option<&str>,
    expires: Option<&str>,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, TokenError> {
    let bad = |outcome, m: String| {
        Err(TokenError::refused(
            outcome,
            format!("AWS identity token refused: {m}"),
        ))
    };
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let Some(signed) = date.and_then(|d| time::PrimitiveDateTime::parse(d, format).ok()) else {
        return bad("malformed", "X-Amz-Date is missing or malformed".into());
    };
    let signed = signed.assume_utc();
    let secs: i64 = match expires.and_then(|e| e.parse().ok()) {
        Some(s) if (1..=MAX_EXPIRES_SECS).contains(&s) => s,
        _ => {
            return bad(
                "malformed",
                format!("X-Amz-Expires must be 1..={MAX_EXPIRES_SECS} seconds"),
            )
        }
    };
    if signed > now + CLOCK_SKEW {
        return bad("malformed", "X-Amz-Date is in the future".into());
    }
    let expires_at = signed + time::Duration::seconds(secs);
    if expires_at <= now {
        return bad(
            "expired",
            "it expired; make a new one (`redshift-iam-proxy token`)".into(),
        );
    }
    Ok(expires_at)
}

/// Percent-encodes like SigV4's canonical form (unreserved characters only stay).
fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The query string rebuilt from the parsed parameters, sorted.
fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The caller STS named, with assumed roles as role ARN plus session name.
pub fn principal(arn: &str, account: &str, user_id: &str) -> Result<AwsPrincipal, String> {
    let unique_id = user_id.split(':').next().unwrap_or(user_id).to_owned();
    // arn:PARTITION:SERVICE::ACCOUNT:RESOURCE
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, partition, service, _, arn_account, resource] = parts.as_slice() else {
        return Err(format!("STS answered an ARN that is not one: {arn:?}"));
    };
    if *arn_account != account {
        return Err("STS answered an ARN of another account".into());
    }
    if *service == "sts" {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            if let Some((role, session)) = rest.split_once('/') {
                return Ok(AwsPrincipal {
                    arn: format!("arn:{partition}:iam::{account}:role/{role}"),
                    account: account.to_owned(),
                    unique_id,
                    session_name: Some(session.to_owned()),
                    name: role.to_owned(),
                });
            }
        }
    }
    let name = resource.rsplit('/').next().unwrap_or(resource).to_owned();
    Ok(AwsPrincipal {
        arn: arn.to_owned(),
        account: account.to_owned(),
        unique_id,
        session_name: None,
        name,
    })
}

/// One cached verdict.
#[derive(Clone)]
struct Verdict {
    result: Result<AwsPrincipal, TokenError>,
    until: Instant,
}

/// Verifies AWS identity tokens with STS.
pub struct AwsVerifier {
    server_id: String,
    endpoints: Endpoints,
    client: HttpClient,
    calls: Semaphore,
    cache: Mutex<HashMap<[u8; 32], Arc<OnceCell<Verdict>>>>,
}

impl AwsVerifier {
    pub fn new(
        c: &AwsTokenConfig,
        region: Option<&str>,
        client: HttpClient,
    ) -> Result<AwsVerifier, String> {
        let region = c
            .region
            .as_deref()
            .or(region)
            .ok_or("[client_auth.aws_token] needs a region ([aws] region or aws_token.region) to know its STS endpoints")?;
        Ok(AwsVerifier {
            server_id: c.server_id.clone(),
            endpoints: Endpoints::new(region, c.sts_endpoint.as_deref())?,
            client,
            calls: Semaphore::new(MAX_STS_CALLS),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The principal `token` proves, from the cache or from STS.
    pub async fn verify(&self, token: &Token) -> Result<Principal, TokenError> {
        let presigned = parse(token.expose(), &self.endpoints, OffsetDateTime::now_utc())?;
        let key: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        let cell = {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED {
                let now = Instant::now();
                cache.retain(|_, c| c.get().is_none_or(|v| v.until > now));
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            let cell = cache.entry(key).or_default().clone();
            if cell.get().is_some_and(|v| v.until <= Instant::now()) {
                let fresh = Arc::new(OnceCell::new());
                cache.insert(key, fresh.clone());
                fresh
            } else {
                cell
            }
        };
        let verdict = cell
            .get_or_init(|| async {
                let result = self.ask_sts(&presigned).await;
                let left = (presigned.expires_at - OffsetDateTime::now_utc())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                let until = match &result {
                    Ok(_) => Instant::now() + left,
                    Err(_) => Instant::now() + left.min(NEGATIVE_TTL),
                };
                Verdict { result, until }
            })
            .await;
        verdict.result.clone().map(Principal::Aws)
    }

    /// Sends the rebuilt request to STS and reads who signed it.
    async fn ask_sts(&self, p: &Presigned) -> Result<AwsPrincipal, TokenError> {
        let _permit = self
            .calls
            .acquire()
            .await
            .map_err(|_| TokenError::unavailable("STS verification is shutting down"))?;
        let headers = [
            (AUDIENCE_HEADER, self.server_id.as_str()),
            ("accept", "application/json"),
        ];
        let answer = self.client.get(&p.url, &headers).await.map_err(|e| {
            TokenError::unavailable(format!(
                "could not verify the AWS identity token with STS: {e}"
            ))
        })?;
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        if answer.status != 200 {
            return Err(sts_refusal(answer.status, &json, &self.server_id));
        }
        let result = &json["GetCallerIdentityResponse"]["GetCallerIdentityResult"];
        let field = |k: &str| result[k].as_str().unwrap_or_default();
        principal(field("Arn"), field("Account"), field("UserId"))
            .map_err(|e| TokenError::unavailable(format!("STS answered oddly: {e}")))
    }
}

/// The client's error for an STS refusal.
fn sts_refusal(status: u16, json: &serde_json::Value, server_id: &str) -> TokenError {
    let code = json["Error"]["Code"].as_str().unwrap_or_default();
    if status >= 500 || status == 429 || code.contains("Throttl") {
        return TokenError::unavailable(format!(
            "STS could not verify the AWS identity token now (HTTP {status} {code}); try again"
        ));
    }
    let message = json["Error"]["Message"].as_str().unwrap_or_default();
    let (outcome, why) = match code {
        // STS answers an expired presigned request so too ("Signature expired: …").
        "SignatureDoesNotMatch" if message.contains("expired") => {
            ("expired", "STS says it expired; make a new one".to_owned())
        }
        "SignatureDoesNotMatch" => (
            "bad_signature",
            format!("its signature does not match: it was made for another server id (this proxy is {server_id:?}) or altered"),
        ),
        "ExpiredToken" | "RequestExpired" => ("expired", "STS says it expired".to_owned()),
        "InvalidClientTokenId" | "UnrecognizedClientException" => {
            ("bad_signature", "STS does not know its access key".to_owned())
        }
        _ => ("refused_by_sts", format!("STS refused it (HTTP {status} {code})")),
    };
    TokenError::refused(outcome, format!("AWS identity token refused: {why}"))
}

#[cfg(test)]
mod tests;
