//! Generated gRPC code for `agent_runtime.v1`, plus the descriptor set that reflection serves,
//! and the daemon authentication both ends share.

pub mod auth;

/// Messages and services of package `agent_runtime.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("agent_runtime.v1");
}

/// Encoded `FileDescriptorSet` of every `.proto` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agent_runtime_descriptor.bin"));

/// Protocol name sandboxd reports in `Hello` and the host requires.
pub const PROTOCOL: &str = "agent_runtime.v1";

/// Metadata key that names the sandbox a `Sandbox`-service call goes to.
pub const SANDBOX_ID_HEADER: &str = "sandbox-id";
