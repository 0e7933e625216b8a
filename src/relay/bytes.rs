//! The relay: after login, bytes flow both ways untouched until either side closes.
//!
//! Nothing is decoded here (Redshift's extended RowDescription, COPY data,
//! notifications all pass as opaque bytes), and no assumption is made about how
//! messages fall into reads.
//!
//! An idle session holds no buffer: each direction reads into a per-thread scratch
//! buffer and writes it straight on; only bytes the writer cannot take at once are
//! copied into a per-direction buffer, which is released as soon as it drains.
//! Reads continue until the source has nothing more (or the scratch is full), so
//! bulk transfers go out in large writes and request/response traffic in one
//! write per burst.

use crate::base::stream::Stream;
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Size of the per-thread scratch buffer: the most one direction reads before writing.
const SCRATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// Shared by every session polled on this thread; never held across an await.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// Bytes moved in each direction by one session.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

/// How a relayed session ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// One side closed (or errored); the other was closed in turn.
    Closed(Option<std::io::Error>),
    /// The proxy is shutting down and the drain time is over.
    Shutdown,
}

/// One direction of the relay: its backlog (bytes read but not yet accepted by the writer) and state.
#[derive(Default)]
struct Half {
    /// Backlog; empty and unallocated while the direction keeps up (the idle case).
    backlog: Vec<u8>,
    /// How much of `backlog` has been written.
    sent: usize,
    /// The source reached end of stream.
    eof: bool,
    /// The writer may hold buffered bytes (TLS records) that need a flush.
    dirty: bool,
    /// End of stream was passed on (writer shut down).
    done: bool,
    /// Bytes read from the source.
    bytes: u64,
}

/// Writes as much of `buf` as `w` takes now; `Ok(n)` may be short when `w` would block.
fn write_now(cx: &mut Context<'_>, w: &mut Stream, buf: &[u8]) -> io::Result<usize> {
    let mut off = 0;
    while off < buf.len() {
        match Pin::new(&mut *w).poll_write(cx, &buf[off..]) {
            Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => off += n,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    Ok(off)
}

impl Half {
    /// Moves bytes from `r` to `w` until `r` has nothing more for now (Pending) or ends (Ready).
    fn poll_pump(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut Stream,
        w: &mut Stream,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.sent < self.backlog.len() {
                let n = write_now(cx, w, &self.backlog[self.sent..])?;
                self.sent += n;
                self.dirty |= n > 0;
                if self.sent < self.backlog.len() {
                    return Poll::Pending;
                }
                // Release the buffer: a session that goes idle holds none.
                self.backlog = Vec::new();
                self.sent = 0;
            }
            if self.eof {
                ready!(Pin::new(&mut *w).poll_shutdown(cx))?;
                self.dirty = false;
                return Poll::Ready(Ok(()));
            }
            let read_pending = SCRATCH.with(|scratch| -> io::Result<bool> {
                let mut scratch = scratch.borrow_mut();
                let mut filled = 0;
                let mut pending = false;
                while filled < scratch.len() {
                    let mut rb = ReadBuf::new(&mut scratch[filled..]);
                    match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                            self.eof = true;
                            break;
                        }
                        Poll::Ready(Ok(())) => filled += rb.filled().len(),
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => {
                            pending = true;
                            break;
                        }
                    }
                }
                self.bytes += filled as u64;
                let n = write_now(cx, w, &scratch[..filled])?;
                self.dirty |= n > 0;
                if n < filled {
                    self.backlog.extend_from_slice(&scratch[n..filled]);
                }
                Ok(pending)
            })?;
            if read_pending && self.backlog.is_empty() {
                // Nothing more to read for now: push out what the writer buffered, then wait.
                if self.dirty {
                    ready!(Pin::new(&mut *w).poll_flush(cx))?;
                    self.dirty = false;
                }
                return Poll::Pending;
            }
        }
    }
}

/// Runs both directions until both have ended, or one fails.
async fn pump(
    client: &mut Stream,
    upstream: &mut Stream,
    up: &mut Half,
    down: &mut Half,
) -> io::Result<()> {
    poll_fn(|cx| {
        if !up.done {
            if let Poll::Ready(r) = up.poll_pump(cx, client, upstream) {
                r?;
                up.done = true;
            }
        }
        if !down.done {
            if let Poll::Ready(r) = down.poll_pump(cx, upstream, client) {
                r?;
                down.done = true;
            }
        }
        if up.done && down.done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Pipes `client` ⇄ `upstream` until one side ends or `stop` fires.
pub async fn relay(
    mut client: Stream,
    mut upstream: Stream,
    stop: CancellationToken,
) -> (Traffic, RelayEnd) {
    let (mut up, mut down) = (Half::default(), Half::default());
    let outcome = tokio::select! {
        r = pump(&mut client, &mut upstream, &mut up, &mut down) => Some(r),
        _ = stop.cancelled() => None,
    };
    let traffic = Traffic {
        client_to_server: up.bytes,
        server_to_client: down.bytes,
    };
    match outcome {
        Some(Ok(())) => (traffic, RelayEnd::Closed(None)),
        Some(Err(e)) => {
            let _ = client.shutdown().await;
            (traffic, RelayEnd::Closed(Some(e)))
        }
        None => {
            let _ = upstream.shutdown().await;
            let _ = client.shutdown().await;
            (traffic, RelayEnd::Shutdown)
        }
    }
}
