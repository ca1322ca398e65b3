//! What every `Sandbox`-service call carries: the `sandbox-id` metadata naming the sandbox the
//! host forwards it to, and message size limits that fit the largest file the protocol moves.

use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::SANDBOX_ID_HEADER;
use tonic::metadata::MetadataValue;

use crate::ids::SandboxId;
use crate::rpc::Transport;

/// Largest gRPC message either way; part of the protocol, so it lives in the proto crate.
pub use agent_runtime_proto::MAX_MESSAGE_BYTES;

/// A request for `message` addressed to `sandbox` (the `sandbox-id` metadata set).
pub fn with_sandbox<T>(message: T, sandbox: &SandboxId) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    set_sandbox(&mut request, sandbox);
    request
}

/// Addresses an already built request to `sandbox`, replacing any earlier `sandbox-id`.
pub fn set_sandbox<T>(request: &mut tonic::Request<T>, sandbox: &SandboxId) {
    // A parsed id is `prefix-` and hex digits, always a valid ASCII metadata value.
    if let Ok(value) = MetadataValue::try_from(sandbox.as_str()) {
        request.metadata_mut().insert(SANDBOX_ID_HEADER, value);
    }
}

/// A `Sandbox`-service client over `channel` whose messages may be [`MAX_MESSAGE_BYTES`] long.
pub fn sandbox_client<T: Transport>(channel: T) -> SandboxClient<T> {
    SandboxClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_the_sandbox_id() {
        let id = SandboxId::parse("sb-3f2").map(|id| with_sandbox((), &id));
        let stamped = id
            .as_ref()
            .and_then(|r| r.metadata().get(SANDBOX_ID_HEADER));
        assert_eq!(stamped.and_then(|v| v.to_str().ok()), Some("sb-3f2"));
    }

    #[test]
    fn restamping_replaces() {
        let (Some(a), Some(b)) = (SandboxId::parse("sb-a"), SandboxId::parse("sb-b")) else {
            panic!("ids parse");
        };
        let mut r = with_sandbox((), &a);
        set_sandbox(&mut r, &b);
        let all: Vec<_> = r.metadata().get_all(SANDBOX_ID_HEADER).iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].to_str().ok(), Some("sb-b"));
    }
}
