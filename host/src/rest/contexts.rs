//! The `/api/v1/contexts` handlers: create, list, describe, delete. Each context is a Jupyter
//! kernel in a sandbox — its own sandbox by default (destroyed with the context), or an existing
//! one named by `sandbox_id`. Executing code is `execute.rs`; finding a context's sandbox is
//! `discovery.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use agent_runtime_proto::v1::{Context, CreateContextRequest, DeleteContextRequest};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::{
    ContextErrors, ContextView, CreateBody, Deleted, ErrorBody, CONTEXT_LANGUAGE, CONTEXT_TYPE,
};
use super::call::{req, within, within_mapped, CALL_DEADLINE, CREATE_DEADLINE};
use super::discovery::{Contexts, Location};
use super::error::RestError;
use crate::egress::Policy;
use crate::ids::SandboxId;
use crate::sandboxes::{CreateSpec, ANONYMOUS, CONTEXT_OWNER_LABEL as OWNER_LABEL};

/// The body, or BAD_REQUEST saying what is wrong with it.
pub fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, RestError> {
    body.map(|Json(b)| b)
        .map_err(|r| RestError::bad_request(r.body_text()))
}

fn view(c: &Context, sandbox: &SandboxId) -> ContextView {
    ContextView {
        context_id: c.context_id.clone(),
        kind: CONTEXT_TYPE.into(),
        language: c.language.clone(),
        session_name: c.name.clone(),
        status: c.status.clone(),
        created_at: c.created_at.clone(),
        working_dir: c.cwd.clone(),
        sandbox_id: sandbox.to_string(),
    }
}

/// Create a context.
#[utoipa::path(post, path = "/contexts", operation_id = "createContext", request_body = CreateBody, responses(
    (status = 201, description = "Created", body = ContextView),
    (status = 400, description = "BAD_REQUEST: a malformed body, an unsupported type or language, \
        an unknown sandbox_id", body = ErrorBody),
    (status = 401, description = "UNAUTHORIZED: missing or wrong credentials", body = ErrorBody),
    (status = 408, description = "TIMEOUT: the sandbox did not answer in time", body = ErrorBody),
    (status = 429, description = "RESOURCE_EXHAUSTED: the host's sandbox cap or memory budget \
        is reached", body = ErrorBody),
    (status = 500, description = "INTERNAL", body = ErrorBody),
))]
pub async fn create(
    State(state): State<Arc<Contexts>>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response, RestError> {
    let body = json_body(body)?;
    if body.kind != CONTEXT_TYPE {
        return Err(RestError::bad_request(format!(
            "type {:?} is not supported: use {CONTEXT_TYPE:?}",
            body.kind
        )));
    }
    if body.language != CONTEXT_LANGUAGE {
        return Err(RestError::bad_request(format!(
            "language {:?} is not supported: use {CONTEXT_LANGUAGE:?}",
            body.language
        )));
    }
    let manager = state.manager();
    let egress_given =
        body.allow_domains.is_some() || body.deny_domains.is_some() || body.network.is_some();
    let policy = Policy::from_parts(
        body.network.as_deref().unwrap_or_default(),
        body.allow_domains.as_deref().unwrap_or_default(),
        body.deny_domains.as_deref().unwrap_or_default(),
    )
    .map_err(|e| RestError::bad_request(e.to_string()))?;
    if egress_given && body.sandbox_id.is_some() {
        return Err(RestError::bad_request(
            "allow_domains, deny_domains and network set up a new sandbox; an existing sandbox's \
             policy is changed with `agent-runtime sandbox network ID`",
        ));
    }
    let (sandbox, owns) = match &body.sandbox_id {
        Some(id) => {
            let id = SandboxId::parse(id).ok_or_else(|| {
                RestError::bad_request(format!("sandbox_id {id:?} is not a sandbox id"))
            })?;
            // REST has no token: a sandbox a token owns is not there for it (the same answer as
            // for one that does not exist, so REST cannot probe for ids either).
            match manager.get(&id) {
                Ok(sb) if sb.owner == ANONYMOUS => {}
                _ => return Err(RestError::bad_request(format!("sandbox {id} not found"))),
            }
            (id, false)
        }
        // From a warm pool with a started kernel when one has a sandbox ready (its label and
        // egress policy applied as it is handed out), else started now.
        None => {
            let labels = HashMap::from([(OWNER_LABEL.0.to_owned(), OWNER_LABEL.1.to_owned())]);
            let made = manager
                .create(CreateSpec {
                    labels,
                    egress: policy,
                    prewarm_kernel: true,
                    ..CreateSpec::default()
                })
                .await?;
            (made.id, true)
        }
    };
    let created = async {
        let request = req(
            &sandbox,
            CreateContextRequest {
                language: body.language.clone(),
                name: body.session_name.clone().unwrap_or_default(),
                cwd: body.working_dir.clone().unwrap_or_default(),
            },
            CREATE_DEADLINE,
        );
        let mut client = state.client(&sandbox).await?;
        within_mapped(
            CREATE_DEADLINE,
            &sandbox,
            client.create_context(request),
            |s| match s.code() {
                // A working directory that does not exist, a language the daemon lacks.
                tonic::Code::NotFound | tonic::Code::InvalidArgument => {
                    RestError::bad_request(s.message())
                }
                _ => RestError::from_status(s),
            },
        )
        .await
    }
    .await;
    let context = match created {
        Ok(c) => c,
        Err(e) => {
            if owns {
                let _ = manager.destroy(&sandbox).await;
            }
            return Err(e);
        }
    };
    state.learn(
        context.context_id.clone(),
        Location {
            sandbox: sandbox.clone(),
            owns_sandbox: owns,
        },
    );
    Ok((http::StatusCode::CREATED, Json(view(&context, &sandbox))).into_response())
}

/// List contexts (oldest first).
#[utoipa::path(get, path = "/contexts", operation_id = "listContexts", responses(
    (status = 200, description = "Contexts", body = Vec<ContextView>),
    (status = 401, description = "UNAUTHORIZED: missing or wrong credentials", body = ErrorBody),
))]
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

