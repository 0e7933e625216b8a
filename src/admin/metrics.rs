//! Prometheus metrics (prometheus-client), all named `redshift_iam_proxy_*`.
//!
//! Event counters and histograms live in one process-wide `base::events::Metrics`, so call
//! sites deep in the credential code need no handle; pool and cache state is read at scrape time
//! from `Pools::snapshot()`, `PoolStats` and the credential cache. Labels stay
//! low-cardinality: target, pool label ("dbuser/dbname@target"), outcome, API, reason;
//! never a client address.

use crate::base::events::{metrics, Labels, Metrics};
use crate::context::Shared;
use crate::pool::checkout::PoolCounts;
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
    register_client_events(&mut events, m);
    register_credential_events(&mut events, m);
    register_session_events(&mut events, m);
    register_identity_events(&mut events, m);
    register_operator_events(&mut events, m);

    let mut state = Registry::with_prefix("redshift_iam_proxy");
    register_process(&mut state, shared);
    register_credential_cache(&mut state, shared);
    register_pools(&mut state, shared);
    register_outages(&mut state, shared);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut out, &events);
    let _ = encode_registry(&mut out, &state);
    let _ = encode_eof(&mut out);
    out
}

/// Client connections open, client logins and how long they took.
fn register_client_events(events: &mut Registry, m: &Metrics) {
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
}

/// AWS calls, credential cache lookups and the server logins they serve.
fn register_credential_events(events: &mut Registry, m: &Metrics) {
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
}

/// Bytes relayed by ended sessions and CancelRequests.
fn register_session_events(events: &mut Registry, m: &Metrics) {
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
}

/// Client identity tokens checked.
fn register_identity_events(events: &mut Registry, m: &Metrics) {
    events.register(
        "client_token_verifications",
        "Client identity tokens verified, by kind (aws, oidc, unknown) and outcome (ok, expired, wrong_audience, bad_signature, …)",
        m.token_verifications.clone(),
    );
}

/// What the proxy did for its operator: cluster resumes, reloads, console commands.
fn register_operator_events(events: &mut Registry, m: &Metrics) {
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
}

/// Started, ready, peers known, and the running version.
fn register_process(state: &mut Registry, shared: &Shared) {
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
}

/// Credentials cached now, and the soonest expiry among them.
fn register_credential_cache(state: &mut Registry, shared: &Shared) {
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
}

/// Per pool: its servers and clients now, and its counters since it was created.
fn register_pools(state: &mut Registry, shared: &Shared) {
    let now = PoolGauges::default();
    let counters = PoolCounters::default();
    for (pool, c) in shared.pools.snapshot() {
        let target = shared
            .targets
            .get(pool.target_index)
            .map_or("", |t| t.config.label())
            .to_owned();
        let base: Labels = vec![("pool", pool.label.clone()), ("target", target)];
        now.add(&base, &pool.stats, &c);
        counters.add(&base, &pool.stats);
    }
    now.register(state);
    counters.register(state);
}

/// `base` with one more label.
fn with(base: &Labels, k: &'static str, v: &str) -> Labels {
    let mut l = base.clone();
    l.push((k, v.to_owned()));
    l
}

/// The per-pool gauges: servers by state and clients, now.
#[derive(Default)]
struct PoolGauges {
    servers: Family<Labels, Gauge>,
    waiting: Family<Labels, Gauge>,
    active_clients: Family<Labels, Gauge>,
}

impl PoolGauges {
    fn add(&self, base: &Labels, st: &PoolStats, c: &PoolCounts) {
        for (state, n) in [
            ("active", c.active),
            ("idle", c.idle),
            ("opening", c.opening),
        ] {
            self.servers
                .get_or_create(&with(base, "state", state))
                .set(n as i64);
        }
        self.waiting.get_or_create(base).set(c.waiting as i64);
        self.active_clients
            .get_or_create(base)
            .set(PoolStats::get(&st.clients_active) as i64);
    }

    fn register(self, state: &mut Registry) {
        state.register(
            "pool_servers",
            "Server connections per pool by state",
            self.servers,
        );
        state.register(
            "pool_clients_waiting",
            "Clients waiting for a server, per pool",
            self.waiting,
        );
        state.register(
            "pool_clients_active",
            "Clients using a pool now",
            self.active_clients,
        );
    }
}

