//! Transaction boundaries: which server answers belong to which client message, and
//! when a server may be released.
//!
//! Every message sent to the server that gets an answer is queued with what to do with
//! that answer: forward it to the client, or swallow it (the proxy's own injected
//! statements). Messages the proxy answers itself (a Parse of a statement the server
//! already has) queue their synthetic answer, which goes out in its turn. After an
//! error in an extended-protocol batch the server skips to Sync, and so does the queue.
//!
//! A server may be released when every answer has arrived, no extended batch waits for
//! its Sync, and the last ReadyForQuery said `I` (no transaction open). Pure: no I/O.

use bytes::BytesMut;
use std::collections::VecDeque;

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
    fn simple(self) -> bool {
        matches!(self, Kind::Query | Kind::FunctionCall)
    }
}

/// One queued expectation.
#[derive(Debug)]
enum Entry {
    Sent {
        kind: Kind,
        forward: bool,
        /// Server statement name this Parse adds (undone if the Parse fails).
        prepares: Option<String>,
    },
    /// An answer the proxy gives itself, in order.
    Synthetic(BytesMut),
    /// The client ended a COPY (CopyDone/CopyFail) before the server said it started
    /// one: Syncs queued before this point are ignored by a server in COPY IN.
    CopyEnd,
}

/// What to do with one server message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub forward: bool,
    /// Server statement names whose Parse failed or was skipped.
    pub unprepared: Vec<String>,
    /// An error answered a message the proxy injected and swallows.
    pub swallowed_error: bool,
}

/// The answer queue of one server while a client holds it.
#[derive(Debug)]
pub struct Tracker {
    queue: VecDeque<Entry>,
    /// Extended-protocol messages were sent since the last Sync.
    unsynced: bool,
    status: u8,
    /// The server is in COPY IN and the client has not ended it: its Syncs get no answer.
    copy_in: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            unsynced: false,
            status: b'I',
            copy_in: false,
        }
    }
}

impl Tracker {
    /// Starts over for a newly taken server (keeps the queue's memory).
    pub fn reset(&mut self, status: u8) {
        self.queue.clear();
        self.unsynced = false;
        self.status = status;
        self.copy_in = false;
    }

    /// Records a message sent to the server.
    pub fn sent(&mut self, kind: Kind, forward: bool, prepares: Option<String>) {
        if kind == Kind::Sync && self.copy_in {
            // PostgreSQL ignores Sync during COPY IN (libpq and tokio-postgres send one).
            return;
        }
        match kind {
            Kind::Sync => self.unsynced = false,
            Kind::Query | Kind::FunctionCall => {}
            _ => self.unsynced = true,
        }
        self.queue.push_back(Entry::Sent {
            kind,
            forward,
            prepares,
        });
    }

    /// Records an extended-protocol message the server never sees (answered by the proxy).
    pub fn answered_locally(&mut self, reply: BytesMut) {
        self.unsynced = true;
        self.queue.push_back(Entry::Synthetic(reply));
    }

    /// The client sent CopyDone or CopyFail.
    pub fn copy_ended(&mut self) {
        if self.copy_in {
            self.copy_in = false;
        } else if !self.queue.is_empty() {
            self.queue.push_back(Entry::CopyEnd);
        }
    }

