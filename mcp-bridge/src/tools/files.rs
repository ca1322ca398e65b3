//! Files in the sandbox: file_read, file_write, file_list, file_remove. Relative paths resolve
//! under /workspace (sandboxd does that).

use agent_runtime_proto::v1::{ListDirRequest, ReadFileRequest, RemoveRequest, WriteFileRequest};
use base64::Engine as _;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ToolError;
use crate::host_conn::with_sandbox;
use crate::results::{insert_if, json_ok, respond, Outcome, ToolResult};
use crate::server::Bridge;

/// Arguments of file_read.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    /// File path; relative paths are under /workspace.
    pub path: String,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of file_write.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// File path; relative paths are under /workspace. Parent directories are created.
    pub path: String,
    /// The text to write (replaces the file).
    pub content: String,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of file_list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// Directory (default /workspace).
    #[serde(default)]
    pub path: Option<String>,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

/// Arguments of file_remove.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RemoveArgs {
    /// File or directory path.
    pub path: String,
    /// Required to remove a non-empty directory.
    #[serde(default)]
    pub recursive: bool,
    /// Sandbox id; optional while the session has one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
}

#[tool_router(router = file_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(
        description = "Read a file from the sandbox. Binary files come back base64 (encoding: \"base64\").",
        annotations(read_only_hint = true)
    )]
    async fn file_read(&self, Parameters(args): Parameters<ReadArgs>) -> ToolResult {
        respond(self.do_read(args).await)
    }

    #[tool(description = "Write a text file in the sandbox, replacing it.")]
    async fn file_write(&self, Parameters(args): Parameters<WriteArgs>) -> ToolResult {
        respond(self.do_write(args).await)
    }

    #[tool(
        description = "List a directory in the sandbox (default /workspace).",
        annotations(read_only_hint = true)
    )]
    async fn file_list(&self, Parameters(args): Parameters<ListArgs>) -> ToolResult {
        respond(self.do_list_dir(args).await)
    }

    #[tool(
        description = "Delete a file or directory in the sandbox.",
        annotations(destructive_hint = true)
    )]
    async fn file_remove(&self, Parameters(args): Parameters<RemoveArgs>) -> ToolResult {
        respond(self.do_remove(args).await)
    }
}

fn need_path(p: &str) -> Result<(), ToolError> {
    if p.trim().is_empty() {
        return Err(ToolError::BadRequest(
            "path is empty: give a file path such as notes.txt or /workspace/notes.txt".into(),
        ));
    }
    Ok(())
}

impl Bridge {
    async fn do_read(&self, args: ReadArgs) -> Outcome {
        need_path(&args.path)?;
        let sandbox = self.session.resolve(args.sandbox_id.as_deref()).await?;
        let mut client = self.session.host().sandbox().await?;
        let r = client
            .read_file(with_sandbox(
                &sandbox,
                ReadFileRequest {
                    path: args.path,
                    max_bytes: 0,
                },
            )?)
            .await
            .map_err(|s| ToolError::from_status("file_read", &s))?
            .into_inner();
        let value = match String::from_utf8(r.content) {
            Ok(text) => json!({ "content": text, "size": r.size }),
            Err(e) => json!({
                "content": base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                "size": r.size,
                "encoding": "base64",
            }),
        };
        json_ok(value)
    }

    async fn do_write(&self, args: WriteArgs) -> Outcome {
        need_path(&args.path)?;
        let sandbox = self.session.resolve(args.sandbox_id.as_deref()).await?;
        let mut client = self.session.host().sandbox().await?;
        let r = client
            .write_file(with_sandbox(
                &sandbox,
                WriteFileRequest {
                    path: args.path,
                    content: args.content.into_bytes(),
                    mode: 0,
                    append: false,
                },
            )?)
            .await
            .map_err(|s| ToolError::from_status("file_write", &s))?
            .into_inner();
        json_ok(json!({ "success": true, "path": r.path }))
    }

    async fn do_list_dir(&self, args: ListArgs) -> Outcome {
        let sandbox = self.session.resolve(args.sandbox_id.as_deref()).await?;
        let mut client = self.session.host().sandbox().await?;
        let r = client
            .list_dir(with_sandbox(
                &sandbox,
                ListDirRequest {
                    path: args.path.unwrap_or_default(),
                    include_hidden: false,
                },
            )?)
            .await
            .map_err(|s| ToolError::from_status("file_list", &s))?
            .into_inner();
        let items: Vec<Value> = r
            .entries
            .iter()
            .map(|e| {
                let kind = if e.r#type == "directory" {
                    "directory"
                } else {
                    "file"
                };
                let mut v = json!({ "name": e.name, "type": kind });
                insert_if(&mut v, kind == "file", "size", json!(e.size));
                v
            })
            .collect();
        let mut value = json!({ "items": items });
        insert_if(&mut value, r.truncated, "truncated", json!(true));
        json_ok(value)
    }

    async fn do_remove(&self, args: RemoveArgs) -> Outcome {
        need_path(&args.path)?;
        let sandbox = self.session.resolve(args.sandbox_id.as_deref()).await?;
        let mut client = self.session.host().sandbox().await?;
        let r = client
            .remove(with_sandbox(
                &sandbox,
                RemoveRequest {
                    path: args.path,
                    recursive: args.recursive,
                },
            )?)
            .await
            .map_err(|s| ToolError::from_status("file_remove", &s))?
            .into_inner();
        json_ok(json!({ "success": r.success }))
    }
}
