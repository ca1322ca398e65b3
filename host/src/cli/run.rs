//! `agent-runtime run ls|attach|kill|kill-all` and the terminal side of `sandbox exec -it`: runs
//! as objects (a run outlives its call when started with `--detach`; any run can be followed
//! again, listed and killed).

use std::io::Write;

use agent_runtime_client::OutputStream;
use agent_runtime_proto::v1::exec_event::Event;
use agent_runtime_proto::v1::{
    AttachRequest, ExecEvent, ExecExit, KillAllRequest, KillRequest, ListRunsRequest,
    ResizeTerminalRequest, SendInputRequest, SignalRequest, TerminalSize,
};
use anyhow::Context as _;
use clap::Subcommand;

use super::call::{status_err, InSandbox};

/// Run subcommands.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// List the sandbox's runs: state, processes (background jobs included), CPU, output.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's output from a seq on, then follow it live until it is over.
    Attach {
        /// Run id (run-…).
        run_id: String,
        /// First event wanted (last seen seq + 1 to resume; 0: all still kept).
        #[arg(long, default_value_t = 0)]
        from_seq: u64,
        /// Print what is kept and stop instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Kill a run with every process it started (or send it a signal).
    Kill {
        /// Run id (run-…).
        run_id: String,
        /// Send this signal instead (INT, TERM, HUP, a number, ...).
        #[arg(short, long)]
        signal: Option<String>,
    },
    /// Kill every process user code started in the sandbox (not kernels, not the browser).
    KillAll,
}

/// Runs a run subcommand in `sandbox`.
pub async fn run(cmd: RunCommand, sandbox: InSandbox) -> anyhow::Result<i32> {
    match cmd {
        RunCommand::Ls { json } => {
            let list = sandbox.call(ListRunsRequest {}).await?;
            if json {
                let runs: Vec<serde_json::Value> = list
                    .runs
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "run_id": r.run_id,
                            "command": r.command,
                            "state": r.state,
                            "exit_code": r.exit_code,
                            "reason": r.reason,
                            "detached": r.detached,
                            "pids": r.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
                            "cpu_ms": r.cpu_ms,
                            "started_at": r.started_at,
                            "stdout_bytes": r.stdout_bytes,
                            "stderr_bytes": r.stderr_bytes,
                            "dropped_bytes": r.dropped_bytes,
                            "next_seq": r.next_seq,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<17} {:<8} {:>5} {:>7} {:>9}  {:<24} {:<16} COMMAND",
                    "RUN", "STATE", "CODE", "CPU", "OUTPUT", "STARTED", "PIDS"
                );
                for r in list.runs {
                    let pids: Vec<String> = r.processes.iter().map(|p| p.pid.to_string()).collect();
                    let code = if r.state == "running" {
                        "-".to_string()
                    } else {
                        r.exit_code.to_string()
                    };
                    println!(
                        "{:<17} {:<8} {:>5} {:>6}s {:>9}  {:<24} {:<16} {}",
                        r.run_id,
                        r.state,
                        code,
                        r.cpu_ms / 1000,
                        crate::limits::format_bytes(r.stdout_bytes + r.stderr_bytes),
                        r.started_at,
                        pids.join(","),
                        r.command.lines().next().unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        RunCommand::Attach {
            run_id,
            from_seq,
            no_follow,
        } => {
            let stream = sandbox
                .call(AttachRequest {
                    run_id,
                    from_seq,
                    no_wait: no_follow,
                })
                .await?;
            let (exit, _) = print_events(stream).await?;
            Ok(exit.map_or(0, |x| x.code.clamp(0, 255)))
        }
        RunCommand::Kill { run_id, signal } => {
            match signal {
                Some(signal) => {
                    let r = sandbox.call(SignalRequest { run_id, signal }).await?;
                    eprintln!("signalled {} processes", r.processes);
                }
                None => {
                    let r = sandbox.call(KillRequest { run_id }).await?;
                    eprintln!("killed {} processes", r.processes);
                }
            }
            Ok(0)
        }
        RunCommand::KillAll => {
            let r = sandbox.call(KillAllRequest {}).await?;
            eprintln!(
                "killed {} processes ({} runs were running)",
                r.processes,
                r.run_ids.len()
            );
            Ok(0)
        }
    }
}

/// Prints a run's events as they come (gaps noted on stderr); its exit event, if one came, and
/// the next seq to resume from.
pub async fn print_events(
    mut stream: tonic::Streaming<ExecEvent>,
) -> anyhow::Result<(Option<ExecExit>, u64)> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut exit = None;
    let mut next = 0;
    while let Some(ev) = stream.message().await.map_err(status_err)? {
        if let Some(gap) = &ev.gap {
            eprintln!(
                "agent-runtime: {} bytes of output were dropped from the run's buffer",
                gap.dropped_bytes
            );
        }
        if ev.seq > 0 {
            next = ev.seq + 1;
        }
        if let Some((which, bytes)) = agent_runtime_client::output_of(&ev) {
            let sink: &mut dyn Write = match which {
                OutputStream::Stdout => &mut out,
                OutputStream::Stderr => &mut err,
            };
            sink.write_all(bytes)?;
            sink.flush()?;
        }
        if let Some(Event::Exit(x)) = ev.event {
            exit = Some(x);
        }
    }
    Ok((exit, next))
}

/// The local terminal's size, when stdout is a terminal.
pub fn local_size() -> Option<TerminalSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0).then_some(TerminalSize {
        rows: ws.ws_row.into(),
        cols: ws.ws_col.into(),
    })
}

