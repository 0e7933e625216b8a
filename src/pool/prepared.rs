//! Protocol-level prepared statements in transaction mode.
//!
//! A client's named statements must follow it from server to server. The proxy keeps
//! each client's statements (name → query, parameter types) and gives every distinct
//! statement one server-side name derived from its text, so all clients of a pool share
//! one preparation per server. Before a Bind or Describe runs on a server that lacks
//! the statement, the proxy prepares it there first. Servers keep at most
//! `max_prepared_statements` (least recently used ones are closed); clients at most
//! [`MAX_CLIENT_STATEMENTS`].

use crate::wire::sql::Effect;
use crate::wire::Parse;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Named statements one client may hold at once (PostgreSQL has no limit; memory has).
pub const MAX_CLIENT_STATEMENTS: usize = 10_000;

/// The server-side name for a statement: the same text and types give the same name.
pub fn server_name(parse: &Parse) -> String {
    let digest = Sha256::new()
        .chain_update(parse.query.as_bytes())
        .chain_update([0u8])
        .chain_update(&parse.param_types)
        .finalize();
    let mut name = String::with_capacity(4 + 24);
    name.push_str("rip_");
    for b in &digest[..12] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// A client tried to hold more than [`MAX_CLIENT_STATEMENTS`] named statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyStatements;

/// One client statement: how to prepare it on any server.
#[derive(Debug)]
pub struct Statement {
    pub server_name: String,
    pub parse: Parse,
    /// What executing it does to session state (a prepared `SET`, say).
    pub effects: Vec<Effect>,
}

/// A client's named statements.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<String, Arc<Statement>>,
}

impl ClientStatements {
    /// Adds or replaces `parse.name`; `Err` when the client holds too many.
    pub fn insert(
        &mut self,
        parse: Parse,
        effects: Vec<Effect>,
    ) -> Result<Arc<Statement>, TooManyStatements> {
        if self.by_name.len() >= MAX_CLIENT_STATEMENTS && !self.by_name.contains_key(&parse.name) {
            return Err(TooManyStatements);
        }
        let st = Arc::new(Statement {
            server_name: server_name(&parse),
            parse,
            effects,
        });
        self.by_name.insert(st.parse.name.clone(), st.clone());
        Ok(st)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Statement>> {
        self.by_name.get(name).cloned()
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The proxy-named statements one server holds, least recently used first out.
#[derive(Debug)]
pub struct ServerStatements {
    last_use: HashMap<String, u64>,
    tick: u64,
    max: usize,
}

impl ServerStatements {
    pub fn new(max: usize) -> Self {
        Self {
            last_use: HashMap::new(),
            tick: 0,
            max: max.max(1),
        }
    }

    /// Whether the server has `name`; marks it used.
    pub fn touch(&mut self, name: &str) -> bool {
        self.tick += 1;
        match self.last_use.get_mut(name) {
            Some(t) => {
                *t = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records `name` as prepared; returns the statement to close to stay within the limit.
    pub fn insert(&mut self, name: &str) -> Option<String> {
        self.tick += 1;
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
        self.last_use.remove(&oldest);
        Some(oldest)
    }

    pub fn remove(&mut self, name: &str) {
        self.last_use.remove(name);
    }

    pub fn clear(&mut self) {
        self.last_use.clear();
    }

    pub fn len(&self) -> usize {
        self.last_use.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last_use.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(name: &str, q: &str) -> Parse {
        Parse {
            name: name.into(),
            query: q.into(),
            param_types: Bytes::from_static(&[0, 0]),
        }
    }

    #[test]
    fn same_text_same_server_name_whatever_the_client_name() {
        assert_eq!(
            server_name(&parse("a", "SELECT 1")),
            server_name(&parse("b", "SELECT 1"))
        );
        assert_ne!(
            server_name(&parse("a", "SELECT 1")),
            server_name(&parse("a", "SELECT 2"))
        );
        let mut typed = parse("a", "SELECT $1");
        typed.param_types = Bytes::from_static(&[0, 1, 0, 0, 0, 23]);
        assert_ne!(server_name(&typed), server_name(&parse("a", "SELECT $1")));
    }

    #[test]
    fn server_keeps_at_most_max_and_evicts_the_least_recently_used() {
        let mut s = ServerStatements::new(2);
        assert_eq!(s.insert("a"), None);
        assert_eq!(s.insert("b"), None);
        assert!(s.touch("a"));
        assert_eq!(s.insert("c"), Some("b".into()));
        assert!(s.touch("a") && s.touch("c") && !s.touch("b"));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn client_statements_are_bounded() {
        let mut c = ClientStatements::default();
        for i in 0..MAX_CLIENT_STATEMENTS {
            c.insert(parse(&format!("s{i}"), "SELECT 1"), vec![])
                .unwrap();
        }
        assert!(c.insert(parse("one-more", "SELECT 1"), vec![]).is_err());
        // Replacing an existing name is always allowed.
        assert!(c.insert(parse("s0", "SELECT 2"), vec![]).is_ok());
    }
}
