//! `agent-runtime serve`: builds what is missing, adopts earlier sandboxes, runs the reaper and
//! serves gRPC until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_runtime_proto::v1::sandboxes_server::SandboxesServer;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::backend::docker::{DockerBackend, DockerConfig};
use crate::backend::Backend;
use crate::config;
use crate::error::HostError;
use crate::grpc::lifecycle::Lifecycle;
use crate::grpc::proxy::SandboxProxy;
use crate::limits::Caps;
use crate::sandboxes::{Manager, ManagerConfig};

/// How long in-flight calls may run on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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
    /// Sandboxes with a started kernel kept ready for REST contexts.
    pub warm_contexts: usize,
}

/// Connects the Docker backend for these options.
pub async fn docker_backend(
    state_dir: &std::path::Path,
    instance: &str,
    image: Option<String>,
    sandboxd: Option<&std::path::Path>,
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
    })
    .await
}

/// Runs the host until a shutdown signal.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let idle_exit = config::idle_exit().map_err(anyhow::Error::msg)?;
    if let Some(addr) = opts.rest_listen {
        crate::rest::check_exposure(addr, &opts.basic_auth).map_err(anyhow::Error::msg)?;
    }
    let backend = docker_backend(
        &opts.state_dir,
        &opts.instance,
        opts.image.clone(),
        opts.sandboxd.as_deref(),
    )
    .await?;
    // One host per instance: two would both adopt, reap and destroy the same containers.
    let _instance_lock = lock_instance(&opts.state_dir, &opts.instance)?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let progress = |line: &str| eprintln!("image: {line}");
    let image = backend.ensure_image(false, &progress).await?;
    let manager = Arc::new(Manager::new(
        backend,
        ManagerConfig {
            image: image.clone(),
            max_sandboxes: opts.max_sandboxes,
            caps: opts.caps.clone(),
            ready_timeout: Duration::from_secs(30),
            warm_target: if opts.rest_listen.is_some() {
                opts.warm_contexts
            } else {
                0
            },
        },
    ));
    let (adopted, removed) = manager.adopt().await?;
    tracing::info!(adopted, removed, "took over sandboxes of an earlier host");

    let stop = CancellationToken::new();
    let reaper = tokio::spawn(manager.clone().run_reaper(opts.reap_interval, stop.clone()));
    let warm_pool = tokio::spawn(manager.clone().run_warm_pool(stop.clone()));

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

    let listener = tokio::net::TcpListener::bind(opts.grpc_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.grpc_listen))?;
    let bound = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when asked for port 0.
    eprintln!(
        "agent-runtime: gRPC listening on {bound} (image {image}, instance {})",
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
            Some(tokio::spawn(crate::rest::serve(
                listener,
                manager.clone(),
                opts.basic_auth.clone(),
                stop.clone(),
            )))
        }
        None => None,
    };

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
    let touch = activity.clone();

    let shutdown = stop.clone();
    let idle_stop = stop.clone();
    let server = tonic::transport::Server::builder()
        .trace_fn(move |_req| {
            touch.touch();
            tracing::Span::none()
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(SandboxesServer::new(Lifecycle::new(manager.clone())))
        .add_service(SandboxProxy::new(manager.clone()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = idle_stop.cancelled() => {}
            }
            shutdown.cancel();
        });
    // Graceful shutdown waits for every connection to close; clients that keep idle channels
    // open would hold the host forever, so in-flight calls get a bounded grace period.
    let grace = stop.clone();
    tokio::select! {
        r = server => r?,
        () = async move {
            grace.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("connections still open after {}s: stopping anyway", SHUTDOWN_GRACE.as_secs()),
    }

    stop.cancel();
    if let Some(w) = idle_watch {
        let _ = w.await;
    }
    let _ = reaper.await;
    let _ = warm_pool.await;
    if let Some(rest) = rest {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, rest).await;
    }
    if opts.cleanup_on_exit {
        manager.destroy_all().await;
    }
    eprintln!("agent-runtime: stopped");
    Ok(())
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

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
