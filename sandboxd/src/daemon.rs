//! The daemon's life: listeners (TCP and the unix socket, each behind the host's handshake), the
//! `Sandbox`, `Egress` and `Telemetry` services beside health and reflection, the egress proxy's
//! listener, and an orderly shutdown on SIGTERM or SIGINT.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use agent_runtime_proto::v1::egress_server::EgressServer;
use agent_runtime_proto::v1::sandbox_server::SandboxServer;
use agent_runtime_proto::v1::telemetry_server::TelemetryServer;
use agent_runtime_telemetry::grpc::ServerSpans;
use anyhow::Context as _;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;
use tower::layer::util::{Identity as Identity_, Stack};

use crate::browser::Browser;
use crate::cli::{Args, Listen, Socket};
use crate::contexts::{Contexts, PREWARM_ENV};
use crate::egress::{self, EgressService};
use crate::exec::Exec;
use crate::files::Files;
use crate::identity::{authenticated, Identity};
use crate::service::SandboxService;
use crate::spans::SpansService;
use crate::workspace::Workspace;

/// Largest gRPC message either way: ReadFile and WriteFile carry up to 64 MiB of content.
pub const MAX_MESSAGE: usize = agent_runtime_proto::MAX_MESSAGE_BYTES;
/// How long shutdown waits for calls still in progress.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// `1`: launch the browser at start (a warm pool's `browser` shape).
pub const PREWARM_BROWSER_ENV: &str = "SANDBOXD_PREWARM_BROWSER";
/// The service name health reports on.
const SERVICE_NAME: &str = "agent_runtime.v1.Sandbox";
/// Health's name for "what was asked to start ahead has started".
const WARM_SERVICE: &str = agent_runtime_proto::WARM_HEALTH_SERVICE;

