//! `/api/v1/contexts`: each context is a Jupyter kernel in a sandbox — its own sandbox by default
//! (destroyed with the context), or an existing one named by `sandbox_id`.
//!
//! REST reaches only its own contexts: those in sandboxes it made (label `owner=rest-context`)
//! and those it created in a sandbox named explicitly. A context made over gRPC or MCP is
//! CONTEXT_NOT_FOUND here, even when its id is known; a sandbox a token owns cannot be named.
//!
//! Every call to a sandbox has a deadline, and discovery (after a restart, or for an id not in
//! the cache) asks all candidate sandboxes at once with a short one: a sandbox that does not
//! answer is skipped (and logged), never waited for, and no lock is held across a call.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    Context, CreateContextRequest, DeleteContextRequest, ExecEvent, ListContextsRequest,
    RunCodeRequest,
};
use agent_runtime_proto::SANDBOX_ID_HEADER;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::error::RestError;
use crate::ids::SandboxId;
use crate::sandboxes::{
    Manager, SandboxRecord, SandboxStatus, ANONYMOUS, CONTEXT_OWNER_LABEL as OWNER_LABEL,
};
/// Default execution timeout in seconds (§3.2).
const DEFAULT_TIMEOUT_S: f64 = 30.0;
/// Longest execution timeout.
const MAX_TIMEOUT_S: f64 = 3600.0;
/// How long discovery waits for one sandbox's contexts.
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(3);
/// Deadline of a call without a timeout of its own (DESIGN.md §3.3).
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Deadline of CreateContext: a kernel may have to boot when no spare one is ready.
const CREATE_DEADLINE: Duration = Duration::from_secs(60);
/// What an execution's deadline adds to its timeout: sandboxd enforces the timeout (and may
/// restart the kernel after it); the deadline only guards against a daemon that hangs.
const RUN_MARGIN: Duration = Duration::from_secs(10);

/// Where a context lives.
#[derive(Clone, Debug)]
struct Route {
    sandbox: SandboxId,
    owns_sandbox: bool,
}

/// The REST contexts state: which sandbox holds which context.
pub struct Contexts {
    manager: Arc<Manager>,
    routes: Mutex<HashMap<String, Route>>,
}

impl Contexts {
    /// Empty; routes are learnt on create and rediscovered from the sandboxes when unknown.
    pub fn new(manager: Arc<Manager>) -> Self {
        Self {
            manager,
            routes: Mutex::new(HashMap::new()),
        }
    }

