//! The MCP handler: server info, the tool router (all tool families), and logging level.

// MCP logging is deprecated by SEP-2577 but is what today's clients display.
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use tracing::Instrument as _;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CustomRequest, CustomResult, Implementation,
    LoggingLevel, ProtocolVersion, ServerCapabilities, ServerConfig, SetLevelRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{tool_handler, ErrorData as McpError, RoleServer, ServerHandler};

use crate::error::ToolError;
use crate::session::Session;

const INSTRUCTIONS: &str =
    "Tools to use a disposable Linux sandbox (Docker): run Python/shell/node \
code (code_run), keep Python state across calls (create_context + run_code), read and write files \
under /workspace, and drive a headless Chromium (browser_goto, browser_snapshot gives refs for \
browser_click/browser_type). A sandbox is created on first use; sandbox_id can be omitted while \
the session has one. Everything the session created is destroyed when it ends.";

/// The MCP server of one session.
#[derive(Clone)]
pub struct Bridge {
    tool_router: ToolRouter<Bridge>,
    pub(crate) session: Arc<Session>,
    /// The lowest logging level the client wants (`logging/setLevel`), as [`level_rank`].
    log_level: Arc<AtomicU8>,
}

impl Bridge {
    /// A handler for a new session.
    pub fn new(session: Arc<Session>) -> Self {
        Self {
            tool_router: router(),
            session,
            log_level: Arc::new(AtomicU8::new(level_rank(LoggingLevel::Info))),
        }
    }

    /// The session this handler serves.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The names and descriptions of every tool (for `tools/list` and tests).
    pub fn tools(&self) -> Vec<rmcp::model::Tool> {
        self.tool_router.list_all()
    }

    /// Whether a message at `level` passes the client's `logging/setLevel`.
    pub(crate) fn wants_log(&self, level: LoggingLevel) -> bool {
        level_rank(level) >= self.log_level.load(Ordering::Relaxed)
    }
}

/// The tool router with compact schemas; built once (HTTP makes a handler per request).
fn router() -> ToolRouter<Bridge> {
    static ROUTER: OnceLock<ToolRouter<Bridge>> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            let all = Bridge::sandbox_tools()
                + Bridge::code_tools()
                + Bridge::process_tools()
                + Bridge::context_tools()
                + Bridge::file_tools()
                + Bridge::browser_tools();
            all.into_iter()
                .map(|mut route| {
                    route.attr.input_schema =
                        Arc::new(crate::schema::compact(&route.attr.input_schema));
                    route
                })
                .fold(ToolRouter::new(), ToolRouter::with_route)
        })
        .clone()
}

/// Orders logging levels from debug (0) to emergency (7).
fn level_rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        // Logging is deprecated in the newest protocol revision but still what most clients show.
        #[allow(deprecated)]
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_logging()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new(
                "agent-runtime",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    /// Handshake-era protocol versions only (up to 2025-11-25). The 2026-07-28 revision is
    /// stateless over HTTP: every request would get a fresh handler, so the sandbox a session
    /// relies on would be created and destroyed per call. With this, clients that probe with
    /// `server/discover` see no modern version and fall back to `initialize` and a session.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let tool = request.name.to_string();
        let cancelled = context.ct.clone();
        if let Some(id) = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
        {
            // So a DELETE of the HTTP session can close this one at once (see http.rs).
            self.session.bind_http_id(id);
        }
        // One trace per tool call: this span is the root, or continues the client's
        // `_meta.traceparent`; the host's span and sandboxd's are its children.
        let span = tool_span(&tool, &request, &context);
        let tcc = ToolCallContext::new(self, request, context);
        // A call ends when it is done, when the client cancels it, or when the session ends
        // (EOF, SIGTERM, DELETE, expiry) — whatever it waits for. Dropping it drops its gRPC
        // call, and the host and sandboxd stop the work.
        let response = async {
            Ok::<_, McpError>(tokio::select! {
                biased;
                r = self.tool_router.call(tcc) => r?,
                () = self.session.ended().cancelled() => {
                    tracing::info!(tool, "the session ended during the call: stopped");
                    CallToolResponse::Complete(crate::results::error_result(&ToolError::Unavailable(
                        format!("{tool} was stopped: this MCP session has ended"),
                    )))
                }
                () = cancelled.cancelled() => {
                    tracing::info!(tool, "cancelled: stopped");
                    CallToolResponse::Complete(crate::results::error_result(&ToolError::Internal(
                        format!("{tool} was cancelled by the client; it was stopped"),
                    )))
                }
            })
        }
        .instrument(span.clone())
        .await?;
        Ok(match response {
            CallToolResponse::Complete(r) => {
                if let Some(code) = crate::results::error_code(&r) {
                    span.record("error.code", code);
                    span.record("otel.status_code", "ERROR");
                }
                if crate::results::error_code(&r) == Some("UNAVAILABLE") {
                    // The host went away (e.g. it exited while idle): check again, and start
                    // one if need be, on the next call.
                    self.session.host().mark_gone().await;
                }
                CallToolResponse::Complete(crate::results::argument_error(&tool, r))
            }
            other => other,
        })
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.log_level
            .store(level_rank(request.level), Ordering::Relaxed);
        Ok(())
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        Err(McpError::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            format!("method not found: {}", request.method),
            None,
        ))
    }
}

/// The span of one tool call, a child of the client's `_meta.traceparent` when it sent one.
fn tool_span(
    tool: &str,
    request: &CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> tracing::Span {
    let span = tracing::info_span!(
        parent: None,
        "tool",
        otel.name = %format_args!("tools/call {tool}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        mcp.tool = %tool,
        error.code = tracing::field::Empty,
    );
    let traceparent = request
        .meta
        .as_ref()
        .and_then(|m| m.get("traceparent"))
        .or_else(|| context.meta.get("traceparent"))
        .and_then(|v| v.as_str());
    if let Some(tp) = traceparent {
        agent_runtime_telemetry::set_parent_from_traceparent(&span, tp);
    }
    span
}
