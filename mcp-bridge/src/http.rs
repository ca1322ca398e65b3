//! MCP over Streamable HTTP at `/mcp`: one session per MCP session id. rmcp checks Host and
//! Origin (DNS-rebinding protection); a bearer token is checked in front when configured, and
//! required when the address is beyond loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServeError;
use crate::host_conn::HostConn;
use crate::server::Bridge;
use crate::session::{Session, SessionLimits, SessionRegistry};

/// How long session cleanup may take after a shutdown signal.
const CLEANUP_GRACE: Duration = Duration::from_secs(60);
/// How long open connections may linger once the sessions are closed.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Bearer token clients must send.
    pub token: Option<String>,
    /// Browser origins allowed besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// Idle time after which a session expires.
    pub session_idle: Duration,
}

/// Serves until SIGINT/SIGTERM, then destroys what the live sessions created.
pub async fn serve(
    host: Arc<HostConn>,
    limits: SessionLimits,
    opts: HttpOptions,
) -> Result<(), ServeError> {
    let loopback = opts.listen.ip().is_loopback();
    if !loopback && opts.token.is_none() {
        return Err(ServeError::Config(format!(
            "--http {} is reachable beyond this machine: set a bearer token with --token or \
             MCP_BRIDGE_TOKEN (or bind 127.0.0.1)",
            opts.listen
        )));
    }
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    // `:*` also matches an origin without a port (the scheme's default).
    let mut origins: Vec<String> = ["http", "https"]
        .iter()
        .flat_map(|scheme| {
            ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .map(move |host| format!("{scheme}://{host}:*"))
        })
        .collect();
    origins.extend(opts.allowed_origins.iter().cloned());
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(origins)
        .with_cancellation_token(stop.child_token());
    if !loopback {
        // Clients reach a public bind by names we cannot know; the bearer token guards it.
        config = config.disable_allowed_hosts();
    }
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(opts.session_idle);
    let factory_tracker = tracker.clone();
    let registry = SessionRegistry::default();
    let factory_registry = registry.clone();
    let service = StreamableHttpService::new(
        move || {
            let session = Arc::new(Session::new(
                host.clone(),
                limits.clone(),
                factory_tracker.clone(),
            ));
            factory_registry.register(&session);
            Ok(Bridge::new(session))
        },
        Arc::new(sessions),
        config,
    );
    let mut app = axum::Router::new().nest_service("/mcp", service).layer(
        axum::middleware::from_fn_with_state((registry.clone(), tracker.clone()), delete_session),
    );
    if let Some(token) = opts.token.clone() {
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            bearer_auth,
        ));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServeError::Io {
            what: format!("cannot listen on {}", opts.listen),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ServeError::Io {
        what: "reading the bound address".into(),
        source,
    })?;
    // Tests and scripts read this line to learn the port when asked for port 0.
    eprintln!("mcp-bridge: Streamable HTTP listening on http://{bound}/mcp");
    let shutdown = stop.clone();
    let closing = registry.clone();
    // Nagle off: SSE events and small JSON replies must not wait for a delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        shutdown.cancel();
        // Close the live sessions first: their calls stop and their sandboxes go, whatever the
        // clients do with their connections (a client keeping an SSE stream open would
        // otherwise hold the graceful shutdown, and the sessions, forever).
        closing.close_all().await;
    });
    let drained = stop.clone();
    tokio::select! {
        served = server => served.map_err(|source| ServeError::Io {
            what: "serving HTTP".into(),
            source,
        })?,
        () = async move {
            drained.cancelled().await;
            tokio::time::sleep(CLEANUP_GRACE + DRAIN_GRACE).await;
        } => tracing::warn!("connections still open after shutdown: exiting"),
    }
    stop.cancel();
    // Sessions that appeared while shutting down.
    registry.close_all().await;
    tracker.close();
    if tokio::time::timeout(CLEANUP_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "session cleanup still running after {}s: exiting",
            CLEANUP_GRACE.as_secs()
        );
    }
    Ok(())
}

/// Rejects requests without the right `Authorization: Bearer` token.
async fn bearer_auth(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token (Authorization: Bearer <MCP_BRIDGE_TOKEN>)",
        )
            .into_response();
    }
    next.run(req).await
}

/// A session DELETE that rmcp accepted closes our session at once: rmcp itself lets in-flight
/// calls run up to 5 s before it drops the handler (and a stuck call would keep its sandbox that
/// long). The close runs on the tracker, so the DELETE returns without waiting for it.
///
/// rmcp answers a DELETE with 202; clients (the Python SDK) expect 200 or 204 and warn otherwise.
/// The session is gone at that point, so 204 is the truthful answer.
async fn delete_session(
    State((registry, tracker)): State<(SessionRegistry, TaskTracker)>,
    req: Request,
    next: Next,
) -> Response {
    let deleting = (req.method() == axum::http::Method::DELETE)
        .then(|| req.headers().get("mcp-session-id").cloned())
        .flatten();
    let mut resp = next.run(req).await;
    let Some(id) = deleting else {
        return resp;
    };
    if resp.status().is_success() {
        if let Some(session) = id.to_str().ok().and_then(|id| registry.find_http(id)) {
            tracker.spawn(async move { session.close().await });
        }
    }
    if resp.status() == axum::http::StatusCode::ACCEPTED {
        *resp.status_mut() = axum::http::StatusCode::NO_CONTENT;
        *resp.body_mut() = axum::body::Body::empty();
    }
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    agent_runtime_telemetry::shutdown_signal().await;
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
