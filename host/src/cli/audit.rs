//! `agent-runtime audit [--sandbox ID] [--since T] [--json]`: the host's call audit log.

use std::path::PathBuf;

use crate::observe::audit::{default_path, parse_since, read};

/// Flags of `audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only calls about this sandbox.
    #[arg(long, short)]
    sandbox: Option<String>,
    /// Only calls since this time: RFC 3339, or back from now (`30s`, `15m`, `2h`, `1d`).
    #[arg(long)]
    since: Option<String>,
    /// Print the JSON lines as they are.
    #[arg(long)]
    json: bool,
    /// The log file (default: the instance's, as `serve` writes it).
    #[arg(long, env = "AGENT_RUNTIME_AUDIT_LOG")]
    file: Option<PathBuf>,
    #[command(flatten)]
    state: super::StateArgs,
    /// The host instance whose log to read.
    #[arg(long, env = "AGENT_RUNTIME_INSTANCE", default_value = "default")]
    instance: String,
}

/// Prints the records; exit code 0.
pub fn run(args: &AuditArgs) -> anyhow::Result<i32> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| default_path(&args.state.state_dir(), &args.instance));
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let records = read(&path, args.sandbox.as_deref(), since)?;
    for r in records {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
            continue;
        }
        let run = match (r.exit_code, r.exit_reason.as_deref()) {
            (Some(code), Some(reason)) => format!(" exit={code} ({reason})"),
            (Some(code), None) => format!(" exit={code}"),
            _ => String::new(),
        };
        let code = r
            .code_sha256
            .as_deref()
            .map(|h| format!(" code={}", &h[..h.len().min(12)]))
            .unwrap_or_default();
        println!(
            "{}  {:<12} {:<14} {:<32} {:<18} {:>7} ms  in={} out={}{code}{run}",
            r.time,
            r.caller,
            if r.sandbox.is_empty() {
                "-"
            } else {
                &r.sandbox
            },
            r.operation,
            r.outcome,
            r.duration_ms,
            r.request_bytes,
            r.response_bytes,
        );
    }
    Ok(0)
}
