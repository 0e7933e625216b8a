//! A checked-out server. Whatever happens to the client (Terminate, vanished, proxy
//! shutdown, a cancelled task), dropping the guard puts the server back in order, decided
//! from the server's own tracked state: closed if it may still be busy, reset if its
//! session is not as a fresh client expects it, checked in as it is otherwise.

use super::checkout::Pool;
use super::reset::{self, Leftovers};
use super::server::{CloseReason, ServerConn};
use super::stats::PoolStats;
use crate::wire::TxnStatus;
use std::sync::Arc;

/// What becomes of a server when its guard is dropped.
#[derive(Debug, Clone)]
enum Fate {
    CheckIn,
    Reset(Leftovers),
    Close(CloseReason),
}

/// A server checked out of `pool`.
pub struct Checkout {
    server: Option<ServerConn>,
    pool: Arc<Pool>,
    /// Answers may be outstanding (until the relay says the client is done with it).
    busy: bool,
    /// What the client left that a reset must remove (it is done with the server).
    left: Option<Leftovers>,
    close: Option<CloseReason>,
}

impl Checkout {
    pub fn new(pool: Arc<Pool>, server: ServerConn) -> Checkout {
        Checkout {
            server: Some(server),
            pool,
            busy: true,
            left: None,
            close: None,
        }
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The server (always present until the guard is consumed).
    pub fn server(&mut self) -> &mut ServerConn {
        match self.server.as_mut() {
            Some(s) => s,
            // Only `drop` empties it.
            None => unreachable!("checkout without a server"),
        }
    }

    pub fn server_ref(&self) -> Option<&ServerConn> {
        self.server.as_ref()
    }

    /// Hands the server back between transactions: checked in as it is, unless its
    /// tracked state says it needs a reset. Waits for a cancel being forwarded to it, so
    /// that cancel can never hit the next client.
    pub fn release(mut self) {
        self.busy = false;
        drop(self);
    }

    /// The client is done with the server and left `left` on it: reset it, then check in.
    pub fn leave(mut self, left: Leftovers) {
        self.busy = false;
        self.left = Some(left);
        drop(self);
    }

    /// The server must not be reused.
    pub fn close(mut self, reason: CloseReason) {
        self.close = Some(reason);
        drop(self);
    }

    /// The server's fate, from what the relay said and the server's own state.
    fn fate(&mut self, server: &ServerConn) -> Fate {
        if let Some(reason) = self.close {
            return Fate::Close(reason);
        }
        if self.busy || !server.framer.at_boundary() {
            return Fate::Close(CloseReason::ClientLeftMidQuery);
        }
        let t = &server.tracked;
        match self.left.take() {
            Some(mut left) => {
                left.settings_changed |= !t.settings_known;
                Fate::Reset(left)
            }
            None if t.txn != TxnStatus::Idle || !t.settings_known => Fate::Reset(Leftovers {
                settings_changed: !t.settings_known,
                ..Default::default()
            }),
            None => Fate::CheckIn,
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let pool = self.pool.clone();
        match self.fate(&server) {
            Fate::Close(reason) => {
                pool.stats.closed(reason);
                tracing::debug!(pool = %pool.label, server = server.id, reason = reason.as_str(), "closing server");
                spawn_or_drop(server.terminate());
            }
            Fate::CheckIn => {
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
            Fate::Reset(left) => {
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
