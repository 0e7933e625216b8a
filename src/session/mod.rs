//! One client connection from accept to close: negotiate, authenticate, plan, then
//! hand over to the unpooled (`direct`) or pooled (`pooled`) path.
//!
//! This is where the pieces meet; each decision is delegated: the client handshake,
//! client authentication, the login policy (`login.rs`), the connector or the pool,
//! the relay. Every failure before the relay becomes one ErrorResponse with a
//! SQLSTATE and a message naming the cause.

pub mod audit;
mod direct;
mod pooled;

use crate::access::login::{self, LoginPlan};
use crate::aws::cache::Source;
use crate::base::refusal::Refusal;
use crate::base::stream::Stream;
use crate::cancel::CancelKey;
use crate::client::auth::{self as clientauth, ClientAuthError};
use crate::client::handshake::{self as client, ClientRequest};
use crate::config::ClientAuthMethod;
use crate::config::{CredentialMode, PoolMode};
use crate::context::live::LiveConfig;
use crate::context::Shared;
use crate::session::audit::AuditRecord;
use crate::wire;
use crate::wire::protocol::sqlstate;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Handles one accepted TCP connection to the end; `fixed_target` is set for a target's own listener.
pub async fn run(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    fixed_target: Option<usize>,
) {
    let _ = tcp.set_nodelay(true);
    // One configuration snapshot for the whole login; a reload affects later logins.
    let live = shared.admin.live();
    let Some((stream, minor, params)) = negotiate(&shared, &live, tcp, peer).await else {
        return;
    };
    let Some(mut who) = identify(&live, stream, &params, peer).await else {
        return;
    };
    if who.database.as_deref() == Some(crate::admin::CONSOLE_DATABASE) {
        let console = crate::admin::console::Console::new(
            &shared,
            &live,
            who.stream,
            peer,
            &who.user,
            who.principal.as_ref().map(|p| p.name()),
        );
        return console.run(who.reader.into_leftover(), minor).await;
    }
    let client = shared.admin.clients.register(
        crate::context::registry::NewClient {
            user: &who.user,
            principal: &who.audit.principal,
            database: who.database.as_deref().unwrap_or(""),
            addr: peer,
            tls: who.stream.is_tls(),
            application_name: &who.audit.application_name,
        },
        &shared.hard_stop,
    );
    // Counted after authentication, so unauthenticated clients cannot use up a user's slots.
    let Some(_user_slot) = shared.user_slots.acquire(&who.user) else {
        tracing::warn!(%peer, user = %who.user, "per-user connection limit reached; refusing");
        let message = format!(
            "too many connections for user \"{}\" (proxy limit max_connections_per_user)",
            who.user
        );
        who.refuse(sqlstate::TOO_MANY_CONNECTIONS, &message, None)
            .await;
        return;
    };
    let Some(plan) = plan_login(&live, &mut who, fixed_target, &params, peer).await else {
        return;
    };
    let target = &shared.targets[plan.target];
    let mode = shared.pools.mode(plan.target);
    who.audit.planned(&plan, target.config.label(), mode);
    let span = tracing::info_span!("session", %peer, user = %who.user, target = %target.config.label(), db = %plan.database);
    let login = Login {
        stream: who.stream,
        audit: who.audit,
        plan,
        minor,
        // Bytes the client sent after authenticating (pipelined queries) go upstream first.
        client_leftover: who.reader.into_leftover(),
        span,
        client,
    };
    match mode {
        PoolMode::None => direct::run(&shared, login).await,
        _ => pooled::run(&shared, login, mode).await,
    }
}

/// A client that said who it is and proved what `[client_auth]` asks.
struct Identified {
    stream: Stream,
    /// The client's reader: it may hold messages sent after authentication.
    reader: wire::MessageReader,
    audit: AuditRecord,
    /// `user` and `database` of the startup packet, read here once; the rest of the
    /// parameters travel on as `StartupParams` to the login plan and the pool key.
    user: String,
    database: Option<String>,
    principal: Option<crate::client::identity::Principal>,
}

