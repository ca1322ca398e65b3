//! Who this daemon is, and the proof of it the host asks for on every connection.
//!
//! The host writes the sandbox's secret into a file only the daemon's uid can read and names it
//! in `SANDBOXD_SECRET_FILE`; `SANDBOX_ID` names the sandbox. With both set, every accepted
//! connection must first pass the handshake of `agent_runtime_proto::auth` (so nobody without
//! the host's nonce-and-answer exchange reaches the gRPC service, on the socket or on TCP), and
//! `Hello` returns a proof over the caller's nonce. Without them (development, daemon tests) the
//! daemon serves plain gRPC.

use std::time::Duration;

use agent_runtime_proto::auth::{server_handshake, Secret, SANDBOX_ID_ENV, SECRET_FILE_ENV};
use anyhow::Context as _;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::wrappers::ReceiverStream;

/// How long a peer has to complete the handshake after connecting.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections waiting to be served once authenticated.
const BACKLOG: usize = 64;

/// The sandbox this daemon serves and its secret.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The sandbox id.
    pub sandbox_id: String,
    secret: Secret,
}

impl Identity {
    /// Reads the identity from the environment; `None` when no secret file is named.
    pub fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(path) = std::env::var_os(SECRET_FILE_ENV).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let sandbox_id = std::env::var(SANDBOX_ID_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .with_context(|| format!("{SECRET_FILE_ENV} is set but {SANDBOX_ID_ENV} is not"))?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the secret file {}", path.to_string_lossy()))?;
        let secret = Secret::from_hex(&text).with_context(|| {
            format!(
                "the secret file {} does not hold a secret",
                path.to_string_lossy()
            )
        })?;
        Ok(Some(Self { sandbox_id, secret }))
    }

    /// The `Hello` proof for `nonce` (empty when no nonce was sent).
    pub fn hello_proof(&self, nonce: &[u8]) -> Vec<u8> {
        if nonce.is_empty() {
            return Vec::new();
        }
        self.secret.hello_proof(nonce, &self.sandbox_id)
    }

    /// Whether `proof` (hex) is the host's `Egress` proof for this sandbox.
    pub fn verify_egress(&self, proof: &str) -> bool {
        self.secret.verify_egress(&self.sandbox_id, proof)
    }

    /// Whether `proof` (hex) is the host's `Telemetry` proof for this sandbox.
    pub fn verify_telemetry(&self, proof: &str) -> bool {
        self.secret.verify_telemetry(&self.sandbox_id, proof)
    }
}

/// Turns a stream of accepted connections into one of authenticated connections: each runs the
/// handshake in its own task (a slow or silent peer holds up nobody) and is dropped if it fails.
/// Without an identity (development) connections pass as they are.
pub fn authenticated<S, IO, E>(
    incoming: S,
    identity: Option<Identity>,
) -> impl Stream<Item = Result<IO, std::io::Error>>
where
    S: Stream<Item = Result<IO, E>> + Send + Unpin + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(BACKLOG);
    tokio::spawn(async move {
        let mut incoming = incoming;
        while let Some(conn) = incoming.next().await {
            let mut io = match conn {
                Ok(io) => io,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let tx = tx.clone();
            let identity = identity.clone();
            tokio::spawn(async move {
                if let Some(identity) = &identity {
                    let proved = server_handshake(
                        &mut io,
                        &identity.secret,
                        &identity.sandbox_id,
                        HANDSHAKE_TIMEOUT,
                    )
                    .await;
                    if let Err(e) = proved {
                        tracing::warn!(error = %e, "dropping a connection that failed the handshake");
                        return;
                    }
                }
                let _ = tx.send(Ok(io)).await;
            });
        }
    });
    ReceiverStream::new(rx)
}
