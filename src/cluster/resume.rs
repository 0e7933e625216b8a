//! Waking a paused provisioned cluster (`[cluster] resume_paused`, issue 19 item 4).
//!
//! When a client login cannot reach the cluster, the login path asks this target's [`Waker`]
//! whether the cluster is paused. The waker looks the status up with DescribeClusters (one
//! call at a time per target, the answer cached for [`STATUS_TTL`], so any number of waiting
//! clients cost one call every couple of seconds), and when the cluster is `paused` calls
//! ResumeCluster once (single flight; an `InvalidClusterState` answer means someone else,
//! e.g. another proxy replica, resumed it first, and is taken as "resuming"). The login is
//! then held until DescribeClusters says `available` or `resume_hold_secs` pass.
//!
//! Without `resume_paused` a login that finds the cluster paused fails at once with an error
//! naming the cluster and the setting (a paused cluster does not come back by itself, so
//! holding would only delay the error). Serverless needs no call: a workgroup resumes on
//! the first connection, and the outage hold covers its slow first login.
//!
//! Only client logins wake a cluster: the pool's own logins (prewarm, `min_size` top-up) run
//! outside [`client_login`] and never resume a cluster an operator paused.

use crate::aws::credentials::RedshiftApi;
use crate::aws::error::CredentialError;
use crate::base::refusal::Refusal;
use crate::cluster::upstream::UpstreamError;
use crate::cluster::Target;
use crate::config::{ClusterConfig, CredentialMode};
// A login refused because the cluster is paused or did not come back in time answers
// `cannot_connect_now`, as PostgreSQL does while starting up.
use crate::wire::protocol::sqlstate::CANNOT_CONNECT_NOW;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a looked-up cluster status is reused (single flight across the target's logins).
pub const STATUS_TTL: Duration = Duration::from_secs(2);
/// After a ResumeCluster AWS accepted, no second call for this long (DescribeClusters may
/// still say `paused` for a moment).
const RESUME_AGAIN_AFTER: Duration = Duration::from_secs(60);

tokio::task_local! {
    /// Set while a client waits for this login (see [`client_login`]).
    static CLIENT_LOGIN: ();
}

/// Runs `login` as a client's login: only such logins may resume a paused cluster (the
/// pool's own prewarm and `min_size` logins must never wake a cluster an operator paused).
pub async fn client_login<F: Future>(login: F) -> F::Output {
    CLIENT_LOGIN.scope((), login).await
}

/// Whether the current task is a client's login ([`client_login`]).
pub fn is_client_login() -> bool {
    CLIENT_LOGIN.try_with(|_| ()).is_ok()
}

/// What DescribeClusters says about a provisioned cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    /// `ClusterStatus`: `available`, `paused`, `resuming`, `rebooting`, `modifying`, …
    pub status: String,
    /// `ClusterAvailabilityStatus`: `Available`, `Unavailable`, `Maintenance`, … (when given).
    pub availability: Option<String>,
}

/// DescribeClusters for one cluster: its status.
pub async fn describe(
    api: &RedshiftApi,
    identifier: &str,
) -> Result<ClusterState, CredentialError> {
    let cluster = api.describe_cluster(identifier).await?;
    Ok(ClusterState {
        status: cluster.cluster_status().unwrap_or("unknown").to_owned(),
        availability: cluster.cluster_availability_status().map(str::to_owned),
    })
}

/// ResumeCluster. `Ok(true)`: AWS accepted it; `Ok(false)`: `InvalidClusterState`, the
/// cluster was no longer paused (a concurrent resume won).
pub async fn resume(api: &RedshiftApi, identifier: &str) -> Result<bool, CredentialError> {
    const OP: &str = "ResumeCluster";
    let sent = api
        .call(OP, || {
            api.redshift()
                .resume_cluster()
                .cluster_identifier(identifier)
                .send()
        })
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e) if is_invalid_cluster_state(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The code AWS answers a state change with when the cluster is in the wrong state.
pub fn is_invalid_cluster_state(e: &CredentialError) -> bool {
    matches!(
        e.code.as_str(),
        "InvalidClusterState" | "InvalidClusterStateFault"
    )
}

/// What a login that found the cluster unreachable should do, as far as pausing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeState {
    /// Not paused (`available`, `rebooting`, `modifying`, …), or the status could not be
    /// looked up (`None`): handle the failure as any other outage.
    NotPaused { status: Option<String> },
    /// The cluster is on its way back (ResumeCluster called by this proxy or by someone
    /// else, or it is still pausing and will be resumed once paused): hold the login until
    /// it is `available` ([`Waker::wait_available`]). `since`: when this proxy first saw it so.
    Resuming { since: Instant },
}

