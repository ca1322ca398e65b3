//! One MCP session's resources: the sandboxes it created and the contexts it started.
//!
//! A sandbox is created on first need, so `code_run` works without `sandbox_create`. When the
//! session ends (stdio EOF, HTTP DELETE or idle expiry) everything it created is destroyed:
//! [`Session::close`] does it explicitly, and `Drop` does it for sessions nobody closed. Closing
//! first ends the session's in-flight calls (a stuck call must not keep a sandbox alive), and
//! cleanup has its own deadline.
//!
//! A session acts only on sandboxes it created: an explicit `sandbox_id` naming any other is
//! refused as NOT_FOUND, so learning another session's id gives no access to its sandbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent_runtime_proto::v1::{
    CreateSandboxRequest, DeleteContextRequest, DestroySandboxRequest, SandboxInfo,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use agent_runtime_client::{with_sandbox, ContextId, Rpc, SandboxId};

use crate::error::ToolError;
use crate::host_conn::{HostConn, CREATE_DEADLINE};

/// Label the bridge puts on the sandboxes it creates; the value is `<bridge pid>-<session number>`.
pub const SESSION_LABEL: &str = "mcp-bridge-session";

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Deadline of each cleanup call (destroy, delete context); they run concurrently.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(10);

/// Settings every session shares.
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Most sandboxes one session may have at once.
    pub max_sandboxes: usize,
    /// Sandboxes every session may use besides its own (`mcp-bridge --sandbox`): made
    /// elsewhere, so never destroyed when a session ends.
    pub given: Vec<SandboxId>,
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
    state: Arc<Mutex<State>>,
    /// Cancelled when the session ends: in-flight calls stop (see `Bridge::call_tool`).
    ended: CancellationToken,
    /// The Streamable HTTP session id (`mcp-session-id`), learnt from the first tool call.
    http_id: OnceLock<String>,
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
            state: Arc::new(Mutex::new(State::default())),
            ended: CancellationToken::new(),
            http_id: OnceLock::new(),
            create_gate: tokio::sync::Mutex::new(()),
            tracker,
        }
    }

    /// The host connection.
    pub fn host(&self) -> &HostConn {
        &self.host
    }

    /// Remembers the HTTP session id this session serves (the first one given sticks).
    pub fn bind_http_id(&self, id: &str) {
        let _ = self.http_id.set(id.to_owned());
    }

    /// Cancelled once the session has ended (closed or dropped).
    pub fn ended(&self) -> &CancellationToken {
        &self.ended
    }

    fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        locked(&self.state, f)
    }

    /// `id` when this session created it or it was given at start-up; NOT_FOUND otherwise
    /// (sessions cannot reach each other's sandboxes, nor ones made over gRPC or REST).
    pub fn owned(&self, id: &str) -> Result<SandboxId, ToolError> {
        let id = id.trim();
        if let Some(mine) = SandboxId::parse(id).filter(|sb| self.sandboxes().contains(sb)) {
            return Ok(mine);
        }
        Err(ToolError::NotFound(format!(
            "sandbox {id} is not one of this session's sandboxes: a session can use only the \
             sandboxes it created or the bridge was started with (sandbox_list shows them; \
             omit sandbox_id or call sandbox_create for a new one)"
        )))
    }

    /// The sandboxes this session may use: those it created, then those given at start-up.
    pub fn sandboxes(&self) -> Vec<SandboxId> {
        let mut all = self.with_state(|s| s.sandboxes.clone());
        for given in &self.limits.given {
            if !all.contains(given) {
                all.push(given.clone());
            }
        }
        all
    }

    /// Creates a sandbox for this session (counted against its cap).
    pub async fn create_sandbox(
        &self,
        mut req: CreateSandboxRequest,
    ) -> Result<SandboxInfo, ToolError> {
        let _gate = self.create_gate.lock().await;
        Ok(self.create_locked(&mut req).await?.1)
    }

    async fn create_locked(
        &self,
        req: &mut CreateSandboxRequest,
    ) -> Result<(SandboxId, SandboxInfo), ToolError> {
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
        req.labels.insert(
            SESSION_LABEL.to_owned(),
            format!("{}-{}", std::process::id(), self.id),
        );
        // The create runs in a task of its own: a call that is cancelled (or a session that
        // ends) while the host creates the sandbox must still record or destroy it, not leak it.
        let (host, state, session, req) =
            (self.host.clone(), self.state.clone(), self.id, req.clone());
        let task = self.tracker.spawn(async move {
            let info = create(&host, req).await?;
            let id = SandboxId::parse(&info.sandbox_id).ok_or_else(|| {
                ToolError::Internal(format!(
                    "the host answered with an invalid sandbox id {:?}",
                    info.sandbox_id
                ))
            })?;
            let orphan = locked(&state, |s| {
                if s.closed {
                    true
                } else {
                    s.sandboxes.push(id.clone());
                    false
                }
            });
            if orphan {
                // The session ended while we created it: do not leak it.
                destroy(&host, &id, session).await;
                return Err(ToolError::Unavailable("this MCP session has ended".into()));
            }
            tracing::info!(session, sandbox_id = %id, "sandbox created");
            Ok((id, info))
        });
        task.await
            .map_err(|e| ToolError::Internal(format!("sandbox create failed: {e}")))?
    }

    /// The sandbox a call goes to: the given one (if the session owns it), else the session's
    /// only one, else a new one.
    pub async fn resolve(&self, explicit: Option<&str>) -> Result<SandboxId, ToolError> {
        if let Some(id) = explicit.map(str::trim).filter(|s| !s.is_empty()) {
            return self.owned(id);
        }
        if let Some(id) = self.only_sandbox()? {
            return Ok(id);
        }
        let _gate = self.create_gate.lock().await;
        // Another call may have created it while we waited.
        if let Some(id) = self.only_sandbox()? {
            return Ok(id);
        }
        let (id, _) = self
            .create_locked(&mut CreateSandboxRequest::default())
            .await?;
        Ok(id)
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
            return self.owned(id).map(Some);
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
            return self.owned(id);
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

    /// Ends the session: stops its in-flight calls, then destroys everything it created (each
    /// call with [`CLEANUP_DEADLINE`]); later calls fail. Safe to call twice.
    pub async fn close(&self) {
        self.ended.cancel();
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

fn locked<R>(state: &Mutex<State>, f: impl FnOnce(&mut State) -> R) -> R {
    let mut guard = match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut guard)
}

/// One sandbox create with its deadline; a host gone while idle is started again, once.
async fn create(host: &HostConn, req: CreateSandboxRequest) -> Result<SandboxInfo, ToolError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        host.ensure().await?;
        match host.lifecycle(req.clone(), CREATE_DEADLINE).await {
            Ok(info) => return Ok(info),
            // The host may have exited while idle: start one again and retry once.
            Err(s) if s.code() == tonic::Code::Unavailable && attempt == 1 => {
                host.mark_gone().await;
            }
            Err(s) => return Err(ToolError::from_status("sandbox create", &s)),
        }
    }
}

