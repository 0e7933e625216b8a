//! Startup parameters that stock PostgreSQL drivers send and Redshift refuses.
//!
//! Redshift is built on PostgreSQL 8.0.2 and accepts a narrower set of values than
//! the PostgreSQL 12+ servers stock drivers are written for; one refused startup
//! parameter fails the whole login. [`adapt_startup_params`] rewrites the few such
//! parameters before they are forwarded, and says what it changed so the caller
//! can log it. Everything else is forwarded as the client sent it: when a client
//! *explicitly* asks for something Redshift cannot do, Redshift's own error is the
//! honest answer. Parameter names are matched case-insensitively, as PostgreSQL
//! matches GUC names.
//!
//! | parameter | sent by | on Redshift | here |
//! |---|---|---|---|
//! | `extra_float_digits` | sqlx before 0.7.3 (`3`; 0.7.3+ sends `2`), pgjdbc releases that set it at startup (`3` with `assumeMinServerVersion` ≥ 9.0), asyncpg `server_settings`, pgx and lib/pq when put in the connection string (they forward unknown keys as startup parameters) | accepts only -15..2 ("values: 0, -15 to 2", Database Developer Guide `r_extra_float_digits`); 3 refuses the login | > 2 becomes `2`, < -15 becomes `-15`; non-integers untouched. Any positive value selects PostgreSQL 12+'s shortest-exact output, and 2 is the most precise Redshift has |
//! | `replication` | pgjdbc `replication`, npgsql `ReplicationMode`, node-postgres `replication`, libpq `replication` | no replication protocol; PostgreSQL 8.0 has no such startup option, so it is an unknown parameter that refuses the login | a false boolean (`false`, `off`, `no`, `0`: a normal session, PostgreSQL's own default) is dropped; any other value is kept, so a client that wants replication gets Redshift's refusal instead of a session it cannot use |
//! | `DateStyle` | pgjdbc (`ISO`), sqlx and lib/pq (`ISO, MDY`), libpq from `PGDATESTYLE` | supported (`r_datestyle`, default `ISO, MDY`) | kept |
//! | `TimeZone` | pgjdbc (JVM zone), sqlx (`UTC`), npgsql, libpq from `PGTZ` | supported (`r_timezone`) | kept |
//! | `client_encoding` | pgjdbc, sqlx, npgsql, lib/pq (`UTF8`), asyncpg (`'utf-8'`), libpq | UTF-8 is Redshift's only encoding; the JDBC driver relies on the `UTF8` ParameterStatus | kept |
//! | `search_path` | pgjdbc `currentSchema`, npgsql `SearchPath` | supported (`r_search_path`) | kept |
//! | `application_name` | nearly all drivers | accepted (`STL_CONNECTION_LOG.application_name`) | kept |
//! | `statement_timeout` | node-postgres | supported (`r_statement_timeout`) | kept |
//! | `options` | libpq, pgjdbc, sqlx, npgsql, node-postgres, lib/pq (only when the user sets it) | passed to the backend as command-line switches | kept (its `-c` settings are the user's explicit choice) |
//! | `lock_timeout`, `idle_in_transaction_session_timeout` | node-postgres, only when the user sets them | not in Redshift's configuration reference | kept: an explicit setting should fail loudly, not vanish |
//! | `client_protocol_version`, `driver_version`, `os_version`, `plugin_name`, `idp_type`, … | AWS's own drivers | Redshift's own | kept |
//! | `user`, `database`, `_pq_.*` | everyone | — | not this module's concern (the session handles them) |
//!
//! pgjdbc's `assumeMinServerVersion` and `sslmode`-style keys are connection
//! properties, not startup parameters, and never reach the proxy. Current pgjdbc
//! sends `extra_float_digits` as a `SET` statement after login (`SET
//! extra_float_digits = 2` on a server reporting 8.0.2, which Redshift accepts), not
//! at startup; statements are relayed untouched.

