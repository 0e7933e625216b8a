//! Holding server logins through a cluster outage (reboot, maintenance, failover, a
//! Serverless workgroup resuming).
//!
//! A login that fails because the cluster cannot take one *now* (connection refused or
//! reset, connect timeout, TLS or startup cut off, 57P03 "the database system is starting
//! up / shutting down") is retried with jittered exponential back-off until
//! `[pool] outage_hold_secs` has passed; authentication and permission errors are never
//! held. While a target is in an outage one login at a time probes it (single flight per
//! target), so the clients held behind it do not turn the cluster's return into a login
//! storm. Start and end of each outage are logged; the counts feed metrics and the console.

use crate::base::refusal::Refusal;
use crate::cluster::upstream::UpstreamError;
use crate::wire::protocol::sqlstate;
use rand::Rng;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First pause between held login attempts; doubles up to [`MAX_BACKOFF`], ±50 % jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// SQLSTATEs a cluster answers a login with while it cannot take one now. (`53300`, the
/// connection limit, is not among them: the client hears the cluster's reason at once.)
const UNAVAILABLE_CODES: [&str; 2] = [
    sqlstate::CANNOT_CONNECT_NOW, // starting up, shutting down, in recovery
    sqlstate::ADMIN_SHUTDOWN,     // the login raced a shutdown
];

/// Whether a failed server login means the cluster cannot take logins now (held and
/// retried), as opposed to a refusal that retrying will not change.
pub fn is_unavailable(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Connect { .. }
        | UpstreamError::ConnectTimeout { .. }
        | UpstreamError::Closed => true,
        // A handshake cut off mid-way; a certificate the proxy refuses is not an outage.
        UpstreamError::Tls { reason, .. } => {
            let r = reason.to_ascii_lowercase();
            !(r.contains("certificate") || r.contains("name") || r.contains("unknownissuer"))
        }
        UpstreamError::Server(f) => {
            UNAVAILABLE_CODES.contains(&f.code.as_str()) || is_maintenance_message(&f.message)
        }
        UpstreamError::TlsRefused { .. }
        | UpstreamError::Protocol(_)
        | UpstreamError::UnsupportedAuth(_)
        | UpstreamError::AuthFailed(_) => false,
    }
}

/// Redshift's words for a cluster that is rebooting or under maintenance (see
/// ../shared/REDSHIFT.md, "Outages").
fn is_maintenance_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "the database system is starting up",
        "the database system is shutting down",
        "the database system is in recovery mode",
        "cluster is not available",
        "is being rebooted",
        "maintenance",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// Outage state of one target, shared by all its pools and direct sessions.
#[derive(Default, Debug)]
pub struct Outage {
    state: Mutex<State>,
    /// One login at a time probes a target in an outage.
    probe: tokio::sync::Mutex<()>,
    /// Logins held now.
    pub held_now: AtomicUsize,
    /// Holds that ended in a login / in an error.
    pub held_ok: AtomicU64,
    pub held_failed: AtomicU64,
    /// Longest hold that ended in a login, in milliseconds.
    pub longest_hold_ms: AtomicU64,
    /// Outages seen (a first held failure after a working login).
    pub outages: AtomicU64,
}

#[derive(Default, Debug)]
struct State {
    since: Option<Instant>,
    cause: String,
}

/// What the login loop should do after a failed attempt.
pub enum Verdict {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Give up with this refusal.
    Fail(Refusal),
}

/// One failed login attempt: whether it means an outage, its cause in words, and what the
/// client hears if it is not retried.
pub struct Failure {
    pub unavailable: bool,
    pub cause: String,
    pub refusal: Refusal,
    /// The cluster's side of it, when the failure was there (a paused cluster is told
    /// apart by it).
    pub upstream: Option<UpstreamError>,
}

impl Failure {
    pub fn upstream(e: UpstreamError) -> Failure {
        Failure {
            unavailable: is_unavailable(&e),
            cause: e.to_string(),
            refusal: Refusal::from_upstream(&e),
            upstream: Some(e),
        }
    }

    /// A refusal that retrying does not change (AWS, mapping, configuration).
    pub fn refused(refusal: Refusal) -> Failure {
        Failure {
            unavailable: false,
            cause: refusal.message.clone(),
            refusal,
            upstream: None,
        }
    }

    /// The whole login (credential, connect, startup) did not finish in `limit`.
    pub fn timed_out(limit: Duration) -> Failure {
        let refusal = Refusal::new(
            sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!(
                "login to the cluster did not complete within {} s (limits.login_timeout_secs): AWS credential API or cluster too slow",
                limit.as_secs()
            ),
            None,
        );
        // Not held: a slow AWS API looks the same, and holding it would only add waiting.
        Failure {
            unavailable: false,
            cause: format!("login did not complete within {} s", limit.as_secs()),
            refusal,
            upstream: None,
        }
    }
}

impl Outage {
    /// Whether the target is in an outage now.
    pub fn active(&self) -> bool {
        self.lock().since.is_some()
    }

    /// Since when, if in an outage.
    pub fn since(&self) -> Option<Instant> {
        self.lock().since
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A login failed with `cause` because the cluster cannot take one now.
    fn began(&self, target: &str, cause: &str) {
        let mut s = self.lock();
        if s.since.is_none() {
            s.since = Some(Instant::now());
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target = %target, cause = %cause, "cluster outage: logins are held and retried");
        }
        s.cause = cause.to_owned();
    }

