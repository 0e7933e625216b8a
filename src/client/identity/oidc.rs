//! OIDC / JWT tokens: company SSO (Okta, Entra ID, Google, Keycloak) and Kubernetes
//! projected service-account tokens.
//!
//! The signature is checked by `jsonwebtoken` against the issuer's JWKS (from its discovery
//! document, or a `jwks_file` for clusters whose issuer is not reachable); `iss` and `aud`
//! must match exactly, `exp`/`nbf` hold with a small leeway, and only the configured
//! algorithms are taken (RS256 and ES256 by default; `none` and HMAC never). A token
//! signed with a key id the proxy does not know makes it fetch the keys once more, so
//! issuers rotate keys without a restart; a key id still unknown after that is not asked
//! for again for [`MISSING_FOR`], and refreshes are capped at [`MAX_REFRESHES`] a minute,
//! so forged key ids cannot turn into a flood of fetches.

use super::HttpClient;
use super::{OidcPrincipal, Principal, TokenError};
use crate::config::OidcIssuerConfig;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// A key id missing after a refresh is not fetched for again this long.
pub const MISSING_FOR: Duration = Duration::from_secs(60);
/// Key refreshes for unknown key ids per minute, at most.
pub const MAX_REFRESHES: usize = 10;
/// Keys are re-read after this long anyway.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Clock difference tolerated for `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// Where an issuer's keys come from.
enum Source {
    Discovery,
    File(std::path::PathBuf),
}

struct Keys {
    set: JwkSet,
    fetched: Option<Instant>,
    /// Key ids found missing after a refresh, and when.
    missing: std::collections::HashMap<String, Instant>,
    /// Refreshes made for unknown key ids in the last minute.
    refreshes: std::collections::VecDeque<Instant>,
}

impl Keys {
    /// Whether an unknown `kid` may make the keys be fetched again now.
    fn may_refresh_for(&mut self, kid: Option<&str>) -> bool {
        let now = Instant::now();
        self.missing
            .retain(|_, t| now.duration_since(*t) < MISSING_FOR);
        while self
            .refreshes
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.refreshes.pop_front();
        }
        let known_missing = kid.is_some_and(|k| self.missing.contains_key(k));
        !known_missing && self.refreshes.len() < MAX_REFRESHES
    }
}

/// One configured issuer.
pub struct Issuer {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    source: Source,
    client: HttpClient,
    keys: Mutex<Keys>,
}

impl Issuer {
    pub fn new(c: &OidcIssuerConfig, client: HttpClient) -> Issuer {
        let algorithms = c
            .algorithms
            .iter()
            .filter_map(|a| Algorithm::from_str(a).ok())
            .collect();
        Issuer {
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            algorithms,
            source: match &c.jwks_file {
                Some(f) => Source::File(f.clone()),
                None => Source::Discovery,
            },
            client,
            keys: Mutex::new(Keys {
                set: JwkSet { keys: Vec::new() },
                fetched: None,
                missing: Default::default(),
                refreshes: Default::default(),
            }),
        }
    }

