//! redshift-iam-proxy: a PostgreSQL-wire proxy and connection pooler for Amazon Redshift.
//!
//! Clients connect without a password; the proxy maps their user name to a
//! Redshift identity, mints a short-lived password with IAM, logs in to the
//! cluster over verified TLS and pools those server sessions per identity.
//!
//! The layers, from the ground up (each imports only the ones before it; ARCHITECTURE.md
//! has the whole map and the invariants):
//! - `base`: event counters, the refusal a client hears, the socket, the mutex helper;
//! - `config`: the configuration file, parsed and validated;
//! - `client`: the client side (handshake, authentication, identity tokens, local CA, caps);
//! - `aws`: the AWS side (credential API calls, their errors, the credential cache);
//! - `cluster`: the cluster side (endpoint, TLS, upstream login, connector, outages, resume);
//! - `access`: who is who (user mapping, the pure login policy, startup-parameter compat);
//! - `cancel`: cancel keys, and cancels forwarded between replicas;
//! - `pool`: server pools per identity, checkout, reset, the server's tracked state;
//! - `relay`: bytes between client and server, and the transaction-mode state machine;
//! - `context`: what every connection shares (`Shared`), the started and live configuration;
//! - `admin`: probes, metrics exposition, the admin console, reload;
//! - `session`: one client connection end to end;
//! - `app`: listeners, prewarm and the `check` subcommand.
//!
//! With the `demo` feature (on by default) `testbed` is the cluster + emulator + proxy that
//! tests, benches, the soak test and the one-command demo (`testbed::demo`) run on; it sits
//! above `app` (it starts the proxy) and nothing but `main.rs`, tests and benches use it.
//!
//! Beside this crate: `redshift_wire` (crates/wire: every wire byte and the SQL lexer,
//! re-exported here as `wire`), `redshift_tokens` (crates/tokens), `redshift_emulator`
//! (crates/emulator) and `local_cluster` (crates/local-cluster).

pub mod access;
pub mod admin;
pub mod app;
pub mod aws;
pub mod base;
pub mod cancel;
pub mod client;
pub mod cluster;
pub mod config;
pub mod context;
pub mod pool;
pub mod relay;
pub mod session;
#[cfg(feature = "demo")]
pub mod testbed;
pub use redshift_wire as wire;
