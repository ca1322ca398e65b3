//! Forwards every `agent_runtime.v1.Sandbox` call, unchanged at the HTTP/2 level, to the sandbox
//! named by the `sandbox-id` metadata. Working below protobuf means every RPC — unary, client-,
//! server- and bidi-streaming, present and future — is forwarded without per-method code, and
//! large transfers stream through without being decoded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use agent_runtime_proto::SANDBOX_ID_HEADER;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;
use tower::ServiceExt;

use crate::auth::Gate;
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::sandboxes::Manager;

/// Deadline for a call whose client sent none (DESIGN.md §3.3).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// Longest deadline a client may ask for: the longest exec (1 h) and a margin.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600 + 60);

/// The forwarding service.
#[derive(Clone)]
pub struct SandboxProxy {
    manager: Arc<Manager>,
    gate: Gate,
}

impl SandboxProxy {
    /// Forwards through `manager`'s channels, to callers `gate` lets in.
    pub fn new(manager: Arc<Manager>, gate: Gate) -> Self {
        Self { manager, gate }
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
        let gate = self.gate.clone();
        Box::pin(async move {
            let id = match target(&manager, &gate, &req) {
                Ok(id) => id,
                Err(status) => return Ok(status.into_http()),
            };
            // The deadline covers the answer's start: a unary call's whole reply, a stream's
            // headers (a stream then runs as long as the daemon's own limits let it), and the
            // wait for a sandbox that is still starting.
            let deadline = deadline_of(req.headers());
            let started = tokio::time::Instant::now();
            let channel = match manager
                .ready_channel(&id, deadline.min(crate::sandboxes::STARTING_WAIT))
                .await
            {
                Ok(channel) => channel,
                Err(e) => return Ok(Status::from(e).into_http()),
            };
            let left = deadline.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, channel.oneshot(req)).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => Ok(unreachable(&manager, &id, e).into_http()),
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "sandbox {id} did not answer within {} s; its daemon may be stuck — retry, \
                     send a longer grpc-timeout for slow calls, or destroy the sandbox",
                    deadline.as_secs_f64()
                ))
                .into_http()),
            }
        })
    }
}

/// The error for a call the channel could not deliver: the sandbox's death when that is why.
fn unreachable(manager: &Manager, id: &SandboxId, e: tonic::transport::Error) -> Status {
    let detail = crate::uds::describe(&e);
    match manager.channel(id) {
        Err(dead @ HostError::Dead { .. }) => dead.into(),
        _ if crate::uds::is_silent_daemon(&e) => Status::deadline_exceeded(format!(
            "sandbox {id} did not answer ({detail}); its daemon may be stuck — retry, or destroy \
             the sandbox"
        )),
        _ => Status::unavailable(format!(
            "sandbox {id}: its daemon is unreachable ({detail})"
        )),
    }
}

/// The client's `grpc-timeout` (bounded by [`MAX_DEADLINE`]), else [`DEFAULT_DEADLINE`].
pub fn deadline_of(headers: &http::HeaderMap) -> Duration {
    headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(DEFAULT_DEADLINE, |d| d.min(MAX_DEADLINE))
}

/// Parses the gRPC wire form of a timeout: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

fn target(manager: &Manager, gate: &Gate, req: &http::Request<Body>) -> Result<SandboxId, Status> {
    let caller = gate.check(
        req.headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )?;
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
    // Another token's sandbox does not exist for this caller.
    let record = manager.get(&id)?;
    if !gate.may_use(&caller, &record.owner) {
        return Err(HostError::SandboxNotFound(id.to_string()).into());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_and_are_bounded() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("x"), None);
        assert_eq!(parse_grpc_timeout("10Q"), None);
        let mut h = http::HeaderMap::new();
        assert_eq!(deadline_of(&h), DEFAULT_DEADLINE);
        h.insert("grpc-timeout", http::HeaderValue::from_static("99H"));
        assert_eq!(deadline_of(&h), MAX_DEADLINE);
    }
}
