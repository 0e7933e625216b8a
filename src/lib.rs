//! redshift-iam-proxy: a PostgreSQL-wire proxy and connection pooler for Amazon Redshift.
//!
//! Clients connect without a password; the proxy maps their user name to a
//! Redshift identity, mints a short-lived password with IAM, logs in to the
//! cluster over verified TLS and pools those server sessions per identity.
//!
//! Module map (one concern each):
//! - `config`: the configuration file; `mapping`: who maps to whom;
//! - `server`: listeners, connection cap and shutdown; `session`: one connection end to end
//!   (orchestrates; `session/direct` unpooled, `session/pooled` pooled);
//! - `client`: the client handshake; `clientauth`: client authentication (SCRAM,
//!   certificates); `userlimit`: per-user caps; `refusal`: errors as clients hear them;
//! - `login`: the login policy (route, map, default database, credential request, startup
//!   parameters), a pure function; `compat`: startup parameters stock drivers send that
//!   Redshift refuses;
//! - `credentials`: credential minting (the AWS API calls); `aws_error`: AWS errors
//!   classified (SQLSTATE, retry, back-off); `cache`: credential cache and single flight;
//! - `endpoint`: where the cluster is (config, DescribeClusters, GetWorkgroup, custom
//!   domain); `resume`: waking a paused cluster (DescribeClusters status, ResumeCluster,
//!   single flight per target); `connector`: opens one logged-in server (credential, TLS, login, re-mint
//!   once); `upstream`: TLS + login + startup to the cluster; `tls`, `localca`: TLS
//!   settings and the local CA that signs the client-side certificate;
//! - `pool`: pools per identity (`checkout`, `server`, `guard`, `reset`, `params`,
//!   `prepared`, `txn`, `stats`);
//! - `relay`: `relay/bytes` the byte pipe (mode none), `relay/framed` the pooled relay;
//!   `cancel`: cancel-key mapping; `audit`: one log line per session; `stream`:
//!   TLS-or-plain socket; `sync`: the mutex helper;
//! - `admin`: probes, Prometheus metrics, the admin console, reload (`[admin]`);
//! - `check`: the `check` subcommand (configuration proof);
//! - with the `demo` feature (on by default): `demo`, the one-command demo, and `testbed`,
//!   the cluster + emulator + proxy that tests, benches, the soak test and the demo run on.
//!
//! Beside this crate: `redshift_wire` (crates/wire: every wire byte and the SQL lexer,
//! re-exported here as `wire`), `redshift_emulator` (crates/emulator) and `local_cluster`
//! (crates/local-cluster).

pub mod admin;
pub mod audit;
pub mod aws_error;
pub mod cache;
pub mod cancel;
pub mod check;
pub mod client;
pub mod clientauth;
pub mod compat;
pub mod config;
pub mod connector;
pub mod credentials;
#[cfg(feature = "demo")]
pub mod demo;
pub mod endpoint;
pub mod identity;
pub mod localca;
pub mod login;
pub mod mapping;
pub mod outage;
pub mod pool;
pub mod refusal;
pub mod relay;
pub mod resume;
pub mod server;
pub mod session;
pub mod stream;
pub mod sync;
#[cfg(feature = "demo")]
pub mod testbed;
pub mod tls;
pub mod upstream;
pub mod userlimit;
pub use redshift_wire as wire;
