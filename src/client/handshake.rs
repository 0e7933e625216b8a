//! The client handshake: SSL/GSS negotiation and the startup packet, nothing more.
//!
//! The proxy never asks the client for a password: it answers SSLRequest with
//! TLS, GSSENCRequest with `N`, and hands the startup parameters (or a cancel
//! request) to the session. Malformed input ends this connection only.

use crate::base::stream::Stream;
use crate::wire::protocol::{negotiation, sqlstate};
use crate::wire::{self, StartupFrame, WireError};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What the client wants once negotiation is over.
pub enum ClientRequest {
    /// A session: the (possibly TLS) stream and the startup parameters.
    Startup {
        stream: Stream,
        minor: u16,
        params: wire::StartupParams,
    },
    /// Cancel the query of the session holding this key. The stream is closed once the
    /// cancel was delivered: clients wait for that before they go on.
    Cancel {
        stream: Stream,
        pid: i32,
        secret: Vec<u8>,
    },
}

/// Why negotiation failed; `reply` is what the client should be told, if anything.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct NegotiationError {
    pub detail: String,
    /// SQLSTATE and message for an ErrorResponse, when the client can still read one.
    pub reply: Option<(&'static str, String)>,
    /// The stream, when it is still usable for that reply.
    #[source]
    pub source: Option<WireError>,
}

/// Runs negotiation on a fresh TCP connection.
pub async fn negotiate(
    tcp: TcpStream,
    tls: &Arc<rustls::ServerConfig>,
    max_startup: usize,
) -> (Option<Stream>, Result<ClientRequest, NegotiationError>) {
    let mut stream = Stream::Plain(tcp);
    // SSLRequest and GSSENCRequest may each come once before the startup packet.
    for _ in 0..3 {
        let frame = match wire::read_startup_frame(&mut stream, max_startup).await {
            Ok(f) => f,
            Err(e) => return (Some(stream), Err(unreadable(e))),
        };
        match frame {
            StartupFrame::SslRequest => match start_tls(stream, tls).await {
                Ok(s) => stream = s,
                Err(e) => return (None, Err(e)),
            },
            StartupFrame::GssEncRequest => {
                if let Err(e) = refuse_gss(&mut stream).await {
                    return (None, Err(e));
                }
            }
            StartupFrame::Cancel { pid, secret } => {
                return (
                    None,
                    Ok(ClientRequest::Cancel {
                        stream,
                        pid,
                        secret,
                    }),
                )
            }
            StartupFrame::Startup { minor, params } => {
                return (
                    None,
                    Ok(ClientRequest::Startup {
                        stream,
                        minor,
                        params,
                    }),
                )
            }
        }
    }
    (
        Some(stream),
        Err(NegotiationError {
            detail: "too many negotiation requests".into(),
            reply: Some((
                sqlstate::PROTOCOL_VIOLATION,
                "too many SSL/GSS negotiation requests".into(),
            )),
            source: None,
        }),
    )
}

/// A startup frame that could not be read, with what to tell the client (nothing once
/// the connection is gone).
fn unreadable(e: WireError) -> NegotiationError {
    let reply = match &e {
        WireError::Closed | WireError::Io(_) => None,
        WireError::TooLarge { .. } => Some((
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid startup packet: {e}"),
        )),
        WireError::UnsupportedProtocol { .. } => {
            Some((sqlstate::FEATURE_NOT_SUPPORTED, e.to_string()))
        }
        _ => Some((
            sqlstate::PROTOCOL_VIOLATION,
            format!("invalid startup packet: {e}"),
        )),
    };
    NegotiationError {
        detail: e.to_string(),
        reply,
        source: Some(e),
    }
}

/// SSLRequest: `S`, then the TLS handshake on the plain stream.
async fn start_tls(
    stream: Stream,
    tls: &Arc<rustls::ServerConfig>,
) -> Result<Stream, NegotiationError> {
    let Stream::Plain(mut tcp) = stream else {
        return Err(protocol_violation("SSLRequest inside TLS"));
    };
    if tcp.write_all(&[negotiation::SSL_ACCEPTED]).await.is_err() {
        return Err(protocol_violation("client went away"));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
    match acceptor.accept(tcp).await {
        Ok(t) => Ok(Stream::ServerTls(Box::new(t))),
        Err(e) => Err(NegotiationError {
            detail: format!("client TLS handshake failed: {e}"),
            reply: None,
            source: None,
        }),
    }
}

/// GSSENCRequest: `N` (no GSS encryption), before TLS only.
async fn refuse_gss(stream: &mut Stream) -> Result<(), NegotiationError> {
    if stream.is_tls() {
        return Err(protocol_violation("GSSENCRequest inside TLS"));
    }
    if stream.write_all(&[negotiation::REFUSED]).await.is_err() {
        return Err(protocol_violation("client went away"));
    }
    Ok(())
}

fn protocol_violation(what: &str) -> NegotiationError {
    NegotiationError {
        detail: what.to_owned(),
        reply: None,
        source: None,
    }
}

/// Writes a FATAL ErrorResponse and closes the stream; errors are ignored (the client may be gone).
pub async fn reject(stream: &mut Stream, code: &str, message: &str, hint: Option<&str>) {
    let _ = stream
        .write_all(&wire::error_response("FATAL", code, message, hint))
        .await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}
