//! The upstream connector: TCP + TLS to the cluster, then a login with a minted credential.
//!
//! TLS is negotiated with the standard SSLRequest and is never skipped when configured:
//! a server that answers `N` is an error, not a reason to fall back to plaintext.
//! The login answers every password method a cluster may ask for: cleartext, MD5,
//! SCRAM-SHA-256 and Redshift's SHA-256 digest (code 13).

use crate::base::refusal::Refusal;
use crate::base::stream::Stream;
use crate::wire::protocol::{backend, negotiation, sqlstate};
use crate::wire::{self, AuthRequest, ErrorFields, Message, MessageReader, WireError};
use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the cluster is and how to secure the connection to it.
#[derive(Clone)]
pub struct UpstreamTarget {
    pub host: String,
    pub port: u16,
    /// `None` only with `sslmode = "disable"` and the explicit allow flag.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub server_name: ServerName<'static>,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for UpstreamTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} (tls: {})",
            self.host,
            self.port,
            self.tls.is_some()
        )
    }
}

/// Why the upstream connection or login failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the cluster at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to the cluster at {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("the cluster at {addr} refused TLS; the proxy never falls back to plaintext")]
    TlsRefused { addr: String },
    #[error("TLS handshake with the cluster at {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("the cluster closed the connection during login")]
    Closed,
    #[error("protocol error from the cluster: {0}")]
    Protocol(String),
    #[error("the cluster asked for an authentication method the proxy cannot answer: {0}")]
    UnsupportedAuth(String),
    /// The cluster refused the credential (wrong or expired password, unknown user).
    #[error("{}", .0.message)]
    AuthFailed(ErrorFields),
    /// Any other error the cluster reported during login.
    #[error("{}", .0.message)]
    Server(ErrorFields),
}

impl UpstreamError {
    /// SQLSTATE for the client.
    pub fn sqlstate(&self) -> String {
        match self {
            UpstreamError::AuthFailed(f) | UpstreamError::Server(f) => f.code.clone(),
            UpstreamError::Closed | UpstreamError::Protocol(_) => {
                sqlstate::CONNECTION_FAILURE.into()
            }
            UpstreamError::UnsupportedAuth(_) => {
                sqlstate::INVALID_AUTHORIZATION_SPECIFICATION.into()
            }
            _ => sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION.into(),
        }
    }
}

impl From<WireError> for UpstreamError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Closed => UpstreamError::Closed,
            WireError::Io(io) if is_disconnect(&io) => UpstreamError::Closed,
            other => UpstreamError::Protocol(other.to_string()),
        }
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// TCP connect plus (unless disabled) SSLRequest and TLS handshake, within `connect_timeout`.
pub async fn connect(target: &UpstreamTarget) -> Result<Stream, UpstreamError> {
    let addr = format!("{}:{}", target.host, target.port);
    match tokio::time::timeout(target.connect_timeout, connect_inner(target, &addr)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::ConnectTimeout {
            addr,
            after: target.connect_timeout,
        }),
    }
}

async fn connect_inner(target: &UpstreamTarget, addr: &str) -> Result<Stream, UpstreamError> {
    let mut tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| UpstreamError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &target.tls else {
        return Ok(Stream::Plain(tcp));
    };
    tcp.write_all(&wire::ssl_request())
        .await
        .map_err(|_| UpstreamError::Closed)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|_| UpstreamError::Closed)?;
    if answer[0] != negotiation::SSL_ACCEPTED {
        return Err(UpstreamError::TlsRefused {
            addr: addr.to_owned(),
        });
    }
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let stream = connector
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|e| UpstreamError::Tls {
            addr: addr.to_owned(),
            reason: tls_reason(&e),
        })?;
    Ok(Stream::ClientTls(Box::new(stream)))
}

/// The rustls error behind an I/O error, in words a user can act on.
fn tls_reason(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    let hint = match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            " (the cluster's certificate is not signed by a trusted CA; set cluster.sslrootcert)"
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            " (the certificate does not name this host; check cluster.host, or use sslmode = \"verify-ca\")"
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            " (the cluster's certificate has expired)"
        }
        _ => "",
    };
    format!("{tls}{hint}")
}

/// A connection that has passed authentication; the rest of the startup
/// (ParameterStatus, BackendKeyData, ReadyForQuery) is still unread in `reader`.
pub struct LoggedIn {
    pub stream: Stream,
    pub reader: MessageReader,
    /// The AuthenticationOk message, to pass on to the client unchanged.
    pub auth_ok: Message,
}

