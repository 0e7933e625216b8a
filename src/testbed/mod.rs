//! The one test bed: a private PostgreSQL cluster (TLS, SCRAM), the credential-API
//! emulator provisioning real role passwords on it, optionally a Redshift-like front, and
//! the proxy in front, all on random loopback ports. Tests, the benchmarks, the soak test
//! and the `demo` subcommand all assemble these parts here.
//!
//! - [`BedOptions`]: what differs between beds (`default()` for tests, `bare()` otherwise);
//! - [`Parts`]: cluster, front and emulator, plus the proxy config for them;
//! - [`Bed`]: the parts with the proxy serving in-process;
//! - [`ProxyProcess`]: the proxy binary run against the parts;
//! - [`demo`]: the one-command demo (`redshift-iam-proxy demo`) on these parts.
mod bed;
mod client;
mod config;
pub mod demo;
pub mod differential;
pub mod faultline;
mod oidc;
mod options;
mod parts;
mod process;
mod redshift_front;

pub use bed::Bed;
pub use client::{connect, db_error, wait_for};
pub use config::merge_toml;
pub use oidc::OidcIssuer;
pub use options::{
    BedOptions, ConfigTweak, EmulatorTweak, TEST_PROXY_TOML, TEST_SETUP_SQL, TEST_USERS_TOML,
};
pub use parts::Parts;
pub use process::{proxy_command, ProxyProcess, ADMIN_BOUND, LISTENING};
pub use redshift_front::{PasswordLookup, RedshiftFront, REDSHIFT_SERVER_VERSION};

/// The bed's AWS access key, known to the emulator and given to every proxy.
pub const ACCESS_KEY: &str = "AKIDPROXYTEST";
pub const SECRET_KEY: &str = "proxy-test-secret-key";
/// The default cluster identifier (`BedOptions::cluster`).
pub const CLUSTER: &str = "testcluster";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why: a bed part that failed to start, named, so the demo prints a clear error and
/// tests panic saying which part.
#[derive(Debug)]
pub struct BedError {
    what: String,
    source: Option<BoxError>,
}

impl BedError {
    /// `what` failed because of `source`.
    pub fn new(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        BedError {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// A failure with no underlying error.
    pub fn msg(what: impl Into<String>) -> Self {
        BedError {
            what: what.into(),
            source: None,
        }
    }
}

impl std::fmt::Display for BedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {source}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl std::error::Error for BedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// Logs of in-process parts go to the test output (`RUST_LOG`, default `warn`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A loopback port free right now (for a fixed `listen` of a child process).
pub fn free_port() -> Result<u16, BedError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BedError::new("find a free port", e))
}
