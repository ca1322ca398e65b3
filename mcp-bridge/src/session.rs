//! One MCP session's resources: the sandboxes it created and the contexts it started.
//!
//! A sandbox is created on first need, so `code_run` works without `sandbox_create`. When the
//! session ends (stdio EOF, HTTP DELETE or idle expiry) everything it created is destroyed:
//! [`Session::close`] does it explicitly, and `Drop` does it for sessions nobody closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use agent_runtime_proto::v1::{
    CreateSandboxRequest, DeleteContextRequest, DestroySandboxRequest, SandboxInfo,
};
use tokio_util::task::TaskTracker;

use crate::error::ToolError;
use crate::host_conn::{with_sandbox, HostConn};
use crate::ids::{ContextId, SandboxId};

/// Label the bridge puts on the sandboxes it creates, with the session number as value.
pub const SESSION_LABEL: &str = "mcp-bridge-session";

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Settings every session shares.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Most sandboxes one session may have at once.
    pub max_sandboxes: usize,
}

#[derive(Default)]
struct State {
    /// Sandboxes this session created, oldest first.
    sandboxes: Vec<SandboxId>,
    /// Contexts this session started, and where.
    contexts: HashMap<ContextId, SandboxId>,
    closed: bool,
}

/// One MCP session.
pub struct Session {
    id: u64,
    host: Arc<HostConn>,
    limits: SessionLimits,
    state: Mutex<State>,
    /// Serialises sandbox creation, so two first calls at once make one sandbox. A tokio mutex on
    /// purpose: it is held across the create call.
    create_gate: tokio::sync::Mutex<()>,
    /// Cleanup tasks spawned on drop; the process waits for them before it exits.
    tracker: TaskTracker,
}

impl Session {
    /// A new session; nothing is created until a tool needs it.
    pub fn new(host: Arc<HostConn>, limits: SessionLimits, tracker: TaskTracker) -> Self {
        Self {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            host,
            limits,
            state: Mutex::new(State::default()),
            create_gate: tokio::sync::Mutex::new(()),
            tracker,
        }
    }

