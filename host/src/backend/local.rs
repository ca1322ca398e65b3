//! A backend for tests, without Docker: each "container" is a real `sandboxd` process serving a
//! unix socket in a temporary directory. The daemon gets exactly what Docker gives it — the
//! secret in a 0600 file named by `SANDBOXD_SECRET_FILE`, and `SANDBOX_ID` — so the host
//! authenticates it on every connection as it does in production. There is no isolation at all:
//! user code runs as the test's user.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agent_runtime::error::HostError> {
//! use std::sync::Arc;
//! use agent_runtime::backend::local::LocalBackend;
//! let backend = Arc::new(LocalBackend::new()?); // finds target/debug/sandboxd
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{Backend, BackendSandbox, Endpoint, Exit, Progress, SandboxSpec};
use crate::error::HostError;
use crate::ids::SandboxId;

/// The environment variable naming a sandboxd binary to use instead of the one beside the tests.
pub const SANDBOXD_ENV: &str = "AGENT_RUNTIME_TEST_SANDBOXD";
/// The environment variable naming a staged Playwright driver directory (`node` + `package/`)
/// for [`LocalBackend::with_browser`], instead of the one `agent-runtime image build` staged.
pub const DRIVER_ENV: &str = "AGENT_RUNTIME_TEST_DRIVER";
/// Where sandboxd looks for Chromium (sandboxd/src/browser/launch.rs), as Debian installs it.
pub const CHROMIUM_PATHS: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];
/// What to do when the browser's parts are missing.
const BROWSER_HINT: &str =
    "run `bash .ci/setup` (installs Debian's chromium) and `agent-runtime image build` (stages \
     the Playwright driver under the state directory's cache)";
/// What `ensure_image` reports: there is no image.
const IMAGE: &str = "local-sandboxd";
/// Socket file name inside a sandbox's run directory (as in the Docker backend).
const SOCKET_NAME: &str = "sandboxd.sock";
/// Secret file name inside a sandbox's run directory.
const SECRET_NAME: &str = "secret";
/// How long a destroyed daemon may take to exit after SIGTERM before it is killed.
const TERM_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Finds the `sandboxd` binary: `$AGENT_RUNTIME_TEST_SANDBOXD`, else beside the running test
/// binary's target directory (`target/debug/sandboxd` for `target/debug/deps/manager-…`).
pub fn sandboxd_binary() -> Result<PathBuf, HostError> {
    if let Some(path) = std::env::var_os(SANDBOXD_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HostError::Backend(format!(
                "{SANDBOXD_ENV}={} is not a file",
                path.display()
            )))
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| HostError::io("finding the running test binary", e))?;
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("sandboxd"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            HostError::Backend(format!(
                "no sandboxd binary beside the tests (looked at {}): run `cargo build -p sandboxd` \
                 first, or set {SANDBOXD_ENV}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The Playwright driver directory (`node` and `package/`) for [`LocalBackend::with_browser`]:
/// `$AGENT_RUNTIME_TEST_DRIVER`, else the newest complete stage `agent-runtime image build` left
/// in `<state dir>/cache/driver-*/stage` (state dir: `$AGENT_RUNTIME_STATE_DIR` or the default).
pub fn staged_driver() -> Result<PathBuf, HostError> {
    let usable = |dir: &Path| dir.join("node").is_file() && dir.join("package").is_dir();
    if let Some(path) = std::env::var_os(DRIVER_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if usable(&path) {
            Ok(path)
        } else {
            Err(HostError::Backend(format!(
                "{DRIVER_ENV}={} has no `node` and `package/`; {BROWSER_HINT}",
                path.display()
            )))
        };
    }
    let state = std::env::var_os("AGENT_RUNTIME_STATE_DIR")
        .filter(|p| !p.is_empty())
        .map_or_else(crate::config::default_state_dir, PathBuf::from);
    let cache = state.join("cache");
    let newest = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("driver-") && !n.contains(".partial-"))
        })
        .filter_map(|e| {
            let done = e.path().join("complete").metadata().ok()?.modified().ok()?;
            let stage = e.path().join("stage");
            usable(&stage).then_some((done, stage))
        })
        .max_by_key(|(done, _)| *done)
        .map(|(_, stage)| stage);
    newest.ok_or_else(|| {
        HostError::Backend(format!(
            "no staged Playwright driver in {}/driver-*/stage: {BROWSER_HINT}; or set {DRIVER_ENV}",
            cache.display()
        ))
    })
}

