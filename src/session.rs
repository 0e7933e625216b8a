//! One client connection from accept to close: negotiate, map, mint, log in, relay.
//!
//! This is where the pieces meet; each decision is delegated: the user map says
//! who the client is, the cache says which credential to use, the connector logs
//! in, the relay moves bytes. Every failure before the relay becomes one
//! ErrorResponse with a SQLSTATE and a message naming the cause.

use crate::cache::{CachedCredential, CredentialCache, Source};
use crate::cancel::{CancelKey, CancelRegistry};
use crate::client::{self, ClientRequest};
use crate::config::Config;
use crate::credentials::CredentialRequest;
use crate::endpoint::{EndpointError, EndpointResolver};
use crate::mapping::UserMap;
use crate::relay::{self, RelayEnd};
use crate::stream::Stream;
use crate::upstream::{self, LoggedIn, UpstreamError, UpstreamTarget};
use crate::wire;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Everything sessions share: configuration, caches, TLS and the cancel registry.
pub struct Shared {
    pub config: Config,
    pub users: UserMap,
    pub cache: CredentialCache,
    pub endpoint: EndpointResolver,
    pub client_tls: Arc<rustls::ServerConfig>,
    pub cancels: Arc<CancelRegistry>,
    /// Fires when the drain time after a shutdown signal is over.
    pub hard_stop: CancellationToken,
}

/// A failure before the relay, as the client will hear it.
struct Refusal {
    code: String,
    message: String,
    hint: Option<String>,
}

impl Refusal {
    fn new(code: &str, message: impl Into<String>, hint: Option<&str>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            hint: hint.map(Into::into),
        }
    }
}

impl From<EndpointError> for Refusal {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::Aws(c) => Refusal::new(c.sqlstate(), c.to_string(), c.hint()),
            other => Refusal::new("08001", other.to_string(), None),
        }
    }
}

impl From<UpstreamError> for Refusal {
    fn from(e: UpstreamError) -> Self {
        let hint = match &e {
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

/// Parameters the client sent that are not forwarded upstream.
fn forwardable(key: &str) -> bool {
    !matches!(key, "user" | "database") && !key.starts_with("_pq_.")
}

/// Handles one accepted TCP connection to the end.
pub async fn run(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let limits = &shared.config.limits;
    let negotiated = tokio::time::timeout(
        limits.handshake_timeout(),
        client::negotiate(tcp, &shared.client_tls, limits.max_startup_packet_bytes),
    )
    .await;
    let (mut stream, minor, params) = match negotiated {
        Err(_) => {
            tracing::info!(%peer, "client did not finish the startup handshake in time; closed");
            return;
        }
        Ok((_, Ok(ClientRequest::Cancel { pid, secret }))) => {
            shared.cancels.cancel(pid, &secret).await;
            return;
        }
        Ok((
            _,
            Ok(ClientRequest::Startup {
                stream,
                minor,
                params,
            }),
        )) => (stream, minor, params),
        Ok((stream, Err(e))) => {
            tracing::info!(%peer, error = %e.detail, "bad client handshake; closed");
            if let (Some(mut s), Some((code, msg))) = (stream, e.reply) {
                client::reject(&mut s, code, &msg, None).await;
            }
            return;
        }
    };
    let param = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let Some(client_user) = param("user").map(str::to_owned) else {
        client::reject(
            &mut stream,
            "28000",
            "no PostgreSQL user name specified in startup packet",
            None,
        )
        .await;
        return;
    };
    let app = param("application_name").unwrap_or("").to_owned();
    let database = param("database")
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .or_else(|| shared.config.cluster.default_database.clone())
        .unwrap_or_else(|| client_user.clone());
    let forwarded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| forwardable(k))
        .cloned()
        .collect();
    // Protocol options we do not implement are declined the way PostgreSQL does;
    // `_pq_.compression` (sent by Redshift's JDBC driver) is dropped silently.
    let declined: Vec<&str> = params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_.") && *k != "_pq_.compression")
        .collect();
    let span = tracing::info_span!("session", %peer, user = %client_user, db = %database);
    let _enter = span.enter();
    drop(_enter);

    let started = Instant::now();
    let established = {
        let fut = establish(&shared, &client_user, &database, &forwarded);
        tokio::time::timeout(limits.login_timeout(), fut).await
    };
    let (login, target, source, db_user) = match established {
        Ok(Ok(v)) => v,
        Ok(Err(r)) => {
            tracing::info!(parent: &span, code = %r.code, reason = %r.message, "login refused");
            client::reject(&mut stream, &r.code, &r.message, r.hint.as_deref()).await;
            return;
        }
        Err(_) => {
            tracing::warn!(parent: &span, "login did not complete in time");
            client::reject(
                &mut stream,
                "08001",
                &format!(
                    "login through the proxy did not complete within {} s (limits.login_timeout_secs): AWS credential API or cluster too slow",
                    limits.login_timeout_secs
                ),
                None,
            )
            .await;
            return;
        }
    };

    let mut prelude = BytesMut::new();
    if minor > 0 || !declined.is_empty() {
        prelude.extend_from_slice(&wire::negotiate_protocol_version(0, &declined));
    }
    prelude.extend_from_slice(&login.auth_ok.to_wire());
    let LoggedIn {
        stream: mut upstream,
        mut reader,
        ..
    } = login;
    // Pass the rest of the startup through, swapping in our own cancel key.
    let mut cancel_key: Option<CancelKey> = None;
    loop {
        let msg = match reader.read(&mut upstream).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(parent: &span, error = %e, "cluster failed after authentication");
                client::reject(
                    &mut stream,
                    "08006",
                    &format!("cluster closed the session during startup: {e}"),
                    None,
                )
                .await;
                return;
            }
        };
        match msg.tag {
            b'K' => match wire::parse_backend_key_data(&msg.body) {
                Ok((pid, secret)) => {
                    let key = shared.cancels.register(target.clone(), pid, secret);
                    prelude.extend_from_slice(&wire::backend_key_data(key.pid, &key.secret));
                    cancel_key = Some(key);
                }
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "malformed BackendKeyData from cluster; cancel disabled")
                }
            },
            b'E' => {
                prelude.extend_from_slice(&msg.to_wire());
                let _ = stream.write_all(&prelude).await;
                let _ = stream.shutdown().await;
                tracing::info!(parent: &span, error = %wire::parse_error_fields(&msg.body).message, "cluster refused the session after authentication");
                return;
            }
            b'Z' => {
                prelude.extend_from_slice(&msg.to_wire());
                break;
            }
            _ => prelude.extend_from_slice(&msg.to_wire()),
        }
    }
    prelude.extend_from_slice(&reader.into_leftover());
    if stream.write_all(&prelude).await.is_err() {
        return;
    }
    let how = match source {
        Source::Cached => "cached credential, no AWS call",
        Source::Fetched => "new credential from GetClusterCredentials",
    };
    tracing::info!(
        parent: &span,
        app = %app,
        db_user = %db_user,
        credential = if source == Source::Cached { "cached" } else { "minted" },
        client_tls = stream.is_tls(),
        login_ms = started.elapsed().as_millis() as u64,
        "session established: {client_user} logged in as {db_user} ({how})"
    );
    let (traffic, end) = relay::relay(stream, upstream, shared.hard_stop.clone()).await;
    drop(cancel_key);
    match end {
        RelayEnd::Closed(None) => {
            tracing::info!(parent: &span, bytes_in = traffic.client_to_server, bytes_out = traffic.server_to_client, "session closed")
        }
        RelayEnd::Closed(Some(e)) => {
            tracing::info!(parent: &span, error = %e, "session ended with an error")
        }
        RelayEnd::Shutdown => tracing::info!(parent: &span, "session closed by proxy shutdown"),
    }
}

