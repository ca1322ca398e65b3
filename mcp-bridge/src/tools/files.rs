//! Files in the sandbox: file_read, file_write, file_list, file_remove. Relative paths resolve
//! under /workspace (sandboxd does that).

use agent_runtime_client::FileType;
use agent_runtime_proto::v1::{
    ListDirRequest, ListDirResponse, ReadFileRequest, ReadFileResponse, RemoveRequest,
    RemoveResponse, WriteFileRequest, WriteFileResponse,
};
use base64::Engine as _;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::call::{Reply, SandboxRef};
use crate::error::ToolError;
use crate::results::{insert_if, json_ok, Outcome, ToolResult};
use crate::server::Bridge;

/// Arguments of file_read.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadArgs {
    pub path: String,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of file_write.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    pub path: String,
    pub content: String,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of file_list.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ListArgs {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

/// Arguments of file_remove.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct RemoveArgs {
    pub path: String,
    /// For a non-empty directory.
    #[serde(default)]
    pub recursive: bool,
    #[serde(flatten)]
    sandbox: SandboxRef,
}

#[tool_router(router = file_tools, vis = "pub(crate)")]
impl Bridge {
    #[tool(
        description = "Read a file (relative to /workspace); binary comes back base64.",
        annotations(read_only_hint = true)
    )]
    async fn file_read(&self, Parameters(a): Parameters<ReadArgs>) -> ToolResult {
        let req = need_path(a.path).map(|path| ReadFileRequest { path, max_bytes: 0 });
        self.answer(&a.sandbox, req).await
    }

    #[tool(description = "Write a text file (relative to /workspace; parents made).")]
    async fn file_write(&self, Parameters(a): Parameters<WriteArgs>) -> ToolResult {
        let req = need_path(a.path).map(|path| WriteFileRequest {
            path,
            content: a.content.into_bytes(),
            mode: 0,
            append: false,
        });
        self.answer(&a.sandbox, req).await
    }

    #[tool(
        description = "List a directory (default /workspace).",
        annotations(read_only_hint = true)
    )]
    async fn file_list(&self, Parameters(a): Parameters<ListArgs>) -> ToolResult {
        let req = ListDirRequest {
            path: a.path.unwrap_or_default(),
            include_hidden: false,
        };
        self.answer(&a.sandbox, Ok(req)).await
    }

    #[tool(
        description = "Delete a file or directory.",
        annotations(destructive_hint = true)
    )]
    async fn file_remove(&self, Parameters(a): Parameters<RemoveArgs>) -> ToolResult {
        let req = need_path(a.path).map(|path| RemoveRequest {
            path,
            recursive: a.recursive,
        });
        self.answer(&a.sandbox, req).await
    }
}

crate::call::calls! {
    ReadFileRequest { name: "file_read", }
    WriteFileRequest { name: "file_write", }
    ListDirRequest { name: "file_list", }
    RemoveRequest { name: "file_remove", }
}

/// `{content, size}`; a file that is not UTF-8 comes back base64 with `encoding: "base64"`.
impl Reply for ReadFileResponse {
    fn reply(self) -> Outcome {
        json_ok(match String::from_utf8(self.content) {
            Ok(text) => json!({ "content": text, "size": self.size }),
            Err(e) => json!({
                "content": base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                "size": self.size,
                "encoding": "base64",
            }),
        })
    }
}

/// `{success, path}`.
impl Reply for WriteFileResponse {
    fn reply(self) -> Outcome {
        json_ok(json!({ "success": true, "path": self.path }))
    }
}

/// `{items: [{name, type: "file" | "directory", size?}]}`, plus `truncated` when cut.
impl Reply for ListDirResponse {
    fn reply(self) -> Outcome {
        let items: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                // §3.1 knows files and directories; a link or a device lists as a file.
                let kind = match e.r#type.parse() {
                    Ok(FileType::Directory) => FileType::Directory,
                    _ => FileType::File,
                };
                let mut v = json!({ "name": e.name, "type": kind.as_str() });
                insert_if(&mut v, kind == FileType::File, "size", json!(e.size));
                v
            })
            .collect();
        let mut value = json!({ "items": items });
        insert_if(&mut value, self.truncated, "truncated", json!(true));
        json_ok(value)
    }
}

/// `{success}`.
impl Reply for RemoveResponse {
    fn reply(self) -> Outcome {
        json_ok(json!({ "success": self.success }))
    }
}

/// `path`, unless it is empty.
fn need_path(path: String) -> Result<String, ToolError> {
    if path.trim().is_empty() {
        return Err(ToolError::BadRequest(
            "path is empty: give a file path such as notes.txt or /workspace/notes.txt".into(),
        ));
    }
    Ok(path)
}
