//! A Redshift-like front for the test bed: a small server in front of a [`LocalPg`] that
//! behaves like Amazon Redshift where the proxy depends on it (see `REDSHIFT.md`).
//!
//! - TLS only: SSLRequest is answered with `S` and a certificate issued by the cluster's test
//!   CA for `localhost`/`127.0.0.1`; a plaintext StartupMessage gets FATAL 28000.
//! - `extra_float_digits` outside -15..2 is refused with 22023, as Redshift does. (Where in the
//!   login Redshift checks it is not confirmed; the front checks it before authentication.)
//!   Redshift-only startup parameters PostgreSQL would refuse are stripped.
//! - Authentication is Redshift's code 13 (SHA-256 digest with salt and nonces); the client
//!   nonce must be what AWS's drivers send: ASCII decimal milliseconds since the epoch, within
//!   ±5 minutes. The password is the newest one a [`PasswordLookup`] knows for the user.
//! - Then it logs in to PostgreSQL as the same user with the same password (so expiry and
//!   rotation are PostgreSQL's real checks) and relays the startup with `server_version`
//!   reported as `8.0.2`. BackendKeyData passes through unchanged; CancelRequests sent to the
//!   front are forwarded to PostgreSQL (TLS or not), so cancels work either way.
//! - After startup, bytes pass unchanged both ways, except statements Redshift refuses
//!   (`DISCARD`, `DEALLOCATE ALL`, `CLOSE ALL`, `LISTEN`/`UNLISTEN`/`NOTIFY`, `pg_advisory…`
//!   functions) in a simple Query or a Parse: the front answers them with an ErrorResponse.
//!
//! How a refusal keeps its place among pipelined requests: the refused Query is replaced by a
//! Sync towards PostgreSQL (a refused Parse makes the front drop client messages up to the
//! client's own Sync, which is forwarded). PostgreSQL answers that Sync with ReadyForQuery; the
//! front puts its ErrorResponse right before it. So the error arrives after the answers to
//! everything sent earlier, and the ReadyForQuery carries PostgreSQL's transaction status.
//! Unlike Redshift, a refusal inside a transaction block does not abort the transaction, and
//! a refused Parse is answered only at the client's Sync (a Flush does not bring it sooner).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::RngCore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::base::stream::Stream;
use crate::base::sync::lock;
use crate::cluster::upstream::{self, LoggedIn, UpstreamError, UpstreamTarget};
use crate::wire::protocol::{auth, backend, error_field, frontend, negotiation, sqlstate};
use crate::wire::{self, StartupFrame, WireError};
use local_cluster::{io_ctx, LocalPg, LocalPgError};
/// The front checks digests against the password the credential API issued last for a login
/// role (`IAM:alice`), as Redshift does: [`redshift_emulator::Emulator::password_lookup`].
pub use redshift_emulator::PasswordLookup;

/// What Redshift reports as `server_version`.
pub const REDSHIFT_SERVER_VERSION: &str = "8.0.2";
/// Largest startup packet the front reads.
const MAX_STARTUP_PACKET: usize = 10_000;
/// Values of `extra_float_digits` Redshift accepts.
const EXTRA_FLOAT_DIGITS: std::ops::RangeInclusive<i64> = -15..=2;
/// How far a client nonce (milliseconds since the epoch) may be from the front's clock.
const NONCE_SKEW_MS: u128 = 5 * 60 * 1000;
/// Digits of a millisecond timestamp from 2001 to 2286.
const NONCE_DIGITS: usize = 13;
/// Salt and server nonce sizes of the code-13 request.
const SALT_BYTES: usize = 4;
const SERVER_NONCE_BYTES: usize = 32;
/// Time the front gives TCP + TLS to PostgreSQL.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Startup parameters AWS's drivers send that PostgreSQL would refuse (besides `_pq_.*`).
const REDSHIFT_ONLY_PARAMS: [&str; 7] = [
    "client_protocol_version",
    "driver_version",
    // redshift_connector (2.2.0) sends it on every login; Redshift accepts it.
    "driver_discovery_version",
    "os_version",
    "plugin_name",
    "idp_type",
    "provider_name",
];

/// Why: what the front did, for tests to assert on.
#[derive(Debug, Default)]
struct Counters {
    logins_accepted: AtomicU64,
    refused_bad_nonce: AtomicU64,
    refused_bad_password: AtomicU64,
    statements_refused: AtomicU64,
    /// Sessions still to come whose first statement gets the resume artefact.
    artefacts_armed: AtomicU64,
    artefacts_sent: AtomicU64,
}

/// Why: what every connection of one front shares.
struct Shared {
    tls: Arc<rustls::ServerConfig>,
    /// PostgreSQL behind the front, verified with the cluster's CA.
    pg: UpstreamTarget,
    passwords: PasswordLookup,
    counters: Counters,
}

