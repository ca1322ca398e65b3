//! Generated gRPC code for `agent_runtime.v1`, plus the descriptor set that reflection serves,
//! the daemon authentication both ends share, and the closed sets the proto carries as strings.

pub mod auth;
pub mod limits;
pub mod sets;

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

/// Largest gRPC message either way: a whole-file read or write (64 MiB, sandbox.proto) plus room
/// for the rest of the message. sandboxd, the host and every client use this one value.
pub const MAX_MESSAGE_BYTES: usize = 80 << 20;

// ReadFile's cap and room for the other fields fit in one message.
const _: () = assert!(MAX_MESSAGE_BYTES > (64 << 20) + (1 << 20));

/// Metadata key that names the sandbox a `Sandbox`-service call goes to.
pub const SANDBOX_ID_HEADER: &str = "sandbox-id";

/// sandboxd's health service name for "what was asked to start ahead (the browser, a spare
/// kernel) has started": NOT_SERVING until then, SERVING at once when nothing was. A warm pool
/// waits for it before it counts a member ready.
pub const WARM_HEALTH_SERVICE: &str = "agent_runtime.v1.Sandbox/warm";
