//! The one place that knows PostgreSQL wire bytes.
//!
//! Everything here is pure framing: reading and writing the startup-phase packets,
//! the authentication requests a server (PostgreSQL or Redshift) may send, and the
//! few messages the proxy itself composes. No policy lives here: nothing in this
//! file decides who may log in or which credential to use.
//!
//! Frontend messages come from `postgres_protocol::message::frontend` where it has them
//! (see `written`); what it lacks (3.2 cancel keys, Redshift's digest answer, Bind and
//! Parse with pass-through bytes) and every backend message (it only parses those) are
//! framed here by hand.
//!
//! Reading, by the shape of the input:
//! - untagged startup-phase packets (SSLRequest, GSSENCRequest, CancelRequest,
//!   StartupMessage: a length word, then the body): `read_startup_frame`;
//! - tagged messages (tag, length word, body) from a buffer the caller fills: `Framer`
//!   (frames.rs), the pooled relay's hot path, which hands large rows and COPY data
//!   through in pieces;
//! - whole tagged messages from an async stream (login, the admin console): `MessageReader`,
//!   a `Framer` that streams nothing, read until a message is whole.
//!
//! Bodies are read by one decoder each (`Query`, `Parse`, `Bind`, `Execute`,
//! `NamedTarget`, `DataRow`, `parse_*`). Whatever the proxy does not read passes as the
//! bytes that arrived (Redshift extends RowDescription, so re-encoding would corrupt it).

mod frames;
pub mod protocol;
pub mod sql;
pub mod startup;
pub use frames::*;
pub use protocol::TxnStatus;
pub use startup::StartupParams;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;
use protocol::{auth, backend, error_field};
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Request code of an SSLRequest packet.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// Request code of a GSSENCRequest packet.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// Request code of a CancelRequest packet.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// Largest backend message the proxy reads while authenticating upstream.
/// (A server's SASL or error message is a few hundred bytes.)
pub const MAX_HANDSHAKE_MESSAGE: usize = 64 * 1024;

/// Why a packet could not be read: malformed input or a closed socket.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid packet length {0}")]
    BadLength(i64),
    #[error("packet of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
}

/// The first packet a client sends (possibly after SSL/GSS negotiation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupFrame {
    /// Client asks for TLS.
    SslRequest,
    /// Client asks for GSSAPI encryption (always refused).
    GssEncRequest,
    /// Out-of-band cancel of a running query, keyed by BackendKeyData.
    Cancel { pid: i32, secret: Vec<u8> },
    /// A protocol 3.x startup message with its parameters in order.
    Startup { minor: u16, params: StartupParams },
}

/// Reads one length-prefixed startup-phase packet (no type byte) of at most `max` bytes.
pub async fn read_startup_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<StartupFrame, WireError> {
    let mut len_buf = [0u8; 4];
    match r.read_exact(&mut len_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(len_buf);
    if len < 8 {
        return Err(WireError::BadLength(len.into()));
    }
    let len = len as usize;
    if len > max {
        return Err(WireError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len - 4];
    r.read_exact(&mut body).await?;
    parse_startup_frame(&body)
}

/// Parses the body (after the length word) of a startup-phase packet.
pub fn parse_startup_frame(body: &[u8]) -> Result<StartupFrame, WireError> {
    let mut b = body;
    if b.len() < 4 {
        return Err(WireError::Malformed("startup packet too short"));
    }
    let code = b.get_i32();
    match code {
        SSL_REQUEST_CODE if b.is_empty() => Ok(StartupFrame::SslRequest),
        GSSENC_REQUEST_CODE if b.is_empty() => Ok(StartupFrame::GssEncRequest),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            Err(WireError::Malformed("negotiation request with a payload"))
        }
        CANCEL_REQUEST_CODE => {
            // Protocol 3.0 has a 4-byte secret; 3.2 allows up to 256 bytes.
            if b.len() < 8 || b.len() > 4 + 256 {
                return Err(WireError::Malformed("cancel request of wrong size"));
            }
            let pid = b.get_i32();
            Ok(StartupFrame::Cancel {
                pid,
                secret: b.to_vec(),
            })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(WireError::UnsupportedProtocol { major, minor });
            }
            Ok(StartupFrame::Startup {
                minor,
                params: parse_startup_params(b)?,
            })
        }
    }
}