use crate::wire::StartupParams;
/// Redshift's accepted range for `extra_float_digits` (`r_extra_float_digits`).
const EXTRA_FLOAT_DIGITS: std::ops::RangeInclusive<i64> = -15..=2;

/// One change made to the client's startup parameters, for a debug log line.
///
/// Kept as data (not a preformatted string) so the caller can log fields; parameter
/// values here are session settings, never credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adaptation {
    /// The parameter name as the client spelled it.
    pub parameter: String,
    /// The value the client sent.
    pub from: String,
    /// The value forwarded instead; `None` when the parameter was dropped.
    pub to: Option<String>,
    /// Why, in a few words.
    pub reason: &'static str,
}

impl std::fmt::Display for Adaptation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.to {
            Some(to) => write!(
                f,
                "startup parameter {}={:?} sent as {:?}: {}",
                self.parameter, self.from, to, self.reason
            ),
            None => write!(
                f,
                "startup parameter {}={:?} not forwarded: {}",
                self.parameter, self.from, self.reason
            ),
        }
    }
}

/// Rewrites, in place, the startup parameters Redshift would refuse although the
/// client did not ask for anything Redshift lacks (see the module table), and
/// returns what it changed, in order. Parameters it does not know are untouched,
/// and their order is kept.
pub fn adapt_startup_params(params: &mut StartupParams) -> Vec<Adaptation> {
    let mut changes = Vec::new();
    params.retain_mut(|(name, value)| {
        if name.eq_ignore_ascii_case("extra_float_digits") {
            if let Some(to) = clamp_extra_float_digits(value) {
                changes.push(Adaptation {
                    parameter: name.clone(),
                    from: std::mem::replace(value, to.clone()),
                    to: Some(to),
                    reason: "Redshift accepts extra_float_digits only in -15..2",
                });
            }
            true
        } else if name.eq_ignore_ascii_case("replication") && is_false(value) {
            changes.push(Adaptation {
                parameter: name.clone(),
                from: value.clone(),
                to: None,
                reason: "a normal session is the default, and Redshift (PostgreSQL 8.0.2) does not know this parameter",
            });
            false
        } else {
            true
        }
    });
    changes
}

/// The in-range value for an out-of-range integer, `None` when nothing changes.
fn clamp_extra_float_digits(value: &str) -> Option<String> {
    let n: i64 = value.trim().parse().ok()?;
    let clamped = n.clamp(*EXTRA_FLOAT_DIGITS.start(), *EXTRA_FLOAT_DIGITS.end());
    (clamped != n).then(|| clamped.to_string())
}

