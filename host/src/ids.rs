//! Identifiers handed to users; defined once in the client layer.

pub use agent_runtime_client::ids::{ContextId, RunId, SandboxId};