/// The local terminal in raw mode while alive (keys go to the sandbox as typed, Ctrl-C
/// included); restored when dropped. Nothing happens when stdin is not a terminal.
pub struct RawMode(Option<libc::termios>);

impl RawMode {
    /// Switches stdin to raw mode if it is a terminal.
    pub fn enter() -> Self {
        // SAFETY: isatty only inspects the fd.
        if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
            return Self(None);
        }
        // SAFETY: tcgetattr writes one termios into the zeroed struct; cfmakeraw and tcsetattr
        // only read and change the struct and the terminal's settings.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return Self(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw);
            Self(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings tcgetattr gave us.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
        }
    }
}

/// Runs an interactive terminal session: `stream` is the Exec of a `pty` run whose first event
/// (`started`) names it. Local keystrokes go to it as typed, window changes follow, its output is
/// printed; returns its exit code. Dropping the call (Ctrl-\ locally kills this process) kills the
/// run, like closing a terminal.
pub async fn interactive(
    sandbox: InSandbox,
    mut stream: tonic::Streaming<ExecEvent>,
) -> anyhow::Result<i32> {
    let first = stream
        .message()
        .await
        .map_err(status_err)?
        .context("the sandbox sent nothing for the terminal")?;
    let run_id = first.run_id.clone();
    let _raw = RawMode::enter();

    // Keystrokes: std's blocking stdin on its own thread, sent on in order.
    let (keys_tx, mut keys_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(64);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = keys_tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if keys_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let typist = {
        let sandbox = sandbox.clone();
        let run_id = run_id.clone();
        tokio::spawn(async move {
            let mut winch =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
            loop {
                tokio::select! {
                    key = keys_rx.recv() => match key {
                        Some(Some(data)) => {
                            let sent = sandbox
                                .try_call(SendInputRequest { run_id: run_id.clone(), data })
                                .await;
                            if sent.is_err() {
                                return;
                            }
                        }
                        // Local end of input: the remote terminal gets Ctrl-D.
                        Some(None) => {
                            let _ = sandbox
                                .try_call(agent_runtime_proto::v1::CloseInputRequest {
                                    run_id: run_id.clone(),
                                })
                                .await;
                            return;
                        }
                        None => return,
                    },
                    Some(()) = async {
                        match winch.as_mut() {
                            Some(w) => w.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        if let Some(size) = local_size() {
                            let _ = sandbox
                                .try_call(ResizeTerminalRequest {
                                    run_id: run_id.clone(),
                                    size: Some(size),
                                })
                                .await;
                        }
                    }
                }
            }
        })
    };
    let (exit, _) = print_events(stream).await?;
    typist.abort();
    Ok(exit.map_or(1, |x| x.code.clamp(0, 255)))
}
