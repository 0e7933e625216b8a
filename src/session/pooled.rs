//! Pooled modes: the client gets a server from its pool, carrying its own startup
//! settings, and the framed relay takes over (holding the server for the whole session,
//! or per transaction).

use super::{credential_words, Login, Shared};
use crate::config::PoolMode;
use crate::login;
use crate::pool::guard::OnDrop;
use crate::pool::params::{self, ClientSettings};
use crate::pool::reset::Leftovers;
use crate::pool::PoolHandle;
use crate::refusal::Refusal;
use crate::relay::framed::{ClientSession, End, Relay};
use crate::wire;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Time allowed for applying a client's startup settings on a server.
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(10);

/// Logs the client in through its pool and runs the pooled relay.
pub async fn run(shared: &Arc<Shared>, mut login: Login, mode: PoolMode) {
    let started = Instant::now();
    let pooled = match login::pooled(shared, &login.plan).await {
        Ok(p) => p,
        Err(r) => return login.refuse(&r).await,
    };
    let handle = PoolHandle::new(shared.clone(), &pooled);
    let mut checkout = tokio::select! {
        c = handle.checkout() => match c {
            Ok(c) => c,
            Err(r) => return login.refuse(&r).await,
        },
        _ = login.client.stop.cancelled() => return,
    };
    let server = checkout.server();
    // The client's startup settings, as if it had logged in itself.
    let desired = pooled.settings.clone();
    if let Some(sql) = params::sync_sql(&desired, &server.applied, &server.params) {
        if let Err(e) = server.run_query(&sql, SETTINGS_TIMEOUT).await {
            checkout.on_drop = OnDrop::Reset(Leftovers {
                settings_changed: true,
                ..Default::default()
            });
            let r = Refusal::new(
                "22023",
                format!("the cluster refused a startup parameter: {e}"),
                None,
            );
            return login.refuse(&r).await;
        }
    }
    server.applied = desired.clone();
    let db_user = server.db_user.clone();
    let how = match server.login_source.take() {
        Some(source) => credential_words(source, shared.targets[pooled.target].config.credentials),
        None => "pooled server, no login",
    };
    checkout.on_drop = OnDrop::CheckIn;
    let cancel = shared.cancels.register_attached(None);
    let statuses = checkout
        .server()
        .params
        .iter()
        .map(|(k, v)| wire::parameter_status(k, v))
        .collect::<Vec<_>>();
    let reply = login.startup_reply(
        &wire::auth_request(0, &[]),
        statuses.into_iter(),
        Some(&cancel),
    );
    if login.stream.write_all(&reply).await.is_err() {
        return;
    }
    let client_user = login.audit.client_user.clone();
    let target_label = shared.targets[pooled.target].config.label().to_owned();
    login.client.logged_in(
        &target_label,
        &db_user,
        &handle.pool.label,
        (mode == PoolMode::Session).then(|| checkout.server().id),
    );
    crate::admin::metrics::login_ok(&target_label, started.elapsed());
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
    let held = match mode {
        PoolMode::Session => Some(checkout),
        _ => {
            checkout.release();
            None
        }
    };
    let span = login.span.clone();
    let stop = login.client.stop.clone();
    let _client = login.client;
    let mut audit = login.audit;
    audit.db_user = db_user;
    audit.outcome = "open".into();
    let relay = Relay::new(
        mode,
        handle,
        cancel,
        login.stream,
        login.client_leftover,
        held,
        ClientSession::new(ClientSettings::new(desired)),
    );
    let (traffic, end) = relay.run(stop).await;
    crate::admin::metrics::session_bytes(
        &target_label,
        traffic.client_to_server,
        traffic.server_to_client,
    );
    audit.bytes_in = traffic.client_to_server;
    audit.bytes_out = traffic.server_to_client;
    audit.outcome = match &end {
        End::Terminated | End::ClientClosed(None) => "closed".into(),
        End::ClientClosed(Some(e)) => format!("error: {e}"),
        End::ServerClosed(e) => format!("error: cluster: {e}"),
        End::Shutdown => "closed by proxy shutdown".into(),
        End::Refused(r) => format!("refused {}: {}", r.code, r.message),
    };
    tracing::info!(parent: &span, bytes_in = traffic.client_to_server, bytes_out = traffic.server_to_client, outcome = %audit.outcome, "session closed");
}
