//! What the proxy knows of one server's session: the statements it holds, which unnamed
//! statement it has, its session-level settings and its transaction status.
//!
//! This is the server's side of the bookkeeping the pooled relay does; it travels with the
//! server from client to client. Everything here is what the server *answered*, or what the
//! proxy sent and can undo if the server skips it: a client is never handed a server whose
//! state the proxy did not follow (`settings_known` false means "reset before reuse").

use crate::wire::TxnStatus;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Which unnamed prepared statement the server holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnnamedOnServer {
    /// None (dropped by a simple Query, a failed Parse, or closed).
    Empty,
    /// The statement a client's Parse made; the token names that client's statement.
    Of(u64),
    /// Possibly some statement the proxy did not follow (a fresh or reset server).
    Unknown,
}

/// Whether a server has a proxy-named statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Absent,
    Present,
    /// Present, but its plan went stale after DDL: close and prepare it again.
    Stale,
}

/// The proxy-named prepared statements one server holds, least recently used first out.
#[derive(Debug)]
pub struct ServerStatements {
    last_use: HashMap<String, u64>,
    stale: HashSet<String>,
    tick: u64,
    max: usize,
}

impl ServerStatements {
    pub fn new(max: usize) -> Self {
        Self {
            last_use: HashMap::new(),
            stale: HashSet::new(),
            tick: 0,
            max: max.max(1),
        }
    }

    /// Whether the server has `name`; marks it used.
    pub fn touch(&mut self, name: &str) -> Presence {
        self.tick += 1;
        match self.last_use.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                if self.stale.contains(name) {
                    Presence::Stale
                } else {
                    Presence::Present
                }
            }
            None => Presence::Absent,
        }
    }

    /// Records `name` as prepared; returns the statement to close to stay within the limit.
    pub fn insert(&mut self, name: &str) -> Option<String> {
        self.tick += 1;
        self.stale.remove(name);
        self.last_use.insert(name.to_owned(), self.tick);
        if self.last_use.len() <= self.max {
            return None;
        }
        let oldest = self
            .last_use
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .min_by_key(|(_, t)| **t)
            .map(|(n, _)| n.clone())?;
        self.remove(&oldest);
        Some(oldest)
    }

    /// Records `name` as held again (an undone close), without evicting anything.
    pub fn restore(&mut self, name: &str, stale: bool) {
        self.last_use.insert(name.to_owned(), 0);
        if stale {
            self.stale.insert(name.to_owned());
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.last_use.remove(name);
        self.stale.remove(name);
    }

    /// The plan of `name` went stale (it stays on the server until closed).
    pub fn mark_stale(&mut self, name: &str) {
        if self.last_use.contains_key(name) {
            self.stale.insert(name.to_owned());
        }
    }

    pub fn clear(&mut self) {
        self.last_use.clear();
        self.stale.clear();
    }

    /// Every held statement went stale (the pool forgot which ones did).
    pub fn mark_all_stale(&mut self) {
        self.stale = self.last_use.keys().cloned().collect();
    }

    pub fn len(&self) -> usize {
        self.last_use.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_use.is_empty()
    }
}

/// The server's session as the proxy knows it.
#[derive(Debug)]
pub struct Tracked {
    /// Current ParameterStatus values, updated as the server reports changes.
    pub params: BTreeMap<String, String>,
    /// `server_version` 8.0.2: Redshift's rules (resets, no custom settings).
    pub redshift: bool,
    /// Proxy-named prepared statements (transaction mode).
    pub statements: ServerStatements,
    pub unnamed: UnnamedOnServer,
    /// Session-level settings (lower-case name → value) on top of the login defaults, as
    /// the server reported them or the proxy applied and saw succeed.
    pub settings: BTreeMap<String, String>,
    /// False once the server's settings may differ from `settings` (a read-back or a
    /// settings statement of the proxy failed): it is reset before anyone else gets it.
    pub settings_known: bool,
    /// Last ReadyForQuery status.
    pub txn: TxnStatus,
    /// The pool's statement invalidations this server has taken in.
    pub epoch: u64,
}

impl Tracked {
    pub fn new(params: BTreeMap<String, String>, max_prepared: usize) -> Tracked {
        let redshift = params
            .get("server_version")
            .is_some_and(|v| crate::wire::protocol::is_redshift_version(v));
        Tracked {
            params,
            redshift,
            statements: ServerStatements::new(max_prepared),
            unnamed: UnnamedOnServer::Unknown,
            settings: BTreeMap::new(),
            settings_known: true,
            txn: TxnStatus::Idle,
            epoch: 0,
        }
    }

    /// After a successful reset: no settings, no transaction, an unnamed statement the
    /// proxy does not know; `discarded` when the reset also dropped prepared statements.
    pub fn after_reset(&mut self, discarded: bool) {
        self.settings.clear();
        self.settings_known = true;
        self.txn = TxnStatus::Idle;
        self.unnamed = UnnamedOnServer::Unknown;
        if discarded {
            self.statements.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keeps_at_most_max_and_evicts_the_least_recently_used() {
        let mut s = ServerStatements::new(2);
        assert_eq!(s.insert("a"), None);
        assert_eq!(s.insert("b"), None);
        assert_eq!(s.touch("a"), Presence::Present);
        assert_eq!(s.insert("c"), Some("b".into()));
        assert_eq!(s.touch("b"), Presence::Absent);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_stale_statement_is_reported_until_prepared_again() {
        let mut s = ServerStatements::new(5);
        s.insert("a");
        s.mark_stale("a");
        assert_eq!(s.touch("a"), Presence::Stale);
        s.insert("a");
        assert_eq!(s.touch("a"), Presence::Present);
        s.mark_stale("never-prepared");
        assert_eq!(s.touch("never-prepared"), Presence::Absent);
    }
}
