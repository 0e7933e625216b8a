//! `limits.max_connections_per_user`: open sessions counted per client user name.

use crate::base::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-user session counts.
#[derive(Default)]
pub struct UserSlots {
    /// The limit; 0 = none (reloadable).
    max: std::sync::atomic::AtomicUsize,
    counts: Mutex<HashMap<String, usize>>,
}

/// Holds one of a user's slots until dropped.
pub struct UserSlot {
    slots: Arc<UserSlots>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.slots.counts);
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl UserSlots {
    pub fn new(max: Option<usize>) -> Self {
        Self {
            max: std::sync::atomic::AtomicUsize::new(max.unwrap_or(0)),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the limit for later logins (reload); open sessions keep their slots.
    pub fn set_max(&self, max: Option<usize>) {
        self.max
            .store(max.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// A slot for `user`, or `None` when the user is at the limit.
    pub fn acquire(self: &Arc<Self>, user: &str) -> Option<UserSlot> {
        let mut counts = lock(&self.counts);
        let n = counts.entry(user.to_owned()).or_insert(0);
        let max = self.max.load(std::sync::atomic::Ordering::Relaxed);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(UserSlot {
            slots: self.clone(),
            user: user.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_user_and_frees_on_drop() {
        let slots = Arc::new(UserSlots::new(Some(2)));
        let a1 = slots.acquire("a").unwrap();
        let _a2 = slots.acquire("a").unwrap();
        assert!(slots.acquire("a").is_none());
        assert!(slots.acquire("b").is_some());
        drop(a1);
        assert!(slots.acquire("a").is_some());
    }
}