/// Describe a context.
#[utoipa::path(get, path = "/contexts/{id}", operation_id = "getContext", params(("id" = String, Path, description = "The context's id")),
responses(
    (status = 200, description = "Context", body = ContextView),
    ContextErrors,
))]
pub async fn get(
    State(state): State<Arc<Contexts>>,
    Path(id): Path<String>,
) -> Result<Json<ContextView>, RestError> {
    let at = state.locate(&id).await?;
    let contexts = state.contexts_in(&at.sandbox, CALL_DEADLINE).await?;
    let c = contexts
        .iter()
        .find(|c| c.context_id == id)
        .ok_or_else(RestError::context_not_found)?;
    Ok(Json(view(c, &at.sandbox)))
}

/// Delete a context and free its kernel (and its sandbox, when the API created one for it).
#[utoipa::path(delete, path = "/contexts/{id}", operation_id = "deleteContext", params(("id" = String, Path, description = "The context's id")),
responses(
    (status = 200, description = "Deleted", body = Deleted),
    ContextErrors,
))]
pub async fn delete(
    State(state): State<Arc<Contexts>>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, RestError> {
    let at = state.locate(&id).await?;
    let mut client = state.client(&at.sandbox).await?;
    let request = req(
        &at.sandbox,
        DeleteContextRequest {
            context_id: id.clone(),
        },
        CALL_DEADLINE,
    );
    within(CALL_DEADLINE, &at.sandbox, client.delete_context(request)).await?;
    state.forget(&id);
    if at.owns_sandbox {
        state.manager().destroy(&at.sandbox).await?;
    }
    Ok(Json(Deleted {
        success: true,
        context_id: id,
    }))
}