/// Why: a running Redshift-like front; dropping it stops the listener and every session.
pub struct RedshiftFront {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for RedshiftFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedshiftFront")
            .field("addr", &self.addr)
            .field("counters", &self.shared.counters)
            .finish_non_exhaustive()
    }
}

impl RedshiftFront {
    /// Starts a front for `pg` on 127.0.0.1 (random port), checking logins against `passwords`.
    pub async fn start(
        pg: &LocalPg,
        passwords: PasswordLookup,
    ) -> Result<RedshiftFront, LocalPgError> {
        let (cert_pem, key_pem) = pg.ca().issue(&["localhost", "127.0.0.1"])?;
        let shared = Arc::new(Shared {
            tls: server_tls(&cert_pem, &key_pem)?,
            pg: pg_target(pg)?,
            passwords,
            counters: Counters::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io_ctx("binding the Redshift-like front to 127.0.0.1"))?;
        let addr = listener
            .local_addr()
            .map_err(io_ctx("reading the front's port"))?;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        tracing::debug!(%addr, pg_port = pg.port(), "Redshift-like front listening");
        Ok(RedshiftFront {
            addr,
            shared,
            stop,
            tracker,
        })
    }

    /// Host name for clients; the front's certificate is valid for it (and for 127.0.0.1).
    pub fn host(&self) -> &str {
        "localhost"
    }

    /// TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Logins that passed the code-13 check and PostgreSQL's login.
    pub fn logins_accepted(&self) -> u64 {
        self.shared.counters.logins_accepted.load(Ordering::Relaxed)
    }

    /// Logins refused because the client nonce was not a current millisecond timestamp.
    pub fn logins_refused_bad_nonce(&self) -> u64 {
        self.shared
            .counters
            .refused_bad_nonce
            .load(Ordering::Relaxed)
    }

    /// Logins refused for a wrong digest or a user without an issued password.
    pub fn logins_refused_bad_password(&self) -> u64 {
        self.shared
            .counters
            .refused_bad_password
            .load(Ordering::Relaxed)
    }

    /// The first statement of each of the next `n` sessions fails as the first statement
    /// after a Redshift Serverless resume does: 57014 "Query cancelled." from routine
    /// `NFTSetupSessionStateOnRestore` (aws/amazon-redshift-python-driver #150).
    pub fn resume_artefact_for_next_sessions(&self, n: u64) {
        self.shared
            .counters
            .artefacts_armed
            .store(n, Ordering::SeqCst);
    }

    /// Resume artefacts sent so far.
    pub fn resume_artefacts_sent(&self) -> u64 {
        self.shared.counters.artefacts_sent.load(Ordering::SeqCst)
    }

    /// Statements answered with an error by the front (Redshift refuses them).
    pub fn statements_refused(&self) -> u64 {
        self.shared
            .counters
            .statements_refused
            .load(Ordering::Relaxed)
    }
}

impl Drop for RedshiftFront {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}

/// The front's TLS server configuration from a PEM certificate and key.
fn server_tls(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, LocalPgError> {
    let tls_err = |e: &dyn std::fmt::Display| LocalPgError::Io {
        context: "configuring the front's TLS".into(),
        source: io::Error::other(e.to_string()),
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls_err(&e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(&e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| tls_err(&e))?;
    Ok(Arc::new(config))
}

/// PostgreSQL as an upstream target, verified against the cluster's CA only.
fn pg_target(pg: &LocalPg) -> Result<UpstreamTarget, LocalPgError> {
    let tls_err = |e: &dyn std::fmt::Display| LocalPgError::Io {
        context: "configuring TLS from the front to PostgreSQL".into(),
        source: io::Error::other(e.to_string()),
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pg.ca_cert_pem().as_bytes()) {
        roots
            .add(cert.map_err(|e| tls_err(&e))?)
            .map_err(|e| tls_err(&e))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name = ServerName::try_from(pg.host().to_owned()).map_err(|e| tls_err(&e))?;
    Ok(UpstreamTarget {
        host: pg.host().to_owned(),
        port: pg.port(),
        tls: Some(Arc::new(config)),
        server_name,
        connect_timeout: PG_CONNECT_TIMEOUT,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Redshift-like front: accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (shared, stop) = (shared.clone(), stop.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                r = session(&shared, tcp) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "Redshift-like front: session ended");
                }
            }
        });
    }
}

/// Why: how a front session ended early (logged at debug; the client was told if it could be).
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("refused: {0}")]
    Refused(String),
}

/// Sends a FATAL ErrorResponse and ends the session.
async fn fatal(stream: &mut Stream, code: &str, message: &str) -> Result<(), Ended> {
    let _ = stream
        .write_all(&wire::error_response("FATAL", code, message, None))
        .await;
    let _ = stream.shutdown().await;
    Err(Ended::Refused(format!("{code}: {message}")))
}

