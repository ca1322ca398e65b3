//! Docker backend (bollard): one hardened container per sandbox, reached over a unix socket in a
//! bind-mounted per-sandbox directory, so sandboxes need no network at all.

pub mod image;
pub mod workspace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use chrono::{DateTime, TimeZone, Utc};

use super::{Backend, BackendSandbox, Endpoint, Exit, Progress, SandboxSpec};
use crate::error::HostError;
use crate::ids::SandboxId;
use crate::limits::{Limits, PIDS_LIMIT};

/// Label every container we create carries.
pub const LABEL_MANAGED: &str = "agent-runtime.managed";
const LABEL_INSTANCE: &str = "agent-runtime.instance";
const LABEL_ID: &str = "agent-runtime.sandbox-id";
const LABEL_CREATED: &str = "agent-runtime.created-at";
const LABEL_EXPIRES: &str = "agent-runtime.expires-at";
const LABEL_MEMORY: &str = "agent-runtime.memory";
const LABEL_CPU: &str = "agent-runtime.cpu";
const LABEL_TIMEOUT: &str = "agent-runtime.timeout";
const LABEL_OWNER: &str = "agent-runtime.owner";
const LABEL_POOL: &str = "agent-runtime.pool";
const USER_LABEL_PREFIX: &str = "agent-runtime.user.";
/// File in a sandbox's host directory holding who a pooled sandbox was handed out to (owner and
/// labels, JSON): container labels cannot change after creation.
const CLAIM_FILE: &str = "claim.json";

/// Where sandboxd's socket lives inside the container.
const CONTAINER_RUN_DIR: &str = "/run/agent-runtime";
/// Socket file name inside the run directory.
const SOCKET_NAME: &str = "sandboxd.sock";
/// Secret file name inside the run directory (root 0600; the daemon reads it, user code cannot).
const SECRET_NAME: &str = "secret";
/// The extra CA certificate's file name inside the run directory (root 0600; sandboxd installs it).
const EXTRA_CA_NAME: &str = "extra-ca.pem";
/// The sandbox user (DESIGN.md §2): all user code runs as this uid.
const SANDBOX_UID: u32 = 1000;
/// What sandboxd keeps of root inside the container: start user code as uid 1000
/// (SETUID/SETGID), signal it (KILL), and reach the user's files and kernel sockets
/// (DAC_OVERRIDE; every file call on a caller's behalf runs with the user's fsuid).
const DAEMON_CAPS: [&str; 4] = ["SETUID", "SETGID", "KILL", "DAC_OVERRIDE"];

/// Settings of the Docker backend.
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// Directory holding one subdirectory per sandbox (socket dir and workspace).
    pub sandboxes_dir: PathBuf,
    /// Name of this host instance; it owns only containers labelled with it.
    pub instance: String,
    /// What to build the image from.
    pub image: image::ImageSpec,
    /// Use this image as is instead of building one.
    pub image_override: Option<String>,
    /// Size of each sandbox's `/workspace` filesystem in bytes; `None` leaves it unbounded.
    pub workspace_size: Option<u64>,
    /// An extra CA certificate (PEM) every sandbox trusts (`serve --sandbox-ca-cert`).
    pub extra_ca: Option<Vec<u8>>,
}

/// The Docker backend.
pub struct DockerBackend {
    docker: Docker,
    config: DockerConfig,
    /// Workspace images formatted ahead (with a sized workspace).
    formatted: Option<std::sync::Arc<workspace::Formatted>>,
}

impl DockerBackend {
    /// Connects to the local Docker daemon and negotiates the API version (Debian's dockerd 20.10
    /// speaks API 1.41, older than bollard's default).
    pub async fn connect(config: DockerConfig) -> Result<Self, HostError> {
        let docker = connect_docker().await?;
        std::fs::create_dir_all(&config.sandboxes_dir).map_err(|e| {
            HostError::io(
                format!(
                    "creating state directory {}",
                    config.sandboxes_dir.display()
                ),
                e,
            )
        })?;
        // Sandbox directories hold workspaces and sockets: no other local user may reach them
        // (the directory of sandboxes and the instance directory above it are root-only).
        set_mode(&config.sandboxes_dir, 0o700)?;
        if let Some(instance_dir) = config.sandboxes_dir.parent() {
            set_mode(instance_dir, 0o700)?;
        }
        // Not a sandbox id, so `sweep` leaves it alone.
        let formatted = match config.workspace_size {
            Some(size) => Some(workspace::Formatted::new(
                config.sandboxes_dir.join(".formatted-workspaces"),
                size,
            )?),
            None => None,
        };
        Ok(Self {
            docker,
            config,
            formatted,
        })
    }

    fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        self.config.sandboxes_dir.join(id.as_str())
    }

    fn expiry_file(&self, id: &SandboxId) -> PathBuf {
        self.sandbox_dir(id).join("expires-at")
    }

    /// Who a pooled sandbox was handed out to, if it was.
    fn read_claim(&self, id: &SandboxId) -> Option<Claim> {
        let text = std::fs::read(self.sandbox_dir(id).join(CLAIM_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn instance_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_owned(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_INSTANCE}={}", self.config.instance),
            ],
        )])
    }

    async fn prepare_dirs(
        &self,
        id: &SandboxId,
        secret: &agent_runtime_proto::auth::Secret,
    ) -> Result<(PathBuf, PathBuf), HostError> {
        if let Some(size) = self.config.workspace_size {
            let free = workspace::free_bytes(&self.config.sandboxes_dir)?;
            if free < size.saturating_add(workspace::DISK_RESERVE) {
                return Err(HostError::HostDisk {
                    path: self.config.sandboxes_dir.display().to_string(),
                    free,
                    needed: size,
                    reserve: workspace::DISK_RESERVE,
                });
            }
        }
        let dir = self.sandbox_dir(id);
        let run = dir.join("run");
        let workspace = dir.join("workspace");
        // A new sandbox never reuses a directory: anything already there is not ours.
        std::fs::create_dir(&dir)
            .map_err(|e| HostError::io(format!("creating {}", dir.display()), e))?;
        set_mode(&dir, 0o700)?;
        for d in [&run, &workspace] {
            std::fs::create_dir(d)
                .map_err(|e| HostError::io(format!("creating {}", d.display()), e))?;
        }
        // The daemon runs as root in the container and is the only one to enter here; user code
        // (uid 1000) can neither read the secret nor replace the socket.
        set_mode(&run, 0o700)?;
        write_private(&run.join(SECRET_NAME), secret.to_hex().as_bytes())?;
        if let Some(pem) = &self.config.extra_ca {
            write_private(&run.join(EXTRA_CA_NAME), pem)?;
        }
        match self.config.workspace_size {
            Some(size) => match &self.formatted {
                Some(formatted) => {
                    formatted
                        .mount(&workspace::image_path(&dir), &workspace)
                        .await?;
                }
                None => workspace::mount(&workspace::image_path(&dir), &workspace, size).await?,
            },
            None => {
                // A host that is not root cannot chown; a world-writable workspace works then.
                if chown(&workspace, SANDBOX_UID).is_err() {
                    set_mode(&workspace, 0o777)?;
                }
            }
        }
        Ok((run, workspace))
    }

    /// Removes a sandbox directory, unmounting its workspace first.
    async fn remove_dir(&self, dir: &Path) -> Result<(), HostError> {
        workspace::unmount(&dir.join("workspace")).await?;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostError::io(format!("removing {}", dir.display()), e)),
        }
    }
}

/// Who a pooled sandbox was handed out to (`claim.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Claim {
    owner: String,
    labels: HashMap<String, String>,
}

/// Connects to the Docker daemon named by DOCKER_HOST or the default socket.
pub async fn connect_docker() -> Result<Docker, HostError> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| {
        HostError::Backend(format!(
            "cannot connect to the Docker daemon: {e}; is dockerd running?"
        ))
    })?;
    docker.negotiate_version().await.map_err(|e| {
        HostError::Backend(format!(
            "cannot reach the Docker daemon ({e}); start it (e.g. `dockerd --bridge=none --iptables=false &`) \
             and check that you may use /var/run/docker.sock — `agent-runtime doctor` shows what is missing"
        ))
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HostError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| HostError::io(format!("setting permissions of {}", path.display()), e))
}

/// Writes a new file readable by its owner only (created 0600, never through a symlink).
fn write_private(path: &Path, content: &[u8]) -> Result<(), HostError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| HostError::io(format!("creating {}", path.display()), e))?;
    f.write_all(content)
        .map_err(|e| HostError::io(format!("writing {}", path.display()), e))
}

