//! The answer queue of the server a client holds: for every message sent that the server
//! answers, who the answer is for (the client, or the proxy's own injected work) and how
//! to undo what the proxy already assumed if the server fails or skips the message; and,
//! in their turn, the answers the proxy gives itself.
//!
//! After an error in an extended-protocol batch the server skips every message up to the
//! next Sync, and so does the queue: skipped messages are undone, the proxy's own answers
//! among them are never sent (PostgreSQL's semantics: a skipped Close closes nothing).

use super::client::{Statement, Unnamed};
use crate::pool::tracked::{Presence, UnnamedOnServer};
use crate::wire::sql::Effect;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::Arc;

/// A message sent to the server that expects answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    Sync,
    Query,
    FunctionCall,
}

impl Kind {
    /// Simple-protocol messages end with ReadyForQuery; errors do not end them.
    pub fn simple(self) -> bool {
        matches!(self, Kind::Query | Kind::FunctionCall)
    }
}

/// Why the proxy sent a message of its own (its answers are swallowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    /// The client's settings, applied on a server it just took (simple query).
    Sync,
    /// The session's settings read back before the server is released (simple query).
    ReadBack,
    /// Startup values put back after the client's `RESET` (simple query).
    RestoreStartup,
    /// A Parse of the client's statement on a server that lacks it. Its error is the
    /// client's to hear: it is why the client's Bind or Describe fails.
    Prepare,
    /// A Close of a statement (evicted, stale, or an unnamed one of someone else).
    Close,
    /// A message that must fail (so the server skips the rest of the batch, as after
    /// PostgreSQL's 42P05): its error becomes "prepared statement already exists" about
    /// the client's name (in `rename`).
    Duplicate,
}

/// A bookkeeping change, recorded so it can be taken back.
#[derive(Debug, Clone)]
pub enum Change {
    /// The client's statement `name` was `was` before.
    ClientStatement {
        name: String,
        was: Option<Arc<Statement>>,
    },
    ClientUnnamed(Option<Unnamed>),
    LocalPortal {
        name: String,
        was: Option<String>,
    },
    ServerStatement {
        name: String,
        was: Presence,
    },
    ServerUnnamed(UnnamedOnServer),
}

/// One sent message.
#[derive(Debug)]
pub struct Sent {
    pub kind: Kind,
    /// `None`: the client's message, answers forwarded.
    pub own: Option<Own>,
    /// Applied (in reverse) when the server skips the message.
    pub undo: Vec<Change>,
    /// Applied when the server fails the message; `None`: the same as `undo`.
    pub on_error: Option<Vec<Change>>,
    /// Effects that count at the CommandComplete of their tag (PREPARE, DEALLOCATE, …).
    pub tags: Vec<Effect>,
    /// A server statement name to say as the client's name in an error.
    pub rename: Option<(String, String)>,
    /// The proxy-named statement this message uses (a stale plan is noticed on it).
    pub stmt: Option<String>,
    /// The Sync group it was sent in.
    pub group: u64,
}

impl Sent {
    pub fn client(kind: Kind) -> Sent {
        Sent {
            kind,
            own: None,
            undo: Vec::new(),
            on_error: None,
            tags: Vec::new(),
            rename: None,
            stmt: None,
            group: 0,
        }
    }

    pub fn own(kind: Kind, why: Own) -> Sent {
        Sent {
            own: Some(why),
            ..Sent::client(kind)
        }
    }

    pub fn undo(mut self, undo: Vec<Change>) -> Sent {
        self.undo = undo;
        self
    }
}

/// What the proxy answers itself.
#[derive(Debug)]
pub enum Reply {
    Bytes(BytesMut),
    /// A simple-query `DEALLOCATE` of a protocol statement: CommandComplete and
    /// ReadyForQuery, or the failed-transaction error, decided in its turn.
    Deallocate,
}

/// One queued expectation.
#[derive(Debug)]
pub enum Entry {
    Sent(Sent),
    Local {
        reply: Reply,
        undo: Vec<Change>,
    },
    /// The client ended a COPY (CopyDone/CopyFail) before the server said it started
    /// one: Syncs queued before this point are ignored by a server in COPY IN.
    CopyEnd,
}

/// The answer queue of one held server.
#[derive(Debug, Default)]
pub struct Queue {
    entries: VecDeque<Entry>,
    /// Extended-protocol messages were sent since the last Sync.
    pub unsynced: bool,
    /// The server is in COPY IN and the client has not ended it: its Syncs get no answer.
    copy_in: bool,
}

impl Queue {
    /// Starts over for a newly taken server.
    pub fn reset(&mut self) {
        self.entries.clear();
        self.unsynced = false;
        self.copy_in = false;
    }

    pub fn push(&mut self, sent: Sent) {
        if sent.kind == Kind::Sync && sent.own.is_none() && self.copy_in {
            // PostgreSQL ignores Sync during COPY IN (libpq and tokio-postgres send one).
            return;
        }
        match sent.kind {
            Kind::Sync => self.unsynced = false,
            Kind::Query | Kind::FunctionCall => {}
            _ => self.unsynced = true,
        }
        self.entries.push_back(Entry::Sent(sent));
    }

    /// An answer the proxy gives itself, in its turn (an extended-protocol message).
    pub fn push_local(&mut self, reply: Reply, undo: Vec<Change>, extended: bool) {
        if extended {
            self.unsynced = true;
        }
        self.entries.push_back(Entry::Local { reply, undo });
    }

