//! One Jupyter kernel process: started in its own session, connected over IPC sockets in its own
//! directory, made ready, interrupted, shut down — and killed whatever happens to its owner.
//!
//! Every socket has a reader task that forwards messages into a bounded channel (channels are
//! cancel-safe in `select!`, raw socket reads are not); a message that does not parse is logged and
//! skipped. A waiter task owns the child and reaps it, so a kernel that dies is noticed at once and
//! never lingers as a zombie.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jupyter_protocol::{
    ConnectionInfo, ExecuteRequest, JupyterMessage, JupyterMessageContent, KernelInfoRequest,
    ShutdownRequest, Transport,
};
use jupyter_zmq_client::{
    create_client_control_connection, create_client_iopub_connection,
    create_client_shell_connection_with_identity, peer_identity_for_session,
    ClientControlConnection, DealerSendConnection,
};
use rand::RngCore;
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::{privileges, processes};

/// How long a kernel may take to answer its first kernel_info_request.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often kernel_info_request is repeated until iopub answers (ipykernel 6 sends no welcome,
/// and a SUB socket misses what was published before its subscription arrived).
const READY_PROBE: Duration = Duration::from_millis(300);
/// Messages buffered per socket; past it the reader waits and the kernel's own queue takes over.
const CHANNEL: usize = 1024;
/// Lines of the kernel's stderr kept for error messages.
const STDERR_LINES: usize = 30;
/// Sets (or, for `None`, removes) environment variables in the kernel; `Kernel::sync_env` calls it.
const ENV_SYNC: &str = "def _agent_runtime_env(changes):
    import os
    for k, v in changes.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
";

/// Where kernel directories live: one per kernel, holding its connection file and IPC sockets.
pub fn kernels_root() -> PathBuf {
    std::env::temp_dir().join("agent-runtime-kernels")
}

/// The kernels alive (session id → directory), so that daemon shutdown can kill them all and
/// remove their directories synchronously, whoever owns them at that moment.
#[derive(Default)]
pub struct Live(Mutex<HashMap<i32, PathBuf>>);

impl Live {
    fn add(&self, pid: i32, dir: &Path) {
        if let Ok(mut live) = self.0.lock() {
            live.insert(pid, dir.to_path_buf());
        }
    }

    fn remove(&self, pid: i32) {
        if let Ok(mut live) = self.0.lock() {
            live.remove(&pid);
        }
    }

    /// Kills every kernel session and removes every kernel directory.
    pub fn kill_all(&self) {
        let live: Vec<(i32, PathBuf)> = self
            .0
            .lock()
            .map(|mut l| l.drain().collect())
            .unwrap_or_default();
        let pids: Vec<i32> = live.iter().map(|(pid, _)| *pid).collect();
        processes::kill_sessions_blocking(&pids);
        for (_, dir) in live {
            let _ = remove_dir(&dir);
        }
    }
}

/// The process side of a kernel; dropping it kills the kernel's session and removes its directory.
struct Process {
    pid: i32,
    dir: PathBuf,
    exited: CancellationToken,
    /// Stops the reader, stderr and waiter tasks.
    tasks: CancellationToken,
    live: Arc<Live>,
}

impl Drop for Process {
    fn drop(&mut self) {
        // The session is killed even after the leader exited: its children may live on.
        processes::kill_session(self.pid);
        self.tasks.cancel();
        self.live.remove(self.pid);
        if let Err(e) = remove_dir(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a kernel directory");
            }
        }
    }
}

/// A message from the kernel, or the news that it is gone.
pub enum Incoming {
    /// A reply on the shell channel.
    Shell(JupyterMessage),
    /// A broadcast on iopub.
    Iopub(JupyterMessage),
    /// The kernel process exited.
    Exited,
}

/// The last lines of the kernel's stderr, and how many lines it wrote in all.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<(VecDeque<String>, u64)>>);

impl StderrTail {
    fn push(&self, line: String) {
        if let Ok(mut guard) = self.0.lock() {
            let (tail, count) = &mut *guard;
            if tail.len() == STDERR_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
            *count += 1;
        }
    }