/// Sends the StartupMessage and answers authentication requests until AuthenticationOk.
pub async fn login(
    mut stream: Stream,
    db_user: &str,
    password: &SecretString,
    database: &str,
    params: &wire::StartupParams,
) -> Result<LoggedIn, UpstreamError> {
    let mut startup: Vec<(&str, &str)> = vec![("user", db_user), ("database", database)];
    startup.extend(params.iter());
    stream
        .write_all(&wire::startup_message(&startup))
        .await
        .map_err(|_| UpstreamError::Closed)?;
    let mut reader = MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE);
    let mut answers = Answers {
        db_user,
        password,
        scram: None,
    };
    loop {
        let msg = reader.read(&mut stream).await?;
        match msg.tag {
            backend::AUTHENTICATION => {}
            backend::ERROR_RESPONSE => return Err(refused(&msg.body)),
            // A notice before authentication: ignore it.
            backend::NOTICE_RESPONSE => continue,
            // NegotiateProtocolVersion: we only send 3.0 options we know; tolerate it.
            backend::NEGOTIATE_PROTOCOL_VERSION => continue,
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message {:?} during authentication",
                    char::from(other)
                )))
            }
        }
        let reply = match wire::parse_auth_request(&msg.body)? {
            AuthRequest::Ok => {
                return Ok(LoggedIn {
                    stream,
                    reader,
                    auth_ok: msg,
                })
            }
            other => match answers.answer(other)? {
                Some(reply) => reply,
                None => continue,
            },
        };
        stream
            .write_all(&reply)
            .await
            .map_err(|_| UpstreamError::Closed)?;
    }
}

/// The error of an ErrorResponse during login: the credential refused, or another.
fn refused(body: &[u8]) -> UpstreamError {
    let fields = wire::parse_error_fields(body);
    let refused = matches!(
        fields.code.as_str(),
        sqlstate::INVALID_PASSWORD | sqlstate::INVALID_AUTHORIZATION_SPECIFICATION
    );
    if refused {
        UpstreamError::AuthFailed(fields)
    } else {
        UpstreamError::Server(fields)
    }
}

/// Why a login cannot answer an authentication request.
#[derive(Debug)]
enum Unanswerable {
    /// A method the proxy cannot answer ([`UpstreamError::UnsupportedAuth`]).
    Method(String),
    /// An exchange out of order or failing ([`UpstreamError::Protocol`]).
    Protocol(String),
}

impl From<Unanswerable> for UpstreamError {
    fn from(e: Unanswerable) -> Self {
        match e {
            Unanswerable::Method(m) => UpstreamError::UnsupportedAuth(m),
            Unanswerable::Protocol(m) => UpstreamError::Protocol(m),
        }
    }
}

/// Answers a cluster's authentication requests with one credential, by method.
struct Answers<'a> {
    db_user: &'a str,
    password: &'a SecretString,
    /// The SCRAM exchange, between its start and its final message.
    scram: Option<ScramSha256>,
}

