//! W3C trace context (`traceparent`, `tracestate`) in and out of HTTP headers and gRPC metadata.
//! With no exporter configured every function here returns at once: no context is read, none is
//! written, so calls cost what they did before tracing existed.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Release);
}

/// Whether spans are exported (an OTLP endpoint was configured at [`crate::init`]).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

struct HeaderRead<'a>(&'a http::HeaderMap);

impl Extractor for HeaderRead<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderWrite<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderWrite<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct MetadataWrite<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataWrite<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The remote context the headers carry, when tracing is on and they carry a valid one.
pub fn extract(headers: &http::HeaderMap) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderRead(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The context a `traceparent` value names (MCP `_meta.traceparent`), when valid.
pub fn context_from_traceparent(traceparent: &str) -> Option<Context> {
    if !enabled() {
        return None;
    }
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the remote context in `headers`, if any.
pub fn set_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(cx) = extract(headers) {
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` a child of the context a `traceparent` value names, if valid.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if let Some(cx) = context_from_traceparent(traceparent) {
        let _ = span.set_parent(cx);
    }
}

/// Writes `span`'s context into `headers` (replacing what was there), so the next process's
/// span is its child.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderWrite(headers));
    }
}

/// Writes the current span's context into gRPC metadata.
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut MetadataWrite(metadata));
    }
}

/// The trace id of `span` in hex, when tracing is on (for the audit log and error messages).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_reads_and_writes_nothing() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        assert!(extract(&h).is_none());
        let mut out = http::HeaderMap::new();
        inject(&tracing::Span::none(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn traceparent_round_trips_through_headers() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = TraceContextPropagator::new().extract(&HeaderRead(&h));
        let mut out = http::HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderWrite(&mut out));
        assert_eq!(out.get("traceparent"), h.get("traceparent"));
    }
}
