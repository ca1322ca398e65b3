//! Creating a sandbox: a warm pool's member when one fits (see `pool`), else a cold start —
//! checks, a slot reserved under the cap and the memory budget before the backend is asked (an
//! idle pooled sandbox is evicted to make room), then the wait until its daemon answers and
//! proves its secret, and the caller's environment and egress policy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tonic::transport::Channel;

use super::manager::{Entry, Manager};
use super::pool::PoolChoice;
use super::probe::{probe, Probe};
use super::record::{SandboxRecord, SandboxStatus, ANONYMOUS};
use crate::backend::SandboxSpec;
use crate::egress::Policy;
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::limits::Limits;

/// Most caller labels on one sandbox.
const MAX_LABELS: usize = 16;
/// Longest label key or value.
const MAX_LABEL_LEN: usize = 128;
/// How often a starting sandbox's socket is tried.
const READY_POLL: Duration = Duration::from_millis(5);
/// Most sandbox environment variables (as sandboxd allows).
const MAX_ENV: usize = 128;
/// Longest environment value (as sandboxd allows).
const MAX_ENV_VALUE: usize = 32 * 1024;
/// How long sandboxd may take to take the caller's environment.
const CONFIGURE_DEADLINE: Duration = Duration::from_secs(5);

/// What a caller asks for. Every field's zero value means the host's default, so
/// `CreateSpec::default()` is an anonymous 512 MiB, 1-core, one-hour sandbox without labels.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateSpec {
    /// Who owns it: a token name. Default [`ANONYMOUS`].
    pub owner: String,
    /// Memory limit as users write it (`"512m"`, `"1g"`); empty = 512 MiB.
    pub memory: String,
    /// CPU cores, possibly fractional; 0 = one core.
    pub cpu: f64,
    /// Lifetime in seconds; 0 = 3600.
    pub timeout_s: u64,
    /// Caller labels (at most 16; keys of letters, digits, `-`, `_`, `.`).
    pub labels: HashMap<String, String>,
    /// Start a spare Python kernel right away, so the first context is quick. Default false.
    pub prewarm_kernel: bool,
    /// Egress policy. Default `none`.
    pub egress: Policy,
    /// Environment variables every process of the sandbox gets. Default none.
    pub env: HashMap<String, String>,
    /// Launch the browser right away, so the first browser call costs no launch. Default false.
    pub browser: bool,
    /// Which warm pool may provide it. Default: any that fits.
    pub pool: PoolChoice,
}

impl Default for CreateSpec {
    fn default() -> Self {
        Self {
            owner: ANONYMOUS.to_owned(),
            memory: String::new(),
            cpu: 0.0,
            timeout_s: 0,
            labels: HashMap::new(),
            prewarm_kernel: false,
            egress: Policy::default(),
            env: HashMap::new(),
            browser: false,
            pool: PoolChoice::Any,
        }
    }
}

impl CreateSpec {
    /// The default spec owned by `owner`.
    pub fn owned_by(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            ..Self::default()
        }
    }
}

impl Manager {
    /// Creates a sandbox and waits until its daemon answers.
    ///
    /// The work runs in its own task, bounded by the ready timeout: a caller that goes away
    /// mid-create (a client hanging up drops its handler) neither leaves a record stuck in
    /// `creating` nor a container nobody knows the id of — the task finishes and destroys what
    /// it made when nobody is left to take it.
    ///
    /// A warm pool's member that fits is handed out instead when there is one (see `pool`).
    pub async fn create(self: &Arc<Self>, spec: CreateSpec) -> Result<SandboxRecord, HostError> {
        check_env(&spec.env)?;
        check_labels(&spec.labels)?;
        if let PoolChoice::Named(name) = &spec.pool {
            if !self.pool_status().iter().any(|p| &p.shape.name == name) {
                return Err(HostError::InvalidArgument(format!(
                    "there is no pool {name:?}; `agent-runtime pool` lists them (\"\" takes any \
                     that fits, \"none\" starts cold)"
                )));
            }
        }
        if let Some(record) = self.claim(&spec).await {
            return Ok(record);
        }
        self.create_task(spec, None).await
    }

    /// Starts a member of pool `pool` (never from a pool, never evicting one).
    pub(super) async fn create_member(
        self: &Arc<Self>,
        spec: CreateSpec,
        pool: &str,
    ) -> Result<SandboxRecord, HostError> {
        self.create_task(spec, Some(pool.to_owned())).await
    }