/// Destroys a sandbox within [`CLEANUP_DEADLINE`], never starting a host to do it.
async fn destroy(host: &HostConn, id: &SandboxId, session: u64) {
    let req = DestroySandboxRequest {
        sandbox_id: id.as_str().to_owned(),
    };
    let destroyed = host.lifecycle(req, CLEANUP_DEADLINE);
    let result = match tokio::time::timeout(CLEANUP_DEADLINE, destroyed).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(s)) => Err(s.message().to_owned()),
        Err(_) => Err(format!("no answer within {}s", CLEANUP_DEADLINE.as_secs())),
    };
    match result {
        Ok(()) => tracing::info!(session, sandbox_id = %id, "sandbox destroyed"),
        Err(e) => {
            tracing::warn!(session, sandbox_id = %id, error = %e, "destroying sandbox failed")
        }
    }
}

/// Stops the contexts, then destroys the sandboxes, each call concurrently and with its deadline.
async fn cleanup(
    host: &Arc<HostConn>,
    session: u64,
    sandboxes: Vec<SandboxId>,
    contexts: Vec<(ContextId, SandboxId)>,
) {
    let mut calls = JoinSet::new();
    for (ctx, sb) in contexts {
        let mut req = with_sandbox(
            DeleteContextRequest {
                context_id: ctx.as_str().to_owned(),
            },
            &sb,
        );
        req.set_timeout(CLEANUP_DEADLINE);
        let stopped = <DeleteContextRequest as Rpc>::send(host.channel_now(), req);
        calls.spawn(async move {
            let _ = tokio::time::timeout(CLEANUP_DEADLINE, stopped).await;
        });
    }
    calls.join_all().await;
    let mut calls = JoinSet::new();
    for id in sandboxes {
        let host = host.clone();
        calls.spawn(async move { destroy(&host, &id, session).await });
    }
    calls.join_all().await;
}