/// One connection: negotiation, startup checks, code 13, login to PostgreSQL, relay.
async fn session(shared: &Shared, mut tcp: TcpStream) -> Result<(), Ended> {
    let mut frame = wire::read_startup_frame(&mut tcp, MAX_STARTUP_PACKET).await?;
    if frame == StartupFrame::GssEncRequest {
        tcp.write_all(&[negotiation::REFUSED]).await?;
        frame = wire::read_startup_frame(&mut tcp, MAX_STARTUP_PACKET).await?;
    }
    let (mut stream, frame) = if frame == StartupFrame::SslRequest {
        tcp.write_all(&[negotiation::SSL_ACCEPTED]).await?;
        let tls = tokio_rustls::TlsAcceptor::from(shared.tls.clone())
            .accept(tcp)
            .await?;
        let mut stream = Stream::ServerTls(Box::new(tls));
        let frame = wire::read_startup_frame(&mut stream, MAX_STARTUP_PACKET).await?;
        (stream, frame)
    } else {
        (Stream::Plain(tcp), frame)
    };
    let (minor, params) = match frame {
        StartupFrame::Cancel { pid, secret } => {
            if let Err(e) = upstream::send_cancel(&shared.pg, pid, &secret).await {
                tracing::debug!(error = %e, "Redshift-like front: forwarding a cancel failed");
            }
            return Ok(());
        }
        StartupFrame::SslRequest | StartupFrame::GssEncRequest => {
            return fatal(
                &mut stream,
                sqlstate::PROTOCOL_VIOLATION,
                "unexpected negotiation request",
            )
            .await
        }
        StartupFrame::Startup { minor, params } => (minor, params),
    };
    if !stream.is_tls() {
        return fatal(
            &mut stream,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "IAM authentication requires SSL: connect with sslmode=require or stronger",
        )
        .await;
    }
    let param = |k: &str| params.get(k).map(str::to_owned);
    let Some(user) = param("user") else {
        return fatal(
            &mut stream,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
        )
        .await;
    };
    if let Some(Err(message)) = param("extra_float_digits").map(|v| check_extra_float_digits(&v)) {
        return fatal(&mut stream, sqlstate::INVALID_PARAMETER_VALUE, &message).await;
    }
    let database = param("database")
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| user.clone());
    let mut forwarded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| forwardable(k) && *k != "query_group")
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    with_query_group(&mut forwarded, param("query_group").as_deref());
    let declined: Vec<&str> = params
        .iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if minor > 0 || !declined.is_empty() {
        stream
            .write_all(&wire::negotiate_protocol_version(0, &declined))
            .await?;
    }

    let mut reader = wire::MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE);
    let Some(password) = authenticate(shared, &mut stream, &mut reader, &user).await? else {
        return fatal(
            &mut stream,
            sqlstate::INVALID_PASSWORD,
            &format!("password authentication failed for user \"{user}\""),
        )
        .await;
    };

    let pg = match upstream::connect(&shared.pg).await {
        Ok(s) => s,
        Err(e) => return fatal(&mut stream, &e.sqlstate(), &e.to_string()).await,
    };
    let login = match upstream::login(
        pg,
        &user,
        &password,
        &database,
        &forwarded.iter().cloned().collect(),
    )
    .await
    {
        Ok(l) => l,
        Err(UpstreamError::AuthFailed(f) | UpstreamError::Server(f)) => {
            let _ = stream
                .write_all(&wire::error_response(
                    "FATAL",
                    &f.code,
                    &f.message,
                    f.hint.as_deref(),
                ))
                .await;
            let _ = stream.shutdown().await;
            return Err(Ended::Refused(format!(
                "PostgreSQL: {}: {}",
                f.code, f.message
            )));
        }
        Err(e) => return fatal(&mut stream, &e.sqlstate(), &e.to_string()).await,
    };
    let LoggedIn {
        stream: mut server,
        reader: mut server_reader,
        auth_ok,
    } = login;

    // The rest of the startup, with Redshift's server_version.
    let mut prelude = auth_ok.to_wire();
    loop {
        let msg = server_reader.read(&mut server).await?;
        match msg.tag {
            backend::PARAMETER_STATUS => match wire::parse_parameter_status(&msg.body) {
                Ok((name, _)) if name == "server_version" => prelude.extend_from_slice(
                    &wire::parameter_status("server_version", REDSHIFT_SERVER_VERSION),
                ),
                Ok((name, _)) if name == "server_version_num" => {}
                _ => prelude.extend_from_slice(&msg.to_wire()),
            },
            backend::ERROR_RESPONSE => {
                prelude.extend_from_slice(&msg.to_wire());
                stream.write_all(&prelude).await?;
                let _ = stream.shutdown().await;
                return Err(Ended::Refused(
                    "PostgreSQL refused the session after authentication".into(),
                ));
            }
            backend::READY_FOR_QUERY => {
                prelude.extend_from_slice(&msg.to_wire());
                break;
            }
            _ => prelude.extend_from_slice(&msg.to_wire()),
        }
    }
    // Nothing can follow ReadyForQuery before the client speaks, but pass it on if it did.
    prelude.extend_from_slice(&server_reader.into_leftover());
    stream.write_all(&prelude).await?;
    shared
        .counters
        .logins_accepted
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(user = %user, "Redshift-like front: login accepted");
    relay(shared, stream, server, reader.into_leftover()).await
}

