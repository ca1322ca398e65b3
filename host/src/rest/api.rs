//! The JSON shapes of the REST API (DESIGN.md §3.2): request bodies, responses and the lines of
//! a streamed execution. The OpenAPI document is generated from these types (`openapi.rs`).

use std::collections::HashMap;

use agent_runtime_client::{ContextStatus, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::{IntoResponses, ToSchema};

/// Body of `POST /api/v1/contexts`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateContext)]
pub struct CreateBody {
    /// The kind of context; only "jupyter" (checked by the handler, so a wrong one is a
    /// BAD_REQUEST naming the choice).
    #[serde(default = "default_type", rename = "type")]
    #[schema(schema_with = context_type)]
    pub kind: String,
    /// The kernel's language; only "python" (checked by the handler).
    #[serde(default = "default_language")]
    #[schema(schema_with = language)]
    pub language: String,
    /// A name for the context.
    #[serde(default)]
    pub session_name: Option<String>,
    /// The kernel's working directory.
    #[serde(default)]
    #[schema(default = "/workspace")]
    pub working_dir: Option<String>,
    /// Run the context in this existing sandbox instead of a new one.
    #[serde(default)]
    pub sandbox_id: Option<String>,
    /// Host names (or "*." wildcards) the new sandbox may reach; implies network "allowlist".
    #[serde(default)]
    pub allow_domains: Option<Vec<String>>,
    /// Host names (or "*." wildcards) that stay blocked whatever else allows them.
    #[serde(default)]
    pub deny_domains: Option<Vec<String>>,
    /// "none" (default), "allowlist" or "open" (private, loopback and metadata addresses stay
    /// blocked).
    #[serde(default)]
    #[schema(example = "allowlist")]
    pub network: Option<String>,
}

fn default_type() -> String {
    CONTEXT_TYPE.into()
}

fn default_language() -> String {
    CONTEXT_LANGUAGE.into()
}

/// The only kind of context.
pub const CONTEXT_TYPE: &str = "jupyter";
/// The only language of a context.
pub const CONTEXT_LANGUAGE: &str = "python";

/// A string schema of a closed set of values.
fn one_of(values: &[&str], description: &str, default: Option<&str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .default(default.map(Value::from))
        .build()
}

fn context_type() -> Object {
    one_of(&[CONTEXT_TYPE], "The kind of context.", Some(CONTEXT_TYPE))
}

fn language() -> Object {
    one_of(
        &[CONTEXT_LANGUAGE],
        "The kernel's language.",
        Some(CONTEXT_LANGUAGE),
    )
}

fn context_status() -> Object {
    let states: Vec<&str> = ContextStatus::ALL.iter().map(|c| c.as_str()).collect();
    one_of(&states, "The kernel's state.", None)
}

fn error_code() -> Object {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    one_of(&codes, "What kind of error.", None)
}

/// Body of `POST /api/v1/contexts/{id}/execute`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Execute)]
pub struct ExecuteBody {
    /// Python code.
    pub code: String,
    /// Seconds; the kernel is interrupted after it and the state kept.
    #[serde(default)]
    #[schema(default = 30, maximum = 3600)]
    pub timeout: Option<f64>,
}

/// A context as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Context)]
pub struct ContextView {
    /// The context's id.
    #[schema(example = "ctx-3f2a9b1c0d4e")]
    pub context_id: String,
    /// Always "jupyter".
    #[serde(rename = "type")]
    #[schema(schema_with = context_type)]
    pub kind: String,
    /// The kernel's language.
    pub language: String,
    /// The name given at creation.
    pub session_name: String,
    /// The kernel's state.
    #[schema(schema_with = context_status)]
    pub status: String,
    /// When it was created (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The kernel's working directory.
    pub working_dir: String,
    /// The sandbox that holds it.
    pub sandbox_id: String,
}

/// Answer of `DELETE /api/v1/contexts/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// Always true.
    pub success: bool,
    /// The deleted context.
    pub context_id: String,
}

/// Answer of `POST /api/v1/contexts/{id}/execute`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ExecuteResult {
    /// What the code printed.
    pub output: Output,
    /// Whether the code ran to its end without an exception.
    pub success: bool,
    /// Seconds.
    pub execution_time: f64,
    /// Rich outputs (plots, tables, the last expression's value); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<RichOutput>,
    /// The exception the code raised; absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<RunError>,
    /// Present (true) when the kernel had to be restarted and its variables are gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state_lost: bool,
}

/// The printed output of an execution.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error, with the traceback of an exception.
    pub stderr: String,
}

/// A rich output: a MIME bundle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RichOutput {
    /// MIME type to content (image/png is base64).
    pub data: HashMap<String, String>,
    /// True for the value of the cell's last expression, false for display().
    pub is_main_result: bool,
}

/// An exception raised by the code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    /// Exception class, e.g. "ZeroDivisionError".
    pub name: String,
    /// Exception message.
    pub value: String,
    /// Traceback lines.
    pub traceback: Vec<String>,
}

/// One line of a streamed execution (`Accept: application/x-ndjson`), as the events happen;
/// the last is `done` (or `failed`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamLine {
    /// A chunk of standard output.
    Stdout {
        /// The text.
        data: String,
    },
    /// A chunk of standard error.
    Stderr {
        /// The text.
        data: String,
    },
    /// A rich output.
    Result {
        /// MIME type to content (image/png is base64).
        data: HashMap<String, String>,
        /// True for the value of the cell's last expression.
        is_main_result: bool,
    },
    /// The exception the code raised.
    Error {
        /// Exception class.
        name: String,
        /// Exception message.
        value: String,
        /// Traceback lines.
        traceback: Vec<String>,
    },
    /// How the execution ended.
    Done {
        /// Whether the code ran to its end without an exception.
        success: bool,
        /// Seconds.
        execution_time: f64,
        /// Whether it was interrupted.
        killed: bool,
        /// Why it was interrupted ("timeout", "cancelled"), or empty.
        reason: String,
        /// Whether the kernel had to be restarted and its variables are gone.
        state_lost: bool,
    },
    /// The execution could not be followed to its end: the error, as an error body.
    Failed {
        /// What happened and what to do.
        error: String,
        /// What kind of error.
        #[schema(schema_with = error_code)]
        code: ErrorCode,
    },
    /// An event this host does not know.
    Unknown,
}

/// Every error: `{"error": "...", "code": "..."}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What happened and what to do.
    pub error: String,
    /// What kind of error.
    #[schema(schema_with = error_code)]
    pub code: ErrorCode,
}

/// The errors of a call about one context (describe, delete, execute).
#[derive(IntoResponses)]
pub enum ContextErrors {
    /// BAD_REQUEST: the request cannot work (a malformed body, a value out of range, a dead
    /// sandbox)
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// UNAUTHORIZED: missing or wrong credentials
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// CONTEXT_NOT_FOUND
    #[response(status = 404)]
    ContextNotFound(ErrorBody),
    /// TIMEOUT: the code ran past its timeout (the message says whether the context kept its
    /// state), or the sandbox did not answer in time
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// INTERNAL
    #[response(status = 500)]
    Internal(ErrorBody),
}
