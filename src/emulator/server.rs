//! HTTP/1.1 plumbing: accept loop, one task per connection, request decoding, SigV4 gate,
//! fault injection, and response encoding.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::emulator::error::ApiError;
use crate::emulator::state::State;
use crate::emulator::validate::Params;
use crate::emulator::{api, sigv4, xml, Fault};

/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let conn_stop = stop.child_token();
                tracker.spawn(serve_connection(stream, state.clone(), conn_stop));
            }
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "Redshift emulator accept failed");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

/// Serves one connection until the client closes it, a `Disconnect` fault fires, or the
/// emulator stops (which drops the connection).
async fn serve_connection(stream: TcpStream, state: Arc<State>, conn_stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let svc_stop = conn_stop.clone();
    let svc = service_fn(move |req| {
        let state = state.clone();
        let conn = svc_stop.clone();
        async move { Ok::<_, Infallible>(handle(&state, &conn, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "Redshift emulator connection ended with an error");
            }
        }
        _ = conn_stop.cancelled() => {}
    }
}

fn xml_response(status: u16, body: String, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(err: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    xml_response(err.status, xml::error(err, request_id), request_id)
}

async fn handle(
    state: &State,
    conn: &CancellationToken,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let request_id = xml::request_id();
    let (parts, body) = req.into_parts();

    let too_large = || {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request body exceeds {MAX_BODY} bytes."),
        )
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        state.record_call("");
        return error_response(&too_large(), &request_id);
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            state.record_call("");
            return error_response(&too_large(), &request_id);
        }
    };

    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    let params = Params::parse(parts.uri.query(), is_form.then_some(&body[..]));
    let action = params.get("Action").unwrap_or_default().to_owned();
    state.record_call(&action);

    let signed = sigv4::SignedParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let expected = sigv4::Expected {
        service: "redshift",
        region: &state.config.region,
        now: time::OffsetDateTime::now_utc(),
        keys: &state.config.keys,
    };
    let key = match sigv4::verify(&signed, &expected) {
        Ok(k) => k.clone(),
        Err(e) => {
            tracing::debug!(action = %action, code = %e.code, "Redshift emulator rejected signature");
            return error_response(&e, &request_id);
        }
    };

    let fault = state.take_fault();
    let delay = state.delay();
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = conn.cancelled() => return error_response(&ApiError::internal("stopping"), &request_id),
        }
    }
    match fault {
        None => {}
        Some(Fault::Throttle) => {
            tracing::debug!(action = %action, "Redshift emulator injected Throttling");
            return error_response(
                &ApiError::new(400, "Throttling", "Rate exceeded"),
                &request_id,
            );
        }
        Some(Fault::Error {
            status,
            code,
            message,
        }) => {
            tracing::debug!(action = %action, %code, "Redshift emulator injected error");
            return error_response(&ApiError::new(status, &code, message), &request_id);
        }
        Some(Fault::Hang) => {
            tracing::debug!(action = %action, "Redshift emulator injected hang");
            state.stop.cancelled().await;
            return error_response(&ApiError::internal("stopping"), &request_id);
        }
        Some(Fault::Disconnect) => {
            tracing::debug!(action = %action, "Redshift emulator injected disconnect");
            // Dropping the connection in `serve_connection` closes the socket unanswered.
            conn.cancel();
            std::future::pending::<()>().await;
        }
    }

    match api::dispatch(state, &key, &params, &request_id).await {
        Ok(body) => xml_response(200, body, &request_id),
        Err(e) => error_response(&e, &request_id),
    }
}
