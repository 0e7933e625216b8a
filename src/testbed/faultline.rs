//! A TCP forwarder that can be told to misbehave: placed between the proxy and the
//! cluster, it makes the "network" refuse, close mid-handshake, or work again.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Why: a test switches how the "network" to the cluster behaves for the next connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward = 0,
    /// Accept, read the first bytes (the SSLRequest), then close the connection.
    CloseAfterFirstRead = 1,
    /// Accept and close at once.
    CloseImmediately = 2,
}

/// Why: faults between the proxy and the cluster need a hop the test controls; this is it.
pub struct Faultline {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Faultline {
    /// A forwarder on a random loopback port to `upstream`, forwarding until told otherwise.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Faultline> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mode = m.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if mode == Mode::CloseImmediately as u8 {
                        return;
                    }
                    if mode == Mode::CloseAfterFirstRead as u8 {
                        let mut buf = [0u8; 64];
                        let _ = client.read(&mut buf).await;
                        return;
                    }
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Faultline { addr, mode, task })
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for Faultline {
    fn drop(&mut self) {
        self.task.abort();
    }
}
