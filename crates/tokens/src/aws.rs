//! AWS-signed identity tokens: `aws-v1.` + base64url (no padding) of a presigned
//! `sts:GetCallerIdentity` URL whose signature covers the header
//! `x-redshift-iam-proxy-id: <server id>`.
//!
//! A third party cannot check a SigV4 signature (it needs the secret key): STS does, when
//! the verifier sends it the request. Everything that could make that request do something
//! else is checked here first, and the request is **rebuilt** from parsed, allow-listed
//! fields, never forwarded as received (Vault's CVE-2020-16250 was forwarding a validated
//! request that another AWS endpoint reflected):
//! - scheme `https`, path `/`, no user info, host only an STS endpoint of the configured
//!   region (regional, FIPS, dual-stack, and the global one in the `aws` partition) or the
//!   configured `sts_endpoint` — never a host the client chose;
//! - only `Action=GetCallerIdentity`, `Version=2011-06-15` and the `X-Amz-*` signing
//!   parameters, each once;
//! - signed headers exactly `host;x-redshift-iam-proxy-id`; the verifier sends its own
//!   server id as that header, so a token made for another deployment fails STS's check;
//! - `X-Amz-Expires` at most 900 s and not past, `X-Amz-Date` not in the future (STS
//!   itself honours any presigned request for 15 minutes, whatever `X-Amz-Expires` says).

use super::{Refusal, MAX_TOKEN_BYTES};
use base64::Engine;
use time::OffsetDateTime;

/// What every token starts with.
pub const PREFIX: &str = "aws-v1.";
/// The signed header that names the deployment a token is for.
pub const AUDIENCE_HEADER: &str = "x-redshift-iam-proxy-id";
/// The longest a token may live (`X-Amz-Expires`), as aws-iam-authenticator allows.
pub const MAX_EXPIRES_SECS: i64 = 900;
/// Clock difference tolerated for `X-Amz-Date` in the future.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// The STS API version of GetCallerIdentity.
pub const STS_VERSION: &str = "2011-06-15";
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
) -> Result<Presigned, Refusal> {
    let bad = |outcome, m: &str| {
        Err(Refusal::new(
            outcome,
            format!("AWS identity token refused: {m}"),
        ))
    };
    if token.len() > MAX_TOKEN_BYTES {
        return bad("too_large", "it is larger than 16 KiB");
    }
    let Some(b64) = token.strip_prefix(PREFIX) else {
        return bad("malformed", "it does not start with aws-v1.");
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64.trim_end_matches('='))
        .map_err(|_| Refusal::new("malformed", "AWS identity token refused: not base64url"))?;
    let text = String::from_utf8(raw)
        .map_err(|_| Refusal::new("malformed", "AWS identity token refused: not a URL"))?;
    let url = url::Url::parse(&text)
        .map_err(|_| Refusal::new("malformed", "AWS identity token refused: not a URL"))?;
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
fn allowed_params(url: &url::Url) -> Result<Vec<(String, String)>, Refusal> {
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
            return Err(Refusal::new(
                "malformed",
                format!("AWS identity token refused: query parameter {k:?} is not allowed"),
            ));
        }
        if params.iter().any(|(n, _)| *n == k) {
            return Err(Refusal::new(
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
) -> Result<OffsetDateTime, Refusal> {
    let bad = |outcome, m: String| {
        Err(Refusal::new(
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

/// An AWS caller. Assumed roles are named by the role's ARN plus the session name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsPrincipal {
    /// `arn:aws:iam::ACCOUNT:user/NAME`, `arn:aws:iam::ACCOUNT:role/NAME` (for an assumed
    /// role; the path is not in the assumed-role ARN), or the ARN STS gave otherwise.
    pub arn: String,
    pub account: String,
    /// The unique id without the session part (`AIDA…` for users, `AROA…` for roles):
    /// a role deleted and re-created under the same name gets another one.
    pub unique_id: String,
    /// The role session name (assumed roles only).
    pub session_name: Option<String>,
    /// The user or role name.
    pub name: String,
}

#[cfg(all(test, feature = "presign"))]
mod tests;
