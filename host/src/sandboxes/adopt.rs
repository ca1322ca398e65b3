//! Adoption: taking over the sandboxes an earlier host of this instance left, without letting
//! any of them delay the host's start or pass for another.

use std::time::Duration;

use super::manager::{Entry, Manager};
use super::probe::{probe, Probe, PROBE_TIMEOUT};
use super::record::{SandboxRecord, SandboxStatus, ANONYMOUS};
use crate::error::HostError;
use crate::ids::SandboxId;

/// Attempts an adopted sandbox gets to answer after a host restart.
const ADOPT_ATTEMPTS: u32 = 3;
/// Pause between two attempts.
const ADOPT_RETRY: Duration = Duration::from_secs(1);
/// Longest the backend may take to list its sandboxes at start.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

impl Manager {
    /// Takes over the sandboxes an earlier host of this instance left: each container found is
    /// recorded at once (`creating`), stopped ones removed and stray directories swept. Whether
    /// a running one's daemon still answers (and proves its secret) is checked afterwards by
    /// [`Manager::probe_adopted`], concurrently and with deadlines, so that no sandbox can delay
    /// the host's start. Returns the adopted ids and how many stopped ones were removed.
    pub async fn adopt(&self) -> Result<(Vec<SandboxId>, usize), HostError> {
        let found = tokio::time::timeout(LIST_TIMEOUT, self.backend.list())
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
            if sb.pool.is_some() && !sb.claimed {
                // Never handed out: the pool starts a fresh one rather than guess its state.
                tracing::info!(sandbox_id = %sb.id, "removing an unclaimed pooled sandbox an earlier host left");
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
                egress: self.config.egress.saved_policy(&sb.id),
                pool: sb.pool,
                pooled: false,
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
                    tokio::time::sleep(ADOPT_RETRY).await;
                }
                match tokio::time::timeout(PROBE_TIMEOUT, probe(&endpoint, &secret, &id)).await {
                    Ok(Ok(channel)) => {
                        let policy = self.config.egress.saved_policy(&id);
                        if let Err(e) = self
                            .config
                            .egress
                            .attach(&id, &secret, channel.clone(), policy)
                            .await
                        {
                            last = e.to_string();
                            continue;
                        }
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
}
