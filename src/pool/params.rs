//! Session settings: what a client's session has, and how to give it to a pooled server.
//!
//! Pooled servers log in with only the startup parameters that `SET` cannot change (those
//! are part of the pool key). Everything a client may also `SET` later
//! (`application_name`, `DateStyle`, `search_path`, `statement_timeout`, …) is a
//! *setting*. A client's settings start as its settable startup parameters; after any
//! transaction that may have changed them they are **read back from the server**
//! (`pg_settings` rows whose source is the session, plus the custom settings the client
//! named, which `pg_settings` does not list). The pairs the server reported, never the
//! client's SQL, are what another server is given, each value a quoted literal passed to
//! `set_config`.
//!
//! Pure: the SQL texts and the read-back parsing; the relay sends and reads them.

use crate::config::settings::is_settable;
use crate::wire::{DataRow, StartupParams, WireError};
use std::collections::{BTreeMap, BTreeSet};

/// Settings by lower-case name.
pub type Settings = BTreeMap<String, String>;

/// Session-level settings that follow the role, not the session: never read back or replayed.
const NOT_CARRIED: &[&str] = &["role", "session_authorization"];

/// Splits a client's startup parameters into settings and the rest (the pool key part).
pub fn split_startup(params: &StartupParams) -> (Settings, StartupParams) {
    let settings = params
        .iter()
        .filter(|(k, _)| is_settable(k))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let fixed = params.filtered(|k| !is_settable(k)).sorted();
    (settings, fixed)
}

/// A string literal safe whatever `standard_conforming_strings` is (E'' exists since 8.0).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A quoted identifier (for `RESET`).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\0', "").replace('"', "\"\""))
}

/// The ParameterStatus name a setting is reported under, if the server reports it.
pub fn reported_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "application_name" => "application_name",
        "client_encoding" => "client_encoding",
        "datestyle" => "DateStyle",
        "timezone" => "TimeZone",
        "intervalstyle" => "IntervalStyle",
        "standard_conforming_strings" => "standard_conforming_strings",
        "default_transaction_read_only" => "default_transaction_read_only",
        _ => return None,
    })
}

/// Whether a reported value and a wanted one name the same setting value (`utf-8` is `UTF8`).
fn same_value(reported: &str, wanted: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(reported) == norm(wanted)
}

/// Whether the server already has `value` for `name` without a statement: the proxy set
/// it, or it is the login default the server reports.
fn already(
    name: &str,
    value: &str,
    applied: &Settings,
    reported: &BTreeMap<String, String>,
) -> bool {
    match applied.get(name) {
        Some(v) => v == value,
        None => reported_name(name)
            .and_then(|r| reported.get(r))
            .is_some_and(|cur| same_value(cur, value)),
    }
}

/// One statement that sets `name` to `value` for the session (a row the proxy swallows).
fn set_statement(name: &str, value: &str) -> String {
    format!(
        "SELECT pg_catalog.set_config({}, {}, false)",
        quote(name),
        quote(value)
    )
}

/// The SQL that brings a server from `applied` to `desired` (None: nothing to do). A
/// value the server already reports (e.g. `client_encoding` UTF8) needs no statement.
/// Every value is a quoted literal: no text of the client's is ever re-read.
pub fn sync_sql(
    desired: &Settings,
    applied: &Settings,
    reported: &BTreeMap<String, String>,
) -> Option<String> {
    let mut stmts: Vec<String> = Vec::new();
    for (name, value) in desired {
        if !already(name, value, applied, reported) {
            stmts.push(set_statement(name, value));
        }
    }
    for name in applied.keys() {
        if !desired.contains_key(name) {
            stmts.push(format!("RESET {}", quote_ident(name)));
        }
    }
    (!stmts.is_empty()).then(|| stmts.join("; "))
}

/// The query that reads a session's settings back: `pg_settings` rows set by the session,
/// plus each setting in `named` read by name: custom settings (`pg_settings` does not list
/// them; Redshift calls them session context variables) and the client's startup settings
/// (whatever source the server gives them).
/// Rows: (lower-case name, value, or NULL when undefined).
pub fn read_back_sql<'a>(named: impl Iterator<Item = &'a String>, redshift: bool) -> String {
    let not_carried: Vec<String> = NOT_CARRIED.iter().map(|n| quote(n)).collect();
    let mut sql = format!(
        "SELECT pg_catalog.lower(name), setting FROM pg_catalog.pg_settings \
         WHERE source = 'session' AND pg_catalog.lower(name) NOT IN ({})",
        not_carried.join(", ")
    );
    for name in named {
        // Redshift knows only the one-argument current_setting: a name it does not know
        // fails the read-back, and the client then keeps its server (nothing is lost).
        let read = if redshift {
            format!("pg_catalog.current_setting({})", quote(name))
        } else {
            format!("pg_catalog.current_setting({}, true)", quote(name))
        };
        sql.push_str(&format!(" UNION ALL SELECT {}, {read}", quote(name)));
    }
    sql
}

