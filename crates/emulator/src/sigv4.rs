//! AWS Signature Version 4 verification, hand-written so the emulator checks exactly what AWS
//! checks instead of trusting any signer: the `Authorization` header form, and for the services
//! that allow it (STS) the query-string ("presigned URL") form.

use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use percent_encoding::{percent_decode_str, percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::error::ApiError;
use crate::AccessKey;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const MAX_SKEW: Duration = Duration::minutes(15);
/// `X-Amz-Expires` bounds of SigV4 query-string authentication (one second to seven days).
const MAX_EXPIRES: i64 = 604_800;

/// Query parameters of SigV4 query-string authentication.
const X_AMZ_ALGORITHM: &str = "X-Amz-Algorithm";
const X_AMZ_CREDENTIAL: &str = "X-Amz-Credential";
const X_AMZ_DATE: &str = "X-Amz-Date";
const X_AMZ_EXPIRES: &str = "X-Amz-Expires";
const X_AMZ_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const X_AMZ_SIGNATURE: &str = "X-Amz-Signature";
const X_AMZ_SECURITY_TOKEN: &str = "X-Amz-Security-Token";

/// RFC 3986 unreserved characters stay as they are; everything else is `%XX`-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Path segments are encoded like query components, but `/` separates them.
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Why: the parts of an HTTP request that SigV4 covers, independent of hyper's body type so
/// tests can build requests by hand.
pub(crate) struct SignedParts<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

/// Why: what a request is verified against (service, region, clock, known keys, and whether
/// the service takes query-string authentication).
pub(crate) struct Expected<'a> {
    pub(crate) service: &'a str,
    pub(crate) region: &'a str,
    pub(crate) now: OffsetDateTime,
    pub(crate) keys: &'a [AccessKey],
    /// The service accepts presigned (query-string) requests; otherwise they are refused.
    pub(crate) query_auth: bool,
}

/// Why: which of the two SigV4 forms authenticated a request (the server narrows what a
/// presigned request may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    Header,
    /// `X-Amz-Algorithm`, `X-Amz-Credential`, … `X-Amz-Signature` in the query string.
    Query,
}

/// Why: a request whose signature verified: the key that signed it and how.
#[derive(Debug)]
pub(crate) struct Verified<'k> {
    pub(crate) key: &'k AccessKey,
    pub(crate) form: Form,
}

/// Why: the three components of a parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
struct AuthHeader<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

/// Why: what either form claims about its signature, gathered so one routine checks both
/// alike (scope, key, session token, clock, signed headers, payload, HMAC).
struct Claims {
    form: Form,
    credential: String,
    signed_headers: String,
    signature: String,
    /// The `X-Amz-Date` header (header form) or query parameter (query form), if given.
    amz_date: Option<String>,
    /// The session token the request carries, if any.
    token: Option<Vec<u8>>,
    /// The canonical query string (for the query form, without `X-Amz-Signature`).
    canonical_query: String,
}

/// Verifies the request's SigV4 signature (either form) and returns the key that signed it.
pub(crate) fn verify<'k>(
    req: &SignedParts<'_>,
    exp: &Expected<'k>,
) -> Result<Verified<'k>, ApiError> {
    let presigned = [X_AMZ_ALGORITHM, X_AMZ_CREDENTIAL, X_AMZ_SIGNATURE]
        .iter()
        .any(|name| query_has(req.query, name));
    let claims = match (req.headers.get(hyper::header::AUTHORIZATION), presigned) {
        // AWS refuses a request that carries both; this is the message S3 and API Gateway
        // give (the code STS uses for it is not documented; IncompleteSignature is the
        // nearest of its common errors).
        (Some(_), true) => {
            return Err(ApiError::incomplete_signature(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or \
                 the Authorization header should be specified.",
            ))
        }
        (Some(raw), false) => header_claims(req, raw)?,
        (None, true) if exp.query_auth => query_claims(req)?,
        (None, true) => {
            return Err(ApiError::incomplete_signature(format!(
                "Query-string (presigned) authentication is not supported by this emulator for \
                 '{}'; sign with the Authorization header.",
                exp.service
            )))
        }
        (None, false) => {
            return Err(ApiError::new(
                403,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ))
        }
    };
    let key = check(req, exp, &claims)?;
    Ok(Verified {
        key,
        form: claims.form,
    })
}

/// The claims of the `Authorization` header form.
fn header_claims(
    req: &SignedParts<'_>,
    raw: &hyper::header::HeaderValue,
) -> Result<Claims, ApiError> {
    let raw = raw
        .to_str()
        .map_err(|_| ApiError::incomplete_signature("Authorization header is not valid ASCII."))?;
    let auth = parse_authorization(raw)?;
    if auth.credential.split('/').count() != 5 {
        return Err(ApiError::incomplete_signature(format!(
            "Authorization header requires a Credential of the form \
             'AKID/YYYYMMDD/region/service/aws4_request'. Authorization={raw}"
        )));
    }
    Ok(Claims {
        form: Form::Header,
        credential: auth.credential.to_owned(),
        signed_headers: auth.signed_headers.to_owned(),
        signature: auth.signature.to_owned(),
        amz_date: req
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        token: req
            .headers
            .get("x-amz-security-token")
            .map(|v| v.as_bytes().to_vec()),
        canonical_query: canonical_query(req.query, None),
    })
}

