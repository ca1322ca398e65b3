//! Stateful Python contexts (Jupyter kernels): create_context, run_code, list_contexts,
//! stop_context, restart_context.

use std::time::Duration;

use agent_runtime_client::{traceback_text, ContextId, Language, SandboxId};
use agent_runtime_proto::v1::{
    Context, CreateContextRequest, DeleteContextRequest, ListContextsRequest,
    RestartContextRequest, RunCodeRequest,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::{Call, Reply, SandboxRef};
use crate::error::ToolError;
use crate::host_conn::run_deadline;
use crate::results::{
    insert_if, json_array_ok, json_ok, json_with_images, respond, Outcome, ToolResult,
};
use crate::server::Bridge;
use crate::tools::code::valid_timeout;
use crate::tools::sandbox::SandboxArgs;
use crate::tools::stream::collect;

/// Arguments of create_context.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct CreateContextArgs {
    #[serde(default)]
    pub name: Option<String>,
    /// "python".
    #[serde(default)]
    pub language: Option<String>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of run_code.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunCodeArgs {
    pub code: String,
    pub context_id: String,
    /// Seconds (default 30).
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// Arguments naming a context.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ContextArgs {
    pub context_id: String,
}

#[tool_router(router = context_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(description = "Start a Jupyter kernel for run_code; variables persist.")]
    async fn create_context(&self, Parameters(args): Parameters<CreateContextArgs>) -> ToolResult {
        respond(self.do_create_context(args).await)
    }

    #[tool(
        description = "Run a Python cell in a context; the last expression's value is in results."
    )]
    async fn run_code(
        &self,
        Parameters(args): Parameters<RunCodeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult {
        respond(self.do_run_code(args, ctx).await)
    }

    #[tool(description = "List contexts.", annotations(read_only_hint = true))]
    async fn list_contexts(&self, Parameters(args): Parameters<SandboxArgs>) -> ToolResult {
        respond(self.do_list_contexts(args).await)
    }

    #[tool(
        description = "Stop a context's kernel.",
        annotations(destructive_hint = true)
    )]
    async fn stop_context(&self, Parameters(args): Parameters<ContextArgs>) -> ToolResult {
        respond(self.do_stop_context(args).await)
    }

    #[tool(description = "Restart a context's kernel, losing its variables.")]
    async fn restart_context(&self, Parameters(args): Parameters<ContextArgs>) -> ToolResult {
        respond(self.do_restart_context(args).await)
    }
}

crate::call::calls! {
    CreateContextRequest { name: "create_context", }
    RunCodeRequest {
        name: "run_code", deadline: run_code_deadline, error: ToolError::from_context_status,
    }
    ListContextsRequest { name: "list_contexts", }
    DeleteContextRequest { name: "stop_context", error: ToolError::from_context_status, }
    RestartContextRequest { name: "restart_context", error: ToolError::from_context_status, }
}

fn run_code_deadline(r: &RunCodeRequest) -> Duration {
    run_deadline(r.timeout_seconds)
}

/// `{context_id, name, language, status, created_at}`.
impl Reply for Context {
    fn reply(self) -> Outcome {
        json_ok(context_json(&self))
    }
}

fn context_json(c: &Context) -> Value {
    json!({
        "context_id": c.context_id,
        "name": c.name,
        "language": c.language,
        "status": c.status,
        "created_at": c.created_at,
    })
}

/// A context id as given; one not of the form `ctx-<hex>` names no context.
fn context_id(id: &str) -> Result<ContextId, ToolError> {
    ContextId::parse(id).ok_or(ToolError::ContextNotFound)
}

impl Bridge {
    async fn do_create_context(&self, args: CreateContextArgs) -> Outcome {
        let language = args
            .language
            .unwrap_or_else(|| Language::Python.as_str().into());
        if !matches!(language.parse(), Ok(Language::Python)) {
            return Err(ToolError::BadRequest(format!(
                "language {language:?} is not supported: contexts run \"python\""
            )));
        }
        let req = CreateContextRequest {
            language,
            name: args.name.unwrap_or_default(),
            cwd: String::new(),
        };
        let sandbox = self.session.resolve(args.sandbox.id()).await?;
        let ctx = self.call_in(&sandbox, req).await?;
        let id = ContextId::parse(&ctx.context_id).ok_or_else(|| {
            ToolError::Internal(format!(
                "the sandbox answered with an invalid context id {:?}",
                ctx.context_id
            ))
        })?;
        self.session.add_context(id, sandbox.clone());
        let mut value = context_json(&ctx);
        insert_if(&mut value, true, "sandbox_id", json!(sandbox.as_str()));
        json_ok(value)
    }

    async fn do_run_code(&self, args: RunCodeArgs, ctx: RequestContext<RoleServer>) -> Outcome {
        let timeout = valid_timeout(args.timeout)?;
        let id = context_id(&args.context_id)?;
        let sandbox = self.session.context_sandbox(&id, None)?;
        let req = RunCodeRequest {
            context_id: id.as_str().to_owned(),
            code: args.code,
            timeout_seconds: timeout,
        };
        let until = tokio::time::Instant::now() + req.deadline();
        let stream = self.call_in(&sandbox, req).await?;
        let out = match collect(self, &ctx, "run_code", stream, until).await {
            Err(ToolError::NotFound(_)) => return Err(ToolError::ContextNotFound),
            other => other?,
        };
        let texts: Vec<Value> = out.text_results().map(|t| json!(t)).collect();
        let images: Vec<String> = out.images().map(str::to_owned).collect();
        let error = out
            .error
            .as_ref()
            .map(|e| json!({ "name": e.name, "value": e.value, "traceback": traceback_text(e) }));
        let (success, killed, state_lost) = (out.success(), out.killed(), out.state_lost());
        let execution_time = out.duration().as_secs_f64();
        let mut value = json!({
            "stdout": out.stdout,
            "stderr": out.stderr,
            "success": success,
            "execution_time": execution_time,
        });
        insert_if(
            &mut value,
            !texts.is_empty(),
            "results",
            Value::Array(texts),
        );
        if let Some(error) = error {
            insert_if(&mut value, true, "error", error);
        }
        insert_if(&mut value, killed, "killed", json!(true));
        insert_if(&mut value, state_lost, "state_lost", json!(true));
        json_with_images(value, images)
    }

    async fn do_list_contexts(&self, args: SandboxArgs) -> Outcome {
        let sandboxes: Vec<SandboxId> = match args.sandbox_id.as_deref() {
            Some(id) if !id.trim().is_empty() => vec![self.session.owned(id)?],
            _ => self.session.sandboxes(),
        };
        let mut items = Vec::new();
        for sandbox in sandboxes {
            let list = self.call_in(&sandbox, ListContextsRequest {}).await?;
            items.extend(list.contexts.iter().map(context_json));
        }
        json_array_ok("contexts", items)
    }

    async fn do_stop_context(&self, args: ContextArgs) -> Outcome {
        let id = context_id(&args.context_id)?;
        let sandbox = self.session.context_sandbox(&id, None)?;
        let req = DeleteContextRequest {
            context_id: id.as_str().to_owned(),
        };
        let r = self.call_in(&sandbox, req).await?;
        self.session.forget_context(&id);
        json_ok(json!({ "success": r.success }))
    }

    async fn do_restart_context(&self, args: ContextArgs) -> Outcome {
        let id = context_id(&args.context_id)?;
        let sandbox = self.session.context_sandbox(&id, None)?;
        let req = RestartContextRequest {
            context_id: id.as_str().to_owned(),
        };
        self.call_in(&sandbox, req).await?.reply()
    }
}
