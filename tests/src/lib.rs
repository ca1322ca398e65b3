//! Harness for the end-to-end tests: starts real `agent-runtime serve` processes against the real
//! Docker daemon and talks to them over gRPC, as users do.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent_runtime_client::{sandbox_client, with_sandbox, RunOutcome, SandboxId, Transport};
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::sandboxes_client::SandboxesClient;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, ExecError, ExecEvent, ExecExit, ExecRequest,
    GetSandboxRequest, ReadFileRequest, RichResult, RunCodeRequest, WriteFileRequest,
};
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
        Self::launch(instance, cleanup, extra, &[])
    }

    /// Starts a host with a fresh instance (destroying its sandboxes when it stops) and `env` set
    /// on its process only (tests share this process's environment).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::launch(&unique_instance(), true, extra, env)
    }

    fn launch(instance: &str, cleanup: bool, extra: &[&str], env: &[(&str, &str)]) -> Self {
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
            .env("AGENT_RUNTIME_WARM_CONTEXTS", "0")
            .envs(env.iter().copied());
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
                        "host did not start (it exited, or hung for 120 s); its log:\n{}",
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
        sandbox_client(self.channel().await)
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

/// Wraps a message with the `sandbox-id` metadata (the client layer's [`with_sandbox`]); `id`
/// must be a well-formed sandbox id.
pub fn with_id<T>(id: &str, msg: T) -> tonic::Request<T> {
    let sandbox = SandboxId::parse(id).unwrap_or_else(|| panic!("{id:?} is not a sandbox id"));
    with_sandbox(msg, &sandbox)
}

/// What one Exec or RunCode streamed, folded by the client layer's [`RunOutcome`] (kept whole in
/// `outcome`: `error`, `success()`, `timed_out()`…), with its text and results at hand and the
/// exit event a finished run always has.
#[derive(Debug, Default)]
pub struct ExecOutcome {
    /// All stdout, as text.
    pub stdout: String,
    /// All stderr, as text.
    pub stderr: String,
    /// Rich results (RunCode), in order.
    pub results: Vec<RichResult>,
    /// The exit event.
    pub exit: ExecExit,
    /// Every event, in order.
    pub events: Vec<ExecEvent>,
    /// The client layer's fold of the events.
    pub outcome: RunOutcome,
    /// Wall time of the whole call, for benchmarks' numbers; tests assert order, not this.
    pub elapsed: Duration,
}

impl ExecOutcome {
    /// Every error event, in order (the fold keeps the last as `outcome.error`).
    pub fn errors(&self) -> Vec<&ExecError> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                Some(Event::Error(err)) => Some(err),
                _ => None,
            })
            .collect()
    }
}

/// How long a run may go without ending before a test calls it hung (runs in the tests time out
/// within a minute; this only stops a stuck test).
const RUN_GUARD: Duration = Duration::from_secs(300);

/// An Exec or RunCode stream being read: wait for an event that proves the run reached a point,
/// act, then [`Run::finish`].
pub struct Run {
    stream: tonic::Streaming<ExecEvent>,
    started: Instant,
    outcome: RunOutcome,
    events: Vec<ExecEvent>,
}

impl Run {
    fn new(stream: tonic::Streaming<ExecEvent>, started: Instant) -> Self {
        Self {
            stream,
            started,
            outcome: RunOutcome::new(),
            events: Vec::new(),
        }
    }

    /// Reads and folds the next event; `None` at the end of the stream. Panics on an event after
    /// the exit event or an empty event (the protocol forbids both).
    pub async fn next(&mut self) -> Result<Option<&ExecEvent>, tonic::Status> {
        let Some(ev) = self.stream.message().await? else {
            return Ok(None);
        };
        assert!(
            self.outcome.exit.is_none(),
            "an event after the exit event: {ev:?}"
        );
        assert!(ev.event.is_some(), "an empty event");
        self.outcome.add(&ev);
        self.events.push(ev);
        Ok(self.events.last())
    }

    /// Reads until the stdout so far contains `needle`: the run has reached that point. Fails the
    /// test when the run ends (or fails, or hangs) first.
    pub async fn until_stdout(&mut self, needle: &str) {
        let wait = async {
            while !self.outcome.stdout.contains(needle) {
                match self.next().await {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!(
                        "the run ended without printing {needle:?}: {:?}",
                        self.outcome
                    ),
                    Err(s) => panic!("the run failed before printing {needle:?}: {s:?}"),
                }
            }
        };
        hang_guard(RUN_GUARD, &format!("waiting for {needle:?}"), wait).await;
    }