    /// A login worked: any outage is over.
    pub fn ended(&self, target: &str) {
        let mut s = self.lock();
        if let Some(since) = s.since.take() {
            tracing::warn!(target = %target, after_secs = since.elapsed().as_secs_f64(), "cluster outage over: logins work again");
        }
    }

    /// Enters the single-flight probe while the target is in an outage (returns at once
    /// otherwise); `None` once `deadline` passed.
    pub async fn probe_turn(
        &self,
        deadline: Instant,
    ) -> Option<Option<tokio::sync::MutexGuard<'_, ()>>> {
        if !self.active() {
            return Some(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.probe.lock()).await {
            Ok(g) if self.active() => Some(Some(g)),
            // The outage ended while this login waited: no need to queue behind others.
            Ok(_) => Some(None),
            Err(_) => None,
        }
    }

    /// Decides after a failed attempt `attempt` (0-based) of a login held since `held_since`.
    pub fn after_failure(
        &self,
        target: &str,
        failure: Failure,
        attempt: u32,
        held_since: Instant,
        hold: Duration,
    ) -> Verdict {
        if !failure.unavailable || hold.is_zero() {
            return Verdict::Fail(failure.refusal);
        }
        self.began(target, &failure.cause);
        // The last attempt comes when the budget is spent, not before.
        let left = hold.saturating_sub(held_since.elapsed());
        if left.is_zero() {
            return Verdict::Fail(self.gave_up(target, &failure.cause, held_since));
        }
        Verdict::Retry(backoff(attempt).min(left))
    }

    /// The refusal for a login held `held_since` ago and given up on.
    pub fn gave_up(&self, target: &str, cause: &str, held_since: Instant) -> Refusal {
        Refusal::new(
            sqlstate::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            format!(
                "cluster {target} is unavailable (outage: {cause}); this login was held {} s and retried (pool.outage_hold_secs)",
                held_since.elapsed().as_secs()
            ),
            Some("the cluster may be rebooting, under maintenance, paused or resuming; try again later, or raise pool.outage_hold_secs"),
        )
    }

    /// Counts a hold (a login that needed at least one retry) by how it ended.
    pub fn hold_finished(&self, held_for: Duration, ok: bool) {
        if ok {
            self.held_ok.fetch_add(1, Ordering::Relaxed);
            let ms = u64::try_from(held_for.as_millis()).unwrap_or(u64::MAX);
            self.longest_hold_ms.fetch_max(ms, Ordering::Relaxed);
        } else {
            self.held_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Pause before attempt `attempt + 1`: exponential from [`FIRST_BACKOFF`], capped, jittered.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.min(10))
        .min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.5..1.5);
    base.mul_f64(jitter)
}

/// Counts a login held now for as long as it lives.
pub struct Holding<'a>(&'a Outage);

impl<'a> Holding<'a> {
    pub fn new(o: &'a Outage) -> Holding<'a> {
        o.held_now.fetch_add(1, Ordering::Relaxed);
        Holding(o)
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.held_now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ErrorFields;

    fn server(code: &str, message: &str) -> UpstreamError {
        UpstreamError::Server(ErrorFields {
            code: code.into(),
            message: message.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_cluster_starting_up_is_an_outage() {
        assert!(is_unavailable(&server(
            sqlstate::CANNOT_CONNECT_NOW,
            "the database system is starting up"
        )));
    }

    #[test]
    fn a_refused_password_is_not_an_outage() {
        let e = UpstreamError::AuthFailed(ErrorFields {
            code: sqlstate::INVALID_PASSWORD.into(),
            message: "password authentication failed".into(),
            ..Default::default()
        });
        assert!(!is_unavailable(&e));
    }

    #[test]
    fn a_permission_error_is_not_an_outage() {
        assert!(!is_unavailable(&server(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "permission denied for database dev"
        )));
    }

    #[test]
    fn a_refused_connection_is_an_outage() {
        let e = UpstreamError::Connect {
            addr: "127.0.0.1:5439".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(is_unavailable(&e));
    }

    #[test]
    fn back_off_grows_and_stays_capped() {
        assert!(backoff(0) <= FIRST_BACKOFF.mul_f64(1.5));
        assert!(backoff(30) <= MAX_BACKOFF.mul_f64(1.5));
        assert!(backoff(30) >= MAX_BACKOFF.mul_f64(0.5));
    }

    #[test]
    fn a_hold_past_its_budget_gives_up_with_08001_naming_the_outage() {
        let o = Outage::default();
        let f = Failure::upstream(UpstreamError::Closed);
        let since = Instant::now() - Duration::from_secs(30);
        match o.after_failure("prod", f, 3, since, Duration::from_secs(10)) {
            Verdict::Fail(r) => {
                assert_eq!(r.code, "08001");
                assert!(r.message.contains("outage"), "{}", r.message);
                assert!(r.message.contains("pool.outage_hold_secs"), "{}", r.message);
            }
            Verdict::Retry(_) => panic!("retried past the budget"),
        }
    }
}
