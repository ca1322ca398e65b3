//! code_run: a one-shot python, shell or node run, output streamed as it is produced.

use std::time::Duration;

use agent_runtime_proto::v1::{ExecEvent, ExecRequest};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tonic::Streaming;

use crate::call::{Rpc, SandboxRef};
use crate::error::ToolError;
use crate::host_conn::run_deadline;
use crate::results::{insert_if, json_ok, respond, Outcome, ToolResult};
use crate::server::Bridge;
use crate::tools::stream::collect;

/// A language code_run runs.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// python3
    Python,
    /// bash
    Shell,
    /// Node.js
    Node,
}

impl Language {
    fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Shell => "shell",
            Self::Node => "node",
        }
    }
}

/// Arguments of code_run.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CodeRunArgs {
    /// "python", "shell" (bash) or "node".
    pub language: Language,
    /// The program text.
    pub code: String,
    /// Seconds before the run is killed (default 30, max 3600).
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

#[tool_router(router = code_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(
        description = "Run a python, shell or node program in the sandbox (cwd /workspace; no state kept between calls: use run_code for that). Returns stdout, stderr, exitCode."
    )]
    async fn code_run(
        &self,
        Parameters(args): Parameters<CodeRunArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult {
        respond(self.do_code_run(args, ctx).await)
    }
}

impl Bridge {
    async fn do_code_run(&self, args: CodeRunArgs, ctx: RequestContext<RoleServer>) -> Outcome {
        let req = ExecRequest {
            language: args.language.as_str().to_owned(),
            code: args.code,
            timeout_seconds: valid_timeout(args.timeout)?,
            ..Default::default()
        };
        // Creating the sandbox on first use does not count against the run's deadline.
        let sandbox = self.session.resolve(args.sandbox.id()).await?;
        let until = tokio::time::Instant::now() + req.deadline();
        let stream = self.call_in(&sandbox, req).await?;
        let out = collect(self, &ctx, "code_run", stream, until).await?;
        let exit = out.exit.clone().ok_or_else(|| {
            ToolError::Internal("the run ended without an exit status; run it again".into())
        })?;
        let mut value = json!({
            "success": exit.code == 0 && !exit.killed,
            "exitCode": exit.code,
            "stdout": out.stdout,
            "stderr": out.stderr,
            "duration": exit.duration_ms,
            "killed": exit.killed,
        });
        insert_if(
            &mut value,
            exit.killed && !exit.reason.is_empty(),
            "reason",
            json!(exit.reason),
        );
        insert_if(
            &mut value,
            exit.stdout_truncated || exit.stderr_truncated || out.dropped_bytes > 0,
            "truncated",
            json!(true),
        );
        json_ok(value)
    }
}

crate::call::rpc! {
    ExecRequest => Streaming<ExecEvent> { exec, "code_run", deadline: exec_deadline }
}

fn exec_deadline(r: &ExecRequest) -> Duration {
    run_deadline(r.timeout_seconds)
}

/// Checks a timeout argument (seconds); 0 means the default.
pub fn valid_timeout(t: Option<f64>) -> Result<f64, ToolError> {
    match t {
        None => Ok(0.0),
        Some(t) if t.is_finite() && (0.0..=3600.0).contains(&t) => Ok(t),
        Some(t) => Err(ToolError::BadRequest(format!(
            "timeout {t} is out of range: give seconds between 1 and 3600"
        ))),
    }
}
