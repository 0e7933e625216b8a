//! Cancels across replicas (`[peers]`, PgBouncer 1.19's peering model): each replica
//! puts its `peer_id` in the cancel keys it hands out; a CancelRequest whose key names
//! another known peer is passed on to that peer's client listener as is (plain TCP, as
//! libpq sends cancels). The peer finds its own id in the key and cancels locally, so a
//! cancel travels at most one hop.

use crate::cancel::peer_of;
use crate::session::Shared;
use crate::wire;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time allowed for reaching a peer and handing it the cancel.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// Handles a client's CancelRequest: here, or at the replica that issued the key.
pub async fn cancel(shared: &Shared, pid: i32, secret: &[u8]) {
    let own = shared.cancels.peer_id();
    let issuer = peer_of(pid);
    if own == 0 || issuer == own || issuer == 0 {
        return shared.cancels.cancel(pid, secret).await;
    }
    let Some((_, addr)) = shared
        .config
        .peers
        .peer_list()
        .into_iter()
        .find(|(id, _)| *id == issuer)
    else {
        tracing::debug!(
            peer = issuer,
            "cancel request for a key of an unknown peer ignored"
        );
        super::metrics::cancel("unknown_peer");
        return;
    };
    let sent = tokio::time::timeout(PEER_TIMEOUT, async {
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(&wire::cancel_request(pid, secret)).await?;
        s.flush().await?;
        // The peer closes once it has forwarded the cancel to its cluster.
        let mut sink = [0u8; 16];
        while s.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
    match sent {
        Ok(Ok(())) => {
            super::metrics::cancel("forwarded_to_peer");
            tracing::info!(peer = issuer, %addr, "cancel request forwarded to peer");
        }
        Ok(Err(e)) => {
            super::metrics::cancel("peer_failed");
            tracing::warn!(peer = issuer, %addr, error = %e, "forwarding a cancel to a peer failed");
        }
        Err(_) => {
            super::metrics::cancel("peer_failed");
            tracing::warn!(peer = issuer, %addr, "forwarding a cancel to a peer timed out");
        }
    }
}
