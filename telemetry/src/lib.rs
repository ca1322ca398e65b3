//! What the host, sandboxd and mcp-bridge share about watching them run (DESIGN.md §6): the
//! tracing subscriber (logs to stderr, colour only on a terminal, JSON for collectors), OTLP span
//! export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C trace context in and out of HTTP/gRPC
//! headers, and the shutdown signal all three wait for.

pub mod grpc;
mod init;
mod propagate;
pub mod relay;
mod signal;

pub use init::{
    export_config, init, init_relayed, ExportConfig, LogFormat, OtelEnv, Protocol, Telemetry,
    TelemetryError,
};
pub use propagate::{
    context_from_traceparent, enabled, extract, inject, inject_metadata, set_parent,
    set_parent_from_traceparent, trace_id,
};
pub use signal::shutdown_signal;
