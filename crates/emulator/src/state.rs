//! Shared emulator state: configuration, provisioners, cluster lifecycles, temporary STS
//! sessions, fault queue, delay, rendezvous, call counters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{ClusterStatus, Lifecycle};
use crate::provision::RoleProvisioner;
use crate::{AccessKey, EmulatedCluster, EmulatedWorkgroup, EmulatorConfig, Fault};

/// Why: one cluster together with its state and the provisioner that owns its admin
/// connection (through the lifecycle, which defers provisioning while the cluster is down).
pub(crate) struct ClusterEntry {
    pub(crate) cluster: EmulatedCluster,
    pub(crate) provisioner: Option<Arc<dyn RoleProvisioner>>,
    pub(crate) lifecycle: Arc<Lifecycle>,
}

/// Why: one Serverless workgroup together with the provisioner that owns its admin connection.
pub(crate) struct WorkgroupEntry {
    pub(crate) workgroup: EmulatedWorkgroup,
    pub(crate) provisioner: Option<Arc<dyn RoleProvisioner>>,
}

/// Why: temporary credentials minted by `AssumeRole`, accepted until they expire.
#[derive(Clone)]
pub(crate) struct TempSession {
    /// Its `arn` is the assumed-role ARN; a session token is always set.
    pub(crate) key: AccessKey,
    pub(crate) expires: time::OffsetDateTime,
    /// The unique id (`AROA…`) of the role when the session was minted.
    pub(crate) role_id: String,
}

/// Why: a queued fault, optionally reserved for one action.
struct QueuedFault {
    action: Option<String>,
    fault: Fault,
}

/// Why: everything request handlers share; lives behind an `Arc` for the server's lifetime.
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    pub(crate) clusters: Vec<ClusterEntry>,
    pub(crate) workgroups: Vec<WorkgroupEntry>,
    pub(crate) stop: CancellationToken,
    sessions: Mutex<Vec<TempSession>>,
    faults: Mutex<VecDeque<QueuedFault>>,
    delay: Mutex<Duration>,
    /// How long ResumeCluster and RebootCluster take before the database starts again.
    resume_delay: Mutex<Duration>,
    /// Per action: calls that wait until all of them arrived, and how many are still to come.
    rendezvous: Mutex<HashMap<String, (Arc<tokio::sync::Barrier>, usize)>>,
    counts: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// How often each principal (by unique-id seed: a user ARN, or `ACCOUNT/ROLE`) was
    /// re-created; each re-creation gives it a new unique id.
    generations: Mutex<HashMap<String, u32>>,
    /// Every password handed out with the login role it was minted for, oldest first, so tests
    /// can check that none leaks into logs and a Redshift-like front can check logins.
    issued: Mutex<Vec<(String, String)>>,
}

impl State {
    pub(crate) fn new(
        config: EmulatorConfig,
        provisioners: Vec<(String, Arc<dyn RoleProvisioner>)>,
        stop: CancellationToken,
    ) -> Self {
        let clusters = config
            .clusters
            .iter()
            .map(|c| {
                let inner = provisioners
                    .iter()
                    .find(|(id, _)| *id == c.identifier)
                    .map(|(_, p)| p.clone());
                let initial = if config.paused_clusters.contains(&c.identifier) {
                    ClusterStatus::Paused
                } else {
                    ClusterStatus::Available
                };
                let has_provisioner = inner.is_some();
                let lifecycle = Arc::new(Lifecycle::new(c.identifier.clone(), initial, inner));
                ClusterEntry {
                    cluster: c.clone(),
                    provisioner: has_provisioner
                        .then(|| lifecycle.clone() as Arc<dyn RoleProvisioner>),
                    lifecycle,
                }
            })
            .collect();
        let workgroups = config
            .workgroups
            .iter()
            .map(|w| WorkgroupEntry {
                workgroup: w.clone(),
                provisioner: provisioners
                    .iter()
                    .find(|(id, _)| *id == w.name)
                    .map(|(_, p)| p.clone()),
            })
            .collect();
        let resume_delay = Mutex::new(config.resume_delay);
        State {
            config,
            resume_delay,
            rendezvous: Mutex::new(HashMap::new()),
            clusters,
            workgroups,
            stop,
            sessions: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            delay: Mutex::new(Duration::ZERO),
            counts: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
            generations: Mutex::new(HashMap::new()),
        }
    }

    /// Cluster identifiers are case-sensitive, as in AWS.
    pub(crate) fn cluster(&self, id: &str) -> Option<&ClusterEntry> {
        self.clusters.iter().find(|c| c.cluster.identifier == id)
    }

    pub(crate) fn workgroup(&self, name: &str) -> Option<&WorkgroupEntry> {
        self.workgroups.iter().find(|w| w.workgroup.name == name)
    }

    /// The id (cluster identifier or workgroup name) a custom domain is associated with.
    /// Domain names compare case-insensitively, as DNS names do.
    pub(crate) fn custom_domain(&self, domain: &str) -> Option<&str> {
        self.config
            .custom_domains
            .iter()
            .find(|(d, _)| d.eq_ignore_ascii_case(domain))
            .map(|(_, id)| id.as_str())
    }

    /// Configured keys plus every STS session minted so far (expired ones included, so the
    /// caller can answer `ExpiredToken`).
    pub(crate) fn keys(&self) -> Vec<AccessKey> {
        let mut keys = self.config.keys.clone();
        keys.extend(lock(&self.sessions).iter().map(|s| s.key.clone()));
        keys
    }

