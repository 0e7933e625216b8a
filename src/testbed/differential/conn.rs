//! A raw protocol client: sends a step's messages exactly as written and reads every answer
//! they are owed (up to ReadyForQuery for Query and Sync, one answer per extended message
//! once flushed), as a normalized transcript.

use super::msg::Msg;
use super::transcript::{view_of, Event};
use super::DiffError;
use crate::base::stream::Stream;
use crate::cluster::upstream::{self, Started, UpstreamTarget};
use crate::wire::protocol::backend;
use crate::wire::{Message, MessageReader};
use bytes::BytesMut;
use secrecy::SecretString;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest backend message the client reads.
const MAX_MESSAGE: usize = 1 << 20;

/// Why: what one sent message is owed, so the reader knows when a step's answers are
/// complete without waiting for silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    /// Query: everything up to ReadyForQuery (errors do not end it).
    Query,
    /// Sync: ReadyForQuery (ends the skipping after an error).
    Sync,
    Parse,
    Bind,
    Close,
    DescribeStatement,
    DescribePortal,
    Execute,
}

impl Owed {
    fn of(msg: &Msg) -> Option<Owed> {
        use super::msg::Target::*;
        Some(match msg {
            Msg::Query(_) => Owed::Query,
            Msg::Sync => Owed::Sync,
            Msg::Parse { .. } => Owed::Parse,
            Msg::Bind { .. } => Owed::Bind,
            Msg::Close(..) => Owed::Close,
            Msg::Describe(Statement, _) => Owed::DescribeStatement,
            Msg::Describe(Portal, _) => Owed::DescribePortal,
            Msg::Execute { .. } => Owed::Execute,
            Msg::Flush => return None,
        })
    }

    /// Whether `tag` is the last message of this answer.
    fn ends_with(self, tag: u8) -> bool {
        match self {
            Owed::Query | Owed::Sync => tag == backend::READY_FOR_QUERY,
            Owed::Parse => tag == backend::PARSE_COMPLETE,
            Owed::Bind => tag == backend::BIND_COMPLETE,
            Owed::Close => tag == backend::CLOSE_COMPLETE,
            Owed::DescribeStatement | Owed::DescribePortal => {
                matches!(tag, backend::ROW_DESCRIPTION | backend::NO_DATA)
            }
            Owed::Execute => matches!(
                tag,
                backend::COMMAND_COMPLETE
                    | backend::EMPTY_QUERY_RESPONSE
                    | backend::PORTAL_SUSPENDED
            ),
        }
    }
}

/// Why: one client session spoken to message by message (through the proxy, directly to
/// PostgreSQL, or to the Redshift-like front), keeping the client's view of reported
/// parameters and what the server still owes it.
pub struct RawConn {
    stream: Stream,
    reader: MessageReader,
    reported: BTreeMap<String, String>,
    owed: VecDeque<Owed>,
    /// After an error in an extended batch the server ignores everything up to Sync.
    skipping: bool,
    /// Why the connection can no longer be read in step (closed, timed out).
    broken: Option<String>,
}

