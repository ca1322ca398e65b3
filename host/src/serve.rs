//! `agent-runtime serve`: builds what is missing, adopts earlier sandboxes, runs the reaper and
//! serves gRPC until SIGINT/SIGTERM. The same wiring runs in tests as an [`InProcessHost`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::auth::Secret;
use agent_runtime_proto::v1::sandboxes_server::SandboxesServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::auth::Gate;
use crate::backend::docker::{DockerBackend, DockerConfig};
use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::config;
use crate::error::HostError;
use crate::grpc::lifecycle::Lifecycle;
use crate::grpc::proxy::SandboxProxy;
use crate::ids::SandboxId;
use crate::limits::Caps;
use crate::observe::{CallAudit, Metrics, Observe};
use crate::rest::auth::BasicAuth;
use crate::sandboxes::{contexts_pool, Manager, ManagerConfig, PoolShape};

/// How long in-flight calls may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a new sandbox may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// gRPC listen address.
    pub grpc_listen: SocketAddr,
    /// REST listen address; `None` disables the REST API.
    pub rest_listen: Option<SocketAddr>,
    /// Credentials the REST API requires.
    pub basic_auth: Option<crate::rest::auth::BasicAuth>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Instance name: this host owns only containers labelled with it.
    pub instance: String,
    /// Cap on concurrent sandboxes.
    pub max_sandboxes: usize,
    /// Largest limits a caller may ask for.
    pub caps: Caps,
    /// Use this image instead of building one.
    pub image: Option<String>,
    /// sandboxd binary to bake into the image.
    pub sandboxd: Option<PathBuf>,
    /// Destroy every sandbox on shutdown instead of leaving them for the next host.
    pub cleanup_on_exit: bool,
    /// How often the reaper looks for expired sandboxes.
    pub reap_interval: Duration,
    /// Sandboxes with a started kernel kept ready for REST contexts (the pool `contexts`).
    pub warm_contexts: usize,
    /// Warm pools (`--pool`).
    pub pools: Vec<PoolShape>,
    /// Tokens gRPC callers must present (`--token-file`); `None` = anonymous, loopback only.
    pub tokens: Option<crate::auth::Tokens>,
    /// Most memory all sandboxes together may be given; `None` = physical memory minus a reserve.
    pub memory_budget: Option<u64>,
    /// Size of each sandbox's `/workspace` filesystem.
    pub workspace_size: WorkspaceSize,
    /// The egress proxy's settings.
    pub egress: EgressOptions,
    /// The call audit log.
    pub audit: crate::observe::AuditOptions,
}

/// Settings of the egress proxy (`serve --egress-*`).
#[derive(Clone, Debug, Default)]
pub struct EgressOptions {
    /// Most proxy connections per sandbox; 0: the default.
    pub max_connections: u32,
    /// Most bytes per sandbox (0: no cap).
    pub max_bytes: u64,
    /// Test-only name overrides (`NAME=IP:PORT`).
    pub test_resolve: Vec<String>,
    /// Extra CA certificate every sandbox trusts.
    pub sandbox_ca_cert: Option<PathBuf>,
}

impl EgressOptions {
    /// The proxy these options describe, logging and keeping policies under `dir`.
    pub fn build(&self, dir: PathBuf) -> anyhow::Result<Arc<crate::egress::Egress>> {
        let mut config = crate::egress::EgressConfig::new(dir);
        if self.max_connections > 0 {
            config.max_connections = self.max_connections;
        }
        config.max_bytes = self.max_bytes;
        config.resolver = crate::egress::Resolver::with_test_overrides(&self.test_resolve)
            .map_err(anyhow::Error::msg)?;
        Ok(Arc::new(crate::egress::Egress::new(config)?))
    }

    /// The extra CA certificate's contents, checked to look like PEM.
    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = &self.sandbox_ca_cert else {
            return Ok(None);
        };
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("--sandbox-ca-cert {}: {e}", path.display()))?;
        if pem.len() > 1 << 20
            || !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----")
        {
            anyhow::bail!(
                "--sandbox-ca-cert {}: not a PEM certificate (no BEGIN CERTIFICATE line, or over 1 MiB)",
                path.display()
            );
        }
        Ok(Some(pem))
    }
}

