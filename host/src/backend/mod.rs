//! The seam between the orchestrator and whatever runs containers. Docker is the first backend;
//! nothing outside `backend::docker` knows about Docker. `backend::local` runs bare sandboxd
//! processes instead, for tests without Docker.

pub mod docker;
pub mod local;

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::HostError;
use crate::ids::SandboxId;
use crate::limits::Limits;

/// How the host reaches a sandbox's daemon.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    /// A unix socket on the host (Docker: inside the bind-mounted per-sandbox directory).
    Unix(PathBuf),
    /// A TCP address (Kubernetes: pod-ip:9999).
    Tcp(String),
}

/// What to create.
#[derive(Clone, Debug)]
pub struct SandboxSpec {
    /// The new sandbox's id.
    pub id: SandboxId,
    /// Image to run.
    pub image: String,
    /// Limits to apply.
    pub limits: Limits,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When the reaper destroys it.
    pub expires_at: DateTime<Utc>,
    /// Caller labels.
    pub labels: HashMap<String, String>,
    /// Start a spare Python kernel right away, so the first context is quick.
    pub prewarm_kernel: bool,
    /// Launch the browser right away, so the first browser call costs no launch.
    pub prewarm_browser: bool,
    /// The warm pool it is made for (a label: a member not handed out when the host stopped is
    /// destroyed on adoption).
    pub pool: Option<String>,
    /// The secret the daemon proves on every connection; handed over where user code cannot
    /// read it.
    pub secret: agent_runtime_proto::auth::Secret,
    /// Who owns it (a token name), kept with the container so a restarted host knows.
    pub owner: String,
}

/// A sandbox as the backend reports it; enough to rebuild the host's state after a restart.
#[derive(Clone, Debug)]
pub struct BackendSandbox {
    /// The sandbox.
    pub id: SandboxId,
    /// Backend-specific handle (container id).
    pub container_id: String,
    /// Image it runs.
    pub image: String,
    /// Whether its container is running.
    pub running: bool,
    /// Its limits (timeout is the original lifetime).
    pub limits: Limits,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry (as last extended).
    pub expires_at: DateTime<Utc>,
    /// Caller labels.
    pub labels: HashMap<String, String>,
    /// Who owns it (a token name).
    pub owner: String,
    /// The warm pool it was made for.
    pub pool: Option<String>,
    /// Handed out to a caller ([`Backend::claim`]); a pool member that was not is destroyed on
    /// adoption.
    pub claimed: bool,
}

/// A container that stopped by itself, as the backend saw it.
#[derive(Clone, Debug)]
pub struct Exit {
    /// The sandbox.
    pub id: SandboxId,
    /// What happened, for users: "its container exited with code 137".
    pub reason: String,
}

/// Progress reporting for long operations (image builds).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// Creates, lists and destroys sandboxes.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Makes sure the sandbox image exists, building it if needed; returns its reference.
    async fn ensure_image(&self, force: bool, progress: Progress<'_>) -> Result<String, HostError>;
    /// Creates and starts a sandbox; returns its container id. Does not wait for the daemon.
    async fn create(&self, spec: &SandboxSpec) -> Result<String, HostError>;
    /// Removes a sandbox's container, processes and files. Succeeds when it is already gone.
    async fn destroy(&self, id: &SandboxId) -> Result<(), HostError>;
    /// Every sandbox this host instance owns, running or not.
    async fn list(&self) -> Result<Vec<BackendSandbox>, HostError>;
    /// Records a new expiry so that a restarted host still honours it.
    async fn set_expiry(&self, id: &SandboxId, expires_at: DateTime<Utc>) -> Result<(), HostError>;
    /// Where the sandbox's daemon listens.
    fn endpoint(&self, id: &SandboxId) -> Endpoint;
    /// Records that a pooled sandbox was handed out: its owner, labels and expiry from now on,
    /// kept so that a restarted host knows them.
    async fn claim(
        &self,
        id: &SandboxId,
        owner: &str,
        labels: &HashMap<String, String>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), HostError>;
    /// Freezes a sandbox (every process stopped, no CPU) until [`Backend::unpause`].
    async fn pause(&self, id: &SandboxId) -> Result<(), HostError>;
    /// Lets a frozen sandbox run again.
    async fn unpause(&self, id: &SandboxId) -> Result<(), HostError>;
    /// Removes leftovers (directories without a container) of sandboxes not in `keep`.
    async fn sweep(&self, keep: &[SandboxId]) -> Result<(), HostError>;
    /// Reports every container of this instance that stops by itself, until `stop` is cancelled
    /// or `exits` is closed. Reconnects after errors.
    async fn watch_exits(
        &self,
        exits: tokio::sync::mpsc::Sender<Exit>,
        stop: tokio_util::sync::CancellationToken,
    );
}
