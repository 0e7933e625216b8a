//! Emulator of the Amazon Redshift credential APIs (`GetClusterCredentials`, `DescribeClusters`).
//!
//! It speaks the AWS Query protocol over HTTP/1.1, verifies SigV4 signatures, validates
//! parameters as the API reference says, and provisions every minted password as a real
//! PostgreSQL login role (`IAM:<DbUser>` / `IAMA:<DbUser>`) with `VALID UNTIL`, so logins made
//! with emulated credentials are real logins. Tests can inject faults and delays.

mod api;
pub mod cli;
mod error;
mod provision;
mod server;
mod sigv4;
mod state;
mod validate;
mod xml;

#[cfg(test)]
mod e2e_tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cli::{run, ClusterSpec, EmulatorArgs, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY};

/// Why: an AWS access key the emulator accepts, with the actions IAM would deny it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry this value in `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// IAM actions answered with `AccessDenied`, e.g. `redshift:JoinGroup`
    /// (`redshift:*` and `*` deny everything).
    pub denied_actions: Vec<String>,
}

impl AccessKey {
    /// A key with no session token and no denied actions.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        AccessKey {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: None,
            denied_actions: Vec::new(),
        }
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("denied_actions", &self.denied_actions)
            .finish()
    }
}

/// Why: one emulated Redshift cluster: the endpoint DescribeClusters reports and the PostgreSQL
/// superuser connection used to provision its login roles.
#[derive(Debug, Clone)]
pub struct EmulatedCluster {
    pub identifier: String,
    pub host: String,
    pub port: u16,
    pub admin: tokio_postgres::Config,
}

/// Why: everything the emulator serves: signing region, accepted keys, clusters.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub region: String,
    pub keys: Vec<AccessKey>,
    pub clusters: Vec<EmulatedCluster>,
    /// Login role names (`IAM:alice`) or DbUser names (`alice`) whose passwords are stored as
    /// MD5 instead of SCRAM-SHA-256.
    pub md5_users: Vec<String>,
}

/// Why: a failure injected into upcoming API calls, to test the proxy's error handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 400 `Throttling`, "Rate exceeded".
    Throttle,
    /// Any AWS error response.
    Error {
        status: u16,
        code: String,
        message: String,
    },
    /// Never answer; the connection stays open until the emulator stops.
    Hang,
    /// Close the TCP connection without an HTTP response.
    Disconnect,
}

/// Why: a running emulator; dropping it (or [`Emulator::shutdown`]) stops the server.
pub struct Emulator {
    state: Arc<state::State>,
    addr: SocketAddr,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Emulator {
    /// Binds `bind` (port 0 picks a free port) and starts serving.
    pub async fn start(config: EmulatorConfig, bind: SocketAddr) -> std::io::Result<Emulator> {
        let provisioners = config
            .clusters
            .iter()
            .map(|c| {
                let p: Arc<dyn provision::RoleProvisioner> = Arc::new(
                    provision::PgProvisioner::new(c.identifier.clone(), c.admin.clone()),
                );
                (c.identifier.clone(), p)
            })
            .collect();
        Self::start_with(config, bind, provisioners).await
    }

    /// Starts with explicit provisioners per cluster id (tests use an in-memory catalog).
    pub(crate) async fn start_with(
        config: EmulatorConfig,
        bind: SocketAddr,
        provisioners: Vec<(String, Arc<dyn provision::RoleProvisioner>)>,
    ) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let state = Arc::new(state::State::new(config, provisioners, stop.clone()));
        tracker.spawn(server::accept_loop(
            listener,
            state.clone(),
            stop.clone(),
            tracker.clone(),
        ));
        tracing::debug!(%addr, "Redshift emulator listening");
        Ok(Emulator {
            state,
            addr,
            stop,
            tracker,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, for `endpoint_url` of an AWS SDK client.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `n` API calls that pass SigV4 get `fault` (queued after earlier faults).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.state.push_faults(n, fault);
    }

    /// Every call waits `d` before answering (`Duration::ZERO` turns it off).
    pub fn set_delay(&self, d: Duration) {
        self.state.set_delay(d);
    }

    /// Drops queued faults and turns the delay off.
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Requests received with `Action=action`, including failed ones (even failed signatures).
    pub fn call_count(&self, action: &str) -> u64 {
        self.state.call_count(action)
    }

    /// All HTTP requests received.
    /// Every password minted so far (for leak checks in tests).
    pub fn issued_passwords(&self) -> Vec<String> {
        self.state.issued()
    }

    pub fn total_calls(&self) -> u64 {
        self.state.total_calls()
    }

    /// Stops accepting, drops open connections, and waits for connection tasks to end.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Redshift emulator tasks did not stop within 5 s");
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}