/// The claims of the query-string form: every authentication parameter present once, in the
/// algorithm AWS defines, `X-Amz-Expires` within 1..=604800 seconds, and no parameter of the
/// request repeated.
fn query_claims(req: &SignedParts<'_>) -> Result<Claims, ApiError> {
    let pairs = decoded_query(req.query)?;
    for (i, (name, _)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            // "InvalidQueryParameter: The AWS query string is malformed or does not adhere to
            // AWS standards" (400) is the common error of the Query APIs for this.
            return Err(ApiError::new(
                400,
                "InvalidQueryParameter",
                format!("The query parameter '{name}' is given more than once."),
            ));
        }
    }
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let required = [
        X_AMZ_ALGORITHM,
        X_AMZ_CREDENTIAL,
        X_AMZ_DATE,
        X_AMZ_EXPIRES,
        X_AMZ_SIGNED_HEADERS,
        X_AMZ_SIGNATURE,
    ];
    let missing: Vec<&str> = required
        .into_iter()
        .filter(|name| param(name).is_none_or(str::is_empty))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::incomplete_signature(format!(
            "AWS query-string parameters must include 'X-Amz-Algorithm', 'X-Amz-Credential', \
             'X-Amz-Date', 'X-Amz-Expires', 'X-Amz-SignedHeaders' and 'X-Amz-Signature'; \
             missing: {}.",
            missing.join(", ")
        )));
    }
    let algorithm = param(X_AMZ_ALGORITHM).unwrap_or_default();
    if algorithm != ALGORITHM {
        return Err(ApiError::incomplete_signature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'."
        )));
    }
    let credential = param(X_AMZ_CREDENTIAL).unwrap_or_default();
    if credential.split('/').count() != 5 {
        return Err(ApiError::incomplete_signature(format!(
            "X-Amz-Credential must be of the form 'AKID/YYYYMMDD/region/service/aws4_request', \
             not '{credential}'."
        )));
    }
    let expires = param(X_AMZ_EXPIRES).unwrap_or_default();
    if !expires
        .parse::<i64>()
        .is_ok_and(|s| (1..=MAX_EXPIRES).contains(&s))
        || expires.starts_with('+')
    {
        return Err(ApiError::incomplete_signature(format!(
            "X-Amz-Expires must be a whole number of seconds from 1 to {MAX_EXPIRES} (seven \
             days), not '{expires}'."
        )));
    }
    let token = param(X_AMZ_SECURITY_TOKEN)
        .map(|t| t.as_bytes().to_vec())
        .or_else(|| {
            req.headers
                .get("x-amz-security-token")
                .map(|v| v.as_bytes().to_vec())
        });
    Ok(Claims {
        form: Form::Query,
        credential: credential.to_owned(),
        signed_headers: param(X_AMZ_SIGNED_HEADERS).unwrap_or_default().to_owned(),
        signature: param(X_AMZ_SIGNATURE).unwrap_or_default().to_owned(),
        amz_date: param(X_AMZ_DATE).map(str::to_owned),
        token,
        canonical_query: canonical_query(req.query, Some(X_AMZ_SIGNATURE)),
    })
}

/// The query's parameters, percent-decoded (as SigV4 canonicalises them: `+` is a plus).
fn decoded_query(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                ApiError::new(
                    400,
                    "InvalidQueryParameter",
                    "The query string is not valid percent-encoded UTF-8.",
                )
            })
    };
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Checks what both forms share and returns the signing key: credential scope, key, session
/// token, service, region, date and clock skew, `host` among the signed headers, the payload
/// hash, and the HMAC (compared in constant time).
///
/// Time: a request is accepted from 15 minutes before to 15 minutes after its `X-Amz-Date`,
/// in both forms. For the query form this deliberately ignores `X-Amz-Expires` (beyond its
/// 1..=604800 bounds): STS does not honour it for presigned requests — they live 15 minutes
/// from `X-Amz-Date` whatever it says (aws-iam-authenticator: "The sts GetCallerIdentity
/// request is valid for 15 minutes regardless of this parameters value after it has been
/// signed"; aws/aws-sdk-go#2167; EKS tokens presigned with `X-Amz-Expires=60` are used for up
/// to 15 minutes). A verifier of identity tokens must therefore enforce its own lifetime.
/// A stale presigned request gets the answer a stale header-signed one gets from STS
/// (`SignatureDoesNotMatch`, "Signature expired: …"); the `AccessDenied` "Request has expired"
/// answer is S3's for presigned URLs, not STS's. (Not confirmed against live STS here.)
fn check<'k>(
    req: &SignedParts<'_>,
    exp: &Expected<'k>,
    claims: &Claims,
) -> Result<&'k AccessKey, ApiError> {
    let scope: Vec<&str> = claims.credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else {
        return Err(ApiError::incomplete_signature(format!(
            "Credential must be of the form 'AKID/YYYYMMDD/region/service/aws4_request', not \
             '{}'.",
            claims.credential
        )));
    };
    if terminator != "aws4_request" {
        return Err(ApiError::signature_mismatch(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }

    let key = exp
        .keys
        .iter()
        .find(|k| k.access_key_id == key_id)
        .ok_or_else(ApiError::invalid_client_token)?;
    match (&key.session_token, &claims.token) {
        (None, None) => {}
        (Some(expected), Some(got)) if constant_time_eq(expected.as_bytes(), got) => {}
        _ => return Err(ApiError::invalid_client_token()),
    }

    if service != exp.service {
        return Err(ApiError::signature_mismatch(format!(
            "Credential should be scoped to correct service: '{}'. ",
            exp.service
        )));
    }
    if region != exp.region {
        return Err(ApiError::signature_mismatch(format!(
            "Credential should be scoped to a valid region, not '{region}'. Expected '{}'.",
            exp.region
        )));
    }

    let amz_date = claims.amz_date.as_deref().ok_or_else(|| {
        ApiError::incomplete_signature(
            "Authorization header requires existence of a 'X-Amz-Date' header.",
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        ApiError::incomplete_signature(format!(
            "X-Amz-Date '{amz_date}' is not in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z'."
        ))
    })?;
    let date_part = amz_date.get(..8).unwrap_or_default();
    if date != date_part {
        return Err(ApiError::signature_mismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{date}' != '{date_part}', from '{amz_date}'."
        )));
    }
    if signed_at < exp.now - MAX_SKEW {
        return Err(ApiError::signature_mismatch(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            format_amz_date(exp.now - MAX_SKEW),
            format_amz_date(exp.now)
        )));
    }
    if signed_at > exp.now + MAX_SKEW {
        return Err(ApiError::signature_mismatch(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            format_amz_date(exp.now + MAX_SKEW),
            format_amz_date(exp.now)
        )));
    }

    let signed_headers: Vec<String> = claims
        .signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(ApiError::signature_mismatch(match claims.form {
            Form::Header => {
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
            }
            Form::Query => {
                "'Host' or ':authority' must be a 'SignedHeader' in X-Amz-SignedHeaders."
            }
        }));
    }

    // Both forms sign the SHA-256 of the body as sent, for STS too: only S3 presigns
    // `UNSIGNED-PAYLOAD`. aws-sigv4 hashes the `SignableBody` it is given (`Bytes(b"")` for an
    // STS GET), botocore's `SigV4QueryAuth` and the AWS SigV4 test suite's query vectors use
    // the empty body's hash.
    let body_hash = hex::encode(Sha256::digest(req.body));
    if let Some(v) = req.headers.get("x-amz-content-sha256") {
        if v.as_bytes() != body_hash.as_bytes() {
            return Err(ApiError::signature_mismatch(
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ));
        }
    }

    let canonical = canonical_request(req, &claims.canonical_query, &signed_headers, &body_hash);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = string_to_sign(amz_date, &scope, &canonical);
    let provided = hex::decode(&claims.signature).map_err(|_| {
        ApiError::signature_mismatch("The request signature is not a hex-encoded SHA-256 HMAC.")
    })?;
    let mut mac = hmac_with(&signing_key(&key.secret_access_key, date, region, service)?)?;
    mac.update(string_to_sign.as_bytes());
    // `verify_slice` compares in constant time.
    if mac.verify_slice(&provided).is_err() {
        tracing::debug!(
            canonical_request = %String::from_utf8_lossy(&canonical),
            %string_to_sign,
            "SigV4 signature mismatch"
        );
        return Err(ApiError::signature_mismatch(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.",
        ));
    }
    Ok(key)
}

