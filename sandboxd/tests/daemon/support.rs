//! Starting a daemon for one test and talking to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_runtime_client::RunOutcome;
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{ExecEvent, ExecExit, ExecRequest};
use anyhow::{bail, Context as _};
use hyper_util::rt::TokioIo;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

/// A running sandboxd with its own workspace and socket; stopped (SIGTERM) when dropped.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    workspace: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the daemon and waits until its socket answers.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("sandboxd.sock");
        let workspace = dir.path().join("workspace");
        std::fs::create_dir(&workspace)?;
        let child = Command::new(env!("CARGO_BIN_EXE_sandboxd"))
            .args([
                "--listen",
                "none",
                "--egress-listen",
                "127.0.0.1:0",
                "--socket",
            ])
            .arg(&socket)
            .arg("--workspace")
            .arg(&workspace)
            .env("RUST_LOG", "warn")
            // A daemon setting user code must not see (tests/daemon/exec.rs, zygote.rs).
            .env("SANDBOXD_TEST_SETTING", "daemon-only")
            // The browser needs the image's driver; here it must fail the same way everywhere.
            .env("PLAYWRIGHT_DRIVER_PATH", "/nonexistent/playwright-driver")
            .stdin(Stdio::null())
            .spawn()
            .context("starting sandboxd")?;
        let daemon = Self {
            child,
            socket,
            workspace,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !daemon.socket.exists() {
            if Instant::now() > deadline {
                bail!("hung: sandboxd did not create its socket (a start-up guard)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(daemon)
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's workspace directory.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// A channel over the unix socket.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let path = self.socket.clone();
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await?;
        Ok(channel)
    }

    /// A `Sandbox` client with room for 64 MiB messages.
    pub async fn client(&self) -> anyhow::Result<SandboxClient<Channel>> {
        Ok(SandboxClient::new(self.channel().await?)
            .max_decoding_message_size(agent_runtime_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(agent_runtime_proto::MAX_MESSAGE_BYTES))
    }
}

impl Daemon {
    /// Sends SIGTERM and waits up to `wait` for the daemon to exit; its status if it did.
    pub fn terminate(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: kill only sends a signal to the daemon this struct started (and has not reaped).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.terminate(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A request for `code` in `language` with everything else defaulted.
pub fn request(language: &str, code: &str) -> ExecRequest {
    ExecRequest {
        language: language.into(),
        code: code.into(),
        ..ExecRequest::default()
    }
}

/// Everything one Exec produced: the events as sent, folded by the client layer's `RunOutcome`
/// (which the tests read through `Deref`: `out.stdout`, `out.exit`, ...).
#[derive(Debug, Default)]
pub struct Outcome {
    pub events: Vec<ExecEvent>,
    pub fold: RunOutcome,
}

impl std::ops::Deref for Outcome {
    type Target = RunOutcome;

    fn deref(&self) -> &RunOutcome {
        &self.fold
    }
}

impl Outcome {
    /// Stdout as text.
    pub fn stdout(&self) -> String {
        self.fold.stdout.clone()
    }

    /// Stderr as text.
    pub fn stderr(&self) -> String {
        self.fold.stderr.clone()
    }

    /// The exit event, which every run ends with.
    pub fn exit(&self) -> anyhow::Result<&ExecExit> {
        self.fold
            .exit
            .as_ref()
            .context("the run sent no exit event")
    }
}

/// Runs a request and collects its events; Exec sends output and one exit event last, nothing
/// else.
pub async fn run(client: &mut SandboxClient<Channel>, req: ExecRequest) -> anyhow::Result<Outcome> {
    let mut stream = client.exec(req).await?.into_inner();
    let mut out = Outcome::default();
    while let Some(event) = stream.next().await {
        let event = event?;
        if out.fold.exit.is_some() {
            bail!("an event came after the exit event: {event:?}");
        }
        match &event.event {
            Some(Event::Stdout(_) | Event::Stderr(_) | Event::Exit(_)) => {
                out.fold.add(&event);
            }
            other => bail!("unexpected event {other:?}"),
        }
        out.events.push(event);
    }
    Ok(out)
}

/// Live (not zombie) processes in session `sid`.
pub fn session_members(sid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first()?;
        let session: i32 = fields.get(3)?.parse().ok()?;
        (session == sid && *state != "Z" && *state != "X").then_some(pid)
    })
    .collect()
}

/// Whether `pid` is a spare Python interpreter (see sandboxd's `zygote`): the daemon keeps one
/// waiting, as it keeps a spare kernel, so it is not a process user code left behind.
pub fn is_spare(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.windows(20).any(|w| w == b"agent-runtime-zygote"))
}

/// Deterministic pseudo-random bytes (no pattern a filesystem or transport could shortcut).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Hex SHA-256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// How long a wait in these tests may last before the test calls it hung: a guard that stops a
/// stuck test, not a check of speed (every process waited for lives minutes, or forever, unless
/// the behaviour under test ends it).
pub const HUNG: Duration = Duration::from_secs(120);

/// Polls `left` until it returns nothing; fails the test as hung, naming `what` was awaited and
/// what was still left, after [`HUNG`].
pub async fn wait_none<T: std::fmt::Debug>(what: &str, mut left: impl FnMut() -> Vec<T>) {
    let deadline = Instant::now() + HUNG;
    loop {
        let now = left();
        if now.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hung waiting for {what}: still {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
