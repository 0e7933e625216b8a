//! The credential cache: one minted password serves many logins until it nears expiry.
//!
//! Policy in one place:
//! - a credential is *fresh* until `expiration - margin` (margin: 60 s as in the JDBC
//!   driver, or a fifth of the lifetime when that is shorter);
//! - in the last stretch before that (another margin), a login still uses it but
//!   starts a background refresh, so logins rarely wait for AWS;
//! - concurrent logins for the same key share one in-flight call (single flight),
//!   and the call runs in its own task so a client that hangs up does not cancel it;
//! - `invalidate` drops a credential the cluster refused, so the next login mints anew.

use crate::aws::credentials::{CredentialRequest, DbCredential, SharedApi};
use crate::aws::error::{CredentialError, FailureKind};
use crate::base::sync::lock;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long a credential that never worked is kept before a refused login may mint anew.
pub const RETRY_NEVER_WORKED_AFTER: Duration = Duration::from_secs(60);

impl CachedCredential {
    /// Records a successful login with this credential.
    pub fn mark_worked(&self) {
        self.worked
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a login served from the cache (also for metrics).
    fn hit(&self) {
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::base::events::cache_lookup(true);
    }

    /// Whether a login refused with this credential should mint a new one: yes if it
    /// worked before (rotated, expired early) or is old; no if it never worked and is
    /// fresh — then the user is the problem, and re-minting would only hammer AWS.
    pub fn worth_reminting(&self) -> bool {
        self.worked.load(std::sync::atomic::Ordering::Relaxed)
            || self.fetched_at.elapsed() >= RETRY_NEVER_WORKED_AFTER
    }
}

/// One cached credential as operators see it (no password).
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub request: CredentialRequest,
    pub db_user: String,
    pub expiration: SystemTime,
    pub expires_in_secs: u64,
    pub age: Duration,
    pub hits: u64,
}

/// How a login got its credential (for logs and the demo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Served from the cache, no AWS call.
    Cached,
    /// This login waited for an AWS call (its own or a shared one).
    Fetched,
}

/// A cached credential with its local deadlines.
#[derive(Debug)]
pub struct CachedCredential {
    pub credential: DbCredential,
    fetched_at: Instant,
    /// Set once a login with it succeeded.
    worked: std::sync::atomic::AtomicBool,
    /// Logins served from the cache with it (for `SHOW CREDENTIALS`).
    hits: std::sync::atomic::AtomicU64,
    /// From here on the credential is not used for new logins.
    stale_at: Instant,
    /// From here on a login triggers a background refresh.
    refresh_at: Instant,
}

type Flight = Shared<BoxFuture<'static, Result<Arc<CachedCredential>, CredentialError>>>;

/// Cache slot for one key.
#[derive(Default)]
struct Slot {
    current: Option<Arc<CachedCredential>>,
    inflight: Option<Flight>,
}

/// Credentials keyed by everything that was asked of AWS.
pub struct CredentialCache {
    api: SharedApi,
    slots: Arc<Mutex<HashMap<CredentialRequest, Slot>>>,
}

/// What a slot says about a lookup at a given instant.
#[derive(Debug, PartialEq, Eq)]
enum Freshness {
    Fresh,
    RefreshAhead,
    Stale,
}

/// The refresh margin for a credential of the given lifetime.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    Duration::from_secs(60).min(lifetime / 5)
}

fn freshness(now: Instant, c: &CachedCredential) -> Freshness {
    if now >= c.stale_at {
        Freshness::Stale
    } else if now >= c.refresh_at {
        Freshness::RefreshAhead
    } else {
        Freshness::Fresh
    }
}