fn parse_startup_params(mut b: &[u8]) -> Result<StartupParams, WireError> {
    let mut params = Vec::new();
    loop {
        let key = take_cstr(&mut b)?;
        if key.is_empty() {
            break;
        }
        let value = take_cstr(&mut b)?;
        if params.iter().any(|(k, _)| *k == key) {
            return Err(WireError::Malformed("duplicate startup parameter"));
        }
        params.push((key, value));
    }
    if !b.is_empty() {
        return Err(WireError::Malformed(
            "trailing bytes after startup parameters",
        ));
    }
    Ok(params.into())
}

fn take_cstr(b: &mut &[u8]) -> Result<String, WireError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(WireError::Malformed("unterminated string"))?;
    let s = std::str::from_utf8(&b[..end])
        .map_err(|_| WireError::Malformed("string is not valid UTF-8"))?
        .to_owned();
    *b = &b[end + 1..];
    Ok(s)
}

/// A C string that may be in the client's encoding (query text after `SET client_encoding`
/// to LATIN1, say): UTF-8 as is, else read lossily, with the exact bytes beside it.
pub(crate) fn take_text(b: &mut &[u8]) -> Result<(String, Option<Bytes>), WireError> {
    let end = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(WireError::Malformed("unterminated string"))?;
    let raw = &b[..end];
    let text = match std::str::from_utf8(raw) {
        Ok(s) => (s.to_owned(), None),
        Err(_) => (
            String::from_utf8_lossy(raw).into_owned(),
            Some(Bytes::copy_from_slice(raw)),
        ),
    };
    *b = &b[end + 1..];
    Ok(text)
}

fn take_i32(b: &mut &[u8]) -> Result<i32, WireError> {
    if b.len() < 4 {
        return Err(WireError::Malformed("truncated integer"));
    }
    Ok(b.get_i32())
}

fn take_bytes(b: &mut &[u8], n: i32) -> Result<Bytes, WireError> {
    let n = usize::try_from(n).map_err(|_| WireError::Malformed("negative length"))?;
    if b.len() < n {
        return Err(WireError::Malformed("truncated field"));
    }
    let out = Bytes::copy_from_slice(&b[..n]);
    b.advance(n);
    Ok(out)
}

/// One typed protocol message: tag byte plus body (length word stripped).
#[derive(Debug, Clone)]
pub struct Message {
    pub tag: u8,
    pub body: Bytes,
}

impl Message {
    /// The message re-framed as it travelled on the wire.
    pub fn to_wire(&self) -> BytesMut {
        frame(self.tag, &self.body)
    }
}

/// Reads whole tagged messages from an async byte stream without assuming one message
/// per read, keeping whatever follows the last message so it can be handed to the relay.
///
/// A `Framer` that streams nothing. `max` caps the length word (body plus its 4 bytes),
/// as `WireError::TooLarge` reports it.
pub struct MessageReader {
    framer: Framer,
    max: usize,
}

/// No message is streamed in pieces: each is read whole.
fn streams_nothing(_: u8) -> bool {
    false
}

impl MessageReader {
    pub fn new(max: usize) -> Self {
        Self::with_buffered(max, BytesMut::with_capacity(1024))
    }

