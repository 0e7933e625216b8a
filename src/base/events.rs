//! Event counters and histograms of the whole process (prometheus-client), all named
//! `redshift_iam_proxy_*` when exposed.
//!
//! A leaf: it imports nothing of this crate, so code at any layer (the credential calls,
//! the cache, the connector, cancels) counts an event without a handle and without
//! reaching up into `admin`, which only exposes these families (`admin::metrics`).
//! Labels stay low-cardinality: target, pool label, outcome, API, reason; never a client
//! address.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use std::sync::OnceLock;
use std::time::Duration;

/// A label set: a few fixed keys with short values.
pub type Labels = Vec<(&'static str, String)>;

/// Event counters of the whole process.
pub struct Metrics {
    pub clients_open: Family<Labels, Gauge>,
    pub logins: Family<Labels, Counter>,
    pub login_seconds: Family<Labels, Histogram>,
    pub credential_calls: Family<Labels, Counter>,
    pub credential_cache: Family<Labels, Counter>,
    pub upstream_login_seconds: Family<Labels, Histogram>,
    pub bytes: Family<Labels, Counter>,
    pub cancels: Family<Labels, Counter>,
    pub reloads: Family<Labels, Counter>,
    pub console_commands: Family<Labels, Counter>,
    pub token_verifications: Family<Labels, Counter>,
    pub cluster_resumes: Family<Labels, Counter>,
}

fn seconds_histogram() -> Histogram {
    // 5 ms .. ~20 s
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        clients_open: Family::default(),
        logins: Family::default(),
        login_seconds: Family::new_with_constructor(seconds_histogram),
        credential_calls: Family::default(),
        credential_cache: Family::default(),
        upstream_login_seconds: Family::new_with_constructor(seconds_histogram),
        bytes: Family::default(),
        cancels: Family::default(),
        reloads: Family::default(),
        console_commands: Family::default(),
        token_verifications: Family::default(),
        cluster_resumes: Family::default(),
    })
}

/// Counts one open client connection on a listener until dropped.
pub struct OpenClient(Labels);

impl OpenClient {
    /// `listener` is "main" or the target of a target's own listener.
    pub fn new(listener: &str) -> OpenClient {
        let l = vec![("listener", listener.to_owned())];
        metrics().clients_open.get_or_create(&l).inc();
        OpenClient(l)
    }
}

impl Drop for OpenClient {
    fn drop(&mut self) {
        metrics().clients_open.get_or_create(&self.0).dec();
    }
}

/// A login that reached its relay (`outcome = "ok"`), with its duration.
pub fn login_ok(target: &str, took: Duration) {
    let m = metrics();
    m.logins
        .get_or_create(&vec![
            ("target", target.to_owned()),
            ("outcome", "ok".to_owned()),
        ])
        .inc();
    m.login_seconds
        .get_or_create(&vec![("target", target.to_owned())])
        .observe(took.as_secs_f64());
}

/// A refused login; the outcome is the SQLSTATE (a short fixed set).
pub fn login_refused(sqlstate: &str) {
    metrics()
        .logins
        .get_or_create(&vec![
            ("target", String::new()),
            ("outcome", format!("refused_{sqlstate}")),
        ])
        .inc();
}

/// One AWS API call (after retries) by operation and outcome (`ok`, `throttled`, …).
pub fn credential_call(api: &str, outcome: &str) {
    metrics()
        .credential_calls
        .get_or_create(&vec![
            ("api", api.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
}

/// A credential cache lookup: `hit` (no AWS call) or `miss`.
pub fn cache_lookup(hit: bool) {
    let r = if hit { "hit" } else { "miss" };
    metrics()
        .credential_cache
        .get_or_create(&vec![("result", r.to_owned())])
        .inc();
}

/// One server login (TCP + TLS + credential + startup) to `target`.
pub fn upstream_login(target: &str, took: Duration) {
    metrics()
        .upstream_login_seconds
        .get_or_create(&vec![("target", target.to_owned())])
        .observe(took.as_secs_f64());
}

/// Bytes a session relayed, counted when it ends.
pub fn session_bytes(target: &str, client_to_server: u64, server_to_client: u64) {
    let m = metrics();
    for (dir, n) in [
        ("client_to_server", client_to_server),
        ("server_to_client", server_to_client),
    ] {
        m.bytes
            .get_or_create(&vec![
                ("target", target.to_owned()),
                ("direction", dir.to_owned()),
            ])
            .inc_by(n);
    }
}

/// A CancelRequest by outcome (`forwarded`, `ignored`, `forwarded_to_peer`, …).
pub fn cancel(outcome: &str) {
    metrics()
        .cancels
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

/// A client identity token checked, by kind and outcome (no token or claim in any label).
pub fn token_verification(kind: &str, outcome: &str) {
    metrics()
        .token_verifications
        .get_or_create(&vec![
            ("kind", kind.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
}

/// A ResumeCluster this proxy sent for a paused cluster (`[cluster] resume_paused`), by
/// target and outcome: `ok`, `already_resuming` (InvalidClusterState: someone else resumed
/// it first), `denied`, `failed`.
pub fn cluster_resume(target: &str, outcome: &str) {
    metrics()
        .cluster_resumes
        .get_or_create(&vec![
            ("target", target.to_owned()),
            ("outcome", outcome.to_owned()),
        ])
        .inc();
}

/// A configuration reload: `ok` or `refused`.
pub fn reload(outcome: &str) {
    metrics()
        .reloads
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

/// A console command by its verb.
pub fn console_command(verb: &str) {
    metrics()
        .console_commands
        .get_or_create(&vec![("command", verb.to_owned())])
        .inc();
}
