//! Differential testing of pooling: the same random client scripts through the proxy and
//! through private sessions of their own (the oracle: PostgreSQL itself, or the
//! Redshift-like front), step by step; every answer must be the same.
//!
//! - [`msg`]: the frontend messages a script sends (simple Query, Parse/Bind/Execute/
//!   Describe/Close/Sync/Flush, named and unnamed);
//! - [`conn`]: the raw protocol client, which reads what each step is owed;
//! - [`transcript`]: answers normalized (no pids, keys, positions or source locations);
//! - [`vocab`], [`generate`]: the seeded script generator and what it says;
//! - [`script`]: scripts and steps as data and as text;
//! - [`setup`]: the bed options, databases, tables and identities of a run;
//! - [`runner`]: clients in lock step on two sides; [`shrink`]: a smaller reproduction.
pub mod conn;
pub mod generate;
pub mod msg;
pub mod runner;
pub mod script;
pub mod setup;
pub mod shrink;
pub mod transcript;
pub mod vocab;

/// Errors of the harness itself (a part that failed, not a difference found).
pub use super::BedError as DiffError;
pub use runner::{run, run_in_order, run_scripts, At, Divergence, RunOutcome, RunSpec, Side};
pub use script::{Flavor, Identity, Script, Step};
pub use setup::{bed_options, prepare};