/// Adds one read-back DataRow body to `into` (NULL values: the setting is undefined).
pub fn add_read_back_row(into: &mut Settings, body: &[u8]) -> Result<(), WireError> {
    let mut row = DataRow::decode(body)
        .ok()
        .filter(|row| row.columns() == 2)
        .ok_or(WireError::Malformed("read-back row of wrong width"))?;
    let mut column = || -> Result<Option<String>, WireError> {
        let value = row
            .next_value()
            .map_err(|_| WireError::Malformed("truncated read-back row"))?;
        Ok(value.map(|v| String::from_utf8_lossy(v).into_owned()))
    };
    let name = column()?;
    let value = column()?;
    if let (Some(name), Some(value)) = (name, value) {
        into.insert(name, value);
    }
    Ok(())
}

/// After a `RESET` (or `RESET ALL`) the server's value is the pool's login default, while
/// a private session would return to the client's startup value. This query puts each
/// given startup value back where the setting is no longer set by the session; it runs
/// right behind the client's statement, in its transaction, so a rollback undoes both.
/// One statement (it is prepared through the extended protocol).
pub fn restore_startup_sql<'a>(
    startup: impl Iterator<Item = (&'a String, &'a String)>,
) -> Option<String> {
    let stmts: Vec<String> = startup
        .map(|(name, value)| {
            format!(
                "SELECT pg_catalog.set_config({n}, {v}, false) FROM pg_catalog.pg_settings \
                 WHERE pg_catalog.lower(name) = {n} AND source <> 'session'",
                n = quote(name),
                v = quote(value)
            )
        })
        .collect();
    (!stmts.is_empty()).then(|| stmts.join(" UNION ALL "))
}

/// The startup values a `RESET` of `names` (None: all) must restore: those that differ
/// from the pool's login default (unknown defaults count as different).
pub fn startup_to_restore<'a>(
    startup: &'a Settings,
    names: Option<&'a BTreeSet<String>>,
    login_defaults: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = (&'a String, &'a String)> + 'a {
    startup.iter().filter(move |(name, value)| {
        names.is_none_or(|n| n.contains(name.as_str()))
            && !reported_name(name)
                .and_then(|r| login_defaults.get(r))
                .is_some_and(|d| same_value(d, value))
    })
}

/// Whether bringing a server from `applied` to `desired` can fail: not when all that
/// differs is a plain `application_name` (printable ASCII under 64 bytes, which PostgreSQL
/// and Redshift take as it is). Such a change is sent ahead of the client's statement
/// without waiting for the server's answer; anything else is verified first.
pub fn sync_can_fail(
    desired: &Settings,
    applied: &Settings,
    reported: &BTreeMap<String, String>,
) -> bool {
    needs_sync_at_login(desired, applied, reported)
}

/// Whether a server needs a round trip before a client's login can be answered: yes
/// unless `desired` and `applied` differ at most in an `application_name` that
/// PostgreSQL reports exactly as given (printable ASCII, under 64 bytes). That one is
/// applied by the relay before the client's first query (as PgBouncer does), so a
/// pooled login costs no server round trip.
pub fn needs_sync_at_login(
    desired: &Settings,
    applied: &Settings,
    reported: &BTreeMap<String, String>,
) -> bool {
    match desired.get(APP) {
        Some(v) if v.len() < 64 && v.bytes().all(|b| (32..127).contains(&b)) => {}
        None => {}
        _ => return true,
    }
    let strip = |s: &Settings| {
        let mut c = s.clone();
        c.remove(APP);
        c
    };
    sync_sql(&strip(desired), &strip(applied), reported).is_some()
}

/// The ParameterStatus values a client sees at login when only `application_name` is
/// left to apply: the server's, with the client's application_name (or the login
/// default from `base` when the client sent none).
pub fn reported_at_login(
    server_params: &BTreeMap<String, String>,
    base: &BTreeMap<String, String>,
    desired: &Settings,
) -> BTreeMap<String, String> {
    let mut p = server_params.clone();
    let app = match desired.get(APP) {
        Some(v) => v.clone(),
        None => base.get(APP).cloned().unwrap_or_default(),
    };
    if p.contains_key(APP) || !app.is_empty() {
        p.insert(APP.to_owned(), app);
    }
    p
}

