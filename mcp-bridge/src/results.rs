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

/// A success whose JSON field `key` holds a base64 PNG: `structuredContent` keeps the exact
/// shape (base64 included), the PNG goes in an image block, and the text a model reads carries
/// a short note in its place — never the image data (DESIGN.md §3.1).
pub fn json_with_image_field(value: Value, key: &str) -> Outcome {
    let png = value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut text = value.clone();
    // No image (screenshot: false): the text is the structured JSON as it is.
    if let Some(map) = text.as_object_mut().filter(|_| !png.is_empty()) {
        map.insert(key.to_owned(), Value::String(image_note(&png)));
    }
    let mut r = CallToolResult::structured(value);
    r.content = vec![ContentBlock::text(text.to_string())];
    if !png.is_empty() {
        r.content.push(ContentBlock::image(png, "image/png"));
    }
    Ok(r)
}

/// "PNG 1280x720, 48213 bytes, attached as image" for a base64 PNG.
fn image_note(png_base64: &str) -> String {
    use base64::Engine as _;
    if png_base64.is_empty() {
        return "no image".into();
    }
    let padding = png_base64.bytes().rev().take_while(|b| *b == b'=').count();
    let bytes = (png_base64.len() / 4 * 3).saturating_sub(padding);
    // The IHDR chunk's width and height sit at bytes 16..24 of a PNG: the first 32 base64
    // characters decode to exactly those 24 bytes.
    let dims = png_base64
        .get(..32)
        .and_then(|head| base64::engine::general_purpose::STANDARD.decode(head).ok())
        .filter(|h| h.len() >= 24 && h.starts_with(b"\x89PNG"))
        .map(|h| {
            let w = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
            let ht = u32::from_be_bytes([h[20], h[21], h[22], h[23]]);
            format!("{w}x{ht}, ")
        })
        .unwrap_or_default();
    format!("PNG {dims}{bytes} bytes, attached as image")
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

#[cfg(test)]
mod image_tests {
    use super::*;

    /// A 1x1 PNG.
    const DOT: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

    #[test]
    fn the_text_carries_a_note_not_the_image() {
        let r = json_with_image_field(json!({"url": "u", "screenshot": DOT}), "screenshot")
            .expect("ok");
        let text = r.content[0].as_text().expect("text").text.clone();
        assert!(!text.contains(DOT), "{text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["screenshot"], "PNG 1x1, 70 bytes, attached as image");
        assert_eq!(r.structured_content.expect("structured")["screenshot"], DOT);
        assert!(r.content[1].as_image().is_some());
        assert_eq!(image_note(""), "no image");
    }
}
