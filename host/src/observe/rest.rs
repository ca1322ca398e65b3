//! The REST API's side of observation: a span per request that continues a `traceparent`
//! header's trace (so the calls REST makes to sandboxd are its children), metrics, and an audit
//! record for every `/api/v1` call.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use tracing::Instrument as _;

use super::{CallRecord, Observe};

/// The middleware (`axum::middleware::from_fn_with_state` with the host's [`Observe`]).
pub async fn observe_rest(
    State(observe): State<Arc<Observe>>,
    req: Request,
    next: Next,
) -> Response {
    let route = route_of(req.uri().path());
    let operation = format!("REST {} {route}", req.method());
    let audited = route.starts_with("/api/v1/") && route != "/api/v1/openapi.json";
    let span = tracing::info_span!(
        parent: None,
        "rest",
        otel.name = %operation.trim_start_matches("REST "),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    agent_runtime_telemetry::set_parent(&span, req.headers());
    let user = basic_user(req.headers());
    let request_bytes = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let outcome = format!("HTTP {}", status.as_u16());
    let elapsed = started.elapsed();
    observe.metrics.call_ended(
        &operation,
        &outcome,
        elapsed.as_secs_f64(),
        request_bytes,
        0,
        None,
    );
    if audited {
        let caller = match (status, user) {
            (http::StatusCode::UNAUTHORIZED, _) => "unauthenticated".to_owned(),
            (_, Some(user)) => user,
            (_, None) => "anonymous".to_owned(),
        };
        observe.audit.write(&CallRecord {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            caller,
            sandbox: String::new(),
            operation,
            outcome,
            duration_ms: elapsed.as_millis() as u64,
            request_bytes,
            response_bytes: 0,
            trace_id: agent_runtime_telemetry::trace_id(&span),
            ..Default::default()
        });
    }
    resp
}

/// The user name of a Basic `authorization` header (never the password).
fn basic_user(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.0.to_owned())
}

/// The route of a path: context ids become `{context_id}`, so metrics keep few labels.
fn route_of(path: &str) -> String {
    match path.strip_prefix("/api/v1/contexts/") {
        Some(rest) if !rest.is_empty() => match rest.split_once('/') {
            Some((_, tail)) => format!("/api/v1/contexts/{{context_id}}/{tail}"),
            None => "/api/v1/contexts/{context_id}".to_owned(),
        },
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn routes_hide_ids() {
        assert_eq!(
            super::route_of("/api/v1/contexts/ctx-1/execute"),
            "/api/v1/contexts/{context_id}/execute"
        );
        assert_eq!(super::route_of("/api/v1/contexts"), "/api/v1/contexts");
        assert_eq!(
            super::route_of("/api/v1/contexts/ctx-1"),
            "/api/v1/contexts/{context_id}"
        );
    }
}
