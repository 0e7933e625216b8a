//! Pooled modes: the client gets a server from its pool, carrying its own startup
//! settings, and the framed relay takes over (holding the server for the whole session,
//! or per transaction).

use super::{credential_words, Login};
use crate::base::refusal::Refusal;
use crate::cancel::CancelKey;
use crate::config::{CredentialMode, PoolMode};
use crate::context::Shared;
use crate::pool::guard::Checkout;
use crate::pool::params::{self, Settings};
use crate::pool::PoolHandle;
use crate::relay::framed::{End, Relay};
use crate::relay::machine::{ClientState, Machine};
use crate::relay::Traffic;
use crate::session::audit::AuditRecord;
use crate::wire;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Time allowed for applying a client's startup settings on a server.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs the client in through its pool and runs the pooled relay.
pub async fn run(shared: &Arc<Shared>, mut login: Login, mode: PoolMode) {
    let started = Instant::now();
    let pooled = match super::pooled_login(shared, &login.plan).await {
        Ok(p) => p,
        Err(r) => return login.refuse(&r).await,
    };
    let handle = PoolHandle::new(
        &shared.pools,
        &shared.admin.pause,
        shared.connector(),
        pooled.target,
        &pooled.spec,
        &pooled.label,
    );
    let desired = pooled.settings.clone();
    let credentials = shared.targets[pooled.target].config.credentials;
    let ready = match ready_server(&handle, &mut login, mode, &desired, credentials).await {
        Some(r) => r,
        None => return,
    };
    let cancel = shared.cancels.register_attached(None);
    if !greet(&mut login, &ready, &cancel).await {
        return;
    }
    let (db_user, how) = (ready.db_user, ready.how);
    let client_user = login.audit.client_user.clone();
    let target_label = shared.targets[pooled.target].config.label().to_owned();
    login.client.logged_in(
        &target_label,
        &db_user,
        &handle.pool.label,
        ready
            .held
            .as_ref()
            .and_then(|c| c.server_ref())
            .map(|s| s.id),
    );
    crate::base::events::login_ok(&target_label, started.elapsed());
    tracing::info!(
        parent: &login.span,
        app = %login.audit.application_name,
        db_user = %db_user,
        client_tls = login.stream.is_tls(),
        login_ms = started.elapsed().as_millis() as u64,
        pool = %handle.pool.label,
        pool_mode = mode.as_str(),
        "session established: {client_user} logged in as {db_user} ({how})"
    );
    let held = ready.held;
    let span = login.span.clone();
    let stop = login.client.stop.clone();
    let _client = login.client;
    let mut audit = login.audit;
    audit.db_user = db_user;
    audit.outcome = "open".into();
    let defaults = handle
        .pool
        .base()
        .map_or_else(Default::default, |b| Arc::new(b.params.clone()));
    let machine = Machine::new(mode, ClientState::new(desired, ready.params), defaults);
    let relay = match Relay::new(
        handle,
        cancel,
        login.stream,
        login.client_leftover,
        held,
        machine,
        mode,
    ) {
        Ok(r) => r,
        Err(r) => {
            tracing::warn!(parent: &span, reason = %r.message, "session could not start");
            return;
        }
    };
    let (traffic, end) = relay.run(stop).await;
    ended(&target_label, &mut audit, &span, traffic, &end);
}

/// Tells the client it is in: AuthenticationOk, the server's ParameterStatus values, the
/// proxy's BackendKeyData and ReadyForQuery. `false` when the client is gone.
async fn greet(login: &mut Login, ready: &Ready, cancel: &CancelKey) -> bool {
    let statuses = ready
        .params
        .iter()
        .map(|(k, v)| wire::parameter_status(k, v))
        .collect::<Vec<_>>();
    let reply = login.startup_reply(
        &wire::auth_request(wire::protocol::auth::OK, &[]),
        statuses.into_iter(),
        Some(cancel),
    );
    login.stream.write_all(&reply).await.is_ok()
}

/// Counts the session's bytes and writes how it ended into its audit line and the log.
fn ended(target: &str, audit: &mut AuditRecord, span: &tracing::Span, traffic: Traffic, end: &End) {
    crate::base::events::session_bytes(target, traffic.client_to_server, traffic.server_to_client);
    audit.bytes_in = traffic.client_to_server;
    audit.bytes_out = traffic.server_to_client;
    audit.outcome = match end {
        End::Terminated | End::ClientClosed(None) => "closed".into(),
        End::ClientClosed(Some(e)) => format!("error: {e}"),
        End::ServerClosed(e) => format!("error: cluster: {e}"),
        End::Shutdown => "closed by proxy shutdown".into(),
        End::Refused(r) => format!("refused {}: {}", r.code, r.message),
    };
    tracing::info!(parent: span, bytes_in = traffic.client_to_server, bytes_out = traffic.server_to_client, outcome = %audit.outcome, "session closed");
}

/// A client's session before its relay starts: its server (session mode) and what its
/// login reports.
struct Ready {
    held: Option<Checkout>,
    params: BTreeMap<String, String>,
    db_user: String,
    how: &'static str,
}

/// Gets the client a server carrying its startup settings (session mode keeps it), or,
/// in transaction mode when the pool's login parameters already answer the login, no
/// server at all. `None`: the client was refused (or is gone).
async fn ready_server(
    handle: &PoolHandle,
    login: &mut Login,
    mode: PoolMode,
    desired: &Settings,
    credentials: CredentialMode,
) -> Option<Ready> {
    if mode == PoolMode::Transaction {
        if let Some(base) = handle.pool.base() {
            if !params::needs_sync_at_login(desired, &Settings::new(), &base.params) {
                return Some(Ready {
                    held: None,
                    params: params::reported_at_login(&base.params, &base.params, desired),
                    db_user: base.db_user.clone(),
                    how: "pooled, no server needed to log in",
                });
            }
        }
    }
    let mut checkout = tokio::select! {
        c = handle.checkout() => match c {
            Ok(c) => c,
            Err(r) => {
                login.refuse(&r).await;
                return None;
            }
        },
        _ = login.client.stop.cancelled() => return None,
    };
    let base = handle.pool.base();
    let server = checkout.server();
    let how = match server.login_source.take() {
        Some(source) => credential_words(source, credentials),
        None => "pooled server, no login",
    };
    let db_user = server.db_user.clone();
    let t = &server.tracked;
    let params = if params::needs_sync_at_login(desired, &t.settings, &t.params) {
        // Exact ParameterStatus values need the server to apply the settings first.
        if let Some(sql) = params::sync_sql(desired, &t.settings, &t.params) {
            if let Err(e) = server.run_query(&sql, SETTINGS_TIMEOUT).await {
                server.tracked.settings_known = false;
                checkout.release();
                let r = Refusal::new(
                    wire::protocol::sqlstate::INVALID_PARAMETER_VALUE,
                    format!("the cluster refused a startup parameter: {e}"),
                    None,
                );
                login.refuse(&r).await;
                return None;
            }
        }
        server.tracked.settings = desired.clone();
        server.tracked.params.clone()
    } else {
        // Only application_name is left: the relay applies it before the first query.
        let t = &server.tracked;
        let base_params = base.as_ref().map_or(&t.params, |b| &b.params);
        params::reported_at_login(&t.params, base_params, desired)
    };
    let held = match mode {
        PoolMode::Session => Some(checkout),
        _ => {
            checkout.release();
            None
        }
    };
    Some(Ready {
        held,
        params,
        db_user,
        how,
    })
}
