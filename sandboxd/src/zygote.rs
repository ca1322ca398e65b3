//! Pre-started Python interpreters: a Python run takes an interpreter that started (and imported
//! the heavy libraries agents use) before it was asked for, instead of paying start-up and
//! imports itself.
//!
//! # Design
//!
//! - **A spare per sandbox.** sandboxd keeps one *spare*: `python3 -u -c ZYGOTE` started exactly
//!   as a run's interpreter is (`processes::isolate`: its own session, the sandbox user, nice 10,
//!   oom_score_adj 1000), which imports [`PRELOAD_ENV`]'s modules (default numpy, pandas,
//!   matplotlib; missing ones are skipped), writes `R` on its control socket (fd 3) and waits.
//! - **Used once.** A Python run sends the spare its stdin/stdout/stderr (or terminal) with
//!   SCM_RIGHTS and a JSON job (file, working directory, full environment, terminal or not); the
//!   spare takes them (`dup2`, `TIOCSCTTY`, `os.environ`, `chdir`, `sys.argv`, `sys.path[0]`, a
//!   fresh `__main__`) and executes the file as `python3 -u FILE` would, reporting exceptions
//!   through `sys.excepthook`, `SystemExit` codes and an unhandled `KeyboardInterrupt` (death by
//!   SIGINT) alike. It is a direct child of sandboxd, a session leader whose sid is its pid, so the
//!   run is the same session, tree, timeout, kill, detach, stdin and PTY as any other. Then a new
//!   spare starts in the background once that run is over (at most [`BUSY_WAIT`] later, so its
//!   imports do not compete with the run for the sandbox's CPU): each run has an interpreter of its own (hash seed, random
//!   states, memory), as a fresh `python3` would. A fork server would share those between runs.
//! - **Never worse than cold.** No spare ready (still importing, crashed, killed by the OOM killer
//!   or `KillAll`), a run whose `env` sets a variable that changes how an interpreter starts
//!   ([`startup_sensitive`]: `PYTHON*`, locale, `PATH`, `HOME`, `LD_*`, thread counts of the
//!   numeric libraries, ...) or a sandbox environment that changed such a variable since the
//!   spare started: the run starts `python3` cold, as before. A spare that dies before it is used
//!   is replaced after a pause that doubles each time (1 s up to 60 s), so one that cannot fit in
//!   memory does not loop.
//! - **Never at the browser's expense.** A spare holds ~100 MiB with the default preload. None is
//!   started while the sandbox's memory cgroup has under [`START_HEADROOM`] free, an idle one is
//!   retired below [`KEEP_HEADROOM`], and once Chromium starts ([`make_room`]) the idle spare is
//!   retired and no new one starts in that sandbox: at the default 512 MiB, Chromium on a big
//!   page beside a spare was OOM-killed.
//! - What still tells them apart: `/proc/self/cmdline` (`python3 -u -c ...`), the modules already
//!   in `sys.modules`, and the process's start time.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, Interest};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::processes;

/// `0` turns the zygote off (every Python run starts cold).
pub const ENABLE_ENV: &str = "SANDBOXD_ZYGOTE";
/// Modules the spare imports before it is used, comma-separated; empty: none.
pub const PRELOAD_ENV: &str = "SANDBOXD_ZYGOTE_PRELOAD";
/// What the spare imports when [`PRELOAD_ENV`] is unset.
pub const DEFAULT_PRELOAD: &str = "numpy,pandas,matplotlib";
/// In the spare's argv, so that it can be found (`pgrep -f agent-runtime-zygote`).
pub const MARKER: &str = "agent-runtime-zygote";
/// The spare's program.
const SOURCE: &str = include_str!("zygote.py");
/// The fd the spare finds its control socket on.
const CONTROL_FD: RawFd = 3;
/// Longest a spare may take to import and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// First pause after a spare failed; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between two failed spares.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest the next spare waits for the run that took the last one to end.
const BUSY_WAIT: Duration = Duration::from_secs(5);
/// Pause between a run's end (its leader reaped) and the next spare's start, so the run's exit
/// reaches its caller first.
const AFTER_RUN: Duration = Duration::from_millis(30);
/// Largest job (mostly the environment) sent to a spare.
const MAX_JOB: usize = 8 << 20;

