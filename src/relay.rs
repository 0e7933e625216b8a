//! The relay: after login, bytes flow both ways untouched until either side closes.
//!
//! Nothing is decoded here (Redshift's extended RowDescription, COPY data,
//! notifications all pass as opaque bytes), and no assumption is made about how
//! messages fall into reads.

use crate::stream::Stream;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

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

/// Pipes `client` ⇄ `upstream` until one side ends or `stop` fires.
pub async fn relay(
    mut client: Stream,
    mut upstream: Stream,
    stop: CancellationToken,
) -> (Traffic, RelayEnd) {
    let buf = 16 * 1024;
    tokio::select! {
        r = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, buf, buf) => {
            match r {
                Ok((c2s, s2c)) => (Traffic { client_to_server: c2s, server_to_client: s2c }, RelayEnd::Closed(None)),
                Err(e) => {
                    let _ = client.shutdown().await;
                    (Traffic::default(), RelayEnd::Closed(Some(e)))
                }
            }
        }
        _ = stop.cancelled() => {
            let _ = upstream.shutdown().await;
            let _ = client.shutdown().await;
            (Traffic::default(), RelayEnd::Shutdown)
        }
    }
}
