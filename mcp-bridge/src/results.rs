//! How tool results look: JSON text plus the same JSON as structured content; failures as
//! `isError` results carrying `{"error": message, "code": CODE}`.

use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::ErrorData as McpError;
use serde_json::{json, Value};

use crate::error::ToolError;

/// What every tool function returns to rmcp.
pub type ToolResult = Result<CallToolResult, McpError>;

/// What tool bodies return; [`respond`] turns errors into `isError` results.
pub type Outcome = Result<CallToolResult, ToolError>;

/// Turns a tool body's outcome into a result; a failure is a tool result, never a protocol error.
pub fn respond(outcome: Outcome) -> ToolResult {
    Ok(outcome.unwrap_or_else(|e| error_result(&e)))
}

/// The `isError` result for an error.
pub fn error_result(e: &ToolError) -> CallToolResult {
    tracing::debug!(code = e.code(), error = %e, "tool failed");
    CallToolResult::structured_error(json!({ "error": e.to_string(), "code": e.code() }))
}

/// A success: the JSON as text and as structured content.
pub fn json_ok(value: Value) -> Outcome {
    Ok(CallToolResult::structured(value))
}

/// A success whose JSON is an array: text is the array itself; structured content (which must be
/// an object) wraps it as `{key: array}`.
pub fn json_array_ok(key: &str, items: Vec<Value>) -> Outcome {
    let array = Value::Array(items);
    let mut r = CallToolResult::success(vec![ContentBlock::text(array.to_string())]);
    r.structured_content = Some(json!({ key: array }));
    Ok(r)
}

/// A success with extra image blocks (base64 PNGs) after the JSON text.
pub fn json_with_images(value: Value, pngs: Vec<String>) -> Outcome {
    let mut r = CallToolResult::structured(value);
    r.content.extend(
        pngs.into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| ContentBlock::image(p, "image/png")),
    );
    Ok(r)
}

/// Inserts `key: value` into a JSON object only when `keep` is true (extra fields only when useful).
pub fn insert_if(obj: &mut Value, keep: bool, key: &str, value: Value) {
    if keep {
        if let Some(map) = obj.as_object_mut() {
            map.insert(key.to_owned(), value);
        }
    }
}

/// rmcp reports arguments that do not match the schema as a plain-text `isError` result; this
/// gives it the same `{"error", "code"}` shape as every other failure, saying how to fix it.
pub fn argument_error(tool: &str, r: CallToolResult) -> CallToolResult {
    if r.is_error != Some(true) || r.structured_content.is_some() {
        return r;
    }
    let text = r
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let Some(detail) = text.strip_prefix("failed to deserialize parameters:") else {
        return r;
    };
    error_result(&ToolError::BadRequest(format!(
        "invalid arguments for {tool}:{detail} (see the tool's input schema)"
    )))
}

/// The `code` of an `isError` result this bridge made.
pub fn error_code(r: &CallToolResult) -> Option<&str> {
    if r.is_error != Some(true) {
        return None;
    }
    r.structured_content.as_ref()?.get("code")?.as_str()
}
