//! The contexts of this sandbox: create (from a spare kernel started ahead when there is one),
//! list, run, interrupt, restart, delete, and kill them all at shutdown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use agent_runtime_proto::v1::{CreateContextRequest, RunCodeRequest};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::cell;
use super::context::{Context, ContextId};
use super::kernel::{self, Kernel, Live};
use crate::error::{Error, Result};
use crate::run_events::{EventSender, EventStream};
use crate::run_limits::timeout_from;
use crate::workspace::Workspace;

/// Most contexts one sandbox may have (each kernel takes 50-80 MB).
pub const MAX_CONTEXTS: usize = 16;
/// How long DeleteContext waits for a kernel to exit on its own before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// Environment variable that starts a spare kernel when the daemon starts.
pub const PREWARM_ENV: &str = "SANDBOXD_PREWARM_KERNEL";

/// A spare kernel on its way, and what makes it start now if it is still waiting to.
struct SpareKernel {
    kernel: oneshot::Receiver<Result<Kernel>>,
    hurry: Arc<tokio::sync::Notify>,
}

/// How long after a context took the spare kernel the next one starts: starting a kernel takes
/// about a second of the sandbox's CPU, which the new context's first calls need (REST `1+1`
/// went from 3 to 13 ms beside it). A create that comes meanwhile starts it at once.
const REFILL_DELAY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Registry {
    contexts: HashMap<ContextId, Arc<Context>>,
    /// Creates in progress, counted against the cap so concurrent creates cannot overshoot it.
    pending: usize,
}

/// The Contexts component.
pub struct Contexts {
    workspace: Workspace,
    live: Arc<Live>,
    registry: Mutex<Registry>,
    /// The next kernel, started ahead in the background (in the workspace directory).
    spare: Mutex<Option<SpareKernel>>,
    spare_enabled: AtomicBool,
    /// True once a spare kernel has started (the daemon's `warm` health says so).
    spare_up: tokio::sync::watch::Sender<bool>,
    /// Stops the spare starter; cancelled at shutdown.
    stop: CancellationToken,
}

impl Contexts {
    /// Contexts whose relative paths resolve under `workspace`.
    pub fn new(workspace: Workspace, stop: CancellationToken) -> Self {
        Self {
            workspace,
            live: Arc::default(),
            registry: Mutex::default(),
            spare: Mutex::default(),
            spare_enabled: AtomicBool::new(false),
            spare_up: tokio::sync::watch::Sender::new(false),
            stop,
        }
    }

    /// Becomes true when a spare kernel has started (it stays true).
    pub fn spare_started(&self) -> tokio::sync::watch::Receiver<bool> {
        self.spare_up.subscribe()
    }

    /// Keeps one ready kernel started ahead from now on.
    pub fn enable_spare(&self) {
        self.spare_enabled.store(true, Ordering::SeqCst);
        self.refill_spare(Duration::ZERO);
    }