impl RawConn {
    /// Plain TCP to `addr`, logged in as `user` to `database` with startup `params`
    /// (a server that trusts the client: the proxy on loopback, the oracle's trust line).
    pub async fn plain(
        addr: SocketAddr,
        user: &str,
        database: &str,
        params: &[(String, String)],
    ) -> Result<RawConn, DiffError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| DiffError::new(format!("connect to {addr}"), e))?;
        let _ = tcp.set_nodelay(true);
        let no_password = SecretString::from(String::new());
        Self::login(Stream::Plain(tcp), user, &no_password, database, params).await
    }

    /// TLS to `target` (the Redshift-like front), logged in with `password` by the proxy's
    /// own upstream login (auth code 13).
    pub async fn tls(
        target: &UpstreamTarget,
        user: &str,
        password: &SecretString,
        database: &str,
        params: &[(String, String)],
    ) -> Result<RawConn, DiffError> {
        let stream = upstream::connect(target)
            .await
            .map_err(|e| DiffError::new(format!("TLS to {target:?}"), e))?;
        Self::login(stream, user, password, database, params).await
    }

    async fn login(
        stream: Stream,
        user: &str,
        password: &SecretString,
        database: &str,
        params: &[(String, String)],
    ) -> Result<RawConn, DiffError> {
        let what = || format!("log in as {user} to {database}");
        let logged_in = upstream::login(
            stream,
            user,
            password,
            database,
            &params.iter().cloned().collect(),
        )
        .await
        .map_err(|e| DiffError::new(what(), e))?;
        let started = upstream::finish_startup(logged_in)
            .await
            .map_err(|e| DiffError::new(what(), e))?;
        Ok(Self::started(started))
    }

    fn started(started: Started) -> RawConn {
        let reported = started.parameters().into_iter().collect();
        RawConn {
            stream: started.stream,
            reader: MessageReader::with_buffered(MAX_MESSAGE, started.leftover),
            reported,
            owed: VecDeque::new(),
            skipping: false,
            broken: None,
        }
    }

    /// Sends `msgs` and reads every answer they and earlier unflushed messages are owed,
    /// up to the last Flush, Sync or Query among them, within `limit`. `touched`: reported
    /// parameters whose client-side value each ReadyForQuery shows.
    pub async fn step(&mut self, msgs: &[Msg], touched: &[String], limit: Duration) -> Vec<Event> {
        if let Some(why) = &self.broken {
            return vec![Event::Closed(why.clone())];
        }
        let mut out = BytesMut::new();
        let mut flushed = None;
        for msg in msgs {
            if let Err(e) = msg.encode(&mut out) {
                return self.break_with(format!("encode {msg}: {e}"));
            }
            self.owed.extend(Owed::of(msg));
            if matches!(msg, Msg::Flush | Msg::Sync | Msg::Query(_)) {
                flushed = Some(self.owed.len());
            }
        }
        if let Err(e) = self.send(&out).await {
            return self.break_with(format!("send: {e}"));
        }
        let Some(answers) = flushed else {
            return vec![];
        };
        let mut events = Vec::new();
        let read = self.read_owed(answers, touched, &mut events);
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                events.push(Event::Closed(why.clone()));
                self.broken = Some(why);
            }
            Err(_) => {
                events.push(Event::Timeout);
                self.broken = Some("no answer in time earlier".into());
            }
        }
        events
    }

    fn break_with(&mut self, why: String) -> Vec<Event> {
        self.broken = Some(why.clone());
        vec![Event::Closed(why)]
    }

    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads the answers to the first `count` owed messages into `events`.
    async fn read_owed(
        &mut self,
        count: usize,
        touched: &[String],
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        for _ in 0..count {
            let Some(owed) = self.owed.pop_front() else {
                break;
            };
            if self.skipping && !matches!(owed, Owed::Sync) {
                continue;
            }
            self.read_answer(owed, touched, events).await?;
        }
        Ok(())
    }

    /// Reads one message's answer: up to its last message, or an error.
    async fn read_answer(
        &mut self,
        owed: Owed,
        touched: &[String],
        events: &mut Vec<Event>,
    ) -> Result<(), String> {
        loop {
            let msg = self.next_message().await?;
            if let Some(event) = self.normalize(&msg, touched) {
                events.push(event);
            }
            match msg.tag {
                backend::READY_FOR_QUERY => {
                    self.skipping = false;
                    return Ok(());
                }
                backend::ERROR_RESPONSE if !matches!(owed, Owed::Query | Owed::Sync) => {
                    self.skipping = true;
                    return Ok(());
                }
                tag if owed.ends_with(tag) => return Ok(()),
                _ => {}
            }
        }
    }

    async fn next_message(&mut self) -> Result<Message, String> {
        self.reader
            .read(&mut self.stream)
            .await
            .map_err(|e| e.to_string())
    }

    /// The event of `msg`, keeping the client's view of reported parameters.
    fn normalize(&mut self, msg: &Message, touched: &[String]) -> Option<Event> {
        if msg.tag == backend::PARAMETER_STATUS {
            if let Ok((name, value)) = crate::wire::parse_parameter_status(&msg.body) {
                self.reported.insert(name, value);
            }
        }
        match Event::from_message(msg)? {
            Event::Ready(status, _) => Some(Event::Ready(status, view_of(&self.reported, touched))),
            event => Some(event),
        }
    }

    /// Sends Terminate and closes the connection.
    pub async fn terminate(mut self) {
        let _ = self.send(&crate::wire::terminate()).await;
        let _ = self.stream.shutdown().await;
    }
}
