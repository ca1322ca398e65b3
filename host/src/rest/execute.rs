//! `POST /api/v1/contexts/{id}/execute`: runs code in a context and shapes what it produced —
//! one JSON answer, or (with `Accept: application/x-ndjson`) one line per event as it happens.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_client::{run_timeout, RunOutcome};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{ExecError, ExecEvent, RichResult, RunCodeRequest};
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::{
    ContextErrors, ErrorBody, ExecuteBody, ExecuteResult, Output, RichOutput, RunError, StreamLine,
};
use super::call::{no_answer, req, within};
use super::contexts::json_body;
use super::discovery::Contexts;
use super::error::RestError;

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
    ContextErrors,
))]
pub async fn execute(
    State(state): State<Arc<Contexts>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: Result<Json<ExecuteBody>, JsonRejection>,
) -> Result<Response, RestError> {
    let body = json_body(body)?;
    // Absent or 0: the default (§3.2).
    let timeout = run_timeout(body.timeout.unwrap_or(0.0))
        .map_err(|e| RestError::bad_request(e.to_string()))?;
    let at = state.locate(&id).await?;
    // The sandbox enforces the timeout; this deadline (for the whole stream, not only its
    // start) guards against a daemon that hangs.
    let deadline = timeout + RUN_MARGIN;
    let until = tokio::time::Instant::now() + deadline;
    let request = req(
        &at.sandbox,
        RunCodeRequest {
            context_id: id.clone(),
            code: body.code,
            timeout_seconds: timeout.as_secs_f64(),
        },
        deadline,
    );
    let mut client = state.client(&at.sandbox).await?;
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

    let mut out = RunOutcome::new();
    loop {
        let next = tokio::time::timeout_at(until, stream.message())
            .await
            .map_err(|_| no_answer(&at.sandbox, deadline))?
            .map_err(|s| RestError::from_status(&s))?;
        let Some(ev) = next else { break };
        out.add(&ev);
    }
    if out.timed_out() {
        let kept = if out.state_lost() {
            "the kernel ignored the interrupt and was restarted: its state is lost"
        } else {
            "the execution was interrupted; the context keeps its state"
        };
        return Err(RestError::timeout(format!(
            "execution timed out after {} s: {kept}",
            timeout.as_secs_f64()
        )));
    }
    let (success, stderr) = (out.success(), out.stderr_with_traceback());
    let (execution_time, state_lost) = (out.duration().as_secs_f64(), out.state_lost());
    Ok(Json(ExecuteResult {
        success,
        output: Output {
            stdout: out.stdout,
            stderr,
        },
        execution_time,
        results: out.results.into_iter().map(rich_output).collect(),
        error: out.error.map(run_error),
        state_lost,
    })
    .into_response())
}

fn rich_output(r: RichResult) -> RichOutput {
    RichOutput {
        data: r.data,
        is_main_result: r.is_main_result,
    }
}

fn run_error(e: ExecError) -> RunError {
    RunError {
        name: e.name,
        value: e.value,
        traceback: e.traceback,
    }
}

/// One streamed event as an NDJSON line; `ended` is the fold of the events so far (this one
/// included), which decides the `done` line's success.
fn event_line(ev: ExecEvent, ended: &RunOutcome) -> StreamLine {
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
        Event::Result(r) => {
            let RichOutput {
                data,
                is_main_result,
            } = rich_output(r);
            StreamLine::Result {
                data,
                is_main_result,
            }
        }
        Event::Error(e) => {
            let RunError {
                name,
                value,
                traceback,
            } = run_error(e);
            StreamLine::Error {
                name,
                value,
                traceback,
            }
        }
        Event::Exit(x) => StreamLine::Done {
            success: ended.success(),
            execution_time: ended.duration().as_secs_f64(),
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
    // The fold keeps no output (the lines carry it) and no rich results: only what decides
    // success.
    let ended = RunOutcome::with_cap(0);
    futures::stream::unfold(Some((stream, ended)), move |state| {
        let late = late.clone();
        async move {
            let (mut stream, mut ended) = state?;
            let line = match tokio::time::timeout_at(until, stream.message()).await {
                Ok(Ok(Some(ev))) => {
                    if !matches!(ev.event, Some(Event::Result(_))) {
                        ended.add(&ev);
                    }
                    event_line(ev, &ended)
                }
                Ok(Ok(None)) => return None,
                Ok(Err(s)) => {
                    return Some((Ok(ndjson(&failed(&RestError::from_status(&s)))), None))
                }
                Err(_) => return Some((Ok(ndjson(&late)), None)),
            };
            Some((Ok(ndjson(&line)), Some((stream, ended))))
        }
    })
}
