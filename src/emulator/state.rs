//! Shared emulator state: configuration, provisioners, fault queue, delay, call counters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::emulator::provision::RoleProvisioner;
use crate::emulator::{EmulatedCluster, EmulatorConfig, Fault};

/// Why: one cluster together with the provisioner that owns its admin connection.
pub(crate) struct ClusterEntry {
    pub(crate) cluster: EmulatedCluster,
    pub(crate) provisioner: Option<Arc<dyn RoleProvisioner>>,
}

/// Why: everything request handlers share; lives behind an `Arc` for the server's lifetime.
pub(crate) struct State {
    pub(crate) config: EmulatorConfig,
    pub(crate) clusters: Vec<ClusterEntry>,
    pub(crate) stop: CancellationToken,
    faults: Mutex<VecDeque<Fault>>,
    delay: Mutex<Duration>,
    counts: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    /// Every password handed out, so tests can check that none leaks into logs.
    issued: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
            .map(|c| ClusterEntry {
                cluster: c.clone(),
                provisioner: provisioners
                    .iter()
                    .find(|(id, _)| *id == c.identifier)
                    .map(|(_, p)| p.clone()),
            })
            .collect();
        State {
            config,
            clusters,
            stop,
            faults: Mutex::new(VecDeque::new()),
            delay: Mutex::new(Duration::ZERO),
            counts: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
        }
    }

    /// Cluster identifiers are case-sensitive, as in AWS.
    pub(crate) fn cluster(&self, id: &str) -> Option<&ClusterEntry> {
        self.clusters.iter().find(|c| c.cluster.identifier == id)
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

    pub(crate) fn record_issued(&self, password: &str) {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(password.to_owned());
    }

    pub(crate) fn issued(&self) -> Vec<String> {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn call_count(&self, action: &str) -> u64 {
        lock(&self.counts).get(action).copied().unwrap_or(0)
    }

    pub(crate) fn total_calls(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    pub(crate) fn push_faults(&self, n: usize, fault: Fault) {
        let mut q = lock(&self.faults);
        q.extend(std::iter::repeat_n(fault, n));
    }

    pub(crate) fn take_fault(&self) -> Option<Fault> {
        lock(&self.faults).pop_front()
    }

    pub(crate) fn set_delay(&self, d: Duration) {
        *lock(&self.delay) = d;
    }

    pub(crate) fn delay(&self) -> Duration {
        *lock(&self.delay)
    }

    pub(crate) fn clear_faults(&self) {
        lock(&self.faults).clear();
        *lock(&self.delay) = Duration::ZERO;
    }
}
