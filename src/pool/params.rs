//! Session settings: what a client expects of its session, and how to give it to a
//! pooled server.
//!
//! Pooled servers log in with only the startup parameters that `SET` cannot change
//! (those are part of the pool key). Everything a client may also `SET` later
//! (`application_name`, `DateStyle`, `search_path`, `statement_timeout`, …) is a
//! *setting*: the client's startup values plus what its own `SET`/`RESET` statements
//! changed. Before a client's work runs on a server, the server's applied settings are
//! brought to the client's with one query; only the difference is sent.

use crate::wire::sql::Effect;
use std::collections::BTreeMap;

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

/// How a setting's value is given to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A startup parameter's string, applied as the startup packet would (set_config).
    Literal(String),
    /// The SQL text a client wrote after `SET name TO`, replayed as written.
    Sql(String),
}

/// Settings by lower-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    map: BTreeMap<String, Value>,
}

impl Settings {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }
    pub fn set(&mut self, name: &str, value: Value) {
        self.map.insert(name.to_ascii_lowercase(), value);
    }
    pub fn remove(&mut self, name: &str) {
        self.map.remove(&name.to_ascii_lowercase());
    }
    pub fn clear(&mut self) {
        self.map.clear();
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// A client's session settings: its startup values and its own changes on top.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    startup: Settings,
    changes: BTreeMap<String, Option<Value>>,
}

impl ClientSettings {
    pub fn new(startup: Settings) -> Self {
        Self {
            startup,
            changes: BTreeMap::new(),
        }
    }

    /// What the server should have now.
    pub fn desired(&self) -> Settings {
        let mut s = self.startup.clone();
        for (k, v) in &self.changes {
            match v {
                Some(v) => s.set(k, v.clone()),
                None => s.remove(k),
            }
        }
        s
    }

    /// Records a statement that ran to completion outside a failed transaction.
    pub fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::Set { name, value } => {
                self.changes
                    .insert(name.clone(), Some(Value::Sql(value.clone())));
            }
            // RESET goes back to the session's default: the startup value, if any.
            Effect::Reset { name } => {
                self.changes.remove(name);
                if self.startup.get(name).is_none() {
                    self.changes.insert(name.clone(), None);
                }
            }
            Effect::ResetAll | Effect::DiscardAll => self.changes.clear(),
            _ => {}
        }
    }
}

/// Records on a server's applied settings what a client's statement did there.
pub fn apply_to_server(applied: &mut Settings, effect: &Effect) {
    match effect {
        Effect::Set { name, value } => applied.set(name, Value::Sql(value.clone())),
        // The server's session default is its own (pooled servers start without settings).
        Effect::Reset { name } => applied.remove(name),
        Effect::ResetAll | Effect::DiscardAll => applied.clear(),
        _ => {}
    }
}

