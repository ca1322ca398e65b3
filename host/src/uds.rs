//! gRPC channels to a sandbox's daemon, over a unix socket or TCP. Every connection — the first
//! and each one tonic makes again after a drop — dials without following symlinks and runs the
//! daemon handshake (`agent_runtime_proto::auth`) before any gRPC byte, so a channel only ever
//! talks to the daemon of the sandbox it was made for.

use std::path::Path;
use std::time::Duration;

use agent_runtime_proto::auth::{client_handshake, Secret};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};

use crate::backend::Endpoint;
use crate::ids::SandboxId;

/// How long a daemon may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a channel to the daemon of sandbox `id` at `endpoint`, connecting eagerly so that a
/// failure shows now.
pub async fn connect(
    endpoint: &Endpoint,
    secret: &Secret,
    id: &SandboxId,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let secret = secret.clone();
    let id = id.to_string();
    match endpoint {
        Endpoint::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but unused: the connector below dials the socket.
            TonicEndpoint::from_static("http://sandbox.local")
                .connect_timeout(connect_timeout)
                .connect_with_connector(tower::service_fn(move |_| {
                    let (path, secret, id) = (path.clone(), secret.clone(), id.clone());
                    async move {
                        let mut stream = dial_unix(&path).await?;
                        client_handshake(&mut stream, &secret, &id, HANDSHAKE_TIMEOUT)
                            .await
                            .map_err(|e| refused(&id, e))?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        }
        Endpoint::Tcp(addr) => {
            let addr = addr.clone();
            TonicEndpoint::from_static("http://sandbox.local")
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .connect_with_connector(tower::service_fn(move |_| {
                    let (addr, secret, id) = (addr.clone(), secret.clone(), id.clone());
                    async move {
                        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
                        stream.set_nodelay(true)?;
                        client_handshake(&mut stream, &secret, &id, HANDSHAKE_TIMEOUT)
                            .await
                            .map_err(|e| refused(&id, e))?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
        }
    }
}

fn refused(id: &str, e: agent_runtime_proto::auth::HandshakeError) -> std::io::Error {
    tracing::warn!(sandbox_id = %id, error = %e, "refusing a daemon connection");
    // The handshake error stays the source, so callers can tell a silent daemon (a timeout)
    // from an impostor.
    let kind = match e {
        agent_runtime_proto::auth::HandshakeError::Timeout(_) => std::io::ErrorKind::TimedOut,
        _ => std::io::ErrorKind::PermissionDenied,
    };
    std::io::Error::new(kind, e)
}

/// Connects to the socket at `path` only if it is a socket itself, not a symlink to one
/// elsewhere (a sandbox could plant one to send us to another sandbox's daemon).
async fn dial_unix(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a socket (a symlink or planted file): refusing to dial it",
                path.display()
            ),
        ));
    }
    tokio::net::UnixStream::connect(path).await
}

/// Whether `e` (a channel error) means the daemon did not answer in time: a silent handshake or
/// the request's deadline expiring.
pub fn is_silent_daemon(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        // The client's grpc-timeout travels on to the daemon's channel, which may give up a
        // moment before the proxy's own timer does.
        if err.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return true;
        }
        if matches!(
            err.downcast_ref::<agent_runtime_proto::auth::HandshakeError>(),
            Some(agent_runtime_proto::auth::HandshakeError::Timeout(_))
        ) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An error with its sources: tonic's transport errors say only "transport error" at the top.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