impl Answers<'_> {
    /// The message answering `request`; `None` when there is nothing to send (the SCRAM
    /// server proof checked; AuthenticationOk is the caller's to handle).
    fn answer(&mut self, request: AuthRequest) -> Result<Option<BytesMut>, Unanswerable> {
        let reply = match request {
            AuthRequest::Ok => return Ok(None),
            AuthRequest::Cleartext => {
                wire::password_message(self.password.expose_secret().as_bytes())
            }
            AuthRequest::Md5 { salt } => self.md5(salt),
            AuthRequest::Sasl { mechanisms } => self.scram_start(&mechanisms)?,
            AuthRequest::SaslContinue(data) => self.scram_continue(&data)?,
            AuthRequest::SaslFinal(data) => {
                self.scram_finish(&data)?;
                return Ok(None);
            }
            AuthRequest::RedshiftDigest {
                algorithm,
                salt,
                server_nonce,
            } => self.redshift_digest(algorithm, &salt, &server_nonce)?,
            AuthRequest::IdpToken => {
                return Err(Unanswerable::Method(
                    "identity-provider token (code 14)".into(),
                ))
            }
            AuthRequest::Unsupported(code) => {
                return Err(Unanswerable::Method(format!("code {code}")))
            }
        };
        Ok(Some(reply))
    }

    /// MD5: PostgreSQL's salted double MD5 of the password and the user.
    fn md5(&self, salt: [u8; 4]) -> BytesMut {
        let hash = postgres_protocol::authentication::md5_hash(
            self.db_user.as_bytes(),
            self.password.expose_secret().as_bytes(),
            salt,
        );
        wire::password_message(hash.as_bytes())
    }

    /// SASL: SCRAM-SHA-256's client-first message, if the cluster offers it.
    fn scram_start(&mut self, mechanisms: &[String]) -> Result<BytesMut, Unanswerable> {
        if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
            return Err(Unanswerable::Method(format!(
                "SASL mechanisms {mechanisms:?}"
            )));
        }
        // Channel binding is not used; TLS already authenticates the server.
        let s = ScramSha256::new(
            self.password.expose_secret().as_bytes(),
            ChannelBinding::unsupported(),
        );
        let first = wire::sasl_initial_response(SCRAM_SHA_256, s.message());
        self.scram = Some(s);
        Ok(first)
    }

    /// SASL continue: SCRAM's client-final message.
    fn scram_continue(&mut self, data: &[u8]) -> Result<BytesMut, Unanswerable> {
        let s = self
            .scram
            .as_mut()
            .ok_or_else(|| Unanswerable::Protocol("SASL continue before SASL start".into()))?;
        s.update(data)
            .map_err(|e| Unanswerable::Protocol(format!("SCRAM: {e}")))?;
        Ok(wire::sasl_response(s.message()))
    }

    /// SASL final: checks the server's proof (nothing to send).
    fn scram_finish(&mut self, data: &[u8]) -> Result<(), Unanswerable> {
        let mut s = self
            .scram
            .take()
            .ok_or_else(|| Unanswerable::Protocol("SASL final before SASL start".into()))?;
        s.finish(data)
            .map_err(|e| Unanswerable::Protocol(format!("SCRAM server proof: {e}")))
    }

    /// Redshift's code 13 (algorithm 0: SHA-256), see [`redshift_digest`].
    fn redshift_digest(
        &self,
        algorithm: i32,
        salt: &Bytes,
        server_nonce: &Bytes,
    ) -> Result<BytesMut, Unanswerable> {
        if algorithm != 0 {
            return Err(Unanswerable::Method(format!(
                "Redshift digest algorithm {algorithm}"
            )));
        }
        let client_nonce = client_nonce_now();
        let digest = redshift_digest(self.password, salt, server_nonce, client_nonce.as_bytes());
        Ok(wire::redshift_digest_response(
            &digest,
            client_nonce.as_bytes(),
        ))
    }
}

/// A server connection whose whole startup is done: authenticated, its ParameterStatus
/// values and BackendKeyData read, and its first ReadyForQuery received.
/// Runs `sql` as one simple query on a session just started (before it is relayed);
/// returns the first error the server answered with. ParameterStatus messages are kept
/// with the startup's; `Err` when the connection failed or `limit` passed.
pub async fn simple_query(
    started: &mut Started,
    sql: &str,
    limit: Duration,
) -> Result<Option<ErrorFields>, String> {
    let work = async {
        started
            .stream
            .write_all(&wire::query(sql))
            .await
            .map_err(|e| e.to_string())?;
        started.stream.flush().await.map_err(|e| e.to_string())?;
        let buffered = std::mem::take(&mut started.leftover);
        let mut reader = MessageReader::with_buffered(wire::MAX_HANDSHAKE_MESSAGE, buffered);
        let mut error = None;
        loop {
            let msg = reader
                .read(&mut started.stream)
                .await
                .map_err(|e| e.to_string())?;
            match msg.tag {
                backend::PARAMETER_STATUS => started.messages.push(msg),
                backend::ERROR_RESPONSE if error.is_none() => {
                    error = Some(wire::parse_error_fields(&msg.body));
                }
                backend::READY_FOR_QUERY => break,
                _ => {}
            }
        }
        started.leftover = reader.into_leftover();
        Ok(error)
    };
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", limit.as_secs())))
}

pub struct Started {
    pub stream: Stream,
    /// Bytes the server sent after its first ReadyForQuery (normally none).
    pub leftover: bytes::BytesMut,
    /// The AuthenticationOk message, to pass on to a client unchanged.
    pub auth_ok: Message,
    /// ParameterStatus and NoticeResponse messages, in the order the server sent them.
    pub messages: Vec<Message>,
    /// The server's cancel key (process id, secret), if it sent one.
    pub backend_key: Option<(i32, Vec<u8>)>,
}

impl Started {
    /// The server's ParameterStatus values, in order.
    pub fn parameters(&self) -> Vec<(String, String)> {
        self.messages
            .iter()
            .filter(|m| m.tag == backend::PARAMETER_STATUS)
            .filter_map(|m| wire::parse_parameter_status(&m.body).ok())
            .collect()
    }
}

