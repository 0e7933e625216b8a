//! Operations: what an operator sees and steers without reading logs.
//!
//! - `http`: the `[admin] listen` server (`/startup`, `/liveness`, `/readiness`, `/metrics`);
//! - `metrics`: Prometheus families (prometheus-client) and the per-scrape pool view;
//! - `console`: the PgBouncer-like console (database `redshift_iam_proxy`);
//! - `registry`: live clients, for `SHOW CLIENTS` and `KILL_CLIENT`;
//! - `reload`: SIGHUP / `RELOAD` re-reading the configuration;
//! - `pause`: `PAUSE` / `RESUME` holding new checkouts;
//! - `peers`: cancels forwarded between replicas (`[peers]`), replicas found by DNS.

pub mod console;
pub mod http;
pub mod metrics;
pub mod reload;

/// The database name that reaches the admin console instead of a cluster.
pub const CONSOLE_DATABASE: &str = "redshift_iam_proxy";
