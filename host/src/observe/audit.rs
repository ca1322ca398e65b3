//! The call audit log: one JSON line per call that reads or changes a sandbox (who, which
//! sandbox, what, how it ended, how long, how big; the SHA-256 of code, never its text nor any
//! file content), appended to `<state>/instances/<instance>/audit.jsonl` (or `--audit-log`),
//! rotated to `.1` past its size cap. `agent-runtime audit` reads it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::egress::audit::{rotated, Audit};

/// Where the log goes and how big it may grow.
#[derive(Clone, Debug)]
pub struct AuditOptions {
    /// The file; `None` turns the log off.
    pub path: Option<PathBuf>,
    /// Past this size the file rotates to `PATH.1` (so at most twice this is kept).
    pub max_bytes: u64,
}

/// The default cap: 64 MiB per file.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The default path for an instance.
pub fn default_path(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir
        .join("instances")
        .join(instance)
        .join("audit.jsonl")
}

/// One call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// When the call ended: RFC 3339, milliseconds, UTC.
    pub time: String,
    /// The token's name (`--token-file`), `anonymous` without tokens, `unauthenticated` for a
    /// refused token.
    pub caller: String,
    /// The sandbox the call was about; empty for calls about none (List, PoolStatus).
    #[serde(default)]
    pub sandbox: String,
    /// The RPC: `Sandbox/Exec`, `Sandboxes/Create`, or `REST <route>`.
    pub operation: String,
    /// `OK` or the gRPC status code name (`NOT_FOUND`, ...).
    pub outcome: String,
    /// From the call's start to its answer's last byte.
    pub duration_ms: u64,
    /// Bytes received from the caller and sent back.
    pub request_bytes: u64,
    /// Bytes sent back to the caller.
    pub response_bytes: u64,
    /// SHA-256 of the code an Exec or RunCode carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sha256: Option<String>,
    /// A run's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why a run was killed (`timeout`, `oom`, `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// The call's trace, when traces are exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The writer every call's record goes through.
pub struct CallAudit {
    log: Option<Audit>,
}

impl CallAudit {
    /// A log as `options` say (none when its path is `None`).
    pub fn new(options: &AuditOptions) -> std::io::Result<Self> {
        let log = match &options.path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Audit::at(path.clone(), options.max_bytes))
            }
            None => None,
        };
        Ok(Self { log })
    }

    /// Where the log is, if on.
    pub fn path(&self) -> Option<&Path> {
        self.log.as_ref().map(|l| l.path())
    }

    /// Appends one record.
    pub fn write(&self, record: &CallRecord) {
        if let Some(log) = &self.log {
            log.write(record);
        }
    }
}

/// The records of the log at `path` (its rotated file first), oldest first, for `sandbox` (all
/// when `None`) that ended at or after `since`.
pub fn read(
    path: &Path,
    sandbox: Option<&str>,
    since: Option<DateTime<Utc>>,
) -> std::io::Result<Vec<CallRecord>> {
    let mut out = Vec::new();
    let mut found = false;
    for file in [rotated(path), path.to_path_buf()] {
        let Ok(f) = std::fs::File::open(&file) else {
            continue;
        };
        found = true;
        for line in BufReader::new(f).lines() {
            let Ok(record) = serde_json::from_str::<CallRecord>(&line?) else {
                continue;
            };
            if sandbox.is_some_and(|s| s != record.sandbox) {
                continue;
            }
            if let Some(since) = since {
                match DateTime::parse_from_rfc3339(&record.time) {
                    Ok(t) if t >= since => {}
                    _ => continue,
                }
            }
            out.push(record);
        }
    }
    if !found {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no audit log at {} (the host writes it on its first call; pass --audit-log \
                 if the host was started with one)",
                path.display()
            ),
        ));
    }
    Ok(out)
}

/// `--since`: RFC 3339, or a duration back from now (`30s`, `15m`, `2h`, `1d`).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .map_err(|_| format!("--since {s:?}: use RFC 3339 or a number with s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => {
            return Err(format!(
                "--since {s:?}: use RFC 3339 or a number with s, m, h or d"
            ))
        }
    };
    Ok(Utc::now() - chrono::Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rotate_within_the_cap_and_read_back_filtered() {
        let dir = std::env::temp_dir().join(format!("call-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let audit = CallAudit::new(&AuditOptions {
            path: Some(path.clone()),
            max_bytes: 4096,
        })
        .expect("log");
        for i in 0..200u64 {
            audit.write(&CallRecord {
                time: Utc::now().to_rfc3339(),
                caller: "anonymous".into(),
                sandbox: if i % 2 == 0 { "sb-a" } else { "sb-b" }.into(),
                operation: "Sandbox/Exec".into(),
                outcome: "OK".into(),
                duration_ms: i,
                ..Default::default()
            });
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 4096, "current file {} bytes", size(&path));
        assert!(size(&rotated(&path)) <= 4096);
        assert!(size(&rotated(&path)) > 0, "rotated at least once");
        let a = read(&path, Some("sb-a"), None).expect("read");
        assert!(!a.is_empty() && a.iter().all(|r| r.sandbox == "sb-a"));
        assert_eq!(a.last().map(|r| r.duration_ms), Some(198));
        let future = read(&path, None, Some(Utc::now() + chrono::Duration::hours(1)));
        assert_eq!(future.map(|r| r.len()).ok(), Some(0));
    }

    #[test]
    fn since_takes_times_and_durations() {
        assert!(parse_since("2026-01-02T03:04:05Z").is_ok());
        let t = parse_since("2h").expect("duration");
        let age = Utc::now() - t;
        assert!(age.num_minutes() >= 119 && age.num_minutes() <= 121);
        assert!(parse_since("yesterday").is_err());
    }
}
