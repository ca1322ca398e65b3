//! One-shot runs of python, shell and node code, streamed as they happen.
//!
//! A run is one session (see `processes`): the interpreter reads the code from a temporary file,
//! its stdout and stderr are read concurrently in chunks and sent on at once, and a timeout, a
//! client that goes away or daemon shutdown kill all of the run's processes — its session, its
//! tree, and what it left behind after `setsid` or a double fork (see `process_tree`). Output past
//! the cap is read and dropped, never buffered (`run_limits`); a bounded channel makes a slow
//! client slow the reading down instead of growing memory (`run_events`).

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent_runtime_proto::sets::{ExitReason, Language};
use agent_runtime_proto::v1::{exec_event::Event, ExecExit, ExecRequest};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::process_tree::Tree;
use crate::run_events::{EventSender, EventStream};
use crate::run_limits::{timeout_from, OutputCap, DEFAULT_MAX_OUTPUT};
use crate::workspace::Workspace;
use crate::{oom, processes};

/// Largest chunk read from a pipe (and so the largest output event).
const CHUNK: usize = 64 * 1024;
/// How long output is still collected after the program itself exited, for background processes
/// that inherited its pipes and may never close them.
const LINGER: Duration = Duration::from_millis(250);

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
        let timeout = timeout_from(req.timeout_seconds)?;
        for (key, value) in &req.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(Error::invalid(format!(
                    "invalid environment variable {key:?}: names must be non-empty without '=' \
                     or NUL, values without NUL"
                )));
            }
        }
        Ok(Self {
            language,
            code: req.code,
            stdin: req.stdin,
            env: req.env,
            cwd,
            timeout,
            max_output: match req.max_output_bytes {
                0 => DEFAULT_MAX_OUTPUT,
                n => n,
            },
        })
    }
}

/// One run's session: its id (the leader's pid) and, once we killed it, why.
struct Session {
    sid: i32,
    reason: OnceLock<ExitReason>,
    tree: Arc<Tree>,
}