/// Runs the code-13 exchange; `Some(password)` when the client proved it knows the newest
/// password issued for `user` with a well-formed nonce, `None` when it is to be refused.
async fn authenticate(
    shared: &Shared,
    stream: &mut Stream,
    reader: &mut wire::MessageReader,
    user: &str,
) -> Result<Option<SecretString>, Ended> {
    let mut salt = [0u8; SALT_BYTES];
    let mut server_nonce = [0u8; SERVER_NONCE_BYTES];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut server_nonce);
    let mut payload = BytesMut::new();
    payload.extend_from_slice(&0i32.to_be_bytes()); // algorithm 0: SHA-256
    payload.extend_from_slice(&(SALT_BYTES as i32).to_be_bytes());
    payload.extend_from_slice(&salt);
    payload.extend_from_slice(&(SERVER_NONCE_BYTES as i32).to_be_bytes());
    payload.extend_from_slice(&server_nonce);
    stream
        .write_all(&wire::auth_request(auth::REDSHIFT_DIGEST, &payload))
        .await?;

    let msg = reader.read(stream).await?;
    let answer = (msg.tag == frontend::REDSHIFT_DIGEST)
        .then(|| wire::parse_redshift_digest_response(&msg.body).ok())
        .flatten();
    let Some((digest, client_nonce)) = answer else {
        return fatal(
            stream,
            sqlstate::PROTOCOL_VIOLATION,
            "expected a SHA-256 digest answer ('d') to authentication request 13",
        )
        .await
        .map(|()| None);
    };
    let counters = &shared.counters;
    if !nonce_is_current(&client_nonce, now_ms()) {
        counters.refused_bad_nonce.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = %user, "Redshift-like front: client nonce is not a current millisecond timestamp");
        return Ok(None);
    }
    let Some(password) = (shared.passwords)(user) else {
        counters
            .refused_bad_password
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = %user, "Redshift-like front: no password issued for this user");
        return Ok(None);
    };
    let expected = upstream::redshift_digest(
        &password,
        &Bytes::copy_from_slice(&salt),
        &Bytes::copy_from_slice(&server_nonce),
        &client_nonce,
    );
    if !same_bytes(&expected, &digest) {
        counters
            .refused_bad_password
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = %user, "Redshift-like front: wrong digest");
        return Ok(None);
    }
    Ok(Some(password))
}

/// Redshift's `query_group` (a setting PostgreSQL lacks) lives on PostgreSQL as the custom
/// setting `redshift.query_group`, started at the login's value or Redshift's default
/// `unset`, so `SET`, `RESET`, `SHOW`, `set_config` and `current_setting` of it behave.
fn with_query_group(forwarded: &mut Vec<(String, String)>, value: Option<&str>) {
    let value: String = value
        .unwrap_or("unset")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect();
    let option = format!("-c redshift.query_group={value}");
    match forwarded.iter_mut().find(|(k, _)| k == "options") {
        Some((_, v)) => {
            v.push(' ');
            v.push_str(&option);
        }
        None => forwarded.push(("options".into(), option)),
    }
}

/// A Query or Parse whose SQL names `query_group`, with the name as PostgreSQL knows it.
fn with_query_group_sql(tag: u8, msg: BytesMut) -> BytesMut {
    let body = &msg[5..];
    let Some(text) = utf8_sql(tag, body) else {
        return msg;
    };
    let Some(renamed) = rename_query_group(&text) else {
        return msg;
    };
    if tag == frontend::QUERY {
        return wire::query(&renamed);
    }
    match wire::Parse::decode(body) {
        Ok(mut p) => {
            p.query = renamed;
            let name = p.name.clone();
            p.encode_as(&name)
        }
        Err(_) => msg,
    }
}

/// The SQL of a Query or Parse body when it is UTF-8 (the front reads no other encoding).
fn utf8_sql(tag: u8, body: &[u8]) -> Option<String> {
    if tag == frontend::QUERY {
        let q = wire::Query::decode(body).ok()?;
        q.text_raw.is_none().then_some(q.text)
    } else {
        let p = wire::Parse::decode(body).ok()?;
        p.query_raw.is_none().then_some(p.query)
    }
}

/// `sql` with each `query_group` word (not already qualified) as `redshift.query_group`.
fn rename_query_group(sql: &str) -> Option<String> {
    const NAME: &str = "query_group";
    let lower = sql.to_ascii_lowercase();
    if !lower.contains(NAME) {
        return None;
    }
    let bytes = lower.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16);
    let mut i = 0;
    while let Some(found) = lower[i..].find(NAME) {
        let at = i + found;
        let end = at + NAME.len();
        let word_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.';
        let standalone = (at == 0 || !word_char(bytes[at - 1]))
            && (end == bytes.len() || !word_char(bytes[end]));
        out.push_str(&sql[i..at]);
        if standalone {
            out.push_str("redshift.");
        }
        out.push_str(&sql[at..end]);
        i = end;
    }
    out.push_str(&sql[i..]);
    Some(out)
}