/// Whether a variable changes how an interpreter starts or what its preloaded modules did on
/// import; a run that sets one starts cold.
pub fn startup_sensitive(key: &str) -> bool {
    const EXACT: [&str; 7] = ["PATH", "HOME", "TMPDIR", "TZ", "LANG", "LANGUAGE", "LC_ALL"];
    const PREFIXES: [&str; 9] = [
        "PYTHON",
        "LC_",
        "LD_",
        "MPL",
        "OMP_",
        "OPENBLAS_",
        "MKL_",
        "NUMEXPR_",
        "GOTO",
    ];
    (EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p)))
        && key != "PYTHONUNBUFFERED"
}

/// The startup-sensitive part of an environment, sorted, to compare two of them.
fn sensitive_part(env: &[(String, String)]) -> Vec<(String, String)> {
    let mut part: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| startup_sensitive(k))
        .cloned()
        .collect();
    part.sort();
    part
}

/// A started interpreter waiting for its run.
pub struct Spare {
    child: Child,
    control: tokio::net::UnixStream,
    /// Where the run says its exit status before its teardown.
    notices: Option<Arc<crate::exit_notice::ExitNotices>>,
    /// The startup-sensitive part of the sandbox environment it started with.
    started_with: Vec<(String, String)>,
    /// The whole environment it was started with (so that it can apply to the run's what its
    /// launcher, e.g. a pyenv shim, changed in it).
    spawned_env: Vec<(String, String)>,
}

/// What a run hands a spare.
pub struct Job<'a> {
    /// The program file.
    pub script: &'a Path,
    /// Working directory (checked by the caller).
    pub cwd: &'a Path,
    /// The full environment (the daemon's, the sandbox's, egress's, the run's).
    pub env: Vec<(String, String)>,
    /// stdin, stdout, stderr (the same terminal slave three times for a PTY run).
    pub fds: [RawFd; 3],
    /// The fds are a terminal the run takes as its controlling terminal.
    pub pty: bool,
}

impl Spare {
    /// Hands the job over; from here the spare is the run's interpreter. Fails (and the spare
    /// is dropped, which kills it) when it died while waiting or cannot take the job.
    pub async fn launch(
        mut self,
        job: Job<'_>,
    ) -> std::io::Result<(Child, Option<crate::exit_notice::Notice>)> {
        if self.child.try_wait()?.is_some() {
            return Err(std::io::Error::other("the spare interpreter is gone"));
        }
        let notice = match (&self.notices, self.child.id()) {
            (Some(notices), Some(pid)) => Some(notices.expect(pid as i32)),
            _ => None,
        };
        let payload = serde_json::json!({
            "exit_notice": notice.as_ref().and(self.notices.as_ref().map(|n| n.name())),
            "script": job.script,
            "cwd": job.cwd,
            "env": job
                .env
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>(),
            "pty": job.pty,
            "spawned_env": self
                .spawned_env
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect::<serde_json::Map<_, _>>(),
        });
        let body = serde_json::to_vec(&payload).map_err(std::io::Error::other)?;
        if body.len() > MAX_JOB {
            return Err(std::io::Error::other("the job is too large for a spare"));
        }
        let mut message = (body.len() as u32).to_be_bytes().to_vec();
        message.extend_from_slice(&body);
        send_with_fds(&self.control, &job.fds, &message).await?;
        Ok((self.child, notice))
    }
}

/// The spare of one daemon and the task that keeps one ready.
pub struct Zygote {
    inner: Arc<Inner>,
}

/// Free memory (limit minus usage of the sandbox's memory cgroup) below which no spare is
/// started: a spare with the default preload holds about 100 MiB, which a sandbox running
/// Chromium (up to ~470 MiB on a big page in 512 MiB) does not have to give.
const START_HEADROOM: u64 = 300 << 20;
/// Free memory below which an idle spare is retired.
const KEEP_HEADROOM: u64 = 96 << 20;

/// The daemon's zygote, for [`make_room`].
static CURRENT: std::sync::OnceLock<std::sync::Weak<Inner>> = std::sync::OnceLock::new();

