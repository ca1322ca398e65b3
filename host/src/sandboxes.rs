//! The sandbox manager: the host's record of its sandboxes, their limits and lifetimes, and the
//! channels to their daemons. All container work goes through the `Backend`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agent_runtime_proto::auth::Secret;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::HelloRequest;
use agent_runtime_proto::PROTOCOL;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backend::{Backend, Endpoint, Exit, SandboxSpec};
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::limits::{Caps, Limits};

/// Most caller labels on one sandbox.
const MAX_LABELS: usize = 16;
/// Longest label key or value.
const MAX_LABEL_LEN: usize = 128;

/// Lifecycle state of a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxStatus {
    /// Container starting, daemon not yet answering.
    Creating,
    /// Ready for calls.
    Running,
    /// Its daemon or container is gone; calls fail until it is destroyed. Holds no slot.
    Dead,
}

impl SandboxStatus {
    /// The status as the API reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Dead => "dead",
        }
    }
}

/// What the host knows about one sandbox.
#[derive(Clone, Debug)]
pub struct SandboxRecord {
    /// Its id.
    pub id: SandboxId,
    /// Backend handle.
    pub container_id: String,
    /// Image it runs.
    pub image: String,
    /// Its limits.
    pub limits: Limits,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the reaper destroys it.
    pub expires_at: DateTime<Utc>,
    /// Caller labels.
    pub labels: HashMap<String, String>,
    /// Lifecycle state.
    pub status: SandboxStatus,
    /// Milliseconds from request to ready (0 for adopted sandboxes).
    pub startup_ms: u64,
    /// Taken over from an earlier host rather than created by this one.
    pub adopted: bool,
    /// Who owns it: the name of the token that created it, or [`ANONYMOUS`].
    pub owner: String,
    /// Why it is dead, when it is.
    pub dead_reason: Option<String>,
}

/// Owner of sandboxes made without a token (all of them when the host has no tokens).
pub const ANONYMOUS: &str = "anonymous";

/// Deadline of one readiness probe (connect, handshake, health, Hello).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts an adopted sandbox gets to answer after a host restart.
const ADOPT_ATTEMPTS: u32 = 3;

struct Entry {
    record: SandboxRecord,
    channel: Option<Channel>,
}

/// Settings of the manager.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Image new sandboxes run.
    pub image: String,
    /// Most sandboxes at once.
    pub max_sandboxes: usize,
    /// Largest limits a caller may ask for.
    pub caps: Caps,
    /// How long a new sandbox may take to answer.
    pub ready_timeout: Duration,
    /// Sandboxes with a started Python kernel kept ready for REST contexts.
    pub warm_target: usize,
    /// Most memory all sandboxes together may be given, in bytes.
    pub memory_budget: u64,
    /// The key every sandbox's secret is derived from.
    pub host_key: Secret,
}

/// Label of sandboxes made for REST contexts (the warm pool makes them too).
pub const CONTEXT_OWNER_LABEL: (&str, &str) = ("owner", "rest-context");

/// Owns the sandboxes of one host.
pub struct Manager {
    backend: Arc<dyn Backend>,
    config: ManagerConfig,
    entries: Mutex<HashMap<SandboxId, Entry>>,
    /// Ready sandboxes not yet handed out, oldest first.
    warm: Mutex<std::collections::VecDeque<SandboxId>>,
    /// Wakes the warm-pool filler after a sandbox was taken.
    warm_taken: tokio::sync::Notify,
}