impl Identified {
    /// Refuses the login with an ErrorResponse and records why in the audit line.
    async fn refuse(&mut self, code: &str, message: &str, hint: Option<&str>) {
        refuse(&mut self.stream, &mut self.audit, code, message, hint).await;
    }
}

/// Who the client is: its user name and, where `[client_auth]` asks, its proof; `None`
/// when it was refused or left.
async fn identify(
    live: &LiveConfig,
    mut stream: Stream,
    params: &wire::StartupParams,
    peer: SocketAddr,
) -> Option<Identified> {
    let Some(user) = params.user().map(str::to_owned) else {
        client::reject(
            &mut stream,
            sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
            None,
        )
        .await;
        return None;
    };
    let mut audit = AuditRecord::new(peer, &user);
    audit.client_tls = stream.is_tls();
    audit.application_name = params.get("application_name").unwrap_or("").to_owned();
    let mut reader = wire::MessageReader::new(wire::MAX_HANDSHAKE_MESSAGE);
    let principal = match authenticate(live, &mut stream, &mut reader, peer, &user).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(%peer, %user, error = %e, "client authentication failed");
            if !matches!(e, ClientAuthError::Closed) {
                refuse(&mut stream, &mut audit, e.sqlstate(), &e.to_string(), None).await;
            }
            return None;
        }
    };
    if let Some(p) = &principal {
        audit.principal = p.describe();
        tracing::info!(%peer, %user, principal = %audit.principal, "client proved its identity with a token");
    }
    Some(Identified {
        stream,
        reader,
        audit,
        user,
        database: params.database().map(str::to_owned),
        principal,
    })
}

/// The login policy's plan for this client; `None` when it refused the login (the client
/// heard why).
async fn plan_login(
    live: &LiveConfig,
    who: &mut Identified,
    fixed_target: Option<usize>,
    params: &wire::StartupParams,
    peer: SocketAddr,
) -> Option<LoginPlan> {
    let planned = login::plan(
        &live.config,
        &live.users,
        fixed_target,
        &who.user,
        who.principal.as_ref(),
        who.database.as_deref(),
        params,
    );
    match planned {
        Ok(plan) => {
            for a in &plan.adapted {
                tracing::debug!(%peer, user = %who.user, "{a}");
            }
            Some(plan)
        }
        Err(r) => {
            tracing::info!(%peer, user = %who.user, reason = %r.message, "login refused");
            who.refuse(&r.code, &r.message, r.hint.as_deref()).await;
            None
        }
    }
}

/// The startup handshake, bounded by `limits.handshake_timeout_secs`: the client's stream,
/// protocol minor version and startup parameters, or `None` when the connection is done
/// (a cancel request was served, the client was too slow or broke the handshake).
async fn negotiate(
    shared: &Shared,
    live: &LiveConfig,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(Stream, u16, wire::StartupParams)> {
    let limits = &live.config.limits;
    let negotiated = tokio::time::timeout(
        limits.handshake_timeout(),
        client::negotiate(tcp, &shared.client_tls, limits.max_startup_packet_bytes),
    )
    .await;
    match negotiated {
        Err(_) => {
            tracing::info!(%peer, "client did not finish the startup handshake in time; closed");
            None
        }
        Ok((
            _,
            Ok(ClientRequest::Cancel {
                mut stream,
                pid,
                secret,
            }),
        )) => {
            // PostgreSQL closes the cancel connection after the signal was sent; a client
            // that waits for that must never see its cancel land on a later statement.
            crate::cancel::peers::cancel(
                &shared.cancels,
                &shared.admin.peers,
                &shared.started.config.peers,
                pid,
                &secret,
                peer,
            )
            .await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            None
        }
        Ok((
            _,
            Ok(ClientRequest::Startup {
                stream,
                minor,
                params,
            }),
        )) => Some((stream, minor, params)),
        Ok((stream, Err(e))) => {
            tracing::info!(%peer, error = %e.detail, "bad client handshake; closed");
            if let (Some(mut s), Some((code, msg))) = (stream, e.reply) {
                client::reject(&mut s, code, &msg, None).await;
            }
            None
        }
    }
}

/// Client authentication bounded by `limits.handshake_timeout_secs`: the verified principal
/// when the client proved one with a token.
async fn authenticate(
    live: &LiveConfig,
    stream: &mut Stream,
    reader: &mut wire::MessageReader,
    peer: SocketAddr,
    user: &str,
) -> Result<Option<crate::client::identity::Principal>, ClientAuthError> {
    tokio::time::timeout(
        live.config.limits.handshake_timeout(),
        authenticate_client(live, stream, reader, peer, user),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ClientAuthError::Protocol(
            "client authentication timed out".into(),
        ))
    })
}