/// The per-pool counters since the pool was created (and its longest wait).
#[derive(Default)]
struct PoolCounters {
    checkouts: Family<Labels, Counter>,
    waits: Family<Labels, Counter>,
    wait_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    max_wait: Family<Labels, Gauge<f64, AtomicU64>>,
    resets: Family<Labels, Counter>,
    resets_failed: Family<Labels, Counter>,
    opened: Family<Labels, Counter>,
    logins_failed: Family<Labels, Counter>,
    closed: Family<Labels, Counter>,
    txns: Family<Labels, Counter>,
    queries: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
}

impl PoolCounters {
    fn add(&self, base: &Labels, st: &PoolStats) {
        let put = |f: &Family<Labels, Counter>, l: &Labels, v: &AtomicU64| {
            f.get_or_create(l).inc_by(PoolStats::get(v));
        };
        put(&self.checkouts, base, &st.checkouts);
        put(&self.waits, base, &st.waits);
        self.wait_seconds
            .get_or_create(base)
            .inc_by(PoolStats::get(&st.wait_us_total) as f64 / 1e6);
        self.max_wait
            .get_or_create(base)
            .set(PoolStats::get(&st.max_wait_us) as f64 / 1e6);
        put(&self.resets, base, &st.resets);
        put(&self.resets_failed, base, &st.resets_failed);
        put(&self.opened, base, &st.servers_opened);
        put(&self.logins_failed, base, &st.logins_failed);
        put(&self.txns, base, &st.transactions);
        put(&self.queries, base, &st.queries);
        let to_server = with(base, "direction", "client_to_server");
        put(&self.bytes, &to_server, &st.bytes_in);
        let to_client = with(base, "direction", "server_to_client");
        put(&self.bytes, &to_client, &st.bytes_out);
        for r in CLOSE_REASONS {
            self.closed
                .get_or_create(&with(base, "reason", r.as_str()))
                .inc_by(st.closed_count(r));
        }
    }

