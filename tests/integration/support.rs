//! What several areas share.

use redshift_iam_proxy::config::{Config, PoolMode};
use redshift_iam_proxy::testbed::BedOptions;

/// The proxy binary Cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_redshift-iam-proxy");

/// The default test bed with a pool of `size` servers in `mode`, then `more`.
pub fn pooled(
    mode: PoolMode,
    size: usize,
    more: impl Fn(&mut Config) + Send + 'static,
) -> BedOptions {
    BedOptions {
        tweak: Box::new(move |c| {
            c.pool.mode = mode;
            c.pool.size = size;
            more(c);
        }),
        ..Default::default()
    }
}