fn query_has(query: Option<&str>, name: &str) -> bool {
    query
        .unwrap_or_default()
        .split('&')
        .any(|p| p.split('=').next() == Some(name))
}

fn parse_authorization(raw: &str) -> Result<AuthHeader<'_>, ApiError> {
    let (algorithm, rest) = raw.trim().split_once(' ').unwrap_or((raw.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(ApiError::incomplete_signature(format!(
            "Unsupported AWS 'algorithm': '{algorithm}'."
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((name, value)) = part.trim().split_once('=') else {
            continue;
        };
        match name.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed_headers),
    ] {
        if v.is_none_or(str::is_empty) {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) if missing.is_empty() => {
            Ok(AuthHeader {
                credential,
                signed_headers,
                signature,
            })
        }
        _ => Err(ApiError::incomplete_signature(format!(
            "{} Authorization={raw}",
            missing.join(" ")
        ))),
    }
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|t| t.assume_utc())
}

fn format_amz_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    t.format(fmt).unwrap_or_default()
}

/// Builds the canonical request exactly as SigV4 defines it (non-S3 rules: the path is
/// encoded once more on top of its wire form).
fn canonical_request(
    req: &SignedParts<'_>,
    canonical_query: &str,
    signed_headers: &[String],
    payload_hash: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(req.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query.as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        for (i, value) in req.headers.get_all(name.as_str()).iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&collapse_whitespace(value.as_bytes()));
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    percent_encode(path.as_bytes(), PATH).to_string()
}

/// The query's parameters decoded and re-encoded, sorted; `without` (the query form's
/// `X-Amz-Signature`) left out.
fn canonical_query(query: Option<&str>, without: Option<&str>) -> String {
    let encode = |raw: &[u8]| percent_encode(raw, UNRESERVED).to_string();
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k: Vec<u8> = percent_decode_str(k).collect();
            if without.is_some_and(|w| w.as_bytes() == k.as_slice()) {
                return None;
            }
            let v: Vec<u8> = percent_decode_str(v).collect();
            Some((encode(&k), encode(&v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims a header value and collapses runs of spaces/tabs (including folded lines) to one space.
fn collapse_whitespace(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut pending_space = false;
    for &b in value {
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
        }
    }
    out
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request))
    )
}

fn hmac_with(key: &[u8]) -> Result<Hmac<Sha256>, ApiError> {
    // HMAC accepts keys of any length; the error branch is unreachable in practice.
    Hmac::<Sha256>::new_from_slice(key).map_err(|_| ApiError::internal("HMAC key rejected"))
}

fn hmac(key: &[u8], data: &str) -> Result<Vec<u8>, ApiError> {
    let mut mac = hmac_with(key)?;
    mac.update(data.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Result<Vec<u8>, ApiError> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date)?;
    let k_region = hmac(&k_date, region)?;
    let k_service = hmac(&k_region, service)?;
    hmac(&k_service, "aws4_request")
}

/// Equal bytes, compared without an early exit (the session token is a secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

/// Signs a request the way an AWS SDK would (test helper for building valid requests).
#[cfg(test)]
pub(crate) fn sign_for_test(
    req: &SignedParts<'_>,
    key: &AccessKey,
    region: &str,
    service: &str,
    signed_headers: &[&str],
) -> String {
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let date = &amz_date[..8];
    let names: Vec<String> = signed_headers.iter().map(|s| s.to_string()).collect();
    let payload = hex::encode(Sha256::digest(req.body));
    let canonical = canonical_request(req, &canonical_query(req.query, None), &names, &payload);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(amz_date, &scope, &canonical);
    let sig = hmac(
        &signing_key(&key.secret_access_key, date, region, service).unwrap(),
        &sts,
    )
    .unwrap();
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={}",
        key.access_key_id,
        names.join(";"),
        hex::encode(sig)
    )
}

