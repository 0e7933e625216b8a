//! Opens one logged-in server connection for an identity: credential from the cache,
//! TCP + TLS, login, the rest of the startup; a cached password the cluster refuses is
//! minted again once.
//!
//! Used for every new server login, pooled or not; the pool decides *when* to open one.

use crate::aws::cache::CredentialCache;
use crate::aws::cache::Source;
use crate::aws::credentials::CredentialRequest;
use crate::aws::credentials::SharedApi;
use crate::base::refusal::Refusal;
use crate::base::stream::Stream;
use crate::cluster::outage::{Failure, Holding, Verdict};
use crate::cluster::upstream::{self, Started, UpstreamError, UpstreamTarget};
use crate::cluster::Target;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fresh server connection and how it was made.
pub struct Opened {
    pub started: Started,
    pub upstream: Arc<UpstreamTarget>,
    /// Whether the credential came from the cache or an AWS call.
    pub source: Source,
    /// The DbUser the cluster knows this session as (exactly as AWS returned it).
    pub db_user: String,
}

/// What opening a server needs from the rest of the proxy (a narrow handle, so this layer
/// never sees the application context): the targets, the credential API and cache, and
/// the outage hold as configured now (read at each login, so a reload applies).
#[derive(Clone)]
pub struct Connector {
    pub targets: Arc<Vec<Target>>,
    pub api: SharedApi,
    pub cache: Arc<CredentialCache>,
    /// `[pool] outage_hold_secs` of the live configuration.
    pub hold: Arc<dyn Fn() -> Duration + Send + Sync>,
}

/// What a server login needs: the credential request, the database and the startup
/// parameters sent to the cluster.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    pub request: CredentialRequest,
    pub database: String,
    pub params: crate::wire::StartupParams,
}

/// Logs in to `target` as `spec` describes, once; bounded by the caller's timeout.
pub async fn open(
    connector: &Connector,
    target: &Target,
    spec: &LoginSpec,
) -> Result<Opened, Refusal> {
    open_once(connector, target, spec)
        .await
        .map_err(|f| f.refusal)
}

/// Logs in to `target`, each attempt bounded by `attempt_timeout`; while the cluster
/// cannot take logins (an outage) the login is held and retried up to
/// `[pool] outage_hold_secs` (see [`crate::cluster::outage`]).
pub async fn open_held(
    connector: &Connector,
    target: &Target,
    spec: &LoginSpec,
    attempt_timeout: Duration,
) -> Result<Opened, Refusal> {
    let hold = (connector.hold)();
    let outage = &target.outage;
    let label = target.config.label();
    let mut started = Instant::now();
    let mut deadline = started + hold;
    let mut holding = None;
    let mut attempt = 0u32;
    let mut last_cause = String::new();
    let mut resume = crate::cluster::resume::LoginHold::default();
    let mut notify = |text: String| tracing::info!(target = %label, "{text}");
    loop {
        let Some(turn) = outage.probe_turn(deadline).await else {
            let r = outage.gave_up(label, &last_cause, started);
            outage.hold_finished(started.elapsed(), false);
            return Err(r);
        };
        let failure = match tokio::time::timeout(
            attempt_timeout,
            open_once(connector, target, spec),
        )
        .await
        {
            Ok(Ok(opened)) => {
                outage.ended(label);
                if holding.is_some() {
                    outage.hold_finished(started.elapsed(), true);
                    tracing::info!(target = %label, held_secs = started.elapsed().as_secs_f64(), "held login succeeded");
                }
                return Ok(opened);
            }
            Ok(Err(f)) => f,
            Err(_) => Failure::timed_out(attempt_timeout),
        };
        last_cause = failure.cause.clone();
        if let Some(e) = &failure.upstream {
            // A paused cluster (woken with `resume_paused`): its wait is not an outage's.
            if crate::cluster::resume::hold_for_resume(
                &connector.api,
                target,
                e,
                &mut resume,
                &mut notify,
            )
            .await?
            {
                drop(turn);
                started = Instant::now();
                deadline = started + hold;
                continue;
            }
        }
        match outage.after_failure(label, failure, attempt, started, hold) {
            Verdict::Retry(pause) => {
                holding.get_or_insert_with(|| Holding::new(outage));
                tracing::debug!(target = %label, attempt, cause = %last_cause, "cluster unavailable; login held");
                tokio::time::sleep(pause).await;
                drop(turn);
                attempt += 1;
            }
            Verdict::Fail(r) => {
                if holding.is_some() {
                    outage.hold_finished(started.elapsed(), false);
                }
                return Err(r);
            }
        }
    }
}

