//! Provisioned cluster state: `available`, `pausing`, `paused`, `resuming` and `rebooting`,
//! the transitions PauseCluster, ResumeCluster and RebootCluster start, and the power hook
//! ([`ClusterPower`]) that stops and starts the database standing in for the cluster, so a
//! paused cluster really refuses connections and `available` means it takes logins again.
//!
//! - PauseCluster (from `available`): `pausing`, the database stops, `paused`.
//! - ResumeCluster (from `paused`): `resuming`, the resume delay, the database starts,
//!   `available`.
//! - RebootCluster (from `available`): `rebooting`, the database stops, the resume delay, it
//!   starts, `available`.
//!
//! Any other starting state is `InvalidClusterState` (400), as the API reference says for all
//! three actions. A start that fails leaves the cluster `paused` (as a resume AWS cannot
//! complete would).
//!
//! Credentials minted while the cluster is not `available` are still answered (the control
//! plane does not need the cluster); their roles are provisioned when it comes back, before
//! it reports `available`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::provision::{Outcome, ProvisionRequest, RoleProvisioner};

/// Why: the `ClusterStatus` DescribeClusters reports for a provisioned cluster (the subset
/// the emulator models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterStatus {
    Available,
    Pausing,
    Paused,
    Resuming,
    Rebooting,
}

impl ClusterStatus {
    /// The `ClusterStatus` value on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Available => "available",
            ClusterStatus::Pausing => "pausing",
            ClusterStatus::Paused => "paused",
            ClusterStatus::Resuming => "resuming",
            ClusterStatus::Rebooting => "rebooting",
        }
    }

    /// The `ClusterAvailabilityStatus` that goes with it: `Available` only when the cluster
    /// takes queries.
    pub fn availability(self) -> &'static str {
        match self {
            ClusterStatus::Available => "Available",
            _ => "Unavailable",
        }
    }
}

impl std::fmt::Display for ClusterStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why: lets the emulator stop and start whatever stands in for a cluster (the test bed's
/// PostgreSQL), so the cluster's state is real to the clients of that database.
pub trait ClusterPower: Send + Sync {
    /// Stops the database (fast shutdown); its data stays.
    fn stop(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Starts the database and returns once it takes connections.
    fn start(&self) -> BoxFuture<'_, Result<(), String>>;
}

impl ClusterPower for local_cluster::PgPower {
    fn stop(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            local_cluster::PgPower::stop(self).await;
            Ok(())
        })
    }

    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            local_cluster::PgPower::start(self)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Why: the three state-changing actions, by what they start from and move to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pause,
    Resume,
    Reboot,
}

impl Action {
    /// The API operation (and the IAM action after `redshift:`).
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Action::Pause => "PauseCluster",
            Action::Resume => "ResumeCluster",
            Action::Reboot => "RebootCluster",
        }
    }

    fn from(self) -> ClusterStatus {
        match self {
            Action::Resume => ClusterStatus::Paused,
            Action::Pause | Action::Reboot => ClusterStatus::Available,
        }
    }

    fn to(self) -> ClusterStatus {
        match self {
            Action::Pause => ClusterStatus::Pausing,
            Action::Resume => ClusterStatus::Resuming,
            Action::Reboot => ClusterStatus::Rebooting,
        }
    }
}

/// Why: a role provisioning asked for while the cluster was down, applied when it comes back.
struct Deferred {
    req: ProvisionRequest,
    password: String,
}

/// Why: one cluster's state, its power hook, and the provisioning that waits for it; also
/// the cluster's provisioner (deferring while the cluster is not `available`).
pub(crate) struct Lifecycle {
    id: String,
    status: watch::Sender<ClusterStatus>,
    power: Mutex<Option<Arc<dyn ClusterPower>>>,
    /// The provisioner of the database behind the cluster.
    inner: Option<Arc<dyn RoleProvisioner>>,
    pending: Mutex<Vec<Deferred>>,
}

