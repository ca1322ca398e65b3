//! `POST /api/v1/contexts/{id}/execute`: runs code in a context and shapes what it produced —
//! one JSON answer, or (with `Accept: application/x-ndjson`) one line per event as it happens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{ExecEvent, RunCodeRequest};
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::{ErrorBody, ExecuteBody, ExecuteResult, Output, RichOutput, RunError, StreamLine};
use super::call::{no_answer, req, within};
use super::contexts::json_body;
use super::discovery::Contexts;
use super::error::RestError;

/// Default execution timeout in seconds (§3.2).
const DEFAULT_TIMEOUT_S: f64 = 30.0;
/// Longest execution timeout.
const MAX_TIMEOUT_S: f64 = 3600.0;
/// What an execution's deadline adds to its timeout: sandboxd enforces the timeout (and may
/// restart the kernel after it); the deadline only guards against a daemon that hangs.
const RUN_MARGIN: Duration = Duration::from_secs(10);

/// Execute code; variables persist between executions. With `Accept: application/x-ndjson`,
/// events stream as they happen.
#[utoipa::path(post, path = "/contexts/{id}/execute", operation_id = "execute", params(("id" = String, Path, description = "The context's id")),
request_body = ExecuteBody, responses(
    (status = 200, description = "Result", content(
        (ExecuteResult = "application/json"),
        (StreamLine = "application/x-ndjson"),
    )),
    (status = 400, description = "BAD_REQUEST: a malformed body, a timeout out of range, the \
        context's sandbox is dead", body = ErrorBody),
    (status = 401, description = "UNAUTHORIZED: missing or wrong credentials", body = ErrorBody),
    (status = 404, description = "CONTEXT_NOT_FOUND", body = ErrorBody),
    (status = 408, description = "TIMEOUT: the code ran past its timeout (the kernel was \
        interrupted; the message says whether its state was kept), or the sandbox did not \
        answer in time", body = ErrorBody),
    (status = 500, description = "INTERNAL", body = ErrorBody),
    (status = 503, description = "INTERNAL: the sandbox is unreachable", body = ErrorBody),
))]
pub async fn execute(
    State(state): State<Arc<Contexts>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Result<Json<ExecuteBody>, JsonRejection>,
) -> Result<Response, RestError> {
    let body = json_body(body)?;
    let timeout = body.timeout.unwrap_or(DEFAULT_TIMEOUT_S);
    if !timeout.is_finite() || timeout <= 0.0 || timeout > MAX_TIMEOUT_S {
        return Err(RestError::bad_request(format!(
            "timeout must be between 0 and {MAX_TIMEOUT_S} seconds"
        )));
    }
    let at = state.locate(&id).await?;
    // The sandbox enforces the timeout; this deadline (for the whole stream, not only its
    // start) guards against a daemon that hangs.
    let deadline = Duration::from_secs_f64(timeout) + RUN_MARGIN;
    let until = tokio::time::Instant::now() + deadline;
    let request = req(
        &at.sandbox,
        RunCodeRequest {
            context_id: id.clone(),
            code: body.code,
            timeout_seconds: timeout,
        },
        deadline,
    );
    let mut client = state.client(&at.sandbox)?;
    let mut stream = within(deadline, &at.sandbox, client.run_code(request)).await?;

    let wants_stream = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if wants_stream {
        let lines = stream_lines(stream, until, no_answer(&at.sandbox, deadline));
        return Ok((
            [(http::header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response());
    }

    let mut out = Collected::default();
    loop {
        let next = tokio::time::timeout_at(until, stream.message())
            .await
            .map_err(|_| no_answer(&at.sandbox, deadline))?
            .map_err(|s| RestError::from_status(&s))?;
        let Some(ev) = next else { break };
        out.add(ev);
    }
    if out.killed && out.reason == "timeout" {
        let kept = if out.state_lost {
            "the kernel ignored the interrupt and was restarted: its state is lost"
        } else {
            "the execution was interrupted; the context keeps its state"
        };
        return Err(RestError::timeout(format!(
            "execution timed out after {timeout} s: {kept}"
        )));
    }
    Ok(Json(ExecuteResult {
        success: out.error.is_none() && !out.killed,
        output: Output {
            stdout: out.stdout,
            stderr: out.stderr,
        },
        execution_time: out.duration_ms as f64 / 1000.0,
        results: out.results,
        error: out.error,
        state_lost: out.state_lost,
    })
    .into_response())
}

/// What one execution produced.
#[derive(Default)]
struct Collected {
    stdout: String,
    stderr: String,
    results: Vec<RichOutput>,
    error: Option<RunError>,
    killed: bool,
    reason: String,
    state_lost: bool,
    duration_ms: u64,
}

impl Collected {
    fn add(&mut self, ev: ExecEvent) {
        match ev.event {
            Some(Event::Stdout(b)) => self.stdout.push_str(&String::from_utf8_lossy(&b)),
            Some(Event::Stderr(b)) => self.stderr.push_str(&String::from_utf8_lossy(&b)),
            Some(Event::Result(r)) => self.results.push(RichOutput {
                data: r.data,
                is_main_result: r.is_main_result,
            }),
            Some(Event::Error(e)) => {
                if !self.stderr.is_empty() && !self.stderr.ends_with('\n') {
                    self.stderr.push('\n');
                }
                self.stderr.push_str(&e.traceback.join("\n"));
                self.stderr.push('\n');
                self.error = Some(RunError {
                    name: e.name,
                    value: e.value,
                    traceback: e.traceback,
                });
            }
            Some(Event::Exit(x)) => {
                self.killed = x.killed;
                self.reason = x.reason;
                self.state_lost = x.state_lost;
                self.duration_ms = x.duration_ms;
            }
            None => {}
        }
    }
}

/// One streamed event as an NDJSON line.
fn event_line(ev: ExecEvent) -> StreamLine {
    let Some(event) = ev.event else {
        return StreamLine::Unknown;
    };
    match event {
        Event::Stdout(b) => StreamLine::Stdout {
            data: String::from_utf8_lossy(&b).into_owned(),
        },
        Event::Stderr(b) => StreamLine::Stderr {
            data: String::from_utf8_lossy(&b).into_owned(),
        },
        Event::Result(r) => StreamLine::Result {
            data: r.data,
            is_main_result: r.is_main_result,
        },
        Event::Error(e) => StreamLine::Error {
            name: e.name,
            value: e.value,
            traceback: e.traceback,
        },
        Event::Exit(x) => StreamLine::Done {
            success: !x.killed && x.code == 0,
            execution_time: x.duration_ms as f64 / 1000.0,
            killed: x.killed,
            reason: x.reason,
            state_lost: x.state_lost,
        },
    }
}

fn failed(e: &RestError) -> StreamLine {
    let ErrorBody { error, code } = e.body();
    StreamLine::Failed { error, code }
}

fn ndjson(line: &StreamLine) -> bytes::Bytes {
    let mut text = serde_json::to_string(line).unwrap_or_else(|_| r#"{"type":"unknown"}"#.into());
    text.push('\n');
    bytes::Bytes::from(text)
}

/// The events as NDJSON lines; past `until` the stream ends with a `failed` line (`late`).
fn stream_lines(
    stream: tonic::Streaming<ExecEvent>,
    until: tokio::time::Instant,
    late: RestError,
) -> impl futures::Stream<Item = Result<bytes::Bytes, Infallible>> + Send {
    let late = Arc::new(failed(&late));
    futures::stream::unfold(Some(stream), move |state| {
        let late = late.clone();
        async move {
            let mut stream = state?;
            let line = match tokio::time::timeout_at(until, stream.message()).await {
                Ok(Ok(Some(ev))) => event_line(ev),
                Ok(Ok(None)) => return None,
                Ok(Err(s)) => {
                    return Some((Ok(ndjson(&failed(&RestError::from_status(&s)))), None))
                }
                Err(_) => return Some((Ok(ndjson(&late)), None)),
            };
            Some((Ok(ndjson(&line)), Some(stream)))
        }
    })
}
