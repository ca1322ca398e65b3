//! Harness for the end-to-end tests: starts real `agent-runtime serve` processes against the real
//! Docker daemon and talks to them over gRPC, as users do.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, ExecEvent, ExecExit, ExecRequest,
};
use agent_runtime_proto::SANDBOX_ID_HEADER;
use anyhow::{anyhow, bail, Context as _};
use tonic::transport::Channel;

/// Directory holding the built binaries (`target/debug` for `cargo test`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>
    exe.parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .expect("target dir")
}

/// Path of a workspace binary; panics with how to build it when missing.
pub fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} not found: build the workspace first (`cargo build --workspace`), as the README's test command does",
        p.display()
    );
    p
}

/// Fails the test, with the fix, when no Docker daemon answers.
pub fn require_docker() {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "these tests need a running Docker daemon: start it as root with \
         `dockerd --bridge=none --iptables=false &` (or run `bash .ci/run`, which installs and starts it)"
    );
}

/// Builds (once per test process) the sandbox image for the sandboxd beside the test binaries.
pub fn ensure_image() -> String {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            require_docker();
            let out = Command::new(binary("agent-runtime"))
                .args(["image", "build"])
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("running agent-runtime image build: {e}"))?;
            if !out.status.success() {
                return Err("agent-runtime image build failed (see its output above)".into());
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique instance name for one host of this test process.
pub fn unique_instance() -> String {
    format!(
        "e2e-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A running `agent-runtime serve`.
pub struct Host {
    child: Option<Child>,
    /// gRPC address, `http://127.0.0.1:PORT`.
    pub addr: String,
    /// REST base URL, `http://127.0.0.1:PORT`.
    pub rest: String,
    /// Instance name.
    pub instance: String,
    cleanup: bool,
    log: Arc<Mutex<String>>,
}

impl Host {
    /// Starts a host with a fresh instance that destroys its sandboxes when it stops.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_instance(&unique_instance(), true, extra)
    }

    /// Starts a host for `instance`.
    pub fn start_instance(instance: &str, cleanup: bool, extra: &[&str]) -> Self {
        ensure_image();
        let mut cmd = Command::new(binary("agent-runtime"));
        cmd.args([
            "serve",
            "--grpc-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "127.0.0.1:0",
            "--instance",
            instance,
        ]);
        if cleanup {
            cmd.arg("--cleanup-on-exit");
        }
        cmd.args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            // No warm pool unless a test asks (`--warm-contexts N`): tests count containers.
            .env("AGENT_RUNTIME_WARM_CONTEXTS", "0");
        let mut child = cmd.spawn().expect("spawning agent-runtime serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(bool, String)>();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (grpc, marker) in [(true, "gRPC listening on "), (false, "REST listening on ")]
                {
                    if let Some(rest) = line.split(marker).nth(1) {
                        if let Some(addr) = rest.split_whitespace().next() {
                            let _ = tx.send((grpc, addr.to_owned()));
                        }
                    }
                }
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let (mut addr, mut rest) = (None, None);
        while addr.is_none() || rest.is_none() {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok((true, a)) => addr = Some(a),
                Ok((false, a)) => rest = Some(a),
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "host did not start; its log:\n{}",
                        log.lock().map(|l| l.clone()).unwrap_or_default()
                    );
                }
            }
        }
        Self {
            child: Some(child),
            addr: format!("http://{}", addr.unwrap_or_default()),
            rest: format!("http://{}", rest.unwrap_or_default()),
            instance: instance.to_owned(),
            cleanup,
            log,
        }
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// A gRPC channel to the host.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .expect("address")
            .connect()
            .await
            .expect("connecting to the host")
    }

    /// A lifecycle client.
    pub async fn sandboxes(&self) -> SandboxesClient<Channel> {
        SandboxesClient::new(self.channel().await)
    }

    /// A sandbox-service client (pass `sandbox-id` with [`with_id`]).
    pub async fn sandbox(&self) -> SandboxClient<Channel> {
        SandboxClient::new(self.channel().await)
            .max_decoding_message_size(80 << 20)
            .max_encoding_message_size(80 << 20)
    }

    /// Creates a sandbox with default limits; returns its id.
    pub async fn create(&self) -> String {
        self.sandboxes()
            .await
            .create(CreateSandboxRequest::default())
            .await
            .unwrap_or_else(|s| panic!("create failed: {s:?}\nhost log:\n{}", self.log()))
            .into_inner()
            .sandbox_id
    }

    /// Destroys a sandbox.
    pub async fn destroy(&self, id: &str) {
        self.sandboxes()
            .await
            .destroy(DestroySandboxRequest {
                sandbox_id: id.to_owned(),
            })
            .await
            .expect("destroy");
    }

    /// Runs code and collects everything it streamed.
    pub async fn exec(
        &self,
        id: &str,
        language: &str,
        code: &str,
        timeout_s: f64,
    ) -> anyhow::Result<ExecOutcome> {
        let req = ExecRequest {
            language: language.into(),
            code: code.into(),
            timeout_seconds: timeout_s,
            ..Default::default()
        };
        exec_with(&mut self.sandbox().await, id, req).await
    }

    /// Stops the host with SIGTERM and waits for it (it destroys its sandboxes when started with cleanup).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
        // A host that had to be killed cannot clean up; never leave its containers running.
        if self.cleanup {
            for c in instance_containers(&self.instance) {
                let _ = docker(&["rm", "-f", &c]);
            }
        }
        if std::thread::panicking() {
            eprintln!("--- host log ({}) ---\n{}", self.instance, self.log());
        }
    }
}

