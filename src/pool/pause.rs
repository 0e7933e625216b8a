//! `PAUSE` / `RESUME` (PgBouncer semantics): new checkouts wait while their pool (or
//! everything) is paused; `PAUSE` itself returns once the paused pools' servers are idle.

use crate::base::sync::lock;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Which pools are paused, with a wake-up for held checkouts.
#[derive(Default)]
pub struct Pause {
    state: Mutex<PauseState>,
    resumed: Notify,
    /// Anything paused at all: lets every transaction-mode checkout skip the lock.
    any: AtomicBool,
}

/// Everything paused, or these pool labels.
#[derive(Default)]
struct PauseState {
    all: bool,
    pools: BTreeSet<String>,
}

impl Pause {
    /// Pauses one pool (`Some(label)`) or all.
    pub fn pause(&self, pool: Option<&str>) {
        let mut st = lock(&self.state);
        match pool {
            Some(p) => {
                st.pools.insert(p.to_owned());
            }
            None => st.all = true,
        }
        self.any.store(true, Ordering::Release);
    }

    /// Resumes one pool or all; false if it was not paused.
    pub fn resume(&self, pool: Option<&str>) -> bool {
        let was = {
            let mut st = lock(&self.state);
            let was = match pool {
                Some(p) => st.pools.remove(p),
                None => {
                    let was = st.all || !st.pools.is_empty();
                    st.all = false;
                    st.pools.clear();
                    was
                }
            };
            self.any
                .store(st.all || !st.pools.is_empty(), Ordering::Release);
            was
        };
        self.resumed.notify_waiters();
        was
    }

    pub fn all_paused(&self) -> bool {
        lock(&self.state).all
    }

    pub fn is_paused(&self, pool: &str) -> bool {
        let st = lock(&self.state);
        st.all || st.pools.contains(pool)
    }

    /// Paused pool labels ("*" when everything is paused), for SHOW POOLS and SHOW STATS.
    pub fn paused_list(&self) -> Vec<String> {
        let st = lock(&self.state);
        let mut out: Vec<String> = st.pools.iter().cloned().collect();
        if st.all {
            out.insert(0, "*".into());
        }
        out
    }

    /// Returns once `pool` is not paused (at once when it is not).
    pub async fn wait_resumed(&self, pool: &str) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        loop {
            let notified = self.resumed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_paused(pool) {
                return;
            }
            notified.await;
        }
    }
}