/// Debian's Chromium where sandboxd looks for it.
pub fn chromium() -> Result<PathBuf, HostError> {
    CHROMIUM_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            HostError::Backend(format!(
                "no Chromium at {}: {BROWSER_HINT}",
                CHROMIUM_PATHS.join(" or ")
            ))
        })
}

/// What the supervisor of one daemon is asked to do.
enum Command {
    /// Send this signal (the daemon keeps its entry; if it dies, that is an exit).
    Signal(libc::c_int),
    /// Stop the daemon (SIGTERM, then SIGKILL) and answer when it is gone.
    Destroy(oneshot::Sender<()>),
}

/// One sandbox of the backend.
struct Local {
    info: BackendSandbox,
    /// To its supervisor task; gone once the daemon has exited.
    commands: mpsc::UnboundedSender<Command>,
}

/// The test backend (see the module doc). Dropping it kills every daemon and removes its
/// directory.
pub struct LocalBackend {
    root: PathBuf,
    sandboxd: PathBuf,
    /// The Playwright driver daemons get; `None`: a path that does not exist, so browser calls
    /// fail fast and alike.
    driver: Option<PathBuf>,
    sandboxes: std::sync::Arc<Mutex<HashMap<SandboxId, Local>>>,
    exits: broadcast::Sender<Exit>,
    /// While `true`, creates wait before starting anything.
    held: watch::Sender<bool>,
    /// How many creates have reached the backend.
    creates: watch::Sender<usize>,
}

impl LocalBackend {
    /// A backend using [`sandboxd_binary`] under a fresh temporary directory.
    pub fn new() -> Result<Self, HostError> {
        Self::with_sandboxd(sandboxd_binary()?)
    }

    /// A backend whose daemons can drive a browser: Debian's Chromium and the Playwright driver
    /// `agent-runtime image build` staged ([`staged_driver`]). Fails, saying what to run, when
    /// either is missing. Chromium runs as the test's user, without its sandbox (as in the image).
    pub fn with_browser() -> Result<Self, HostError> {
        chromium()?;
        let driver = staged_driver()?;
        let mut backend = Self::new()?;
        backend.driver = Some(driver);
        Ok(backend)
    }