/// Startup parameters passed on to PostgreSQL.
fn forwardable(key: &str) -> bool {
    !matches!(key, "user" | "database")
        && !key.starts_with("_pq_.")
        && !REDSHIFT_ONLY_PARAMS.contains(&key)
}

/// Redshift's check of `extra_float_digits`: an integer in -15..2, else the error message.
fn check_extra_float_digits(value: &str) -> Result<(), String> {
    let Ok(n) = value.trim().parse::<i64>() else {
        return Err(format!(
            "invalid value for parameter \"extra_float_digits\": \"{value}\""
        ));
    };
    if EXTRA_FLOAT_DIGITS.contains(&n) {
        return Ok(());
    }
    Err(format!(
        "{n} is outside the valid range for parameter \"extra_float_digits\" ({} .. {})",
        EXTRA_FLOAT_DIGITS.start(),
        EXTRA_FLOAT_DIGITS.end()
    ))
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A client nonce as AWS's drivers form it: 13 ASCII digits of milliseconds since the epoch,
/// within [`NONCE_SKEW_MS`] of `now_ms`.
fn nonce_is_current(nonce: &[u8], now_ms: u128) -> bool {
    if nonce.len() != NONCE_DIGITS || !nonce.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let Some(ms) = std::str::from_utf8(nonce)
        .ok()
        .and_then(|s| s.parse::<u128>().ok())
    else {
        return false;
    };
    ms.abs_diff(now_ms) <= NONCE_SKEW_MS
}

/// Compares two byte strings without stopping at the first difference.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// Why: a refusal waiting for the ReadyForQuery it precedes (the n-th after startup).
type PendingRefusals = Mutex<VecDeque<(u64, BytesMut)>>;

/// After startup: client bytes go to PostgreSQL except refused statements; server bytes come
/// back unchanged, with the front's ErrorResponses put before their ReadyForQuery.
async fn relay(
    shared: &Shared,
    client: Stream,
    server: Stream,
    client_leftover: BytesMut,
) -> Result<(), Ended> {
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut server_r, mut server_w) = tokio::io::split(server);
    let pending = PendingRefusals::default();
    let up = async {
        let mut framer = ClientFramer::new(client_leftover);
        framer.artefact = shared
            .counters
            .artefacts_armed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        pump(&mut client_r, &mut server_w, |chunk, out| {
            framer.buf.extend_from_slice(chunk);
            let refusals = framer.feed(out)?;
            if std::mem::take(&mut framer.artefact_sent) {
                shared
                    .counters
                    .artefacts_sent
                    .fetch_add(1, Ordering::SeqCst);
            }
            if !refusals.is_empty() {
                shared
                    .counters
                    .statements_refused
                    .fetch_add(refusals.len() as u64, Ordering::Relaxed);
                lock(&pending).extend(refusals);
            }
            Ok(())
        })
        .await
    };
    let down = async {
        let mut framer = ServerFramer::default();
        pump(&mut server_r, &mut client_w, |chunk, out| {
            framer.feed(chunk, out, &pending)
        })
        .await
    };
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// Reads `r` to its end, passing each read through `transform` and writing the result to `w`;
/// shuts `w` down at the end.
async fn pump<R, W, F>(r: &mut R, w: &mut W, mut transform: F) -> Result<(), Ended>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FnMut(&[u8], &mut BytesMut) -> Result<(), WireError>,
{
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = BytesMut::new();
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
        out.clear();
        transform(&chunk[..n], &mut out)?;
        if !out.is_empty() {
            w.write_all(&out).await?;
            w.flush().await?;
        }
    }
}

/// Why: reads the client's message framing (never the contents, except the SQL of Query and
/// Parse) to find refused statements and to number the ReadyForQuery messages to come.
struct ClientFramer {
    buf: BytesMut,
    /// Bytes of the current message still to pass (or drop) before the next message starts.
    streaming: usize,
    /// Whether those bytes go to the server.
    forward_current: bool,
    /// After a refused Parse: drop client messages until Sync.
    skipping: bool,
    /// ReadyForQuery messages the server will have sent once it answers everything forwarded.
    expected_rfq: u64,
    /// Syncs forwarded since the last Query or Execute: PostgreSQL ignores those sent during
    /// COPY FROM STDIN, which ends with CopyDone or CopyFail.
    syncs_since_execute: u64,
    /// The session's first statement gets the resume artefact.
    artefact: bool,
    /// It got it (counted once by the relay).
    artefact_sent: bool,
}

