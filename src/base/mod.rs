//! The ground floor: what every layer may use and which imports nothing of this crate
//! (only the wire crate): event counters, the refusal a client hears, the client/server
//! socket, the mutex helper.

pub mod events;
pub mod refusal;
pub mod stream;
pub mod sync;
