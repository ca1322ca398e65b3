//! Forwards every `agent_runtime.v1.Sandbox` call, unchanged at the HTTP/2 level, to the sandbox
//! named by the `sandbox-id` metadata. Working below protobuf means every RPC — unary, client-,
//! server- and bidi-streaming, present and future — is forwarded without per-method code, and
//! large transfers stream through without being decoded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use agent_runtime_proto::SANDBOX_ID_HEADER;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tower::ServiceExt;

use crate::error::HostError;
use crate::ids::SandboxId;
use crate::sandboxes::Manager;

/// The forwarding service.
#[derive(Clone)]
pub struct SandboxProxy {
    manager: Arc<Manager>,
}

impl SandboxProxy {
    /// Forwards through `manager`'s channels.
    pub fn new(manager: Arc<Manager>) -> Self {
        Self { manager }
    }
}

impl NamedService for SandboxProxy {
    const NAME: &'static str = "agent_runtime.v1.Sandbox";
}

impl tower::Service<http::Request<Body>> for SandboxProxy {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let manager = self.manager.clone();
        Box::pin(async move {
            let channel = match target(&manager, &req) {
                Ok(c) => c,
                Err(status) => return Ok(status.into_http()),
            };
            match channel.oneshot(req).await {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    Ok(Status::unavailable(format!("sandbox daemon unreachable: {e}")).into_http())
                }
            }
        })
    }
}

fn target(
    manager: &Manager,
    req: &http::Request<Body>,
) -> Result<tonic::transport::Channel, Status> {
    let raw = req
        .headers()
        .get(SANDBOX_ID_HEADER)
        .ok_or_else(|| {
            Status::invalid_argument(
                "missing `sandbox-id` metadata: name the sandbox, e.g. grpcurl -H 'sandbox-id: sb-…'",
            )
        })?
        .to_str()
        .map_err(|_| Status::invalid_argument("`sandbox-id` metadata is not text"))?;
    let id =
        SandboxId::parse(raw.trim()).ok_or_else(|| HostError::SandboxNotFound(raw.to_owned()))?;
    Ok(manager.channel(&id)?)
}
