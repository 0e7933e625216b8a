//! Helpers the fuzz targets share. The code under test is the `redshift-wire` crate
//! (crates/wire): framing, typed messages and the pool's SQL lexer, built without the
//! rest of the proxy (AWS SDK, rustls, hyper...), which would take many minutes to
//! build with sanitizers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// Drives a future to completion on this thread. The readers used here never wait on
/// anything external (a `Pending` is always followed by a ready byte), so a busy poll
/// with a no-op waker is enough and far cheaper than a tokio runtime per input.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not complete: a reader loops on Pending");
}

/// A byte stream delivered in chunks of fuzzer-chosen sizes, answering `Pending`
/// before every other chunk, to exercise reads that split or coalesce messages.
pub struct ChunkedReader<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    /// Bytes handed out so far.
    pub pos: usize,
    turn: usize,
    pending_next: bool,
}

impl<'a> ChunkedReader<'a> {
    /// `sizes` are cycled; a size byte `s` delivers `s % 64 + 1` bytes at most
    /// (an empty `sizes` delivers everything the caller has room for).
    pub fn new(data: &'a [u8], sizes: &'a [u8]) -> Self {
        Self {
            data,
            sizes,
            pos: 0,
            turn: 0,
            pending_next: false,
        }
    }
}

impl AsyncRead for ChunkedReader<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pending_next && this.pos < this.data.len() {
            this.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pending_next = true;
        let rest = &this.data[this.pos..];
        let mut n = rest.len().min(buf.remaining());
        if !this.sizes.is_empty() {
            let s = usize::from(this.sizes[this.turn % this.sizes.len()]) % 64 + 1;
            n = n.min(s);
            this.turn += 1;
        }
        buf.put_slice(&rest[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}