/// Splits a client's startup parameters into settings and the rest (the pool key part).
pub fn split_startup(params: &[(String, String)]) -> (Settings, Vec<(String, String)>) {
    let mut settings = Settings::default();
    let mut fixed = Vec::new();
    for (k, v) in params {
        if is_settable(k) && valid_name(k) {
            settings.set(k, Value::Literal(v.clone()));
        } else {
            fixed.push((k.clone(), v.clone()));
        }
    }
    fixed.sort();
    (settings, fixed)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// A string literal safe whatever `standard_conforming_strings` is (E'' exists since 8.0).
fn quote(value: &str) -> String {
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

/// The ParameterStatus name a setting is reported under, if the server reports it.
fn reported_name(name: &str) -> Option<&'static str> {
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

/// The SQL that brings a server from `applied` to `desired` (None: nothing to do), and
/// the settings it will have afterwards. A literal the server already reports with the
/// same value (e.g. `client_encoding` UTF8) needs no statement.
pub fn sync_sql(
    desired: &Settings,
    applied: &Settings,
    server_params: &BTreeMap<String, String>,
) -> Option<String> {
    let mut stmts: Vec<String> = Vec::new();
    for (name, value) in &desired.map {
        if applied.map.get(name) == Some(value) {
            continue;
        }
        match value {
            Value::Literal(v) => {
                let already = !applied.map.contains_key(name)
                    && reported_name(name)
                        .and_then(|r| server_params.get(r))
                        .is_some_and(|cur| same_value(cur, v));
                if !already {
                    stmts.push(format!(
                        "SELECT pg_catalog.set_config({}, {}, false)",
                        quote(name),
                        quote(v)
                    ));
                }
            }
            Value::Sql(sql) => stmts.push(format!("SET {name} TO {sql}")),
        }
    }
    for name in applied.map.keys() {
        if !desired.map.contains_key(name) {
            stmts.push(format!("RESET {name}"));
        }
    }
    (!stmts.is_empty()).then(|| stmts.join("; "))
}

/// Whether a server needs a round trip before a client's login can be answered: yes
/// unless `desired` and `applied` differ at most in an `application_name` that
/// PostgreSQL reports exactly as given (printable ASCII, under 64 bytes). That one is
/// applied by the relay before the client's first query (as PgBouncer does), so a
/// pooled login costs no server round trip.
pub fn needs_sync_at_login(
    desired: &Settings,
    applied: &Settings,
    server_params: &BTreeMap<String, String>,
) -> bool {
    match desired.get(APP) {
        Some(Value::Literal(v)) if v.len() < 64 && v.bytes().all(|b| (32..127).contains(&b)) => {}
        None => {}
        _ => return true,
    }
    let strip = |s: &Settings| {
        let mut c = s.clone();
        c.remove(APP);
        c
    };
    sync_sql(&strip(desired), &strip(applied), server_params).is_some()
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
        Some(Value::Literal(v)) => v.clone(),
        _ => base.get(APP).cloned().unwrap_or_default(),
    };
    if p.contains_key(APP) || !app.is_empty() {
        p.insert(APP.to_owned(), app);
    }
    p
}

const APP: &str = "application_name";

fn same_value(reported: &str, wanted: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(reported) == norm(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Value {
        Value::Literal(s.into())
    }

    fn settings(pairs: &[(&str, Value)]) -> Settings {
        let mut s = Settings::default();
        for (k, v) in pairs {
            s.set(k, v.clone());
        }
        s
    }

    #[test]
    fn startup_parameters_split_into_settings_and_pool_key() {
        let params = vec![
            ("application_name".to_owned(), "bi".to_owned()),
            ("DateStyle".to_owned(), "ISO".to_owned()),
            ("client_protocol_version".to_owned(), "2".to_owned()),
            ("options".to_owned(), "-c work_mem=1MB".to_owned()),
        ];
        let (s, fixed) = split_startup(&params);
        assert_eq!(s.get("datestyle"), Some(&lit("ISO")));
        assert_eq!(s.get("application_name"), Some(&lit("bi")));
        assert_eq!(
            fixed,
            vec![
                ("client_protocol_version".to_owned(), "2".to_owned()),
                ("options".to_owned(), "-c work_mem=1MB".to_owned())
            ]
        );
    }

    #[test]
    fn only_a_plain_application_name_can_wait_for_the_first_query() {
        let params = BTreeMap::new();
        let plain = settings(&[("application_name", lit("pgbench"))]);
        assert!(!needs_sync_at_login(&plain, &Settings::default(), &params));
        let odd = settings(&[("application_name", lit("caf\u{e9}"))]);
        assert!(needs_sync_at_login(&odd, &Settings::default(), &params));
        let more = settings(&[("application_name", lit("a")), ("datestyle", lit("ISO"))]);
        assert!(needs_sync_at_login(&more, &Settings::default(), &params));
    }

    #[test]
    fn equal_settings_need_no_statement() {
        let s = settings(&[("application_name", lit("a"))]);
        assert_eq!(sync_sql(&s, &s, &BTreeMap::new()), None);
    }

    #[test]
    fn differences_are_set_and_extras_are_reset() {
        let desired = settings(&[("search_path", Value::Sql("a, b".into()))]);
        let applied = settings(&[("statement_timeout", Value::Sql("5".into()))]);
        assert_eq!(
            sync_sql(&desired, &applied, &BTreeMap::new()).unwrap(),
            "SET search_path TO a, b; RESET statement_timeout"
        );
    }

    #[test]
    fn literals_are_quoted_for_any_string_setting() {
        let desired = settings(&[("application_name", lit("it's a\\b"))]);
        assert_eq!(
            sync_sql(&desired, &Settings::default(), &BTreeMap::new()).unwrap(),
            "SELECT pg_catalog.set_config(E'application_name', E'it''s a\\\\b', false)"
        );
    }

    #[test]
    fn a_value_the_server_already_reports_is_not_sent() {
        let desired = settings(&[("client_encoding", lit("utf-8"))]);
        let params = BTreeMap::from([("client_encoding".to_owned(), "UTF8".to_owned())]);
        assert_eq!(sync_sql(&desired, &Settings::default(), &params), None);
    }

    #[test]
    fn reset_returns_to_the_startup_value_and_reset_all_to_all_of_them() {
        let mut c = ClientSettings::new(settings(&[("application_name", lit("start"))]));
        c.apply(&Effect::Set {
            name: "application_name".into(),
            value: "'x'".into(),
        });
        c.apply(&Effect::Set {
            name: "search_path".into(),
            value: "s".into(),
        });
        assert_eq!(
            c.desired().get("application_name"),
            Some(&Value::Sql("'x'".into()))
        );
        c.apply(&Effect::Reset {
            name: "application_name".into(),
        });
        assert_eq!(c.desired().get("application_name"), Some(&lit("start")));
        c.apply(&Effect::ResetAll);
        assert_eq!(c.desired(), settings(&[("application_name", lit("start"))]));
    }
}