    fn routes(&self) -> MutexGuard<'_, HashMap<String, Route>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, sandbox: &SandboxId) -> Result<SandboxClient<Channel>, RestError> {
        Ok(SandboxClient::new(self.manager.channel(sandbox)?)
            .max_decoding_message_size(80 << 20)
            .max_encoding_message_size(80 << 20))
    }

    /// The contexts of one sandbox, within `deadline`.
    async fn contexts_in(
        &self,
        sandbox: &SandboxId,
        deadline: Duration,
    ) -> Result<Vec<Context>, RestError> {
        let mut client = self.client(sandbox)?;
        let mut request = req(sandbox, ListContextsRequest {});
        request.set_timeout(deadline);
        within(deadline, sandbox, client.list_contexts(request))
            .await
            .map(|r| r.contexts)
    }

    /// Asks every candidate sandbox for its contexts at once, each with [`DISCOVERY_DEADLINE`]
    /// (after a host restart the map is empty). Candidates are the sandboxes REST made and those
    /// it put a context into by name; of the latter only the contexts REST created count. A
    /// sandbox that does not answer is skipped and keeps its known routes. Returns what answered
    /// and the sandboxes that answered.
    async fn discover(&self) -> (Vec<(Route, Context)>, HashSet<SandboxId>) {
        let (named_sandboxes, ours): (HashSet<SandboxId>, HashSet<String>) = {
            let routes = self.routes();
            (
                routes
                    .values()
                    .filter(|r| !r.owns_sandbox)
                    .map(|r| r.sandbox.clone())
                    .collect(),
                routes.keys().cloned().collect(),
            )
        };
        let candidates: Vec<(SandboxId, bool)> = self
            .manager
            .list()
            .into_iter()
            // A starting sandbox holds no context yet, and a dead one cannot answer.
            .filter(|sb| sb.status == SandboxStatus::Running)
            .filter_map(|sb| {
                let owns = made_by_rest(&sb);
                (owns || named_sandboxes.contains(&sb.id)).then_some((sb.id, owns))
            })
            .collect();
        let answers =
            futures::future::join_all(candidates.into_iter().map(|(id, owns)| async move {
                let r = self.contexts_in(&id, DISCOVERY_DEADLINE).await;
                (id, owns, r)
            }))
            .await;
        let mut found = Vec::new();
        let mut answered = HashSet::new();
        for (id, owns, r) in answers {
            let contexts = match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sandbox_id = %id, error = %e.message(),
                        "skipping a sandbox in context discovery: it did not answer");
                    continue;
                }
            };
            answered.insert(id.clone());
            for c in contexts {
                // In a sandbox REST did not make, only the contexts REST created there.
                if owns || ours.contains(&c.context_id) {
                    let route = Route {
                        sandbox: id.clone(),
                        owns_sandbox: owns,
                    };
                    found.push((route, c));
                }
            }
        }
        let mut routes = self.routes();
        // Routes learnt since the snapshot above (a create meanwhile) stay; of the others, those
        // in sandboxes that answered are replaced by what they said.
        routes.retain(|id, r| {
            (!ours.contains(id) || !answered.contains(&r.sandbox))
                && self.manager.get(&r.sandbox).is_ok()
        });
        for (route, c) in &found {
            routes.insert(c.context_id.clone(), route.clone());
        }
        (found, answered)
    }

    /// Destroys sandboxes made for REST contexts that hold none (left by an earlier host, e.g.
    /// its warm pool), so they do not linger until their lifetime ends. A sandbox that did not
    /// answer is left alone: it may hold contexts.
    pub async fn sweep_orphans(&self) {
        let (found, answered) = self.discover().await;
        let holding: HashSet<SandboxId> = found.into_iter().map(|(r, _)| r.sandbox).collect();
        for sb in self.manager.list() {
            // Only adopted ones: this host's own may be starting (the warm pool) right now.
            if sb.adopted
                && made_by_rest(&sb)
                && answered.contains(&sb.id)
                && !holding.contains(&sb.id)
            {
                tracing::info!(sandbox_id = %sb.id, "removing a context sandbox that holds no context");
                let _ = self.manager.destroy(&sb.id).await;
            }
        }
    }

    async fn route(&self, id: &str) -> Result<Route, RestError> {
        if let Some(r) = self.routes().get(id).cloned() {
            return Ok(r);
        }
        self.discover()
            .await
            .0
            .into_iter()
            .find(|(_, c)| c.context_id == id)
            .map(|(r, _)| r)
            .ok_or_else(RestError::context_not_found)
    }
}

/// Whether REST made this sandbox for a context (a token holder's sandbox never counts, whatever
/// its labels say).
fn made_by_rest(sb: &SandboxRecord) -> bool {
    sb.owner == ANONYMOUS && sb.labels.get(OWNER_LABEL.0).map(String::as_str) == Some(OWNER_LABEL.1)
}

/// Awaits a call to a sandbox for at most `deadline` (the request carries it too, but a daemon
/// that accepted the call and then stopped must not hold the caller).
async fn within<T>(
    deadline: Duration,
    sandbox: &SandboxId,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, RestError> {
    match tokio::time::timeout(deadline, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(RestError::from_status(&s)),
        Err(_) => Err(no_answer(sandbox, deadline)),
    }
}

fn no_answer(sandbox: &SandboxId, deadline: Duration) -> RestError {
    RestError::timeout(format!(
        "sandbox {sandbox} did not answer within {} s: it may be overloaded or stopped; retry, \
         or delete the context",
        deadline.as_secs_f64()
    ))
}

/// A request to `sandbox` with the `sandbox-id` metadata and the default deadline.
fn req<T>(sandbox: &SandboxId, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = sandbox.as_str().parse() {
        r.metadata_mut().insert(SANDBOX_ID_HEADER, v);
    }
    r.set_timeout(CALL_DEADLINE);
    r
}

/// Body of `POST /api/v1/contexts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Must be "jupyter".
    #[serde(default = "default_type", rename = "type")]
    kind: String,
    /// Must be "python".
    #[serde(default = "default_language")]
    language: String,
    /// A name for the context.
    #[serde(default)]
    session_name: Option<String>,
    /// Working directory; default /workspace.
    #[serde(default)]
    working_dir: Option<String>,
    /// Put the context into this existing sandbox instead of a new one.
    #[serde(default)]
    sandbox_id: Option<String>,
}

fn default_type() -> String {
    "jupyter".into()
}

fn default_language() -> String {
    "python".into()
}

/// Body of `POST /api/v1/contexts/{id}/execute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteBody {
    /// Python code.
    code: String,
    /// Seconds; default 30.
    #[serde(default)]
    timeout: Option<f64>,
}