impl ClientFramer {
    fn new(buf: BytesMut) -> Self {
        Self {
            buf,
            streaming: 0,
            forward_current: true,
            skipping: false,
            expected_rfq: 0,
            syncs_since_execute: 0,
            artefact: false,
            artefact_sent: false,
        }
    }

    /// Moves what can be decided of `buf` to `out`; returns the refusals made, each with the
    /// number of the ReadyForQuery it goes before.
    fn feed(&mut self, out: &mut BytesMut) -> Result<Vec<(u64, BytesMut)>, WireError> {
        let mut refusals = Vec::new();
        loop {
            if self.streaming > 0 {
                let n = self.streaming.min(self.buf.len());
                if n == 0 {
                    return Ok(refusals);
                }
                let part = self.buf.split_to(n);
                if self.forward_current {
                    out.extend_from_slice(&part);
                }
                self.streaming -= n;
                continue;
            }
            if self.buf.len() < 5 {
                return Ok(refusals);
            }
            let tag = self.buf[0];
            let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l >= 4)
                .ok_or(WireError::BadLength(len.into()))?;
            if self.skipping {
                self.forward_current = tag == frontend::SYNC;
                self.streaming = len + 1;
                if tag == frontend::SYNC {
                    self.skipping = false;
                    self.count_sync();
                }
                continue;
            }
            if matches!(tag, frontend::QUERY | frontend::PARSE) {
                if self.buf.len() < len + 1 {
                    self.buf.reserve(len + 1 - self.buf.len());
                    return Ok(refusals);
                }
                let msg = self.buf.split_to(len + 1);
                let sql = utf8_sql(tag, &msg[5..]);
                let refusal = if std::mem::take(&mut self.artefact) {
                    self.artefact_sent = true;
                    Some(RESUME_ARTEFACT)
                } else {
                    sql.and_then(|sql| refusal(&sql))
                };
                match (tag, refusal) {
                    (frontend::QUERY, Some((code, message))) => {
                        // A Sync in its place: PostgreSQL's ReadyForQuery keeps the order.
                        out.extend_from_slice(&wire::sync());
                        self.expected_rfq += 1;
                        self.syncs_since_execute = 0;
                        let error = refusal_error(code, &message);
                        refusals.push((self.expected_rfq, error));
                    }
                    (_, Some((code, message))) => {
                        // The client's next Sync is answered after the error.
                        self.skipping = true;
                        let error = refusal_error(code, &message);
                        refusals.push((self.expected_rfq + 1, error));
                    }
                    (frontend::QUERY, None) => {
                        out.extend_from_slice(&with_query_group_sql(tag, msg));
                        self.expected_rfq += 1;
                        self.syncs_since_execute = 0;
                    }
                    (_, None) => out.extend_from_slice(&with_query_group_sql(tag, msg)),
                }
                continue;
            }
            match tag {
                frontend::SYNC => self.count_sync(),
                frontend::FUNCTION_CALL => self.expected_rfq += 1,
                frontend::EXECUTE => self.syncs_since_execute = 0,
                frontend::COPY_DONE | frontend::COPY_FAIL => {
                    self.expected_rfq -= self.syncs_since_execute.min(self.expected_rfq);
                    self.syncs_since_execute = 0;
                }
                _ => {}
            }
            self.forward_current = true;
            self.streaming = len + 1;
        }
    }

    fn count_sync(&mut self) {
        self.expected_rfq += 1;
        self.syncs_since_execute += 1;
    }
}

/// Why: follows the server's message framing (passing every byte on) to put the front's
/// ErrorResponses right before the ReadyForQuery they belong to.
#[derive(Default)]
struct ServerFramer {
    /// Bytes of the current message (length word included) still to pass; 0 at a boundary.
    remaining: usize,
    /// Length-word bytes seen of the current message (0..4) and their values.
    len_have: usize,
    len_bytes: [u8; 4],
    /// Whether the current message's length word is still being read.
    in_header: bool,
    /// ReadyForQuery messages seen since startup.
    rfq_seen: u64,
}

impl ServerFramer {
    fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut BytesMut,
        pending: &PendingRefusals,
    ) -> Result<(), WireError> {
        let mut rest = chunk;
        while let Some((&first, after)) = rest.split_first() {
            if self.in_header {
                self.len_bytes[self.len_have] = first;
                self.len_have += 1;
                out.extend_from_slice(&[first]);
                rest = after;
                if self.len_have == 4 {
                    let len = i32::from_be_bytes(self.len_bytes);
                    self.remaining = usize::try_from(len)
                        .ok()
                        .filter(|&l| l >= 4)
                        .ok_or(WireError::BadLength(len.into()))?
                        - 4;
                    self.in_header = false;
                    self.len_have = 0;
                }
            } else if self.remaining > 0 {
                let n = self.remaining.min(rest.len());
                out.extend_from_slice(&rest[..n]);
                self.remaining -= n;
                rest = &rest[n..];
            } else {
                if first == backend::READY_FOR_QUERY {
                    self.rfq_seen += 1;
                    let mut pending = lock(pending);
                    while pending.front().is_some_and(|(n, _)| *n <= self.rfq_seen) {
                        if let Some((_, error)) = pending.pop_front() {
                            out.extend_from_slice(&error);
                        }
                    }
                }
                out.extend_from_slice(&[first]);
                self.in_header = true;
                rest = after;
            }
        }
        Ok(())
    }
}