/// A client that passed authentication, with what the login policy decided for it.
pub struct Login {
    pub stream: Stream,
    pub audit: AuditRecord,
    pub plan: LoginPlan,
    /// Protocol minor version the client asked for.
    pub minor: u16,
    /// Bytes the client sent after its startup (pipelined messages).
    pub client_leftover: BytesMut,
    pub span: tracing::Span,
    /// This client in the admin registry (`SHOW CLIENTS`); its `stop` ends the relay (`KILL_CLIENT`).
    pub client: crate::context::registry::ClientGuard,
}

impl Login {
    /// Refuses the login with an ErrorResponse and records why in the audit line.
    pub async fn refuse(&mut self, r: &Refusal) {
        tracing::info!(parent: &self.span, code = %r.code, reason = %r.message, "login refused");
        refuse(
            &mut self.stream,
            &mut self.audit,
            &r.code,
            &r.message,
            r.hint.as_deref(),
        )
        .await;
    }

    /// What the client receives before its first query: protocol negotiation (if
    /// needed), AuthenticationOk, ParameterStatus values, the proxy's cancel key and
    /// ReadyForQuery.
    pub fn startup_reply<'a>(
        &self,
        auth_ok: &[u8],
        statuses: impl Iterator<Item = BytesMut> + 'a,
        key: Option<&CancelKey>,
    ) -> BytesMut {
        let mut out = BytesMut::new();
        if self.minor > 0 || !self.plan.declined.is_empty() {
            let declined: Vec<&str> = self.plan.declined.iter().map(String::as_str).collect();
            out.extend_from_slice(&wire::negotiate_protocol_version(0, &declined));
        }
        out.extend_from_slice(auth_ok);
        for s in statuses {
            out.extend_from_slice(&s);
        }
        if let Some(k) = key {
            out.extend_from_slice(&wire::backend_key_data(k.pid, &k.secret));
        }
        out.extend_from_slice(&wire::ready_for_query(wire::TxnStatus::Idle));
        out
    }
}

/// The message for a login that took longer than `limits.login_timeout_secs`.
pub fn login_timeout_refusal(secs: u64) -> Refusal {
    Refusal::new(
        sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
        format!(
            "login through the proxy did not complete within {secs} s (limits.login_timeout_secs): AWS credential API or cluster too slow"
        ),
        None,
    )
}

/// How a login got its server, for the log line.
pub fn credential_words(source: Source, mode: CredentialMode) -> &'static str {
    match source {
        Source::Cached => "cached credential, no AWS call",
        Source::Fetched => match mode {
            CredentialMode::GetClusterCredentials => "new credential from GetClusterCredentials",
            CredentialMode::GetClusterCredentialsWithIam => {
                "new credential from GetClusterCredentialsWithIAM"
            }
            CredentialMode::Serverless => "new credential from Serverless GetCredentials",
        },
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
    crate::base::events::login_refused(code);
    client::reject(stream, code, message, hint).await;
}

/// How one client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exchange {
    Trust,
    Scram,
    Cert,
    Token,
}