impl CredentialCache {
    pub fn new(api: SharedApi) -> Self {
        Self {
            api,
            slots: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A usable credential for `req`, from the cache or from AWS.
    pub async fn get(
        &self,
        req: &CredentialRequest,
    ) -> Result<(Arc<CachedCredential>, Source), CredentialError> {
        let flight = {
            let mut slots = lock(&self.slots);
            let now = Instant::now();
            let slot = slots.entry(req.clone()).or_default();
            match slot
                .current
                .as_ref()
                .map(|c| (freshness(now, c), c.clone()))
            {
                Some((Freshness::Fresh, c)) => {
                    c.hit();
                    return Ok((c, Source::Cached));
                }
                Some((Freshness::RefreshAhead, c)) => {
                    c.hit();
                    if slot.inflight.is_none() {
                        let f = self.start_flight(req.clone());
                        slot.inflight = Some(f.clone());
                        // Drive the refresh even if nobody awaits it.
                        tokio::spawn(f.map(|_| ()));
                    }
                    return Ok((c, Source::Cached));
                }
                Some((Freshness::Stale, _)) | None => {
                    crate::base::events::cache_lookup(false);
                    match &slot.inflight {
                        Some(f) => f.clone(),
                        None => {
                            let f = self.start_flight(req.clone());
                            slot.inflight = Some(f.clone());
                            f
                        }
                    }
                }
            }
        };
        flight.await.map(|c| (c, Source::Fetched))
    }

    /// Drops `cred` for `req` if it is still the cached one (the cluster refused it).
    pub fn invalidate(&self, req: &CredentialRequest, cred: &Arc<CachedCredential>) {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get_mut(req) {
            if slot.current.as_ref().is_some_and(|c| Arc::ptr_eq(c, cred)) {
                slot.current = None;
            }
        }
    }

    /// Number of keys holding a credential (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.slots)
            .values()
            .filter(|s| s.current.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the admin console and metrics show of each cached credential (never the password).
    pub fn entries(&self) -> Vec<CacheEntry> {
        let now = SystemTime::now();
        lock(&self.slots)
            .iter()
            .filter_map(|(k, s)| s.current.as_ref().map(|c| (k, c)))
            .map(|(k, c)| CacheEntry {
                request: k.clone(),
                db_user: c.credential.db_user.clone(),
                expiration: c.credential.expiration,
                expires_in_secs: c
                    .credential
                    .expiration
                    .duration_since(now)
                    .map_or(0, |d| d.as_secs()),
                age: c.fetched_at.elapsed(),
                hits: c.hits.load(std::sync::atomic::Ordering::Relaxed),
            })
            .collect()
    }

    /// Drops cached credentials whose key `keep` rejects (reload: mapping gone); returns how many.
    pub fn retain(&self, keep: impl Fn(&CredentialRequest) -> bool) -> usize {
        let mut slots = lock(&self.slots);
        let before = slots.len();
        slots.retain(|k, s| s.inflight.is_some() || keep(k));
        before - slots.len()
    }

    /// Starts the AWS call for `req` in its own task; the result lands in the slot.
    fn start_flight(&self, req: CredentialRequest) -> Flight {
        let api = self.api.clone();
        let slots = self.slots.clone();
        let task = tokio::spawn(async move {
            let fetched_at = Instant::now();
            let result = api.mint(&req).await.map(|credential| {
                let now = SystemTime::now();
                let lifetime = credential
                    .expiration
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO);
                let margin = refresh_margin(lifetime);
                let mut usable = lifetime.saturating_sub(margin);
                // NextRefreshTime, when AWS gives one, also bounds the cache.
                if let Some(next) = credential.next_refresh {
                    usable = usable.min(next.duration_since(now).unwrap_or(Duration::ZERO));
                }
                let stale_at = fetched_at + usable;
                let refresh_at = fetched_at + usable.saturating_sub(margin);
                Arc::new(CachedCredential {
                    credential,
                    fetched_at,
                    worked: std::sync::atomic::AtomicBool::new(false),
                    hits: std::sync::atomic::AtomicU64::new(0),
                    stale_at,
                    refresh_at,
                })
            });
            let mut slots = lock(&slots);
            // Drop expired entries of other keys while we hold the lock anyway.
            let now = Instant::now();
            slots.retain(|k, s| {
                k == &req
                    || s.inflight.is_some()
                    || s.current.as_ref().is_some_and(|c| c.stale_at > now)
            });
            let slot = slots.entry(req).or_default();
            slot.inflight = None;
            if let Ok(c) = &result {
                slot.current = Some(c.clone());
            }
            result
        });
        async move {
            task.await.unwrap_or_else(|e| {
                Err(CredentialError {
                    kind: FailureKind::Other,
                    operation: "credential call",
                    code: "InternalError".into(),
                    message: format!("credential task failed: {e}"),
                })
            })
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn cached(now: Instant, stale_in: u64, refresh_in: u64) -> CachedCredential {
        CachedCredential {
            credential: DbCredential {
                db_user: "IAM:a".into(),
                password: SecretString::from("x".to_owned()),
                expiration: SystemTime::now(),
                next_refresh: None,
            },
            fetched_at: now,
            worked: std::sync::atomic::AtomicBool::new(false),
            hits: std::sync::atomic::AtomicU64::new(0),
            stale_at: now + Duration::from_secs(stale_in),
            refresh_at: now + Duration::from_secs(refresh_in),
        }
    }

    #[test]
    fn margin_follows_the_jdbc_driver_and_shrinks_for_short_lifetimes() {
        assert_eq!(
            refresh_margin(Duration::from_secs(900)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(100)),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn only_credentials_that_worked_or_are_old_are_reminted() {
        let now = Instant::now();
        let c = cached(now, 100, 50);
        assert!(
            !c.worth_reminting(),
            "a fresh credential that never worked is the user's problem"
        );
        c.mark_worked();
        assert!(
            c.worth_reminting(),
            "one that worked before was rotated or expired"
        );
        let mut old = cached(now, 100, 50);
        old.fetched_at = now - RETRY_NEVER_WORKED_AFTER;
        assert!(old.worth_reminting());
    }

    #[test]
    fn freshness_windows() {
        let now = Instant::now();
        let c = cached(now, 100, 50);
        assert_eq!(freshness(now, &c), Freshness::Fresh);
        assert_eq!(
            freshness(now + Duration::from_secs(60), &c),
            Freshness::RefreshAhead
        );
        assert_eq!(
            freshness(now + Duration::from_secs(100), &c),
            Freshness::Stale
        );
    }
}
