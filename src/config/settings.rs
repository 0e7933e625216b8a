//! Which session settings a client (startup parameters) or a `[[users]] session` entry may
//! set: the pool applies these with `set_config` instead of putting them in the pool key.
//! Config validation and the pool both read this list.

/// Startup parameters the pool applies with `SET` (lower-case names) instead of putting
/// them in the pool key. Anything else a client sends at startup (`options`,
/// `client_protocol_version`, Redshift's driver fields, …) is part of the pool key.
const SETTABLE: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "extra_float_digits",
    "standard_conforming_strings",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "bytea_output",
    "client_min_messages",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "query_group",
    "enable_result_cache_for_session",
];

/// True for startup parameters applied with `SET` on a pooled server.
pub fn is_settable(name: &str) -> bool {
    SETTABLE.iter().any(|s| s.eq_ignore_ascii_case(name))
}