    /// Reads the next complete message.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Message, WireError> {
        loop {
            match self.framer.next_frame() {
                Ok(Some(Frame::Whole { tag, raw })) => {
                    return Ok(Message {
                        tag,
                        body: body(&raw),
                    })
                }
                Ok(Some(Frame::Piece { .. })) => {
                    return Err(WireError::Malformed("message streamed in pieces"))
                }
                Ok(None) => {}
                // The framer counts the tag byte too; the length word is what was sent.
                Err(WireError::TooLarge { len, .. }) => {
                    return Err(WireError::TooLarge {
                        len: len.saturating_sub(1),
                        max: self.max,
                    })
                }
                Err(e) => return Err(e),
            }
            let n = r.read_buf(self.framer.buf_mut()).await?;
            if n == 0 {
                return Err(WireError::Closed);
            }
        }
    }

    /// A reader that first parses bytes already read (e.g. after authentication).
    pub fn with_buffered(max: usize, buffered: BytesMut) -> Self {
        let mut framer = Framer::new(max.saturating_add(1), streams_nothing);
        *framer.buf_mut() = buffered;
        Self { framer, max }
    }

    /// Bytes already read past the last returned message.
    pub fn into_leftover(self) -> BytesMut {
        self.framer.into_buffered()
    }
}

/// What an `R` (Authentication*) message asks the client to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    Ok,
    Cleartext,
    Md5 {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue(Bytes),
    SaslFinal(Bytes),
    /// Redshift's code 13: SHA-256 digest with salt and server nonce.
    RedshiftDigest {
        algorithm: i32,
        salt: Bytes,
        server_nonce: Bytes,
    },
    /// Redshift's code 14: identity-provider token (not something the proxy can answer).
    IdpToken,
    /// Kerberos, GSS, SSPI and anything else.
    Unsupported(i32),
}

/// Parses the body of an `R` message.
pub fn parse_auth_request(body: &[u8]) -> Result<AuthRequest, WireError> {
    let mut b = body;
    let code = take_i32(&mut b)?;
    Ok(match code {
        auth::OK => AuthRequest::Ok,
        auth::CLEARTEXT_PASSWORD => AuthRequest::Cleartext,
        auth::MD5_PASSWORD => {
            if b.len() != 4 {
                return Err(WireError::Malformed("MD5 request without a 4-byte salt"));
            }
            AuthRequest::Md5 {
                salt: [b[0], b[1], b[2], b[3]],
            }
        }
        auth::SASL => {
            let mut mechanisms = Vec::new();
            loop {
                let m = take_cstr(&mut b)?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            AuthRequest::Sasl { mechanisms }
        }
        auth::SASL_CONTINUE => AuthRequest::SaslContinue(Bytes::copy_from_slice(b)),
        auth::SASL_FINAL => AuthRequest::SaslFinal(Bytes::copy_from_slice(b)),
        auth::REDSHIFT_DIGEST => {
            let algorithm = take_i32(&mut b)?;
            let salt_len = take_i32(&mut b)?;
            let salt = take_bytes(&mut b, salt_len)?;
            let nonce_len = take_i32(&mut b)?;
            let server_nonce = take_bytes(&mut b, nonce_len)?;
            AuthRequest::RedshiftDigest {
                algorithm,
                salt,
                server_nonce,
            }
        }
        auth::REDSHIFT_IDP_TOKEN => AuthRequest::IdpToken,
        other => AuthRequest::Unsupported(other),
    })
}

/// Fields of an ErrorResponse or NoticeResponse the proxy cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The server routine that raised it (`R`), e.g. Redshift's
    /// `NFTSetupSessionStateOnRestore`.
    pub routine: Option<String>,
}

/// Parses an ErrorResponse body into its main fields.
pub fn parse_error_fields(body: &[u8]) -> ErrorFields {
    let mut f = ErrorFields::default();
    let mut b = body;
    while let Some((&kind, rest)) = b.split_first() {
        if kind == 0 {
            break;
        }
        b = rest;
        let Ok(value) = take_cstr(&mut b) else { break };
        match kind {
            error_field::SEVERITY => f.severity = value,
            error_field::CODE => f.code = value,
            error_field::MESSAGE => f.message = value,
            error_field::DETAIL => f.detail = Some(value),
            error_field::HINT => f.hint = Some(value),
            error_field::ROUTINE => f.routine = Some(value),
            _ => {}
        }
    }
    f
}

/// Parses a BackendKeyData body: process id and secret key (4 bytes in 3.0).
pub fn parse_backend_key_data(body: &[u8]) -> Result<(i32, Vec<u8>), WireError> {
    let mut b = body;
    let pid = take_i32(&mut b)?;
    if b.is_empty() || b.len() > 256 {
        return Err(WireError::Malformed("backend key of wrong size"));
    }
    Ok((pid, b.to_vec()))
}