/// Wraps a message with the `sandbox-id` metadata.
pub fn with_id<T>(id: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert(SANDBOX_ID_HEADER, id.parse().expect("ascii id"));
    req
}

/// What one exec produced.
#[derive(Debug, Default)]
pub struct ExecOutcome {
    /// All stdout bytes, as text.
    pub stdout: String,
    /// All stderr bytes, as text.
    pub stderr: String,
    /// The exit event.
    pub exit: ExecExit,
    /// Every event, with the time since the call started.
    pub events: Vec<(Duration, ExecEvent)>,
    /// Wall time of the whole call.
    pub elapsed: Duration,
}

/// Runs an exec request and collects the stream.
pub async fn exec_with(
    client: &mut SandboxClient<Channel>,
    id: &str,
    req: ExecRequest,
) -> anyhow::Result<ExecOutcome> {
    let started = Instant::now();
    let mut stream = client
        .exec(with_id(id, req))
        .await
        .map_err(|s| anyhow!("{s:?}"))?
        .into_inner();
    let mut out = ExecOutcome::default();
    let mut got_exit = false;
    while let Some(ev) = stream.message().await.map_err(|s| anyhow!("{s:?}"))? {
        match &ev.event {
            Some(Event::Stdout(b)) => out.stdout.push_str(&String::from_utf8_lossy(b)),
            Some(Event::Stderr(b)) => out.stderr.push_str(&String::from_utf8_lossy(b)),
            Some(Event::Exit(x)) => {
                if got_exit {
                    bail!("two exit events");
                }
                got_exit = true;
                out.exit = x.clone();
            }
            _ => {}
        }
        out.events.push((started.elapsed(), ev));
    }
    out.elapsed = started.elapsed();
    if !got_exit {
        bail!("stream ended without an exit event");
    }
    Ok(out)
}

/// Runs the docker CLI and returns stdout.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !out.status.success() {
        bail!("docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Containers (any state) of one host instance.
pub fn instance_containers(instance: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=agent-runtime.instance={instance}"),
    ])
    .map(|s| s.lines().map(str::to_owned).collect())
    .unwrap_or_default()
}

/// The host directory of a sandbox (default state dir, as root).
pub fn sandbox_dir(instance: &str, id: &str) -> PathBuf {
    let state = std::env::var_os("AGENT_RUNTIME_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/agent-runtime"));
    state
        .join("instances")
        .join(instance)
        .join("sandboxes")
        .join(id)
}

/// Adds `authorization: Bearer <token>` to every call (nothing when the token is `None`).
#[derive(Clone, Debug)]
pub struct Bearer(pub Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("token is not ascii"))?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }
}

/// A channel that sends a bearer token with every call.
pub type AuthedChannel = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

impl Host {
    /// A lifecycle client that authenticates with `token` (none: no `authorization` header).
    pub async fn sandboxes_as(&self, token: Option<&str>) -> SandboxesClient<AuthedChannel> {
        SandboxesClient::with_interceptor(self.channel().await, Bearer(token.map(str::to_owned)))
    }

    /// A sandbox-service client that authenticates with `token` (pass `sandbox-id` with [`with_id`]).
    pub async fn sandbox_as(&self, token: Option<&str>) -> SandboxClient<AuthedChannel> {
        SandboxClient::with_interceptor(self.channel().await, Bearer(token.map(str::to_owned)))
            .max_decoding_message_size(80 << 20)
            .max_encoding_message_size(80 << 20)
    }

    /// The host's `grpc.health.v1.Health/Check` status for the whole server (1 = SERVING).
    pub async fn health(&self, token: Option<&str>) -> Result<i32, tonic::Status> {
        grpc_health(&self.addr, token).await
    }
}

/// Asks `grpc.health.v1.Health/Check` (service "") at `addr`; returns the status number
/// (1 = SERVING).
///
/// The test crate has no health client, and the wire shapes match ones we have:
/// `HealthCheckRequest{service: ""}` encodes to nothing, as `PoolStatusRequest{}` does, and
/// `HealthCheckResponse.status` is field 1, a varint, as `PoolStatusResponse.running` is. So a
/// `PoolStatus` call whose path is rewritten to the health method is a health check.
pub async fn grpc_health(addr: &str, token: Option<&str>) -> Result<i32, tonic::Status> {
    use agent_runtime_proto::v1::PoolStatusRequest;
    use tonic::codegen::http;
    use tower::ServiceExt as _;

    let channel = Channel::from_shared(addr.to_owned())
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting to {addr}: {e}")))?;
    let to_health = channel.map_request(|mut req: http::Request<tonic::body::Body>| {
        let uri = req.uri();
        let rewritten = format!(
            "{}://{}/grpc.health.v1.Health/Check",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map(|a| a.as_str()).unwrap_or("localhost")
        );
        if let Ok(u) = rewritten.parse() {
            *req.uri_mut() = u;
        }
        req
    });
    let mut client = SandboxesClient::with_interceptor(to_health, Bearer(token.map(str::to_owned)));
    let reply = client.pool_status(PoolStatusRequest {}).await?;
    Ok(reply.into_inner().running as i32)
}