/// PostgreSQL's spellings of a false boolean (`parse_bool`), as `replication` accepts them.
fn is_false(value: &str) -> bool {
    let v = value.trim();
    ["false", "off", "no", "0", "f", "n"]
        .iter()
        .any(|f| v.eq_ignore_ascii_case(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapt(params: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<Adaptation>) {
        let mut p: StartupParams = params.iter().copied().collect();
        let changes = adapt_startup_params(&mut p);
        let p = p
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        (p, changes)
    }

    /// (claim, client's value, value forwarded)
    const EXTRA_FLOAT_DIGITS_CASES: &[(&str, &str, &str)] = &[
        (
            "three (pgjdbc, sqlx, asyncpg) becomes Redshift's maximum",
            "3",
            "2",
        ),
        ("any value above 2 becomes 2", "15", "2"),
        ("below -15 becomes -15", "-16", "-15"),
        ("2 is kept", "2", "2"),
        ("0 is kept", "0", "0"),
        ("-15 is kept", "-15", "-15"),
        ("a non-integer is left for Redshift to judge", "3.5", "3.5"),
        ("garbage is left for Redshift to judge", "many", "many"),
        ("surrounding spaces still parse", " 3 ", "2"),
    ];

    #[test]
    fn extra_float_digits_is_clamped_to_redshifts_range() {
        for (claim, from, to) in EXTRA_FLOAT_DIGITS_CASES {
            let (params, _) = adapt(&[("extra_float_digits", from)]);
            assert_eq!(
                params,
                vec![("extra_float_digits".to_owned(), (*to).to_owned())],
                "{claim}"
            );
        }
    }

    #[test]
    fn a_clamped_value_is_reported_with_its_original() {
        let (_, changes) = adapt(&[("extra_float_digits", "3")]);
        assert_eq!(
            changes,
            vec![Adaptation {
                parameter: "extra_float_digits".into(),
                from: "3".into(),
                to: Some("2".into()),
                reason: "Redshift accepts extra_float_digits only in -15..2",
            }]
        );
    }

    #[test]
    fn an_in_range_value_is_not_reported() {
        let (_, changes) = adapt(&[("extra_float_digits", "2")]);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn parameter_names_match_case_insensitively_and_keep_their_spelling() {
        let (params, changes) = adapt(&[("Extra_Float_Digits", "3")]);
        assert_eq!(
            params,
            vec![("Extra_Float_Digits".to_owned(), "2".to_owned())]
        );
        assert_eq!(changes[0].parameter, "Extra_Float_Digits");
    }

    /// (claim, client's value, forwarded?)
    const REPLICATION_CASES: &[(&str, &str, bool)] = &[
        ("false is dropped", "false", false),
        ("off is dropped", "off", false),
        ("0 is dropped", "0", false),
        ("NO in capitals is dropped", "NO", false),
        ("true is forwarded so Redshift refuses it", "true", true),
        (
            "database (logical replication) is forwarded so Redshift refuses it",
            "database",
            true,
        ),
    ];

    #[test]
    fn replication_is_dropped_only_when_it_asks_for_a_normal_session() {
        for (claim, value, forwarded) in REPLICATION_CASES {
            let (params, _) = adapt(&[("replication", value)]);
            assert_eq!(!params.is_empty(), *forwarded, "{claim}");
        }
    }

    #[test]
    fn a_dropped_parameter_is_reported_without_a_new_value() {
        let (_, changes) = adapt(&[("replication", "off")]);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].to, None);
        assert!(changes[0].to_string().contains("not forwarded"));
    }

    /// What stock drivers send that Redshift accepts: forwarded as sent.
    const KEPT: &[(&str, &str)] = &[
        ("DateStyle", "ISO"),
        ("datestyle", "ISO, MDY"),
        ("TimeZone", "Europe/Berlin"),
        ("client_encoding", "UTF8"),
        ("client_encoding", "'utf-8'"),
        ("search_path", "analytics,public"),
        ("application_name", "DBeaver"),
        ("statement_timeout", "30000"),
        ("options", "-c geqo=off"),
        ("lock_timeout", "1000"),
        ("idle_in_transaction_session_timeout", "1000"),
        ("client_protocol_version", "2"),
        ("driver_version", "2.1.0.30"),
    ];

    #[test]
    fn parameters_redshift_accepts_are_forwarded_unchanged() {
        for (k, v) in KEPT {
            let (params, changes) = adapt(&[(k, v)]);
            assert_eq!(params, vec![((*k).to_owned(), (*v).to_owned())], "{k}");
            assert!(changes.is_empty(), "{k}: {changes:?}");
        }
    }

    #[test]
    fn other_parameters_keep_their_order_around_a_change() {
        let (params, _) = adapt(&[
            ("client_encoding", "UTF8"),
            ("replication", "false"),
            ("extra_float_digits", "3"),
            ("DateStyle", "ISO"),
        ]);
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["client_encoding", "extra_float_digits", "DateStyle"]
        );
    }

    #[test]
    fn the_log_line_names_parameter_and_both_values() {
        let (_, changes) = adapt(&[("extra_float_digits", "3")]);
        let line = changes[0].to_string();
        assert!(
            line.contains("extra_float_digits") && line.contains("\"3\"") && line.contains("\"2\""),
            "{line}"
        );
    }
}