    /// The server entered COPY IN: Syncs the client sent since (up to its CopyDone) get
    /// no answer.
    fn copy_in_started(&mut self) {
        let mut i = 1;
        while i < self.queue.len() {
            match &self.queue[i] {
                Entry::CopyEnd => {
                    self.queue.remove(i);
                    return;
                }
                Entry::Sent {
                    kind: Kind::Sync, ..
                } => {
                    self.queue.remove(i);
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    /// Drops CopyEnd markers that reached the head (the COPY never started).
    fn skip_markers(&mut self) {
        while let Some(Entry::CopyEnd) = self.queue.front() {
            self.queue.pop_front();
        }
    }

    /// A Flush: starts (or continues) an extended batch without an answer.
    pub fn flushed(&mut self) {
        self.unsynced = true;
    }

    /// Moves synthetic answers that are due (at the head of the queue) to `out`.
    pub fn drain_synthetic(&mut self, out: &mut BytesMut) {
        while let Some(Entry::Synthetic(_)) = self.queue.front() {
            if let Some(Entry::Synthetic(m)) = self.queue.pop_front() {
                out.extend_from_slice(&m);
            }
        }
    }

    /// Whether answers arriving now go to the client.
    pub fn forwarding(&self) -> bool {
        match self.queue.front() {
            Some(Entry::Sent { forward, .. }) => *forward,
            _ => true,
        }
    }

    fn head_kind(&self) -> Option<(Kind, bool)> {
        match self.queue.front() {
            Some(Entry::Sent { kind, forward, .. }) => Some((*kind, *forward)),
            _ => None,
        }
    }

    fn pop(&mut self, v: &mut Verdict, failed: bool) {
        if let Some(Entry::Sent {
            prepares: Some(name),
            ..
        }) = self.queue.pop_front()
        {
            if failed {
                v.unprepared.push(name);
            }
        }
        self.skip_markers();
    }

    /// Classifies one server message and advances the queue.
    pub fn on_server_message(&mut self, tag: u8, body: &[u8]) -> Verdict {
        self.skip_markers();
        let mut v = Verdict {
            forward: self.forwarding(),
            ..Default::default()
        };
        let Some((kind, forward)) = self.head_kind() else {
            // Nothing expected: asynchronous messages, or a FATAL before the server closes.
            if tag == b'Z' {
                self.status = body.first().copied().unwrap_or(b'I');
            }
            v.forward = true;
            return v;
        };
        match tag {
            // Notifications always reach the client.
            b'A' => v.forward = true,
            b'G' => self.copy_in_started(),
            b'E' if kind.simple() => v.swallowed_error = !forward,
            // An error while committing the implicit transaction at Sync: Z follows.
            b'E' if kind == Kind::Sync => v.forward = forward,
            b'E' => {
                // The injected Parse failed: the client must learn why its Bind will fail.
                v.forward = true;
                self.pop(&mut v, true);
                // The server skips everything up to Sync; so do the queued answers.
                while let Some(e) = self.queue.front() {
                    match e {
                        Entry::Sent {
                            kind: Kind::Sync, ..
                        } => break,
                        Entry::Sent { .. } => self.pop(&mut v, true),
                        Entry::Synthetic(_) | Entry::CopyEnd => {
                            self.queue.pop_front();
                        }
                    }
                }
            }
            b'Z' => {
                self.status = body.first().copied().unwrap_or(b'I');
                // Drop anything before the Sync/Query this answers (defensive).
                while let Some((k, _)) = self.head_kind() {
                    self.pop(&mut v, true);
                    if matches!(k, Kind::Sync) || k.simple() {
                        break;
                    }
                }
            }
            b'1' if kind == Kind::Parse => self.pop(&mut v, false),
            b'2' if kind == Kind::Bind => self.pop(&mut v, false),
            b'3' if kind == Kind::Close => self.pop(&mut v, false),
            b'T' | b'n' if matches!(kind, Kind::DescribeStatement | Kind::DescribePortal) => {
                self.pop(&mut v, false)
            }
            b'C' | b'I' | b's' if kind == Kind::Execute => self.pop(&mut v, false),
            _ => {}
        }
        v
    }

    /// Everything outstanding is the proxy's own (injected, swallowed) work.
    pub fn only_own_work(&self) -> bool {
        self.queue.iter().all(|e| match e {
            Entry::Sent { forward, .. } => !forward,
            Entry::Synthetic(_) | Entry::CopyEnd => true,
        })
    }

    /// Last ReadyForQuery status.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// No answer outstanding and no extended batch open.
    pub fn settled(&self) -> bool {
        self.queue.is_empty() && !self.unsynced
    }

    /// The server may go back to the pool: settled and no transaction open.
    pub fn may_release(&self) -> bool {
        self.settled() && self.status == b'I'
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    fn feed(t: &mut Tracker, tags: &[u8]) -> Vec<bool> {
        tags.iter()
            .map(|&tag| {
                let body: &[u8] = if tag == b'Z' { b"I" } else { b"" };
                t.on_server_message(tag, body).forward
            })
            .collect()
    }

    #[test]
    fn simple_query_settles_at_ready_for_query() {
        let mut t = Tracker::default();
        t.sent(Kind::Query, true, None);
        assert!(!t.may_release());
        feed(&mut t, b"TDC");
        assert!(!t.may_release());
        feed(&mut t, b"Z");
        assert!(t.may_release());
    }

    #[test]
    fn open_transaction_keeps_the_server() {
        let mut t = Tracker::default();
        t.sent(Kind::Query, true, None);
        t.on_server_message(b'C', b"");
        t.on_server_message(b'Z', b"T");
        assert!(t.settled() && !t.may_release());
    }

    #[test]
    fn extended_batch_without_sync_keeps_the_server() {
        let mut t = Tracker::default();
        t.sent(Kind::Parse, true, None);
        t.sent(Kind::DescribeStatement, true, None);
        t.flushed();
        feed(&mut t, b"1tT");
        assert!(!t.may_release(), "no Sync yet");
        t.sent(Kind::Sync, true, None);
        feed(&mut t, b"Z");
        assert!(t.may_release());
    }

    #[test]
    fn injected_parse_answers_are_swallowed_and_synthetic_ones_come_in_order() {
        let mut t = Tracker::default();
        let mut out = BytesMut::new();
        t.answered_locally(wire::parse_complete());
        t.drain_synthetic(&mut out);
        assert_eq!(&out[..], &wire::parse_complete()[..]);
        t.sent(Kind::Parse, false, Some("rip_1".into()));
        t.sent(Kind::Bind, true, None);
        t.sent(Kind::Execute, true, None);
        t.sent(Kind::Sync, true, None);
        assert_eq!(feed(&mut t, b"12DCZ"), vec![false, true, true, true, true]);
        assert!(t.may_release());
    }

    #[test]
    fn error_skips_to_sync_and_unprepares_failed_parses() {
        let mut t = Tracker::default();
        t.sent(Kind::Parse, false, Some("rip_1".into()));
        t.sent(Kind::Bind, true, None);
        t.answered_locally(wire::close_complete());
        t.sent(Kind::Execute, true, None);
        t.sent(Kind::Sync, true, None);
        let v = t.on_server_message(b'E', b"");
        assert!(v.forward, "the client learns why");
        assert_eq!(v.unprepared, vec!["rip_1".to_owned()]);
        let mut out = BytesMut::new();
        t.drain_synthetic(&mut out);
        assert!(out.is_empty(), "skipped messages get no answer");
        assert!(t.on_server_message(b'Z', b"I").forward);
        assert!(t.may_release());
    }

    #[test]
    fn error_of_an_injected_query_is_swallowed() {
        let mut t = Tracker::default();
        t.sent(Kind::Query, false, None);
        let v = t.on_server_message(b'E', b"");
        assert!(!v.forward && v.swallowed_error);
        assert!(!t.on_server_message(b'Z', b"I").forward);
    }

    #[test]
    fn syncs_sent_during_copy_in_expect_no_answer() {
        // tokio-postgres: Bind, Execute, Sync, CopyData…, CopyDone, Sync.
        let mut t = Tracker::default();
        t.sent(Kind::Bind, true, None);
        t.sent(Kind::Execute, true, None);
        t.sent(Kind::Sync, true, None);
        feed(&mut t, b"2G");
        t.copy_ended();
        t.sent(Kind::Sync, true, None);
        feed(&mut t, b"CZ");
        assert!(t.may_release());
    }

    #[test]
    fn a_whole_copy_sent_before_the_server_answers_settles_too() {
        let mut t = Tracker::default();
        t.sent(Kind::Bind, true, None);
        t.sent(Kind::Execute, true, None);
        t.sent(Kind::Sync, true, None);
        t.copy_ended();
        t.sent(Kind::Sync, true, None);
        feed(&mut t, b"2GCZ");
        assert!(t.may_release());
    }

    #[test]
    fn copy_in_keeps_the_server_until_its_ready_for_query() {
        let mut t = Tracker::default();
        t.sent(Kind::Query, true, None);
        feed(&mut t, b"G");
        assert!(!t.may_release());
        feed(&mut t, b"CZ");
        assert!(t.may_release());
    }
}
