//! What one client's session holds, as the pool must carry it from server to server: its
//! named and unnamed statements, its SQL-prepared names, its settings and what it has been
//! told about them, and whatever pins it to its server.

use crate::pool::params::Settings;
use crate::wire::sql::Effect;
use crate::wire::Parse;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Named statements one client may hold at once (PostgreSQL has no limit; memory has).
pub const MAX_CLIENT_STATEMENTS: usize = 10_000;

/// Tokens of clients' unnamed statements (0 is never handed out).
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// A fresh token for a client's unnamed statement.
pub fn unnamed_token() -> u64 {
    NEXT_TOKEN.fetch_add(1, Ordering::Relaxed)
}

/// The server-side name for a statement: the same text and types, parsed under the same
/// session settings (`fingerprint`: search_path, DateStyle, … decide what a Parse means),
/// give the same name, so clients share a preparation only where a private session would
/// have parsed the same thing.
pub fn server_name(parse: &Parse, fingerprint: u64) -> String {
    let digest = Sha256::new()
        .chain_update(parse.query_raw.as_deref().unwrap_or(parse.query.as_bytes()))
        .chain_update([0u8])
        .chain_update(&parse.param_types)
        .chain_update(fingerprint.to_be_bytes())
        .finalize();
    let mut name = String::with_capacity(4 + 24);
    name.push_str("rip_");
    for b in &digest[..12] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// One client statement: how to prepare it on any server.
#[derive(Debug)]
pub struct Statement {
    pub server_name: String,
    /// The session settings its server name was made for.
    pub fingerprint: u64,
    pub parse: Parse,
    /// What executing it does to session state (a prepared `SET`, say).
    pub effects: Vec<Effect>,
}

impl Statement {
    pub fn new(parse: Parse, effects: Vec<Effect>, fingerprint: u64) -> Arc<Statement> {
        Arc::new(Statement {
            server_name: server_name(&parse, fingerprint),
            fingerprint,
            parse,
            effects,
        })
    }
}

/// Settings that decide what a Parse means: name lookup (`search_path`; Redshift does not
/// re-parse a statement when it changes), how literals and escapes are read (`DateStyle`,
/// `IntervalStyle`, `TimeZone`, `standard_conforming_strings`, `backslash_quote`) and
/// `transform_null_equals`. Others (`statement_timeout`, planner settings, …) do not change
/// what a prepared statement computes, so clients that differ only there share it.
const PARSE_SETTINGS: [&str; 7] = [
    "search_path",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "backslash_quote",
    "transform_null_equals",
];

/// A fingerprint of the [`PARSE_SETTINGS`] values.
pub fn settings_fingerprint(settings: &Settings) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (k, v) in settings {
        if PARSE_SETTINGS.iter().any(|p| k.eq_ignore_ascii_case(p)) {
            (k.to_ascii_lowercase(), v).hash(&mut h);
        }
    }
    h.finish()
}

/// The client's unnamed statement.
#[derive(Debug, Clone)]
pub enum Unnamed {
    /// A statement the server prepares (again, on each new server) under the empty name.
    Prepared {
        token: u64,
        statement: Arc<Statement>,
    },
    /// `DEALLOCATE name` of one of the client's protocol statements: answered by the proxy.
    Deallocate(String),
}

/// One client's session state.
#[derive(Debug, Default)]
pub struct ClientState {
    /// Named protocol statements (transaction mode: renamed on the server).
    pub statements: HashMap<String, Arc<Statement>>,
    pub unnamed: Option<Unnamed>,
    /// SQL-level `PREPARE` names (they pin the client in transaction mode).
    pub sql_prepared: HashSet<String>,
    /// The client's startup values of settings (its session defaults).
    pub startup: Settings,
    /// Session-level settings its session has (startup values, then what was read back).
    pub settings: Settings,
    /// Custom settings the client has named (read back by name).
    pub custom: BTreeSet<String>,
    /// A statement that may change settings ran since they were last read back.
    pub settings_dirty: bool,
    /// [`settings_fingerprint`] of `settings`; while they may have changed unseen, a value of
    /// this client's alone (its statements are then prepared for it only).
    pub fingerprint: u64,
    /// ParameterStatus values the client has been told.
    pub reported: BTreeMap<String, String>,
    /// Transaction mode: the client made state that cannot move; it keeps its server.
    pub pinned: Option<&'static str>,
    /// State no Redshift reset removes (temporary tables, SET ROLE, …).
    pub sticky: Option<&'static str>,
    pub called_procedure: bool,
    /// Effects of executing each open portal (only portals whose statement has some).
    pub portal_effects: HashMap<String, Arc<Statement>>,
    /// Portals of a `DEALLOCATE` the proxy answers: portal → statement name.
    pub local_portals: HashMap<String, String>,
}

impl ClientState {
    pub fn new(startup: Settings, reported: BTreeMap<String, String>) -> ClientState {
        ClientState {
            fingerprint: settings_fingerprint(&startup),
            settings: startup.clone(),
            startup,
            reported,
            ..Default::default()
        }
    }

    /// Settings may change unseen from now on (until read back).
    pub fn settings_may_change(&mut self) {
        if !self.settings_dirty {
            self.settings_dirty = true;
            self.fingerprint = unnamed_token() | (1 << 63);
        }
    }

    /// The settings as the server reported them (unless a statement sent after the
    /// read-back may have changed them again, they are the session's now).
    pub fn settings_read_back(&mut self, settings: Settings) {
        if !self.settings_dirty {
            self.fingerprint = settings_fingerprint(&settings);
        }
        self.settings = settings;
    }

    /// The client's statement `name`. It keeps the server name of the settings it was
    /// parsed under, as a private session keeps what its Parse meant.
    pub fn statement(&self, name: &str) -> Option<Arc<Statement>> {
        self.statements.get(name).cloned()
    }

    /// Whether `name` is taken in the client's statement namespace (protocol and SQL
    /// statements share it, as in PostgreSQL).
    pub fn has_statement(&self, name: &str) -> bool {
        self.statements.contains_key(name) || self.sql_prepared.contains(name)
    }

    /// The transaction ended: its portals are gone.
    pub fn transaction_ended(&mut self) {
        if !self.portal_effects.is_empty() {
            self.portal_effects.clear();
        }
        if !self.local_portals.is_empty() {
            self.local_portals.clear();
        }
    }
}
