//! The manager's records: one entry per sandbox (record and channel), the queries on them,
//! extend and destroy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agent_runtime_proto::auth::Secret;
use chrono::Utc;
use tonic::transport::Channel;

use super::pool::{Pool, PoolShape};
use super::record::SandboxRecord;
use crate::backend::Backend;
use crate::egress::{Egress, Policy};
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::limits::Caps;

/// How often a call waiting for a starting sandbox looks again (see `Manager::ready_channel`).
const READY_POLL: Duration = Duration::from_millis(20);
/// How long a call waits for a sandbox that is still starting before it answers UNAVAILABLE.
pub const STARTING_WAIT: Duration = Duration::from_secs(10);

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
    /// Warm pools: shapes of sandboxes kept ready (see `pool`).
    pub pools: Vec<PoolShape>,
    /// Most memory all sandboxes together may be given, in bytes.
    pub memory_budget: u64,
    /// The key every sandbox's secret is derived from.
    pub host_key: Secret,
    /// The egress proxy every sandbox's connections go through.
    pub egress: Arc<Egress>,
}

/// One sandbox as the manager holds it.
pub(super) struct Entry {
    pub(super) record: SandboxRecord,
    /// Set once the daemon answered (and proved its secret); cleared when it dies.
    pub(super) channel: Option<Channel>,
}

/// Owns the sandboxes of one host.
pub struct Manager {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) config: ManagerConfig,
    entries: Mutex<HashMap<SandboxId, Entry>>,
    /// The warm pools and their members not yet handed out.
    pools: Mutex<Vec<Pool>>,
    /// Wakes the pool filler (a member was taken, a pool changed).
    pub(super) pool_wake: tokio::sync::Notify,
}

impl Manager {
    /// A manager with no sandboxes yet; call `adopt` to take over those an earlier host left.
    /// Pool shapes whose limits the caps refuse are left out with a warning (`serve` checks
    /// them first with [`Manager::check_pools`]).
    pub fn new(backend: Arc<dyn Backend>, config: ManagerConfig) -> Self {
        let pools = config
            .pools
            .iter()
            .filter_map(
                |shape| match Self::pools_from(std::slice::from_ref(shape), &config.caps) {
                    Ok(mut pool) => pool.pop(),
                    Err(e) => {
                        tracing::warn!(pool = %shape.name, error = %e, "pool left out");
                        None
                    }
                },
            )
            .collect();
        Self {
            backend,
            config,
            entries: Mutex::new(HashMap::new()),
            pools: Mutex::new(pools),
            pool_wake: tokio::sync::Notify::new(),
        }
    }

    /// Checks pool shapes against the caps (limits a caller could not ask for either).
    pub fn check_pools(shapes: &[PoolShape], caps: &crate::limits::Caps) -> Result<(), HostError> {
        Self::pools_from(shapes, caps).map(|_| ())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, Entry>> {
        // A panic while holding the lock cannot leave the map half-updated (every update is one
        // insert or remove), so a poisoned lock is still safe to use.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn pools_lock(&self) -> MutexGuard<'_, Vec<Pool>> {
        // Every update is a push, pop or counter: a poisoned lock is still whole.
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The secret sandbox `id`'s daemon proves on every connection.
    pub(super) fn secret(&self, id: &SandboxId) -> Secret {
        Secret::derive(&self.config.host_key, id.as_str())
    }

    /// The configured cap on concurrent sandboxes.
    pub fn max_sandboxes(&self) -> usize {
        self.config.max_sandboxes
    }

    /// Free slots under the cap (dead sandboxes hold none).
    pub fn free_slots(&self) -> usize {
        let live = self
            .lock()
            .values()
            .filter(|e| e.record.holds_slot())
            .count();
        self.config.max_sandboxes.saturating_sub(live)
    }

    /// Image new sandboxes get.
    pub fn image(&self) -> &str {
        &self.config.image
    }

    /// One sandbox.
    pub fn get(&self, id: &SandboxId) -> Result<SandboxRecord, HostError> {
        self.lock()
            .get(id)
            .map(|e| e.record.clone())
            .ok_or_else(|| HostError::SandboxNotFound(id.to_string()))
    }

    /// All sandboxes, oldest first (pooled ones not yet handed out are not listed).
    pub fn list(&self) -> Vec<SandboxRecord> {
        let mut all: Vec<_> = self
            .lock()
            .values()
            .filter(|e| !e.record.pooled)
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

    /// The channel to a sandbox's daemon, waiting up to `wait` while the sandbox is still
    /// starting (created by another call a moment ago, or adopted after a restart and being
    /// probed) instead of failing at once; a dead or unknown sandbox fails at once.
    pub async fn ready_channel(
        &self,
        id: &SandboxId,
        wait: Duration,
    ) -> Result<Channel, HostError> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            match self.channel(id) {
                Err(HostError::NotReady { .. }) if tokio::time::Instant::now() < until => {
                    tokio::time::sleep(READY_POLL).await;
                }
                other => return other,
            }
        }
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

    /// Replaces a sandbox's egress policy (see `Egress::set_policy`).
    pub async fn set_egress(
        &self,
        id: &SandboxId,
        policy: Policy,
    ) -> Result<SandboxRecord, HostError> {
        self.get(id)?;
        self.config.egress.set_policy(id, policy.clone()).await?;
        let mut entries = self.lock();
        let entry = entries
            .get_mut(id)
            .ok_or_else(|| HostError::SandboxNotFound(id.to_string()))?;
        entry.record.egress = policy;
        Ok(entry.record.clone())
    }

    /// The egress proxy.
    pub fn egress(&self) -> &Arc<Egress> {
        &self.config.egress
    }

    /// Destroys a sandbox: container, processes and files.
    pub async fn destroy(&self, id: &SandboxId) -> Result<(), HostError> {
        self.unpool(id);
        if self.lock().remove(id).is_none() {
            return Err(HostError::SandboxNotFound(id.to_string()));
        }
        self.config.egress.detach(id, true);
        // The record is gone: the container must go too, even when the caller hangs up (a
        // dropped handler would otherwise stop the removal half-way and leak the container).
        // The task is bounded by the backend's own timeouts.
        let backend = self.backend.clone();
        let target = id.clone();
        tokio::spawn(async move { backend.destroy(&target).await })
            .await
            .map_err(|e| HostError::Backend(format!("the destroy task failed: {e}")))??;
        tracing::info!(sandbox_id = %id, "sandbox destroyed");
        Ok(())
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
