//! One-shot runs of python, shell and node code, streamed as they happen.
//!
//! A run is one session (see `processes`): the interpreter reads the code from a temporary file,
//! its stdout and stderr are read concurrently in chunks and sent on at once, and a timeout, a
//! client that goes away or daemon shutdown kill all of the run's processes — its session, its
//! tree, and what it left behind after `setsid` or a double fork (see `process_tree`). Output past
//! the cap is read and dropped, never buffered (`run_limits`); a bounded channel makes a slow
//! client slow the reading down instead of growing memory (`run_events`).
//!
//! Every run is also kept as a [`RunRecord`] (see `runs`): each event goes to its bounded buffer
//! as well, so it can be attached to again, listed, signalled, killed and given input. A run
//! started with `detach` has no client: its call returns at once and nothing kills it for going
//! unwatched. A run's timeout kills everything of it (background jobs included) unless it was
//! started detached; then only a program still running at the timeout is killed, with what it
//! started, and what it left in the background runs on until Kill.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_runtime_proto::sets::{ExitReason, Language};
use agent_runtime_proto::v1::{exec_event::Event, ExecExit, ExecRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::error::{Error, Result};
use crate::process_tree::Tree;
use crate::run_events::{EventSender, EventStream};
use crate::run_limits::{timeout_from, OutputCap, DEFAULT_MAX_OUTPUT};
use crate::runs::input::{Input, Sink};
use crate::runs::pty::{self, Pty, Size};
use crate::runs::record::RunSpec;
use crate::runs::ring::{self, Buffers};
use crate::runs::{RunRecord, Runs, Session};
use crate::workspace::Workspace;
use crate::{oom, processes};

/// Largest chunk read from a pipe (and so the largest output event).
const CHUNK: usize = 64 * 1024;
/// How long output is still collected after the program itself exited, for background processes
/// that inherited its pipes and may never close them.
const LINGER: Duration = Duration::from_millis(250);

/// A detached run's timeout when the request gives none: the longest a run may have.
const DETACHED_TIMEOUT: Duration = agent_runtime_proto::limits::MAX_RUN_TIMEOUT;
/// Environment variables that size the run buffers (bytes per run, bytes for all runs).
pub const BUFFER_ENV: &str = "SANDBOXD_RUN_BUFFER_BYTES";
/// See [`BUFFER_ENV`].
pub const BUFFER_TOTAL_ENV: &str = "SANDBOXD_RUN_BUFFER_TOTAL_BYTES";

/// The valid language names, for error messages.
const LANGUAGE_NAMES: &str = "python, shell, node";

/// Parses a request's language name (aliases included, see [`Language::from_name`]).
pub fn parse_language(name: &str) -> Result<Language> {
    Language::from_name(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown language {name:?}; use one of: {LANGUAGE_NAMES}"
        ))
    })
}

/// How Exec runs a language: `python3 -u FILE.py`, `bash FILE.sh`, `node FILE.js`.
trait Interpreter {
    /// The program.
    fn program(self) -> &'static str;
    /// Its arguments before the file.
    fn args(self) -> &'static [&'static str];
    /// The file's extension.
    fn extension(self) -> &'static str;
}

impl Interpreter for Language {
    fn program(self) -> &'static str {
        match self {
            Self::Python => "python3",
            Self::Shell => "bash",
            Self::Node => "node",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Python => &["-u"],
            Self::Shell | Self::Node => &[],
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Python => "py",
            Self::Shell => "sh",
            Self::Node => "js",
        }
    }
}

/// A validated Exec request.
#[derive(Debug)]
pub struct ExecSpec {
    /// Interpreter.
    pub language: Language,
    /// Program text.
    pub code: String,
    /// Bytes for stdin; empty means /dev/null.
    pub stdin: Vec<u8>,
    /// Variables set over the daemon's environment.
    pub env: HashMap<String, String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// When the session is killed.
    pub timeout: Duration,
    /// Per-stream output cap in bytes.
    pub max_output: u64,
    /// Started with `detach`: no client, and a timeout that spares what the program left.
    pub detach: bool,
    /// Stdin stays open for SendInput.
    pub open_stdin: bool,
    /// Run in a terminal of this size.
    pub pty: Option<Size>,
    /// Bytes of output its buffer keeps (0: the default).
    pub buffer_bytes: u64,
}

