//! code_run: a one-shot python, shell or node run, output streamed as it is produced.

use std::time::Duration;

use agent_runtime_client::{run_timeout, Language};
use agent_runtime_proto::v1::ExecRequest;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::call::{Call, SandboxRef};
use crate::error::ToolError;
use crate::host_conn::run_deadline;
use crate::results::{insert_if, json_ok, respond, Outcome, ToolResult};
use crate::server::Bridge;
use crate::tools::stream::collect;

/// Arguments of code_run.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CodeRunArgs {
    pub language: Language,
    pub code: String,
    /// Seconds (default 30; background 3600).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Return {run_id} at once (see process_*).
    #[serde(default)]
    pub background: Option<bool>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

#[tool_router(router = code_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(
        description = "Run python, shell (bash) or node in /workspace; no state kept (see run_code). Jobs left running (&) die at the timeout: use background."
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
        if args.background.unwrap_or(false) {
            return self.code_run_background(args).await;
        }
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
        let Some(exit) = &out.exit else {
            return Err(ToolError::Internal(
                "the run ended without an exit status; run it again".into(),
            ));
        };
        let (success, reason, truncated) = (out.success(), out.reason(), out.truncated());
        let mut value = json!({
            "success": success,
            "exitCode": exit.code,
            "stdout": out.stdout,
            "stderr": out.stderr,
            "duration": exit.duration_ms,
            "killed": exit.killed,
        });
        if let Some(reason) = reason {
            insert_if(&mut value, true, "reason", json!(reason.as_str()));
        }
        insert_if(&mut value, truncated, "truncated", json!(true));
        json_ok(value)
    }
}

impl Bridge {
    /// code_run with background: a detached run with open stdin; its id.
    async fn code_run_background(&self, args: CodeRunArgs) -> Outcome {
        let timeout = match args.timeout {
            None | Some(0.0) => 0.0,
            t => valid_timeout(t)?,
        };
        let req = ExecRequest {
            language: args.language.as_str().to_owned(),
            code: args.code,
            timeout_seconds: timeout,
            detach: true,
            open_stdin: true,
            ..Default::default()
        };
        let sandbox = self.session.resolve(args.sandbox.id()).await?;
        let mut stream = self.call_in(&sandbox, req).await?;
        let first = stream
            .message()
            .await
            .map_err(|s| ToolError::from_status("code_run", &s))?;
        match first {
            Some(ev) if ev.started.is_some() => json_ok(json!({ "run_id": ev.run_id })),
            _ => Err(ToolError::Internal(
                "the sandbox did not report the run's start; check process_list".into(),
            )),
        }
    }
}

crate::call::calls! {
    ExecRequest { name: "code_run", deadline: exec_deadline, }
}

fn exec_deadline(r: &ExecRequest) -> Duration {
    run_deadline(r.timeout_seconds)
}

/// Checks a timeout argument (seconds; none or 0: the default) with the one run-timeout check.
pub fn valid_timeout(t: Option<f64>) -> Result<f64, ToolError> {
    run_timeout(t.unwrap_or(0.0))
        .map(|d| d.as_secs_f64())
        .map_err(|e| ToolError::BadRequest(e.to_string()))
}
