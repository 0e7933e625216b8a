//! Opens one logged-in server connection for an identity: credential from the cache,
//! TCP + TLS, login, the rest of the startup; a cached password the cluster refuses is
//! minted again once.
//!
//! Used for every new server login, pooled or not; the pool decides *when* to open one.

use crate::cache::Source;
use crate::credentials::CredentialRequest;
use crate::refusal::Refusal;
use crate::session::{Shared, Target};
use crate::stream::Stream;
use crate::upstream::{self, Started, UpstreamError, UpstreamTarget};
use std::sync::Arc;

/// A fresh server connection and how it was made.
pub struct Opened {
    pub started: Started,
    pub upstream: Arc<UpstreamTarget>,
    /// Whether the credential came from the cache or an AWS call.
    pub source: Source,
    /// The DbUser the cluster knows this session as (exactly as AWS returned it).
    pub db_user: String,
}

/// What a server login needs: the credential request, the database and the startup
/// parameters sent to the cluster.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    pub request: CredentialRequest,
    pub database: String,
    pub params: Vec<(String, String)>,
}

/// Logs in to `target` as `spec` describes; bounded by the caller's timeout.
pub async fn open(shared: &Shared, target: &Target, spec: &LoginSpec) -> Result<Opened, Refusal> {
    let started = std::time::Instant::now();
    let opened = open_timed(shared, target, spec).await;
    if opened.is_ok() {
        crate::admin::metrics::upstream_login(target.config.label(), started.elapsed());
    }
    opened
}

// ---- BEGIN resume hook (issue 19 item 4, branch `resume`) --------------------------------
// Minimal call site of `crate::resume::hold_for_resume`, to be merged into the outage
// hold/retry loop: a login that failed to reach the cluster asks whether the cluster is
// paused (and, with `resume_paused`, has it resumed and waits for it), then retries once.
// Only client logins (run inside `crate::resume::client_login`) ever wake a cluster.

/// Why a login attempt failed: at the cluster (kept whole, so a paused cluster can be
/// told apart), or anywhere else (already a refusal).
enum Failure {
    Upstream(UpstreamError),
    Refused(Refusal),
}

impl From<UpstreamError> for Failure {
    fn from(e: UpstreamError) -> Self {
        Failure::Upstream(e)
    }
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<crate::endpoint::EndpointError> for Failure {
    fn from(e: crate::endpoint::EndpointError) -> Self {
        Failure::Refused(e.into())
    }
}

async fn open_timed(shared: &Shared, target: &Target, spec: &LoginSpec) -> Result<Opened, Refusal> {
    let mut hold = crate::resume::LoginHold::default();
    let label = target.config.label().to_owned();
    let mut notify = move |text: String| tracing::info!(target = %label, "{text}");
    loop {
        match open_attempt(shared, target, spec).await {
            Ok(opened) => return Ok(opened),
            Err(Failure::Refused(r)) => return Err(r),
            Err(Failure::Upstream(e)) => {
                if crate::resume::hold_for_resume(&shared.api, target, &e, &mut hold, &mut notify)
                    .await?
                {
                    continue;
                }
                return Err(e.into());
            }
        }
    }
}
// ---- END resume hook --------------------------------------------------------------------

async fn open_attempt(
    shared: &Shared,
    target: &Target,
    spec: &LoginSpec,
) -> Result<Opened, Failure> {
    let upstream_target = target.endpoint.target().await?;
    let req = &spec.request;
    let mut retried = false;
    loop {
        // The credential (maybe an AWS call) and the TCP+TLS connection are independent:
        // do both at once, so a cold login costs max(API, handshake), not their sum.
        let (cred, stream) = tokio::join!(shared.cache.get(req), connect(target, &upstream_target));
        let (cred, source) =
            cred.map_err(|c| Refusal::new(c.sqlstate(), c.to_string(), c.hint()))?;
        let c = &cred.credential;
        let login = upstream::login(
            stream?,
            &c.db_user,
            &c.password,
            &spec.database,
            &spec.params,
        )
        .await;
        match login {
            Ok(l) => {
                cred.mark_worked();
                let started = upstream::finish_startup(l).await?;
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
                shared.cache.invalidate(req, &cred);
                retried = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
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
