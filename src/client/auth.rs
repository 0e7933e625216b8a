//! Client authentication, for deployments where the listener is reachable by more than
//! the local machine: who may use the proxy at all.
//!
//! - `trust` (default): no client password; only allowed on loopback unless the operator
//!   opts in with `allow_unauthenticated_network`.
//! - `scram-sha-256`: the client proves a password against a per-user verifier from the
//!   config (`redshift-iam-proxy hash-password` makes them); the proxy never sees or stores
//!   the password itself.
//! - `cert`: the client presents a TLS certificate signed by `ca_file`; its common name
//!   (or the `cert_users` mapping of it) must equal the user name it logs in as.
//!
//! This module is policy plus the SCRAM server arithmetic; framing is in `wire.rs`.

use crate::base::stream::Stream;
pub use crate::config::scram::ScramVerifier;
use crate::wire::protocol::{auth, frontend, sqlstate};
use crate::wire::{self, MessageReader, WireError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

/// Why a client was not let in.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Wrong password or unknown user (28P01, deliberately the same for both).
    #[error("password authentication failed for user \"{0}\"")]
    BadPassword(String),
    /// Certificate missing or for another user (28000).
    #[error("{0}")]
    Certificate(String),
    /// The client broke the exchange (08P01).
    #[error("authentication protocol violation: {0}")]
    Protocol(String),
    #[error("client went away during authentication")]
    Closed,
    /// An identity token refused (28000) or not verifiable now (08001).
    #[error("{0}")]
    Token(crate::client::identity::TokenError),
}

impl ClientAuthError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ClientAuthError::BadPassword(_) => sqlstate::INVALID_PASSWORD,
            ClientAuthError::Certificate(_) => sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            ClientAuthError::Protocol(_) | ClientAuthError::Closed => sqlstate::PROTOCOL_VIOLATION,
            ClientAuthError::Token(t) => t.code,
        }
    }
}

impl From<WireError> for ClientAuthError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Closed | WireError::Io(_) => ClientAuthError::Closed,
            other => ClientAuthError::Protocol(other.to_string()),
        }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Runs a SCRAM-SHA-256 exchange as the server; `verifier` is `None` for unknown users.
pub async fn scram(
    stream: &mut Stream,
    reader: &mut MessageReader,
    user: &str,
    verifier: Option<&ScramVerifier>,
) -> Result<(), ClientAuthError> {
    let fake;
    let v = match verifier {
        Some(v) => v,
        None => {
            fake = ScramVerifier::impossible();
            &fake
        }
    };
    send(stream, &wire::auth_sasl(&["SCRAM-SHA-256"])).await?;
    let msg = reader.read(stream).await?;
    if msg.tag != frontend::PASSWORD {
        return Err(ClientAuthError::Protocol(
            "expected SASLInitialResponse".into(),
        ));
    }
    let first = ClientFirst::parse(&msg.body)?;
    let mut server_part = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut server_part);
    let nonce = format!("{}{}", first.nonce, B64.encode(server_part));
    let server_first = format!("r={nonce},s={},i={}", B64.encode(&v.salt), v.iterations);
    send(
        stream,
        &wire::auth_request(auth::SASL_CONTINUE, server_first.as_bytes()),
    )
    .await?;

    let msg = reader.read(stream).await?;
    if msg.tag != frontend::PASSWORD {
        return Err(ClientAuthError::Protocol("expected SASLResponse".into()));
    }
    let auth_message = first.check_final(&msg.body, &nonce, &server_first, v)?;
    if verifier.is_none() {
        return Err(ClientAuthError::BadPassword(user.to_owned()));
    }
    let Some(auth_message) = auth_message else {
        return Err(ClientAuthError::BadPassword(user.to_owned()));
    };
    let server_signature = hmac(&v.server_key, auth_message.as_bytes());
    send(
        stream,
        &wire::auth_request(
            auth::SASL_FINAL,
            format!("v={}", B64.encode(server_signature)).as_bytes(),
        ),
    )
    .await?;
    Ok(())
}

/// A client's SASLInitialResponse for SCRAM-SHA-256, parsed.
struct ClientFirst {
    /// The GS2 header (`n,,` or `y,,`: no channel binding is offered).
    gs2: String,
    /// client-first-message-bare, part of the signed AuthMessage.
    bare: String,
    nonce: String,
}

impl ClientFirst {
    fn parse(body: &[u8]) -> Result<ClientFirst, ClientAuthError> {
        let (mechanism, first) = wire::parse_sasl_initial_response(body)?;
        if mechanism != "SCRAM-SHA-256" {
            return Err(ClientAuthError::Protocol(format!(
                "unsupported SASL mechanism {mechanism:?}"
            )));
        }
        let first = std::str::from_utf8(&first)
            .map_err(|_| ClientAuthError::Protocol("client-first is not UTF-8".into()))?;
        // gs2 header: "n,," or "y,," (we offer no channel binding); "p=" is refused.
        let (gs2, bare) = match first.get(..3) {
            Some("n,,") | Some("y,,") => first.split_at(3),
            _ => {
                return Err(ClientAuthError::Protocol(
                    "unsupported GS2 header (channel binding is not offered)".into(),
                ))
            }
        };
        let nonce = attr(bare, "r")
            .ok_or_else(|| ClientAuthError::Protocol("client-first without nonce".into()))?;
        Ok(ClientFirst {
            gs2: gs2.to_owned(),
            bare: bare.to_owned(),
            nonce: nonce.to_owned(),
        })
    }