/// Reads the rest of a server's startup after AuthenticationOk, up to ReadyForQuery.
pub async fn finish_startup(login: LoggedIn) -> Result<Started, UpstreamError> {
    let LoggedIn {
        mut stream,
        mut reader,
        auth_ok,
    } = login;
    let mut messages = Vec::new();
    let mut backend_key = None;
    loop {
        let msg = reader.read(&mut stream).await?;
        match msg.tag {
            backend::BACKEND_KEY_DATA => match wire::parse_backend_key_data(&msg.body) {
                Ok(key) => backend_key = Some(key),
                Err(e) => {
                    tracing::warn!(error = %e, "malformed BackendKeyData from cluster; cancel disabled")
                }
            },
            backend::ERROR_RESPONSE => {
                return Err(UpstreamError::Server(wire::parse_error_fields(&msg.body)))
            }
            backend::READY_FOR_QUERY => break,
            backend::PARAMETER_STATUS | backend::NOTICE_RESPONSE => messages.push(msg),
            other => {
                return Err(UpstreamError::Protocol(format!(
                    "unexpected message {:?} during startup",
                    char::from(other)
                )))
            }
        }
    }
    Ok(Started {
        stream,
        leftover: reader.into_leftover(),
        auth_ok,
        messages,
        backend_key,
    })
}

/// Redshift's code-13 answer: SHA256( SHA256(password ‖ salt) ‖ server nonce ‖ client nonce ).
pub fn redshift_digest(
    password: &SecretString,
    salt: &Bytes,
    server_nonce: &Bytes,
    client_nonce: &[u8],
) -> [u8; 32] {
    let inner = Sha256::new()
        .chain_update(password.expose_secret().as_bytes())
        .chain_update(salt)
        .finalize();
    Sha256::new()
        .chain_update(inner)
        .chain_update(server_nonce)
        .chain_update(client_nonce)
        .finalize()
        .into()
}

/// The code-13 client nonce as AWS's drivers form it (redshift_connector's `AUTH_REQ_DIGEST`
/// branch, the JDBC driver too): the current time as ASCII decimal milliseconds since the epoch.
pub fn client_nonce_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .to_string()
}

/// Sends a CancelRequest for `(pid, secret)` to the cluster over the same TLS rules.
pub async fn send_cancel(
    target: &UpstreamTarget,
    pid: i32,
    secret: &[u8],
) -> Result<(), UpstreamError> {
    let mut stream = connect(target).await?;
    stream
        .write_all(&wire::cancel_request(pid, secret))
        .await
        .map_err(|_| UpstreamError::Closed)?;
    let _ = stream.flush().await;
    // The server closes the connection once it has signalled the backend; waiting for
    // that means the cancel has landed before the caller lets the server move on.
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(target.connect_timeout, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let _ = stream.shutdown().await;
    Ok(())
}

impl From<UpstreamError> for Refusal {
    fn from(e: UpstreamError) -> Self {
        Refusal::from_upstream(&e)
    }
}

impl Refusal {
    /// A failed server login as the client hears it.
    pub fn from_upstream(e: &UpstreamError) -> Self {
        let hint = match e {
            UpstreamError::AuthFailed(f) | UpstreamError::Server(f) => f.hint.clone(),
            _ => None,
        };
        Refusal {
            code: e.sqlstate(),
            message: format!("cluster: {e}"),
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redshift_digest_matches_the_documented_formula() {
        let pw = SecretString::from("secret".to_owned());
        let salt = Bytes::from_static(b"salt");
        let sn = Bytes::from_static(b"server");
        let got = redshift_digest(&pw, &salt, &sn, b"client");
        let inner = Sha256::digest(b"secretsalt");
        let mut outer = inner.to_vec();
        outer.extend_from_slice(b"serverclient");
        assert_eq!(got.to_vec(), Sha256::digest(&outer).to_vec());
    }

    #[test]
    fn client_nonce_is_ascii_decimal_milliseconds_since_the_epoch() {
        fn now_ms() -> u128 {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis()
        }
        let before = now_ms();
        let nonce = client_nonce_now();
        let after = now_ms();
        assert!(nonce.bytes().all(|b| b.is_ascii_digit()), "{nonce:?}");
        let ms: u128 = nonce.parse().expect("decimal");
        assert!(
            (before..=after).contains(&ms),
            "{ms} not in {before}..={after}"
        );
    }
}