/// Runs the daemon until a shutdown signal, then kills every process it started.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.listen == Listen::Off && args.socket == Socket::Off {
        anyhow::bail!("both --listen and --socket are none; nothing to serve on");
    }
    let workspace = Workspace::new(&args.workspace);
    if !workspace.root().is_dir() {
        tracing::warn!(workspace = %workspace.root().display(), "the workspace directory does not exist");
    }
    let background = CancellationToken::new();
    let exec = Arc::new(Exec::new(workspace.clone(), background.clone()));
    let files = Arc::new(Files::new(workspace.clone()));
    let contexts = Arc::new(Contexts::new(workspace.clone(), background.child_token()));
    if std::env::var(PREWARM_ENV).is_ok_and(|v| v == "1") {
        contexts.enable_spare();
    }
    let browser = Arc::new(Browser::new(workspace.root().to_path_buf()));
    let prewarm_browser = std::env::var(PREWARM_BROWSER_ENV).is_ok_and(|v| v == "1");
    let identity = Identity::from_env()?;
    match &identity {
        Some(id) => {
            tracing::info!(sandbox_id = %id.sandbox_id, "connections must prove the host's handshake")
        }
        None => {
            tracing::warn!("no secret file: serving without the host handshake (development mode)")
        }
    }
    let service = SandboxService::new(exec.clone(), files, contexts.clone(), browser.clone())
        .with_identity(identity.clone());
    egress::install_extra_ca(args.extra_ca.as_deref()).await;
    let egress_stop = CancellationToken::new();
    let egress =
        EgressService::start(args.egress_listen, identity.clone(), egress_stop.clone()).await;
    let spans = SpansService::new(
        agent_runtime_telemetry::relay::queue(),
        identity.clone(),
        egress_stop.clone(),
    );
    // After egress: Chromium starts behind the proxy. `warm` (a health service) turns SERVING
    // once what was asked to start ahead has started, so a warm pool hands out a sandbox whose
    // browser or kernel is up, not one still launching it.
    let (warm_tx, warm) = tokio::sync::watch::channel(false);
    let kernel_up = std::env::var(PREWARM_ENV)
        .is_ok_and(|v| v == "1")
        .then(|| contexts.spare_started());
    let browser_prewarm = {
        let browser = browser.clone();
        tokio::spawn(async move {
            if prewarm_browser {
                browser.prewarm().await;
            }
            if let Some(mut up) = kernel_up {
                // Not started (it failed): the kernel starts on first use; stay not warm.
                let _ = up.wait_for(|up| *up).await;
            }
            warm_tx.send_replace(true);
        })
    };

    let stop = CancellationToken::new();
    let mut servers = tokio::task::JoinSet::new();
    if let Listen::On(addr) = args.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(%bound, "serving gRPC on TCP");
        // Nagle off on every accepted socket: tonic applies its `tcp_nodelay` only to listeners
        // it binds, and with Nagle on a stream's second small frame waits ~40 ms for the
        // client's delayed ACK.
        let accepted = TcpListenerStream::new(listener).map(|conn| {
            conn.inspect(|stream| {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                }
            })
        });
        let incoming = authenticated(accepted, identity.clone());
        let router = router(
            service.clone(),
            egress.clone(),
            spans.clone(),
            &identity,
            warm.clone(),
        )
        .await?;
        servers
            .spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()));
    }
    if let Socket::On(path) = &args.socket {
        let listener = bind_unix(path)?;
        tracing::info!(socket = %path.display(), "serving gRPC on a unix socket");
        let incoming = authenticated(UnixListenerStream::new(listener), identity.clone());
        let router = router(
            service.clone(),
            egress.clone(),
            spans.clone(),
            &identity,
            warm.clone(),
        )
        .await?;
        servers
            .spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()));
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        workspace = %workspace.root().display(),
        "sandboxd ready"
    );

    let result = tokio::select! {
        () = agent_runtime_telemetry::shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
        // A server that stops on its own failed.
        Some(ended) = servers.join_next() => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("a gRPC server stopped unexpectedly")),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("gRPC server failed")),
            Err(e) => Err(anyhow::Error::new(e).context("gRPC server task failed")),
        },
    };
    // Running calls end once their processes are gone; only then can the servers drain.
    exec.shutdown().await;
    contexts.shutdown();
    browser_prewarm.abort();
    browser.shutdown().await;
    egress_stop.cancel();
    stop.cancel();
    // Calls still streaming (a slow download) get a moment to finish, not forever.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("calls still running after {SHUTDOWN_GRACE:?}; dropping them");
        servers.shutdown().await;
    }
    if let Socket::On(path) = &args.socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    result
}

/// The full set of services, ready to serve on one listener; every call gets a span that
/// continues the caller's trace.
async fn router(
    service: SandboxService,
    egress: EgressService,
    spans: SpansService,
    identity: &Option<Identity>,
    mut warm: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Router<Stack<ServerSpans, Identity_>>> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(WARM_SERVICE, tonic_health::ServingStatus::NotServing)
        .await;
    {
        let health = health.clone();
        // Ends when warm turns true, or when the daemon drops the sender (stopping).
        tokio::spawn(async move {
            if warm.wait_for(|warm| *warm).await.is_ok() {
                health
                    .set_service_status(WARM_SERVICE, tonic_health::ServingStatus::Serving)
                    .await;
            }
        });
    }
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    health
        .set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agent_runtime_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(agent_runtime_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let sandbox = SandboxServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let sandbox_id = identity.as_ref().map_or("", |i| i.sandbox_id.as_str());
    Ok(tonic::transport::Server::builder()
        // Bulk bytes (egress downloads, uploads) arrive in fewer, larger HTTP/2 frames and
        // windows: the daemon shares the sandbox's CPU quota with the process it serves.
        .max_frame_size(Some(1 << 20))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20))
        .layer(ServerSpans::new(sandbox_id))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sandbox)
        .add_service(EgressServer::new(egress))
        .add_service(TelemetryServer::new(spans)))
}

/// Binds the unix socket, replacing a stale one, and opens it to every local user: the host
/// process connecting through the bind mount may run as another uid.
fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; remove it or pass another --socket",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind the unix socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot open up the permissions of {}", path.display()))?;
    Ok(listener)
}