impl ExecSpec {
    /// Checks a request and fills in defaults.
    pub fn from_request(req: ExecRequest, workspace: &Workspace) -> Result<Self> {
        let language = parse_language(&req.language)?;
        let cwd = workspace.resolve_or_root(&req.cwd)?;
        // Checked as the sandbox user; `cwd/.` also needs the search permission entering takes.
        match crate::privileges::as_user(|| std::fs::metadata(cwd.join(".")))? {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "working directory {} is not a directory",
                    cwd.display()
                )))
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::invalid(format!(
                    "working directory {} is not a directory",
                    cwd.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Error::invalid(format!(
                    "working directory {} is not accessible to the sandbox user",
                    cwd.display()
                )))
            }
            Err(_) => {
                return Err(Error::invalid(format!(
                    "working directory {} does not exist",
                    cwd.display()
                )))
            }
        }
        let timeout = match (req.detach, req.timeout_seconds) {
            (true, 0.0) => DETACHED_TIMEOUT,
            (_, t) => timeout_from(t)?,
        };
        let pty = req.pty.map(|p| Size::new(p.rows, p.cols)).transpose()?;
        for (key, value) in &req.env {
            crate::environment::check(key, value)?;
        }
        Ok(Self {
            language,
            code: req.code,
            stdin: req.stdin,
            env: req.env,
            cwd,
            timeout,
            max_output: match (req.max_output_bytes, req.detach) {
                // A detached run's output is bounded by its buffer.
                (0, true) => u64::MAX,
                (0, false) => DEFAULT_MAX_OUTPUT,
                (n, _) => n,
            },
            detach: req.detach,
            open_stdin: req.open_stdin || pty.is_some(),
            pty,
            buffer_bytes: req.buffer_bytes,
        })
    }
}

/// The sessions of runs in progress, and of finished runs whose background processes still hold
/// the output pipes. Those are the ones shutdown kills: while a session has a member its id cannot
/// be reused, so an id kept here never names someone else's processes.
#[derive(Default)]
struct Sessions(Mutex<HashMap<i32, Arc<Session>>>);

impl Sessions {
    fn add(&self, session: Arc<Session>) {
        if let Ok(mut live) = self.0.lock() {
            live.insert(session.sid, session);
        }
    }

    fn finish(&self, sid: i32) {
        if let Ok(mut live) = self.0.lock() {
            live.remove(&sid);
        }
    }

    fn all(&self) -> Vec<Arc<Session>> {
        self.0
            .lock()
            .map(|live| live.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The Exec component: starts runs, keeps them (see `runs`), and kills them all at shutdown.
pub struct Exec {
    workspace: Workspace,
    sessions: Arc<Sessions>,
    /// Which process is whose; kills a run's processes wherever they went.
    tree: Arc<Tree>,
    /// Every run, for Attach, ListRuns, Kill and input.
    runs: Arc<Runs>,
    /// Stops the tasks that drain pipes of background processes after their run ended.
    background: CancellationToken,
    /// The spare Python interpreter, when on.
    zygote: Option<Arc<crate::zygote::Zygote>>,
}

/// A byte count from the environment, or the default.
fn env_bytes(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(name, value = %v, default, "not a byte count; using the default");
            default
        }),
        Err(_) => default,
    }
}

impl Exec {
    /// An Exec that runs code in `workspace`; `background` stops its leftover pipe drainers and
    /// the process tracker. This makes the daemon a child subreaper (see `process_tree`), so it is
    /// made once, at start.
    pub fn new(workspace: Workspace, background: CancellationToken) -> Self {
        let tree = Tree::start(background.child_token());
        let buffers = Buffers::new(
            env_bytes(BUFFER_ENV, ring::DEFAULT_PER_RUN),
            env_bytes(BUFFER_TOTAL_ENV, ring::DEFAULT_TOTAL),
        );
        Self {
            sessions: Arc::default(),
            runs: Arc::new(Runs::new(tree.clone(), buffers)),
            tree,
            zygote: crate::zygote::Zygote::from_env(
                workspace.root(),
                &std::env::temp_dir(),
                background.child_token(),
            ),
            workspace,
            background,
        }
    }