/// The exchange for a client: the configured method, or a token where the method has
/// nothing to go by and tokens are accepted (a client off loopback under `trust`, a user
/// without a SCRAM verifier, a client without a certificate).
fn exchange(method: ClientAuthMethod, tokens: bool, on: Facts) -> Exchange {
    match method {
        ClientAuthMethod::Token => Exchange::Token,
        ClientAuthMethod::Trust if tokens && !on.loopback => Exchange::Token,
        ClientAuthMethod::Trust => Exchange::Trust,
        ClientAuthMethod::ScramSha256 if tokens && !on.has_verifier => Exchange::Token,
        ClientAuthMethod::ScramSha256 => Exchange::Scram,
        ClientAuthMethod::Cert if tokens && !on.has_cert => Exchange::Token,
        ClientAuthMethod::Cert => Exchange::Cert,
    }
}

/// What the connection shows before authentication.
#[derive(Debug, Clone, Copy)]
struct Facts {
    loopback: bool,
    has_verifier: bool,
    has_cert: bool,
}

/// Applies `[client_auth]`: nothing for trust, a SCRAM exchange, the certificate check, or
/// an identity token (whose verified principal is returned).
async fn authenticate_client(
    live: &LiveConfig,
    stream: &mut Stream,
    reader: &mut wire::MessageReader,
    peer: SocketAddr,
    user: &str,
) -> Result<Option<crate::client::identity::Principal>, ClientAuthError> {
    let auth = &live.config.client_auth;
    let facts = Facts {
        loopback: peer.ip().is_loopback(),
        has_verifier: live.verifiers.contains_key(user),
        has_cert: clientauth::client_cert_name(stream).is_some(),
    };
    match exchange(auth.method, live.tokens.is_some(), facts) {
        Exchange::Trust => Ok(None),
        Exchange::Scram => clientauth::scram(stream, reader, user, live.verifiers.get(user))
            .await
            .map(|()| None),
        Exchange::Cert => {
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
            Ok(None)
        }
        Exchange::Token => {
            let token = clientauth::token_password(stream, reader, peer.ip().is_loopback()).await?;
            let Some(verifiers) = &live.tokens else {
                return Err(ClientAuthError::Token(
                    crate::client::identity::TokenError::unavailable(
                        "identity tokens cannot be verified now (see the proxy's log)",
                    ),
                ));
            };
            verifiers
                .verify(&token)
                .await
                .map(Some)
                .map_err(ClientAuthError::Token)
        }
    }
}

/// A pooled login for `plan`: the target's ClusterIdentifier (maybe a DescribeClusters
/// call) and then the login policy's pure split of the startup parameters.
pub async fn pooled_login(
    shared: &Shared,
    plan: &LoginPlan,
) -> Result<login::PooledLogin, Refusal> {
    let target = &shared.targets[plan.target];
    let cluster_identifier = target.endpoint.cluster_identifier().await?;
    Ok(login::pooled_login(
        &target.config,
        plan,
        cluster_identifier,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_asked_of_clients_the_method_has_nothing_to_go_by() {
        use ClientAuthMethod::*;
        let on = |loopback, has_verifier, has_cert| Facts {
            loopback,
            has_verifier,
            has_cert,
        };
        let cases = [
            (Token, false, on(true, true, true), Exchange::Token),
            (Trust, false, on(false, false, false), Exchange::Trust),
            (Trust, true, on(true, false, false), Exchange::Trust),
            (Trust, true, on(false, false, false), Exchange::Token),
            (ScramSha256, true, on(false, true, false), Exchange::Scram),
            (ScramSha256, true, on(false, false, false), Exchange::Token),
            (ScramSha256, false, on(false, false, false), Exchange::Scram),
            (Cert, true, on(false, false, true), Exchange::Cert),
            (Cert, true, on(false, false, false), Exchange::Token),
        ];
        for (method, tokens, facts, want) in cases {
            assert_eq!(
                exchange(method, tokens, facts),
                want,
                "{method:?} tokens={tokens} {facts:?}"
            );
        }
    }
}