/// How big a sandbox's `/workspace` may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkspaceSize {
    /// 1 GiB when the host can mount loop devices (root), else unbounded with a warning.
    Auto,
    /// Unbounded (`--workspace-size 0`).
    Unbounded,
    /// This many bytes; failing to provide it fails creation.
    Bytes(u64),
}

/// The workspace size `Auto` gives when the host can do it.
const DEFAULT_WORKSPACE_SIZE: u64 = 1024 * 1024 * 1024;
/// Memory kept for the host itself and the daemons when the budget is derived.
const MEMORY_RESERVE: u64 = 2 * 1024 * 1024 * 1024;

/// Connects the Docker backend for these options.
pub async fn docker_backend(
    state_dir: &std::path::Path,
    instance: &str,
    image: Option<String>,
    sandboxd: Option<&std::path::Path>,
    workspace_size: Option<u64>,
    extra_ca: Option<Vec<u8>>,
) -> Result<DockerBackend, HostError> {
    if !config::valid_instance(instance) {
        return Err(HostError::InvalidArgument(format!(
            "instance {instance:?}: use letters, digits, '-' and '_' (at most 64)"
        )));
    }
    DockerBackend::connect(DockerConfig {
        sandboxes_dir: config::sandboxes_dir(state_dir, instance),
        instance: instance.to_owned(),
        image: config::image_spec(state_dir, sandboxd),
        image_override: image,
        workspace_size,
        extra_ca,
    })
    .await
}