async fn open_once(
    connector: &Connector,
    target: &Target,
    spec: &LoginSpec,
) -> Result<Opened, Failure> {
    let started = Instant::now();
    let opened = open_timed(connector, target, spec).await;
    if opened.is_ok() {
        crate::base::events::upstream_login(target.config.label(), started.elapsed());
    }
    opened
}

async fn open_timed(
    connector: &Connector,
    target: &Target,
    spec: &LoginSpec,
) -> Result<Opened, Failure> {
    let upstream_target = target
        .endpoint
        .target()
        .await
        .map_err(|e| Failure::refused(e.into()))?;
    let req = &spec.request;
    let mut retried = false;
    loop {
        // The credential (maybe an AWS call) and the TCP+TLS connection are independent:
        // do both at once, so a cold login costs max(API, handshake), not their sum.
        let (cred, stream) =
            tokio::join!(connector.cache.get(req), connect(target, &upstream_target));
        let (cred, source) = cred
            .map_err(|c| Failure::refused(Refusal::new(c.sqlstate(), c.to_string(), c.hint())))?;
        let stream = stream.map_err(Failure::upstream)?;
        let c = &cred.credential;
        let login = upstream::login(
            stream,
            &c.db_user,
            &c.password,
            &spec.database,
            &spec.params,
        )
        .await;
        match login {
            Ok(l) => {
                cred.mark_worked();
                let mut started = upstream::finish_startup(l)
                    .await
                    .map_err(Failure::upstream)?;
                if is_redshift(&started) {
                    absorb_resume_artefact(&mut started, target.config.label()).await?;
                }
                return Ok(Opened {
                    started,
                    upstream: upstream_target,
                    source,
                    db_user: cred.credential.db_user.clone(),
                });
            }
            Err(UpstreamError::AuthFailed(f))
                if source == Source::Cached && !retried && cred.worth_reminting() =>
            {
                // The cached password no longer works (rotated, expired early): mint again once.
                tracing::info!(code = %f.code, "cluster refused the cached credential; minting a new one");
                connector.cache.invalidate(req, &cred);
                retried = true;
            }
            Err(e) => return Err(Failure::upstream(e)),
        }
    }
}

/// Whether the server is Redshift (its server_version is 8.0.2).
fn is_redshift(started: &Started) -> bool {
    started
        .parameters()
        .iter()
        .any(|(k, v)| k == "server_version" && crate::wire::protocol::is_redshift_version(v))
}

/// Redshift Serverless fails the first statement after it resumed with 57014 "Query
/// cancelled." from routine `NFTSetupSessionStateOnRestore` (aws/amazon-redshift-python-
/// driver #150). A `SELECT 1` of the proxy's, on every new Redshift server, takes that
/// artefact (retried once), so no client statement does.
async fn absorb_resume_artefact(started: &mut Started, target: &str) -> Result<(), Failure> {
    const PROBE_LIMIT: Duration = Duration::from_secs(30);
    for attempt in 0..2 {
        match upstream::simple_query(started, "SELECT 1", PROBE_LIMIT).await {
            Ok(None) => return Ok(()),
            Ok(Some(e)) if attempt == 0 && is_resume_artefact(&e) => {
                tracing::info!(target = %target, "first statement after a resume was cancelled (NFTSetupSessionStateOnRestore); retried before any client statement");
            }
            Ok(Some(e)) => return Err(Failure::upstream(UpstreamError::Server(e))),
            Err(why) => return Err(Failure::upstream(UpstreamError::Protocol(why))),
        }
    }
    Ok(())
}

fn is_resume_artefact(e: &crate::wire::ErrorFields) -> bool {
    e.code == crate::wire::protocol::sqlstate::QUERY_CANCELED
        && (e.routine.as_deref() == Some("NFTSetupSessionStateOnRestore")
            || e.message.eq_ignore_ascii_case("Query cancelled."))
}

/// Connects to the cluster; a looked-up endpoint that refuses is forgotten.
async fn connect(
    target: &Target,
    upstream_target: &Arc<UpstreamTarget>,
) -> Result<Stream, UpstreamError> {
    let result = upstream::connect(upstream_target).await;
    if let Err(UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }) = &result {
        target.endpoint.forget(upstream_target).await;
    }
    result
}
