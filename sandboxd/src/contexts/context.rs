//! One context: its identity, its kernel (behind an async mutex, so one cell runs at a time) and
//! what ListContexts reports about it.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use agent_runtime_proto::sets::{ContextStatus, Language};
use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use super::kernel::{self, Kernel};

/// A context id: `ctx-` and 12 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(String);

impl ContextId {
    /// A fresh random id.
    pub fn generate() -> Self {
        Self(format!("ctx-{}", kernel::random_hex(6)))
    }

    /// The id a caller sent (any string: unknown ids are simply not found).
    pub fn from_request(raw: &str) -> Self {
        Self(raw.trim().to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which kernel process a context has now, readable without waiting for a running cell.
#[derive(Clone)]
pub struct KernelWatch {
    /// The kernel's pid (and session id).
    pub pid: i32,
    /// Cancelled when that kernel exited.
    pub exited: CancellationToken,
}

impl KernelWatch {
    fn of(kernel: &Kernel) -> Self {
        Self {
            pid: kernel.pid(),
            exited: kernel.exited(),
        }
    }
}

/// A stateful execution context backed by one kernel at a time.
pub struct Context {
    /// Its id.
    pub id: ContextId,
    /// The caller's name for it.
    pub name: String,
    /// Always Python today.
    pub language: Language,
    /// The kernel's working directory.
    pub cwd: PathBuf,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The kernel; held for the whole of a run. None only while it is replaced.
    pub kernel: tokio::sync::Mutex<Option<Kernel>>,
    watch: Mutex<KernelWatch>,
    busy: AtomicBool,
    restarting: AtomicBool,
    /// Cancelled when the context is deleted; a run in progress ends.
    pub deleted: CancellationToken,
}

impl Context {
    /// A context around a ready kernel.
    pub fn new(name: String, cwd: PathBuf, kernel: Kernel) -> Self {
        Self {
            id: ContextId::generate(),
            name,
            language: Language::Python,
            cwd,
            created_at: Utc::now(),
            watch: Mutex::new(KernelWatch::of(&kernel)),
            kernel: tokio::sync::Mutex::new(Some(kernel)),
            busy: AtomicBool::new(false),
            restarting: AtomicBool::new(false),
            deleted: CancellationToken::new(),
        }
    }

    /// The current kernel's pid and exit token.
    pub fn watch(&self) -> Option<KernelWatch> {
        self.watch.lock().ok().map(|w| w.clone())
    }

    /// Records the kernel that now serves this context.
    pub fn set_kernel(&self, kernel: &Kernel) {
        if let Ok(mut w) = self.watch.lock() {
            *w = KernelWatch::of(kernel);
        }
    }

    /// Marks a run as in progress or over.
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
    }

    /// Marks a restart as in progress or over.
    pub fn set_restarting(&self, restarting: bool) {
        self.restarting.store(restarting, Ordering::SeqCst);
    }

    /// True while RestartContext replaces the kernel.
    pub fn is_restarting(&self) -> bool {
        self.restarting.load(Ordering::SeqCst)
    }

    /// Active, busy, restarting or dead (the kernel exited; the next run restarts it).
    pub fn status(&self) -> ContextStatus {
        if self.is_restarting() {
            ContextStatus::Restarting
        } else if self.busy.load(Ordering::SeqCst) {
            ContextStatus::Busy
        } else if self.watch().is_none_or(|w| w.exited.is_cancelled()) {
            ContextStatus::Dead
        } else {
            ContextStatus::Active
        }
    }

    /// The protobuf view.
    pub fn to_proto(&self) -> agent_runtime_proto::v1::Context {
        agent_runtime_proto::v1::Context {
            context_id: self.id.to_string(),
            name: self.name.clone(),
            language: self.language.into(),
            cwd: self.cwd.display().to_string(),
            status: self.status().into(),
            created_at: self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}
