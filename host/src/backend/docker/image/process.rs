//! Runs a build tool (npm, mmdebstrap) in its own process group, forwarding its output lines as
//! progress and keeping the last few for the error message.

use std::collections::VecDeque;
use std::io;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

/// Longest line forwarded; tools sometimes print a whole progress bar without a newline.
const MAX_LINE: usize = 2_000;
/// Lines kept for the error message.
const TAIL_LINES: usize = 15;
/// After this long without output, say the tool is still running.
const QUIET: std::time::Duration = std::time::Duration::from_secs(30);

/// How a tool run ended.
pub(super) struct Finished {
    pub status: ExitStatus,
    /// The last lines it printed (stdout and stderr interleaved), for an error message.
    pub tail: Vec<String>,
}

impl Finished {
    /// The tail joined for an error message.
    pub fn tail_text(&self) -> String {
        if self.tail.is_empty() {
            format!("{} (no output)", self.status)
        } else {
            format!("{}; last output:\n{}", self.status, self.tail.join("\n"))
        }
    }
}

/// Kills the whole process group when dropped before the child was reaped, so a cancelled
/// build does not leave apt or dpkg running behind it.
struct GroupGuard {
    pgid: Option<libc::pid_t>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: killpg only sends a signal; the group was created for this child by
            // process_group(0) and the child has not been reaped, so the id is still ours.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

/// Runs `cmd` to completion with stdin closed, forwarding each output line (prefixed with
/// `label`) to `progress`. A program that is not installed yields `ErrorKind::NotFound`.
pub(super) async fn run_forwarding(
    cmd: &mut Command,
    label: &str,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut guard = GroupGuard {
        pgid: child.id().and_then(|id| libc::pid_t::try_from(id).ok()),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    let pump_out = pump(stdout, tx.clone());
    let pump_err = pump(stderr, tx);
    let started = std::time::Instant::now();
    let forward = async {
        loop {
            // Some phases (mmdebstrap installing packages) print nothing for minutes.
            let line = match tokio::time::timeout(QUIET, rx.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(_) => {
                    let secs = started.elapsed().as_secs();
                    progress(&format!("{label}: still running ({secs}s)"));
                    continue;
                }
            };
            progress(&format!("{label}: {line}"));
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    };
    let (out, err, ()) = tokio::join!(pump_out, pump_err, forward);
    out?;
    err?;
    let status = child.wait().await?;
    guard.pgid = None;
    Ok(Finished {
        status,
        tail: tail.into_iter().collect(),
    })
}

/// Sends each line of `reader` (lossily decoded, trimmed, capped) until EOF.
async fn pump<R: AsyncRead + Unpin>(
    reader: Option<R>,
    tx: tokio::sync::mpsc::Sender<String>,
) -> io::Result<()> {
    let Some(reader) = reader else {
        return Ok(());
    };
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        // Progress bars redraw with '\r'; keep only the last state of the line.
        let raw = String::from_utf8_lossy(&buf);
        let last = raw
            .trim_end()
            .rsplit('\r')
            .next()
            .unwrap_or_default()
            .trim();
        if last.is_empty() {
            continue;
        }
        let line: String = last.chars().take(MAX_LINE).collect();
        if tx.send(line).await.is_err() {
            return Ok(());
        }
    }
}
