//! Egress: the only way out of a sandbox (DESIGN.md §2.2). sandboxd offers an HTTP proxy at
//! 127.0.0.1:3128 inside the sandbox and carries each connection to this module over the
//! host↔sandboxd channel (`Egress.Listen`/`Carry`, `tunnel.rs`); here an HTTP proxy
//! (`proxy.rs`) decides every request against the sandbox's policy (`policy.rs`), resolves and
//! dials only public addresses (`resolve.rs`, `addr.rs`), and writes one audit line per
//! decision (`audit.rs`). Nothing in the sandbox can change its policy: it lives here, and on
//! disk under the host's state directory so a restarted host keeps it.

mod addr;
pub mod audit;
mod pipe;
mod policy;
mod proxy;
pub mod resolve;
mod tunnel;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use agent_runtime_proto::auth::Secret;
use agent_runtime_proto::v1::EgressStatus;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use policy::{Policy, Verdict, MAX_ENTRIES};
pub use resolve::Resolver;

use crate::error::HostError;
use crate::ids::SandboxId;

/// Settings of a host's egress proxy.
#[derive(Clone, Debug)]
pub struct EgressConfig {
    /// Where the audit log (`egress.log`) and the policies (`policies/<id>.json`) live.
    pub dir: PathBuf,
    /// Most proxy connections one sandbox may have open.
    pub max_connections: u32,
    /// Most bytes (both ways together) one sandbox may move through the proxy; 0: no cap.
    pub max_bytes: u64,
    /// Most proxy connections of all sandboxes together.
    pub max_connections_total: usize,
    /// Size at which the audit log rotates.
    pub log_max_bytes: u64,
    /// Name → address overrides (`--egress-test-resolve`, tests only).
    pub resolver: Resolver,
}

/// Default per-sandbox connection cap.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;
/// Default per-sandbox byte cap (8 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;

impl EgressConfig {
    /// Defaults, logging and persisting under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_connections_total: 4096,
            log_max_bytes: 64 << 20,
            resolver: Resolver::default(),
        }
    }
}

/// The proxy of one host: every sandbox's policy, connections and usage.
pub struct Egress {
    config: EgressConfig,
    audit: audit::Audit,
    sandboxes: Mutex<HashMap<SandboxId, Arc<SandboxEgress>>>,
    total: Arc<Semaphore>,
}

/// One sandbox's egress state.
pub(crate) struct SandboxEgress {
    id: SandboxId,
    policy: RwLock<Policy>,
    /// Bytes moved both ways, ever.
    bytes: AtomicU64,
    /// Proxy connections open now.
    open: AtomicU32,
    /// Connections to the outside open now, with the name they were allowed for, so a policy
    /// change can close the ones it no longer allows.
    outbound: Mutex<HashMap<u64, (String, CancellationToken)>>,
    next_outbound: AtomicU64,
    /// Cancelled when the sandbox goes: ends its listener and every connection.
    stop: CancellationToken,
    /// The listener running now.
    listener: Mutex<Option<CancellationToken>>,
    channel: Mutex<Channel>,
    proof: String,
}