/// The SQLSTATE and message Redshift answers `sql` with, if it refuses any of its statements.
/// Marks the resume artefact among refusals (its ErrorResponse names the routine).
const RESUME_ARTEFACT: (&str, String) = (sqlstate::QUERY_CANCELED, String::new());

/// The ErrorResponse of a refusal: the resume artefact as Redshift sends it, else plain.
fn refusal_error(code: &str, message: &str) -> BytesMut {
    if code != sqlstate::QUERY_CANCELED || !message.is_empty() {
        return wire::error_response("ERROR", code, message, None);
    }
    let mut body = Vec::new();
    for (k, v) in [
        (error_field::SEVERITY, "ERROR"),
        (error_field::CODE, sqlstate::QUERY_CANCELED),
        (error_field::MESSAGE, "Query cancelled."),
        (
            error_field::FILE,
            "/home/ec2-user/padb/src/sys/xen_execute.cpp",
        ),
        (error_field::LINE, "10542"),
        (error_field::ROUTINE, "NFTSetupSessionStateOnRestore"),
    ] {
        body.push(k);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.extend_from_slice(&[backend::ERROR_RESPONSE]);
    out.extend_from_slice(
        &i32::try_from(body.len() + 4)
            .unwrap_or(i32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

fn refusal(sql: &str) -> Option<(&'static str, String)> {
    wire::sql::statement_words(sql)
        .iter()
        .find_map(|words| refuse_statement(words))
}

/// Redshift's answer to one statement, given its words (keywords and identifiers).
fn refuse_statement(words: &[&str]) -> Option<(&'static str, String)> {
    let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
    let word = |i: usize| lower.get(i).map(String::as_str);
    let syntax_error = |i: usize| {
        let near = words.get(i).copied().unwrap_or_default();
        Some((
            sqlstate::SYNTAX_ERROR,
            format!("syntax error at or near \"{near}\""),
        ))
    };
    match word(0)? {
        // DISCARD came with PostgreSQL 8.3; Redshift's parser does not know it.
        "discard" => return syntax_error(0),
        "deallocate" => {
            let all = if word(1) == Some("prepare") { 2 } else { 1 };
            if word(all) == Some("all") {
                return syntax_error(all);
            }
        }
        "close" if word(1) == Some("all") => return syntax_error(1),
        kw @ ("listen" | "unlisten" | "notify") => {
            return Some((
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("{} is not supported", kw.to_ascii_uppercase()),
            ))
        }
        _ => {}
    }
    // A function name may come schema-qualified (`pg_catalog.pg_advisory_lock`).
    lower
        .iter()
        .filter_map(|w| w.rsplit('.').next())
        .find(|f| f.starts_with("pg_advisory"))
        .map(|f| {
            (
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!("function {f}() is not supported"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sql: &str) -> Option<&'static str> {
        refusal(sql).map(|(c, _)| c)
    }

    #[test]
    fn refuses_what_redshift_refuses() {
        for sql in [
            "DISCARD ALL",
            "discard temp",
            "DEALLOCATE ALL",
            "deallocate prepare all",
            "CLOSE ALL",
        ] {
            assert_eq!(code(sql), Some("42601"), "{sql}");
        }
        for sql in [
            "LISTEN chan",
            "unlisten *",
            "NOTIFY chan, 'x'",
            "SELECT pg_advisory_unlock_all()",
            "select pg_catalog.PG_ADVISORY_LOCK(1)",
        ] {
            assert_eq!(code(sql), Some("0A000"), "{sql}");
        }
    }

    #[test]
    fn allows_what_redshift_allows() {
        for sql in [
            "RESET ALL",
            "DEALLOCATE p",
            "CLOSE c",
            "SELECT 'DISCARD ALL'",
            "SELECT $$ LISTEN x $$, $1",
            "SELECT E'\\' ; DISCARD ALL'",
            "SELECT \"discard\" FROM t",
            "-- DISCARD ALL\nSELECT 1",
            "SELECT 1 /* ; LISTEN x /* nested */ ; */",
            "",
        ] {
            assert_eq!(code(sql), None, "{sql}");
        }
    }

    #[test]
    fn skips_leading_comments_and_checks_every_statement() {
        assert_eq!(code("  /* reset */ -- x\n  discard ALL"), Some("42601"));
        assert_eq!(code("SELECT 1; DISCARD ALL; SELECT 2"), Some("42601"));
        assert_eq!(code("SELECT $tag$;$tag$; listen x"), Some("0A000"));
    }

    #[test]
    fn syntax_errors_name_the_token_as_written() {
        assert_eq!(
            refusal("Discard All").map(|(_, m)| m).as_deref(),
            Some("syntax error at or near \"Discard\"")
        );
        assert_eq!(
            refusal("DEALLOCATE ALL").map(|(_, m)| m).as_deref(),
            Some("syntax error at or near \"ALL\"")
        );
    }

    #[test]
    fn extra_float_digits_outside_redshifts_range_is_refused_with_its_message() {
        assert_eq!(check_extra_float_digits("2"), Ok(()));
        assert_eq!(check_extra_float_digits("-15"), Ok(()));
        assert_eq!(
            check_extra_float_digits("3"),
            Err(
                "3 is outside the valid range for parameter \"extra_float_digits\" (-15 .. 2)"
                    .into()
            )
        );
        assert!(check_extra_float_digits("x").is_err());
    }

    #[test]
    fn nonce_must_be_current_milliseconds_in_ascii() {
        let now = 1_763_900_000_000u128;
        assert!(nonce_is_current(b"1763900000000", now));
        assert!(nonce_is_current(b"1763900299999", now));
        assert!(
            !nonce_is_current(b"1763900300001", now),
            "more than 5 minutes ahead"
        );
        assert!(
            !nonce_is_current(b"1763899699999", now),
            "more than 5 minutes behind"
        );
        assert!(!nonce_is_current(b"176390000000", now), "12 digits");
        assert!(!nonce_is_current(b"176390000000x", now));
        assert!(!nonce_is_current(&[0xab; 32], now));
    }

    #[test]
    fn startup_parameters_redshift_only_are_not_forwarded() {
        for k in [
            "client_protocol_version",
            "driver_version",
            "_pq_.compression",
            "user",
        ] {
            assert!(!forwardable(k), "{k}");
        }
        assert!(forwardable("application_name"));
    }

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn refused_query_becomes_a_sync_and_others_pass_byte_for_byte_even_when_split() {
        let mut input = msg(b'Q', b"SELECT 1\0");
        input.extend(msg(b'Q', b"DISCARD ALL\0"));
        input.extend(msg(b'd', &[7; 100]));
        let mut framer = ClientFramer::new(BytesMut::new());
        let mut out = BytesMut::new();
        let mut refusals = Vec::new();
        for byte in &input {
            framer.buf.extend_from_slice(&[*byte]);
            refusals.extend(framer.feed(&mut out).unwrap());
        }
        let mut expected = msg(b'Q', b"SELECT 1\0");
        expected.extend(msg(b'S', b""));
        expected.extend(msg(b'd', &[7; 100]));
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].0, 2, "goes before the second ReadyForQuery");
    }

    #[test]
    fn refused_parse_drops_messages_until_sync() {
        let mut input = msg(b'P', b"\0LISTEN x\0\0\0");
        input.extend(msg(b'D', b"S\0"));
        input.extend(msg(b'S', b""));
        input.extend(msg(b'Q', b"SELECT 1\0"));
        let mut framer = ClientFramer::new(BytesMut::from(&input[..]));
        let mut out = BytesMut::new();
        let refusals = framer.feed(&mut out).unwrap();
        let mut expected = msg(b'S', b"");
        expected.extend(msg(b'Q', b"SELECT 1\0"));
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(refusals[0].0, 1);
        assert_eq!(framer.expected_rfq, 2);
    }

    #[test]
    fn syncs_ignored_during_copy_in_are_not_counted() {
        let mut input = msg(b'B', b"");
        input.extend(msg(b'E', b"\0\0\0\0\0"));
        input.extend(msg(b'S', b""));
        input.extend(msg(b'd', b"1\n"));
        input.extend(msg(b'c', b""));
        input.extend(msg(b'S', b""));
        let mut framer = ClientFramer::new(BytesMut::from(&input[..]));
        let mut out = BytesMut::new();
        framer.feed(&mut out).unwrap();
        assert_eq!(&out[..], &input[..]);
        assert_eq!(framer.expected_rfq, 1);
    }

    #[test]
    fn server_framer_puts_errors_before_their_ready_for_query_and_passes_bytes() {
        let mut input = msg(b'C', b"SELECT 1\0");
        input.extend(msg(b'Z', b"I"));
        input.extend(msg(b'Z', b"T"));
        let pending = PendingRefusals::default();
        let error = wire::error_response("ERROR", "42601", "x", None);
        lock(&pending).push_back((2, error.clone()));
        let mut framer = ServerFramer::default();
        let mut out = BytesMut::new();
        for byte in &input {
            framer.feed(&[*byte], &mut out, &pending).unwrap();
        }
        let mut expected = msg(b'C', b"SELECT 1\0");
        expected.extend(msg(b'Z', b"I"));
        expected.extend_from_slice(&error);
        expected.extend(msg(b'Z', b"T"));
        assert_eq!(&out[..], &expected[..]);
        assert!(lock(&pending).is_empty());
    }
}