/// A context as the API shows it.
#[derive(Debug, Serialize)]
pub struct ContextView {
    context_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    language: String,
    session_name: String,
    status: String,
    created_at: String,
    working_dir: String,
    sandbox_id: String,
}

fn view(c: &Context, sandbox: &SandboxId) -> ContextView {
    ContextView {
        context_id: c.context_id.clone(),
        kind: "jupyter",
        language: c.language.clone(),
        session_name: c.name.clone(),
        status: c.status.clone(),
        created_at: c.created_at.clone(),
        working_dir: c.cwd.clone(),
        sandbox_id: sandbox.to_string(),
    }
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, RestError> {
    body.map(|Json(b)| b)
        .map_err(|r| RestError::bad_request(r.body_text()))
}

/// `POST /api/v1/contexts`
pub async fn create(
    State(state): State<Arc<Contexts>>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response, RestError> {
    let body = json_body(body)?;
    if body.kind != "jupyter" {
        return Err(RestError::bad_request(format!(
            "type {:?} is not supported: use \"jupyter\"",
            body.kind
        )));
    }
    if body.language != "python" {
        return Err(RestError::bad_request(format!(
            "language {:?} is not supported: use \"python\"",
            body.language
        )));
    }
    let (sandbox, owns) = match &body.sandbox_id {
        Some(id) => {
            let id = SandboxId::parse(id).ok_or_else(|| {
                RestError::bad_request(format!("sandbox_id {id:?} is not a sandbox id"))
            })?;
            // REST has no token: a sandbox a token owns is not there for it (the same answer as
            // for one that does not exist, so REST cannot probe for ids either).
            match state.manager.get(&id) {
                Ok(sb) if sb.owner == ANONYMOUS => {}
                _ => return Err(RestError::bad_request(format!("sandbox {id} not found"))),
            }
            (id, false)
        }
        None => match state.manager.take_warm().await {
            Some(warm) => (warm.id, true),
            None => {
                let labels = HashMap::from([(OWNER_LABEL.0.to_owned(), OWNER_LABEL.1.to_owned())]);
                (
                    state
                        .manager
                        .create_with("", 0.0, 0, labels, false)
                        .await?
                        .id,
                    true,
                )
            }
        },
    };
    let created = async {
        let mut request = req(
            &sandbox,
            CreateContextRequest {
                language: body.language.clone(),
                name: body.session_name.clone().unwrap_or_default(),
                cwd: body.working_dir.clone().unwrap_or_default(),
            },
        );
        request.set_timeout(CREATE_DEADLINE);
        let mut client = state.client(&sandbox)?;
        match tokio::time::timeout(CREATE_DEADLINE, client.create_context(request)).await {
            Ok(r) => r
                .map(tonic::Response::into_inner)
                .map_err(|s| match s.code() {
                    tonic::Code::NotFound | tonic::Code::InvalidArgument => {
                        RestError::bad_request(s.message())
                    }
                    _ => RestError::from_status(&s),
                }),
            Err(_) => Err(no_answer(&sandbox, CREATE_DEADLINE)),
        }
    }
    .await;
    let context = match created {
        Ok(c) => c,
        Err(e) => {
            if owns {
                let _ = state.manager.destroy(&sandbox).await;
            }
            return Err(e);
        }
    };
    state.routes().insert(
        context.context_id.clone(),
        Route {
            sandbox: sandbox.clone(),
            owns_sandbox: owns,
        },
    );
    Ok((http::StatusCode::CREATED, Json(view(&context, &sandbox))).into_response())
}

/// `GET /api/v1/contexts`
pub async fn list(State(state): State<Arc<Contexts>>) -> Json<Vec<ContextView>> {
    let mut all: Vec<ContextView> = state
        .discover()
        .await
        .0
        .iter()
        .map(|(r, c)| view(c, &r.sandbox))
        .collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Json(all)
}

/// `GET /api/v1/contexts/{id}`
pub async fn get(
    State(state): State<Arc<Contexts>>,
    Path(id): Path<String>,
) -> Result<Json<ContextView>, RestError> {
    let route = state.route(&id).await?;
    let contexts = state.contexts_in(&route.sandbox, CALL_DEADLINE).await?;
    let c = contexts
        .iter()
        .find(|c| c.context_id == id)
        .ok_or_else(RestError::context_not_found)?;
    Ok(Json(view(c, &route.sandbox)))
}

/// `DELETE /api/v1/contexts/{id}`
pub async fn delete(
    State(state): State<Arc<Contexts>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, RestError> {
    let route = state.route(&id).await?;
    let mut client = state.client(&route.sandbox)?;
    let request = req(
        &route.sandbox,
        DeleteContextRequest {
            context_id: id.clone(),
        },
    );
    within(
        CALL_DEADLINE,
        &route.sandbox,
        client.delete_context(request),
    )
    .await?;
    state.routes().remove(&id);
    if route.owns_sandbox {
        state.manager.destroy(&route.sandbox).await?;
    }
    Ok(Json(json!({ "success": true, "context_id": id })))
}

/// What one execution produced.
#[derive(Default)]
struct Collected {
    stdout: String,
    stderr: String,
    results: Vec<Value>,
    error: Option<Value>,
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
            Some(Event::Result(r)) => self
                .results
                .push(json!({ "data": r.data, "is_main_result": r.is_main_result })),
            Some(Event::Error(e)) => {
                if !self.stderr.is_empty() && !self.stderr.ends_with('\n') {
                    self.stderr.push('\n');
                }
                self.stderr.push_str(&e.traceback.join("\n"));
                self.stderr.push('\n');
                self.error =
                    Some(json!({ "name": e.name, "value": e.value, "traceback": e.traceback }));
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
fn event_line(ev: &ExecEvent) -> Option<Value> {
    Some(match ev.event.as_ref()? {
        Event::Stdout(b) => json!({ "type": "stdout", "data": String::from_utf8_lossy(b) }),
        Event::Stderr(b) => json!({ "type": "stderr", "data": String::from_utf8_lossy(b) }),
        Event::Result(r) => {
            json!({ "type": "result", "data": r.data, "is_main_result": r.is_main_result })
        }
        Event::Error(e) => {
            json!({ "type": "error", "name": e.name, "value": e.value, "traceback": e.traceback })
        }
        Event::Exit(x) => json!({
            "type": "done",
            "success": !x.killed && x.code == 0,
            "execution_time": x.duration_ms as f64 / 1000.0,
            "killed": x.killed,
            "reason": x.reason,
            "state_lost": x.state_lost,
        }),
    })
}

/// `POST /api/v1/contexts/{id}/execute`; with `Accept: application/x-ndjson` the events stream
/// as they happen, one JSON object per line.
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
    let route = state.route(&id).await?;
    let mut request = req(
        &route.sandbox,
        RunCodeRequest {
            context_id: id.clone(),
            code: body.code,
            timeout_seconds: timeout,
        },
    );
    // The sandbox enforces the timeout; this deadline (for the whole stream, not only its
    // start) guards against a daemon that hangs.
    let deadline = Duration::from_secs_f64(timeout) + RUN_MARGIN;
    let until = tokio::time::Instant::now() + deadline;
    request.set_timeout(deadline);
    let mut client = state.client(&route.sandbox)?;
    let mut stream = within(deadline, &route.sandbox, client.run_code(request)).await?;

    let wants_stream = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if wants_stream {
        let lines = async_stream_lines(stream, until, no_answer(&route.sandbox, deadline));
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
            .map_err(|_| no_answer(&route.sandbox, deadline))?
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
    let mut resp = json!({
        "output": { "stdout": out.stdout, "stderr": out.stderr },
        "success": out.error.is_none() && !out.killed,
        "execution_time": out.duration_ms as f64 / 1000.0,
    });
    if !out.results.is_empty() {
        resp["results"] = Value::Array(out.results);
    }
    if let Some(e) = out.error {
        resp["error"] = e;
    }
    if out.state_lost {
        resp["state_lost"] = Value::Bool(true);
    }
    Ok(Json(resp).into_response())
}

/// The events as NDJSON lines; past `until` the stream ends with a `failed` line (`late`).
fn async_stream_lines(
    stream: tonic::Streaming<ExecEvent>,
    until: tokio::time::Instant,
    late: RestError,
) -> impl futures::Stream<Item = Result<bytes::Bytes, Infallible>> + Send {
    let late = Arc::new(late.body());
    futures::stream::unfold(Some(stream), move |state| {
        let late = late.clone();
        async move {
            let mut stream = state?;
            let failed = |mut line: Value| {
                line["type"] = json!("failed");
                Some((Ok(bytes::Bytes::from(format!("{line}\n"))), None))
            };
            let line = match tokio::time::timeout_at(until, stream.message()).await {
                Ok(Ok(Some(ev))) => match event_line(&ev) {
                    Some(v) => v,
                    None => json!({ "type": "unknown" }),
                },
                Ok(Ok(None)) => return None,
                Ok(Err(s)) => return failed(RestError::from_status(&s).body()),
                Err(_) => return failed((*late).clone()),
            };
            Some((Ok(bytes::Bytes::from(format!("{line}\n"))), Some(stream)))
        }
    })
}