impl Session {
    /// Kills every process of the run; the first reason given is the one reported.
    fn kill(&self, reason: ExitReason) {
        let _ = self.reason.set(reason);
        self.tree.kill_run(self.sid);
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

/// The Exec component: starts runs and kills them all at shutdown.
pub struct Exec {
    workspace: Workspace,
    sessions: Arc<Sessions>,
    /// Which process is whose; kills a run's processes wherever they went.
    tree: Arc<Tree>,
    /// Stops the tasks that drain pipes of background processes after their run ended.
    background: CancellationToken,
}

impl Exec {
    /// An Exec that runs code in `workspace`; `background` stops its leftover pipe drainers and
    /// the process tracker. This makes the daemon a child subreaper (see `process_tree`), so it is
    /// made once, at start.
    pub fn new(workspace: Workspace, background: CancellationToken) -> Self {
        Self {
            workspace,
            sessions: Arc::default(),
            tree: Tree::start(background.child_token()),
            background,
        }
    }

    /// Validates and starts a run; its events arrive on the returned stream.
    pub async fn start(&self, req: ExecRequest) -> Result<EventStream> {
        let spec = ExecSpec::from_request(req, &self.workspace)?;
        let (events, stream) = EventSender::channel();
        let script = Script::write(events.run_id(), spec.language, &spec.code)?;

        let program = spec.language.program();
        let mut cmd = Command::new(program);
        cmd.args(spec.language.args())
            .arg(script.path())
            .current_dir(&spec.cwd)
            .env("PYTHONUNBUFFERED", "1")
            .envs(&spec.env)
            .stdin(if spec.stdin.is_empty() {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        processes::isolate(&mut cmd);

        let oom_before = oom::kill_count();
        let mut child = cmd
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        let started = Instant::now();
        let Some(pid) = child.id() else {
            return Err(Error::Internal(
                "the child exited before it had a pid".into(),
            ));
        };
        let session = Arc::new(Session {
            // setsid made the child a session leader: its session id is its pid.
            sid: pid as i32,
            reason: OnceLock::new(),
            tree: self.tree.clone(),
        });
        self.tree.run_started(session.sid);
        self.sessions.add(session.clone());
        tracing::info!(run_id = events.run_id(), pid, language = program, cwd = %spec.cwd.display(), "exec started");

        let stdin = child.stdin.take().map(|mut pipe| {
            let data = spec.stdin;
            // Written concurrently with reading output, so a large stdin cannot deadlock.
            tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
            })
        });
        let run = Run {
            events,
            session,
            sessions: self.sessions.clone(),
            background: self.background.clone(),
            stdout: Output::new(child.stdout.take(), spec.max_output),
            stderr: Output::new(child.stderr.take(), spec.max_output),
            timeout: spec.timeout,
            started,
            oom_before,
            _script: script,
        };
        tokio::spawn(async move {
            run.drive(child).await;
            if let Some(task) = stdin {
                task.abort();
            }
        });
        Ok(stream)
    }

    /// Kills every run's processes (and every orphan nobody owns) and stops the background
    /// drainers.
    pub async fn shutdown(&self) {
        let sessions = self.sessions.all();
        for session in &sessions {
            let _ = session.reason.set(ExitReason::Cancelled);
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

/// One output pipe and its accounting against the cap.
struct Output<R> {
    pipe: Option<R>,
    buf: Vec<u8>,
    cap: OutputCap,
}

impl<R: AsyncRead + Unpin> Output<R> {
    fn new(pipe: Option<R>, cap: u64) -> Self {
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

/// Reads a pipe to its end and throws the bytes away.
async fn discard<R: AsyncRead + Unpin>(pipe: Option<R>) {
    if let Some(mut pipe) = pipe {
        let mut buf = vec![0; CHUNK];
        while matches!(pipe.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

/// Everything one run needs after it started.
struct Run {
    events: EventSender,
    session: Arc<Session>,
    sessions: Arc<Sessions>,
    background: CancellationToken,
    stdout: Output<ChildStdout>,
    stderr: Output<ChildStderr>,
    timeout: Duration,
    started: Instant,
    oom_before: Option<u64>,
    /// Removed when the run is dropped.
    _script: Script,
}

impl Run {
    /// Streams output until the program exited and its pipes closed (or lingered long enough),
    /// then sends the exit event.
    async fn drive(mut self, mut child: tokio::process::Child) {
        let watchdog = {
            let session = self.session.clone();
            let timeout = self.timeout;
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                session.kill(ExitReason::Timeout);
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
                    watchdog.abort();
                    self.session.tree.run_ended(self.session.sid);
                    ended_at = Some(Instant::now());
                    status = Some(exited);
                    linger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER);
                },
                () = &mut linger, if status.is_some() => {
                    lingered = true;
                    break;
                },
                () = self.events.closed(), if self.events.is_open() && status.is_none() => {
                    self.events.client_gone();
                    self.session.kill(ExitReason::Cancelled);
                },
            }
        }
        watchdog.abort();

        let sid = self.session.sid;
        if lingered {
            // Background processes hold the pipes: keep them drained, or they would block on a
            // full pipe, until they close them or the daemon stops.
            let stdout = self.stdout.pipe.take();
            let stderr = self.stderr.pipe.take();
            let background = self.background.clone();
            let sessions = self.sessions.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = background.cancelled() => {}
                    _ = futures::future::join(discard(stdout), discard(stderr)) => {}
                }
                sessions.finish(sid);
            });
        } else {
            self.sessions.finish(sid);
        }

        let exit = self.exit(status, ended_at.unwrap_or_else(Instant::now));
        tracing::info!(
            run_id = self.events.run_id(),
            code = exit.code,
            killed = exit.killed,
            reason = exit.reason,
            duration_ms = exit.duration_ms,
            "exec finished"
        );
        self.events.send(Event::Exit(exit)).await;
    }

    /// Forwards output; a client gone while the program still runs gets the program killed.
    async fn send_output(&mut self, event: Event, program_exited: bool) {
        if !self.events.is_open() {
            return;
        }
        if !self.events.send(event).await && !program_exited {
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
        let mut reason = self.session.reason.get().copied();
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
        let mut out: Output<ChildStdout> = Output::new(None, 10);
        out.buf[..6].copy_from_slice(b"abcdef");
        assert_eq!(out.admit(6).as_deref(), Some(&b"abcdef"[..]));
        assert_eq!(out.admit(6).as_deref(), Some(&b"abcd"[..]));
        assert_eq!(out.admit(6), None);
        assert_eq!((out.cap.total(), out.cap.truncated()), (18, true));
    }
}
