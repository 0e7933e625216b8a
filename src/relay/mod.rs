//! The relay: moving a session's bytes between client and server after login.
//!
//! - [`bytes`]: mode `none`, one server per client for its whole life; bytes pass
//!   untouched and undecoded, with no per-session buffer while idle.
//! - [`framed`]: pooled modes (`session`, `transaction`); messages are framed so the
//!   proxy knows transaction boundaries, can hand the server back between
//!   transactions, carry prepared statements and settings from server to server, and
//!   answer what it must itself. Rows, COPY data and Redshift's extended
//!   RowDescription still pass as the bytes that arrived. `framed` only pumps bytes;
//!   every decision about the client's session is made by [`machine`], a pure state
//!   machine (frames in, bytes and events out).

pub mod bytes;
pub mod framed;
pub mod machine;

pub use self::bytes::{relay, RelayEnd, Traffic};
