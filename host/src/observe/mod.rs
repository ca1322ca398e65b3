//! What an operator sees of the host's calls (DESIGN.md §6, issue 13): a span per gRPC call that
//! continues the caller's trace and is the parent of sandboxd's, sandboxd's spans relayed to the
//! collector, Prometheus metrics, and the call audit log.

pub mod audit;
pub mod calls;
pub mod metrics;
pub mod rest;
pub mod spans;
pub mod taps;

pub use audit::{AuditOptions, CallAudit, CallRecord};
pub use calls::{CallNote, Observe};
pub use metrics::Metrics;