    /// The runs this daemon keeps.
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// A stop signal for tasks that serve runs (Attach streams): cancelled at shutdown.
    pub fn stopping(&self) -> CancellationToken {
        self.background.child_token()
    }

    /// Validates and starts a run; its events arrive on the returned stream (for a detached run,
    /// only its `started` event).
    pub async fn start(&self, req: ExecRequest) -> Result<EventStream> {
        let spec = ExecSpec::from_request(req, &self.workspace)?;
        let (mut events, stream) = EventSender::channel();
        let ring = self.runs.buffers().ring(spec.buffer_bytes);
        events.journal(ring.clone());
        let script = Script::write(events.run_id(), spec.language, &spec.code)?;
        let terminal = spec.pty.map(Pty::open).transpose()?;

        let program = spec.language.program();
        let oom_before = oom::kill_count();
        let slave = terminal.as_ref().map(|(_, slave)| slave);
        let launched = match self.take_spare(&spec, &script, slave).await {
            Some(launched) => launched,
            None => self.spawn(&spec, &script, slave)?,
        };
        // The parent's copies of the terminal go now, or its end of output would never come.
        let terminal = terminal.map(|(master, _slave)| master);
        let Launched {
            child,
            notice,
            stdin: child_stdin,
            stdout: child_stdout,
            stderr: child_stderr,
        } = launched;
        let started = Instant::now();
        let Some(pid) = child.id() else {
            return Err(Error::Internal(
                "the child exited before it had a pid".into(),
            ));
        };
        // setsid made the child a session leader: its session id is its pid.
        let sid = pid as i32;
        let leader_start = self.tree.run_started(sid);
        let session = Arc::new(Session::new(sid, leader_start, self.tree.clone()));
        self.sessions.add(session.clone());
        tracing::info!(
            run_id = events.run_id(),
            pid,
            language = program,
            cwd = %spec.cwd.display(),
            detach = spec.detach,
            pty = terminal.is_some(),
            "exec started"
        );

        let mut stdin_task = None;
        let input = match (&terminal, spec.open_stdin) {
            (Some(pty), _) => Some(Input::start(
                Sink::Terminal(pty.clone()),
                spec.stdin,
                self.background.child_token(),
            )),
            (None, true) => child_stdin.map(|pipe| {
                Input::start(Sink::Pipe(pipe), spec.stdin, self.background.child_token())
            }),
            (None, false) => {
                stdin_task = child_stdin.map(|mut pipe| {
                    let data = spec.stdin;
                    // Written concurrently with reading output, so a large stdin cannot deadlock.
                    tokio::spawn(async move {
                        let _ = pipe.write_all(&data).await;
                    })
                });
                None
            }
        };
        let record = Arc::new(RunRecord::new(
            RunSpec {
                id: events.run_id().to_string(),
                language: spec.language,
                code: spec.code,
                detached: spec.detach,
            },
            session.clone(),
            ring,
            terminal.clone(),
            input,
        ));
        self.runs.add(record.clone());
        if spec.detach || spec.open_stdin {
            events.started(sid);
        }
        if spec.detach {
            events.end_client();
        }

        let (stdout, stderr): (Option<Pipe>, Option<Pipe>) = match &terminal {
            Some(pty) => (Some(Box::new(pty.reader())), None),
            None => (child_stdout, child_stderr),
        };
        let run = Run {
            events,
            session,
            record,
            detached: spec.detach,
            sessions: self.sessions.clone(),
            background: self.background.clone(),
            stdout: Output::new(stdout, spec.max_output),
            stderr: Output::new(stderr, spec.max_output),
            timeout: spec.timeout,
            started,
            oom_before,
            notice,
            _script: script,
        };
        // The run's span (a child of the call's): how long the program ran and how it ended.
        let span = tracing::debug_span!(
            "process.run",
            pid,
            language = program,
            detach = spec.detach,
            exit_code = tracing::field::Empty,
            exit_reason = tracing::field::Empty,
        );
        tokio::spawn(
            async move {
                run.drive(child).await;
                if let Some(task) = stdin_task {
                    task.abort();
                }
            }
            .instrument(span),
        );
        Ok(stream)
    }

