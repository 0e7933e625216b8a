//! Prometheus metrics (prometheus-client), all named `redshift_iam_proxy_*`.
//!
//! Event counters and histograms live in one process-wide `base::events::Metrics`, so call
//! sites deep in the credential code need no handle; pool and cache state is read at scrape time
//! from `Pools::snapshot()`, `PoolStats` and the credential cache. Labels stay
//! low-cardinality: target, pool label ("dbuser/dbname@target"), outcome, API, reason;
//! never a client address.

use crate::base::events::{metrics, Labels};
use crate::context::Shared;
use crate::pool::stats::{PoolStats, CLOSE_REASONS};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Per target: logins held through an outage now, holds by outcome, the longest hold,
/// outages seen, whether one is on now.
fn register_outages(state: &mut Registry, shared: &Shared) {
    use std::sync::atomic::Ordering::Relaxed;
    let held = Family::<Labels, Gauge>::default();
    let holds = Family::<Labels, Counter>::default();
    let longest = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let outages = Family::<Labels, Counter>::default();
    let now = Family::<Labels, Gauge>::default();
    for t in shared.targets.iter() {
        let base: Labels = vec![("target", t.config.label().to_owned())];
        let with = |v: &str| {
            let mut l = base.clone();
            l.push(("outcome", v.to_owned()));
            l
        };
        let o = &t.outage;
        held.get_or_create(&base)
            .set(i64::try_from(o.held_now.load(Relaxed)).unwrap_or(i64::MAX));
        holds
            .get_or_create(&with("login"))
            .inc_by(o.held_ok.load(Relaxed));
        holds
            .get_or_create(&with("error"))
            .inc_by(o.held_failed.load(Relaxed));
        longest
            .get_or_create(&base)
            .set(o.longest_hold_ms.load(Relaxed) as f64 / 1e3);
        outages.get_or_create(&base).inc_by(o.outages.load(Relaxed));
        now.get_or_create(&base).set(i64::from(o.active()));
    }
    state.register(
        "cluster_logins_held",
        "Server logins held now because the cluster is in an outage",
        held,
    );
    state.register(
        "cluster_login_holds",
        "Held logins by how they ended (login: the cluster came back in time; error: pool.outage_hold_secs ran out)",
        holds,
    );
    state.register(
        "cluster_longest_hold_seconds",
        "Longest held login that ended in a login",
        longest,
    );
    state.register(
        "cluster_outages",
        "Outages seen (the cluster stopped taking logins)",
        outages,
    );
    state.register(
        "cluster_in_outage",
        "1 while the cluster is not taking logins (readiness stays ready: the proxy is holding its clients)",
        now,
    );
}