const APP: &str = "application_name";

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn row(name: Option<&str>, value: Option<&str>) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_i16(2);
        for v in [name, value] {
            match v {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
        b
    }

    #[test]
    fn startup_parameters_split_into_settings_and_pool_key() {
        let params = vec![
            ("application_name".to_owned(), "bi".to_owned()),
            ("DateStyle".to_owned(), "ISO".to_owned()),
            ("client_protocol_version".to_owned(), "2".to_owned()),
            ("options".to_owned(), "-c work_mem=1MB".to_owned()),
        ];
        let (s, fixed) = split_startup(&params.into());
        assert_eq!(
            s,
            settings(&[("application_name", "bi"), ("datestyle", "ISO")])
        );
        assert_eq!(
            fixed,
            vec![
                ("client_protocol_version".to_owned(), "2".to_owned()),
                ("options".to_owned(), "-c work_mem=1MB".to_owned())
            ]
            .into()
        );
    }

    #[test]
    fn only_a_plain_application_name_can_wait_for_the_first_query() {
        let params = BTreeMap::new();
        let plain = settings(&[("application_name", "pgbench")]);
        assert!(!needs_sync_at_login(&plain, &Settings::new(), &params));
        let odd = settings(&[("application_name", "caf\u{e9}")]);
        assert!(needs_sync_at_login(&odd, &Settings::new(), &params));
        let more = settings(&[("application_name", "a"), ("datestyle", "ISO")]);
        assert!(needs_sync_at_login(&more, &Settings::new(), &params));
    }

    #[test]
    fn equal_settings_need_no_statement() {
        let s = settings(&[("application_name", "a")]);
        assert_eq!(sync_sql(&s, &s, &BTreeMap::new()), None);
    }

    #[test]
    fn differences_are_set_as_quoted_literals_and_extras_are_reset() {
        let desired = settings(&[("search_path", "a -- not a comment; b")]);
        let applied = settings(&[("myapp.flag", "x")]);
        assert_eq!(
            sync_sql(&desired, &applied, &BTreeMap::new()).unwrap(),
            "SELECT pg_catalog.set_config(E'search_path', E'a -- not a comment; b', false); \
             RESET \"myapp.flag\""
        );
    }

    #[test]
    fn literals_are_quoted_for_any_string_setting() {
        let desired = settings(&[("application_name", "it's a\\b")]);
        assert_eq!(
            sync_sql(&desired, &Settings::new(), &BTreeMap::new()).unwrap(),
            "SELECT pg_catalog.set_config(E'application_name', E'it''s a\\\\b', false)"
        );
    }

    #[test]
    fn a_value_the_server_already_reports_is_not_sent() {
        let desired = settings(&[("client_encoding", "utf-8")]);
        let params = BTreeMap::from([("client_encoding".to_owned(), "UTF8".to_owned())]);
        assert_eq!(sync_sql(&desired, &Settings::new(), &params), None);
    }

    #[test]
    fn read_back_asks_for_session_settings_and_named_ones() {
        let named = ["myapp.flag".to_owned(), "query_group".to_owned()];
        let pg = read_back_sql(named.iter(), false);
        assert!(pg.contains("source = 'session'"), "{pg}");
        assert!(pg.contains("current_setting(E'myapp.flag', true)"), "{pg}");
        let redshift = read_back_sql(named.iter(), true);
        assert!(
            redshift.contains("current_setting(E'myapp.flag')"),
            "{redshift}"
        );
        assert!(
            redshift.contains("current_setting(E'query_group')"),
            "{redshift}"
        );
    }

    #[test]
    fn read_back_rows_become_settings_and_undefined_ones_are_left_out() {
        let mut s = Settings::new();
        add_read_back_row(&mut s, &row(Some("search_path"), Some("a, b"))).unwrap();
        add_read_back_row(&mut s, &row(Some("myapp.never"), None)).unwrap();
        add_read_back_row(&mut s, &row(Some("myapp.empty"), Some(""))).unwrap();
        assert_eq!(s, settings(&[("myapp.empty", ""), ("search_path", "a, b")]));
        assert!(add_read_back_row(&mut s, &[0, 2, 0]).is_err());
    }

    #[test]
    fn a_reset_restores_only_startup_values_that_differ_from_the_login_default() {
        let startup = settings(&[("datestyle", "ISO, DMY"), ("client_encoding", "UTF8")]);
        let defaults = BTreeMap::from([
            ("DateStyle".to_owned(), "ISO, MDY".to_owned()),
            ("client_encoding".to_owned(), "UTF8".to_owned()),
        ]);
        let all: Vec<_> = startup_to_restore(&startup, None, &defaults).collect();
        assert_eq!(all, vec![(&"datestyle".to_owned(), &"ISO, DMY".to_owned())]);
        let only = BTreeSet::from(["timezone".to_owned()]);
        assert_eq!(
            startup_to_restore(&startup, Some(&only), &defaults).count(),
            0
        );
        let sql = restore_startup_sql(startup_to_restore(&startup, None, &defaults)).unwrap();
        assert!(sql.contains("source <> 'session'"), "{sql}");
    }
}
