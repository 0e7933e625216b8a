//! AWS-signed identity tokens, verified: the token is taken apart and checked by
//! [`redshift_tokens::aws`] (every rule is listed there), the rebuilt request goes to STS,
//! and STS says whose signature it carries.
//!
//! A verified token is cached until it expires; failures are remembered briefly, and STS
//! calls are bounded in number, so bad tokens cannot be amplified into an STS flood.

use super::HttpClient;
use super::{Principal, Token, TokenError};
use crate::base::sync::lock;
use crate::config::AwsTokenConfig;
use redshift_tokens::aws::AwsPrincipal;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::{OnceCell, Semaphore};

pub use redshift_tokens::aws::{
    parse, principal, Endpoints, Presigned, AUDIENCE_HEADER, MAX_EXPIRES_SECS, PREFIX,
};

/// STS calls in flight at once.
const MAX_STS_CALLS: usize = 8;
/// How long a refused token is refused without asking STS again.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Tokens remembered (verified or refused); expired ones go first.
const MAX_CACHED: usize = 10_000;

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
        let presigned = parse(token.expose(), &self.endpoints, OffsetDateTime::now_utc())
            .map_err(|r| TokenError::refused(r.outcome, r.message))?;
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