    async fn create_task(
        self: &Arc<Self>,
        spec: CreateSpec,
        member_of: Option<String>,
    ) -> Result<SandboxRecord, HostError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.create_now(spec, member_of).await;
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
        spec: CreateSpec,
        member_of: Option<String>,
    ) -> Result<SandboxRecord, HostError> {
        let started = Instant::now();
        let limits =
            Limits::from_request(&spec.memory, spec.cpu, spec.timeout_s, &self.config.caps)?;
        check_labels(&spec.labels)?;
        check_env(&spec.env)?;
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
            labels: spec.labels,
            status: SandboxStatus::Creating,
            startup_ms: 0,
            adopted: false,
            owner: spec.owner,
            dead_reason: None,
            egress: spec.egress,
            pool: member_of.clone(),
            pooled: member_of.is_some(),
        };
        loop {
            match self.reserve(&record) {
                Ok(()) => break,
                // Room for a caller comes before sandboxes nobody has asked for yet.
                Err(HostError::TooManySandboxes(_) | HostError::MemoryBudget { .. })
                    if member_of.is_none() && self.evict_one().await => {}
                Err(e) => return Err(e),
            }
        }
        let extras = Extras {
            kernel: spec.prewarm_kernel,
            browser: spec.browser,
            env: spec.env,
        };
        match self.start(record, started, extras).await {
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

    /// Records `record` (`creating`) if a slot and its memory fit, in one step under the lock,
    /// so concurrent creates cannot overshoot the cap or the budget.
    fn reserve(&self, record: &SandboxRecord) -> Result<(), HostError> {
        let mut entries = self.lock();
        let live: Vec<&Entry> = entries.values().filter(|e| e.record.holds_slot()).collect();
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
            record.id.clone(),
            Entry {
                record: record.clone(),
                channel: None,
            },
        );
        Ok(())
    }

    async fn start(
        &self,
        mut record: SandboxRecord,
        started: Instant,
        extras: Extras,
    ) -> Result<SandboxRecord, HostError> {
        let spec = SandboxSpec {
            id: record.id.clone(),
            image: record.image.clone(),
            limits: record.limits.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            labels: record.labels.clone(),
            prewarm_kernel: extras.kernel,
            prewarm_browser: extras.browser,
            pool: record.pool.clone(),
            secret: self.secret(&record.id),
            owner: record.owner.clone(),
        };
        record.container_id = self.backend.create(&spec).await?;
        let channel = self
            .wait_ready(&record.id, self.config.ready_timeout)
            .await?;
        self.config
            .egress
            .attach(
                &record.id,
                &spec.secret,
                channel.clone(),
                record.egress.clone(),
            )
            .await?;
        if !extras.env.is_empty() {
            configure(&record.id, channel.clone(), &extras.env).await?;
        }
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
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

/// What a new sandbox gets besides its record.
struct Extras {
    kernel: bool,
    browser: bool,
    env: HashMap<String, String>,
}

/// Gives sandbox `id`'s daemon its environment (`Configure`).
pub(super) async fn configure(
    id: &SandboxId,
    channel: Channel,
    env: &HashMap<String, String>,
) -> Result<(), HostError> {
    let mut client = agent_runtime_proto::v1::sandbox_client::SandboxClient::new(channel);
    let request = agent_runtime_proto::v1::ConfigureRequest { env: env.clone() };
    match tokio::time::timeout(CONFIGURE_DEADLINE, client.configure(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Err(HostError::NotReady {
                id: id.to_string(),
                reason: "its image is too old to take a sandbox environment; rebuild it with \
                         `agent-runtime image build`"
                    .into(),
            })
        }
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
            Err(HostError::InvalidArgument(status.message().to_owned()))
        }
        Ok(Err(status)) => Err(HostError::NotReady {
            id: id.to_string(),
            reason: format!("it did not take its environment: {}", status.message()),
        }),
        Err(_) => Err(HostError::NotReady {
            id: id.to_string(),
            reason: "it did not take its environment in time".into(),
        }),
    }
}

fn check_env(env: &HashMap<String, String>) -> Result<(), HostError> {
    if env.len() > MAX_ENV {
        return Err(HostError::InvalidArgument(format!(
            "at most {MAX_ENV} environment variables per sandbox"
        )));
    }
    for (k, v) in env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') || v.len() > MAX_ENV_VALUE {
            return Err(HostError::InvalidArgument(format!(
                "environment variable {k:?}: names are non-empty without '=' or NUL, values \
                 without NUL and at most {MAX_ENV_VALUE} bytes"
            )));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_anonymous_and_all_defaults() {
        let spec = CreateSpec::default();
        assert_eq!(spec.owner, ANONYMOUS);
        assert!(spec.memory.is_empty() && spec.labels.is_empty() && !spec.prewarm_kernel);
        assert_eq!((spec.cpu, spec.timeout_s), (0.0, 0));
        assert_eq!(CreateSpec::owned_by("alice").owner, "alice");
    }

    #[test]
    fn labels_are_checked() {
        assert!(check_labels(&HashMap::from([("a.b-c_1".into(), "v".into())])).is_ok());
        assert!(check_labels(&HashMap::from([("a b".into(), "v".into())])).is_err());
        assert!(check_labels(&HashMap::from([("".into(), "v".into())])).is_err());
        let many = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(check_labels(&many).is_err());
    }
}