    /// The host connection.
    pub fn host(&self) -> &HostConn {
        &self.host
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// The sandboxes this session created.
    pub fn sandboxes(&self) -> Vec<SandboxId> {
        self.with_state(|s| s.sandboxes.clone())
    }

    /// Creates a sandbox for this session (counted against its cap).
    pub async fn create_sandbox(
        &self,
        mut req: CreateSandboxRequest,
    ) -> Result<SandboxInfo, ToolError> {
        let _gate = self.create_gate.lock().await;
        self.create_locked(&mut req).await
    }

    async fn create_locked(
        &self,
        req: &mut CreateSandboxRequest,
    ) -> Result<SandboxInfo, ToolError> {
        let (count, closed) = self.with_state(|s| (s.sandboxes.len(), s.closed));
        if closed {
            return Err(ToolError::Unavailable("this MCP session has ended".into()));
        }
        if count >= self.limits.max_sandboxes {
            return Err(ToolError::ResourceExhausted(format!(
                "this session already has {count} sandboxes (the cap is {}): reuse one by passing \
                 its sandbox_id, or sandbox_destroy one first",
                self.limits.max_sandboxes
            )));
        }
        req.labels
            .insert(SESSION_LABEL.to_owned(), self.id.to_string());
        let mut attempt = 0;
        let info = loop {
            attempt += 1;
            let mut client = self.host.sandboxes().await?;
            match client.create(req.clone()).await {
                Ok(r) => break r.into_inner(),
                // The host may have exited while idle: start one again and retry once.
                Err(s) if s.code() == tonic::Code::Unavailable && attempt == 1 => {
                    self.host.mark_gone().await;
                }
                Err(s) => return Err(ToolError::from_status("sandbox create", &s)),
            }
        };
        let id = SandboxId::new(info.sandbox_id.clone());
        let orphan = self.with_state(|s| {
            if s.closed {
                true
            } else {
                s.sandboxes.push(id.clone());
                false
            }
        });
        if orphan {
            // The session ended while we created it: do not leak it.
            self.destroy_quietly(&id).await;
            return Err(ToolError::Unavailable("this MCP session has ended".into()));
        }
        tracing::info!(session = self.id, sandbox_id = %id, "sandbox created");
        Ok(info)
    }

    /// The sandbox a call goes to: the given one, else the session's only one, else a new one.
    pub async fn resolve(&self, explicit: Option<&str>) -> Result<SandboxId, ToolError> {
        if let Some(id) = explicit.map(str::trim).filter(|s| !s.is_empty()) {
            return Ok(SandboxId::new(id));
        }
        if let Some(id) = self.only_sandbox()? {
            return Ok(id);
        }
        let _gate = self.create_gate.lock().await;
        // Another call may have created it while we waited.
        if let Some(id) = self.only_sandbox()? {
            return Ok(id);
        }
        let info = self
            .create_locked(&mut CreateSandboxRequest::default())
            .await?;
        Ok(SandboxId::new(info.sandbox_id))
    }

    /// The session's sandbox when it has exactly one; an error when it has several.
    fn only_sandbox(&self) -> Result<Option<SandboxId>, ToolError> {
        let list = self.sandboxes();
        match list.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => Err(ToolError::BadRequest(format!(
                "this session has {} sandboxes ({}): pass sandbox_id to say which one",
                many.len(),
                many.iter()
                    .map(SandboxId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The sandbox to use for an existing sandbox without creating one (None: the session has none).
    pub fn existing(&self, explicit: Option<&str>) -> Result<Option<SandboxId>, ToolError> {
        if let Some(id) = explicit.map(str::trim).filter(|s| !s.is_empty()) {
            return Ok(Some(SandboxId::new(id)));
        }
        self.only_sandbox()
    }

    /// Where a context lives: the given sandbox, the one this session started it in, else the
    /// session's only sandbox. `ContextNotFound` when there is nowhere to look.
    pub fn context_sandbox(
        &self,
        ctx: &ContextId,
        explicit: Option<&str>,
    ) -> Result<SandboxId, ToolError> {
        if let Some(id) = explicit.map(str::trim).filter(|s| !s.is_empty()) {
            return Ok(SandboxId::new(id));
        }
        if let Some(sb) = self.with_state(|s| s.contexts.get(ctx).cloned()) {
            return Ok(sb);
        }
        match self.sandboxes().as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(ToolError::ContextNotFound),
        }
    }

    /// Records a context this session started.
    pub fn add_context(&self, ctx: ContextId, sandbox: SandboxId) {
        self.with_state(|s| {
            s.contexts.insert(ctx, sandbox);
        });
    }

    /// Forgets a context (stopped).
    pub fn forget_context(&self, ctx: &ContextId) {
        self.with_state(|s| {
            s.contexts.remove(ctx);
        });
    }

    /// Forgets a sandbox (destroyed) and its contexts.
    pub fn forget_sandbox(&self, id: &SandboxId) {
        self.with_state(|s| {
            s.sandboxes.retain(|x| x != id);
            s.contexts.retain(|_, sb| sb != id);
        });
    }

    async fn destroy_quietly(&self, id: &SandboxId) {
        destroy(&self.host, id, self.id).await;
    }

    /// Destroys everything this session created; later calls fail. Safe to call twice.
    pub async fn close(&self) {
        let (sandboxes, contexts) = self.take_all();
        cleanup(&self.host, self.id, sandboxes, contexts).await;
    }

    fn take_all(&self) -> (Vec<SandboxId>, Vec<(ContextId, SandboxId)>) {
        self.with_state(|s| {
            s.closed = true;
            let sandboxes = std::mem::take(&mut s.sandboxes);
            // Contexts in sandboxes we destroy anyway need no separate stop.
            let contexts = std::mem::take(&mut s.contexts)
                .into_iter()
                .filter(|(_, sb)| !sandboxes.contains(sb))
                .collect();
            (sandboxes, contexts)
        })
    }
}

async fn destroy(host: &HostConn, id: &SandboxId, session: u64) {
    let result = match host.sandboxes().await {
        Ok(mut c) => c
            .destroy(DestroySandboxRequest {
                sandbox_id: id.as_str().to_owned(),
            })
            .await
            .map(|_| ())
            .map_err(|s| s.message().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => tracing::info!(session, sandbox_id = %id, "sandbox destroyed"),
        Err(e) => {
            tracing::warn!(session, sandbox_id = %id, error = %e, "destroying sandbox failed")
        }
    }
}

async fn cleanup(
    host: &HostConn,
    session: u64,
    sandboxes: Vec<SandboxId>,
    contexts: Vec<(ContextId, SandboxId)>,
) {
    for (ctx, sb) in contexts {
        if let Ok(mut c) = host.sandbox().await {
            if let Ok(req) = with_sandbox(
                &sb,
                DeleteContextRequest {
                    context_id: ctx.as_str().to_owned(),
                },
            ) {
                let _ = c.delete_context(req).await;
            }
        }
    }
    for id in sandboxes {
        destroy(host, &id, session).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let (sandboxes, contexts) = self.take_all();
        if sandboxes.is_empty() && contexts.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                session = self.id,
                "no runtime to clean up the session's sandboxes"
            );
            return;
        };
        let host = self.host.clone();
        let id = self.id;
        tracing::info!(session = id, "session ended: destroying its sandboxes");
        self.tracker.spawn_on(
            async move { cleanup(&host, id, sandboxes, contexts).await },
            &rt,
        );
    }
}

/// The live sessions of an HTTP server, so a shutdown can close them all (sessions still open
/// when the process stops would otherwise leave their sandboxes behind).
#[derive(Clone, Default)]
pub struct SessionRegistry {
    sessions: Arc<Mutex<Vec<std::sync::Weak<Session>>>>,
}

impl SessionRegistry {
    /// Remembers a session (weakly: it still ends when its handler is dropped).
    pub fn register(&self, session: &Arc<Session>) {
        let mut list = match self.sessions.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(session));
    }

    /// Closes every session still alive.
    pub async fn close_all(&self) {
        let live: Vec<Arc<Session>> = {
            let list = match self.sessions.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            list.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        for s in live {
            s.close().await;
        }
    }
}