    /// A backend starting `sandboxd` under a fresh temporary directory.
    pub fn with_sandboxd(sandboxd: PathBuf) -> Result<Self, HostError> {
        use std::os::unix::fs::DirBuilderExt;
        let suffix: u64 = rand::random();
        let root = std::env::temp_dir().join(format!(
            "agent-runtime-local-{}-{suffix:016x}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&root)
            .map_err(|e| HostError::io(format!("creating {}", root.display()), e))?;
        Ok(Self {
            root,
            sandboxd,
            driver: None,
            sandboxes: Default::default(),
            exits: broadcast::channel(64).0,
            held: watch::channel(false).0,
            creates: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SandboxId, Local>> {
        lock(&self.sandboxes)
    }

    fn sandbox_dir(&self, id: &SandboxId) -> PathBuf {
        self.root.join(id.as_str())
    }

    /// The directory holding one directory per sandbox.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A sandbox's workspace directory (its `/workspace`).
    pub fn workspace(&self, id: &SandboxId) -> PathBuf {
        self.sandbox_dir(id).join("workspace")
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self, id: &SandboxId) -> Option<u32> {
        let sandboxes = self.lock();
        let local = sandboxes.get(id).filter(|l| l.info.running)?;
        local.info.container_id.strip_prefix("local-")?.parse().ok()
    }

    /// Sends `signal` to a sandbox's daemon (`libc::SIGKILL` to make it die as a crashed
    /// container would, `SIGSTOP`/`SIGCONT` for a stuck one). False when it does not run.
    pub fn signal(&self, id: &SandboxId, signal: libc::c_int) -> bool {
        self.lock()
            .get(id)
            .filter(|l| l.info.running)
            .is_some_and(|l| l.commands.send(Command::Signal(signal)).is_ok())
    }

    /// Kills a sandbox's daemon (SIGKILL), as a crash would; the exit watch reports it.
    pub fn kill_daemon(&self, id: &SandboxId) -> bool {
        self.signal(id, libc::SIGKILL)
    }

    /// Stops a sandbox's daemon (SIGSTOP), as a stuck daemon or a paused container: it keeps
    /// its socket and answers nothing until [`LocalBackend::resume_daemon`]. Returns once every
    /// thread of it is stopped (the signal goes out from the daemon's supervising task, so a
    /// call made right after sending it could still be answered); false when it does not run or
    /// has not stopped within 10 s.
    pub async fn pause_daemon(&self, id: &SandboxId) -> bool {
        let Some(pid) = self.pid(id) else {
            return false;
        };
        if !self.signal(id, libc::SIGSTOP) {
            return false;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if all_threads_stopped(pid) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    }

    /// Lets a paused daemon run again (SIGCONT).
    pub fn resume_daemon(&self, id: &SandboxId) -> bool {
        self.signal(id, libc::SIGCONT)
    }

    /// Makes creates wait (`true`) before they start anything, or lets them go (`false`).
    pub fn hold_creates(&self, hold: bool) {
        self.held.send_replace(hold);
    }

    /// How many creates have reached the backend (held ones included).
    pub fn creates(&self) -> usize {
        *self.creates.borrow()
    }

    /// Waits until at least `n` creates have reached the backend.
    pub async fn wait_creates(&self, n: usize) {
        let mut rx = self.creates.subscribe();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Sandboxes whose daemon runs now.
    pub fn running(&self) -> Vec<SandboxId> {
        self.lock()
            .values()
            .filter(|l| l.info.running)
            .map(|l| l.info.id.clone())
            .collect()
    }

    fn prepare(&self, spec: &SandboxSpec) -> Result<(PathBuf, PathBuf, PathBuf), HostError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = self.sandbox_dir(&spec.id);
        let run = dir.join("run");
        let workspace = dir.join("workspace");
        // A new sandbox never reuses a directory: anything already there is not ours.
        let mut builder = std::fs::DirBuilder::new();
        builder.mode(0o700);
        for d in [&dir, &run, &workspace] {
            builder
                .create(d)
                .map_err(|e| HostError::io(format!("creating {}", d.display()), e))?;
        }
        let secret = run.join(SECRET_NAME);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&secret)
            .map_err(|e| HostError::io("writing the sandbox secret", e))?;
        f.write_all(spec.secret.to_hex().as_bytes())
            .map_err(|e| HostError::io("writing the sandbox secret", e))?;
        Ok((run.join(SOCKET_NAME), secret, workspace))
    }

    fn spawn(&self, spec: &SandboxSpec) -> Result<tokio::process::Child, HostError> {
        let (socket, secret, workspace) = self.prepare(spec)?;
        let mut cmd = tokio::process::Command::new(&self.sandboxd);
        cmd.args(["--listen", "none", "--socket"])
            .arg(&socket)
            .arg("--workspace")
            .arg(&workspace)
            .current_dir(&workspace)
            .env(agent_runtime_proto::auth::SANDBOX_ID_ENV, spec.id.as_str())
            .env(agent_runtime_proto::auth::SECRET_FILE_ENV, &secret)
            .env(
                "SANDBOXD_PREWARM_KERNEL",
                u8::from(spec.prewarm_kernel).to_string(),
            )
            .env(
                "SANDBOXD_PREWARM_BROWSER",
                u8::from(spec.prewarm_browser).to_string(),
            )
            // Without `with_browser` no Playwright driver: browser calls fail the same way
            // everywhere. Without SANDBOXD_RUN_AS the daemon runs the driver's own `node`.
            .env(
                "PLAYWRIGHT_DRIVER_PATH",
                self.driver
                    .as_deref()
                    .unwrap_or(Path::new("/nonexistent/playwright-driver")),
            )
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Many daemons share this machine's loopback: each proxy takes a free port.
            .env("SANDBOXD_EGRESS_LISTEN", "127.0.0.1:0")
            .env_remove("SANDBOXD_EXTRA_CA")
            .env_remove("SANDBOXD_RUN_AS")
            .env_remove("SANDBOXD_LISTEN")
            .env_remove("SANDBOXD_SOCKET")
            .env_remove("SANDBOXD_WORKSPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        // Spans go as they do under Docker, whose containers have no network: over the socket to
        // the host (`observe::spans`), never to the collector this process may know.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(agent_runtime_telemetry::relay::relay_env());
        cmd.spawn().map_err(|e| {
            HostError::Backend(format!(
                "cannot start {}: {e}; run `cargo build -p sandboxd`",
                self.sandboxd.display()
            ))
        })
    }
}

fn lock(m: &Mutex<HashMap<SandboxId, Local>>) -> MutexGuard<'_, HashMap<SandboxId, Local>> {
    // Every update is one insert, remove or flag: a poisoned map is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Owns one daemon process: reports its exit, carries out signals, stops it on destroy or when
/// the backend is dropped (its command channel closes).
async fn supervise(
    mut child: tokio::process::Child,
    id: SandboxId,
    mut commands: mpsc::UnboundedReceiver<Command>,
    sandboxes: std::sync::Weak<Mutex<HashMap<SandboxId, Local>>>,
    exits: broadcast::Sender<Exit>,
) {
    loop {
        tokio::select! {
            status = child.wait() => {
                let reason = match status {
                    Ok(s) => format!("its daemon exited ({s})"),
                    Err(e) => format!("its daemon was lost ({e})"),
                };
                if let Some(sandboxes) = sandboxes.upgrade() {
                    if let Some(local) = lock(&sandboxes).get_mut(&id) {
                        local.info.running = false;
                    }
                }
                let _ = exits.send(Exit { id, reason });
                return;
            }
            command = commands.recv() => match command {
                Some(Command::Signal(signal)) => {
                    // Not yet reaped (this task reaps it), so the pid is still the daemon's.
                    if let Some(pid) = child.id() {
                        // SAFETY: kill only sends a signal to a child we own and have not reaped.
                        unsafe { libc::kill(pid as libc::pid_t, signal) };
                    }
                }
                Some(Command::Destroy(done)) => {
                    stop(&mut child).await;
                    let _ = done.send(());
                    return;
                }
                None => {
                    stop(&mut child).await;
                    return;
                }
            },
        }
    }
}

/// SIGTERM (so the daemon stops its runs and kernels), then SIGKILL after a grace period.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: as in `supervise`: our unreaped child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn ensure_image(
        &self,
        _force: bool,
        _progress: Progress<'_>,
    ) -> Result<String, HostError> {
        Ok(IMAGE.to_owned())
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<String, HostError> {
        self.creates.send_modify(|c| *c += 1);
        let _ = self.held.subscribe().wait_for(|held| !held).await;
        let child = match self.spawn(spec) {
            Ok(child) => child,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(self.sandbox_dir(&spec.id)).await;
                return Err(e);
            }
        };
        let container_id = format!("local-{}", child.id().unwrap_or_default());
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(
            spec.id.clone(),
            Local {
                info: BackendSandbox {
                    id: spec.id.clone(),
                    container_id: container_id.clone(),
                    image: spec.image.clone(),
                    running: true,
                    limits: spec.limits.clone(),
                    created_at: spec.created_at,
                    expires_at: spec.expires_at,
                    labels: spec.labels.clone(),
                    owner: spec.owner.clone(),
                    pool: spec.pool.clone(),
                    claimed: false,
                },
                commands: tx,
            },
        );
        tokio::spawn(supervise(
            child,
            spec.id.clone(),
            rx,
            std::sync::Arc::downgrade(&self.sandboxes),
            self.exits.clone(),
        ));
        Ok(container_id)
    }

    async fn destroy(&self, id: &SandboxId) -> Result<(), HostError> {
        let local = self.lock().remove(id);
        if let Some(local) = local {
            let (done, gone) = oneshot::channel();
            if local.commands.send(Command::Destroy(done)).is_ok() {
                let _ = gone.await;
            }
        }
        match tokio::fs::remove_dir_all(self.sandbox_dir(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HostError::io("removing a sandbox directory", e)),
        }
    }

    async fn list(&self) -> Result<Vec<BackendSandbox>, HostError> {
        Ok(self.lock().values().map(|l| l.info.clone()).collect())
    }

    async fn set_expiry(&self, id: &SandboxId, expires_at: DateTime<Utc>) -> Result<(), HostError> {
        if let Some(local) = self.lock().get_mut(id) {
            local.info.expires_at = expires_at;
        }
        Ok(())
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
        if let Some(local) = self.lock().get_mut(id) {
            local.info.owner = owner.to_owned();
            local.info.labels = labels.clone();
            local.info.expires_at = expires_at;
            local.info.claimed = true;
        }
        Ok(())
    }

    /// Stops the daemon alone (SIGSTOP): its children run on, unlike in a frozen container.
    async fn pause(&self, id: &SandboxId) -> Result<(), HostError> {
        if self.pause_daemon(id).await {
            Ok(())
        } else {
            Err(HostError::SandboxNotFound(id.to_string()))
        }
    }

    async fn unpause(&self, id: &SandboxId) -> Result<(), HostError> {
        if self.resume_daemon(id) {
            Ok(())
        } else {
            Err(HostError::SandboxNotFound(id.to_string()))
        }
    }

    async fn sweep(&self, keep: &[SandboxId]) -> Result<(), HostError> {
        let strays: Vec<SandboxId> = self
            .lock()
            .keys()
            .filter(|id| !keep.contains(id))
            .cloned()
            .collect();
        for id in strays {
            self.destroy(&id).await?;
        }
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| HostError::io("reading the local backend's directory", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(SandboxId::parse) else {
                continue;
            };
            if !keep.contains(&id) {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
        Ok(())
    }

    async fn watch_exits(
        &self,
        exits: mpsc::Sender<Exit>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut rx = self.exits.subscribe();
        loop {
            let exit = tokio::select! {
                () = stop.cancelled() => return,
                () = exits.closed() => return,
                exit = rx.recv() => exit,
            };
            match exit {
                Ok(exit) => {
                    if exits.send(exit).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "local backend: exit reports lost");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        // The runtime may be going away with us, and its supervisors with it (their children
        // are then SIGKILLed, which leaves a daemon no time to stop its kernels): ask every
        // daemon to stop now and give it a moment to do so.
        let pids: Vec<u32> = {
            let sandboxes = lock(&self.sandboxes);
            sandboxes
                .values()
                .filter(|l| l.info.running)
                .filter_map(|l| l.info.container_id.strip_prefix("local-")?.parse().ok())
                .collect()
        };
        for &pid in &pids {
            // SAFETY: kill only sends a signal. The pid is a daemon still marked running, whose
            // supervisor has not reaped it (it clears the mark right after), so it is ours.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = std::time::Instant::now() + TERM_GRACE;
        while pids.iter().any(|&pid| alive(pid)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Closing the command channels makes every supervisor stop (and reap) its daemon.
        lock(&self.sandboxes).clear();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Whether process `pid` still runs (exists and is not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Whether every thread of process `pid` is stopped (`T` in its `stat`).
fn all_threads_stopped(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                // The state follows the command name's closing parenthesis.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        })
    })
}