    /// A Flush: starts (or continues) an extended batch without an answer.
    pub fn flushed(&mut self) {
        self.unsynced = true;
    }

    /// The client sent CopyDone or CopyFail.
    pub fn copy_ended(&mut self) {
        if self.copy_in {
            self.copy_in = false;
        } else if !self.entries.is_empty() {
            self.entries.push_back(Entry::CopyEnd);
        }
    }

    /// The server entered COPY IN: Syncs the client sent since (up to its CopyDone) get
    /// no answer.
    pub fn copy_in_started(&mut self) {
        let mut i = 1;
        while i < self.entries.len() {
            match &self.entries[i] {
                Entry::CopyEnd => {
                    self.entries.remove(i);
                    return;
                }
                Entry::Sent(s) if s.kind == Kind::Sync && s.own.is_none() => {
                    self.entries.remove(i);
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    /// Drops CopyEnd markers that reached the head (the COPY never started).
    fn skip_markers(&mut self) {
        while let Some(Entry::CopyEnd) = self.entries.front() {
            self.entries.pop_front();
        }
    }

    /// The sent message the next server answer belongs to.
    pub fn head(&mut self) -> Option<&Sent> {
        self.skip_markers();
        match self.entries.front() {
            Some(Entry::Sent(s)) => Some(s),
            _ => None,
        }
    }

    pub fn head_mut(&mut self) -> Option<&mut Sent> {
        self.skip_markers();
        match self.entries.front_mut() {
            Some(Entry::Sent(s)) => Some(s),
            _ => None,
        }
    }

    /// Takes the head entry (answered).
    pub fn pop(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front();
        self.skip_markers();
        e
    }

    /// Takes the next answer the proxy gives itself, if it is due.
    pub fn pop_local(&mut self) -> Option<(Reply, Vec<Change>)> {
        self.skip_markers();
        if !matches!(self.entries.front(), Some(Entry::Local { .. })) {
            return None;
        }
        match self.entries.pop_front() {
            Some(Entry::Local { reply, undo }) => Some((reply, undo)),
            _ => None,
        }
    }

    /// After an error of an extended message: takes every entry up to (not including) the
    /// next Sync, which the server skips, adding their undo records to `skipped` in the
    /// order they were made (undo them in reverse); returns whether such a Sync is queued.
    pub fn skip_to_sync(&mut self, skipped: &mut Vec<Change>) -> bool {
        while let Some(e) = self.entries.front() {
            if matches!(e, Entry::Sent(s) if s.kind == Kind::Sync) {
                return true;
            }
            match self.entries.pop_front() {
                Some(Entry::Sent(s)) => skipped.extend(s.undo),
                Some(Entry::Local { undo, .. }) => skipped.extend(undo),
                _ => {}
            }
        }
        false
    }

    /// Whether the head entry is the proxy's own work of kind `why`.
    pub fn head_is_own(&self, why: Own) -> bool {
        matches!(self.entries.front(), Some(Entry::Sent(s)) if s.own == Some(why))
    }

    /// Something is outstanding, and all of it is the proxy's own (injected, swallowed) work.
    pub fn only_own_work(&self) -> bool {
        !self.entries.is_empty()
            && self.entries.iter().all(|e| match e {
                Entry::Sent(s) => s.own.is_some(),
                Entry::Local { .. } | Entry::CopyEnd => true,
            })
    }

    /// A ReadyForQuery (or an answer of the proxy's) is still to come.
    pub fn awaits_ready(&self) -> bool {
        self.entries.iter().any(|e| match e {
            Entry::Sent(s) => s.kind == Kind::Sync || s.kind.simple(),
            Entry::Local { .. } => true,
            Entry::CopyEnd => false,
        })
    }

    /// The kinds of the client's messages still unanswered, when the server's answers to
    /// them need no server to make (Close and Sync only); `None` otherwise.
    pub fn answerable_without_server(&self) -> Option<Vec<Kind>> {
        let mut kinds = Vec::new();
        for e in &self.entries {
            match e {
                Entry::Sent(s) if s.own.is_some() => {}
                Entry::Sent(s) if matches!(s.kind, Kind::Close | Kind::Sync) => kinds.push(s.kind),
                Entry::Sent(_) | Entry::Local { .. } | Entry::CopyEnd => return None,
            }
        }
        Some(kinds)
    }

    /// What the client is still owed: how many ReadyForQuery (its Syncs, simple queries,
    /// function calls), and whether client messages follow the last of them (a batch whose
    /// Sync has not come yet).
    pub fn owed_to_client(&self) -> (usize, bool) {
        let (mut readies, mut trailing) = (0, self.unsynced);
        for e in &self.entries {
            match e {
                Entry::Sent(s) if s.own.is_some() => {}
                Entry::Sent(s) if s.kind == Kind::Sync || s.kind.simple() => {
                    readies += 1;
                    trailing = false;
                }
                Entry::Sent(_) => trailing = true,
                Entry::Local {
                    reply: Reply::Deallocate,
                    ..
                } => readies += 1,
                Entry::Local { .. } | Entry::CopyEnd => {}
            }
        }
        (readies, trailing && self.unsynced)
    }

    /// An extended batch is open (client messages since its last Sync).
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// No answer outstanding and no extended batch open.
    pub fn settled(&self) -> bool {
        self.entries.is_empty() && !self.unsynced
    }
}
