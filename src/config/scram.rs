//! A SCRAM-SHA-256 verifier as the configuration holds it (`[client_auth]
//! scram_verifiers`), parsed at load; `client::auth` runs the exchange against it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use std::str::FromStr;

/// A SCRAM-SHA-256 verifier as PostgreSQL stores it:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub(crate) iterations: u32,
    pub(crate) salt: Vec<u8>,
    pub(crate) stored_key: [u8; 32],
    pub(crate) server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramVerifier(<redacted>)")
    }
}

impl FromStr for ScramVerifier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            "not a SCRAM-SHA-256 verifier (make one with `redshift-iam-proxy hash-password`)"
                .to_owned()
        };
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let key = |k: &str| -> Result<[u8; 32], String> {
            B64.decode(k)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(bad)
        };
        Ok(Self {
            iterations: iterations.parse().map_err(|_| bad())?,
            salt: B64.decode(salt).map_err(|_| bad())?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

impl ScramVerifier {
    /// A verifier for a password (used by `hash-password` and tests).
    pub fn hash(password: &str) -> String {
        postgres_protocol::password::scram_sha_256(password.as_bytes())
    }

    /// A verifier no password matches, so unknown users go through the same exchange.
    pub(crate) fn impossible() -> Self {
        let mut rng = rand::thread_rng();
        let mut v = Self {
            iterations: 4096,
            salt: vec![0; 16],
            stored_key: [0; 32],
            server_key: [0; 32],
        };
        rng.fill_bytes(&mut v.salt);
        rng.fill_bytes(&mut v.stored_key);
        rng.fill_bytes(&mut v.server_key);
        v
    }
}