    /// How many lines the kernel has written so far.
    fn count(&self) -> u64 {
        self.0.lock().map(|g| g.1).unwrap_or(0)
    }

    /// The kept lines written after the first `mark` lines.
    fn since(&self, mark: u64) -> Vec<String> {
        self.0
            .lock()
            .map(|g| {
                let (tail, count) = &*g;
                let new = count.saturating_sub(mark).min(tail.len() as u64) as usize;
                tail.iter().skip(tail.len() - new).cloned().collect()
            })
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|g| g.0.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// A running, ready kernel.
pub struct Kernel {
    process: Process,
    cwd: PathBuf,
    shell: DealerSendConnection,
    control: ClientControlConnection,
    shell_rx: mpsc::Receiver<JupyterMessage>,
    iopub_rx: mpsc::Receiver<JupyterMessage>,
    stderr: StderrTail,
    /// What the sandbox environment and egress gave its environment
    /// (`crate::environment::process_env`), as of start or the last
    /// [`Kernel::sync_env`].
    env: Vec<(String, String)>,
    /// How long the start took.
    pub startup: Duration,
}

impl Kernel {
    /// Starts `python3 -m ipykernel_launcher` in `cwd` and waits until it is ready.
    pub async fn start(cwd: &Path, live: &Arc<Live>) -> Result<Self> {
        let started = Instant::now();
        let root = kernels_root();
        let id = format!("k-{}", random_hex(6));
        let dir = root.join(&id);
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        // The directory and the connection file belong to the sandbox user, who runs the kernel
        // (and binds its sockets there); made as that user, nothing planted in /tmp is followed
        // with the daemon's rights.
        privileges::as_user(|| {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(io("creating", &dir))
        })??;
        let info = ConnectionInfo {
            // IPC endpoints are `ipc://{ip}-{port}`: the ports are only suffixes here.
            ip: dir.join("s").display().to_string(),
            transport: Transport::IPC,
            shell_port: 1,
            iopub_port: 2,
            stdin_port: 3,
            control_port: 4,
            hb_port: 5,
            key: random_hex(16),
            signature_scheme: "hmac-sha256".into(),
            kernel_name: Some("python3".into()),
        };
        let file = dir.join("kernel.json");
        let written = serde_json::to_vec(&info)
            .map_err(|e| Error::Internal(format!("encoding the kernel connection file: {e}")))
            .and_then(|json| {
                privileges::as_user(|| {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .mode(0o600)
                        .open(&file)
                        .map_err(io("writing", &file))?;
                    std::io::Write::write_all(&mut f, &json).map_err(io("writing", &file))
                })?
            });
        if let Err(e) = written {
            let _ = remove_dir(&dir);
            return Err(e);
        }

        let env = crate::environment::process_env();
        let mut cmd = Command::new("python3");
        crate::environment::hide_daemon_settings(&mut cmd);
        cmd.args(["-m", "ipykernel_launcher", "-f"])
            .arg(&file)
            .arg("--HistoryManager.enabled=False")
            .current_dir(cwd)
            .env("HOME", "/tmp")
            .env("IPYTHONDIR", "/tmp/.ipython")
            .env("MPLBACKEND", "module://matplotlib_inline.backend_inline")
            .env("PYDEVD_DISABLE_FILE_VALIDATION", "1")
            .env("JUPYTER_PLATFORM_DIRS", "1")
            .env("PYTHONUNBUFFERED", "1")
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        processes::isolate(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(source) => {
                let _ = remove_dir(&dir);
                return Err(Error::Spawn {
                    program: "python3 (ipykernel)",
                    source,
                });
            }
        };
        let Some(pid) = child.id().map(|p| p as i32) else {
            let _ = remove_dir(&dir);
            return Err(Error::Internal(
                "the kernel exited before it had a pid".into(),
            ));
        };
        let process = Process {
            pid,
            dir,
            exited: CancellationToken::new(),
            tasks: CancellationToken::new(),
            live: live.clone(),
        };
        live.add(pid, &process.dir);
        tracing::debug!(pid, kernel = id, cwd = %cwd.display(), "kernel spawned");

        let stderr = StderrTail::default();
        if let Some(pipe) = child.stderr.take() {
            // Drained always: a full pipe would block the kernel.
            let tail = stderr.clone();
            let stop = process.tasks.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(pipe).lines();
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        line = lines.next_line() => match line {
                            Ok(Some(line)) => {
                                tracing::debug!(pid, line, "kernel stderr");
                                tail.push(line);
                            }
                            _ => break,
                        },
                    }
                }
            });
        }
        {
            let exited = process.exited.clone();
            let stop = process.tasks.clone();
            tokio::spawn(async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    () = stop.cancelled() => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                tracing::debug!(pid, ?status, "kernel exited");
                exited.cancel();
            });
        }

        let connected = tokio::time::timeout(START_TIMEOUT, async {
            tokio::select! {
                () = process.exited.cancelled() => Err("the kernel exited during startup".to_owned()),
                connected = connect(&info, &process) => connected,
            }
        })
        .await;
        let (shell, control, shell_rx, iopub_rx) = match connected {
            Ok(Ok(sockets)) => sockets,
            Ok(Err(reason)) => return Err(start_error(&reason, &stderr, &process).await),
            Err(_) => return Err(start_error("no connection within 30 s", &stderr, &process).await),
        };
        let mut kernel = Self {
            process,
            cwd: cwd.to_path_buf(),
            shell,
            control,
            shell_rx,
            iopub_rx,
            stderr,
            env,
            startup: Duration::ZERO,
        };
        let deadline = started + START_TIMEOUT;
        if let Err(reason) = kernel.wait_ready(deadline).await {
            return Err(start_error(&reason, &kernel.stderr, &kernel.process).await);
        }
        kernel.startup = started.elapsed();
        tracing::info!(
            pid,
            kernel = id,
            startup_ms = kernel.startup.as_millis() as u64,
            "kernel ready"
        );
        Ok(kernel)
    }

    /// Ready = a kernel_info round trip on shell and a message on iopub parented to one of our
    /// requests (so our subscription is in place and no output can be missed).
    async fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        let mut sent = HashSet::new();
        let (mut shell_ok, mut iopub_ok) = (false, false);
        while !(shell_ok && iopub_ok) {
            if Instant::now() >= deadline {
                return Err(format!("not ready within {}s", START_TIMEOUT.as_secs()));
            }
            let request: JupyterMessage = KernelInfoRequest {}.into();
            sent.insert(request.header.msg_id.clone());
            self.shell
                .send(request)
                .await
                .map_err(|e| format!("sending kernel_info_request: {e}"))?;
            let round = tokio::time::Instant::now() + READY_PROBE;
            while !(shell_ok && iopub_ok) {
                let incoming = tokio::select! {
                    () = tokio::time::sleep_until(round) => break,
                    incoming = self.recv() => incoming,
                };
                match incoming {
                    Incoming::Shell(m) if parent_in(&m, &sent) => shell_ok = true,
                    Incoming::Iopub(m) if parent_in(&m, &sent) => iopub_ok = true,
                    Incoming::Exited => return Err("the kernel exited during startup".into()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The kernel's pid, which is also its session and process group id.
    pub fn pid(&self) -> i32 {
        self.process.pid
    }

    /// Cancelled once the kernel process has exited.
    pub fn exited(&self) -> CancellationToken {
        self.process.exited.clone()
    }

    /// The kernel's working directory.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Moves the kernel to another working directory.
    pub async fn chdir(&mut self, cwd: &Path) -> Result<()> {
        let path = serde_json::to_string(&cwd.display().to_string())
            .map_err(|e| Error::Internal(format!("encoding a path: {e}")))?;
        // A JSON string is a valid Python string literal.
        let code = format!("import os as _os\n_os.chdir({path})\ndel _os");
        self.run_silently(&code, Duration::from_secs(10)).await?;
        self.cwd = cwd.to_path_buf();
        Ok(())
    }

    /// Brings `os.environ` up to date with what the sandbox environment and egress give processes
    /// started now (a spare kernel started before the host configured the sandbox or switched
    /// proxy variables on or off); nothing to do otherwise.
    pub async fn sync_env(&mut self) -> Result<()> {
        let now = crate::environment::process_env();
        if now == self.env {
            return Ok(());
        }
        // Egress's variables and the sandbox environment's, before and now: set or removed.
        let mut keys: Vec<String> = crate::egress::managed_vars()
            .map(str::to_owned)
            .chain(self.env.iter().map(|(k, _)| k.clone()))
            .chain(now.iter().map(|(k, _)| k.clone()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let changes: serde_json::Map<String, serde_json::Value> = keys
            .into_iter()
            .map(|key| {
                let value = now
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(serde_json::Value::Null, |(_, v)| v.clone().into());
                (key, value)
            })
            .collect();
        // The JSON text as a JSON string, which is also a valid Python string literal.
        let literal = serde_json::to_string(&serde_json::Value::Object(changes).to_string())
            .map_err(|e| Error::Internal(format!("encoding environment changes: {e}")))?;
        let code = format!(
            "{ENV_SYNC}_agent_runtime_env(__import__('json').loads({literal}))\n\
             del _agent_runtime_env"
        );
        self.run_silently(&code, Duration::from_secs(10)).await?;
        self.env = now;
        Ok(())
    }

    /// Sends an execute_request and returns its msg_id.
    pub async fn execute(&mut self, code: &str, silent: bool) -> Result<String> {
        let request: JupyterMessage = ExecuteRequest {
            code: code.to_owned(),
            silent,
            store_history: !silent,
            user_expressions: None,
            allow_stdin: false,
            // Otherwise a request that arrives just after an error can come back "aborted".
            stop_on_error: false,
        }
        .into();
        let id = request.header.msg_id.clone();
        self.shell
            .send(request)
            .await
            .map_err(|e| Error::Kernel(format!("sending the code to the kernel: {e}")))?;
        Ok(id)
    }

    /// Runs code silently and waits for it (used to move a spare kernel to its context's cwd).
    pub async fn run_silently(&mut self, code: &str, limit: Duration) -> Result<()> {
        let id = self.execute(code, true).await?;
        let waited = tokio::time::timeout(limit, async {
            loop {
                match self.recv().await {
                    Incoming::Shell(m) if parent_is(&m, &id) => {
                        return match m.content {
                            JupyterMessageContent::ExecuteReply(r)
                                if r.status == jupyter_protocol::ReplyStatus::Ok =>
                            {
                                Ok(())
                            }
                            JupyterMessageContent::ExecuteReply(r) => Err(Error::Kernel(
                                r.error
                                    .map(|e| format!("{}: {}", e.ename, e.evalue))
                                    .unwrap_or_else(|| "the kernel refused the code".into()),
                            )),
                            _ => Ok(()),
                        }
                    }
                    Incoming::Exited => return Err(Error::Kernel("the kernel exited".into())),
                    _ => {}
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| Err(Error::Kernel("the kernel did not answer".into())))
    }

    /// The next message or the kernel's exit; cancel-safe.
    pub async fn recv(&mut self) -> Incoming {
        tokio::select! {
            biased;
            Some(m) = self.shell_rx.recv() => Incoming::Shell(m),
            Some(m) = self.iopub_rx.recv() => Incoming::Iopub(m),
            () = self.process.exited.cancelled() => Incoming::Exited,
        }
    }

    /// How many lines the kernel has written to its stderr so far (a mark for
    /// [`Kernel::stderr_since`]).
    pub fn stderr_mark(&self) -> u64 {
        self.stderr.count()
    }

    /// The kernel's stderr lines written since `mark` (at most the last few dozen).
    pub fn stderr_since(&self, mark: u64) -> Vec<String> {
        self.stderr.since(mark)
    }

    /// Drops messages left over from earlier requests (late output of an interrupted run).
    pub fn drain_stale(&mut self) {
        while self.shell_rx.try_recv().is_ok() {}
        while self.iopub_rx.try_recv().is_ok() {}
    }

    /// Sends SIGINT to the kernel (its `interrupt_mode` is `signal`); false when it is gone.
    pub fn interrupt(&self) -> bool {
        interrupt_pid(self.process.pid, &self.process.exited)
    }

    /// Asks the kernel to exit, kills its session when it has not within `grace`, and removes its
    /// directory.
    pub async fn shutdown(mut self, grace: Duration) {
        if !self.process.exited.is_cancelled() {
            let sent = tokio::time::timeout(
                grace,
                self.control.send(ShutdownRequest { restart: false }.into()),
            )
            .await;
            if matches!(sent, Ok(Ok(()))) {
                let _ = tokio::time::timeout(grace, self.process.exited.cancelled()).await;
            }
        }
        // Dropping the process kills what is left and removes the directory.
    }
}

/// SIGINT to a kernel's pid unless it has exited.
pub fn interrupt_pid(pid: i32, exited: &CancellationToken) -> bool {
    if exited.is_cancelled() || pid <= 1 {
        return false;
    }
    // SAFETY: kill only sends a signal, to a kernel we started and whose exit we have not seen.
    unsafe { libc::kill(pid, libc::SIGINT) == 0 }
}

type Sockets = (
    DealerSendConnection,
    ClientControlConnection,
    mpsc::Receiver<JupyterMessage>,
    mpsc::Receiver<JupyterMessage>,
);

/// Connects iopub (retrying while the kernel binds), shell and control, and starts the readers.
async fn connect(info: &ConnectionInfo, process: &Process) -> Result<Sockets, String> {
    let session = random_hex(16);
    let mut iopub = loop {
        match create_client_iopub_connection(info, "", &session).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::debug!(error = %e, "iopub connect failed; retrying");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let identity = peer_identity_for_session(&session).map_err(|e| e.to_string())?;
    let shell = create_client_shell_connection_with_identity(info, &session, identity)
        .await
        .map_err(|e| format!("connecting to the shell socket: {e}"))?;
    let control = create_client_control_connection(info, &session)
        .await
        .map_err(|e| format!("connecting to the control socket: {e}"))?;
    let (shell_tx, mut shell_recv) = shell.split();

    let (s_tx, shell_rx) = mpsc::channel(CHANNEL);
    let stop = process.tasks.clone();
    let exited = process.exited.clone();
    let pid = process.pid;
    tokio::spawn(async move {
        loop {
            let read = tokio::select! {
                () = stop.cancelled() => break,
                read = shell_recv.read() => read,
            };
            match read {
                Ok(m) => {
                    if s_tx.send(m).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    if exited.is_cancelled() {
                        break;
                    }
                    tracing::debug!(pid, error = %e, "skipping a shell message");
                }
            }
        }
    });
    let (i_tx, iopub_rx) = mpsc::channel(CHANNEL);
    let stop = process.tasks.clone();
    let exited = process.exited.clone();
    tokio::spawn(async move {
        loop {
            let read = tokio::select! {
                () = stop.cancelled() => break,
                read = iopub.read() => read,
            };
            match read {
                Ok(m) => {
                    let sent = tokio::select! {
                        () = stop.cancelled() => break,
                        sent = i_tx.send(m) => sent,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    if exited.is_cancelled() {
                        break;
                    }
                    tracing::debug!(pid, error = %e, "skipping an iopub message");
                }
            }
        }
    });
    Ok((shell_tx, control, shell_rx, iopub_rx))
}

/// A start failure with the kernel's last stderr lines; the kernel is killed when `process` drops.
async fn start_error(reason: &str, stderr: &StderrTail, process: &Process) -> Error {
    // Give the kernel's last words a moment to arrive.
    let _ = tokio::time::timeout(Duration::from_millis(200), process.exited.cancelled()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    tracing::warn!(pid = process.pid, reason, "kernel did not start");
    Error::KernelStart {
        reason: reason.to_owned(),
        stderr: stderr.text(),
    }
}

/// True when `m` answers the request `id`.
pub fn parent_is(m: &JupyterMessage, id: &str) -> bool {
    m.parent_header.as_ref().is_some_and(|h| h.msg_id == id)
}

fn parent_in(m: &JupyterMessage, ids: &HashSet<String>) -> bool {
    m.parent_header
        .as_ref()
        .is_some_and(|h| ids.contains(&h.msg_id))
}

/// Removes a kernel directory as the sandbox user who owns it (symlinks in it are not followed).
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    privileges::as_user(|| std::fs::remove_dir_all(dir))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()))?
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
