//! Prewarm: at startup, log in `pool.min_size` servers for every `[[users]]` rule with a
//! fixed client user, so their first client needs no AWS call and no cluster login.

use crate::access::login::{prewarm_plan, PooledLogin};
use crate::cluster::connector;
use crate::config::PoolMode;
use crate::context::Shared;
use crate::pool::PoolHandle;
use std::sync::Arc;

/// Logs in `min_size` servers for every `[[users]]` rule with a fixed client user,
/// so their first client needs no AWS call and no cluster login.
pub async fn prewarm(shared: Arc<Shared>) {
    let min = shared.started.config.pool.min_size;
    if min == 0 {
        return;
    }
    let mut jobs = Vec::new();
    for rule in &shared.started.config.users {
        if rule.client_user == "*" {
            continue;
        }
        for t in 0..shared.targets.len() {
            if shared.pools.mode(t) == PoolMode::None {
                continue;
            }
            let plan = match plan_for_prewarm(&shared, t, &rule.client_user).await {
                Some(p) => p,
                None => continue,
            };
            let sh = shared.clone();
            jobs.push(tokio::spawn(async move {
                let handle =
                    PoolHandle::new(
                    &sh.pools,
                    &sh.admin.pause,
                    sh.connector(),
                    plan.target,
                    &plan.spec,
                    &plan.label,
                );
                let mut opened = 0;
                for _ in 0..min {
                    let sh2 = handle.connector.clone();
                    let spec = handle.spec.clone();
                    let t = handle.target;
                    match handle
                        .pool
                        .open_idle(|| async move {
                            connector::open(&sh2, &sh2.targets[t], &spec).await
                        })
                        .await
                    {
                        Ok(true) => opened += 1,
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(pool = %handle.pool.label, error = %e.message, "prewarm failed");
                            break;
                        }
                    }
                }
                tracing::info!(pool = %handle.pool.label, servers = opened, "prewarmed");
            }));
        }
    }
    for j in jobs {
        let _ = j.await;
    }
}

/// The pooled login a `[[users]]` rule's client would make with no startup options;
/// `None` if the rule does not map.
async fn plan_for_prewarm(
    shared: &Shared,
    target: usize,
    client_user: &str,
) -> Option<PooledLogin> {
    let plan = prewarm_plan(
        &shared.started.config,
        &shared.started.users,
        target,
        client_user,
    )?;
    crate::session::pooled_login(shared, &plan).await.ok()
}
