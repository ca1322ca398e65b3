//! Collects an Exec/RunCode event stream while forwarding its output to the client as it comes:
//! progress notifications when the call carried a progressToken, logging notifications otherwise.
//! A `notifications/cancelled` for the call drops the stream, which makes the host and sandboxd
//! kill the run.

// MCP logging is deprecated by SEP-2577 but is what today's clients display.
#![allow(deprecated)]

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{ExecError, ExecEvent, ExecExit, RichResult};
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam};
use rmcp::service::RequestContext;
use rmcp::RoleServer;
use serde_json::json;
use tonic::Streaming;

use crate::error::ToolError;
use crate::server::Bridge;

/// Most output kept per stream for the result (the rest is counted, not returned).
const MAX_RESULT_BYTES: usize = 256 * 1024;
/// Most characters of one chunk put into a notification.
const MAX_NOTIFY_CHARS: usize = 4000;

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Collected {
    /// Standard output (capped).
    pub stdout: String,
    /// Standard error (capped).
    pub stderr: String,
    /// Output dropped by the cap here, in bytes.
    pub dropped_bytes: usize,
    /// Rich results of a context run.
    pub results: Vec<RichResult>,
    /// The exception a context run ended with.
    pub error: Option<ExecError>,
    /// How it ended (None when the stream ended without an exit event).
    pub exit: Option<ExecExit>,
}

impl Collected {
    fn push(&mut self, stdout: bool, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let buf = if stdout {
            &mut self.stdout
        } else {
            &mut self.stderr
        };
        let room = MAX_RESULT_BYTES.saturating_sub(buf.len());
        if text.len() <= room {
            buf.push_str(&text);
        } else {
            let mut cut = room;
            while cut > 0 && !text.is_char_boundary(cut) {
                cut -= 1;
            }
            buf.push_str(&text[..cut]);
            self.dropped_bytes += text.len() - cut;
        }
    }
}

/// Reads the stream to its end, forwarding output; `Err` when cancelled, past `until` (the
/// call's deadline: the run's timeout plus a margin), or the stream failed.
pub async fn collect(
    bridge: &Bridge,
    ctx: &RequestContext<RoleServer>,
    rpc: &str,
    mut stream: Streaming<ExecEvent>,
    until: tokio::time::Instant,
) -> Result<Collected, ToolError> {
    let token = ctx.meta.get_progress_token();
    let mut out = Collected::default();
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
        let (is_stdout, bytes) = match ev.event {
            Some(Event::Stdout(b)) => (true, b),
            Some(Event::Stderr(b)) => (false, b),
            Some(Event::Result(r)) => {
                out.results.push(r);
                continue;
            }
            Some(Event::Error(e)) => {
                out.error = Some(e);
                continue;
            }
            Some(Event::Exit(x)) => {
                out.exit = Some(x);
                continue;
            }
            None => continue,
        };
        out.push(is_stdout, &bytes);
        chunks += 1;
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .take(MAX_NOTIFY_CHARS)
            .collect();
        let stream_name = if is_stdout { "stdout" } else { "stderr" };
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
            let level = if is_stdout {
                LoggingLevel::Info
            } else {
                LoggingLevel::Warning
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
