//! The `[admin] listen` HTTP server: Kubernetes probes with Cloud SQL Auth Proxy
//! semantics and the Prometheus `/metrics` endpoint. It runs until the proxy has
//! drained, so liveness stays green while sessions finish.

use crate::context::admin::Readiness;
use crate::context::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The paths served, for docs and the Kubernetes manifest test.
pub const PATHS: [&str; 4] = ["/startup", "/liveness", "/readiness", "/metrics"];

/// Accepts until `stop`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(error = %e, "admin HTTP connection ended with an error");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const PLAIN: &str = "text/plain; charset=utf-8";

/// Answers one request.
pub fn handle<B>(shared: &Shared, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into(), PLAIN);
    }
    let admin = &shared.admin;
    match req.uri().path() {
        "/startup" => {
            if admin.is_started() {
                text(StatusCode::OK, "ok: started\n".into(), PLAIN)
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting: listeners or prewarm not done yet\n".into(),
                    PLAIN,
                )
            }
        }
        // The process answers: the runtime is alive. Nothing else here may restart a
        // healthy proxy (an AWS or cluster outage is not fixed by a restart).
        "/liveness" => text(StatusCode::OK, "ok: alive\n".into(), PLAIN),
        "/readiness" => match admin.readiness() {
            Readiness::Ready => text(StatusCode::OK, "ok: ready\n".into(), PLAIN),
            Readiness::NotReady(why) => {
                text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"), PLAIN)
            }
        },
        "/metrics" => text(
            StatusCode::OK,
            super::metrics::encode(shared),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("not found; paths: {}\n", PATHS.join(" ")),
            PLAIN,
        ),
    }
}