fn frame(tag: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(tag);
    out.put_i32((body.len() + 4) as i32);
    out.put_slice(body);
    out
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    // A NUL inside a value would end the field early; strip it rather than corrupt framing.
    out.extend(s.bytes().filter(|&c| c != 0));
    out.put_u8(0);
}

/// `s` without NULs, as `put_cstr` writes it (postgres-protocol refuses a NUL instead).
fn no_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', ""))
    } else {
        Cow::Borrowed(s)
    }
}

/// One message from a `postgres_protocol::message::frontend` writer, in a fresh buffer.
///
/// The writers fail only on a NUL inside a C string (callers pass strings through
/// `no_nul`) or on a message over 2 GiB, far beyond anything the proxy writes; such a
/// message comes back empty rather than half-written.
fn written(write: impl FnOnce(&mut BytesMut) -> std::io::Result<()>) -> BytesMut {
    let mut out = BytesMut::new();
    match write(&mut out) {
        Ok(()) => out,
        Err(_) => BytesMut::new(),
    }
}

/// An ErrorResponse composed by the proxy.
pub fn error_response(severity: &str, code: &str, message: &str, hint: Option<&str>) -> BytesMut {
    let mut body = BytesMut::new();
    for (k, v) in [
        (error_field::SEVERITY, severity),
        (error_field::SEVERITY_NONLOCALIZED, severity),
        (error_field::CODE, code),
        (error_field::MESSAGE, message),
    ] {
        body.put_u8(k);
        put_cstr(&mut body, v);
    }
    if let Some(h) = hint {
        body.put_u8(error_field::HINT);
        put_cstr(&mut body, h);
    }
    body.put_u8(0);
    frame(backend::ERROR_RESPONSE, &body)
}

/// A StartupMessage (protocol 3.0) with the given parameters (NULs inside them dropped).
pub fn startup_message(params: &[(&str, &str)]) -> BytesMut {
    let params: Vec<(Cow<str>, Cow<str>)> =
        params.iter().map(|(k, v)| (no_nul(k), no_nul(v))).collect();
    written(|out| frontend::startup_message(params.iter().map(|(k, v)| (&**k, &**v)), out))
}

/// The 8-byte SSLRequest.
pub fn ssl_request() -> BytesMut {
    let mut out = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut out);
    out
}

/// A CancelRequest packet for the given key.
///
/// Hand-written: `frontend::cancel_request` takes an i32 secret, protocol 3.2 keys are longer.
pub fn cancel_request(pid: i32, secret: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(12 + secret.len());
    out.put_i32((12 + secret.len()) as i32);
    out.put_i32(CANCEL_REQUEST_CODE);
    out.put_i32(pid);
    out.put_slice(secret);
    out
}

/// A BackendKeyData message.
pub fn backend_key_data(pid: i32, secret: &[u8]) -> BytesMut {
    let mut body = BytesMut::with_capacity(4 + secret.len());
    body.put_i32(pid);
    body.put_slice(secret);
    frame(backend::BACKEND_KEY_DATA, &body)
}

/// A PasswordMessage (`p`) carrying `payload` followed by NUL (cleartext and MD5).
///
/// A NUL inside `payload` (never in an IAM password or an MD5 hash) is dropped.
pub fn password_message(payload: &[u8]) -> BytesMut {
    let payload: Cow<[u8]> = if payload.contains(&0) {
        Cow::Owned(payload.iter().copied().filter(|&c| c != 0).collect())
    } else {
        Cow::Borrowed(payload)
    };
    written(|out| frontend::password_message(&payload, out))
}

/// SASLInitialResponse (`p`): mechanism name and the client-first message.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> BytesMut {
    written(|out| frontend::sasl_initial_response(&no_nul(mechanism), data, out))
}

/// SASLResponse (`p`): the raw client-final message.
pub fn sasl_response(data: &[u8]) -> BytesMut {
    written(|out| frontend::sasl_response(data, out))
}