/// Runs the host until a shutdown signal.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let idle_exit = config::idle_exit().map_err(anyhow::Error::msg)?;
    if let Some(addr) = opts.rest_listen {
        crate::rest::check_exposure(addr, &opts.basic_auth).map_err(anyhow::Error::msg)?;
    }
    if !opts.grpc_listen.ip().is_loopback() && opts.tokens.is_none() {
        anyhow::bail!(
            "refusing to serve gRPC on {} without authentication: pass --token-file FILE \
             (lines NAME:TOKEN) or listen on a loopback address",
            opts.grpc_listen
        );
    }
    let workspace_size = match opts.workspace_size {
        WorkspaceSize::Unbounded => None,
        WorkspaceSize::Bytes(n) => {
            crate::backend::docker::workspace::supported().map_err(|e| {
                anyhow::anyhow!(
                    "--workspace-size needs loop-mounted filesystems: {e}; pass --workspace-size 0 \
                     to run without a disk limit"
                )
            })?;
            Some(n)
        }
        WorkspaceSize::Auto => match crate::backend::docker::workspace::supported() {
            Ok(()) => Some(DEFAULT_WORKSPACE_SIZE),
            Err(e) => {
                tracing::warn!(reason = %e, "sandbox workspaces have no size limit");
                None
            }
        },
    };
    Manager::check_pools(&opts.pools, &opts.caps).map_err(|e| anyhow::anyhow!("--pool: {e}"))?;
    let memory_budget = match opts.memory_budget {
        Some(b) => b,
        None => physical_memory()
            .saturating_sub(MEMORY_RESERVE)
            .max(crate::limits::MIN_MEMORY),
    };
    let backend = docker_backend(
        &opts.state_dir,
        &opts.instance,
        opts.image.clone(),
        opts.sandboxd.as_deref(),
        workspace_size,
        opts.egress.ca_pem()?,
    )
    .await?;
    // One host per instance: two would both adopt, reap and destroy the same containers.
    let _instance_lock = lock_instance(&opts.state_dir, &opts.instance)?;
    let host_key = load_host_key(&opts.state_dir, &opts.instance)?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let progress = |line: &str| eprintln!("image: {line}");
    let image = backend.ensure_image(false, &progress).await?;
    let manager = Arc::new(Manager::new(
        backend,
        ManagerConfig {
            image: image.clone(),
            max_sandboxes: opts.max_sandboxes,
            caps: opts.caps.clone(),
            ready_timeout: READY_TIMEOUT,
            pools: pools_of(
                &opts.pools,
                if opts.rest_listen.is_some() {
                    opts.warm_contexts
                } else {
                    0
                },
            ),
            memory_budget,
            host_key,
            egress: opts.egress.build(
                opts.state_dir
                    .join("instances")
                    .join(&opts.instance)
                    .join("egress"),
            )?,
        },
    ));
    let (adopted, removed) = manager.adopt().await?;
    tracing::info!(
        adopted = adopted.len(),
        removed,
        "took over sandboxes of an earlier host; checking them in the background"
    );

    let grpc = tokio::net::TcpListener::bind(opts.grpc_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.grpc_listen))?;
    // Tests and scripts read this line to learn the port when asked for port 0.
    eprintln!(
        "agent-runtime: gRPC listening on {} (image {image}, instance {})",
        grpc.local_addr()?,
        opts.instance
    );
    let rest = match opts.rest_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} for REST: {e} (pass --rest-listen to change it)"
                )
            })?;
            eprintln!(
                "agent-runtime: REST listening on {}",
                listener.local_addr()?
            );
            Some((listener, opts.basic_auth.clone()))
        }
        None => None,
    };

    let stop = CancellationToken::new();
    // Idle exit (for hosts mcp-bridge starts): every call counts as activity.
    let activity = Arc::new(IdleClock::new());
    let idle_watch = idle_exit.map(|after| {
        tokio::spawn(watch_idle(
            manager.clone(),
            activity.clone(),
            after,
            stop.clone(),
        ))
    });
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = agent_runtime_telemetry::shutdown_signal() => stop.cancel(),
                () = stop.cancelled() => {}
            }
        }
    });
    let gate = Gate::new(opts.tokens.clone());
    let observe = Observe::new(
        Metrics::new(),
        CallAudit::new(&opts.audit).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the audit log {}: {e} (pass --audit-log PATH or none)",
                opts.audit
                    .path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        })?,
        gate.clone(),
    );
    let served = run(Wiring {
        manager: manager.clone(),
        adopted,
        observe,
        gate,
        grpc,
        rest,
        reap_interval: opts.reap_interval,
        activity,
        grace: SHUTDOWN_GRACE,
        stop,
    })
    .await;
    if let Some(w) = idle_watch {
        let _ = w.await;
    }
    let _ = signals.await;
    served?;
    if opts.cleanup_on_exit {
        manager.destroy_all().await;
    }
    eprintln!("agent-runtime: stopped");
    Ok(())
}

/// A host's gRPC services over `manager`: health, reflection v1 and v1alpha (grpcurl 1.8 asks
/// v1alpha), `Sandboxes` behind `gate`'s interceptor, and the forwarding `Sandbox` proxy, which
/// checks `gate` itself.
pub async fn grpc_routes(manager: &Arc<Manager>, gate: &Gate) -> anyhow::Result<Routes> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SandboxesServer<Lifecycle>>()
        .await;
    health_reporter
        .set_service_status(
            "agent_runtime.v1.Sandbox",
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agent_runtime_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agent_runtime_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SandboxesServer::with_interceptor(
            Lifecycle::new(manager.clone(), gate.clone()),
            gate.interceptor(),
        ))
        .add_service(SandboxProxy::new(manager.clone(), gate.clone())))
}

/// A host whose manager exists (and has adopted) and whose ports are bound.
struct Wiring {
    manager: Arc<Manager>,
    /// Sandboxes `adopt` recorded, to probe now that the ports are open.
    adopted: Vec<SandboxId>,
    /// Spans, metrics and the audit log of every call.
    observe: Arc<Observe>,
    gate: Gate,
    grpc: tokio::net::TcpListener,
    rest: Option<(tokio::net::TcpListener, Option<BasicAuth>)>,
    reap_interval: Duration,
    /// Touched by every gRPC call.
    activity: Arc<IdleClock>,
    /// How long open calls may run on once `stop` is cancelled.
    grace: Duration,
    stop: CancellationToken,
}