/// Maps the user, gets a credential and logs in upstream, re-minting once if the cluster refuses a cached password.
async fn establish(
    shared: &Shared,
    client_user: &str,
    database: &str,
    forwarded: &[(String, String)],
) -> Result<(LoggedIn, Arc<UpstreamTarget>, Source, String), Refusal> {
    let Some(identity) = shared.users.resolve(client_user) else {
        return Err(Refusal::new(
            "28000",
            format!("no [[users]] rule of the proxy matches user \"{client_user}\""),
            Some("add a [[users]] rule for this user (or client_user = \"*\")"),
        ));
    };
    let req = CredentialRequest {
        cluster_identifier: shared.config.cluster.identifier.clone(),
        db_user: identity.db_user,
        db_name: database.to_owned(),
        db_groups: identity.db_groups,
        auto_create: identity.auto_create,
        duration_seconds: shared.config.cluster.duration_seconds,
    };
    let target = shared.endpoint.target().await?;
    let mut retried = false;
    loop {
        let (cred, source) = shared
            .cache
            .get(&req)
            .await
            .map_err(|c| Refusal::new(c.sqlstate(), c.to_string(), c.hint()))?;
        match login_once(shared, &target, &cred, database, forwarded).await {
            Ok(l) => return Ok((l, target, source, cred.credential.db_user.clone())),
            Err(UpstreamError::AuthFailed(f)) if source == Source::Cached && !retried => {
                // The cached password no longer works (rotated, expired early): mint again once.
                tracing::info!(code = %f.code, "cluster refused the cached credential; minting a new one");
                shared.cache.invalidate(&req, &cred);
                retried = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn login_once(
    shared: &Shared,
    target: &Arc<UpstreamTarget>,
    cred: &Arc<CachedCredential>,
    database: &str,
    forwarded: &[(String, String)],
) -> Result<LoggedIn, UpstreamError> {
    let stream: Stream = match upstream::connect(target).await {
        Ok(s) => s,
        Err(e) => {
            if matches!(
                e,
                UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }
            ) {
                shared.endpoint.forget(target).await;
            }
            return Err(e);
        }
    };
    let c = &cred.credential;
    match tokio::time::timeout(
        shared.config.limits.handshake_timeout(),
        upstream::login(stream, &c.db_user, &c.password, database, forwarded),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Protocol(
            "the cluster did not finish the login in time".into(),
        )),
    }
}
