//! One client connection from accept to close: negotiate, map, mint, log in, relay.
//!
//! This is where the pieces meet; each decision is delegated: the user map says
//! who the client is, the cache says which credential to use, the connector logs
//! in, the relay moves bytes. Every failure before the relay becomes one
//! ErrorResponse with a SQLSTATE and a message naming the cause.

use crate::audit::AuditRecord;
use crate::cache::{CredentialCache, Source};
use crate::cancel::{CancelKey, CancelRegistry};
use crate::client::{self, ClientRequest};
use crate::clientauth::{self, ClientAuthError, ScramVerifier};
use crate::config::ClientAuthMethod;
use crate::config::{ClusterConfig, Config, CredentialMode};
use crate::credentials::{CredentialRequest, SharedApi};
use crate::endpoint::{EndpointError, EndpointResolver};
use crate::mapping::{Identity, UserMap};
use crate::relay::{self, RelayEnd};
use crate::stream::Stream;
use crate::upstream::{self, LoggedIn, UpstreamError, UpstreamTarget};
use crate::userlimit::UserSlots;
use crate::wire;
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// One configured target with its endpoint resolver.
pub struct Target {
    pub config: ClusterConfig,
    pub endpoint: EndpointResolver,
}

/// Everything sessions share: configuration, caches, TLS and the cancel registry.
pub struct Shared {
    pub config: Config,
    pub users: UserMap,
    pub api: SharedApi,
    pub cache: CredentialCache,
    pub targets: Vec<Target>,
    pub client_tls: Arc<rustls::ServerConfig>,
    pub cancels: Arc<CancelRegistry>,
    /// Fires when the drain time after a shutdown signal is over.
    pub hard_stop: CancellationToken,
    /// Open sessions per client user (`limits.max_connections_per_user`).
    pub user_slots: Arc<UserSlots>,
    /// SCRAM verifiers per client user (`[client_auth] method = "scram-sha-256"`).
    pub verifiers: HashMap<String, ScramVerifier>,
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

/// Handles one accepted TCP connection to the end; `fixed_target` is set for a target's own listener.
pub async fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    fixed_target: Option<usize>,
) {
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
    let mut audit = AuditRecord::new(peer, &client_user);
    audit.client_tls = stream.is_tls();
    audit.application_name = param("application_name").unwrap_or("").to_owned();
    let mut client_reader = wire::MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE);
    let authenticated = tokio::time::timeout(
        limits.handshake_timeout(),
        authenticate_client(&shared, &mut stream, &mut client_reader, &client_user),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ClientAuthError::Protocol(
            "client authentication timed out".into(),
        ))
    });
    if let Err(e) = authenticated {
        tracing::info!(%peer, user = %client_user, error = %e, "client authentication failed");
        if !matches!(e, ClientAuthError::Closed) {
            refuse(&mut stream, &mut audit, e.sqlstate(), &e.to_string(), None).await;
        }
        return;
    }
    // Counted after authentication, so unauthenticated clients cannot use up a user's slots.
    let Some(_user_slot) = shared.user_slots.acquire(&client_user) else {
        tracing::warn!(%peer, user = %client_user, "per-user connection limit reached; refusing");
        refuse(
            &mut stream,
            &mut audit,
            "53300",
            &format!("too many connections for user \"{client_user}\" (proxy limit max_connections_per_user)"),
            None,
        )
        .await;
        return;
    };
    // Bytes the client sent after authenticating (pipelined queries) go upstream first.
    let client_leftover = client_reader.into_leftover();
    let requested = param("database").filter(|d| !d.is_empty());
    let routed = match fixed_target {
        Some(i) => Ok((i, requested)),
        None => shared.config.route(requested),
    };
    let (target_index, dbname) = match routed {
        Ok(r) => r,
        Err(msg) => {
            tracing::info!(%peer, user = %client_user, reason = %msg, "login refused");
            refuse(&mut stream, &mut audit, "3D000", &msg, None).await;
            return;
        }
    };
    let target = &shared.targets[target_index];
    audit.target = target.config.label().to_owned();
    let Some(identity) = shared.users.resolve(&client_user) else {
        let msg = format!("no [[users]] rule of the proxy matches user \"{client_user}\"");
        tracing::info!(%peer, user = %client_user, reason = %msg, "login refused");
        let hint = "add a [[users]] rule for this user (or client_user = \"*\")";
        refuse(&mut stream, &mut audit, "28000", &msg, Some(hint)).await;
        return;
    };
    audit.iam_identity = identity
        .role
        .as_ref()
        .map_or_else(|| "proxy".into(), |r| r.arn.clone());
    // "name" alone (several targets) means the target's default database.
    let named_target_only = requested.is_some() && dbname.is_none();
    let database = dbname
        .map(str::to_owned)
        .or_else(|| target.config.default_database.clone())
        .unwrap_or_else(|| {
            if named_target_only {
                "dev".to_owned()
            } else {
                client_user.clone()
            }
        });
    audit.database = database.clone();
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
    let span = tracing::info_span!("session", %peer, user = %client_user, target = %target.config.label(), db = %database);
    let _enter = span.enter();
    drop(_enter);

    let started = Instant::now();
    let established = {
        let fut = establish(&shared, target, identity, &database, &forwarded);
        tokio::time::timeout(limits.login_timeout(), fut).await
    };
    let (login, upstream_target, source, db_user) = match established {
        Ok(Ok(v)) => v,
        Ok(Err(r)) => {
            tracing::info!(parent: &span, code = %r.code, reason = %r.message, "login refused");
            refuse(
                &mut stream,
                &mut audit,
                &r.code,
                &r.message,
                r.hint.as_deref(),
            )
            .await;
            return;
        }
        Err(_) => {
            tracing::warn!(parent: &span, "login did not complete in time");
            refuse(
                &mut stream,
                &mut audit,
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
                refuse(
                    &mut stream,
                    &mut audit,
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
                    let key = shared
                        .cancels
                        .register(upstream_target.clone(), pid, secret);
                    prelude.extend_from_slice(&wire::backend_key_data(key.pid, &key.secret));
                    cancel_key = Some(key);
                }
                Err(e) => {
                    tracing::warn!(parent: &span, error = %e, "malformed BackendKeyData from cluster; cancel disabled")
                }
            },
            b'E' => {
                let f = wire::parse_error_fields(&msg.body);
                audit.refused(&f.code, &f.message);
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
    if !client_leftover.is_empty() && upstream.write_all(&client_leftover).await.is_err() {
        return;
    }
    let how = match source {
        Source::Cached => "cached credential, no AWS call",
        Source::Fetched => match target.config.credentials {
            CredentialMode::GetClusterCredentials => "new credential from GetClusterCredentials",
            CredentialMode::GetClusterCredentialsWithIam => {
                "new credential from GetClusterCredentialsWithIAM"
            }
            CredentialMode::Serverless => "new credential from Serverless GetCredentials",
        },
    };
    tracing::info!(
        parent: &span,
        app = %audit.application_name,
        db_user = %db_user,
        credential = if source == Source::Cached { "cached" } else { "minted" },
        client_tls = stream.is_tls(),
        login_ms = started.elapsed().as_millis() as u64,
        "session established: {client_user} logged in as {db_user} ({how})"
    );
    audit.db_user = db_user.clone();
    audit.outcome = "open".into();
    let (traffic, end) = relay::relay(stream, upstream, shared.hard_stop.clone()).await;
    drop(cancel_key);
    audit.bytes_in = traffic.client_to_server;
    audit.bytes_out = traffic.server_to_client;
    audit.outcome = match &end {
        RelayEnd::Closed(None) => "closed".into(),
        RelayEnd::Closed(Some(e)) => format!("error: {e}"),
        RelayEnd::Shutdown => "closed by proxy shutdown".into(),
    };
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

/// Refuses the login with an ErrorResponse and records why in the audit line.
async fn refuse(
    stream: &mut Stream,
    audit: &mut AuditRecord,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    audit.refused(code, message);
    client::reject(stream, code, message, hint).await;
}

/// Applies `[client_auth]`: nothing for trust, a SCRAM exchange, or the certificate check.
async fn authenticate_client(
    shared: &Shared,
    stream: &mut Stream,
    reader: &mut wire::MessageReader,
    user: &str,
) -> Result<(), ClientAuthError> {
    let auth = &shared.config.client_auth;
    match auth.method {
        ClientAuthMethod::Trust => Ok(()),
        ClientAuthMethod::ScramSha256 => {
            clientauth::scram(stream, reader, user, shared.verifiers.get(user)).await
        }
        ClientAuthMethod::Cert => {
            let Some(cn) = clientauth::client_cert_name(stream) else {
                return Err(ClientAuthError::Certificate(
                    "this proxy requires TLS with a client certificate (connect with sslmode=require, sslcert and sslkey)".into(),
                ));
            };
            let allowed = auth.cert_users.get(&cn).map(String::as_str).unwrap_or(&cn);
            if allowed != user {
                return Err(ClientAuthError::Certificate(format!(
                    "the client certificate (CN={cn}) does not allow logging in as user \"{user}\""
                )));
            }
            Ok(())
        }
    }
}

/// Maps the user, gets a credential and logs in upstream, re-minting once if the cluster refuses a cached password.
async fn establish(
    shared: &Shared,
    target: &Target,
    identity: Identity,
    database: &str,
    forwarded: &[(String, String)],
) -> Result<(LoggedIn, Arc<UpstreamTarget>, Source, String), Refusal> {
    let req = CredentialRequest::for_identity(
        &target.config,
        identity,
        target.endpoint.cluster_identifier().await?,
        database,
    );
    let upstream_target = target.endpoint.target().await?;
    let mut retried = false;
    loop {
        // The credential (maybe an AWS call) and the TCP+TLS connection are independent:
        // do both at once, so a cold login costs max(API, handshake), not their sum.
        let (cred, stream) =
            tokio::join!(shared.cache.get(&req), connect(target, &upstream_target));
        let (cred, source) =
            cred.map_err(|c| Refusal::new(c.sqlstate(), c.to_string(), c.hint()))?;
        let c = &cred.credential;
        // Bounded, with the AWS call, by limits.login_timeout_secs in `run`.
        match upstream::login(stream?, &c.db_user, &c.password, database, forwarded).await {
            Ok(l) => {
                cred.mark_worked();
                return Ok((l, upstream_target, source, cred.credential.db_user.clone()));
            }
            Err(UpstreamError::AuthFailed(f))
                if source == Source::Cached && !retried && cred.worth_reminting() =>
            {
                // The cached password no longer works (rotated, expired early): mint again once.
                tracing::info!(code = %f.code, "cluster refused the cached credential; minting a new one");
                shared.cache.invalidate(&req, &cred);
                retried = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connects to the cluster; a looked-up endpoint that refuses is forgotten.
async fn connect(
    target: &Target,
    upstream_target: &Arc<UpstreamTarget>,
) -> Result<Stream, UpstreamError> {
    let result = upstream::connect(upstream_target).await;
    if let Err(UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }) = &result {
        target.endpoint.forget(upstream_target).await;
    }
    result
}
