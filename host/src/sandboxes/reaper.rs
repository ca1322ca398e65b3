//! Lifetimes and death: the reaper destroys expired sandboxes and reconciles the records with
//! the backend; the exit watch marks a sandbox dead when its container stops by itself.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::manager::Manager;
use super::probe::PROBE_TIMEOUT;
use super::record::SandboxStatus;
use crate::backend::Exit;
use crate::ids::SandboxId;

/// Reaper ticks between two reconciliations: exit events report deaths at once, so the
/// listing only catches what an event stream that broke (dockerd restarting) missed.
const RECONCILE_EVERY: u32 = 10;

impl Manager {
    /// Records that a sandbox died: calls fail with the reason, its slot and resources are
    /// freed (container and files removed), and the record stays, `dead`, until destroyed or
    /// its lifetime ends.
    pub async fn mark_dead(&self, id: &SandboxId, reason: &str) {
        self.unpool(id);
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
        self.config.egress.detach(id, true);
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
                .is_some_and(|e| e.record.holds_slot());
            if live {
                self.mark_dead(&exit.id, &exit.reason).await;
            }
        }
        let _ = watcher.await;
    }

    /// Compares the records with the backend's containers: a running record whose container
    /// is gone or stopped (an event missed while dockerd restarted) is dead.
    pub async fn reconcile(&self) {
        // Only records that were running before the listing are judged by it: one that became
        // running while Docker answered (a create finishing) is not in a listing taken earlier.
        let judged: Vec<SandboxId> = self
            .lock()
            .values()
            .filter(|e| e.record.status == SandboxStatus::Running)
            .map(|e| e.record.id.clone())
            .collect();
        if judged.is_empty() {
            return;
        }
        let Ok(Ok(found)) = tokio::time::timeout(PROBE_TIMEOUT * 3, self.backend.list()).await
        else {
            return;
        };
        let running: Vec<SandboxId> = found
            .into_iter()
            .filter(|b| b.running)
            .map(|b| b.id)
            .collect();
        let gone: Vec<SandboxId> = judged
            .into_iter()
            .filter(|id| !running.contains(id))
            .collect();
        for id in gone {
            self.mark_dead(&id, "its container is no longer running")
                .await;
        }
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

    /// Runs the reaper every `interval` until `stop` is cancelled: expiry on every tick,
    /// reconciliation (a Docker listing, the backstop for missed exit events) every
    /// [`RECONCILE_EVERY`] ticks.
    pub async fn run_reaper(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    self.reap_expired().await;
                    if n.is_multiple_of(RECONCILE_EVERY) {
                        self.reconcile().await;
                    }
                    n = n.wrapping_add(1);
                }
            }
        }
    }
}
