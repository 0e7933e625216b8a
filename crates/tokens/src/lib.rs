//! Parsing the identity tokens clients present as their password. Pure: no I/O, no
//! policy beyond the checks every verifier must make, so the parsers can be fuzzed alone.
//!
//! - [`aws`]: `aws-v1.` tokens, base64url of a presigned `sts:GetCallerIdentity` URL:
//!   taken apart, checked field by field and rebuilt from the allowed fields only.
//! - [`jwt`]: what the proxy reads of a JWT before `jsonwebtoken` verifies it (which issuer
//!   it claims, which algorithm it names) and claim paths.

pub mod aws;
pub mod jwt;
#[cfg(feature = "presign")]
pub mod presign;

/// Largest token read at all (a presigned URL with a session token is about 2 KiB, a
/// Kubernetes service-account JWT about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token is refused: a low-cardinality outcome (for metrics) and a message naming
/// the cause and the fix (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub outcome: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(outcome: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            outcome,
            message: message.into(),
        }
    }
}

/// The two token shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Aws,
    Jwt,
}

impl TokenKind {
    /// Which kind `token` looks like, if any.
    pub fn of(token: &str) -> Option<TokenKind> {
        if token.starts_with(aws::PREFIX) {
            return Some(TokenKind::Aws);
        }
        let parts: Vec<&str> = token.split('.').collect();
        let b64url = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        };
        (parts.len() == 3 && parts[..2].iter().all(|p| b64url(p)) && token.starts_with("ey"))
            .then_some(TokenKind::Jwt)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Aws => "aws",
            TokenKind::Jwt => "oidc",
        }
    }
}
