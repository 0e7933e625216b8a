//! Emulator of the Amazon Redshift credential APIs: Redshift (`GetClusterCredentials`,
//! `GetClusterCredentialsWithIAM`, `DescribeClusters`, `DescribeCustomDomainAssociations`,
//! and the cluster state changes `PauseCluster`, `ResumeCluster`, `RebootCluster`),
//! Redshift Serverless (`GetCredentials`, `GetWorkgroup`) and STS (`AssumeRole`,
//! `GetCallerIdentity`), all on one endpoint.
//!
//! Provisioned clusters have a state (`available`, `pausing`, `paused`, `resuming`,
//! `rebooting`; see [`ClusterStatus`]) that DescribeClusters reports; a [`ClusterPower`] hook
//! ([`Emulator::set_cluster_power`]) stops and starts the database behind a cluster to match,
//! so a paused cluster refuses connections. Resuming and rebooting take a configurable delay
//! ([`EmulatorConfig::resume_delay`], [`Emulator::set_resume_delay`]).
//!
//! It speaks AWS Query (Redshift, STS) and JSON 1.1 (Serverless) over HTTP/1.1, verifies SigV4
//! signatures for each service's signing name, validates parameters as the API reference says,
//! and provisions every minted password as a real PostgreSQL login role (`IAM:<DbUser>`,
//! `IAMA:<DbUser>`, `IAMR:<role>`) with `VALID UNTIL`, so logins made with emulated credentials
//! are real logins. Tests can inject faults and delays.
//!
//! STS also answers presigned (SigV4 query-string) `GetCallerIdentity` GETs, in JSON when asked
//! (`Accept: application/json`): the AWS-signed identity tokens of aws-iam-authenticator and
//! Vault's AWS auth. Each configured [`AccessKey`] carries its own identity, and principals'
//! unique ids can be re-created ([`Emulator::recreate_role`]).

mod api;
pub mod cli;
mod error;
mod identity;
mod lifecycle;
mod provision;
mod server;
mod serverless;
mod sigv4;
mod state;
mod sts;
mod validate;
mod xml;

#[cfg(test)]
mod e2e;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use cli::{
    run, AccessKeySpec, ClusterSpec, EmulatorArgs, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY,
};
pub use lifecycle::{ClusterPower, ClusterStatus};

/// Why: the newest password minted for a login role, or `None`: how a server standing in for
/// Redshift checks the passwords the emulator hands out.
pub type PasswordLookup = Arc<dyn Fn(&str) -> Option<secrecy::SecretString> + Send + Sync>;

/// Account id used in every emulated ARN.
pub const ACCOUNT_ID: &str = "123456789012";
/// Identity of keys built with [`AccessKey::new`].
pub const DEFAULT_KEY_ARN: &str = "arn:aws:iam::123456789012:user/emulator";

/// Why: an AWS access key the emulator accepts, with the identity behind it and the actions
/// IAM would deny it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The caller identity (`arn:aws:iam::ACCOUNT:user/NAME`, or for temporary keys
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`); decides the IAM-mapped DbUser and
    /// what `GetCallerIdentity` answers. Each key has its own, so one emulator can serve
    /// several principals.
    pub arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// When set, requests must carry this value in `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// IAM actions answered with `AccessDenied`, e.g. `redshift:JoinGroup`, `sts:AssumeRole`,
    /// `redshift-serverless:GetCredentials` (`SERVICE:*` denies a service, `*` everything).
    pub denied_actions: Vec<String>,
}

impl AccessKey {
    /// A key of [`DEFAULT_KEY_ARN`] with no session token and no denied actions.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        AccessKey {
            arn: DEFAULT_KEY_ARN.to_owned(),
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
            .field("arn", &self.arn)
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

impl EmulatedCluster {
    /// A cluster backed by a local PostgreSQL started with [`local_cluster`].
    pub fn local(identifier: impl Into<String>, pg: &local_cluster::LocalPg) -> Self {
        Self {
            identifier: identifier.into(),
            host: pg.host().into(),
            port: pg.port(),
            admin: pg.admin_config(),
        }
    }
}

/// Why: an IAM role `AssumeRole` may assume, with the Redshift groups its principal tags
/// would grant to the `IAMR:<role>` login of GetClusterCredentialsWithIAM / GetCredentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedRole {
    /// `arn:aws:iam::123456789012:role/analyst`; the last path segment is the role name.
    pub arn: String,
    /// When set, `AssumeRole` must pass exactly this `ExternalId`.
    pub external_id: Option<String>,
    /// Groups (existing PostgreSQL roles) the role's IAM-mapped login joins; others are revoked.
    pub db_groups: Vec<String>,
}