impl Manager {
    /// A manager with no sandboxes yet; call `adopt` to take over those an earlier host left.
    pub fn new(backend: Arc<dyn Backend>, config: ManagerConfig) -> Self {
        Self {
            backend,
            config,
            entries: Mutex::new(HashMap::new()),
            warm: Mutex::new(std::collections::VecDeque::new()),
            warm_taken: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one
        // insert or remove), so a poisoned lock is still safe to use.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configured cap on concurrent sandboxes.
    pub fn max_sandboxes(&self) -> usize {
        self.config.max_sandboxes
    }

    fn warm_lock(&self) -> MutexGuard<'_, std::collections::VecDeque<SandboxId>> {
        self.warm.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// (ready, target) of the warm pool.
    pub fn warm_status(&self) -> (usize, usize) {
        (self.warm_lock().len(), self.config.warm_target)
    }

    /// Hands out a warm sandbox (a Python kernel already started in it) with a fresh lifetime.
    pub async fn take_warm(&self) -> Option<SandboxRecord> {
        loop {
            let id = self.warm_lock().pop_front()?;
            self.warm_taken.notify_one();
            // Reaped or destroyed while waiting: try the next.
            if self.get(&id).is_ok() {
                let lifetime = self
                    .config
                    .caps
                    .max_timeout
                    .min(crate::limits::DEFAULT_TIMEOUT);
                return self.extend(&id, lifetime.as_secs()).await.ok();
            }
        }
    }

    /// Keeps `warm_target` sandboxes ready, leaving at least one slot under the cap free for
    /// ordinary creates; runs until `stop` is cancelled.
    pub async fn run_warm_pool(self: Arc<Self>, stop: CancellationToken) {
        if self.config.warm_target == 0 {
            return;
        }
        loop {
            while self.warm_lock().len() < self.config.warm_target
                && self.free_slots() >= 2
                && !stop.is_cancelled()
            {
                let labels = HashMap::from([(
                    CONTEXT_OWNER_LABEL.0.to_owned(),
                    CONTEXT_OWNER_LABEL.1.to_owned(),
                )]);
                match self.create_with("", 0.0, 0, labels, true).await {
                    Ok(record) => self.warm_lock().push_back(record.id),
                    Err(e) => {
                        tracing::warn!(error = %e, "warm pool: cannot create a sandbox; retrying in 5 s");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.warm_taken.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Free slots under the cap (dead sandboxes hold none).
    pub fn free_slots(&self) -> usize {
        let live = self
            .lock()
            .values()
            .filter(|e| e.record.status != SandboxStatus::Dead)
            .count();
        self.config.max_sandboxes.saturating_sub(live)
    }

    /// Image new sandboxes get.
    pub fn image(&self) -> &str {
        &self.config.image
    }

    /// Creates a sandbox and waits until its daemon answers.
    pub async fn create(
        self: &Arc<Self>,
        memory: &str,
        cpu: f64,
        timeout_s: u64,
        labels: HashMap<String, String>,
    ) -> Result<SandboxRecord, HostError> {
        self.create_with(memory, cpu, timeout_s, labels, false)
            .await
    }

    /// Like `create`; `prewarm_kernel` starts a spare Python kernel in it right away.
    pub async fn create_with(
        self: &Arc<Self>,
        memory: &str,
        cpu: f64,
        timeout_s: u64,
        labels: HashMap<String, String>,
        prewarm_kernel: bool,
    ) -> Result<SandboxRecord, HostError> {
        self.create_as(ANONYMOUS, memory, cpu, timeout_s, labels, prewarm_kernel)
            .await
    }

    /// Like `create_with`, owned by `owner` (a token name).
    ///
    /// The work runs in its own task, bounded by the ready timeout: a caller that goes away
    /// mid-create (a client hanging up drops its handler) neither leaves a record stuck in
    /// `creating` nor a container nobody knows the id of — the task finishes and destroys what
    /// it made when nobody is left to take it.
    pub async fn create_as(
        self: &Arc<Self>,
        owner: &str,
        memory: &str,
        cpu: f64,
        timeout_s: u64,
        labels: HashMap<String, String>,
        prewarm_kernel: bool,
    ) -> Result<SandboxRecord, HostError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let (owner, memory) = (owner.to_owned(), memory.to_owned());
        tokio::spawn(async move {
            let result = this
                .create_now(&owner, &memory, cpu, timeout_s, labels, prewarm_kernel)
                .await;
            if let Err(Ok(record)) = tx.send(result) {
                tracing::info!(sandbox_id = %record.id, "the caller went away during create: destroying");
                if let Err(e) = this.destroy(&record.id).await {
                    tracing::warn!(sandbox_id = %record.id, error = %e, "cannot destroy an unclaimed sandbox");
                }
            }
        });
        rx.await
            .map_err(|_| HostError::Backend("the create task stopped unexpectedly".into()))?
    }

    async fn create_now(
        &self,
        owner: &str,
        memory: &str,
        cpu: f64,
        timeout_s: u64,
        labels: HashMap<String, String>,
        prewarm_kernel: bool,
    ) -> Result<SandboxRecord, HostError> {
        let started = Instant::now();
        let limits = Limits::from_request(memory, cpu, timeout_s, &self.config.caps)?;
        check_labels(&labels)?;
        let id = SandboxId::generate();
        let created_at = Utc::now();
        let expires_at =
            created_at + chrono::Duration::from_std(limits.timeout).unwrap_or_default();
        let record = SandboxRecord {
            id: id.clone(),
            container_id: String::new(),
            image: self.config.image.clone(),
            limits,
            created_at,
            expires_at,
            labels,
            status: SandboxStatus::Creating,
            startup_ms: 0,
            adopted: false,
            owner: owner.to_owned(),
            dead_reason: None,
        };
        {
            let mut entries = self.lock();
            let live: Vec<&Entry> = entries
                .values()
                .filter(|e| e.record.status != SandboxStatus::Dead)
                .collect();
            if live.len() >= self.config.max_sandboxes {
                return Err(HostError::TooManySandboxes(live.len()));
            }
            let in_use: u64 = live.iter().map(|e| e.record.limits.memory_bytes).sum();
            if in_use + record.limits.memory_bytes > self.config.memory_budget {
                return Err(HostError::MemoryBudget {
                    in_use,
                    sandboxes: live.len(),
                    requested: record.limits.memory_bytes,
                    budget: self.config.memory_budget,
                });
            }
            entries.insert(
                id.clone(),
                Entry {
                    record: record.clone(),
                    channel: None,
                },
            );
        }
        match self.start(record, started, prewarm_kernel).await {
            Ok(record) => Ok(record),
            Err(e) => {
                self.lock().remove(&id);
                if let Err(cleanup) = self.backend.destroy(&id).await {
                    tracing::warn!(sandbox_id = %id, error = %cleanup, "cleanup after failed create");
                }
                Err(e)
            }
        }
    }

    async fn start(
        &self,
        mut record: SandboxRecord,
        started: Instant,
        prewarm_kernel: bool,
    ) -> Result<SandboxRecord, HostError> {
        let spec = SandboxSpec {
            id: record.id.clone(),
            image: record.image.clone(),
            limits: record.limits.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            labels: record.labels.clone(),
            prewarm_kernel,
            secret: self.secret(&record.id),
            owner: record.owner.clone(),
        };
        record.container_id = self.backend.create(&spec).await?;
        let channel = self
            .wait_ready(&record.id, self.config.ready_timeout)
            .await?;
        record.status = SandboxStatus::Running;
        record.startup_ms = started.elapsed().as_millis() as u64;
        let mut entries = self.lock();
        // Destroyed while starting: the destroyer already removed the container.
        let Some(entry) = entries.get_mut(&record.id) else {
            return Err(HostError::SandboxNotFound(record.id.to_string()));
        };
        entry.record = record.clone();
        entry.channel = Some(channel);
        tracing::info!(sandbox_id = %record.id, startup_ms = record.startup_ms, "sandbox ready");
        Ok(record)
    }

    /// Polls the daemon's unix socket until it answers health and speaks our protocol.
    async fn wait_ready(&self, id: &SandboxId, timeout: Duration) -> Result<Channel, HostError> {
        let endpoint = self.backend.endpoint(id);
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no answer");
        loop {
            if Instant::now() >= deadline {
                return Err(HostError::NotReady {
                    id: id.to_string(),
                    reason: format!("no answer within {}s ({last_error})", timeout.as_secs()),
                });
            }
            if !self.lock().contains_key(id) {
                return Err(HostError::SandboxNotFound(id.to_string()));
            }
            match probe(&endpoint, &self.secret(id), id).await {
                Ok(channel) => return Ok(channel),
                Err(Probe::Retry(e)) => last_error = e,
                Err(Probe::Fatal(e)) => {
                    return Err(HostError::NotReady {
                        id: id.to_string(),
                        reason: e,
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The secret sandbox `id`'s daemon proves on every connection.
    fn secret(&self, id: &SandboxId) -> Secret {
        Secret::derive(&self.config.host_key, id.as_str())
    }

    /// Records that a sandbox died: calls fail with the reason, its slot and resources are
    /// freed (container and files removed), and the record stays, `dead`, until destroyed or
    /// its lifetime ends.
    pub async fn mark_dead(&self, id: &SandboxId, reason: &str) {
        self.warm_lock().retain(|w| w != id);
        {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(id) else {
                return;
            };
            if entry.record.status == SandboxStatus::Dead {
                return;
            }
            entry.record.status = SandboxStatus::Dead;
            entry.record.dead_reason = Some(reason.to_owned());
            entry.channel = None;
        }
        tracing::warn!(sandbox_id = %id, reason, "sandbox is dead");
        if let Err(e) = self.backend.destroy(id).await {
            tracing::warn!(sandbox_id = %id, error = %e, "cannot remove a dead sandbox's container");
        }
    }

    /// Marks sandboxes dead as the backend reports their containers stopping; runs until `stop`.
    pub async fn run_exit_watch(self: Arc<Self>, stop: CancellationToken) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Exit>(64);
        let backend = self.backend.clone();
        let watch_stop = stop.clone();
        let watcher = tokio::spawn(async move { backend.watch_exits(tx, watch_stop).await });
        while let Some(exit) = rx.recv().await {
            // Our own destroy stops containers too; only live records can die.
            let live = self
                .lock()
                .get(&exit.id)
                .is_some_and(|e| e.record.status != SandboxStatus::Dead);
            if live {
                self.mark_dead(&exit.id, &exit.reason).await;
            }
        }
        let _ = watcher.await;
    }

    /// Compares the records with the backend's containers: a running record whose container
    /// is gone or stopped (an event missed while dockerd restarted) is dead.
    pub async fn reconcile(&self) {
        let Ok(Ok(found)) = tokio::time::timeout(PROBE_TIMEOUT * 3, self.backend.list()).await
        else {
            return;
        };
        let running: Vec<SandboxId> = found
            .into_iter()
            .filter(|b| b.running)
            .map(|b| b.id)
            .collect();
        let gone: Vec<SandboxId> = self
            .lock()
            .values()
            .filter(|e| {
                e.record.status == SandboxStatus::Running && !running.contains(&e.record.id)
            })
            .map(|e| e.record.id.clone())
            .collect();
        for id in gone {
            self.mark_dead(&id, "its container is no longer running")
                .await;
        }
    }

    /// Destroys a sandbox: container, processes and files.
    pub async fn destroy(&self, id: &SandboxId) -> Result<(), HostError> {
        self.warm_lock().retain(|w| w != id);
        if self.lock().remove(id).is_none() {
            return Err(HostError::SandboxNotFound(id.to_string()));
        }
        self.backend.destroy(id).await?;
        tracing::info!(sandbox_id = %id, "sandbox destroyed");
        Ok(())
    }

    /// One sandbox.
    pub fn get(&self, id: &SandboxId) -> Result<SandboxRecord, HostError> {
        self.lock()
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| HostError::SandboxNotFound(id.to_string()))
    }

    /// All sandboxes, oldest first.
    pub fn list(&self) -> Vec<SandboxRecord> {
        let warm: Vec<SandboxId> = self.warm_lock().iter().cloned().collect();
        let mut all: Vec<_> = self
            .lock()
            .values()
            .filter(|e| !warm.contains(&e.record.id))
            .map(|e| e.record.clone())
            .collect();
        all.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        all
    }

    /// The channel to a running sandbox's daemon.
    pub fn channel(&self, id: &SandboxId) -> Result<Channel, HostError> {
        let entries = self.lock();
        let entry = entries
            .get(id)
            .ok_or_else(|| HostError::SandboxNotFound(id.to_string()))?;
        if let Some(reason) = &entry.record.dead_reason {
            return Err(HostError::Dead {
                id: id.to_string(),
                reason: reason.clone(),
            });
        }
        entry.channel.clone().ok_or_else(|| HostError::NotReady {
            id: id.to_string(),
            reason: "it is still starting; retry in a moment".into(),
        })
    }

    /// Sets a sandbox's expiry to now + `timeout_s`.
    pub async fn extend(&self, id: &SandboxId, timeout_s: u64) -> Result<SandboxRecord, HostError> {
        if timeout_s == 0 || Duration::from_secs(timeout_s) > self.config.caps.max_timeout {
            return Err(HostError::InvalidArgument(format!(
                "timeout_seconds must be between 1 and {}",
                self.config.caps.max_timeout.as_secs()
            )));
        }
        let expires_at = Utc::now() + chrono::Duration::seconds(timeout_s as i64);
        let record = {
            let mut entries = self.lock();
            let entry = entries
                .get_mut(id)
                .ok_or_else(|| HostError::SandboxNotFound(id.to_string()))?;
            entry.record.expires_at = expires_at;
            entry.record.clone()
        };
        self.backend.set_expiry(id, expires_at).await?;
        Ok(record)
    }

    /// Takes over the sandboxes an earlier host of this instance left: each container found is
    /// recorded at once (`creating`), stopped ones removed and stray directories swept. Whether
    /// a running one's daemon still answers (and proves its secret) is checked afterwards by
    /// [`Manager::probe_adopted`], concurrently and with deadlines, so that no sandbox can delay
    /// the host's start.
    pub async fn adopt(&self) -> Result<(Vec<SandboxId>, usize), HostError> {
        let found = tokio::time::timeout(Duration::from_secs(30), self.backend.list())
            .await
            .map_err(|_| HostError::Backend("listing containers took longer than 30 s".into()))??;
        let (mut adopted, mut removed) = (Vec::new(), 0);
        for sb in found {
            if !sb.running {
                tracing::info!(sandbox_id = %sb.id, "removing a stopped sandbox an earlier host left");
                self.backend.destroy(&sb.id).await?;
                removed += 1;
                continue;
            }
            let record = SandboxRecord {
                id: sb.id.clone(),
                container_id: sb.container_id,
                image: sb.image,
                limits: sb.limits,
                created_at: sb.created_at,
                expires_at: sb.expires_at,
                labels: sb.labels,
                status: SandboxStatus::Creating,
                startup_ms: 0,
                adopted: true,
                owner: if sb.owner.is_empty() {
                    ANONYMOUS.to_owned()
                } else {
                    sb.owner
                },
                dead_reason: None,
            };
            self.lock().insert(
                sb.id.clone(),
                Entry {
                    record,
                    channel: None,
                },
            );
            adopted.push(sb.id);
        }
        let keep: Vec<SandboxId> = self.lock().keys().cloned().collect();
        self.backend.sweep(&keep).await?;
        Ok((adopted, removed))
    }

    /// Probes adopted sandboxes concurrently: one that answers and proves its secret becomes
    /// `running`; one that does not within a few attempts is dead and removed.
    pub async fn probe_adopted(&self, ids: Vec<SandboxId>) {
        let probes = ids.into_iter().map(|id| async move {
            let endpoint = self.backend.endpoint(&id);
            let secret = self.secret(&id);
            let mut last = String::new();
            for attempt in 0..ADOPT_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                match tokio::time::timeout(PROBE_TIMEOUT, probe(&endpoint, &secret, &id)).await {
                    Ok(Ok(channel)) => {
                        let mut entries = self.lock();
                        if let Some(e) = entries.get_mut(&id) {
                            if e.record.status == SandboxStatus::Creating {
                                e.record.status = SandboxStatus::Running;
                                e.channel = Some(channel);
                            }
                        }
                        tracing::info!(sandbox_id = %id, "adopted");
                        return;
                    }
                    Ok(Err(Probe::Retry(e) | Probe::Fatal(e))) => last = e,
                    Err(_) => last = format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
                }
            }
            self.mark_dead(
                &id,
                &format!("its daemon did not answer after the host restarted ({last})"),
            )
            .await;
        });
        futures::future::join_all(probes).await;
    }

    /// Destroys sandboxes whose lifetime is over.
    pub async fn reap_expired(&self) {
        let now = Utc::now();
        let expired: Vec<SandboxId> = self
            .lock()
            .values()
            .filter(|e| e.record.status != SandboxStatus::Creating && e.record.expires_at <= now)
            .map(|e| e.record.id.clone())
            .collect();
        for id in expired {
            tracing::info!(sandbox_id = %id, "lifetime over: destroying");
            if let Err(e) = self.destroy(&id).await {
                tracing::warn!(sandbox_id = %id, error = %e, "reaper could not destroy sandbox");
            }
        }
    }

    /// Runs the reaper until `stop` is cancelled.
    pub async fn run_reaper(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    self.reap_expired().await;
                    self.reconcile().await;
                }
            }
        }
    }

    /// Destroys every sandbox (used by `serve --cleanup-on-exit`).
    pub async fn destroy_all(&self) {
        let ids: Vec<SandboxId> = self.lock().keys().cloned().collect();
        let all = ids.iter().map(|id| async move {
            if let Err(e) = self.destroy(id).await {
                tracing::warn!(sandbox_id = %id, error = %e, "could not destroy sandbox");
            }
        });
        futures::future::join_all(all).await;
    }
}

fn check_labels(labels: &HashMap<String, String>) -> Result<(), HostError> {
    if labels.len() > MAX_LABELS {
        return Err(HostError::InvalidArgument(format!(
            "at most {MAX_LABELS} labels per sandbox"
        )));
    }
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !key_ok || k.len() > MAX_LABEL_LEN || v.len() > MAX_LABEL_LEN {
            return Err(HostError::InvalidArgument(format!(
                "label {k:?}: keys use letters, digits, '-', '_' and '.'; keys and values at most {MAX_LABEL_LEN} bytes"
            )));
        }
    }
    Ok(())
}

enum Probe {
    Retry(String),
    Fatal(String),
}

/// One readiness check: connect (the connection itself proves the daemon holds `id`'s
/// secret), gRPC health SERVING, then Hello with our protocol and a proof over a fresh nonce.
async fn probe(endpoint: &Endpoint, secret: &Secret, id: &SandboxId) -> Result<Channel, Probe> {
    if let Endpoint::Unix(path) = endpoint {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(Probe::Retry("socket not created yet".into()));
        }
    }
    let channel = crate::uds::connect(endpoint, secret, id, Duration::from_secs(1))
        .await
        .map_err(|e| Probe::Retry(format!("connect: {}", crate::uds::describe(&e))))?;
    let mut health = HealthClient::new(channel.clone());
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.set_timeout(PROBE_TIMEOUT);
    let health = health
        .check(req)
        .await
        .map_err(|e| Probe::Retry(format!("health: {}", e.message())))?;
    if health.into_inner().status
        != tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    {
        return Err(Probe::Retry("daemon not serving yet".into()));
    }
    let nonce: [u8; agent_runtime_proto::auth::KEY_LEN] = agent_runtime_proto::auth::random()
        .map_err(|e| Probe::Fatal(format!("no randomness: {e}")))?;
    let mut req = tonic::Request::new(HelloRequest {
        nonce: nonce.to_vec(),
    });
    req.set_timeout(PROBE_TIMEOUT);
    let hello = SandboxClient::new(channel.clone())
        .hello(req)
        .await
        .map_err(|e| Probe::Retry(format!("hello: {}", e.message())))?
        .into_inner();
    if hello.protocol != PROTOCOL {
        return Err(Probe::Fatal(format!(
            "its daemon speaks {:?}, this host speaks {PROTOCOL:?}: rebuild the image with `agent-runtime image build`",
            hello.protocol
        )));
    }
    if hello.sandbox_id != id.as_str() || !secret.verify_hello(&nonce, id.as_str(), &hello.proof) {
        return Err(Probe::Fatal(format!(
            "its daemon answered as {:?} without proof of {id}'s secret: refusing it",
            hello.sandbox_id
        )));
    }
    Ok(channel)
}