    /// The fold of the events read so far.
    pub fn so_far(&self) -> &RunOutcome {
        &self.outcome
    }

    /// Reads the rest of the stream. Panics unless exactly one exit event came, or as hung.
    pub async fn finish(mut self) -> Result<ExecOutcome, tonic::Status> {
        let rest = async {
            while self.next().await?.is_some() {}
            Ok::<_, tonic::Status>(())
        };
        hang_guard(RUN_GUARD, "the rest of the run", rest).await?;
        let exit = self.outcome.exit.clone().unwrap_or_else(|| {
            panic!("the stream ended without an exit event: {:?}", self.outcome)
        });
        Ok(ExecOutcome {
            stdout: self.outcome.stdout.clone(),
            stderr: self.outcome.stderr.clone(),
            results: self.outcome.results.clone(),
            exit,
            events: self.events,
            outcome: self.outcome,
            elapsed: self.started.elapsed(),
        })
    }
}

/// Starts an Exec; read it with [`Run`].
pub async fn start_exec<T: Transport>(
    client: &mut SandboxClient<T>,
    id: &str,
    req: ExecRequest,
) -> Result<Run, tonic::Status> {
    let started = Instant::now();
    let stream = client.exec(with_id(id, req)).await?.into_inner();
    Ok(Run::new(stream, started))
}

/// Starts a RunCode in a context; read it with [`Run`].
pub async fn start_run_code<T: Transport>(
    client: &mut SandboxClient<T>,
    sandbox: &str,
    context: &str,
    code: &str,
    timeout_s: f64,
) -> Result<Run, tonic::Status> {
    let started = Instant::now();
    let req = RunCodeRequest {
        context_id: context.into(),
        code: code.into(),
        timeout_seconds: timeout_s,
    };
    let stream = client.run_code(with_id(sandbox, req)).await?.into_inner();
    Ok(Run::new(stream, started))
}

/// Runs an exec request and collects the stream (errors carry the status's code name).
pub async fn exec_with(
    client: &mut SandboxClient<Channel>,
    id: &str,
    req: ExecRequest,
) -> anyhow::Result<ExecOutcome> {
    let run = start_exec(client, id, req)
        .await
        .map_err(|s| anyhow!("{s:?}"))?;
    run.finish().await.map_err(|s| anyhow!("{s:?}"))
}

/// Runs code in a context and collects the stream.
pub async fn run_code(
    client: &mut SandboxClient<Channel>,
    sandbox: &str,
    context: &str,
    code: &str,
    timeout_s: f64,
) -> Result<ExecOutcome, tonic::Status> {
    start_run_code(client, sandbox, context, code, timeout_s)
        .await?
        .finish()
        .await
}

/// Which of several concurrent things finished first: each calls [`Order::done`] when it ends,
/// and the test asserts the order (never how long anything took).
#[derive(Debug, Default)]
pub struct Order(Mutex<Vec<&'static str>>);

impl Order {
    /// Records that `what` has finished.
    pub fn done(&self, what: &'static str) {
        self.0.lock().expect("order lock").push(what);
    }

    /// Whether `what` has finished yet.
    pub fn has(&self, what: &str) -> bool {
        self.0.lock().expect("order lock").contains(&what)
    }

    /// What finished, in order.
    pub fn seen(&self) -> Vec<&'static str> {
        self.0.lock().expect("order lock").clone()
    }
}

/// Panics with "hung" when `fut` is not done within `limit`: a guard that stops a stuck test,
/// not a check of speed.
pub async fn hang_guard<F: std::future::Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what} hung (no answer in {limit:?})"),
    }
}

impl Host {
    /// Runs shell code, failing the test (with the host log) when the call fails or hangs.
    pub async fn sh(&self, id: &str, code: &str) -> ExecOutcome {
        self.must_exec(id, "shell", code).await
    }

    /// Runs Python and parses the one JSON object it prints.
    pub async fn py_json(&self, id: &str, code: &str) -> serde_json::Value {
        let out = self.must_exec(id, "python", code).await;
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", out.stdout, out.stderr))
    }