/// Redshift's digest answer (`d`) to authentication code 13.
///
/// Hand-written: a Redshift extension that postgres-protocol does not know.
pub fn redshift_digest_response(digest: &[u8], client_nonce: &[u8]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(digest.len() as i32);
    body.put_slice(digest);
    body.put_i32(client_nonce.len() as i32);
    body.put_slice(client_nonce);
    frame(protocol::frontend::REDSHIFT_DIGEST, &body)
}

/// The client's answer to code 13 (`d` body): `(digest, client nonce)`.
pub fn parse_redshift_digest_response(body: &[u8]) -> Result<(Bytes, Bytes), WireError> {
    let mut b = body;
    let digest_len = take_i32(&mut b)?;
    let digest = take_bytes(&mut b, digest_len)?;
    let nonce_len = take_i32(&mut b)?;
    let nonce = take_bytes(&mut b, nonce_len)?;
    if !b.is_empty() {
        return Err(WireError::Malformed(
            "trailing bytes after the digest answer",
        ));
    }
    Ok((digest, nonce))
}

/// A ParameterStatus (`S`) body: `(name, value)`.
pub fn parse_parameter_status(body: &[u8]) -> Result<(String, String), WireError> {
    let mut b = body;
    let name = take_cstr(&mut b)?;
    let value = take_cstr(&mut b)?;
    Ok((name, value))
}

/// A ParameterStatus (`S`) message.
pub fn parameter_status(name: &str, value: &str) -> BytesMut {
    let mut body = BytesMut::new();
    put_cstr(&mut body, name);
    put_cstr(&mut body, value);
    frame(backend::PARAMETER_STATUS, &body)
}

/// A RowDescription (`T`) of text columns (type `text`, format text).
pub fn row_description(columns: &[&str]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(columns.len().min(i16::MAX as usize) as i16);
    for c in columns {
        put_cstr(&mut body, c);
        body.put_i32(0); // table oid
        body.put_i16(0); // column number
        body.put_i32(25); // text
        body.put_i16(-1); // variable size
        body.put_i32(-1); // type modifier
        body.put_i16(0); // text format
    }
    frame(backend::ROW_DESCRIPTION, &body)
}

/// A DataRow (`D`) of text values (`None` is NULL).
pub fn data_row(values: &[Option<&str>]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i16(values.len().min(i16::MAX as usize) as i16);
    for v in values {
        match v {
            Some(v) => {
                body.put_i32(v.len().min(i32::MAX as usize) as i32);
                body.put_slice(v.as_bytes());
            }
            None => body.put_i32(-1),
        }
    }
    frame(backend::DATA_ROW, &body)
}

/// EmptyQueryResponse (`I`).
pub fn empty_query_response() -> BytesMut {
    frame(backend::EMPTY_QUERY_RESPONSE, &[])
}

/// A Sync (`S`) message from the frontend.
pub fn sync() -> BytesMut {
    let mut out = BytesMut::with_capacity(5);
    frontend::sync(&mut out);
    out
}

/// The SQL text of a simple Query (`Q`) body when it is UTF-8 (an error otherwise): the
/// strict view of `Query::decode`, for readers that take no other client encoding.
pub fn parse_query(body: &[u8]) -> Result<String, WireError> {
    let q = Query::decode(body)?;
    match q.text_raw {
        None => Ok(q.text),
        Some(_) => Err(WireError::Malformed("string is not valid UTF-8")),
    }
}

/// An authentication request (`R`) sent by the proxy to a client: code plus payload.
pub fn auth_request(code: i32, payload: &[u8]) -> BytesMut {
    let mut body = BytesMut::with_capacity(4 + payload.len());
    body.put_i32(code);
    body.put_slice(payload);
    frame(backend::AUTHENTICATION, &body)
}

/// AuthenticationSASL offering the given mechanisms.
pub fn auth_sasl(mechanisms: &[&str]) -> BytesMut {
    let mut payload = BytesMut::new();
    for m in mechanisms {
        put_cstr(&mut payload, m);
    }
    payload.put_u8(0);
    auth_request(auth::SASL, &payload)
}

