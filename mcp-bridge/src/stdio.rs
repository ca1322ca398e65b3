//! MCP over stdio (the default, for Claude Desktop and Claude Code): one session, which ends at
//! EOF on stdin or on SIGINT/SIGTERM; then everything it created is destroyed.

use std::sync::Arc;

use rmcp::transport::stdio;
use rmcp::ServiceExt;
use tokio_util::task::TaskTracker;

use crate::error::ServeError;
use crate::host_conn::HostConn;
use crate::server::Bridge;
use crate::session::{Session, SessionLimits};

/// Serves one stdio session.
pub async fn serve(host: Arc<HostConn>, limits: SessionLimits) -> Result<(), ServeError> {
    let tracker = TaskTracker::new();
    let session = Arc::new(Session::new(host, limits, tracker.clone()));
    let running = Bridge::new(session.clone())
        .serve(stdio())
        .await
        .map_err(|e| ServeError::Mcp(format!("stdio handshake failed: {e}")))?;
    tracing::info!("serving MCP on stdio");
    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let reason = tokio::select! {
        r = &mut waiting => r,
        () = crate::http::shutdown_signal() => {
            ct.cancel();
            waiting.await
        }
    };
    match reason {
        Ok(r) => tracing::info!(reason = ?r, "stdio session ended"),
        Err(e) => tracing::warn!(error = %e, "stdio session ended with an error"),
    }
    session.close().await;
    drop(session);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Prints what `tools/list` returns, and its size in characters on stderr.
pub fn print_tools(host: Arc<HostConn>, limits: SessionLimits) -> Result<(), ServeError> {
    let session = Arc::new(Session::new(host, limits, TaskTracker::new()));
    let tools = Bridge::new(session).tools();
    let json = serde_json::json!({ "tools": tools }).to_string();
    eprintln!(
        "tools/list: {} tools, {} characters",
        tools.len(),
        json.chars().count()
    );
    println!("{json}");
    Ok(())
}
