//! The client side: the startup handshake (`handshake`), client authentication
//! (`auth`: SCRAM, certificates, identity tokens), identity-token verification (`identity`),
//! the local CA that signs the client-facing certificate (`localca`), per-user caps
//! (`limits`).
//!
//! May import: `base`, `config`.

pub mod auth;
pub mod handshake;
pub mod identity;
pub mod limits;
pub mod localca;