/// Why: the last status seen and what this proxy did about it, shared by a target's logins.
#[derive(Debug, Default)]
struct Seen {
    /// The last DescribeClusters answer and when it came.
    status: Option<(Instant, String)>,
    /// When DescribeClusters last failed (the failure is reused like an answer).
    failed: Option<(Instant, CredentialError)>,
    /// When this proxy first saw the cluster on its way back, while it is.
    waking_since: Option<Instant>,
    /// When AWS last accepted a ResumeCluster of ours.
    resumed_at: Option<Instant>,
}

/// Per-target single flight for waking a paused cluster: one DescribeClusters at a time
/// (answers reused for [`STATUS_TTL`]) and one ResumeCluster per pause.
#[derive(Debug)]
pub struct Waker {
    /// The target's name, for logs and metrics.
    target: String,
    enabled: bool,
    hold: Duration,
    seen: tokio::sync::Mutex<Seen>,
}

impl Waker {
    /// The waker of one `[cluster]` target (`resume_paused`, `resume_hold_secs`).
    pub fn new(cluster: &ClusterConfig) -> Self {
        Waker {
            target: cluster.label().to_owned(),
            enabled: cluster.resume_paused && cluster.credentials != CredentialMode::Serverless,
            hold: Duration::from_secs(cluster.resume_hold_secs),
            seen: tokio::sync::Mutex::new(Seen::default()),
        }
    }

    /// `resume_paused` (always false for a Serverless workgroup).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `resume_hold_secs`: the longest a login is held for a resume.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// The cluster's `ClusterStatus`, looked up at most once per [`STATUS_TTL`] for all of
    /// this target's logins.
    pub async fn status(
        &self,
        api: &RedshiftApi,
        identifier: &str,
    ) -> Result<String, CredentialError> {
        let mut seen = self.seen.lock().await;
        self.status_locked(&mut seen, api, identifier).await
    }

