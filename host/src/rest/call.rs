//! Calls from REST to a sandbox: each with the `sandbox-id` metadata and a deadline, awaited no
//! longer than that deadline (a daemon that accepted a call and then stopped must not hold the
//! caller).

use std::future::Future;
use std::time::Duration;

use agent_runtime_client::{sandbox_client, with_sandbox};
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use tonic::transport::Channel;

use super::error::RestError;
use crate::ids::SandboxId;
use crate::sandboxes::Manager;

/// Deadline of a call without a timeout of its own (DESIGN.md §3.3).
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline of CreateContext: a kernel may have to boot when no spare one is ready.
pub const CREATE_DEADLINE: Duration = Duration::from_secs(60);

/// A client for `sandbox`'s daemon (waiting a moment for one that is still starting).
pub async fn client(
    manager: &Manager,
    sandbox: &SandboxId,
) -> Result<SandboxClient<Channel>, RestError> {
    let channel = manager
        .ready_channel(sandbox, crate::sandboxes::STARTING_WAIT)
        .await?;
    Ok(sandbox_client(channel))
}

/// A request to `sandbox` with the `sandbox-id` metadata and `deadline`.
pub fn req<T>(sandbox: &SandboxId, msg: T, deadline: Duration) -> tonic::Request<T> {
    let mut r = with_sandbox(msg, sandbox);
    r.set_timeout(deadline);
    // sandboxd's span becomes a child of the REST request's.
    agent_runtime_telemetry::inject_metadata(r.metadata_mut());
    r
}

/// Awaits a call to `sandbox` for at most `deadline`.
pub async fn within<T>(
    deadline: Duration,
    sandbox: &SandboxId,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RestError> {
    within_mapped(deadline, sandbox, call, RestError::from_status).await
}

/// [`within`], with the sandbox's error statuses mapped by `map`.
pub async fn within_mapped<T>(
    deadline: Duration,
    sandbox: &SandboxId,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    map: impl FnOnce(&tonic::Status) -> RestError,
) -> Result<T, RestError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(map(&s)),
        Err(_) => Err(no_answer(sandbox, deadline)),
    }
}

/// TIMEOUT for a sandbox silent past `deadline`.
pub fn no_answer(sandbox: &SandboxId, deadline: Duration) -> RestError {
    RestError::timeout(format!(
        "sandbox {sandbox} did not answer within {} s: it may be overloaded or stopped; retry, \
         or delete the context",
        deadline.as_secs_f64()
    ))
}
