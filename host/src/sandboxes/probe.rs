//! The readiness check of a daemon, used while a sandbox starts and when one is adopted:
//! socket present → authenticated connect → gRPC health SERVING → `Hello` speaks our protocol
//! and proves the sandbox's secret over a fresh nonce.

use std::time::Duration;

use agent_runtime_proto::auth::Secret;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::HelloRequest;
use agent_runtime_proto::PROTOCOL;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backend::Endpoint;
use crate::ids::SandboxId;

/// Deadline of one readiness probe (connect, handshake, health, Hello).
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of the connection (and its handshake) within a probe.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a probe failed.
pub(super) enum Probe {
    /// Not answering yet; a later attempt may succeed.
    Retry(String),
    /// Answering, but not a daemon this host may use (wrong protocol, no proof).
    Fatal(String),
}

/// One readiness check: connect (the connection itself proves the daemon holds `id`'s
/// secret), gRPC health SERVING, then Hello with our protocol and a proof over a fresh nonce.
pub(super) async fn probe(
    endpoint: &Endpoint,
    secret: &Secret,
    id: &SandboxId,
) -> Result<Channel, Probe> {
    if let Endpoint::Unix(path) = endpoint {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(Probe::Retry("socket not created yet".into()));
        }
    }
    let channel = crate::uds::connect(endpoint, secret, id, CONNECT_TIMEOUT)
        .await
        .map_err(|e| Probe::Retry(format!("connect: {}", crate::uds::describe(&e))))?;
    let mut health = HealthClient::new(channel.clone());
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(PROBE_TIMEOUT);
    let health = health
        .check(req)
        .await
        .map_err(|e| Probe::Retry(format!("health: {}", e.message())))?;
    if health.into_inner().status
        != tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    {
        return Err(Probe::Retry("daemon not serving yet".into()));
    }
    let nonce: [u8; agent_runtime_proto::auth::KEY_LEN] = agent_runtime_proto::auth::random()
        .map_err(|e| Probe::Fatal(format!("no randomness: {e}")))?;
    let mut req = tonic::Request::new(HelloRequest {
        nonce: nonce.to_vec(),
    });
    req.set_timeout(PROBE_TIMEOUT);
    let hello = SandboxClient::new(channel.clone())
        .hello(req)
        .await
        .map_err(|e| Probe::Retry(format!("hello: {}", e.message())))?
        .into_inner();
    if hello.protocol != PROTOCOL {
        return Err(Probe::Fatal(format!(
            "its daemon speaks {:?}, this host speaks {PROTOCOL:?}: rebuild the image with `agent-runtime image build`",
            hello.protocol
        )));
    }
    if hello.sandbox_id != id.as_str() || !secret.verify_hello(&nonce, id.as_str(), &hello.proof) {
        return Err(Probe::Fatal(format!(
            "its daemon answered as {:?} without proof of {id}'s secret: refusing it",
            hello.sandbox_id
        )));
    }
    Ok(channel)
}