    /// Starts a run's program cold: `python3 -u FILE`, `bash FILE` or `node FILE`, with pipes or
    /// the terminal `slave`.
    fn spawn(&self, spec: &ExecSpec, script: &Script, slave: Option<&OwnedFd>) -> Result<Launched> {
        let program = spec.language.program();
        let mut cmd = Command::new(program);
        crate::environment::hide_daemon_settings(&mut cmd);
        cmd.args(spec.language.args())
            .arg(script.path())
            .current_dir(&spec.cwd)
            .env("PYTHONUNBUFFERED", "1")
            .envs(crate::environment::process_env());
        if slave.is_some() {
            cmd.env("TERM", "xterm-256color");
        }
        cmd.envs(&spec.env);
        match slave {
            Some(slave) => {
                let dup = |fd: &OwnedFd| {
                    fd.try_clone()
                        .map_err(|e| Error::Internal(format!("cannot share a terminal: {e}")))
                };
                cmd.stdin(Stdio::from(dup(slave)?))
                    .stdout(Stdio::from(dup(slave)?))
                    .stderr(Stdio::from(dup(slave)?));
            }
            None => {
                cmd.stdin(if spec.stdin.is_empty() && !spec.open_stdin {
                    Stdio::null()
                } else {
                    Stdio::piped()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            }
        }
        processes::isolate(&mut cmd);
        if slave.is_some() {
            // SAFETY: runs in the forked child after `isolate`'s setsid; one ioctl, which is
            // async-signal-safe, no allocation, no lock.
            unsafe {
                cmd.pre_exec(pty::controlling_terminal);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        Ok(Launched {
            stdin: child.stdin.take().map(|p| Box::new(p) as Writer),
            stdout: child.stdout.take().map(|p| Box::new(p) as Pipe),
            stderr: child.stderr.take().map(|p| Box::new(p) as Pipe),
            child,
            notice: None,
        })
    }

    /// Hands a Python run to the spare interpreter (see `zygote`), with pipes of our own or the
    /// terminal `slave`; `None` when there is no usable spare or it could not take the run (the
    /// caller then starts the run cold).
    async fn take_spare(
        &self,
        spec: &ExecSpec,
        script: &Script,
        slave: Option<&OwnedFd>,
    ) -> Option<Launched> {
        if spec.language != Language::Python {
            return None;
        }
        let spare = self.zygote.as_ref()?.take(&spec.env)?;
        let sandbox_env = crate::environment::process_env();
        let env = crate::zygote::full_env(
            [("PYTHONUNBUFFERED", "1")]
                .into_iter()
                .chain(sandbox_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .chain(slave.map(|_| ("TERM", "xterm-256color")))
                .chain(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )?;
        let launched = async {
            let (fds, ours) = match slave {
                Some(slave) => ([slave.as_raw_fd(); 3], None),
                None => {
                    let stdin = if spec.stdin.is_empty() && !spec.open_stdin {
                        (OwnedFd::from(std::fs::File::open("/dev/null")?), None)
                    } else {
                        let (read, write) = crate::zygote::pipe()?;
                        (read, Some(write))
                    };
                    let (out_read, out_write) = crate::zygote::pipe()?;
                    let (err_read, err_write) = crate::zygote::pipe()?;
                    let fds = [
                        stdin.0.as_raw_fd(),
                        out_write.as_raw_fd(),
                        err_write.as_raw_fd(),
                    ];
                    // The child's ends stay open until the spare has them (dropped below).
                    (fds, Some((stdin, out_read, err_read, out_write, err_write)))
                }
            };
            let (child, notice) = spare
                .launch(crate::zygote::Job {
                    script: script.path(),
                    cwd: &spec.cwd,
                    env,
                    fds,
                    pty: slave.is_some(),
                })
                .await?;
            let (stdin, stdout, stderr) = match ours {
                None => (None, None, None),
                Some(((_child_stdin, stdin), out_read, err_read, _out_write, _err_write)) => {
                    let writer = stdin
                        .map(tokio::net::unix::pipe::Sender::from_owned_fd)
                        .transpose()?
                        .map(|w| Box::new(w) as Writer);
                    let out = tokio::net::unix::pipe::Receiver::from_owned_fd(out_read)?;
                    let err = tokio::net::unix::pipe::Receiver::from_owned_fd(err_read)?;
                    (
                        writer,
                        Some(Box::new(out) as Pipe),
                        Some(Box::new(err) as Pipe),
                    )
                }
            };
            Ok::<_, std::io::Error>(Launched {
                child,
                notice,
                stdin,
                stdout,
                stderr,
            })
        }
        .await;
        match launched {
            Ok(launched) => {
                tracing::debug!("python run handed to the spare interpreter");
                Some(launched)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the spare interpreter could not take a run; starting it cold");
                None
            }
        }
    }

    /// The sandbox environment changed (`Configure`): a spare interpreter started under other
    /// startup-sensitive variables is replaced.
    pub fn environment_changed(&self) {
        if let Some(zygote) = &self.zygote {
            zygote.environment_changed();
        }
    }

    /// Kills every run's processes (and every orphan nobody owns) and stops the background
    /// drainers.
    pub async fn shutdown(&self) {
        let sessions = self.sessions.all();
        for session in &sessions {
            session.doom(ExitReason::Cancelled);
        }
        let mut leaders: Vec<i32> = sessions.iter().map(|s| s.sid).collect();
        leaders.extend(self.tree.runs());
        leaders.sort_unstable();
        leaders.dedup();
        // On this thread, not the blocking pool: see `process_tree`.
        self.tree.kill_runs(&leaders, true);
        self.background.cancel();
    }
}

/// The program text in a temporary file, removed when the run is over. It is created as the
/// sandbox user (who runs it), under a random name with O_EXCL, so nothing planted in /tmp is
/// followed or reused.
struct Script(PathBuf);

impl Script {
    fn write(run_id: &str, language: Language, code: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("agent-runtime-{run_id}.{}", language.extension()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)?;
            std::io::Write::write_all(&mut file, code.as_bytes())
        };
        let written = crate::privileges::as_user(|| {
            let written = write();
            if written.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            written
        })?;
        match written {
            Ok(()) => Ok(Self(path)),
            Err(source) => Err(Error::Io {
                op: "writing the program to",
                path,
                source,
            }),
        }
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = crate::privileges::as_user(|| std::fs::remove_file(&self.0));
    }
}

/// Where a run's output is read from: a pipe, or its terminal.
type Pipe = Box<dyn AsyncRead + Unpin + Send>;
/// Where a run's stdin is written: a pipe.
pub type Writer = Box<dyn AsyncWrite + Unpin + Send>;

/// A run's program, started: the process and our ends of its pipes (none with a terminal).
struct Launched {
    child: tokio::process::Child,
    /// A run on the spare interpreter says its exit status here before its teardown.
    notice: Option<crate::exit_notice::Notice>,
    stdin: Option<Writer>,
    stdout: Option<Pipe>,
    stderr: Option<Pipe>,
}

/// One output pipe and its accounting against the cap.
struct Output {
    pipe: Option<Pipe>,
    buf: Vec<u8>,
    cap: OutputCap,
}

impl Output {
    fn new(pipe: Option<Pipe>, cap: u64) -> Self {
        Self {
            pipe,
            buf: vec![0; CHUNK],
            cap: OutputCap::new(cap),
        }
    }

    /// Reads the next chunk; `Ok(0)` at end of file. Pends forever once the pipe is closed, so it
    /// can sit in a `select!` beside the other pipe.
    async fn read(&mut self) -> std::io::Result<usize> {
        match self.pipe.as_mut() {
            Some(pipe) => pipe.read(&mut self.buf).await,
            None => std::future::pending().await,
        }
    }

    /// Accounts for `n` bytes just read and returns those that fit under the cap.
    fn admit(&mut self, n: usize) -> Option<Vec<u8>> {
        self.cap.admit(&self.buf[..n])
    }
}

/// The status in `notice`, when there is one; pends forever otherwise.
async fn notice_status(notice: &mut Option<crate::exit_notice::Notice>) -> i32 {
    match notice {
        Some(notice) => notice.status().await,
        None => std::future::pending().await,
    }
}

/// Everything one run needs after it started.
struct Run {
    events: EventSender,
    session: Arc<Session>,
    record: Arc<RunRecord>,
    detached: bool,
    sessions: Arc<Sessions>,
    background: CancellationToken,
    stdout: Output,
    stderr: Output,
    timeout: Duration,
    started: Instant,
    oom_before: Option<u64>,
    /// The leader's early exit notice, for a run on the spare interpreter.
    notice: Option<crate::exit_notice::Notice>,
    /// Removed when the run is dropped.
    _script: Script,
}

impl Run {
    /// Streams output until the program exited and its pipes closed (or lingered long enough),
    /// then sends the exit event; then keeps recording what background processes write to the
    /// run's pipes until they close them.
    async fn drive(mut self, mut child: tokio::process::Child) {
        let watchdog = {
            let session = self.session.clone();
            let timeout = self.timeout;
            let stop = self.background.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => {
                        session.kill(ExitReason::Timeout);
                    }
                    () = stop.cancelled() => {}
                }
            })
        };
        let mut status: Option<std::io::Result<ExitStatus>> = None;
        let mut ended_at = None;
        let linger = tokio::time::sleep(Duration::MAX);
        tokio::pin!(linger);
        let mut lingered = false;

        while status.is_none() || self.stdout.pipe.is_some() || self.stderr.pipe.is_some() {
            tokio::select! {
                read = self.stdout.read() => match read {
                    Ok(n) if n > 0 => {
                        if let Some(bytes) = self.stdout.admit(n) {
                            self.send_output(Event::Stdout(bytes), status.is_some()).await;
                        }
                    }
                    _ => self.stdout.pipe = None,
                },
                read = self.stderr.read() => match read {
                    Ok(n) if n > 0 => {
                        if let Some(bytes) = self.stderr.admit(n) {
                            self.send_output(Event::Stderr(bytes), status.is_some()).await;
                        }
                    }
                    _ => self.stderr.pipe = None,
                },
                exited = child.wait(), if status.is_none() => {
                    if self.detached {
                        // A detached run's timeout is its program's: what it left runs on.
                        watchdog.abort();
                    }
                    self.session.leader_exited();
                    ended_at = Some(Instant::now());
                    status = Some(exited);
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER);
                },
                // The spare's interpreter flushed and closed its output and is about to `_exit`
                // with this status: the run is over now, not after the kernel tore it down.
                code = notice_status(&mut self.notice), if status.is_none() => {
                    if self.detached {
                        watchdog.abort();
                    }
                    self.session.leader_exited();
                    ended_at = Some(Instant::now());
                    status = Some(Ok(ExitStatus::from_raw(code << 8)));
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER);
                },
                () = &mut linger, if status.is_some() => {
                    lingered = true;
                    break;
                },
                () = self.events.closed(), if !self.detached && self.events.is_open() && status.is_none() => {
                    self.events.client_gone();
                    self.session.kill(ExitReason::Cancelled);
                },
            }
        }

        let exit = self.exit(status, ended_at.unwrap_or_else(Instant::now));
        let span = tracing::Span::current();
        span.record("exit_code", exit.code);
        span.record("exit_reason", exit.reason.as_str());
        tracing::info!(
            run_id = self.events.run_id(),
            code = exit.code,
            killed = exit.killed,
            reason = exit.reason,
            duration_ms = exit.duration_ms,
            "exec finished"
        );
        self.record.ended(exit.clone());
        self.events.send(Event::Exit(exit)).await;
        self.events.end_client();

        if lingered {
            // Background processes hold the pipes: keep reading (into the run's buffer), or they
            // would block on a full pipe, until they close them or the daemon stops.
            let background = self.background.clone();
            tokio::select! {
                () = background.cancelled() => {}
                () = self.record_rest() => {}
            }
        }
        self.sessions.finish(self.session.sid);
        self.record.finish();
    }