    async fn must_exec(&self, id: &str, language: &str, code: &str) -> ExecOutcome {
        match tokio::time::timeout(Duration::from_secs(90), self.exec(id, language, code, 60.0))
            .await
        {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!(
                "{language} in {id} failed: {e}\ncode: {code}\nhost log:\n{}",
                self.log()
            ),
            Err(_) => panic!(
                "{language} in {id} hung for 90 s (did user code stop sandboxd?)\ncode: {code}\nhost log:\n{}",
                self.log()
            ),
        }
    }

    /// Reads a whole file through the host, as a client would (no client deadline: the host's
    /// own applies); a guard fails the test if it hangs.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>, tonic::Status> {
        let req = ReadFileRequest {
            path: path.into(),
            max_bytes: 0,
        };
        let call = async { self.sandbox().await.read_file(with_id(id, req)).await };
        hang_guard(
            Duration::from_secs(90),
            &format!("ReadFile {path} in {id}"),
            call,
        )
        .await
        .map(|r| r.into_inner().content)
    }

    /// Writes a whole file through the host; fails the test on an error.
    pub async fn write_file(&self, id: &str, path: &str, content: &[u8]) {
        let req = WriteFileRequest {
            path: path.into(),
            content: content.to_vec(),
            ..Default::default()
        };
        self.sandbox()
            .await
            .write_file(with_id(id, req))
            .await
            .unwrap_or_else(|s| panic!("WriteFile {path} in {id}: {s:?}"));
    }

    /// A sandbox's status as `Get` reports it, or the error code.
    pub async fn status(&self, id: &str) -> Result<String, tonic::Code> {
        self.sandboxes()
            .await
            .get(GetSandboxRequest {
                sandbox_id: id.to_owned(),
            })
            .await
            .map(|r| r.into_inner().status)
            .map_err(|s| s.code())
    }

    /// Polls `Get` until `done` holds; fails the test as hung, naming
    /// `what` was awaited and the last status, when two minutes pass first (a guard against
    /// waiting forever, not a speed check).
    pub async fn wait_status(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Result<String, tonic::Code>) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.status(id).await;
            if done(&s) {
                return;
            }
            if Instant::now() > deadline {
                panic!("hung waiting for {id} to be {what}: Get still says {s:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The host pid of a container's sandboxd (the child of Docker's init).
pub fn daemon_host_pid(container: &str) -> i32 {
    let init = docker(&["inspect", "-f", "{{.State.Pid}}", container]).expect("inspect pid");
    let init = init.trim();
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children"))
        .expect("children of the container's init");
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .find(|p| {
            // The daemon is root's; a process it starts is called sandboxd until its exec too.
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sandboxd")
                && std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .is_some_and(|u| u.split_whitespace().next() == Some("0"))
                })
        })
        .unwrap_or_else(|| panic!("no sandboxd under {container}'s init ({children})"))
}

/// A sandbox whose daemon is stopped (SIGSTOP from the host, as user code could once do from
/// inside): Docker sees a running container, the daemon answers nothing. Continued on drop.
pub struct Stopped(i32);

impl Stopped {
    /// Stops the daemon of sandbox `container`, and waits until every thread of it is stopped.
    pub fn new(container: &str) -> Self {
        let pid = daemon_host_pid(container);
        let stopped = || {
            std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the command name's closing parenthesis.
                        stat.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
                    })
                })
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // SAFETY: plain kill(2) on a pid read from /proc a moment ago.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            std::thread::sleep(Duration::from_millis(20));
            if stopped() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sandboxd {pid} of {container} did not stop: {}",
                std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
            );
        }
        Self(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: plain kill(2), continuing the process stopped above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// A `docker pause`d sandbox, unpaused on drop (however the test ends).
pub struct Paused(String);

impl Paused {
    /// Pauses the container of sandbox `id`.
    pub fn new(id: &str) -> Self {
        docker(&["pause", id]).expect("docker pause");
        Self(id.to_owned())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = docker(&["unpause", &self.0]);
    }
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

/// Waits until an instance has no containers left (cleanup that happens after a call returns);
/// fails the test as hung, naming `what` was awaited and the containers left, after two
/// minutes (a guard against waiting forever, not a speed check).
pub fn wait_no_containers(instance: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = instance_containers(instance);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("hung waiting for {what}: containers left {left:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
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
        let authed = tonic::service::interceptor::InterceptedService::new(
            self.channel().await,
            Bearer(token.map(str::to_owned)),
        );
        sandbox_client(authed)
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
