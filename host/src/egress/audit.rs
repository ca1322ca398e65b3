//! The egress audit log: one JSON line per decision in `<dir>/egress.log`, rotated to
//! `egress.log.1` when it passes its size cap (so at most twice the cap is kept).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

/// One decision.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    /// RFC 3339, milliseconds, UTC.
    pub time: String,
    pub sandbox: String,
    /// What the process asked for (a name or an address).
    pub host: String,
    pub port: u16,
    /// The address dialled; empty when refused before that.
    pub address: String,
    /// `CONNECT` or the HTTP method of a plain request.
    pub method: String,
    /// "allowed" or "denied".
    pub decision: &'static str,
    /// The allow rule that matched ("open", "allowed.test", "*.github.com"), or the refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes from the sandbox, and to it.
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration_ms: u64,
}

impl Line {
    /// A line stamped now, with no bytes yet.
    pub fn new(sandbox: &str, method: &str, host: &str, port: u16) -> Self {
        Self {
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            sandbox: sandbox.to_owned(),
            host: host.to_owned(),
            port,
            address: String::new(),
            method: method.to_owned(),
            decision: "denied",
            rule: None,
            reason: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        }
    }
}

/// The log file of one host instance.
pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<File>>,
}

impl Audit {
    /// A log at `dir/egress.log`, rotated past `max_bytes`.
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        Self::at(dir.join("egress.log"), max_bytes)
    }

    /// A JSONL log at `path` (the call audit log shares the writer), rotated past `max_bytes`.
    pub fn at(path: PathBuf, max_bytes: u64) -> Self {
        Self {
            path,
            max_bytes: max_bytes.max(4096),
            file: Mutex::new(None),
        }
    }

    /// Where the current file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a line; a failure to write is logged, never the caller's problem.
    pub fn write(&self, line: &impl Serialize) {
        let Ok(mut text) = serde_json::to_string(line) else {
            return;
        };
        text.push('\n');
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.append(&mut slot, text.as_bytes()) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the audit log");
            *slot = None;
        }
    }

    fn append(&self, slot: &mut Option<File>, bytes: &[u8]) -> std::io::Result<()> {
        if slot.is_none() {
            *slot = Some(open(&self.path)?);
        }
        let file = slot.as_mut().expect("opened above");
        if file.metadata()?.len() + bytes.len() as u64 > self.max_bytes {
            std::fs::rename(&self.path, rotated(&self.path))?;
            *file = open(&self.path)?;
        }
        file.write_all(bytes)
    }

    /// The last `n` lines about `sandbox`, oldest first.
    pub fn tail(&self, sandbox: &str, n: usize) -> Vec<String> {
        let needle = format!("\"sandbox\":{}", serde_json::Value::from(sandbox));
        let mut out = std::collections::VecDeque::with_capacity(n.min(1024));
        if n == 0 {
            return Vec::new();
        }
        for path in [rotated(&self.path), self.path.clone()] {
            let Ok(file) = File::open(&path) else {
                continue;
            };
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if line.contains(&needle) {
                    if out.len() == n {
                        out.pop_front();
                    }
                    out.push_back(line);
                }
            }
        }
        out.into()
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Where a log's previous file goes when it rotates (`PATH.1`).
pub fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_and_tail_filters_by_sandbox() {
        let dir = std::env::temp_dir().join(format!("egress-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("test setup");
        let audit = Audit::new(&dir, 4096);
        for i in 0..100u16 {
            let sb = if i % 2 == 0 { "sb-a" } else { "sb-b" };
            audit.write(&Line::new(sb, "CONNECT", "x.test", i));
        }
        assert!(dir.join("egress.log.1").exists());
        let tail = audit.tail("sb-a", 3);
        assert_eq!(tail.len(), 3);
        assert!(tail[2].contains("\"port\":98"), "{}", tail[2]);
        assert!(tail.iter().all(|l| l.contains("sb-a")));
        std::fs::remove_dir_all(&dir).expect("test setup");
    }
}