/// Runs the host's jobs (adoption probes, exit watch, reaper, warm pool) and servers (gRPC,
/// REST) until `stop` is cancelled, then stops them all. Shared by `serve` and
/// [`InProcessHost`], so tests run the very wiring the binary does.
async fn run(w: Wiring) -> anyhow::Result<()> {
    let Wiring {
        manager,
        adopted,
        observe,
        gate,
        grpc,
        rest,
        reap_interval,
        activity,
        grace,
        stop,
    } = w;
    // A sandbox that does not answer must never keep the ports closed: probe after opening.
    let adoption = tokio::spawn({
        let manager = manager.clone();
        async move { manager.probe_adopted(adopted).await }
    });
    let exit_watch = tokio::spawn(manager.clone().run_exit_watch(stop.clone()));
    let reaper = tokio::spawn(manager.clone().run_reaper(reap_interval, stop.clone()));
    let warm_pool = tokio::spawn(manager.clone().run_pools(stop.clone()));
    let rest = rest.map(|(listener, auth)| {
        tokio::spawn(crate::rest::serve(
            listener,
            manager.clone(),
            auth,
            observe.clone(),
            stop.clone(),
        ))
    });

    let served = match grpc_routes(&manager, &gate).await {
        Ok(routes) => {
            let shutdown = stop.clone();
            let server = tonic::transport::Server::builder()
                .trace_fn(move |_req| {
                    activity.touch();
                    tracing::Span::none()
                })
                .layer(observe.layer())
                .add_routes(routes)
                // Nagle off on every accepted socket: tonic applies its own `tcp_nodelay` only to
                // listeners it binds, and with Nagle on a server stream's second small frame
                // waited ~40 ms for the client's delayed ACK (an `echo hi` took 46 ms, not 5).
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                    async move { shutdown.cancelled().await },
                );
            // Graceful shutdown waits for every connection to close; clients that keep idle
            // channels open would hold the host forever, so in-flight calls get a bounded grace.
            let grace_over = stop.clone();
            tokio::select! {
                r = server => r.map_err(anyhow::Error::from),
                () = async move {
                    grace_over.cancelled().await;
                    tokio::time::sleep(grace).await;
                } => {
                    tracing::warn!("connections still open after {}s: stopping anyway", grace.as_secs_f64());
                    Ok(())
                }
            }
        }
        Err(e) => Err(e),
    };

    stop.cancel();
    let _ = reaper.await;
    let _ = warm_pool.await;
    let _ = exit_watch.await;
    adoption.abort();
    if let Some(rest) = rest {
        let _ = tokio::time::timeout(grace, rest).await;
    }
    served
}

/// Settings of an [`InProcessHost`]: the host without Docker, for tests.
#[derive(Clone, Debug)]
pub struct InProcessOptions {
    /// Cap on concurrent sandboxes. Default 8.
    pub max_sandboxes: usize,
    /// Largest limits a caller may ask for. Default [`Caps::default`].
    pub caps: Caps,
    /// Most memory all sandboxes together may be given. Default 64 GiB.
    pub memory_budget: u64,
    /// Tokens gRPC callers must present; `None` (default) = everyone is anonymous.
    pub tokens: Option<crate::auth::Tokens>,
    /// Serve the REST API too. Default true.
    pub rest: bool,
    /// Credentials the REST API requires. Default none.
    pub basic_auth: Option<BasicAuth>,
    /// Warm sandboxes kept for REST contexts (the pool `contexts`). Default 0.
    pub warm_contexts: usize,
    /// Warm pools. Default none.
    pub pools: Vec<PoolShape>,
    /// How often the reaper runs. Default 1 s.
    pub reap_interval: Duration,
    /// How long a new sandbox may take to answer. Default 30 s.
    pub ready_timeout: Duration,
    /// The key sandbox secrets derive from; `None` (default) = a fresh one. Pass the previous
    /// host's [`InProcessHost::host_key`] to restart over the same backend.
    pub host_key: Option<Secret>,
    /// How long open calls may run on at shutdown. Default 1 s.
    pub shutdown_grace: Duration,
    /// The egress proxy's settings. Default: the defaults, no test overrides.
    pub egress: EgressOptions,
    /// Where the egress proxy logs and keeps policies; `None` (default) = a fresh directory
    /// under the system temp dir. Pass the previous host's [`InProcessHost::egress_dir`] to
    /// restart over the same sandboxes.
    pub egress_dir: Option<PathBuf>,
    /// The call audit log's file; `None` (default) = no audit log.
    pub audit_log: Option<PathBuf>,
}