impl SandboxEgress {
    fn policy(&self) -> Policy {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Registers a connection to the outside allowed for `host`; it is closed (its token
    /// cancelled) if a later policy refuses `host`, or when the returned guard drops.
    fn track(self: &Arc<Self>, host: &str) -> Outbound {
        let id = self.next_outbound.fetch_add(1, Ordering::Relaxed);
        let token = self.stop.child_token();
        self.outbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (host.to_owned(), token.clone()));
        Outbound {
            sandbox: self.clone(),
            id,
            token,
        }
    }
}

/// A tracked connection to the outside; see [`SandboxEgress::track`].
pub(crate) struct Outbound {
    sandbox: Arc<SandboxEgress>,
    id: u64,
    token: CancellationToken,
}

impl Drop for Outbound {
    fn drop(&mut self) {
        self.sandbox
            .outbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("dir", &self.config.dir)
            .field("sandboxes", &self.lock().len())
            .finish()
    }
}

impl Egress {
    /// A proxy with `config`; creates its directory (root 0700).
    pub fn new(config: EgressConfig) -> Result<Self, HostError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(config.dir.join("policies"))
            .map_err(|e| {
                HostError::Backend(format!(
                    "cannot create the egress directory {}: {e}",
                    config.dir.display()
                ))
            })?;
        if config.resolver.has_overrides() {
            tracing::warn!(
                "egress: test-only name overrides are on (--egress-test-resolve): the names they \
                 list reach their addresses unchecked; never use this outside tests"
            );
        }
        Ok(Self {
            audit: audit::Audit::new(&config.dir, config.log_max_bytes),
            total: Arc::new(Semaphore::new(config.max_connections_total)),
            sandboxes: Mutex::new(HashMap::new()),
            config,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SandboxId, Arc<SandboxEgress>>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn policy_path(&self, id: &SandboxId) -> PathBuf {
        self.config.dir.join("policies").join(format!("{id}.json"))
    }

    /// The policy saved for `id` (a sandbox taken over after a restart), or `none`.
    pub fn saved_policy(&self, id: &SandboxId) -> Policy {
        std::fs::read(self.policy_path(id))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save_policy(&self, id: &SandboxId, policy: &Policy) -> Result<(), HostError> {
        let path = self.policy_path(id);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(policy).map_err(|e| HostError::Backend(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| HostError::Backend(format!("cannot save the egress policy of {id}: {e}")))
    }

    /// Starts carrying `id`'s connections under `policy` over `channel`; returns once the
    /// daemon's proxy is listening, so the sandbox's first process already sees the policy.
    /// Its spans ride the same channel, for as long: `observe::spans::relay`.
    pub async fn attach(
        self: &Arc<Self>,
        id: &SandboxId,
        secret: &Secret,
        channel: Channel,
        policy: Policy,
    ) -> Result<(), HostError> {
        self.save_policy(id, &policy)?;
        let sandbox = Arc::new(SandboxEgress {
            id: id.clone(),
            policy: RwLock::new(policy.clone()),
            bytes: AtomicU64::new(0),
            open: AtomicU32::new(0),
            outbound: Mutex::new(HashMap::new()),
            next_outbound: AtomicU64::new(0),
            stop: CancellationToken::new(),
            listener: Mutex::new(None),
            channel: Mutex::new(channel.clone()),
            proof: secret.egress_proof(id.as_str()),
        });
        crate::observe::spans::relay(
            id.clone(),
            secret.telemetry_proof(id.as_str()),
            channel,
            sandbox.stop.child_token(),
        );
        if let Some(old) = self.lock().insert(id.clone(), sandbox.clone()) {
            old.stop.cancel();
        }
        tunnel::listen(self.clone(), sandbox, policy.proxy_env())
            .await
            .map_err(|reason| HostError::NotReady {
                id: id.to_string(),
                reason: format!("its egress proxy did not start: {reason}"),
            })
    }

    /// Stops everything of `id` (destroyed or dead); `forget` also deletes its saved policy.
    pub fn detach(&self, id: &SandboxId, forget: bool) {
        if let Some(sandbox) = self.lock().remove(id) {
            sandbox.stop.cancel();
        }
        if forget {
            let _ = std::fs::remove_file(self.policy_path(id));
        }
    }

    /// Replaces `id`'s policy. New connections follow it at once; open connections to hosts it
    /// refuses are closed; a change from or to `none` restarts the daemon's listener so the
    /// proxy variables of new processes follow.
    pub async fn set_policy(
        self: &Arc<Self>,
        id: &SandboxId,
        policy: Policy,
    ) -> Result<(), HostError> {
        let sandbox = self.get(id)?;
        let old = sandbox.policy();
        self.save_policy(id, &policy)?;
        *sandbox.policy.write().unwrap_or_else(|p| p.into_inner()) = policy.clone();
        let closed: Vec<String> = {
            let outbound = sandbox.outbound.lock().unwrap_or_else(|p| p.into_inner());
            outbound
                .values()
                .filter(|(host, _)| matches!(policy.decide(host), Verdict::Denied(_)))
                .map(|(host, token)| {
                    token.cancel();
                    host.clone()
                })
                .collect()
        };
        tracing::info!(sandbox_id = %id, network = policy.network.as_str(), closed = closed.len(), "egress policy changed");
        if old.proxy_env() != policy.proxy_env() {
            tunnel::listen(self.clone(), sandbox, policy.proxy_env())
                .await
                .map_err(|reason| {
                    HostError::Backend(format!(
                        "the policy is saved, but the sandbox's proxy did not restart: {reason}"
                    ))
                })?;
        }
        Ok(())
    }

    fn get(&self, id: &SandboxId) -> Result<Arc<SandboxEgress>, HostError> {
        self.lock()
            .get(id)
            .cloned()
            .ok_or_else(|| HostError::NotReady {
                id: id.to_string(),
                reason: "its egress proxy is not attached (the sandbox is starting or dead)".into(),
            })
    }

    /// `id`'s policy as applied now.
    pub fn policy(&self, id: &SandboxId) -> Option<Policy> {
        self.lock().get(id).map(|s| s.policy())
    }

    /// Policy, usage and (up to `log_lines`) audit lines of `id`.
    pub fn status(&self, id: &SandboxId, log_lines: usize) -> Result<EgressStatus, HostError> {
        let sandbox = self.get(id)?;
        Ok(EgressStatus {
            sandbox_id: id.to_string(),
            egress: Some(sandbox.policy().to_proto()),
            open_connections: sandbox.open.load(Ordering::Relaxed),
            max_connections: self.config.max_connections,
            bytes_total: sandbox.bytes.load(Ordering::Relaxed),
            max_bytes: self.config.max_bytes,
            log: self.audit.tail(id.as_str(), log_lines.min(1000)),
        })
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> PathBuf {
        self.audit.path().to_owned()
    }
}