    /// Checks the client-final message against this exchange and `v`: the AuthMessage
    /// when the proof matches the stored key, `None` when it does not (a wrong password),
    /// an error when the message breaks the exchange.
    fn check_final(
        &self,
        body: &[u8],
        nonce: &str,
        server_first: &str,
        v: &ScramVerifier,
    ) -> Result<Option<String>, ClientAuthError> {
        let last = std::str::from_utf8(body)
            .map_err(|_| ClientAuthError::Protocol("client-final is not UTF-8".into()))?;
        let (without_proof, proof) = last
            .rsplit_once(",p=")
            .ok_or_else(|| ClientAuthError::Protocol("client-final without proof".into()))?;
        if attr(without_proof, "c") != Some(B64.encode(self.gs2.as_bytes())).as_deref() {
            return Err(ClientAuthError::Protocol(
                "channel binding data does not match".into(),
            ));
        }
        if attr(without_proof, "r") != Some(nonce) {
            return Err(ClientAuthError::Protocol("nonce does not match".into()));
        }
        let proof = B64
            .decode(proof)
            .ok()
            .and_then(|p| <[u8; 32]>::try_from(p).ok())
            .ok_or_else(|| ClientAuthError::Protocol("malformed proof".into()))?;
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let client_signature = hmac(&v.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (i, k) in client_key.iter_mut().enumerate() {
            *k = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        // Constant-time comparison of the stored key.
        let matches = bool::from(computed.as_slice().ct_eq(v.stored_key.as_slice()));
        Ok(matches.then_some(auth_message))
    }
}

/// Tokens are bearer credentials: they travel only over TLS, or over loopback.
pub fn tokens_may_travel(
    tls: bool,
    loopback: bool,
) -> Result<(), crate::client::identity::TokenError> {
    if tls || loopback {
        return Ok(());
    }
    Err(crate::client::identity::TokenError::refused(
        "no_tls",
        "this proxy takes identity tokens only over TLS: connect with sslmode=require (or verify-full)",
    ))
}

/// Asks for a password (AuthenticationCleartextPassword) and takes it as an identity token.
/// Tokens travel only over TLS, or over loopback.
pub async fn token_password(
    stream: &mut Stream,
    reader: &mut MessageReader,
    loopback: bool,
) -> Result<crate::client::identity::Token, ClientAuthError> {
    use crate::client::identity::{TokenError, MAX_TOKEN_BYTES};
    tokens_may_travel(stream.is_tls(), loopback).map_err(ClientAuthError::Token)?;
    send(stream, &wire::auth_request(auth::CLEARTEXT_PASSWORD, &[])).await?;
    let msg = reader.read(stream).await?;
    if msg.tag != frontend::PASSWORD {
        return Err(ClientAuthError::Protocol(
            "expected a PasswordMessage".into(),
        ));
    }
    let body = msg.body.strip_suffix(&[0]).unwrap_or(&msg.body);
    if body.len() > MAX_TOKEN_BYTES {
        return Err(ClientAuthError::Token(TokenError::refused(
            "too_large",
            format!("the token is larger than {} KiB", MAX_TOKEN_BYTES / 1024),
        )));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ClientAuthError::Protocol("the password is not UTF-8".into()))?;
    Ok(crate::client::identity::Token::new(text))
}

async fn send(stream: &mut Stream, bytes: &[u8]) -> Result<(), ClientAuthError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|_| ClientAuthError::Closed)?;
    stream.flush().await.map_err(|_| ClientAuthError::Closed)
}

/// The value of `key=` in a comma-separated SCRAM message.
fn attr<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    msg.split(',')
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

/// The subject common name of the client's TLS certificate, if it presented one.
pub fn client_cert_name(stream: &Stream) -> Option<String> {
    let Stream::ServerTls(tls) = stream else {
        return None;
    };
    let der = tls.get_ref().1.peer_certificates()?.first()?.clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_sent_without_tls_from_off_loopback_is_refused() {
        assert!(tokens_may_travel(true, false).is_ok());
        assert!(tokens_may_travel(false, true).is_ok());
        let e = tokens_may_travel(false, false).expect_err("plaintext over the network");
        assert_eq!((e.code, e.outcome), ("28000", "no_tls"));
        assert!(e.message.contains("sslmode=require"), "{}", e.message);
    }

    #[test]
    fn verifiers_parse_and_garbage_does_not() {
        let v: ScramVerifier = ScramVerifier::hash("s3cret").parse().unwrap();
        assert_eq!(v.iterations, 4096);
        assert!("SCRAM-SHA-256$4096:abc".parse::<ScramVerifier>().is_err());
        assert!("md5abc".parse::<ScramVerifier>().is_err());
        assert!(!format!("{v:?}").contains("4096"));
    }

    #[test]
    fn attributes_are_found_by_key() {
        assert_eq!(attr("n=,r=abc", "r"), Some("abc"));
        assert_eq!(attr("c=biws,r=xyz", "c"), Some("biws"));
        assert_eq!(attr("c=biws", "r"), None);
    }
}