impl Default for InProcessOptions {
    fn default() -> Self {
        Self {
            max_sandboxes: 8,
            caps: Caps::default(),
            memory_budget: 64 * 1024 * 1024 * 1024,
            tokens: None,
            rest: true,
            basic_auth: None,
            warm_contexts: 0,
            pools: Vec::new(),
            reap_interval: Duration::from_secs(1),
            ready_timeout: READY_TIMEOUT,
            host_key: None,
            shutdown_grace: Duration::from_secs(1),
            egress: EgressOptions::default(),
            egress_dir: None,
            audit_log: None,
        }
    }
}

/// A host running inside the test process over any [`Backend`] (usually
/// [`crate::backend::local::LocalBackend`]), on 127.0.0.1 with ephemeral ports, with the same
/// wiring as `agent-runtime serve`: adoption, exit watch, reaper, warm pool, gRPC (health,
/// reflection, `Sandboxes` with the token gate, the forwarding proxy) and REST.
pub struct InProcessHost {
    /// The gRPC address.
    pub grpc: SocketAddr,
    /// The REST address, when REST is on.
    pub rest: Option<SocketAddr>,
    /// The manager behind both.
    pub manager: Arc<Manager>,
    /// The key its sandbox secrets derive from.
    pub host_key: Secret,
    /// Where its egress proxy logs (`egress.log`) and keeps policies.
    pub egress_dir: PathBuf,
    /// Its metrics and audit log.
    pub observe: Arc<Observe>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcessHost {
    /// Builds the manager over `backend`, adopts what the backend already runs, opens the ports
    /// and starts everything; returns once the ports accept connections.
    pub async fn start(backend: Arc<dyn Backend>, opts: InProcessOptions) -> anyhow::Result<Self> {
        let host_key = match opts.host_key {
            Some(key) => key,
            None => Secret::generate()?,
        };
        let image = backend.ensure_image(false, &|_: &str| {}).await?;
        let egress_dir = match opts.egress_dir {
            Some(dir) => dir,
            None => std::env::temp_dir().join(format!(
                "agent-runtime-egress-{}-{}",
                std::process::id(),
                hex::encode(agent_runtime_proto::auth::random::<6>()?)
            )),
        };
        let manager = Arc::new(Manager::new(
            backend,
            ManagerConfig {
                image,
                max_sandboxes: opts.max_sandboxes,
                caps: opts.caps,
                ready_timeout: opts.ready_timeout,
                pools: pools_of(&opts.pools, if opts.rest { opts.warm_contexts } else { 0 }),
                memory_budget: opts.memory_budget,
                host_key: host_key.clone(),
                egress: opts.egress.build(egress_dir.clone())?,
            },
        ));
        let (adopted, _removed) = manager.adopt().await?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let grpc = tokio::net::TcpListener::bind(loopback).await?;
        let grpc_addr = grpc.local_addr()?;
        let (rest, rest_addr) = if opts.rest {
            let listener = tokio::net::TcpListener::bind(loopback).await?;
            let addr = listener.local_addr()?;
            (Some((listener, opts.basic_auth)), Some(addr))
        } else {
            (None, None)
        };
        let stop = CancellationToken::new();
        let gate = Gate::new(opts.tokens);
        let observe = Observe::new(
            Metrics::new(),
            CallAudit::new(&crate::observe::AuditOptions {
                path: opts.audit_log,
                max_bytes: crate::observe::audit::DEFAULT_MAX_BYTES,
            })?,
            gate.clone(),
        );
        let task = tokio::spawn(run(Wiring {
            manager: manager.clone(),
            adopted,
            observe: observe.clone(),
            gate,
            grpc,
            rest,
            reap_interval: opts.reap_interval,
            activity: Arc::new(IdleClock::new()),
            grace: opts.shutdown_grace,
            stop: stop.clone(),
        }));
        Ok(Self {
            grpc: grpc_addr,
            rest: rest_addr,
            manager,
            host_key,
            egress_dir,
            observe,
            stop,
            task: Some(task),
        })
    }

    /// A host over a fresh [`LocalBackend`] (sandboxd processes; see its doc for where the
    /// binary is found); the backend is returned too, to kill or stop daemons.
    pub async fn local(opts: InProcessOptions) -> anyhow::Result<(Self, Arc<LocalBackend>)> {
        let backend = Arc::new(LocalBackend::new()?);
        let host = Self::start(backend.clone(), opts).await?;
        Ok((host, backend))
    }

    /// The gRPC address as a URL: `http://127.0.0.1:PORT`.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// The REST base URL, `http://127.0.0.1:PORT`, when REST is on.
    pub fn rest_url(&self) -> Option<String> {
        self.rest.map(|a| format!("http://{a}"))
    }

    /// Stops the servers and jobs and waits for them. Sandboxes stay with the backend, as
    /// with `serve` without `--cleanup-on-exit`, so a new host over it adopts them.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for InProcessHost {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The configured pools plus `--warm-contexts`' (unless a pool of that name is configured).
fn pools_of(pools: &[PoolShape], warm_contexts: usize) -> Vec<PoolShape> {
    let mut all = pools.to_vec();
    if let Some(contexts) = contexts_pool(warm_contexts) {
        if !all.iter().any(|p| p.name == contexts.name) {
            all.push(contexts);
        }
    }
    all
}

/// Total physical memory in bytes (0 when unknown).
fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages <= 0 || size <= 0 {
        return 0;
    }
    (pages as u64).saturating_mul(size as u64)
}

/// The instance's host key (`<state>/instances/<instance>/host.key`, root 0600), created on first
/// use. Every sandbox's secret derives from it, so a restarted host can authenticate the daemons
/// it adopts without keeping per-sandbox secrets.
fn load_host_key(
    state_dir: &std::path::Path,
    instance: &str,
) -> anyhow::Result<agent_runtime_proto::auth::Secret> {
    use agent_runtime_proto::auth::Secret;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = state_dir.join("instances").join(instance);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("host.key");
    match std::fs::symlink_metadata(&path) {
        Ok(meta) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = unsafe { libc::geteuid() };
            if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
                anyhow::bail!(
                    "{} must be a regular file owned by this user with mode 0600; remove it to \
                     make a new one (running sandboxes of this instance are then replaced)",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            Secret::from_hex(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} does not hold a key; remove it to make a new one",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Secret::generate()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            f.write_all(key.to_hex().as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Takes an exclusive flock on `<state>/instances/<instance>/host.lock`, held while the returned
/// file is open (the kernel drops it when the process dies, however it dies).
fn lock_instance(state_dir: &std::path::Path, instance: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let dir = state_dir.join("instances").join(instance);
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("host.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; LOCK_NB makes it return at once.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another `agent-runtime serve` already runs instance {instance:?} (it holds {}): \
             use that one, stop it, or pass a different --instance",
            path.display()
        );
    }
    Ok(file)
}

/// When the host last saw a call.
struct IdleClock {
    started: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl IdleClock {
    fn new() -> Self {
        Self {
            started: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_ms
            .store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(
            now.saturating_sub(self.last_ms.load(std::sync::atomic::Ordering::Relaxed)),
        )
    }
}

/// Stops the host once it has had no sandboxes and no calls for `after`.
async fn watch_idle(
    manager: Arc<Manager>,
    clock: Arc<IdleClock>,
    after: Duration,
    stop: CancellationToken,
) {
    let tick = Duration::from_secs(1).min(after);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        if !manager.list().is_empty() {
            clock.touch();
        } else if clock.idle_for() >= after {
            eprintln!(
                "agent-runtime: idle for {}s (no sandboxes, no calls): exiting",
                after.as_secs()
            );
            stop.cancel();
            return;
        }
    }
}
