//! A checked-out server. Whatever happens to the client (Terminate, vanished, proxy
//! shutdown), dropping the guard puts the server back in order: reset and checked in
//! when the relay left it at a clean message boundary, closed otherwise.

use super::checkout::Pool;
use super::reset::{self, Leftovers};
use super::server::{CloseReason, ServerConn};
use super::stats::PoolStats;
use std::sync::Arc;

/// What becomes of the server when the guard is dropped.
#[derive(Debug, Clone)]
pub enum OnDrop {
    /// Back to the pool as it is (transaction mode between transactions).
    CheckIn,
    /// Reset, then back to the pool (or closed if the reset cannot clean it).
    Reset(Leftovers),
    /// Closed (busy, broken, or the client left mid-query).
    Close(CloseReason),
}

/// A server checked out of `pool`.
pub struct Checkout {
    server: Option<ServerConn>,
    pool: Arc<Pool>,
    pub on_drop: OnDrop,
}

impl Checkout {
    pub fn new(pool: Arc<Pool>, server: ServerConn) -> Checkout {
        Checkout {
            server: Some(server),
            pool,
            on_drop: OnDrop::Close(CloseReason::ClientLeftMidQuery),
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The server (always present until the guard is consumed).
    pub fn server(&mut self) -> &mut ServerConn {
        match self.server.as_mut() {
            Some(s) => s,
            // Only `take` empties it, and `take` consumes the guard.
            None => unreachable!("checkout without a server"),
        }
    }

    pub fn server_ref(&self) -> Option<&ServerConn> {
        self.server.as_ref()
    }

    /// Hands the server back between transactions: no reset, it goes to the next client.
    /// Waits for a cancel being forwarded to it, so that cancel can never hit the next client.
    pub fn release(mut self) {
        self.on_drop = OnDrop::CheckIn;
        drop(self);
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let pool = self.pool.clone();
        let action = std::mem::replace(&mut self.on_drop, OnDrop::Close(CloseReason::Broken));
        match action {
            OnDrop::Close(reason) => {
                pool.stats.closed(reason);
                tracing::debug!(pool = %pool.label, server = server.id, reason = reason.as_str(), "closing server");
                spawn_or_drop(server.terminate());
            }
            OnDrop::CheckIn => {
                // A cancel in flight holds the gate: wait for it before anyone else gets the server.
                match server.cancel_gate.clone().try_write_owned() {
                    Ok(g) => {
                        drop(g);
                        pool.check_in(server);
                    }
                    Err(_) => {
                        pool.returning_started();
                        spawn_or_drop(async move {
                            let gate = server.cancel_gate.clone();
                            drop(gate.write().await);
                            pool.returning_done(Some(server));
                        })
                    }
                }
            }
            OnDrop::Reset(left) => {
                pool.returning_started();
                spawn_or_drop(async move {
                    drop(server.cancel_gate.clone().write_owned().await);
                    PoolStats::add(&pool.stats.resets, 1);
                    let reset_query = pool.settings.reset_query.clone();
                    match reset::reset(&mut server, &left, reset_query.as_deref()).await {
                        Ok(()) => pool.returning_done(Some(server)),
                        Err(why) => {
                            tracing::info!(pool = %pool.label, server = server.id, reason = %why, "server closed instead of reused");
                            if left.sticky.is_none() && !left.called_procedure {
                                PoolStats::add(&pool.stats.resets_failed, 1);
                                pool.stats.closed(CloseReason::ResetFailed);
                            } else {
                                pool.stats.closed(CloseReason::Tainted);
                            }
                            server.terminate().await;
                            pool.returning_done(None);
                        }
                    }
                })
            }
        }
    }
}

/// Runs `f` on the current runtime; without one (process exit) the server just drops.
fn spawn_or_drop<F: std::future::Future<Output = ()> + Send + 'static>(f: F) {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        h.spawn(f);
    }
}
