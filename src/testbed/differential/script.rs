//! A client's script: who it logs in as, its startup parameters, and its steps, each a
//! run of frontend messages read back in one go; printed as text for reports.

use super::msg::Msg;
use std::fmt;

/// Why: where a script runs decides what it may say: Redshift (and the bed's
/// Redshift-like front) refuses `DISCARD` and `DEALLOCATE ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Postgres,
    RedshiftFront,
}

/// Why: the two identities of a run; they log in to the proxy by client user and to the
/// oracle as the DbUser the proxy's credential names (`IAM:alice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Alice,
    Bob,
}

impl Identity {
    /// Clients alternate: even ones are alice, odd ones bob.
    pub fn of_client(client: usize) -> Identity {
        if client % 2 == 0 {
            Identity::Alice
        } else {
            Identity::Bob
        }
    }

    /// The user name a client sends the proxy.
    pub fn client_user(self) -> &'static str {
        match self {
            Identity::Alice => "alice",
            Identity::Bob => "bob",
        }
    }

    /// The database role the proxy logs in as (the emulator's `IAM:` login role).
    pub fn db_user(self) -> &'static str {
        match self {
            Identity::Alice => "IAM:alice",
            Identity::Bob => "IAM:bob",
        }
    }
}

/// Why: one unit of lock-step comparison: these messages are sent together and every
/// answer they are owed (once flushed) is read before the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub msgs: Vec<Msg>,
    /// Reported parameters (ParameterStatus names) this step may change.
    pub touches: Vec<String>,
    /// The step leaves an extended batch open (no Sync) that the next step finishes: a
    /// shrinker keeps or drops the two together.
    pub glued: bool,
}

impl Step {
    /// One simple Query.
    pub fn query(sql: impl Into<String>) -> Step {
        Step {
            msgs: vec![Msg::Query(sql.into())],
            touches: vec![],
            glued: false,
        }
    }

    /// Extended-protocol messages.
    pub fn messages(msgs: Vec<Msg>) -> Step {
        Step {
            msgs,
            touches: vec![],
            glued: false,
        }
    }

    pub fn touching(mut self, names: &[&str]) -> Step {
        for n in names {
            if !self.touches.iter().any(|t| t == n) {
                self.touches.push((*n).to_owned());
            }
        }
        self
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msgs: Vec<String> = self.msgs.iter().map(|m| m.to_string()).collect();
        f.write_str(&msgs.join(" + "))?;
        if self.glued {
            f.write_str("   (batch continues in the next step)")?;
        }
        Ok(())
    }
}

/// Why: everything one client does, reproducible from (seed, client) and printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub client: usize,
    pub identity: Identity,
    /// Startup parameters beyond user and database.
    pub startup: Vec<(String, String)>,
    pub steps: Vec<Step>,
}

impl Script {
    /// The schema that is this client's own (its table `t` lives there).
    pub fn schema(&self) -> String {
        schema_of(self.client)
    }

    /// Reported parameters any step up to and including `step` touched, sorted.
    pub fn touched_through(&self, step: usize) -> Vec<String> {
        let mut names: Vec<String> = self
            .steps
            .iter()
            .take(step + 1)
            .flat_map(|s| s.touches.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Who the client is and what it sends at startup, as a line of text.
    pub fn header(&self) -> String {
        format!(
            "client {} ({} → {}), startup {:?}\n",
            self.client,
            self.identity.client_user(),
            self.identity.db_user(),
            self.startup
        )
    }

    /// The script as text, steps numbered, up to and including `last`.
    pub fn text_through(&self, last: usize) -> String {
        let mut out = self.header();
        for (i, step) in self.steps.iter().enumerate().take(last + 1) {
            out.push_str(&format!("  {i:>3}: {step}\n"));
        }
        out
    }
}

/// Client `client`'s schema.
pub fn schema_of(client: usize) -> String {
    format!("c{client}")
}