/// Set once Chromium started: no more spares in this sandbox (a page can grow the browser to
/// most of the sandbox's memory at any time; Python runs start cold, ~30 ms, instead).
static ROOM_FOR_BROWSER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Chromium is about to start: the idle spare is retired to give its memory, and no new one
/// starts in this sandbox.
pub fn make_room() {
    ROOM_FOR_BROWSER.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(inner) = CURRENT.get().and_then(std::sync::Weak::upgrade) {
        if inner.lock().take().is_some() {
            tracing::info!("retired the spare Python interpreter to make room");
        }
    }
}

/// Bytes the sandbox's memory cgroup can still give (v2 `memory.max`/`memory.current`, or v1
/// `memory.limit_in_bytes`/`memory.usage_in_bytes`); `None` without a limit (a daemon outside
/// a container).
fn memory_headroom() -> Option<u64> {
    let read =
        |path: &str| -> Option<u64> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let (limit, usage) = match read("/sys/fs/cgroup/memory.max") {
        Some(limit) => (limit, read("/sys/fs/cgroup/memory.current")?),
        None => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes")?,
        ),
    };
    // "No limit" reads as max (v2) or a huge number (v1).
    (limit < 1 << 50).then(|| limit.saturating_sub(usage))
}

struct Inner {
    preload: String,
    /// Where run files are written (the spare's `sys.path[0]`).
    script_dir: PathBuf,
    /// The spare's working directory until a run gives it its own.
    cwd: PathBuf,
    slot: Mutex<Option<Spare>>,
    /// The pid of the last spare handed to a run: the next one starts once that run is over,
    /// so its imports do not take the CPU from the run (measured: a `print(1)` took 430 ms
    /// beside a spare importing pandas in a one-core sandbox, 50 ms cold).
    busy: std::sync::atomic::AtomicI32,
    /// Wakes the keeper: a spare was taken or dropped.
    wake: tokio::sync::Notify,
    /// Early exit notices of runs on spares (see `exit_notice`).
    notices: Option<Arc<crate::exit_notice::ExitNotices>>,
}

impl Zygote {
    /// A zygote per [`ENABLE_ENV`] and [`PRELOAD_ENV`], whose keeper runs until `stop`; `None`
    /// when it is off or there is no runtime (unit tests).
    pub fn from_env(cwd: &Path, script_dir: &Path, stop: CancellationToken) -> Option<Arc<Self>> {
        if std::env::var(ENABLE_ENV).is_ok_and(|v| v.trim() == "0") {
            return None;
        }
        let preload = std::env::var(PRELOAD_ENV).unwrap_or_else(|_| DEFAULT_PRELOAD.to_owned());
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let zygote = Arc::new(Self {
            inner: Arc::new(Inner {
                preload: preload.trim().to_owned(),
                script_dir: script_dir.to_path_buf(),
                cwd: cwd.to_path_buf(),
                slot: Mutex::new(None),
                busy: std::sync::atomic::AtomicI32::new(0),
                wake: tokio::sync::Notify::new(),
                notices: crate::exit_notice::ExitNotices::start(stop.clone()),
            }),
        });
        let _ = CURRENT.set(Arc::downgrade(&zygote.inner));
        handle.spawn(zygote.inner.clone().keep(stop));
        Some(zygote)
    }

