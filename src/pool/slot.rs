//! A server's place in its pool's count: given back when the server is dropped, so a
//! waiting client may open one. The pool (`checkout::Pool`) is its owner; the server
//! (`server::ServerConn`) carries it without knowing the pool.

use std::sync::Arc;

/// What a slot returns to when it is freed.
pub trait SlotOwner: Send + Sync {
    /// One server of this owner is gone.
    fn slot_freed(self: Arc<Self>);
}

/// The pool's count of one server: returned when the server is dropped.
pub struct Slot {
    pub(super) pool: Arc<dyn SlotOwner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.clone().slot_freed();
    }
}
