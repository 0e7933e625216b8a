//! HTTP/1.1 plumbing: accept loop, one task per connection, request decoding and routing
//! (Redshift / STS Query, Serverless JSON 1.1), SigV4 gate per signing name, fault injection,
//! and response encoding.

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

use crate::error::ApiError;
use crate::state::State;
use crate::validate::Params;
use crate::{api, serverless, sigv4, sts, xml, Fault};

/// Largest accepted request body.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Longest a call waits for the others of its rendezvous ([`crate::Emulator::rendezvous`]).
const RENDEZVOUS_LIMIT: Duration = Duration::from_secs(10);

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

/// Why: the API family of a request, deciding its signing name and wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// AWS Query, XML in the Redshift namespace.
    Redshift,
    /// AWS Query with `Version=2011-06-15`, XML in the STS namespace.
    Sts,
    /// JSON 1.1 with `X-Amz-Target: RedshiftServerless.*`.
    Serverless,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Service::Redshift => "redshift",
            Service::Sts => "sts",
            Service::Serverless => "redshift-serverless",
        }
    }
}

fn response(
    status: u16,
    content_type: &'static str,
    body: String,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    resp
}

/// Why: how a response is rendered: the service's wire format, and for STS whether the
/// caller asked for JSON (`Accept: application/json`).
#[derive(Debug, Clone, Copy)]
struct Format {
    service: Service,
    json: bool,
}

impl Format {
    fn of(service: Service) -> Format {
        Format {
            service,
            json: false,
        }
    }
}

/// The request accepts `application/json` (one of its `Accept` media ranges, parameters aside).
fn accepts_json(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

fn error_response(fmt: Format, err: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    match fmt.service {
        Service::Redshift => response(
            err.status,
            "text/xml",
            xml::error(err, request_id),
            request_id,
        ),
        Service::Sts if fmt.json => response(
            err.status,
            sts::JSON_CONTENT_TYPE,
            sts::json_error(err, request_id),
            request_id,
        ),
        Service::Sts => response(
            err.status,
            "text/xml",
            xml::error_in(xml::STS_NAMESPACE, err, request_id),
            request_id,
        ),
        Service::Serverless => response(
            err.status,
            serverless::CONTENT_TYPE,
            serverless::error_body(err),
            request_id,
        ),
    }
}

async fn handle(
    state: &State,
    conn: &CancellationToken,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let request_id = xml::request_id();
    let (parts, body) = req.into_parts();
    let json_operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(serverless::TARGET_PREFIX))
        .map(str::to_owned);

    let too_large = || {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request body exceeds {MAX_BODY} bytes."),
        )
    };
    let early_service = if json_operation.is_some() {
        Service::Serverless
    } else {
        Service::Redshift
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        state.record_call("");
        return error_response(Format::of(early_service), &too_large(), &request_id);
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            state.record_call("");
            return error_response(Format::of(early_service), &too_large(), &request_id);
        }
    };

    let (service, action, params) = match json_operation {
        Some(op) => (Service::Serverless, op, Params::default()),
        None => {
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
            let service = if params.get("Version") == Some(sts::API_VERSION) {
                Service::Sts
            } else {
                Service::Redshift
            };
            let action = params.get("Action").unwrap_or_default().to_owned();
            (service, action, params)
        }
    };
    state.record_call(&action);
    let fmt = Format {
        service,
        json: service == Service::Sts && accepts_json(&parts.headers),
    };

    let signed = sigv4::SignedParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let keys = state.keys();
    let now = time::OffsetDateTime::now_utc();
    let expected = sigv4::Expected {
        service: service.signing_name(),
        region: &state.config.region,
        now,
        keys: &keys,
        // Only STS takes presigned requests here (the identity-token pattern).
        query_auth: service == Service::Sts,
    };
    let (key, form) = match sigv4::verify(&signed, &expected) {
        Ok(v) => (v.key.clone(), v.form),
        Err(e) => {
            tracing::debug!(action = %action, code = %e.code, "Redshift emulator rejected signature");
            return error_response(fmt, &e, &request_id);
        }
    };
    if form == sigv4::Form::Query && action != "GetCallerIdentity" {
        // Real STS would run any action presigned (AWS Query takes GET); the emulator serves
        // the identity-token pattern only, and says so.
        let e = ApiError::new(
            400,
            "InvalidAction",
            format!(
                "Could not find operation {action} for version {} by query-string \
                 authentication: the emulator serves GetCallerIdentity only that way.",
                sts::API_VERSION
            ),
        );
        return error_response(fmt, &e, &request_id);
    }
    if state
        .session(&key.access_key_id)
        .is_some_and(|s| s.expires <= now)
    {
        let e = ApiError::new(
            403,
            "ExpiredToken",
            "The security token included in the request is expired",
        );
        return error_response(fmt, &e, &request_id);
    }

    let fault = state.take_fault(&action);
    let delay = state.delay();
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = conn.cancelled() => return error_response(fmt, &ApiError::internal("stopping"), &request_id),
        }
    }
    match fault {
        None => {}
        Some(Fault::Throttle) => {
            tracing::debug!(action = %action, "Redshift emulator injected Throttling");
            return error_response(
                fmt,
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
            return error_response(fmt, &ApiError::new(status, &code, message), &request_id);
        }
        Some(Fault::Hang) => {
            tracing::debug!(action = %action, "Redshift emulator injected hang");
            state.stop.cancelled().await;
            return error_response(fmt, &ApiError::internal("stopping"), &request_id);
        }
        Some(Fault::Disconnect) => {
            tracing::debug!(action = %action, "Redshift emulator injected disconnect");
            // Dropping the connection in `serve_connection` closes the socket unanswered.
            conn.cancel();
            std::future::pending::<()>().await;
        }
    }

    if let Some(barrier) = state.rendezvous_for(&action) {
        tokio::select! {
            _ = barrier.wait() => {}
            _ = tokio::time::sleep(RENDEZVOUS_LIMIT) => {
                tracing::warn!(action = %action, "Redshift emulator rendezvous incomplete after {RENDEZVOUS_LIMIT:?}; answering anyway");
            }
            _ = conn.cancelled() => return error_response(fmt, &ApiError::internal("stopping"), &request_id),
        }
    }

    let result = match service {
        Service::Redshift => api::dispatch(state, &key, &params, &request_id)
            .await
            .map(|b| (b, "text/xml")),
        Service::Sts => sts::dispatch(state, &key, &params, &request_id, fmt.json),
        Service::Serverless => serverless::dispatch(state, &key, &action, &body)
            .await
            .map(|v| (v.to_string(), serverless::CONTENT_TYPE)),
    };
    match result {
        Ok((body, content_type)) => response(200, content_type, body, &request_id),
        Err(e) => error_response(fmt, &e, &request_id),
    }
}