/// The whole exposition (OpenMetrics text) for one scrape.
pub fn encode(shared: &Shared) -> String {
    let m = metrics();
    let mut events = Registry::with_prefix("redshift_iam_proxy");
    events.register(
        "client_connections_open",
        "Client connections open now, by listener",
        m.clients_open.clone(),
    );
    events.register(
        "logins",
        "Client logins by target and outcome (ok, refused_SQLSTATE)",
        m.logins.clone(),
    );
    events.register(
        "login_duration_seconds",
        "Time from startup packet to a relayed session, successful logins",
        m.login_seconds.clone(),
    );
    events.register(
        "credential_calls",
        "AWS credential and endpoint API calls (after retries) by API and outcome",
        m.credential_calls.clone(),
    );
    events.register(
        "credential_cache_lookups",
        "Credential cache lookups by result (hit: no AWS call)",
        m.credential_cache.clone(),
    );
    events.register(
        "upstream_login_duration_seconds",
        "Server logins: credential, TCP, TLS and startup to the cluster",
        m.upstream_login_seconds.clone(),
    );
    events.register(
        "session_bytes",
        "Bytes relayed by ended sessions, by target and direction",
        m.bytes.clone(),
    );
    events.register(
        "cancels",
        "CancelRequests by outcome (forwarded, ended_wait, failed, ignored, forwarded_to_peer, unknown_peer, peer_failed)",
        m.cancels.clone(),
    );
    events.register(
        "client_token_verifications",
        "Client identity tokens verified, by kind (aws, oidc, unknown) and outcome (ok, expired, wrong_audience, bad_signature, …)",
        m.token_verifications.clone(),
    );
    events.register(
        "cluster_resumes_requested",
        "ResumeCluster calls for a paused cluster (resume_paused), by target and outcome (ok, already_resuming, denied, failed)",
        m.cluster_resumes.clone(),
    );
    events.register(
        "config_reloads",
        "Configuration reloads (SIGHUP, RELOAD) by outcome",
        m.reloads.clone(),
    );
    events.register(
        "console_commands",
        "Admin console commands by verb",
        m.console_commands.clone(),
    );

    let mut state = Registry::with_prefix("redshift_iam_proxy");
    let admin = &shared.admin;
    let g = Gauge::<i64>::default();
    g.set(i64::from(admin.is_started()));
    state.register("started", "1 once listeners are up and prewarm is done", g);
    let g = Gauge::<i64>::default();
    g.set(i64::from(
        admin.readiness() == crate::context::admin::Readiness::Ready,
    ));
    state.register("ready", "1 while /readiness answers 200", g);
    let g = Gauge::<i64>::default();
    g.set(admin.peers.count(&shared.started.config.peers) as i64);
    state.register(
        "peers",
        "Other replicas cancels can be forwarded to: found by [peers] dns at the last resolution, or listed in [peers] addresses",
        g,
    );
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_owned())])
        .set(1);
    state.register("build_info", "The running version", info);

    let entries = shared.cache.entries();
    let g = Gauge::<i64>::default();
    g.set(entries.len() as i64);
    state.register(
        "credential_cache_entries",
        "Credentials held in the cache",
        g,
    );
    let oldest = entries.iter().map(|e| e.expires_in_secs).min();
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(oldest.unwrap_or(0) as f64);
    state.register(
        "credential_oldest_expiry_seconds",
        "Seconds until the soonest-expiring cached credential expires (0 when none)",
        g,
    );

    let servers = Family::<Labels, Gauge>::default();
    let waiting = Family::<Labels, Gauge>::default();
    let active_clients = Family::<Labels, Gauge>::default();
    let checkouts = Family::<Labels, Counter>::default();
    let waits = Family::<Labels, Counter>::default();
    let wait_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let max_wait = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let resets = Family::<Labels, Counter>::default();
    let resets_failed = Family::<Labels, Counter>::default();
    let opened = Family::<Labels, Counter>::default();
    let logins_failed = Family::<Labels, Counter>::default();
    let closed = Family::<Labels, Counter>::default();
    let txns = Family::<Labels, Counter>::default();
    let queries = Family::<Labels, Counter>::default();
    let pool_bytes = Family::<Labels, Counter>::default();
    for (pool, c) in shared.pools.snapshot() {
        let target = shared
            .targets
            .get(pool.target_index)
            .map_or("", |t| t.config.label())
            .to_owned();
        let base: Labels = vec![("pool", pool.label.clone()), ("target", target)];
        let with = |k: &'static str, v: &str| {
            let mut l = base.clone();
            l.push((k, v.to_owned()));
            l
        };
        for (state, n) in [
            ("active", c.active),
            ("idle", c.idle),
            ("opening", c.opening),
        ] {
            servers.get_or_create(&with("state", state)).set(n as i64);
        }
        waiting.get_or_create(&base).set(c.waiting as i64);
        let st = &pool.stats;
        active_clients
            .get_or_create(&base)
            .set(PoolStats::get(&st.clients_active) as i64);
        let put = |f: &Family<Labels, Counter>, l: &Labels, v: &AtomicU64| {
            f.get_or_create(l).inc_by(PoolStats::get(v));
        };
        put(&checkouts, &base, &st.checkouts);
        put(&waits, &base, &st.waits);
        wait_seconds
            .get_or_create(&base)
            .inc_by(PoolStats::get(&st.wait_us_total) as f64 / 1e6);
        max_wait
            .get_or_create(&base)
            .set(PoolStats::get(&st.max_wait_us) as f64 / 1e6);
        put(&resets, &base, &st.resets);
        put(&resets_failed, &base, &st.resets_failed);
        put(&opened, &base, &st.servers_opened);
        put(&logins_failed, &base, &st.logins_failed);
        put(&txns, &base, &st.transactions);
        put(&queries, &base, &st.queries);
        put(
            &pool_bytes,
            &with("direction", "client_to_server"),
            &st.bytes_in,
        );
        put(
            &pool_bytes,
            &with("direction", "server_to_client"),
            &st.bytes_out,
        );
        for r in CLOSE_REASONS {
            closed
                .get_or_create(&with("reason", r.as_str()))
                .inc_by(st.closed_count(r));
        }
    }
    state.register(
        "pool_servers",
        "Server connections per pool by state",
        servers,
    );
    state.register(
        "pool_clients_waiting",
        "Clients waiting for a server, per pool",
        waiting,
    );
    state.register(
        "pool_clients_active",
        "Clients using a pool now",
        active_clients,
    );
    state.register("pool_checkouts", "Server checkouts per pool", checkouts);
    state.register(
        "pool_checkout_waits",
        "Checkouts that waited 1 ms or more for a server",
        waits,
    );
    state.register(
        "pool_checkout_wait_seconds",
        "Total time clients waited for a server (divide by checkouts for the mean)",
        wait_seconds,
    );
    state.register(
        "pool_checkout_max_wait_seconds",
        "Longest wait for a server since the pool was created",
        max_wait,
    );
    state.register("pool_resets", "Server resets at check-in", resets);
    state.register(
        "pool_resets_failed",
        "Server resets that failed (server closed)",
        resets_failed,
    );
    state.register("pool_servers_opened", "Server logins per pool", opened);
    state.register(
        "pool_server_logins_failed",
        "Failed server logins per pool",
        logins_failed,
    );
    state.register(
        "pool_servers_closed",
        "Servers closed per pool by reason",
        closed,
    );
    state.register("pool_transactions", "Transactions relayed per pool", txns);
    state.register("pool_queries", "Queries relayed per pool", queries);
    state.register(
        "pool_bytes",
        "Bytes relayed per pool by direction",
        pool_bytes,
    );

    register_outages(&mut state, shared);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &events);
    let _ = encode_registry(&mut out, &state);
    let _ = encode_eof(&mut out);
    out
}