    fn refill_spare(&self, delay: Duration) {
        if !self.spare_enabled.load(Ordering::SeqCst) || self.stop.is_cancelled() {
            return;
        }
        let Ok(mut slot) = self.spare.lock() else {
            return;
        };
        if slot.is_some() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let hurry = Arc::new(tokio::sync::Notify::new());
        *slot = Some(SpareKernel {
            kernel: rx,
            hurry: hurry.clone(),
        });
        let root = self.workspace.root().to_path_buf();
        let live = self.live.clone();
        let stop = self.stop.clone();
        let up = self.spare_up.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                () = hurry.notified() => {}
            }
            tokio::select! {
                // Dropping a half-started kernel kills it.
                () = stop.cancelled() => {}
                started = Kernel::start(&root, &live) => {
                    match &started {
                        Ok(_) => {
                            if !up.send_replace(true) {
                                tracing::info!("spare kernel started ahead of use");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "the spare kernel did not start"),
                    }
                    // A spare nobody will take (shutdown) is dropped, and so killed.
                    let _ = tx.send(started);
                }
            }
        });
    }

    /// A ready kernel in `cwd`: the spare when there is a live one, else a fresh one.
    async fn kernel_for(&self, cwd: &Path) -> Result<(Kernel, bool)> {
        let spare = self.spare.lock().ok().and_then(|mut s| s.take());
        let spare = match spare {
            Some(SpareKernel { kernel, hurry }) => {
                // Still waiting out its delay: it starts now.
                hurry.notify_one();
                match kernel.await {
                    Ok(Ok(k)) if !k.exited().is_cancelled() => Some(k),
                    _ => None,
                }
            }
            None => None,
        };
        let (mut kernel, from_spare) = match spare {
            Some(k) => (k, true),
            None => (Kernel::start(cwd, &self.live).await?, false),
        };
        if kernel.cwd() != cwd {
            kernel.chdir(cwd).await?;
        }
        // A spare started before the host switched proxy variables on or off catches up.
        kernel.sync_env().await?;
        self.refill_spare(REFILL_DELAY);
        Ok((kernel, from_spare))
    }

    /// Starts a context.
    pub async fn create(
        &self,
        req: CreateContextRequest,
    ) -> Result<agent_runtime_proto::v1::Context> {
        let started = Instant::now();
        match req.language.trim().to_ascii_lowercase().as_str() {
            "" | "python" | "python3" => {}
            other => {
                return Err(Error::invalid(format!(
                    "unknown context language {other:?}; contexts run \"python\""
                )))
            }
        }
        let cwd = self.resolve_cwd(&req.cwd)?;
        self.reserve()?;
        let made = self.kernel_for(&cwd).await;
        let (kernel, from_spare) = match made {
            Ok(k) => k,
            Err(e) => {
                self.release(None);
                return Err(e);
            }
        };
        let context = Arc::new(Context::new(req.name, cwd, kernel));
        let reply = context.to_proto();
        self.release(Some(context));
        // From now on one kernel waits ahead, so the next create is fast.
        self.enable_spare();
        tracing::info!(
            context_id = reply.context_id,
            cwd = reply.cwd,
            from_spare,
            latency_ms = started.elapsed().as_millis() as u64,
            "context created"
        );
        Ok(reply)
    }

    fn resolve_cwd(&self, raw: &str) -> Result<PathBuf> {
        let cwd = self.workspace.resolve_or_root(raw)?;
        match std::fs::metadata(&cwd) {
            Ok(meta) if meta.is_dir() => Ok(cwd),
            Ok(_) => Err(Error::invalid(format!(
                "working directory {} is not a directory",
                cwd.display()
            ))),
            Err(_) => Err(Error::invalid(format!(
                "working directory {} does not exist; create it first (MakeDir)",
                cwd.display()
            ))),
        }
    }

    fn reserve(&self) -> Result<()> {
        let mut registry = self
            .registry
            .lock()
            .map_err(|_| Error::Internal("the context registry is poisoned".into()))?;
        if registry.contexts.len() + registry.pending >= MAX_CONTEXTS {
            return Err(Error::TooManyContexts(MAX_CONTEXTS));
        }
        registry.pending += 1;
        Ok(())
    }

    fn release(&self, created: Option<Arc<Context>>) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.pending = registry.pending.saturating_sub(1);
            if let Some(context) = created {
                registry.contexts.insert(context.id.clone(), context);
            }
        }
    }

    fn get(&self, id: &str) -> Result<Arc<Context>> {
        let id = ContextId::from_request(id);
        self.registry
            .lock()
            .ok()
            .and_then(|r| r.contexts.get(&id).cloned())
            .ok_or_else(|| Error::ContextNotFound(id.to_string()))
    }

    /// Every context, oldest first.
    pub fn list(&self) -> Vec<agent_runtime_proto::v1::Context> {
        let mut contexts: Vec<Arc<Context>> = self
            .registry
            .lock()
            .map(|r| r.contexts.values().cloned().collect())
            .unwrap_or_default();
        contexts.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        contexts.iter().map(|c| c.to_proto()).collect()
    }

    /// Runs a cell; its events arrive on the returned stream.
    pub fn run(self: &Arc<Self>, req: RunCodeRequest) -> Result<EventStream> {
        let context = self.get(&req.context_id)?;
        let timeout = timeout_from(req.timeout_seconds)?;
        check_code(&req.code)?;
        let (events, stream) = EventSender::channel();
        let contexts = self.clone();
        // A child of the call's span: the cell's whole run in the kernel.
        let span = tracing::debug_span!(
            "kernel.execute",
            context_id = %req.context_id,
            code_bytes = req.code.len()
        );
        tokio::spawn(
            async move {
                cell::drive(&contexts, &context, &req.code, timeout, events).await;
            }
            .instrument(span),
        );
        Ok(stream)
    }

    /// A fresh kernel for `context`, replacing its dead or killed one (the caller holds the lock).
    pub(super) async fn replace_kernel(
        &self,
        context: &Context,
        slot: &mut Option<Kernel>,
    ) -> Result<()> {
        // Dropping the old kernel kills what is left of it and removes its directory.
        drop(slot.take());
        let (kernel, _) = self.kernel_for(&context.cwd).await?;
        context.set_kernel(&kernel);
        *slot = Some(kernel);
        Ok(())
    }

    /// Sends SIGINT to a context's kernel.
    pub fn interrupt(&self, id: &str) -> Result<bool> {
        let context = self.get(id)?;
        Ok(context
            .watch()
            .is_some_and(|w| kernel::interrupt_pid(w.pid, &w.exited)))
    }

    /// Replaces a context's kernel with a fresh one; a running cell ends.
    pub async fn restart(&self, id: &str) -> Result<agent_runtime_proto::v1::Context> {
        let context = self.get(id)?;
        context.set_restarting(true);
        // Kill the kernel first, so that a cell that is running ends now instead of at its timeout.
        if let Some(w) = context.watch() {
            if !w.exited.is_cancelled() {
                crate::processes::kill_session(w.pid);
            }
        }
        let mut slot = context.kernel.lock().await;
        let replaced = self.replace_kernel(&context, &mut slot).await;
        drop(slot);
        context.set_restarting(false);
        replaced?;
        tracing::info!(context_id = %context.id, "context restarted");
        Ok(context.to_proto())
    }

    /// Shuts a context's kernel down and forgets the context.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let id = ContextId::from_request(id);
        let context = self
            .registry
            .lock()
            .ok()
            .and_then(|mut r| r.contexts.remove(&id))
            .ok_or_else(|| Error::ContextNotFound(id.to_string()))?;
        context.deleted.cancel();
        let kernel = context.kernel.lock().await.take();
        if let Some(kernel) = kernel {
            kernel.shutdown(SHUTDOWN_GRACE).await;
        }
        tracing::info!(context_id = %id, "context deleted");
        Ok(())
    }

    /// Kills every kernel (contexts and spare) and removes their directories.
    pub fn shutdown(&self) {
        self.stop.cancel();
        if let Ok(mut spare) = self.spare.lock() {
            spare.take();
        }
        if let Ok(mut registry) = self.registry.lock() {
            for context in registry.contexts.values() {
                context.deleted.cancel();
            }
            registry.contexts.clear();
        }
        self.live.kill_all();
    }
}

/// Refuses code the kernel cannot take. Python source cannot hold a NUL byte, and IPython fails on
/// one before it replies, so such code never reaches the kernel.
fn check_code(code: &str) -> Result<()> {
    match code.find('\0') {
        None => Ok(()),
        Some(at) => {
            let line = code[..at].matches('\n').count() + 1;
            Err(Error::invalid(format!(
                "code contains a NUL byte (\\0) at byte {at} (line {line}); Python source cannot \
                 contain NUL: remove it, or write it as the escape '\\x00' inside a string literal"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_in_code_are_refused_with_where_they_are() {
        assert!(check_code("x = 1\nprint(x)").is_ok());
        let err = check_code("x = 1\ny = 2\0").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "code contains a NUL byte (\\0) at byte 11 (line 2); Python source cannot \
                 contain NUL: remove it, or write it as the escape '\\x00' inside a string literal"
            )
        );
    }
}
