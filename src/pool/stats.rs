//! Per-pool counters, kept with atomics so the hot path never takes a lock for them.
//! The operations side (logs now, metrics and the console later) reads snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a server was closed (for counters and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    Lifetime,
    Idle,
    Broken,
    ResetFailed,
    /// The client left state no reset can remove (temporary tables on Redshift, SET ROLE…).
    Tainted,
    /// The client left while the server was busy.
    ClientLeftMidQuery,
    /// The server refused a client's settings.
    SettingsRefused,
    Shutdown,
    /// Made room for another pool of the same target (`max_server_connections`).
    Evicted,
    Reconnect,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Lifetime => "lifetime",
            CloseReason::Idle => "idle",
            CloseReason::Broken => "broken",
            CloseReason::ResetFailed => "reset_failed",
            CloseReason::Tainted => "tainted",
            CloseReason::ClientLeftMidQuery => "client_left_mid_query",
            CloseReason::SettingsRefused => "settings_refused",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Evicted => "evicted",
            CloseReason::Reconnect => "reconnect",
        }
    }
}

/// Counters of one pool since it was created.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub checkouts: AtomicU64,
    /// Checkouts that had to wait for a server.
    pub waits: AtomicU64,
    pub wait_us_total: AtomicU64,
    pub max_wait_us: AtomicU64,
    pub clients_waiting: AtomicU64,
    pub clients_active: AtomicU64,
    pub servers_opened: AtomicU64,
    pub logins_failed: AtomicU64,
    pub resets: AtomicU64,
    pub resets_failed: AtomicU64,
    pub transactions: AtomicU64,
    pub queries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    closed: [AtomicU64; 10],
}

fn reason_index(r: CloseReason) -> usize {
    match r {
        CloseReason::Lifetime => 0,
        CloseReason::Idle => 1,
        CloseReason::Broken => 2,
        CloseReason::ResetFailed => 3,
        CloseReason::Tainted => 4,
        CloseReason::ClientLeftMidQuery => 5,
        CloseReason::Shutdown => 6,
        CloseReason::Evicted => 7,
        CloseReason::Reconnect => 8,
        CloseReason::SettingsRefused => 9,
    }
}

/// Every close reason, for listing counters.
pub const CLOSE_REASONS: [CloseReason; 10] = [
    CloseReason::Lifetime,
    CloseReason::Idle,
    CloseReason::Broken,
    CloseReason::ResetFailed,
    CloseReason::Tainted,
    CloseReason::ClientLeftMidQuery,
    CloseReason::Shutdown,
    CloseReason::Evicted,
    CloseReason::Reconnect,
    CloseReason::SettingsRefused,
];

impl PoolStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn closed(&self, r: CloseReason) {
        self.closed[reason_index(r)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn closed_count(&self, r: CloseReason) -> u64 {
        self.closed[reason_index(r)].load(Ordering::Relaxed)
    }

    /// Records a checkout's wait (zero when a server was at hand).
    pub fn checkout(&self, waited: Duration) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        let us = waited.as_micros().min(u128::from(u64::MAX)) as u64;
        if us >= 1000 {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        self.wait_us_total.fetch_add(us, Ordering::Relaxed);
        self.max_wait_us.fetch_max(us, Ordering::Relaxed);
    }
}