    async fn status_locked(
        &self,
        seen: &mut Seen,
        api: &RedshiftApi,
        identifier: &str,
    ) -> Result<String, CredentialError> {
        if let Some((at, status)) = &seen.status {
            if at.elapsed() < STATUS_TTL {
                return Ok(status.clone());
            }
        }
        if let Some((at, e)) = &seen.failed {
            if at.elapsed() < STATUS_TTL {
                return Err(e.clone());
            }
        }
        match describe(api, identifier).await {
            Ok(state) => {
                seen.failed = None;
                seen.status = Some((Instant::now(), state.status.clone()));
                Ok(state.status)
            }
            Err(e) => {
                seen.status = None;
                seen.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Called when a login could not reach the cluster: looks its status up (single flight)
    /// and, if it is paused and `resume_paused` is on, calls ResumeCluster once.
    ///
    /// `Err` is the refusal the login must fail with now: the cluster is paused (or pausing)
    /// and `resume_paused` is off, or ResumeCluster was refused (e.g. AccessDenied).
    pub async fn wake_if_paused(
        &self,
        api: &RedshiftApi,
        identifier: &str,
    ) -> Result<WakeState, Refusal> {
        let mut seen = self.seen.lock().await;
        let status = match self.status_locked(&mut seen, api, identifier).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(target = %self.target, cluster = identifier, error = %e, "cluster status unknown; not a resume case");
                return Ok(WakeState::NotPaused { status: None });
            }
        };
        let now = Instant::now();
        match status.as_str() {
            "paused" | "pausing" if !self.enabled => Err(paused_refusal(identifier, &status)),
            "paused" => {
                let recently = seen
                    .resumed_at
                    .is_some_and(|t| now.duration_since(t) < RESUME_AGAIN_AFTER);
                if !recently {
                    self.request_resume(&mut seen, api, identifier).await?;
                }
                Ok(WakeState::Resuming {
                    since: *seen.waking_since.get_or_insert(now),
                })
            }
            "pausing" | "resuming" if self.enabled => Ok(WakeState::Resuming {
                since: *seen.waking_since.get_or_insert(now),
            }),
            _ => {
                seen.waking_since = None;
                Ok(WakeState::NotPaused {
                    status: Some(status),
                })
            }
        }
    }

    /// Calls ResumeCluster (the caller holds the single-flight lock) and counts it.
    async fn request_resume(
        &self,
        seen: &mut Seen,
        api: &RedshiftApi,
        identifier: &str,
    ) -> Result<(), Refusal> {
        match resume(api, identifier).await {
            Ok(true) => {
                crate::base::events::cluster_resume(&self.target, "ok");
                tracing::info!(target = %self.target, cluster = identifier, "cluster is paused: ResumeCluster requested (resume_paused = true)");
                let now = Instant::now();
                seen.resumed_at = Some(now);
                seen.status = Some((now, "resuming".into()));
                Ok(())
            }
            Ok(false) => {
                crate::base::events::cluster_resume(&self.target, "already_resuming");
                tracing::info!(target = %self.target, cluster = identifier, "cluster was paused, but ResumeCluster answered InvalidClusterState: another caller resumed it first");
                // Look again next time rather than trusting the `paused` just seen.
                seen.status = None;
                Ok(())
            }
            Err(e) => {
                let outcome = if e.kind == crate::aws::error::FailureKind::Denied {
                    "denied"
                } else {
                    "failed"
                };
                crate::base::events::cluster_resume(&self.target, outcome);
                tracing::warn!(target = %self.target, cluster = identifier, error = %e, "cluster is paused and ResumeCluster failed");
                Err(resume_failed_refusal(identifier, &e))
            }
        }
    }

    /// Waits until the cluster is `available` (DescribeClusters, shared by every waiting
    /// login), at most until `deadline`; a paused cluster found on the way is resumed again
    /// (a resume AWS could not complete).
    pub async fn wait_available(
        &self,
        api: &RedshiftApi,
        identifier: &str,
        deadline: Instant,
    ) -> Result<(), Refusal> {
        let mut last = String::from("unknown");
        loop {
            match self.wake_if_paused(api, identifier).await? {
                WakeState::NotPaused {
                    status: Some(status),
                } if status == "available" => return Ok(()),
                WakeState::NotPaused { status } => {
                    last = status.unwrap_or_else(|| "unknown".into());
                }
                WakeState::Resuming { .. } => {
                    if let Some((_, s)) = &self.seen.lock().await.status {
                        last.clone_from(s);
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Refusal::new(
                    CANNOT_CONNECT_NOW,
                    format!(
                        "cluster \"{identifier}\" did not become available within {} s of waiting for it to resume (cluster.resume_hold_secs); its status is {last}",
                        self.hold.as_secs()
                    ),
                    Some("try again later; a resume can take several minutes, raise resume_hold_secs to hold logins longer"),
                ));
            }
            // A poll with a deadline: the status is looked up at most once per STATUS_TTL
            // for all waiting logins.
            tokio::time::sleep(STATUS_TTL.min(deadline - now)).await;
        }
    }

    /// The NOTICE a held client gets: `cluster X is resuming, holding this login up to N s`.
    pub fn notice(&self, cluster: &str, hold: Duration) -> String {
        format!(
            "cluster {cluster} is resuming, holding this login up to {} s",
            hold.as_secs()
        )
    }
}

/// A login refused because the cluster is paused and the proxy may not resume it.
fn paused_refusal(identifier: &str, status: &str) -> Refusal {
    Refusal::new(
        CANNOT_CONNECT_NOW,
        format!(
            "cluster \"{identifier}\" is {status}; the proxy does not resume paused clusters (cluster.resume_paused = false)"
        ),
        Some("resume the cluster (console, or `aws redshift resume-cluster`), or set resume_paused = true in the proxy's [cluster] section to resume it at the first login (needs redshift:ResumeCluster)"),
    )
}

/// A login refused because ResumeCluster failed.
fn resume_failed_refusal(identifier: &str, e: &CredentialError) -> Refusal {
    let hint = match e.kind {
        crate::aws::error::FailureKind::Denied => format!(
            "allow redshift:ResumeCluster on the cluster (arn:aws:redshift:REGION:ACCOUNT:cluster:{identifier}) for the proxy's AWS identity; `redshift-iam-proxy check` names both"
        ),
        _ => "resume the cluster yourself, or try again later".to_owned(),
    };
    Refusal {
        code: CANNOT_CONNECT_NOW.into(),
        message: format!("cluster \"{identifier}\" is paused and resuming it failed: {e}"),
        hint: Some(hint),
    }
}

/// Whether a failed server login looks like a cluster that is not there (refused, reset,
/// timed out, cut off, or "cannot connect now"): the failures a paused cluster gives.
pub fn is_unreachable(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Connect { .. }
        | UpstreamError::ConnectTimeout { .. }
        | UpstreamError::Closed => true,
        UpstreamError::Server(f) => f.code == CANNOT_CONNECT_NOW,
        _ => false,
    }
}

/// Per-login state of the resume hold (one per client login).
#[derive(Debug, Default)]
pub struct LoginHold {
    /// When this login started waiting for a resume.
    started: Option<Instant>,
    /// The login already waited for the cluster to come back once.
    waited: bool,
}

/// THE HOOK the login path calls when a client's server login failed with `err`
/// (issue 19 item 4). `Ok(true)`: the cluster was paused or resuming and is `available` now
/// after a hold: retry the login. `Ok(false)`: not a paused-cluster case (or not a client
/// login, or a Serverless target): handle `err` as before. `Err`: fail the login with this
/// refusal (paused with `resume_paused` off, ResumeCluster refused, or not back within
/// `resume_hold_secs`). `notify` gets the NOTICE text once, when the hold starts.
pub async fn hold_for_resume(
    api: &RedshiftApi,
    target: &Target,
    err: &UpstreamError,
    hold: &mut LoginHold,
    notify: &mut (dyn FnMut(String) + Send),
) -> Result<bool, Refusal> {
    if hold.waited
        || !is_unreachable(err)
        || !is_client_login()
        || target.config.credentials == CredentialMode::Serverless
    {
        return Ok(false);
    }
    let Ok(Some(identifier)) = target.endpoint.cluster_identifier().await else {
        return Ok(false);
    };
    let waker = target.endpoint.waker();
    match waker.wake_if_paused(api, &identifier).await? {
        WakeState::NotPaused { .. } => Ok(false),
        WakeState::Resuming { .. } => {
            let started = *hold.started.get_or_insert_with(Instant::now);
            notify(waker.notice(&identifier, waker.hold()));
            waker
                .wait_available(api, &identifier, started + waker.hold())
                .await?;
            hold.waited = true;
            tracing::info!(target = %target.config.label(), cluster = %identifier, held_ms = started.elapsed().as_millis() as u64, "cluster is available after resuming; logging in");
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::wire::protocol::sqlstate;

    fn cluster(extra: &str) -> Result<ClusterConfig, String> {
        Config::from_toml(&format!("[cluster]\nidentifier = \"c\"\n{extra}"))
            .map(|c| c.cluster[0].clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn resume_paused_is_off_by_default_and_holds_up_to_600_s() {
        let c = cluster("").unwrap();
        let w = Waker::new(&c);
        assert_eq!((w.enabled(), w.hold()), (false, Duration::from_secs(600)));
    }

    #[test]
    fn resume_paused_and_resume_hold_secs_are_read_from_the_cluster_section() {
        let w = Waker::new(&cluster("resume_paused = true\nresume_hold_secs = 90\n").unwrap());
        assert_eq!((w.enabled(), w.hold()), (true, Duration::from_secs(90)));
    }

    #[test]
    fn resume_paused_on_a_serverless_workgroup_is_refused_naming_why() {
        let e = Config::from_toml(
            "[cluster]\ncredentials = \"serverless\"\nworkgroup = \"wg-1\"\nresume_paused = true\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("resume_paused") && e.contains("Serverless"),
            "{e}"
        );
    }

    #[test]
    fn a_zero_resume_hold_is_refused() {
        let e = cluster("resume_hold_secs = 0\n").unwrap_err();
        assert!(e.contains("resume_hold_secs must be at least 1"), "{e}");
    }

    #[test]
    fn the_notice_names_the_cluster_and_the_hold() {
        let w = Waker::new(&cluster("resume_paused = true\n").unwrap());
        assert_eq!(
            w.notice("prod-dw", Duration::from_secs(600)),
            "cluster prod-dw is resuming, holding this login up to 600 s"
        );
    }

    #[test]
    fn a_paused_refusal_names_the_cluster_and_resume_paused() {
        let r = paused_refusal("prod-dw", "paused");
        assert_eq!(r.code, "57P03");
        assert!(
            r.message.contains("\"prod-dw\" is paused") && r.message.contains("resume_paused"),
            "{}",
            r.message
        );
    }

    #[test]
    fn refused_reset_timed_out_and_cannot_connect_now_are_unreachable_but_auth_is_not() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let fields = |code: &str| crate::wire::ErrorFields {
            code: code.into(),
            ..Default::default()
        };
        let cases = [
            (
                UpstreamError::Connect {
                    addr: "a".into(),
                    source: io(),
                },
                true,
            ),
            (
                UpstreamError::ConnectTimeout {
                    addr: "a".into(),
                    after: Duration::from_secs(1),
                },
                true,
            ),
            (UpstreamError::Closed, true),
            (UpstreamError::Server(fields(CANNOT_CONNECT_NOW)), true),
            (
                UpstreamError::Server(fields(sqlstate::INVALID_CATALOG_NAME)),
                false,
            ),
            (
                UpstreamError::AuthFailed(fields(sqlstate::INVALID_PASSWORD)),
                false,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(is_unreachable(&e), want, "{e:?}");
        }
    }

    #[tokio::test]
    async fn only_logins_run_through_client_login_are_client_logins() {
        assert_eq!(
            (
                is_client_login(),
                client_login(async { is_client_login() }).await
            ),
            (false, true)
        );
    }
}
