//! Folds an Exec/RunCode event stream into a [`RunOutcome`] (capped at [`MODEL_OUTPUT_CAP`] per
//! stream) while forwarding its output to the client as it comes:
//! progress notifications when the call carried a progressToken, logging notifications otherwise.
//! A `notifications/cancelled` for the call drops the stream, which makes the host and sandboxd
//! kill the run.

// MCP logging is deprecated by SEP-2577 but is what today's clients display.
#![allow(deprecated)]

use agent_runtime_client::{OutputStream, RunOutcome, MODEL_OUTPUT_CAP};
use agent_runtime_proto::v1::ExecEvent;
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde_json::json;
use tonic::Streaming;

use crate::error::ToolError;
use crate::server::Bridge;

/// Most characters of one chunk put into a notification.
const MAX_NOTIFY_CHARS: usize = 4000;

/// Reads the stream to its end, forwarding output; `Err` when cancelled, past `until` (the
/// call's deadline: the run's timeout plus a margin), or the stream failed.
pub async fn collect(
    bridge: &Bridge,
    ctx: &RequestContext<RoleServer>,
    rpc: &str,
    mut stream: Streaming<ExecEvent>,
    until: tokio::time::Instant,
) -> Result<RunOutcome, ToolError> {
    let token = ctx.meta.get_progress_token();
    let mut out = RunOutcome::with_cap(MODEL_OUTPUT_CAP);
    let mut chunks = 0u64;
    loop {
        let next = tokio::select! {
            () = ctx.ct.cancelled() => {
                // Dropping the stream cancels the call; the host and sandboxd kill the run.
                drop(stream);
                tracing::info!(rpc, "cancelled by the client: run stopped");
                return Err(ToolError::Internal(format!("{rpc} was cancelled by the client; the run was stopped")));
            }
            () = tokio::time::sleep_until(until) => {
                drop(stream);
                tracing::warn!(rpc, "no end of the run by its deadline: stopped");
                return Err(ToolError::Timeout(format!(
                    "{rpc} did not finish by its deadline (the sandbox stopped answering); the \
                     run was stopped: check the sandbox with a short code_run, or destroy it"
                )));
            }
            m = stream.message() => m,
        };
        let ev = match next {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(s) => return Err(ToolError::from_status(rpc, &s)),
        };
        let Some((stream_kind, bytes)) = out.add(&ev) else {
            continue;
        };
        chunks += 1;
        let text: String = String::from_utf8_lossy(bytes)
            .chars()
            .take(MAX_NOTIFY_CHARS)
            .collect();
        let stream_name = stream_kind.as_str();
        // Notifications go out from this task, so rmcp routes them to the call's HTTP stream.
        if let Some(token) = token.clone() {
            let _ = ctx
                .peer
                .notify_progress(
                    ProgressNotificationParam::new(token, chunks as f64)
                        .with_message(format!("{stream_name}: {text}")),
                )
                .await;
        } else {
            let level = match stream_kind {
                OutputStream::Stdout => LoggingLevel::Info,
                OutputStream::Stderr => LoggingLevel::Warning,
            };
            if bridge.wants_log(level) {
                #[allow(deprecated)]
                let _ = ctx
                    .peer
                    .notify_logging_message(
                        LoggingMessageNotificationParam::new(
                            level,
                            json!({ "stream": stream_name, "text": text }),
                        )
                        .with_logger(rpc),
                    )
                    .await;
            }
        }
    }
    Ok(out)
}