impl Lifecycle {
    pub(crate) fn new(
        id: String,
        initial: ClusterStatus,
        inner: Option<Arc<dyn RoleProvisioner>>,
    ) -> Self {
        Lifecycle {
            id,
            status: watch::Sender::new(initial),
            power: Mutex::new(None),
            inner,
            pending: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn status(&self) -> ClusterStatus {
        *self.status.borrow()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<ClusterStatus> {
        self.status.subscribe()
    }

    pub(crate) fn set_power(&self, power: Arc<dyn ClusterPower>) {
        *lock(&self.power) = Some(power);
    }

    /// Starts `action` if the cluster is in the state it needs, moving it to the transient
    /// state at once (so concurrent callers see it), and runs the rest on a task that ends
    /// with `stop`. Returns the new status, or `InvalidClusterState`.
    pub(crate) fn begin(
        self: &Arc<Self>,
        action: Action,
        delay: Duration,
        stop: CancellationToken,
    ) -> Result<ClusterStatus, ApiError> {
        let mut found = None;
        let moved = self.status.send_if_modified(|s| {
            if *s == action.from() {
                *s = action.to();
                true
            } else {
                found = Some(*s);
                false
            }
        });
        if !moved {
            let now = found.unwrap_or_else(|| self.status());
            return Err(ApiError::new(
                400,
                "InvalidClusterState",
                format!(
                    "{} needs a cluster that is {}; cluster {} is {now}.",
                    action.operation(),
                    action.from(),
                    self.id
                ),
            ));
        }
        tracing::info!(cluster = %self.id, action = action.operation(), status = %action.to(), "emulated cluster state change");
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = me.run(action, delay) => {}
                _ = stop.cancelled() => {}
            }
        });
        Ok(action.to())
    }

    /// The rest of a transition: power off and/or on, then the final status.
    async fn run(&self, action: Action, delay: Duration) {
        let power = lock(&self.power).clone();
        if matches!(action, Action::Pause | Action::Reboot) {
            if let Some(p) = &power {
                if let Err(e) = p.stop().await {
                    tracing::warn!(cluster = %self.id, error = %e, "emulated cluster: stopping its database failed");
                }
            }
            if action == Action::Pause {
                self.status.send_replace(ClusterStatus::Paused);
                tracing::info!(cluster = %self.id, status = "paused", "emulated cluster state change");
                return;
            }
        }
        tokio::time::sleep(delay).await;
        if let Some(p) = &power {
            if let Err(e) = p.start().await {
                tracing::warn!(cluster = %self.id, error = %e, "emulated cluster: starting its database failed; the cluster stays paused");
                self.status.send_replace(ClusterStatus::Paused);
                return;
            }
        }
        self.come_up().await;
    }

    /// Applies the provisioning deferred while the cluster was down, then reports it
    /// `available` (atomically with the queue being empty, so none is left behind).
    async fn come_up(&self) {
        loop {
            let batch = {
                let mut pending = lock(&self.pending);
                if pending.is_empty() {
                    self.status.send_replace(ClusterStatus::Available);
                    tracing::info!(cluster = %self.id, status = "available", "emulated cluster state change");
                    return;
                }
                std::mem::take(&mut *pending)
            };
            for d in batch {
                if let Some(p) = &self.inner {
                    if let Err(e) = p.provision(&d.req, &d.password).await {
                        tracing::warn!(cluster = %self.id, login_role = %d.req.login_role, error = %e, "deferred provisioning failed");
                    }
                }
            }
        }
    }
}

impl RoleProvisioner for Lifecycle {
    fn provision<'a>(
        &'a self,
        req: &'a ProvisionRequest,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Outcome, String>> {
        Box::pin(async move {
            {
                let mut pending = lock(&self.pending);
                if self.status() != ClusterStatus::Available {
                    tracing::debug!(cluster = %self.id, login_role = %req.login_role, "cluster not available; provisioning deferred");
                    pending.push(Deferred {
                        req: req.clone(),
                        password: password.to_owned(),
                    });
                    return Ok(Outcome::Provisioned);
                }
            }
            match &self.inner {
                Some(p) => p.provision(req, password).await,
                None => Ok(Outcome::Provisioned),
            }
        })
    }
}

/// Locks `m`, recovering from poisoning (each critical section is a swap or a push).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_available_reports_available_for_queries() {
        for (status, availability) in [
            (ClusterStatus::Available, "Available"),
            (ClusterStatus::Pausing, "Unavailable"),
            (ClusterStatus::Paused, "Unavailable"),
            (ClusterStatus::Resuming, "Unavailable"),
            (ClusterStatus::Rebooting, "Unavailable"),
        ] {
            assert_eq!(status.availability(), availability, "{status}");
        }
    }

    #[tokio::test]
    async fn a_transition_from_the_wrong_state_is_invalid_cluster_state_and_changes_nothing() {
        let l = Arc::new(Lifecycle::new("c1".into(), ClusterStatus::Available, None));
        let err = l
            .begin(Action::Resume, Duration::ZERO, CancellationToken::new())
            .unwrap_err();
        assert_eq!(
            (err.status, err.code.as_str(), l.status()),
            (400, "InvalidClusterState", ClusterStatus::Available)
        );
        assert!(err.message.contains("cluster c1 is available"), "{err:?}");
    }
}
