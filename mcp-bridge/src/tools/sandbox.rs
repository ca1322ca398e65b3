//! Sandbox lifecycle tools: sandbox_create, sandbox_destroy, sandbox_list.

use agent_runtime_client::{NetworkMode, Rpc, SandboxId, SandboxesRpc};
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, EgressPolicy, ListSandboxesRequest,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ToolError;
use crate::host_conn::DEFAULT_DEADLINE;
use crate::results::{json_ok, respond, Outcome, ToolResult};
use crate::server::Bridge;

/// Arguments of sandbox_create.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct CreateArgs {
    /// Default "512m".
    #[serde(default)]
    pub memory: Option<String>,
    /// Default 1.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Seconds (default 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// e.g. ["*.github.com"]; implies "allowlist".
    #[serde(default)]
    pub allow_domains: Option<Vec<String>>,
    #[serde(default)]
    pub deny_domains: Option<Vec<String>>,
    /// Default "none".
    #[serde(default)]
    pub network: Option<NetworkMode>,
}

/// Arguments naming a sandbox.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SandboxArgs {
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

#[tool_router(router = sandbox_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(
        description = "Create a sandbox (Linux, Python, Node, Chromium); tools make one on first use and need sandbox_id only when there are several. No network unless allow_domains or network \"open\"."
    )]
    async fn sandbox_create(&self, Parameters(args): Parameters<CreateArgs>) -> ToolResult {
        respond(self.do_create(args).await)
    }

    #[tool(
        description = "Destroy a sandbox and all in it.",
        annotations(destructive_hint = true)
    )]
    async fn sandbox_destroy(&self, Parameters(args): Parameters<SandboxArgs>) -> ToolResult {
        respond(self.do_destroy(args).await)
    }

    #[tool(
        description = "List this session's sandboxes.",
        annotations(read_only_hint = true)
    )]
    async fn sandbox_list(&self) -> ToolResult {
        respond(self.do_list().await)
    }
}

impl Bridge {
    /// A `Sandboxes`-service call (starting a host when none answers); `name` is what its
    /// errors call it.
    async fn lifecycle<R: SandboxesRpc>(
        &self,
        name: &str,
        req: R,
    ) -> Result<<R as Rpc>::Response, ToolError> {
        let host = self.session.host();
        host.ensure().await?;
        host.lifecycle(req, DEFAULT_DEADLINE)
            .await
            .map_err(|s| ToolError::from_status(name, &s))
    }

    async fn do_create(&self, args: CreateArgs) -> Outcome {
        if let Some(cpu) = args.cpu {
            if !(cpu.is_finite() && cpu > 0.0) {
                return Err(ToolError::BadRequest(
                    "cpu must be a positive number of cores, e.g. 1 or 0.5".into(),
                ));
            }
        }
        let info = self
            .session
            .create_sandbox(CreateSandboxRequest {
                memory: args.memory.unwrap_or_default(),
                cpu: args.cpu.unwrap_or(0.0),
                timeout_seconds: args.timeout.unwrap_or(0),
                egress: Some(EgressPolicy {
                    network: args
                        .network
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    allow_domains: args.allow_domains.unwrap_or_default(),
                    deny_domains: args.deny_domains.unwrap_or_default(),
                }),
                ..Default::default()
            })
            .await?;
        // The contract's exact shape (DESIGN.md §3.1); the policy shows in what the sandbox can reach.
        json_ok(json!({ "sandbox_id": info.sandbox_id, "status": info.status }))
    }

    async fn do_destroy(&self, args: SandboxArgs) -> Outcome {
        let Some(id) = self.session.existing(args.sandbox_id.as_deref())? else {
            return Err(ToolError::BadRequest(
                "this session has no sandbox: pass sandbox_id".into(),
            ));
        };
        let req = DestroySandboxRequest {
            sandbox_id: id.as_str().to_owned(),
        };
        self.lifecycle("sandbox destroy", req).await?;
        self.session.forget_sandbox(&id);
        json_ok(json!({ "success": true }))
    }

    async fn do_list(&self) -> Outcome {
        let mine = self.session.sandboxes();
        let all = self
            .lifecycle("sandbox list", ListSandboxesRequest {})
            .await?
            .sandboxes;
        let items: Vec<Value> = all
            .into_iter()
            .filter(|s| SandboxId::parse(&s.sandbox_id).is_some_and(|id| mine.contains(&id)))
            .map(|s| {
                json!({
                    "sandbox_id": s.sandbox_id,
                    "status": s.status,
                    "created_at": s.created_at,
                    "expires_at": s.expires_at,
                })
            })
            .collect();
        json_ok(json!({ "sandboxes": items }))
    }
}
