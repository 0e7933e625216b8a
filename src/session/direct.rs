//! Mode `none`: the client gets its own server login for its whole life, relayed byte
//! for byte (today's behaviour before pooling; one cluster connection per client).

use super::{credential_words, login_timeout_refusal, Login};
use crate::cluster::connector::{self, LoginSpec};
use crate::cluster::Target;
use crate::context::Shared;
use crate::relay::{self, RelayEnd};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Logs in for the client and relays until either side closes.
pub async fn run(shared: &Shared, mut login: Login) {
    let target = &shared.targets[login.plan.target];
    let started = Instant::now();
    let mut opened = match open(shared, target, &login).await {
        Ok(o) => o,
        Err(r) => return login.refuse(&r).await,
    };
    if !login.plan.defaults.is_empty() {
        if let Err(e) = apply_defaults(&mut opened.started, &login.plan.defaults).await {
            let r = crate::base::refusal::Refusal::new(
                crate::wire::protocol::sqlstate::INVALID_PARAMETER_VALUE,
                format!("the cluster refused this identity's session defaults ([[users]] session / query_group): {e}"),
                None,
            );
            return login.refuse(&r).await;
        }
    }
    let key = opened.started.backend_key.as_ref().map(|(pid, secret)| {
        shared
            .cancels
            .register(opened.upstream.clone(), *pid, secret.clone())
    });
    let statuses = opened.started.messages.iter().map(|m| m.to_wire());
    let mut reply = login.startup_reply(&opened.started.auth_ok.to_wire(), statuses, key.as_ref());
    reply.extend_from_slice(&opened.started.leftover);
    let mut upstream = opened.started.stream;
    if login.stream.write_all(&reply).await.is_err() {
        return;
    }
    if !login.client_leftover.is_empty()
        && upstream.write_all(&login.client_leftover).await.is_err()
    {
        return;
    }
    let how = credential_words(opened.source, target.config.credentials);
    let client_user = login.audit.client_user.clone();
    login
        .client
        .logged_in(target.config.label(), &opened.db_user, "", None);
    crate::base::events::login_ok(target.config.label(), started.elapsed());
    tracing::info!(
        parent: &login.span,
        app = %login.audit.application_name,
        db_user = %opened.db_user,
        credential = if opened.source == crate::aws::cache::Source::Cached { "cached" } else { "minted" },
        client_tls = login.stream.is_tls(),
        login_ms = started.elapsed().as_millis() as u64,
        pool_mode = "none",
        "session established: {client_user} logged in as {} ({how})", opened.db_user
    );
    let span = login.span.clone();
    let stop = login.client.stop.clone();
    let _client = login.client;
    let mut audit = login.audit;
    audit.db_user = opened.db_user.clone();
    audit.outcome = "open".into();
    let (traffic, end) = relay::relay(login.stream, upstream, stop).await;
    drop(key);
    ended(target.config.label(), &mut audit, &span, traffic, end);
}

/// The client's own server: its ClusterIdentifier, credential request and held login, each
/// attempt bounded by `limits.login_timeout_secs`.
async fn open(
    shared: &Shared,
    target: &Target,
    login: &Login,
) -> Result<connector::Opened, crate::base::refusal::Refusal> {
    let limits = shared.admin.live().config.limits.clone();
    async {
        let identifier =
            tokio::time::timeout(limits.login_timeout(), target.endpoint.cluster_identifier())
                .await
                .map_err(|_| login_timeout_refusal(limits.login_timeout_secs))??;
        let request = crate::access::login::credential_request(
            &target.config,
            login.plan.identity.clone(),
            identifier,
            &login.plan.database,
        );
        let spec = LoginSpec {
            request,
            database: login.plan.database.clone(),
            params: login.plan.forwarded.clone(),
        };
        // Each attempt is bounded by the login timeout; an outage holds the login.
        // A client's login: it may wake a paused cluster (`resume_paused`).
        crate::cluster::resume::client_login(connector::open_held(
            &shared.connector(),
            target,
            &spec,
            limits.login_timeout(),
        ))
        .await
    }
    .await
}

/// Counts the session's bytes and writes how it ended into its audit line and the log.
fn ended(
    target: &str,
    audit: &mut crate::session::audit::AuditRecord,
    span: &tracing::Span,
    traffic: relay::Traffic,
    end: RelayEnd,
) {
    crate::base::events::session_bytes(target, traffic.client_to_server, traffic.server_to_client);
    audit.bytes_in = traffic.client_to_server;
    audit.bytes_out = traffic.server_to_client;
    audit.outcome = match &end {
        RelayEnd::Closed(None) => "closed".into(),
        RelayEnd::Closed(Some(e)) => format!("error: {e}"),
        RelayEnd::Shutdown => "closed by proxy shutdown".into(),
    };
    match end {
        RelayEnd::Closed(None) => {
            tracing::info!(parent: span, bytes_in = traffic.client_to_server, bytes_out = traffic.server_to_client, "session closed")
        }
        RelayEnd::Closed(Some(e)) => {
            tracing::info!(parent: span, error = %e, "session ended with an error")
        }
        RelayEnd::Shutdown => tracing::info!(parent: span, "session closed by proxy shutdown"),
    }
}

/// Applies a mapping rule's session defaults on a fresh server session before the byte
/// relay starts (the one statement the proxy sends in mode `none`). The ParameterStatus
/// messages it causes join the login's, so the client hears the values it runs with.
async fn apply_defaults(
    started: &mut crate::cluster::upstream::Started,
    defaults: &crate::pool::params::Settings,
) -> Result<(), String> {
    let Some(sql) =
        crate::pool::params::sync_sql(defaults, &Default::default(), &Default::default())
    else {
        return Ok(());
    };
    match crate::cluster::upstream::simple_query(started, &sql, std::time::Duration::from_secs(10))
        .await?
    {
        Some(e) => Err(e.message),
        None => Ok(()),
    }
}
