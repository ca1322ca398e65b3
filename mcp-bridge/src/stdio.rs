//! MCP over stdio (the default, for Claude Desktop and Claude Code): one session, which ends at
//! EOF on stdin or on SIGINT/SIGTERM; then everything it created is destroyed.
//!
//! The end does not wait for in-flight calls: closing the session stops them (a call stuck on a
//! sandbox that no longer answers must not keep the sandbox alive after its client is gone), the
//! cleanup has its own deadline, and then the process exits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rmcp::transport::stdio;
use rmcp::ServiceExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ServeError;
use crate::host_conn::HostConn;
use crate::server::Bridge;
use crate::session::{Session, SessionLimits, CLEANUP_DEADLINE};

/// How long the MCP transport may take to wind down after the session was closed.
const TRANSPORT_GRACE: Duration = Duration::from_secs(3);

/// Serves one stdio session.
pub async fn serve(host: Arc<HostConn>, limits: SessionLimits) -> Result<(), ServeError> {
    let tracker = TaskTracker::new();
    let session = Arc::new(Session::new(host, limits, tracker.clone()));
    let eof = CancellationToken::new();
    let (stdin, stdout) = stdio();
    let stdin = EofWatch {
        inner: stdin,
        eof: eof.clone(),
    };
    let running = Bridge::new(session.clone())
        .serve((stdin, stdout))
        .await
        .map_err(|e| ServeError::Mcp(format!("stdio handshake failed: {e}")))?;
    tracing::info!("serving MCP on stdio");
    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let finished = tokio::select! {
        r = &mut waiting => {
            match r {
                Ok(r) => tracing::info!(reason = ?r, "stdio session ended"),
                Err(e) => tracing::warn!(error = %e, "stdio session ended with an error"),
            }
            true
        }
        () = eof.cancelled() => {
            tracing::info!("stdin closed: ending the session");
            false
        }
        () = crate::http::shutdown_signal() => {
            tracing::info!("signal: ending the session");
            false
        }
    };
    // Closing stops the in-flight calls first, then destroys the sandboxes (each call bounded);
    // the outer bound is for anything else that might hang.
    if tokio::time::timeout(CLEANUP_DEADLINE + TRANSPORT_GRACE, session.close())
        .await
        .is_err()
    {
        tracing::warn!("cleanup did not finish in time: exiting anyway");
    }
    ct.cancel();
    if !finished
        && tokio::time::timeout(TRANSPORT_GRACE, &mut waiting)
            .await
            .is_err()
    {
        tracing::warn!("the MCP transport did not stop in time: exiting anyway");
    }
    drop(session);
    tracker.close();
    if tokio::time::timeout(CLEANUP_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background cleanup did not finish in time: exiting anyway");
    }
    Ok(())
}

/// Stdin that reports its end of file: rmcp sees EOF too, but waits for in-flight calls before
/// it ends the session, and a stuck call would keep it (and its sandbox) alive.
struct EofWatch<R> {
    inner: R,
    eof: CancellationToken,
}

impl<R: AsyncRead + Unpin> AsyncRead for EofWatch<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match &r {
            Poll::Ready(Ok(())) if wanted && buf.filled().len() == before => self.eof.cancel(),
            Poll::Ready(Err(_)) => self.eof.cancel(),
            _ => {}
        }
        r
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn end_of_stdin_is_reported() {
        let eof = CancellationToken::new();
        let mut r = EofWatch {
            inner: &b"{}\n"[..],
            eof: eof.clone(),
        };
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).await.expect("read"), 2);
        assert!(!eof.is_cancelled(), "data is not the end");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.expect("read");
        assert!(eof.is_cancelled());
    }
}