    /// Records output of background processes until both pipes are closed.
    async fn record_rest(&mut self) {
        while self.stdout.pipe.is_some() || self.stderr.pipe.is_some() {
            tokio::select! {
                read = self.stdout.read() => match read {
                    Ok(n) if n > 0 => {
                        if let Some(bytes) = self.stdout.admit(n) {
                            self.events.send(Event::Stdout(bytes)).await;
                        }
                    }
                    _ => self.stdout.pipe = None,
                },
                read = self.stderr.read() => match read {
                    Ok(n) if n > 0 => {
                        if let Some(bytes) = self.stderr.admit(n) {
                            self.events.send(Event::Stderr(bytes)).await;
                        }
                    }
                    _ => self.stderr.pipe = None,
                },
            }
        }
    }

    /// Forwards output; a client gone while the program still runs gets the program killed.
    async fn send_output(&mut self, event: Event, program_exited: bool) {
        if !self.events.is_open() {
            // Kept in the run's buffer all the same.
            self.events.send(event).await;
            return;
        }
        if !self.events.send(event).await && !self.detached && !program_exited {
            self.session.kill(ExitReason::Cancelled);
        }
    }

    fn exit(&self, status: Option<std::io::Result<ExitStatus>>, ended_at: Instant) -> ExecExit {
        let (code, signal) = match status {
            Some(Ok(status)) => match (status.code(), status.signal()) {
                (Some(code), _) => (code, None),
                (None, Some(signal)) => (128 + signal, Some(signal)),
                (None, None) => (-1, None),
            },
            Some(Err(e)) => {
                tracing::error!(error = %e, "waiting for the program failed");
                (-1, None)
            }
            None => (-1, None),
        };
        let mut reason = self.session.reason();
        if reason.is_none() && signal == Some(libc::SIGKILL) {
            if let (Some(before), Some(after)) = (self.oom_before, oom::kill_count()) {
                if after > before {
                    reason = Some(ExitReason::Oom);
                }
            }
        }
        ExecExit {
            code,
            killed: reason.is_some(),
            duration_ms: ended_at.duration_since(self.started).as_millis() as u64,
            reason: reason
                .map(ExitReason::as_str)
                .unwrap_or_default()
                .to_string(),
            stdout_truncated: self.stdout.cap.truncated(),
            stderr_truncated: self.stderr.cap.truncated(),
            stdout_bytes: self.stdout.cap.total(),
            stderr_bytes: self.stderr.cap.total(),
            state_lost: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_parse_and_unknown_ones_list_the_valid() {
        assert_eq!(parse_language("python").ok(), Some(Language::Python));
        assert_eq!(parse_language("shell").ok(), Some(Language::Shell));
        assert_eq!(parse_language("node").ok(), Some(Language::Node));
        assert_eq!(parse_language(" PY ").ok(), Some(Language::Python));
        let err = parse_language("cobol").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown language \"cobol\"; use one of: python, shell, node")
        );
    }

    #[test]
    fn pipe_output_past_the_cap_is_counted_not_kept() {
        let mut out = Output::new(None, 10);
        out.buf[..6].copy_from_slice(b"abcdef");
        assert_eq!(out.admit(6).as_deref(), Some(&b"abcdef"[..]));
        assert_eq!(out.admit(6).as_deref(), Some(&b"abcd"[..]));
        assert_eq!(out.admit(6), None);
        assert_eq!((out.cap.total(), out.cap.truncated()), (18, true));
    }
}