impl Drop for Session {
    fn drop(&mut self) {
        self.ended.cancel();
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

    /// The live session serving HTTP session `id`, if it made a tool call.
    pub fn find_http(&self, id: &str) -> Option<Arc<Session>> {
        let list = match self.sessions.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        list.iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|s| s.http_id.get().is_some_and(|h| h == id))
    }

    /// Closes every session still alive, all at once (each close is bounded).
    pub async fn close_all(&self) {
        let live: Vec<Arc<Session>> = {
            let list = match self.sessions.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            list.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        let mut closing = JoinSet::new();
        for s in live {
            closing.spawn(async move { s.close().await });
        }
        closing.join_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_conn::SpawnPolicy;

    fn session() -> Session {
        let host = HostConn::new(
            "http://127.0.0.1:1",
            SpawnPolicy {
                enabled: false,
                binary: None,
                idle_exit_secs: 1,
            },
        )
        .expect("address");
        Session::new(
            Arc::new(host),
            SessionLimits {
                max_sandboxes: 2,
                given: Vec::new(),
            },
            TaskTracker::new(),
        )
    }

    #[tokio::test]
    async fn a_session_refuses_sandboxes_it_did_not_create() {
        let s = session();
        let refused = |r: Result<SandboxId, ToolError>| match r {
            Err(ToolError::NotFound(m)) => {
                assert!(
                    m.starts_with("sandbox sb-other is not one of this session's sandboxes"),
                    "{m}"
                );
            }
            other => panic!("not refused: {other:?}"),
        };
        // No host is reached: the check comes before any call.
        refused(s.resolve(Some("sb-other")).await);
        refused(s.owned(" sb-other "));
        refused(
            s.existing(Some("sb-other"))
                .and_then(|o| o.ok_or(ToolError::Internal("none".into()))),
        );
        let ctx = ContextId::parse("ctx-1").expect("a context id");
        refused(s.context_sandbox(&ctx, Some("sb-other")));

        let mine = SandboxId::parse("sb-a1").expect("a sandbox id");
        locked(&s.state, |st| st.sandboxes.push(mine.clone()));
        assert_eq!(s.resolve(Some("sb-a1")).await.expect("own sandbox"), mine);
        refused(s.resolve(Some("sb-other")).await);
        // A well-formed id of someone else's sandbox is refused alike.
        match s.resolve(Some("sb-b2")).await {
            Err(ToolError::NotFound(m)) => assert!(
                m.starts_with("sandbox sb-b2 is not one of this session's sandboxes"),
                "{m}"
            ),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[tokio::test]
    async fn closing_ends_the_session() {
        let s = session();
        assert!(!s.ended().is_cancelled());
        s.close().await;
        assert!(s.ended().is_cancelled());
        assert!(matches!(
            s.resolve(None).await,
            Err(ToolError::Unavailable(_))
        ));
    }
}
