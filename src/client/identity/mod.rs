//! Who is connecting: a client proves its identity with a token sent as its password, and
//! the proxy verifies it with the issuer (never by trusting the token's own word).
//!
//! Two kinds, told apart by shape:
//! - **AWS-signed identity tokens** (`aws-v1.` + base64url of a presigned
//!   `sts:GetCallerIdentity` request with a signed audience header naming this deployment,
//!   the pattern of aws-iam-authenticator and Vault's AWS auth): [`aws_token`] checks every
//!   field, rebuilds the request from the allow-listed fields and lets STS say whose
//!   signature it is.
//! - **OIDC JWTs** (company SSO, Kubernetes projected service-account tokens): [`oidc`]
//!   checks the signature against the issuer's JWKS with `jsonwebtoken`, and `iss`, `aud`,
//!   `exp`, `nbf`.
//!
//! What comes out is a [`Principal`]: the verified identity the `[[users]]` rules map.
//! Tokens live in [`Token`], which never prints.

pub mod aws_token;
mod http;
pub use http::HttpClient;
pub mod oidc;
pub mod presign;

use crate::config::ClientAuthConfig;
use crate::wire::protocol::sqlstate;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

pub use redshift_tokens::aws::AwsPrincipal;
pub use redshift_tokens::{TokenKind, MAX_TOKEN_BYTES};

/// A token a client sent as its password; never printed.
pub struct Token(SecretString);

impl Token {
    pub fn new(s: String) -> Token {
        Token(SecretString::from(s))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Which kind of token this looks like, if any.
    pub fn kind(&self) -> Option<TokenKind> {
        TokenKind::of(self.expose())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// A verified identity.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// An AWS principal, as STS reported it.
    Aws(AwsPrincipal),
    /// An OIDC subject of a configured issuer, with the token's claims.
    Oidc(OidcPrincipal),
}

/// An OIDC subject.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcPrincipal {
    pub issuer: String,
    pub subject: String,
    pub claims: serde_json::Value,
}

impl Principal {
    /// The principal as rules match it: an AWS ARN, or `ISSUER#SUBJECT`.
    pub fn name(&self) -> String {
        match self {
            Principal::Aws(a) => a.arn.clone(),
            Principal::Oidc(o) => format!("{}#{}", o.issuer, o.subject),
        }
    }

    /// What the audit line and `SHOW CLIENTS` carry (no claim values, no token).
    pub fn describe(&self) -> String {
        match self {
            Principal::Aws(a) => match &a.session_name {
                Some(s) => format!("{} (session {s})", a.arn),
                None => a.arn.clone(),
            },
            Principal::Oidc(o) => format!("{}#{}", o.issuer, o.subject),
        }
    }
}

/// Why a token was not accepted; `code` is the SQLSTATE the client gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TokenError {
    pub code: &'static str,
    /// Names the cause and the fix; never the token.
    pub message: String,
    /// Low-cardinality outcome for the metric (`expired`, `wrong_audience`, …).
    pub outcome: &'static str,
}

impl TokenError {
    pub fn refused(outcome: &'static str, message: impl Into<String>) -> TokenError {
        TokenError {
            code: sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            message: message.into(),
            outcome,
        }
    }

    /// The issuer could not be asked (network, timeout, 5xx): not the client's fault.
    pub fn unavailable(message: impl Into<String>) -> TokenError {
        TokenError {
            code: sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            message: message.into(),
            outcome: "unavailable",
        }
    }
}

/// The HTTP(S) client the verifiers use (verified TLS with `tls`, bounded by `timeout`).
pub fn client(tls: Arc<rustls::ClientConfig>, timeout: std::time::Duration) -> HttpClient {
    HttpClient::new(tls, timeout)
}

/// Every configured token verifier.
pub struct Verifiers {
    aws: Option<aws_token::AwsVerifier>,
    oidc: Vec<oidc::Issuer>,
}

impl Verifiers {
    /// Verifiers for `[client_auth]`; `region` is the `[aws] region` (for the STS endpoint).
    pub fn new(
        auth: &ClientAuthConfig,
        region: Option<&str>,
        tls: Arc<rustls::ClientConfig>,
        timeout: std::time::Duration,
    ) -> Result<Verifiers, String> {
        let client = http::HttpClient::new(tls, timeout);
        let aws = match &auth.aws_token {
            Some(c) => Some(aws_token::AwsVerifier::new(c, region, client.clone())?),
            None => None,
        };
        let oidc = auth
            .oidc
            .iter()
            .map(|c| oidc::Issuer::new(c, client.clone()))
            .collect();
        Ok(Verifiers { aws, oidc })
    }

    /// Whether any token kind is accepted.
    pub fn any(&self) -> bool {
        self.aws.is_some() || !self.oidc.is_empty()
    }

    /// Verifies `token`; the metric counts the outcome by kind.
    pub async fn verify(&self, token: &Token) -> Result<Principal, TokenError> {
        let kind = token.kind();
        let result = match kind {
            Some(TokenKind::Aws) => match &self.aws {
                Some(v) => v.verify(token).await,
                None => Err(TokenError::refused(
                    "kind_not_enabled",
                    "AWS identity tokens are not accepted here ([client_auth.aws_token] is not configured)",
                )),
            },
            Some(TokenKind::Jwt) => oidc::verify(&self.oidc, token.expose()).await,
            None => Err(TokenError::refused(
                "not_a_token",
                "the password is neither an AWS identity token (aws-v1.…) nor a JWT",
            )),
        };
        let label = kind.map_or("unknown", TokenKind::as_str);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.outcome,
        };
        crate::base::events::token_verification(label, outcome);
        result
    }
}