    pub(crate) fn session(&self, access_key_id: &str) -> Option<TempSession> {
        lock(&self.sessions)
            .iter()
            .find(|s| s.key.access_key_id == access_key_id)
            .cloned()
    }

    /// Remembers a new session and forgets those expired for more than an hour.
    pub(crate) fn add_session(&self, session: TempSession) {
        let mut sessions = lock(&self.sessions);
        let horizon = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        sessions.retain(|s| s.expires > horizon);
        sessions.push(session);
    }

    /// The current unique id (`PREFIX…`) of the principal `seed` stands for: stable until it
    /// is re-created.
    pub(crate) fn unique_id(&self, prefix: &str, seed: &str) -> String {
        match lock(&self.generations).get(seed).copied().unwrap_or(0) {
            0 => unique_id(prefix, seed),
            n => unique_id(prefix, &format!("{seed}#{n}")),
        }
    }

    /// Gives the principal `seed` stands for a new unique id, as deleting and re-creating it
    /// in IAM would.
    pub(crate) fn recreate(&self, seed: &str) {
        *lock(&self.generations).entry(seed.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn is_md5_user(&self, db_user: &str, login_role: &str) -> bool {
        self.config
            .md5_users
            .iter()
            .any(|u| u == db_user || u == login_role)
    }

    pub(crate) fn record_call(&self, action: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.counts).entry(action.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn record_issued(&self, login_role: &str, password: &str) {
        lock(&self.issued).push((login_role.to_owned(), password.to_owned()));
    }

    pub(crate) fn issued(&self) -> Vec<String> {
        lock(&self.issued).iter().map(|(_, p)| p.clone()).collect()
    }

    /// The newest password minted for `login_role` (`IAM:alice`), if any.
    pub(crate) fn newest_password(&self, login_role: &str) -> Option<String> {
        lock(&self.issued)
            .iter()
            .rev()
            .find(|(role, _)| role == login_role)
            .map(|(_, p)| p.clone())
    }

    pub(crate) fn call_count(&self, action: &str) -> u64 {
        lock(&self.counts).get(action).copied().unwrap_or(0)
    }

    pub(crate) fn total_calls(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn push_faults(&self, action: Option<String>, n: usize, fault: Fault) {
        let mut q = lock(&self.faults);
        for _ in 0..n {
            q.push_back(QueuedFault {
                action: action.clone(),
                fault: fault.clone(),
            });
        }
    }

    /// The first queued fault that applies to `action`.
    pub(crate) fn take_fault(&self, action: &str) -> Option<Fault> {
        let mut q = lock(&self.faults);
        let i = q
            .iter()
            .position(|f| f.action.as_deref().is_none_or(|a| a == action))?;
        q.remove(i).map(|f| f.fault)
    }

    pub(crate) fn set_delay(&self, d: Duration) {
        *lock(&self.delay) = d;
    }

    pub(crate) fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    pub(crate) fn set_resume_delay(&self, d: Duration) {
        *lock(&self.resume_delay) = d;
    }

    pub(crate) fn resume_delay(&self) -> Duration {
        *lock(&self.resume_delay)
    }

    /// The next `n` calls of `action` wait for each other (see [`State::rendezvous_for`]).
    pub(crate) fn set_rendezvous(&self, action: &str, n: usize) {
        if n > 0 {
            lock(&self.rendezvous).insert(
                action.to_owned(),
                (Arc::new(tokio::sync::Barrier::new(n)), n),
            );
        }
    }

    /// The barrier a call of `action` must pass, if a rendezvous is set for it (each call
    /// takes one of its places; the last place removes it).
    pub(crate) fn rendezvous_for(&self, action: &str) -> Option<Arc<tokio::sync::Barrier>> {
        let mut map = lock(&self.rendezvous);
        let (barrier, left) = map.get_mut(action)?;
        let barrier = barrier.clone();
        *left -= 1;
        if *left == 0 {
            map.remove(action);
        }
        Some(barrier)
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
        lock(&self.rendezvous).clear();
        *lock(&self.delay) = Duration::ZERO;
    }
}

/// Locks `m`, recovering from poisoning: every critical section here is a few map or
/// counter operations that cannot leave the state half-updated.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stable IAM-style unique id (`AIDA…`, `AROA…`) derived from `seed`.
pub(crate) fn unique_id(prefix: &str, seed: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(seed.as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("{prefix}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_id_is_stable_until_its_principal_is_re_created() {
        let state = State::new(
            EmulatorConfig::default(),
            Vec::new(),
            CancellationToken::new(),
        );
        let first = state.unique_id("AROA", "123456789012/analyst");
        let other = state.unique_id("AROA", "123456789012/other");
        assert_eq!(first, state.unique_id("AROA", "123456789012/analyst"));
        state.recreate("123456789012/analyst");
        let second = state.unique_id("AROA", "123456789012/analyst");
        state.recreate("123456789012/analyst");
        let third = state.unique_id("AROA", "123456789012/analyst");
        assert_eq!(
            (
                first != second && second != third && first != third,
                second.len(),
                state.unique_id("AROA", "123456789012/other")
            ),
            (true, 21, other)
        );
    }

    #[test]
    fn newest_password_is_the_last_one_minted_for_that_role() {
        let state = State::new(
            EmulatorConfig::default(),
            Vec::new(),
            CancellationToken::new(),
        );
        state.record_issued("IAM:alice", "first");
        state.record_issued("IAM:bob", "bobs");
        state.record_issued("IAM:alice", "second");
        assert_eq!(
            (
                state.newest_password("IAM:alice").as_deref(),
                state.newest_password("IAM:carol")
            ),
            (Some("second"), None)
        );
    }
}
