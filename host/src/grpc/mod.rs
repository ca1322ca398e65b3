//! The host's gRPC services: lifecycle (`Sandboxes`) and the forwarding `Sandbox` service.

pub mod lifecycle;
pub mod proxy;
