//! The program: listeners, startup and shutdown (`server`), prewarm (`prewarm`), the
//! `check` subcommand and, with the `demo` feature, the one-command demo.
//!
//! The top floor: may import every layer; nothing imports it.

pub mod check;
#[cfg(feature = "demo")]
pub mod demo;
pub mod prewarm;
pub mod server;