/// Why: one emulated Redshift Serverless workgroup: the endpoint GetWorkgroup reports and the
/// PostgreSQL superuser connection used to provision its login roles.
#[derive(Debug, Clone)]
pub struct EmulatedWorkgroup {
    /// 3..64 characters of `[a-z0-9-]`.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub admin: tokio_postgres::Config,
}

/// Why: everything the emulator serves: signing region, accepted keys, roles, clusters,
/// workgroups, custom domains.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub region: String,
    pub keys: Vec<AccessKey>,
    pub clusters: Vec<EmulatedCluster>,
    /// Login role names (`IAM:alice`) or DbUser names (`alice`) whose passwords are stored as
    /// MD5 instead of SCRAM-SHA-256.
    pub md5_users: Vec<String>,
    /// Roles `AssumeRole` accepts.
    pub roles: Vec<EmulatedRole>,
    pub workgroups: Vec<EmulatedWorkgroup>,
    /// `(domain, id)`: a custom domain name and the cluster identifier (Redshift APIs) or
    /// workgroup name (Serverless APIs) it is associated with.
    pub custom_domains: Vec<(String, String)>,
    /// How long ResumeCluster (and RebootCluster, after stopping) takes before the database
    /// starts again and the cluster is `available`.
    pub resume_delay: Duration,
    /// Identifiers of clusters that start `paused` (their databases are not stopped here:
    /// that is for a [`ClusterPower`] hook, see [`Emulator::pause_cluster`]).
    pub paused_clusters: Vec<String>,
}

