//! Runs as processes an agent can come back to: process_list, process_output, process_kill,
//! process_input (DESIGN.md §3.1), over the sandbox's run RPCs. `code_run` with
//! `background: true` starts them.

use agent_runtime_client::{read_page, DEFAULT_PAGE_BYTES};
use agent_runtime_proto::v1::{
    AttachRequest, CloseInputRequest, KillAllRequest, KillRequest, ListRunsRequest, RunInfo,
    SendInputRequest,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::SandboxRef;
use crate::error::ToolError;
use crate::results::{insert_if, json_ok, respond, Outcome, ToolResult};
use crate::server::Bridge;

/// Most bytes process_output returns at once.
const MAX_PAGE_BYTES: usize = 256 * 1024;

/// Arguments of process_list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ProcessListArgs {
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of process_output.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProcessOutputArgs {
    pub run_id: String,
    #[serde(default)]
    pub from_seq: Option<u64>,
    #[serde(default)]
    pub max_bytes: Option<usize>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of process_kill.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ProcessKillArgs {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub all: Option<bool>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of process_input.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ProcessInputArgs {
    pub run_id: String,
    pub text: String,
    #[serde(default)]
    pub eof: Option<bool>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

#[tool_router(router = process_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(description = "List runs with their state and exit code.")]
    async fn process_list(&self, Parameters(args): Parameters<ProcessListArgs>) -> ToolResult {
        respond(self.do_process_list(args).await)
    }

    #[tool(
        description = "A run's output since from_seq, state, exitCode, and next_seq for the next call."
    )]
    async fn process_output(&self, Parameters(args): Parameters<ProcessOutputArgs>) -> ToolResult {
        respond(self.do_process_output(args).await)
    }

    #[tool(description = "Kill a run and its processes, or all: true every process.")]
    async fn process_kill(&self, Parameters(args): Parameters<ProcessKillArgs>) -> ToolResult {
        respond(self.do_process_kill(args).await)
    }

    #[tool(description = "Write text to a run's stdin (\"\\n\" ends a line); eof: true closes it.")]
    async fn process_input(&self, Parameters(args): Parameters<ProcessInputArgs>) -> ToolResult {
        respond(self.do_process_input(args).await)
    }
}

/// One run as process_list shows it.
fn run_json(r: &RunInfo) -> Value {
    let mut v = json!({
        "run_id": r.run_id,
        "command": r.command,
        "language": r.language,
        "state": r.state,
        "background": r.detached,
        "pids": r.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        "processes": r.processes.iter().map(|p| json!({
            "pid": p.pid,
            "ppid": p.ppid,
            "command": p.command,
            "cpu_ms": p.cpu_ms,
        })).collect::<Vec<_>>(),
        "cpu_ms": r.cpu_ms,
        "started_at": r.started_at,
        "duration_ms": r.duration_ms,
        "stdout_bytes": r.stdout_bytes,
        "stderr_bytes": r.stderr_bytes,
        "next_seq": r.next_seq,
        "stdin_open": r.stdin_open,
    });
    insert_if(&mut v, r.state != "running", "exitCode", json!(r.exit_code));
    insert_if(&mut v, !r.reason.is_empty(), "reason", json!(r.reason));
    insert_if(
        &mut v,
        r.dropped_bytes > 0,
        "dropped_bytes",
        json!(r.dropped_bytes),
    );
    v
}

fn run_id(raw: &str) -> Result<String, ToolError> {
    raw.parse::<agent_runtime_client::RunId>()
        .map(String::from)
        .map_err(|e| ToolError::BadRequest(e.to_string()))
}

impl Bridge {
    async fn runs(&self, at: &SandboxRef) -> Result<Vec<RunInfo>, ToolError> {
        Ok(self.call(at, ListRunsRequest {}).await?.runs)
    }

    async fn do_process_list(&self, args: ProcessListArgs) -> Outcome {
        let runs = self.runs(&args.sandbox).await?;
        json_ok(json!({ "runs": runs.iter().map(run_json).collect::<Vec<_>>() }))
    }

    async fn do_process_output(&self, args: ProcessOutputArgs) -> Outcome {
        let id = run_id(&args.run_id)?;
        let max_bytes = args
            .max_bytes
            .unwrap_or(DEFAULT_PAGE_BYTES)
            .clamp(1, MAX_PAGE_BYTES);
        let from_seq = args.from_seq.unwrap_or(0);
        let stream = self
            .call(
                &args.sandbox,
                AttachRequest {
                    run_id: id.clone(),
                    from_seq,
                    no_wait: true,
                },
            )
            .await?;
        let page = read_page(stream, from_seq, max_bytes)
            .await
            .map_err(|s| ToolError::from_status("process_output", &s))?;
        let info = self
            .runs(&args.sandbox)
            .await?
            .into_iter()
            .find(|r| r.run_id == id);
        let mut v = json!({
            "run_id": id,
            "stdout": page.stdout,
            "stderr": page.stderr,
            "next_seq": page.next_seq,
            "more": page.more,
            "state": info.as_ref().map_or("unknown", |r| r.state.as_str()),
        });
        if let Some(r) = info.as_ref().filter(|r| r.state != "running") {
            insert_if(&mut v, true, "exitCode", json!(r.exit_code));
            insert_if(&mut v, !r.reason.is_empty(), "reason", json!(r.reason));
        }
        insert_if(
            &mut v,
            page.dropped_bytes > 0,
            "dropped_bytes",
            json!(page.dropped_bytes),
        );
        json_ok(v)
    }

    async fn do_process_kill(&self, args: ProcessKillArgs) -> Outcome {
        match (args.run_id.as_deref(), args.all.unwrap_or(false)) {
            (Some(_), true) => Err(ToolError::BadRequest(
                "give run_id or all: true, not both".into(),
            )),
            (None, false) => Err(ToolError::BadRequest(
                "say what to kill: run_id (from process_list) or all: true".into(),
            )),
            (None, true) => {
                let r = self.call(&args.sandbox, KillAllRequest {}).await?;
                json_ok(json!({
                    "success": true,
                    "killed": r.processes,
                    "run_ids": r.run_ids,
                }))
            }
            (Some(raw), false) => {
                let r = self
                    .call(
                        &args.sandbox,
                        KillRequest {
                            run_id: run_id(raw)?,
                        },
                    )
                    .await?;
                json_ok(json!({ "success": true, "killed": r.processes }))
            }
        }
    }

    async fn do_process_input(&self, args: ProcessInputArgs) -> Outcome {
        let id = run_id(&args.run_id)?;
        if !args.text.is_empty() {
            self.call(
                &args.sandbox,
                SendInputRequest {
                    run_id: id.clone(),
                    data: args.text.into_bytes(),
                },
            )
            .await?;
        }
        if args.eof.unwrap_or(false) {
            self.call(&args.sandbox, CloseInputRequest { run_id: id })
                .await?;
        }
        json_ok(json!({ "success": true }))
    }
}

crate::call::calls! {
    ListRunsRequest { name: "process_list", }
    AttachRequest { name: "process_output", }
    KillRequest { name: "process_kill", }
    KillAllRequest { name: "process_kill", }
    SendInputRequest { name: "process_input", }
    CloseInputRequest { name: "process_input", }
}