/// Why: what a test presigns: the scope, the clock, the lifetime and the headers signed.
#[cfg(test)]
pub(crate) struct Presign<'a> {
    pub(crate) key: &'a AccessKey,
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
    /// `X-Amz-Date`.
    pub(crate) amz_date: &'a str,
    /// `X-Amz-Expires`, as written.
    pub(crate) expires: &'a str,
    pub(crate) signed_headers: &'a [&'a str],
}

/// Presigns a request the way an SDK's query-string signer would (test helper): returns
/// `req.query` followed by the authentication parameters and `X-Amz-Signature`.
#[cfg(test)]
pub(crate) fn presign_for_test(req: &SignedParts<'_>, p: &Presign<'_>) -> String {
    let enc = |s: &str| percent_encode(s.as_bytes(), UNRESERVED).to_string();
    let date = &p.amz_date[..8];
    let scope = format!("{date}/{}/{}/aws4_request", p.region, p.service);
    let mut query = req.query.map(|q| format!("{q}&")).unwrap_or_default();
    query.push_str(&format!(
        "{X_AMZ_ALGORITHM}={ALGORITHM}&{X_AMZ_CREDENTIAL}={}&{X_AMZ_DATE}={}&\
         {X_AMZ_EXPIRES}={}&{X_AMZ_SIGNED_HEADERS}={}",
        enc(&format!("{}/{scope}", p.key.access_key_id)),
        p.amz_date,
        p.expires,
        enc(&p.signed_headers.join(";")),
    ));
    if let Some(token) = &p.key.session_token {
        query.push_str(&format!("&{X_AMZ_SECURITY_TOKEN}={}", enc(token)));
    }
    let names: Vec<String> = p.signed_headers.iter().map(|s| s.to_string()).collect();
    let payload = hex::encode(Sha256::digest(req.body));
    let canonical = canonical_request(req, &canonical_query(Some(&query), None), &names, &payload);
    let sts = string_to_sign(p.amz_date, &scope, &canonical);
    let sig = hmac(
        &signing_key(&p.key.secret_access_key, date, p.region, p.service).unwrap(),
        &sts,
    )
    .unwrap();
    format!("{query}&{X_AMZ_SIGNATURE}={}", hex::encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::{HeaderName, HeaderValue};
    use time::macros::datetime;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_NOW: OffsetDateTime = datetime!(2015-08-30 12:36:00 UTC);
    const SUITE_TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    const BODY: &[u8] = b"Action=DescribeClusters&Version=2012-12-01";

    fn key(token: Option<&str>) -> AccessKey {
        AccessKey {
            arn: crate::DEFAULT_KEY_ARN.into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SECRET.into(),
            session_token: token.map(str::to_owned),
            denied_actions: vec![],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Verifies a request for service `service` in us-east-1 at the suite's clock.
    fn verify_at(
        service: &str,
        (method, query): (&str, Option<&str>),
        h: &HeaderMap,
        body: &[u8],
        keys: &[AccessKey],
    ) -> Result<(), ApiError> {
        let req = SignedParts {
            method,
            path: "/",
            query,
            headers: h,
            body,
        };
        let exp = Expected {
            service,
            region: "us-east-1",
            now: SUITE_NOW,
            keys,
            query_auth: false,
        };
        verify(&req, &exp).map(|_| ())
    }

    fn auth(signed: &str, sig: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed}, Signature={sig}"
        )
    }

    /// The suite's `post-x-www-form-urlencoded` vector (body `Param1=value1`).
    fn suite_post() -> HeaderMap {
        let a = auth(
            "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
            "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        );
        headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "example.amazonaws.com"),
            ("content-length", "13"),
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
            ("x-amz-date", "20150830T123600Z"),
            ("authorization", &a),
        ])
    }

    /// The suite's `get-security-token` vector headers, with or without the token header.
    fn suite_token(with_token: bool) -> HeaderMap {
        let a = auth(
            "host;x-amz-date;x-amz-security-token",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
        );
        let mut pairs = vec![
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("authorization", a.as_str()),
        ];
        if with_token {
            pairs.push(("x-amz-security-token", SUITE_TOKEN));
        }
        headers(&pairs)
    }

    // Vectors from the official AWS SigV4 test suite (aws-signing-test-suite/v4).
    #[test]
    fn aws_signing_suite_vectors_verify() {
        let plain = |signed: &str, sig: &str, extra: &[(&str, &str)]| {
            let a = auth(signed, sig);
            let mut pairs = vec![("host", "example.amazonaws.com")];
            pairs.extend_from_slice(extra);
            pairs.push(("x-amz-date", "20150830T123600Z"));
            pairs.push(("authorization", &a));
            headers(&pairs)
        };
        /// Why: one suite vector: name, method, query, headers, body and the key it verifies with.
        type Vector = (
            &'static str,
            &'static str,
            Option<&'static str>,
            HeaderMap,
            &'static [u8],
            AccessKey,
        );
        let table: [Vector; 6] = [
            (
                "get-vanilla",
                "GET",
                None,
                plain(
                    "host;x-amz-date",
                    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                    &[],
                ),
                b"",
                key(None),
            ),
            (
                "get-vanilla-query-order-key-case",
                "GET",
                Some("Param2=value2&Param1=value1"),
                plain(
                    "host;x-amz-date",
                    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
                    &[],
                ),
                b"",
                key(None),
            ),
            (
                "get-header-value-trim",
                "GET",
                None,
                plain(
                    "host;my-header1;my-header2;x-amz-date",
                    "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
                    &[("my-header1", " value1"), ("my-header2", " \"a   b   c\"")],
                ),
                b"",
                key(None),
            ),
            (
                "get-header-key-duplicate",
                "GET",
                None,
                plain(
                    "host;my-header1;x-amz-date",
                    "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
                    &[
                        ("my-header1", "value2"),
                        ("my-header1", "value2"),
                        ("my-header1", "value1"),
                    ],
                ),
                b"",
                key(None),
            ),
            (
                "post-x-www-form-urlencoded",
                "POST",
                None,
                suite_post(),
                b"Param1=value1",
                key(None),
            ),
            (
                "get-security-token",
                "GET",
                None,
                suite_token(true),
                b"",
                key(Some(SUITE_TOKEN)),
            ),
        ];
        for (case, method, query, h, body, k) in table {
            let r = verify_at("service", (method, query), &h, body, &[k]);
            assert!(r.is_ok(), "{case}: {r:?}");
        }
    }

    #[test]
    fn altering_a_signed_suite_request_breaks_its_signature() {
        let mut content_type = suite_post();
        content_type.insert("content-type", HeaderValue::from_static("text/plain"));
        for (case, h, body) in [
            // The declared payload hash no longer matches.
            ("body", suite_post(), &b"Param1=value2"[..]),
            ("signed header", content_type, b"Param1=value1"),
        ] {
            let e = verify_at("service", ("POST", None), &h, body, &[key(None)]).unwrap_err();
            assert_eq!(e.code, "SignatureDoesNotMatch", "{case}");
        }
    }

    #[test]
    fn a_session_token_that_does_not_match_the_key_is_an_invalid_client_token() {
        for (case, with_token, k) in [
            ("wrong token for the key", true, key(Some("other"))),
            ("token on a key that has none", true, key(None)),
            (
                "no token for a key that needs one",
                false,
                key(Some(SUITE_TOKEN)),
            ),
        ] {
            let e = verify_at(
                "service",
                ("GET", None),
                &suite_token(with_token),
                b"",
                &[k],
            )
            .unwrap_err();
            assert_eq!(e.code, "InvalidClientTokenId", "{case}");
        }
    }

    #[test]
    fn canonical_uri_double_encodes_the_path() {
        assert_eq!(
            canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
            "/test/%40connections/JBDvjfGEIAMCERw%253D"
        );
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn canonical_query_sorts_and_reencodes_parameters() {
        assert_eq!(
            canonical_query(Some("b=2&a=x%20y&a=1&c"), None),
            "a=1&a=x%20y&b=2&c="
        );
    }

    /// A DescribeClusters request signed at `date` for `service`/`region` by `k`.
    fn signed_request(date: &str, service: &str, region: &str, k: &AccessKey) -> HeaderMap {
        let mut h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-amz-date", date),
        ]);
        let parts = SignedParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &h,
            body: BODY,
        };
        let a = sign_for_test(
            &parts,
            k,
            region,
            service,
            &["content-type", "host", "x-amz-date"],
        );
        h.insert("authorization", HeaderValue::from_str(&a).unwrap());
        h
    }

    fn verify_redshift(h: &HeaderMap, body: &[u8], keys: &[AccessKey]) -> Result<(), ApiError> {
        verify_at("redshift", ("POST", None), h, body, keys)
    }

    fn good() -> HeaderMap {
        signed_request("20150830T123600Z", "redshift", "us-east-1", &key(None))
    }

    fn with(h: HeaderMap, name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = h;
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn a_request_signed_within_15_minutes_of_the_clock_verifies() {
        for (case, date) in [
            ("same second", "20150830T123600Z"),
            ("14 minutes early", "20150830T122200Z"),
        ] {
            let h = signed_request(date, "redshift", "us-east-1", &key(None));
            assert!(verify_redshift(&h, BODY, &[key(None)]).is_ok(), "{case}");
        }
    }

    #[test]
    fn tampered_misdirected_or_stale_requests_are_refused() {
        let k = key(None);
        let mut wrong_secret = k.clone();
        wrong_secret.secret_access_key = "other".into();
        let mut other_id = k.clone();
        other_id.access_key_id = "AKIDOTHER".into();
        let sign = |date, service, region| signed_request(date, service, region, &k);
        /// Why: one refused request: name, headers, body, the server's key, code and message part.
        type Refused = (
            &'static str,
            HeaderMap,
            &'static [u8],
            AccessKey,
            &'static str,
            &'static str,
        );
        let table: [Refused; 9] = [
            (
                "body changed",
                good(),
                b"Action=DescribeClusters&Version=2012-12-02",
                k.clone(),
                "SignatureDoesNotMatch",
                "",
            ),
            (
                "signed header changed",
                with(good(), "host", "127.0.0.1:8081"),
                BODY,
                k.clone(),
                "SignatureDoesNotMatch",
                "",
            ),
            (
                "date changed after signing",
                with(good(), "x-amz-date", "20150830T123601Z"),
                BODY,
                k.clone(),
                "SignatureDoesNotMatch",
                "",
            ),
            (
                "wrong secret",
                good(),
                BODY,
                wrong_secret,
                "SignatureDoesNotMatch",
                "",
            ),
            (
                "unknown key id",
                good(),
                BODY,
                other_id,
                "InvalidClientTokenId",
                "",
            ),
            (
                "signed for another service",
                sign("20150830T123600Z", "s3", "us-east-1"),
                BODY,
                k.clone(),
                "SignatureDoesNotMatch",
                "'redshift'",
            ),
            (
                "signed for another region",
                sign("20150830T123600Z", "redshift", "eu-west-1"),
                BODY,
                k.clone(),
                "SignatureDoesNotMatch",
                "'us-east-1'",
            ),
            (
                "signed 16 minutes ago",
                sign("20150830T122000Z", "redshift", "us-east-1"),
                BODY,
                k.clone(),
                "SignatureDoesNotMatch",
                "Signature expired",
            ),
            (
                "signed 16 minutes ahead",
                sign("20150830T125200Z", "redshift", "us-east-1"),
                BODY,
                k.clone(),
                "SignatureDoesNotMatch",
                "Signature not yet current",
            ),
        ];
        for (case, h, body, key, code, fragment) in table {
            let e = verify_redshift(&h, body, &[key]).unwrap_err();
            assert_eq!(e.code, code, "{case}");
            assert!(e.message.contains(fragment), "{case}: {}", e.message);
        }
    }

    #[test]
    fn a_request_without_authorization_is_missing_an_authentication_token() {
        let h = headers(&[("host", "h"), ("x-amz-date", "20150830T123600Z")]);
        let e = verify_redshift(&h, b"", &[key(None)]).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (403, "MissingAuthenticationToken")
        );
    }

    #[test]
    fn a_malformed_authorization_header_is_an_incomplete_signature() {
        for (case, bad) in [
            (
                "other algorithm",
                "AWS4-HMAC-SHA1 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=00",
            ),
            (
                "no SignedHeaders or Signature",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/redshift/aws4_request",
            ),
            (
                "credential without scope",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=00",
            ),
            ("algorithm only", "AWS4-HMAC-SHA256"),
            ("empty", ""),
        ] {
            let h = headers(&[
                ("host", "h"),
                ("x-amz-date", "20150830T123600Z"),
                ("authorization", bad),
            ]);
            let e = verify_redshift(&h, b"", &[key(None)]).unwrap_err();
            assert_eq!(e.code, "IncompleteSignature", "{case}");
        }
    }

    /// Headers of a request whose signature covers `x-amz-date` only (not `host`).
    fn host_unsigned() -> (HeaderMap, String) {
        let mut h = headers(&[("host", "h"), ("x-amz-date", "20150830T123600Z")]);
        let parts = SignedParts {
            method: "POST",
            path: "/",
            query: None,
            headers: &h,
            body: b"",
        };
        let a = sign_for_test(&parts, &key(None), "us-east-1", "redshift", &["x-amz-date"]);
        h.insert("authorization", HeaderValue::from_str(&a).unwrap());
        (h, a)
    }

    #[test]
    fn a_signature_must_cover_the_host_header() {
        let (h, _) = host_unsigned();
        let e = verify_redshift(&h, b"", &[key(None)]).unwrap_err();
        assert!(e.message.contains("'Host'"), "{}", e.message);
    }

    #[test]
    fn a_signature_that_is_not_hex_does_not_match() {
        let (mut h, a) = host_unsigned();
        let a = a.replace("SignedHeaders=x-amz-date", "SignedHeaders=host;x-amz-date");
        let a = format!("{}zz", &a[..a.len() - 2]);
        h.insert("authorization", HeaderValue::from_str(&a).unwrap());
        let e = verify_redshift(&h, b"", &[key(None)]).unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
    }
    // ---- Query-string (presigned) authentication ----

    /// Verifies a request for `service` in us-east-1 at the suite's clock, query-string
    /// authentication allowed; returns the form that verified.
    fn verify_query_at(
        service: &str,
        (method, query): (&str, &str),
        h: &HeaderMap,
        body: &[u8],
        keys: &[AccessKey],
    ) -> Result<Form, ApiError> {
        let req = SignedParts {
            method,
            path: "/",
            query: Some(query),
            headers: h,
            body,
        };
        let exp = Expected {
            service,
            region: "us-east-1",
            now: SUITE_NOW,
            keys,
            query_auth: true,
        };
        verify(&req, &exp).map(|v| v.form)
    }

    /// A suite `query-signed-request.txt` query: `params` first, then the authentication
    /// parameters in the suite's order.
    fn suite_query(params: &str, signed: &str, token: Option<&str>, sig: &str) -> String {
        let token = token
            .map(|t| format!("&X-Amz-Security-Token={t}"))
            .unwrap_or_default();
        format!(
            "{params}X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2F\
             us-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=\
             {signed}&X-Amz-Expires=3600{token}&X-Amz-Signature={sig}"
        )
    }

    // Query vectors of the official AWS SigV4 test suite (aws-signing-test-suite/v4, as
    // shipped with aws-sigv4): their canonical requests end in the SHA-256 of the empty body,
    // not UNSIGNED-PAYLOAD.
    #[test]
    fn aws_signing_suite_query_vectors_verify() {
        let host = headers(&[("host", "example.amazonaws.com")]);
        let trimmed = headers(&[
            ("host", "example.amazonaws.com"),
            ("my-header1", " value1"),
            ("my-header2", " \"a   b   c\""),
        ]);
        let table = [
            (
                "get-vanilla",
                suite_query(
                    "",
                    "host",
                    None,
                    "e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d",
                ),
                &host,
                key(None),
            ),
            (
                "get-vanilla-query-order-key-case",
                suite_query(
                    "Param2=value2&Param1=value1&",
                    "host",
                    None,
                    "86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5",
                ),
                &host,
                key(None),
            ),
            (
                "get-vanilla-query-order-encoded",
                suite_query(
                    "Param-3=Value3&Param=Value2&%E1%88%B4=Value1&",
                    "host",
                    None,
                    "c5f1848ceec943ac2ca68ee720460c23aaae30a2300586597ada94c4a65e4787",
                ),
                &host,
                key(None),
            ),
            (
                "get-header-value-trim",
                suite_query(
                    "",
                    "host%3Bmy-header1%3Bmy-header2",
                    None,
                    "e7bb0fd515e125e1aec2ecc4c0c17484fb06f6846b927c35e46005dd3df3acd4",
                ),
                &trimmed,
                key(None),
            ),
            (
                "get-vanilla-with-session-token",
                suite_query(
                    "",
                    "host",
                    Some(SUITE_TOKEN),
                    "7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c",
                ),
                &host,
                key(Some(SUITE_TOKEN)),
            ),
        ];
        for (case, query, h, k) in table {
            let r = verify_query_at("service", ("GET", &query), h, b"", &[k]);
            assert_eq!(r, Ok(Form::Query), "{case}");
        }
    }

    const GCI: &str = "Action=GetCallerIdentity&Version=2011-06-15";
    const PROXY_ID: &str = "x-redshift-iam-proxy-id";

    /// The headers a proxy sends with an identity token: host and the server id.
    fn token_headers() -> HeaderMap {
        headers(&[("host", "sts.amazonaws.com"), (PROXY_ID, "proxy-1")])
    }

    /// GetCallerIdentity presigned by `k` for `service`/`region` at `amz_date`, valid
    /// `expires` seconds, signing `signed` headers.
    fn presigned_with(
        k: &AccessKey,
        (service, region): (&str, &str),
        (amz_date, expires): (&str, &str),
        signed: &[&str],
    ) -> String {
        let h = token_headers();
        let req = SignedParts {
            method: "GET",
            path: "/",
            query: Some(GCI),
            headers: &h,
            body: b"",
        };
        presign_for_test(
            &req,
            &Presign {
                key: k,
                region,
                service,
                amz_date,
                expires,
                signed_headers: signed,
            },
        )
    }

    /// A valid identity token of `k`: signed now, for 60 s, covering host and the server id.
    fn presigned(k: &AccessKey) -> String {
        presigned_with(
            k,
            ("sts", "us-east-1"),
            ("20150830T123600Z", "60"),
            &["host", PROXY_ID],
        )
    }

    /// `query` with parameter `name`'s raw value replaced by `value`.
    fn set_param(query: &str, name: &str, value: &str) -> String {
        query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((n, _)) if n == name => format!("{n}={value}"),
                _ => p.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `query` without parameter `name`.
    fn drop_param(query: &str, name: &str) -> String {
        query
            .split('&')
            .filter(|p| p.split('=').next() != Some(name))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn verify_sts_query(query: &str, h: &HeaderMap, k: AccessKey) -> Result<Form, ApiError> {
        verify_query_at("sts", ("GET", query), h, b"", &[k])
    }

    #[test]
    fn a_presigned_get_caller_identity_verifies_in_the_query_form() {
        for (case, k) in [
            ("long-term key", key(None)),
            ("key with a session token", key(Some(SUITE_TOKEN))),
        ] {
            let q = presigned(&k);
            assert_eq!(
                verify_sts_query(&q, &token_headers(), k),
                Ok(Form::Query),
                "{case}"
            );
        }
    }

    #[test]
    fn tampering_with_any_part_of_a_presigned_request_is_refused() {
        let good = presigned(&key(None));
        let other_id = headers(&[("host", "sts.amazonaws.com"), (PROXY_ID, "proxy-2")]);
        let other_host = headers(&[("host", "sts.example.com"), (PROXY_ID, "proxy-1")]);
        let mismatch = "SignatureDoesNotMatch";
        let table: [(&str, String, HeaderMap, &str); 14] = [
            (
                "Action",
                good.replace("GetCallerIdentity", "AssumeRole"),
                token_headers(),
                mismatch,
            ),
            (
                "Version",
                set_param(&good, "Version", "2011-06-16"),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-Date (same day)",
                set_param(&good, "X-Amz-Date", "20150830T123500Z"),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-Expires",
                set_param(&good, "X-Amz-Expires", "900"),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-SignedHeaders without the server id",
                set_param(&good, "X-Amz-SignedHeaders", "host"),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-Signature",
                set_param(&good, "X-Amz-Signature", &"0".repeat(64)),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-Signature not hex",
                set_param(&good, "X-Amz-Signature", "zz"),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-Credential key id",
                good.replace("AKIDEXAMPLE%2F", "AKIDOTHER%2F"),
                token_headers(),
                "InvalidClientTokenId",
            ),
            (
                "X-Amz-Credential terminator",
                good.replace("aws4_request", "aws5_request"),
                token_headers(),
                mismatch,
            ),
            (
                "X-Amz-Algorithm",
                set_param(&good, "X-Amz-Algorithm", "AWS4-HMAC-SHA512"),
                token_headers(),
                "IncompleteSignature",
            ),
            (
                "X-Amz-Security-Token added",
                format!("{good}&X-Amz-Security-Token=stolen"),
                token_headers(),
                "InvalidClientTokenId",
            ),
            (
                "parameter added",
                format!("{good}&DurationSeconds=900"),
                token_headers(),
                mismatch,
            ),
            ("server id header", good.clone(), other_id, mismatch),
            ("host header", good.clone(), other_host, mismatch),
        ];
        for (case, query, h, code) in table {
            let e = verify_sts_query(&query, &h, key(None)).unwrap_err();
            assert_eq!(e.code, code, "{case}: {}", e.message);
        }
    }

    #[test]
    fn a_presigned_request_sent_with_another_method_or_body_is_refused() {
        let good = presigned(&key(None));
        for (case, method, body) in [
            ("POST", "POST", &b""[..]),
            ("a body", "GET", b"Action=AssumeRole"),
        ] {
            let e = verify_query_at("sts", (method, &good), &token_headers(), body, &[key(None)])
                .unwrap_err();
            assert_eq!(e.code, "SignatureDoesNotMatch", "{case}");
        }
    }

    #[test]
    fn a_session_token_must_match_in_the_query_form_too() {
        let with_token = key(Some(SUITE_TOKEN));
        let wrong = {
            let mut k = with_token.clone();
            k.session_token = Some("wrong".into());
            k
        };
        let table = [
            (
                "token dropped",
                drop_param(&presigned(&with_token), "X-Amz-Security-Token"),
                with_token.clone(),
            ),
            ("wrong token", presigned(&wrong), with_token.clone()),
            (
                "token on a key that has none",
                presigned(&with_token),
                key(None),
            ),
        ];
        for (case, query, server_key) in table {
            let e = verify_sts_query(&query, &token_headers(), server_key).unwrap_err();
            assert_eq!(e.code, "InvalidClientTokenId", "{case}");
        }
    }

    #[test]
    fn a_presigned_request_lives_15_minutes_from_x_amz_date_whatever_x_amz_expires_says() {
        let sign = |date: &'static str, expires: &'static str| {
            presigned_with(
                &key(None),
                ("sts", "us-east-1"),
                (date, expires),
                &["host", PROXY_ID],
            )
        };
        for (case, date, expires, outcome) in [
            ("signed now", "20150830T123600Z", "60", Ok(())),
            (
                "14 minutes ago, X-Amz-Expires 60 (STS ignores it)",
                "20150830T122200Z",
                "60",
                Ok(()),
            ),
            (
                "16 minutes ago, X-Amz-Expires 3600 (STS ignores it)",
                "20150830T122000Z",
                "3600",
                Err("Signature expired"),
            ),
            (
                "16 minutes ahead",
                "20150830T125200Z",
                "60",
                Err("Signature not yet current"),
            ),
            (
                "X-Amz-Expires at its maximum",
                "20150830T123600Z",
                "604800",
                Ok(()),
            ),
        ] {
            let r = verify_sts_query(&sign(date, expires), &token_headers(), key(None));
            match outcome {
                Ok(()) => assert_eq!(r, Ok(Form::Query), "{case}"),
                Err(fragment) => {
                    let e = r.unwrap_err();
                    assert_eq!(e.code, "SignatureDoesNotMatch", "{case}");
                    assert!(e.message.contains(fragment), "{case}: {}", e.message);
                }
            }
        }
    }

    #[test]
    fn x_amz_expires_must_be_1_to_604800_seconds() {
        for expires in ["0", "604801", "-1", "+60", "60s", "1e3"] {
            let q = presigned_with(
                &key(None),
                ("sts", "us-east-1"),
                ("20150830T123600Z", expires),
                &["host", PROXY_ID],
            );
            let e = verify_sts_query(&q, &token_headers(), key(None)).unwrap_err();
            assert_eq!(e.code, "IncompleteSignature", "X-Amz-Expires={expires}");
        }
    }

    #[test]
    fn a_presigned_request_must_sign_the_host_header() {
        let q = presigned_with(
            &key(None),
            ("sts", "us-east-1"),
            ("20150830T123600Z", "60"),
            &[PROXY_ID],
        );
        let e = verify_sts_query(&q, &token_headers(), key(None)).unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(e.message.contains("'Host'"), "{}", e.message);
    }

    #[test]
    fn a_presigned_request_scoped_to_another_service_or_region_is_refused() {
        for (case, scope, fragment) in [
            ("service", ("sts-fips", "us-east-1"), "'sts'"),
            ("region", ("sts", "eu-west-1"), "'us-east-1'"),
        ] {
            let q = presigned_with(
                &key(None),
                scope,
                ("20150830T123600Z", "60"),
                &["host", PROXY_ID],
            );
            let e = verify_sts_query(&q, &token_headers(), key(None)).unwrap_err();
            assert_eq!(e.code, "SignatureDoesNotMatch", "{case}");
            assert!(e.message.contains(fragment), "{case}: {}", e.message);
        }
    }

    #[test]
    fn a_repeated_parameter_is_an_invalid_query_parameter() {
        let good = presigned(&key(None));
        for name in [
            "Action",
            "X-Amz-Date",
            "X-Amz-Signature",
            "X-Amz-Credential",
        ] {
            let value = good
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap();
            let q = format!("{good}&{name}={value}");
            let e = verify_sts_query(&q, &token_headers(), key(None)).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "InvalidQueryParameter"),
                "{name}"
            );
        }
    }

    #[test]
    fn a_presigned_request_missing_an_authentication_parameter_is_incomplete() {
        let good = presigned(&key(None));
        for name in [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
        ] {
            let e = verify_sts_query(&drop_param(&good, name), &token_headers(), key(None))
                .unwrap_err();
            assert_eq!(e.code, "IncompleteSignature", "without {name}");
            assert!(e.message.contains(name), "without {name}: {}", e.message);
        }
    }

    #[test]
    fn query_and_header_authentication_together_are_refused() {
        let q = presigned(&key(None));
        let mut h = token_headers();
        h.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let parts = SignedParts {
            method: "GET",
            path: "/",
            query: Some(&q),
            headers: &h,
            body: b"",
        };
        let a = sign_for_test(
            &parts,
            &key(None),
            "us-east-1",
            "sts",
            &["host", "x-amz-date"],
        );
        h.insert("authorization", HeaderValue::from_str(&a).unwrap());
        let e = verify_sts_query(&q, &h, key(None)).unwrap_err();
        assert_eq!(e.code, "IncompleteSignature");
        assert!(
            e.message.contains("Only one auth mechanism"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_service_without_query_authentication_refuses_presigned_requests() {
        let q = presigned_with(
            &key(None),
            ("redshift", "us-east-1"),
            ("20150830T123600Z", "60"),
            &["host"],
        );
        let e = verify_at(
            "redshift",
            ("GET", Some(&q)),
            &token_headers(),
            b"",
            &[key(None)],
        )
        .unwrap_err();
        assert_eq!(e.code, "IncompleteSignature");
        assert!(e.message.contains("not supported"), "{}", e.message);
    }

    #[test]
    fn canonical_query_of_the_query_form_leaves_out_the_signature_only() {
        assert_eq!(
            canonical_query(
                Some("X-Amz-Signature=ab&b=2&X-Amz-Signature-Not=1"),
                Some("X-Amz-Signature")
            ),
            "X-Amz-Signature-Not=1&b=2"
        );
    }
}