    /// The key for `kid` (`None`: the only key, when the token names none), fetching the
    /// keys again when it is unknown (rate-limited).
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, TokenError> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|t| t.elapsed() >= MAX_KEY_AGE);
        let unknown = find(&keys.set, kid).is_none();
        let refresh = stale || (unknown && keys.may_refresh_for(kid));
        if refresh {
            if unknown && !stale {
                keys.refreshes.push_back(Instant::now());
            }
            match self.fetch().await {
                Ok(set) => {
                    keys.set = set;
                    keys.fetched = Some(Instant::now());
                }
                Err(e) if keys.fetched.is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer, error = %e.message, "refreshing the issuer's keys failed; keeping the old ones")
                }
            }
        }
        let Some(jwk) = find(&keys.set, kid) else {
            if let Some(k) = kid {
                keys.missing.insert(k.to_owned(), Instant::now());
            }
            return Err(TokenError::refused(
                "unknown_key",
                format!(
                    "JWT refused: issuer {} has no key {:?} (not even after fetching its keys again)",
                    self.issuer,
                    kid.unwrap_or("")
                ),
            ));
        };
        DecodingKey::from_jwk(jwk).map_err(|e| {
            TokenError::refused(
                "unknown_key",
                format!("JWT refused: the issuer's key is unusable: {e}"),
            )
        })
    }

    /// How many keys the issuer publishes now (for `check`).
    pub async fn keys_available(&self) -> Result<usize, TokenError> {
        self.fetch().await.map(|set| set.keys.len())
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let unavailable = |e: String| {
            TokenError::unavailable(format!(
                "could not read the keys of issuer {}: {e}",
                self.issuer
            ))
        };
        let body = match &self.source {
            Source::File(f) => tokio::fs::read(f)
                .await
                .map(bytes::Bytes::from)
                .map_err(|e| unavailable(format!("{}: {e}", f.display())))?,
            Source::Discovery => {
                let doc_url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let doc = self.json(&doc_url).await.map_err(unavailable)?;
                let jwks_uri = doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| unavailable("the discovery document has no jwks_uri".into()))?;
                self.get(jwks_uri).await.map_err(unavailable)?
            }
        };
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not a JWKS: {e}")))
    }

    async fn get(&self, url: &str) -> Result<bytes::Bytes, String> {
        let a = self
            .client
            .get(url, &[("accept", "application/json")])
            .await?;
        if a.status != 200 {
            return Err(format!("{url} answered HTTP {}", a.status));
        }
        Ok(a.body)
    }

    async fn json(&self, url: &str) -> Result<serde_json::Value, String> {
        let body = self.get(url).await?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// Verifies `token` issued by this issuer.
    async fn verify(&self, token: &str) -> Result<OidcPrincipal, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            match redshift_tokens::jwt::raw_algorithm(token) {
                Some(alg) => TokenError::refused(
                    "bad_algorithm",
                    format!(
                        "JWT refused: algorithm {alg:?} is never accepted (issuer {})",
                        self.issuer
                    ),
                ),
                None => TokenError::refused("malformed", format!("JWT refused: {e}")),
            }
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::refused(
                "bad_algorithm",
                format!(
                    "JWT refused: algorithm {:?} is not accepted for issuer {} (accepted: {:?})",
                    header.alg, self.issuer, self.algorithms
                ),
            ));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| refusal(&e, &self.issuer))?;
        let subject = data.claims["sub"].as_str().unwrap_or_default().to_owned();
        Ok(OidcPrincipal {
            issuer: self.issuer.clone(),
            subject,
            claims: data.claims,
        })
    }
}

/// The JWK with key id `kid`; without one, the set's only key.
fn find<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(k) => set.find(k),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// The client's message for a token `jsonwebtoken` refused.
fn refusal(e: &jsonwebtoken::errors::Error, issuer: &str) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    let (outcome, why) = match e.kind() {
        K::ExpiredSignature => ("expired", "it expired".to_owned()),
        K::ImmatureSignature => ("not_yet_valid", "it is not valid yet (nbf)".to_owned()),
        K::InvalidAudience => (
            "wrong_audience",
            "its aud is not this proxy's audience".to_owned(),
        ),
        K::InvalidIssuer => ("wrong_issuer", format!("its iss is not {issuer}")),
        K::InvalidSignature => ("bad_signature", "its signature does not verify".to_owned()),
        K::InvalidAlgorithm => (
            "bad_algorithm",
            "its algorithm does not fit the issuer's key".to_owned(),
        ),
        K::MissingRequiredClaim(c) => ("malformed", format!("it has no {c} claim")),
        other => ("malformed", format!("{other:?}")),
    };
    TokenError::refused(outcome, format!("JWT refused: {why}"))
}

/// Verifies a JWT against the configured issuer it names.
pub async fn verify(issuers: &[Issuer], token: &str) -> Result<Principal, TokenError> {
    if token.len() > super::MAX_TOKEN_BYTES {
        return Err(TokenError::refused(
            "too_large",
            "JWT refused: it is larger than 16 KiB",
        ));
    }
    let claimed = redshift_tokens::jwt::claimed_issuer(token).ok_or_else(|| {
        TokenError::refused("malformed", "JWT refused: it has no readable iss claim")
    })?;
    let issuer = issuers.iter().find(|i| i.issuer == claimed).ok_or_else(|| {
        TokenError::refused(
            "wrong_issuer",
            format!("JWT refused: issuer {claimed:?} is not configured ([[client_auth.oidc]] issuer)"),
        )
    })?;
    issuer.verify(token).await.map(Principal::Oidc)
}

pub use redshift_tokens::jwt::claim;
