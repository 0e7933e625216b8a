//! A local OIDC issuer for the test bed: a discovery document and a JWKS over HTTP on
//! loopback, ES256 keys it can rotate, and tokens it mints with any claims — company SSO
//! and Kubernetes service-account tokens alike, and the malformed ones a proxy must refuse.

use super::BedError;
use crate::base::sync::lock;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One signing key: its id, PKCS#8 DER and public JWK.
#[derive(Clone)]
struct Key {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

impl Key {
    fn generate(kid: &str) -> Result<Key, BedError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| BedError::new("generate an ES256 key", e))?;
        let pkcs8 = pair.serialize_der();
        // Uncompressed point: 0x04 || X || Y.
        let point = pair.public_key_raw();
        if point.len() != 65 {
            return Err(BedError::msg("an ES256 public key of unexpected size"));
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        Ok(Key {
            kid: kid.to_owned(),
            pkcs8,
            jwk: json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
        })
    }

    fn sign(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_ec_der(&self.pkcs8))
            .unwrap_or_default()
    }
}

/// Why: tests need an issuer they control (keys, claims, rotation) on loopback.
pub struct OidcIssuer {
    /// The issuer URL (`iss`), also the base of its discovery document.
    pub url: String,
    keys: Arc<Mutex<Vec<Key>>>,
    next_kid: AtomicU64,
    /// Times the JWKS was fetched.
    fetches: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OidcIssuer {
    /// An issuer with one key, serving on a free loopback port.
    pub async fn start() -> Result<OidcIssuer, BedError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BedError::new("bind the OIDC issuer", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BedError::new("read the OIDC issuer's address", e))?;
        let url = format!("http://{addr}");
        let keys = Arc::new(Mutex::new(vec![Key::generate("k1")?]));
        let fetches = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, url.clone(), keys.clone(), fetches.clone()));
        Ok(OidcIssuer {
            url,
            keys,
            next_kid: AtomicU64::new(2),
            fetches,
            task,
        })
    }

    /// A token of the current key with these claims (`iss` added if missing).
    pub fn mint(&self, mut claims: Value) -> String {
        if claims.get("iss").is_none() {
            claims["iss"] = json!(self.url);
        }
        let key = lock(&self.keys).last().cloned();
        let Some(key) = key else {
            return String::new();
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        key.sign(&header, &claims)
    }

    /// Claims valid now for `audience` and `subject`, expiring in `ttl_secs`.
    pub fn claims(&self, audience: &str, subject: &str, ttl_secs: i64) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({"iss": self.url, "aud": audience, "sub": subject, "iat": now, "nbf": now, "exp": now + ttl_secs})
    }

    /// A Kubernetes projected service-account token for `namespace`/`name`.
    pub fn service_account_token(&self, audience: &str, namespace: &str, name: &str) -> String {
        let mut c = self.claims(
            audience,
            &format!("system:serviceaccount:{namespace}:{name}"),
            3600,
        );
        c["kubernetes.io"] = json!({
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": "9e1a0b7c-0000-4000-8000-000000000001"},
        });
        self.mint(c)
    }

    /// A new key signs from now on; the old one leaves the JWKS.
    pub fn rotate(&self) -> Result<(), BedError> {
        let kid = format!("k{}", self.next_kid.fetch_add(1, Ordering::Relaxed));
        let key = Key::generate(&kid)?;
        *lock(&self.keys) = vec![key];
        Ok(())
    }

    /// A token signed by a key the issuer never published.
    pub fn mint_with_unpublished_key(&self, claims: Value) -> String {
        let Ok(key) = Key::generate("unpublished") else {
            return String::new();
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        key.sign(&header, &claims)
    }

    /// A token with `alg: none` and no signature.
    pub fn mint_unsigned(&self, claims: &Value) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(claims)
        )
    }

    /// A token signed with HMAC (HS256) under `secret`, naming the current key id.
    pub fn mint_hmac(&self, claims: &Value, secret: &[u8]) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = lock(&self.keys).last().map(|k| k.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap_or_default()
    }

    /// The JWKS as the issuer serves it (for a `jwks_file`).
    pub fn jwks(&self) -> String {
        jwks(&lock(&self.keys)).to_string()
    }

    /// Times the JWKS was fetched over HTTP.
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

fn jwks(keys: &[Key]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

async fn serve(
    listener: TcpListener,
    url: String,
    keys: Arc<Mutex<Vec<Key>>>,
    fetches: Arc<AtomicU64>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (url, keys, fetches) = (url.clone(), keys.clone(), fetches.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = match req.uri().path() {
                    "/.well-known/openid-configuration" => Some(
                        json!({"issuer": url, "jwks_uri": format!("{url}/jwks"), "id_token_signing_alg_values_supported": ["ES256"]}),
                    ),
                    "/jwks" => {
                        fetches.fetch_add(1, Ordering::Relaxed);
                        Some(jwks(&lock(&keys)))
                    }
                    _ => None,
                };
                let resp = match body {
                    Some(v) => Response::new(Full::new(Bytes::from(v.to_string()))),
                    None => {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        r
                    }
                };
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
