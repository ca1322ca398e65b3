//! `agent-runtime sandbox create|ls|rm|exec`: a thin client of a running host.

use std::collections::HashMap;
use std::io::Read;

use agent_runtime_client::Language;
use agent_runtime_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, ExecRequest, ListSandboxesRequest, SandboxInfo,
};
use anyhow::Context as _;
use clap::Subcommand;

use super::call::{sandbox_id, stream_run, Host};
use super::network::EgressArgs;

/// Sandbox subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox; prints its id alone on stdout (like `docker create`).
    Create {
        /// Memory limit, e.g. 512m, 1g.
        #[arg(long)]
        memory: Option<String>,
        /// CPU cores.
        #[arg(long)]
        cpu: Option<f64>,
        /// Lifetime in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_kv)]
        labels: Vec<(String, String)>,
        /// What may leave the sandbox.
        #[command(flatten)]
        egress: EgressArgs,
        /// An environment variable KEY=VALUE every process in the sandbox gets (repeatable).
        #[arg(long = "env", short = 'e', value_parser = parse_kv)]
        env: Vec<(String, String)>,
        /// Take it from this warm pool (`none`: always start one; default: any pool that fits).
        #[arg(long)]
        pool: Option<String>,
        /// Print the sandbox's details as JSON instead of its id.
        #[arg(long)]
        json: bool,
    },
    /// Show a sandbox's egress policy and usage; with flags, replace the policy (open
    /// connections the new policy refuses are closed).
    Network {
        /// Sandbox id.
        id: String,
        /// The new policy (omit all to only show it).
        #[command(flatten)]
        egress: EgressArgs,
        /// Also print the sandbox's last N audit lines (default 50).
        #[arg(long, num_args = 0..=1, default_missing_value = "50", value_name = "N")]
        log: Option<u32>,
        /// Print JSON (with --log: the audit lines as JSON lines).
        #[arg(long)]
        json: bool,
    },
    /// List sandboxes.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destroy sandboxes.
    Rm {
        /// Sandbox ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Run a command in a sandbox, streaming its output live; exits with the command's code.
    Exec {
        /// Sandbox id.
        id: String,
        /// Language of the code.
        #[arg(short, long, value_enum, default_value_t = Language::Shell)]
        language: Language,
        /// Seconds before the command is killed.
        #[arg(long)]
        timeout: Option<f64>,
        /// Working directory (relative paths resolve under /workspace).
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        /// An environment variable KEY=VALUE (repeatable).
        #[arg(short, long = "env", value_parser = parse_kv)]
        env: Vec<(String, String)>,
        /// Pass this program's stdin to the command (with -t: as typed, in a terminal).
        #[arg(short, long)]
        interactive: bool,
        /// Run the command in a terminal (a PTY of this terminal's size), like `docker exec -t`;
        /// with -i an interactive session: keys as typed (raw mode), window changes followed.
        #[arg(short, long)]
        tty: bool,
        /// Start the command and print its run id at once; it runs on after this call (follow
        /// it with `agent-runtime run attach`, stop it with `run kill`).
        #[arg(short, long, conflicts_with_all = ["interactive", "tty"])]
        detach: bool,
        /// The command (shell words, or the code itself).
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Runs a sandbox subcommand.
pub async fn run(cmd: SandboxCommand, addr: &str) -> anyhow::Result<i32> {
    let host = Host::connect(addr).await?;
    match cmd {
        SandboxCommand::Create {
            memory,
            cpu,
            timeout,
            labels,
            egress,
            env,
            pool,
            json,
        } => {
            let info = host
                .call(CreateSandboxRequest {
                    memory: memory.unwrap_or_default(),
                    cpu: cpu.unwrap_or(0.0),
                    timeout_seconds: timeout.unwrap_or(0),
                    labels: labels.into_iter().collect(),
                    egress: egress.given().then(|| egress.policy()),
                    env: env.into_iter().collect(),
                    pool: pool.unwrap_or_default(),
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info_json(&info))?);
            } else {
                println!("{}", info.sandbox_id);
            }
            Ok(0)
        }
        SandboxCommand::Network {
            id,
            egress,
            log,
            json,
        } => super::network::run(&host, id, egress, log, json).await,
        SandboxCommand::Ls { json } => {
            let list = host.call(ListSandboxesRequest {}).await?.sandboxes;
            if json {
                let all: Vec<_> = list.iter().map(info_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<16} {:<9} {:>8} {:>4}  {:<24} EXPIRES",
                    "ID", "STATUS", "MEMORY", "CPU", "CREATED"
                );
                for s in list {
                    println!(
                        "{:<16} {:<9} {:>8} {:>4}  {:<24} {}",
                        s.sandbox_id,
                        s.status,
                        crate::limits::format_bytes(s.memory_bytes),
                        s.cpu,
                        s.created_at,
                        s.expires_at
                    );
                }
            }
            Ok(0)
        }
        SandboxCommand::Rm { ids } => {
            let mut code = 0;
            for id in ids {
                match host
                    .try_call(DestroySandboxRequest {
                        sandbox_id: id.clone(),
                    })
                    .await
                {
                    Ok(_) => println!("{id}"),
                    Err(s) => {
                        eprintln!("agent-runtime: {}", s.message());
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        SandboxCommand::Exec {
            id,
            language,
            timeout,
            workdir,
            env,
            interactive,
            tty,
            detach,
            command,
        } => {
            let mut stdin = Vec::new();
            if interactive && !tty {
                std::io::stdin()
                    .read_to_end(&mut stdin)
                    .context("reading stdin")?;
            }
            let code = if language == Language::Shell && command.len() > 1 {
                command
                    .iter()
                    .map(|w| shell_quote(w))
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                command.join(" ")
            };
            let req = ExecRequest {
                language: language.to_string(),
                code,
                stdin,
                env: env.into_iter().collect::<HashMap<_, _>>(),
                cwd: workdir.unwrap_or_default(),
                // A person at a terminal gets the longest a run may take unless they say.
                timeout_seconds: timeout.unwrap_or(if tty {
                    agent_runtime_client::MAX_RUN_TIMEOUT.as_secs_f64()
                } else {
                    0.0
                }),
                max_output_bytes: 0,
                detach,
                pty: tty.then(|| super::run::local_size().unwrap_or_default()),
                ..Default::default()
            };
            let sandbox = host.in_sandbox(sandbox_id(&id)?);
            let mut stream = sandbox.call(req).await?;
            if detach {
                let started = stream.message().await.map_err(super::call::status_err)?;
                let run = started.context("the sandbox did not report the run's start")?;
                println!("{}", run.run_id);
                return Ok(0);
            }
            if tty {
                return super::run::interactive(sandbox, stream).await;
            }
            let (_, x) = stream_run(stream).await?;
            if x.stdout_truncated || x.stderr_truncated {
                eprintln!(
                    "agent-runtime: output truncated ({} bytes stdout, {} bytes stderr produced)",
                    x.stdout_bytes, x.stderr_bytes
                );
            }
            if x.killed {
                eprintln!(
                    "agent-runtime: killed ({}) after {} ms",
                    x.reason, x.duration_ms
                );
            }
            Ok(x.code.clamp(0, 255))
        }
    }
}

/// Quotes a word for bash.
fn shell_quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn info_json(s: &SandboxInfo) -> serde_json::Value {
    serde_json::json!({
        "sandbox_id": s.sandbox_id,
        "status": s.status,
        "image": s.image,
        "memory_bytes": s.memory_bytes,
        "cpu": s.cpu,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "labels": s.labels,
        "container_id": s.container_id,
        "startup_ms": s.startup_ms,
        "pool": s.pool,
        "egress": s.egress.as_ref().map(|e| serde_json::json!({
            "network": e.network,
            "allow_domains": e.allow_domains,
            "deny_domains": e.deny_domains,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_shell_words() {
        assert_eq!(shell_quote("echo"), "echo");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