    /// The ready spare, if there is one that fits a run setting `run_env`; a new one starts in
    /// the background either way.
    pub fn take(&self, run_env: &std::collections::HashMap<String, String>) -> Option<Spare> {
        if run_env.keys().any(|k| startup_sensitive(k)) {
            return None;
        }
        let spare = self.inner.lock().take()?;
        if let Some(pid) = spare.child.id() {
            self.inner
                .busy
                .store(pid as i32, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.wake.notify_one();
        (spare.started_with == sensitive_part(&crate::environment::process_env())).then_some(spare)
    }

    /// The sandbox environment changed: a spare that started with other startup-sensitive
    /// variables is replaced.
    pub fn environment_changed(&self) {
        let now = sensitive_part(&crate::environment::process_env());
        let mut slot = self.inner.lock();
        if slot.as_ref().is_some_and(|s| s.started_with != now) {
            *slot = None;
            drop(slot);
            self.inner.wake.notify_one();
        }
    }

    /// Whether a spare is ready now (for tests and status).
    pub fn ready(&self) -> bool {
        self.inner.lock().is_some()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<Spare>> {
        // One Option: a panic cannot leave it half-updated.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a spare ready until `stop`: starts one whenever the slot is empty, pausing after
    /// failures (a spare that died before its run counts as one).
    async fn keep(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            if stop.is_cancelled() {
                *self.lock() = None;
                return;
            }
            let waiting = {
                let mut slot = self.lock();
                match slot.as_mut().map(|s| s.child.try_wait()) {
                    Some(Ok(None))
                        if memory_headroom().is_some_and(|free| free < KEEP_HEADROOM) =>
                    {
                        tracing::info!(
                            "memory is tight: retiring the idle spare Python interpreter"
                        );
                        *slot = None;
                        true
                    }
                    Some(Ok(None)) => true,
                    Some(_) => {
                        tracing::warn!("the spare Python interpreter died while waiting");
                        *slot = None;
                        false
                    }
                    None => false,
                }
            };
            if waiting {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = self.wake.notified() => {}
                    // A spare killed while waiting (OOM, KillAll) is noticed without a run.
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            // The run that took the last spare first (its imports would slow it down).
            // At most BUSY_WAIT: a long run (a server) must not leave every later run cold.
            let busy = self.busy.swap(0, std::sync::atomic::Ordering::Relaxed);
            let waited = std::time::Instant::now();
            // Over means reaped, not just exited: the run's end (its last output, its exit event)
            // is still being handled while its leader is a zombie, and a spawn now would hold
            // the daemon's one CPU in the middle of it (it cost a `print(1)` ~25 ms).
            while busy > 0
                && crate::processes::process(busy).is_some()
                && waited.elapsed() < BUSY_WAIT
                && !stop.is_cancelled()
            {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
            if busy > 0 {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(AFTER_RUN) => {}
                }
            }
            if ROOM_FOR_BROWSER.load(std::sync::atomic::Ordering::Relaxed)
                || memory_headroom().is_some_and(|free| free < START_HEADROOM)
            {
                // Runs start cold meanwhile; look again in a while.
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            match self.start(&stop).await {
                Ok(spare) => {
                    backoff = FIRST_BACKOFF;
                    *self.lock() = Some(spare);
                }
                // The daemon stopping is not a failure worth a warning.
                Err(_) if stop.is_cancelled() => return,
                Err(e) => {
                    tracing::warn!(error = %e, pause_s = backoff.as_secs(), "cannot start a spare Python interpreter");
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Starts a spare and waits until it has imported its modules.
    async fn start(&self, stop: &CancellationToken) -> std::io::Result<Spare> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let env = crate::environment::process_env();
        let mut cmd = Command::new("python3");
        crate::environment::hide_daemon_settings(&mut cmd);
        cmd.args(["-u", "-c", SOURCE, MARKER, &self.preload])
            .arg(&self.script_dir)
            .current_dir(&self.cwd)
            .env("PYTHONUNBUFFERED", "1")
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        processes::isolate(&mut cmd);
        let fd = theirs.as_raw_fd();
        // SAFETY: runs in the forked child before exec: dup2 and fcntl are async-signal-safe
        // system calls on an fd the child inherited; nothing is allocated or locked.
        unsafe {
            cmd.pre_exec(move || {
                if fd == CONTROL_FD {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // fork + exec off the runtime's thread: sandboxd usually has one CPU and one worker, and
        // the spawn waits for the exec (milliseconds) while runs' output and exits queue.
        let mut child = tokio::task::spawn_blocking(move || cmd.spawn())
            .await
            .map_err(std::io::Error::other)??;
        drop(theirs);
        ours.set_nonblocking(true)?;
        let mut control = tokio::net::UnixStream::from_std(ours)?;
        let mut ready = [0u8; 1];
        let said = tokio::select! {
            () = stop.cancelled() => return Err(std::io::Error::other("stopping")),
            said = tokio::time::timeout(READY_TIMEOUT, control.read(&mut ready)) => said,
        };
        match said {
            Ok(Ok(1)) if ready[0] == b'R' => Ok(Spare {
                child,
                control,
                notices: self.notices.clone(),
                started_with: sensitive_part(&env),
                spawned_env: full_env(
                    [("PYTHONUNBUFFERED", "1")]
                        .into_iter()
                        .chain(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                )
                .unwrap_or_default(),
            }),
            Ok(Ok(_)) | Ok(Err(_)) => {
                let status = child.wait().await.ok();
                Err(std::io::Error::other(format!(
                    "it exited before it was ready ({})",
                    status.map_or_else(|| "unknown status".into(), |s| s.to_string())
                )))
            }
            Err(_) => Err(std::io::Error::other(format!(
                "not ready within {} s",
                READY_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The full environment a process gets from `Command` with these additions over the daemon's
/// own, in order (later wins); `None` when the daemon's own holds a name or value that is not
/// UTF-8 (that run starts cold).
pub fn full_env<'a>(
    additions: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let (k, v): (OsString, OsString) = (k, v);
        let k = k.into_string().ok()?;
        if crate::environment::is_daemon_setting(&k) {
            continue;
        }
        env.push((k, v.into_string().ok()?));
    }
    for (k, v) in additions {
        match env.iter_mut().find(|(e, _)| e == k) {
            Some(slot) => slot.1 = v.to_owned(),
            None => env.push((k.to_owned(), v.to_owned())),
        }
    }
    Some(env)
}

/// Writes `message` on `socket`, the three `fds` riding with its first bytes (SCM_RIGHTS).
async fn send_with_fds(
    socket: &tokio::net::UnixStream,
    fds: &[RawFd; 3],
    message: &[u8],
) -> std::io::Result<()> {
    let mut sent = loop {
        socket.writable().await?;
        match socket.try_io(Interest::WRITABLE, || {
            sendmsg_fds(socket.as_raw_fd(), fds, message)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    while sent < message.len() {
        socket.writable().await?;
        match socket.try_write(&message[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `sendmsg` of (a prefix of) `data` with `fds` attached; returns the bytes sent.
fn sendmsg_fds(socket: RawFd, fds: &[RawFd; 3], data: &[u8]) -> std::io::Result<usize> {
    const FDS_BYTES: usize = std::mem::size_of::<[RawFd; 3]>();
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(FDS_BYTES as u32) } as usize;
    if space > std::mem::size_of_val(&control) {
        return Err(std::io::Error::other("control buffer too small"));
    }
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` writable, aligned bytes, so CMSG_FIRSTHDR is a valid
    // header there and CMSG_DATA has room for FDS_BYTES (CMSG_SPACE said so); sendmsg reads only
    // the iovec (data, which outlives the call) and that buffer.
    let n = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(FDS_BYTES as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), FDS_BYTES);
        libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Pipes for a run started from a spare: (child's end, ours), close-on-exec both.
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fresh fds into `fds` or fails.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: both fds are fresh and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_sensitive_variables() {
        for k in [
            "PYTHONPATH",
            "PYTHONHASHSEED",
            "LANG",
            "LC_CTYPE",
            "PATH",
            "HOME",
            "LD_PRELOAD",
            "OMP_NUM_THREADS",
            "MPLBACKEND",
        ] {
            assert!(startup_sensitive(k), "{k}");
        }
        for k in ["PYTHONUNBUFFERED", "FOO", "HTTP_PROXY", "TERM", "USER_VAR"] {
            assert!(!startup_sensitive(k), "{k}");
        }
    }

    #[test]
    fn the_full_environment_is_the_daemons_with_additions_over_it() {
        let env = full_env([
            ("PYTHONUNBUFFERED", "1"),
            ("A_NEW_ONE", "x"),
            ("A_NEW_ONE", "y"),
        ])
        .unwrap_or_default();
        assert!(env.contains(&("A_NEW_ONE".into(), "y".into())));
        assert_eq!(env.iter().filter(|(k, _)| k == "A_NEW_ONE").count(), 1);
        assert!(env.iter().any(|(k, _)| k == "PATH"));
    }
}
