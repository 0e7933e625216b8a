//! One pooled server connection: its socket, its cancel key and what the proxy knows of
//! its session ([`Tracked`]: ParameterStatus values, statements, settings, transaction
//! status), so the next client can be given exactly its own session without a full reset.
//! Its [`Slot`] is the pool's count of it: dropping the server anywhere (closed,
//! broken, lost in a cancelled task) gives the slot back.

pub use super::slot::Slot;
pub use super::stats::CloseReason;
use super::tracked::Tracked;
use crate::base::stream::Stream;
use crate::cluster::upstream::UpstreamTarget;
use crate::wire::protocol::backend;
use crate::wire::{self, Framer, TxnStatus};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Largest server message the pooled relay buffers whole (rows and COPY data stream).
pub const MAX_SERVER_MESSAGE: usize = 64 * 1024 * 1024;

/// A logged-in server connection owned by a pool.
pub struct ServerConn {
    pub id: u64,
    pub stream: Stream,
    /// Framing state of what the server sends (kept between checkouts).
    pub framer: Framer,
    /// What the proxy knows of the server's session.
    pub tracked: Tracked,
    /// The server's own cancel key.
    pub backend_key: Option<(i32, Vec<u8>)>,
    pub upstream: Arc<UpstreamTarget>,
    pub created: Instant,
    pub last_used: Instant,
    /// Held (read) by a cancel being forwarded to this server; check-in waits for it.
    pub cancel_gate: Arc<tokio::sync::RwLock<()>>,
    /// The DbUser the cluster knows this session as.
    pub db_user: String,
    /// How its login got the credential; taken by the first client (for its log line).
    pub login_source: Option<crate::aws::cache::Source>,
    pub(super) _slot: Slot,
}

impl ServerConn {
    pub(super) fn new(
        opened: crate::cluster::connector::Opened,
        slot: Slot,
        max_prepared: usize,
    ) -> ServerConn {
        let crate::cluster::connector::Opened {
            started,
            upstream,
            source,
            db_user,
        } = opened;
        let params: BTreeMap<String, String> = started.parameters().into_iter().collect();
        let mut framer = Framer::new(MAX_SERVER_MESSAGE, wire::server_streamable);
        framer.buf_mut().extend_from_slice(&started.leftover);
        let now = Instant::now();
        ServerConn {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stream: started.stream,
            framer,
            tracked: Tracked::new(params, max_prepared),
            backend_key: started.backend_key,
            upstream,
            created: now,
            last_used: now,
            cancel_gate: Arc::new(tokio::sync::RwLock::new(())),
            db_user,
            login_source: Some(source),
            _slot: slot,
        }
    }

    /// `server_version` 8.0.2: Redshift's rules apply.
    pub fn redshift(&self) -> bool {
        self.tracked.redshift
    }

    /// Current ParameterStatus values.
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.tracked.params
    }

    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// A look at the socket without waiting: a server that closed, or sent something
    /// while idle (PostgreSQL's FATAL before it terminates a session), is not usable.
    pub fn looks_alive(&mut self) -> bool {
        if !self.framer.at_boundary() {
            return false;
        }
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        match Pin::new(&mut self.stream).poll_read(&mut cx, &mut rb) {
            Poll::Pending => true,
            Poll::Ready(Ok(())) => false,
            Poll::Ready(Err(_)) => false,
        }
    }

    /// A round trip with an empty query: the server answers and is idle.
    pub async fn ping(&mut self, within: Duration) -> bool {
        let check = async {
            self.stream.write_all(&wire::query("")).await.ok()?;
            self.stream.flush().await.ok()?;
            loop {
                let msg = self.read_message().await?;
                match msg.0 {
                    backend::READY_FOR_QUERY => {
                        return Some(wire::ready_status(&msg.1).ok() == Some(TxnStatus::Idle))
                    }
                    backend::ERROR_RESPONSE => return Some(false),
                    _ => {}
                }
            }
        };
        matches!(tokio::time::timeout(within, check).await, Ok(Some(true)))
    }

    /// Reads one whole message (tag, body) outside the relay (ping, reset, settings).
    pub async fn read_message(&mut self) -> Option<(u8, bytes::Bytes)> {
        use tokio::io::AsyncReadExt;
        loop {
            match self.framer.next_frame() {
                Ok(Some(wire::Frame::Whole { tag, raw })) => {
                    let body = wire::body(&raw);
                    if tag == backend::PARAMETER_STATUS {
                        if let Ok((k, v)) = wire::parse_parameter_status(&body) {
                            self.tracked.params.insert(k, v);
                        }
                    }
                    if tag == backend::READY_FOR_QUERY {
                        self.tracked.txn = wire::ready_status(&body).unwrap_or(TxnStatus::Failed);
                    }
                    return Some((tag, body));
                }
                // Streamed pieces (rows of a reset query?) are skipped.
                Ok(Some(wire::Frame::Piece { .. })) => continue,
                Ok(None) => {}
                Err(_) => return None,
            }
            let buf = self.framer.buf_mut();
            buf.reserve(8192);
            match self.stream.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends `sql` as one simple query and reads to its ReadyForQuery; `Err` carries
    /// the first error's message. Rows are discarded; ParameterStatus values are kept.
    pub async fn run_query(&mut self, sql: &str, within: Duration) -> Result<(), String> {
        self.run_messages(&wire::query(sql), 1, within).await
    }

    /// Writes prepared protocol bytes expecting `syncs` ReadyForQuery answers.
    pub async fn run_messages(
        &mut self,
        bytes: &[u8],
        syncs: usize,
        within: Duration,
    ) -> Result<(), String> {
        let work = async {
            self.stream
                .write_all(bytes)
                .await
                .map_err(|e| format!("write: {e}"))?;
            self.stream
                .flush()
                .await
                .map_err(|e| format!("flush: {e}"))?;
            let mut first_error = None;
            let mut seen = 0;
            while seen < syncs {
                let (tag, body) = self
                    .read_message()
                    .await
                    .ok_or_else(|| "server closed the connection".to_owned())?;
                match tag {
                    backend::ERROR_RESPONSE if first_error.is_none() => {
                        first_error = Some(wire::parse_error_fields(&body).message)
                    }
                    backend::READY_FOR_QUERY => seen += 1,
                    _ => {}
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => Ok(()),
            }
        };
        tokio::time::timeout(within, work)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {within:?}")))
    }

    /// Says goodbye politely (Terminate) without waiting long; used when closing.
    pub async fn terminate(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            let _ = self.stream.write_all(&wire::terminate()).await;
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}