    fn register(self, state: &mut Registry) {
        state.register(
            "pool_checkouts",
            "Server checkouts per pool",
            self.checkouts,
        );
        state.register(
            "pool_checkout_waits",
            "Checkouts that waited 1 ms or more for a server",
            self.waits,
        );
        state.register(
            "pool_checkout_wait_seconds",
            "Total time clients waited for a server (divide by checkouts for the mean)",
            self.wait_seconds,
        );
        state.register(
            "pool_checkout_max_wait_seconds",
            "Longest wait for a server since the pool was created",
            self.max_wait,
        );
        state.register("pool_resets", "Server resets at check-in", self.resets);
        state.register(
            "pool_resets_failed",
            "Server resets that failed (server closed)",
            self.resets_failed,
        );
        state.register("pool_servers_opened", "Server logins per pool", self.opened);
        state.register(
            "pool_server_logins_failed",
            "Failed server logins per pool",
            self.logins_failed,
        );
        state.register(
            "pool_servers_closed",
            "Servers closed per pool by reason",
            self.closed,
        );
        state.register(
            "pool_transactions",
            "Transactions relayed per pool",
            self.txns,
        );
        state.register("pool_queries", "Queries relayed per pool", self.queries);
        state.register(
            "pool_bytes",
            "Bytes relayed per pool by direction",
            self.bytes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::server::Proxy;
    use crate::aws::credentials::{AwsIdentitySource, CredentialRequest};
    use crate::config::Config;
    use crate::pool::PoolKey;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    /// A bound proxy's shared state (no AWS call): one target with outage counts, one pool
    /// with every counter set.
    async fn shared() -> Arc<Shared> {
        let config = Config::from_toml(
            "listen = \"127.0.0.1:0\"\n\
             [aws]\nregion = \"us-east-1\"\nendpoint_url = \"http://127.0.0.1:9\"\n\
             [client_tls]\nlocal_ca = false\n\
             [[cluster]]\nidentifier = \"c\"\nhost = \"127.0.0.1\"\nport = 9\n\
             [[users]]\nclient_user = \"alice\"\n",
        )
        .unwrap();
        let creds = aws_credential_types::Credentials::new("a", "b", None, None, "test");
        let shared = Proxy::bind(config, AwsIdentitySource::Static(creds))
            .await
            .unwrap()
            .shared();
        let key = PoolKey {
            target: 0,
            request: CredentialRequest {
                mode: crate::config::CredentialMode::GetClusterCredentials,
                cluster_identifier: Some("c".into()),
                workgroup: None,
                custom_domain: None,
                role: None,
                db_user: Some("alice".into()),
                db_name: "dev".into(),
                db_groups: Vec::new(),
                auto_create: false,
                duration_seconds: 900,
            },
            fixed: Default::default(),
        };
        let pool = shared.pools.get(&key, || "alice/dev@c".into());
        // A different value in every counter, so no two can be swapped unseen.
        let st = &pool.stats;
        for (n, counter) in [
            &st.checkouts,
            &st.waits,
            &st.clients_active,
            &st.servers_opened,
            &st.logins_failed,
            &st.resets,
            &st.resets_failed,
            &st.transactions,
            &st.queries,
            &st.bytes_in,
            &st.bytes_out,
        ]
        .into_iter()
        .enumerate()
        {
            PoolStats::add(counter, 3 + n as u64);
        }
        PoolStats::add(&st.wait_us_total, 2_500_000);
        PoolStats::add(&st.max_wait_us, 1_500_000);
        for (n, r) in CLOSE_REASONS.into_iter().enumerate() {
            for _ in 0..=n {
                st.closed(r);
            }
        }
        let o = &shared.targets[0].outage;
        o.held_now.fetch_add(2, Relaxed);
        o.held_ok.fetch_add(3, Relaxed);
        o.held_failed.fetch_add(4, Relaxed);
        o.longest_hold_ms.fetch_add(1_250, Relaxed);
        o.outages.fetch_add(5, Relaxed);
        shared
    }

    /// Each family's header lines, then (with `samples`) its sample lines sorted: a family
    /// keeps its label sets in a hash map, so their order is not part of the exposition.
    fn families(text: &str, samples: bool) -> String {
        let mut out = Vec::new();
        let mut rows: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with("# ") {
                rows.sort_unstable();
                out.append(&mut rows);
                out.push(line);
            } else if samples {
                rows.push(line);
            }
        }
        rows.sort_unstable();
        out.append(&mut rows);
        out.join("\n")
    }

    #[tokio::test]
    async fn exposition_keeps_its_event_families_names_help_and_order() {
        let shared = shared().await;
        let text = encode(&shared);
        let (events, _) = text
            .split_once("# HELP redshift_iam_proxy_started ")
            .unwrap();
        // Event counters are process-wide (other tests move them): headers only.
        assert_eq!(families(events, false), EVENT_FAMILIES.join("\n"));
    }

    #[tokio::test]
    async fn exposition_of_the_same_state_keeps_every_family_and_sample() {
        let shared = shared().await;
        let text = encode(&shared);
        let (_, state) = text
            .split_once("# HELP redshift_iam_proxy_started ")
            .unwrap();
        let state = format!("# HELP redshift_iam_proxy_started {state}");
        assert_eq!(families(&state, true), STATE_FAMILIES.join("\n"));
    }

    /// The event families' header lines, as `encode` wrote them before it was split by family.
    const EVENT_FAMILIES: &[&str] = &[
        "# HELP redshift_iam_proxy_client_connections_open Client connections open now, by listener.",
        "# TYPE redshift_iam_proxy_client_connections_open gauge",
        "# HELP redshift_iam_proxy_logins Client logins by target and outcome (ok, refused_SQLSTATE).",
        "# TYPE redshift_iam_proxy_logins counter",
        "# HELP redshift_iam_proxy_login_duration_seconds Time from startup packet to a relayed session, successful logins.",
        "# TYPE redshift_iam_proxy_login_duration_seconds histogram",
        "# HELP redshift_iam_proxy_credential_calls AWS credential and endpoint API calls (after retries) by API and outcome.",
        "# TYPE redshift_iam_proxy_credential_calls counter",
        "# HELP redshift_iam_proxy_credential_cache_lookups Credential cache lookups by result (hit: no AWS call).",
        "# TYPE redshift_iam_proxy_credential_cache_lookups counter",
        "# HELP redshift_iam_proxy_upstream_login_duration_seconds Server logins: credential, TCP, TLS and startup to the cluster.",
        "# TYPE redshift_iam_proxy_upstream_login_duration_seconds histogram",
        "# HELP redshift_iam_proxy_session_bytes Bytes relayed by ended sessions, by target and direction.",
        "# TYPE redshift_iam_proxy_session_bytes counter",
        "# HELP redshift_iam_proxy_cancels CancelRequests by outcome (forwarded, ended_wait, failed, ignored, forwarded_to_peer, unknown_peer, peer_failed).",
        "# TYPE redshift_iam_proxy_cancels counter",
        "# HELP redshift_iam_proxy_client_token_verifications Client identity tokens verified, by kind (aws, oidc, unknown) and outcome (ok, expired, wrong_audience, bad_signature, …).",
        "# TYPE redshift_iam_proxy_client_token_verifications counter",
        "# HELP redshift_iam_proxy_cluster_resumes_requested ResumeCluster calls for a paused cluster (resume_paused), by target and outcome (ok, already_resuming, denied, failed).",
        "# TYPE redshift_iam_proxy_cluster_resumes_requested counter",
        "# HELP redshift_iam_proxy_config_reloads Configuration reloads (SIGHUP, RELOAD) by outcome.",
        "# TYPE redshift_iam_proxy_config_reloads counter",
        "# HELP redshift_iam_proxy_console_commands Admin console commands by verb.",
        "# TYPE redshift_iam_proxy_console_commands counter",
    ];

    /// What `encode` wrote for [`shared`]'s state before it was split by family (samples
    /// sorted within each family).
    const STATE_FAMILIES: &[&str] = &[
        "# HELP redshift_iam_proxy_started 1 once listeners are up and prewarm is done.",
        "# TYPE redshift_iam_proxy_started gauge",
        "redshift_iam_proxy_started 0",
        "# HELP redshift_iam_proxy_ready 1 while /readiness answers 200.",
        "# TYPE redshift_iam_proxy_ready gauge",
        "redshift_iam_proxy_ready 0",
        "# HELP redshift_iam_proxy_peers Other replicas cancels can be forwarded to: found by [peers] dns at the last resolution, or listed in [peers] addresses.",
        "# TYPE redshift_iam_proxy_peers gauge",
        "redshift_iam_proxy_peers 0",
        "# HELP redshift_iam_proxy_build_info The running version.",
        "# TYPE redshift_iam_proxy_build_info gauge",
        concat!("redshift_iam_proxy_build_info{version=\"", env!("CARGO_PKG_VERSION"), "\"} 1"),
        "# HELP redshift_iam_proxy_credential_cache_entries Credentials held in the cache.",
        "# TYPE redshift_iam_proxy_credential_cache_entries gauge",
        "redshift_iam_proxy_credential_cache_entries 0",
        "# HELP redshift_iam_proxy_credential_oldest_expiry_seconds Seconds until the soonest-expiring cached credential expires (0 when none).",
        "# TYPE redshift_iam_proxy_credential_oldest_expiry_seconds gauge",
        "redshift_iam_proxy_credential_oldest_expiry_seconds 0.0",
        "# HELP redshift_iam_proxy_pool_servers Server connections per pool by state.",
        "# TYPE redshift_iam_proxy_pool_servers gauge",
        "redshift_iam_proxy_pool_servers{pool=\"alice/dev@c\",target=\"c\",state=\"active\"} 0",
        "redshift_iam_proxy_pool_servers{pool=\"alice/dev@c\",target=\"c\",state=\"idle\"} 0",
        "redshift_iam_proxy_pool_servers{pool=\"alice/dev@c\",target=\"c\",state=\"opening\"} 0",
        "# HELP redshift_iam_proxy_pool_clients_waiting Clients waiting for a server, per pool.",
        "# TYPE redshift_iam_proxy_pool_clients_waiting gauge",
        "redshift_iam_proxy_pool_clients_waiting{pool=\"alice/dev@c\",target=\"c\"} 0",
        "# HELP redshift_iam_proxy_pool_clients_active Clients using a pool now.",
        "# TYPE redshift_iam_proxy_pool_clients_active gauge",
        "redshift_iam_proxy_pool_clients_active{pool=\"alice/dev@c\",target=\"c\"} 5",
        "# HELP redshift_iam_proxy_pool_checkouts Server checkouts per pool.",
        "# TYPE redshift_iam_proxy_pool_checkouts counter",
        "redshift_iam_proxy_pool_checkouts_total{pool=\"alice/dev@c\",target=\"c\"} 3",
        "# HELP redshift_iam_proxy_pool_checkout_waits Checkouts that waited 1 ms or more for a server.",
        "# TYPE redshift_iam_proxy_pool_checkout_waits counter",
        "redshift_iam_proxy_pool_checkout_waits_total{pool=\"alice/dev@c\",target=\"c\"} 4",
        "# HELP redshift_iam_proxy_pool_checkout_wait_seconds Total time clients waited for a server (divide by checkouts for the mean).",
        "# TYPE redshift_iam_proxy_pool_checkout_wait_seconds counter",
        "redshift_iam_proxy_pool_checkout_wait_seconds_total{pool=\"alice/dev@c\",target=\"c\"} 2.5",
        "# HELP redshift_iam_proxy_pool_checkout_max_wait_seconds Longest wait for a server since the pool was created.",
        "# TYPE redshift_iam_proxy_pool_checkout_max_wait_seconds gauge",
        "redshift_iam_proxy_pool_checkout_max_wait_seconds{pool=\"alice/dev@c\",target=\"c\"} 1.5",
        "# HELP redshift_iam_proxy_pool_resets Server resets at check-in.",
        "# TYPE redshift_iam_proxy_pool_resets counter",
        "redshift_iam_proxy_pool_resets_total{pool=\"alice/dev@c\",target=\"c\"} 8",
        "# HELP redshift_iam_proxy_pool_resets_failed Server resets that failed (server closed).",
        "# TYPE redshift_iam_proxy_pool_resets_failed counter",
        "redshift_iam_proxy_pool_resets_failed_total{pool=\"alice/dev@c\",target=\"c\"} 9",
        "# HELP redshift_iam_proxy_pool_servers_opened Server logins per pool.",
        "# TYPE redshift_iam_proxy_pool_servers_opened counter",
        "redshift_iam_proxy_pool_servers_opened_total{pool=\"alice/dev@c\",target=\"c\"} 6",
        "# HELP redshift_iam_proxy_pool_server_logins_failed Failed server logins per pool.",
        "# TYPE redshift_iam_proxy_pool_server_logins_failed counter",
        "redshift_iam_proxy_pool_server_logins_failed_total{pool=\"alice/dev@c\",target=\"c\"} 7",
        "# HELP redshift_iam_proxy_pool_servers_closed Servers closed per pool by reason.",
        "# TYPE redshift_iam_proxy_pool_servers_closed counter",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"broken\"} 3",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"client_left_mid_query\"} 6",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"evicted\"} 8",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"idle\"} 2",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"lifetime\"} 1",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"reconnect\"} 9",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"reset_failed\"} 4",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"settings_refused\"} 10",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"shutdown\"} 7",
        "redshift_iam_proxy_pool_servers_closed_total{pool=\"alice/dev@c\",target=\"c\",reason=\"tainted\"} 5",
        "# HELP redshift_iam_proxy_pool_transactions Transactions relayed per pool.",
        "# TYPE redshift_iam_proxy_pool_transactions counter",
        "redshift_iam_proxy_pool_transactions_total{pool=\"alice/dev@c\",target=\"c\"} 10",
        "# HELP redshift_iam_proxy_pool_queries Queries relayed per pool.",
        "# TYPE redshift_iam_proxy_pool_queries counter",
        "redshift_iam_proxy_pool_queries_total{pool=\"alice/dev@c\",target=\"c\"} 11",
        "# HELP redshift_iam_proxy_pool_bytes Bytes relayed per pool by direction.",
        "# TYPE redshift_iam_proxy_pool_bytes counter",
        "redshift_iam_proxy_pool_bytes_total{pool=\"alice/dev@c\",target=\"c\",direction=\"client_to_server\"} 12",
        "redshift_iam_proxy_pool_bytes_total{pool=\"alice/dev@c\",target=\"c\",direction=\"server_to_client\"} 13",
        "# HELP redshift_iam_proxy_cluster_logins_held Server logins held now because the cluster is in an outage.",
        "# TYPE redshift_iam_proxy_cluster_logins_held gauge",
        "redshift_iam_proxy_cluster_logins_held{target=\"c\"} 2",
        "# HELP redshift_iam_proxy_cluster_login_holds Held logins by how they ended (login: the cluster came back in time; error: pool.outage_hold_secs ran out).",
        "# TYPE redshift_iam_proxy_cluster_login_holds counter",
        "redshift_iam_proxy_cluster_login_holds_total{target=\"c\",outcome=\"error\"} 4",
        "redshift_iam_proxy_cluster_login_holds_total{target=\"c\",outcome=\"login\"} 3",
        "# HELP redshift_iam_proxy_cluster_longest_hold_seconds Longest held login that ended in a login.",
        "# TYPE redshift_iam_proxy_cluster_longest_hold_seconds gauge",
        "redshift_iam_proxy_cluster_longest_hold_seconds{target=\"c\"} 1.25",
        "# HELP redshift_iam_proxy_cluster_outages Outages seen (the cluster stopped taking logins).",
        "# TYPE redshift_iam_proxy_cluster_outages counter",
        "redshift_iam_proxy_cluster_outages_total{target=\"c\"} 5",
        "# HELP redshift_iam_proxy_cluster_in_outage 1 while the cluster is not taking logins (readiness stays ready: the proxy is holding its clients).",
        "# TYPE redshift_iam_proxy_cluster_in_outage gauge",
        "redshift_iam_proxy_cluster_in_outage{target=\"c\"} 0",
        "# EOF",
    ];
}