impl Default for EmulatorConfig {
    /// Region `us-east-1`, no resume delay, everything else empty.
    fn default() -> Self {
        EmulatorConfig {
            region: "us-east-1".to_owned(),
            keys: Vec::new(),
            clusters: Vec::new(),
            md5_users: Vec::new(),
            roles: Vec::new(),
            workgroups: Vec::new(),
            custom_domains: Vec::new(),
            resume_delay: Duration::ZERO,
            paused_clusters: Vec::new(),
        }
    }
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
        let clusters = config
            .clusters
            .iter()
            .map(|c| (c.identifier.clone(), c.admin.clone()));
        let workgroups = config
            .workgroups
            .iter()
            .map(|w| (w.name.clone(), w.admin.clone()));
        let provisioners = clusters
            .chain(workgroups)
            .map(|(id, admin)| {
                let p: Arc<dyn provision::RoleProvisioner> =
                    Arc::new(provision::PgProvisioner::new(id.clone(), admin));
                (id, p)
            })
            .collect();
        Self::start_with(config, bind, provisioners).await
    }

    /// Starts with explicit provisioners per cluster id or workgroup name (tests use an
    /// in-memory catalog).
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
    /// Applies to every action of every service.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.state.push_faults(None, n, fault);
    }

    /// Like [`Emulator::fail_next`], but only calls of `action` (e.g. `GetClusterCredentials`,
    /// `GetCredentials`, `AssumeRole`) take these faults; other calls pass them by.
    pub fn fail_next_action(&self, action: &str, n: usize, fault: Fault) {
        self.state.push_faults(Some(action.to_owned()), n, fault);
    }

    /// Every call waits `d` before answering (`Duration::ZERO` turns it off).
    pub fn set_delay(&self, d: Duration) {
        self.state.set_delay(d);
    }

    /// The next `n` calls of `action` are answered only once all `n` have arrived (or after
    /// 10 s), then all at once: callers that raced in the real world race here too (e.g. two
    /// proxies resuming one cluster: both saw it paused, one resumes it, the other gets
    /// `InvalidClusterState`).
    pub fn rendezvous(&self, action: &str, n: usize) {
        self.state.set_rendezvous(action, n);
    }

    /// ResumeCluster and RebootCluster take `d` from then on before the database starts
    /// again.
    pub fn set_resume_delay(&self, d: Duration) {
        self.state.set_resume_delay(d);
    }

    /// Lets the emulator stop and start the database standing in for cluster `id` as the
    /// cluster is paused, resumed and rebooted. False if there is no such cluster.
    pub fn set_cluster_power(&self, id: &str, power: Arc<dyn ClusterPower>) -> bool {
        match self.state.cluster(id) {
            Some(c) => {
                c.lifecycle.set_power(power);
                true
            }
            None => false,
        }
    }

    /// The status DescribeClusters reports for cluster `id` now.
    pub fn cluster_status(&self, id: &str) -> Option<ClusterStatus> {
        Some(self.state.cluster(id)?.lifecycle.status())
    }

    /// Starts pausing cluster `id` as PauseCluster does (no signature, no IAM): `pausing`,
    /// its database stops, `paused`. Returns the status it moved to, or why it cannot.
    pub fn pause_cluster(&self, id: &str) -> Result<ClusterStatus, String> {
        self.change_state(id, lifecycle::Action::Pause)
    }

    /// Starts resuming cluster `id` as ResumeCluster does: `resuming`, the resume delay, its
    /// database starts, `available`.
    pub fn resume_cluster(&self, id: &str) -> Result<ClusterStatus, String> {
        self.change_state(id, lifecycle::Action::Resume)
    }

    /// Starts rebooting cluster `id` as RebootCluster does: `rebooting`, its database stops,
    /// the resume delay, it starts, `available`.
    pub fn reboot_cluster(&self, id: &str) -> Result<ClusterStatus, String> {
        self.change_state(id, lifecycle::Action::Reboot)
    }

    fn change_state(&self, id: &str, action: lifecycle::Action) -> Result<ClusterStatus, String> {
        let entry = self
            .state
            .cluster(id)
            .ok_or_else(|| format!("no cluster {id}"))?;
        entry
            .lifecycle
            .begin(action, self.state.resume_delay(), self.state.stop.clone())
            .map_err(|e| format!("{}: {}", e.code, e.message))
    }

    /// Waits until cluster `id` reports `status` (the emulator's state changes are events,
    /// not polls); fails after `within`, saying what it reports instead.
    pub async fn wait_cluster_status(
        &self,
        id: &str,
        status: ClusterStatus,
        within: Duration,
    ) -> Result<(), String> {
        let mut rx = self
            .state
            .cluster(id)
            .ok_or_else(|| format!("no cluster {id}"))?
            .lifecycle
            .watch();
        let reached = tokio::time::timeout(within, rx.wait_for(|s| *s == status))
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("cluster {id}: the emulator stopped")),
            Err(_) => Err(format!(
                "cluster {id} is still {} after {within:?}, not {status}",
                *rx.borrow()
            )),
        }
    }

    /// Drops queued faults and rendezvous and turns the delay off (the resume delay stays).
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Requests received for `action` (the Query `Action`, or for Serverless the operation
    /// named by `X-Amz-Target`), including failed ones (even failed signatures).
    pub fn call_count(&self, action: &str) -> u64 {
        self.state.call_count(action)
    }

    /// Every password minted so far (for leak checks in tests).
    pub fn issued_passwords(&self) -> Vec<String> {
        self.state.issued()
    }

    /// The newest password minted for a login role (`IAM:alice`, `IAMR:analyst`): what a
    /// Redshift-like front (the proxy's test bed) checks logins against. The
    /// lookup keeps the emulator's state alive, not its server.
    pub fn password_lookup(&self) -> PasswordLookup {
        let state = self.state.clone();
        Arc::new(move |login_role: &str| {
            state
                .newest_password(login_role)
                .map(secrecy::SecretString::from)
        })
    }

    /// The unique id IAM gives principal `arn` now: `AROA…` for a role
    /// (`arn:aws:iam::ACCOUNT:role[/PATH]/NAME`), `AIDA…` for an IAM user
    /// (`arn:aws:iam::ACCOUNT:user[/PATH]/NAME`); `None` for other ARNs. It is what
    /// `GetCallerIdentity` reports as `UserId` (for an assumed role, before `:SESSION`), stable
    /// per principal until [`Emulator::recreate_role`] / [`Emulator::recreate_user`].
    pub fn unique_id(&self, arn: &str) -> Option<String> {
        Some(match identity::principal(arn) {
            identity::Principal::User { .. } => self.state.unique_id("AIDA", arn),
            _ => self.state.unique_id("AROA", &role_seed_of(arn)?),
        })
    }

    /// Deletes and re-creates role `role_arn` as far as identities go: its unique id (`AROA…`)
    /// changes, so sessions assumed from now on report a new `UserId`, while sessions assumed
    /// before keep the old one (as in AWS, a session is bound to the role it was issued for).
    /// Returns the new unique id; `None` if `role_arn` is not a role ARN. The role need not be
    /// configured (a key may carry an assumed-role ARN of its own).
    pub fn recreate_role(&self, role_arn: &str) -> Option<String> {
        let seed = role_seed_of(role_arn)?;
        self.state.recreate(&seed);
        Some(self.state.unique_id("AROA", &seed))
    }

    /// Deletes and re-creates IAM user `user_arn` as far as identities go: its unique id
    /// (`AIDA…`) changes; its access keys keep working. Returns the new unique id; `None` if
    /// `user_arn` is not an IAM user ARN.
    pub fn recreate_user(&self, user_arn: &str) -> Option<String> {
        let identity::Principal::User { .. } = identity::principal(user_arn) else {
            return None;
        };
        self.state.recreate(user_arn);
        Some(self.state.unique_id("AIDA", user_arn))
    }

    /// All HTTP requests received.
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

/// The unique-id seed of a role ARN (`ACCOUNT/NAME`), or `None` for other ARNs.
fn role_seed_of(role_arn: &str) -> Option<String> {
    let name = identity::role_name(role_arn)?;
    let account = identity::account_of(role_arn)?;
    Some(identity::role_seed(account, name))
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}