/// The client's SASLInitialResponse: mechanism and initial data.
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<(String, Bytes), WireError> {
    let mut b = body;
    let mechanism = take_cstr(&mut b)?;
    let len = take_i32(&mut b)?;
    let data = if len == -1 {
        Bytes::new()
    } else {
        take_bytes(&mut b, len)?
    };
    if !b.is_empty() {
        return Err(WireError::Malformed(
            "trailing bytes after SASL initial response",
        ));
    }
    Ok((mechanism, data))
}

/// NegotiateProtocolVersion: newest minor we speak and the options we ignored.
pub fn negotiate_protocol_version(minor: u16, unrecognized: &[&str]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_i32(i32::from(minor));
    body.put_i32(unrecognized.len() as i32);
    for o in unrecognized {
        put_cstr(&mut body, o);
    }
    frame(backend::NEGOTIATE_PROTOCOL_VERSION, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup_body(params: &[(&str, &str)]) -> Vec<u8> {
        startup_message(params)[4..].to_vec()
    }

    #[test]
    fn parses_startup_parameters_in_order() {
        let body = startup_body(&[
            ("user", "alice"),
            ("database", "dev"),
            ("application_name", "x"),
        ]);
        let frame = parse_startup_frame(&body).unwrap();
        assert_eq!(
            frame,
            StartupFrame::Startup {
                minor: 0,
                params: vec![
                    ("user".into(), "alice".into()),
                    ("database".into(), "dev".into()),
                    ("application_name".into(), "x".into())
                ]
                .into()
            }
        );
    }

    #[test]
    fn rejects_malformed_startup_packets() {
        assert!(parse_startup_frame(&[0, 3]).is_err());
        // Missing terminators.
        let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0alice");
        assert!(parse_startup_frame(&body).is_err());
        // Protocol 2.0 is refused.
        assert!(matches!(
            parse_startup_frame(&0x0002_0000i32.to_be_bytes()),
            Err(WireError::UnsupportedProtocol { major: 2, .. })
        ));
        // Duplicate keys.
        let body = startup_body(&[("user", "a"), ("user", "b")]);
        assert!(parse_startup_frame(&body).is_err());
    }

    #[test]
    fn parses_negotiation_and_cancel() {
        assert_eq!(
            parse_startup_frame(&ssl_request()[4..]).unwrap(),
            StartupFrame::SslRequest
        );
        let c = cancel_request(42, &[1, 2, 3, 4]);
        assert_eq!(
            parse_startup_frame(&c[4..]).unwrap(),
            StartupFrame::Cancel {
                pid: 42,
                secret: vec![1, 2, 3, 4]
            }
        );
    }

    #[tokio::test]
    async fn startup_reader_enforces_size_cap() {
        let mut big = Vec::new();
        big.extend_from_slice(&100_000i32.to_be_bytes());
        big.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        let err = read_startup_frame(&mut &big[..], 10_000).await.unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }));
        let neg = (-5i32).to_be_bytes();
        assert!(matches!(
            read_startup_frame(&mut &neg[..], 10_000).await,
            Err(WireError::BadLength(-5))
        ));
    }

    #[tokio::test]
    async fn message_reader_handles_split_and_coalesced_messages() {
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&frame(b'R', &0i32.to_be_bytes()));
        bytes.extend_from_slice(&frame(b'S', b"a\0b\0"));
        bytes.extend_from_slice(b"extra");
        let mut reader = MessageReader::new(1024);
        let mut src = &bytes[..];
        let m1 = reader.read(&mut src).await.unwrap();
        assert_eq!(
            (m1.tag, parse_auth_request(&m1.body).unwrap()),
            (b'R', AuthRequest::Ok)
        );
        let m2 = reader.read(&mut src).await.unwrap();
        assert_eq!(m2.tag, b'S');
        assert_eq!(&reader.into_leftover()[..], b"extra");
    }

    #[tokio::test]
    async fn message_reader_takes_a_message_whose_length_word_is_its_cap() {
        let msg = frame(b'S', b"a\0b\0");
        let cap = msg.len() - 1;
        let got = MessageReader::new(cap).read(&mut &msg[..]).await.unwrap();
        assert_eq!((got.tag, &got.body[..]), (b'S', &b"a\0b\0"[..]));
    }

    #[tokio::test]
    async fn message_reader_reports_the_length_word_and_its_cap_when_too_large() {
        let msg = frame(b'S', b"a\0b\0");
        let cap = msg.len() - 2;
        let err = MessageReader::new(cap)
            .read(&mut &msg[..])
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::TooLarge { len, max } if len == cap + 1 && max == cap));
    }

    #[tokio::test]
    async fn message_reader_keeps_an_incomplete_message_when_the_stream_closes() {
        let msg = frame(b'S', b"a\0b\0");
        let mut reader = MessageReader::new(1024);
        let err = reader.read(&mut &msg[..6]).await.unwrap_err();
        assert!(matches!(err, WireError::Closed));
        assert_eq!(&reader.into_leftover()[..], &msg[..6]);
    }

    #[tokio::test]
    async fn message_reader_reads_bytes_already_buffered_first() {
        let mut buffered = frame(b'Z', b"I");
        buffered.extend_from_slice(b"Q");
        let mut reader = MessageReader::with_buffered(1024, buffered);
        let got = reader.read(&mut &b""[..]).await.unwrap();
        assert_eq!((got.tag, &got.body[..]), (b'Z', &b"I"[..]));
        assert_eq!(&reader.into_leftover()[..], b"Q");
    }

    #[test]
    fn parse_query_reads_utf8_text() {
        assert_eq!(parse_query(b"SELECT 1\0").unwrap(), "SELECT 1");
    }

    #[test]
    fn parse_query_refuses_text_that_is_not_utf8() {
        assert!(parse_query(b"SELECT '\xe9'\0").is_err());
    }

    #[test]
    fn parses_every_auth_code() {
        let req = |code: i32, rest: &[u8]| {
            let mut b = code.to_be_bytes().to_vec();
            b.extend_from_slice(rest);
            parse_auth_request(&b)
        };
        assert_eq!(req(3, &[]).unwrap(), AuthRequest::Cleartext);
        assert_eq!(
            req(5, &[1, 2, 3, 4]).unwrap(),
            AuthRequest::Md5 { salt: [1, 2, 3, 4] }
        );
        assert!(req(5, &[1]).is_err());
        assert_eq!(
            req(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0").unwrap(),
            AuthRequest::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            }
        );
        let mut digest = 0i32.to_be_bytes().to_vec();
        digest.extend_from_slice(&2i32.to_be_bytes());
        digest.extend_from_slice(b"ab");
        digest.extend_from_slice(&3i32.to_be_bytes());
        digest.extend_from_slice(b"xyz");
        assert_eq!(
            req(13, &digest).unwrap(),
            AuthRequest::RedshiftDigest {
                algorithm: 0,
                salt: Bytes::from_static(b"ab"),
                server_nonce: Bytes::from_static(b"xyz")
            }
        );
        // Lengths that lie are errors, never panics.
        let mut lying = 0i32.to_be_bytes().to_vec();
        lying.extend_from_slice(&1000i32.to_be_bytes());
        assert!(req(13, &lying).is_err());
        let mut negative = 0i32.to_be_bytes().to_vec();
        negative.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(req(13, &negative).is_err());
        assert_eq!(req(14, &[]).unwrap(), AuthRequest::IdpToken);
        assert_eq!(req(7, &[]).unwrap(), AuthRequest::Unsupported(7));
        assert!(parse_auth_request(&[0, 0]).is_err());
    }

    #[test]
    fn sasl_initial_response_round_trips_and_rejects_lies() {
        let msg = sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc");
        let (mech, data) = parse_sasl_initial_response(&msg[5..]).unwrap();
        assert_eq!(
            (mech.as_str(), &data[..]),
            ("SCRAM-SHA-256", &b"n,,n=,r=abc"[..])
        );
        let mut lying = BytesMut::new();
        put_cstr(&mut lying, "SCRAM-SHA-256");
        lying.put_i32(100);
        lying.put_slice(b"short");
        assert!(parse_sasl_initial_response(&lying).is_err());
        assert!(parse_sasl_initial_response(b"no terminator").is_err());
    }

    #[test]
    fn redshift_digest_response_round_trips_and_rejects_lies() {
        let msg = redshift_digest_response(b"digest", b"1700000000000");
        let (digest, nonce) = parse_redshift_digest_response(&msg[5..]).unwrap();
        assert_eq!(
            (&digest[..], &nonce[..]),
            (&b"digest"[..], &b"1700000000000"[..])
        );
        assert!(parse_redshift_digest_response(&msg[5..msg.len() - 1]).is_err());
        let mut trailing = msg[5..].to_vec();
        trailing.push(0);
        assert!(parse_redshift_digest_response(&trailing).is_err());
    }

    #[test]
    fn parameter_status_round_trips() {
        let msg = parameter_status("server_version", "8.0.2");
        assert_eq!(msg[0], b'S');
        assert_eq!(
            parse_parameter_status(&msg[5..]).unwrap(),
            ("server_version".to_owned(), "8.0.2".to_owned())
        );
    }

    #[test]
    fn frontend_messages_are_the_exact_protocol_bytes() {
        let cases: Vec<(&str, BytesMut, &[u8])> = vec![
            (
                "startup",
                startup_message(&[("user", "alice"), ("database", "dev")]),
                b"\0\0\0\x21\0\x03\0\0user\0alice\0database\0dev\0\0",
            ),
            (
                "startup, NUL dropped",
                startup_message(&[("user", "al\0ice")]),
                b"\0\0\0\x14\0\x03\0\0user\0alice\0\0",
            ),
            ("ssl request", ssl_request(), b"\0\0\0\x08\x04\xd2\x16\x2f"),
            (
                "cancel, 4-byte key",
                cancel_request(42, &[1, 2, 3, 4]),
                b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x2a\x01\x02\x03\x04",
            ),
            (
                "cancel, 3.2 long key",
                cancel_request(1, &[9; 8]),
                b"\0\0\0\x14\x04\xd2\x16\x2e\0\0\0\x01\x09\x09\x09\x09\x09\x09\x09\x09",
            ),
            (
                "password",
                password_message(b"md5abc"),
                b"p\0\0\0\x0bmd5abc\0",
            ),
            (
                "password, NUL dropped",
                password_message(b"md5\0abc"),
                b"p\0\0\0\x0bmd5abc\0",
            ),
            (
                "SASL initial response",
                sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc"),
                b"p\0\0\0\x21SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc",
            ),
            (
                "SASL response",
                sasl_response(b"c=biws"),
                b"p\0\0\0\x0ac=biws",
            ),
            (
                "Redshift digest",
                redshift_digest_response(b"dg", b"123"),
                b"d\0\0\0\x11\0\0\0\x02dg\0\0\0\x03123",
            ),
            ("query", query("SELECT 1"), b"Q\0\0\0\x0dSELECT 1\0"),
            (
                "query, NUL dropped",
                query("SEL\0ECT 1"),
                b"Q\0\0\0\x0dSELECT 1\0",
            ),
            ("describe", describe(b'S', "s1"), b"D\0\0\0\x08Ss1\0"),
            ("close", close(b'P', ""), b"C\0\0\0\x06P\0"),
            ("sync", sync(), b"S\0\0\0\x04"),
            ("terminate", terminate(), b"X\0\0\0\x04"),
        ];
        for (what, got, want) in cases {
            assert_eq!(&got[..], want, "{what}");
        }
    }

    #[test]
    fn error_response_round_trips() {
        let e = error_response("FATAL", "28000", "no rule for \"bob\"", Some("add a rule"));
        let f = parse_error_fields(&e[5..]);
        assert_eq!(f.code, "28000");
        assert_eq!(f.severity, "FATAL");
        assert_eq!(f.message, "no rule for \"bob\"");
        assert_eq!(f.hint.as_deref(), Some("add a rule"));
    }
}
