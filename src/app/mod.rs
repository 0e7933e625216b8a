//! The program: listeners, startup and shutdown (`server`), prewarm (`prewarm`) and the
//! `check` subcommand.
//!
//! The top floor: may import every layer; only the test bed (which starts the proxy)
//! imports it.

pub mod check;
pub mod prewarm;
pub mod server;