fn chown(path: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
}

fn docker_err(e: bollard::errors::Error) -> HostError {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            HostError::Backend(message)
        }
        other => HostError::Backend(other.to_string()),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn ts_label(t: &DateTime<Utc>) -> String {
    t.timestamp().to_string()
}

fn parse_ts(s: Option<&String>) -> Option<DateTime<Utc>> {
    let secs: i64 = s?.trim().parse().ok()?;
    Utc.timestamp_opt(secs, 0).single()
}

#[async_trait]
impl Backend for DockerBackend {
    async fn ensure_image(&self, force: bool, progress: Progress<'_>) -> Result<String, HostError> {
        if let Some(tag) = &self.config.image_override {
            self.docker.inspect_image(tag).await.map_err(|e| {
                HostError::Image(format!(
                    "image {tag} is not available ({}); build it or drop --image",
                    docker_err(e)
                ))
            })?;
            return Ok(tag.clone());
        }
        image::ensure_image(&self.docker, &self.config.image, force, progress)
            .await
            .map_err(|e| HostError::Image(e.to_string()))
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<String, HostError> {
        let (run_dir, workspace) = match self.prepare_dirs(&spec.id, &spec.secret).await {
            Ok(dirs) => dirs,
            Err(e) => {
                let _ = self.remove_dir(&self.sandbox_dir(&spec.id)).await;
                return Err(e);
            }
        };
        if let Err(e) = std::fs::write(self.expiry_file(&spec.id), ts_label(&spec.expires_at)) {
            let _ = self.remove_dir(&self.sandbox_dir(&spec.id)).await;
            return Err(HostError::io("writing sandbox expiry", e));
        }
        let mut labels = HashMap::from([
            (LABEL_MANAGED.to_owned(), "true".to_owned()),
            (LABEL_OWNER.to_owned(), spec.owner.clone()),
            (LABEL_INSTANCE.to_owned(), self.config.instance.clone()),
            (LABEL_ID.to_owned(), spec.id.to_string()),
            (LABEL_CREATED.to_owned(), ts_label(&spec.created_at)),
            (LABEL_EXPIRES.to_owned(), ts_label(&spec.expires_at)),
            (
                LABEL_MEMORY.to_owned(),
                spec.limits.memory_bytes.to_string(),
            ),
            (LABEL_CPU.to_owned(), spec.limits.cpu.to_string()),
            (
                LABEL_TIMEOUT.to_owned(),
                spec.limits.timeout.as_secs().to_string(),
            ),
        ]);
        for (k, v) in &spec.labels {
            labels.insert(format!("{USER_LABEL_PREFIX}{k}"), v.clone());
        }
        if let Some(pool) = &spec.pool {
            labels.insert(LABEL_POOL.to_owned(), pool.clone());
        }
        let memory = i64::try_from(spec.limits.memory_bytes)
            .map_err(|_| HostError::InvalidArgument("memory limit too large".into()))?;
        let host_config = HostConfig {
            memory: Some(memory),
            // Equal to memory: no swap.
            memory_swap: Some(memory),
            nano_cpus: Some((spec.limits.cpu * 1e9) as i64),
            pids_limit: Some(PIDS_LIMIT),
            network_mode: Some("none".to_owned()),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(DAEMON_CAPS.iter().map(|c| (*c).to_owned()).collect()),
            // Output reaches callers over gRPC, capped; a log would let user code writing to
            // the init's stdout fill the host's disk with dockerd's CPU outside the limits.
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            readonly_rootfs: Some(true),
            // tmpfs pages count against the memory limit anyway; the size keeps /tmp within it.
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!(
                    "rw,nosuid,nodev,size={},mode=1777",
                    spec.limits.memory_bytes
                ),
            )])),
            binds: Some(vec![
                format!("{}:{CONTAINER_RUN_DIR}:rw", run_dir.display()),
                format!("{}:/workspace:rw", workspace.display()),
            ]),
            // Docker's tini as PID 1 reaps orphans (Chromium helpers, `cmd &` leftovers).
            init: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            // sandboxd starts as root with DAEMON_CAPS only and runs all user code as uid 1000,
            // so user code cannot signal, stop, ptrace or read the daemon.
            user: Some("0:0".to_owned()),
            hostname: Some("sandbox".to_owned()),
            working_dir: Some("/workspace".to_owned()),
            env: Some(
                vec![
                    format!("{}={}", agent_runtime_proto::auth::SANDBOX_ID_ENV, spec.id),
                    format!("SANDBOXD_SOCKET={CONTAINER_RUN_DIR}/{SOCKET_NAME}"),
                    format!(
                        "{}={CONTAINER_RUN_DIR}/{SECRET_NAME}",
                        agent_runtime_proto::auth::SECRET_FILE_ENV
                    ),
                    format!("SANDBOXD_RUN_AS={SANDBOX_UID}:{SANDBOX_UID}"),
                    // The host reaches the daemon over the socket only; no TCP port for user code
                    // to knock on.
                    "SANDBOXD_LISTEN=none".to_owned(),
                    format!("SANDBOXD_PREWARM_KERNEL={}", u8::from(spec.prewarm_kernel)),
                    format!(
                        "SANDBOXD_PREWARM_BROWSER={}",
                        u8::from(spec.prewarm_browser)
                    ),
                ]
                .into_iter()
                .chain(
                    self.config
                        .extra_ca
                        .is_some()
                        .then(|| format!("SANDBOXD_EXTRA_CA={CONTAINER_RUN_DIR}/{EXTRA_CA_NAME}")),
                )
                // The container has no network: when the host exports spans, sandboxd's ride
                // the socket to it (`observe::spans`).
                .chain(
                    agent_runtime_telemetry::relay::relay_env()
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}")),
                )
                .collect(),
            ),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(spec.id.as_str())
            .build();
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(c) => c,
            Err(e) => {
                let _ = self.remove_dir(&self.sandbox_dir(&spec.id)).await;
                return Err(docker_err(e));
            }
        };
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.destroy(&spec.id).await;
            return Err(docker_err(e));
        }
        Ok(created.id)
    }

    async fn destroy(&self, id: &SandboxId) -> Result<(), HostError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(id.as_str(), Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            // A removal already under way (e.g. the reaper and a user at once) finishes by itself.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(docker_err(e)),
        }
        self.remove_dir(&self.sandbox_dir(id)).await
    }

    async fn list(&self) -> Result<Vec<BackendSandbox>, HostError> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&self.instance_filter())
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(docker_err)?;
        let mut out = Vec::new();
        for c in containers {
            let labels = c.labels.unwrap_or_default();
            let Some(id) = labels.get(LABEL_ID).and_then(|s| SandboxId::parse(s)) else {
                continue;
            };
            let created_at = parse_ts(labels.get(LABEL_CREATED)).unwrap_or_else(Utc::now);
            let file_expiry = std::fs::read_to_string(self.expiry_file(&id)).ok();
            let expires_at = parse_ts(file_expiry.as_ref())
                .or_else(|| parse_ts(labels.get(LABEL_EXPIRES)))
                .unwrap_or_else(Utc::now);
            let limits = Limits {
                memory_bytes: labels
                    .get(LABEL_MEMORY)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                cpu: labels
                    .get(LABEL_CPU)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0),
                timeout: std::time::Duration::from_secs(
                    labels
                        .get(LABEL_TIMEOUT)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0),
                ),
            };
            let claim = self.read_claim(&id);
            let user_labels = match &claim {
                Some(claim) => claim.labels.clone(),
                None => labels
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((k.strip_prefix(USER_LABEL_PREFIX)?.to_owned(), v.clone()))
                    })
                    .collect(),
            };
            out.push(BackendSandbox {
                id,
                container_id: c.id.unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                // A paused container (an operator's `docker pause`) is alive: its calls time out
                // until it is unpaused, but nothing of it is lost.
                running: c
                    .state
                    .map(|s| matches!(s.to_string().as_str(), "running" | "paused"))
                    .unwrap_or(false),
                limits,
                created_at,
                expires_at,
                labels: user_labels,
                owner: match &claim {
                    Some(claim) => claim.owner.clone(),
                    None => labels.get(LABEL_OWNER).cloned().unwrap_or_default(),
                },
                pool: labels.get(LABEL_POOL).cloned(),
                claimed: claim.is_some(),
            });
        }
        Ok(out)
    }

    async fn set_expiry(&self, id: &SandboxId, expires_at: DateTime<Utc>) -> Result<(), HostError> {
        std::fs::write(self.expiry_file(id), ts_label(&expires_at))
            .map_err(|e| HostError::io("writing sandbox expiry", e))
    }

    fn endpoint(&self, id: &SandboxId) -> Endpoint {
        Endpoint::Unix(self.sandbox_dir(id).join("run").join(SOCKET_NAME))
    }

    async fn claim(
        &self,
        id: &SandboxId,
        owner: &str,
        labels: &HashMap<String, String>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), HostError> {
        let claim = serde_json::to_vec(&Claim {
            owner: owner.to_owned(),
            labels: labels.clone(),
        })
        .map_err(|e| HostError::Backend(format!("encoding a claim: {e}")))?;
        // The directory is root's and not mounted into the sandbox: nothing there is planted.
        std::fs::write(self.sandbox_dir(id).join(CLAIM_FILE), claim)
            .map_err(|e| HostError::io("writing a sandbox's claim", e))?;
        self.set_expiry(id, expires_at).await
    }

    async fn pause(&self, id: &SandboxId) -> Result<(), HostError> {
        self.docker
            .pause_container(id.as_str())
            .await
            .map_err(docker_err)
    }

    async fn unpause(&self, id: &SandboxId) -> Result<(), HostError> {
        self.docker
            .unpause_container(id.as_str())
            .await
            .map_err(docker_err)
    }

    async fn sweep(&self, keep: &[SandboxId]) -> Result<(), HostError> {
        let entries = match std::fs::read_dir(&self.config.sandboxes_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HostError::io("reading the state directory", e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(SandboxId::parse) else {
                continue;
            };
            if !keep.contains(&id) {
                tracing::info!(sandbox_id = %id, "removing leftover sandbox directory");
                if let Err(e) = self.remove_dir(&entry.path()).await {
                    tracing::warn!(sandbox_id = %id, error = %e, "cannot remove leftover directory");
                }
            }
        }
        Ok(())
    }

    async fn watch_exits(
        &self,
        exits: tokio::sync::mpsc::Sender<Exit>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        use futures::StreamExt;
        let mut filters = self.instance_filter();
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        filters.insert("event".to_owned(), vec!["die".to_owned()]);
        loop {
            let options = EventsOptionsBuilder::default().filters(&filters).build();
            let mut events = self.docker.events(Some(options));
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    () = exits.closed() => return,
                    next = events.next() => next,
                };
                let Some(Ok(event)) = next else { break };
                let attrs = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                let Some(id) = attrs.get(LABEL_ID).and_then(|s| SandboxId::parse(s)) else {
                    continue;
                };
                let reason = match attrs.get("exitCode") {
                    Some(code) => format!("its container exited (code {code})"),
                    None => "its container exited".to_owned(),
                };
                if exits.send(Exit { id, reason }).await.is_err() {
                    return;
                }
            }
            // The event stream broke (dockerd restarted): wait, then watch again.
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }
}

impl DockerBackend {
    /// The image new sandboxes would run, and whether it exists already.
    pub async fn image_present(&self) -> Result<(String, bool), HostError> {
        let tag = match &self.config.image_override {
            Some(t) => t.clone(),
            None => {
                image::image_tag(&self.config.image).map_err(|e| HostError::Image(e.to_string()))?
            }
        };
        match self.docker.inspect_image(&tag).await {
            Ok(_) => Ok((tag, true)),
            Err(e) if is_not_found(&e) => Ok((tag, false)),
            Err(e) => Err(docker_err(e)),
        }
    }

    /// Builds the host image for deploy/docker-compose.yml (see `image::ensure_host_image`).
    pub async fn ensure_host_image(
        &self,
        agent_runtime: &Path,
        progress: Progress<'_>,
    ) -> Result<String, HostError> {
        image::ensure_host_image(&self.docker, &self.config.image, agent_runtime, progress)
            .await
            .map_err(|e| HostError::Image(e.to_string()))
    }

    /// The daemon's version and API version, for `doctor`.
    pub async fn daemon_version(&self) -> Result<String, HostError> {
        let v = self.docker.version().await.map_err(docker_err)?;
        Ok(format!(
            "Docker {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }
}
